"""Pure helpers of roles/metrics_collector/files/mmo_voxel_metrics_collector.py."""

from __future__ import annotations

import importlib.util
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
