"""The plaintext guard scripts/check-sops-encrypted, on temp trees and on the repository itself.

Files are judged against the creation rule that covers their path, never against their own sops
metadata; one test per way around the guard that an audit found (issue #18, item 9).
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import subprocess

import pytest
import secrets_fixtures as sf
import yaml

from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.config import SopsConfig

SECRET = "hunter2-" + secrets.token_hex(6)  # a clear value that must fail and never be shown


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return sf.make_tree(tmp_path_factory.mktemp("guard"), members=["alice"])


def guard(tree: sf.SecretTree, *files: str, keyfile=None) -> subprocess.CompletedProcess:
    proc = sf.run_guard(tree, *files, keyfile=keyfile)
    shown = SECRET in proc.stdout + proc.stderr
    assert not shown  # a bool: a failing assertion must not print the value either
    return proc


def sops_encrypt(tree: sf.SecretTree, rel: str, text: str, *options: str) -> None:
    path = tree.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    proc = sf.sops(["encrypt", *options, "-i", rel], tree.env, cwd=tree.root)
    assert proc.returncode == 0, proc.stderr.decode()


def test_all_encrypted_passes_and_every_mac_is_verified(tree):
    proc = guard(tree, keyfile=tree.keys["alice"].keyfile)
    assert proc.returncode == 0, proc.stderr
    assert "MAC not verified" not in proc.stderr
    # Without an identity at hand the structure is checked and the guard says what it could not do.
    blind = guard(tree)
    assert blind.returncode == 0, blind.stderr
    assert "MAC not verified" in blind.stderr


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
        proc = guard(tree)
        assert proc.returncode == 1
        assert f"{rel}: {expected}" in proc.stderr
        assert "hunter2" not in proc.stderr + proc.stdout
        # pre-commit style: the staged file named on the command line
        staged = guard(tree, str(path))
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
        proc = guard(tree)
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
        proc = guard(tree)
        assert proc.returncode == 1
        assert f"{rel}: values stored in clear: secret_added_by_hand" in proc.stderr
        assert "hunter2" not in proc.stderr
    finally:
        path.write_text(original)


# --- item 9: every evasion the audit found, one test each --------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [("--unencrypted-regex", "."), ("--encrypted-regex", "^nomatch$")],
)
def test_file_encrypted_with_its_own_settings_fails(tree, option, value):
    """sops encrypt --unencrypted-regex . / --encrypted-regex '^nomatch$' leave every value in
    clear and write that into the file's metadata; the rule says otherwise."""
    rel = "operations/secrets/local/settings.sops.yml"
    sops_encrypt(tree, rel, f"secret_token: {SECRET}\n", option, value)
    try:
        in_clear = SECRET in (tree.root / rel).read_text()
        assert in_clear  # sops really left it in clear
        proc = guard(tree)
        assert proc.returncode == 1
        assert f"{rel}: encryption settings differ from creation_rules[1]" in proc.stderr
        assert f"{rel}: values stored in clear: secret_token" in proc.stderr
    finally:
        (tree.root / rel).unlink()


def test_unencrypted_suffix_needs_the_rule_to_allow_it(tree):
    """sops' built-in `_unencrypted` suffix leaves such keys in clear; the guard accepts that only
    where the rule sets the suffix itself (the local inventory rule of the test tree does)."""
    rel = "operations/secrets/local/suffix.sops.yml"
    sops_encrypt(tree, rel, f"secret_token_unencrypted: {SECRET}\n")
    allowed = "inventories/local/group_vars/all/suffix.sops.yml"
    sops_encrypt(tree, allowed, "port_unencrypted: 8080\nsecret_token: x\n")
    try:
        in_clear = SECRET in (tree.root / rel).read_text()
        assert in_clear  # sops left it in clear
        proc = guard(tree, keyfile=tree.keys["alice"].keyfile)
        assert proc.returncode == 1
        assert f"{rel}: values stored in clear: secret_token_unencrypted" in proc.stderr
        assert f"{allowed}:" not in proc.stderr
    finally:
        (tree.root / rel).unlink()
        (tree.root / allowed).unlink()


def test_clear_comment_in_an_encrypted_yaml_file_fails(tree):
    rel = "inventories/local/group_vars/all/secrets.sops.yml"
    path = tree.root / rel
    original = path.read_text()
    lines = original.splitlines(keepends=True)
    path.write_text("".join([lines[0], f"# the password is {SECRET}\n", *lines[1:]]))
    try:
        proc = guard(tree)
        assert proc.returncode == 1
        assert f"{rel}: 1 comment(s) stored in clear" in proc.stderr
    finally:
        path.write_text(original)


def _forged_value(text: str) -> str:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    data, iv, tag = b64(text.encode()), b64(secrets.token_bytes(32)), b64(secrets.token_bytes(16))
    return f"ENC[AES256_GCM,data:{data},iv:{iv},tag:{tag},type:str]"


def test_fake_sops_block_over_clear_values_fails(tree):
    rel = "operations/secrets/local/fake.sops.yml"
    fake = {
        "secret_token": SECRET,
        "sops": {
            "age": [{"recipient": tree.keys["alice"].public, "enc": "anything"}],
            "lastmodified": "2026-01-01T00:00:00Z",
            "mac": "anything",
            "unencrypted_suffix": "_unencrypted",
            "version": "3.11.0",
        },
    }
    (tree.root / rel).write_text(yaml.safe_dump(fake))
    try:
        proc = guard(tree)
        assert proc.returncode == 1
        assert f"{rel}: values stored in clear: secret_token" in proc.stderr
        assert f"{rel}: the sops metadata's mac is not a sops ciphertext" in proc.stderr
    finally:
        (tree.root / rel).unlink()


def test_forged_ciphertext_fails_the_mac_check_where_an_identity_is_at_hand(tree):
    """A forged block whose values only look encrypted (base64 of the clear text) and whose age
    entry is copied from a real file: only decryption can tell, so the guard decrypts."""
    real = yaml.safe_load(
        (tree.root / "inventories/local/group_vars/all/secrets.sops.yml").read_text()
    )
    rel = "operations/secrets/local/forged.sops.yml"
    forged = {
        "secret_token": _forged_value(SECRET),
        "sops": {
            "age": real["sops"]["age"],
            "lastmodified": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "mac": _forged_value("mac"),
            "unencrypted_suffix": "_unencrypted",
            "version": "3.11.0",
        },
    }
    (tree.root / rel).write_text(yaml.safe_dump(forged))
    try:
        proc = guard(tree, keyfile=tree.keys["alice"].keyfile)
        assert proc.returncode == 1
        assert f"{rel}: does not decrypt with the identity of {tree.keys['alice'].public}" in (
            proc.stderr
        )
        # Named on the command line (pre-commit) it fails the same way.
        assert guard(tree, str(tree.root / rel), keyfile=tree.keys["alice"].keyfile).returncode
    finally:
        (tree.root / rel).unlink()


@pytest.mark.parametrize(
    "rel",
    [
        "operations/secrets/production/server_key.pem",  # a secrets folder without a rule
        "inventories/local/group_vars/all/extra.sops.toml",  # *.sops* that no rule matches
    ],
)
def test_secret_file_that_no_rule_covers_fails(tree, rel):
    path = tree.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{SECRET}\n")
    try:
        proc = guard(tree)
        assert proc.returncode == 1
        assert f"{rel}: NO CREATION RULE of .sops.yaml covers it" in proc.stderr
        staged = guard(tree, str(path))
        assert staged.returncode == 1
        assert rel in staged.stderr
    finally:
        path.unlink()


def test_files_no_rule_covers_outside_secret_places_are_ignored(tree):
    plain = tree.root / "inventories/local/group_vars/all/main.yml"
    assert guard(tree, str(plain)).returncode == 0


# --- item 7: an interrupted offboarding; item 10: a recipient whose private key is committed --


def test_file_still_encrypted_to_a_removed_recipient_fails(tmp_path):
    tree = sf.make_tree(tmp_path)
    bob = tree.keys["bob"]
    config = tree.root / ".sops.yaml"
    original = config.read_text()
    # What an offboarding killed right after writing .sops.yaml leaves behind.
    edited = SopsConfig.load(config)
    edited.remove_recipient(bob.public)
    config.write_text(edited.dump())
    proc = guard(tree)
    assert proc.returncode == 1
    for rel in tree.plaintext:
        assert f"{rel}: still encrypted to recipient(s) that creation_rules[" in proc.stderr
    assert bob.public in proc.stderr
    config.write_text(original)
    assert guard(tree).returncode == 0


def test_rule_listing_a_recipient_whose_private_key_is_committed_fails(tmp_path):
    tree = sf.make_tree(tmp_path, members=["alice"])
    mallory = sf.new_key(tmp_path / "keys", "mallory")
    committed = tree.root / "docs" / "example-key.txt"
    committed.parent.mkdir()
    committed.write_bytes(mallory.keyfile.read_bytes())
    config = tree.root / ".sops.yaml"
    config.write_text(config.read_text() + f"  - path_regex: ^x/\n    age: {mallory.public}\n")
    sf.git_track(tree.root, tree.env)
    proc = guard(tree)
    assert proc.returncode == 1
    assert f"{mallory.public}: its private key is in the repository (docs/example-key.txt)" in (
        proc.stderr
    )
    assert "AGE-SECRET-KEY" not in proc.stderr + proc.stdout


def test_missing_config_is_a_usage_error(tmp_path):
    proc = subprocess.run(
        [sf.PYTHON, str(sf.GUARD), "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        env=sf.base_env(tmp_path / "home"),
    )
    assert proc.returncode == 2
    assert ".sops.yaml" in proc.stderr


def test_repository_secrets_are_encrypted(tmp_path):
    """The committed files pass, their MACs verified with the committed demo key."""
    proc = subprocess.run(
        [sf.PYTHON, str(sf.GUARD)],
        capture_output=True,
        text=True,
        check=False,
        env=sf.base_env(tmp_path / "home"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "MAC not verified" not in proc.stderr
