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

    Ansible's log handler copies everything ansible-inventory displays, so the documented ways to
    list an inventory with a log path set are `--output FILE` (values in FILE only) and
    SOPS_ANSIBLE_AWX_DISABLE_VARS_PLUGIN_TEMPORARILY=1 (nothing decrypted). The plain listing is
    run too: it proves that the values were there to leak and that the documented hazard is real.
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

    # The hazard: printed to the terminal, the decrypted values land in the log too.
    assert inventory_run("plain", "--list") == (True, True)

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
