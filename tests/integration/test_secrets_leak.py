"""Leak test: run every secrets playbook with -vvv and --diff (and check mode, and a failure)
and look for the plaintext values in everything the runs left behind: stdout, stderr, Ansible's
log, and every file in the temp tree, the fake HOME (Ansible's temp dirs) and TMPDIR.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import secrets_fixtures as sf
import yaml

pytestmark = pytest.mark.slow

GENERATED = "inventories/local/group_vars/all/generated.sops.yml"


def test_no_plaintext_in_any_output_or_file(tmp_path, ansible_playbook):
    tree = sf.make_tree(tmp_path)
    carol = sf.new_key(tmp_path / "keys", "carol")
    log = tmp_path / "ansible.log"
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    env = dict(tree.env)
    env.update(
        {
            "ANSIBLE_CONFIG": str(sf.REPO / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOG_PATH": str(log),
            "ANSIBLE_LOCAL_TEMP": str(tmpdir / "ansible-local"),
            "TMPDIR": str(tmpdir),
        }
    )
    base = {
        "secrets_root": str(tree.root),
        "secrets_age_keyfile": str(tree.keys["alice"].keyfile),
        "secrets_generated": [{"file": GENERATED, "keys": ["secret_server_admin_token"]}],
    }
    runs = [
        ("onboard", {"secrets_recipient": carol.public}, ["--check"]),
        ("onboard", {"secrets_recipient": carol.public}, []),
        ("rotate", {"secrets_rotate_mode": "always"}, []),
        ("offboard", {"secrets_recipient": tree.keys["bob"].public}, []),
        ("regenerate", {}, []),
        # A failing run (a key that cannot decrypt) must not leak either.
        (
            "rotate",
            {"secrets_rotate_mode": "always", "secrets_age_keyfile": str(tree.keys["bob"].keyfile)},
            [],
        ),
    ]
    outputs = []
    results = []
    for name, extra, flags in runs:
        proc = subprocess.run(
            [
                ansible_playbook,
                "-i",
                "localhost,",
                str(sf.REPO / "playbooks" / f"secrets_{name}.yml"),
                "-e",
                json.dumps({**base, **extra}),
                "-vvv",
                "--diff",
                *flags,
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
        )
        outputs.append(proc.stdout + proc.stderr)
        results.append(proc.returncode)
    assert results == [0, 0, 0, 0, 0, 2], "\n".join(outputs)
    assert "cannot be decrypted" in outputs[-1]  # the failure really happened

    generated = yaml.safe_load(sf.decrypt(tree.root / GENERATED, tree.keys["alice"], tree.env))
    needles = [*tree.canaries, generated["secret_server_admin_token"]]
    # The values really are still in their files (so not finding them elsewhere means something).
    for rel in tree.plaintext:
        assert sf.reads_back(tree, rel, tree.keys["alice"]), rel

    text = "\n".join(outputs) + log.read_text()
    assert "-vvv" in text or "<localhost>" in text  # verbose output was really produced
    # Indexes, not values: a failing assertion must not print what it found.
    assert [i for i, needle in enumerate(needles) if needle in text] == []

    leaks = []
    for path in tmp_path.rglob("*"):
        if path.is_file() and path != log:
            data = path.read_bytes()
            leaks += [f"{path}: value #{i}" for i, n in enumerate(needles) if n.encode() in data]
    assert leaks == []


# --- item 11: ansible-inventory and ANSIBLE_LOG_PATH --------------------------------------------


def test_inventory_listing_keeps_decrypted_values_out_of_the_log(tmp_path):
    """What docs/secrets.md ("Ansible's log") promises, with a real ANSIBLE_LOG_PATH.

    Ansible's log handler copies everything ansible-inventory displays; the vars plugin
    mmo_voxel.ops.sops_log_redaction masks the decrypted values in the log file. The plain
    listing shows them on the terminal (they were there to leak) and not in the log; so do
    `--output FILE` (values in FILE only) and SOPS_ANSIBLE_AWX_DISABLE_VARS_PLUGIN_TEMPORARILY=1
    (nothing decrypted).
    """
    tree = sf.make_tree(tmp_path)
    inventory = tree.root / "inventories" / "local"
    (inventory / "hosts.yml").write_text(
        "---\nall:\n  children:\n    game_servers:\n      hosts:\n        localhost:\n"
    )
    env = dict(tree.env)
    env.update(
        {
            "ANSIBLE_CONFIG": str(sf.REPO / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
            # The vars plugin decrypts with the test's key, not the committed demo key.
            "ANSIBLE_SOPS_AGE_KEYFILE": str(tree.keys["alice"].keyfile),
        }
    )
    # The canaries the inventory can reach (the local inventory's group_vars).
    needles = [
        needle
        for rel, text in tree.plaintext.items()
        if rel.startswith("inventories/local/")
        for needle in tree.canaries
        if needle in text.decode()
    ]
    assert len(needles) == 3

    def inventory_run(name: str, *args: str, extra_env: dict | None = None):
        log = tmp_path / f"{name}.log"
        run_env = {**env, "ANSIBLE_LOG_PATH": str(log), **(extra_env or {})}
        proc = subprocess.run(
            [str(sf.VENV_BIN / "ansible-inventory"), "-i", str(inventory), *args],
            env=run_env,
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert log.exists()  # the log was really written
        text = log.read_text()
        # Booleans only: a failing assertion must not print a value.
        return (
            any(n in text for n in needles),
            any(n in proc.stdout + proc.stderr for n in needles),
        )

    # Printed to the terminal, masked in the log: every way of showing the variables.
    assert inventory_run("plain", "--list") == (False, True)
    assert inventory_run("plain-host", "--host", "localhost") == (False, True)
    assert inventory_run("plain-graph", "--graph", "--vars") == (False, True)
    assert inventory_run("plain-yaml", "--list", "--yaml") == (False, True)
    # Without the redaction (the vars plugins as before it), the same listing fills the log:
    # the check above can fail.
    unguarded = {"ANSIBLE_VARS_ENABLED": "host_group_vars,community.sops.sops"}
    assert inventory_run("unguarded", "--list", extra_env=unguarded) == (True, True)

    # --output FILE: the values go to FILE only, never through the display and its log.
    listing = tmp_path / "private" / "inventory.json"
    listing.parent.mkdir(mode=0o700)
    assert inventory_run("output", "--list", "--output", str(listing)) == (False, False)
    hostvars = json.loads(listing.read_text())["_meta"]["hostvars"]["localhost"]
    in_file = hostvars.get("secret_server_admin_token") in needles
    assert in_file  # decrypted, in the file

    # Structure only: the sops vars plugin switched off, nothing is decrypted at all.
    off = {"SOPS_ANSIBLE_AWX_DISABLE_VARS_PLUGIN_TEMPORARILY": "1"}
    assert inventory_run("disabled", "--list", extra_env=off) == (False, False)
    assert inventory_run("disabled-host", "--host", "localhost", extra_env=off) == (False, False)


def hostile_values(c: str) -> dict:
    """Each value holds the canary c; how a display may write it differs from the value itself."""
    return {
        "secret_quoted": f"pa\"ss\\wo'rd-{c}",
        "secret_multiline": f"first-line-{c}\nsecond-line-{c}x\n",
        "secret_unicode": f"pässwörd-{c}",
        "secret_long_phrase": " ".join(f"word{n}-{c}" for n in range(8)),
        "secret_number": 73019284756,
        "secret_list": [f"item-one-{c}", {"deep": f"deep-value-{c}"}],
    }


def test_hostile_values_stay_out_of_the_log_in_every_listing_form(tmp_path):
    """Values the redaction has to find in escaped, folded and split forms, not as written."""
    tree = sf.make_tree(tmp_path)
    inventory = tree.root / "inventories" / "local"
    (inventory / "hosts.yml").write_text("---\nall:\n  hosts:\n    localhost:\n")
    c = sf.canary("hostile")
    values = hostile_values(c)
    rel = "inventories/local/group_vars/all/hostile.sops.yml"
    (tree.root / rel).write_text(yaml.safe_dump(values, allow_unicode=True), encoding="utf-8")
    proc = sf.sops(["encrypt", "-i", rel], tree.env, cwd=tree.root)
    assert proc.returncode == 0, proc.stderr.decode()
    # What must not be in the log: the canary (in every string), the number, the non-ASCII part.
    needles = [c, "73019284756", "pässwörd", "p\\u00e4ssw"]
    env = {
        **tree.env,
        "ANSIBLE_CONFIG": str(sf.REPO / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_SOPS_AGE_KEYFILE": str(tree.keys["alice"].keyfile),
    }
    for name, args in {
        "list": ["--list"],
        "yaml": ["--list", "--yaml"],
        "host": ["--host", "localhost"],
        "graph": ["--graph", "--vars"],
    }.items():
        log = tmp_path / f"{name}.log"
        proc = subprocess.run(
            [str(sf.VENV_BIN / "ansible-inventory"), "-i", str(inventory), *args],
            env={**env, "ANSIBLE_LOG_PATH": str(log)},
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
        )
        assert proc.returncode == 0, name
        text = log.read_text(encoding="utf-8")
        # Booleans only: a failing assertion must not print a value.
        assert c in proc.stdout, name  # shown, so it was there to leak
        assert [n in text for n in needles] == [False] * len(needles), name
        assert "********" in text, name
