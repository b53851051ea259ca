"""A consistent copy of a live SQLite database, hashed while it is written.

The backup API writes its copy through SQLite's pager, and the copy must then be read again for
its sha256: on 1 GiB that second read was as long as the copy (bench/README.md). This copy reads
the database file itself, in large blocks, and hashes each block in a thread while the next one
is read and written, so the digest costs no extra pass.

Why the file is a consistent image while a read transaction is open on it:

* rollback-journal mode: the read transaction holds a SHARED lock, so no writer changes the file
  until it ends (writers wait, as they do for the backup API in that mode);
* WAL mode: committed pages live in the WAL until a checkpoint copies ("backfills") them into the
  file, and a checkpoint never backfills past the end mark of a reader's snapshot
  (https://sqlite.org/wal.html, "Checkpointing"). So once a checkpoint has backfilled the *whole*
  WAL while our read transaction is open, our snapshot is exactly the file's content, and stays
  so until the transaction ends, whatever the game server writes meanwhile. ``PRAGMA
  wal_checkpoint(PASSIVE)`` says whether it did (its log and checkpointed frame counts are
  equal); it never blocks the writer. When it did not (a writer committed between our BEGIN and
  the checkpoint, another checkpoint was running, an older reader held the WAL back), the read
  transaction is restarted; after ``attempts`` tries the caller falls back to the backup API.

The copy is flushed to disk as it grows (``FLUSH_EVERY``), so the game server's commits never
wait behind the writeback of the whole copy at once.

Onto an earlier image (``reuse``): when the target already holds a copy of the database from a
little earlier (a deploy copies the world while the old version still serves, then backs it up
after the stop), each block is compared with the target's and written only when it differs, and
the target is cut to the database's size. The result is the same bytes as a copy into an empty
file, whatever the target held (another database, garbage, a longer file): every block is
compared, and the digest is of the database's blocks. Only the writes, and so the fsync, shrink
to what changed.

The image is the one ``journal_mode=DELETE`` would make of the copy: the header's file format
bytes (offsets 18 and 19) say "rollback journal" (1) instead of "WAL" (2), so the copy is one
self-contained file; nothing else in the file depends on the journal mode.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import queue
import sqlite3
import threading
import time
from pathlib import Path
from typing import BinaryIO

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.errors import BackupError

#: Block size of the copy: large enough that hashing and I/O release the GIL for long stretches.
BLOCK = 8 * 1024 * 1024
#: Blocks read ahead of the hashing thread (memory bound: BLOCK times this).
QUEUE_BLOCKS = 4
#: The copy is flushed to disk in a thread every this many bytes while it is made. One fsync of
#: a whole 1 GiB copy at the end left the disk idle during the copy, then held it for over a
#: second, and the game server's own commit fsyncs waited behind it (worst commit 1.3-2.5 s);
#: flushed every 16 MiB, 22-238 ms (bench/bench_backup_stalls.py, bench/README.md).
FLUSH_EVERY = 16 * 1024 * 1024
#: Offset and values of the header's "file format write/read version" bytes: 1 = rollback
#: journal, 2 = WAL (https://sqlite.org/fileformat2.html#file_format_version_numbers).
FORMAT_OFFSET = 18
ROLLBACK_FORMAT = b"\x01\x01"
WAL_FORMAT = b"\x02\x02"
#: How many read transactions to try for one the WAL is fully backfilled under, and the pause
#: between tries (a writer at 200 commits/s leaves a gap this long most of the time).
ATTEMPTS = 20
RETRY_PAUSE = 0.01


def _quiet_snapshot(source: sqlite3.Connection, checkpointer: sqlite3.Connection) -> bool:
    """Open a read transaction on ``source`` under which the file holds the whole snapshot."""
    source.execute("BEGIN")
    source.execute("SELECT count(*) FROM sqlite_master").fetchone()
    mode = source.execute("PRAGMA journal_mode").fetchone()[0]
    if mode != "wal":
        return True  # the SHARED lock keeps writers out of the file
    try:
        busy, log, backfilled = checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    except sqlite3.OperationalError:  # another connection is checkpointing: try again
        busy, log, backfilled = 1, -1, 0
    if busy == 0 and log == backfilled:
        return True
    source.execute("ROLLBACK")
    return False


def _hash_blocks(blocks: queue.Queue[bytes | None], digest: hashlib._Hash) -> None:
    while (block := blocks.get()) is not None:
        digest.update(block)


class _Flusher(threading.Thread):
    """fdatasync of a file being written, each time it is asked, until it is told to stop."""

    def __init__(self, fd: int) -> None:
        super().__init__(daemon=True)
        self.fd = fd
        self.asked = threading.Event()
        self.last = False
        self.error: OSError | None = None

    def run(self) -> None:
        while True:
            self.asked.wait()
            self.asked.clear()
            try:
                os.fdatasync(self.fd)
            except OSError as exc:  # raised by finish(), in the copying thread
                self.error = exc
                return
            if self.last:
                return

    def finish(self) -> OSError | None:
        """One last flush of everything written; return what a flush raised."""
        self.last = True
        self.asked.set()
        self.join()
        return self.error


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """A finished snapshot copy: the sha256 of its bytes and how many of them were written."""

    sha256: str
    written: int


def _copy_blocks(
    source_path: Path,
    src: BinaryIO,
    dst: BinaryIO,
    size: int,
    blocks: queue.Queue[bytes | None],
    flusher: _Flusher,
    reuse: bool,
) -> int:
    """Read ``size`` bytes in blocks, write each (with ``reuse``, each that differs from what
    ``dst`` holds there), hand it to the hasher, ask for flushes; return the bytes written."""
    offset = written = 0
    while offset < size:
        block = src.read(min(BLOCK, size - offset))
        if not block:
            raise BackupError(
                f"database {source_path} ended at byte {offset} of the {size} its page count says"
            )
        if offset == 0:
            block = block[:FORMAT_OFFSET] + ROLLBACK_FORMAT + block[FORMAT_OFFSET + 2 :]
        blocks.put(block)
        if not reuse or os.pread(dst.fileno(), len(block), offset) != block:
            view = memoryview(block)
            dst.seek(offset)
            while view:
                view = view[dst.write(view) :]
            if written % FLUSH_EVERY + len(block) >= FLUSH_EVERY:
                flusher.asked.set()
            written += len(block)
        offset += len(block)
    dst.truncate(size)
    return written


def _copy_and_hash(source_path: Path, size: int, target: Path, reuse: bool) -> Snapshot:
    """Copy the first ``size`` bytes of ``source_path`` to ``target``; return their sha256.

    The copy is on disk when this returns: flushed in a thread as it grows, then once more.
    """
    digest = hashlib.sha256()
    blocks: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUE_BLOCKS)
    hasher = threading.Thread(target=_hash_blocks, args=(blocks, digest), daemon=True)
    hasher.start()
    try:
        with (
            open(source_path, "rb", buffering=0) as src,
            # The earlier copy is written in place: never through a link put in its place.
            open(os.open(target, os.O_RDWR | os.O_NOFOLLOW), "r+b", buffering=0)
            if reuse
            else open(target, "wb", buffering=0) as dst,
        ):
            flusher = _Flusher(dst.fileno())
            flusher.start()
            try:
                written = _copy_blocks(source_path, src, dst, size, blocks, flusher, reuse)
            finally:
                error = flusher.finish()  # the thread never outlives the file it flushes
            if error is not None:
                raise error
    finally:
        blocks.put(None)
        hasher.join()
    return Snapshot(digest.hexdigest(), written)


def snapshot_copy(
    db_path: Path,
    target: Path,
    *,
    busy_timeout: float = 30.0,
    attempts: int = ATTEMPTS,
    reuse: bool = False,
) -> Snapshot | None:
    """Copy a consistent image of ``db_path`` into ``target``; return its sha256.

    ``target`` is replaced; with ``reuse`` it must exist, and only the blocks that differ from
    what it holds are written (see the module's text).

    Returns None, with nothing written, when no read transaction found the WAL fully
    backfilled in ``attempts`` tries: the caller then copies another way.
    """
    source = sqlite3.connect(db_path, timeout=busy_timeout, isolation_level=None)
    checkpointer = sqlite3.connect(db_path, timeout=busy_timeout, isolation_level=None)
    try:
        for attempt in range(attempts):
            if attempt:
                time.sleep(RETRY_PAUSE)
            if _quiet_snapshot(source, checkpointer):
                break
        else:
            return None
        try:
            pages = source.execute("PRAGMA page_count").fetchone()[0]
            page_size = source.execute("PRAGMA page_size").fetchone()[0]
            return _copy_and_hash(db_path, pages * page_size, target, reuse)
        finally:
            source.execute("ROLLBACK")
    finally:
        checkpointer.close()
        source.close()


def set_journal_format(path: Path, *, wal: bool) -> None:
    """Mark the closed database file ``path`` as a WAL (or rollback-journal) database.

    What ``PRAGMA journal_mode`` writes, without the write transaction that also bumps the file
    change counter: a restored file then differs from its backup's image in these two bytes only,
    so the image made of it again is the backup's, and a second restore sees nothing to do.
    """
    with open(path, "r+b") as handle:
        handle.seek(FORMAT_OFFSET)
        handle.write(WAL_FORMAT if wal else ROLLBACK_FORMAT)
