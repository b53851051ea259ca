"""Tools from Debian packages that the suite needs: present, or the test fails."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest


def require_tools(package: str, *tools: str | None) -> None:
    """Fail (never skip) when a tool the setup installs is missing: that is a missing install step.

    scripts/install-system-packages installs every Debian package the suite needs; a test that
    skipped for a missing one would hide exactly the fault a fresh machine shows.
    """
    if any(tool is None or not Path(tool).exists() for tool in tools):
        pytest.fail(f"Debian package {package} is missing: run scripts/install-system-packages")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The docker CLI, output captured as text."""
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def play_on_localhost(playbook: str, book: Path, env: dict[str, str], *extra: str) -> str:
    """Run ``book`` with ansible-playbook on this machine (-i localhost, -c local); its output.

    The test fails, with the output's end, unless the run exits 0.
    """
    done = subprocess.run(
        [playbook, "-i", "localhost,", "-c", "local", str(book), *extra],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    return done.stdout + done.stderr
