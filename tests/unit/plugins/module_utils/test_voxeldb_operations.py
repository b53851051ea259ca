"""Backup, restore, health and chunk repair on small real SQLite files (no Ansible)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3

import pytest
from vdb_unit_helpers import dump, make_world

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb import manifest as mf
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.backup import (
    METHODS,
    create_backup,
    prune,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.chunks import repair_chunks
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.cli import main
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.errors import (
    BackupError,
    InputError,
    OlderBackupRefused,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.health import check_health
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.restore import restore_backup
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.retention import (
    RetentionPolicy,
)


@pytest.fixture
def world(tmp_path):
    return make_world(tmp_path / "db" / "world.db")


def touch_db(db, value="x"):
    conn = sqlite3.connect(db)
    conn.execute("UPDATE chunks SET updated_at = ? WHERE cx = 0", (value,))
    conn.commit()
    conn.close()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_backup_methods_make_verified_restorable_copies(tmp_path, world, method, compression):
    backups = tmp_path / "backups"
    result = create_backup(world, backups, method=method, compression=compression, check="full")
    assert result["changed"] is True
    (entry,) = mf.list_backups(backups)
    assert entry.ok
    data = entry.manifest.data
    assert (data["method"], data["compression"], data["source"]) == (
        method,
        compression,
        str(world),
    )
    assert data["page_count"] > 0
    assert data["sqlite_version"] == sqlite3.sqlite_version
    with mf.open_db_image(entry.manifest, tmp_path) as image:
        assert dump(image) == dump(world)
    assert sorted(p.name for p in backups.iterdir() if not p.name.startswith(".voxeldb.lock")) == [
        data["file"],
        f"{entry.name}.manifest.json",
    ]


def test_backup_is_idempotent_until_the_database_changes(tmp_path, world):
    backups = tmp_path / "backups"
    assert create_backup(world, backups)["changed"] is True
    again = create_backup(world, backups)
    assert again["changed"] is False
    assert "equals the newest verified backup" in again["skipped_reason"]
    assert create_backup(world, backups, check_mode=True)["changed"] is False
    touch_db(world)
    assert create_backup(world, backups, check_mode=True)["changed"] is True
    assert len(mf.list_backups(backups)) == 1
    assert create_backup(world, backups)["changed"] is True
    assert create_backup(world, backups, force=True)["changed"] is True
    assert len(mf.list_backups(backups)) == 3


def test_backup_check_mode_touches_nothing(tmp_path, world):
    backups = tmp_path / "backups"
    result = create_backup(world, backups, check_mode=True)
    assert result["changed"] is True
    assert not backups.exists()


def test_corrupt_newest_backup_does_not_count_for_idempotence(tmp_path, world):
    backups = tmp_path / "backups"
    name = create_backup(world, backups)["backup"]["name"]
    data = backups / f"{name}.db"
    raw = bytearray(data.read_bytes())
    raw[-100] ^= 1
    data.write_bytes(bytes(raw))
    assert create_backup(world, backups)["changed"] is True


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("db-file", "is the database file itself"),
        ("db-dir", "database's own directory"),
        ("regular-file", "not a directory"),
    ],
)
def test_backup_dir_refusals(tmp_path, world, where, message):
    target = {
        "db-file": world,
        "db-dir": world.parent,
        "regular-file": tmp_path / "plain",
    }[where]
    (tmp_path / "plain").write_text("x")
    before = sorted(os.listdir(world.parent))
    with pytest.raises(InputError, match=message):
        create_backup(world, target)
    assert sorted(os.listdir(world.parent)) == before


def test_backup_dir_symlink_to_db_dir_is_refused(tmp_path, world):
    link = tmp_path / "link"
    link.symlink_to(world.parent)
    with pytest.raises(InputError, match="own directory"):
        create_backup(world, link)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "does not exist"),
        ("not-sqlite", "not a SQLite 3 database"),
        ("directory", "not a regular file"),
    ],
)
def test_bad_database_is_refused_before_anything(tmp_path, kind, message):
    db = tmp_path / "world.db"
    if kind == "not-sqlite":
        db.write_text("hello")
    elif kind == "directory":
        db.mkdir()
    with pytest.raises(InputError, match=message):
        create_backup(db, tmp_path / "backups")
    assert not (tmp_path / "backups").exists()


def test_backup_removes_stale_temps_and_never_lists_them(tmp_path, world):
    backups = tmp_path / "backups"
    backups.mkdir()
    (backups / ".voxeldb-tmp-world-x").write_bytes(b"half")
    result = create_backup(world, backups)
    assert result["removed_temps"] == [".voxeldb-tmp-world-x"]


def test_retention_deletes_only_verified_and_never_the_newest(tmp_path, world):
    backups = tmp_path / "backups"
    names = []
    for i in range(4):
        touch_db(world, str(i))
        names.append(create_backup(world, backups)["backup"]["name"])
    broken = backups / f"{names[0]}.db"
    broken.write_bytes(b"garbage")
    result = prune(backups, RetentionPolicy(1, 0, 0, 0), check_mode=True)
    assert result["deleted"] == names[1:3]
    assert len(mf.list_backups(backups)) == 4
    result = prune(backups, RetentionPolicy(1, 0, 0, 0))
    assert result["changed"] is True
    assert [i["name"] for i in result["invalid"]] == [names[0]]
    assert [e.name for e in mf.list_backups(backups)] == [names[0], names[3]]
    assert prune(backups, RetentionPolicy(1, 0, 0, 0))["changed"] is False


def test_restore_round_trip_sets_old_files_aside(tmp_path, world):
    backups = tmp_path / "backups"
    before = dump(world)
    name = create_backup(world, backups, compression="gzip")["backup"]["name"]
    touch_db(world, "changed after backup")
    changed = dump(world)
    plan = restore_backup(world, backups, check_mode=True)
    assert plan["changed"] is True
    assert plan["backup"]["name"] == name
    assert dump(world) == changed
    done = restore_backup(world, backups)
    assert done["changed"] is True
    assert dump(world) == before
    aside = [p for p in world.parent.iterdir() if ".replaced-" in p.name]
    assert [a["to"] for a in done["set_aside"]] == [str(p) for p in aside]
    assert dump(aside[0]) == changed
    conn = sqlite3.connect(world)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    again = restore_backup(world, backups)
    assert again["changed"] is False


def test_restore_into_missing_database(tmp_path, world):
    backups = tmp_path / "backups"
    before = dump(world)
    create_backup(world, backups)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{world}{suffix}"):
            os.unlink(f"{world}{suffix}")
    result = restore_backup(world, backups)
    assert result["set_aside"] == []
    assert dump(world) == before


def test_restore_by_name_and_by_time(tmp_path, world):
    backups = tmp_path / "backups"
    first = create_backup(world, backups)
    touch_db(world)
    create_backup(world, backups)
    by_name = restore_backup(world, backups, name=first["backup"]["name"], check_mode=True)
    assert by_name["backup"]["name"] == first["backup"]["name"]
    by_time = restore_backup(world, backups, before=first["backup"]["created_at"], check_mode=True)
    assert by_time["backup"]["name"] == first["backup"]["name"]
    with pytest.raises(InputError, match="no backup taken at or before"):
        restore_backup(world, backups, before="2000-01-01T00:00:00Z")
    with pytest.raises(InputError, match="not found"):
        restore_backup(world, backups, name="nope")


def test_restore_refuses_corrupt_chosen_backup_and_changes_nothing(tmp_path, world):
    backups = tmp_path / "backups"
    name = create_backup(world, backups)["backup"]["name"]
    data = backups / f"{name}.db"
    raw = bytearray(data.read_bytes())
    raw[4096 + 100] ^= 0xFF
    data.write_bytes(bytes(raw))
    touch_db(world)
    before = dump(world)
    files = sorted(os.listdir(world.parent))
    with pytest.raises(BackupError, match="refusing to restore"):
        restore_backup(world, backups, name=name)
    with pytest.raises(BackupError, match="no backup passed verification"):
        restore_backup(world, backups)
    assert dump(world) == before
    assert sorted(os.listdir(world.parent)) == files


def test_restore_skips_a_corrupt_newest_backup_only_when_allowed(tmp_path, world):
    backups = tmp_path / "backups"
    good = create_backup(world, backups)["backup"]["name"]
    touch_db(world)
    bad = create_backup(world, backups)["backup"]["name"]
    (backups / f"{bad}.db").write_bytes(b"x" * 10)
    with pytest.raises(OlderBackupRefused, match=f"failed verification: {bad} ") as info:
        restore_backup(world, backups, check_mode=True)
    assert info.value.details["verified_backup"]["name"] == good
    result = restore_backup(world, backups, check_mode=True, allow_older=True)
    assert result["backup"]["name"] == good
    assert [s["name"] for s in result["skipped_backups"]] == [bad]
    assert bad in result["warnings"][0]


def test_health_of_a_good_database(world):
    report = check_health(world, integrity="full", expected_indexes=["chunks_updated_at"])
    assert report["healthy"] is True
    assert report["facts"]["schema_version"] == 1
    assert {c["name"] for c in report["checks"]} >= {
        "integrity",
        "foreign_key_violations",
        "unindexed_foreign_keys",
        "missing_indexes",
        "freelist_ratio",
        "wal_size",
    }


@pytest.mark.parametrize(
    ("sql", "kwargs", "failing", "healthy"),
    [
        ("", {"expected_indexes": ["nope_idx"]}, ["missing_indexes"], False),
        (
            "CREATE TABLE inv (id INTEGER PRIMARY KEY, player INTEGER REFERENCES players(id));"
            "INSERT INTO inv VALUES (1, 999);",
            {},
            ["foreign_key_violations"],
            False,
        ),
        (
            "CREATE TABLE inv (id INTEGER PRIMARY KEY, player INTEGER REFERENCES players(id));",
            {"strict": True},
            ["unindexed_foreign_keys"],
            False,
        ),
        (
            "CREATE TABLE inv (id INTEGER PRIMARY KEY, player INTEGER REFERENCES players(id));"
            "CREATE INDEX inv_player ON inv(player);",
            {"strict": True},
            [],
            True,
        ),
        ("DELETE FROM chunks;", {"max_freelist_ratio": 0.01}, [], True),
        (
            "DELETE FROM chunks;",
            {"max_freelist_ratio": 0.01, "strict": True},
            ["freelist_ratio"],
            False,
        ),
        ("", {"max_db_bytes": 1, "strict": True}, ["db_size"], False),
    ],
)
def test_health_findings(world, sql, kwargs, failing, healthy):
    conn = sqlite3.connect(world)
    conn.executescript(sql)
    conn.close()
    report = check_health(world, **kwargs)
    assert report["failing"] == failing
    assert report["healthy"] is healthy


def test_health_wal_size_warning(world):
    conn = sqlite3.connect(world)
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("UPDATE chunks SET updated_at = 'y'")
    conn.commit()
    report = check_health(world, max_wal_bytes=1)
    conn.close()
    assert report["warnings"] == ["wal_size"]
    assert report["healthy"] is True


def corrupt_rows(db, keys):
    conn = sqlite3.connect(db)
    for key in keys:
        conn.execute(
            "UPDATE chunks SET payload = zeroblob(10) WHERE cx = ? AND cy = ? AND cz = ?", key
        )
    conn.commit()
    conn.close()


def test_chunk_repair_restores_exactly_the_damaged_rows(tmp_path, world):
    backups = tmp_path / "backups"
    create_backup(world, backups)
    good = dump(world)
    corrupt_rows(world, [(1, 1, -1), (5, 2, -5)])
    plan = repair_chunks(world, backups, check_mode=True)
    assert plan["changed"] is True
    assert [r["key"] for r in plan["repaired"]] == [
        {"cx": 1, "cy": 1, "cz": -1},
        {"cx": 5, "cy": 2, "cz": -5},
    ]
    done = repair_chunks(world, backups)
    assert len(done["repaired"]) == 2
    assert done["unrepairable"] == []
    assert dump(world) == good
    assert repair_chunks(world, backups)["changed"] is False
    assert len(mf.list_backups(backups)) == 2  # the fresh pre-repair backup


def test_chunk_repair_uses_older_backup_when_newest_has_bad_row(tmp_path, world):
    backups = tmp_path / "backups"
    old = create_backup(world, backups)["backup"]["name"]
    good = dump(world)
    corrupt_rows(world, [(2, 2, -2)])
    create_backup(world, backups)  # a backup that carries the damage
    touch_db(world, "x")  # an unrelated later change that must stay
    result = repair_chunks(world, backups)
    assert result["repaired"] == [{"key": {"cx": 2, "cy": 2, "cz": -2}, "backup": old}]
    touch_db(world, "2026-01-01T00:00:00Z")
    assert dump(world) == good


def test_chunk_repair_reports_unrepairable(tmp_path, world):
    backups = tmp_path / "backups"
    backups.mkdir()
    conn = sqlite3.connect(world)
    payload = b"new"
    conn.execute("INSERT INTO chunks VALUES (100, 0, 0, ?, ?, 't')", (payload, "0" * 64))
    conn.commit()
    conn.close()
    result = repair_chunks(world, backups)
    assert result["unrepairable"] == [{"cx": 100, "cy": 0, "cz": 0}]
    assert result["changed"] is False
    assert hashlib.sha256(payload).hexdigest() != "0" * 64


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"table": "nope"}, "table 'nope' does not exist"),
        ({"payload_column": "data"}, "no column\\(s\\) data"),
        ({"key_columns": ["cx", "q"]}, "no column\\(s\\) q"),
        ({"key_columns": []}, "at least one column"),
    ],
)
def test_chunk_repair_refuses_bad_table_spec(tmp_path, world, kwargs, message):
    with pytest.raises(InputError, match=message):
        repair_chunks(world, tmp_path / "backups", **kwargs)


def test_a_second_run_on_the_same_backup_dir_is_refused_while_one_runs(tmp_path, world):
    backups = tmp_path / "backups"
    backups.mkdir()
    with open(backups / ".voxeldb.lock", "a+b") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(BackupError, match="holds the lock"):
            create_backup(world, backups)
    assert mf.list_backups(backups) == []
    assert create_backup(world, backups)["changed"] is True


def test_malformed_database_is_a_readable_cli_error(tmp_path, world, capsys):
    conn = sqlite3.connect(world)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    raw = bytearray(world.read_bytes())
    raw[100:4096] = os.urandom(3996)  # page 1 (the schema) destroyed, file header kept
    world.write_bytes(bytes(raw))
    code = main(["repair-chunks", "--db", str(world), "--backup-dir", str(tmp_path / "b")])
    assert code == 1
    err = capsys.readouterr().err
    assert f"database {world} is damaged" in err
    assert "run the health check" in err
