"""A wrong value for a `base` variable stops the play before any change, naming the variable.

The role runs against this machine in check mode, so even a validation that let bad input
through could not change anything here; the assertions prove it stopped first.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

GOOD_USER = {"name": "alice", "ssh_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHkZ alice@laptop"]}


@pytest.mark.parametrize(
    ("extra_vars", "failing_task", "message"),
    [
        pytest.param(
            {"base_admin_users": [GOOD_USER, {"ssh_keys": []}]},
            "Validating arguments against arg spec",
            r"missing required arguments: name found in base_admin_users",
            id="user-without-name",
        ),
        pytest.param(
            {"base_timezone": "Mars/Olympus_Mons"},
            "Assert base_timezone names an IANA time zone",
            r"base_timezone 'Mars/Olympus_Mons' is not an IANA time zone name",
            id="unknown-timezone",
        ),
        pytest.param(
            {"base_admin_users": [{"name": "Bad Name"}]},
            "Assert every admin user has a valid, unique login name",
            r"base_admin_users\[0\]\.name 'Bad Name' must be a unique login name",
            id="invalid-login",
        ),
        pytest.param(
            {"base_admin_users": [GOOD_USER, GOOD_USER]},
            "Assert every admin user has a valid, unique login name",
            r"base_admin_users\[1\]\.name 'alice' must be a unique login name",
            id="duplicate-login",
        ),
        pytest.param(
            {"base_admin_users": [{"name": "bob", "ssh_keys": ["-----BEGIN OPENSSH PRIVATE"]}]},
            "Assert every admin SSH key is a single public key line",
            r"base_admin_users entry 'bob': ssh_keys holds something that is not one public key",
            id="not-a-public-key",
        ),
        pytest.param(
            {"base_locale": "english"},
            "Assert the locales have the form",
            r"base_locale 'english' is not a locale like en_US.UTF-8",
            id="bad-locale",
        ),
        pytest.param(
            {"base_journald_system_max_use": "lots"},
            "Assert the journald sizes carry a unit",
            r"base_journald_system_max_use 'lots' must be a size",
            id="bad-journald-size",
        ),
        pytest.param(
            {"base_admin_sudo_nopasswd": "perhaps"},
            "Validating arguments against arg spec",
            r"base_admin_sudo_nopasswd",
            id="not-a-bool",
        ),
    ],
)
def test_bad_input_stops_before_any_change(
    extra_vars: dict, failing_task: str, message: str, check_role
) -> None:
    result = check_role("base", extra_vars)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert re.search(message, out), out
    # The failure is the validation task itself ...
    failed_at = out.rfind("TASK [")
    assert failing_task in out[failed_at : failed_at + 200], out
    # ... and nothing that changes a host ran before it.
    assert "changed=0" in out, out
    for task in ("Install the packages", "Set the time zone", "Create the admin"):
        assert f"TASK [base : {task}" not in out, out


def test_good_input_passes_validation(
    tmp_path: Path, ansible_env: dict, ansible_playbook: str
) -> None:
    """Valid input gets past every check, so the failures above are the checks' doing."""
    playbook = tmp_path / "validate_only.yml"
    playbook.write_text(
        "- name: Run only the base role's checks\n"
        "  hosts: all\n"
        "  tasks:\n"
        "    - name: Run the checks\n"
        "      ansible.builtin.include_role:\n"
        "        name: base\n"
        "        tasks_from: assert.yml\n"
    )
    result = subprocess.run(
        [
            ansible_playbook,
            "-i",
            "localhost,",
            "-c",
            "local",
            "--check",
            str(playbook),
            "-e",
            json.dumps({"base_admin_users": [GOOD_USER], "base_timezone": "Europe/Berlin"}),
        ],
        env=ansible_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failed=0" in result.stdout
