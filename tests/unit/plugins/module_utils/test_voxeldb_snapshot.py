"""The default backup copy (voxeldb/snapshot.py): frames still in the WAL, an old reader, a
rollback-journal source, and the restore that must see its own image. Backups taken while a
writer writes: tests/fault/test_db_faults.py (every method)."""

from __future__ import annotations

import sqlite3

from vdb_unit_helpers import dump, make_world

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb import manifest as mf
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.backup import create_backup
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.fsutil import sha256_file
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.restore import restore_backup


def manifests(backups):
    return [entry.manifest for entry in mf.list_backups(backups)]


def test_frames_still_in_the_wal_are_in_the_copy(tmp_path):
    db = make_world(tmp_path / "db" / "world.db")
    writer = sqlite3.connect(db)
    writer.execute("PRAGMA wal_autocheckpoint=0")  # nothing reaches the file on its own
    writer.execute("UPDATE chunks SET updated_at = 'in the wal only'")
    writer.commit()
    try:
        result = create_backup(db, tmp_path / "backups")
        (manifest,) = manifests(tmp_path / "backups")
        assert manifest.data["method"] == "snapshot"
        with mf.open_db_image(manifest, tmp_path) as image:
            assert dump(image) == dump(db)
        assert result["backup"]["name"] == manifest.name
    finally:
        writer.close()


def test_an_old_reader_holding_the_wal_back_falls_back_to_the_backup_api(tmp_path):
    db = make_world(tmp_path / "db" / "world.db")
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM chunks").fetchone()  # its snapshot: before the update
    writer = sqlite3.connect(db)
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("UPDATE chunks SET updated_at = 'after the reader began'")
    writer.commit()
    try:
        create_backup(db, tmp_path / "backups")
        (manifest,) = manifests(tmp_path / "backups")
        assert manifest.data["method"] == "backup"
        with mf.open_db_image(manifest, tmp_path) as image:
            assert dump(image) == dump(db)
    finally:
        reader.execute("ROLLBACK")
        reader.close()
        writer.close()


def test_a_rollback_journal_source_is_copied_and_restored_in_its_mode(tmp_path):
    db = make_world(tmp_path / "db" / "world.db")
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=DELETE").fetchone()
    conn.close()
    before = dump(db)
    create_backup(db, tmp_path / "backups")
    (manifest,) = manifests(tmp_path / "backups")
    assert (manifest.data["method"], manifest.data["source_journal_mode"]) == ("snapshot", "delete")
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM chunks")
    conn.commit()
    conn.close()
    assert restore_backup(db, tmp_path / "backups")["changed"] is True
    assert dump(db) == before
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()
    assert restore_backup(db, tmp_path / "backups")["changed"] is False


def test_the_digest_is_of_the_bytes_on_disk_and_a_restored_world_is_already_restored(tmp_path):
    db = make_world(tmp_path / "db" / "world.db")
    create_backup(db, tmp_path / "backups")
    (manifest,) = manifests(tmp_path / "backups")
    assert sha256_file(manifest.data_path) == manifest.data["sha256"] == manifest.data["db_sha256"]
    assert create_backup(db, tmp_path / "backups")["changed"] is False  # same image, same digest
    assert restore_backup(db, tmp_path / "backups")["changed"] is False
