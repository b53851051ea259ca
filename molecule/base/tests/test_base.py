"""Host state after the base role, seen from outside (testinfra)."""

from __future__ import annotations

# The keys converge.yml lists for alice, in order.
ALICE_KEYS = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHkZ6l6Zq2Ujt3FZ0Z6g6oQKcQ2QvH4kP6i8wYbYc3Xy alice@laptop",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM8q0bH0rQkF1mQm0yqg2m2m5kJqH3tZ4u1p6wF7aB9c"
    " alice@desktop",
]


def test_timezone_is_set(host):
    assert host.file("/etc/localtime").linked_to.endswith("/Asia/Tokyo")
    assert host.check_output("date +%Z") == "JST"


def test_locales_are_generated_and_lang_is_set(host):
    available = host.check_output("locale -a").split()
    assert "en_US.utf8" in available
    assert "ja_JP.utf8" in available
    assert host.file("/etc/default/locale").contains("^LANG=en_US.UTF-8$")


def test_ntp_servers_reach_timesyncd(host):
    merged = host.check_output("systemd-analyze cat-config systemd/timesyncd.conf")
    assert "NTP=ntp1.example.net ntp2.example.net" in merged
    assert host.service("systemd-timesyncd").is_enabled


def test_admins_exist_with_their_shells_and_group(host):
    alice = host.user("alice")
    bob = host.user("bob")
    assert alice.exists
    assert alice.shell == "/bin/bash"
    assert "admins" in alice.groups
    assert bob.shell == "/bin/sh"
    assert "admins" in bob.groups


def test_admins_have_no_usable_password(host):
    with host.sudo():
        shadow = host.check_output("getent shadow alice bob")
    for line in shadow.splitlines():
        assert line.split(":")[1].startswith("!"), line


def test_authorized_keys_hold_exactly_the_listed_keys(host):
    keys = host.file("/home/alice/.ssh/authorized_keys")
    assert keys.mode == 0o600
    assert keys.user == "alice"
    assert [line for line in keys.content_string.splitlines() if line] == ALICE_KEYS
    assert "old-laptop" not in keys.content_string


def test_former_admin_is_removed_and_home_kept(host):
    assert not host.user("carol").exists
    assert host.file("/home/carol").is_directory


def test_admins_may_sudo_without_password(host):
    out = host.check_output("sudo -n -u alice sudo -n true && echo ok")
    assert out == "ok"
    assert host.run("sudo -n -u nobody sudo -n true").rc != 0
    assert host.run("visudo -c").rc == 0


def test_unattended_upgrades_take_security_updates_only(host):
    dump = host.check_output("apt-config dump")
    assert 'APT::Periodic::Unattended-Upgrade "1";' in dump
    assert 'APT::Periodic::Update-Package-Lists "1";' in dump
    patterns = [
        line
        for line in dump.splitlines()
        if line.startswith("Unattended-Upgrade::Origins-Pattern:: ")
    ]
    assert patterns, dump
    assert all("security" in line.lower() for line in patterns), patterns
    assert 'Unattended-Upgrade::Automatic-Reboot "false";' in dump
    assert host.package("unattended-upgrades").is_installed


def test_journald_limits_are_in_force(host):
    merged = host.check_output("systemd-analyze cat-config systemd/journald.conf")
    assert "SystemMaxUse=512M" in merged
    assert "RuntimeMaxUse=100M" in merged
    assert host.service("systemd-journald").is_running
