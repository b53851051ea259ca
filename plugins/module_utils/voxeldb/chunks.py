"""Chunk repair: restore exactly the rows whose payload no longer matches its checksum.

1. Scan the chunk table and compute sha256(payload) for every row; rows whose checksum column
   differs (or is not a string) are *damaged*.
2. Walk the backups newest first; each backup used is verified (sha256 against its manifest,
   then quick_check). For every damaged key not yet found, take the backup's row if its own
   payload matches its own checksum.
3. Make a fresh backup of the database as it is (so the repair itself can be undone).
4. In one ``BEGIN IMMEDIATE`` transaction, re-read each damaged row and, if it is still damaged,
   overwrite it with the backup's row (every column the two tables share). Rows the live server
   rewrote in the meantime are left alone and reported.

Nothing else is changed. Keys found valid in no backup are reported as unrepairable.

The key columns must identify one row: they are refused (before anything is read or written)
unless the primary key or a UNIQUE index (not partial) is made of some of them, and in the
transaction every UPDATE must change exactly one row, or everything is rolled back.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sqlite3
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb import manifest as mf
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.backup import create_backup
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.errors import (
    BackupError,
    InputError,
    RepairError,
    is_constraint_violation,
    reported,
    sqlite_error_message,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.fsutil import (
    quote_ident,
    require_sqlite_file,
)

DEFAULT_TABLE = "chunks"
DEFAULT_KEYS = ("cx", "cy", "cz")
DEFAULT_PAYLOAD = "payload"
DEFAULT_CHECKSUM = "checksum"


def payload_digest(payload: Any) -> str | None:
    """sha256 hex of a payload (bytes, or text as UTF-8); None for NULL or other types."""
    if isinstance(payload, bytes | bytearray | memoryview):
        return hashlib.sha256(bytes(payload)).hexdigest()
    if isinstance(payload, str):
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()
    return None


def row_is_valid(payload: Any, checksum: Any) -> bool:
    """True when ``checksum`` is the sha256 hex of ``payload`` (case-insensitive)."""
    digest = payload_digest(payload)
    return digest is not None and isinstance(checksum, str) and checksum.strip().lower() == digest


def table_columns(conn: sqlite3.Connection, table: str) -> list[str]:
    """The column names of ``table`` (empty when the table does not exist)."""
    return [row[1] for row in conn.execute(f"PRAGMA table_info({quote_ident(table)})")]


def require_columns(
    conn: sqlite3.Connection, table: str, needed: Sequence[str], where: str
) -> list[str]:
    """Return the table's columns after checking it has every column in ``needed``."""
    columns = table_columns(conn, table)
    if not columns:
        raise InputError(f"{where}: table {table!r} does not exist")
    missing = [c for c in needed if c not in columns]
    if missing:
        raise InputError(
            f"{where}: table {table!r} has no column(s) {', '.join(missing)} "
            f"(it has {', '.join(columns)})"
        )
    return columns


def unique_keys(conn: sqlite3.Connection, table: str) -> list[tuple[str, list[str]]]:
    """The column sets that identify one row of ``table``: (what, columns) pairs.

    The primary key (``PRIMARY KEY`` columns, or the rowid alias) and every UNIQUE index or
    constraint that is not partial and is made of plain columns (no expressions).
    """
    found: list[tuple[str, list[str]]] = []
    info = conn.execute(f"PRAGMA table_info({quote_ident(table)})").fetchall()
    pk = [row[1] for row in sorted((r for r in info if r[5]), key=lambda r: r[5])]
    if pk:
        found.append(("primary key", pk))
    for index in conn.execute(f"PRAGMA index_list({quote_ident(table)})").fetchall():
        _, name, unique, origin, partial = index[:5]
        if not unique or partial or origin == "pk":
            continue
        columns = [r[2] for r in sorted(conn.execute(f"PRAGMA index_info({quote_ident(name)})"))]
        if columns and all(c is not None for c in columns):
            what = f"unique index {name}" if origin == "c" else f"UNIQUE constraint ({name})"
            found.append((what, columns))
    return found


def require_unique_key(
    conn: sqlite3.Connection, table: str, keys: Sequence[str], where: str
) -> None:
    """Refuse key columns that do not identify one row (no unique index or primary key of them)."""
    candidates = unique_keys(conn, table)
    if any(set(columns) <= set(keys) for _, columns in candidates):
        return
    offers = "; ".join(f"{what}: {', '.join(columns)}" for what, columns in candidates)
    hint = (
        f"use the columns of one of: {offers}"
        if offers
        else f"table {table!r} has neither a primary key nor a UNIQUE index"
    )
    raise InputError(
        f"{where}: key columns {', '.join(keys)} of table {table!r} are not covered by a "
        "UNIQUE index or the primary key, so several rows may share a key and a repair could "
        f"overwrite healthy rows; {hint}",
        unique_keys=[{"what": what, "columns": columns} for what, columns in candidates],
    )


def find_damaged(
    conn: sqlite3.Connection, table: str, keys: Sequence[str], payload: str, checksum: str
) -> list[tuple[Any, ...]]:
    """Keys of rows whose payload does not match its checksum."""
    cols = ", ".join(quote_ident(c) for c in [*keys, payload, checksum])
    damaged = []
    for row in conn.execute(f"SELECT {cols} FROM {quote_ident(table)}"):  # noqa: S608
        if not row_is_valid(row[-2], row[-1]):
            damaged.append(tuple(row[: len(keys)]))
    return damaged


def _where(keys: Sequence[str]) -> str:
    return " AND ".join(f"{quote_ident(k)} IS ?" for k in keys)


@dataclasses.dataclass(frozen=True)
class ChunkTable:
    """Where the chunks are: table, key columns, payload and checksum columns."""

    table: str = DEFAULT_TABLE
    keys: tuple[str, ...] = DEFAULT_KEYS
    payload: str = DEFAULT_PAYLOAD
    checksum: str = DEFAULT_CHECKSUM

    @property
    def needed(self) -> list[str]:
        """Every column the repair needs."""
        return [*self.keys, self.payload, self.checksum]

    def key_dict(self, key: tuple[Any, ...]) -> dict[str, Any]:
        """A key as {column: value}."""
        return dict(zip(self.keys, key, strict=True))


def find_sources(
    directory: Path, spec: ChunkTable, columns: list[str], damaged: list[tuple[Any, ...]]
) -> tuple[dict[tuple[Any, ...], tuple[str, dict[str, Any]]], list[dict[str, Any]]]:
    """For each damaged key, the newest verified backup holding a valid row, and that row.

    Returns (key -> (backup name, {column: value})), and the backups passed over with why.
    """
    found: dict[tuple[Any, ...], tuple[str, dict[str, Any]]] = {}
    skipped: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="voxeldb-repair-") as work:
        for entry in reversed(mf.list_backups(directory, verify=False)):
            remaining = [k for k in damaged if k not in found]
            if not remaining:
                break
            if entry.manifest is None:
                skipped.append({"name": entry.name, "problem": entry.problem})
                continue
            try:
                mf.verify_backup(entry.manifest, "quick", work)
            except BackupError as exc:
                skipped.append({"name": entry.name, "problem": exc.message})
                continue
            with mf.open_db_image(entry.manifest, work) as image:
                source = mf.open_readonly(image)
                try:
                    source_cols = table_columns(source, spec.table)
                    if not set(spec.needed) <= set(source_cols):
                        skipped.append(
                            {"name": entry.name, "problem": f"no usable table {spec.table!r}"}
                        )
                        continue
                    shared = [c for c in columns if c in source_cols]
                    select = ", ".join(quote_ident(c) for c in shared)
                    query = (
                        f"SELECT {select} FROM {quote_ident(spec.table)} "  # noqa: S608
                        f"WHERE {_where(spec.keys)}"
                    )
                    for key in remaining:
                        rows = source.execute(query, key).fetchmany(2)
                        if len(rows) != 1:  # absent, or not one row in this backup's schema
                            continue
                        values = dict(zip(shared, rows[0], strict=True))
                        if row_is_valid(values[spec.payload], values[spec.checksum]):
                            found[key] = (entry.name, values)
                finally:
                    source.close()
    return found, skipped


def apply_repairs(
    conn: sqlite3.Connection,
    spec: ChunkTable,
    found: dict[tuple[Any, ...], tuple[str, dict[str, Any]]],
    result: dict[str, Any],
) -> None:
    """Overwrite the still-damaged rows in one transaction; fill repaired / rewritten_meanwhile.

    Each key must match exactly one row, when read and when updated; otherwise, and on any
    error, the whole transaction is rolled back and RepairError says which key and why.
    """
    table = quote_ident(spec.table)
    current_sql = (
        f"SELECT {quote_ident(spec.payload)}, {quote_ident(spec.checksum)} "  # noqa: S608
        f"FROM {table} WHERE {_where(spec.keys)}"
    )
    repaired: list[dict[str, Any]] = []
    meanwhile: list[dict[str, Any]] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for key, (name, values) in found.items():
            where = f"{spec.table} row {spec.key_dict(key)}"
            rows = conn.execute(current_sql, key).fetchmany(2)
            if len(rows) > 1:
                raise RepairError(
                    f"{where} is not unique: the key matches several rows; nothing was repaired",
                    key=spec.key_dict(key),
                )
            if not rows or row_is_valid(*rows[0]):
                meanwhile.append(spec.key_dict(key))
                continue
            settable = [c for c in values if c not in spec.keys]
            assignments = ", ".join(f"{quote_ident(c)} = ?" for c in settable)
            try:
                cursor = conn.execute(
                    f"UPDATE {table} SET {assignments} WHERE {_where(spec.keys)}",  # noqa: S608
                    [values[c] for c in settable] + list(key),
                )
            except sqlite3.Error as exc:
                if not is_constraint_violation(exc):
                    raise
                raise RepairError(
                    f"repairing {where} from backup {name} violates a constraint: {exc}; the "
                    "backup's row conflicts with another row of the database now. Nothing was "
                    "repaired (rolled back)",
                    key=spec.key_dict(key),
                    backup=name,
                    sqlite_error=str(exc),
                ) from exc
            if cursor.rowcount != 1:
                raise RepairError(
                    f"repairing {where} would have changed {cursor.rowcount} rows instead of "
                    "one; nothing was repaired (rolled back)",
                    key=spec.key_dict(key),
                )
            repaired.append({"key": spec.key_dict(key), "backup": name})
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    result["repaired"].extend(repaired)
    result["rewritten_meanwhile"].extend(meanwhile)


def repair_chunks(
    db_path: str | os.PathLike[str],
    backup_dir: str | os.PathLike[str],
    *,
    table: str = DEFAULT_TABLE,
    key_columns: Sequence[str] = DEFAULT_KEYS,
    payload_column: str = DEFAULT_PAYLOAD,
    checksum_column: str = DEFAULT_CHECKSUM,
    backup_method: str = "backup",
    backup_compression: str = "none",
    check_mode: bool = False,
    busy_timeout: float = 30.0,
) -> dict[str, Any]:
    """Find and repair damaged chunk rows from the newest backup where they are valid."""
    db = require_sqlite_file(Path(db_path).expanduser(), "database")
    spec = ChunkTable(table, tuple(key_columns), payload_column, checksum_column)
    if not spec.keys:
        raise InputError("key_columns must name at least one column")
    directory = Path(backup_dir).expanduser().absolute()
    with reported(RepairError, db=db, doing=f"reading table {table!r}"):
        conn = sqlite3.connect(db, timeout=busy_timeout, isolation_level=None)
        try:
            columns = require_columns(conn, table, spec.needed, str(db))
            require_unique_key(conn, table, spec.keys, str(db))
            damaged = find_damaged(conn, table, spec.keys, payload_column, checksum_column)
        finally:
            conn.close()

    result: dict[str, Any] = {
        "changed": False,
        "db": str(db),
        "table": table,
        "damaged": [spec.key_dict(k) for k in damaged],
        "repaired": [],
        "unrepairable": [],
        "rewritten_meanwhile": [],
        "sources": {},
        "skipped_backups": [],
    }
    if not damaged:
        return result
    if not directory.is_dir():
        raise InputError(f"backup_dir {directory} does not exist or is not a directory")

    found, result["skipped_backups"] = find_sources(directory, spec, columns, damaged)
    result["unrepairable"] = [spec.key_dict(k) for k in damaged if k not in found]
    for name, _ in found.values():
        result["sources"][name] = result["sources"].get(name, 0) + 1
    if not found:
        return result
    if check_mode:
        result["changed"] = True
        result["repaired"] = [
            {"key": spec.key_dict(k), "backup": found[k][0]} for k in damaged if k in found
        ]
        return result

    fresh = create_backup(
        db, directory, method=backup_method, compression=backup_compression, force=True
    )
    result["pre_repair_backup"] = fresh["backup"]["name"]
    conn = sqlite3.connect(db, timeout=busy_timeout, isolation_level=None)
    try:
        apply_repairs(conn, spec, found, result)
    except sqlite3.Error as exc:
        raise RepairError(
            sqlite_error_message(exc, db=db, doing=f"repairing rows of {table!r}")
            + "; nothing was repaired (rolled back)",
            sqlite_error=str(exc),
        ) from exc
    finally:
        conn.close()
    result["changed"] = bool(result["repaired"])
    return result
