"""scripts/leak-scan finds planted secrets in the forms it promises and passes clean trees."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from registry_pki import make_ca, make_server_certificate

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "scripts" / "leak-scan"
VENV_BIN = REPO / ".venv" / "bin"
DEMO_KEY = REPO / "inventories" / "local" / "demo-age-key.txt"
# A value with characters that every encoding changes: '/', ':', '+', ' ', '"', '&'.
SECRET = "hunter2/Tok:en+with " + 'space"&more-7f3a'


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ)
    full_env["PATH"] = f"{VENV_BIN}{os.pathsep}{full_env.get('PATH', '')}"
    full_env["SOPS_DISABLE_VERSION_CHECK"] = "1"
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        env=full_env,
    )


@pytest.fixture
def secrets_file(tmp_path: Path) -> Path:
    path = tmp_path / "secrets.txt"
    path.write_text(f"# the test secrets\n\n{SECRET}\n", encoding="utf-8")
    return path


def plant(tmp_path: Path, text: str) -> Path:
    tree = tmp_path / "out" / "reports" / "run-1"
    tree.mkdir(parents=True)
    (tmp_path / "out" / "clean.log").write_text("PLAY RECAP ok=3 changed=0\n", encoding="utf-8")
    leak = tree / "pytest-output.txt"
    leak.write_text(f"line one\nline two\n{text}\nline four\n", encoding="utf-8")
    return leak


def assert_found(result: subprocess.CompletedProcess[str], leak: Path, form: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{leak}:3: secret" in result.stdout
    assert f"({form})" in result.stdout
    # The report names the place, never the value (in any of its forms).
    for shown in (SECRET, quote(SECRET, safe=""), quote_plus(SECRET)):
        assert shown not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("text", "form"),
    [
        (f"token={SECRET} end", "raw"),
        (f"GET /hook?t={quote(SECRET, safe='')} HTTP/1.1", "url-encoded"),
        (f"https://example.invalid/x?t={quote_plus(SECRET)}", "url-encoded"),
        (json.dumps({"msg": f"value {SECRET}"}), "json-escaped"),
    ],
    # Own ids: the default ones would print the planted secret in pytest's output (and the CI
    # leak scan would rightly flag it).
    ids=["raw", "url-quote", "url-quote-plus", "json"],
)
def test_finds_a_planted_secret_and_names_file_and_line(
    tmp_path: Path, secrets_file: Path, text: str, form: str
) -> None:
    leak = plant(tmp_path, text)
    assert_found(run("--secrets-file", secrets_file, tmp_path / "out"), leak, form)


@pytest.mark.parametrize("prefix", ["", "a", "ab", "abc", "abcd"])
@pytest.mark.parametrize("encoder", [base64.b64encode, base64.urlsafe_b64encode])
def test_finds_a_secret_inside_a_longer_base64_blob(
    tmp_path: Path, secrets_file: Path, prefix: str, encoder
) -> None:
    blob = encoder(f"{prefix}Authorization: {SECRET}\ntrailing".encode()).decode()
    leak = plant(tmp_path, f"body: {blob}")
    result = run("--secrets-file", secrets_file, tmp_path / "out")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{leak}:3: secret" in result.stdout
    assert "base64" in result.stdout


def test_passes_clean_files(tmp_path: Path, secrets_file: Path) -> None:
    plant(tmp_path, "nothing secret here, only hunter2 without the rest")
    result = run("--secrets-file", secrets_file, tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
    assert "no leak: 1 secrets" in result.stderr


def test_excluded_paths_are_not_scanned(tmp_path: Path, secrets_file: Path) -> None:
    plant(tmp_path, SECRET)
    result = run("--secrets-file", secrets_file, "--exclude", "*/reports/*", tmp_path / "out")
    assert result.returncode == 0, result.stdout + result.stderr


def test_reads_secrets_from_the_environment(tmp_path: Path) -> None:
    leak = plant(tmp_path, SECRET)
    result = run(
        "--secrets-env",
        "LEAK_TEST_SECRETS",
        tmp_path / "out",
        env={"LEAK_TEST_SECRETS": f"other-value-1234\n{SECRET}\n"},
    )
    assert_found(result, leak, "raw")


def test_takes_secret_constants_from_python_files(tmp_path: Path) -> None:
    module = tmp_path / "test_constants.py"
    module.write_text(
        'ADMIN_TOKEN = "e2e-admin-" + "0badc0de"\n'
        'WEBHOOK_PATH: str = "/api/webhooks/42/abcdefgh"\n'
        'PORT_NAME = "not-a-secret-name"\n',
        encoding="utf-8",
    )
    listed = run("--constants-from", module, "--list")
    assert listed.returncode == 0, listed.stderr
    assert f"{module}:ADMIN_TOKEN (18 characters)" in listed.stdout
    assert f"{module}:WEBHOOK_PATH" in listed.stdout
    assert "PORT_NAME" not in listed.stdout
    assert "0badc0de" not in listed.stdout

    leak = plant(tmp_path, "Authorization: Bearer e2e-admin-0badc0de")
    result = run("--constants-from", module, tmp_path / "out")
    assert result.returncode == 1
    assert f"{leak}:3: secret {module}:ADMIN_TOKEN (raw)" in result.stdout


def sops_encrypt(path: Path, text: str) -> None:
    """Encrypt `text` to the repository's public demo recipient (read from the demo key file)."""
    recipient = next(
        line.split(":", 1)[1].strip()
        for line in DEMO_KEY.read_text().splitlines()
        if line.startswith("# public key:")
    )
    path.write_text(text, encoding="utf-8")
    proc = subprocess.run(
        [str(VENV_BIN / "sops"), "encrypt", "--age", recipient, "--in-place", str(path)],
        capture_output=True,
        check=False,
        env={**os.environ, "SOPS_DISABLE_VERSION_CHECK": "1"},
        # Away from the repository's .sops.yaml, whose rules do not cover temp files.
        cwd=path.parent,
    )
    assert proc.returncode == 0, proc.stderr


def test_takes_every_value_of_a_sops_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "extra.sops.yml"
    sops_encrypt(secret_file, f"secret_a: {json.dumps(SECRET)}\nnested:\n  - deep-value-0042\n")
    leak = plant(tmp_path, "the deep-value-0042 leaked")
    result = run("--sops", secret_file, "--age-key-file", DEMO_KEY, tmp_path / "out")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{leak}:3: secret {secret_file}:nested[0] (raw)" in result.stdout
    assert "deep-value-0042" not in result.stdout + result.stderr


def test_a_sops_file_that_cannot_be_decrypted_is_an_error(tmp_path: Path) -> None:
    secret_file = tmp_path / "extra.sops.yml"
    sops_encrypt(secret_file, "secret_a: some-value-1234\n")
    wrong_key = tmp_path / "empty-key.txt"
    wrong_key.write_text("", encoding="utf-8")
    result = run("--sops", secret_file, "--age-key-file", wrong_key, tmp_path)
    assert result.returncode == 2
    assert f"{secret_file}: sops could not decrypt it" in result.stderr


def test_repo_defaults_cover_the_local_inventory_secrets(tmp_path: Path) -> None:
    listed = run("--repo-defaults", "--list")
    assert listed.returncode == 0, listed.stderr
    assert "generated.sops.yml:secret_server_admin_token" in listed.stdout
    assert "secrets.sops.yml:secret_discord_webhook_url" in listed.stdout

    # The real admin token of the local inventory, planted: the default scan must catch it.
    token = subprocess.run(
        [
            str(VENV_BIN / "sops"),
            "decrypt",
            "--extract",
            '["secret_server_admin_token"]',
            str(REPO / "inventories/local/group_vars/game_servers/generated.sops.yml"),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "SOPS_AGE_KEY_FILE": str(DEMO_KEY), "SOPS_DISABLE_VERSION_CHECK": "1"},
    ).stdout
    leak = plant(tmp_path, f"ansible: token {token} in a debug line")
    result = run("--repo-defaults", tmp_path / "out")
    assert result.returncode == 1
    assert f"{leak}:3: secret" in result.stdout
    assert "secret_server_admin_token (raw)" in result.stdout
    assert token not in result.stdout + result.stderr


def test_short_values_are_skipped_with_a_warning(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.txt"
    secrets.write_text("abc\nlong-enough-value\n", encoding="utf-8")
    plant(tmp_path, "abc is everywhere: abc abc")
    result = run("--secrets-file", secrets, tmp_path / "out")
    assert result.returncode == 0
    assert "shorter than 8 characters, not scanned" in result.stderr


def test_bad_usage_exits_2(tmp_path: Path, secrets_file: Path) -> None:
    assert run("--secrets-file", secrets_file, tmp_path / "missing").returncode == 2
    assert run(tmp_path).returncode == 2  # no secret source at all
    assert run("--secrets-env", "LEAK_SCAN_UNSET_VARIABLE", tmp_path).returncode == 2


def test_a_pem_key_of_a_sops_file_is_found_line_by_line(tmp_path: Path) -> None:
    """secret_registry_tls_key is one multi-line value: Ansible's YAML output indents it, a log
    may hold a part of it; each of its lines is looked for (the armor lines are no secret)."""
    key = make_server_certificate(make_ca(), "10.0.0.5").key_pem
    secret_file = tmp_path / "registries.sops.yml"
    sops_encrypt(secret_file, "secret_registry_tls_key: " + json.dumps(key) + "\n")
    body = [line for line in key.splitlines() if not line.startswith("-----")]
    indented = "\n".join(f"        {line}" for line in key.splitlines())
    leak = plant(tmp_path, f"    msg: |-\n{indented}")
    result = run("--sops", secret_file, "--age-key-file", DEMO_KEY, tmp_path / "out")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{secret_file}:secret_registry_tls_key (raw, one line of it)" in result.stdout
    assert f"{leak}:5: secret" in result.stdout  # the first body line, not the armor line
    assert not any(line in result.stdout + result.stderr for line in body)


def test_armor_lines_are_no_secret_in_any_source(tmp_path: Path) -> None:
    """A whole PEM key in --secrets-file is fine: certificates and public keys in a log share its
    armor lines, and only the key's own lines are looked for."""
    key = make_server_certificate(make_ca(), "10.0.0.5").key_pem
    secrets = tmp_path / "secrets.txt"
    secrets.write_text(key, encoding="utf-8")
    armor = "PRIVATE " + "KEY-----"  # in parts: scripts/detect-private-key reads this file
    plant(tmp_path, f"-----BEGIN {armor}\n-----END {armor}")
    assert run("--secrets-file", secrets, tmp_path / "out").returncode == 0
    leak = tmp_path / "out" / "second.log"
    leak.write_text("x\n" + key.splitlines()[2] + "\n", encoding="utf-8")
    result = run("--secrets-file", secrets, tmp_path / "out")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{leak}:2: secret" in result.stdout
