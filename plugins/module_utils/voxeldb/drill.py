"""Restore drill: prove that the newest backup restores, without touching the live database.

1. Pick the newest backup of the directory by its manifest's ``created_at`` (a backup that fails
   verification is *not* skipped for an older one: finding it broken is the point of the drill).
2. Restore it with the toolkit's own restore (:func:`restore.restore_backup`, strict by name:
   sha256 of the data file, ``integrity_check``, the prepared copy against ``db_sha256``) into a
   fresh scratch directory, so the drill exercises the same code as a real restore.
3. Open the restored copy read-only and compare it with the manifest: ``integrity_check`` (or
   ``quick_check``) again, ``foreign_key_check``, page count, schema version and, when the
   manifest records them (``row_counts``: table -> rows), the row count of each table. The row
   counts of every table are reported either way.
4. Remove the scratch directory (always).

The result says ``ok`` or lists the ``problems``; the CLI maps a failed drill to exit code 1.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb import manifest as mf
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.errors import (
    InputError,
    VoxelDBError,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.fsutil import quote_ident
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.restore import restore_backup


def newest_backup(entries: list[mf.BackupEntry]) -> mf.Manifest | None:
    """The manifest of the newest backup (by ``created_at``, then name), verified or not."""
    found = [e.manifest for e in entries if e.manifest is not None]
    if not found:
        return None
    return max(found, key=lambda m: (m.created_at, m.name))


def table_row_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Rows per table (SQLite's internal tables left out), read by a full count of each."""
    names = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name"
        )
    ]
    return {
        # The names come from sqlite_master and are quoted as identifiers.
        name: int(conn.execute(f"SELECT count(*) FROM {quote_ident(name)}").fetchone()[0])  # noqa: S608
        for name in names
    }


def compare_with_manifest(data: dict[str, Any], facts: dict[str, Any]) -> tuple[list[str], bool]:
    """Problems found comparing a restored copy's ``facts`` with its manifest ``data``.

    Returns the problems and whether row counts were compared (only when the manifest has them).
    """
    problems: list[str] = []
    if facts["page_count"] != data["page_count"]:
        problems.append(
            f"restored copy has {facts['page_count']} pages, manifest says {data['page_count']}"
        )
    if facts["schema_version"] != data["schema_version"]:
        problems.append(
            f"restored copy is at schema version {facts['schema_version']}, "
            f"manifest says {data['schema_version']}"
        )
    expected = data.get("row_counts")
    if not isinstance(expected, dict):
        return problems, False
    actual = facts["row_counts"]
    for table in sorted(set(expected) | set(actual)):
        want, have = expected.get(table), actual.get(table)
        if want != have:
            problems.append(f"table {table}: {have} rows restored, manifest says {want}")
    return problems, True


def _inspect(path: Path, check: str) -> tuple[dict[str, Any], list[str]]:
    """Facts and problems of the restored copy, read through a read-only connection."""
    problems = [f"integrity: {p}" for p in mf.run_integrity_check(path, check)]
    conn = mf.open_readonly(path)
    try:
        violations = conn.execute("PRAGMA foreign_key_check").fetchall()
        facts = {
            "page_count": int(conn.execute("PRAGMA page_count").fetchone()[0]),
            "schema_version": mf.schema_version(conn),
            "row_counts": table_row_counts(conn),
            "foreign_key_violations": len(violations),
        }
    finally:
        conn.close()
    if violations:
        problems.append(f"{len(violations)} foreign key violations, first {list(violations[0])}")
    return facts, problems


def run_drill(
    backup_dir: str,
    scratch_dir: str,
    *,
    check: str = "full",
    check_mode: bool = False,
) -> dict[str, Any]:
    """Restore the newest backup of ``backup_dir`` into a scratch directory and verify it.

    ``scratch_dir`` must exist; the drill works in a new temporary directory inside it and
    removes it afterwards. ``check_mode`` only names the backup that would be drilled.
    Raises :class:`InputError` for unusable directories; every finding about the backup itself
    is reported in the result (``ok`` false, ``problems``), not raised.
    """
    directory = Path(backup_dir).expanduser().absolute()
    scratch = Path(scratch_dir).expanduser().absolute()
    if not directory.is_dir():
        raise InputError(f"backup_dir {directory} does not exist or is not a directory")
    if not scratch.is_dir():
        raise InputError(f"scratch_dir {scratch} does not exist or is not a directory")
    if check not in {"quick", "full"}:
        raise InputError(f"check must be quick or full, not {check!r}")
    entries = mf.list_backups(directory, verify=False)
    unreadable = [{"name": e.name, "problem": e.problem} for e in entries if e.manifest is None]
    chosen = newest_backup(entries)
    result: dict[str, Any] = {
        "changed": False,
        "ok": False,
        "backup_dir": str(directory),
        "backup": chosen.summary() if chosen else None,
        "unreadable_manifests": unreadable,
        "problems": [],
    }
    if chosen is None:
        result["problems"] = [f"no backup with a readable manifest in {directory}"]
        result["msg"] = result["problems"][0]
        return result
    if check_mode:
        result["ok"] = True
        result["msg"] = f"would restore backup {chosen.name} into {scratch} and verify it"
        return result

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="voxeldb-drill-", dir=scratch))
    try:
        target = work / "world.db"
        try:
            restore_backup(target, directory, name=chosen.name, check=check)
        except VoxelDBError as exc:
            result["problems"].append(f"restore failed: {exc.message}")
        except (sqlite3.Error, OSError, EOFError) as exc:
            result["problems"].append(f"restore failed: {exc}")
        else:
            try:
                facts, problems = _inspect(target, check)
            except sqlite3.Error as exc:
                result["problems"].append(f"restored copy cannot be read: {exc}")
            else:
                compared, rows_checked = compare_with_manifest(chosen.data, facts)
                result["restored"] = facts
                result["row_counts_compared"] = rows_checked
                result["problems"] += problems + compared
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["duration_ms"] = int((time.monotonic() - started) * 1000)
    result["ok"] = not result["problems"]
    verdict = "restores and verifies" if result["ok"] else "FAILED the drill"
    result["msg"] = f"backup {chosen.name} {verdict}" + (
        "" if result["ok"] else ": " + "; ".join(result["problems"][:3])
    )
    return result
