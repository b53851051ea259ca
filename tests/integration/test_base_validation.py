"""A wrong value for a `base` variable stops the play before any change, naming the variable.

The role runs against this machine in check mode, so even a validation that let bad input
through could not change anything here; the assertions prove it stopped first.
"""

from __future__ import annotations

import pytest
from role_validation import assert_stopped_before_change

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
            "Assert the host and the variables are usable",
            r"base_timezone 'Mars/Olympus_Mons' is not an IANA time zone name",
            id="unknown-timezone",
        ),
        pytest.param(
            {"base_admin_users": [{"name": "Bad Name"}]},
            "Assert the host and the variables are usable",
            r'base_admin_users: "Bad Name" must each be one unique login name',
            id="invalid-login",
        ),
        pytest.param(
            {"base_admin_users": [GOOD_USER, GOOD_USER]},
            "Assert the host and the variables are usable",
            r'base_admin_users: "alice" must each be one unique login name',
            id="duplicate-login",
        ),
        pytest.param(
            {"base_admin_users": [{"name": "bob", "ssh_keys": ["-----BEGIN OPENSSH PRIVATE"]}]},
            "Assert the host and the variables are usable",
            r'base_admin_users entry "bob": ssh_keys holds something that\s+is not one public key',
            id="not-a-public-key",
        ),
        pytest.param(
            {"base_locale": "english"},
            "Assert the host and the variables are usable",
            r"base_locale 'english' is not a locale like en_US.UTF-8",
            id="bad-locale",
        ),
        pytest.param(
            {"base_journald_system_max_use": "lots"},
            "Assert the host and the variables are usable",
            r"base_journald_system_max_use 'lots' must be a size",
            id="bad-journald-size",
        ),
        pytest.param(
            # Several mistakes at once: the one check names every one of them.
            {
                "base_timezone": "Mars/Olympus_Mons",
                "base_locales_extra": ["de_DE.UTF-8", "klingon"],
                "base_journald_runtime_max_use": "some",
                "base_unattended_upgrades_reboot_time": "25:00",
            },
            "Assert the host and the variables are usable",
            r"base_timezone 'Mars/Olympus_Mons' is not an IANA.*"
            r'base_locales_extra holds "klingon", not locales.*'
            r"base_journald_runtime_max_use 'some' must be a size.*"
            r"base_unattended_upgrades_reboot_time '25:00' must be HH:MM",
            id="several-mistakes-named-at-once",
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
    assert_stopped_before_change(
        result,
        "base",
        failing_task,
        message,
        ["Install the packages", "Set the time zone", "Create the admin"],
    )


def test_good_input_passes_validation(check_role) -> None:
    """Valid input gets past every check, so the failures above are the checks' doing."""
    result = check_role(
        "base",
        {"base_admin_users": [GOOD_USER], "base_timezone": "Europe/Berlin"},
        tasks_from="assert.yml",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failed=0" in result.stdout
