"""Small world databases for the toolkit's tests (the reference schema, WAL mode)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import sqlite_worlds
from sqlite_worlds import MIGRATIONS, REPO, dump, make_region_world, region_payload

__all__ = ["MIGRATIONS", "REPO", "dump", "make_region_world", "make_world", "region_payload"]


def make_world(path: Path, chunks: int = 20, seed: int = 0) -> Path:
    """A WAL database migrated with the reference migration, holding `chunks` valid chunks."""
    return sqlite_worlds.make_world(
        path,
        chunks=chunks,
        payload=lambda i: hashlib.sha256(f"{seed}-{i}".encode()).digest() * 8,
        position=lambda i: (i, i % 3, -i),
        updated_at=lambda i: "2026-01-01T00:00:00Z",
    )
