"""Benchmark: the CPU an Ansible run costs on venvs made from different Python builds.

The test suite is CPU-bound on 2 cores, and most of its CPU is Python: ansible-playbook on the
controller and every module run on localhost (with the venv's interpreter). This runs the same
playbook (8 `stat` module runs, 8 templated `set_fact`s, on localhost) with each venv's
ansible-playbook and module interpreter, rounds interleaved, and reports the CPU time (user + system
of the run and every process it started) per venv. Usage:

    python3.11 -m venv /tmp/v-other
    /tmp/v-other/bin/pip install -r requirements.txt -c constraints.txt
    .venv/bin/python bench/bench_interpreter.py .venv /tmp/v-other [--rounds 5]

Writes bench/results/interpreter-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLAYBOOK = """\
- name: Module runs and templating on localhost
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Run a module eight times
      ansible.builtin.stat:
        path: /etc/hosts
      loop: [1, 2, 3, 4, 5, 6, 7, 8]
    - name: Template eight times
      ansible.builtin.set_fact:
        bench_value: "{{ range(100) | map('string') | join(',') }}"
      loop: [1, 2, 3, 4, 5, 6, 7, 8]
"""


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(venv: Path, playbook: Path) -> float:
    """CPU seconds of one ansible-playbook run (and everything it started)."""
    env = os.environ | {"ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    before = children_cpu()
    subprocess.run(
        [str(venv / "bin" / "ansible-playbook"), "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={venv / 'bin' / 'python'}", str(playbook)],
        env=env, check=True, capture_output=True, cwd=REPO,
    )  # fmt: skip
    return children_cpu() - before


def describe(venv: Path) -> str:
    python = venv / "bin" / "python"
    code = "import sys, os; print(sys.version.split()[0], os.path.realpath(sys.executable))"
    return subprocess.run(
        [str(python), "-c", code],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("venvs", nargs="+", type=Path, help="venv folders to compare")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    venvs = [venv.resolve() for venv in args.venvs]
    for venv in venvs:
        if not (venv / "bin" / "ansible-playbook").exists():
            sys.exit(f"{venv}: no bin/ansible-playbook (make the venv from requirements.txt first)")
    with tempfile.TemporaryDirectory() as tmp:
        playbook = Path(tmp) / "bench.yml"
        playbook.write_text(PLAYBOOK)
        for venv in venvs:  # warm the page cache and the .pyc files first
            run_once(venv, playbook)
        cpu: dict[str, list[float]] = {str(venv): [] for venv in venvs}
        for n in range(args.rounds):
            order = venvs[n % len(venvs) :] + venvs[: n % len(venvs)]  # no venv always first
            for venv in order:
                cpu[str(venv)].append(run_once(venv, playbook))
    results = {}
    for venv in venvs:
        median = statistics.median(cpu[str(venv)])
        results[str(venv)] = {"python": describe(venv), "cpu_s": cpu[str(venv)], "median": median}
        print(f"{median:6.2f} s CPU (median of {args.rounds})  {venv}  [{describe(venv)}]")
    out = REPO / "bench" / "results" / f"interpreter-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                "venvs": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
