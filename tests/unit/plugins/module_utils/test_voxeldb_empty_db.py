"""A database without tables is no world: backup and check refuse it (issue #18 item 4)."""

from __future__ import annotations

import json
import sqlite3

import pytest
from vdb_unit_helpers import make_region_world

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb import manifest as mf
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.cli import main


def run(capsys, *argv):
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def empty_db(tmp_path, kind: str):
    db = tmp_path / "db" / "world.db"
    db.parent.mkdir()
    if kind == "zero-bytes":  # `: > world.db`
        db.write_bytes(b"")
    elif kind == "fresh-wal":  # what a first deploy creates before the server starts
        sqlite3.connect(db).execute("PRAGMA journal_mode=WAL").close()
    else:  # every migration undone: only the migration log is left
        conn = sqlite3.connect(db)
        conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY)")
        conn.close()
    return db


@pytest.mark.parametrize("kind", ["zero-bytes", "fresh-wal", "only-schema-migrations"])
def test_backup_of_a_database_without_tables_is_refused(tmp_path, capsys, kind):
    db = empty_db(tmp_path, kind)
    backups = tmp_path / "backups"
    code, result = run(capsys, "backup", "--db", str(db), "--backup-dir", str(backups))
    assert code == 1
    assert f"database {db} holds no tables" in result["msg"]
    assert mf.list_backups(backups) == []
    assert not backups.exists() or mf.orphan_files(backups) == []


@pytest.mark.parametrize("kind", ["zero-bytes", "fresh-wal"])
def test_check_of_a_database_without_tables_is_unhealthy(tmp_path, capsys, kind):
    db = empty_db(tmp_path, kind)
    code, report = run(capsys, "check", "--db", str(db))
    assert (code, report["healthy"], report["failing"]) == (2, False, ["tables"])
    code = main(["check", "--db", str(db)])
    assert code == 2
    assert f"database {db} holds no tables" in capsys.readouterr().out


def test_allow_empty_backs_up_an_empty_database_on_purpose(tmp_path, capsys):
    db = empty_db(tmp_path, "fresh-wal")
    backups = tmp_path / "backups"
    code, result = run(
        capsys, "backup", "--db", str(db), "--backup-dir", str(backups), "--allow-empty"
    )
    assert (code, result["changed"]) == (0, True)
    assert [e.ok for e in mf.list_backups(backups)] == [True]


def test_expected_tables(tmp_path, capsys):
    db = make_region_world(tmp_path / "db" / "world.db")
    backups = str(tmp_path / "backups")
    # The reference server's tables: none of them is in this world.
    code, result = run(
        capsys,
        "backup",
        "--db",
        str(db),
        "--backup-dir",
        backups,
        "--expected-table",
        "chunks",
        "--expected-table",
        "players",
        "--allow-empty",  # allows no tables, not the wrong ones
    )
    assert code == 1
    assert f"database {db} holds none of the expected tables (chunks, players)" in result["msg"]
    code, result = run(
        capsys, "backup", "--db", str(db), "--backup-dir", backups, "--expected-table", "chunk"
    )
    assert (code, result["changed"]) == (0, True)
    code, report = run(
        capsys, "check", "--db", str(db), "--expected-table", "chunk", "--expected-table", "guild"
    )
    assert (code, report["failing"]) == (2, ["tables"])
    (tables,) = [c for c in report["checks"] if c["name"] == "tables"]
    assert tables["detail"]["missing"] == ["guild"]
    code, report = run(capsys, "check", "--db", str(db), "--expected-table", "chunk")
    assert (code, report["healthy"]) == (0, True)
