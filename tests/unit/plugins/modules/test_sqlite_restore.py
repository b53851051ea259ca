"""Module sqlite_restore: argument handling, check mode, diff and readable failures."""

from __future__ import annotations

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
