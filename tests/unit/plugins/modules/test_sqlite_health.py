"""Module sqlite_health: argument handling, check mode, diff and readable failures."""

from __future__ import annotations

import pytest
from sqlite_module_helpers import make_world, run_module

from ansible_collections.mmo_voxel.ops.plugins.modules import sqlite_health


@pytest.fixture
def world(tmp_path, capsys):
    return make_world(tmp_path, capsys)


def test_health_fails_when_unhealthy_unless_told_not_to(world, capsys):
    args = {"db_path": str(world), "expected_indexes": ["missing_one"]}
    failed = run_module(sqlite_health, capsys, args)
    assert failed["failed"] is True
    assert "missing_indexes" in failed["msg"]
    report = run_module(sqlite_health, capsys, dict(args, fail_on_unhealthy=False))
    assert report["healthy"] is False
    assert report["changed"] is False


def test_health_in_check_mode_reports_the_same(world, capsys):
    normal = run_module(sqlite_health, capsys, {"db_path": str(world), "integrity": "full"})
    checked = run_module(
        sqlite_health, capsys, {"db_path": str(world), "integrity": "full"}, check_mode=True
    )
    assert normal["healthy"] is checked["healthy"] is True
    assert normal["checks"] == checked["checks"]


def test_health_of_an_empty_file_names_the_file(tmp_path, capsys):
    db = tmp_path / "world.db"
    db.write_bytes(b"")
    failed = run_module(sqlite_health, capsys, {"db_path": str(db)})
    assert failed["failed"] is True
    assert failed["failing"] == ["tables"]
    assert f"database {db} holds no tables" in failed["msg"]


def test_health_expected_tables(world, capsys):
    args = {"db_path": str(world), "expected_tables": ["chunks", "players"]}
    assert run_module(sqlite_health, capsys, args)["healthy"] is True
    failed = run_module(sqlite_health, capsys, dict(args, expected_tables=["chunks", "guilds"]))
    assert failed["failing"] == ["tables"]
    assert "lacks the expected table(s) guilds" in failed["msg"]
