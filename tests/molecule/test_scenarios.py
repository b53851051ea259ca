"""Every Molecule scenario as one test: create, converge, idempotence, verify, destroy.

`make test` runs these after `scripts/ensure-test-images`; `make molecule SCENARIO=x` runs one
scenario straight through Molecule with its live output.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from documented_commands import run_documented

REPO = Path(__file__).resolve().parents[2]
# The slowest first (it converges the whole site on three hosts): side by side (pytest -n), the
# run then does not end with it running alone.
SLOWEST_FIRST = ("drift",)
SCENARIOS = sorted(
    (p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml")),
    key=lambda s: (s not in SLOWEST_FIRST, s),
)
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
    timeout = int(os.environ.get("MOLECULE_TIMEOUT", "2400"))
    if scenario == "base":
        # The README's own command for one scenario, as written (the others run the same
        # through Molecule directly: `make molecule` would check the images once more each).
        result = run_documented("make molecule SCENARIO=base", env=env, timeout=timeout)
    else:
        result = subprocess.run(
            ["molecule", "test", "-s", scenario],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
    # The whole log on failure: which step failed and why is in it.
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]


def test_every_scenario_is_collected() -> None:
    """A scenario directory without molecule.yml would silently never run."""
    dirs = sorted(p.name for p in (REPO / "molecule").iterdir() if p.is_dir())
    assert dirs == sorted(SCENARIOS)
