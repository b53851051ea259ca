"""Helpers for the database toolkit's fault tests."""

from __future__ import annotations

import hashlib
import random
import sqlite3
from pathlib import Path

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.migrate import migrate

REPO = Path(__file__).resolve().parents[2]
MIGRATIONS = REPO / "roles/server_build/files/reference_server/migrations"


def make_world(path: Path, chunks: int, seed: int, payload_bytes: int = 2048) -> Path:
    """A WAL world database (reference schema) with `chunks` random valid chunks and players."""
    rng = random.Random(seed)  # noqa: S311 - seeded test data, not secrets
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    migrate(path, MIGRATIONS)
    conn = sqlite3.connect(path)
    rows = []
    for i in range(chunks):
        payload = rng.randbytes(payload_bytes // 2) + bytes([i % 7]) * (payload_bytes // 2)
        rows.append(
            (
                i % 16,
                i // 16 % 16,
                i // 256,
                payload,
                hashlib.sha256(payload).hexdigest(),
                f"2026-01-01T00:00:{i % 60:02d}Z",
            )
        )
    conn.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.executemany(
        "INSERT INTO players (name, created_at) VALUES (?, '2026-01-01')",
        [(f"player{i}",) for i in range(rng.randint(3, 30))],
    )
    conn.commit()
    conn.close()
    return path


def dump(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()
