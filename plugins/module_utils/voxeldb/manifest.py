"""Backup manifests: naming, reading, listing and verifying finished backups.

A finished backup is two files in the backup directory:

* the data file ``<stem>.db`` (or ``<stem>.db.gz`` / ``<stem>.db.zst``), and
* its manifest ``<stem>.manifest.json``, written last and atomically.

A backup counts as *verified* only when its manifest parses, names an existing data file whose
size and sha256 match. Anything else (a data file without manifest, a temporary file) is not a
backup and is never chosen for a restore or a repair. Retention removes such leftovers once a
newer verified backup exists (see :func:`orphan_data_files`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import gzip
import json
import os
import re
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.errors import (
    BackupError,
    InputError,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.fsutil import (
    CHUNK,
    TMP_PREFIX,
    parse_time,
    sha256_file,
    temp_path,
)

try:  # zstd is optional: the `zstandard` package where it is installed.
    import zstandard as _zstd  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the host
    _zstd = None

MANIFEST_FORMAT = 1
MANIFEST_SUFFIX = ".manifest.json"
COMPRESSION_SUFFIX = {"none": ".db", "gzip": ".db.gz", "zstd": ".db.zst"}
REQUIRED_FIELDS: dict[str, type | tuple[type, ...]] = {
    "format": int,
    "file": str,
    "sha256": str,
    "size": int,
    "created_at": str,
    "source": str,
    "sqlite_version": str,
    "schema_version": int,
    "page_count": int,
    "compression": str,
    "db_sha256": str,
    "db_size": int,
}
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_STEM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: ``<prefix>-YYYYmmddTHHMMSSffffffZ`` with an optional ``-N`` (see backup.backup_name).
_NAME_TIME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*-(?P<stamp>\d{8}T\d{12}Z)(?:-\d+)?$")
#: Tables that do not make a database a world database (SQLite's own and the migration log).
BOOKKEEPING_TABLES = frozenset({"schema_migrations"})
LOCK_FILE = ".voxeldb.lock"
#: The earlier copy of the database a deploy prepares for its backup (backup.prepare_copy): not
#: a backup and not an orphan; the next backup into the directory takes it.
BASE_FILE = ".voxeldb-earlier-copy.db"


def zstd_available() -> bool:
    """True when zstd compression can be used on this host."""
    return _zstd is not None


def zstd_module() -> Any:
    """The ``zstandard`` module (untyped), None where it is not installed."""
    return _zstd


@dataclasses.dataclass(frozen=True)
class Manifest:
    """The parsed manifest of one backup."""

    path: Path
    data: dict[str, Any]

    @property
    def name(self) -> str:
        """The backup's name: the manifest file name without its suffix."""
        return self.path.name[: -len(MANIFEST_SUFFIX)]

    @property
    def data_path(self) -> Path:
        """The backup's data file."""
        file: str = self.data["file"]
        return self.path.parent / file

    @property
    def created_at(self) -> _dt.datetime:
        """When the backup was taken (aware UTC)."""
        return parse_time(self.data["created_at"])

    @property
    def sha256(self) -> str:
        """sha256 of the stored data file."""
        sha256: str = self.data["sha256"]
        return sha256

    @property
    def compression(self) -> str:
        """none, gzip or zstd."""
        compression: str = self.data["compression"]
        return compression

    def summary(self) -> dict[str, Any]:
        """A short dict for reports."""
        return {
            "name": self.name,
            "file": str(self.data_path),
            "created_at": self.data["created_at"],
            "sha256": self.sha256,
            "size": self.data["size"],
            "schema_version": self.data["schema_version"],
            "compression": self.compression,
        }


def validate_manifest_data(data: Any, where: str) -> dict[str, Any]:
    """Check the shape of parsed manifest JSON; raise BackupError naming ``where``."""
    if not isinstance(data, dict):
        raise BackupError(f"manifest {where} is not a JSON object")
    for field, kind in REQUIRED_FIELDS.items():
        if field not in data:
            raise BackupError(f"manifest {where} lacks field {field!r}")
        value = data[field]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise BackupError(f"manifest {where}: field {field!r} has the wrong type")
    if data["format"] != MANIFEST_FORMAT:
        raise BackupError(f"manifest {where}: unknown format {data['format']}")
    for field in ("sha256", "db_sha256"):
        if not _SHA256_RE.match(data[field]):
            raise BackupError(f"manifest {where}: {field} is not a sha256 hex digest")
    if data["compression"] not in COMPRESSION_SUFFIX:
        raise BackupError(f"manifest {where}: unknown compression {data['compression']!r}")
    name = data["file"]
    if "/" in name or name in {".", ".."} or not _STEM_RE.match(name):
        raise BackupError(f"manifest {where}: data file name {name!r} is not a plain file name")
    if data["size"] < 0 or data["db_size"] < 0:
        raise BackupError(f"manifest {where}: negative size")
    parse_time(data["created_at"])
    return data


def read_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and validate one manifest file."""
    target = Path(path)
    try:
        raw = target.read_bytes()
    except OSError as exc:
        raise BackupError(f"cannot read manifest {target}: {exc.strerror}") from exc
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackupError(f"manifest {target} is not valid JSON: {exc}") from exc
    return Manifest(target, validate_manifest_data(data, str(target)))


@dataclasses.dataclass
class BackupEntry:
    """One backup found in a directory, with the outcome of its verification."""

    name: str
    manifest: Manifest | None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        """True when the manifest parsed and the data file matched it."""
        return self.manifest is not None and self.problem is None


def verify_checksum(manifest: Manifest) -> str | None:
    """Return None when the data file matches the manifest, else the problem."""
    data_path = manifest.data_path
    try:
        size = data_path.stat().st_size
    except FileNotFoundError:
        return f"data file {data_path} is missing"
    if size != manifest.data["size"]:
        return f"data file {data_path} has {size} bytes, manifest says {manifest.data['size']}"
    actual = sha256_file(data_path)
    if actual != manifest.sha256:
        return f"data file {data_path} sha256 {actual} does not match manifest {manifest.sha256}"
    return None


def list_backups(backup_dir: str | os.PathLike[str], verify: bool = True) -> list[BackupEntry]:
    """List the backups in ``backup_dir``, oldest first.

    With ``verify`` each data file's size and sha256 are checked against its manifest. Backups
    whose manifest cannot be read are listed with ``manifest=None`` and a problem; they sort first.
    """
    directory = Path(backup_dir)
    if not directory.is_dir():
        return []
    entries: list[BackupEntry] = []
    for path in sorted(directory.iterdir()):
        if not path.name.endswith(MANIFEST_SUFFIX) or path.name.startswith(TMP_PREFIX):
            continue
        name = path.name[: -len(MANIFEST_SUFFIX)]
        try:
            manifest = read_manifest(path)
        except BackupError as exc:
            entries.append(BackupEntry(name, None, exc.message))
            continue
        problem = verify_checksum(manifest) if verify else None
        entries.append(BackupEntry(name, manifest, problem))
    epoch = _dt.datetime.min.replace(tzinfo=_dt.UTC)
    entries.sort(key=lambda e: (e.manifest.created_at if e.manifest else epoch, e.name))
    return entries


def backup_time(name: str) -> _dt.datetime | None:
    """The time in a backup name (``<prefix>-YYYYmmddTHHMMSSffffffZ[-N]``), None if it has none."""
    match = _NAME_TIME_RE.match(name)
    if not match:
        return None
    return _dt.datetime.strptime(match["stamp"], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=_dt.UTC)


def data_file_stem(file_name: str) -> str | None:
    """The backup name of a data file name (``X.db``, ``X.db.gz``, ``X.db.zst`` -> ``X``)."""
    for suffix in sorted(COMPRESSION_SUFFIX.values(), key=len, reverse=True):
        if file_name.endswith(suffix) and len(file_name) > len(suffix):
            return file_name[: -len(suffix)]
    return None


def _claimed_files(directory: Path) -> set[str]:
    """Data file names a manifest claims: named in a readable manifest, or sharing the stem of
    any manifest (an unreadable manifest still claims its data file: it is a person's call)."""
    claimed: set[str] = set()
    for path in directory.glob(f"*{MANIFEST_SUFFIX}"):
        if path.name.startswith(TMP_PREFIX):
            continue
        stem = path.name[: -len(MANIFEST_SUFFIX)]
        claimed.update(f"{stem}{suffix}" for suffix in COMPRESSION_SUFFIX.values())
        with contextlib.suppress(BackupError):
            claimed.add(read_manifest(path).data["file"])
    return claimed


def orphan_files(backup_dir: str | os.PathLike[str]) -> list[str]:
    """Data files without manifest and leftover temporary files (never counted as backups)."""
    directory = Path(backup_dir)
    if not directory.is_dir():
        return []
    claimed = _claimed_files(directory)
    found = []
    for path in sorted(directory.iterdir()):
        if path.name in (LOCK_FILE, BASE_FILE):
            continue
        temporary = path.name.startswith(TMP_PREFIX)
        if temporary or (not path.name.endswith(MANIFEST_SUFFIX) and path.name not in claimed):
            found.append(path.name)
    return found


def orphan_data_files(backup_dir: str | os.PathLike[str]) -> list[tuple[Path, _dt.datetime]]:
    """Backup data files that no manifest claims, with the time in their name.

    Only files named like the toolkit's backups (``<prefix>-<time>[-N].db[.gz|.zst]``) are
    listed: other files in the directory are never the toolkit's to remove.
    """
    directory = Path(backup_dir)
    if not directory.is_dir():
        return []
    claimed = _claimed_files(directory)
    found = []
    for path in sorted(directory.iterdir()):
        if path.name.startswith(TMP_PREFIX) or path.name in claimed or not path.is_file():
            continue
        stem = data_file_stem(path.name)
        moment = backup_time(stem) if stem else None
        if moment is not None:
            found.append((path, moment))
    return found


def world_tables(conn: sqlite3.Connection) -> list[str]:
    """The database's own tables: neither SQLite's internal ones nor the migration log."""
    names = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite\\_%' "
            "ESCAPE '\\' ORDER BY name"
        )
    ]
    return [name for name in names if name not in BOOKKEEPING_TABLES]


def schema_problem(
    conn: sqlite3.Connection, what: str, expected_tables: list[str] | None = None
) -> str | None:
    """Why the database ``what`` is not a world database, or None.

    A database with no table at all (a 0-byte file, a fresh file, only ``schema_migrations``)
    is not one; neither, when ``expected_tables`` are given, is one holding none of them.
    """
    tables = world_tables(conn)
    if not tables:
        return f"{what} holds no tables (an empty or uninitialised database)"
    if expected_tables and not set(expected_tables) & set(tables):
        return (
            f"{what} holds none of the expected tables ({', '.join(expected_tables)}); "
            f"its tables: {', '.join(tables)}"
        )
    return None


@contextlib.contextmanager
def open_db_image(manifest: Manifest, work_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a plain SQLite file for the backup: the data file itself, or a decompressed copy.

    A decompressed copy is a temporary file in ``work_dir``, removed on exit.
    """
    if manifest.compression == "none":
        yield manifest.data_path
        return
    tmp = temp_path(work_dir, "decompress")
    try:
        decompress_to(manifest.data_path, manifest.compression, tmp)
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def decompress_to(source: Path, compression: str, target: Path) -> None:
    """Decompress ``source`` into ``target`` (which is overwritten)."""
    if compression == "gzip":
        with gzip.open(source, "rb") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)
    elif compression == "zstd":
        if _zstd is None:
            raise BackupError(f"{source} is zstd-compressed but zstd is not available here")
        with open(source, "rb") as src, open(target, "wb") as dst:
            _zstd.ZstdDecompressor().copy_stream(src, dst)
    else:
        raise BackupError(f"unknown compression {compression!r} for {source}")


def open_readonly(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open a SQLite file read-only (URI mode=ro)."""
    return sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)


def run_integrity_check(path: str | os.PathLike[str], check: str = "quick") -> list[str]:
    """Run ``quick_check`` or ``integrity_check`` on a file; return the problems (empty if ok)."""
    if check not in {"quick", "full"}:
        raise InputError(f"integrity check must be quick or full, not {check!r}")
    pragma = "quick_check" if check == "quick" else "integrity_check"
    try:
        conn = open_readonly(path)
        try:
            rows = [row[0] for row in conn.execute(f"PRAGMA {pragma}")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return [f"{pragma} could not run: {exc}"]
    return [] if rows == ["ok"] else [str(row) for row in rows]


def verify_backup(
    manifest: Manifest,
    check: str,
    work_dir: str | os.PathLike[str],
    *,
    require_tables: bool = False,
) -> None:
    """Verify checksum and integrity of a backup; raise BackupError naming the file otherwise.

    With ``require_tables`` a backup of a database without tables fails verification too.
    """
    problem = verify_checksum(manifest)
    if problem:
        raise BackupError(f"backup {manifest.name} failed verification: {problem}")
    empty = None
    try:
        with open_db_image(manifest, work_dir) as image:
            problems = run_integrity_check(image, check)
            if require_tables and not problems:
                conn = open_readonly(image)
                try:
                    empty = schema_problem(conn, f"backup {manifest.name}")
                finally:
                    conn.close()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise BackupError(f"backup {manifest.name} cannot be decompressed: {exc}") from exc
    if problems:
        raise BackupError(
            f"backup {manifest.name} failed the {check} integrity check: {problems[:5]}",
            problems=problems,
        )
    if empty:
        raise BackupError(empty)


def schema_version(conn: sqlite3.Connection) -> int:
    """MAX(version) of schema_migrations, 0 when the table is empty or absent."""
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_migrations'"
    ).fetchone()
    if not row:
        return 0
    value = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]
    return int(value or 0)
