"""The Windows 11 path of playbooks/workstation.yml, without a Windows host.

No Windows machine can run here: the playbook must parse (--syntax-check) and list the Windows
tasks for a Windows inventory entry (--list-tasks), the plan a hire sees before applying.
molecule/workstation_windows runs it for real when a Windows host is given.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

INVENTORY = "tests/fixtures/workstation/windows-inventory.yml"


def run(repo: Path, env: dict[str, str], playbook: str, *args: str) -> str:
    result = subprocess.run(
        [playbook, "-i", INVENTORY, "playbooks/workstation.yml", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return result.stdout


def test_syntax_check(repo: Path, ansible_env: dict[str, str], ansible_playbook: str) -> None:
    assert "playbook: playbooks/workstation.yml" in run(
        repo, ansible_env, ansible_playbook, "--syntax-check"
    )


@pytest.fixture(scope="module")
def listed(repo: Path, ansible_env: dict[str, str], ansible_playbook: str) -> str:
    return run(repo, ansible_env, ansible_playbook, "--list-tasks")


@pytest.mark.parametrize(
    ("task", "tags"),
    [
        (
            "workstation : Install the pinned Chocolatey packages of the manifest",
            "container, git, python",
        ),
        ("workstation : Reboot because a package asked for it", "container, git, python"),
        ("workstation : Put the Godot folder on the machine PATH", "godot"),
        ("workstation : Add the Godot Start menu shortcut", "godot"),
        ("workstation : Put Node.js on the machine PATH", "node"),
        ("workstation : Install the Git LFS filters system-wide (git lfs install --system)", "git"),
        ("workstation : Generate the hire's age identity when there is none", "secrets"),
        ("workstation : Set the studio's editor settings", "editor"),
    ],
)
def test_windows_tasks_are_listed_with_their_tags(listed: str, task: str, tags: str) -> None:
    line = next((ln for ln in listed.splitlines() if task in ln), None)
    assert line is not None, f"{task!r} is not in the plan:\n{listed}"
    assert f"TAGS: [{tags}]" in line


def test_the_windows_host_is_the_target(
    repo: Path, ansible_env: dict[str, str], ansible_playbook: str
) -> None:
    hosts = run(repo, ansible_env, ansible_playbook, "--list-hosts")
    assert "play #1 (workstations): Set up the new-hire workstations" in hosts
    assert "win11-hire.example.com" in hosts


def test_a_component_tag_lists_only_its_tasks(
    repo: Path, ansible_env: dict[str, str], ansible_playbook: str
) -> None:
    listed = run(repo, ansible_env, ansible_playbook, "--list-tasks", "--tags", "godot")
    assert "Put the Godot folder on the machine PATH" in listed
    assert "Put Node.js on the machine PATH" not in listed
    assert "Install the pinned Chocolatey packages of the manifest" not in listed
