"""Leftovers of interrupted backups are removed by retention (issue #18 item 3)."""

from __future__ import annotations

import json
import shutil

import pytest
from vdb_unit_helpers import make_region_world

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb import manifest as mf
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.backup import (
    create_backup,
    prune,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.cli import main
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.retention import (
    RetentionPolicy,
)

KEEP_ALL = RetentionPolicy(100, 0, 0, 0)


@pytest.fixture
def world(tmp_path):
    return make_region_world(tmp_path / "db" / "world.db")


def leftovers(backups):
    """Data files without manifest as a kill between the two renames leaves them, and others."""
    newest = mf.list_backups(backups)[-1].manifest
    made = {
        # Older than the newest verified backup: a full-size data file with a final name.
        "old": backups / "world-20200101T000000000000Z.db.gz",
        # Newer than the newest verified backup: maybe the only copy of that state; kept.
        "new": backups / "world-29990101T000000000000Z.db",
        # Not named like a backup: never the toolkit's to remove.
        "foreign": backups / "notes.txt",
        # A temporary file of an interrupted run.
        "temp": backups / ".voxeldb-tmp-world-20200101T000000000000Z.db-abc",
        # The data file of a backup whose manifest is unreadable: a person's call, kept.
        "claimed": backups / "world-20200102T000000000000Z.db",
    }
    for path in made.values():
        shutil.copyfile(newest.data_path, path)
    (backups / "world-20200102T000000000000Z.manifest.json").write_text("{broken")
    return made


def test_prune_removes_orphans_older_than_the_newest_good_backup(tmp_path, world):
    backups = tmp_path / "backups"
    create_backup(world, backups)
    made = leftovers(backups)
    planned = prune(backups, KEEP_ALL, check_mode=True)
    assert planned["changed"] is True
    assert planned["removed_orphans"] == [made["old"].name]
    assert made["old"].exists()  # check mode removes nothing
    result = prune(backups, KEEP_ALL)
    assert result["changed"] is True
    assert result["removed_orphans"] == [made["old"].name]
    assert result["removed_temps"] == [made["temp"].name]
    assert result["orphans"] == [made["foreign"].name, made["new"].name]
    assert not made["old"].exists()
    assert not made["temp"].exists()
    for kept in ("new", "foreign", "claimed"):
        assert made[kept].exists(), kept
    assert [i["name"] for i in result["invalid"]] == ["world-20200102T000000000000Z"]
    assert prune(backups, KEEP_ALL)["changed"] is False


def test_without_a_good_backup_no_orphan_is_removed(tmp_path):
    backups = tmp_path / "backups"
    backups.mkdir()
    orphan = backups / "world-20200101T000000000000Z.db"
    orphan.write_bytes(b"SQLite format 3\x00" + bytes(100))
    result = prune(backups, KEEP_ALL)
    assert result["removed_orphans"] == []
    assert result["orphans"] == [orphan.name]
    assert orphan.exists()


def test_backup_with_retention_reports_and_removes_older_orphans(tmp_path, world, capsys):
    backups = tmp_path / "backups"
    create_backup(world, backups, compression="gzip")
    made = leftovers(backups)
    argv = ["backup", "--db", str(world), "--backup-dir", str(backups), "--force"]
    code = main([*argv, "--retention", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["retention"]["removed_orphans"] == [made["old"].name]
    assert not made["old"].exists()
    assert all(e.ok for e in mf.list_backups(backups) if e.manifest is not None)
