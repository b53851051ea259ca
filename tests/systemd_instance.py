"""How to start a systemd test instance with plain `docker run`, read from the one definition.

The shared Molecule platform in `.config/molecule/config.yml` is the single source of the
options systemd needs as PID 1 here (capabilities, security options, the host's cgroup tree,
tmpfs for /run). Tests and benchmarks that start instances without Molecule take them from it,
so the two never drift apart.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml
from polling import wait_until
from system_tools import docker

REPO = Path(__file__).resolve().parent.parent
_PLATFORM = yaml.safe_load((REPO / ".config" / "molecule" / "config.yml").read_text())["platforms"][
    0
]
# "${MOLECULE_IMAGE:-mmo-voxel/debian12-systemd-roles:latest}": the variable wins, else its default.
IMAGE = os.environ.get("MOLECULE_IMAGE") or re.sub(r"^\$\{\w+:-(.*)\}$", r"\1", _PLATFORM["image"])
# A bare server, for tests whose point is a machine where nothing is installed yet
# (scripts/ensure-test-images makes both).
BARE_IMAGE = "mmo-voxel/debian12-systemd:latest"
COMMAND = _PLATFORM["command"]
# `systemctl is-system-running` once the boot is over. degraded: some unit of the image failed
# (no console, no kernel modules); sshd, the engines and the roles' services do not depend on them.
BOOTED = ("running", "degraded")


def docker_run_options(extra_capabilities: tuple[str, ...] = ()) -> list[str]:
    """The `docker run` options of the shared platform (plus any extra capabilities)."""
    opts = [f"--cap-add={cap}" for cap in [*_PLATFORM.get("capabilities", []), *extra_capabilities]]
    opts += [f"--security-opt={opt}" for opt in _PLATFORM.get("security_opts", [])]
    if "cgroupns_mode" in _PLATFORM:
        opts.append(f"--cgroupns={_PLATFORM['cgroupns_mode']}")
    opts += [f"-v={volume}" for volume in _PLATFORM.get("volumes", [])]
    opts += [f"--tmpfs={path}" for path in _PLATFORM.get("tmpfs", [])]
    return opts


def wait_for_boot(container: str, timeout: float) -> str:
    """Wait until systemd in the running container has finished booting; return its state."""

    def state() -> str:
        return docker(
            "exec", container, "systemctl", "is-system-running", check=False
        ).stdout.strip()

    def booted() -> str | None:
        now = state()
        return now if now in BOOTED else None

    return wait_until(
        booted, timeout, f"systemd in {container} to finish booting", interval=0.5, context=state
    )
