"""Health check of a SQLite database: one structured report and one verdict.

Checks (each an entry in ``checks`` with ``ok`` and ``severity``):

* ``integrity``: ``quick_check`` or ``integrity_check`` (error);
* ``tables``: the database holds tables (a 0-byte or fresh file holds none: SQLite finds no
  damage in it, yet it is no world), and every table in ``expected_tables`` (error);
* ``foreign_key_violations``: ``PRAGMA foreign_key_check`` (error);
* ``missing_indexes``: declared expected index names absent from the schema (error);
* ``unindexed_foreign_keys``: foreign keys whose child columns no index starts with (warning);
* ``freelist_ratio``: free pages / pages above ``max_freelist_ratio`` (warning);
* ``wal_size``: the ``-wal`` file above ``max_wal_bytes`` (warning);
* ``db_size``: the database above ``max_db_bytes`` when that is set (warning).

The verdict is unhealthy when any error check fails, or any warning check fails with ``strict``.
The database is opened read-only; nothing is ever written.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.errors import InputError
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.fsutil import (
    quote_ident,
    require_sqlite_file,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.manifest import (
    open_readonly,
    run_integrity_check,
    schema_version,
    world_tables,
)


def unindexed_foreign_keys(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Foreign keys whose child columns are not the leading columns of any index."""
    found = []
    tables = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    for table in tables:
        fks: dict[int, list[tuple[int, str, str]]] = {}
        for row in conn.execute(f"PRAGMA foreign_key_list({quote_ident(table)})"):
            fk_id, seq, parent, child_col = row[0], row[1], row[2], row[3]
            fks.setdefault(fk_id, []).append((seq, child_col, parent))
        if not fks:
            continue
        prefixes: list[list[str]] = []
        for index in conn.execute(f"PRAGMA index_list({quote_ident(table)})").fetchall():
            cols = [
                r[2] for r in sorted(conn.execute(f"PRAGMA index_info({quote_ident(index[1])})"))
            ]
            prefixes.append(cols)
        pk_cols = [
            r[1]
            for r in sorted(
                conn.execute(f"PRAGMA table_info({quote_ident(table)})"), key=lambda r: r[5]
            )
            if r[5]
        ]
        if pk_cols:
            prefixes.append(pk_cols)  # INTEGER PRIMARY KEY (rowid) has no index_list entry
        for parts in fks.values():
            columns = [col for _, col, _ in sorted(parts)]
            covered = any(
                len(prefix) >= len(columns) and set(prefix[: len(columns)]) == set(columns)
                for prefix in prefixes
            )
            if not covered:
                found.append({"table": table, "columns": columns, "parent": parts[0][2]})
    return found


def check_health(
    db_path: str | os.PathLike[str],
    *,
    integrity: str = "quick",
    expected_indexes: list[str] | None = None,
    expected_tables: list[str] | None = None,
    max_freelist_ratio: float = 0.25,
    max_wal_bytes: int = 512 * 1024 * 1024,
    max_db_bytes: int | None = None,
    strict: bool = False,
) -> dict[str, Any]:
    """Run every check and return ``{"healthy": bool, "checks": [...], "facts": {...}}``."""
    db = require_sqlite_file(Path(db_path).expanduser(), "database")
    if integrity not in {"quick", "full"}:
        raise InputError(f"integrity must be quick or full, not {integrity!r}")
    if not 0 <= max_freelist_ratio <= 1:
        raise InputError(f"max_freelist_ratio must be between 0 and 1, not {max_freelist_ratio}")
    checks: list[dict[str, Any]] = []

    def add(name: str, ok: bool, severity: str, detail: Any) -> None:
        checks.append({"name": name, "ok": ok, "severity": severity, "detail": detail})

    db_bytes = db.stat().st_size
    wal = Path(f"{db}-wal")
    wal_bytes = wal.stat().st_size if wal.exists() else 0
    facts: dict[str, Any] = {"db_path": str(db), "db_bytes": db_bytes, "wal_bytes": wal_bytes}

    problems = run_integrity_check(db, integrity)
    add("integrity", not problems, "error", problems[:50] or "ok")

    try:
        conn = open_readonly(db)
    except sqlite3.DatabaseError as exc:
        add("open", False, "error", str(exc))
        return _verdict(checks, facts, strict)
    try:
        try:
            page_count = conn.execute("PRAGMA page_count").fetchone()[0]
            freelist = conn.execute("PRAGMA freelist_count").fetchone()[0]
            facts.update(
                page_count=page_count,
                page_size=conn.execute("PRAGMA page_size").fetchone()[0],
                freelist_count=freelist,
                journal_mode=conn.execute("PRAGMA journal_mode").fetchone()[0],
                schema_version=schema_version(conn),
                sqlite_version=sqlite3.sqlite_version,
            )
            ratio = freelist / page_count if page_count else 0.0
            facts["freelist_ratio"] = round(ratio, 4)
            add(
                "freelist_ratio",
                ratio <= max_freelist_ratio,
                "warning",
                {"ratio": round(ratio, 4), "max": max_freelist_ratio},
            )

            violations = [
                {"table": r[0], "rowid": r[1], "parent": r[2], "fkid": r[3]}
                for r in conn.execute("PRAGMA foreign_key_check")
            ]
            add("foreign_key_violations", not violations, "error", violations[:100])

            unindexed = unindexed_foreign_keys(conn)
            add("unindexed_foreign_keys", not unindexed, "warning", unindexed)

            add("tables", *_tables_check(conn, db, expected_tables or []))

            present = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")
            }
            missing = sorted(set(expected_indexes or []) - present)
            add("missing_indexes", not missing, "error", missing)
        except sqlite3.DatabaseError as exc:
            add("read_schema", False, "error", str(exc))
    finally:
        conn.close()

    add(
        "wal_size",
        wal_bytes <= max_wal_bytes,
        "warning",
        {"bytes": wal_bytes, "max": max_wal_bytes},
    )
    if max_db_bytes is not None:
        add(
            "db_size", db_bytes <= max_db_bytes, "warning", {"bytes": db_bytes, "max": max_db_bytes}
        )
    return _verdict(checks, facts, strict)


def _tables_check(
    conn: sqlite3.Connection, db: Path, expected: list[str]
) -> tuple[bool, str, dict[str, Any]]:
    """(ok, severity, detail) of the ``tables`` check."""
    tables = world_tables(conn)
    missing = sorted(set(expected) - set(tables))
    detail: dict[str, Any] = {"tables": len(tables), "missing": missing}
    if not tables:
        detail["problem"] = f"database {db} holds no tables (an empty or uninitialised database)"
    elif missing:
        detail["problem"] = f"database {db} lacks the expected table(s) {', '.join(missing)}"
    return bool(tables) and not missing, "error", detail


def problems_of(report: dict[str, Any]) -> list[str]:
    """One line per failing check, naming the file where the check says which (for messages)."""
    lines = []
    for check in report["checks"]:
        if check["name"] not in report["failing"]:
            continue
        detail = check["detail"]
        if isinstance(detail, dict) and detail.get("problem"):
            lines.append(f"{check['name']}: {detail['problem']}")
        else:
            lines.append(f"{check['name']}: {detail}")
    return lines


def _verdict(checks: list[dict[str, Any]], facts: dict[str, Any], strict: bool) -> dict[str, Any]:
    failing = [c["name"] for c in checks if not c["ok"] and (c["severity"] == "error" or strict)]
    warnings = [c["name"] for c in checks if not c["ok"] and c["severity"] == "warning"]
    return {
        "healthy": not failing,
        "failing": failing,
        "warnings": warnings,
        "checks": checks,
        "facts": facts,
    }
