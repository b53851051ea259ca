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
