"""The metrics collector against a status server the test steers and real SQLite databases.

In-process (Collector.collect(), one collection per call, no sleeping but where time must pass):
what each line holds when the server answers, stops answering (a hung one: the status timeout
ends the read), restarts; db_latency_ms on a missing, locked (the busy timeout waits for the
writer, then gives up) or healthy database. As a process (the file the role installs, run the
way the systemd unit runs it): the JSONL and /metrics over time when the server dies, and the
file surviving a real logrotate run with the game_server role's own rotation rule.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from monitoring_helpers import (
    COLLECTOR,
    REPO,
    FakeStatusServer,
    make_world,
    parse_metrics,
    status_doc,
)
from polling import wait_until
from system_tools import free_port, require_tools

VALUE_KEYS = ("version", "tick_rate", "active_sessions", "db_latency_ms", "voxel_stream_fail")
ANTI_CHEAT_KINDS = ("build_rate", "fly", "reach", "speed")


@pytest.fixture(scope="module")
def mod() -> ModuleType:
    """The collector file the role installs, imported as a module."""
    spec = importlib.util.spec_from_file_location("mmo_voxel_metrics_collector", COLLECTOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def status() -> Iterator[FakeStatusServer]:
    server = FakeStatusServer(status_doc())
    yield server
    server.stop()


@pytest.fixture
def world(tmp_path: Path) -> Path:
    db = tmp_path / "data" / "world.db"
    make_world(db)
    return db


def make_collector(mod: ModuleType, tmp_path: Path, status_url: str, db: Path, **kw: Any) -> Any:
    return mod.Collector(
        status_url=status_url,
        db_path=db,
        output=tmp_path / "logs" / "metrics.jsonl",
        host="game-1",
        interval=kw.pop("interval", 60.0),
        status_timeout=kw.pop("status_timeout", 0.5),
        db_timeout=kw.pop("db_timeout", 0.3),
        **kw,
    )


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --------------------------------------------------------------------------------------------
# One collection at a time
# --------------------------------------------------------------------------------------------
def test_a_healthy_server_gives_every_value(
    mod: ModuleType, tmp_path: Path, status: FakeStatusServer, world: Path
) -> None:
    c = make_collector(mod, tmp_path, status.url, world)
    status.doc = status_doc(tick_rate=29.5, active_sessions=7, fail_total=40)
    first = c.collect()
    status.doc = status_doc(tick_rate=30.0, active_sessions=9, fail_total=46)
    second = c.collect()

    lines = jsonl(c.output)
    assert lines == [first, second]
    assert list(first) == ["ts", "host", *VALUE_KEYS, "anti_cheat"]
    assert first["anti_cheat"] is None  # no anti-cheat file given
    assert first["ts"].endswith("Z")
    assert first["host"] == "game-1"
    assert (first["version"], first["tick_rate"], first["active_sessions"]) == ("1.4.2", 29.5, 7)
    # No previous counter in the first interval: unknown, not 0.
    assert first["voxel_stream_fail"] is None
    assert second["voxel_stream_fail"] == 6
    assert isinstance(second["db_latency_ms"], float)
    assert 0 <= second["db_latency_ms"] < 300


@pytest.mark.parametrize("failure", ["refused", "hang", "error", "garbage"])
def test_a_server_that_stops_answering_gives_nulls_not_zeros(
    mod: ModuleType,
    tmp_path: Path,
    status: FakeStatusServer,
    world: Path,
    failure: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    c = make_collector(mod, tmp_path, status.url, world, status_timeout=0.3)
    status.doc = status_doc(fail_total=10)
    c.collect()
    c.collect()
    if failure == "refused":
        status.stop()
    else:
        status.mode = failure
    line = c.collect()
    if failure == "hang":
        # The status timeout ended the read: the collector went on while the server still held
        # the request unanswered, and its warning says the read timed out.
        assert status.held == 1, "the collector waited for the server instead of timing out"
        assert any("timed out" in message for message in collector_warnings(caplog)), caplog.text

    for key in ("version", "tick_rate", "active_sessions", "voxel_stream_fail"):
        assert line[key] is None, f"{key} must be null when the server does not answer"
    # The database is still there and is still measured.
    assert line["db_latency_ms"] is not None
    metrics = parse_metrics(c.render_metrics())
    for name in ("mmo_voxel_tick_rate", "mmo_voxel_active_sessions", "mmo_voxel_voxel_stream_fail"):
        assert name not in metrics, f"{name} must be absent (the dead-man path), not 0"
    assert "mmo_voxel_release_info" not in metrics
    assert "mmo_voxel_db_latency_ms" in metrics
    errors = dict((lab["source"], v) for lab, v in metrics["mmo_voxel_collector_read_errors_total"])
    assert errors["status"] == 1


def test_values_of_the_wrong_type_are_null(
    mod: ModuleType, tmp_path: Path, status: FakeStatusServer, world: Path
) -> None:
    c = make_collector(mod, tmp_path, status.url, world)
    status.doc = {
        "version": "",
        "tick_rate": "30",
        "active_sessions": True,
        "voxel_stream_fail_total": -1,
    }
    line = c.collect()
    for key in ("version", "tick_rate", "active_sessions", "voxel_stream_fail"):
        assert line[key] is None, key


def test_counter_reset_on_server_restart(
    mod: ModuleType, tmp_path: Path, status: FakeStatusServer, world: Path
) -> None:
    c = make_collector(mod, tmp_path, status.url, world)
    seen = []
    # 100 -> 105 -> restart (3) -> 7 -> server down -> 9 (no previous reading) -> 12
    for total in (100, 105, 3, 7, None, 9, 12):
        if total is None:
            status.mode = "error"
        else:
            status.mode = "ok"
            status.doc = status_doc(fail_total=total)
        seen.append(c.collect()["voxel_stream_fail"])
    assert seen == [None, 5, 3, 4, None, None, 3]


def test_restart_seen_through_uptime_when_the_counter_outgrew_the_last_value(
    mod: ModuleType, tmp_path: Path, status: FakeStatusServer, world: Path
) -> None:
    c = make_collector(mod, tmp_path, status.url, world)
    status.doc = status_doc(fail_total=10, uptime_s=5000)
    # Time passes between the readings, as between real collections: the collector compares
    # the server's uptime with it, so these sleeps are the behaviour under test.
    c.collect()
    time.sleep(0.2)
    status.doc = status_doc(fail_total=14, uptime_s=5000.2)
    assert c.collect()["voxel_stream_fail"] == 4
    time.sleep(0.2)
    # The server restarted 0.05 s ago (less than the time since the last reading) and already
    # counted 30: these 30 are the interval's, not 30 - 14.
    status.doc = status_doc(fail_total=30, uptime_s=0.05)
    assert c.collect()["voxel_stream_fail"] == 30


def test_db_latency_null_when_the_database_is_missing(
    mod: ModuleType, tmp_path: Path, status: FakeStatusServer
) -> None:
    missing = tmp_path / "data" / "world.db"
    c = make_collector(mod, tmp_path, status.url, missing)
    line = c.collect()
    assert line["db_latency_ms"] is None
    assert line["tick_rate"] == 30.0
    # mode=ro never creates the file.
    assert not missing.exists()
    assert "mmo_voxel_db_latency_ms" not in parse_metrics(c.render_metrics())


def test_db_latency_null_when_the_table_is_missing(
    mod: ModuleType, tmp_path: Path, status: FakeStatusServer
) -> None:
    db = tmp_path / "other.db"
    sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.close()
    c = make_collector(mod, tmp_path, status.url, db)
    assert c.collect()["db_latency_ms"] is None


def collector_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The collector's warnings so far (it says there why a value is null)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "mmo_voxel_metrics_collector" and r.levelno == logging.WARNING
    ]


def lock_world(db: Path, journal: str) -> sqlite3.Connection:
    """A connection holding the world's write lock in an open transaction, as a writer does
    mid-save (with locking_mode=EXCLUSIVE, a WAL database's readers are shut out too)."""
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    if journal == "wal-exclusive":
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE chunks SET payload = x'01' WHERE cx = 0")
    return holder


def release(holder: sqlite3.Connection) -> None:
    """Roll back and close (an exclusive locking mode keeps the lock until the close)."""
    holder.execute("ROLLBACK")
    holder.close()


def collect_in_background(c: Any) -> Future[dict[str, Any]]:
    """c.collect() in a thread of its own, so the test can act while the collector waits."""
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(c.collect)
    finally:
        pool.shutdown(wait=False)


def fds_open_on(path: Path) -> int:
    """How many file descriptors of this process have path open (Linux' /proc)."""
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            count += Path(os.readlink(fd)) == path.resolve()
        except OSError:  # closed since the listing
            continue
    return count


# Stops a test whose collector would never return; what the tests assert is the outcome.
HUNG_S = 60


@pytest.mark.parametrize("journal", ["rollback", "wal-exclusive"])
def test_db_latency_null_when_locked_past_the_timeout(
    mod: ModuleType,
    tmp_path: Path,
    status: FakeStatusServer,
    journal: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = tmp_path / "data" / "world.db"
    make_world(db, wal=journal != "rollback")
    c = make_collector(mod, tmp_path, status.url, db, db_timeout=0.3)
    assert c.collect()["db_latency_ms"] is not None

    holder = lock_world(db, journal)
    try:
        # The busy timeout ends the read by itself: the collection returns while the lock is
        # still held, with the reason in the collector's warning.
        line = collect_in_background(c).result(timeout=HUNG_S)
    finally:
        release(holder)
    assert line["db_latency_ms"] is None
    assert any("database is locked" in m for m in collector_warnings(caplog)), caplog.text
    # Once the lock is gone, the latency is a number again.
    assert c.collect()["db_latency_ms"] is not None


@pytest.mark.parametrize("journal", ["rollback", "wal-exclusive"])
def test_db_read_waits_for_a_lock_released_within_the_timeout(
    mod: ModuleType, tmp_path: Path, status: FakeStatusServer, journal: str
) -> None:
    """The busy timeout makes the read wait for a writer's lock rather than fail at once: the
    lock is released while the collector's read is waiting, and that read gives a latency."""
    db = tmp_path / "data" / "world.db"
    make_world(db, wal=journal != "rollback")
    # A busy timeout no test run reaches: the lock is released long before.
    c = make_collector(mod, tmp_path, status.url, db, db_timeout=float(HUNG_S))
    holder = lock_world(db, journal)
    try:
        held_open = fds_open_on(db)
        collection = collect_in_background(c)
        # SQLite opens the database file when the collector connects: from then on its read
        # is waiting for the lock.
        wait_until(
            lambda: collection.done() or fds_open_on(db) > held_open,
            HUNG_S,
            "the collector's connection to the locked database",
        )
    finally:
        release(holder)
    assert collection.result(timeout=HUNG_S)["db_latency_ms"] is not None


def test_the_database_is_never_written(
    mod: ModuleType, tmp_path: Path, status: FakeStatusServer, world: Path
) -> None:
    before = world.read_bytes()
    c = make_collector(mod, tmp_path, status.url, world)
    for _ in range(3):
        c.collect()
    assert world.read_bytes() == before


def test_db_ops_status_gauges(
    mod: ModuleType, tmp_path: Path, status: FakeStatusServer, world: Path
) -> None:
    status_file = tmp_path / "db_ops" / "status.json"
    c = make_collector(mod, tmp_path, status.url, world, db_ops_status=status_file)
    c.collect()
    metrics = parse_metrics(c.render_metrics())
    assert not [n for n in metrics if n.startswith("mmo_voxel_db_job_")], "no file: no gauges"

    status_file.parent.mkdir()
    status_file.write_text(
        json.dumps(
            {
                "backup": {
                    "result": "ok",
                    "finished_at": "2026-11-28T12:00:05Z",
                    "last_ok_at": "2026-11-28T12:00:05Z",
                    "detail": "ok",
                },
                "check": {
                    "result": "failed",
                    "finished_at": "2026-11-28T06:00:00Z",
                    "last_ok_at": None,
                    "detail": "integrity_check: 3 errors",
                },
            }
        ),
        encoding="utf-8",
    )
    c.collect()
    metrics = parse_metrics(c.render_metrics())
    ok = {lab["operation"]: v for lab, v in metrics["mmo_voxel_db_job_ok"]}
    assert ok == {"backup": 1.0, "check": 0.0}  # no drill entry: no drill gauge
    last_ok = {
        lab["operation"]: v for lab, v in metrics["mmo_voxel_db_job_last_ok_timestamp_seconds"]
    }
    # check's last_ok_at is null: no gauge for it.
    assert last_ok == {"backup": datetime(2026, 11, 28, 12, 0, 5, tzinfo=UTC).timestamp()}
    finished = {
        lab["operation"]: v for lab, v in metrics["mmo_voxel_db_job_finished_timestamp_seconds"]
    }
    assert finished["check"] == datetime(2026, 11, 28, 6, 0, 0, tzinfo=UTC).timestamp()

    status_file.write_text("{not json", encoding="utf-8")
    c.collect()
    metrics = parse_metrics(c.render_metrics())
    assert "mmo_voxel_db_job_ok" not in metrics


def test_a_stale_collection_is_no_longer_served(
    mod: ModuleType, tmp_path: Path, status: FakeStatusServer, world: Path
) -> None:
    """A hung collection loop must look like a dead collector, not like a frozen server."""
    c = make_collector(mod, tmp_path, status.url, world, interval=60.0)
    c.collect()
    now = time.time()
    assert "mmo_voxel_tick_rate" in parse_metrics(c.render_metrics(now))
    assert "mmo_voxel_tick_rate" in parse_metrics(c.render_metrics(now + 179))
    assert "mmo_voxel_tick_rate" not in parse_metrics(c.render_metrics(now + 181))


# --------------------------------------------------------------------------------------------
# Anti-cheat events, one collection at a time
# --------------------------------------------------------------------------------------------
def anti_cheat_line(check: str = "speed", session: object = 1) -> str:
    """One line as the reference server writes it (roles/server_build/files/reference_server)."""
    record = {"ts": "2026-11-28T12:00:00.000Z", "version": "1.4.2", "tick": 9, "session": session}
    return json.dumps({**record, "check": check, "score": 0.8}) + "\n"


def write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as fh:
        fh.write(text.encode() if isinstance(text, str) else text)


def anti_cheat_metrics(metrics: dict[str, list[tuple[dict[str, str], float]]]) -> dict[str, Any]:
    return {
        "events": {
            lab["kind"]: v for lab, v in metrics.get("mmo_voxel_anti_cheat_events_total", [])
        },
        "malformed": [v for _, v in metrics.get("mmo_voxel_anti_cheat_malformed_lines_total", [])],
        "players": {
            lab["player"]: v for lab, v in metrics.get("mmo_voxel_anti_cheat_player_events", [])
        },
    }


def test_anti_cheat_events_in_the_line_and_the_metrics(
    mod: ModuleType, tmp_path: Path, status: FakeStatusServer, world: Path
) -> None:
    events = tmp_path / "analytics" / "anti_cheat.jsonl"
    write(events, anti_cheat_line() * 20)  # before the collector starts: history
    c = make_collector(
        mod, tmp_path, status.url, world, anti_cheat=events, anti_cheat_top_players=2
    )
    first = c.collect()
    assert first["anti_cheat"] == {"events": {}, "players": {}, "malformed": 0}
    got = anti_cheat_metrics(parse_metrics(c.render_metrics()))
    # Every known kind from 0 (increase() then sees the first event); no player yet.
    assert got == {
        "events": dict.fromkeys(ANTI_CHEAT_KINDS, 0.0),
        "malformed": [0.0],
        "players": {},
    }

    write(
        events,
        anti_cheat_line("speed", 7) * 3
        + anti_cheat_line("fly", 7)
        + anti_cheat_line("reach", 8) * 2
        + anti_cheat_line("speed", 9)
        + "not json\n[1, 2]\n",
    )
    second = c.collect()
    assert second["anti_cheat"] == {
        "events": {"fly": 1, "reach": 2, "speed": 4},
        "players": {"7": 4, "8": 2},  # the top 2; player 9 is left out
        "malformed": 2,
    }
    assert jsonl(c.output)[-1]["anti_cheat"] == second["anti_cheat"]
    got = anti_cheat_metrics(parse_metrics(c.render_metrics()))
    assert got == {
        "events": {"build_rate": 0.0, "fly": 1.0, "reach": 2.0, "speed": 4.0},
        "malformed": [2.0],
        "players": {"7": 4.0, "8": 2.0},
    }

    write(events, anti_cheat_line("speed", 9))
    third = c.collect()
    assert third["anti_cheat"]["players"] == {"9": 1}
    got = anti_cheat_metrics(parse_metrics(c.render_metrics()))
    # Counters since the start; the players gauge is the last interval's only.
    assert got["events"]["speed"] == 5.0
    assert got["malformed"] == [2.0]
    assert got["players"] == {"9": 1.0}
    # An interval without events: no player series at all.
    c.collect()
    assert anti_cheat_metrics(parse_metrics(c.render_metrics()))["players"] == {}
    errors = dict(
        (lab["source"], v)
        for lab, v in parse_metrics(c.render_metrics())["mmo_voxel_collector_read_errors_total"]
    )
    assert errors["anti_cheat"] == 0


def test_anti_cheat_file_not_readable_gives_null_and_keeps_the_counters(
    mod: ModuleType, tmp_path: Path, status: FakeStatusServer, world: Path
) -> None:
    events = tmp_path / "analytics" / "anti_cheat.jsonl"
    c = make_collector(mod, tmp_path, status.url, world, anti_cheat=events)
    # Missing: no events, not an error.
    assert c.collect()["anti_cheat"] == {"events": {}, "players": {}, "malformed": 0}
    write(events, anti_cheat_line("fly", 3) * 2)
    assert c.collect()["anti_cheat"]["events"] == {"fly": 2}

    events.unlink()
    events.mkdir()  # a directory in its place: the file cannot be read at all
    line = c.collect()
    assert line["anti_cheat"] is None
    assert jsonl(c.output)[-1]["anti_cheat"] is None
    assert line["tick_rate"] == 30.0  # the other values do not suffer
    metrics = parse_metrics(c.render_metrics())
    got = anti_cheat_metrics(metrics)
    assert got["events"]["fly"] == 2.0  # counters stay
    assert got["players"] == {}
    errors = dict((lab["source"], v) for lab, v in metrics["mmo_voxel_collector_read_errors_total"])
    assert errors["anti_cheat"] == 1


def test_without_an_anti_cheat_file_there_are_no_anti_cheat_metrics(
    mod: ModuleType, tmp_path: Path, status: FakeStatusServer, world: Path
) -> None:
    c = make_collector(mod, tmp_path, status.url, world)
    assert c.collect()["anti_cheat"] is None
    metrics = parse_metrics(c.render_metrics())
    assert not [n for n in metrics if n.startswith("mmo_voxel_anti_cheat_")]
    sources = {lab["source"] for lab, _ in metrics["mmo_voxel_collector_read_errors_total"]}
    assert sources == {"status", "db", "db_ops_status"}


def test_a_stale_collection_drops_the_player_gauge_but_not_the_counters(
    mod: ModuleType, tmp_path: Path, status: FakeStatusServer, world: Path
) -> None:
    events = tmp_path / "analytics" / "anti_cheat.jsonl"
    c = make_collector(mod, tmp_path, status.url, world, anti_cheat=events, interval=60.0)
    write(events, anti_cheat_line("speed", 4) * 6)
    c.collect()
    now = time.time()
    assert anti_cheat_metrics(parse_metrics(c.render_metrics(now)))["players"] == {"4": 6.0}
    stale = anti_cheat_metrics(parse_metrics(c.render_metrics(now + 181)))
    assert stale["players"] == {}
    assert stale["events"]["speed"] == 6.0


# --------------------------------------------------------------------------------------------
# The collector as a process
# --------------------------------------------------------------------------------------------
class CollectorProcess:
    def __init__(
        self,
        tmp_path: Path,
        status_url: str,
        db: Path,
        interval: float = 0.5,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.port = free_port()
        self.output = tmp_path / "logs" / "metrics.jsonl"
        self.stderr = tmp_path / "collector.stderr"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(COLLECTOR),
                "--status-url",
                status_url,
                "--db",
                str(db),
                "--output",
                str(self.output),
                "--host",
                "game-1",
                "--interval",
                str(interval),
                "--status-timeout",
                "0.2",
                "--db-timeout",
                "0.2",
                "--listen-port",
                str(self.port),
                *extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.stderr.open("w"),
        )

    def metrics(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=2) as resp:
            return parse_metrics(resp.read().decode())

    def lines(self) -> list[dict[str, Any]]:
        return jsonl(self.output) if self.output.exists() else []

    def running(self) -> None:
        """Fails, with the collector's log, when the process exited."""
        assert self.proc.poll() is None, self.stderr.read_text()

    def wait_lines(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        def enough() -> list[dict[str, Any]] | None:
            self.running()
            lines = self.lines()
            return lines if len(lines) >= n else None

        return wait_until(enough, timeout, f"{n} lines", context=self.lines)

    def wait_metrics(self, what: str, check: Any, timeout: float = 10.0) -> Any:
        """Poll /metrics until check(metrics) is truthy; return its value."""

        def checked() -> Any:
            self.running()
            return check(self.metrics())

        # A URLError: not listening yet, it is starting.
        return wait_until(checked, timeout, what, ignoring=(urllib.error.URLError,))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def process_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[CollectorProcess] = []

    def start(
        status_url: str, db: Path, interval: float = 0.5, extra_args: tuple[str, ...] = ()
    ) -> CollectorProcess:
        p = CollectorProcess(tmp_path, status_url, db, interval, extra_args)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def test_process_server_dies_gives_nulls_and_absent_series(
    process_factory: Any, status: FakeStatusServer, world: Path
) -> None:
    status.doc = status_doc(fail_total=3)
    p = process_factory(status.url, world)
    lines = p.wait_lines(3)
    assert all(line["tick_rate"] == 30.0 for line in lines)
    assert "mmo_voxel_tick_rate" in p.metrics()

    status.stop()
    n = len(p.lines())
    after = p.wait_lines(n + 3)[n + 1 :]
    for line in after:
        assert [line[k] for k in ("version", "tick_rate", "active_sessions")] == [None] * 3
        assert line["voxel_stream_fail"] is None
        assert line["db_latency_ms"] is not None
    metrics = p.metrics()
    assert "mmo_voxel_tick_rate" not in metrics
    assert "mmo_voxel_active_sessions" not in metrics
    assert "mmo_voxel_db_latency_ms" in metrics
    # The collector itself is alive: Prometheus sees up == 1 and the dead man fires on the
    # missing tick_rate (tests/integration/test_alert_rules.py).
    assert metrics["mmo_voxel_collector_collections_total"][0][1] >= len(lines) + 3
    # The cadence holds while the server is gone (timeouts do not pile up).
    stamps = [line["ts"] for line in p.lines()]
    assert len(set(stamps)) == len(stamps)


def test_process_stops_on_sigterm(
    process_factory: Any, status: FakeStatusServer, world: Path
) -> None:
    p = process_factory(status.url, world)
    p.wait_lines(1)
    p.proc.send_signal(signal.SIGTERM)
    assert p.proc.wait(5) == 0


def test_process_counts_anti_cheat_events_written_while_it_runs(
    process_factory: Any, status: FakeStatusServer, world: Path, tmp_path: Path
) -> None:
    """The file the role's unit passes with --anti-cheat: history is not counted, lines
    written while the collector runs are (by kind, by player, malformed apart), a restart
    starts again at the end, and a copytruncate rotation is followed."""
    events = tmp_path / "analytics" / "anti_cheat.jsonl"
    write(events, anti_cheat_line("speed") * 10)
    args = ("--anti-cheat", str(events), "--anti-cheat-top-players", "2")
    p = process_factory(status.url, world, extra_args=args)
    p.wait_lines(1)  # started: its position in the file is taken

    def counted(speed: float, malformed: float) -> Any:
        def check(metrics: dict[str, Any]) -> Any:
            got = anti_cheat_metrics(metrics)
            return (
                got
                if (got["events"].get("speed"), got["malformed"]) == (speed, [malformed])
                else None
            )

        return check

    write(
        events,
        (anti_cheat_line("speed", 1) * 3 + anti_cheat_line("fly", "alice")).encode()
        + b"\x00\x01binary \xff\xfe garbage\n"  # not UTF-8
        + b'{"check": "speed", "session": 1, "tick": 4',  # cut off: waits for its end
    )
    got = p.wait_metrics("3 speed events and 1 malformed line", counted(3.0, 1.0))
    assert got["events"] == {"build_rate": 0.0, "fly": 1.0, "reach": 0.0, "speed": 3.0}
    write(events, "}\n[1, 2, 3]\n")  # the cut-off record is whole now; an array is no record
    p.wait_metrics("the completed record and the array", counted(4.0, 2.0))
    # The line of that collection is appended just after its metrics are updated.
    wait_until(
        lambda: sum((line["anti_cheat"] or {}).get("malformed", 0) for line in p.lines()) >= 2,
        10,
        "the line of the collection that counted the second malformed line",
        context=p.lines,
    )
    lines = p.lines()
    per_player: dict[str, int] = {}
    for line in lines:
        for player, n in (line["anti_cheat"] or {}).get("players", {}).items():
            per_player[player] = per_player.get(player, 0) + n
    assert per_player == {"1": 4, "alice": 1}
    assert sum(line["anti_cheat"]["malformed"] for line in lines) == 2

    # A restart: the counters start from 0 and the file's lines are not counted again.
    p.stop()
    p = process_factory(status.url, world, extra_args=args)
    p.wait_metrics(
        "a first collection of the new process",
        lambda m: m.get("mmo_voxel_collector_collections_total", [({}, 0.0)])[0][1] >= 2,
    )
    assert anti_cheat_metrics(p.metrics())["events"]["speed"] == 0.0
    # logrotate's copytruncate: the same file, emptied, then written again.
    with events.open("r+b") as fh:
        fh.truncate(0)
    write(events, anti_cheat_line("reach", 2) * 2)
    got = p.wait_metrics(
        "2 reach events after the truncation",
        lambda m: (
            anti_cheat_metrics(m) if anti_cheat_metrics(m)["events"]["reach"] == 2.0 else None
        ),
    )
    assert got["events"]["speed"] == 0.0
    assert got["malformed"] == [0.0]


def test_arguments_are_checked(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(COLLECTOR), "--db", "x", "--output", "y", "--interval", "1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "--status-timeout plus --db-timeout must be shorter than --interval" in result.stderr


@pytest.mark.parametrize("top", ["-1", "101"])
def test_the_number_of_player_series_is_checked(tmp_path: Path, top: str) -> None:
    result = subprocess.run(
        [
            *(sys.executable, str(COLLECTOR), "--db", "x", "--output", "y"),
            *("--anti-cheat", "z", "--anti-cheat-top-players", top),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "--anti-cheat-top-players must be between 0 and 100" in result.stderr


LOGROTATE = shutil.which("logrotate") or "/usr/sbin/logrotate"


def test_rotation_by_the_game_server_logrotate_rule(
    process_factory: Any,
    status: FakeStatusServer,
    world: Path,
    tmp_path: Path,
    ansible_env: dict[str, str],
    ansible_playbook: str,
) -> None:
    """metrics.jsonl is rotated by roles/game_server's logrotate rule (copytruncate).

    The rule is rendered from that role's template (user root here: the test is not the
    server's user), then the real logrotate rotates while the collector keeps writing: the old
    lines are in metrics.jsonl.1, new ones keep arriving in metrics.jsonl, every line is whole.
    """
    require_tools("logrotate", LOGROTATE)
    logs = tmp_path / "logs"
    analytics = tmp_path / "analytics"
    logs.mkdir(exist_ok=True)
    analytics.mkdir()
    conf = tmp_path / "logrotate.conf"
    template = REPO / "roles/game_server/templates/etc/logrotate.d/mmo-voxel-server.j2"
    playbook = tmp_path / "render.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Render the game server's logrotate rule",
                    "hosts": "localhost",
                    "connection": "local",
                    "gather_facts": False,
                    "vars": {
                        "game_server_log_dir": str(logs),
                        "game_server_analytics_dir": str(analytics),
                        "game_server_logrotate_keep": 3,
                        "game_server_user": "root",
                    },
                    "tasks": [
                        {
                            "name": "Render the rule",
                            "ansible.builtin.template": {
                                "src": str(template),
                                "dest": str(conf),
                                "mode": "0644",
                            },
                        }
                    ],
                }
            ]
        ),
        encoding="utf-8",
    )
    rendered = subprocess.run(
        [ansible_playbook, "-i", "localhost,", str(playbook)],
        env=ansible_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stdout[-3000:]

    p = process_factory(status.url, world, interval=0.5)
    p.wait_lines(5)
    state = tmp_path / "logrotate.state"
    result = subprocess.run(
        [LOGROTATE, "--force", "--state", str(state), str(conf)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rotated = logs / "metrics.jsonl.1"
    assert rotated.exists(), sorted(x.name for x in logs.iterdir())
    old = jsonl(rotated)
    assert len(old) >= 5
    new = p.wait_lines(3)
    assert new[0]["ts"] > old[-1]["ts"]
    # copytruncate: the live file starts from zero (no hole of NUL bytes from an old offset).
    raw = p.output.read_bytes()
    assert b"\x00" not in raw
    # A second rotation the ordinary way (rename; the collector reopens by name every line).
    p.output.rename(logs / "metrics.jsonl.moved")
    assert p.wait_lines(2)[0]["host"] == "game-1"
