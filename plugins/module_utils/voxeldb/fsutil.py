"""Small file-system helpers: checksums, fsync, atomic writes, SQLite file checks.

The atomic write, the directory fsync and the RFC 3339 times are ops_common's (one copy for the
whole repository); this module names the toolkit's temporary files and its time precision.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import secrets
import signal
import tempfile
from pathlib import Path
from typing import Any

from ansible_collections.mmo_voxel.ops.plugins.module_utils.ops_common import (
    atomic_write,
    format_rfc3339,
    parse_rfc3339,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.errors import InputError

SQLITE_MAGIC = b"SQLite format 3\x00"
#: Every temporary file of the toolkit starts with this prefix; listings skip such files.
TMP_PREFIX = ".voxeldb-tmp-"
CHUNK = 1 << 20
#: TEST-ONLY fault injection: the name of the phase at which the process kills itself.
FAULT_ENV = "VOXELDB_FAULT_PHASE"


def fault_point(phase: str) -> None:
    """TEST-ONLY hook: SIGKILL this process at ``phase`` when ``VOXELDB_FAULT_PHASE`` names it.

    Inert unless that environment variable is set to exactly this phase's name; nothing in the
    repository sets it outside tests/fault/test_db_faults.py, which uses it to kill a backup at
    each named phase deterministically (the phases are listed in backup.FAULT_PHASES).
    """
    if os.environ.get(FAULT_ENV) == phase:
        os.kill(os.getpid(), signal.SIGKILL)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the sha256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Return the sha256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush a file's data and metadata to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(directory: str | os.PathLike[str], hint: str) -> Path:
    """Return a fresh, unused temporary file name in ``directory`` (the file is created empty)."""
    fd, name = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{hint}-", dir=directory)
    os.close(fd)
    return Path(name)


def write_temp_bytes(
    directory: str | os.PathLike[str], hint: str, data: bytes, mode: int = 0o640
) -> Path:
    """Write ``data`` to a new temporary file in ``directory``, fsynced; return its path.

    The caller renames it into place (or removes it); until then no listing counts it.
    """
    tmp = temp_path(directory, hint)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _toolkit_temp(path: Path) -> Path:
    """A temporary sibling named so that listings skip it and a backup's cleanup finds it."""
    return path.with_name(f"{TMP_PREFIX}{path.name}-{secrets.token_hex(4)}")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, mode: int = 0o640) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename (never half written)."""
    atomic_write(path, data, mode, temp_path=_toolkit_temp)


def atomic_write_json(
    path: str | os.PathLike[str], data: dict[str, Any], mode: int = 0o640
) -> None:
    """Write ``data`` as indented, key-sorted JSON through :func:`atomic_write_bytes`."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"), mode)


def rfc3339(moment: _dt.datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC with microseconds (``...Z``)."""
    return format_rfc3339(moment, timespec="microseconds")


def parse_time(text: str) -> _dt.datetime:
    """Parse an ISO 8601 / RFC 3339 time; a time without zone is taken as UTC."""
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        raise InputError(f"not an ISO 8601 time: {text!r}") from exc


def require_sqlite_file(path: str | os.PathLike[str], what: str = "database") -> Path:
    """Return ``path`` resolved after checking it is an existing SQLite 3 file."""
    target = Path(path)
    if not target.exists():
        raise InputError(f"{what} {target} does not exist")
    if not target.is_file():
        raise InputError(f"{what} {target} is not a regular file")
    with open(target, "rb") as handle:
        header = handle.read(len(SQLITE_MAGIC))
    if header and header != SQLITE_MAGIC:  # an empty file is an empty database to SQLite
        raise InputError(f"{what} {target} is not a SQLite 3 database (bad header)")
    return target.resolve()


def quote_ident(name: str) -> str:
    """Quote an SQL identifier (table or column name)."""
    return '"' + name.replace('"', '""') + '"'
