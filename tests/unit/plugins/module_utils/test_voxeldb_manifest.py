"""Manifests, checksums and backup listing/verification."""

from __future__ import annotations

import copy
import hashlib
import json

import pytest
from vdb_unit_helpers import make_world

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb import manifest as mf
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.backup import create_backup
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.chunks import (
    payload_digest,
    row_is_valid,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.errors import BackupError

GOOD = {
    "format": 1,
    "file": "world-20260101T000000000000Z.db",
    "sha256": "a" * 64,
    "size": 4096,
    "created_at": "2026-01-01T00:00:00.000000Z",
    "source": "/srv/world.db",
    "sqlite_version": "3.40.1",
    "schema_version": 1,
    "page_count": 1,
    "compression": "none",
    "db_sha256": "b" * 64,
    "db_size": 4096,
}


def test_good_manifest_validates():
    assert mf.validate_manifest_data(copy.deepcopy(GOOD), "m") == GOOD


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sha256": None}, "wrong type"),
        ({"size": "4096"}, "wrong type"),
        ({"size": True}, "wrong type"),
        ({"format": 2}, "unknown format"),
        ({"sha256": "A" * 64}, "not a sha256"),
        ({"db_sha256": "abc"}, "not a sha256"),
        ({"compression": "xz"}, "unknown compression"),
        ({"file": "../etc/passwd"}, "plain file name"),
        ({"file": "sub/world.db"}, "plain file name"),
        ({"size": -1}, "negative"),
        ({"created_at": "yesterday"}, "ISO 8601"),
    ],
)
def test_bad_manifest_fields(change, message):
    data = {**GOOD, **change}
    with pytest.raises(Exception, match=message):
        mf.validate_manifest_data(data, "m.json")


@pytest.mark.parametrize("missing", sorted(mf.REQUIRED_FIELDS))
def test_every_required_field_is_required(missing):
    data = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(BackupError, match=repr(missing)):
        mf.validate_manifest_data(data, "m.json")


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"{not json", "not valid JSON"), (b"[]", "not a JSON object"), (b"\xff\xfe", "not valid")],
)
def test_read_manifest_rejects_garbage(tmp_path, content, message):
    path = tmp_path / "x.manifest.json"
    path.write_bytes(content)
    with pytest.raises(BackupError, match=message):
        mf.read_manifest(path)


@pytest.mark.parametrize(
    ("payload", "checksum", "valid"),
    [
        (b"abc", hashlib.sha256(b"abc").hexdigest(), True),
        (b"abc", hashlib.sha256(b"abc").hexdigest().upper(), True),
        (b"abc", hashlib.sha256(b"abc").hexdigest() + "\n", True),
        (b"abd", hashlib.sha256(b"abc").hexdigest(), False),
        (b"", hashlib.sha256(b"").hexdigest(), True),
        ("text", hashlib.sha256(b"text").hexdigest(), True),
        (None, hashlib.sha256(b"").hexdigest(), False),
        (42, "42", False),
        (b"abc", None, False),
        (b"abc", b"not text", False),
    ],
)
def test_row_checksum(payload, checksum, valid):
    assert row_is_valid(payload, checksum) is valid


def test_payload_digest_of_memoryview():
    assert payload_digest(memoryview(b"xy")) == hashlib.sha256(b"xy").hexdigest()


@pytest.fixture
def two_backups(tmp_path):
    db = make_world(tmp_path / "db" / "world.db")
    backups = tmp_path / "backups"
    first = create_backup(db, backups)["backup"]["name"]
    second = create_backup(db, backups, force=True, compression="gzip")["backup"]["name"]
    return db, backups, first, second


def test_list_backups_oldest_first_and_verified(two_backups):
    _, backups, first, second = two_backups
    entries = mf.list_backups(backups)
    assert [e.name for e in entries] == [first, second]
    assert all(e.ok for e in entries)
    data = json.loads((backups / f"{second}.manifest.json").read_text())
    assert data["compression"] == "gzip"
    assert data["file"].endswith(".db.gz")
    assert data["schema_version"] == 1
    assert data["sha256"] == hashlib.sha256((backups / data["file"]).read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        ("flip", "does not match manifest"),
        ("truncate", "has 10 bytes"),
        ("delete", "is missing"),
    ],
)
def test_verify_checksum_detects_damage(two_backups, damage, problem):
    _, backups, first, _ = two_backups
    manifest = mf.read_manifest(backups / f"{first}.manifest.json")
    data_file = manifest.data_path
    if damage == "flip":
        raw = bytearray(data_file.read_bytes())
        raw[5000] ^= 0xFF
        data_file.write_bytes(bytes(raw))
    elif damage == "truncate":
        data_file.write_bytes(data_file.read_bytes()[:10])
    else:
        data_file.unlink()
    assert problem in mf.verify_checksum(manifest)
    entries = {e.name: e for e in mf.list_backups(backups)}
    assert not entries[first].ok
    with pytest.raises(BackupError, match="failed verification"):
        mf.verify_backup(manifest, "quick", backups)


def test_verify_backup_runs_integrity_check_on_decompressed_copy(two_backups, tmp_path):
    _, backups, _, second = two_backups
    manifest = mf.read_manifest(backups / f"{second}.manifest.json")
    mf.verify_backup(manifest, "full", tmp_path)
    assert not list(tmp_path.glob(".voxeldb-tmp-*"))


def test_orphans_are_data_files_without_manifest(two_backups):
    _, backups, first, _ = two_backups
    (backups / f"{first}.manifest.json").unlink()
    (backups / ".voxeldb-tmp-left-over").write_bytes(b"x")
    assert mf.orphan_files(backups) == [".voxeldb-tmp-left-over", f"{first}.db"]
    assert [e.name for e in mf.list_backups(backups)] != []
    assert first not in [e.name for e in mf.list_backups(backups)]


def test_unreadable_manifest_is_listed_as_not_ok(two_backups):
    _, backups, first, _ = two_backups
    (backups / f"{first}.manifest.json").write_text("{}")
    entries = {e.name: e for e in mf.list_backups(backups)}
    assert entries[first].manifest is None
    assert "lacks field" in entries[first].problem
