"""The fleet test's inventory: laid out as inventories/production is, with the test's addresses.

hosts.yml names the hosts and their groups; group_vars hold the settings, the secrets in a SOPS
file encrypted to an age key the test makes (the community.sops vars plugin decrypts it, as it
does the studio's); connection settings are production's (ansible_become for the hosts, reached
as the admin account roles/base makes). Only what a nested test host needs differs: the engines'
settings for running containers inside a container, and the server on the host's network.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml

# The settings a container engine inside a test host needs (machine notes); overlay2 because the
# engine's store is a volume (fleet_topology.NESTED_ENGINE_OPTIONS); the log options are the
# role's defaults, kept.
NESTED_DOCKER_DAEMON = {
    "iptables": False,
    "ip6tables": False,
    "bridge": "none",
    "storage-driver": "overlay2",
    "log-driver": "local",
    "log-opts": {"max-size": "50m", "max-file": "5"},
    "live-restore": True,
}


def make_age_key(directory: Path) -> tuple[Path, str]:
    """A new age identity: its file and its public recipient."""
    keyfile = directory / "age-key.txt"
    subprocess.run(["age-keygen", "-o", str(keyfile)], capture_output=True, check=True)
    recipient = next(
        line.split(":", 1)[1].strip()
        for line in keyfile.read_text().splitlines()
        if line.startswith("# public key:")
    )
    return keyfile, recipient


def write_sops_file(path: Path, values: dict, recipient: str, env: dict[str, str]) -> None:
    """Encrypt values to the recipient with the real sops; the plaintext never touches disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    encrypted = subprocess.run(
        [
            "sops",
            "--encrypt",
            "--age",
            recipient,
            "--input-type",
            "yaml",
            "--output-type",
            "yaml",
            "/dev/stdin",
        ],
        input=yaml.safe_dump(values),
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=path.parent,
    ).stdout
    path.write_text(encrypted)
    os.chmod(path, 0o600)


def write_inventory(
    root: Path,
    hosts: dict[str, dict],
    groups: dict[str, list[str]],
    group_vars: dict[str, dict],
    secrets: dict,
    recipient: str,
    env: dict[str, str],
) -> Path:
    """inventory/{hosts.yml, group_vars/<group>/main.yml, group_vars/all/secrets.sops.yml}."""
    inventory = root / "inventory"
    children = {
        group: {"hosts": {name: hosts[name] for name in members}}
        for group, members in groups.items()
    }
    (inventory / "group_vars").mkdir(parents=True, exist_ok=True)
    (inventory / "hosts.yml").write_text(json.dumps({"all": {"children": children}}, indent=2))
    for group, values in group_vars.items():
        folder = inventory / "group_vars" / group
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "main.yml").write_text(yaml.safe_dump(values))
    write_sops_file(inventory / "group_vars" / "all" / "secrets.sops.yml", secrets, recipient, env)
    return inventory
