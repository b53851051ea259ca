"""Module sqlite_chunk_repair: argument handling, check mode, diff and readable failures."""

from __future__ import annotations

import sqlite3

import pytest
from sqlite_module_helpers import make_world, run_module

from ansible_collections.mmo_voxel.ops.plugins.modules import (
    sqlite_backup,
    sqlite_chunk_repair,
)


@pytest.fixture
def world(tmp_path, capsys):
    return make_world(tmp_path, capsys)


def test_chunk_repair_check_mode_and_fail_on_unrepairable(tmp_path, world, capsys):
    backups = tmp_path / "b"
    run_module(sqlite_backup, capsys, {"db_path": str(world), "backup_dir": str(backups)})
    conn = sqlite3.connect(world)
    conn.execute("UPDATE chunks SET payload = x'00' WHERE cx = 1")
    conn.execute("INSERT INTO chunks VALUES (9, 9, 9, x'01', 'bad', 't')")
    conn.commit()
    conn.close()
    args = {"db_path": str(world), "backup_dir": str(backups)}
    planned = run_module(sqlite_chunk_repair, capsys, args, check_mode=True)
    assert [r["key"] for r in planned["repaired"]] == [{"cx": 1, "cy": 0, "cz": 0}]
    failed = run_module(sqlite_chunk_repair, capsys, dict(args, fail_on_unrepairable=True))
    assert failed["failed"] is True
    assert failed["repaired"][0]["key"] == {"cx": 1, "cy": 0, "cz": 0}
    assert failed["unrepairable"] == [{"cx": 9, "cy": 9, "cz": 9}]


def test_chunk_repair_without_damage_changes_nothing(tmp_path, world, capsys):
    result = run_module(
        sqlite_chunk_repair,
        capsys,
        {"db_path": str(world), "backup_dir": str(tmp_path / "none-yet")},
        diff=True,
    )
    assert (result["changed"], result["damaged"], "diff" in result) == (False, [], False)
    assert not (tmp_path / "none-yet").exists()


def test_chunk_repair_refuses_a_key_that_is_not_unique(tmp_path, world, capsys):
    result = run_module(
        sqlite_chunk_repair,
        capsys,
        {"db_path": str(world), "backup_dir": str(tmp_path / "b"), "key_columns": ["cx", "cy"]},
    )
    assert result["failed"] is True
    assert "key columns cx, cy of table 'chunks' are not covered" in result["msg"]
    assert "primary key: cx, cy, cz" in result["msg"]
    assert result["unique_keys"] == [{"what": "primary key", "columns": ["cx", "cy", "cz"]}]
