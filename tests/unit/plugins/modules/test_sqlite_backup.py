"""Module sqlite_backup: argument handling, check mode, diff and readable failures."""

from __future__ import annotations

import pytest
from sqlite_module_helpers import make_world, run_module

from ansible_collections.mmo_voxel.ops.plugins.modules import sqlite_backup


@pytest.fixture
def world(tmp_path, capsys):
    return make_world(tmp_path, capsys)


def test_backup_check_apply_repeat_with_diff(tmp_path, world, capsys):
    args = {"db_path": str(world), "backup_dir": str(tmp_path / "b"), "retention": {"keep_last": 2}}
    planned = run_module(sqlite_backup, capsys, args, check_mode=True, diff=True)
    assert planned["changed"] is True
    assert "(new backup)" in planned["diff"]["after"]
    assert not (tmp_path / "b").exists()
    done = run_module(sqlite_backup, capsys, args, diff=True)
    assert done["changed"] is True
    assert done["backup"]["name"] in done["diff"]["after"]
    assert done["retention"]["kept"][done["backup"]["name"]][0] == "newest"
    again = run_module(sqlite_backup, capsys, args)
    assert again["changed"] is False


def test_backup_failure_names_the_path(tmp_path, capsys):
    result = run_module(
        sqlite_backup, capsys, {"db_path": str(tmp_path / "nope.db"), "backup_dir": str(tmp_path)}
    )
    assert result["failed"] is True
    assert result["_rc"] == 1
    assert str(tmp_path / "nope.db") in result["msg"]


def test_backup_rejects_unknown_method(tmp_path, world, capsys):
    result = run_module(
        sqlite_backup,
        capsys,
        {"db_path": str(world), "backup_dir": str(tmp_path / "b"), "method": "cp"},
    )
    assert result["failed"] is True
    assert "method" in result["msg"]


def test_backup_refuses_a_database_without_tables_unless_allow_empty(tmp_path, capsys):
    db = tmp_path / "world.db"
    db.write_bytes(b"")
    args = {"db_path": str(db), "backup_dir": str(tmp_path / "b")}
    refused = run_module(sqlite_backup, capsys, args)
    assert refused["failed"] is True
    assert f"database {db} holds no tables" in refused["msg"]
    assert not (tmp_path / "b").exists()
    done = run_module(sqlite_backup, capsys, dict(args, allow_empty=True))
    assert done["changed"] is True


def test_backup_refuses_a_database_without_the_expected_tables(tmp_path, world, capsys):
    args = {"db_path": str(world), "backup_dir": str(tmp_path / "b")}
    refused = run_module(sqlite_backup, capsys, dict(args, expected_tables=["region", "chunk"]))
    assert refused["failed"] is True
    assert "holds none of the expected tables (region, chunk)" in refused["msg"]
    done = run_module(sqlite_backup, capsys, dict(args, expected_tables=["chunks", "guilds"]))
    assert done["changed"] is True
