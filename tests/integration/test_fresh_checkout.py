"""The README's main command works from a checkout in a 0700 folder; a second run changes nothing.

A new user clones into `mktemp -d` (mode 0700) or their home (0700 for root, 0750 on Ubuntu
24.04): the server's service user (uid 10001) cannot pass that folder. The embedded default
grants it passage on exactly that folder (game_server_grant_passage) and says so in the summary.

The checkout is this tree as it is now (tracked and new files, as `git status` sees them), in a
new 0700 temporary folder, with its own git metadata so `git describe` names the version. It
borrows this checkout's venv (a link): making a venv is what `.ci/run` does on every run already,
and doing it again here would add minutes and prove nothing new. The images are the ones
`make images` made.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest
from ansible_output import RECAP
from documented_commands import run_documented, scratch_checkout
from polling import wait_until

REPO = Path(__file__).resolve().parents[2]
# The embedded default's container and status port (roles/game_server/defaults/main.yml).
CONTAINER = "mmo-voxel-server"
STATUS = "http://127.0.0.1:8080/status"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the embedded default runs as root"),
]


@pytest.fixture(scope="module")
def checkout():
    parent = Path(tempfile.mkdtemp(prefix="fresh-checkout-"))
    assert stat.S_IMODE(parent.stat().st_mode) == 0o700
    dest = scratch_checkout(parent / "p", git=True)
    yield dest
    subprocess.run(["docker", "rm", "--force", CONTAINER], capture_output=True, check=False)
    shutil.rmtree(parent)


def deploy(checkout: Path, command: str) -> subprocess.CompletedProcess[str]:
    """`make deploy` or `ansible-playbook deploy.yml`, as written, in the checkout.

    run_documented runs it as a shell would: the suite's ANSIBLE_CONFIG and make flags left
    out, its ANSIBLE_LOG_PATH kept (scripts/leak-scan reads that log).
    """
    return run_documented(command, cwd=checkout, timeout=900)


def recap(out: str) -> dict[str, tuple[int, int, int]]:
    return {m[1]: (int(m[3]), int(m[4]), int(m[5])) for m in RECAP.finditer(out)}


def test_make_deploy_from_a_0700_folder_serves_and_repeats_with_no_change(checkout: Path) -> None:
    first = deploy(checkout, "make deploy")
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]
    with urllib.request.urlopen(STATUS, timeout=10) as answer:
        status = json.load(answer)
    assert status["tick_rate"] is not None
    # The summary says where the state is and which folder the service user was let through.
    assert str(checkout / ".state" / "server" / "data" / "world.db") in first.stdout
    granted = first.stdout.split("passage_granted:", 1)[1].split("running:", 1)[0]
    assert f"- {checkout.parent}\n" in granted
    acl = subprocess.run(
        ["getfacl", "--omit-header", "--numeric", str(checkout.parent)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "user:10001:--x" in acl
    assert stat.S_IMODE(checkout.parent.stat().st_mode) & 0o007 == 0  # no wider than that

    # The second run is what make deploy runs last, typed by hand: the venv's own tools.
    second = deploy(checkout, "ansible-playbook deploy.yml")
    assert second.returncode == 0, second.stdout[-6000:] + second.stderr[-3000:]
    hosts = recap(second.stdout)
    assert hosts, second.stdout[-3000:]
    assert all(changed == 0 for changed, _, _ in hosts.values()), hosts
    with urllib.request.urlopen(STATUS, timeout=10) as answer:
        assert json.load(answer)["version"] == status["version"]


def compose(checkout: Path, command: str) -> subprocess.CompletedProcess[str]:
    """The README's compose commands, as written, from the checkout (no .env there)."""
    return run_documented(command, cwd=checkout, timeout=180)


def wait_for_status(timeout: float = 60) -> dict:
    def answer() -> dict:
        with urllib.request.urlopen(STATUS, timeout=2) as response:
            return json.load(response)

    # An OSError: the server is not listening yet.
    return wait_until(answer, timeout, f"{STATUS} to answer", interval=0.5, ignoring=(OSError,))


def test_the_compose_file_runs_the_deployed_server_from_the_checkout(checkout: Path) -> None:
    """After make deploy (the test above): compose up -d with no .env, then down."""
    deployed = subprocess.run(
        ["docker", "inspect", "--format", "{{.Config.Image}}", CONTAINER],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    stop = run_documented("docker stop mmo-voxel-server", cwd=checkout, timeout=120)
    assert stop.returncode == 0, stop.stderr
    try:
        up = compose(checkout, "docker compose -f ops/docker-compose.server.yml up -d")
        assert up.returncode == 0, up.stderr
        status = wait_for_status()
        # The same build (mmo-voxel/server:local is the last one make deploy built)...
        assert status["version"] == deployed.rsplit(":", 1)[1]
        # ...on the same world, as the compose project's own container.
        running = subprocess.run(
            ["docker", "ps", "--filter", "label=com.docker.compose.project=mmo-voxel", "-q"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert len(running) == 1
        down = compose(checkout, "docker compose -f ops/docker-compose.server.yml down")
        assert down.returncode == 0, down.stderr
        assert (
            subprocess.run(
                [
                    "docker",
                    "ps",
                    "-a",
                    "--filter",
                    "label=com.docker.compose.project=mmo-voxel",
                    "-q",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            == ""
        )
    finally:
        compose(checkout, "docker compose -f ops/docker-compose.server.yml down")


def test_without_the_grant_preflight_names_the_folder_and_changes_nothing(
    tmp_path: Path, ansible_env: dict[str, str], ansible_playbook: str
) -> None:
    """game_server_grant_passage=false (a real host's default): stop before anything changes."""
    closed = Path(tempfile.mkdtemp(prefix="closed-"))
    try:
        root = closed / "server"
        result = subprocess.run(
            [
                ansible_playbook,
                "deploy.yml",
                "-e",
                json.dumps({"game_server_root": str(root), "game_server_grant_passage": False}),
            ],
            cwd=REPO,
            env=ansible_env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert result.returncode != 0
        assert f"{closed} (mode 0700" in result.stdout, result.stdout[-4000:]
        assert f"chmod o+x {closed}" in result.stdout
        # The host preflight play stopped it: the image was never built, nothing was made.
        assert "PLAY [Build the server image once]" not in result.stdout
        assert not root.exists()
        assert (
            "user:10001"
            not in subprocess.run(
                ["getfacl", "--omit-header", "--numeric", str(closed)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
    finally:
        shutil.rmtree(closed)
