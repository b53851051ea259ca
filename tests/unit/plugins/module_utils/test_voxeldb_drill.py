"""The restore drill: the newest backup restored into scratch, verified, compared, cleaned up."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from vdb_unit_helpers import make_world

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.backup import create_backup
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.cli import main
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.drill import (
    compare_with_manifest,
    run_drill,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.errors import InputError


@pytest.fixture
def dirs(tmp_path):
    world = make_world(tmp_path / "db" / "world.db")
    backups = tmp_path / "backups"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    return world, backups, scratch


def backup(world: Path, backups: Path, compression: str = "none") -> dict:
    return create_backup(world, backups, compression=compression, force=True)


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_good_backup_passes_and_scratch_is_left_empty(dirs, compression):
    world, backups, scratch = dirs
    made = backup(world, backups, compression)
    result = run_drill(str(backups), str(scratch))
    assert result["ok"], result["problems"]
    assert result["backup"]["name"] == made["backup"]["name"]
    assert result["restored"]["row_counts"]["chunks"] == 20
    assert result["restored"]["schema_version"] >= 1
    assert result["row_counts_compared"] is False
    assert list(scratch.iterdir()) == []


def test_newest_is_drilled_even_when_an_older_one_is_good(dirs):
    world, backups, scratch = dirs
    backup(world, backups)
    conn = sqlite3.connect(world)
    conn.execute("DELETE FROM chunks WHERE cx < 3")
    conn.commit()
    conn.close()
    newest = backup(world, backups)
    flip_byte(Path(newest["backup"]["file"]), 5000)
    result = run_drill(str(backups), str(scratch))
    assert not result["ok"]
    assert result["backup"]["name"] == newest["backup"]["name"]
    assert any("sha256" in p for p in result["problems"]), result["problems"]
    assert "FAILED" in result["msg"]
    assert list(scratch.iterdir()) == []


def test_corruption_with_a_matching_checksum_is_found_by_the_integrity_check(dirs):
    """A backup damaged before it was hashed (manifest rewritten to match) still fails."""
    world, backups, scratch = dirs
    made = backup(world, backups)
    data = Path(made["backup"]["file"])
    conn = sqlite3.connect(f"{data.as_uri()}?mode=ro", uri=True)
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'chunks'").fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    flip_byte(data, (root - 1) * page_size)  # the b-tree page type of the chunks table
    manifest = data.with_name(data.name[: -len(".db")] + ".manifest.json")
    doc = json.loads(manifest.read_text())
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    doc["sha256"] = doc["db_sha256"] = digest
    manifest.write_text(json.dumps(doc))
    result = run_drill(str(backups), str(scratch))
    assert not result["ok"]
    assert any("integrity" in p for p in result["problems"]), result["problems"]


def test_row_counts_in_the_manifest_are_compared(dirs):
    world, backups, scratch = dirs
    made = backup(world, backups)
    data = Path(made["backup"]["file"])
    manifest = data.with_name(data.name[: -len(".db")] + ".manifest.json")
    doc = json.loads(manifest.read_text())
    doc["row_counts"] = {"chunks": 21, "players": 0, "schema_migrations": 1}
    manifest.write_text(json.dumps(doc))
    result = run_drill(str(backups), str(scratch))
    assert result["row_counts_compared"] is True
    assert result["problems"] == ["table chunks: 20 rows restored, manifest says 21"]


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        ({"page_count": 10, "schema_version": 2, "row_counts": {"t": 1}}, []),
        ({"page_count": 11, "schema_version": 2, "row_counts": {"t": 1}}, ["pages"]),
        ({"page_count": 10, "schema_version": 1, "row_counts": {"t": 1}}, ["schema version"]),
        ({"page_count": 10, "schema_version": 2, "row_counts": {}}, ["table t: None rows"]),
    ],
)
def test_compare_with_manifest(facts, expected):
    data = {"page_count": 10, "schema_version": 2, "row_counts": {"t": 1}}
    problems, compared = compare_with_manifest(data, facts)
    assert compared
    assert len(problems) == len(expected)
    for problem, word in zip(problems, expected, strict=True):
        assert word in problem


def test_empty_directory_fails_and_missing_directories_are_input_errors(dirs, tmp_path):
    _, backups, scratch = dirs
    backups.mkdir()
    result = run_drill(str(backups), str(scratch))
    assert not result["ok"]
    assert "no backup" in result["msg"]
    with pytest.raises(InputError, match="scratch_dir"):
        run_drill(str(backups), str(tmp_path / "nope"))
    with pytest.raises(InputError, match="backup_dir"):
        run_drill(str(tmp_path / "nope"), str(scratch))


def test_cli_exit_codes(dirs, capsys):
    world, backups, scratch = dirs
    made = backup(world, backups)
    argv = ["drill", "--backup-dir", str(backups), "--scratch-dir", str(scratch), "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    assert main([*argv, "--dry-run"]) == 0
    assert "would restore" in json.loads(capsys.readouterr().out)["msg"]
    Path(made["backup"]["file"]).write_bytes(b"not a database")
    assert main(argv) == 1
    assert json.loads(capsys.readouterr().out)["ok"] is False
