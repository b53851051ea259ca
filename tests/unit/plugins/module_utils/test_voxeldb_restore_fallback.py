"""A restore never falls back to an older backup silently (issue #18 item 5)."""

from __future__ import annotations

import json
import sqlite3

import pytest
from vdb_unit_helpers import dump, make_region_world

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.backup import create_backup
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.cli import main


@pytest.fixture
def world(tmp_path):
    return make_region_world(tmp_path / "db" / "world.db")


def change(db, name: str) -> None:
    conn = sqlite3.connect(db)
    conn.execute("UPDATE region SET name = ? WHERE id = 1", (name,))
    conn.commit()
    conn.close()


def corrupt(data_file) -> None:
    raw = bytearray(data_file.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data_file.write_bytes(bytes(raw))


def restore(capsys, db, backups, *extra):
    code = main(["restore", "--db", str(db), "--backup-dir", str(backups), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_corrupt_newest_backup_stops_the_restore_unless_older_is_allowed(tmp_path, world, capsys):
    backups = tmp_path / "backups"
    good = create_backup(world, backups)["backup"]
    good_dump = dump(world)
    change(world, "after the first backup")
    bad = create_backup(world, backups)["backup"]
    corrupt(backups / f"{bad['name']}.db")
    change(world, "damaged later")
    current = dump(world)
    files = sorted(p.name for p in world.parent.iterdir())

    code, _, err = restore(capsys, world, backups)
    assert code == 3
    assert f"backup {bad['name']} failed verification: data file" in err
    assert "does not match manifest" in err
    assert f"newest backup that verifies is {good['name']}" in err
    assert "--allow-older" in err
    assert dump(world) == current
    assert sorted(p.name for p in world.parent.iterdir()) == files

    code, out, _ = restore(capsys, world, backups, "--dry-run", "--json")
    assert code == 3
    assert [f["name"] for f in json.loads(out)["failed_backups"]] == [bad["name"]]
    assert dump(world) == current

    code, out, err = restore(capsys, world, backups, "--allow-older")
    assert code == 0
    assert f"restored backup {good['name']}" in out
    assert "OLDER backup" in out
    assert f"WARNING: newer backup {bad['name']} failed verification" in err
    assert dump(world) == good_dump


def test_a_backup_of_an_empty_database_is_not_a_default_restore(tmp_path, world, capsys):
    backups = tmp_path / "backups"
    good = create_backup(world, backups)["backup"]
    empty = tmp_path / "empty" / "world.db"
    empty.parent.mkdir()
    empty.write_bytes(b"")
    blank = create_backup(empty, backups, allow_empty=True)["backup"]
    code, _, err = restore(capsys, world, backups)
    assert code == 3
    assert f"backup {blank['name']} holds no tables" in err
    assert good["name"] in err
    # By name it is what was asked for (a first deploy's rollback restores exactly that).
    code, out, _ = restore(capsys, world, backups, "--name", blank["name"], "--dry-run")
    assert code == 2
    assert f"would restore backup {blank['name']}" in out


def test_with_only_good_backups_nothing_is_said(tmp_path, world, capsys):
    backups = tmp_path / "backups"
    create_backup(world, backups)
    change(world, "x")
    newest = create_backup(world, backups)["backup"]
    change(world, "y")
    code, out, err = restore(capsys, world, backups, "--json")
    assert code == 0
    result = json.loads(out)
    assert result["backup"]["name"] == newest["name"]
    assert result["skipped_backups"] == []
    assert "warnings" not in result
    assert err == ""


def test_an_unreadable_newer_manifest_counts_as_a_failed_backup(tmp_path, world, capsys):
    backups = tmp_path / "backups"
    good = create_backup(world, backups)["backup"]
    change(world, "after the backup")
    (backups / "world-29990101T000000000000Z.manifest.json").write_text("{torn")
    code, _, err = restore(capsys, world, backups, "--dry-run")
    assert code == 3
    assert "world-29990101T000000000000Z (manifest" in err
    assert "is not valid JSON" in err
    # By name, newer backups are not its business.
    code, out, _ = restore(capsys, world, backups, "--name", good["name"], "--dry-run")
    assert code == 2
    assert f"would restore backup {good['name']}" in out
    assert "OLDER" not in out
