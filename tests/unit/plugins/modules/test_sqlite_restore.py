"""Module sqlite_restore: argument handling, check mode, diff and readable failures."""

from __future__ import annotations

import json
import sqlite3

import pytest
from sqlite_module_helpers import make_world, run_module

from ansible_collections.mmo_voxel.ops.plugins.modules import (
    sqlite_backup,
    sqlite_restore,
)


@pytest.fixture
def world(tmp_path, capsys):
    return make_world(tmp_path, capsys)


def test_restore_check_mode_and_mutual_exclusion(tmp_path, world, capsys):
    backups = tmp_path / "b"
    run_module(sqlite_backup, capsys, {"db_path": str(world), "backup_dir": str(backups)})
    conn = sqlite3.connect(world)
    conn.execute("DELETE FROM chunks")
    conn.commit()
    conn.close()
    args = {"db_path": str(world), "backup_dir": str(backups)}
    planned = run_module(sqlite_restore, capsys, args, check_mode=True, diff=True)
    assert planned["changed"] is True
    assert planned["set_aside"][0]["from"] == str(world)
    assert "backup" in planned["diff"]["after"]
    assert sqlite3.connect(world).execute("SELECT COUNT(*) FROM chunks").fetchone()[0] == 0
    both = run_module(sqlite_restore, capsys, dict(args, name="x", before="2026-01-01"))
    assert both["failed"] is True
    assert "mutually exclusive" in both["msg"]


def test_restore_refuses_an_older_backup_unless_allow_older(tmp_path, world, capsys):
    backups = tmp_path / "b"
    args = {"db_path": str(world), "backup_dir": str(backups)}
    good = run_module(sqlite_backup, capsys, args)["backup"]["name"]
    conn = sqlite3.connect(world)
    conn.execute("DELETE FROM chunks WHERE cx = 0")
    conn.commit()
    conn.close()
    bad = run_module(sqlite_backup, capsys, args)["backup"]["name"]
    (backups / f"{bad}.db").write_bytes(b"not the backup any more")
    refused = run_module(sqlite_restore, capsys, args)
    assert refused["failed"] is True
    assert f"newer backup(s) failed verification: {bad}" in refused["msg"]
    assert "allow_older" in refused["msg"]
    assert [f["name"] for f in refused["failed_backups"]] == [bad]
    assert refused["verified_backup"]["name"] == good
    done = run_module(sqlite_restore, capsys, dict(args, allow_older=True))
    assert done["changed"] is True
    assert done["backup"]["name"] == good
    # Warnings reach the controller as module.warn events (shown as [WARNING] by Ansible).
    assert f"newer backup {bad} failed verification" in json.dumps(done["warnings"])
