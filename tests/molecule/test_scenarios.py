"""Every Molecule scenario as one test: create, converge, idempotence, verify, destroy.

`make test` runs these after `scripts/ensure-test-images`; `make molecule SCENARIO=x` runs one
scenario straight through Molecule with its live output.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))
# Scenarios that need a machine from outside (the variable that names it, and why they skip).
NEEDS_ENV = {
    "workstation_windows": (
        "WORKSTATION_WINDOWS_HOST",
        "runs against a real Windows 11 host: set WORKSTATION_WINDOWS_HOST, "
        "WORKSTATION_WINDOWS_USER and WORKSTATION_WINDOWS_PASSWORD (or WORKSTATION_WINDOWS_KEY)",
    ),
}


@pytest.mark.molecule
@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario(scenario: str, ansible_env: dict[str, str]) -> None:
    needed = NEEDS_ENV.get(scenario)
    if needed and not os.environ.get(needed[0]):
        pytest.skip(f"{scenario} {needed[1]}")
    env = dict(ansible_env)
    # Molecule writes its own config for the instances, which have their own Python.
    env.pop("ANSIBLE_CONFIG", None)
    env.pop("ANSIBLE_PYTHON_INTERPRETER", None)
    env["PY_COLORS"] = "0"
    env["NO_COLOR"] = "1"
    result = subprocess.run(
        ["molecule", "test", "-s", scenario],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=int(os.environ.get("MOLECULE_TIMEOUT", "1200")),
    )
    # The whole log on failure: which step failed and why is in it.
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]


def test_every_scenario_is_collected() -> None:
    """A scenario directory without molecule.yml would silently never run."""
    dirs = sorted(p.name for p in (REPO / "molecule").iterdir() if p.is_dir())
    assert dirs == SCENARIOS
