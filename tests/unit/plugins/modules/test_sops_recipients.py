"""The module's entry point, run in-process against a temp tree with the real sops binary."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.config import SopsConfig
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.fileio import TEMP_MARKER
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
        readable = sf.reads_back(tree, rel, carol)
        assert readable is rel.startswith("inventories/local/"), rel
    assert "# Test rules. This comment must survive" in (tree.root / ".sops.yaml").read_text()
    second = run_module(args, capsys)
    assert second["changed"] is False
    assert not (tree.root / ".sops-rotation.yml").exists()  # rotate=never records nothing


def test_stale_temp_copies_are_removed(tree, capsys):
    stale = tree.root / f"inventories/local/group_vars/all/.secrets.sops.yml{TEMP_MARKER}dead.yml"
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
            "stale_scratch_removed",
            "remaining_access",
        ]
    )


# --- item 7: an offboarding interrupted after .sops.yaml was written is finished by a re-run ------


def _interrupt_offboarding(tree: sf.SecretTree, key: str) -> None:
    """The state a kill right after writing .sops.yaml leaves: the key is gone from the rules only.
    (tests/fault/test_secrets_rotation_kill.py makes it with a real kill.)"""
    config = SopsConfig.load(tree.root / ".sops.yaml")
    config.remove_recipient(key)
    (tree.root / ".sops.yaml").write_text(config.dump())


def test_offboarding_again_finishes_an_interrupted_offboarding(tree, capsys):
    bob = tree.keys["bob"]
    _interrupt_offboarding(tree, bob.public)
    assert all(sf.can_decrypt(tree.root / rel, bob, tree.env) for rel in tree.plaintext)
    result = run_module(
        {
            "root": str(tree.root),
            "remove_recipients": [bob.public],
            "rotate": "always",
            "age_keyfile": str(tree.keys["alice"].keyfile),
        },
        capsys,
    )
    assert result.get("failed") is not True, result.get("msg")
    assert result["recipients_removed"] == []  # .sops.yaml had it no more
    assert sorted(f["path"] for f in result["files"] if f["removed"] == [bob.public]) == sorted(
        tree.plaintext
    )
    assert result["remaining_access"] == {bob.public: []}
    for rel in tree.plaintext:
        assert not sf.can_decrypt(tree.root / rel, bob, tree.env), rel
        assert sf.reads_back(tree, rel, tree.keys["alice"]), rel
    # Once no file lists it either, the key is a typo again.
    again = run_module({"root": str(tree.root), "remove_recipients": [bob.public]}, capsys)
    assert again["failed"] is True
    assert "no file is encrypted to it" in again["msg"]


def test_onboarding_rotates_a_file_that_loses_a_recipient(tree, capsys):
    """Onboarding keeps data keys, except where an interrupted offboarding left a recipient."""
    bob, carol = tree.keys["bob"], sf.new_key(tree.root.parent / "keys", "carol")
    _interrupt_offboarding(tree, bob.public)
    result = run_module(
        {
            "root": str(tree.root),
            "add_recipients": [carol.public],
            "rotate": "expired",
            "max_age_days": 0,
            "age_keyfile": str(tree.keys["alice"].keyfile),
        },
        capsys,
    )
    assert result.get("failed") is not True, result.get("msg")
    assert all(f["rotated"] and f["removed"] == [bob.public] for f in result["files"])
    for rel in tree.plaintext:
        assert not sf.can_decrypt(tree.root / rel, bob, tree.env), rel
        assert sf.reads_back(tree, rel, carol), rel


# --- item 8: which files a removed recipient can still open ------------------------------------


def test_remaining_access_names_the_files_outside_paths(tree, capsys):
    bob = tree.keys["bob"]
    args = {
        "root": str(tree.root),
        "remove_recipients": [bob.public],
        "paths": ["inventories/local"],
        "rotate": "always",
        "age_keyfile": str(tree.keys["alice"].keyfile),
    }
    outside = sorted(rel for rel in tree.plaintext if not rel.startswith("inventories/local/"))
    check = run_module(args, capsys, check_mode=True)
    assert check["remaining_access"] == {bob.public: outside}
    result = run_module(args, capsys)
    assert result["remaining_access"] == {bob.public: outside}
    for rel in tree.plaintext:
        readable = sf.can_decrypt(tree.root / rel, bob, tree.env)
        assert readable is (rel in outside), rel


# --- item 10: recipients whose private key is in the repository ---------------------------------


@pytest.mark.parametrize(
    ("who", "rules", "refused"),
    [
        ("demo", ["inventories/staging"], True),  # the demo key outside the local rules
        ("demo", [], True),  # no rules: all rules, production and staging included
        ("demo", ["inventories/local/", "operations/secrets/local/"], False),
        ("other", ["inventories/local/"], True),  # any other committed key: nowhere
        ("other", [], True),
    ],
)
def test_recipient_whose_private_key_is_in_the_repository_is_refused(
    tree, capsys, who, rules, refused
):
    keydir = tree.root.parent / "keys"
    demo, other = sf.new_key(keydir, "demo"), sf.new_key(keydir, "other")
    # The test's own "demo" identity at the demo key's place, and another key committed elsewhere.
    (tree.root / "inventories/local/demo-age-key.txt").write_bytes(demo.keyfile.read_bytes())
    (tree.root / "docs").mkdir()
    (tree.root / "docs/example.txt").write_text("see:\n" + other.keyfile.read_text())
    sf.git_track(tree.root, tree.env)
    key = demo if who == "demo" else other
    before = sf.tree_state(tree.root)
    result = run_module(
        {
            "root": str(tree.root),
            "add_recipients": [key.public],
            "rules": rules,
            "rotate": "never",
            "age_keyfile": str(tree.keys["alice"].keyfile),
        },
        capsys,
    )
    if refused:
        assert result.get("failed") is True
        assert f"{key.public}: its private key is in the repository" in result["msg"]
        assert sf.tree_state(tree.root) == before
    else:
        assert result.get("failed") is not True, result.get("msg")
        assert result["changed"] is True
    assert "AGE-SECRET-" + "KEY-1" not in json.dumps(result).upper()


# --- item 12: leftovers of killed runs, whatever the paths of the next run ----------------------


def test_temp_copies_anywhere_under_the_root_are_removed(tree, capsys):
    stale = [
        tree.root / f"inventories/local/group_vars/all/.secrets.sops.yml{TEMP_MARKER}dead.yml",
        tree.root / f"inventories/staging/group_vars/all/.updatekeys{TEMP_MARKER}beef.yaml",
    ]
    for path in stale:
        path.write_text("ciphertext of an older run")
    result = run_module(
        {
            "root": str(tree.root),
            "paths": ["operations/secrets/local"],
            "age_keyfile": str(tree.keys["alice"].keyfile),
        },
        capsys,
    )
    assert sorted(result["stale_temp_files_removed"]) == sorted(
        path.relative_to(tree.root).as_posix() for path in stale
    )
    assert not any(path.exists() for path in stale)
