"""Shared pytest setup: make the in-repo collection importable and give tests the repo paths."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from discord_receiver import DiscordReceiver
from documented_commands import MAKE_ONLY

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"

# `ansible_collections.mmo_voxel.ops.plugins...` resolves through collections/ (a link to plugins/),
# exactly as Ansible resolves it at run time.
sys.path.insert(0, str(REPO / "collections"))


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root."""
    return REPO


@pytest.fixture(scope="session")
def ansible_env() -> dict[str, str]:
    """Environment for running ansible-* commands from this checkout in a subprocess."""
    # Not what the suite's own make passes down (documented_commands.MAKE_ONLY): `make test`'s
    # command-line variables (IMAGES_ARGS=--rebuild in CI) would reach any make a test runs.
    env = {k: v for k, v in os.environ.items() if k not in MAKE_ONLY}
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["SOPS_DISABLE_VERSION_CHECK"] = "1"
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    # Tests target localhost (-i localhost, -c local): run modules with the venv's Python,
    # not whatever interpreter discovery finds first on PATH (a pyenv shim, say).
    env["ANSIBLE_PYTHON_INTERPRETER"] = sys.executable
    # Side by side (pytest-xdist), each worker keeps its own fact cache: the jsonfile cache
    # writes in place, and two runs gathering localhost at once could read half a file.
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        env["ANSIBLE_CACHE_PLUGIN_CONNECTION"] = str(REPO / ".cache" / f"facts-{worker}")
    return env


# Running side by side (`make test` runs pytest -n with --dist loadgroup): the tests of one file
# share module fixtures (a registry, a deployed server, a converged fleet) and stay together on
# one worker; each Molecule scenario is its own group. The groups are handed out in the order of
# the collection (`make test` passes --no-loadscope-reorder), which this hook sorts: the longest
# groups first, as `make test` prints their durations, then the rest as collected.
#
# xdist's own order (its default --loadscope-reorder: groups with the most tests first) handed
# out the one-test Molecule scenarios last, so the drift scenario (~900 s) started 44 minutes
# into a cold run and ran out the clock with the fleet, two workers waiting on them. Longest
# first, the last minutes are short tests that keep both cores busy. An earlier cold run found
# this order slower (pytest 2422 s against 1972 s, heavy groups slowing each other); the cold run
# of 2026-12-03 with it (and the venv on Debian's Python) took 2437 s against 4342 s the same day
# with xdist's order. Prefixes of node ids.
LONGEST_FIRST = (
    "tests/fleet/test_fleet_deploy.py",
    "tests/molecule/test_scenarios.py::test_scenario[drift]",
    "tests/integration/test_deploy_e2e.py",
    "tests/integration/test_registry.py",
    "tests/integration/test_game_pipeline.py",
    "tests/molecule/test_scenarios.py::test_scenario[db_schedule]",
    "tests/molecule/test_scenarios.py::test_scenario[workstation]",
    "tests/molecule/test_scenarios.py::test_scenario[container_engine]",
    "tests/integration/test_workstation_check_and_mismatch.py",
    "tests/integration/test_drift_check.py",
    "tests/molecule/",
    "tests/integration/test_documented_tools.py",
    "tests/integration/test_fresh_checkout.py",
)


def rank(nodeid: str) -> int:
    """The place of a test's group in LONGEST_FIRST (after all of them when it is not there)."""
    places = (i for i, prefix in enumerate(LONGEST_FIRST) if nodeid.startswith(prefix))
    return next(places, len(LONGEST_FIRST))


# First: xdist reads the groups in its own modifyitems hook, which would otherwise run before
# this one (a plugin registered after conftest is called first) and find no groups at all.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath)).relative_to(REPO).as_posix()
        group = item.nodeid if path.startswith("tests/molecule/") else path
        item.add_marker(pytest.mark.xdist_group(group))

    # Stable: within a rank the tests keep the collection order.
    items.sort(key=lambda item: rank(item.nodeid))


@pytest.fixture(scope="session")
def ansible_playbook() -> str:
    """Path of the ansible-playbook executable of the venv (or PATH when run elsewhere)."""
    candidate = VENV_BIN / "ansible-playbook"
    found = str(candidate) if candidate.exists() else shutil.which("ansible-playbook")
    if not found:
        pytest.fail("ansible-playbook not found: run `make venv` first")
    return found


# `roles:` runs the role's argument spec validation first (include_role does not).
ROLE_CHECK_PLAYBOOK = """\
- name: Apply the {role} role with the variables under test
  hosts: all
  roles:
    - role: {role}
"""
ROLE_TASKS_CHECK_PLAYBOOK = """\
- name: Run {tasks_from} of the {role} role with the variables under test
  hosts: all
  tasks:
    - name: Run {tasks_from}
      ansible.builtin.include_role:
        name: {role}
        tasks_from: {tasks_from}
"""


@pytest.fixture
def check_role(tmp_path: Path, ansible_env: dict[str, str], ansible_playbook: str):
    """Run one role (or one of its task files) against this machine in check mode.

    For bad-input tests: check mode means even a validation that let bad input through could
    not change anything here; the tests assert the play stopped at the check task.
    """

    def run(
        role: str, extra_vars: dict, tasks_from: str = "main.yml"
    ) -> subprocess.CompletedProcess:
        playbook = tmp_path / f"{role}.yml"
        text = ROLE_CHECK_PLAYBOOK if tasks_from == "main.yml" else ROLE_TASKS_CHECK_PLAYBOOK
        playbook.write_text(text.format(role=role, tasks_from=tasks_from))
        varsfile = tmp_path / "vars.json"
        varsfile.write_text(json.dumps(extra_vars))
        cmd = [ansible_playbook, "-i", "localhost,", "-c", "local", "--check", str(playbook)]
        return subprocess.run(
            [*cmd, "-e", f"@{varsfile}"],
            env=ansible_env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )

    return run


@pytest.fixture
def discord_receiver() -> Iterator[DiscordReceiver]:
    """A local Discord webhook (tests/discord_receiver.py), stopped after the test."""
    receiver = DiscordReceiver()
    yield receiver
    receiver.stop()
