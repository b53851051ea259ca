#!/usr/bin/env python3
"""Benchmark: playbooks/workstation.yml from a bare instance, then the no-op re-run.

A bare Debian 12 systemd container (the Molecule image, started with docker directly) gets
what molecule/workstation/prepare.yml gives it (the hire's account; a mirror of the stand-in
downloads, tests/fixtures/workstation/build_mirror.py, served inside the instance): that part is
not timed. Then, timed with the wall clock around ansible-playbook:

* ``converge``: the whole playbook on the bare instance (apt packages from Debian's mirror,
  Docker through roles/container_engine, the downloads from the local mirror);
* ``noop``: the same command again; it must report changed=0 or the figure is discarded.

The downloads are tiny stand-ins (no Godot 4 or Node.js download is reachable here), so the
converge time is mostly apt and Docker; a real Godot editor (~60 MB) and templates (~1 GB)
add their transfer and one sha512 pass each. The no-op run does not hash them again: it reads
each versioned folder's marker.

Usage: .venv/bin/python bench/bench_workstation.py [--rounds N]
Prints the figures and writes bench/results/workstation-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
import systemd_instance  # noqa: E402  (the tests/ helper, found through the line above)

VENV_BIN = Path(sys.executable).parent
IMAGE = systemd_instance.IMAGE
# The options of the shared Molecule platform (tests/systemd_instance.py reads them).
SYSTEMD_OPTS = systemd_instance.docker_run_options()
RECAP = re.compile(r"^\S+\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def env_for(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(work / "facts"),
            "ANSIBLE_NOCOLOR": "1",
            "SOPS_DISABLE_VERSION_CHECK": "1",
            "MOLECULE_PROJECT_DIRECTORY": str(REPO),
            "MOLECULE_EPHEMERAL_DIRECTORY": str(work),
            "MMO_VOXEL_WORKSTATION_CONFIG": str(
                REPO / "molecule/workstation/vars/hire-override.yml"
            ),
        }
    )
    env.pop("ANSIBLE_PYTHON_INTERPRETER", None)
    return env


def inventory(work: Path, name: str) -> Path:
    path = work / "hosts.yml"
    host = {
        "ansible_connection": "community.docker.docker",
        "ansible_python_interpreter": "/usr/bin/python3",
        "workstation_user": "hire",
        "workstation_mirror_url": "http://127.0.0.1:8765",
        "container_engine_docker_daemon_options": {
            "log-driver": "local",
            "iptables": False,
            "ip6tables": False,
            "bridge": "none",
            "storage-driver": "vfs",
        },
    }
    path.write_text(yaml.safe_dump({"workstations": {"hosts": {name: host}}}))
    return path


def run(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.monotonic()
    result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    if result.returncode != 0:
        raise SystemExit(
            f"{' '.join(argv)} failed:\n{result.stdout[-6000:]}{result.stderr[-2000:]}"
        )
    return elapsed, result.stdout


def one_round() -> dict[str, Any]:
    name = f"bench-workstation-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="bench-workstation-") as tmp:
        work = Path(tmp)
        env = env_for(work)
        subprocess.run(
            ["docker", "run", "-d", "--name", name, *SYSTEMD_OPTS, IMAGE, "/lib/systemd/systemd"],
            check=True,
            capture_output=True,
        )
        try:
            hosts = str(inventory(work, name))
            run(["ansible-playbook", "-i", hosts, "molecule/workstation/prepare.yml"], env)
            playbook = [
                "ansible-playbook",
                "-i",
                hosts,
                "playbooks/workstation.yml",
                "-e",
                f"@{work}/mirror/checksums.yml",
            ]
            converge_s, out = run(playbook, env)
            converge_changed = int(RECAP.search(out).group(2))
            noop_s, out = run(playbook, env)
            noop_changed = int(RECAP.search(out).group(2))
            if noop_changed != 0:
                raise SystemExit(f"the re-run changed {noop_changed} things: not a no-op")
            return {
                "converge_s": round(converge_s, 1),
                "converge_changed": converge_changed,
                "noop_s": round(noop_s, 1),
                "noop_changed": noop_changed,
            }
        finally:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    rounds = [one_round() for _ in range(args.rounds)]
    for i, r in enumerate(rounds, 1):
        print(
            f"round {i}: converge from bare {r['converge_s']} s (changed={r['converge_changed']}),"
            f" no-op re-run {r['noop_s']} s (changed={r['noop_changed']})"
        )
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = REPO / "bench" / "results" / f"workstation-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "image": IMAGE,
                },
                "command": ".venv/bin/python bench/bench_workstation.py",
                "downloads": "stand-ins from a mirror inside the instance",
                "rounds": rounds,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
