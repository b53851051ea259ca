"""The repository's own SOPS setup, read-only: rules, the demo key, the vars plugin wiring."""

from __future__ import annotations

import json
import shutil
import subprocess

import secrets_fixtures as sf

from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.config import SopsConfig
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.files import parse_sops_file
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.walk import walk_files

DEMO_KEY = sf.REPO / "inventories" / "local" / "demo-age-key.txt"


def demo() -> sf.AgeKey:
    public = subprocess.run(
        [sf.AGE_KEYGEN, "-y", str(DEMO_KEY)], capture_output=True, text=True, check=True
    ).stdout.strip()
    return sf.AgeKey("demo", DEMO_KEY, public)


def test_demo_key_only_in_local_rules():
    config = SopsConfig.load(sf.REPO / ".sops.yaml")
    config.validate()
    key = demo()
    envs = {"local": 0, "staging": 0, "production": 0}
    for rule in config.rules:
        env = next(name for name in envs if f"/{name}/" in rule.path_regex)
        envs[env] += 1
        assert (key.public in rule.recipients) is (env == "local"), rule.label
    assert all(count == 2 for count in envs.values())  # inventories/ and operations/secrets/


def test_demo_key_decrypts_every_committed_secret(tmp_path):
    env = sf.base_env(tmp_path / "home")
    config = SopsConfig.load(sf.REPO / ".sops.yaml")
    files = walk_files(sf.REPO, config)
    assert len(files) >= 3
    for path, rel, rule in files:
        meta = parse_sops_file(path)
        assert meta.encrypted, rel
        assert sorted(meta.recipients) == sorted(rule.recipients), rel
        assert sf.decrypt(path, demo(), env) is not None, rel


def test_demo_key_is_allowlisted_for_the_private_key_hook():
    lines = (sf.REPO / ".private-key-allowlist").read_text().splitlines()
    assert "inventories/local/demo-age-key.txt" in lines
    assert "PUBLIC AND WORTHLESS" in DEMO_KEY.read_text()


def test_vars_plugin_loads_local_secrets_with_the_configured_demo_key(tmp_path, ansible_env):
    # A copy of the local inventory with a minimal hosts file; HOME is empty, so only the
    # demo key named in ansible.cfg can decrypt.
    inventory = tmp_path / "local"
    shutil.copytree(sf.REPO / "inventories" / "local" / "group_vars", inventory / "group_vars")
    (inventory / "hosts.yml").write_text(
        "---\nall:\n  children:\n    game_servers:\n      hosts:\n        localhost:\n"
    )
    env = {**ansible_env, **sf.base_env(tmp_path / "home")}
    env["ANSIBLE_CONFIG"] = str(sf.REPO / "ansible.cfg")
    # ansible-inventory prints the decrypted values on purpose (that is what is tested): they
    # stay in this captured output, out of the suite's Ansible log that the CI leak scan reads.
    env.pop("ANSIBLE_LOG_PATH", None)
    proc = subprocess.run(
        [str(sf.VENV_BIN / "ansible-inventory"), "-i", str(inventory), "--host", "localhost"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    hostvars = json.loads(proc.stdout)
    for name in (
        "secret_server_admin_token",
        "secret_discord_webhook_url",
        "secret_backup_passphrase",
    ):
        assert isinstance(hostvars.get(name), str), name
        assert not hostvars[name].startswith("ENC["), name
