"""Helpers for the database toolkit's fault tests."""

from __future__ import annotations

import random
from pathlib import Path

import sqlite_worlds
from sqlite_worlds import MIGRATIONS, REPO, dump, make_region_world

__all__ = ["MIGRATIONS", "REPO", "dump", "make_region_world", "make_world"]


def make_world(path: Path, chunks: int, seed: int, payload_bytes: int = 2048) -> Path:
    """A WAL world database (reference schema) with `chunks` random valid chunks and players."""
    rng = random.Random(seed)  # noqa: S311 - seeded test data, not secrets
    half = payload_bytes // 2
    # Draw in the original order: every chunk's payload first, then the number of players.
    payloads = [rng.randbytes(half) + bytes([i % 7]) * half for i in range(chunks)]
    return sqlite_worlds.make_world(
        path,
        chunks=chunks,
        payload=payloads.__getitem__,
        position=lambda i: (i % 16, i // 16 % 16, i // 256),
        updated_at=lambda i: f"2026-01-01T00:00:{i % 60:02d}Z",
        players=rng.randint(3, 30),
    )
