"""Exceptions of the database toolkit.

Every failure the toolkit can foresee is raised as a :class:`VoxelDBError` whose message names the
path, option or file involved, so that modules and the CLI can show it as is. SQLite and file
system errors are mapped to such messages by :func:`sqlite_error_message`,
:func:`os_error_message` and the :func:`reported` context manager: a full disk names the file being
written, a constraint violation names the constraint, and only real damage suggests the health
check.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from collections.abc import Iterator
from typing import Any


class VoxelDBError(Exception):
    """A failure with a message meant for the operator (and optional structured details)."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InputError(VoxelDBError):
    """Bad input, found before anything was changed."""


class BackupError(VoxelDBError):
    """A backup could not be made, read or verified."""


class MigrationError(VoxelDBError):
    """A migration file is invalid or a migration failed (and was rolled back)."""


class RepairError(VoxelDBError):
    """A chunk repair was refused, or failed and was rolled back."""


class OlderBackupRefused(BackupError):
    """A restore would have fallen back past backups that failed verification.

    Raised unless the caller allowed it (``allow_older``); the CLI exits with its own code.
    """


# SQLite's primary result codes (the low byte of an extended code).
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_NOMEM, _SQLITE_READONLY = 5, 6, 7, 8
_SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN = 10, 11, 13, 14
_SQLITE_CONSTRAINT, _SQLITE_NOTADB = 19, 26
_HEALTH_HINT = "run the health check on it (scripts/voxeldb check --db ... --integrity full)"


def _primary_code(exc: sqlite3.Error) -> int | None:
    """SQLite's primary result code of an exception (None when Python did not record one)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF
    text = str(exc).lower()  # exceptions raised by Python itself carry no code
    for needle, guess in (
        ("disk is full", _SQLITE_FULL),
        ("constraint failed", _SQLITE_CONSTRAINT),
        ("malformed", _SQLITE_CORRUPT),
        ("not a database", _SQLITE_NOTADB),
        ("database is locked", _SQLITE_BUSY),
    ):
        if needle in text:
            return guess
    return None


def is_constraint_violation(exc: sqlite3.Error) -> bool:
    """True for UNIQUE, NOT NULL, CHECK, FOREIGN KEY and PRIMARY KEY violations."""
    return _primary_code(exc) == _SQLITE_CONSTRAINT


def sqlite_error_message(
    exc: sqlite3.Error,
    *,
    db: str | os.PathLike[str] | None = None,
    writing: str | os.PathLike[str] | None = None,
    doing: str | None = None,
) -> str:
    """An accurate message for a SQLite error: what happened, to which file, and what to do.

    ``db`` is the database being read or changed, ``writing`` the file being written when that
    is another one (a backup copy); ``doing`` says what the toolkit was doing. Only damage
    (SQLITE_CORRUPT, SQLITE_NOTADB) suggests the health check.
    """
    code = _primary_code(exc)
    during = f" while {doing}" if doing else ""
    target = writing or db or "the database"
    what = f"database {db}" if db else "the database"
    name = getattr(exc, "sqlite_errorname", None) or "SQLite error"
    damaged = f"{what} is damaged or not a database{during} (SQLite: {exc}); {_HEALTH_HINT}"
    locked = (
        f"{what} is locked by another connection{during} (SQLite: {exc}); try again later "
        "(stop the game server first for a restore)"
    )
    messages = {
        _SQLITE_FULL: (
            f"disk full writing {target}{during} (SQLite: {exc}); free space on that file "
            "system and run again"
        ),
        _SQLITE_CONSTRAINT: f"constraint violation in {what}{during}: {exc} ({name})",
        _SQLITE_CORRUPT: damaged,
        _SQLITE_NOTADB: damaged,
        _SQLITE_BUSY: locked,
        _SQLITE_LOCKED: locked,
        _SQLITE_READONLY: f"cannot write {target}{during}: read-only (SQLite: {exc})",
        _SQLITE_CANTOPEN: f"cannot open {target}{during} (SQLite: {exc})",
        _SQLITE_IOERR: f"I/O error on {target}{during} (SQLite: {exc})",
        _SQLITE_NOMEM: f"out of memory{during} (SQLite: {exc})",
    }
    default = f"SQLite error on {what}{during}: {exc} ({name})"
    return messages.get(code, default) if code is not None else default


def os_error_message(
    exc: OSError, path: str | os.PathLike[str] | None = None, doing: str | None = None
) -> str:
    """An accurate message for a file system error, naming the file (ENOSPC says disk full)."""
    target = path or exc.filename
    where = f" {target}" if target else ""
    during = f" while {doing}" if doing else ""
    reason = exc.strerror or str(exc)
    if exc.errno in {errno.ENOSPC, errno.EDQUOT}:
        return (
            f"no space left on device writing{where}{during} ({reason}); free space and run again"
        )
    if exc.errno in {errno.EACCES, errno.EPERM}:
        return f"permission denied on{where}{during} ({reason})"
    return f"file system error on{where}{during}: {reason}"


@contextlib.contextmanager
def reported(
    error: type[VoxelDBError],
    *,
    db: str | os.PathLike[str] | None = None,
    writing: str | os.PathLike[str] | None = None,
    doing: str | None = None,
) -> Iterator[None]:
    """Turn sqlite3.Error and OSError raised in the block into ``error`` with an accurate text."""
    try:
        yield
    except sqlite3.Error as exc:
        raise error(
            sqlite_error_message(exc, db=db, writing=writing, doing=doing),
            sqlite_error=str(exc),
            sqlite_errorname=getattr(exc, "sqlite_errorname", None),
        ) from exc
    except OSError as exc:
        path = writing or exc.filename or db
        raise error(
            os_error_message(exc, path, doing),
            path=str(path) if path else None,
            errno=exc.errno,
        ) from exc
