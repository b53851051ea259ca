"""The studio's clock in roles/db_schedule/files/mmo_voxel_db_job.py (the cron path's due check).

On cron hosts the job is started every hour and goes on only when the hour and weekday, in the
studio's zone, are the ones the role was given; the real zone database decides (zoneinfo).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import sys
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[5] / "roles/db_schedule/files/mmo_voxel_db_job.py"
_spec = importlib.util.spec_from_file_location("mmo_voxel_db_job", PATH)
assert _spec is not None
assert _spec.loader is not None
job = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = job
_spec.loader.exec_module(job)


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("field", "low", "high", "values"),
    [
        ("*", 0, 23, set(range(24))),
        ("0,12", 0, 23, {0, 12}),
        ("1-5", 0, 7, {1, 2, 3, 4, 5}),
        ("*/6", 0, 23, {0, 6, 12, 18}),
        ("8-20/4", 0, 23, {8, 12, 16, 20}),
        ("3/10", 0, 23, {3, 13, 23}),
    ],
)
def test_cron_fields(field: str, low: int, high: int, values: set[int]) -> None:
    assert job.cron_values(field, low, high) == values


@pytest.mark.parametrize("field", ["24", "5-3", "*/0", "x", ""])
def test_bad_cron_fields_are_refused(field: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  # int() or our range check, either names it
        job.cron_values(field, 0, 23)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-12-02T15:00:00", True),  # 00:00 on Thursday in Tokyo
        ("2026-12-03T03:00:00", True),  # 12:00 in Tokyo
        ("2026-12-03T00:00:00", False),  # 00:00 UTC is 09:00 in Tokyo
        ("2026-12-03T12:00:00", False),  # 12:00 UTC is 21:00 in Tokyo
        ("2026-12-03T03:59:59", True),  # still the hour (cron starts it at the minute)
    ],
)
def test_backup_hours_are_the_studios(now: str, expected: bool) -> None:
    assert job.due(utc(now), "Asia/Tokyo", "0,12", "*") is expected


def test_weekday_is_the_studios_day_not_the_hosts() -> None:
    # Saturday 18:30 UTC is Sunday 03:30 in Tokyo: the weekly check (Sunday, 0 or 7) is due.
    saturday_utc = utc("2026-12-05T18:30:00")
    assert job.due(saturday_utc, "Asia/Tokyo", "3", "0")
    assert job.due(saturday_utc, "Asia/Tokyo", "3", "7")
    assert not job.due(saturday_utc, "Etc/UTC", "3", "0")
    assert not job.due(utc("2026-12-06T18:30:00"), "Asia/Tokyo", "3", "0")  # Monday in Tokyo


def test_daylight_saving_keeps_the_local_hour() -> None:
    # Berlin: 00:00 local is 23:00 UTC in winter and 22:00 UTC in summer.
    assert job.due(utc("2026-01-14T23:00:00"), "Europe/Berlin", "0", "*")
    assert job.due(utc("2026-07-14T22:00:00"), "Europe/Berlin", "0", "*")
    assert not job.due(utc("2026-07-14T23:00:00"), "Europe/Berlin", "0", "*")


def config(tmp_path: Path) -> Path:
    """A configuration whose toolkit is `false`: a run that goes on records a failure."""
    path = tmp_path / "db-ops.json"
    path.write_text(
        json.dumps(
            {
                "voxeldb": "/bin/false",
                "status_file": str(tmp_path / "status.json"),
                "webhook_file": str(tmp_path / "no-webhook"),
                "alert_timeout": 1,
                "host": "game-1",
                "units": {},
                "jobs": {"backup": []},
            }
        )
    )
    return path


def test_a_run_that_is_not_due_does_nothing_and_a_due_one_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job, "utc_now", lambda: utc("2026-12-03T00:00:00"))  # 09:00 in Tokyo
    args = ["--config", str(config(tmp_path)), "run", "backup", "--timezone", "Asia/Tokyo"]

    assert job.main([*args, "--hours", "0,12"]) == 0
    assert not (tmp_path / "status.json").exists()

    assert job.main([*args, "--hours", "9"]) == 1  # due: the (failing) toolkit ran
    assert json.loads((tmp_path / "status.json").read_text())["backup"]["result"] == "failed"


def test_a_host_without_the_engine_skips_the_game_check(tmp_path: Path) -> None:
    """No docker/podman CLI at all (a host whose server runs elsewhere): said, not a crash."""
    path = tmp_path / "db-ops.json"
    path.write_text(
        json.dumps(
            {
                "voxeldb": "/bin/true",
                "status_file": str(tmp_path / "status.json"),
                "webhook_file": str(tmp_path / "no-webhook"),
                "alert_timeout": 1,
                "host": "game-1",
                "units": {},
                "jobs": {"check": []},
                "game_check": {
                    "engine": str(tmp_path / "no-such-engine"),
                    "container": "mmo-voxel-server",
                    "label": "org.mmo-voxel.db-healthcheck",
                    "db": str(tmp_path / "world.db"),
                    "mount": "/data",
                    "user": "10001:10001",
                    "timeout": 5,
                    "scratch_dir": str(tmp_path / "scratch"),
                },
            }
        )
    )

    assert job.main(["--config", str(path), "run", "check"]) == 0

    detail = json.loads((tmp_path / "status.json").read_text())["check"]["detail"]
    assert detail.endswith(f"; game check skipped: no {tmp_path / 'no-such-engine'} on this host")
