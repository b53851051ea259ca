"""The private-key guard refuses keys and lets ordinary files and the allowlist through."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "detect-private-key"
# Built from parts so this test file does not trip the guard itself.
PEM = "-----BEGIN " + "OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
AGE = "AGE-SECRET-" + "KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ\n"


def run(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("content", [PEM, AGE, "# comment\n" + AGE])
def test_refuses_a_private_key_and_names_the_file(tmp_path: Path, content: str) -> None:
    key = tmp_path / "leak.txt"
    key.write_text(content)
    result = run(key)
    assert result.returncode == 1
    assert str(key) in result.stderr


def test_lets_public_material_through(tmp_path: Path) -> None:
    public = tmp_path / "id.pub"
    public.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHkZ user@host\nage1qqqqqq recipient\n")
    result = run(public)
    assert result.returncode == 0, result.stderr


def test_allowlisted_files_pass() -> None:
    repo = SCRIPT.parent.parent
    allowlisted = [
        line.split("#", 1)[0].strip()
        for line in (repo / ".private-key-allowlist").read_text().splitlines()
    ]
    allowlisted = [p for p in allowlisted if p]
    assert allowlisted, "the allowlist should name the local demo key"
    for rel in allowlisted:
        assert run(repo / rel).returncode == 0
