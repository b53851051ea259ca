#!/usr/bin/env python3
"""Benchmark: the drift check of the server configuration over 1, 10 and 30 systemd hosts.

Every fleet size is measured with three controller settings in the same run:

* ``defaults``     - Ansible's defaults: a config file that only sets what the repository
  needs (roles and collections paths, its ``repo_root`` vars plugin), so 5 forks, no
  pipelining, full fact gathering, no fact cache, interpreter discovery, facts injected as
  variables, vars plugins run for every task;
* ``tuned``        - what the scheduler runs: ``scripts/drift-check --strategy mitogen``, that is
  the project's ``ansible.cfg`` (50 forks, pipelining, minimal fact subset, fact cache, named
  interpreter, no fact injection, vars plugins at inventory load) and mitogen's
  ``mitogen_linear`` strategy from the venv (``requirements.txt``);
* ``tuned-linear`` - the fallback: ``scripts/drift-check --strategy linear``, the same
  ``ansible.cfg`` with Ansible's own linear strategy, what runs where mitogen does not import.
  When mitogen is not importable, ``tuned`` is reported as unavailable and the others run.

The hosts are systemd containers (the Molecule image, ``scripts/ensure-test-images``) started
from one converged instance: one container is converged with ``playbooks/site.yml`` and
committed as ``mmo-voxel/bench-drift-converged:latest``, then N copies of it are started, so
the check is a no-op (every run must report every host clean, or the figure is discarded).
Each measured run is ``playbooks/drift_check.yml --check --diff`` with the report callback
(through ``scripts/drift-check`` itself for the tuned modes); the fact cache is emptied first
(a scheduled check runs less often than the cache lives). The containers and the image are
removed at the end.

Usage: .venv/bin/python bench/bench_drift.py [--hosts 1,10,30]
                                             [--modes defaults,tuned,tuned-linear]
                                             [--inotify]
30 systemd containers need more inotify instances than the kernel's default 128 per user:
--inotify raises fs.inotify.max_user_instances (root) instead of stopping with a message.
Each cell also gives where its CPU went: the controller (ansible-playbook, its workers, the docker
CLI), the hosts (the module runs inside the containers, from their cgroups) and the engine (the
rest of the machine's busy time: dockerd, containerd, runc; the machine must be quiet). Once
per run it measures what one module run costs inside a host: a bare Python start and one
AnsiballZ `stat` module, 20 runs each.
Prints a table and writes bench/results/drift-<time>.json. Never run from the tests: figures
are recorded in bench/README.md.
"""

from __future__ import annotations

import argparse
import glob
import importlib.machinery
import importlib.util
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
import systemd_instance  # noqa: E402  (the tests/ helper, found through the line above)

VENV_BIN = Path(sys.executable).parent
IMAGE = systemd_instance.IMAGE
CONVERGED = "mmo-voxel/bench-drift-converged:latest"
PREFIX = "bench-drift-"
# The options of the shared Molecule platform (tests/systemd_instance.py reads them).
# NET_ADMIN: the hardening role's nftables firewall (site.yml).
SYSTEMD_OPTS = systemd_instance.docker_run_options(extra_capabilities=("NET_ADMIN",))
# The server configuration the fleet is converged to (non-default values, like molecule/drift).
GROUP_VARS = {
    # The bench measures the site's host configuration; the engine has its own scenario.
    "server_container_engine": False,
    # A container's /proc/sys is read-only: the hardening role writes its sysctl file only.
    "hardening_sysctl_apply": False,
    # The collector's host label is the inventory name by default; the copies of the one
    # converged container have other names, so the bench gives them all one label.
    "metrics_collector_host": "bench-fleet",
    "db_schedule_host": "bench-fleet",
    "base_timezone": "Etc/UTC",
    "base_ntp_servers": ["ntp1.example.net"],
    "base_admin_users": [
        {
            "name": "alice",
            "ssh_keys": [
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHkZ6l6Zq2Ujt3FZ0Z6g6oQKcQ2QvH4kP6i8wYbYc3Xy"
                " alice@laptop"
            ],
        }
    ],
}
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+).*?skipped=(\d+)", re.M)


def sh(*cmd: str, **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)


def docker_names() -> list[str]:
    out = sh("docker", "ps", "-a", "--format", "{{.Names}}").stdout.split()
    return [n for n in out if n.startswith(PREFIX)]


def remove_containers() -> None:
    names = docker_names()
    if names:
        subprocess.run(["docker", "rm", "-f", *names], check=False, capture_output=True)


def start(name: str, image: str) -> None:
    sh("docker", "run", "-d", "--name", name, "--hostname", name, *SYSTEMD_OPTS, image)


def wait_running(names: list[str], timeout: float = 300) -> None:
    """Until systemd in each container has finished booting (running or degraded)."""
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending and time.monotonic() < deadline:
        for name in sorted(pending):
            state = subprocess.run(
                ["docker", "exec", name, "systemctl", "is-system-running"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            if state in ("running", "degraded"):
                pending.discard(name)
        time.sleep(1)
    if pending:
        raise RuntimeError(
            f"systemd did not come up in {sorted(pending)}; with many containers the host's "
            "fs.inotify.max_user_instances is the usual limit (see --inotify)"
        )


def inotify_instances(wanted: int, raise_it: bool) -> None:
    """Each systemd container holds several inotify instances; the default 128 stops ~20."""
    path = Path("/proc/sys/fs/inotify/max_user_instances")
    current = int(path.read_text())
    if current >= wanted:
        return
    if not raise_it:
        raise SystemExit(
            f"fs.inotify.max_user_instances is {current}; {wanted} needed for these containers: "
            "run with --inotify (sets it, as root) or "
            f"`sysctl -w fs.inotify.max_user_instances={wanted}`"
        )
    path.write_text(f"{wanted}\n")
    print(f"fs.inotify.max_user_instances raised from {current} to {wanted}")


def write_inventory(work: Path, names: list[str]) -> Path:
    inventory = work / "inventory"
    (inventory / "group_vars").mkdir(parents=True, exist_ok=True)
    # The bare name: mitogen redirects "docker" (not the FQCN) to its own transport; Ansible
    # routes it to community.docker.docker otherwise.
    hosts = {name: {"ansible_connection": "docker"} for name in names}
    (inventory / "hosts.yml").write_text(json.dumps({"game_servers": {"hosts": hosts}}))
    (inventory / "group_vars" / "game_servers.yml").write_text(json.dumps(GROUP_VARS))
    return inventory


def defaults_cfg(work: Path) -> Path:
    cfg = work / "defaults.cfg"
    cfg.write_text(
        "# Ansible's defaults, except the paths the repository needs.\n[defaults]\n"
        f"roles_path = {REPO / 'roles'}\ncollections_path = {REPO / 'collections'}\n"
        "interpreter_python = auto_silent\n"
        # The repository root the roles build their paths on (plugins/vars/repo_root.py), before
        # Ansible's default vars plugin; run as often as Ansible's default says (every task).
        "vars_plugins_enabled = mmo_voxel.ops.repo_root,host_group_vars\n"
    )
    return cfg


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["SOPS_DISABLE_VERSION_CHECK"] = "1"
    env["ANSIBLE_NOCOLOR"] = "1"
    for key in [k for k in env if k.startswith("ANSIBLE_") and k != "ANSIBLE_NOCOLOR"]:
        del env[key]
    env["ANSIBLE_NOCOLOR"] = "1"
    return env


def mitogen_available() -> bool:
    """Whether scripts/drift-check will use mitogen here: asks the wrapper's own probe."""
    loader = importlib.machinery.SourceFileLoader(
        "drift_check", str(REPO / "scripts" / "drift-check")
    )
    spec = importlib.util.spec_from_loader("drift_check", loader)
    wrapper = importlib.util.module_from_spec(spec)
    loader.exec_module(wrapper)
    strategy_dir, _why = wrapper.mitogen_strategy_dir()
    return strategy_dir is not None


def check_command(mode: str, inventory: Path, work: Path) -> tuple[list[str], dict[str, str]]:
    """The command and environment of one measured drift check."""
    env = base_env()
    report_dir = work / "reports" / mode
    if mode == "defaults":
        env["ANSIBLE_CONFIG"] = str(defaults_cfg(work))
        env["ANSIBLE_STDOUT_CALLBACK"] = "mmo_voxel.ops.drift_report"
        env["DRIFT_REPORT_DIR"] = str(report_dir)
        playbook = [str(VENV_BIN / "ansible-playbook"), "playbooks/drift_check.yml"]
        return [*playbook, "-i", str(inventory), "--check", "--diff"], env
    # The scheduler's own command; only the fact cache is moved so each run starts empty.
    env["ANSIBLE_CACHE_PLUGIN_CONNECTION"] = str(work / "facts")
    strategy = {"tuned": "mitogen", "tuned-linear": "linear"}[mode]
    command = [sys.executable, str(REPO / "scripts" / "drift-check"), "-i", str(inventory)]
    return [*command, "--report-dir", str(report_dir), "--strategy", strategy], env


def converge_image(work: Path) -> None:
    """Converge one container with the server plays and commit it as the fleet's image."""
    name = f"{PREFIX}converge"
    start(name, IMAGE)
    try:
        wait_running([name])
        inventory = write_inventory(work, [name])
        env = base_env()
        env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
        env["ANSIBLE_CACHE_PLUGIN_CONNECTION"] = str(work / "facts-converge")
        run = subprocess.run(
            [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), "playbooks/site.yml"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if run.returncode != 0:
            raise RuntimeError("converge failed:\n" + run.stdout[-5000:] + run.stderr[-2000:])
        sh("docker", "commit", "-c", 'CMD ["/lib/systemd/systemd"]', name, CONVERGED)
    finally:
        subprocess.run(["docker", "rm", "-f", name], check=False, capture_output=True)


def hosts_cpu_s() -> float:
    """CPU seconds used so far inside the containers (cgroup v1 cpuacct): the module runs."""
    paths = glob.glob("/sys/fs/cgroup/cpuacct/docker/*/cpuacct.usage")
    return sum(int(Path(p).read_text()) for p in paths) / 1e9


def machine_cpu_s() -> float:
    """CPU seconds the whole machine has been busy (/proc/stat: all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def controller_cpu_s() -> float:
    """CPU seconds of this script's finished children: ansible-playbook, its workers, docker CLI."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_split(
    before: tuple[float, float, float], after: tuple[float, float, float]
) -> dict[str, float]:
    """Where a run's CPU went; the rest is the engine (dockerd, containerd, runc) and the kernel.

    The rest is what the machine was busy with beyond the controller's processes and the
    containers' cgroups; the bench runs on a quiet machine, so that is the engine's share.
    """
    controller, hosts, machine = (b - a for a, b in zip(before, after, strict=True))
    return {
        "controller_cpu_s": round(controller, 1),
        "hosts_cpu_s": round(hosts, 1),
        "engine_cpu_s": round(machine - controller - hosts, 1),
    }


def cpu_now() -> tuple[float, float, float]:
    return controller_cpu_s(), hosts_cpu_s(), machine_cpu_s()


def module_run_cost(name: str, runs: int = 20) -> dict[str, float]:
    """CPU milliseconds inside a host per run: a bare Python, and one AnsiballZ `stat` module.

    What every module run outside mitogen costs on the host, whichever Ansible settings the
    controller uses: a fresh Python that imports Ansible's module_utils from the module's zip.
    """
    container = sh("docker", "inspect", "-f", "{{.Id}}", name).stdout.strip()
    usage = Path(f"/sys/fs/cgroup/cpuacct/docker/{container}/cpuacct.usage")
    keep = {**base_env(), "ANSIBLE_KEEP_REMOTE_FILES": "1", "ANSIBLE_PIPELINING": "0"}
    sh(
        str(VENV_BIN / "ansible"),
        "all",
        "-i",
        f"{name},",
        "-c",
        "docker",
        "-m",
        "ansible.builtin.stat",
        "-a",
        "path=/etc/hosts",
        env=keep,
    )
    module = sh("docker", "exec", name, "sh", "-c", "ls /root/.ansible/tmp/*/AnsiballZ_stat.py")
    module_path = module.stdout.split()[-1]
    costs = {}
    for label, argv in (
        ("python_start_ms", ["/usr/bin/python3", "-c", "pass"]),
        ("stat_module_ms", ["/usr/bin/python3", module_path]),
    ):
        before = int(usage.read_text())
        for _ in range(runs):
            sh("docker", "exec", name, *argv)
        costs[label] = round((int(usage.read_text()) - before) / runs / 1e6, 1)
    sh("docker", "exec", name, "rm", "-rf", "/root/.ansible/tmp")
    return costs


def measure(mode: str, names: list[str], work: Path) -> dict[str, Any]:
    inventory = write_inventory(work, names)
    command, env = check_command(mode, inventory, work)
    subprocess.run(["rm", "-rf", str(work / "facts")], check=True)
    cpu_before = cpu_now()
    began = time.monotonic()
    run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - began
    cpu = cpu_split(cpu_before, cpu_now())
    recap = {m[1]: (int(m[2]), int(m[3]), int(m[4])) for m in RECAP.finditer(run.stdout)}
    host_tasks = sum(ok + skipped for ok, _, skipped in recap.values())
    report_path = work / "reports" / mode / "latest.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    summary = report.get("summary", {})
    valid = (
        run.returncode == 0
        and summary.get("status") == "clean"
        and summary.get("hosts") == len(names)
        and len(recap) == len(names)
        # drift-check's own fallback (a failed mitogen run done again with linear) would
        # time two runs as one
        and "running it again with the linear strategy" not in run.stderr
    )
    if not valid:
        sys.stderr.write(f"{mode} x{len(names)} not clean or failed:\n{run.stdout[-4000:]}\n")
        sys.stderr.write(run.stderr[-2000:] + "\n")
        for host, entry in sorted(report.get("hosts", {}).items()):
            for change in entry.get("changes", []):
                item = change.get("item") or ""
                sys.stderr.write(f"  drift on {host}: {change.get('task')} {item}\n")
    return {
        "mode": mode,
        "hosts": len(names),
        "wall_s": round(wall, 2),
        "host_tasks": host_tasks,
        "s_per_host_task": round(wall / host_tasks, 4) if host_tasks else None,
        "tasks_per_host": round(host_tasks / len(names), 1) if names else None,
        "valid": valid,
        **cpu,
        "summary": summary,
        "rc": run.returncode,
    }


def save(
    started: str,
    notes: list[str],
    results: list[dict[str, Any]],
    module: dict[str, float] | None = None,
) -> Path:
    """Write bench/results/drift-<started>.json with the cells measured so far."""
    out = REPO / "bench" / "results" / f"drift-{started}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
    }
    data = {"started": started, "machine": machine, "image": IMAGE, "notes": notes}
    if module:
        data["module_run_cost"] = module
    out.write_text(json.dumps({**data, "results": results}, indent=2) + "\n")
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", default="1,10,30", help="fleet sizes (default 1,10,30)")
    parser.add_argument("--modes", default="defaults,tuned,tuned-linear")
    parser.add_argument(
        "--inotify",
        action="store_true",
        help="raise fs.inotify.max_user_instances when the largest fleet needs it (root)",
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.hosts.split(",")]
    inotify_instances(max(1024, 16 * max(sizes)) if max(sizes) > 15 else 128, args.inotify)
    modes = args.modes.split(",")
    results: list[dict[str, Any]] = []
    notes: list[str] = []
    module: dict[str, float] = {}
    if "tuned" in modes and not mitogen_available():
        notes.append("mitogen does not import with this ansible-core: tuned skipped (fallback)")
        modes.remove("tuned")
    started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    remove_containers()
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        work = Path(tmp)
        try:
            t0 = time.monotonic()
            converge_image(work)
            print(f"converged and committed {CONVERGED} in {time.monotonic() - t0:.0f} s")
            for size in sizes:
                names = [f"{PREFIX}{i:02d}" for i in range(1, size + 1)]
                for name in names:
                    if name not in docker_names():
                        start(name, CONVERGED)
                wait_running(names)
                if not module:
                    module = module_run_cost(names[0])
                    print(f"one module run inside a host: {module}", flush=True)
                for mode in modes:
                    result = measure(mode, names, work)
                    results.append(result)
                    save(started, notes, results, module)  # an interrupted run keeps its cells
                    print(
                        f"{mode:12} {size:3} hosts: {result['wall_s']:7.1f} s, "
                        f"{result['host_tasks']} host-tasks, "
                        f"{result['s_per_host_task']} s/host-task; CPU s: controller "
                        f"{result['controller_cpu_s']}, hosts {result['hosts_cpu_s']}, "
                        f"engine {result['engine_cpu_s']}"
                        + ("" if result["valid"] else "  (INVALID: not a clean no-op run)"),
                        flush=True,
                    )
        finally:
            remove_containers()
            subprocess.run(["docker", "rmi", CONVERGED], check=False, capture_output=True)
    table = [
        "| hosts | mode | wall s | host-tasks | s per host-task | x defaults "
        "| CPU s controller | hosts | engine |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        base = next(
            (x for x in results if x["hosts"] == r["hosts"] and x["mode"] == "defaults"), None
        )
        speedup = f"{base['wall_s'] / r['wall_s']:.1f}" if base and r["wall_s"] else "-"
        table.append(
            f"| {r['hosts']} | {r['mode']} | {r['wall_s']:.1f} | {r['host_tasks']} | "
            f"{r['s_per_host_task']} | {speedup} | {r['controller_cpu_s']} | "
            f"{r['hosts_cpu_s']} | {r['engine_cpu_s']} |"
        )
    print("\n".join(table))
    for note in notes:
        print(note)
    out = save(started, notes, results, module)
    print(f"results: {out.relative_to(REPO)}")
    return 0 if all(r["valid"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
