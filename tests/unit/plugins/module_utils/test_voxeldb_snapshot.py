"""The default backup copy (voxeldb/snapshot.py): frames still in the WAL, an old reader, a
rollback-journal source, the restore that must see its own image, and the backup onto an earlier
copy (a deploy's), whatever that copy holds. Backups taken while a
writer writes: tests/fault/test_db_faults.py (every method)."""

from __future__ import annotations

import os
import sqlite3

import pytest
from vdb_unit_helpers import dump, make_world

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb import manifest as mf
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb import snapshot
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.backup import (
    create_backup,
    prepare_copy,
)
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


# The earlier copy a deploy prepares before its stop (backup.prepare_copy). Blocks of one page,
# so that a small world spans many blocks and "only what changed" can be seen.
@pytest.fixture
def page_blocks(monkeypatch):
    monkeypatch.setattr(snapshot, "BLOCK", 4096)


def edit_one_chunk(db):
    conn = sqlite3.connect(db)
    conn.execute("UPDATE chunks SET updated_at = 'after the copy' WHERE rowid = 3")
    conn.commit()
    conn.close()


def test_a_backup_onto_the_prepared_copy_writes_only_what_changed(tmp_path, page_blocks):
    db = make_world(tmp_path / "db" / "world.db", chunks=200)
    backups = tmp_path / "backups"
    assert prepare_copy(db, backups) == {
        "changed": True,
        "prepared": True,
        "db": str(db),
        "backup_dir": str(backups),
    }
    assert mf.orphan_files(backups) == []  # not a backup, nor an orphan
    assert manifests(backups) == []
    edit_one_chunk(db)

    written = create_backup(db, backups, force=True)["backup"]

    (manifest,) = manifests(backups)
    assert not (backups / mf.BASE_FILE).exists()  # taken by the backup
    assert sha256_file(manifest.data_path) == manifest.data["db_sha256"]
    with mf.open_db_image(manifest, tmp_path) as image:
        assert dump(image) == dump(db)
    # The header (its change counter), the edited row's page and its index pages: a few pages
    # of the world's 29, not the world.
    assert manifest.data["db_size"] == 29 * 4096
    assert 0 < written["written_bytes"] <= 4 * 4096, written["written_bytes"]
    # The same bytes as a backup made from nothing.
    create_backup(db, tmp_path / "from-nothing")
    (plain,) = manifests(tmp_path / "from-nothing")
    assert plain.data["db_sha256"] == manifest.data["db_sha256"]


# What a hostile or stale earlier copy may hold, from the world's image and another database's.
HOSTILE_COPIES = {
    "garbage, longer than the world": lambda image, other: os.urandom(len(image) + 3 * 4096 + 17),
    "another database": lambda image, other: other,
    "empty": lambda image, other: b"",
    "the first half of the world": lambda image, other: image[: len(image) // 2],
    "the world with every byte flipped": lambda image, other: bytes(b ^ 0xFF for b in image),
}


@pytest.mark.parametrize("kind", HOSTILE_COPIES)
def test_whatever_the_earlier_copy_holds_the_backup_is_the_world(tmp_path, page_blocks, kind):
    db = make_world(tmp_path / "db" / "world.db", chunks=50)
    other = make_world(tmp_path / "other" / "world.db", chunks=80, seed=7)
    create_backup(db, tmp_path / "from-nothing")
    (plain,) = manifests(tmp_path / "from-nothing")
    backups = tmp_path / "backups"
    backups.mkdir()
    (backups / mf.BASE_FILE).write_bytes(HOSTILE_COPIES[kind](db.read_bytes(), other.read_bytes()))

    create_backup(db, backups, force=True)

    (manifest,) = manifests(backups)
    assert manifest.data["db_sha256"] == plain.data["db_sha256"]
    assert sha256_file(manifest.data_path) == manifest.data["sha256"]
    assert not (backups / mf.BASE_FILE).exists()
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM chunks")
    conn.commit()
    conn.close()
    restore_backup(db, backups)
    with mf.open_db_image(plain, tmp_path) as image:
        assert dump(db) == dump(image)


def test_a_backup_that_falls_back_to_the_backup_api_starts_from_an_empty_file(tmp_path):
    db = make_world(tmp_path / "db" / "world.db")
    backups = tmp_path / "backups"
    prepare_copy(db, backups)
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM chunks").fetchone()  # holds the WAL back
    writer = sqlite3.connect(db)
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("UPDATE chunks SET updated_at = 'after the reader began'")
    writer.commit()
    try:
        create_backup(db, backups, force=True)
    finally:
        reader.execute("ROLLBACK")
        reader.close()
        writer.close()
    (manifest,) = manifests(backups)
    assert manifest.data["method"] == "backup"
    with mf.open_db_image(manifest, tmp_path) as image:
        assert dump(image) == dump(db)


def test_other_methods_leave_the_earlier_copy_and_prepare_replaces_it(tmp_path):
    db = make_world(tmp_path / "db" / "world.db")
    backups = tmp_path / "backups"
    prepare_copy(db, backups)
    (backups / mf.BASE_FILE).write_bytes(b"stale")
    create_backup(db, backups, method="vacuum")
    assert (backups / mf.BASE_FILE).read_bytes() == b"stale"
    assert prepare_copy(db, backups, check_mode=True)["changed"] is True
    assert (backups / mf.BASE_FILE).read_bytes() == b"stale"  # check mode writes nothing
    prepare_copy(db, backups)
    assert (backups / mf.BASE_FILE).read_bytes()[:16] == b"SQLite format 3\0"
    assert [p.name for p in backups.iterdir() if p.name.startswith(".voxeldb-tmp")] == []


def test_a_forced_backup_does_not_read_the_newest_backup(tmp_path, monkeypatch):
    db = make_world(tmp_path / "db" / "world.db")
    backups = tmp_path / "backups"
    create_backup(db, backups)
    read = []
    monkeypatch.setattr(mf, "verify_checksum", lambda manifest: read.append(manifest) or None)
    assert create_backup(db, backups, force=True)["changed"] is True
    assert read == []
    assert create_backup(db, backups)["changed"] is False  # unforced: compared with the newest
    assert len(read) == 1


@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_a_link_planted_as_the_earlier_copy_is_never_written_through(tmp_path, link):
    db = make_world(tmp_path / "db" / "world.db")
    backups = tmp_path / "backups"
    backups.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"not the world's to overwrite\n")
    planted = backups / mf.BASE_FILE
    if link == "symbolic":
        planted.symlink_to(victim)
    else:
        os.link(victim, planted)

    create_backup(db, backups, force=True)

    assert victim.read_bytes() == b"not the world's to overwrite\n"
    (manifest,) = manifests(backups)
    assert sha256_file(manifest.data_path) == manifest.data["db_sha256"]
    with mf.open_db_image(manifest, tmp_path) as image:
        assert dump(image) == dump(db)
    assert not planted.exists()
