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
- counts the anti-cheat events the server appended since the last collection (below);
- appends one JSON line (``ts``, ``host``, ``version``, ``tick_rate``, ``active_sessions``,
  ``db_latency_ms``, ``voxel_stream_fail``, ``anti_cheat``) to ``--output``. The file is
  opened, appended and closed for every line, so logrotate's ``copytruncate`` (and a rename)
  need no signal.

A value it could not read is ``null`` in the line and absent from the metrics, never ``0``.

``GET /metrics`` on ``--listen-address:--listen-port`` serves the last collection in the
Prometheus text format (names in ``METRICS`` below), plus gauges from the database operations'
status file (``--db-ops-status``, written by the db_ops role: one object per job ``backup``,
``check``, ``drill`` with ``result``, ``finished_at``, ``last_ok_at``, ``detail``). A collection
older than three intervals is no longer served (a hung loop looks like a dead collector).

Anti-cheat events (``--anti-cheat``, the server's ``analytics/anti_cheat.jsonl``: one JSON object
per line, docs/contracts.md). Every collection reads the lines appended since the last one:

- the file is followed by name: the collector keeps its device and inode, its offset and the
  last bytes read before the offset; another inode (rotated by rename, replaced), a size below
  the offset or other bytes before the offset (logrotate's ``copytruncate``, even when the new
  file already grew past the old offset) mean a new file, read from its start;
- when the collector starts it begins at the END of the file, so a restart never counts the
  file's history again; a file that only appears later is read from its start;
- at most ``MAX_READ_BYTES`` per collection (the rest waits for the next one), and a trailing
  line without its newline waits for the next collection unless it is already longer than
  ``MAX_LINE_BYTES``: then it is one malformed line, skipped up to its newline unread;
- each record counts under its kind (``check``, the reference server's name, else ``kind``)
  and under its player (``player``, else the reference server's ``session``) when it has one;
- a line that is not UTF-8, not JSON, not an object, has no kind, or is over the cap is one
  malformed line (blank lines are ignored); nothing in the file can stop the collector;
- a missing file is no events (not an error); a file that cannot be read at all (no
  permission, a directory, not a regular file) gives ``null``, as for the other values.

The JSON line gets ``"anti_cheat": {"events": {kind: n}, "players": {player: n}, "malformed":
n}`` for the interval (kinds and players with no event are left out, players are the
``--anti-cheat-top-players`` with the most events), or ``null`` (file unreadable, or no
``--anti-cheat``). ``/metrics`` gets the counters since the collector started
(``mmo_voxel_anti_cheat_events_total{kind}``, the four kinds of the reference server from 0,
and ``mmo_voxel_anti_cheat_malformed_lines_total``) and the last interval's top players
(``mmo_voxel_anti_cheat_player_events{player}``). Label values stay bounded: at most
``MAX_KINDS`` kinds (further or odd-looking kinds count as ``other``) and the top N players.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import signal
import socket
import sqlite3
import stat
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

# Anti-cheat events. The kinds the reference server writes (its checks); their counters start at
# 0, so Prometheus' increase() sees the first event of each (a series that appears with 3 would
# hide those 3).
ANTI_CHEAT_KINDS = ("speed", "reach", "fly", "build_rate")
# At most this many kind labels (the four above included): the kinds come from the server, and a
# buggy or hostile one must not create series without end. Later kinds count as "other".
MAX_KINDS = 16
OTHER_KIND = "other"
KIND_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
# A player id longer than this is not a player label (the event still counts by kind).
MAX_PLAYER_ID_CHARS = 64
# Distinct players counted in one interval (memory bound; further ones count by kind only).
MAX_PLAYERS_PER_INTERVAL = 10_000
# Bytes read from the file per collection: 4 MiB is some 40 000 events of ~100 bytes, far above
# what a server writes in a minute; a larger backlog is read over the next collections.
MAX_READ_BYTES = 4 * 1024 * 1024
# A record longer than this is malformed (the reference server's lines are ~100 bytes). Must stay
# well below MAX_READ_BYTES, so that every read either finds a newline or passes the cap.
MAX_LINE_BYTES = 64 * 1024
# Per-player gauge: the players with the most events in the last interval. Bounded label
# cardinality: at most this many player series per host at any time.
DEFAULT_TOP_PLAYERS = 10
MAX_TOP_PLAYERS = 100

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
    "mmo_voxel_anti_cheat_events_total": (
        "counter",
        "Anti-cheat events read from anti_cheat.jsonl since the collector started, by kind "
        "(the record's check).",
    ),
    "mmo_voxel_anti_cheat_malformed_lines_total": (
        "counter",
        "Lines of anti_cheat.jsonl that were not an anti-cheat record (not UTF-8, not a JSON "
        "object, no kind, too long) since the collector started.",
    ),
    "mmo_voxel_anti_cheat_player_events": (
        "gauge",
        "Anti-cheat events of one player in the last collection interval; only the players "
        "with the most events.",
    ),
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
        "Reads that failed since the collector started, by source (status, db, db_ops_status, "
        "anti_cheat).",
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
# Anti-cheat events: a JSONL file followed by name
# --------------------------------------------------------------------------------------------
# Bytes kept from just before the offset: they must still be there at the next read, or the
# file was truncated (and maybe grew again past the offset) or replaced.
FINGERPRINT_BYTES = 64


@dataclass(frozen=True)
class TailRead:
    """What one read of a followed file gave."""

    lines: list[bytes]  # complete lines, without their newline
    oversized: int  # lines longer than the cap, skipped unread
    more: bool  # the read stopped at its byte limit: more is waiting


class FollowedFile:
    """A file that others append to, read by name from where the last read stopped.

    Rotation by rename or replacement (another inode) and truncation (copytruncate: a size below
    the offset, or other bytes just before it) restart at the new file's beginning. Each read
    takes at most ``max_read`` bytes and returns whole lines only.
    """

    def __init__(
        self, path: Path, max_read: int = MAX_READ_BYTES, max_line: int = MAX_LINE_BYTES
    ) -> None:
        if max_line >= max_read:
            raise ValueError("max_line must be below max_read")
        self.path = path
        self.max_read = max_read
        self.max_line = max_line
        self._ident: tuple[int, int] | None = None
        self._offset = 0
        self._fingerprint = b""
        self._skipping = False  # inside a line over the cap: drop bytes up to its newline

    def seek_to_end(self) -> None:
        """Start after what the file holds now (the collector's start: history is not new)."""
        try:
            st = os.stat(self.path)
        except OSError:
            self._restart(None)
            return
        if not stat.S_ISREG(st.st_mode):
            self._restart(None)
            return
        self._restart((st.st_dev, st.st_ino))
        self._offset = st.st_size
        try:
            with self.path.open("rb") as fh:
                self._fingerprint = self._bytes_before(fh.fileno(), st.st_size)
        except OSError:
            self._fingerprint = b""
        # A last line without its newline is older than the start: not counted either.
        self._skipping = bool(self._fingerprint) and not self._fingerprint.endswith(b"\n")

    def _restart(self, ident: tuple[int, int] | None) -> None:
        self._ident = ident
        self._offset = 0
        self._fingerprint = b""
        self._skipping = False

    @staticmethod
    def _bytes_before(fd: int, offset: int) -> bytes:
        start = max(0, offset - FINGERPRINT_BYTES)
        return os.pread(fd, offset - start, start)

    def read(self) -> TailRead | None:
        """The whole lines appended since the last read; None when the file cannot be read.

        A missing file is no lines (a file that appears later is new: read from its start).
        """
        try:
            # O_NONBLOCK: a FIFO put in the file's place must not hang the collector in open().
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            self._restart(None)
            return TailRead([], 0, more=False)
        except OSError as exc:
            LOG.warning("anti-cheat file %s not readable: %s", self.path, exc)
            return None
        try:
            return self._read_open(fd)
        except OSError as exc:
            LOG.warning("anti-cheat file %s not readable: %s", self.path, exc)
            return None
        finally:
            os.close(fd)

    def _read_open(self, fd: int) -> TailRead | None:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            LOG.warning("anti-cheat file %s is not a regular file", self.path)
            return None
        ident = (st.st_dev, st.st_ino)
        if ident != self._ident:
            if self._ident is not None:
                LOG.info("anti-cheat file %s was replaced: reading the new one", self.path)
            self._restart(ident)
        elif st.st_size < self._offset or (
            self._fingerprint and self._bytes_before(fd, self._offset) != self._fingerprint
        ):
            LOG.info("anti-cheat file %s was truncated: reading from its start", self.path)
            self._restart(ident)
        data = os.pread(fd, self.max_read, self._offset)
        lines, oversized, consumed = self._split(data)
        if consumed:
            self._offset += consumed
            self._fingerprint = self._bytes_before(fd, self._offset)
        return TailRead(lines, oversized, more=len(data) == self.max_read)

    def _split(self, data: bytes) -> tuple[list[bytes], int, int]:
        """(whole lines, lines over the cap, bytes consumed) of the bytes read."""
        consumed = 0
        oversized = 0
        if self._skipping:
            newline = data.find(b"\n")
            if newline < 0:
                return [], 0, len(data)
            consumed = newline + 1
            self._skipping = False
        last = data.rfind(b"\n", consumed)
        lines: list[bytes] = []
        if last >= 0:
            for raw in data[consumed:last].split(b"\n"):
                if len(raw) > self.max_line:
                    oversized += 1
                else:
                    lines.append(raw)
            consumed = last + 1
        if len(data) - consumed > self.max_line:
            # The line has no end yet and is already over the cap: one malformed line, and its
            # bytes are dropped up to its newline, whenever it comes.
            oversized += 1
            consumed = len(data)
            self._skipping = True
        return lines, oversized, consumed


def parse_anti_cheat_record(raw: bytes) -> tuple[str, str | None] | None:
    """(kind, player or None) of one line of anti_cheat.jsonl; None when it is not a record.

    The kind is ``check`` (the reference server's field), else ``kind``; the player is
    ``player``, else ``session`` (a string or an integer, at most MAX_PLAYER_ID_CHARS long).
    """
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(record, dict):
        return None
    kind = next(
        (v for v in (record.get("check"), record.get("kind")) if isinstance(v, str) and v), None
    )
    if kind is None:
        return None
    player = None
    for key in ("player", "session"):
        value = record.get(key)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int):
            value = str(value)
        if isinstance(value, str) and 0 < len(value) <= MAX_PLAYER_ID_CHARS:
            player = value
            break
    return kind, player


class AntiCheatLog:
    """Counts the events appended to anti_cheat.jsonl since the last collection."""

    def __init__(
        self,
        path: Path,
        top_players: int = DEFAULT_TOP_PLAYERS,
        max_read: int = MAX_READ_BYTES,
        max_line: int = MAX_LINE_BYTES,
    ) -> None:
        self.file = FollowedFile(path, max_read, max_line)
        self.top_players = top_players
        self._kinds: set[str] = set(ANTI_CHEAT_KINDS)
        # The collector's start: what the file holds now is history.
        self.file.seek_to_end()

    def kind_label(self, kind: str) -> str:
        """The label value of a kind: itself while there are fewer than MAX_KINDS, else other."""
        if kind in self._kinds:
            return kind
        if KIND_RE.fullmatch(kind) and len(self._kinds) < MAX_KINDS - 1 and kind != OTHER_KIND:
            self._kinds.add(kind)
            return kind
        return OTHER_KIND

    def collect(self) -> dict[str, Any] | None:
        """This interval's counts, or None when the file could not be read."""
        read = self.file.read()
        if read is None:
            return None
        if read.more:
            LOG.warning(
                "anti-cheat file %s: more than %d bytes since the last collection, the rest "
                "is read next time",
                self.file.path,
                self.file.max_read,
            )
        events: dict[str, int] = {}
        players: dict[str, int] = {}
        malformed = read.oversized
        for raw in read.lines:
            if not raw.strip():
                continue
            parsed = parse_anti_cheat_record(raw)
            if parsed is None:
                malformed += 1
                continue
            kind, player = parsed
            label = self.kind_label(kind)
            events[label] = events.get(label, 0) + 1
            if player is not None and (
                player in players or len(players) < MAX_PLAYERS_PER_INTERVAL
            ):
                players[player] = players.get(player, 0) + 1
        top = sorted(players.items(), key=lambda item: (-item[1], item[0]))[: self.top_players]
        return {
            "events": dict(sorted(events.items())),
            "players": dict(top),
            "malformed": malformed,
        }


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
    anti_cheat: Path | None = None
    anti_cheat_top_players: int = DEFAULT_TOP_PLAYERS
    _previous: CounterReading | None = None
    _last: Sample | None = None
    _collections: int = 0
    _errors: dict[str, int] = field(
        default_factory=lambda: {"status": 0, "db": 0, "db_ops_status": 0}
    )
    _anti_cheat_log: AntiCheatLog | None = None
    _anti_cheat_events: dict[str, int] = field(default_factory=dict)
    _anti_cheat_malformed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.anti_cheat is not None:
            # Created with the collector, so it starts at the end of the file as it is now.
            self._anti_cheat_log = AntiCheatLog(self.anti_cheat, self.anti_cheat_top_players)
            self._anti_cheat_events = dict.fromkeys(ANTI_CHEAT_KINDS, 0)
            self._errors["anti_cheat"] = 0

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
            "anti_cheat": self._anti_cheat_log.collect() if self._anti_cheat_log else None,
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
            if self._anti_cheat_log is not None:
                counts = line["anti_cheat"]
                if counts is None:
                    self._errors["anti_cheat"] += 1
                else:
                    for kind, n in counts["events"].items():
                        self._anti_cheat_events[kind] = self._anti_cheat_events.get(kind, 0) + n
                    self._anti_cheat_malformed += counts["malformed"]
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
            anti_cheat_events = dict(self._anti_cheat_events)
            anti_cheat_malformed = self._anti_cheat_malformed
        samples: dict[str, list[tuple[dict[str, str], float]]] = {name: [] for name in METRICS}
        samples["mmo_voxel_collector_interval_seconds"].append(({}, self.interval))
        samples["mmo_voxel_collector_collections_total"].append(({}, collections))
        for source, count in sorted(errors.items()):
            samples["mmo_voxel_collector_read_errors_total"].append(({"source": source}, count))
        # Counters since the start, whatever the age of the last collection (like the two above).
        if self._anti_cheat_log is not None:
            samples["mmo_voxel_anti_cheat_events_total"].extend(
                ({"kind": kind}, count) for kind, count in sorted(anti_cheat_events.items())
            )
            samples["mmo_voxel_anti_cheat_malformed_lines_total"].append(({}, anti_cheat_malformed))
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
            # At most anti_cheat_top_players series: the label set stays bounded.
            samples["mmo_voxel_anti_cheat_player_events"].extend(
                ({"player": player}, count)
                for player, count in (line["anti_cheat"] or {}).get("players", {}).items()
            )
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
    p.add_argument(
        "--anti-cheat",
        type=Path,
        default=None,
        help="the server's anti_cheat.jsonl, whose new lines are counted (default: not read)",
    )
    p.add_argument(
        "--anti-cheat-top-players",
        type=int,
        default=DEFAULT_TOP_PLAYERS,
        help=f"players with the most events exposed per interval (0-{MAX_TOP_PLAYERS})",
    )
    p.add_argument("--listen-address", default="127.0.0.1")
    p.add_argument("--listen-port", type=int, default=9464, help="0: no /metrics endpoint")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = p.parse_args(argv)
    for name in ("interval", "status_timeout", "db_timeout"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be > 0")
    if args.status_timeout + args.db_timeout >= args.interval:
        p.error("--status-timeout plus --db-timeout must be shorter than --interval")
    if not 0 <= args.anti_cheat_top_players <= MAX_TOP_PLAYERS:
        p.error(f"--anti-cheat-top-players must be between 0 and {MAX_TOP_PLAYERS}")
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
        anti_cheat=args.anti_cheat,
        anti_cheat_top_players=args.anti_cheat_top_players,
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
