"""Stand-in for the get-pip.py that ansible-test downloads to bootstrap pip in its sanity venvs.

ansible-test fetches get-pip-<version>.py from ci-files.testing.ansible.com unless
~/.ansible/test/cache/get_pip_<version>.py exists: scripts/ansible-test-sanity puts this file
there, so the sanity test needs no host but the package index. Like get-pip.py it takes pip's
install arguments (`pip==24.2`, `--disable-pip-version-check`) plus `--no-setuptools` and
`--no-wheel`, and installs what it is asked for into the (empty) venv that runs it: with the pip
wheel ensurepip would install (bundled, or the distribution's), run straight from the wheel
(pip's documented way to bootstrap itself), so only the pip asked for is installed.
"""

from __future__ import annotations

import ensurepip
import subprocess
import sys
from pathlib import Path

# get-pip.py's own options; pip install knows neither (it installs no extras unless named).
GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}


def bundled_pip_wheel() -> Path:
    """The pip wheel ensurepip installs: in ensurepip's _bundled folder (python.org builds,
    pyenv), or where the distribution keeps it (Debian's python3.11-venv puts it in
    /usr/share/python-wheels and has ensurepip look there). ensurepip's own lookup knows both."""
    pip = ensurepip._get_packages()["pip"]
    if pip.wheel_path:
        return Path(pip.wheel_path)
    return Path(ensurepip.__file__).parent / "_bundled" / pip.wheel_name


def main() -> int:
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
    wheel = bundled_pip_wheel()
    return subprocess.run(
        [sys.executable, str(wheel / "pip"), "install", *args], check=False
    ).returncode


if __name__ == "__main__":
    sys.exit(main())
