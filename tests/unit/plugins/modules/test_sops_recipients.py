"""The module's entry point, run in-process against a temp tree with the real sops binary."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

from ansible_collections.mmo_voxel.ops.plugins.module_utils import sops_keys as sk
from ansible_collections.mmo_voxel.ops.plugins.modules import sops_recipients

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "integration"))
import secrets_fixtures as sf


@pytest.fixture
def tree(tmp_path, monkeypatch):
    tree = sf.make_tree(tmp_path)
    for key in list(sf.os.environ):
        if key.startswith("SOPS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", tree.env["HOME"])
    monkeypatch.setenv("SOPS_DISABLE_VERSION_CHECK", "1")
    monkeypatch.setenv("PATH", tree.env["PATH"])
    return tree


def run_module(args: dict, capsys, check_mode: bool = False, diff: bool = False) -> dict:
    args = dict(args)
    if check_mode:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    with patch_module_args(args), pytest.raises(SystemExit):
        sops_recipients.main()
    out = capsys.readouterr().out
    return json.loads(out)


def test_check_mode_lists_changes_and_touches_nothing(tree, capsys):
    carol = sf.new_key(tree.root.parent / "keys", "carol")
    before = sf.tree_state(tree.root)
    result = run_module(
        {
            "root": str(tree.root),
            "add_recipients": [carol.public],
            "rules": ["inventories/local"],
            "rotate": "never",
            "age_keyfile": str(tree.keys["alice"].keyfile),
        },
        capsys,
        check_mode=True,
        diff=True,
    )
    assert result["changed"] is True
    assert result["config_changed"] is True
    changed = sorted(f["path"] for f in result["files"] if f["changed"])
    assert changed == [
        "inventories/local/group_vars/all/secrets.sops.yml",
        "inventories/local/group_vars/game_servers/nested.sops.yml",
    ]
    assert all(f["added"] == [carol.public] for f in result["files"] if f["changed"])
    assert any(carol.public in d["after"] for d in result["diff"])
    assert sf.tree_state(tree.root) == before
    text = json.dumps(result)
    assert not [c for c in tree.canaries if c in text]


def test_onboarding_applies_and_is_idempotent(tree, capsys):
    carol = sf.new_key(tree.root.parent / "keys", "carol")
    args = {
        "root": str(tree.root),
        "add_recipients": [carol.public],
        "rules": ["inventories/local"],
        "rotate": "never",
        "age_keyfile": str(tree.keys["bob"].keyfile),
    }
    first = run_module(args, capsys)
    assert first["changed"] is True
    for rel in tree.plaintext:
        got = sf.decrypt(tree.root / rel, carol, tree.env)
        assert sf.plaintext_equal(rel, got, tree) is rel.startswith("inventories/local/")
    assert "# Test rules. This comment must survive" in (tree.root / ".sops.yaml").read_text()
    second = run_module(args, capsys)
    assert second["changed"] is False
    assert not (tree.root / ".sops-rotation.yml").exists()  # rotate=never records nothing


def test_stale_temp_copies_are_removed(tree, capsys):
    stale = (
        tree.root / f"inventories/local/group_vars/all/.secrets.sops.yml{sk.TEMP_MARKER}dead.yml"
    )
    stale.write_text("half")
    result = run_module(
        {
            "root": str(tree.root),
            "rotate": "always",
            "age_keyfile": str(tree.keys["alice"].keyfile),
        },
        capsys,
    )
    assert result["stale_temp_files_removed"] == [stale.relative_to(tree.root).as_posix()]
    assert not stale.exists()


def _bad_inputs(tree: sf.SecretTree) -> dict[str, tuple[dict, str]]:
    alice, outsider = tree.keys["alice"], tree.keys["outsider"]
    uncovered = tree.root / "inventories/local/group_vars/all/main.yml"
    return {
        "malformed key": (
            {"add_recipients": [alice.public[:-2] + "zz"]},
            "add_recipients: age recipient",
        ),
        "private key as recipient": (
            {"add_recipients": [alice.keyfile.read_text().splitlines()[-1]]},
            "PRIVATE key",
        ),
        "recipient not in .sops.yaml": (
            {"remove_recipients": [outsider.public]},
            f"recipient {outsider.public} is not in",
        ),
        "file no rule covers": ({"paths": [str(uncovered)]}, "no creation rule"),
        "missing private key": (
            {"rotate": "always", "age_keyfile": str(outsider.keyfile)},
            "cannot be decrypted with the available age identities",
        ),
        "missing key file": (
            {"rotate": "always", "age_keyfile": str(tree.root / "nope.txt")},
            "does not exist",
        ),
        "unknown rule selector": (
            {"add_recipients": [outsider.public], "rules": ["inventories/prod"]},
            "matches no creation rule",
        ),
        "add and remove the same key": (
            {"add_recipients": [alice.public], "remove_recipients": [alice.public]},
            "both added and removed",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "malformed key",
        "private key as recipient",
        "recipient not in .sops.yaml",
        "file no rule covers",
        "missing private key",
        "missing key file",
        "unknown rule selector",
        "add and remove the same key",
    ],
)
def test_bad_input_fails_clearly_and_touches_nothing(tree, capsys, case):
    extra, fragment = _bad_inputs(tree)[case]
    args = {"root": str(tree.root), "age_keyfile": str(tree.keys["alice"].keyfile), **extra}
    before = sf.tree_state(tree.root)
    result = run_module(args, capsys)
    assert result.get("failed") is True
    assert fragment in result["msg"]
    assert sf.tree_state(tree.root) == before
    assert "AGE-SECRET-KEY" not in result["msg"].replace("AGE-SECRET-KEY-...", "")


def test_plaintext_file_under_a_rule_is_refused(tree, capsys):
    leak = tree.root / "inventories/local/group_vars/all/forgot.sops.yml"
    leak.write_text("secret_forgotten: plain\n")
    before = sf.tree_state(tree.root)
    result = run_module(
        {
            "root": str(tree.root),
            "rotate": "always",
            "age_keyfile": str(tree.keys["alice"].keyfile),
        },
        capsys,
    )
    assert result["failed"] is True
    assert "forgot.sops.yml: matches" in result["msg"]
    assert "not SOPS-encrypted" in result["msg"]
    assert "plain" not in result["msg"].replace("plaintext", "")
    assert sf.tree_state(tree.root) == before


def test_documentation_matches_the_argument_spec():
    doc = yaml.safe_load(sops_recipients.DOCUMENTATION)
    spec = sops_recipients.argument_spec()
    assert sorted(doc["options"]) == sorted(spec)
    for name, option in spec.items():
        assert doc["options"][name]["type"] == option["type"], name
        assert doc["options"][name].get("default") == option.get("default"), name
        assert doc["options"][name].get("elements") == option.get("elements"), name
    assert spec["age_key"]["no_log"] is True
    assert yaml.safe_load(sops_recipients.EXAMPLES)
    assert sorted(yaml.safe_load(sops_recipients.RETURN)) == sorted(
        [
            "config_changed",
            "recipients_added",
            "recipients_removed",
            "files",
            "secret_names",
            "stale_temp_files_removed",
        ]
    )
