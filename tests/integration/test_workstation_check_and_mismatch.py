"""The workstation playbook on a fresh Debian 12 systemd instance: --check, then a bad checksum.

One bare instance (the Molecule image, started with docker directly) gets what
molecule/workstation/prepare.yml gives it (the hire's account and the mirror of stand-ins):
1. `--check` must report the plan and fail on nothing, and change nothing;
2. with a wrong checksum for the Godot editor, a real run must fail naming the file and both
   checksums, and leave no half-installed Godot: no versioned folder, no staging folder, no
   download, and the `godot` link still on the previously installed version.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import systemd_instance
import yaml

# A bare machine: the check-mode plan must include the packages the role installs.
IMAGE = systemd_instance.BARE_IMAGE
# The options of the shared Molecule platform (tests/systemd_instance.py reads them).
SYSTEMD_OPTS = systemd_instance.docker_run_options()
RECAP = re.compile(r"^\S+\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)

pytestmark = [pytest.mark.slow]


def docker_exec(name: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "exec", name, *argv], capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def instance(repo: Path, ansible_env: dict[str, str], tmp_path_factory) -> Iterator[dict]:
    if (
        shutil.which("docker") is None
        or subprocess.run(["docker", "info"], capture_output=True, check=False).returncode
    ):
        pytest.fail("no Docker engine answers: run scripts/ensure-test-images first")
    name = f"workstation-check-{uuid.uuid4().hex[:8]}"
    work = tmp_path_factory.mktemp("workstation")
    subprocess.run(
        ["docker", "run", "-d", "--name", name, *SYSTEMD_OPTS, IMAGE, "/lib/systemd/systemd"],
        check=True,
        capture_output=True,
    )
    inventory = work / "hosts.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "children": {
                        "workstations": {
                            "hosts": {
                                name: {
                                    "ansible_connection": "community.docker.docker",
                                    "ansible_python_interpreter": "/usr/bin/python3",
                                    "workstation_user": "hire",
                                    "workstation_mirror_url": "http://127.0.0.1:8765",
                                    "container_engine_compose_base_url": (
                                        "http://127.0.0.1:8765/compose"
                                    ),
                                    "container_engine_docker_daemon_options": {
                                        "iptables": False,
                                        "bridge": "none",
                                        "storage-driver": "vfs",
                                    },
                                }
                            }
                        }
                    }
                }
            }
        )
    )
    env = dict(ansible_env)
    env.pop("ANSIBLE_PYTHON_INTERPRETER", None)
    env["MOLECULE_PROJECT_DIRECTORY"] = str(repo)
    env["MOLECULE_EPHEMERAL_DIRECTORY"] = str(work)
    # No override file of whoever runs the tests.
    env["MMO_VOXEL_WORKSTATION_CONFIG"] = str(work / "no-override.yml")
    env["ANSIBLE_CACHE_PLUGIN_CONNECTION"] = str(work / "facts")
    try:
        prepared = subprocess.run(
            ["ansible-playbook", "-i", str(inventory), "molecule/workstation/prepare.yml"],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        assert prepared.returncode == 0, prepared.stdout[-5000:] + prepared.stderr[-3000:]
        yield {"name": name, "inventory": inventory, "env": env, "mirror": work / "mirror"}
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def playbook(repo: Path, instance: dict, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "ansible-playbook",
            "-i",
            str(instance["inventory"]),
            "playbooks/workstation.yml",
            "-e",
            f"@{instance['mirror']}/checksums.yml",
            *args,
        ],
        cwd=repo,
        env=instance["env"],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )


def test_check_mode_on_a_fresh_instance_reports_the_plan_and_fails_on_nothing(
    repo: Path, instance: dict
) -> None:
    """Every component, the container engine included, plans on a bare machine."""
    result = playbook(repo, instance, "--check")
    out = result.stdout
    failures = re.findall(r"^TASK \[.*?(?=^TASK \[)", out, re.M | re.S)
    failures = [task for task in failures if "fatal:" in task or "FAILED!" in task]
    assert result.returncode == 0, "".join(failures)[-8000:] + out[-3000:] + result.stderr[-3000:]
    _ok, changed, unreachable, failed = map(int, RECAP.search(out).groups())
    assert (unreachable, failed) == (0, 0)
    assert changed > 0  # a fresh machine: there is a plan
    # The plan names every download it would unpack...
    for file in (
        "Godot_v4.6-stable_linux.x86_64.zip",
        "Godot_v4.6-stable_export_templates.tpz",
        "node-v20.20.2-linux-x64.tar.xz",
        "sops-v3.11.0.linux.amd64",
    ):
        assert f"Would unpack {file}" in out, file
    # ...and nothing happened.
    name = instance["name"]
    for path in ("/opt/godot", "/usr/local/bin/godot", "/usr/local/bin/node", "/home/hire/.config"):
        assert docker_exec(name, "test", "-e", path).returncode == 1, f"{path} exists after --check"
    assert docker_exec(name, "sh", "-c", "command -v docker").returncode != 0
    assert docker_exec(name, "test", "-e", "/etc/docker/daemon.json").returncode == 1


def test_checksum_mismatch_names_both_and_installs_nothing(repo: Path, instance: dict) -> None:
    name = instance["name"]
    # The hire had Godot 4.5 before: its link must survive a failed upgrade.
    old = "/opt/godot/4.5-stable/Godot_v4.5-stable_linux.x86_64"
    setup = docker_exec(
        name,
        "sh",
        "-c",
        f"mkdir -p {Path(old).parent} && printf '#!/bin/sh\\necho 4.5.stable\\n' > {old}"
        f" && chmod 0755 {old} && ln -sfn {old} /usr/local/bin/godot",
    )
    assert setup.returncode == 0, setup.stderr
    good = yaml.safe_load((instance["mirror"] / "checksums.yml").read_text())[
        "workstation_checksums"
    ]
    wrong = "sha512:" + "0" * 128
    result = playbook(
        repo,
        instance,
        "--tags",
        "godot",
        "-e",
        json.dumps({"workstation_checksums": {**good, "godot_linux": wrong}}),
    )
    out = result.stdout
    assert result.returncode != 0
    message = next(line for line in out.splitlines() if "Checksum mismatch for" in line)
    assert "Godot_v4.6-stable_linux.x86_64.zip" in message
    assert f"expected {wrong}" in message
    assert f"got {good['godot_linux']}" in message
    # Nothing half-installed: no versioned folder, no staging, no download; the old link stays.
    for path in ("/opt/godot/4.6-stable", "/opt/godot/.staging-4.6-stable"):
        assert docker_exec(name, "test", "-e", path).returncode == 1, f"{path} exists"
    leftovers = docker_exec(name, "find", "/var/cache/mmo-voxel-workstation", "-type", "f")
    assert leftovers.stdout.strip() == ""
    assert docker_exec(name, "readlink", "/usr/local/bin/godot").stdout.strip() == old
    assert docker_exec(name, "godot", "--version").stdout.strip() == "4.5.stable"
