"""Helpers for the secrets tests: fresh age keys and a small encrypted tree in a temp dir.

Never touches the repository's own .sops.yaml or secret files. Every sops call gets HOME set to an
empty directory, so an operator's ~/.config/sops/age/keys.txt cannot make a test pass.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
SOPS = str(VENV_BIN / "sops") if (VENV_BIN / "sops").exists() else shutil.which("sops") or "sops"
AGE_KEYGEN = shutil.which("age-keygen") or "/usr/bin/age-keygen"


def base_env(home: Path) -> dict[str, str]:
    """Environment for sops / ansible runs: venv first, no version check, an empty HOME."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SOPS_", "ANSIBLE_SOPS_"))
    }
    home.mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(home)
    env.pop("XDG_CONFIG_HOME", None)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["SOPS_DISABLE_VERSION_CHECK"] = "1"
    return env


@dataclass
class AgeKey:
    name: str
    keyfile: Path
    public: str


def new_key(directory: Path, name: str) -> AgeKey:
    """Generate a fresh age identity with age-keygen."""
    directory.mkdir(parents=True, exist_ok=True)
    keyfile = directory / f"{name}.txt"
    subprocess.run([AGE_KEYGEN, "-o", str(keyfile)], check=True, capture_output=True)
    public = subprocess.run(
        [AGE_KEYGEN, "-y", str(keyfile)], check=True, capture_output=True, text=True
    ).stdout.strip()
    return AgeKey(name, keyfile, public)


def sops(args: list[str], env: dict[str, str], keyfile: Path | None = None, **kwargs):
    run_env = dict(env)
    if keyfile is not None:
        run_env["SOPS_AGE_KEY_FILE"] = str(keyfile)
    return subprocess.run([SOPS, *args], env=run_env, capture_output=True, check=False, **kwargs)


def decrypt(path: Path, key: AgeKey, env: dict[str, str]) -> bytes | None:
    """Plaintext of `path` with `key` alone, or None when that key cannot decrypt it."""
    proc = sops(["decrypt", str(path)], env, key.keyfile)
    return proc.stdout if proc.returncode == 0 else None


def tree_state(root: Path) -> dict[str, str]:
    """sha256 and mode of every file under root (to prove that nothing was touched)."""
    state = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            state[path.relative_to(root).as_posix()] = f"{digest}:{oct(path.stat().st_mode)}"
    return state


SOPS_YAML = """---
# Test rules. This comment must survive onboarding and offboarding.
creation_rules:
  # local: the team. This rule allows values in clear explicitly (keys ending in _unencrypted);
  # the others set nothing, so the guard allows nothing in clear under them.
  - path_regex: ^inventories/local/.*\\.sops\\.(ya?ml|json)$
    unencrypted_suffix: _unencrypted
    age:
{local}
  - path_regex: ^operations/secrets/local/.*\\.sops(\\.ya?ml|\\.json|\\.env)?$
    age:
{local}
  # staging: the team only too, in string form
  - path_regex: ^inventories/staging/.*\\.sops\\.(ya?ml|json)$
    age: {staging}
"""


@dataclass
class SecretTree:
    """A temp repository with .sops.yaml, encrypted files and the plaintext they hold."""

    root: Path
    env: dict[str, str]
    keys: dict[str, AgeKey]
    # Kept out of repr(): pytest prints a failing test's arguments, and values never go to output.
    plaintext: dict[str, bytes] = field(default_factory=dict, repr=False)
    canaries: list[str] = field(default_factory=list, repr=False)

    @property
    def files(self) -> list[Path]:
        return [self.root / rel for rel in sorted(self.plaintext)]


def canary(label: str) -> str:
    """A unique plaintext value that must never show up anywhere but in its file."""
    return f"CANARY-{label}-{secrets.token_hex(12)}"


def make_tree(tmp_path: Path, members: list[str] | None = None) -> SecretTree:
    """Keys for `members` (default alice and bob) and four encrypted files, all to every member."""
    members = members or ["alice", "bob"]
    keydir = tmp_path / "keys"
    keys = {name: new_key(keydir, name) for name in [*members, "outsider"]}
    env = base_env(tmp_path / "home")
    root = tmp_path / "repo"
    root.mkdir()
    team = [keys[name].public for name in members]
    local = "\n".join(f"      - {pub}  # {name}" for name, pub in zip(members, team, strict=True))
    (root / ".sops.yaml").write_text(
        SOPS_YAML.format(local=local, staging=",".join(team)), encoding="utf-8"
    )
    tree = SecretTree(root, env, keys)
    values = {label: canary(label) for label in ("token", "webhook", "nested", "pem", "stage")}
    tree.canaries = list(values.values())
    sources = {
        "inventories/local/group_vars/all/secrets.sops.yml": (
            f"secret_server_admin_token: {values['token']}\n"
            f"secret_discord_webhook_url: https://example.invalid/{values['webhook']}\n"
        ),
        "inventories/local/group_vars/game_servers/nested.sops.yml": (
            f"secret_nested:\n  inner:\n    - {values['nested']}\n  port_unencrypted: 8080\n"
        ),
        "operations/secrets/local/server_key.pem.sops": (
            f"-----BEGIN DEMO KEY-----\n{values['pem']}\n-----END DEMO KEY-----\n"
        ),
        "inventories/staging/group_vars/all/stage.sops.json": (
            f'{{"secret_stage_token": "{values["stage"]}"}}\n'
        ),
    }
    for rel, text in sources.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        proc = sops(["encrypt", "-i", rel], env, cwd=root)
        assert proc.returncode == 0, proc.stderr.decode()
        tree.plaintext[rel] = text.encode()
    # A plain file that no rule covers must be left alone by everything.
    (root / "inventories/local/group_vars/all/main.yml").write_text("plain_setting: 1\n")
    return tree


GUARD = REPO / "scripts" / "check-sops-encrypted"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable


def run_guard(
    tree: SecretTree, *files: str, keyfile: Path | None = None
) -> subprocess.CompletedProcess:
    """scripts/check-sops-encrypted on the tree; `keyfile` is the identity it may verify with."""
    env = dict(tree.env)
    if keyfile is not None:
        env["SOPS_AGE_KEY_FILE"] = str(keyfile)
    return subprocess.run(
        [PYTHON, str(GUARD), "--root", str(tree.root), *files],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def run_playbook(
    tree: SecretTree, name: str, extra: dict | None = None, *flags: str, env: dict | None = None
) -> subprocess.CompletedProcess:
    """playbooks/secrets_<name>.yml on the tree, decrypting with alice's key unless told."""
    variables = {
        "secrets_root": str(tree.root),
        "secrets_age_keyfile": str(tree.keys["alice"].keyfile),
        **(extra or {}),
    }
    run_env = dict(tree.env)
    run_env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    run_env["ANSIBLE_NOCOLOR"] = "1"
    run_env["ANSIBLE_DEPRECATION_WARNINGS"] = "0"
    run_env.update(env or {})
    return subprocess.run(
        [
            str(VENV_BIN / "ansible-playbook"),
            "-i",
            "localhost,",
            str(REPO / "playbooks" / f"secrets_{name}.yml"),
            "-e",
            json.dumps(variables),
            *flags,
        ],
        env=run_env,
        capture_output=True,
        text=True,
        check=False,
        cwd=tree.root.parent,
    )


def git_track(root: Path, env: dict[str, str]) -> None:
    """Make `root` a git checkout in which every file is tracked (git add, no commit needed)."""
    for args in (["init", "-q"], ["add", "-A"]):
        subprocess.run(["git", "-C", str(root), *args], env=env, check=True, capture_output=True)


def enc_values(path: Path) -> list[str]:
    """The sops ciphertexts of a file (a rotated data key changes every one of them)."""
    return re.findall(r"ENC\[AES256_GCM,data:[^\]]+\]", path.read_text())


def can_decrypt(path: Path, key: AgeKey, env: dict[str, str]) -> bool:
    """Whether `key` alone decrypts `path` (a bool, so a failing assert shows no plaintext)."""
    return decrypt(path, key, env) is not None


def reads_back(tree: SecretTree, rel: str, key: AgeKey) -> bool:
    """Whether `key` alone decrypts `rel` to the content it was made with (a bool, see above)."""
    return plaintext_equal(rel, decrypt(tree.root / rel, key, tree.env), tree)


def plaintext_equal(rel: str, got: bytes | None, tree: SecretTree) -> bool:
    """sops prints YAML/JSON back in its own layout, so compare parsed data where possible."""
    if got is None:
        return False
    want = tree.plaintext[rel]
    if rel.endswith(".json"):
        return json.loads(got) == json.loads(want)
    if rel.endswith((".yml", ".yaml")):
        return yaml.safe_load(got) == yaml.safe_load(want)
    return got == want
