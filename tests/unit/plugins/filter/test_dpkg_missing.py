"""Filters dpkg_query and dpkg_missing: what dpkg-query shows installed, the rest left to apt."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from ansible_collections.mmo_voxel.ops.plugins.filter.dpkg_missing import dpkg_missing
from ansible_collections.mmo_voxel.ops.plugins.filter.dpkg_query import dpkg_query


def query(*packages: str) -> dict:
    """This machine's dpkg-query, run as the roles run it (a registered command result)."""
    done = subprocess.run(
        dpkg_query(packages),
        capture_output=True,
        text=True,
        check=False,
    )
    return {"rc": done.returncode, "stdout_lines": done.stdout.splitlines()}


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs a Debian-family machine")
def test_this_machines_dpkg_says_what_is_installed_and_what_is_not() -> None:
    wanted = ["dpkg", "coreutils:amd64", "no-such-package-mmo-voxel", "coreutils=0.0-nope"]
    result = query(*wanted)
    assert result["rc"] == 1  # dpkg-query fails on the unknown names; the role ignores that
    assert dpkg_missing(wanted, result) == ["no-such-package-mmo-voxel", "coreutils=0.0-nope"]


@pytest.mark.parametrize(
    ("line", "installed"),
    [
        ("ii logrotate", True),
        ("hi logrotate", True),  # held, installed
        ("rc logrotate", False),  # removed, its configuration kept
        ("un logrotate", False),  # known, not installed
        ("iU logrotate", False),  # unpacked, not configured
        ("iHR logrotate", False),  # half-installed, reinstall required
        ("iiRlogrotate", False),  # installed but flagged: reinstall required
        ("", False),
    ],
)
def test_only_an_installed_status_counts(line: str, installed: bool) -> None:
    missing = dpkg_missing(["logrotate"], {"stdout_lines": [line]})
    assert missing == ([] if installed else ["logrotate"])


def test_order_is_the_roles_and_a_query_that_did_not_run_leaves_everything_to_apt() -> None:
    wanted = ["c", "a", "b"]
    assert dpkg_missing(wanted, {"stdout_lines": ["ii a"]}) == ["c", "b"]
    assert dpkg_missing(wanted, {"skipped": True}) == wanted
    assert dpkg_missing(wanted, {"stdout_lines": None}) == wanted
