#!/usr/bin/env python3
"""Benchmark: the toolkit's create_backup of this tree against another revision's, side by side.

One generated WAL database (bench_db_backup.py's generator, --size-mib), then rounds of
`create_backup(force=True)` with this tree's plugins/module_utils/voxeldb/backup.py and with the
one of --against (a git revision), alternating which goes first, each in a fresh process after
`os.sync()`; after each run a durable `cp` + fsync of the same file for the ratio. Each run also
prints the seconds spent in the pipeline's parts (copy, describe, check, hash, fsync, publish).
No writer (the full bench, bench_db_backup.py, measures the writer's stalls). Usage:

    .venv/bin/python bench/bench_backup_ab.py --against 3f06d2e [--rounds 3] [--size-mib 1024]

Prints each run and the medians. Never run from the tests.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BACKUP = "plugins/module_utils/voxeldb/backup.py"
sys.path[:0] = [str(REPO / "bench")]

from bench_db_backup import generate  # noqa: E402

# Runs in a fresh process: imports the given backup.py as a module and times one backup.
RUN = """
import importlib.util, os, sys, time
sys.path.insert(0, {collections!r})
spec = importlib.util.spec_from_file_location("backup_under_test", {module!r})
module = importlib.util.module_from_spec(spec)
sys.modules["backup_under_test"] = module
spec.loader.exec_module(module)
phases = {{}}
def timed(name, function):
    def wrapper(*args, **kwargs):
        begun = time.monotonic()
        try:
            return function(*args, **kwargs)
        finally:
            phases[name] = phases.get(name, 0.0) + time.monotonic() - begun
    return wrapper
# Where the time goes: the pipeline's parts, by the names this revision's backup.py calls them
# (the check, the hash and the fsync run side by side, so their sum exceeds the whole).
for name in ("copy_database", "describe_image", "sha256_file", "fsync_file", "_publish"):
    if hasattr(module, name):
        setattr(module, name, timed(name, getattr(module, name)))
module.mf.run_integrity_check = timed("integrity_check", module.mf.run_integrity_check)
os.sync()
started = time.monotonic()
module.create_backup({db!r}, {out!r}, force=True)
print(time.monotonic() - started)
print(" ".join(f"{{k}}={{v:.2f}}" for k, v in phases.items()))
"""


def durable_copy(db: Path, target: Path) -> float:
    os.sync()
    started = time.monotonic()
    shutil.copyfile(db, target)
    fd = os.open(target, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    elapsed = time.monotonic() - started
    target.unlink()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", required=True, help="git revision to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=1024)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-backup-ab-", dir="/var/tmp"))
    try:
        other = work / "backup_other.py"
        other.write_bytes(
            subprocess.run(
                ["git", "show", f"{args.against}:{BACKUP}"], cwd=REPO, capture_output=True,
                check=True,
            ).stdout
        )  # fmt: skip
        modules = {"this tree": REPO / BACKUP, args.against: other}
        db = work / "world.db"
        generate(db, args.size_mib)
        times: dict[str, list[float]] = {name: [] for name in modules}
        copies: list[float] = []
        for n in range(args.rounds):
            order = list(modules) if n % 2 == 0 else list(reversed(modules))
            for name in order:
                out = work / "backups"
                code = RUN.format(
                    collections=str(REPO / "collections"), module=str(modules[name]),
                    db=str(db), out=str(out),
                )  # fmt: skip
                run = subprocess.run(
                    [sys.executable, "-c", code], capture_output=True, text=True, check=True
                )
                total, parts = run.stdout.strip().splitlines()
                times[name].append(float(total))
                shutil.rmtree(out)
                copies.append(durable_copy(db, work / "copy.db"))
                print(
                    f"round {n + 1} {name}: {times[name][-1]:.2f} s ({parts}), "
                    f"cp+fsync {copies[-1]:.2f} s"
                )
        cp = statistics.median(copies)
        print(f"cp + fsync median {cp:.2f} s")
        for name, values in times.items():
            median = statistics.median(values)
            runs = " / ".join(f"{v:.2f}" for v in values)
            print(f"{name}: median {median:.2f} s ({runs}), {median / cp:.1f}x cp + fsync")
    finally:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
