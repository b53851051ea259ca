"""End to end: collector -> Prometheus -> Alertmanager -> Discord (a local receiver).

Everything real runs on 127.0.0.1 on free ports with temporary directories: the collector file the
role installs, Prometheus and Alertmanager from the Debian packages with the configuration the
monitoring role renders (its templates, through ansible-playbook). Only two stand-ins: a status
server the test steers (the game server's GET /status) and an HTTP receiver for Discord's webhook.
Durations are shortened through the role's own variables (3 s instead of 3 m); the production
values are asserted in test_alert_rules.py.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from monitoring_helpers import (
    COLLECTOR,
    DiscordReceiver,
    FakeStatusServer,
    Processes,
    make_world,
    render,
    status_doc,
)
from system_tools import free_port, require_tools

PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
pytestmark = [pytest.mark.slow]


@pytest.fixture(autouse=True)
def _prometheus_installed() -> None:
    require_tools("prometheus and prometheus-alertmanager", PROMETHEUS, ALERTMANAGER)


HOST = "game-1"
TICK_FOR_S = 3
ABSENT_FOR_S = 5


def get_json(url: str) -> Any:
    # http://127.0.0.1 URLs the test builds itself.
    with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310
        return json.loads(resp.read())


def rule_durations(prom: str) -> set[tuple[str, int]]:
    """(alert, its `for` in seconds) of every alerting rule Prometheus loaded."""
    groups = get_json(f"{prom}/api/v1/rules?type=alert")["data"]["groups"]
    return {(rule["name"], int(rule["duration"])) for group in groups for rule in group["rules"]}


def active_at(prom: str, alert: str) -> float:
    """When Prometheus made the alert active (pending or firing), as a Unix time."""
    alerts = get_json(f"{prom}/api/v1/alerts")["data"]["alerts"]
    stamp = next(a["activeAt"] for a in alerts if a["labels"]["alertname"] == alert)
    # RFC 3339 with nanoseconds: Python parses microseconds.
    stamp = re.sub(r"(\.\d{6})\d*", r"\1", stamp).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp()


def alert_state(query, alert: str) -> str | None:
    """pending or firing, as Prometheus's ALERTS series says (None: not active)."""
    states = {series["metric"]["alertstate"] for series in query(f'ALERTS{{alertname="{alert}"}}')}
    return "firing" if "firing" in states else next(iter(states), None)


@pytest.fixture
def stack(
    tmp_path: Path, ansible_env: dict[str, str], ansible_playbook: str
) -> Iterator[dict[str, Any]]:
    status = FakeStatusServer(status_doc(tick_rate=30.0))
    discord = DiscordReceiver()
    procs = Processes()
    ports = {name: free_port() for name in ("prometheus", "alertmanager", "collector", "node")}
    conf = tmp_path / "etc"
    files = render(
        conf,
        ansible_env,
        ansible_playbook,
        ("rules", "prometheus", "alertmanager"),
        {
            # Paths and ports of this test.
            "monitoring_config_dir": str(conf),
            "monitoring_rules_file": str(conf / "mmo_voxel.rules.yml"),
            "monitoring_prometheus_port": ports["prometheus"],
            "monitoring_alertmanager_port": ports["alertmanager"],
            "monitoring_node_exporter_port": ports["node"],
            "monitoring_collector_hosts": [HOST],
            "monitoring_collector_addresses": {HOST: f"127.0.0.1:{ports['collector']}"},
            "monitoring_environment": "e2e",
            "monitoring_alertmanager_discord_webhook_url": discord.url,
            # Shortened through the same variables production uses.
            "monitoring_scrape_interval": "1s",
            "monitoring_evaluation_interval": "1s",
            "monitoring_alert_tick_rate_for": f"{TICK_FOR_S}s",
            "monitoring_alert_metrics_absent_for": f"{ABSENT_FOR_S}s",
            "monitoring_alertmanager_group_wait": "1s",
            "monitoring_alertmanager_group_interval": "1s",
            "monitoring_alertmanager_repeat_interval": "1h",
        },
    )
    world = tmp_path / "data" / "world.db"
    make_world(world)
    try:
        procs.start(
            "collector",
            [
                sys.executable,
                str(COLLECTOR),
                "--status-url",
                status.url,
                "--db",
                str(world),
                "--output",
                str(tmp_path / "logs" / "metrics.jsonl"),
                "--host",
                HOST,
                "--interval",
                "0.5",
                "--status-timeout",
                "0.2",
                "--db-timeout",
                "0.2",
                "--listen-port",
                str(ports["collector"]),
            ],
            tmp_path,
        )
        procs.start_alertmanager(
            str(ALERTMANAGER), files["alertmanager"], ports["alertmanager"], tmp_path
        )
        procs.start(
            "prometheus",
            [
                str(PROMETHEUS),
                f"--config.file={files['prometheus']}",
                f"--storage.tsdb.path={tmp_path / 'prometheus'}",
                f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
            ],
            tmp_path,
        )
        prom = f"http://127.0.0.1:{ports['prometheus']}"

        def query(expr: str) -> list[dict[str, Any]]:
            q = urllib.parse.urlencode({"query": expr})
            return get_json(f"{prom}/api/v1/query?{q}")["data"]["result"]

        yield {
            "status": status,
            "discord": discord,
            "procs": procs,
            "query": query,
            "prom": prom,
            "jsonl": tmp_path / "logs" / "metrics.jsonl",
        }
    finally:
        procs.stop_all()
        discord.stop()
        status.stop()


def test_breach_fires_to_discord_and_recovery_resolves(stack: dict[str, Any]) -> None:
    status: FakeStatusServer = stack["status"]
    discord: DiscordReceiver = stack["discord"]
    procs: Processes = stack["procs"]
    query = stack["query"]

    # Healthy: the collector's value reaches Prometheus, nothing is sent.
    procs.wait_until(lambda: query(f'mmo_voxel_tick_rate{{host="{HOST}"}} == 30'), 30, "tick_rate")
    assert discord.messages == []

    # The tick rule holds the (shortened) duration the role was given.
    assert ("MmoVoxelTickRateLow", TICK_FOR_S) in rule_durations(stack["prom"])

    # Breach: tick_rate 12 (< 20). Pending first (its duration running), no message; then firing.
    status.doc = status_doc(tick_rate=12.0)
    procs.wait_until(lambda: alert_state(query, "MmoVoxelTickRateLow") == "pending", 30, "pending")
    assert discord.messages == [], "a message before the alert's duration was over"
    firing = discord.wait_for(lambda t: t.startswith("[FIRING") and "MmoVoxelTickRateLow" in t, 40)
    assert HOST in firing["title"]
    assert "(e2e)" in firing["title"]
    assert f"Tick rate below 20 on {HOST}" in firing["description"]
    assert "runs at 12.0 ticks/s" in firing["description"]
    assert "operations/runbooks/restart.md" in firing["description"]
    assert discord.paths[0] == DiscordReceiver.PATH

    # Recovery: tick_rate back to 30 -> a resolved message for the same alert.
    status.doc = status_doc(tick_rate=30.0)
    resolved = discord.wait_for(
        lambda t: t.startswith("[RESOLVED]") and "MmoVoxelTickRateLow" in t, 40
    )
    assert "RESOLVED: **Tick rate below 20" in resolved["description"]
    # Nothing else fired meanwhile (no dead man while the server answered).
    assert all("MmoVoxelTickRateLow" in t for t in discord.titles())

    # The server stops answering: the collector writes nulls, the series goes away and the
    # dead man fires after its (shortened) window.
    status.stop()
    dead = discord.wait_for(lambda t: t.startswith("[FIRING") and "MmoVoxelMetricsAbsent" in t, 40)
    # It went active only once the newest tick rate Prometheus holds was the window old (the
    # rule's window is in its expression, not a `for`): Prometheus's own times, not this test's.
    last_sample = max(t for t, _ in query(f'mmo_voxel_tick_rate{{host="{HOST}"}}[5m]')[0]["values"])
    assert active_at(stack["prom"], "MmoVoxelMetricsAbsent") - last_sample >= ABSENT_FOR_S
    assert f"No metrics from {HOST}" in dead["description"]
    lines = [json.loads(x) for x in stack["jsonl"].read_text().splitlines()]
    assert lines[-1]["tick_rate"] is None
    assert lines[-1]["version"] is None
    assert not query(f'mmo_voxel_tick_rate{{host="{HOST}"}}')
