"""Small world databases (reference schema, WAL mode) shared by the database toolkit's tests.

Importable as `sqlite_worlds` from every test: tests/ is on sys.path through tests/conftest.py.
Each suite's helper module keeps its own default data (row count, payload shape, players) as a
thin wrapper around `make_world`.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.migrate import migrate

REPO = Path(__file__).resolve().parent.parent
MIGRATIONS = REPO / "roles/server_build/files/reference_server/migrations"


def _migrate_reference(path: Path) -> None:
    migrate(path, MIGRATIONS)


def make_world(
    path: Path,
    *,
    chunks: int,
    payload: Callable[[int], bytes],
    position: Callable[[int], tuple[int, int, int]] = lambda i: (i, 0, 0),
    updated_at: Callable[[int], str] = lambda i: "t",
    players: int = 0,
    migrator: Callable[[Path], object] = _migrate_reference,
) -> Path:
    """A WAL database brought to the reference schema by `migrator`, holding valid rows.

    Chunk `i` (0 <= i < `chunks`) is stored at `position(i)` with `payload(i)`, its sha256
    checksum and `updated_at(i)`; then `players` players named player0, player1, ... are added.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    migrator(path)
    rows = []
    for i in range(chunks):
        data = payload(i)
        rows.append((*position(i), data, hashlib.sha256(data).hexdigest(), updated_at(i)))
    conn = sqlite3.connect(path)
    conn.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.executemany(
        "INSERT INTO players (name, created_at) VALUES (?, '2026-01-01')",
        [(f"player{i}",) for i in range(players)],
    )
    conn.commit()
    conn.close()
    return path


def dump(path: Path) -> list[str]:
    """The logical content (`.dump`) of a database."""
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


#: A world schema unlike the reference server's: chunks belong to regions, and the same chunk
#: position (cx, cy, cz) exists once in every region.
REGION_SCHEMA = """
CREATE TABLE region (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE chunk (
    region_id INTEGER NOT NULL REFERENCES region(id),
    cx INTEGER NOT NULL,
    cy INTEGER NOT NULL,
    cz INTEGER NOT NULL,
    payload BLOB NOT NULL,
    checksum TEXT NOT NULL{extra_columns}
);
CREATE TABLE player (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    region_id INTEGER REFERENCES region(id)
);
CREATE INDEX chunk_region ON chunk (region_id);
CREATE INDEX player_region ON player (region_id);
"""
REGION_UNIQUE_INDEX = "CREATE UNIQUE INDEX chunk_pos ON chunk (region_id, cx, cy, cz);"


def region_payload(region: int, i: int) -> bytes:
    """The payload of chunk `i` of `region` in a region world."""
    return hashlib.sha256(f"region {region} chunk {i}".encode()).digest() * 8


def make_region_world(
    path: Path,
    *,
    regions: int = 3,
    chunks: int = 4,
    unique_index: bool = True,
    extra_columns: str = "",
    extra_values: Callable[[int, int], tuple] = lambda region, i: (),
) -> Path:
    """A WAL database with the region schema (not the reference server's), holding valid rows.

    Region r (1..`regions`) holds chunks i = 0..`chunks`-1 at (i, 0, -i): every position exists
    once per region, so (cx, cy, cz) alone is not a unique key. `unique_index` adds the unique
    index chunk_pos on (region_id, cx, cy, cz). `extra_columns` (", tag TEXT UNIQUE", ...) are
    appended to the chunk table and filled from `extra_values(region, i)`. Two players.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(REGION_SCHEMA.format(extra_columns=extra_columns))
    if unique_index:
        conn.execute(REGION_UNIQUE_INDEX)
    conn.executemany(
        "INSERT INTO region (id, name) VALUES (?, ?)",
        [(r, f"region{r}") for r in range(1, regions + 1)],
    )
    rows = []
    for region in range(1, regions + 1):
        for i in range(chunks):
            data = region_payload(region, i)
            checksum = hashlib.sha256(data).hexdigest()
            rows.append((region, i, 0, -i, data, checksum, *extra_values(region, i)))
    marks = ", ".join("?" * len(rows[0]))
    conn.executemany(f"INSERT INTO chunk VALUES ({marks})", rows)  # noqa: S608
    conn.executemany(
        "INSERT INTO player (name, region_id) VALUES (?, ?)", [("ada", 1), ("bo", regions)]
    )
    conn.commit()
    conn.close()
    return path
