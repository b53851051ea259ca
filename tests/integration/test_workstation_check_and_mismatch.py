"""The workstation playbook on a fresh Debian 12 systemd instance: --check, then bad downloads.

One bare instance (the Molecule image, started with docker directly) gets what
molecule/workstation/prepare.yml gives it (the hire's account and the mirror of stand-ins with
publisher-style checksums files beside them; no workstation_checksums):
1. `--check` must report the plan (each file and the checksums file it would be verified
   against) and fail on nothing, and change nothing;
2. with a wrong pinned checksum for the Godot editor, a real run must fail naming the file and
   both checksums, and leave no half-installed Godot: no versioned folder, no staging folder, no
   download, and the `godot` link still on the previously installed version;
3. the same when the file on the mirror was changed after its checksums file was written (the
   expected checksum comes from SHA512-SUMS.txt);
4. a checksums file that does not list the file: --check and the real run both stop naming the
   file and the checksums file's URL, and nothing is installed.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import systemd_instance
import yaml

# A bare machine: the check-mode plan must include the packages the role installs.
IMAGE = systemd_instance.BARE_IMAGE
# The options of the shared Molecule platform (tests/systemd_instance.py reads them).
SYSTEMD_OPTS = systemd_instance.docker_run_options()
RECAP = re.compile(r"^\S+\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
MIRROR = "http://127.0.0.1:8765"
GODOT_ZIP = "godot/4.6-stable/Godot_v4.6-stable_linux.x86_64.zip"
GODOT_SUMS = "godot/4.6-stable/SHA512-SUMS.txt"
NODE_TARBALL = "nodejs/v20.20.2/node-v20.20.2-linux-x64.tar.xz"
NODE_SUMS = "nodejs/v20.20.2/SHASUMS256.txt"
OLD_GODOT = "/opt/godot/4.5-stable/Godot_v4.5-stable_linux.x86_64"

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
    """The playbook with no workstation_checksums: verified by the mirror's checksums files.
    Results as one-line JSON, so a long message is not folded over lines."""
    return subprocess.run(
        ["ansible-playbook", "-i", str(instance["inventory"]), "playbooks/workstation.yml", *args],
        cwd=repo,
        env={**instance["env"], "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"},
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )


def failure(result: subprocess.CompletedProcess[str]) -> str:
    """The message of the task that failed the run."""
    assert result.returncode != 0, result.stdout[-3000:]
    messages = [
        json.loads(line.split("FAILED! => ", 1)[1]).get("msg", "")
        for line in result.stdout.splitlines()
        if "FAILED! => " in line
    ]
    assert messages, result.stdout[-5000:] + result.stderr[-3000:]
    return messages[-1]


def digests(instance: dict) -> dict[str, str]:
    """What the mirror's checksums files say of each file (build_mirror.py's digests.yml)."""
    text = (instance["mirror"] / "digests.yml").read_text()
    return yaml.safe_load(text)["workstation_test_mirror_digests"]


@contextmanager
def mirror_changed(instance: dict, path: str, script: str) -> Iterator[None]:
    """Run `script` on the mirror's file /srv/mirror/<path> ($F) in the instance; put the
    original back afterwards."""
    target = f"/srv/mirror/{path}"
    changed = docker_exec(
        instance["name"], "sh", "-c", f'F={target}; cp -p "$F" "$F.orig" && {script}'
    )
    assert changed.returncode == 0, changed.stderr
    try:
        yield
    finally:
        docker_exec(instance["name"], "mv", "-f", f"{target}.orig", target)


def install_old_godot(name: str) -> None:
    """The hire had Godot 4.5 before: its link must survive a failed upgrade."""
    setup = docker_exec(
        name,
        "sh",
        "-c",
        f"mkdir -p {Path(OLD_GODOT).parent}"
        f" && printf '#!/bin/sh\\necho 4.5.stable\\n' > {OLD_GODOT}"
        f" && chmod 0755 {OLD_GODOT} && ln -sfn {OLD_GODOT} /usr/local/bin/godot",
    )
    assert setup.returncode == 0, setup.stderr


def assert_no_godot_4_6_and_the_old_link(name: str) -> None:
    """Nothing half-installed: no versioned folder, no staging, no download; the old link stays."""
    for path in ("/opt/godot/4.6-stable", "/opt/godot/.staging-4.6-stable"):
        assert docker_exec(name, "test", "-e", path).returncode == 1, f"{path} exists"
    leftovers = docker_exec(name, "find", "/var/cache/mmo-voxel-workstation", "-type", "f")
    assert leftovers.stdout.strip() == ""
    assert docker_exec(name, "readlink", "/usr/local/bin/godot").stdout.strip() == OLD_GODOT
    assert docker_exec(name, "godot", "--version").stdout.strip() == "4.5.stable"


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
    # The plan names every download it would unpack and the checksums file that verifies it...
    for path, sums in (
        (GODOT_ZIP, GODOT_SUMS),
        ("godot/4.6-stable/Godot_v4.6-stable_export_templates.tpz", GODOT_SUMS),
        (NODE_TARBALL, NODE_SUMS),
        ("sops/v3.11.0/sops-v3.11.0.linux.amd64", "sops/v3.11.0/sops-v3.11.0.checksums.txt"),
    ):
        file = path.rsplit("/", 1)[1]
        algorithm = "sha512" if path.startswith("godot/") else "sha256"
        verified = f"verified by {algorithm} listed in {MIRROR}/{sums}"
        assert f"Would unpack {file} ({MIRROR}/{path}, {verified})" in out, file
    # ...and nothing happened.
    name = instance["name"]
    for path in ("/opt/godot", "/usr/local/bin/godot", "/usr/local/bin/node", "/home/hire/.config"):
        assert docker_exec(name, "test", "-e", path).returncode == 1, f"{path} exists after --check"
    assert docker_exec(name, "sh", "-c", "command -v docker").returncode != 0
    assert docker_exec(name, "test", "-e", "/etc/docker/daemon.json").returncode == 1


def test_checksum_mismatch_names_both_and_installs_nothing(repo: Path, instance: dict) -> None:
    """A pinned checksum wins over the checksums file; a wrong one stops the run."""
    name = instance["name"]
    install_old_godot(name)
    good = digests(instance)
    wrong = "sha512:" + "0" * 128
    result = playbook(
        repo,
        instance,
        "--tags",
        "godot",
        "-e",
        json.dumps({"workstation_checksums": {"godot_linux": wrong}}),
    )
    message = failure(result)
    assert message.startswith("Checksum mismatch for Godot_v4.6-stable_linux.x86_64.zip"), message
    assert f"{MIRROR}/{GODOT_ZIP}" in message
    assert f"expected {wrong} (pinned in workstation_checksums.godot_linux)" in message
    assert f"got {good['godot_linux']}" in message
    assert_no_godot_4_6_and_the_old_link(name)


def test_a_file_changed_after_its_checksums_file_is_refused(repo: Path, instance: dict) -> None:
    """The mirror's editor zip is not what SHA512-SUMS.txt says: refused, nothing installed."""
    name = instance["name"]
    install_old_godot(name)
    original = (instance["mirror"] / GODOT_ZIP).read_bytes()
    tampered = hashlib.sha512(original + b"TAMPERED").hexdigest()
    with mirror_changed(instance, GODOT_ZIP, 'printf TAMPERED >> "$F"'):
        result = playbook(repo, instance, "--tags", "godot")
    message = failure(result)
    assert message.startswith("Checksum mismatch for Godot_v4.6-stable_linux.x86_64.zip"), message
    assert f"(download 'godot_linux', {MIRROR}/{GODOT_ZIP})" in message
    # The expected value is the checksums file's, and the message says where it came from.
    assert (
        f"expected {digests(instance)['godot_linux']} (listed in {MIRROR}/{GODOT_SUMS})" in message
    )
    assert f"got sha512:{tampered}" in message
    assert "nothing was installed" in message
    assert_no_godot_4_6_and_the_old_link(name)


def test_a_file_missing_from_its_checksums_file_is_refused(repo: Path, instance: dict) -> None:
    """SHASUMS256.txt without the tarball's line: --check and the real run stop, naming both."""
    name = instance["name"]
    tarball = NODE_TARBALL.rsplit("/", 1)[1]
    expected = (
        f"No checksum for {tarball} (download 'nodejs_linux', {MIRROR}/{NODE_TARBALL}) in "
        f"{MIRROR}/{NODE_SUMS}: the checksums file does not list {tarball}"
    )
    with mirror_changed(instance, NODE_SUMS, f'grep -v \'  {tarball}$\' "$F.orig" > "$F"'):
        listed = docker_exec(name, "cat", f"/srv/mirror/{NODE_SUMS}").stdout
        assert f"{tarball}.sig" in listed  # the file still lists others, of similar names
        assert f"  {tarball}\n" not in listed
        planned = playbook(repo, instance, "--check", "--tags", "node")
        applied = playbook(repo, instance, "--tags", "node")
    assert failure(planned).startswith(expected), failure(planned)
    assert failure(applied).startswith(expected), failure(applied)
    folder = "/opt/node-v20.20.2-linux-x64"
    for path in (folder, "/opt/.staging-node-v20.20.2-linux-x64", "/usr/local/bin/node"):
        assert docker_exec(name, "test", "-e", path).returncode == 1, f"{path} exists"
    leftovers = docker_exec(name, "find", "/var/cache/mmo-voxel-workstation", "-type", "f")
    assert leftovers.stdout.strip() == ""
