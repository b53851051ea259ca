#!/usr/bin/env python3
"""Benchmark: the maintenance window of a deploy with a 1 GiB world, and a no-op re-deploy.

Runs `deploy.yml` on this machine (its Docker engine, no registry: the embedded default's shape)
with all state in a temporary directory:

1. deploy v1 of the reference server (creates and migrates the world);
2. stop it, grow the world to --size-mib with chunk rows outside the area the server edits,
   start it again (the database a long-running server would have);
3. deploy v2 while a prober asks GET /healthz and /status every 50 ms from outside, as a player's
   client or a load balancer would: the window is the time from the last healthy answer of v1 to
   the first healthy answer of v2 (old container stopped -> new one healthy, including the stop,
   the pre-deploy backup of the whole world, the migration step and the start);
4. deploy v2 again: the no-op re-deploy (wall time of the whole ansible-playbook run).

Repeats steps 3-4 with new versions --repeat times. Where the window goes: each deploy writes
Ansible's log (ANSIBLE_LOG_PATH, millisecond time stamps); the tasks that ran between the last
old and the first new answer are listed with their share of the window (a task lasts until the
next one starts). Targets (issue #4): window under 15 s,
no-op under 20 s. Usage:

    .venv/bin/python bench/bench_deploy.py [--size-mib 1024] [--repeat 3]

Prints a table and writes bench/results/deploy-<time>.json. Needs the Docker engine and the
image mmo-voxel/runtime-bookworm (`make images`). Never run from the tests.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BASE_IMAGE = "mmo-voxel/runtime-bookworm:latest"
CONTAINER = "mmo-voxel-server-bench"
CHUNK_BYTES = 16 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '')}"
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env["ANSIBLE_PYTHON_INTERPRETER"] = str(REPO / ".venv" / "bin" / "python")
    env["SOPS_DISABLE_VERSION_CHECK"] = "1"
    return env


def deploy(inventory: Path, version: str, log: Path) -> float:
    started = time.monotonic()
    result = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "ansible-playbook"),
            "-i",
            str(inventory),
            str(REPO / "deploy.yml"),
            "-e",
            f"deploy_version={version}",
        ],
        cwd=REPO,
        env={**ansible_env(), "ANSIBLE_LOG_PATH": str(log)},
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"deploy of {version} failed:\n{result.stdout[-4000:]}")
    return elapsed


def grow_world(db: Path, size_mib: int) -> int:
    """Add chunk rows (far from the area the reference server edits) until the file is big."""
    rng = random.Random(7)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    rows = 0
    x = 1000
    while db.stat().st_size < size_mib * 1024 * 1024:
        batch = []
        for _ in range(1024):
            payload = rng.randbytes(CHUNK_BYTES)
            batch.append((x, 0, rows % 4096, payload, hashlib.sha256(payload).hexdigest(), stamp))
            rows += 1
            if rows % 4096 == 0:
                x += 1
        conn.executemany("INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?, ?, ?)", batch)
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return rows


TASK_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*\| TASK \[(.*)\]")


def task_starts(log: Path) -> list[tuple[float, str]]:
    """(epoch seconds, task name) of every task start in an Ansible log."""
    starts = []
    for line in log.read_text(errors="replace").splitlines():
        if match := TASK_LINE.match(line):
            # The log writes local time, as datetime.timestamp() reads a naive time.
            moment = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f")
            starts.append((moment.timestamp(), match[2]))
    return starts


STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def last_stamp(log: Path) -> float:
    """The time of the log's last line (the recap): where the run's last task ends."""
    stamps = [
        m[1] for line in log.read_text(errors="replace").splitlines() if (m := STAMP.match(line))
    ]
    return datetime.strptime(stamps[-1], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def breakdown(log: Path, begin: float, end: float) -> list[tuple[str, float]]:
    """Each task's share of [begin, end], the window; the rest after the last task start too."""
    starts = task_starts(log)
    shares: dict[str, float] = {}
    for (start, name), (following, _) in zip(starts, [*starts[1:], (end, "")], strict=True):
        share = min(following, end) - max(start, begin)
        if share > 0:
            shares[name] = shares.get(name, 0.0) + share
    return sorted(shares.items(), key=lambda item: -item[1])


class Prober(threading.Thread):
    """Asks /status every interval; keeps (wall time, version or None) for every answer."""

    def __init__(self, url: str, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.interval = interval
        self.samples: list[tuple[float, str | None]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            now = time.time()  # wall time: compared with the Ansible log's time stamps
            version = None
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as health:  # noqa: S310
                    if health.status == 200:
                        with urllib.request.urlopen(self.url + "/status", timeout=1) as st:  # noqa: S310
                            version = json.loads(st.read())["version"]
            except OSError:
                pass
            self.samples.append((now, version))
            self.stop.wait(self.interval)

    def window(self, old: str, new: str) -> tuple[float, float]:
        """The last healthy answer of ``old`` and the first of ``new`` after it."""
        last_old = max(t for t, v in self.samples if v == old)
        first_new = min(t for t, v in self.samples if v == new and t > last_old)
        return last_old, first_new


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="mmo-voxel-bench-deploy-"))
    root.chmod(0o755)  # the container's user must get through to the data directory
    port = free_port()
    inventory = root / "hosts.yml"
    inventory.write_text(
        json.dumps(
            {
                "all": {
                    "children": {
                        "game_servers": {
                            "hosts": {
                                "localhost": {
                                    "ansible_connection": "local",
                                    "game_server_root": str(root / "server"),
                                    "game_server_container": CONTAINER,
                                    "game_server_status_port": port,
                                    "game_server_game_port": free_port(),
                                    "game_server_logrotate": False,
                                }
                            }
                        }
                    },
                    "vars": {
                        "server_build_registry": "",
                        "server_build_repository": f"mmo-voxel/server-bench-{port}",
                        "server_build_base_image": BASE_IMAGE,
                        "server_build_context_root": str(root / "build"),
                        "deploy_preflight_min_free_mib": 1,
                    },
                }
            }
        )
    )
    url = f"http://127.0.0.1:{port}"
    db = root / "server" / "data" / "world.db"
    rounds: list[dict[str, Any]] = []
    try:
        first = deploy(inventory, "1.0.0", root / "deploy-1.0.0.log")
        subprocess.run(["docker", "stop", CONTAINER], check=True, capture_output=True)
        rows = grow_world(db, args.size_mib)
        subprocess.run(["docker", "start", CONTAINER], check=True, capture_output=True)
        size_mib = round(db.stat().st_size / 1048576)
        print(f"world: {size_mib} MiB, {rows} extra chunk rows; first deploy {first:.1f} s")
        current = "1.0.0"
        for n in range(args.repeat):
            new = f"2.0.{n}"
            prober = Prober(url)
            prober.start()
            time.sleep(1)
            log = root / f"deploy-{new}.log"
            wall = deploy(inventory, new, log)
            time.sleep(0.5)
            prober.stop.set()
            prober.join()
            last_old, first_new = prober.window(current, new)
            window = first_new - last_old
            parts = breakdown(log, last_old, first_new)
            noop_log = root / f"noop-{new}.log"
            noop = deploy(inventory, new, noop_log)
            noop_parts = breakdown(noop_log, 0.0, last_stamp(noop_log))
            rounds.append(
                {
                    "version": new,
                    "window_s": window,
                    "deploy_s": wall,
                    "noop_s": noop,
                    "window_tasks_s": dict(parts),
                    "noop_tasks_s": dict(noop_parts),
                }
            )
            print(
                f"{new}: window {window:.2f} s, deploy {wall:.1f} s, no-op re-deploy {noop:.1f} s"
            )
            for name, share in parts:
                print(f"    {share:6.2f} s  {name}")
            print("  the no-op re-deploy's slowest tasks:")
            for name, share in noop_parts[:15]:
                print(f"    {share:6.2f} s  {name}")
            current = new
    finally:
        subprocess.run(["docker", "rm", "-f", CONTAINER], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)

    summary = {
        "window_s_median": statistics.median(r["window_s"] for r in rounds),
        "window_s_max": max(r["window_s"] for r in rounds),
        "noop_s_median": statistics.median(r["noop_s"] for r in rounds),
        "noop_s_max": max(r["noop_s"] for r in rounds),
    }
    print(
        f"window median {summary['window_s_median']:.2f} s (max {summary['window_s_max']:.2f}),"
        f" target < 15 s; no-op median {summary['noop_s_median']:.1f} s"
        f" (max {summary['noop_s_max']:.1f}), target < 20 s"
    )
    out = REPO / "bench" / "results" / f"deploy-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                "world_mib": size_mib,
                "rounds": rounds,
                "summary": summary,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
