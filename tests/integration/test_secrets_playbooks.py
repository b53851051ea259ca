"""The secrets playbooks end to end: real sops, fresh age keys, a temp tree (never the repo's own
files)."""

from __future__ import annotations

import datetime as dt
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
    assert Path(ansible_playbook).exists()
    return sf.run_playbook(tree, name, extra, *flags)


def words(text: str) -> str:
    return " ".join(text.split())


def recap_changed(proc: subprocess.CompletedProcess) -> int:
    match = re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    return int(match.group(1))


enc_values = sf.enc_values


@pytest.fixture
def tree(tmp_path):
    return sf.make_tree(tmp_path)


def test_onboard_gives_the_new_key_every_file(tree, ansible_playbook):
    carol = sf.new_key(tree.root.parent / "keys", "carol")
    proc = play(tree, ansible_playbook, "onboard", {"secrets_recipient": carol.public})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for rel in tree.plaintext:
        for who in (carol, tree.keys["alice"], tree.keys["bob"]):
            assert sf.reads_back(tree, rel, who), (rel, who.name)
        assert not sf.can_decrypt(tree.root / rel, tree.keys["outsider"], tree.env)
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
        readable = sf.can_decrypt(tree.root / rel, carol, tree.env)
        assert readable is rel.startswith("inventories/staging/"), rel


def test_offboard_removes_access_rotates_and_lists_what_to_change(tree, ansible_playbook):
    bob = tree.keys["bob"]
    before = {rel: enc_values(tree.root / rel) for rel in tree.plaintext}
    proc = play(tree, ansible_playbook, "offboard", {"secrets_recipient": bob.public})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for rel in tree.plaintext:
        assert not sf.can_decrypt(tree.root / rel, bob, tree.env), rel
        assert sf.reads_back(tree, rel, tree.keys["alice"]), rel
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
    said = words(proc.stdout)  # the YAML callback folds long messages
    assert f"{bob.public} is a recipient of no current file" in said
    assert "so it can no longer decrypt any of them" in said
    assert "CAN STILL DECRYPT" not in said
    # Offboarding the same key again is a named error: it is no longer in .sops.yaml.
    again = play(tree, ansible_playbook, "offboard", {"secrets_recipient": bob.public})
    assert again.returncode != 0
    assert f"recipient {bob.public} is not in" in again.stdout


def test_scoped_offboard_names_the_files_the_leaver_can_still_decrypt(tree, ansible_playbook):
    """Item 8: with secrets_paths limited, the play must not claim the leaver lost all access."""
    bob = tree.keys["bob"]
    proc = play(
        tree,
        ansible_playbook,
        "offboard",
        {"secrets_recipient": bob.public, "secrets_paths": ["inventories/local"]},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    still = sorted(rel for rel in tree.plaintext if not rel.startswith("inventories/local/"))
    assert still == [
        "inventories/staging/group_vars/all/stage.sops.json",
        "operations/secrets/local/server_key.pem.sops",
    ]
    for rel in tree.plaintext:
        readable = sf.can_decrypt(tree.root / rel, bob, tree.env)
        assert readable is (rel in still), rel
    said = words(proc.stdout)  # the YAML callback folds long messages
    assert "can no longer decrypt" not in said
    assert "is a recipient of no current file" not in said
    assert f"{bob.public} is still a recipient of these files" in said
    start = said.index("CAN STILL DECRYPT")
    report = said[start : said.index("They are outside secrets_paths", start)]
    assert sorted(rel for rel in tree.plaintext if rel in report) == still


def test_onboarding_the_public_demo_key_outside_the_local_rules_is_refused(tree, ansible_playbook):
    """Item 10: a key whose private half is in the repository (here the test's own demo key at
    the demo key's place) may join the local rules only."""
    demo = sf.new_key(tree.root.parent / "keys", "demo")
    (tree.root / "inventories/local/demo-age-key.txt").write_bytes(demo.keyfile.read_bytes())
    sf.git_track(tree.root, tree.env)
    state = sf.tree_state(tree.root)
    for rules in ([], ["inventories/staging"]):
        proc = play(
            tree,
            ansible_playbook,
            "onboard",
            {"secrets_recipient": demo.public, "secrets_rules": rules},
        )
        assert proc.returncode != 0, rules
        assert f"{demo.public}: its private key is in the repository" in proc.stdout, rules
        assert "inventories/local/demo-age-key.txt" in proc.stdout
        assert sf.tree_state(tree.root) == state
    local = play(
        tree,
        ansible_playbook,
        "onboard",
        {"secrets_recipient": demo.public, "secrets_rules": ["inventories/local/"]},
    )
    assert local.returncode == 0, local.stdout + local.stderr
    assert "AGE-SECRET-" + "KEY-1" not in (proc.stdout + proc.stderr + local.stdout).upper()


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
            assert sf.reads_back(tree, rel, tree.keys[who]), (rel, who)
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
