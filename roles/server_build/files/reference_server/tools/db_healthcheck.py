#!/usr/bin/env python3
"""The reference server's stand-in for the game's own database check.

The guide's weekly check is `godot --headless --script res://tools/db_healthcheck.gd`: the game
itself, which knows its schema, looks for missing indexes and damaged tables. This script keeps
that contract for the reference server, so the path that runs it (the db_schedule role's weekly
check, in a throwaway container of the running image) is tested here:

    python3 /app/tools/db_healthcheck.py --db PATH

- opens the world read-only (`mode=ro`): it never writes, and is given a copy anyway;
- checks what the game needs that SQLite's own checks cannot know: the indexes its queries
  use, `quick_check`, and that every chunk's payload still hashes to its stored checksum;
- prints one JSON object (`healthy`, `problems`, `chunks`) and exits 0 when healthy, 1 when not,
  2 when it cannot run (no database, not a world).

The image declares it in the label `org.mmo-voxel.db-healthcheck` (server_build), with `{db}`
where the database's path goes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import sys
from pathlib import Path

# The indexes the reference server's queries rely on (migrations/0001_create_chunks.sql).
REQUIRED_INDEXES = ("chunks_updated_at", "players_last_seen_at")
REQUIRED_TABLES = ("chunks", "players")


def check(db: Path) -> tuple[int, dict[str, object]]:
    """(exit code, report) for the world at ``db``."""
    if not db.is_file():
        return 2, {"healthy": False, "problems": [f"{db} is not a file"], "chunks": 0}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        names = {
            (kind, name) for kind, name in conn.execute("SELECT type, name FROM sqlite_master")
        }
        missing_tables = [t for t in REQUIRED_TABLES if ("table", t) not in names]
        if missing_tables:
            problem = f"not a world: tables {', '.join(missing_tables)} missing"
            return 2, {"healthy": False, "problems": [problem], "chunks": 0}
        problems = [f"index {i} is missing" for i in REQUIRED_INDEXES if ("index", i) not in names]
        quick = [row[0] for row in conn.execute("PRAGMA quick_check")]
        if quick != ["ok"]:
            problems += [f"quick_check: {line}" for line in quick[:20]]
        chunks = 0
        for cx, cy, cz, payload, stored in conn.execute(
            "SELECT cx, cy, cz, payload, checksum FROM chunks"
        ):
            chunks += 1
            if hashlib.sha256(bytes(payload)).hexdigest() != stored:
                problems.append(f"chunk ({cx}, {cy}, {cz}): payload does not match its checksum")
                if len(problems) >= 50:
                    break
    except sqlite3.DatabaseError as exc:
        return 1, {"healthy": False, "problems": [f"damaged: {exc}"], "chunks": 0}
    finally:
        conn.close()
    report = {"healthy": not problems, "problems": problems, "chunks": chunks}
    return (1 if problems else 0), report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--db", required=True, type=Path, help="the world database (read-only)")
    args = parser.parse_args(argv)
    code, report = check(args.db)
    print(json.dumps(report, sort_keys=True))
    return code


if __name__ == "__main__":
    sys.exit(main())
