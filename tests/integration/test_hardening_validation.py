"""A wrong value for a `hardening` variable stops the play before any change, naming the variable.

The role runs against this machine in check mode (fixture check_role), so even a check that let
bad input through could not change anything here; the assertions prove it stopped first.
"""

from __future__ import annotations

import subprocess

import pytest
from role_validation import assert_stopped_before_change

GOOD = {"hardening_ssh_allow_groups": ["admins"]}


@pytest.mark.parametrize(
    ("extra_vars", "failing_task", "message"),
    [
        pytest.param(
            {"hardening_ssh_allow_users": [], "hardening_ssh_allow_groups": []},
            "Assert the host and the variables are usable",
            r"hardening_ssh_allow_users and hardening_ssh_allow_groups are both empty",
            id="nobody-allowed",
        ),
        pytest.param(
            {**GOOD, "hardening_ssh_allow_users": ["alice", "Bad User"]},
            "Assert the host and the variables are usable",
            r'hardening_ssh_allow_users holds "Bad User": each must be a user name',
            id="bad-user-name",
        ),
        pytest.param(
            {**GOOD, "hardening_ssh_port": 2222, "hardening_firewall_tcp_ports": [22, 443]},
            "Assert the host and the variables are usable",
            r"hardening_ssh_port 2222 is not in hardening_firewall_tcp_ports \[22, ?443\]",
            id="ssh-port-not-open",
        ),
        pytest.param(
            {**GOOD, "hardening_firewall_udp_ports": [70000]},
            "Assert the host and the variables are usable",
            r"hardening_firewall_udp_ports holds 70000:\s+each must be a port number",
            id="port-out-of-range",
        ),
        pytest.param(
            {**GOOD, "hardening_firewall_monitoring_sources": ["10.0.0.0/8", "10.0.0.300/24"]},
            "Assert the host and the variables are usable",
            r'hardening_firewall_monitoring_sources holds "10.0.0.300/24"',
            id="malformed-cidr",
        ),
        pytest.param(
            {**GOOD, "hardening_firewall_monitoring_sources": ["10.0.0.5/24"]},
            "Assert the host and the variables are usable",
            r'hardening_firewall_monitoring_sources holds "10.0.0.5/24".*without host bits',
            id="cidr-with-host-bits",
        ),
        pytest.param(
            {**GOOD, "hardening_fail2ban_ignoreip": ["office"]},
            "Assert the host and the variables are usable",
            r'hardening_fail2ban_ignoreip holds "office"',
            id="ignoreip-not-an-address",
        ),
        pytest.param(
            {**GOOD, "hardening_fail2ban_bantime": "forever"},
            "Assert the host and the variables are usable",
            r"hardening_fail2ban_bantime 'forever' must be a time span",
            id="bad-bantime",
        ),
        pytest.param(
            {**GOOD, "hardening_sysctl_extra": {"not a sysctl": 1}},
            "Assert the host and the variables are usable",
            r"not a sysctl \(hardening_sysctls / hardening_sysctl_extra\) is not a sysctl name",
            id="bad-sysctl-name",
        ),
        pytest.param(
            # Several mistakes at once: the one check names every one of them.
            {
                **GOOD,
                "hardening_ssh_allow_users": ["alice", "Bad User", "Eve!"],
                "hardening_firewall_tcp_ports": [22, 0],
                "hardening_firewall_udp_ports": [70000],
                "hardening_fail2ban_findtime": "soon",
            },
            "Assert the host and the variables are usable",
            r'hardening_ssh_allow_users holds "Bad User", "Eve!": each must be a user name.*'
            r"hardening_firewall_tcp_ports holds 0; hardening_firewall_udp_ports holds 70000:"
            r"\s+each must be a port number.*"
            r"hardening_fail2ban_findtime 'soon' must be a time span",
            id="several-mistakes-named-at-once",
        ),
        pytest.param(
            {**GOOD, "hardening_ssh_log_level": "LOUD"},
            "Validating arguments against arg spec",
            r"hardening_ssh_log_level",
            id="log-level-not-a-choice",
        ),
        pytest.param(
            {**GOOD, "hardening_firewall_tcp_ports": ["ssh"]},
            "Validating arguments against arg spec",
            r"hardening_firewall_tcp_ports",
            id="port-not-an-int",
        ),
    ],
)
def test_bad_input_stops_before_any_change(
    extra_vars: dict, failing_task: str, message: str, check_role
) -> None:
    result = check_role("hardening", extra_vars)
    assert_stopped_before_change(
        result,
        "hardening",
        failing_task,
        message,
        ["Install the packages", "Write the SSH hardening drop-in", "Write the firewall"],
    )


def test_good_input_passes_validation(check_role) -> None:
    """Valid input gets past every check, so the failures above are the checks' doing."""
    good = {
        **GOOD,
        "hardening_ssh_allow_users": ["alice"],
        "hardening_firewall_monitoring_sources": ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"],
        "hardening_fail2ban_ignoreip": ["203.0.113.0/24"],
    }
    result = check_role("hardening", good, tasks_from="assert.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failed=0" in result.stdout


def test_the_machine_ansible_runs_on_is_left_out(repo, ansible_env, ansible_playbook) -> None:
    """The embedded default inventory is this machine: hardening.yml leaves it alone, saying so."""
    playbook = str(repo / "playbooks" / "hardening.yml")
    inventory = str(repo / "inventories" / "local")
    result = subprocess.run(
        [ansible_playbook, "-i", inventory, "--check", playbook, "--limit", "game_servers"],
        env=ansible_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 0, out
    assert "the machine running Ansible: not hardened" in out
    assert "TASK [hardening :" not in out
