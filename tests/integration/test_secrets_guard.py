"""The plaintext guard scripts/check-sops-encrypted, on temp trees and on the repository itself."""

from __future__ import annotations

import subprocess
import sys

import pytest
import secrets_fixtures as sf

GUARD = sf.REPO / "scripts" / "check-sops-encrypted"
PYTHON = str(sf.VENV_BIN / "python") if (sf.VENV_BIN / "python").exists() else sys.executable


def guard(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, str(GUARD), *args], capture_output=True, text=True, check=False, cwd=cwd
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return sf.make_tree(tmp_path_factory.mktemp("guard"), members=["alice"])


def test_all_encrypted_passes(tree):
    proc = guard("--root", str(tree.root))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("rel", "content", "expected"),
    [
        ("inventories/local/group_vars/all/new.sops.yml", "secret_x: hunter2\n", "NOT ENCRYPTED"),
        (
            "inventories/staging/group_vars/all/new.sops.json",
            '{"secret_x": "hunter2"}',
            "NOT ENCRYPTED",
        ),
        (
            "operations/secrets/local/new.pem.sops",
            "-----BEGIN KEY-----\nhunter2\n",
            "NOT ENCRYPTED",
        ),
        ("inventories/local/group_vars/all/empty.sops.yml", "", "NOT ENCRYPTED"),
    ],
)
def test_plaintext_file_fails_and_is_named(tree, rel, content, expected):
    path = tree.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    try:
        proc = guard("--root", str(tree.root))
        assert proc.returncode == 1
        assert f"{rel}: {expected}" in proc.stderr
        assert "hunter2" not in proc.stderr + proc.stdout
        # pre-commit style: the staged file named on the command line
        staged = guard("--root", str(tree.root), str(path))
        assert staged.returncode == 1
        assert rel in staged.stderr
    finally:
        path.unlink()


def test_every_failing_file_is_named(tree):
    names = [
        "inventories/local/group_vars/all/a.sops.yml",
        "inventories/local/group_vars/all/b.sops.yml",
    ]
    for rel in names:
        (tree.root / rel).write_text("k: v\n")
    try:
        proc = guard("--root", str(tree.root))
        assert proc.returncode == 1
        assert all(rel in proc.stderr for rel in names)
    finally:
        for rel in names:
            (tree.root / rel).unlink()


def test_value_added_in_clear_to_an_encrypted_file_fails(tree):
    rel = "inventories/local/group_vars/all/secrets.sops.yml"
    path = tree.root / rel
    original = path.read_text()
    path.write_text("secret_added_by_hand: hunter2\n" + original)
    try:
        proc = guard("--root", str(tree.root))
        assert proc.returncode == 1
        assert f"{rel}: values stored in clear: secret_added_by_hand" in proc.stderr
        assert "hunter2" not in proc.stderr
    finally:
        path.write_text(original)


def test_files_no_rule_covers_are_ignored(tree):
    plain = tree.root / "inventories/local/group_vars/all/main.yml"
    assert guard("--root", str(tree.root), str(plain)).returncode == 0


def test_missing_config_is_a_usage_error(tmp_path):
    proc = guard("--root", str(tmp_path))
    assert proc.returncode == 2
    assert ".sops.yaml" in proc.stderr


def test_repository_secrets_are_encrypted():
    proc = guard()
    assert proc.returncode == 0, proc.stderr
