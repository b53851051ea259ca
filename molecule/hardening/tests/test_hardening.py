"""Host state after the hardening role, seen from outside (testinfra).

converge.yml sets: SSH on port 2022 for alice and bob (group admins), monitoring sources
10.20.0.0/16, 192.0.2.10 and 2001:db8:1::/48, the status port 8081 published beyond loopback, and
sysctls written but not applied (a container's /proc/sys is read-only). prepare.yml made alice and
carol (key logins, both in admins) and bob (a password), and a key pair in /root.
"""

from __future__ import annotations

import json

import pytest

SSH_PORT = 2022
CONTROL_PORT = 2023
KEY = "/root/hardening_test_key"
SSH_OPTS = (
    "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=10 "
    "-o LogLevel=ERROR"
)


def sshd_effective(host) -> dict[str, str]:
    """`sshd -T`: the configuration sshd really runs with (keyword -> value, lower case).
    Keywords printed once per value (allowusers, listenaddress) have their values joined."""
    with host.sudo():
        out = host.check_output("/usr/sbin/sshd -T")
    settings: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        settings[key] = f"{settings[key]} {value}" if key in settings else value
    return settings


def test_sshd_effective_settings(host):
    cfg = sshd_effective(host)
    assert cfg["port"] == str(SSH_PORT)
    assert cfg["passwordauthentication"] == "no"
    assert cfg["kbdinteractiveauthentication"] == "no"
    assert cfg["pubkeyauthentication"] == "yes"
    assert cfg["permitrootlogin"] == "no"
    assert cfg["permitemptypasswords"] == "no"
    assert cfg["allowusers"].split() == ["alice", "bob"]
    assert cfg["allowgroups"].split() == ["admins"]
    assert cfg["x11forwarding"] == "no"
    assert cfg["allowagentforwarding"] == "no"
    assert cfg["allowtcpforwarding"] == "no"
    assert cfg["maxauthtries"] == "4"
    assert cfg["logingracetime"] == "30"
    assert cfg["clientaliveinterval"] == "300"
    assert cfg["clientalivecountmax"] == "2"
    assert cfg["loglevel"] == "VERBOSE"


def test_sshd_config_reads_the_drop_in_first(host):
    lines = [
        line.strip()
        for line in host.file("/etc/ssh/sshd_config").content_string.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert lines[0] == "Include /etc/ssh/sshd_config.d/*.conf"
    dropin = host.file("/etc/ssh/sshd_config.d/10-mmo-voxel-hardening.conf")
    assert dropin.user == "root"
    assert dropin.mode == 0o644


def test_sshd_listens_on_the_configured_port(host):
    assert host.service("ssh").is_running
    assert host.service("ssh").is_enabled
    assert host.socket(f"tcp://0.0.0.0:{SSH_PORT}").is_listening


def ssh(host, user: str, command: str, port: int = SSH_PORT, password: bool = False):
    if password:
        return host.run(
            f"sshpass -f /root/hardening_test_password ssh {SSH_OPTS} -p {port} "
            "-o PubkeyAuthentication=no -o PreferredAuthentications=password,keyboard-interactive "
            f"{user}@127.0.0.1 {command}"
        )
    return host.run(
        f"ssh {SSH_OPTS} -o BatchMode=yes -o IdentitiesOnly=yes -i {KEY} -p {port} "
        f"{user}@127.0.0.1 {command}"
    )


def test_key_login_of_an_allowed_user_works(host):
    result = ssh(host, "alice", "id -un")
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "alice"


@pytest.mark.parametrize("user", ["root", "carol"])
def test_key_login_is_refused_to_root_and_to_users_not_allowed(host, user):
    # Both have the same valid key as alice; root is refused by PermitRootLogin, carol (in the
    # admins group but not in AllowUsers) by AllowUsers.
    result = ssh(host, user, "true")
    assert result.rc == 255
    assert "Permission denied" in result.stderr


@pytest.fixture
def password_sshd(host):
    """A second sshd with the same configuration but passwords allowed: the control that proves
    bob's password is right, so that a refusal on the real port is the configuration's doing."""
    with host.sudo():
        host.check_output(
            # ListenAddress with a port: only there (Port lines add up, ListenAddress wins).
            f"/usr/sbin/sshd -o ListenAddress=127.0.0.1:{CONTROL_PORT} "
            "-o PasswordAuthentication=yes -o PidFile=/run/sshd-control.pid"
        )
    yield CONTROL_PORT
    with host.sudo():
        host.run("kill $(cat /run/sshd-control.pid)")


def test_password_login_is_refused(host, password_sshd):
    control = ssh(host, "bob", "id -un", port=password_sshd, password=True)
    assert control.rc == 0, f"control login with the password failed: {control.stderr}"
    assert control.stdout.strip() == "bob"

    refused = ssh(host, "bob", "id -un", password=True)
    assert refused.rc != 0
    assert refused.stdout.strip() == ""
    # sshd offers nothing but public keys.
    assert "Permission denied (publickey)" in refused.stderr


def ruleset(host) -> list[dict]:
    with host.sudo():
        return json.loads(host.check_output("nft -j list ruleset"))["nftables"]


def mmo_rules(items: list[dict]) -> list[list[dict]]:
    return [
        item["rule"]["expr"]
        for item in items
        if "rule" in item
        and item["rule"]["table"] == "mmo_voxel"
        and item["rule"]["chain"] == "input"
    ]


def accepted_dports(rules: list[list[dict]], proto: str) -> dict[int, list]:
    """Port -> source restriction (None: everyone) of every accept rule for `proto` ports."""
    found: dict[int, list] = {}
    for expr in rules:
        if {"accept": None} not in expr:
            continue
        ports: list[int] = []
        source = None
        for part in expr:
            match = part.get("match", {})
            left = match.get("left", {})
            if (
                left.get("payload", {}).get("protocol") == proto
                and left["payload"]["field"] == "dport"
            ):
                right = match["right"]
                values = right["set"] if isinstance(right, dict) and "set" in right else [right]
                ports.extend(int(v) for v in values)
            if left.get("payload", {}).get("field") == "saddr":
                source = match["right"]
        for port in ports:
            found.setdefault(port, []).append(source)
    return found


def test_firewall_input_policy_is_drop(host):
    items = ruleset(host)
    chains = [
        item["chain"] for item in items if "chain" in item and item["chain"]["table"] == "mmo_voxel"
    ]
    assert [(c["name"], c["hook"], c["policy"]) for c in chains] == [("input", "input", "drop")]
    rules = mmo_rules(items)
    first = [json.dumps(expr) for expr in rules[:3]]
    assert "established" in first[0]
    assert "related" in first[0]
    assert "accept" in first[0]
    assert any('"lo"' in text and "accept" in text for text in first)


def test_firewall_opens_only_ssh_the_game_and_the_status_port_to_everyone(host):
    rules = mmo_rules(ruleset(host))
    tcp = accepted_dports(rules, "tcp")
    udp = accepted_dports(rules, "udp")
    open_tcp = {port for port, sources in tcp.items() if None in sources}
    open_udp = {port for port, sources in udp.items() if None in sources}
    assert open_tcp == {SSH_PORT, 8081}
    assert open_udp == {7777}


def test_firewall_opens_monitoring_ports_only_to_the_monitoring_sources(host):
    items = ruleset(host)
    tcp = accepted_dports(mmo_rules(items), "tcp")
    for port in (9100, 9464):
        assert None not in tcp[port], f"{port} is open to everyone"
        assert sorted(tcp[port]) == ["@monitoring_v4", "@monitoring_v6"]
    sets = {
        item["set"]["name"]: item["set"].get("elem", [])
        for item in items
        if "set" in item and item["set"]["table"] == "mmo_voxel"
    }
    v4 = [json.dumps(e, sort_keys=True) for e in sets["monitoring_v4"]]
    assert v4 == [
        json.dumps({"prefix": {"addr": "10.20.0.0", "len": 16}}, sort_keys=True),
        json.dumps("192.0.2.10"),
    ]
    assert sets["monitoring_v6"] == [{"prefix": {"addr": "2001:db8:1::", "len": 48}}]


def test_firewall_loads_at_boot(host):
    assert host.service("nftables").is_enabled
    with host.sudo():
        assert host.run("nft -c -f /etc/nftables.conf").rc == 0


def test_fail2ban_runs_the_sshd_jail_on_the_journal(host):
    assert host.service("fail2ban").is_running
    assert host.service("fail2ban").is_enabled
    with host.sudo():
        status = host.check_output("fail2ban-client status sshd")
        assert "Journal matches:" in status
        assert host.check_output("fail2ban-client get sshd maxretry").strip() == "4"
        ignored = host.check_output("fail2ban-client get sshd ignoreip")
        assert "198.51.100.0/24" in ignored
        assert "127.0.0.0/8" in ignored
        ports = host.check_output("fail2ban-client get sshd action nftables-multiport port")
        assert str(SSH_PORT) in ports


def test_fail2ban_bans_into_nftables_and_a_firewall_reload_keeps_the_bans(host):
    with host.sudo():
        host.check_output("fail2ban-client set sshd banip 192.0.2.77")
        try:
            host.check_output("systemctl reload nftables")
            listed = host.check_output("nft list table inet f2b-table")
            assert "192.0.2.77" in listed
            assert host.run("nft list table inet mmo_voxel").rc == 0
        finally:
            host.run("fail2ban-client set sshd unbanip 192.0.2.77")


@pytest.mark.parametrize("user", ["mmo-voxel", "voxel-tools"])
def test_service_accounts_have_no_login_shell(host, user):
    account = host.user(user)
    assert account.exists
    assert account.shell == "/usr/sbin/nologin"


def test_sysctl_file_holds_the_settings(host):
    conf = host.file("/etc/sysctl.d/60-mmo-voxel-hardening.conf")
    assert conf.user == "root"
    settings = dict(
        (part.strip() for part in line.split("=", 1))
        for line in conf.content_string.splitlines()
        if "=" in line and not line.startswith("#")
    )
    expected = {
        "net.ipv4.conf.all.rp_filter": "1",
        "net.ipv4.conf.all.accept_redirects": "0",
        "net.ipv6.conf.all.accept_redirects": "0",
        "net.ipv4.conf.all.send_redirects": "0",
        "net.ipv4.tcp_syncookies": "1",
        "kernel.kptr_restrict": "2",
        "kernel.dmesg_restrict": "1",
        "fs.protected_hardlinks": "1",
        "fs.protected_symlinks": "1",
        "fs.suid_dumpable": "0",
        "net.ipv4.tcp_rfc1337": "1",
    }
    for key, value in expected.items():
        assert settings.get(key) == value, key
    # Docker needs forwarding: the role must not turn it off.
    assert "net.ipv4.ip_forward" not in settings
    # Every line parses for systemd-sysctl (what applies the file at boot).
    with host.sudo():
        assert host.run("systemd-analyze cat-config sysctl.d/60-mmo-voxel-hardening.conf").rc == 0
