"""Restore a verified backup over the world database, keeping the replaced files aside.

Order of operations (nothing is changed before step 3):

1. choose the backup: by name, the newest taken at or before a time, or the newest;
2. verify it: manifest sha256 of the data file, then ``integrity_check`` (or ``quick_check``);
   without a name, a backup of a database without tables fails verification too. When the
   newest candidate fails, the next older one that verifies is named, with every failure, and
   the restore is refused (:class:`OlderBackupRefused`) unless ``allow_older``;
3. take a lock on the database's directory (``.voxeldb.lock``) and remove temporary files of
   interrupted restores; prepare the new database as a temporary file next to the database
   (decompressed if need be), check its sha256 against the manifest's ``db_sha256``, set its
   journal mode back to the source's (WAL) and fsync it;
4. checkpoint the current database (refusing if another connection is busy with it), hard-link it
   to ``<db>.replaced-<time>``, move its ``-wal``/``-shm`` next to that, then atomically rename the
   prepared file over the database and fsync the directory.

Idempotence: when the database already holds exactly the backup's content, nothing is done.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from ansible_collections.mmo_voxel.ops.plugins.module_utils.ops_common import fsync_dir, utc_now
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb import manifest as mf
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.backup import (
    DEFAULT_METHOD,
    dir_lock,
    image_sha256,
    remove_stale_temps,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.errors import (
    BackupError,
    InputError,
    OlderBackupRefused,
    reported,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.fsutil import (
    SQLITE_MAGIC,
    fsync_file,
    parse_time,
    rfc3339,
    sha256_file,
    temp_path,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.snapshot import (
    set_journal_format,
)

SIDE_SUFFIXES = ("-wal", "-shm", "-journal")


def choose_backup(
    entries: list[mf.BackupEntry], name: str | None = None, before: _dt.datetime | None = None
) -> tuple[list[mf.Manifest], bool]:
    """Candidates for a restore, best first, and whether the choice is strict.

    With ``name`` the one backup of that name (strict: if it fails verification, the restore
    fails). Otherwise every backup (taken at or before ``before`` when given), newest first;
    the first that verifies is used.
    """
    if name is not None:
        for entry in entries:
            if entry.name == name or (entry.manifest and entry.manifest.data["file"] == name):
                if entry.manifest is None:
                    raise BackupError(f"backup {name} has an unreadable manifest: {entry.problem}")
                return [entry.manifest], True
        raise InputError(f"backup {name!r} not found")
    candidates = [e.manifest for e in entries if e.manifest is not None]
    if before is not None:
        candidates = [m for m in candidates if m.created_at <= before]
    candidates.sort(key=lambda m: (m.created_at, m.name), reverse=True)
    if not candidates:
        when = f" taken at or before {before.isoformat()}" if before else ""
        raise InputError(f"no backup{when} found")
    return candidates, False


def _validate(
    db_path: str | os.PathLike[str], backup_dir: str | os.PathLike[str], check: str
) -> tuple[Path, Path]:
    db = Path(db_path).expanduser().absolute()
    if not db.parent.is_dir():
        raise InputError(f"db_path {db}: directory {db.parent} does not exist")
    if db.exists():
        with open(db, "rb") as handle:
            if handle.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC and db.stat().st_size:
                raise InputError(f"db_path {db} exists and is not a SQLite database")
    directory = Path(backup_dir).expanduser().absolute()
    if not directory.is_dir():
        raise InputError(f"backup_dir {directory} does not exist or is not a directory")
    if check not in {"quick", "full"}:
        raise InputError(f"check must be quick or full, not {check!r}")
    return db, directory


def _first_verified(
    candidates: list[mf.Manifest], strict: bool, check: str, work: str
) -> tuple[mf.Manifest, list[dict[str, str]]]:
    """The first candidate that passes checksum and integrity, and the ones passed over."""
    skipped: list[dict[str, str]] = []
    for candidate in candidates:
        try:
            mf.verify_backup(candidate, check, work, require_tables=not strict)
        except BackupError as exc:
            if strict:
                raise BackupError(f"refusing to restore: {exc.message}") from exc
            skipped.append(
                {
                    "name": candidate.name,
                    "created_at": candidate.data["created_at"],
                    "problem": exc.message,
                }
            )
            continue
        return candidate, skipped
    raise BackupError(
        f"no backup passed verification; nothing was changed. Failed: {_failures(skipped)}",
        skipped=skipped,
    )


def _failures(failed: list[dict[str, str]]) -> str:
    """``name (problem); ...`` for messages."""
    return "; ".join(f"{f['name']} ({f['problem']})" for f in failed)


def _unreadable_newer(
    entries: list[mf.BackupEntry], chosen: mf.Manifest, before: _dt.datetime | None
) -> list[dict[str, str]]:
    """Backups with an unreadable manifest whose name says they are newer than ``chosen``."""
    found = []
    for entry in entries:
        moment = mf.backup_time(entry.name)
        # A manifest that did not read always says why (entry.problem).
        if entry.manifest is not None or entry.problem is None or moment is None:
            continue
        if moment > chosen.created_at and (before is None or moment <= before):
            found.append(
                {"name": entry.name, "created_at": rfc3339(moment), "problem": entry.problem}
            )
    return found


def _aside_plan(db: Path, stamp: str) -> list[tuple[Path, Path]]:
    """(file, aside name) for the database and its side files that exist now."""
    pairs = [
        (db.parent / f"{db.name}{suffix}", db.parent / f"{db.name}.replaced-{stamp}{suffix}")
        for suffix in ("", *SIDE_SUFFIXES)
    ]
    return [(src, dst) for src, dst in pairs if src.exists()]


def _prepare(chosen: mf.Manifest, db: Path, prepared: Path) -> None:
    """Write the backup's database image to ``prepared``, checked, in the source journal mode."""
    if chosen.compression == "none":
        shutil.copyfile(chosen.data_path, prepared)
    else:
        mf.decompress_to(chosen.data_path, chosen.compression, prepared)
    if sha256_file(prepared) != chosen.data["db_sha256"]:
        raise BackupError(f"the copy of backup {chosen.name} does not match its db_sha256")
    # Every image is a rollback-journal file (describe_image, snapshot_copy); a WAL source gets
    # its mode back with the two header bytes that say so.
    set_journal_format(prepared, wal=chosen.data.get("source_journal_mode", "wal") == "wal")
    for side in SIDE_SUFFIXES:
        Path(f"{prepared}{side}").unlink(missing_ok=True)
    if db.exists():
        stat = db.stat()
        os.chmod(prepared, stat.st_mode & 0o7777)
        if os.geteuid() == 0:
            os.chown(prepared, stat.st_uid, stat.st_gid)
    fsync_file(prepared)


def restore_backup(
    db_path: str | os.PathLike[str],
    backup_dir: str | os.PathLike[str],
    *,
    name: str | None = None,
    before: str | None = None,
    check: str = "full",
    allow_older: bool = False,
    check_mode: bool = False,
) -> dict[str, Any]:
    """Restore a backup over ``db_path``; return a result dict (see module sqlite_restore).

    Without ``name``, when newer backups (than the one that verifies) fail verification, raise
    :class:`OlderBackupRefused` naming each and why, unless ``allow_older``; with it, restore the
    older one and say so in ``msg`` and ``warnings``.
    """
    db, directory = _validate(db_path, backup_dir, check)
    when = parse_time(before) if before else None
    entries = mf.list_backups(directory, verify=False)
    candidates, strict = choose_backup(entries, name, when)
    with tempfile.TemporaryDirectory(prefix="voxeldb-restore-") as work:
        chosen, skipped = _first_verified(candidates, strict, check, work)
        # A restore by name is what was asked for: newer backups are not its business.
        failed = (
            []
            if strict
            else sorted(
                skipped + _unreadable_newer(entries, chosen, when),
                key=lambda f: f["created_at"],
                reverse=True,
            )
        )
        if failed and not allow_older:
            raise OlderBackupRefused(
                f"refusing to restore an older backup: {len(failed)} newer backup(s) failed "
                f"verification: {_failures(failed)}. The newest backup that verifies is "
                f"{chosen.name} (taken {chosen.data['created_at']}). Nothing was changed; "
                "restore it anyway with --allow-older (module option allow_older: true) or "
                "choose a backup by name",
                failed_backups=failed,
                verified_backup=chosen.summary(),
            )
        result: dict[str, Any] = {
            "changed": False,
            "db": str(db),
            "backup": chosen.summary(),
            "skipped_backups": failed,
            "set_aside": [],
        }
        if failed:
            result["warnings"] = [
                f"newer backup {f['name']} failed verification and was skipped: {f['problem']}"
                for f in failed
            ]
        try:
            # The image as the chosen backup's method makes it: the same content, the same bytes.
            method = chosen.data.get("method", DEFAULT_METHOD)
            raw = Path(work) / "current.db"
            current = image_sha256(db, raw, method) if db.exists() else None
            raw.unlink(missing_ok=True)
        except sqlite3.DatabaseError:
            current = None  # a damaged database is never "already restored"
        if current == chosen.data["db_sha256"]:
            result["msg"] = f"{db} already holds the content of backup {chosen.name}"
            return _say_older(result, failed)

    stamp = utc_now().strftime("%Y%m%dT%H%M%S%fZ")
    result["changed"] = True
    if check_mode:
        result["set_aside"] = [
            {"from": str(src), "to": str(dst)} for src, dst in _aside_plan(db, stamp)
        ]
        result["msg"] = f"would restore backup {chosen.name} over {db}"
        return _say_older(result, failed)

    with dir_lock(db.parent):
        result["removed_temps"] = remove_stale_temps(db.parent)
        with reported(BackupError, db=db, doing=f"restoring backup {chosen.name} over {db}"):
            present = _swap_in(chosen, db, stamp)
    result["set_aside"] = [{"from": str(src), "to": str(dst)} for src, dst in present]
    result["msg"] = f"restored backup {chosen.name} over {db}"
    return _say_older(result, failed)


def _say_older(result: dict[str, Any], failed: list[dict[str, str]]) -> dict[str, Any]:
    """Append to ``msg`` that an older backup was used because newer ones failed."""
    if failed:
        result["msg"] += (
            f" - an OLDER backup: {len(failed)} newer backup(s) failed verification: "
            f"{_failures(failed)}"
        )
    return result


def _swap_in(chosen: mf.Manifest, db: Path, stamp: str) -> list[tuple[Path, Path]]:
    """Prepare the backup's image next to ``db``, set the old files aside, rename it in place."""
    prepared = temp_path(db.parent, db.name)
    try:
        _prepare(chosen, db, prepared)
        if db.exists():
            _checkpoint_or_refuse(db)
        # Planned after the checkpoint: closing the last connection removes an empty -wal/-shm.
        present = _aside_plan(db, stamp)
        for src, dst in present:
            if src == db:
                os.link(src, dst)  # the database stays in place until the atomic replace
            else:
                os.rename(src, dst)
        fsync_dir(db.parent)
        os.replace(prepared, db)
        fsync_dir(db.parent)
    finally:
        prepared.unlink(missing_ok=True)
        for side in SIDE_SUFFIXES:
            Path(f"{prepared}{side}").unlink(missing_ok=True)
    return present


def _checkpoint_or_refuse(db: Path) -> None:
    """Fold the WAL into the database; refuse when another connection is busy with it."""
    conn = sqlite3.connect(db, timeout=5)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.DatabaseError as exc:
        # A damaged database is exactly what a restore replaces; keep it aside as it is.
        conn.close()
        if "locked" in str(exc) or "busy" in str(exc):
            raise BackupError(f"{db} is in use ({exc}); stop the server first") from exc
        return
    conn.close()
    if busy:
        raise BackupError(f"{db} is in use (a checkpoint was blocked); stop the server first")
