"""Pure helpers of roles/metrics_collector/files/mmo_voxel_metrics_collector.py."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

PATH = (
    Path(__file__).resolve().parents[5]
    / "roles/metrics_collector/files/mmo_voxel_metrics_collector.py"
)
_spec = importlib.util.spec_from_file_location("mmo_voxel_metrics_collector", PATH)
assert _spec is not None
assert _spec.loader is not None
mc = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = mc
_spec.loader.exec_module(mc)

R = mc.CounterReading


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        (None, R(5, 60.0, None), None),  # first interval: nothing to subtract from
        (R(5, 0.0, None), None, None),  # no reading now
        (R(5, 0.0, None), R(5, 60.0, None), 0),
        (R(5, 0.0, None), R(17, 60.0, None), 12),
        (R(500, 0.0, None), R(3, 60.0, None), 3),  # counter went down: restart
        (R(5, 0.0, 1000.0), R(40, 60.0, 20.0), 40),  # uptime 20 s < 60 s: restart
        (R(5, 0.0, 1000.0), R(40, 60.0, 1060.0), 35),  # uptime grew: no restart
    ],
)
def test_failures_in_interval(previous, current, expected) -> None:
    assert mc.failures_in_interval(previous, current) == expected


@pytest.mark.parametrize(
    ("value", "integer", "expected"),
    [
        (30, False, 30),
        (29.5, False, 29.5),
        (0, False, 0),
        (-1, False, None),
        (float("nan"), False, None),
        (float("inf"), False, None),
        (True, False, None),
        ("30", False, None),
        (None, False, None),
        (12.0, True, 12),
        (12.5, True, None),
    ],
)
def test_number(value, integer, expected) -> None:
    assert mc.number(value, integer=integer) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1970-01-01T00:01:00Z", 60.0),
        ("1970-01-01T01:01:00+01:00", 60.0),
        ("1970-01-01T00:01:00", None),  # no zone: not RFC 3339
        ("yesterday", None),
        (None, None),
        ("", None),
    ],
)
def test_parse_rfc3339(text, expected) -> None:
    assert mc.parse_rfc3339(text) == expected


def test_rfc3339_is_utc_with_z() -> None:
    assert mc.rfc3339(60.25) == "1970-01-01T00:01:00.250Z"


def test_format_sample_escapes_label_values() -> None:
    line = mc.format_sample("m", {"version": 'a"b\\c\nd'}, 1)
    assert line == 'm{version="a\\"b\\\\c\\nd"} 1'
    assert mc.format_sample("m", {}, 0.5) == "m 0.5"


def test_read_db_ops_status_skips_malformed_jobs(tmp_path: Path) -> None:
    f = tmp_path / "status.json"
    f.write_text(
        '{"backup": {"result": "ok", "finished_at": "1970-01-01T00:00:10Z",'
        ' "last_ok_at": "1970-01-01T00:00:10Z", "detail": ""},'
        ' "check": {"result": "maybe"}, "drill": "failed", "other": {"result": "ok"}}',
        encoding="utf-8",
    )
    assert mc.read_db_ops_status(f) == {"backup": {"ok": 1, "finished": 10.0, "last_ok": 10.0}}
    assert mc.read_db_ops_status(tmp_path / "missing.json") is None
    assert mc.read_db_ops_status(None) is None


# --------------------------------------------------------------------------------------------
# Anti-cheat events: the followed file, one record, the counts of an interval
# --------------------------------------------------------------------------------------------
def record(check: str = "speed", session: object = 1, **extra: object) -> bytes:
    """One line as the reference server writes it."""
    doc = {"ts": "2026-11-28T12:00:00.000Z", "version": "1.4.2", "tick": 7, "session": session}
    doc.update({"check": check, "score": 0.9}, **extra)
    return (json.dumps(doc) + "\n").encode()


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as fh:
        fh.write(data)


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "analytics" / "anti_cheat.jsonl"
    path.parent.mkdir()
    return path


def test_the_collector_starts_at_the_end_and_counts_only_new_lines(log_file: Path) -> None:
    log_file.write_bytes(record() * 50)
    log = mc.AntiCheatLog(log_file)
    assert log.collect() == {"events": {}, "players": {}, "malformed": 0}
    append(log_file, record("fly") + record("speed", session=2))
    assert log.collect() == {
        "events": {"fly": 1, "speed": 1},
        "players": {"1": 1, "2": 1},
        "malformed": 0,
    }
    # Nothing new: nothing counted twice.
    assert log.collect()["events"] == {}


def test_a_restart_never_counts_the_history_again(log_file: Path) -> None:
    first = mc.AntiCheatLog(log_file)
    append(log_file, record() * 3)
    assert first.collect()["events"] == {"speed": 3}
    # The collector restarts: a new log, on the same file, sees only what comes after.
    second = mc.AntiCheatLog(log_file)
    assert second.collect()["events"] == {}
    append(log_file, record("reach"))
    assert second.collect()["events"] == {"reach": 1}


def test_a_half_written_last_line_at_the_start_is_history_too(log_file: Path) -> None:
    log_file.write_bytes(record() + record()[:20])
    log = mc.AntiCheatLog(log_file)
    append(log_file, record()[20:] + record("fly"))
    # The end of the old line is neither an event nor a malformed line.
    assert log.collect() == {"events": {"fly": 1}, "players": {"1": 1}, "malformed": 0}


def test_a_missing_file_is_no_events_and_a_new_file_is_read_from_its_start(
    log_file: Path,
) -> None:
    log = mc.AntiCheatLog(log_file)
    assert log.collect() == {"events": {}, "players": {}, "malformed": 0}
    log_file.write_bytes(record() * 2)
    assert log.collect()["events"] == {"speed": 2}
    log_file.unlink()
    assert log.collect()["events"] == {}
    log_file.write_bytes(record("fly"))
    assert log.collect()["events"] == {"fly": 1}


def test_rotation_by_rename_reads_the_new_file_from_its_start(log_file: Path) -> None:
    log = mc.AntiCheatLog(log_file)
    append(log_file, record() * 4)
    assert log.collect()["events"] == {"speed": 4}
    log_file.rename(log_file.with_name("anti_cheat.jsonl.1"))
    log_file.write_bytes(record("reach") * 2)
    assert log.collect()["events"] == {"reach": 2}


@pytest.mark.parametrize("regrown", [False, True], ids=["shorter", "grown-past-the-offset"])
def test_copytruncate_reads_the_same_file_from_its_start(log_file: Path, regrown: bool) -> None:
    """logrotate's copytruncate keeps the inode; the file shrinks, and may grow again before the
    next collection to past the old offset: other bytes before the offset tell."""
    log = mc.AntiCheatLog(log_file)
    append(log_file, record() * 3)
    assert log.collect()["events"] == {"speed": 3}
    inode = log_file.stat().st_ino
    with log_file.open("r+b") as fh:
        fh.truncate(0)
    new = record("fly", session=12345) * (5 if regrown else 1)
    append(log_file, new)
    assert log_file.stat().st_ino == inode
    assert (log_file.stat().st_size > len(record() * 3)) is regrown
    assert log.collect()["events"] == {"fly": 5 if regrown else 1}


def test_a_partial_last_line_waits_for_the_next_collection(log_file: Path) -> None:
    log = mc.AntiCheatLog(log_file)
    line = record("build_rate")
    append(log_file, record() + line[:30])
    assert log.collect() == {"events": {"speed": 1}, "players": {"1": 1}, "malformed": 0}
    assert log.collect()["events"] == {}  # still no newline: still waiting, not malformed
    append(log_file, line[30:])
    assert log.collect() == {"events": {"build_rate": 1}, "players": {"1": 1}, "malformed": 0}


def test_a_partial_line_over_the_cap_is_malformed_once_and_skipped(log_file: Path) -> None:
    log = mc.AntiCheatLog(log_file, max_read=1000, max_line=200)
    append(log_file, record() + b'{"check": "' + b"x" * 300)
    assert log.collect() == {"events": {"speed": 1}, "players": {"1": 1}, "malformed": 1}
    append(log_file, b"y" * 5000)  # the same line goes on, over several reads
    for _ in range(6):
        assert log.collect() == {"events": {}, "players": {}, "malformed": 0}
    append(log_file, b'"}\n' + record("fly"))
    assert log.collect() == {"events": {"fly": 1}, "players": {"1": 1}, "malformed": 0}


def test_a_10_mb_line_is_one_malformed_line_read_in_bounded_pieces(
    log_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = mc.AntiCheatLog(log_file)
    sizes: list[int] = []
    real_pread = os.pread

    def pread(fd: int, n: int, offset: int) -> bytes:
        sizes.append(n)
        return real_pread(fd, n, offset)

    monkeypatch.setattr(mc.os, "pread", pread)
    append(log_file, record() + b'{"check": "speed", "pad": "' + b"a" * 10_000_000 + b'"}\n')
    append(log_file, record("reach"))
    counts = [log.collect() for _ in range(4)]
    assert sum(c["malformed"] for c in counts) == 1
    assert [c["events"] for c in counts if c["events"]] == [{"speed": 1}, {"reach": 1}]
    assert max(sizes) <= mc.MAX_READ_BYTES


def test_a_backlog_over_the_read_limit_is_read_over_several_collections(log_file: Path) -> None:
    log = mc.AntiCheatLog(log_file, max_read=1000, max_line=200)
    append(log_file, b"".join(record(session=i) for i in range(100)))
    seen = []
    for _ in range(20):
        counts = log.collect()
        seen.append(counts["events"].get("speed", 0))
    assert sum(seen) == 100  # nothing lost, nothing counted twice
    assert max(seen) < 100  # in pieces


@pytest.mark.parametrize(
    "garbage",
    [
        bytes(b for b in range(256) if b != 10) * 4,  # binary, no newline inside
        b"\x00" * 4096,  # the NUL hole an old offset leaves after a bad truncation
        b"\xff\xfe" + '{"check": "speed"}'.encode("utf-16-le"),  # not UTF-8
        b"not json at all",
        b'["speed", 1]',  # JSON, but an array
        b'"speed"',
        b"42",
        b"null",
        b"[" * 100_000 + b"]" * 100_000,  # deeply nested
        b'{"check": "speed", "x": ' + b"[" * 60_000 + b"]" * 60_000 + b"}",
        b'{"check": "speed", "score": ' + b"9" * 5000 + b"}",  # an int Python refuses to parse
        b'{"session": 3, "score": 1}',  # no kind
        b'{"check": "", "kind": ""}',
        b'{"check": 7}',
        b'{"check": "spe',  # cut off (with its newline: the writer stopped mid-line)
    ],
    ids=[
        "binary",
        "nul-bytes",
        "utf-16",
        "text",
        "array",
        "string",
        "number",
        "null",
        "nested-array",
        "nested-inside-a-record",
        "huge-int",
        "no-kind",
        "empty-kind",
        "kind-not-a-string",
        "truncated",
    ],
)
def test_hostile_lines_are_counted_as_malformed_and_the_next_line_still_counts(
    log_file: Path, garbage: bytes
) -> None:
    log = mc.AntiCheatLog(log_file, max_read=4 * 1024 * 1024, max_line=1024 * 1024)
    append(log_file, garbage + b"\n" + record("fly"))
    assert log.collect() == {"events": {"fly": 1}, "players": {"1": 1}, "malformed": 1}


def test_blank_lines_are_neither_events_nor_malformed(log_file: Path) -> None:
    log = mc.AntiCheatLog(log_file)
    append(log_file, b"\n  \n\r\n" + record())
    assert log.collect() == {"events": {"speed": 1}, "players": {"1": 1}, "malformed": 0}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (record(), ("speed", "1")),
        (b'{"kind": "fly", "player": "alice"}', ("fly", "alice")),
        (b'{"check": "reach", "kind": "fly"}', ("reach", None)),  # check first
        (b'{"check": "", "kind": "fly"}', ("fly", None)),
        (b'{"check": "speed", "player": "bob", "session": 3}', ("speed", "bob")),  # player first
        (b'{"check": "speed", "player": null, "session": 3}', ("speed", "3")),
        (b'{"check": "speed", "session": true}', ("speed", None)),  # a bool is no id
        (b'{"check": "speed", "session": 1.5}', ("speed", None)),
        (b'{"check": "speed", "session": {"id": 1}}', ("speed", None)),
        (b'{"check": "speed", "player": "' + b"p" * 65 + b'"}', ("speed", None)),  # too long
        (b'  {"check": "speed"}\r', ("speed", None)),  # blanks around
        (b'{"check": "sp\\u00e9ed"}', ("sp\u00e9ed", None)),
        (b"[]", None),
        (b"{}", None),
        (b"\xc3\x28", None),  # invalid UTF-8
    ],
)
def test_parse_anti_cheat_record(line: bytes, expected: tuple[str, str | None] | None) -> None:
    assert mc.parse_anti_cheat_record(line.rstrip(b"\n")) == expected


def test_kind_labels_stay_bounded(log_file: Path) -> None:
    log = mc.AntiCheatLog(log_file)
    odd = ["has space", 'quo"te', "x" * 65, "other"]
    kinds = [f"check_{i}" for i in range(30)]
    append(log_file, b"".join(record(k) for k in [*odd, *kinds, "speed"]))
    events = log.collect()["events"]
    # The labels: the four known kinds, the first new ones and "other": MAX_KINDS at most.
    new = mc.MAX_KINDS - len(mc.ANTI_CHEAT_KINDS) - 1
    assert set(events) == {*(f"check_{i}" for i in range(new)), "other", "speed"}
    assert len(set(events) | set(mc.ANTI_CHEAT_KINDS)) == mc.MAX_KINDS
    # The odd ones and those past the limit are "other"; every event counts.
    assert events["other"] == len(odd) + 30 - new
    assert sum(events.values()) == len(odd) + 30 + 1
    # A known new kind keeps its label in later intervals.
    append(log_file, record("check_0") + record("check_29"))
    assert log.collect()["events"] == {"check_0": 1, "other": 1}


def test_the_top_players_are_bounded_and_ordered(log_file: Path) -> None:
    log = mc.AntiCheatLog(log_file, top_players=3)
    lines = [
        record(session=s) for s, n in ((1, 2), (2, 5), (3, 1), (4, 5), (5, 3)) for _ in range(n)
    ]
    append(log_file, b"".join(lines))
    counts = log.collect()
    # Most events first; a tie by id. Every event counts by kind, listed or not.
    assert counts["players"] == {"2": 5, "4": 5, "5": 3}
    assert counts["events"] == {"speed": 16}
    assert mc.AntiCheatLog(log_file, top_players=0).collect()["players"] == {}


def test_a_directory_in_place_of_the_file_cannot_be_read(log_file: Path) -> None:
    log = mc.AntiCheatLog(log_file)
    append(log_file, record())
    assert log.collect()["events"] == {"speed": 1}
    log_file.unlink()
    log_file.mkdir()
    assert log.collect() is None
    log_file.rmdir()
    log_file.write_bytes(record("fly"))  # a file again: a new one, read from its start
    assert log.collect()["events"] == {"fly": 1}


def test_a_fifo_in_place_of_the_file_neither_hangs_nor_counts(log_file: Path) -> None:
    os.mkfifo(log_file)
    log = mc.AntiCheatLog(log_file)
    assert log.collect() is None


def test_an_unreadable_file_is_null_not_a_crash(
    log_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = mc.AntiCheatLog(log_file)
    append(log_file, record())
    real_open = os.open

    def denied(path: object, *args: object, **kwargs: object) -> int:
        if Path(str(path)) == log_file:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    # The tests run as root, for whom mode 000 is readable: the error the kernel would give.
    monkeypatch.setattr(mc.os, "open", denied)
    assert log.collect() is None
    monkeypatch.undo()
    assert log.collect()["events"] == {"speed": 1}  # readable again: where it stopped
    # A path the kernel refuses for real: its directory is a file.
    blocked = tmp_path / "not_a_dir"
    blocked.write_text("x")
    assert mc.AntiCheatLog(blocked / "anti_cheat.jsonl").collect() is None


def test_followed_file_refuses_a_line_cap_above_the_read_limit(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_line"):
        mc.FollowedFile(tmp_path / "f", max_read=100, max_line=100)
