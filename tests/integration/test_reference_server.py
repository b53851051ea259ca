"""The reference game server as a real process: health gate, status, tick loop, DB writes, SIGTERM.

Each test copies server.py and its migrations into a temporary "image" directory (as the image
build does), applies the migrations to a world database under a temporary HOME with a small
helper (standing in for the repository's migration tool), starts the server on 127.0.0.1 with a
free port and talks to it over HTTP.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from polling import wait_until
from system_tools import free_port

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.migrate import migrate

REPO = Path(__file__).resolve().parents[2]
SERVER_DIR = REPO / "roles" / "server_build" / "files" / "reference_server"
DB_RELATIVE = Path(".local/share/godot/app_userdata/mmo_voxel/database/world.db")

SECOND_MIGRATION = """\
-- migrate:up
CREATE TABLE test_only_guilds (id INTEGER PRIMARY KEY, name TEXT NOT NULL);

-- migrate:down
DROP TABLE test_only_guilds;
"""


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def apply_migrations(db_path: Path, migrations_dir: Path, up_to: int | None = None) -> int:
    """Create the world database (WAL) and migrate it with the repository's own migration tool,
    as the deploy does; returns the resulting schema version."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    sqlite3.connect(db_path).execute("PRAGMA journal_mode = WAL").close()
    return migrate(db_path, migrations_dir, target=up_to)["version_after"]


def http_get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    """(status code, JSON body); (0, {}) when nothing listens yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except (urllib.error.URLError, ConnectionError):
        return 0, {}


@dataclass
class Server:
    """A running reference server and what the test needs to talk to it."""

    proc: subprocess.Popen[str]
    port: int
    db_path: Path
    log_path: Path
    seen_health: list[int] = field(default_factory=list)

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        return http_get(self.port, path)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line]

    def running(self) -> None:
        """Fails, with the server's log, when the process exited."""
        assert self.proc.poll() is None, f"server exited early: {self.log_path.read_text()}"

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
        """Poll /status until predicate(status) is true; return that status."""

        def met() -> dict[str, Any] | None:
            code, doc = self.get("/status")
            if code == 200 and predicate(doc):
                return doc
            self.running()
            return None

        return wait_until(met, timeout, "the awaited status", context=lambda: self.get("/status"))

    def wait_healthy(self, timeout: float = 10.0) -> None:
        def healthy() -> bool:
            code, _ = self.get("/healthz")
            if code:
                self.seen_health.append(code)
            if code == 200:
                return True
            self.running()
            return False

        wait_until(
            healthy,
            timeout,
            "/healthz to answer 200",
            interval=0.05,
            context=self.log_path.read_text,
        )

    def terminate(self, timeout: float = 15.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    """server.py and its migrations copied as the image build lays them out."""
    image = tmp_path / "image"
    (image / "migrations").mkdir(parents=True)
    shutil.copy2(SERVER_DIR / "server.py", image / "server.py")
    for path in sorted((SERVER_DIR / "migrations").glob("*.sql")):
        shutil.copy2(path, image / "migrations" / path.name)
    return image


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def start_server(tmp_path: Path, image_dir: Path, home: Path) -> Iterator[Any]:
    """Start server.py from the image directory; every process is stopped at teardown."""
    started: list[Server] = []

    def start(**env_overrides: str) -> Server:
        port = free_port()
        log_path = tmp_path / f"server-{len(started)}.log"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "MMO_VOXEL_HTTP_HOST": "127.0.0.1",
            "MMO_VOXEL_HTTP_PORT": str(port),
            "MMO_VOXEL_SEED": "42",
            "MMO_VOXEL_TICK_HZ": "30",
            "MMO_VOXEL_SAVE_EVERY_TICKS": "5",
            "MMO_VOXEL_TICK_WINDOW_S": "1",
            "MMO_VOXEL_LOAD_RETRY_S": "0.5",
            "MMO_VOXEL_GRACE_S": "5",
            **env_overrides,
        }
        with log_path.open("w") as out:
            proc = subprocess.Popen(
                [sys.executable, str(image_dir / "server.py")],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )
        server = Server(proc, port, home / DB_RELATIVE, log_path)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(timeout=10)


def read_chunks(db_path: Path) -> list[tuple[int, int, int, bytes, str, str]]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT cx, cy, cz, payload, checksum, updated_at FROM chunks"
        ).fetchall()
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# A healthy server
# --------------------------------------------------------------------------------------------
def test_healthz_is_503_until_the_world_is_loaded_then_200(
    start_server: Any, image_dir: Path, home: Path
) -> None:
    apply_migrations(home / DB_RELATIVE, image_dir / "migrations")
    server = start_server(MMO_VOXEL_WORLD_LOAD_DELAY_S="1.0")

    server.wait_healthy()

    assert server.seen_health[0] == 503
    assert server.seen_health[-1] == 200
    assert [e["event"] for e in server.events()][:3] == [
        "starting",
        "http_listening",
        "world_loaded",
    ]
    assert server.terminate() == 0


def test_status_reports_the_contract_fields_with_measured_tick_rate(
    start_server: Any, image_dir: Path, home: Path
) -> None:
    schema = apply_migrations(home / DB_RELATIVE, image_dir / "migrations")
    (image_dir / "VERSION").write_text("1.2.3\n")
    server = start_server(MMO_VOXEL_STREAM_FAIL_RATE="0.5")
    server.wait_healthy()

    # Wait for a full measurement window at the 30 Hz target.
    status = server.wait_for(lambda s: s["uptime_s"] > 1.5 and s["ticks_total"] > 30)

    assert status["version"] == "1.2.3"
    # Measured from the ticks the loop ran (how fast depends on this machine's load: the
    # arithmetic is checked in-process by test_tick_rate_is_ticks_over_the_window_they_span).
    assert isinstance(status["tick_rate"], float)
    assert status["tick_rate"] > 0
    assert status["tick_rate_target"] == 30.0
    assert isinstance(status["active_sessions"], int)
    assert 0 <= status["active_sessions"] <= 64
    assert isinstance(status["voxel_stream_fail_total"], int)
    assert status["schema_version"] == schema
    assert status["required_schema_version"] == schema
    assert isinstance(status["uptime_s"], float)
    assert status["world_loaded"] is True
    assert status["healthy"] is True

    # The failure counter only grows (a high rate makes failures certain within a few ticks).
    # A reading every 6 ticks (0.2 s at the 30 Hz target).
    totals = [status["voxel_stream_fail_total"]]
    for _ in range(5):
        ticked = status["ticks_total"] + 6
        status = server.wait_for(lambda s, ticked=ticked: s["ticks_total"] >= ticked)
        totals.append(status["voxel_stream_fail_total"])
    assert totals == sorted(totals)
    assert totals[-1] > 0
    assert server.terminate() == 0


def test_version_comes_from_the_environment_before_the_version_file(
    start_server: Any, image_dir: Path, home: Path
) -> None:
    apply_migrations(home / DB_RELATIVE, image_dir / "migrations")
    (image_dir / "VERSION").write_text("1.2.3\n")
    server = start_server(MMO_VOXEL_VERSION="2.0.0-rc1")
    server.wait_healthy()

    assert server.get("/status")[1]["version"] == "2.0.0-rc1"
    assert server.terminate() == 0


def test_tick_loop_writes_chunk_rows_with_valid_checksums(
    start_server: Any, image_dir: Path, home: Path
) -> None:
    apply_migrations(home / DB_RELATIVE, image_dir / "migrations")
    server = start_server()
    server.wait_healthy()

    server.wait_for(lambda s: s["chunks_saved_total"] >= 20)
    rows = read_chunks(server.db_path)

    assert len(rows) >= 10
    for cx, cy, cz, payload, checksum, updated_at in rows:
        assert all(isinstance(c, int) for c in (cx, cy, cz))
        assert len(payload) >= 256
        assert checksum == hashlib.sha256(payload).hexdigest()
        assert datetime.fromisoformat(updated_at).tzinfo is not None
    conn = sqlite3.connect(server.db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert server.terminate() == 0


def post(port: int, path: str, token: str | None) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="POST", data=b"")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - local test server
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_admin_save_needs_the_token_from_the_file_and_never_logs_it(
    start_server: Any, image_dir: Path, home: Path, tmp_path: Path
) -> None:
    apply_migrations(home / DB_RELATIVE, image_dir / "migrations")
    token = "reference-admin-" + "7f3c9e"  # a test value, built so no scanner takes it as real
    token_file = tmp_path / "admin_token"
    token_file.write_text(token + "\n")
    # Rare periodic saves: the admin save is what writes the chunks.
    server = start_server(
        MMO_VOXEL_ADMIN_TOKEN_FILE=str(token_file), MMO_VOXEL_SAVE_EVERY_TICKS="100000"
    )
    server.wait_healthy()

    assert post(server.port, "/admin/save", None) == 401
    assert post(server.port, "/admin/save", "wrong") == 401
    assert server.get("/status")[1]["chunks_saved_total"] == 0
    assert post(server.port, "/admin/save", token) == 202
    server.wait_for(lambda s: s["chunks_saved_total"] > 0)
    assert server.terminate() == 0
    log = server.log_path.read_text()
    assert token not in log
    assert "admin_refused" in log
    assert "admin_save" in log


def test_admin_api_is_off_without_a_token_file(
    start_server: Any, image_dir: Path, home: Path, tmp_path: Path
) -> None:
    apply_migrations(home / DB_RELATIVE, image_dir / "migrations")
    empty = tmp_path / "empty_token"
    empty.write_text("")
    for env in ({}, {"MMO_VOXEL_ADMIN_TOKEN_FILE": str(empty)}):
        server = start_server(**env)
        server.wait_healthy()
        assert post(server.port, "/admin/save", "") == 404
        assert server.terminate() == 0


def test_anti_cheat_events_are_appended_as_json_lines(
    start_server: Any, image_dir: Path, home: Path, tmp_path: Path
) -> None:
    apply_migrations(home / DB_RELATIVE, image_dir / "migrations")
    analytics = tmp_path / "analytics"
    server = start_server(
        MMO_VOXEL_ANALYTICS_DIR=str(analytics),
        MMO_VOXEL_ANTI_CHEAT_RATE="1",
        MMO_VOXEL_MAX_SESSIONS="8",
    )
    server.wait_healthy()
    target = analytics / "anti_cheat.jsonl"

    def written() -> list[str]:
        return target.read_text().splitlines() if target.exists() else []

    wait_until(lambda: len(written()) >= 5, 10, "5 anti-cheat events", context=written)
    # Rotated away under the running server (copytruncate's effect): it goes on writing.
    target.write_text("")
    wait_until(lambda: len(written()) >= 2, 10, "2 anti-cheat events after the truncation")
    assert server.terminate() == 0
    events = [json.loads(line) for line in target.read_text().splitlines()]
    assert events, "no anti-cheat event after the file was truncated"
    for event in events:
        assert set(event) == {"ts", "version", "tick", "session", "check", "score"}
        assert event["check"] in {"speed", "reach", "fly", "build_rate"}
        assert 0.5 <= event["score"] <= 1.0
        assert datetime.fromisoformat(event["ts"]).tzinfo is not None
    ticks = [event["tick"] for event in events]
    assert ticks == sorted(ticks)


def test_unreadable_token_file_stops_the_server_with_the_variable_named(
    start_server: Any, tmp_path: Path
) -> None:
    server = start_server(MMO_VOXEL_ADMIN_TOKEN_FILE=str(tmp_path / "missing"))
    assert server.proc.wait(timeout=10) != 0
    assert "MMO_VOXEL_ADMIN_TOKEN_FILE" in server.log_path.read_text()


def test_sigterm_saves_checkpoints_and_exits_zero(
    start_server: Any, image_dir: Path, home: Path
) -> None:
    apply_migrations(home / DB_RELATIVE, image_dir / "migrations")
    # Save rarely, so the final save on SIGTERM has edits to write.
    server = start_server(MMO_VOXEL_SAVE_EVERY_TICKS="1000")
    server.wait_healthy()
    server.wait_for(lambda s: s["ticks_total"] >= 20)
    assert read_chunks(server.db_path) == []

    assert server.terminate() == 0

    events = {e["event"]: e for e in server.events()}
    assert events["final_save"]["chunks"] > 0
    assert events["wal_checkpoint"]["busy"] == 0
    assert events["shutdown_complete"]["exit_code"] == 0
    wal = server.db_path.with_name(server.db_path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    conn = sqlite3.connect(server.db_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        count = conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
    finally:
        conn.close()
    assert count == events["final_save"]["chunks"]
    assert server.get("/healthz")[0] == 0  # no longer listening


# --------------------------------------------------------------------------------------------
# Refusing to become healthy
# --------------------------------------------------------------------------------------------
def test_schema_older_than_the_build_requires_keeps_it_unhealthy(
    start_server: Any, image_dir: Path, home: Path
) -> None:
    # A "v2 build": it ships a second migration, but the database only has the first.
    (image_dir / "migrations" / "0002_add_test_only_guilds.sql").write_text(SECOND_MIGRATION)
    assert apply_migrations(home / DB_RELATIVE, image_dir / "migrations", up_to=1) == 1
    server = start_server()

    status = server.wait_for(lambda s: s["reason"] != "world loading")
    # The first load and two retries, all refused.
    wait_until(
        lambda: len([e for e in server.events() if e["event"] == "world_load_refused"]) >= 3,
        10,
        "two load retries",
        ignoring=(json.JSONDecodeError,),  # a line the server is still writing
        context=server.events,
    )

    code, body = server.get("/healthz")
    assert code == 503
    assert "below the version 2" in body["reason"]
    status = server.get("/status")[1]
    assert status["world_loaded"] is False
    assert status["required_schema_version"] == 2
    assert status["ticks_total"] == 0
    refusals = [e for e in server.events() if e["event"] == "world_load_refused"]
    assert refusals
    assert "schema version 1" in refusals[0]["reason"]
    assert read_chunks(server.db_path) == []
    assert server.terminate() == 0


def test_missing_database_is_not_created_by_the_server(start_server: Any) -> None:
    server = start_server()

    server.wait_for(lambda s: s["reason"] != "world loading")

    code, body = server.get("/healthz")
    assert code == 503
    assert "does not exist" in body["reason"]
    assert not server.db_path.exists()
    assert server.terminate() == 0


def test_bad_setting_stops_the_process_with_the_variable_named(start_server: Any) -> None:
    server = start_server(MMO_VOXEL_TICK_HZ="fast")

    assert server.proc.wait(timeout=10) == 64
    (event,) = server.events()
    assert event["event"] == "config_error"
    assert "MMO_VOXEL_TICK_HZ='fast'" in event["error"]


# --------------------------------------------------------------------------------------------
# Fault switch for rollback tests
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("switch", ["file", "env"])
def test_fault_switch_keeps_healthz_failing_while_the_server_runs(
    start_server: Any, image_dir: Path, home: Path, switch: str
) -> None:
    apply_migrations(home / DB_RELATIVE, image_dir / "migrations")
    env = {}
    if switch == "file":
        (image_dir / "FAIL_HEALTHCHECK").touch()
    else:
        env["MMO_VOXEL_FAIL_HEALTHCHECK"] = "1"
    server = start_server(**env)

    status = server.wait_for(lambda s: s["world_loaded"] and s["ticks_total"] > 20)

    code, body = server.get("/healthz")
    assert code == 503
    assert "fault switch" in body["reason"]
    assert status["healthy"] is False
    assert server.terminate() == 0


@pytest.mark.parametrize(("named", "healthy"), [("3.1.0", False), ("3.0.9", True)])
def test_a_host_fault_file_fails_only_the_version_it_names(
    start_server: Any, image_dir: Path, home: Path, named: str, healthy: bool
) -> None:
    apply_migrations(home / DB_RELATIVE, image_dir / "migrations")
    (home / DB_RELATIVE).parent.joinpath(f"FAIL_HEALTHCHECK.{named}").touch()
    server = start_server(MMO_VOXEL_VERSION="3.1.0")

    status = server.wait_for(lambda s: s["world_loaded"] and s["ticks_total"] > 20)

    code, body = server.get("/healthz")
    assert (code == 200) is healthy
    assert status["healthy"] is healthy
    if not healthy:
        assert f"FAIL_HEALTHCHECK.{named}" in body["reason"]
    assert server.terminate() == 0


# --------------------------------------------------------------------------------------------
# The simulation itself (in-process): deterministic under a seed
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server_module() -> Iterator[Any]:
    spec = importlib.util.spec_from_file_location("reference_server", SERVER_DIR / "server.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while it executes
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def run_simulation(module: Any, seed: int, ticks: int) -> list[tuple[int, int, int]]:
    sim = module.Simulation(seed, max_sessions=64, stream_fail_rate=0.05)
    trace = []
    for _ in range(ticks):
        sim.step()
        trace.append((sim.active_sessions, sim.voxel_stream_fail_total, len(sim.dirty)))
    return trace


def test_simulation_is_deterministic_under_a_seed(server_module: Any) -> None:
    first = run_simulation(server_module, seed=7, ticks=600)

    assert first == run_simulation(server_module, seed=7, ticks=600)
    assert first != run_simulation(server_module, seed=8, ticks=600)
    assert len({sessions for sessions, _, _ in first}) > 1  # sessions vary
    assert first[-1][1] > 0  # failures happen


def test_tick_rate_is_ticks_over_the_window_they_span(
    server_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MMO_VOXEL_TICK_WINDOW_S", "5")
    server = server_module.GameServer(server_module.Config.from_env())
    assert server.tick_rate(now=100.0) == 0.0  # no tick yet
    # 31 ticks 0.1 s apart in the window (30 intervals over 3 s), and two older than the window.
    server.state.tick_times.extend([90.0, 94.0] + [97.0 + i / 10 for i in range(31)])
    assert server.tick_rate(now=100.0) == 10.0
    server.state.tick_times.clear()
    server.state.tick_times.append(99.0)
    assert server.tick_rate(now=100.0) == 0.0  # one tick measures nothing


def test_required_schema_version_is_the_highest_shipped_migration(
    server_module: Any, tmp_path: Path
) -> None:
    for name in ("0001_create_chunks.sql", "0003_add_x.sql", "0002_add_y.sql", "notes.txt"):
        (tmp_path / name).write_text("-- migrate:up\n")

    assert server_module.required_schema_version(tmp_path) == 3
    assert server_module.required_schema_version(tmp_path / "absent") == 0


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MMO_VOXEL_HTTP_PORT", "eighty", "MMO_VOXEL_HTTP_PORT='eighty' is not a valid int"),
        ("MMO_VOXEL_TICK_HZ", "0", "MMO_VOXEL_TICK_HZ='0' must be >= 0.1"),
        ("MMO_VOXEL_HTTP_PORT", "70000", "MMO_VOXEL_HTTP_PORT='70000' must be <= 65535"),
        ("MMO_VOXEL_SEED", "x", "MMO_VOXEL_SEED='x' is not an integer"),
        ("MMO_VOXEL_STREAM_FAIL_RATE", "2", "must be between 0 and 1"),
    ],
)
def test_bad_configuration_names_the_variable(
    server_module: Any, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(server_module.ConfigError, match=message.replace("(", r"\(")):
        server_module.Config.from_env()


def test_default_db_path_is_godot_user_database(
    server_module: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("MMO_VOXEL_DB_PATH", raising=False)

    assert server_module.Config.from_env().db_path == tmp_path / DB_RELATIVE
