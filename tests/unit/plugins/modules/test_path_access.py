"""Module path_access: the kernel's answer for another user, folder by folder, ACLs included."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlite_module_helpers import run_module

from ansible_collections.mmo_voxel.ops.plugins.modules import path_access

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching to another uid needs root")
UID = GID = 10001


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """home (0700, like mktemp -d or /root) / checkout (0755) / .state (0755)."""
    home = tmp_path / "home"
    (home / "checkout" / ".state").mkdir(parents=True)
    home.chmod(0o700)
    (home / "checkout").chmod(0o755)
    (home / "checkout" / ".state").chmod(0o755)
    return home


def blocking_below(result: dict, top: Path) -> list[str]:
    """Blocking folders at or below `top` (pytest's own tmp folders are 0700 as well)."""
    return [b["path"] for b in result["blocking"] if b["path"].startswith(str(top))]


def test_names_only_the_folder_that_blocks(tree: Path, capsys) -> None:
    result = run_module(
        path_access, capsys, {"path": str(tree / "checkout" / ".state"), "uid": UID, "gid": GID}
    )
    assert result["changed"] is False
    assert blocking_below(result, tree) == [str(tree)]
    blocked = next(b for b in result["blocking"] if b["path"] == str(tree))
    assert blocked["mode"] == "0700"
    assert blocked["owner"] == os.geteuid()
    assert result["reachable"] is False


def test_a_folder_opened_to_others_no_longer_blocks(tree: Path, capsys) -> None:
    tree.chmod(0o711)
    result = run_module(
        path_access, capsys, {"path": str(tree / "checkout"), "uid": UID, "gid": GID}
    )
    assert blocking_below(result, tree) == []


def test_a_traverse_acl_for_the_user_lets_it_through(tree: Path, capsys) -> None:
    assert shutil.which("setfacl"), "setfacl missing: scripts/install-system-packages installs acl"
    subprocess.run(["setfacl", "-m", f"u:{UID}:x", str(tree)], check=True)
    result = run_module(
        path_access, capsys, {"path": str(tree / "checkout"), "uid": UID, "gid": GID}
    )
    assert blocking_below(result, tree) == []
    # Another user still cannot pass: the grant is for this uid only.
    other = run_module(
        path_access, capsys, {"path": str(tree / "checkout"), "uid": 10002, "gid": 10002}
    )
    assert blocking_below(other, tree) == [str(tree)]


def test_the_owner_passes_its_own_0700_folder(tree: Path, capsys) -> None:
    os.chown(tree, UID, GID)
    result = run_module(
        path_access, capsys, {"path": str(tree / "checkout"), "uid": UID, "gid": GID}
    )
    assert blocking_below(result, tree) == []


def test_a_path_that_does_not_exist_yet_names_its_first_missing_part(tree: Path, capsys) -> None:
    target = tree / "checkout" / ".state" / "server" / "data"
    result = run_module(path_access, capsys, {"path": str(target), "uid": UID, "gid": GID})
    assert result["missing"] == str(tree / "checkout" / ".state" / "server")
    assert blocking_below(result, tree) == [str(tree)]


def test_check_mode_gives_the_same_answer(tree: Path, capsys) -> None:
    args = {"path": str(tree / "checkout"), "uid": UID, "gid": GID}
    assert (
        run_module(path_access, capsys, args, check_mode=True)["blocking"]
        == run_module(path_access, capsys, args)["blocking"]
    )


def test_a_relative_path_is_refused(capsys) -> None:
    result = run_module(path_access, capsys, {"path": "relative/dir", "uid": UID, "gid": GID})
    assert result["failed"] is True
    assert "absolute" in result["msg"]
