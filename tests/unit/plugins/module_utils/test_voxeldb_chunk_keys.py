"""Chunk repair only ever overwrites the one row a key names (issue #18 items 2 and 6).

The world here is not the reference server's: chunks belong to regions and every position
(cx, cy, cz) exists once per region, so (cx, cy, cz) alone is not a key.
"""

from __future__ import annotations

import json
import sqlite3

import pytest
from vdb_unit_helpers import dump, make_region_world

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb import chunks as ck
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb import manifest as mf
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.backup import create_backup
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.cli import main
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.errors import (
    InputError,
    VoxelDBError,
)

REGION_KEY = ["region_id", "cx", "cy", "cz"]


def damage(db, region: int, cx: int, **changes) -> None:
    """Overwrite the payload of one chunk (and set other columns) without fixing its checksum."""
    sets = ", ".join(["payload = zeroblob(16)", *(f"{c} = ?" for c in changes)])
    conn = sqlite3.connect(db)
    cursor = conn.execute(
        f"UPDATE chunk SET {sets} WHERE region_id = ? AND cx = ?",  # noqa: S608
        (*changes.values(), region, cx),
    )
    assert cursor.rowcount == 1
    conn.commit()
    conn.close()


def test_key_columns_not_covered_by_a_unique_index_are_refused(tmp_path):
    db = make_region_world(tmp_path / "db" / "world.db")
    backups = tmp_path / "backups"
    create_backup(db, backups)
    damage(db, region=2, cx=1)
    damaged = dump(db)
    with pytest.raises(InputError) as info:
        ck.repair_chunks(db, backups, table="chunk", key_columns=["cx", "cy", "cz"])
    message = info.value.message
    assert "key columns cx, cy, cz of table 'chunk' are not covered" in message
    assert "unique index chunk_pos: region_id, cx, cy, cz" in message
    assert dump(db) == damaged  # the two healthy rows at (1, 0, -1) in regions 1 and 3 too
    assert len(mf.list_backups(backups)) == 1  # refused before the pre-repair backup


def test_the_refusal_says_when_no_unique_key_exists(tmp_path):
    db = make_region_world(tmp_path / "db" / "world.db", unique_index=False)
    with pytest.raises(InputError, match="has neither a primary key nor a UNIQUE index"):
        ck.repair_chunks(db, tmp_path / "backups", table="chunk", key_columns=REGION_KEY)


def test_a_unique_key_repairs_exactly_the_damaged_row(tmp_path):
    db = make_region_world(tmp_path / "db" / "world.db")
    backups = tmp_path / "backups"
    create_backup(db, backups)
    good = dump(db)
    damage(db, region=2, cx=1)
    result = ck.repair_chunks(db, backups, table="chunk", key_columns=REGION_KEY)
    assert [r["key"] for r in result["repaired"]] == [{"region_id": 2, "cx": 1, "cy": 0, "cz": -1}]
    assert dump(db) == good


@pytest.mark.parametrize(
    ("schema", "keys", "accepted"),
    [
        ("id INTEGER PRIMARY KEY, a, b", ["id"], True),
        ("a, b, c, PRIMARY KEY (a, b)", ["a", "b"], True),
        ("a, b, c, PRIMARY KEY (a, b)", ["a", "b", "c"], True),  # a superset is unique too
        ("a, b, c, PRIMARY KEY (a, b)", ["a"], False),
        ("a, b, c, UNIQUE (b, c)", ["c", "b"], True),
        ("a, b, c", ["a"], False),
    ],
)
def test_unique_key_detection(schema, keys, accepted):
    conn = sqlite3.connect(":memory:")
    conn.execute(f"CREATE TABLE t ({schema})")
    if accepted:
        ck.require_unique_key(conn, "t", keys, "db")
    else:
        with pytest.raises(InputError, match="not covered"):
            ck.require_unique_key(conn, "t", keys, "db")


def test_partial_unique_index_does_not_count(tmp_path):
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a, b)")
    conn.execute("CREATE UNIQUE INDEX t_a ON t (a) WHERE b IS NOT NULL")
    with pytest.raises(InputError, match="neither a primary key nor a UNIQUE index"):
        ck.require_unique_key(conn, "t", ["a"], "db")


def test_an_update_that_would_touch_several_rows_is_rolled_back(tmp_path):
    # apply_repairs itself, with a key that is not unique (as if the check above were bypassed).
    db = make_region_world(tmp_path / "db" / "world.db", unique_index=False)
    damage(db, region=2, cx=1)
    damaged = dump(db)
    spec = ck.ChunkTable("chunk", ("cx", "cy", "cz"), "payload", "checksum")
    values = {"region_id": 2, "payload": b"p", "checksum": ck.payload_digest(b"p")}
    result = {"repaired": [], "rewritten_meanwhile": []}
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        with pytest.raises(VoxelDBError, match=r"not unique|instead of one"):
            ck.apply_repairs(conn, spec, {(1, 0, -1): ("b1", values)}, result)
        assert not conn.in_transaction
    finally:
        conn.close()
    assert dump(db) == damaged
    assert result == {"repaired": [], "rewritten_meanwhile": []}


def test_a_constraint_violated_by_a_repair_is_named_with_its_row(tmp_path, capsys):
    db = make_region_world(
        tmp_path / "db" / "world.db",
        extra_columns=", tag TEXT UNIQUE",
        extra_values=lambda region, i: (f"r{region}c{i}",),
    )
    backups = tmp_path / "backups"
    create_backup(db, backups)
    # After the backup: chunk (2, 1) is damaged and gives up its tag, which chunk (2, 2) takes.
    damage(db, region=2, cx=1, tag="moved")
    conn = sqlite3.connect(db)
    conn.execute("UPDATE chunk SET tag = 'r2c1' WHERE region_id = 2 AND cx = 2")
    conn.commit()
    conn.close()
    before = dump(db)
    code = main(
        [
            "repair-chunks",
            "--db",
            str(db),
            "--backup-dir",
            str(backups),
            "--table",
            "chunk",
            "--key-columns",
            ",".join(REGION_KEY),
            "--json",
        ]
    )
    msg = json.loads(capsys.readouterr().out)["msg"]
    assert code == 1
    assert "UNIQUE constraint failed: chunk.tag" in msg
    assert "'region_id': 2, 'cx': 1" in msg
    assert "rolled back" in msg
    assert "health check" not in msg
    assert dump(db) == before
