"""container_engine's Podman settings, rendered by Ansible's templar and read back as TOML.

The containers.conf drop-in must be TOML that says exactly what container_engine_podman_
containers_conf says (Podman refuses a file it cannot parse, and a value written with the wrong
type is silently another setting); storage.conf must name the driver and keep the package's
root locations (the file replaces the built-in defaults as a whole). Podman reading them on a
host: molecule/container_engine (`podman info` reports runc, cgroupfs, vfs).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[4]
ROLE = REPO / "roles" / "container_engine"
DROPIN = ROLE / "templates" / "etc" / "containers" / "containers.conf.d" / "50-mmo-voxel.conf.j2"
STORAGE = ROLE / "templates" / "etc" / "containers" / "storage.conf.j2"

# Ansible's own templar in a process of its own (importing Ansible's controller code changes how
# modules run in-process elsewhere in the suite).
RENDER = """
import json, sys
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
request = json.loads(sys.stdin.read())
templar = Templar(loader=DataLoader(), variables=request["variables"])
print(templar.template(trust_as_template(request["template"])), end="")
"""


def render(template: Path, **variables: Any) -> str:
    request = {"template": template.read_text(), "variables": {"ansible_managed": "x", **variables}}
    done = subprocess.run(
        [sys.executable, "-c", RENDER],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# What a host nested in a container needs (the role's README), and the other value types.
NESTED = {
    "engine": {"runtime": "runc", "cgroup_manager": "cgroupfs", "num_locks": 2048},
    "containers": {
        "default_ulimits": ["nofile=20000:20000", "nproc=20000:20000"],
        "log_driver": "journald",
        "init": False,
        "tz": 'Etc/"UTC"\\x',
    },
}


def test_the_drop_in_is_toml_holding_exactly_the_settings() -> None:
    text = render(DROPIN, container_engine_podman_containers_conf=NESTED)
    assert tomllib.loads(text) == NESTED


@pytest.mark.parametrize("driver", ["vfs", "overlay"])
def test_storage_conf_names_the_driver_and_the_package_locations(driver: str) -> None:
    text = render(STORAGE, container_engine_podman_storage_driver=driver)
    assert tomllib.loads(text) == {
        "storage": {
            "driver": driver,
            "runroot": "/run/containers/storage",
            "graphroot": "/var/lib/containers/storage",
        }
    }


def test_the_defaults_leave_podman_as_packaged_and_install_podman_compose() -> None:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert defaults["container_engine_podman_containers_conf"] == {}
    assert defaults["container_engine_podman_storage_driver"] == ""
    packages = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    assert {"podman", "runc", "podman-compose"} <= set(packages["container_engine_podman_packages"])
