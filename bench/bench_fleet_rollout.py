#!/usr/bin/env python3
"""Benchmark: deploy.yml over a fleet of three hosts: total time, each host's window, no-op.

Runs on the fleet of the fleet test (tests/fleet/fleet_site.py): game-1 and game-2 with Docker,
game-3 with Podman, reached over SSH as the admin account through sudo, pulling from a private
registry (TLS, htpasswd) on registry-1; the rollout as production runs it: the canary (game-1)
alone, then batches of --batch hosts.

1. converge playbooks/server.yml and playbooks/registry.yml (as root, a cloud image's first
   login), then deploy 1.0.0 (the first deploy: world created and migrated);
2. start a prober on each game host that asks the server's /healthz and /status every 50 ms
   (from the host itself: the status port listens on its loopback), stamping each answer with
   the wall clock the hosts share with this machine;
3. deploy a new version (a schema migration): the total wall time of ansible-playbook, and each
   host's window, from the last healthy answer of the old version to the first healthy answer
   of the new one (the host's stop, pre-deploy backup, migration and start);
4. deploy the same version again: the no-op re-deploy over the fleet (wall time).

Steps 3-4 are repeated --repeat times with new versions. Usage:

    .venv/bin/python bench/bench_fleet_rollout.py [--repeat 2] [--batch 2]

Prints a table and writes bench/results/fleet_rollout-<time>.json. Needs root (the registry's
CA goes into this machine's certs.d, as in the fleet test), the Docker engine and the test images
(`make images`). Never run from the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "fleet")]

from fleet_site import GAME_HOSTS, fleet_site, play, release, status  # noqa: E402
from fleet_topology import unique_prefix  # noqa: E402
from reference_release import MIGRATION_2  # noqa: E402

PROBE_LOG = "/tmp/mmo-voxel-bench-probe.log"  # inside each host
# Runs inside a game host with its own python3; "mmo-voxel-bench-probe" marks it for pkill.
PROBER = """
import json, sys, time, urllib.request
sys.argv[0] = "mmo-voxel-bench-probe"
base = "http://127.0.0.1:8080"
with open(sys.argv[1], "a", buffering=1) as out:
    while True:
        now, version = time.time(), "-"
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1) as health:
                if health.status == 200:
                    with urllib.request.urlopen(base + "/status", timeout=1) as answer:
                        version = json.loads(answer.read())["version"]
        except OSError:
            pass
        out.write(f"{now:.3f} {version}\\n")
        time.sleep(0.05)
"""


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{REPO / '.venv' / 'bin'}:{env.get('PATH', '')}"
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env["SOPS_DISABLE_VERSION_CHECK"] = "1"
    env.pop("ANSIBLE_LOG_PATH", None)
    return env


def timed_play(site: dict, playbook: str, *extra: str, user: str | None = None) -> float:
    started = time.monotonic()
    result = play(site, playbook, *extra, **({"user": user} if user else {}))
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"{playbook} {' '.join(extra)} failed:\n{result.stdout[-6000:]}")
    return elapsed


def start_probers(site: dict) -> None:
    for host in GAME_HOSTS:
        container = site["fleet"].hosts[host].container
        subprocess.run(["docker", "exec", container, "rm", "-f", PROBE_LOG], check=True)
        subprocess.run(
            ["docker", "exec", "-d", container, "python3", "-c", PROBER, PROBE_LOG], check=True
        )


def probe_samples(site: dict, host: str) -> list[tuple[float, str]]:
    text = site["fleet"].hosts[host].exec("cat", PROBE_LOG).stdout
    return [(float(t), v) for t, v in (line.split() for line in text.splitlines())]


def window(samples: list[tuple[float, str]], old: str, new: str) -> tuple[float, float]:
    """(seconds from the last healthy old answer to the first healthy new one, when it began)."""
    last_old = max(t for t, v in samples if v == old)
    first_new = min(t for t, v in samples if v == new and t > last_old)
    return first_new - last_old, last_old


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the registry's CA goes into this machine's /etc/docker/certs.d")

    rounds = []
    with fleet_site(unique_prefix(), ansible_env()) as site:
        converge = {
            playbook: timed_play(site, playbook, user="root")
            for playbook in ("playbooks/server.yml", "playbooks/registry.yml")
        }
        batch = ["-e", f"deploy_batch={args.batch}"]
        first = timed_play(site, "deploy.yml", "-e", "deploy_version=1.0.0", *batch)
        print(f"converge {converge}; first deploy {first:.1f} s", flush=True)
        old = "1.0.0"
        start_probers(site)
        for n in range(args.repeat):
            new = f"2.0.{n}"
            release_args = release(site, new, {"0002_create_guilds.sql": MIGRATION_2})
            started = time.time()
            total = timed_play(site, "deploy.yml", *release_args, *batch)
            time.sleep(0.5)  # the probers' last answers
            windows = {}
            for host in GAME_HOSTS:
                seconds, began = window(probe_samples(site, host), old, new)
                windows[host] = {
                    "window_s": round(seconds, 2),
                    "began_s": round(began - started, 1),
                }
            noop = timed_play(site, "deploy.yml", *release_args, *batch)
            versions = {host: status(site, host)["version"] for host in GAME_HOSTS}
            if set(versions.values()) != {new}:
                sys.exit(f"not every host runs {new}: {versions}")
            rounds.append({"version": new, "total_s": round(total, 1), "noop_s": round(noop, 1),
                           "hosts": windows})  # fmt: skip
            print(json.dumps(rounds[-1]), flush=True)
            old = new
        for host in GAME_HOSTS:
            site["fleet"].hosts[host].exec("pkill", "-f", "mmo-voxel-bench-probe", check=False)

    print(
        "\n| round | deploy total s | no-op s | "
        + " | ".join(f"{h} window s" for h in GAME_HOSTS)
        + " |"
    )
    print("|---|---:|---:|" + "---:|" * len(GAME_HOSTS))
    for r in rounds:
        cells = " | ".join(f"{r['hosts'][h]['window_s']:.2f}" for h in GAME_HOSTS)
        print(f"| {r['version']} | {r['total_s']:.1f} | {r['noop_s']:.1f} | {cells} |")
    median = {
        "total_s": statistics.median(r["total_s"] for r in rounds),
        "noop_s": statistics.median(r["noop_s"] for r in rounds),
        **{h: statistics.median(r["hosts"][h]["window_s"] for r in rounds) for h in GAME_HOSTS},
    }
    print(f"medians: {median}")
    out = REPO / "bench" / "results" / f"fleet_rollout-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                "batch": args.batch,
                "converge_s": {k: round(v, 1) for k, v in converge.items()},
                "first_deploy_s": round(first, 1),
                "rounds": rounds,
                "median": median,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
