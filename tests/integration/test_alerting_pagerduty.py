"""Escalation beyond Discord: the optional PagerDuty receiver (issue #20), against local receivers.

The real Alertmanager (Debian's package) runs with the configuration the monitoring role renders
(its template, through ansible-playbook) with a PagerDuty integration key set and the Events API
pointed at a local HTTP receiver that answers as PagerDuty does (202); Discord's webhook is a
local receiver as in test_alerting_e2e.py. Alerts are posted to Alertmanager's own API, one of each
severity the rules use: the critical one pages (trigger, then resolve when it ends) and reaches
Discord; the warning reaches Discord only. Without a key the rendered file has no PagerDuty
receiver at all (the default).
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from discord_receiver import WebhookReceiver
from monitoring_helpers import DiscordReceiver, Processes, render
from system_tools import free_port, require_tools

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
AMTOOL = shutil.which("amtool")
pytestmark = [pytest.mark.slow]


class PagerDutyReceiver(WebhookReceiver):
    """PagerDuty's Events API v2: answers 202 to an accepted event."""

    PATH = "/v2/enqueue"
    STATUS = 202


@pytest.fixture(autouse=True)
def _alertmanager_installed() -> None:
    require_tools("prometheus-alertmanager and amtool", ALERTMANAGER, AMTOOL)


def config(tmp_path: Path, env: dict[str, str], playbook: str, extra: dict[str, Any]) -> Path:
    return render(tmp_path / "etc", env, playbook, ("alertmanager",), extra)["alertmanager"]


def amtool_check(conf: Path) -> None:
    checked = subprocess.run(
        [AMTOOL, "check-config", str(conf)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.fixture
def alertmanager(
    tmp_path: Path, ansible_env: dict[str, str], ansible_playbook: str
) -> Iterator[dict[str, Any]]:
    discord = DiscordReceiver()
    pagerduty = PagerDutyReceiver()
    key = secrets.token_hex(16)  # 32 characters, like a PagerDuty integration key
    port = free_port()
    conf = config(
        tmp_path,
        ansible_env,
        ansible_playbook,
        {
            "monitoring_alertmanager_discord_webhook_url": discord.url,
            "monitoring_alertmanager_pagerduty_routing_key": key,
            "monitoring_alertmanager_pagerduty_url": pagerduty.url,
            "monitoring_alertmanager_group_wait": "1s",
            "monitoring_alertmanager_group_interval": "1s",
        },
    )
    amtool_check(conf)
    procs = Processes()
    try:
        procs.start_alertmanager(str(ALERTMANAGER), conf, port, tmp_path)
        yield {
            "url": f"http://127.0.0.1:{port}",
            "discord": discord,
            "pagerduty": pagerduty,
            "key": key,
            "procs": procs,
        }
    finally:
        procs.stop_all()
        discord.stop()
        pagerduty.stop()


def post_alert(base: str, name: str, severity: str, host: str, *, ended: bool = False) -> None:
    now = datetime.now(UTC).isoformat()
    alert = {
        "labels": {
            "alertname": name,
            "severity": severity,
            "host": host,
            "environment": "e2e",
        },
        "annotations": {
            "summary": f"{name} on {host}",
            "runbook_url": "operations/runbooks/restart.md",
        },
        "startsAt": now,
    }
    if ended:
        alert["endsAt"] = now
    request = urllib.request.Request(  # noqa: S310 (http://127.0.0.1, below)
        f"{base}/api/v2/alerts",
        data=json.dumps([alert]).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    # http://127.0.0.1: the Alertmanager this test started.
    with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310
        assert resp.status == 200


def test_critical_alerts_page_and_every_alert_reaches_discord(alertmanager: dict) -> None:
    base, procs = alertmanager["url"], alertmanager["procs"]
    discord: DiscordReceiver = alertmanager["discord"]
    pagerduty: PagerDutyReceiver = alertmanager["pagerduty"]
    procs.wait_until(lambda: _ready(base), 30, "Alertmanager to answer")

    post_alert(base, "MmoVoxelServerDown", "critical", "game-1")
    post_alert(base, "MmoVoxelDiskFilling", "warning", "game-2")

    titles = procs.wait_until(
        lambda: len(discord.titles()) >= 2 and discord.titles(), 30, "both alerts on Discord"
    )
    assert any("MmoVoxelServerDown game-1" in t for t in titles), titles
    assert any("MmoVoxelDiskFilling game-2" in t for t in titles), titles
    trigger = procs.wait_until(pagerduty.received, 30, "the page")[0].body
    assert pagerduty.paths[0] == PagerDutyReceiver.PATH
    assert trigger["routing_key"] == alertmanager["key"]
    assert trigger["event_action"] == "trigger"
    assert trigger["payload"]["severity"] == "critical"
    assert "MmoVoxelServerDown game-1 (e2e)" in trigger["payload"]["summary"]
    details = trigger["payload"]["custom_details"]
    assert details["host"] == "game-1"
    assert details["runbook"] == "operations/runbooks/restart.md"

    # The critical alert ends: the incident is resolved (same dedup key), and Discord says so.
    post_alert(base, "MmoVoxelServerDown", "critical", "game-1", ended=True)
    events = procs.wait_until(
        lambda: len(pagerduty.messages) >= 2 and pagerduty.messages, 30, "the resolve"
    )
    assert events[1]["event_action"] == "resolve"
    assert events[1]["dedup_key"] == trigger["dedup_key"]
    discord.wait_for(lambda t: t.startswith("[RESOLVED]") and "MmoVoxelServerDown" in t, 30)
    # The warning never paged: the only events are the critical alert's trigger and resolve.
    assert [(e["event_action"], e["dedup_key"]) for e in pagerduty.messages] == [
        ("trigger", trigger["dedup_key"]),
        ("resolve", trigger["dedup_key"]),
    ]


def _ready(base: str) -> bool:
    # An OSError (not listening yet) is a "not yet" for Processes.wait_until.
    with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as resp:  # noqa: S310
        return resp.status == 200


def test_without_a_key_there_is_no_pagerduty_receiver(
    tmp_path: Path, ansible_env: dict[str, str], ansible_playbook: str
) -> None:
    conf = config(
        tmp_path,
        ansible_env,
        ansible_playbook,
        {"monitoring_alertmanager_discord_webhook_url": "http://127.0.0.1:9/api/webhooks/1/x"},
    )
    amtool_check(conf)
    loaded = yaml.safe_load(conf.read_text())
    assert [r["name"] for r in loaded["receivers"]] == ["discord"]
    assert "routes" not in loaded["route"]
    assert "pagerduty" not in conf.read_text()
