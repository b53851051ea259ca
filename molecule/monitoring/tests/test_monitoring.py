"""The monitoring host after the monitoring and metrics_collector roles, seen from outside.

Prometheus, Alertmanager, node-exporter and the collector run as systemd services; the collector
reads the reference server (prepare.yml) and its WAL world database read-only; Prometheus loads
the rules, scrapes the collector and fires the restore-drill alert from the db_ops status file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

# The repository's tests/: polling, the one way a test waits.
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from polling import wait_until

SERVICES = [
    "prometheus",
    "prometheus-alertmanager",
    "prometheus-node-exporter",
    "mmo-voxel-metrics-collector",
]
RULES = {
    "MmoVoxelTickRateLow",
    "MmoVoxelDbLatencyHigh",
    "MmoVoxelVoxelStreamFailHigh",
    "MmoVoxelMetricsAbsent",
    "MmoVoxelBackupTooOld",
    "MmoVoxelBackupMissing",
    "MmoVoxelDbHealthCheckFailed",
    "MmoVoxelRestoreDrillFailed",
    "MmoVoxelBackupFailed",
    "MmoVoxelAntiCheatBurst",
    "MmoVoxelAntiCheatPlayer",
    "MmoVoxelAntiCheatMalformedLines",
}


def api(host, path: str) -> dict:
    """GET a JSON API on the instance."""
    # The instance has Python, not curl.
    script = "import sys, urllib.request as u; print(u.urlopen(sys.argv[1]).read().decode())"
    return json.loads(host.check_output(f"python3 -c '{script}' 'http://127.0.0.1:{path}'"))


def eventually(check, timeout: float = 60.0):
    """check()'s value once it is truthy (Prometheus scrapes every 5 s here)."""
    return wait_until(check, timeout, getattr(check, "__name__", "the check"), interval=2)


@pytest.mark.parametrize("name", SERVICES)
def test_service_is_enabled_and_running(host, name):
    service = host.service(name)
    assert service.is_enabled
    assert service.is_running


@pytest.mark.parametrize("port", [9090, 9093, 9100, 9465])
def test_listens_on_loopback_only(host, port):
    assert host.socket(f"tcp://127.0.0.1:{port}").is_listening
    assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening


def test_alertmanager_config_holds_the_webhook_and_is_not_world_readable(host):
    cfg = host.file("/etc/prometheus/alertmanager.yml")
    assert cfg.mode == 0o640
    assert cfg.user == "root"
    assert cfg.group == "prometheus"
    assert cfg.contains("molecule-webhook-secret")
    assert cfg.contains("send_resolved: true")


def test_no_pagerduty_receiver_without_a_key(host):
    # PagerDuty is off by default (tests/integration/test_alerting_pagerduty.py pages).
    assert not host.file("/etc/prometheus/alertmanager.yml").contains("pagerduty")


def test_the_log_shippers_project_names_this_host(host):
    """Alloy's .env, written by metrics_collector: the host label is the inventory name."""
    env = host.file("/srv/mmo-voxel-shipper/.env")
    assert env.user == "root"
    name = host.ansible.get_variables()["inventory_hostname"]
    assert f"MMO_VOXEL_HOST={name}" in env.content_string.splitlines()
    assert host.file("/srv/mmo-voxel-shipper/docker-compose.monitoring.yml").is_file
    assert host.file("/srv/mmo-voxel-shipper/monitoring/alloy/config.alloy").is_file


def test_prometheus_lists_every_rule(host):
    groups = api(host, "9090/api/v1/rules")["data"]["groups"]
    names = {r["name"] for g in groups for r in g["rules"]}
    assert names == RULES
    tick = next(r for g in groups for r in g["rules"] if r["name"] == "MmoVoxelTickRateLow")
    assert tick["query"] == "mmo_voxel_tick_rate < 20"
    assert tick["duration"] == 180
    assert tick["annotations"]["runbook_url"].startswith("https://git.example.com/")
    assert tick["annotations"]["runbook_url"].endswith("/operations/runbooks/restart.md")


def test_collector_target_is_scraped(host):
    def target():
        targets = api(host, "9090/api/v1/targets")["data"]["activeTargets"]
        found = [t for t in targets if t["labels"]["job"] == "mmo_voxel_collector"]
        return found if found and found[0]["health"] == "up" else None

    found = eventually(target)
    assert found, api(host, "9090/api/v1/targets")
    assert found[0]["labels"]["host"] == host.check_output("hostname")


def test_prometheus_has_the_servers_values(host):
    def query(expr):
        return lambda: api(host, f"9090/api/v1/query?query={expr}")["data"]["result"]

    tick = eventually(query("mmo_voxel_tick_rate"))
    assert tick, "no mmo_voxel_tick_rate in Prometheus"
    assert float(tick[0]["value"][1]) > 0
    assert eventually(query("mmo_voxel_db_latency_ms"))
    release = eventually(query("mmo_voxel_release_info"))
    assert release[0]["metric"]["version"] == "1.4.2-molecule"
    drill = eventually(query('mmo_voxel_db_job_ok{operation="drill"}'))
    assert drill[0]["value"][1] == "0"


def test_failed_restore_drill_fires(host):
    def firing():
        alerts = api(host, "9090/api/v1/alerts")["data"]["alerts"]
        return [
            a
            for a in alerts
            if a["labels"]["alertname"] == "MmoVoxelRestoreDrillFailed" and a["state"] == "firing"
        ]

    alerts = eventually(firing)
    assert alerts, api(host, "9090/api/v1/alerts")
    assert alerts[0]["labels"]["operation"] == "drill"


def test_alertmanager_received_the_alert(host):
    def received():
        alerts = api(host, "9093/api/v2/alerts")
        return [a for a in alerts if a["labels"]["alertname"] == "MmoVoxelRestoreDrillFailed"]

    alerts = eventually(received)
    assert alerts, api(host, "9093/api/v2/alerts")
    # Prometheus adds its external labels on the way to Alertmanager.
    assert alerts[0]["labels"]["environment"] == "molecule"
    assert alerts[0]["labels"]["host"] == host.check_output("hostname")


def test_collector_writes_real_values_to_the_jsonl(host):
    path = "/srv/mmo-voxel/logs/metrics.jsonl"

    def lines():
        text = host.file(path).content_string if host.file(path).exists else ""
        parsed = [json.loads(line) for line in text.splitlines() if line.strip()]
        return parsed if len(parsed) >= 2 else None

    parsed = eventually(lines, 30)
    assert parsed, f"{path} has fewer than two lines"
    last = parsed[-1]
    assert set(last) == {
        "ts",
        "host",
        "version",
        "tick_rate",
        "active_sessions",
        "db_latency_ms",
        "voxel_stream_fail",
        "anti_cheat",
    }
    assert last["version"] == "1.4.2-molecule"
    assert last["tick_rate"] > 0
    # Read-only through the confined unit, on the live WAL database the server holds open.
    assert last["db_latency_ms"] is not None
    assert last["db_latency_ms"] >= 0
    assert last["voxel_stream_fail"] is not None
    assert host.file(path).user == "mmo-voxel"


def test_collector_unit_is_confined(host):
    show = host.check_output(
        "systemctl show -p User -p ProtectSystem -p NoNewPrivileges mmo-voxel-metrics-collector"
    )
    assert "User=mmo-voxel" in show
    assert "ProtectSystem=strict" in show
    assert "NoNewPrivileges=yes" in show


def test_collector_outlives_a_server_restart(host):
    """The server going away gives null lines; the collector keeps running and recovers."""
    path = "/srv/mmo-voxel/logs/metrics.jsonl"
    pid = host.check_output("systemctl show -p MainPID --value mmo-voxel-metrics-collector")

    def last_line():
        text = host.file(path).content_string
        return json.loads(text.splitlines()[-1])

    with host.sudo():
        host.check_output("systemctl stop mmo-voxel-reference")
    try:
        down = eventually(lambda: (line := last_line())["tick_rate"] is None and line, 30)
        assert down, "no null line while the server was stopped"
        assert down["version"] is None
        assert down["active_sessions"] is None
        assert down["voxel_stream_fail"] is None
    finally:
        with host.sudo():
            host.check_output("systemctl start mmo-voxel-reference")
    back = eventually(lambda: (line := last_line())["tick_rate"] is not None and line, 60)
    assert back, "no values after the server came back"
    assert back["version"] == "1.4.2-molecule"
    assert host.check_output("systemctl show -p MainPID --value mmo-voxel-metrics-collector") == pid
