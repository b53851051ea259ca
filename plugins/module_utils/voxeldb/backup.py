"""Consistent online backups of a live SQLite database, and retention of the backup directory.

A backup is made in these steps, each of which can be interrupted (even by SIGKILL) without
leaving anything that looks like a finished backup:

1. refuse a database that holds no tables (a 0-byte or fresh file: it would become the newest
   backup a restore picks) or none of the expected tables, unless ``allow_empty``;
2. copy a consistent image of the database into a temporary file ``.voxeldb-tmp-*`` in the
   backup directory: by default the file under one read transaction, hashed while it is written
   (``snapshot.py``), else with SQLite's backup API (in one pass or in steps) or ``VACUUM INTO``;
3. make the copy a ``journal_mode=DELETE`` file (a single self-contained file) and verify it
   with ``quick_check`` or ``integrity_check``;
4. checksum it (unless the copy did) and, when asked, compress it into a second temporary file;
   fsync it;
5. write the manifest (sha256, size, time, source, SQLite version, schema version, page count)
   to a temporary file too, and fsync it;
6. rename the data file to its final name, fsync the directory, then rename the manifest to its
   final name (the one rename that makes the backup count) and fsync the directory.

Only a manifest whose sha256 matches its data file makes a finished backup. A kill between the two
renames leaves a data file without manifest: an *orphan*, never listed as a backup; retention
removes orphans older than the newest verified backup (and any temporary file, under the lock).

``fsutil.fault_point`` marks each phase (``FAULT_PHASES``); it is a test-only hook, inert unless
``VOXELDB_FAULT_PHASE`` is set, with which tests/fault/test_db_faults.py kills a backup at each.

Idempotence: when the database's content is byte-for-byte the content of the newest verified
backup (same ``db_sha256`` of the uncompressed image), no new backup is written unless ``force``.

An earlier copy (:func:`prepare_copy`): a deploy copies the world into ``BASE_NAME`` in the backup
directory while the old version still serves; the backup after the stop starts from that file
and writes only the blocks that changed since (``snapshot.py``), so the window holds a compare
of the database with the copy, not a whole copy's write and fsync. The next backup into the
directory takes the file (any later backup, whatever its prefix: the result does not depend on
what the file holds); it is never listed as a backup or an orphan.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import fcntl
import gzip
import json
import os
import shutil
import sqlite3
import stat
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

from ansible_collections.mmo_voxel.ops.plugins.module_utils.ops_common import fsync_dir, utc_now
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb import manifest as mf
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.errors import (
    BackupError,
    InputError,
    reported,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.fsutil import (
    CHUNK,
    TMP_PREFIX,
    fault_point,
    fsync_file,
    require_sqlite_file,
    rfc3339,
    sha256_file,
    temp_path,
    write_temp_bytes,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.retention import (
    RetentionPolicy,
    select_retention,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.snapshot import snapshot_copy

METHODS = ("snapshot", "backup", "stepped", "vacuum")
#: The default method, chosen from bench/bench_db_backup.py and bench/bench_backup_ab.py (see
#: bench/README.md). ``snapshot`` falls back to ``backup`` when the WAL is never quiet.
DEFAULT_METHOD = "snapshot"
LOCK_NAME = mf.LOCK_FILE
BASE_NAME = mf.BASE_FILE
#: The named points of a backup (and of retention) where ``fsutil.fault_point`` can kill the
#: process in tests, in the order a backup reaches them. ``compressed`` is reached only with
#: compression, ``pruning`` only when retention deletes a backup (between its two files).
FAULT_PHASES = (
    "locked",  # the directory lock is held, stale temporaries are removed
    "copied",  # the copy is written (temporary file)
    "verified",  # the copy passed its integrity check and is hashed
    "compressed",  # the compressed copy is written (temporary file)
    "data-synced",  # the data file is fsynced (still temporary)
    "manifest-written",  # the manifest is written and fsynced (temporary file)
    "data-renamed",  # the data file has its final name, the manifest not yet: an orphan
    "manifest-renamed",  # the manifest has its final name: the backup counts
    "published",  # the directory is fsynced
    "pruning",  # retention deleted a manifest and not yet its data file
)


def validate_backup_dir(db_path: Path, backup_dir: str | os.PathLike[str]) -> Path:
    """Return the backup directory resolved, refusing places that would endanger the database."""
    target = Path(backup_dir).expanduser()
    resolved = target.resolve()
    if target.exists() and not target.is_dir():
        if os.path.samefile(target, db_path):
            raise InputError(f"backup_dir {target} is the database file itself")
        raise InputError(f"backup_dir {target} exists and is not a directory")
    if resolved == db_path:
        raise InputError(f"backup_dir {target} is the database file itself")
    if resolved == db_path.parent:
        raise InputError(f"backup_dir {target} is the database's own directory {db_path.parent}")
    if target.exists() and os.path.samefile(target, db_path.parent):
        raise InputError(f"backup_dir {target} is the database's own directory {db_path.parent}")
    if not target.exists():
        parent = next((p for p in resolved.parents if p.exists()), None)
        if parent is None or not parent.is_dir():
            raise InputError(f"backup_dir {target}: no existing parent directory")
    return resolved


@contextlib.contextmanager
def dir_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive, non-blocking lock on ``directory`` for one toolkit run."""
    handle = open(directory / LOCK_NAME, "a+b")  # noqa: SIM115 - held for the block
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise BackupError(
                f"another toolkit run holds the lock {directory / LOCK_NAME}; try again later"
            ) from exc
        yield
    finally:
        handle.close()


def remove_stale_temps(directory: Path) -> list[str]:
    """Delete leftover temporary files of interrupted runs (call only under :func:`dir_lock`)."""
    removed = []
    for path in directory.glob(f"{TMP_PREFIX}*"):
        path.unlink(missing_ok=True)
        removed.append(path.name)
    if removed:
        fsync_dir(directory)
    return sorted(removed)


@dataclasses.dataclass(frozen=True)
class Copy:
    """What ``copy_database`` made: the method that made it, and its sha256 if it hashed it."""

    method: str
    sha256: str | None = None
    #: Bytes the copy wrote (a snapshot's): less than the image onto an earlier copy.
    written: int | None = None


def copy_database(
    db_path: Path,
    target: Path,
    method: str = DEFAULT_METHOD,
    *,
    step_pages: int = 4096,
    step_sleep: float = 0.0,
    busy_timeout: float = 30.0,
    reuse: bool = False,
) -> Copy:
    """Make a consistent copy of the (possibly live) database at ``db_path`` into ``target``.

    With ``reuse``, ``target`` holds an earlier copy: a snapshot writes only what differs; any
    other method starts from an empty file.
    """
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    if method == "snapshot":
        done = snapshot_copy(db_path, target, busy_timeout=busy_timeout, reuse=reuse)
        if done is not None:
            return Copy(method, done.sha256, done.written)
        method = "backup"  # the WAL was never quiet: the backup API copies under any load
    if reuse:
        os.truncate(target, 0)  # SQLite would take the earlier copy for a database to update
    source = sqlite3.connect(db_path, timeout=busy_timeout)
    try:
        if method == "vacuum":
            target.unlink(missing_ok=True)
            source.execute("VACUUM INTO ?", (str(target),))
            return Copy(method)
        dest = sqlite3.connect(target)
        try:
            # The copy is a temporary file that is fsynced once it is complete: no journal and
            # no fsync per step (an fsync of the whole copy here stalls every other writer).
            dest.execute("PRAGMA journal_mode=OFF")
            dest.execute("PRAGMA synchronous=OFF")
            pages = -1 if method == "backup" else step_pages
            source.backup(dest, pages=pages, sleep=step_sleep)
        finally:
            dest.close()
    finally:
        source.close()
    return Copy(method)


def describe_image(path: Path) -> dict[str, Any]:
    """Make a copied image a self-contained rollback-journal file and read its facts."""
    conn = sqlite3.connect(path)
    try:
        # The image is a temporary file that is fsynced whole before anything names it (or a
        # scratch copy): the switch out of WAL mode need not sync on its own (about 0.5 s of a
        # 1 GiB backup's time).
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA journal_mode=DELETE").fetchone()
        return {
            "page_count": conn.execute("PRAGMA page_count").fetchone()[0],
            "page_size": conn.execute("PRAGMA page_size").fetchone()[0],
            "schema_version": mf.schema_version(conn),
            "tables": mf.world_tables(conn),
        }
    finally:
        conn.close()


def image_sha256(db_path: Path, target: Path, method: str, step_pages: int = 4096) -> str:
    """sha256 of the database's consistent image, in the form a backup by ``method`` stores it."""
    copy = copy_database(db_path, target, method, step_pages=step_pages)
    describe_image(target)
    return copy.sha256 or sha256_file(target)


def source_journal_mode(db_path: Path) -> str:
    """The journal mode recorded in the source database's header (wal or delete)."""
    with open(db_path, "rb") as handle:
        handle.seek(18)
        versions = handle.read(2)
    return "wal" if versions == b"\x02\x02" else "delete"


def compress_file(source: Path, target: Path, compression: str, level: int | None) -> None:
    """Compress ``source`` into ``target`` (gzip with a fixed mtime, or zstd)."""
    if compression == "gzip":
        with (
            open(source, "rb") as src,
            open(target, "wb") as raw,
            gzip.GzipFile(
                filename="", mode="wb", fileobj=raw, compresslevel=level or 6, mtime=0
            ) as dst,
        ):
            shutil.copyfileobj(src, dst, CHUNK)
    elif compression == "zstd":
        zstd = mf.zstd_module()
        if zstd is None:
            raise InputError("compression zstd needs the Python package zstandard on this host")
        with open(source, "rb") as src, open(target, "wb") as dst:
            zstd.ZstdCompressor(level=level or 3).copy_stream(src, dst)
    else:
        raise InputError(f"unknown compression {compression!r}")


def backup_name(prefix: str, moment: Any, directory: Path) -> str:
    """A backup name ``<prefix>-YYYYmmddTHHMMSSffffffZ`` not yet used in ``directory``."""
    base = f"{prefix}-{moment.strftime('%Y%m%dT%H%M%S%fZ')}"
    name, counter = base, 1
    while (directory / f"{name}{mf.MANIFEST_SUFFIX}").exists() or any(
        (directory / f"{name}{suffix}").exists() for suffix in mf.COMPRESSION_SUFFIX.values()
    ):
        counter += 1
        name = f"{base}-{counter}"
    return name


@dataclasses.dataclass(frozen=True)
class BackupOptions:
    """How to make one backup (validated by :func:`create_backup`)."""

    method: str = DEFAULT_METHOD
    check: str = "quick"
    compression: str = "none"
    compression_level: int | None = None
    step_pages: int = 4096
    step_sleep: float = 0.0
    file_mode: int = 0o640
    allow_empty: bool = False
    expected_tables: tuple[str, ...] = ()

    def refusal(self, tables: list[str], what: str) -> str | None:
        """Why a database with ``tables`` must not be backed up, or None."""
        if not tables and self.allow_empty:
            return None
        if not tables:
            return (
                f"refusing to back up: {what} holds no tables (an empty or uninitialised "
                "database; it would become the newest backup a restore picks). Set allow_empty "
                "(--allow-empty) only to back up a database that is empty on purpose"
            )
        if self.expected_tables and not set(self.expected_tables) & set(tables):
            return (
                f"refusing to back up: {what} holds none of the expected tables "
                f"({', '.join(self.expected_tables)}); its tables: {', '.join(tables)}"
            )
        return None

    def validate(self) -> None:
        """Raise InputError on an unknown method, check or compression."""
        if self.method not in METHODS:
            raise InputError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.check not in {"quick", "full"}:
            raise InputError(f"check must be quick or full, not {self.check!r}")
        if self.compression not in mf.COMPRESSION_SUFFIX:
            raise InputError(f"compression must be none, gzip or zstd, not {self.compression!r}")
        if self.compression == "zstd" and not mf.zstd_available():
            raise InputError("compression zstd needs the Python package zstandard on this host")
        if self.step_pages < 1:
            raise InputError(f"step_pages must be >= 1, not {self.step_pages}")


def create_backup(
    db_path: str | os.PathLike[str],
    backup_dir: str | os.PathLike[str],
    *,
    method: str = DEFAULT_METHOD,
    check: str = "quick",
    compression: str = "none",
    compression_level: int | None = None,
    prefix: str | None = None,
    force: bool = False,
    retention: RetentionPolicy | None = None,
    check_mode: bool = False,
    step_pages: int = 4096,
    step_sleep: float = 0.0,
    dir_mode: int = 0o750,
    file_mode: int = 0o640,
    allow_empty: bool = False,
    expected_tables: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Make a verified backup of ``db_path`` in ``backup_dir``; return a result dict.

    The result has ``changed``, ``backup`` (the summary of the new or the matching backup),
    ``skipped_reason`` when nothing was written, and ``retention`` when a policy was given.
    A database without tables (or, with ``expected_tables``, without any of them) is refused
    unless ``allow_empty`` (which allows only the no-table case).
    """
    db = require_sqlite_file(Path(db_path).expanduser(), "database")
    directory = validate_backup_dir(db, backup_dir)
    options = BackupOptions(
        method,
        check,
        compression,
        compression_level,
        step_pages,
        step_sleep,
        file_mode,
        allow_empty,
        tuple(expected_tables or ()),
    )
    options.validate()
    prefix = prefix or db.stem
    if not mf._STEM_RE.match(prefix):
        raise InputError(f"prefix {prefix!r} may hold only letters, digits, '.', '_' and '-'")
    with reported(InputError, db=db, doing="reading its schema"):
        conn = sqlite3.connect(db, timeout=30.0)
        try:
            tables = mf.world_tables(conn)
        finally:
            conn.close()
    refusal = options.refusal(tables, f"database {db}")
    if refusal:
        raise InputError(refusal)

    result: dict[str, Any] = {"changed": False, "db": str(db), "backup_dir": str(directory)}
    if check_mode:
        _plan_backup(db, directory, options, force, result)
        if retention is not None and result["changed"]:
            result["retention"] = {"note": "retention is evaluated after the new backup is made"}
        elif retention is not None:
            result["retention"] = prune(directory, retention, check_mode=True)
            result["changed"] = result["retention"]["changed"]
        return result

    if not directory.exists():
        directory.mkdir(mode=dir_mode, parents=True)
        result["changed"] = True
    with dir_lock(directory):
        result["removed_temps"] = remove_stale_temps(directory)
        fault_point("locked")
        # With force the newest backup is not compared with: its checksum is not read either
        # (a whole backup's read, inside a deploy's window).
        newest = None if force else _newest_verified(directory)
        written = _write_backup(db, directory, prefix, options, newest)
        if written is None and newest is not None:
            result["backup"] = newest.summary()
            result["skipped_reason"] = (
                f"database content equals the newest verified backup {newest.name}"
            )
        elif written is not None:
            result["changed"] = True
            result["backup"] = written
        if retention is not None:
            result["retention"] = _prune_locked(directory, retention, check_mode=False)
            result["changed"] = result["changed"] or result["retention"]["changed"]
    return result


def prepare_copy(
    db_path: str | os.PathLike[str],
    backup_dir: str | os.PathLike[str],
    *,
    check_mode: bool = False,
    dir_mode: int = 0o750,
    busy_timeout: float = 30.0,
) -> dict[str, Any]:
    """Copy the (live) database into ``backup_dir``'s earlier-copy file for the next backup.

    Nothing of it counts as a backup: the next :func:`create_backup` into the directory takes
    the file and writes only what changed since. When the WAL is never quiet enough for a
    snapshot, nothing is prepared (``prepared`` false) and that backup copies the whole world.
    """
    db = require_sqlite_file(Path(db_path).expanduser(), "database")
    directory = validate_backup_dir(db, backup_dir)
    result: dict[str, Any] = {"changed": True, "db": str(db), "backup_dir": str(directory)}
    if check_mode:
        return result
    if not directory.exists():
        directory.mkdir(mode=dir_mode, parents=True)
    with dir_lock(directory):
        tmp = temp_path(directory, "earlier-copy")
        try:
            with reported(BackupError, db=db, writing=tmp, doing=f"copying {db} into {directory}"):
                done = snapshot_copy(db, tmp, busy_timeout=busy_timeout)
            if done is not None:
                os.replace(tmp, directory / BASE_NAME)
        finally:
            tmp.unlink(missing_ok=True)
    result["prepared"] = done is not None
    result["changed"] = done is not None
    return result


def _take_earlier_copy(directory: Path, raw: Path, options: BackupOptions) -> bool:
    """Move the directory's earlier copy (if any) onto ``raw`` for a snapshot to start from.

    Only a regular file with no other name is written into: a link planted under that name
    (to /etc/shadow, say) is dropped, never followed, and the copy starts from an empty file.
    """
    if options.method != "snapshot":
        return False
    try:
        os.replace(directory / BASE_NAME, raw)
    except FileNotFoundError:
        return False
    found = os.lstat(raw)
    if stat.S_ISREG(found.st_mode) and found.st_nlink == 1:
        return True
    raw.unlink()
    raw.touch(mode=0o600, exist_ok=False)
    return False


def _write_backup(
    db: Path,
    directory: Path,
    prefix: str,
    options: BackupOptions,
    same_as: mf.Manifest | None,
) -> dict[str, Any] | None:
    """Copy, verify, checksum, compress, write the manifest, publish; return its summary.

    Returns None (and leaves nothing behind) when the image equals ``same_as``'s content. Data
    and manifest are both written and fsynced under temporary names; the data file is renamed
    first and the manifest last, so only a whole, verified backup ever has a manifest.
    """
    started = time.monotonic()
    moment = utc_now()
    name = backup_name(prefix, moment, directory)
    raw = temp_path(directory, name)
    # Removed on any failure: temporaries, and the data file if its manifest never got its name.
    leftovers = [raw]
    try:
        reuse = _take_earlier_copy(directory, raw, options)
        facts, db_sha, copy = _verified_image(db, raw, options, reuse)
        fault_point("verified")
        if same_as is not None and same_as.data["db_sha256"] == db_sha:
            return None
        db_size = raw.stat().st_size
        final_name = f"{name}{mf.COMPRESSION_SUFFIX[options.compression]}"
        packed = _pack(db, raw, directory, final_name, options, leftovers)
        data = {
            "format": mf.MANIFEST_FORMAT,
            "file": final_name,
            "sha256": db_sha if packed == raw else sha256_file(packed),
            "size": packed.stat().st_size,
            "db_sha256": db_sha,
            "db_size": db_size,
            "created_at": rfc3339(moment),
            "source": str(db),
            "source_journal_mode": source_journal_mode(db),
            "sqlite_version": sqlite3.sqlite_version,
            "method": copy.method,
            "check": options.check,
            "compression": options.compression,
            "duration_ms": int((time.monotonic() - started) * 1000),
            **facts,
        }
        manifest_path = directory / f"{name}{mf.MANIFEST_SUFFIX}"
        _publish(packed, manifest_path, data, options.file_mode, leftovers)
    finally:
        for leftover in leftovers:
            leftover.unlink(missing_ok=True)
    summary = mf.read_manifest(manifest_path).summary()
    summary["duration_ms"] = data["duration_ms"]
    summary["written_bytes"] = copy.written
    return summary


def _verified_image(
    db: Path, raw: Path, options: BackupOptions, reuse: bool = False
) -> tuple[dict[str, Any], str, Copy]:
    """Copy ``db`` to ``raw`` (onto the earlier copy it holds, with ``reuse``) and verify the
    copy; return its facts, sha256 and how it was copied."""
    directory = raw.parent
    with reported(BackupError, db=db, writing=raw, doing=f"copying {db} into {directory}"):
        copy = copy_database(
            db,
            raw,
            options.method,
            step_pages=options.step_pages,
            step_sleep=options.step_sleep,
            reuse=reuse,
        )
    fault_point("copied")
    with reported(BackupError, db=raw, doing=f"checking the copy of {db}"):
        facts = describe_image(raw)
        # Both read the whole copy and release the GIL: hash in a thread while SQLite checks
        # (a snapshot copy hashed what it wrote: describe_image leaves its bytes as they are).
        # Uncompressed, the copy is the backup's data file: its writeback starts now too, under
        # that CPU work (_pack's fsync, which the manifest still waits for, then finds it clean).
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            hashing = pool.submit(sha256_file, raw) if copy.sha256 is None else None
            flushing = pool.submit(fsync_file, raw) if options.compression == "none" else None
            problems = mf.run_integrity_check(raw, options.check)
            # No hashing exactly when the copy hashed what it wrote (copy.sha256 is set).
            db_sha = cast(str, copy.sha256) if hashing is None else hashing.result()
            if flushing is not None:
                flushing.result()
    if problems:
        raise BackupError(
            f"the copy of {db} failed the {options.check} integrity check: {problems[:5]}",
            problems=problems,
        )
    refusal = options.refusal(facts.pop("tables"), f"the copy of database {db}")
    if refusal:
        raise BackupError(refusal)
    return facts, db_sha, copy


def _pack(
    db: Path,
    raw: Path,
    directory: Path,
    final_name: str,
    options: BackupOptions,
    leftovers: list[Path],
) -> Path:
    """Compress ``raw`` if asked; fsync the data file (still temporary) and return it."""
    packed = raw
    if options.compression != "none":
        packed = temp_path(directory, final_name)
        leftovers.append(packed)
        with reported(
            BackupError,
            writing=packed,
            doing=f"compressing the copy of {db} with {options.compression} into {directory}",
        ):
            compress_file(raw, packed, options.compression, options.compression_level)
        raw.unlink()
        fault_point("compressed")
    with reported(BackupError, writing=packed, doing="flushing the backup to disk"):
        fsync_file(packed)
        os.chmod(packed, options.file_mode)
    fault_point("data-synced")
    return packed


def _publish(
    packed: Path,
    manifest_path: Path,
    data: dict[str, Any],
    file_mode: int,
    leftovers: list[Path],
) -> None:
    """Write the manifest under a temporary name, then rename the data file and the manifest.

    The manifest's rename is the one that makes the backup count; until it, ``leftovers`` holds
    the data file (temporary or final name) and the manifest's temporary file.
    """
    directory = manifest_path.parent
    data_path = directory / data["file"]
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    with reported(BackupError, writing=manifest_path, doing="writing the manifest"):
        manifest_tmp = write_temp_bytes(
            directory, manifest_path.name, text.encode("utf-8"), file_mode
        )
    leftovers.append(manifest_tmp)
    fault_point("manifest-written")
    with reported(BackupError, writing=data_path, doing="publishing the backup"):
        os.replace(packed, data_path)
        leftovers[leftovers.index(packed)] = data_path
        fsync_dir(directory)  # the data file's name is on disk before the manifest's
        fault_point("data-renamed")
        os.replace(manifest_tmp, manifest_path)
        leftovers.clear()
        fault_point("manifest-renamed")
        fsync_dir(directory)
    fault_point("published")


def _newest_verified(directory: Path) -> mf.Manifest | None:
    """The newest backup whose data file matches its manifest (checksums checked newest first)."""
    for entry in reversed(mf.list_backups(directory, verify=False)):
        if entry.manifest is not None and mf.verify_checksum(entry.manifest) is None:
            return entry.manifest
    return None


def _plan_backup(
    db: Path, directory: Path, options: BackupOptions, force: bool, result: dict[str, Any]
) -> None:
    """Check mode: decide whether a backup would be written, without touching backup_dir."""
    newest = _newest_verified(directory) if directory.is_dir() else None
    if force or newest is None:
        result["changed"] = True
        result["would_backup"] = True
        return
    with tempfile.TemporaryDirectory(prefix="voxeldb-check-") as work:
        raw = Path(work) / "image.db"
        same = image_sha256(db, raw, options.method, options.step_pages) == newest.data["db_sha256"]
    result["changed"] = not same
    result["would_backup"] = not same
    result["backup"] = newest.summary()
    if same:
        result["skipped_reason"] = (
            f"database content equals the newest verified backup {newest.name}"
        )


def prune(
    backup_dir: str | os.PathLike[str], policy: RetentionPolicy, check_mode: bool = False
) -> dict[str, Any]:
    """Apply ``policy`` to the verified backups of ``backup_dir`` (under the directory lock)."""
    directory = Path(backup_dir).expanduser().resolve()
    if not directory.is_dir():
        raise InputError(f"backup_dir {directory} does not exist or is not a directory")
    if check_mode:
        return _prune_locked(directory, policy, check_mode=True)
    with dir_lock(directory):
        return _prune_locked(directory, policy, check_mode=False)


def _prune_locked(directory: Path, policy: RetentionPolicy, check_mode: bool) -> dict[str, Any]:
    """Apply ``policy``; remove orphans older than the newest verified backup and temporaries.

    Call only under :func:`dir_lock` (or in check mode, which removes nothing): then no other run
    is writing, so every temporary file is a leftover of an interrupted one.
    """
    entries = mf.list_backups(directory, verify=True)
    # The verified backups' manifests by name, in the listing's order.
    good = {e.name: e.manifest for e in entries if e.ok and e.manifest is not None}
    invalid = [{"name": e.name, "problem": e.problem} for e in entries if not e.ok]
    keep, delete = select_retention([(n, m.created_at) for n, m in good.items()], policy)
    newest = max((m.created_at for m in good.values()), default=None)
    temps = sorted(p for p in directory.glob(f"{TMP_PREFIX}*") if p.is_file())
    stale = [
        path
        for path, moment in mf.orphan_data_files(directory)
        if newest is not None and moment < newest
    ]
    if not check_mode:
        for name in delete:
            manifest = good[name]
            # Manifest first: an interrupted prune leaves an orphan data file (removed by the
            # next prune), never a manifest pointing at nothing.
            manifest.path.unlink(missing_ok=True)
            fault_point("pruning")
            manifest.data_path.unlink(missing_ok=True)
        for path in [*stale, *temps]:
            path.unlink(missing_ok=True)
        if delete or stale or temps:
            fsync_dir(directory)
    gone = {p.name for p in [*stale, *temps]}
    return {
        "changed": bool(delete or stale or temps),
        "kept": {name: keep[name] for name in sorted(keep)},
        "deleted": delete,
        "invalid": invalid,
        "removed_orphans": [p.name for p in stale],
        "removed_temps": [p.name for p in temps],
        "orphans": [n for n in mf.orphan_files(directory) if n not in gone]
        if directory.is_dir()
        else [],
    }
