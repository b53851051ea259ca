"""Module sqlite_migrate: argument handling, check mode, diff and readable failures."""

from __future__ import annotations

import pytest
from sqlite_module_helpers import MIGRATIONS, make_world, run_module

from ansible_collections.mmo_voxel.ops.plugins.modules import sqlite_migrate


@pytest.fixture
def world(tmp_path, capsys):
    return make_world(tmp_path, capsys)


def test_migrate_check_mode_lists_and_failure_reports_statement(tmp_path, world, capsys):
    migrations = tmp_path / "m"
    migrations.mkdir()
    (migrations / "0001_create_chunks.sql").write_bytes(
        (MIGRATIONS / "0001_create_chunks.sql").read_bytes()
    )
    (migrations / "0002_bad.sql").write_text(
        "-- migrate:up\nCREATE TABLE ok (x);\nINSERT INTO nowhere VALUES (1);\n"
    )
    args = {"db_path": str(world), "migrations_dir": str(migrations)}
    planned = run_module(sqlite_migrate, capsys, args, check_mode=True, diff=True)
    assert planned["pending"] == ["0002_bad"]
    assert "0002_bad" in planned["diff"]["after"]
    failed = run_module(sqlite_migrate, capsys, args)
    assert failed["failed"] is True
    assert "0002_bad.sql" in failed["msg"]
    assert failed["statement"] == "INSERT INTO nowhere VALUES (1);"
    assert "no such table" in failed["sqlite_error"]
    assert failed["statement_number"] == 2


def test_migrate_down_to_zero_and_back_up(world, capsys):
    args = {"db_path": str(world), "migrations_dir": str(MIGRATIONS)}
    assert run_module(sqlite_migrate, capsys, args)["changed"] is False
    down = run_module(sqlite_migrate, capsys, dict(args, target=0), diff=True)
    assert (down["direction"], down["version_after"]) == ("down", 0)
    assert "schema version 1" in down["diff"]["before"]
    up = run_module(sqlite_migrate, capsys, args)
    assert (up["direction"], up["version_after"], up["changed"]) == ("up", 1, True)


def test_migrate_missing_database_names_it(tmp_path, capsys):
    result = run_module(
        sqlite_migrate,
        capsys,
        {"db_path": str(tmp_path / "gone.db"), "migrations_dir": str(MIGRATIONS)},
    )
    assert result["failed"] is True
    assert f"database {tmp_path / 'gone.db'} does not exist" in result["msg"]
