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


def docker_run_options(extra_capabilities: tuple[str, ...] = ()) -> list[str]:
    """The `docker run` options of the shared platform (plus any extra capabilities)."""
    opts = [f"--cap-add={cap}" for cap in [*_PLATFORM.get("capabilities", []), *extra_capabilities]]
    opts += [f"--security-opt={opt}" for opt in _PLATFORM.get("security_opts", [])]
    if "cgroupns_mode" in _PLATFORM:
        opts.append(f"--cgroupns={_PLATFORM['cgroupns_mode']}")
    opts += [f"-v={volume}" for volume in _PLATFORM.get("volumes", [])]
    opts += [f"--tmpfs={path}" for path in _PLATFORM.get("tmpfs", [])]
    return opts
