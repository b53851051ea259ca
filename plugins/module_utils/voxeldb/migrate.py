"""Versioned SQL migrations with up and down sections.

File format (see docs/database-toolkit.md)::

    -- NNNN_snake_name.sql: NNNN is the version (4 or more digits, unique in the directory)
    -- migrate:up
    CREATE TABLE ...;
    CREATE INDEX ...;
    -- migrate:down
    DROP TABLE ...;

Only comments and blank lines may precede ``-- migrate:up``. The down section is optional; a
migration without one cannot be rolled back.

Statements are split the way SQLite reads them: a tokenizer that knows ``--`` and ``/* */``
comments, quoted strings and quoted identifiers (``"x"``, ```x```, ``[x]``) finds the ``;`` that
are code, and SQLite's own ``sqlite3.complete_statement`` decides which of them end a statement
(so triggers with ``BEGIN ... END`` stay whole). A statement whose first keyword (after any
comments) is transaction control (BEGIN, COMMIT, END, ROLLBACK, SAVEPOINT, RELEASE), VACUUM,
ATTACH or DETACH is refused when the file is read: the runner owns the transaction.

Each migration runs in its own ``BEGIN IMMEDIATE`` transaction with ``foreign_keys`` off (so that
table rebuilds work, as SQLite's documentation recommends) and ``PRAGMA foreign_key_check`` before
commit; its row in ``schema_migrations`` is written in the same transaction. As a second line of
defence, while the migration's statements run an authorizer denies transaction control, ATTACH
and DETACH (SQLite refuses them before they run), and after every statement the runner checks
that the connection is still inside its transaction; if not, it stops and says so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from ansible_collections.mmo_voxel.ops.plugins.module_utils.ops_common import utc_now
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.errors import (
    InputError,
    MigrationError,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.fsutil import (
    require_sqlite_file,
    rfc3339,
)

FILE_RE = re.compile(r"^(?P<version>\d{4,})_(?P<name>[a-z0-9]+(?:_[a-z0-9]+)*)\.sql$")
UP_MARK = "-- migrate:up"
DOWN_MARK = "-- migrate:down"
#: First keywords of statements that would end, nest or escape the runner's transaction.
FORBIDDEN = frozenset(
    {"BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE", "VACUUM", "ATTACH", "DETACH"}
)
#: Authorizer actions denied while a migration's statements run (the second line of defence).
DENIED_ACTIONS = {
    sqlite3.SQLITE_TRANSACTION: "transaction control",
    sqlite3.SQLITE_SAVEPOINT: "SAVEPOINT/RELEASE",
    sqlite3.SQLITE_ATTACH: "ATTACH",
    sqlite3.SQLITE_DETACH: "DETACH",
}
SCHEMA_TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, "
    "applied_at TEXT NOT NULL, duration_ms INTEGER NOT NULL)"
)


@dataclasses.dataclass(frozen=True)
class Migration:
    """One parsed migration file."""

    version: int
    name: str
    path: Path
    checksum: str
    up: tuple[str, ...]
    down: tuple[str, ...] | None

    @property
    def label(self) -> str:
        """``NNNN_name`` as in the file name."""
        return self.path.stem


@dataclasses.dataclass(frozen=True)
class Token:
    """One SQL token: ``kind`` is space, comment, string, ident, word or punct."""

    kind: str
    text: str
    start: int
    end: int


_WORD_CHARS = re.compile(r"[A-Za-z0-9_$\u0080-\U0010ffff]+")
_CLOSERS = {"'": "'", '"': '"', "`": "`", "[": "]"}


def tokenize(sql: str) -> list[Token]:
    """Split SQL text into tokens as SQLite's tokenizer does (comments, quotes, words).

    An unterminated comment or quote runs to the end of the text (SQLite reads it the same way;
    ``complete_statement`` then reports the text as incomplete).
    """
    tokens: list[Token] = []
    pos, size = 0, len(sql)
    while pos < size:
        char = sql[pos]
        if char.isspace():
            end = pos + 1
            while end < size and sql[end].isspace():
                end += 1
            kind = "space"
        elif sql.startswith("--", pos):
            newline = sql.find("\n", pos)
            end = size if newline == -1 else newline + 1
            kind = "comment"
        elif sql.startswith("/*", pos):
            close = sql.find("*/", pos + 2)
            end = size if close == -1 else close + 2
            kind = "comment"
        elif char in _CLOSERS:
            closer, end = _CLOSERS[char], pos + 1
            while True:
                found = sql.find(closer, end)
                if found == -1:
                    end = size
                    break
                end = found + 1
                # A doubled quote is an escaped quote (not for [...], which has no escape).
                if char != "[" and sql.startswith(closer, end):
                    end += 1
                    continue
                break
            kind = "string" if char == "'" else "ident"
        elif match := _WORD_CHARS.match(sql, pos):
            end = match.end()
            kind = "word"
        else:
            end = pos + 1
            kind = "punct"
        tokens.append(Token(kind, sql[pos:end], pos, end))
        pos = end
    return tokens


def _is_code(token: Token) -> bool:
    return token.kind not in {"space", "comment"} and token.text != ";"


def first_keyword(statement: str) -> str:
    """The statement's first word after comments and blank space, upper-cased ('' if none)."""
    for token in tokenize(statement):
        if token.kind in {"space", "comment"}:
            continue
        return token.text.upper() if token.kind == "word" else ""
    return ""


def split_statements(sql: str, where: str) -> list[str]:
    """Split SQL text into complete statements; raise MigrationError on a trailing fragment.

    Only a ``;`` token (not one in a comment, string or quoted identifier) can end a statement,
    and only where SQLite's ``complete_statement`` agrees (a trigger body's ``;`` does not).
    Statements made only of comments are dropped.
    """
    statements: list[str] = []
    start = 0
    tokens = tokenize(sql)
    code = False
    for token in tokens:
        if _is_code(token):
            code = True
        if token.kind != "punct" or token.text != ";":
            continue
        if not sqlite3.complete_statement(sql[start : token.end]):
            continue
        if code:
            statements.append(sql[start : token.end].strip())
        start, code = token.end, False
    if code:
        raise MigrationError(
            f"{where}: statement without terminating ';': {sql[start:].strip()[:80]!r}",
            file=where,
        )
    return statements


def parse_migration_text(text: str, where: str) -> tuple[list[str], list[str] | None]:
    """Parse a migration file's text into (up statements, down statements or None)."""
    up_lines: list[str] | None = None
    down_lines: list[str] | None = None
    current: list[str] | None = None
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        marker = line.strip()
        if marker.lower() == UP_MARK:
            if up_lines is not None:
                raise MigrationError(f"{where}:{number}: a second '{UP_MARK}'", file=where)
            if down_lines is not None:
                raise MigrationError(f"{where}:{number}: '{UP_MARK}' after down", file=where)
            up_lines = current = []
            continue
        if marker.lower() == DOWN_MARK:
            if down_lines is not None:
                raise MigrationError(f"{where}:{number}: a second '{DOWN_MARK}'", file=where)
            if up_lines is None:
                raise MigrationError(f"{where}:{number}: '{DOWN_MARK}' before up", file=where)
            down_lines = current = []
            continue
        if current is None:
            if marker and not marker.startswith("--"):
                raise MigrationError(
                    f"{where}:{number}: SQL before '{UP_MARK}' (only comments may come first)",
                    file=where,
                )
            continue
        current.append(line)
    if up_lines is None:
        raise MigrationError(f"{where}: no '{UP_MARK}' section", file=where)
    return _statements(up_lines, down_lines, where)


def _statements(
    up_lines: list[str], down_lines: list[str] | None, where: str
) -> tuple[list[str], list[str] | None]:
    """Split both sections into statements and refuse transaction control."""
    up = split_statements("".join(up_lines), where)
    if not up:
        raise MigrationError(f"{where}: the up section has no statement", file=where)
    down = split_statements("".join(down_lines), where) if down_lines is not None else None
    for section, statements in (("up", up), ("down", down or [])):
        for number, statement in enumerate(statements, start=1):
            keyword = first_keyword(statement)
            if keyword in FORBIDDEN:
                raise MigrationError(
                    f"{where} ({section}): statement {number} is {keyword}: transaction "
                    "control, VACUUM, ATTACH and DETACH are not allowed in a migration (the "
                    f"runner owns the transaction): {statement[:80]!r}",
                    file=where,
                    statement=statement,
                    statement_number=number,
                )
    return up, down


def parse_migration_file(path: Path) -> Migration:
    """Read one migration file (name checked, text parsed, checksum of the bytes)."""
    match = FILE_RE.match(path.name)
    if not match:
        raise MigrationError(
            f"{path}: migration files are named NNNN_snake_name.sql (4+ digits)", file=str(path)
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MigrationError(f"{path}: not UTF-8 ({exc})", file=str(path)) from exc
    up, down = parse_migration_text(text, str(path))
    return Migration(
        version=int(match["version"]),
        name=match["name"],
        path=path,
        checksum=hashlib.sha256(raw).hexdigest(),
        up=tuple(up),
        down=tuple(down) if down is not None else None,
    )


def load_migrations(directory: str | os.PathLike[str]) -> list[Migration]:
    """All ``*.sql`` migrations of a directory in version order; duplicates are an error."""
    folder = Path(directory).expanduser()
    if not folder.is_dir():
        raise InputError(f"migrations_dir {folder} does not exist or is not a directory")
    migrations = [parse_migration_file(p) for p in sorted(folder.glob("*.sql")) if p.is_file()]
    by_version: dict[int, Migration] = {}
    for migration in migrations:
        if migration.version in by_version:
            other = by_version[migration.version]
            raise MigrationError(
                f"migration version {migration.version} is used twice: "
                f"{other.path.name} and {migration.path.name}",
                file=str(migration.path),
            )
        by_version[migration.version] = migration
    return sorted(migrations, key=lambda m: m.version)


def applied_migrations(conn: sqlite3.Connection) -> dict[int, dict[str, Any]]:
    """The rows of schema_migrations by version ({} when the table does not exist)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_migrations'"
    ).fetchone()
    if not exists:
        return {}
    rows = conn.execute(
        "SELECT version, name, checksum, applied_at, duration_ms FROM schema_migrations"
    ).fetchall()
    return {
        row[0]: {
            "version": row[0],
            "name": row[1],
            "checksum": row[2],
            "applied_at": row[3],
            "duration_ms": row[4],
        }
        for row in rows
    }


def plan_migrations(
    migrations: list[Migration], applied: dict[int, dict[str, Any]], target: int | None
) -> tuple[str, list[Migration]]:
    """Return ("up" | "down", the migrations to run in order), or raise before any change.

    ``target`` None means the newest file. Refused: an applied migration whose file is missing
    or whose checksum changed (edited after it was applied), a pending migration older than the
    newest applied one, a target that is no known version, a down without a down section.
    """
    by_version = {m.version: m for m in migrations}
    for version, row in sorted(applied.items()):
        migration = by_version.get(version)
        if migration is None:
            raise MigrationError(
                f"migration {version} ({row['name']}) is applied but its file is missing"
            )
        if migration.checksum != row["checksum"]:
            raise MigrationError(
                f"{migration.path}: edited after it was applied (checksum {migration.checksum} "
                f"differs from the recorded {row['checksum']}); add a new migration instead",
                file=str(migration.path),
            )
    current = max(applied, default=0)
    newest = migrations[-1].version if migrations else 0
    if target is None:
        target = max(newest, current)
    if target != 0 and target not in by_version:
        raise InputError(f"target {target} is not the version of any migration file")
    pending_old = [m for m in migrations if m.version not in applied and m.version < current]
    if pending_old and target >= current:
        names = ", ".join(m.path.name for m in pending_old)
        raise MigrationError(
            f"migrations older than the applied version {current} were never applied: {names}"
        )
    if target >= current:
        return "up", [m for m in migrations if current < m.version <= target]
    to_undo = [by_version[v] for v in sorted(applied, reverse=True) if v > target]
    for migration in to_undo:
        if migration.down is None:
            raise MigrationError(
                f"{migration.path}: has no '{DOWN_MARK}' section, cannot migrate down past it",
                file=str(migration.path),
            )
    return "down", to_undo


class _Guard:
    """Authorizer that denies statements escaping the runner's transaction, and remembers why."""

    def __init__(self) -> None:
        self.denied: str | None = None

    def __call__(self, action: int, *_: Any) -> int:
        what = DENIED_ACTIONS.get(action)
        if what is None:
            return sqlite3.SQLITE_OK
        self.denied = what
        return sqlite3.SQLITE_DENY


def run_migration(conn: sqlite3.Connection, migration: Migration, direction: str) -> int:
    """Run one migration in its own transaction; return its duration in ms.

    On any error the transaction is rolled back and MigrationError names the file, the statement
    (with its 1-based number) and SQLite's message. Statements that would leave the transaction
    are denied by an authorizer; should the connection leave it anyway, the run stops there.
    """
    statements = migration.up if direction == "up" else (migration.down or ())
    started = time.monotonic()
    where = f"{migration.path} ({direction})"
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(SCHEMA_TABLE_SQL)
        guard = _Guard()
        conn.set_authorizer(guard)
        try:
            for number, statement in enumerate(statements, start=1):
                _run_statement(conn, guard, where, migration, statement, number, len(statements))
        finally:
            conn.set_authorizer(None)
        violations = conn.execute("PRAGMA foreign_key_check").fetchall()
        if violations:
            shown = [
                {"table": v[0], "rowid": v[1], "parent": v[2], "fkid": v[3]} for v in violations
            ]
            raise MigrationError(
                f"{where}: foreign key violations before commit: {shown[:10]}",
                file=str(migration.path),
                violations=shown,
            )
        duration = int((time.monotonic() - started) * 1000)
        if direction == "up":
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at, duration_ms)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    migration.version,
                    migration.name,
                    migration.checksum,
                    rfc3339(utc_now()),
                    duration,
                ),
            )
        else:
            conn.execute("DELETE FROM schema_migrations WHERE version = ?", (migration.version,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return duration


def _run_statement(
    conn: sqlite3.Connection,
    guard: _Guard,
    where: str,
    migration: Migration,
    statement: str,
    number: int,
    total: int,
) -> None:
    """Run one statement of a migration inside the open transaction, or raise MigrationError."""
    details = {
        "file": str(migration.path),
        "statement": statement,
        "statement_number": number,
    }
    guard.denied = None
    try:
        conn.execute(statement)
    except sqlite3.Error as exc:
        if guard.denied:
            raise MigrationError(
                f"{where}: statement {number} of {total} is {guard.denied}, which a migration "
                f"may not use (the runner owns the transaction); refused and rolled back: "
                f"{statement[:80]!r}",
                sqlite_error=str(exc),
                **details,
            ) from exc
        raise MigrationError(
            f"{where}: statement {number} of {total} failed: {exc}; statement: {statement}",
            sqlite_error=str(exc),
            **details,
        ) from exc
    if not conn.in_transaction:
        raise MigrationError(
            f"{where}: statement {number} of {total} ended the migration's transaction; the run "
            "stops here and records nothing. What earlier statements of this migration did may "
            f"have been committed or rolled back: check the database. Statement: {statement}",
            **details,
        )


def migrate(
    db_path: str | os.PathLike[str],
    migrations_dir: str | os.PathLike[str],
    *,
    target: int | None = None,
    down_migrations_dir: str | os.PathLike[str] | None = None,
    check_mode: bool = False,
    busy_timeout: float = 30.0,
) -> dict[str, Any]:
    """Bring ``db_path`` to ``target`` (newest file when None); return a result dict.

    With ``down_migrations_dir`` the target defaults to the newest file of ``migrations_dir``
    (0 when it holds none), and a database above it goes down with the files of
    ``down_migrations_dir``: a rollback's older image does not carry the down sections of the
    migrations the newer version applied, the running version's files do.
    """
    db = require_sqlite_file(Path(db_path).expanduser(), "database")
    migrations = load_migrations(migrations_dir)
    if target is not None and (isinstance(target, bool) or target < 0):
        raise InputError(f"target must be a version >= 0, not {target!r}")
    if down_migrations_dir is not None and target is None:
        target = max((m.version for m in migrations), default=0)
    conn = sqlite3.connect(db, timeout=busy_timeout, isolation_level=None)
    try:
        conn.execute("PRAGMA foreign_keys=OFF")
        applied = applied_migrations(conn)
        if down_migrations_dir is not None and max(applied, default=0) > (target or 0):
            migrations = load_migrations(down_migrations_dir)
        direction, todo = plan_migrations(migrations, applied, target)
        before = max(applied, default=0)
        result: dict[str, Any] = {
            "changed": bool(todo),
            "db": str(db),
            "direction": direction,
            "version_before": before,
            "pending": [m.label for m in todo],
            "applied": [],
            "version_after": before,
        }
        if check_mode or not todo:
            if todo:
                result["version_after"] = (
                    todo[-1].version if direction == "up" else _version_below(todo[-1], applied)
                )
            return result
        for migration in todo:
            try:
                duration = run_migration(conn, migration, direction)
            except MigrationError as exc:
                exc.details["applied"] = list(result["applied"])
                exc.details["version"] = max(applied_migrations(conn), default=0)
                raise
            result["applied"].append({"migration": migration.label, "duration_ms": duration})
        result["version_after"] = max(applied_migrations(conn), default=0)
        return result
    finally:
        conn.close()


def _version_below(migration: Migration, applied: dict[int, dict[str, Any]]) -> int:
    """The schema version after undoing ``migration`` (the next lower applied version)."""
    return max((v for v in applied if v < migration.version), default=0)
