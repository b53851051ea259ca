"""REFERENCE game server for mmo_voxel -- NOT the real game server.

The real dedicated server is the studio's Godot build. This small stdlib-only process keeps the
same runtime contract (see README.md next to this file) so that deploys, health gates, rollbacks
and monitoring can be exercised against a real process:

- ``GET /healthz``: 200 once the world is loaded (database opened, schema checked) and the tick
  loop runs; 503 before that, while the schema is too old, and whenever the fault switch is on.
- ``GET /status``: JSON with ``version``, ``tick_rate`` (measured), ``active_sessions``,
  ``voxel_stream_fail_total`` and more.
- A tick loop at a target rate that edits chunks in memory and saves them to the SQLite world
  database (``chunks`` table) every N ticks.
- SIGTERM/SIGINT: stop accepting HTTP, finish the tick, save, checkpoint the WAL, close, exit 0.
- ``POST /admin/save`` with ``Authorization: Bearer <token>`` (the token read from the file in
  ``MMO_VOXEL_ADMIN_TOKEN_FILE``): ask for a save at the next tick (a drain step before a stop).
  Without a token file, or with an empty one, the admin API is off (404).
- Anti-cheat events (simulated) appended as JSON lines to ``anti_cheat.jsonl`` in Godot's
  ``user://analytics/`` (``MMO_VOXEL_ANALYTICS_DIR``), the file the log shipper sends to Loki.

It never creates or migrates the schema: the deploy applies the migrations in ``migrations/``
first. Every setting is an environment variable; README.md lists them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import re
import signal
import sqlite3
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MIGRATIONS_DIR = HERE / "migrations"
VERSION_FILE = HERE / "VERSION"
FAIL_HEALTHCHECK_FILE = HERE / "FAIL_HEALTHCHECK"
PROJECT_NAME = "mmo_voxel"
MIGRATION_RE = re.compile(r"^(\d{4,})_[a-z0-9_]+\.sql$")

# Chunk coordinates the simulation edits: a bounded area so rows get replaced, not only added.
WORLD_XZ = range(-16, 16)
WORLD_Y = range(4)


# --------------------------------------------------------------------------------------------
# Logging: one JSON object per line on stdout.
# --------------------------------------------------------------------------------------------
_LOG_LOCK = threading.Lock()
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
_LOG_LEVEL = _LEVELS.get(os.environ.get("MMO_VOXEL_LOG_LEVEL", "info").lower(), 20)


def utc_now() -> str:
    """The current time as RFC 3339 UTC with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def log(event: str, level: str = "info", **fields: Any) -> None:
    """Write one event as one JSON line to stdout."""
    if _LEVELS[level] < _LOG_LEVEL:
        return
    line = json.dumps({"ts": utc_now(), "level": level, "event": event, **fields}, default=str)
    with _LOG_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------
class ConfigError(ValueError):
    """An environment variable has a value the server cannot use."""


def _env_number(
    name: str, default: float, kind: type, minimum: float, maximum: float | None = None
) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return kind(default)
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be >= {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={raw!r} must be <= {maximum}")
    return value


def default_db_path() -> Path:
    """Godot's ``user://database/world.db`` for the project on Linux."""
    home = Path(os.environ.get("HOME") or Path.home())
    data_home = home / ".local" / "share"
    return data_home / "godot" / "app_userdata" / PROJECT_NAME / "database" / "world.db"


def default_analytics_dir() -> Path:
    """Godot's user://analytics/ for this project."""
    return default_db_path().parent.parent / "analytics"


def read_admin_token(path: str) -> str:
    """The admin token from its file; empty (admin API off) without a file."""
    if not path:
        return ""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"MMO_VOXEL_ADMIN_TOKEN_FILE={path}: {exc.strerror}") from None


def read_version() -> str:
    """MMO_VOXEL_VERSION, else the VERSION file the image build writes, else ``0.0.0-dev``."""
    env = os.environ.get("MMO_VOXEL_VERSION", "").strip()
    if env:
        return env
    try:
        text = VERSION_FILE.read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    return text or "0.0.0-dev"


def required_schema_version(migrations_dir: Path = MIGRATIONS_DIR) -> int:
    """The highest migration version this build ships (0 when it ships none)."""
    versions = [
        int(m.group(1))
        for p in (migrations_dir.iterdir() if migrations_dir.is_dir() else [])
        if (m := MIGRATION_RE.match(p.name))
    ]
    return max(versions, default=0)


@dataclass(frozen=True)
class Config:
    """Every setting of the server; each comes from one environment variable."""

    http_host: str
    http_port: int
    db_path: Path
    tick_hz: float
    save_every_ticks: int
    tick_window_s: float
    grace_s: float
    busy_timeout_ms: int
    load_delay_s: float
    load_retry_s: float
    seed: int | None
    max_sessions: int
    stream_fail_rate: float
    force_fail_healthcheck: bool
    version: str
    required_schema: int
    analytics_dir: Path
    anti_cheat_rate: float
    admin_token: str

    @classmethod
    def from_env(cls) -> Config:
        """Read the configuration; raise ConfigError naming the variable on a bad value."""
        env = os.environ
        seed_raw = env.get("MMO_VOXEL_SEED", "")
        try:
            seed = int(seed_raw) if seed_raw else None
        except ValueError:
            raise ConfigError(f"MMO_VOXEL_SEED={seed_raw!r} is not an integer") from None
        rate = _env_number("MMO_VOXEL_STREAM_FAIL_RATE", 0.002, float, 0.0)
        if rate > 1:
            raise ConfigError(f"MMO_VOXEL_STREAM_FAIL_RATE={rate} must be between 0 and 1")
        cheat_rate = _env_number("MMO_VOXEL_ANTI_CHEAT_RATE", 0.0005, float, 0.0)
        if cheat_rate > 1:
            raise ConfigError(f"MMO_VOXEL_ANTI_CHEAT_RATE={cheat_rate} must be between 0 and 1")
        return cls(
            http_host=env.get("MMO_VOXEL_HTTP_HOST", "0.0.0.0"),  # noqa: S104 - container port
            http_port=_env_number("MMO_VOXEL_HTTP_PORT", 8080, int, 0, 65535),
            db_path=Path(env.get("MMO_VOXEL_DB_PATH") or default_db_path()),
            tick_hz=_env_number("MMO_VOXEL_TICK_HZ", 30, float, 0.1),
            save_every_ticks=_env_number("MMO_VOXEL_SAVE_EVERY_TICKS", 30, int, 1),
            tick_window_s=_env_number("MMO_VOXEL_TICK_WINDOW_S", 5, float, 0.5),
            grace_s=_env_number("MMO_VOXEL_GRACE_S", 10, float, 0.1),
            busy_timeout_ms=_env_number("MMO_VOXEL_BUSY_TIMEOUT_MS", 5000, int, 0),
            load_delay_s=_env_number("MMO_VOXEL_WORLD_LOAD_DELAY_S", 0, float, 0),
            load_retry_s=_env_number("MMO_VOXEL_LOAD_RETRY_S", 5, float, 0.1),
            seed=seed,
            max_sessions=_env_number("MMO_VOXEL_MAX_SESSIONS", 64, int, 1),
            stream_fail_rate=rate,
            force_fail_healthcheck=env.get("MMO_VOXEL_FAIL_HEALTHCHECK", "") == "1",
            version=read_version(),
            required_schema=required_schema_version(),
            analytics_dir=Path(env.get("MMO_VOXEL_ANALYTICS_DIR") or default_analytics_dir()),
            anti_cheat_rate=cheat_rate,
            admin_token=read_admin_token(env.get("MMO_VOXEL_ADMIN_TOKEN_FILE", "")),
        )


# --------------------------------------------------------------------------------------------
# Simulation: deterministic under a seed, no I/O.
# --------------------------------------------------------------------------------------------
class Simulation:
    """The simulated game world: sessions, chunk edits and voxel stream failures.

    Everything is drawn from one ``random.Random(seed)``, so the same seed gives the same
    sequence of sessions, edits and failures tick by tick.
    """

    def __init__(
        self,
        seed: int | None,
        max_sessions: int,
        stream_fail_rate: float,
        anti_cheat_rate: float = 0.0,
    ) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - simulation, not security
        self.max_sessions = max_sessions
        self.stream_fail_rate = stream_fail_rate
        self.anti_cheat_rate = anti_cheat_rate
        self.anti_cheat_events: list[dict[str, Any]] = []
        self.ticks = 0
        self.active_sessions = self.rng.randint(0, max_sessions // 4)
        self.voxel_stream_fail_total = 0
        self.dirty: dict[tuple[int, int, int], bytes] = {}
        self._entities = [self.rng.random() for _ in range(256)]

    def step(self) -> None:
        """Advance the world by one tick."""
        rng = self.rng
        self.ticks += 1
        # Some work: move the entities.
        self._entities = [(x * 1.000_001 + 0.000_37) % 1.0 for x in self._entities]
        # Players join and leave.
        if rng.random() < 0.25:
            delta = rng.choice((-1, 1))
            self.active_sessions = min(self.max_sessions, max(0, self.active_sessions + delta))
        # Players edit the world: one chunk per tick changes in memory.
        coords = (rng.choice(WORLD_XZ), rng.choice(WORLD_Y), rng.choice(WORLD_XZ))
        self.dirty[coords] = rng.randbytes(rng.randint(256, 1024))
        # Streaming a chunk to a client fails now and then.
        if self.active_sessions and rng.random() < self.stream_fail_rate:
            self.voxel_stream_fail_total += 1
        # The anti-cheat check flags a player now and then.
        if self.active_sessions and rng.random() < self.anti_cheat_rate:
            self.anti_cheat_events.append(
                {
                    "tick": self.ticks,
                    "session": rng.randrange(self.active_sessions),
                    "check": rng.choice(("speed", "reach", "fly", "build_rate")),
                    "score": round(rng.uniform(0.5, 1.0), 3),
                }
            )

    def take_dirty(self) -> dict[tuple[int, int, int], bytes]:
        """Hand over the chunks edited since the last save."""
        dirty, self.dirty = self.dirty, {}
        return dirty


# --------------------------------------------------------------------------------------------
# World database
# --------------------------------------------------------------------------------------------
class WorldNotReady(RuntimeError):
    """The world cannot be loaded (yet); the message says why."""


def open_world(cfg: Config) -> tuple[sqlite3.Connection, int]:
    """Open the existing world database and check its schema; never create or migrate it."""
    if not cfg.db_path.is_file():
        raise WorldNotReady(
            f"database {cfg.db_path} does not exist; run the migrations before starting the server"
        )
    conn = sqlite3.connect(
        f"file:{cfg.db_path}?mode=rw",
        uri=True,
        timeout=cfg.busy_timeout_ms / 1000,
        check_same_thread=False,
        isolation_level=None,
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(cfg.busy_timeout_ms)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise WorldNotReady(f"database {cfg.db_path} refused WAL mode (journal_mode={mode})")
        conn.execute("PRAGMA synchronous = NORMAL")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        schema = 0
        if "schema_migrations" in tables:
            schema = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] or 0
        if schema < cfg.required_schema:
            raise WorldNotReady(
                f"schema version {schema} of {cfg.db_path} is below the version"
                f" {cfg.required_schema} this build requires; apply the migrations first"
            )
        if "chunks" not in tables:
            raise WorldNotReady(f"table chunks is missing in {cfg.db_path}")
    except BaseException:
        conn.close()
        raise
    return conn, int(schema)


def save_chunks(conn: sqlite3.Connection, chunks: dict[tuple[int, int, int], bytes]) -> int:
    """Write the chunks in one transaction; return how many rows were written."""
    if not chunks:
        return 0
    now = utc_now()
    rows = [
        (cx, cy, cz, payload, hashlib.sha256(payload).hexdigest(), now)
        for (cx, cy, cz), payload in sorted(chunks.items())
    ]
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            "INSERT OR REPLACE INTO chunks (cx, cy, cz, payload, checksum, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(rows)


# --------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------
@dataclass
class State:
    """What the HTTP thread reads; written by the tick thread under ``lock``."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    started: float = field(default_factory=time.monotonic)
    world_loaded: bool = False
    not_ready_reason: str | None = "world loading"
    schema_version: int | None = None
    ticks_total: int = 0
    last_tick: float = 0.0
    tick_times: deque[float] = field(default_factory=deque)
    active_sessions: int = 0
    voxel_stream_fail_total: int = 0
    chunks_saved_total: int = 0
    db_write_errors_total: int = 0
    last_save_ms: float | None = None
    stopping: bool = False


class GameServer:
    """The tick loop, the world database and the HTTP endpoints."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.state = State()
        self.sim = Simulation(cfg.seed, cfg.max_sessions, cfg.stream_fail_rate, cfg.anti_cheat_rate)
        self.stop = threading.Event()
        # Set by POST /admin/save (HTTP thread); the tick thread, which owns the database, saves.
        self.save_requested = threading.Event()
        self.conn: sqlite3.Connection | None = None
        self.httpd: ThreadingHTTPServer | None = None
        self.stop_signal: str | None = None

    # -- health ---------------------------------------------------------------------------
    def fault_switch(self) -> str | None:
        """Why the fault switch is on, or None."""
        if self.cfg.force_fail_healthcheck:
            return "fault switch MMO_VOXEL_FAIL_HEALTHCHECK=1"
        if FAIL_HEALTHCHECK_FILE.exists():
            return f"fault switch file {FAIL_HEALTHCHECK_FILE}"
        # One host's fault: a file beside that host's world naming this version (a fleet
        # test makes one version fail on one host only; the image is the same everywhere).
        host_switch = self.cfg.db_path.parent / f"FAIL_HEALTHCHECK.{self.cfg.version}"
        if host_switch.exists():
            return f"fault switch file {host_switch}"
        return None

    def tick_rate(self, now: float) -> float:
        """Ticks per second measured over the last window (0.0 until two ticks are seen)."""
        with self.state.lock:
            times = [t for t in self.state.tick_times if now - t <= self.cfg.tick_window_s]
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return round((len(times) - 1) / (times[-1] - times[0]), 2)

    def health(self) -> tuple[bool, str]:
        """(healthy, reason) as /healthz reports it."""
        st = self.state
        if st.stopping:
            return False, "shutting down"
        if not st.world_loaded:
            return False, st.not_ready_reason or "world not loaded"
        if st.ticks_total == 0:
            return False, "tick loop not started"
        stall = max(1.0, 10.0 / self.cfg.tick_hz)
        if time.monotonic() - st.last_tick > stall:
            return False, f"tick loop stalled for more than {stall:.1f} s"
        fault = self.fault_switch()
        if fault:
            return False, fault
        return True, "ok"

    def status(self) -> dict[str, Any]:
        """The /status document."""
        now = time.monotonic()
        healthy, reason = self.health()
        rate = self.tick_rate(now)
        st = self.state
        with st.lock:
            return {
                "version": self.cfg.version,
                "tick_rate": rate,
                "tick_rate_target": self.cfg.tick_hz,
                "active_sessions": st.active_sessions,
                "voxel_stream_fail_total": st.voxel_stream_fail_total,
                "schema_version": st.schema_version,
                "required_schema_version": self.cfg.required_schema,
                "uptime_s": round(now - st.started, 3),
                "world_loaded": st.world_loaded,
                "healthy": healthy,
                "reason": reason,
                "ticks_total": st.ticks_total,
                "chunks_saved_total": st.chunks_saved_total,
                "db_write_errors_total": st.db_write_errors_total,
                "last_save_ms": st.last_save_ms,
                "reference_server": True,
            }

    # -- HTTP -----------------------------------------------------------------------------
    def start_http(self) -> None:
        """Listen on the configured address in a background thread."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "mmo-voxel-reference"

            def _send(self, code: int, doc: dict[str, Any]) -> None:
                body = (json.dumps(doc) + "\n").encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    healthy, reason = server.health()
                    self._send(
                        200 if healthy else 503,
                        {"status": "ok" if healthy else "unavailable", "reason": reason},
                    )
                elif path == "/status":
                    self._send(200, server.status())
                else:
                    self._send(404, {"error": f"no such endpoint {path}"})

            def do_POST(self) -> None:
                path = self.path.split("?", 1)[0]
                token = server.cfg.admin_token
                if path != "/admin/save" or not token:
                    self._send(404, {"error": f"no such endpoint {path}"})
                    return
                given = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
                if not hmac.compare_digest(given.encode(), token.encode()):
                    log("admin_refused", level="warning", client=self.client_address[0])
                    self._send(401, {"error": "a valid admin token is required"})
                    return
                server.save_requested.set()
                self._send(202, {"status": "save requested"})

            def log_message(self, format: str, *args: Any) -> None:
                log(
                    "http_request", level="debug", client=self.client_address[0], line=format % args
                )

        self.httpd = ThreadingHTTPServer((self.cfg.http_host, self.cfg.http_port), Handler)
        self.httpd.daemon_threads = True
        host, port = self.httpd.server_address[:2]
        threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True).start()
        log("http_listening", host=host, port=port)

    def stop_http(self) -> None:
        """Stop accepting requests."""
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
            log("http_stopped")

    # -- world ------------------------------------------------------------------------------
    def load_world(self) -> bool:
        """Try once to open the world; on refusal record and log why."""
        try:
            self.conn, schema = open_world(self.cfg)
        except (WorldNotReady, sqlite3.Error) as exc:
            reason = str(exc)
            with self.state.lock:
                self.state.not_ready_reason = reason
            log(
                "world_load_refused", level="error", reason=reason, retry_in_s=self.cfg.load_retry_s
            )
            return False
        with self.state.lock:
            self.state.world_loaded = True
            self.state.not_ready_reason = None
            self.state.schema_version = schema
        count = self.conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        log(
            "world_loaded",
            db_path=str(self.cfg.db_path),
            schema_version=schema,
            required_schema_version=self.cfg.required_schema,
            chunks=count,
        )
        return True

    def save(self, final: bool = False) -> None:
        """Flush the chunks edited since the last save."""
        assert self.conn is not None  # noqa: S101 - only called once the world is loaded
        chunks = self.sim.take_dirty()
        started = time.monotonic()
        try:
            written = save_chunks(self.conn, chunks)
        except sqlite3.Error as exc:
            with self.state.lock:
                self.state.db_write_errors_total += 1
            # Keep the edits for the next save rather than losing them.
            self.sim.dirty = {**chunks, **self.sim.dirty}
            log("save_failed", level="error", error=str(exc), chunks=len(chunks))
            if final:
                raise
            return
        elapsed_ms = round((time.monotonic() - started) * 1000, 2)
        with self.state.lock:
            self.state.chunks_saved_total += written
            self.state.last_save_ms = elapsed_ms
        if final:
            log("final_save", chunks=written, duration_ms=elapsed_ms)

    # -- main loop ---------------------------------------------------------------------------
    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; return the exit code."""
        cfg = self.cfg
        log(
            "starting",
            version=cfg.version,
            reference_server=True,
            db_path=str(cfg.db_path),
            tick_hz=cfg.tick_hz,
            required_schema_version=cfg.required_schema,
            seed=cfg.seed,
        )
        self.start_http()
        if cfg.load_delay_s and self.stop.wait(cfg.load_delay_s):
            return self.shutdown()
        while not self.load_world():
            if self.stop.wait(cfg.load_retry_s):
                return self.shutdown()
        dt = 1.0 / cfg.tick_hz
        next_tick = time.monotonic()
        while not self.stop.is_set():
            self.tick()
            next_tick += dt
            now = time.monotonic()
            if now - next_tick > 5 * dt:  # far behind: do not try to catch up in a burst
                next_tick = now
            self.stop.wait(max(0.0, next_tick - now))
        return self.shutdown()

    def tick(self) -> None:
        """One tick: simulate, publish the counters, save every N ticks."""
        self.sim.step()
        now = time.monotonic()
        st = self.state
        with st.lock:
            st.ticks_total = self.sim.ticks
            st.last_tick = now
            st.tick_times.append(now)
            while st.tick_times and now - st.tick_times[0] > self.cfg.tick_window_s:
                st.tick_times.popleft()
            st.active_sessions = self.sim.active_sessions
            st.voxel_stream_fail_total = self.sim.voxel_stream_fail_total
        if self.sim.anti_cheat_events:
            self.write_anti_cheat(self.sim.anti_cheat_events)
            self.sim.anti_cheat_events = []
        if self.save_requested.is_set():
            self.save_requested.clear()
            self.save()
            log("admin_save", chunks_saved_total=self.state.chunks_saved_total)
        elif self.sim.ticks % self.cfg.save_every_ticks == 0:
            self.save()

    def write_anti_cheat(self, events: list[dict[str, Any]]) -> None:
        """Append the events to anti_cheat.jsonl; opened per write so rotation needs no signal."""
        lines = "".join(
            json.dumps({"ts": utc_now(), "version": self.cfg.version, **event}) + "\n"
            for event in events
        )
        try:
            self.cfg.analytics_dir.mkdir(parents=True, exist_ok=True)
            with (self.cfg.analytics_dir / "anti_cheat.jsonl").open("a", encoding="utf-8") as out:
                out.write(lines)
        except OSError as exc:
            # Analytics must never stop the game; the log says what was lost.
            log("anti_cheat_write_failed", level="error", error=str(exc), events=len(events))

    def shutdown(self) -> int:
        """Stop accepting, save, checkpoint, close; bounded by the grace period."""
        started = time.monotonic()
        with self.state.lock:
            self.state.stopping = True
        log("shutdown_started", signal=self.stop_signal, grace_s=self.cfg.grace_s)
        watchdog = threading.Timer(self.cfg.grace_s, self._grace_exceeded)
        watchdog.daemon = True
        watchdog.start()
        code = 0
        try:
            self.stop_http()
            if self.conn is not None:
                try:
                    self.save(final=True)
                    busy, log_pages, checkpointed = self.conn.execute(
                        "PRAGMA wal_checkpoint(TRUNCATE)"
                    ).fetchone()
                    log("wal_checkpoint", busy=busy, log_pages=log_pages, checkpointed=checkpointed)
                    if busy:
                        code = 1
                except sqlite3.Error as exc:
                    log("final_save_failed", level="error", error=str(exc))
                    code = 1
                finally:
                    self.conn.close()
                    self.conn = None
        finally:
            watchdog.cancel()
        log(
            "shutdown_complete",
            level="info" if code == 0 else "error",
            exit_code=code,
            duration_ms=round((time.monotonic() - started) * 1000, 2),
            ticks_total=self.state.ticks_total,
        )
        return code

    def _grace_exceeded(self) -> None:
        log("shutdown_grace_exceeded", level="error", grace_s=self.cfg.grace_s)
        os._exit(2)


def main() -> int:
    """Entry point: read the configuration, install the signal handlers, run."""
    try:
        cfg = Config.from_env()
    except ConfigError as exc:
        log("config_error", level="error", error=str(exc))
        return 64
    server = GameServer(cfg)

    def on_signal(signum: int, _frame: Any) -> None:
        # No logging here: the handler may interrupt a log write that holds the log lock.
        server.stop_signal = signal.Signals(signum).name
        server.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        return server.run()
    except OSError as exc:  # e.g. the port is taken
        log("fatal", level="error", error=str(exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())
