"""The secrets commands of docs/secrets.md, roles/secrets/README.md and the leaked-secret runbook.

Run as written (a person's `age1...` key is a fresh one, in "$AGE_RECIPIENT") in a scratch copy
of the tree, so the playbooks re-key and rotate the copy's files, never this checkout's; HOME is
an empty directory, so no key of whoever runs the tests takes part. The copy's local files are
encrypted to the public demo key, which the playbooks use to decrypt while re-keying. Decrypted
values are compared by hash only: none of them reaches the test output.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest
from documented_commands import VENV_BIN, run_documented, scratch_checkout

pytestmark = pytest.mark.slow

STAGING_PLACEHOLDER = "age14eug59e864ng4v23zpgep5tzgnz2zskh964n4vqgnqamephlrchsc3ey6x"
GENERATED = "inventories/local/group_vars/game_servers/generated.sops.yml"
# A path, not a secret: no *SECRET* name, or scripts/leak-scan would hunt the path in the logs.
LOCAL_SOPS_FILE = "inventories/local/group_vars/all/secrets.sops.yml"


def new_key(directory: Path) -> tuple[Path, str]:
    directory.mkdir(parents=True, exist_ok=True)
    keyfile = directory / "operator.txt"
    subprocess.run(["age-keygen", "-o", str(keyfile)], check=True, capture_output=True)
    public = subprocess.run(
        ["age-keygen", "-y", str(keyfile)], check=True, capture_output=True, text=True
    ).stdout.strip()
    return keyfile, public


def decrypted_hash(path: Path, keyfile: Path, home: Path) -> str | None:
    """sha256 of the file decrypted with that key alone, or None when the key cannot."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOPS_", "ANSIBLE_SOPS_"))}
    env |= {"HOME": str(home), "SOPS_AGE_KEY_FILE": str(keyfile), "SOPS_DISABLE_VERSION_CHECK": "1"}
    result = subprocess.run(
        [str(VENV_BIN / "sops"), "decrypt", str(path)], capture_output=True, env=env, check=False
    )
    return hashlib.sha256(result.stdout).hexdigest() if result.returncode == 0 else None


def changed(stdout: str) -> int:
    match = re.search(
        r"^localhost\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0", stdout, re.M
    )
    assert match, stdout[-3000:]
    return int(match.group(1))


@pytest.fixture
def tree(tmp_path: Path) -> dict:
    home = tmp_path / "home"
    home.mkdir()
    keyfile, public = new_key(tmp_path / "keys")
    checkout = scratch_checkout(tmp_path / "checkout")
    env = {"HOME": str(home), "AGE_RECIPIENT": public}
    return {"root": checkout, "home": home, "keyfile": keyfile, "public": public, "env": env}


def ran(tree: dict, command: str, **env: str) -> str:
    result = run_documented(command, cwd=tree["root"], env=tree["env"] | env, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    return result.stdout


def test_age_keygen_makes_the_operator_key(tmp_path: Path) -> None:
    folder = run_documented("mkdir -p -m 0700 ~/.config/sops/age", env={"HOME": str(tmp_path)})
    assert folder.returncode == 0, folder.stderr
    result = run_documented(
        "age-keygen -o ~/.config/sops/age/keys.txt", env={"HOME": str(tmp_path)}
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / ".config/sops/age/keys.txt").is_file()
    # The private half is the owner's alone.
    assert (tmp_path / ".config/sops/age").stat().st_mode & 0o077 == 0


def test_starting_an_environment(tree: dict) -> None:
    """docs/secrets.md, "Staging and production": real recipients in, the placeholder out."""
    root = tree["root"]
    ran(
        tree,
        'ansible-playbook playbooks/secrets_onboard.yml  -e secrets_recipient="$AGE_RECIPIENT"'
        ' -e \'{"secrets_rules": ["/staging/"]}\'',
    )
    assert (root / ".sops.yaml").read_text().count(tree["public"]) == 2  # the staging rules
    ran(
        tree,
        "ansible-playbook playbooks/secrets_offboard.yml"
        " -e secrets_recipient=age14eug59e864ng4v23zpgep5tzgnz2zskh964n4vqgnqamephlrchsc3ey6x",
    )
    assert STAGING_PLACEHOLDER not in (root / ".sops.yaml").read_text()
    editor = tree["home"] / "editor"
    editor.write_text('#!/bin/sh\nprintf "secret_stage_token: stage-demo\\n" > "$1"\n')
    editor.chmod(0o755)
    ran(tree, "sops edit inventories/staging/group_vars/all/secrets.sops.yml", EDITOR=str(editor))
    staged = root / "inventories/staging/group_vars/all/secrets.sops.yml"
    assert "ENC[AES256_GCM" in staged.read_text()
    plain = b"secret_stage_token: stage-demo\n"
    assert (
        decrypted_hash(staged, tree["keyfile"], tree["home"]) == hashlib.sha256(plain).hexdigest()
    )


def test_onboard_offboard_rotate_regenerate(tree: dict) -> None:
    root, keyfile, home = tree["root"], tree["keyfile"], tree["home"]
    demo = root / "inventories/local/demo-age-key.txt"
    config = root / ".sops.yaml"
    before = config.read_text()
    plan = ran(
        tree,
        'ansible-playbook playbooks/secrets_onboard.yml -e secrets_recipient="$AGE_RECIPIENT"'
        " --check --diff",
    )
    assert changed(plan) >= 1
    assert config.read_text() == before
    ran(
        tree,
        'ansible-playbook playbooks/secrets_onboard.yml -e secrets_recipient="$AGE_RECIPIENT"'
        ' -e \'{"secrets_rules": ["inventories/staging", "operations/secrets/staging"]}\'',
    )
    assert config.read_text().count(tree["public"]) == 2
    assert decrypted_hash(root / LOCAL_SOPS_FILE, keyfile, home) is None  # local is not staging
    ran(
        tree, 'ansible-playbook playbooks/secrets_onboard.yml -e secrets_recipient="$AGE_RECIPIENT"'
    )
    assert config.read_text().count(tree["public"]) == 6  # every rule
    assert decrypted_hash(root / LOCAL_SOPS_FILE, keyfile, home) is not None

    ran(
        tree,
        'ansible-playbook playbooks/secrets_offboard.yml -e secrets_recipient="$AGE_RECIPIENT"',
    )
    assert tree["public"] not in config.read_text()
    assert decrypted_hash(root / LOCAL_SOPS_FILE, keyfile, home) is None
    assert decrypted_hash(root / LOCAL_SOPS_FILE, demo, home) is not None

    ran(tree, "ansible-playbook playbooks/secrets_rotate.yml")
    ran(tree, "ansible-playbook playbooks/secrets_rotate.yml -e secrets_rotate_max_age_days=30")
    ciphertext = (root / LOCAL_SOPS_FILE).read_text()
    content = decrypted_hash(root / LOCAL_SOPS_FILE, demo, home)
    assert (
        changed(
            ran(tree, "ansible-playbook playbooks/secrets_rotate.yml -e secrets_rotate_mode=always")
        )
        >= 1
    )
    assert (root / LOCAL_SOPS_FILE).read_text() != ciphertext  # a new data key
    assert decrypted_hash(root / LOCAL_SOPS_FILE, demo, home) == content  # the same values

    token = decrypted_hash(root / GENERATED, demo, home)
    ran(tree, "ansible-playbook playbooks/secrets_regenerate.yml")
    regenerated = decrypted_hash(root / GENERATED, demo, home)
    assert regenerated not in (None, token)
    out = ran(
        tree,
        "ansible-playbook playbooks/secrets_regenerate.yml && ansible-playbook deploy.yml"
        " --syntax-check",
    )
    assert "playbook: deploy.yml" in out
    assert decrypted_hash(root / GENERATED, demo, home) not in (None, regenerated)


def test_plaintext_guard() -> None:
    result = run_documented(".venv/bin/python scripts/check-sops-encrypted", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_secrets_test_command_collects() -> None:
    """As written, collecting only: its tests run in the suite's own run."""
    result = run_documented(
        ".venv/bin/pytest tests/unit/plugins/module_utils/test_sops_keys.py"
        " tests/unit/plugins/modules/test_sops_recipients.py tests/integration/test_secrets_*.py"
        " tests/fault/test_secrets_rotation_kill.py",
        env={"PYTEST_ADDOPTS": "--collect-only -q -p no:cacheprovider"},
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"^\d+ tests collected", result.stdout, re.M), result.stdout[-2000:]
    for path in ("test_sops_keys.py", "test_secrets_playbooks.py", "test_secrets_rotation_kill.py"):
        assert path in result.stdout


def test_inventory_listings_keep_values_out_of_the_log(tmp_path: Path) -> None:
    """docs/secrets.md, "Ansible's log": as written, with the suite's own ANSIBLE_LOG_PATH (the
    leak scan reads that log). The listings' output is never printed here: it holds values."""
    written = run_documented(
        'ansible-inventory -i inventories/local --list --output "$(mktemp -d)/inventory.json"',
        env={"TMPDIR": str(tmp_path)},
        timeout=300,
    )
    assert written.returncode == 0, "ansible-inventory --list --output failed"
    (listing,) = tmp_path.glob("*/inventory.json")
    assert "secret_discord_webhook_url" in listing.read_text()
    structure = run_documented(
        "SOPS_ANSIBLE_AWX_DISABLE_VARS_PLUGIN_TEMPORARILY=1 ansible-inventory"
        " -i inventories/local --list",
        timeout=300,
    )
    assert structure.returncode == 0, structure.stderr[-3000:]
    assert "ENC[AES256_GCM" in structure.stdout  # ciphertext only: nothing was decrypted
    host = run_documented(
        "env -u ANSIBLE_LOG_PATH ansible-inventory -i inventories/local --host localhost",
        timeout=300,
    )
    assert host.returncode == 0, "ansible-inventory --host failed"
    assert "secret_server_admin_token" in host.stdout
