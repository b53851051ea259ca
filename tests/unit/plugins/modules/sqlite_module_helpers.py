"""Shared helpers for the sqlite_* module tests: run a module's main() and a small world DB."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.mmo_voxel.ops.plugins.modules import sqlite_migrate

MIGRATIONS = (
    Path(__file__).resolve().parents[4] / "roles/server_build/files/reference_server/migrations"
)


def run_module(module, capsys, args, check_mode=False, diff=False):
    """Run module.main() with these arguments; return its JSON result plus `_rc`."""
    full = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
    with patch_module_args(full), pytest.raises(SystemExit) as info:
        module.main()
    result = json.loads(capsys.readouterr().out)
    result["_rc"] = info.value.code
    return result


def make_world(tmp_path, capsys) -> Path:
    """A WAL database migrated by the sqlite_migrate module, with five valid chunks."""
    db = tmp_path / "db" / "world.db"
    db.parent.mkdir()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    result = run_module(
        sqlite_migrate, capsys, {"db_path": str(db), "migrations_dir": str(MIGRATIONS)}
    )
    assert result["changed"] is True
    conn = sqlite3.connect(db)
    for i in range(5):
        payload = bytes([i]) * 100
        conn.execute(
            "INSERT INTO chunks VALUES (?, 0, 0, ?, ?, 't')",
            (i, payload, hashlib.sha256(payload).hexdigest()),
        )
    conn.commit()
    conn.close()
    return db
