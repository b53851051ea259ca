"""The scheduled drift check on a control host, seen from outside (testinfra).

The checkout is the fixture repository of prepare.yml (the real scripts/drift-check and report
callback, a one-host playbook), pinned to tag v1 while main has moved on.
"""

from __future__ import annotations

import json

import pytest

UNIT = "mmo-voxel-drift-check"
HOME = "/var/lib/mmo-voxel-drift"
CHECKOUT = f"{HOME}/checkout"
REPORTS = f"{HOME}/reports"
SECRET = "planted-webhook-secret"  # noqa: S105  # the fixture's webhook token


def show(host, unit: str, *props: str) -> dict[str, str]:
    out = host.check_output(f"systemctl show {unit} " + " ".join(f"-p {p}" for p in props))
    return dict(line.split("=", 1) for line in out.splitlines())


def test_timer_is_enabled_and_scheduled(host):
    timer = host.service(f"{UNIT}.timer")
    assert timer.is_enabled
    assert timer.is_running
    props = show(host, f"{UNIT}.timer", "NextElapseUSecRealtime", "TimersCalendar", "Persistent")
    # systemd computed the next run from the calendar it was given.
    assert props["NextElapseUSecRealtime"] not in ("", "0", "n/a")
    assert "OnCalendar=*-*-* 04:30:00" in props["TimersCalendar"]
    assert props["Persistent"] == "yes"
    assert show(host, f"{UNIT}.timer", "RandomizedDelayUSec")["RandomizedDelayUSec"] == "10min"
    next_run = host.check_output(f"systemctl list-timers {UNIT}.timer --all --no-legend")
    assert f"{UNIT}.service" in next_run


def test_service_unit_is_effective(host):
    props = show(
        host,
        f"{UNIT}.service",
        "Type",
        "User",
        "WorkingDirectory",
        "SuccessExitStatus",
        "ExecStart",
        "TimeoutStartUSec",
    )
    assert props["Type"] == "oneshot"
    assert props["User"] == "mmo-drift"
    assert props["WorkingDirectory"] == CHECKOUT
    assert props["SuccessExitStatus"].split()[0] == "2"
    assert "scripts/drift-check -i inventories/fixture" in props["ExecStart"]
    assert f"--report-dir {REPORTS} --keep 5" in props["ExecStart"]
    assert props["TimeoutStartUSec"] == "20min"
    assert host.run("systemd-analyze verify %s.service %s.timer", UNIT, UNIT).rc == 0


def test_webhook_is_only_in_the_root_only_environment_file(host):
    env = host.file(f"/etc/mmo-voxel-drift/{UNIT}.env")
    assert env.mode == 0o600
    assert env.user == "root"
    assert SECRET in env.content_string
    assert SECRET not in host.file(f"/etc/systemd/system/{UNIT}.service").content_string
    assert SECRET not in host.check_output(f"systemctl show {UNIT}.service")


def test_checkout_is_at_the_pinned_ref(host):
    # As the service user: git refuses a repository owned by someone else.
    head = host.check_output(f"runuser -u mmo-drift -- git -C {CHECKOUT} rev-parse HEAD")
    assert head == host.check_output("git -C /srv/fixture/ops.git rev-parse v1^{commit}")
    assert head != host.check_output("git -C /srv/fixture/ops.git rev-parse main")
    assert host.file(f"{CHECKOUT}/VERSION").content_string == "pinned\n"
    assert host.file(CHECKOUT).user == "mmo-drift"


def test_venv_runs_the_pinned_ansible(host):
    out = host.check_output(f"{HOME}/venv/bin/ansible-playbook --version")
    assert out.startswith("ansible-playbook [core 2.19.14]")


@pytest.fixture
def run_service(host):
    """Start the service once (oneshot: returns when the run ends) and give its result."""

    def run() -> dict[str, str]:
        host.run("systemctl reset-failed %s.service", UNIT)
        host.run("systemctl start %s.service", UNIT)
        return show(host, f"{UNIT}.service", "Result", "ExecMainStatus", "ActiveState")

    yield run
    host.run("rm -f /srv/drift-fixture/fail")
    host.run("systemctl reset-failed %s.service", UNIT)


def test_a_run_with_drift_succeeds_and_writes_the_report(host, run_service):
    # A later commit on main and a hand edit in the checkout: the run brings it back to v1.
    host.run(f"echo edited > {CHECKOUT}/VERSION")
    result = run_service()
    assert result == {"Result": "success", "ExecMainStatus": "2", "ActiveState": "inactive"}
    report = json.loads(host.file(f"{REPORTS}/latest.json").content_string)
    assert report["summary"]["status"] == "drift"
    changes = report["hosts"]["control"]["changes"]
    assert [c["task"] for c in changes] == ["Declare the fixture file"]
    assert "-edited by hand" in changes[0]["diff"]
    assert host.file(f"{REPORTS}/latest.json").user == "mmo-drift"
    assert host.file("/srv/drift-fixture/target.conf").content_string == "edited by hand\n"
    assert host.file(f"{CHECKOUT}/VERSION").content_string == "pinned\n"
    with host.sudo():
        journal = host.check_output(f"journalctl -u {UNIT}.service --no-pager -o cat")
    assert "drift-check: drift" in journal
    assert SECRET not in journal
    # The control host's venv has no mitogen: the wrapper says so and checks with linear.
    assert "mitogen not available" in journal
    assert "drift-check: strategy linear" in journal


def test_a_run_with_an_error_fails_the_unit(host, run_service):
    host.run("touch /srv/drift-fixture/fail")
    result = run_service()
    assert result["Result"] == "exit-code"
    assert result["ExecMainStatus"] == "1"
    assert result["ActiveState"] == "failed"
    report = json.loads(host.file(f"{REPORTS}/latest.json").content_string)
    assert report["summary"]["status"] == "error"
