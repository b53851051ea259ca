"""roles/db_schedule/files/mmo_voxel_db_job.py: the studio's clock, the status file, the alerts.

On cron hosts the job is started every hour and goes on only when the hour and weekday, in the
studio's zone, are the ones the role was given; the real zone database decides (zoneinfo). The
status file is written for real; alerts go to a local Discord receiver (tests/discord_receiver.py).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from discord_receiver import DiscordReceiver

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


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["run"],
        ["run", "restore"],  # not one of the status jobs
        ["alert"],
        ["run", "backup", "--unknown"],
    ],
)
def test_bad_command_lines_are_refused(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as refused:
        job.main(["--config", "/nonexistent", *argv])
    assert refused.value.code == 2
    assert "usage: mmo-voxel-db-job" in capsys.readouterr().err


# --------------------------------------------------------------------------- status file


def test_a_run_records_ok_and_a_failure_keeps_the_last_ok_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status = tmp_path / "status.json"
    monkeypatch.setattr(job, "utc_now", lambda: utc("2026-12-01T00:00:05.123456"))
    job.record(status, "backup", True, "wrote b1")
    monkeypatch.setattr(job, "utc_now", lambda: utc("2026-12-02T00:00:05"))
    job.record(status, "backup", False, "x" * 800)

    entry = json.loads(status.read_text())["backup"]
    assert entry == {
        "result": "failed",
        "finished_at": "2026-12-02T00:00:05Z",  # to the second (docs/contracts.md)
        "last_ok_at": "2026-12-01T00:00:05Z",
        "detail": "x" * 500,
    }
    assert status.stat().st_mode & 0o777 == 0o644  # the metrics collector reads it
    assert sorted(p.name for p in tmp_path.iterdir()) == [".status.json.lock", "status.json"]


@pytest.mark.parametrize(
    ("minutes_later", "kept"),
    [(5, True), (11, False)],
)
def test_the_alert_keeps_a_fresh_failure_the_job_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, minutes_later: int, kept: bool
) -> None:
    status = tmp_path / "status.json"
    monkeypatch.setattr(job, "utc_now", lambda: utc("2026-12-02T00:00:00"))
    job.record(status, "check", False, "unhealthy: integrity")
    later = utc("2026-12-02T00:00:00") + dt.timedelta(minutes=minutes_later)
    monkeypatch.setattr(job, "utc_now", lambda: later)

    detail = job.record(status, "check", False, "unit failed", keep_fresh_failure=True)

    assert detail == ("unhealthy: integrity" if kept else "unit failed")
    assert json.loads(status.read_text())["check"]["detail"] == detail


@pytest.mark.parametrize("stamp", [None, "", "not a time", 7])
def test_an_unreadable_finish_time_is_no_time(stamp: object) -> None:
    assert job.finished_at({"finished_at": stamp}) is None


# --------------------------------------------------------------------------- messages


B1 = {"name": "b1", "size": 42}


@pytest.mark.parametrize(
    ("name", "code", "result", "stderr", "detail"),
    [
        ("backup", 0, {"changed": True, "backup": B1}, "", "wrote b1 (42 bytes)"),
        ("backup", 0, {"changed": False, "backup": B1}, "", "unchanged since b1 (42 bytes)"),
        ("check", 0, {"healthy": True}, "", "healthy"),
        ("check", 0, {"healthy": True, "warnings": ["wal"]}, "", "healthy, warnings: ['wal']"),
        ("check", 1, {"healthy": False, "failing": ["fk"]}, "", "unhealthy: fk"),
        ("drill", 1, {"failed": True, "msg": "no backup"}, "", "no backup"),
        ("drill", 0, {"msg": "restored b1"}, "", "restored b1"),
        ("backup", 2, None, "warning\nvoxeldb: disk full\n\n", "voxeldb: disk full"),
        ("backup", 3, None, "", "voxeldb exited 3 without a result"),
    ],
)  # fmt: skip
def test_describe_says_one_line_per_outcome(
    name: str, code: int, result: dict | None, stderr: str, detail: str
) -> None:
    assert job.describe(name, code, result, stderr) == detail


def test_the_alert_names_the_host_and_the_job() -> None:
    text = job.alert_text({"host": "game-1"}, "backup", "voxeldb: disk full")
    assert text == "mmo_voxel game-1: database backup FAILED: voxeldb: disk full"


# --------------------------------------------------------------------------- Discord


def alert_config(tmp_path: Path, url: str | None) -> dict:
    webhook = tmp_path / "db-alert-webhook"
    if url is not None:
        webhook.write_text(url + "\n")
    return {"webhook_file": str(webhook), "alert_timeout": 5, "host": "game-1"}


def test_a_failed_cron_run_posts_its_alert(
    tmp_path: Path, discord_receiver: DiscordReceiver, capsys: pytest.CaptureFixture
) -> None:
    cfg = json.loads(config(tmp_path).read_text())
    cfg["webhook_file"] = alert_config(tmp_path, discord_receiver.url)["webhook_file"]
    (tmp_path / "db-ops.json").write_text(json.dumps(cfg))

    assert job.main(["--config", str(tmp_path / "db-ops.json"), "run", "backup", "--alert"]) == 1

    [post] = discord_receiver.received()
    assert post.body["content"].startswith("mmo_voxel game-1: database backup FAILED: ")
    assert post.body["allowed_mentions"] == {"parse": []}
    assert post.headers["User-Agent"] == "mmo-voxel-db-job/1"
    assert "alert posted to Discord (HTTP 204)" in capsys.readouterr().out


def test_a_refused_alert_is_reported_without_the_url(
    tmp_path: Path, discord_receiver: DiscordReceiver, capsys: pytest.CaptureFixture
) -> None:
    discord_receiver.status = 429

    assert not job.send_alert(alert_config(tmp_path, discord_receiver.url), "@everyone x")

    out, err = capsys.readouterr()
    assert "posting the alert to Discord failed: HTTP 429" in err
    assert DiscordReceiver.TOKEN_PATH not in out + err
    assert discord_receiver.received()[0].body["content"] == "@everyone x"


def test_no_webhook_means_status_file_only(
    tmp_path: Path, discord_receiver: DiscordReceiver, capsys: pytest.CaptureFixture
) -> None:
    assert job.send_alert(alert_config(tmp_path, None), "text")
    assert "no Discord webhook configured" in capsys.readouterr().out
    assert discord_receiver.received() == []


def test_the_installed_job_finds_the_shared_helpers_in_lib_beside_bin(tmp_path: Path) -> None:
    """The role's layout: <install>/bin/mmo-voxel-db-job, ops_common under <install>/lib."""
    module_utils = tmp_path / "lib/ansible_collections/mmo_voxel/ops/plugins/module_utils"
    module_utils.mkdir(parents=True)
    shutil.copy(PATH.parents[3] / "plugins/module_utils/ops_common.py", module_utils)
    (tmp_path / "bin").mkdir()
    launcher = tmp_path / "bin" / "mmo-voxel-db-job"
    shutil.copy(PATH, launcher)

    # -I: no PYTHONPATH, no user site: only what the install itself holds.
    done = subprocess.run(
        [sys.executable, "-I", str(launcher), "--help"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )

    assert done.returncode == 0, done.stderr
    assert "usage: mmo-voxel-db-job" in done.stdout
