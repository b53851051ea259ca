"""Shared helpers for the sqlite_* module tests: run a module's main() and a small world DB."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlite_worlds
from ansible.module_utils import _internal
from ansible.module_utils.testing import patch_module_args
from sqlite_worlds import MIGRATIONS

from ansible_collections.mmo_voxel.ops.plugins.modules import sqlite_migrate

__all__ = ["MIGRATIONS", "make_world", "run_module"]


def run_module(module, capsys, args, check_mode=False, diff=False):
    """Run module.main() with these arguments; return its JSON result plus `_rc`."""
    full = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
    with patch_module_args(full), on_a_host(), pytest.raises(SystemExit) as info:
        module.main()
    result = json.loads(capsys.readouterr().out)
    result["_rc"] = info.value.code
    return result


@contextmanager
def on_a_host() -> Iterator[None]:
    """Run as a module runs on its host. Once a test in this process has imported Ansible's
    controller code (a plugin test, say), module_utils believes it runs on the controller, and
    module.warn() prints through the controller's display instead of putting the warning in the
    result: which tests ran before would decide what the result holds."""
    was = _internal.is_controller
    _internal.is_controller = False
    try:
        yield
    finally:
        _internal.is_controller = was


def make_world(tmp_path, capsys) -> Path:
    """A WAL database migrated by the sqlite_migrate module, with five valid chunks."""
    db = tmp_path / "db" / "world.db"
    db.parent.mkdir()

    def migrate_with_module(path: Path) -> None:
        result = run_module(
            sqlite_migrate, capsys, {"db_path": str(path), "migrations_dir": str(MIGRATIONS)}
        )
        assert result["changed"] is True

    return sqlite_worlds.make_world(
        db, chunks=5, payload=lambda i: bytes([i]) * 100, migrator=migrate_with_module
    )
