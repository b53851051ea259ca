#!/usr/bin/env python3
"""mmo_voxel metrics collector: the game server's vital signs as JSON lines and Prometheus metrics.

One file, Python 3.11 standard library only, so it can be copied to any game server host.

Every ``--interval`` seconds (default 60) it

- reads the game server's ``GET /status`` (``version``, ``tick_rate``, ``active_sessions``,
  ``voxel_stream_fail_total``);
- measures ``db_latency_ms`` on the real world database, read-only: a fresh connection opened
  with the ``file:...?mode=ro`` URI and a busy timeout runs one cheap indexed read (the first
  key of the ``chunks`` primary key, a B-tree descent whatever the world's size); the time from
  opening to the fetched row is the latency, so waiting for a lock is part of it, and a
  database that is missing, unreadable or locked past the timeout gives ``null``;
- turns the failure counter into failures in the interval (a counter lower than the last one,
  or an ``uptime_s`` shorter than the time since the last reading, is a server restart: the
  failures in the interval are then the new counter, as Prometheus' ``increase()`` counts them;
  without a reading in the previous interval there is nothing to subtract from: ``null``);
- appends one JSON line (``ts``, ``host``, ``version``, ``tick_rate``, ``active_sessions``,
  ``db_latency_ms``, ``voxel_stream_fail``) to ``--output``. The file is opened, appended and
  closed for every line, so logrotate's ``copytruncate`` (and a rename) need no signal.

A value it could not read is ``null`` in the line and absent from the metrics, never ``0``.

``GET /metrics`` on ``--listen-address:--listen-port`` serves the last collection in the
Prometheus text format (names in ``METRICS`` below), plus gauges from the database operations'
status file (``--db-ops-status``, written by the db_ops role: one object per job ``backup``,
``check``, ``drill`` with ``result``, ``finished_at``, ``last_ok_at``, ``detail``). A collection
older than three intervals is no longer served (a hung loop looks like a dead collector).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import socket
import sqlite3
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

LOG = logging.getLogger("mmo_voxel_metrics_collector")

# The read that measures the database: the first key of the chunks table's primary key
# (cx, cy, cz). It uses the primary key index, touches a handful of pages and costs the same
# on an empty and on a 1 GiB world, unlike count(*), which scans a whole index.
DB_LATENCY_QUERY = "SELECT cx, cy, cz FROM chunks ORDER BY cx, cy, cz LIMIT 1"

DB_OPS_JOBS = ("backup", "check", "drill")

# name -> (type, help). Label sets are in Collector.render_metrics().
METRICS: dict[str, tuple[str, str]] = {
    "mmo_voxel_tick_rate": ("gauge", "Server ticks per second reported by GET /status."),
    "mmo_voxel_active_sessions": ("gauge", "Players connected, reported by GET /status."),
    "mmo_voxel_db_latency_ms": (
        "gauge",
        "Milliseconds for one indexed read on a fresh read-only connection to the world database.",
    ),
    "mmo_voxel_voxel_stream_fail": (
        "gauge",
        "Voxel stream failures in the last collection interval (from voxel_stream_fail_total).",
    ),
    "mmo_voxel_release_info": ("gauge", "The version the server reports; always 1."),
    "mmo_voxel_db_job_ok": (
        "gauge",
        "1 when the last run of the database job succeeded, 0 when it failed.",
    ),
    "mmo_voxel_db_job_last_ok_timestamp_seconds": (
        "gauge",
        "Unix time of the database job's last successful (verified) run.",
    ),
    "mmo_voxel_db_job_finished_timestamp_seconds": (
        "gauge",
        "Unix time the database job's last run finished.",
    ),
    "mmo_voxel_collector_last_collection_timestamp_seconds": (
        "gauge",
        "Unix time of the collection these metrics come from.",
    ),
    "mmo_voxel_collector_interval_seconds": ("gauge", "The collector's interval."),
    "mmo_voxel_collector_collections_total": (
        "counter",
        "Collections since the collector started.",
    ),
    "mmo_voxel_collector_read_errors_total": (
        "counter",
        "Reads that failed since the collector started, by source (status, db, db_ops_status).",
    ),
}


# --------------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------------
def rfc3339(ts: float) -> str:
    """Unix time as RFC 3339 UTC with milliseconds, e.g. 2026-11-28T12:00:00.000Z."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_rfc3339(text: Any) -> float | None:
    """Unix time of an RFC 3339 string with a zone (``Z`` or an offset); None otherwise."""
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()


def number(value: Any, *, integer: bool = False) -> float | int | None:
    """A finite, non-negative number from JSON (bools are not numbers); None otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    if integer:
        return int(value) if float(value).is_integer() else None
    return value


@dataclass(frozen=True)
class CounterReading:
    """One reading of the server's monotonic failure counter."""

    value: int
    at: float  # monotonic seconds
    uptime: float | None  # the server's uptime_s, when it reports one


def failures_in_interval(
    previous: CounterReading | None, current: CounterReading | None
) -> int | None:
    """Failures between two consecutive readings of ``voxel_stream_fail_total``.

    None without both readings. A counter that went down, or an uptime shorter than the time
    between the readings, means the server restarted (its counter started again at 0): the
    failures counted since the restart are the new value, as Prometheus' increase() does.
    """
    if previous is None or current is None:
        return None
    restarted = current.value < previous.value or (
        current.uptime is not None and current.uptime < current.at - previous.at
    )
    if restarted:
        return current.value
    return current.value - previous.value


def escape_label(value: str) -> str:
    """A label value for the Prometheus text format."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_sample(name: str, labels: dict[str, str], value: float) -> str:
    """One sample line of the Prometheus text format."""
    label_text = ",".join(f'{k}="{escape_label(v)}"' for k, v in sorted(labels.items()))
    rendered = repr(float(value)) if not float(value).is_integer() else str(int(value))
    return f"{name}{{{label_text}}} {rendered}" if label_text else f"{name} {rendered}"


# --------------------------------------------------------------------------------------------
# Readers (each returns None for what it could not read)
# --------------------------------------------------------------------------------------------
def read_status(url: str, timeout: float) -> dict[str, Any] | None:
    """The server's /status document, or None (no answer, not 200, not a JSON object)."""
    try:
        # The URL comes from the collector's own configuration (http:// on the host).
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310
            if resp.status != 200:
                LOG.warning("status %s answered HTTP %s", url, resp.status)
                return None
            doc = json.loads(resp.read(1_000_000))
    except (OSError, ValueError, urllib.error.URLError) as exc:
        LOG.warning("status %s not readable: %s", url, exc)
        return None
    if not isinstance(doc, dict):
        LOG.warning("status %s is not a JSON object", url)
        return None
    return doc


def measure_db_latency(db_path: Path, timeout: float) -> float | None:
    """Milliseconds for one indexed read on a fresh read-only connection; None on any failure.

    The URI's ``mode=ro`` means the collector can never write the world, even by mistake; the
    busy timeout bounds the wait for a lock, and a wait past it gives None (not a number).
    """
    uri = f"file:{db_path}?mode=ro"
    started = time.perf_counter()
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
        conn.execute(DB_LATENCY_QUERY).fetchone()
        elapsed = time.perf_counter() - started
    except sqlite3.Error as exc:
        LOG.warning("database %s not readable: %s", db_path, exc)
        return None
    finally:
        if conn is not None:
            conn.close()
    if elapsed > timeout:
        LOG.warning(
            "database %s read took %.3f s, past the %.3f s timeout", db_path, elapsed, timeout
        )
        return None
    return round(elapsed * 1000.0, 3)


def read_db_ops_status(path: Path | None) -> dict[str, dict[str, Any]] | None:
    """The database operations' status per job; None when the file is missing or unreadable.

    Jobs that are absent or malformed are left out (their gauges are then absent).
    """
    if path is None:
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        LOG.warning("db ops status %s not readable: %s", path, exc)
        return None
    if not isinstance(doc, dict):
        LOG.warning("db ops status %s is not a JSON object", path)
        return None
    jobs: dict[str, dict[str, Any]] = {}
    for job in DB_OPS_JOBS:
        entry = doc.get(job)
        if not isinstance(entry, dict) or entry.get("result") not in ("ok", "failed"):
            continue
        jobs[job] = {
            "ok": 1 if entry["result"] == "ok" else 0,
            "finished": parse_rfc3339(entry.get("finished_at")),
            "last_ok": parse_rfc3339(entry.get("last_ok_at")),
        }
    return jobs


# --------------------------------------------------------------------------------------------
# The collector
# --------------------------------------------------------------------------------------------
@dataclass
class Sample:
    """One collection: the JSON line and what the metrics show."""

    wall: float
    line: dict[str, Any]
    db_ops: dict[str, dict[str, Any]] | None


@dataclass
class Collector:
    """Collects one sample per interval, appends it to the JSONL file and keeps it for /metrics."""

    status_url: str
    db_path: Path
    output: Path
    host: str
    interval: float = 60.0
    status_timeout: float = 5.0
    db_timeout: float = 2.0
    db_ops_status: Path | None = None
    _previous: CounterReading | None = None
    _last: Sample | None = None
    _collections: int = 0
    _errors: dict[str, int] = field(
        default_factory=lambda: {"status": 0, "db": 0, "db_ops_status": 0}
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def collect(self) -> dict[str, Any]:
        """Take one sample, append its line to the output file and return the line."""
        wall = time.time()
        now = time.monotonic()
        status = read_status(self.status_url, self.status_timeout)
        status = status or {}
        version = status.get("version")
        version = version if isinstance(version, str) and version else None
        counter_value = number(status.get("voxel_stream_fail_total"), integer=True)
        current = None
        if counter_value is not None:
            uptime = number(status.get("uptime_s"))
            current = CounterReading(int(counter_value), now, uptime)
        line = {
            "ts": rfc3339(wall),
            "host": self.host,
            "version": version,
            "tick_rate": number(status.get("tick_rate")),
            "active_sessions": number(status.get("active_sessions"), integer=True),
            "db_latency_ms": measure_db_latency(self.db_path, self.db_timeout),
            "voxel_stream_fail": failures_in_interval(self._previous, current),
        }
        # Only a reading of this interval counts as "previous" for the next one.
        self._previous = current
        db_ops = read_db_ops_status(self.db_ops_status)
        with self._lock:
            self._collections += 1
            if not status:
                self._errors["status"] += 1
            if line["db_latency_ms"] is None:
                self._errors["db"] += 1
            if db_ops is None and self.db_ops_status is not None and self.db_ops_status.exists():
                self._errors["db_ops_status"] += 1
            self._last = Sample(wall, line, db_ops)
        self.append(line)
        return line

    def append(self, line: dict[str, Any]) -> None:
        """Append one line; open and close per line so rotation needs no signal."""
        text = json.dumps(line, separators=(",", ":")) + "\n"
        try:
            self.output.parent.mkdir(parents=True, exist_ok=True)
            with self.output.open("a", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            LOG.error("cannot append to %s: %s", self.output, exc)

    def render_metrics(self, now: float | None = None) -> str:
        """The last collection in the Prometheus text format (values not read are absent)."""
        now = time.time() if now is None else now
        with self._lock:
            sample = self._last
            collections = self._collections
            errors = dict(self._errors)
        samples: dict[str, list[tuple[dict[str, str], float]]] = {name: [] for name in METRICS}
        samples["mmo_voxel_collector_interval_seconds"].append(({}, self.interval))
        samples["mmo_voxel_collector_collections_total"].append(({}, collections))
        for source, count in sorted(errors.items()):
            samples["mmo_voxel_collector_read_errors_total"].append(({"source": source}, count))
        # A collection older than three intervals is not served: a hung loop must look dead.
        if sample is not None and now - sample.wall <= 3 * self.interval:
            line = sample.line
            samples["mmo_voxel_collector_last_collection_timestamp_seconds"].append(
                ({}, sample.wall)
            )
            for key in ("tick_rate", "active_sessions", "db_latency_ms", "voxel_stream_fail"):
                if line[key] is not None:
                    samples[f"mmo_voxel_{key}"].append(({}, line[key]))
            if line["version"] is not None:
                samples["mmo_voxel_release_info"].append(({"version": line["version"]}, 1))
            for job, entry in sorted((sample.db_ops or {}).items()):
                labels = {"operation": job}
                samples["mmo_voxel_db_job_ok"].append((labels, entry["ok"]))
                if entry["last_ok"] is not None:
                    samples["mmo_voxel_db_job_last_ok_timestamp_seconds"].append(
                        (labels, entry["last_ok"])
                    )
                if entry["finished"] is not None:
                    samples["mmo_voxel_db_job_finished_timestamp_seconds"].append(
                        (labels, entry["finished"])
                    )
        out: list[str] = []
        for name, (kind, help_text) in METRICS.items():
            if not samples[name]:
                continue
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(format_sample(name, labels, value) for labels, value in samples[name])
        return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# HTTP exposition and the main loop
# --------------------------------------------------------------------------------------------
def make_server(collector: Collector, address: str, port: int) -> ThreadingHTTPServer:
    """The /metrics endpoint (and /healthz for humans) on address:port."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "mmo-voxel-metrics-collector"

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] == "/metrics":
                body = collector.render_metrics().encode()
                ctype = "text/plain; version=0.0.4; charset=utf-8"
                code = 200
            elif self.path == "/healthz":
                body, ctype, code = b"ok\n", "text/plain", 200
            else:
                body, ctype, code = b"not found\n", "text/plain", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args: Any) -> None:
            LOG.debug("http: " + fmt, *args)

    family = socket.AF_INET6 if ":" in address else socket.AF_INET

    class Server(ThreadingHTTPServer):
        address_family = family
        daemon_threads = True

    return Server((address, port), Handler)


def run(collector: Collector, server: ThreadingHTTPServer | None, stop: threading.Event) -> None:
    """Collect at a fixed cadence (no drift) until ``stop`` is set."""
    if server is not None:
        threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    next_at = time.monotonic()
    try:
        while not stop.is_set():
            try:
                collector.collect()
            except Exception:  # a bug must not stop the heartbeat of the other values
                LOG.exception("collection failed")
            next_at += collector.interval
            now = time.monotonic()
            if next_at < now:  # a collection overran: skip the missed slots, keep the cadence
                next_at = now + collector.interval - ((now - next_at) % collector.interval)
            stop.wait(next_at - time.monotonic())
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line options (the systemd unit passes every one)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--status-url", default="http://127.0.0.1:8080/status")
    p.add_argument("--db", required=True, type=Path, help="the world database (read-only)")
    p.add_argument("--output", required=True, type=Path, help="the JSONL file to append to")
    p.add_argument("--host", default=socket.gethostname(), help="the host name in each line")
    p.add_argument("--interval", type=float, default=60.0, help="seconds between collections")
    p.add_argument("--status-timeout", type=float, default=5.0)
    p.add_argument("--db-timeout", type=float, default=2.0, help="busy timeout of the DB read")
    p.add_argument("--db-ops-status", type=Path, default=None, help="db_ops status JSON file")
    p.add_argument("--listen-address", default="127.0.0.1")
    p.add_argument("--listen-port", type=int, default=9464, help="0: no /metrics endpoint")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = p.parse_args(argv)
    for name in ("interval", "status_timeout", "db_timeout"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be > 0")
    if args.status_timeout + args.db_timeout >= args.interval:
        p.error("--status-timeout plus --db-timeout must be shorter than --interval")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(levelname)s %(message)s",
        stream=sys.stderr,
    )
    collector = Collector(
        status_url=args.status_url,
        db_path=args.db,
        output=args.output,
        host=args.host,
        interval=args.interval,
        status_timeout=args.status_timeout,
        db_timeout=args.db_timeout,
        db_ops_status=args.db_ops_status,
    )
    server = None
    if args.listen_port:
        server = make_server(collector, args.listen_address, args.listen_port)
        LOG.info("serving /metrics on %s:%s", args.listen_address, server.server_address[1])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    LOG.info(
        "collecting every %ss from %s and %s into %s",
        args.interval,
        args.status_url,
        args.db,
        args.output,
    )
    run(collector, server, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
