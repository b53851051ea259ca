"""Small world databases for the toolkit's tests (the reference schema, WAL mode)."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.migrate import migrate

REPO = Path(__file__).resolve().parents[4]
MIGRATIONS = REPO / "roles/server_build/files/reference_server/migrations"


def make_world(path: Path, chunks: int = 20, seed: int = 0) -> Path:
    """A WAL database migrated with the reference migration, holding `chunks` valid chunks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    migrate(path, MIGRATIONS)
    conn = sqlite3.connect(path)
    for i in range(chunks):
        payload = hashlib.sha256(f"{seed}-{i}".encode()).digest() * 8
        conn.execute(
            "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?)",
            (i, i % 3, -i, payload, hashlib.sha256(payload).hexdigest(), "2026-01-01T00:00:00Z"),
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
