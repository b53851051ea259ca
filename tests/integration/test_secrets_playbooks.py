"""The secrets playbooks end to end: real sops, fresh age keys, a temp tree (never the repo's own
files)."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
from pathlib import Path

import pytest
import secrets_fixtures as sf
import yaml

pytestmark = pytest.mark.slow


def play(
    tree: sf.SecretTree,
    ansible_playbook: str,
    name: str,
    extra: dict | None = None,
    *flags: str,
) -> subprocess.CompletedProcess:
    variables = {
        "secrets_root": str(tree.root),
        "secrets_age_keyfile": str(tree.keys["alice"].keyfile),
        **(extra or {}),
    }
    env = dict(tree.env)
    env["ANSIBLE_CONFIG"] = str(sf.REPO / "ansible.cfg")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_DEPRECATION_WARNINGS"] = "0"
    return subprocess.run(
        [
            ansible_playbook,
            "-i",
            "localhost,",
            str(sf.REPO / "playbooks" / f"secrets_{name}.yml"),
            "-e",
            json.dumps(variables),
            *flags,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=tree.root.parent,
    )


def recap_changed(proc: subprocess.CompletedProcess) -> int:
    match = re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    return int(match.group(1))


def enc_values(path: Path) -> list[str]:
    return re.findall(r"ENC\[AES256_GCM,data:[^\]]+\]", path.read_text())


@pytest.fixture
def tree(tmp_path):
    return sf.make_tree(tmp_path)


def test_onboard_gives_the_new_key_every_file(tree, ansible_playbook):
    carol = sf.new_key(tree.root.parent / "keys", "carol")
    proc = play(tree, ansible_playbook, "onboard", {"secrets_recipient": carol.public})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for rel in tree.plaintext:
        for who in (carol, tree.keys["alice"], tree.keys["bob"]):
            assert sf.plaintext_equal(rel, sf.decrypt(tree.root / rel, who, tree.env), tree), (
                rel,
                who.name,
            )
        assert sf.decrypt(tree.root / rel, tree.keys["outsider"], tree.env) is None
    config = (tree.root / ".sops.yaml").read_text()
    assert config.count(carol.public) == 3
    assert "# Test rules. This comment must survive onboarding and offboarding." in config
    again = play(tree, ansible_playbook, "onboard", {"secrets_recipient": carol.public})
    assert again.returncode == 0
    assert recap_changed(again) == 0


def test_onboard_to_chosen_rules_only(tree, ansible_playbook):
    carol = sf.new_key(tree.root.parent / "keys", "carol")
    proc = play(
        tree,
        ansible_playbook,
        "onboard",
        {"secrets_recipient": carol.public, "secrets_rules": ["inventories/staging"]},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for rel in tree.plaintext:
        readable = sf.decrypt(tree.root / rel, carol, tree.env) is not None
        assert readable is rel.startswith("inventories/staging/"), rel


def test_offboard_removes_access_rotates_and_lists_what_to_change(tree, ansible_playbook):
    bob = tree.keys["bob"]
    before = {rel: enc_values(tree.root / rel) for rel in tree.plaintext}
    proc = play(tree, ansible_playbook, "offboard", {"secrets_recipient": bob.public})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for rel in tree.plaintext:
        assert sf.decrypt(tree.root / rel, bob, tree.env) is None, rel
        alice_view = sf.decrypt(tree.root / rel, tree.keys["alice"], tree.env)
        assert sf.plaintext_equal(rel, alice_view, tree), rel
        # A new data key re-encrypts every value: no ciphertext survives from before.
        assert not set(enc_values(tree.root / rel)) & set(before[rel]), rel
    config = (tree.root / ".sops.yaml").read_text()
    assert bob.public not in config
    assert "# Test rules. This comment must survive onboarding and offboarding." in config
    ledger = yaml.safe_load((tree.root / ".sops-rotation.yml").read_text())["files"]
    assert sorted(ledger) == sorted(tree.plaintext)
    # The names (never the values) of what must be changed at the source.
    for name in ("secret_server_admin_token", "secret_discord_webhook_url", "secret_stage_token"):
        assert name in proc.stdout
    assert "operations/secrets/local/server_key.pem.sops: (whole file)" in proc.stdout
    assert "git history" in proc.stdout
    # Offboarding the same key again is a named error: it is no longer in .sops.yaml.
    again = play(tree, ansible_playbook, "offboard", {"secrets_recipient": bob.public})
    assert again.returncode != 0
    assert f"recipient {bob.public} is not in" in again.stdout


def test_rotate_by_age_check_mode_then_apply(tree, ansible_playbook):
    old = "inventories/local/group_vars/all/secrets.sops.yml"
    fresh = [rel for rel in tree.plaintext if rel != old]
    # The fresh files were rotated just now (whatever day the test runs), the old one in 2020.
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ledger = {rel: now for rel in fresh} | {old: "2020-01-01T00:00:00Z"}
    ledger_path = tree.root / ".sops-rotation.yml"
    ledger_path.write_text(yaml.safe_dump({"files": ledger}))
    state = sf.tree_state(tree.root)
    before = {rel: enc_values(tree.root / rel) for rel in tree.plaintext}

    check = play(tree, ansible_playbook, "rotate", None, "--check", "--diff")
    assert check.returncode == 0, check.stdout + check.stderr
    assert sf.tree_state(tree.root) == state
    assert "data key: rotated" in check.stdout
    assert recap_changed(check) == 1

    proc = play(tree, ansible_playbook, "rotate")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not set(enc_values(tree.root / old)) & set(before[old])
    for rel in fresh:
        assert enc_values(tree.root / rel) == before[rel], rel
    for rel in tree.plaintext:
        for who in ("alice", "bob"):
            got = sf.decrypt(tree.root / rel, tree.keys[who], tree.env)
            assert sf.plaintext_equal(rel, got, tree)
    assert recap_changed(play(tree, ansible_playbook, "rotate")) == 0


@pytest.mark.parametrize(
    ("playbook", "extra", "fragment"),
    [
        (
            "onboard",
            {"secrets_recipient": "age1notakey"},
            "secrets_recipient must be an age public key",
        ),
        ("onboard", {"secrets_recipient": ""}, "secrets_recipient must be an age public key"),
        (
            "onboard",
            {"secrets_recipient": "AGE-SECRET-" + "KEY-1QQQ"},  # split for the private-key guard
            "secrets_recipient holds an age PRIVATE key",
        ),
        ("offboard", {"secrets_recipient": "OUTSIDER"}, "is not in"),
        (
            "rotate",
            {"secrets_paths": ["inventories/local/group_vars/all/main.yml"]},
            "no creation rule",
        ),
        (
            "rotate",
            {"secrets_age_keyfile": "OUTSIDER_KEYFILE", "secrets_rotate_mode": "always"},
            "cannot be decrypted with the available age identities",
        ),
        (
            "rotate",
            {"secrets_age_keyfile": "/nonexistent/keys.txt"},
            "secrets_age_keyfile (/nonexistent/keys.txt) does not exist",
        ),
        ("rotate", {"secrets_rotate_mode": "sometimes"}, "secrets_rotate_mode"),
    ],
)
def test_bad_input_is_a_clear_error_and_touches_nothing(
    tree, ansible_playbook, playbook, extra, fragment
):
    outsider = tree.keys["outsider"]
    extra = {
        key: (
            outsider.public
            if value == "OUTSIDER"
            else str(outsider.keyfile)
            if value == "OUTSIDER_KEYFILE"
            else value
        )
        for key, value in extra.items()
    }
    state = sf.tree_state(tree.root)
    proc = play(tree, ansible_playbook, playbook, extra)
    assert proc.returncode != 0
    assert fragment in proc.stdout + proc.stderr
    assert sf.tree_state(tree.root) == state


def test_regenerate_writes_fresh_values_each_run(tree, ansible_playbook):
    rel = "inventories/local/group_vars/all/generated.sops.yml"
    extra = {
        "secrets_generated": [
            {
                "file": rel,
                "keys": ["secret_server_admin_token", "secret_rcon_password"],
                "length": 40,
            }
        ]
    }
    values = []
    for _ in range(2):
        proc = play(tree, ansible_playbook, "regenerate", extra)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        data = yaml.safe_load(sf.decrypt(tree.root / rel, tree.keys["bob"], tree.env))
        assert sorted(data) == ["secret_rcon_password", "secret_server_admin_token"]
        assert all(re.fullmatch(r"[A-Za-z0-9]{40}", value) for value in data.values())
        assert data["secret_server_admin_token"] not in proc.stdout + proc.stderr
        values.append(data)
    assert values[0]["secret_server_admin_token"] != values[1]["secret_server_admin_token"]
    assert "deploy.yml" in proc.stdout
