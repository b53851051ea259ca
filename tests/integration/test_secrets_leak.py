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
        got = sf.decrypt(tree.root / rel, tree.keys["alice"], tree.env)
        assert sf.plaintext_equal(rel, got, tree)

    text = "\n".join(outputs) + log.read_text()
    assert "-vvv" in text or "<localhost>" in text  # verbose output was really produced
    assert [needle for needle in needles if needle in text] == []

    leaks = []
    for path in tmp_path.rglob("*"):
        if path.is_file() and path != log:
            data = path.read_bytes()
            leaks += [f"{path}: {n[:14]}..." for n in needles if n.encode() in data]
    assert leaks == []
