#!/usr/bin/env python3
"""Benchmark: online backup methods of a live WAL SQLite database against a plain `cp`.

Generates a database of about --size-mib MiB (WAL mode, the reference `chunks` table with
voxel-chunk-like blobs: runs of repeated bytes mixed with noise), then for each method runs a
concurrent writer in another process (about --writes-per-s single-row UPDATE transactions, like a
game server saving chunks) and measures:

* the method's wall time, and its ratio to `cp` of the same file;
* the writer's longest and p99 commit latency ("stall") while the method ran;
* the size of the -wal file afterwards;
* the full toolkit backup (`create_backup`: copy + quick_check + sha256 + fsync + manifest);
* `PRAGMA quick_check` against `PRAGMA integrity_check`.

Usage: .venv/bin/python bench/bench_db_backup.py [--size-mib 1024] [--writes-per-s 200]
Prints a table and writes bench/results/db_backup-<time>.json. Everything is made in a temporary
directory that is removed at the end. Never run from the tests: figures are recorded in
bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "collections"))

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.backup import (  # noqa: E402
    copy_database,
    create_backup,
)

CHUNK_BYTES = 16 * 1024
SCHEMA = (
    "CREATE TABLE chunks (cx INTEGER NOT NULL, cy INTEGER NOT NULL, cz INTEGER NOT NULL, "
    "payload BLOB NOT NULL, checksum TEXT NOT NULL, updated_at TEXT NOT NULL, "
    "PRIMARY KEY (cx, cy, cz))"
)
INDEX = "CREATE INDEX chunks_updated_at ON chunks (updated_at)"


def voxel_blob(rng: random.Random) -> bytes:
    """A chunk-like payload: runs of one block id (air, stone) mixed with random noise."""
    parts = []
    size = 0
    while size < CHUNK_BYTES:
        if rng.random() < 0.6:
            run = bytes([rng.choice((0, 0, 0, 1, 2, 7))]) * rng.randint(64, 1024)
        else:
            run = rng.randbytes(rng.randint(64, 512))
        parts.append(run)
        size += len(run)
    return b"".join(parts)[:CHUNK_BYTES]


def generate(db: Path, size_mib: int) -> int:
    """Create the WAL database with about size_mib MiB of chunks; return the number of rows."""
    rng = random.Random(42)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(SCHEMA)
    conn.execute(INDEX)
    rows = size_mib * 1024 * 1024 // (CHUNK_BYTES + 200)
    side = round(rows ** (1 / 3)) + 1
    pool = [voxel_blob(rng) for _ in range(256)]
    batch = []
    count = 0
    for cx in range(side):
        for cy in range(side):
            for cz in range(side):
                if count >= rows:
                    break
                payload = bytearray(pool[rng.randrange(len(pool))])
                payload[:8] = count.to_bytes(8, "little")  # every payload distinct
                payload = bytes(payload)
                stamp = f"2026-01-01T{count % 86400 // 3600:02d}:{count % 3600 // 60:02d}:00Z"
                batch.append((cx, cy, cz, payload, hashlib.sha256(payload).hexdigest(), stamp))
                count += 1
                if len(batch) >= 2000:
                    conn.executemany("INSERT INTO chunks VALUES (?,?,?,?,?,?)", batch)
                    conn.commit()
                    batch.clear()
    if batch:
        conn.executemany("INSERT INTO chunks VALUES (?,?,?,?,?,?)", batch)
        conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return count


def writer(db: str, rows: int, rate: float, stop: Any, out: Any) -> None:
    """Update random chunks at about `rate` transactions/s; send (start, latency) pairs."""
    rng = random.Random(7)
    conn = sqlite3.connect(db, timeout=60, isolation_level=None)
    conn.execute("PRAGMA synchronous=NORMAL")
    keys = conn.execute("SELECT cx, cy, cz FROM chunks").fetchall()
    payloads = [voxel_blob(rng) for _ in range(64)]
    samples = []
    interval = 1.0 / rate
    next_at = time.monotonic()
    while not stop.is_set():
        key = keys[rng.randrange(len(keys))]
        payload = payloads[rng.randrange(len(payloads))]
        start = time.monotonic()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "UPDATE chunks SET payload=?, checksum=?, updated_at=? WHERE cx=? AND cy=? AND cz=?",
            (payload, hashlib.sha256(payload).hexdigest(), "2026-11-28", *key),
        )
        conn.execute("COMMIT")
        samples.append((start, time.monotonic() - start))
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_at = time.monotonic()
    conn.close()
    out.send(samples)
    out.close()


def p99(values: list[float]) -> float:
    """99th percentile (nearest rank)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def toolkit_backup(db: Path, backups: Path, method: str) -> str:
    """create_backup by ``method``; the outcome is the method its manifest records."""
    name = create_backup(db, backups, method=method, force=True)["backup"]["name"]
    return json.loads((backups / f"{name}.manifest.json").read_text())["method"]


def run_with_writer(db: Path, rows: int, rate: float, action: Any) -> dict[str, Any]:
    """Run `action()` while a writer process updates chunks; return timing and stall figures."""
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=writer, args=(str(db), rows, rate, stop, child))
    os.sync()  # no method pays for another's dirty pages
    proc.start()
    time.sleep(1.5)  # writer warm-up (spawn, key list)
    begin = time.monotonic()
    outcome = action()
    end = time.monotonic()
    wal = Path(f"{db}-wal")
    wal_bytes = wal.stat().st_size if wal.exists() else 0
    time.sleep(0.5)
    stop.set()
    samples = parent.recv()
    proc.join()
    during = [lat for start, lat in samples if begin <= start <= end]
    return {
        "seconds": round(end - begin, 3),
        "writes": len(during),
        "writes_per_s": round(len(during) / (end - begin), 1) if end > begin else 0,
        "stall_max_ms": round(max(during, default=0) * 1000, 2),
        "stall_p99_ms": round(p99(during) * 1000, 2),
        "stall_median_ms": round(statistics.median(during) * 1000, 2) if during else 0,
        "wal_bytes_after": wal_bytes,
        "outcome": outcome,
    }


def summarise(measured: list[dict[str, Any]]) -> dict[str, Any]:
    """Median time over the rounds, worst stalls over the rounds."""
    return {
        "seconds": round(statistics.median(m["seconds"] for m in measured), 3),
        "seconds_all": [m["seconds"] for m in measured],
        "seconds_min": min(m["seconds"] for m in measured),
        "seconds_max": max(m["seconds"] for m in measured),
        "writes_per_s": round(statistics.median(m["writes_per_s"] for m in measured), 1),
        "stall_max_ms": max(m["stall_max_ms"] for m in measured),
        "stall_p99_ms": max(m["stall_p99_ms"] for m in measured),
        "wal_bytes_after": max(m["wal_bytes_after"] for m in measured),
        "outcome": f"{len(measured)} rounds: median time, worst stalls",
    }


def stepped_with_deadline(db: Path, target: Path, pages: int, deadline_s: float) -> str:
    """Backup API in steps of `pages`, given up after `deadline_s` (it restarts on writes)."""
    src = sqlite3.connect(db)
    dst = sqlite3.connect(target)
    started = time.monotonic()
    steps = 0
    total_pages = 0

    def progress(status: int, remaining: int, total: int) -> None:
        nonlocal steps, total_pages
        steps += 1
        total_pages = total
        if time.monotonic() - started > deadline_s:
            raise TimeoutError

    try:
        src.backup(dst, pages=pages, progress=progress, sleep=0)
        result = f"finished in {steps} steps (one clean pass: {-(-total_pages // pages)})"
    except TimeoutError:
        result = (
            f"GAVE UP after {deadline_s:.0f}s: {steps} steps, a clean pass needs "
            f"{-(-total_pages // pages)} (restarts on every write)"
        )
    finally:
        dst.close()
        src.close()
    return result


def timed(fn: Any) -> float:
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0915 - one linear script
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--writes-per-s", type=float, default=200.0)
    parser.add_argument("--step-pages", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=5, help="rounds of the main methods")
    parser.add_argument("--tmp", default=None, help="parent of the temporary directory")
    args = parser.parse_args(argv)

    results: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
        },
        "size_mib_requested": args.size_mib,
        "writes_per_s_requested": args.writes_per_s,
        "runs": {},
    }
    work = Path(tempfile.mkdtemp(prefix="bench-db-backup-", dir=args.tmp))
    try:
        db = work / "world.db"
        t0 = time.monotonic()
        rows = generate(db, args.size_mib)
        results["generate_s"] = round(time.monotonic() - t0, 1)
        results["rows"] = rows
        results["db_bytes"] = db.stat().st_size
        print(
            f"generated {db.stat().st_size / 2**20:.0f} MiB, {rows} rows "
            f"in {results['generate_s']} s",
            flush=True,
        )
        out = work / "copy.db"

        def fresh() -> None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{out}{suffix}").unlink(missing_ok=True)

        subprocess.run(["cp", str(db), str(out)], check=True)  # warm the page cache
        fresh()
        runs = results["runs"]
        idle = run_with_writer(db, rows, args.writes_per_s, lambda: time.sleep(5) or "idle")
        runs["writer only (5 s)"] = idle
        print("writer only:", idle, flush=True)

        def cp() -> str:
            subprocess.run(["cp", str(db), str(out)], check=True)
            return "done"

        def cp_fsync() -> str:
            subprocess.run(["cp", str(db), str(out)], check=True)
            fd = os.open(out, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
            return "done"

        methods = {
            "cp (not consistent)": cp,
            "cp + fsync (not consistent)": cp_fsync,
            # The outcome is the method that made the copy: snapshot falls back to the backup
            # API when it finds no moment with the WAL fully checkpointed.
            "snapshot (file under one read transaction) + sha256": lambda: (
                copy_database(db, out, "snapshot").method
            ),
            "backup API one pass": lambda: copy_database(db, out, "backup").method,
            "VACUUM INTO": lambda: copy_database(db, out, "vacuum").method,
        }
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in methods}
        names = list(methods)
        for number in range(args.repeat):  # interleaved and rotated: drift hits every method alike
            for name in names[number % len(names) :] + names[: number % len(names)]:
                action = methods[name]
                fresh()
                rounds[name].append(run_with_writer(db, rows, args.writes_per_s, action))
                print(f"round {number + 1}", name, rounds[name][-1], flush=True)
        for name, measured in rounds.items():
            runs[name] = summarise(measured)
        cp_s = runs["cp (not consistent)"]["seconds"]
        fresh()
        name = f"backup API stepped ({args.step_pages} pages)"
        runs[name] = run_with_writer(
            db,
            rows,
            args.writes_per_s,
            lambda: stepped_with_deadline(db, out, args.step_pages, max(30.0, 10 * cp_s)),
        )
        print(name, runs[name], flush=True)
        fresh()
        name = f"backup API stepped, no writer ({args.step_pages} pages)"
        runs[name] = {
            "seconds": round(
                timed(lambda: copy_database(db, out, "stepped", step_pages=args.step_pages)), 3
            )
        }
        fresh()
        backups = work / "backups"
        for method in ("snapshot", "backup", "vacuum"):
            shutil.rmtree(backups, ignore_errors=True)
            name = f"toolkit create_backup ({method}, quick_check, sha256, fsync)"
            runs[name] = run_with_writer(
                db, rows, args.writes_per_s, lambda m=method: toolkit_backup(db, backups, m)
            )
            print(name, runs[name], flush=True)
        shutil.rmtree(backups, ignore_errors=True)
        fresh()

        conn = sqlite3.connect(db)
        results["quick_check_s"] = round(
            timed(lambda: conn.execute("PRAGMA quick_check").fetchall()), 3
        )
        results["integrity_check_s"] = round(
            timed(lambda: conn.execute("PRAGMA integrity_check").fetchall()), 3
        )
        conn.close()
        for run in runs.values():
            run["ratio_to_cp"] = round(run["seconds"] / cp_s, 2) if cp_s else None
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"{'method':<62} {'s':>7} {'x cp':>6} {'p99 ms':>7} {'max ms':>7} {'w/s':>6}")
    for name, run in results["runs"].items():
        print(
            f"{name:<62} {run['seconds']:>7.2f} {run['ratio_to_cp'] or 0:>6.2f} "
            f"{run.get('stall_p99_ms', 0):>7.2f} {run.get('stall_max_ms', 0):>7.2f} "
            f"{run.get('writes_per_s', 0):>6}  {run.get('outcome', '')}"
        )
    print(
        f"quick_check {results['quick_check_s']} s, integrity_check "
        f"{results['integrity_check_s']} s"
    )
    out_dir = REPO / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = out_dir / f"db_backup-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
