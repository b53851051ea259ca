"""Errors say what happened and to which file (issue #18 item 6), and --keep-* are checked."""

from __future__ import annotations

import errno
import gzip
import json
import sqlite3

import pytest
from vdb_unit_helpers import make_region_world

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb import backup as bk
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb import errors as er
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb import manifest as mf
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.cli import main


@pytest.fixture
def world(tmp_path):
    return make_region_world(tmp_path / "db" / "world.db")


def cli(capsys, *argv):
    """Run the CLI with --json; return (exit code, the JSON it printed or None, stderr)."""
    try:
        code = main([*argv, "--json"])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if captured.out else None, captured.err


def real_sqlite_error(kind: str, tmp_path) -> sqlite3.Error:
    """A sqlite3.Error raised by SQLite itself for ``kind``."""
    conn = sqlite3.connect(tmp_path / f"{kind}.db", timeout=0)
    try:
        if kind == "full":
            conn.execute("CREATE TABLE t (x)")
            conn.execute("PRAGMA max_page_count = 2")
            conn.execute("INSERT INTO t VALUES (zeroblob(100000))")
        elif kind == "unique":
            conn.execute("CREATE TABLE t (x UNIQUE)")
            conn.execute("INSERT INTO t VALUES (1), (1)")
        elif kind == "notadb":
            (tmp_path / "text.db").write_text("hello, this is no database" * 10)
            sqlite3.connect(tmp_path / "text.db").execute("SELECT * FROM sqlite_master")
        elif kind == "busy":
            holder = sqlite3.connect(tmp_path / "busy.db", isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")
            conn.execute("CREATE TABLE t (x)")
    except sqlite3.Error as exc:
        return exc
    finally:
        conn.close()
    raise AssertionError(f"SQLite raised nothing for {kind}")


@pytest.mark.parametrize(
    ("kind", "expected", "suggests_health_check"),
    [
        ("full", "disk full writing /srv/backups/x.db", False),
        ("unique", "constraint violation in database /srv/world.db", False),
        ("busy", "locked by another connection", False),
        ("notadb", "is damaged or not a database", True),
    ],
)
def test_sqlite_errors_are_mapped_to_what_happened(tmp_path, kind, expected, suggests_health_check):
    exc = real_sqlite_error(kind, tmp_path)
    message = er.sqlite_error_message(
        exc, db="/srv/world.db", writing="/srv/backups/x.db" if kind == "full" else None
    )
    assert expected in message
    assert ("health check" in message) is suggests_health_check
    if kind == "unique":
        assert "UNIQUE constraint failed: t.x" in message


def test_a_full_disk_during_gzip_names_the_file(tmp_path, world, capsys, monkeypatch):
    def no_space(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gzip.GzipFile, "write", no_space)
    backups = tmp_path / "backups"
    code, result, _ = cli(
        capsys, "backup", "--db", str(world), "--backup-dir", str(backups), "--compression", "gzip"
    )
    assert code == 1
    assert f"no space left on device writing {backups}/.voxeldb-tmp-world-" in result["msg"]
    assert "compressing" in result["msg"]
    assert "health check" not in result["msg"]
    assert mf.list_backups(backups) == []
    assert mf.orphan_files(backups) == []  # no temporary file left behind


def test_a_full_disk_during_the_copy_names_the_file(tmp_path, world, capsys, monkeypatch):
    full = real_sqlite_error("full", tmp_path)

    def copy_fails(db, target, *args, **kwargs):
        target.write_bytes(b"partial")
        raise full

    monkeypatch.setattr(bk, "copy_database", copy_fails)
    backups = tmp_path / "backups"
    code, result, _ = cli(capsys, "backup", "--db", str(world), "--backup-dir", str(backups))
    assert code == 1
    assert f"disk full writing {backups}/.voxeldb-tmp-world-" in result["msg"]
    assert f"while copying {world} into {backups}" in result["msg"]
    assert "health check" not in result["msg"]
    assert mf.orphan_files(backups) == []


def test_a_damaged_database_suggests_the_health_check(tmp_path, world, capsys):
    conn = sqlite3.connect(world)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    raw = bytearray(world.read_bytes())
    raw[100:4096] = bytes(range(256)) * 15 + bytes(range(156))  # page 1 (the schema) destroyed
    world.write_bytes(bytes(raw))
    code, result, _ = cli(capsys, "check", "--db", str(world))
    assert code == 2
    code, result, _ = cli(
        capsys, "repair-chunks", "--db", str(world), "--backup-dir", str(tmp_path / "b")
    )
    assert code == 1
    assert f"database {world} is damaged" in result["msg"]
    assert "health check" in result["msg"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["backup", "--retention", "--keep-last", "-1"], "--keep-last: must be >= 0"),
        (["backup", "--keep-daily", "-2"], "--keep-daily: must be >= 0"),
        (["backup", "--keep-last", "2"], "--keep-last given without --retention"),
        (["backup", "--keep-weekly", "1", "--keep-monthly", "1"], "without --retention"),
        (["prune", "--keep-monthly", "-3"], "--keep-monthly: must be >= 0"),
    ],
)
def test_keep_options_are_checked(tmp_path, world, capsys, argv, message):
    backups = tmp_path / "backups"
    where = ["--backup-dir", str(backups)] + (["--db", str(world)] if argv[0] == "backup" else [])
    code, _, err = cli(capsys, argv[0], *where, *argv[1:])
    assert code == 1
    assert message in err
    assert not backups.exists()  # nothing was backed up


def test_keep_options_with_retention_apply(tmp_path, world, capsys):
    backups = tmp_path / "backups"
    for force in ([], ["--force"], ["--force"]):
        code, result, _ = cli(
            capsys,
            "backup",
            "--db",
            str(world),
            "--backup-dir",
            str(backups),
            *force,
            "--retention",
            "--keep-last",
            "1",
            "--keep-daily",
            "0",
            "--keep-weekly",
            "0",
            "--keep-monthly",
            "0",
        )
        assert code == 0
    assert len(result["retention"]["deleted"]) == 1
    assert len(mf.list_backups(backups)) == 1
