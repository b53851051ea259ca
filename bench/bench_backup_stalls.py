#!/usr/bin/env python3
"""Benchmark: the complete backup's time and the game server's commit stalls, per copy method.

One generated WAL database (bench_db_backup.py's generator, --size-mib), then --rounds rounds of
the toolkit's complete `create_backup(force=True)` with each --methods method while a writer
process commits at --writes-per-s (bench_db_backup.run_with_writer: the writer's p99 and its
worst commit while the backup ran). Usage:

    .venv/bin/python bench/bench_backup_stalls.py [--rounds 3] [--size-mib 1024]

Prints each run and writes bench/results/backup_stalls-<time>.json. Never run from the tests.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "bench")]

from bench_db_backup import generate, run_with_writer, toolkit_backup  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--writes-per-s", type=float, default=200.0)
    parser.add_argument("--methods", default="snapshot,backup")
    args = parser.parse_args()
    runs: list[dict] = []
    work = Path(tempfile.mkdtemp(prefix="bench-backup-stalls-", dir="/var/tmp"))
    try:
        db = work / "world.db"
        rows = generate(db, args.size_mib)
        for n in range(args.rounds):
            for method in args.methods.split(","):
                shutil.rmtree(work / "backups", ignore_errors=True)
                run = run_with_writer(
                    db,
                    rows,
                    args.writes_per_s,
                    lambda m=method: toolkit_backup(db, work / "backups", m),
                )
                runs.append({"round": n + 1, "method": method, **run})
                print(
                    f"round {n + 1} {method}: {run['seconds']:.2f} s, writer p99 "
                    f"{run['stall_p99_ms']} ms, max {run['stall_max_ms']} ms, "
                    f"copy made by {run['outcome']}",
                    flush=True,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = (
        REPO
        / "bench"
        / "results"
        / f"backup_stalls-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    )
    out.write_text(json.dumps({"size_mib": args.size_mib, "runs": runs}, indent=2) + "\n")
    print(f"wrote {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
