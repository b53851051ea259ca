"""The alert rules, proven with `promtool test rules` on the file the monitoring role renders.

The rules are rendered from roles/monitoring/templates/ with the role's defaults (the production
values) by ansible-playbook; promtool (Debian package `prometheus`) then replays input series and
checks which alerts fire at which time: silent a second before the duration is over, firing when it
is, silent at the threshold itself. The production thresholds and durations are asserted apart.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from monitoring_helpers import REPO, render
from system_tools import require_tools

PROMTOOL = shutil.which("promtool")


@pytest.fixture(autouse=True)
def _promtool_installed() -> None:
    require_tools("prometheus", PROMTOOL)


HOST = "game-1.example.com"
INSTANCE = f"{HOST}:9464"
TARGET = f'job="mmo_voxel_collector",instance="{INSTANCE}",host="{HOST}"'
TARGET_LABELS = {"job": "mmo_voxel_collector", "instance": INSTANCE, "host": HOST}
STATUS_FILE = "/var/lib/mmo_voxel/db_ops/status.json"
LAST_OK_BACKUP = f'mmo_voxel_db_job_last_ok_timestamp_seconds{{{TARGET},operation="backup"}}'


@pytest.fixture(scope="module")
def rules_file(
    tmp_path_factory: pytest.TempPathFactory, ansible_env: dict[str, str], ansible_playbook: str
) -> Path:
    """The rules file rendered from the role's template with its default (production) values."""
    out = tmp_path_factory.mktemp("rules")
    return render(out, ansible_env, ansible_playbook, ("rules",))["rules"]


@pytest.fixture(scope="module")
def rules(rules_file: Path) -> dict[str, dict[str, Any]]:
    """alert name -> rule, from the rendered file."""
    doc = yaml.safe_load(rules_file.read_text(encoding="utf-8"))
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"]}


def run_promtool(
    tmp_path: Path, rules_file: Path, spec: dict[str, Any]
) -> subprocess.CompletedProcess:
    """Write one promtool unit test file for the rendered rules and run it."""
    test_file = tmp_path / "test.yml"
    test_file.write_text(
        yaml.safe_dump({"rule_files": [str(rules_file)], **spec}, sort_keys=False),
        encoding="utf-8",
    )
    return subprocess.run(
        [PROMTOOL, "test", "rules", str(test_file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def assert_promtool_passes(tmp_path: Path, rules_file: Path, spec: dict[str, Any]) -> None:
    result = run_promtool(tmp_path, rules_file, spec)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def fired(labels: dict[str, str], annotations: dict[str, str]) -> list[dict[str, Any]]:
    return [{"exp_labels": labels, "exp_annotations": annotations}]


def silent(alert: str, *times: str) -> list[dict[str, Any]]:
    return [{"eval_time": t, "alertname": alert, "exp_alerts": []} for t in times]


# --------------------------------------------------------------------------------------------
# The production values (what the guide says), read from the rendered file
# --------------------------------------------------------------------------------------------
def test_production_thresholds_and_durations(rules: dict[str, dict[str, Any]]) -> None:
    assert rules["MmoVoxelTickRateLow"]["expr"] == "mmo_voxel_tick_rate < 20"
    assert rules["MmoVoxelTickRateLow"]["for"] == "3m"
    assert rules["MmoVoxelDbLatencyHigh"]["expr"] == "mmo_voxel_db_latency_ms > 50"
    assert rules["MmoVoxelDbLatencyHigh"]["for"] == "5m"
    assert rules["MmoVoxelVoxelStreamFailHigh"]["expr"] == "mmo_voxel_voxel_stream_fail > 10"
    assert rules["MmoVoxelVoxelStreamFailHigh"]["for"] == "5m"
    assert "count_over_time(mmo_voxel_tick_rate[3m])" in rules["MmoVoxelMetricsAbsent"]["expr"]
    assert "> 46800" in rules["MmoVoxelBackupTooOld"]["expr"]  # 13 h
    assert rules["MmoVoxelBackupMissing"]["for"] == "780m"  # 13 h
    assert (
        rules["MmoVoxelDbHealthCheckFailed"]["expr"]
        == 'mmo_voxel_db_job_ok{operation="check"} == 0'
    )
    assert (
        rules["MmoVoxelRestoreDrillFailed"]["expr"] == 'mmo_voxel_db_job_ok{operation="drill"} == 0'
    )
    assert rules["MmoVoxelAntiCheatBurst"]["expr"] == (
        "floor(increase(mmo_voxel_anti_cheat_events_total[10m])) > 30"
    )
    assert rules["MmoVoxelAntiCheatPlayer"]["expr"] == "mmo_voxel_anti_cheat_player_events > 5"
    assert rules["MmoVoxelAntiCheatMalformedLines"]["expr"] == (
        "floor(increase(mmo_voxel_anti_cheat_malformed_lines_total[10m])) > 0"
    )
    for name in (
        "MmoVoxelAntiCheatBurst",
        "MmoVoxelAntiCheatPlayer",
        "MmoVoxelAntiCheatMalformedLines",
    ):
        assert "for" not in rules[name], f"{name}: the window is the duration"


def test_every_rule_has_summary_description_and_an_existing_runbook(
    rules: dict[str, dict[str, Any]],
) -> None:
    assert len(rules) == 12
    for name, rule in rules.items():
        ann = rule["annotations"]
        assert ann["summary"], name
        assert "$value" in ann["description"], f"{name}: the description must show the value"
        url = ann["runbook_url"]
        assert url.startswith("operations/runbooks/"), name
        page = REPO / url.split("#", 1)[0]
        assert page.is_file(), f"{name}: runbook {page} does not exist"


def test_promtool_accepts_the_rendered_rules(rules_file: Path) -> None:
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(rules_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 12 rules found" in result.stdout


# --------------------------------------------------------------------------------------------
# The guide's three thresholds (1 s resolution: input every second, rules evaluated every second)
# --------------------------------------------------------------------------------------------
TICK_ANN = {
    "summary": f"Tick rate below 20 on {HOST}",
    "description": f"The game server on {HOST} runs at 19.0 ticks/s, under 20 for more than 3m: "
    "players feel lag.",
    "runbook_url": "operations/runbooks/restart.md",
}


def test_tick_rate_below_20_fires_after_exactly_3_minutes(tmp_path: Path, rules_file: Path) -> None:
    # 30 for the first minute, then 19 from t=60s: pending from 60s, firing at 60s + 3m = 4m.
    spec = {
        "evaluation_interval": "1s",
        "tests": [
            {
                "interval": "1s",
                "input_series": [
                    {"series": f"mmo_voxel_tick_rate{{{TARGET}}}", "values": "30x59 19x400"}
                ],
                "alert_rule_test": [
                    *silent("MmoVoxelTickRateLow", "59s", "1m", "3m59s"),  # 19 for 2m59s
                    {
                        "eval_time": "4m",  # 19 for 3m
                        "alertname": "MmoVoxelTickRateLow",
                        "exp_alerts": fired({**TARGET_LABELS, "severity": "critical"}, TICK_ANN),
                    },
                ],
            },
            {  # exactly at the threshold: never
                "interval": "1s",
                "input_series": [
                    {"series": f"mmo_voxel_tick_rate{{{TARGET}}}", "values": "20x900"}
                ],
                "alert_rule_test": silent("MmoVoxelTickRateLow", "3m", "4m", "15m"),
            },
            {  # 19 for 2m59s, then back to 25: the alert never fires
                "interval": "1s",
                "input_series": [
                    {"series": f"mmo_voxel_tick_rate{{{TARGET}}}", "values": "30x59 19x178 25x400"}
                ],
                "alert_rule_test": silent("MmoVoxelTickRateLow", "3m59s", "4m", "5m", "10m"),
            },
        ],
    }
    assert_promtool_passes(tmp_path, rules_file, spec)


def test_db_latency_over_50_fires_after_exactly_5_minutes(tmp_path: Path, rules_file: Path) -> None:
    ann = {
        "summary": f"World database slow on {HOST}",
        "description": f"A read on the world database of {HOST} takes 51.5 ms, over 50 ms for "
        "more than 5m.",
        "runbook_url": "operations/runbooks/db-rollback.md",
    }
    series = f"mmo_voxel_db_latency_ms{{{TARGET}}}"
    spec = {
        "evaluation_interval": "1s",
        "tests": [
            {
                "interval": "1s",
                "input_series": [{"series": series, "values": "2x59 51.5x600"}],
                "alert_rule_test": [
                    *silent("MmoVoxelDbLatencyHigh", "5m59s"),  # over 50 for 4m59s
                    {
                        "eval_time": "6m",
                        "alertname": "MmoVoxelDbLatencyHigh",
                        "exp_alerts": fired({**TARGET_LABELS, "severity": "warning"}, ann),
                    },
                ],
            },
            {
                "interval": "1s",
                "input_series": [{"series": series, "values": "50x900"}],
                "alert_rule_test": silent("MmoVoxelDbLatencyHigh", "5m", "6m", "15m"),
            },
            {
                "interval": "1s",
                "input_series": [{"series": series, "values": "2x59 80x298 3x400"}],
                "alert_rule_test": silent("MmoVoxelDbLatencyHigh", "5m59s", "6m", "10m"),
            },
        ],
    }
    assert_promtool_passes(tmp_path, rules_file, spec)


def test_voxel_stream_fail_over_10_fires_after_exactly_5_minutes(
    tmp_path: Path, rules_file: Path
) -> None:
    ann = {
        "summary": f"Voxel streams failing on {HOST}",
        "description": f"11 voxel stream failures in the last collection interval on {HOST}, "
        "over 10 for more than 5m: chunks may be damaged.",
        "runbook_url": "operations/runbooks/chunk-repair.md",
    }
    series = f"mmo_voxel_voxel_stream_fail{{{TARGET}}}"
    spec = {
        "evaluation_interval": "1s",
        "tests": [
            {
                "interval": "1s",
                "input_series": [{"series": series, "values": "0x59 11x600"}],
                "alert_rule_test": [
                    *silent("MmoVoxelVoxelStreamFailHigh", "5m59s"),
                    {
                        "eval_time": "6m",
                        "alertname": "MmoVoxelVoxelStreamFailHigh",
                        "exp_alerts": fired({**TARGET_LABELS, "severity": "warning"}, ann),
                    },
                ],
            },
            {
                "interval": "1s",
                "input_series": [{"series": series, "values": "10x900"}],
                "alert_rule_test": silent("MmoVoxelVoxelStreamFailHigh", "5m", "6m", "15m"),
            },
            {
                "interval": "1s",
                "input_series": [{"series": series, "values": "0x59 40x298 0x400"}],
                "alert_rule_test": silent("MmoVoxelVoxelStreamFailHigh", "6m", "10m"),
            },
        ],
    }
    assert_promtool_passes(tmp_path, rules_file, spec)


# --------------------------------------------------------------------------------------------
# The dead man: the series stops (server down: the collector leaves it out; collector down:
# the scrape fails and Prometheus marks the series stale)
# --------------------------------------------------------------------------------------------
def deadman_ann(up: int) -> dict[str, str]:
    return {
        "summary": f"No metrics from {HOST}",
        "description": f"No tick_rate from {HOST} for 3m (collector scrape up = {up}): the game "
        "server or its metrics collector is down.",
        "runbook_url": "operations/runbooks/restart.md",
    }


@pytest.mark.parametrize(
    ("case", "up_values", "tick_values", "up_after"),
    [
        # The server stops answering at 10m: the collector still answers, without tick_rate.
        ("server stops answering", "1x1200", "30x599", 1),
        # The collector dies at 10m: the scrape fails (up 0) and the series is marked stale.
        ("collector dies", "1x599 0x600", "30x599 stale", 0),
    ],
    ids=["server-stops-answering", "collector-dies"],
)
def test_deadman_fires_3_minutes_after_the_series_stops(
    tmp_path: Path, rules_file: Path, case: str, up_values: str, tick_values: str, up_after: int
) -> None:
    # The last tick_rate sample is at 9m59s: it is inside the 3m window until 12m59s.
    spec = {
        "evaluation_interval": "1s",
        "tests": [
            {
                "interval": "1s",
                "input_series": [
                    {"series": f"up{{{TARGET}}}", "values": up_values},
                    {"series": f"mmo_voxel_tick_rate{{{TARGET}}}", "values": tick_values},
                ],
                "alert_rule_test": [
                    *silent("MmoVoxelMetricsAbsent", "1m", "9m59s", "10m", "12m59s"),
                    {
                        "eval_time": "13m",
                        "alertname": "MmoVoxelMetricsAbsent",
                        "exp_alerts": fired(
                            {**TARGET_LABELS, "severity": "critical"}, deadman_ann(up_after)
                        ),
                    },
                ],
            }
        ],
    }
    assert_promtool_passes(tmp_path, rules_file, spec)


def test_deadman_fires_for_a_target_that_never_sent_metrics(
    tmp_path: Path, rules_file: Path
) -> None:
    """A collector that answers but never had a status (server never came up) is dead too."""
    spec = {
        "evaluation_interval": "1s",
        "tests": [
            {
                "interval": "1s",
                "input_series": [{"series": f"up{{{TARGET}}}", "values": "1x300"}],
                "alert_rule_test": [
                    {
                        "eval_time": "1m",
                        "alertname": "MmoVoxelMetricsAbsent",
                        "exp_alerts": fired(
                            {**TARGET_LABELS, "severity": "critical"}, deadman_ann(1)
                        ),
                    }
                ],
            }
        ],
    }
    assert_promtool_passes(tmp_path, rules_file, spec)


# --------------------------------------------------------------------------------------------
# Database operations (input every minute; the test clock starts at Unix time 0)
# --------------------------------------------------------------------------------------------
def test_backup_older_than_13h_fires(tmp_path: Path, rules_file: Path) -> None:
    last_ok = LAST_OK_BACKUP
    ann = {
        "summary": f"No verified backup for 13 h on {HOST}",
        "description": f"The newest verified backup of {HOST} is 13h 1m 0s old (limit 13 h); "
        f"see the backup entry of {STATUS_FILE}.",
        "runbook_url": "operations/runbooks/db-rollback-and-chunk-repair.md",
    }
    spec = {
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                # The last verified backup finished at time 0 and none since.
                "input_series": [{"series": last_ok, "values": "0x900"}],
                "alert_rule_test": [
                    *silent("MmoVoxelBackupTooOld", "12h", "13h"),
                    {
                        "eval_time": "13h1m",
                        "alertname": "MmoVoxelBackupTooOld",
                        "exp_alerts": fired(
                            {**TARGET_LABELS, "operation": "backup", "severity": "critical"}, ann
                        ),
                    },
                ],
            },
            {
                # A backup every 12 h (at 0 and 12 h): the newest is never 13 h old.
                "interval": "1m",
                "input_series": [{"series": last_ok, "values": "0x719 43200x700"}],
                "alert_rule_test": silent("MmoVoxelBackupTooOld", "13h", "13h1m", "20h"),
            },
        ],
    }
    assert_promtool_passes(tmp_path, rules_file, spec)


def test_no_verified_backup_known_for_13h_fires(tmp_path: Path, rules_file: Path) -> None:
    ann = {
        "summary": f"No verified backup known on {HOST}",
        "description": f"{HOST} has reported no verified backup (collector up = 1) for 13 h; "
        f"see {STATUS_FILE}.",
        "runbook_url": "operations/runbooks/db-rollback-and-chunk-repair.md",
    }
    failed = f'mmo_voxel_db_job_ok{{{TARGET},operation="backup"}}'
    spec = {
        "evaluation_interval": "1m",
        "tests": [
            {
                # The backup job ran and failed every time (last_ok_at null: no gauge).
                "interval": "1m",
                "input_series": [
                    {"series": f"up{{{TARGET}}}", "values": "1x900"},
                    {"series": failed, "values": "0x900"},
                ],
                "alert_rule_test": [
                    *silent("MmoVoxelBackupMissing", "1m", "12h59m"),
                    {
                        "eval_time": "13h",
                        "alertname": "MmoVoxelBackupMissing",
                        "exp_alerts": fired({**TARGET_LABELS, "severity": "critical"}, ann),
                    },
                ],
            },
            {
                # A verified backup is known: never.
                "interval": "1m",
                "input_series": [
                    {"series": f"up{{{TARGET}}}", "values": "1x900"},
                    {
                        "series": LAST_OK_BACKUP,
                        "values": "0+60x900",
                    },
                ],
                "alert_rule_test": silent("MmoVoxelBackupMissing", "13h", "14h"),
            },
        ],
    }
    assert_promtool_passes(tmp_path, rules_file, spec)


@pytest.mark.parametrize(
    ("operation", "alert", "summary", "description", "runbook"),
    [
        (
            "check",
            "MmoVoxelDbHealthCheckFailed",
            f"World database health check failed on {HOST}",
            f"The last database health check on {HOST} failed (ok = 0); the reason is the check "
            f"entry's detail in {STATUS_FILE}.",
            "operations/runbooks/db-rollback-and-chunk-repair.md#1-is-the-database-damaged-and-how",
        ),
        (
            "drill",
            "MmoVoxelRestoreDrillFailed",
            f"Restore drill failed on {HOST}",
            f"The last restore drill on {HOST} failed (ok = 0): a restore from the newest backup "
            f"might not work; the reason is the drill entry's detail in {STATUS_FILE}.",
            "operations/runbooks/db-rollback.md",
        ),
        (
            "backup",
            "MmoVoxelBackupFailed",
            f"World database backup failed on {HOST}",
            f"The last scheduled backup on {HOST} failed (ok = 0); the reason is the backup "
            f"entry's detail in {STATUS_FILE}.",
            "operations/runbooks/db-rollback-and-chunk-repair.md",
        ),
    ],
    ids=["check", "drill", "backup"],
)
def test_failed_db_job_fires_when_the_status_says_failed(
    tmp_path: Path,
    rules_file: Path,
    operation: str,
    alert: str,
    summary: str,
    description: str,
    runbook: str,
) -> None:
    series = f'mmo_voxel_db_job_ok{{{TARGET},operation="{operation}"}}'
    other = "drill" if operation == "check" else "check"
    spec = {
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                # ok for 10 minutes, then the job fails; the other job fails throughout and must
                # not trip this alert; then the job succeeds again at 20m.
                "input_series": [
                    {"series": series, "values": "1x9 0x9 1x10"},
                    {
                        "series": f'mmo_voxel_db_job_ok{{{TARGET},operation="{other}"}}',
                        "values": "0x30",
                    },
                ],
                "alert_rule_test": [
                    *silent(alert, "9m", "9m59s"),
                    {
                        "eval_time": "10m",
                        "alertname": alert,
                        "exp_alerts": fired(
                            {**TARGET_LABELS, "operation": operation, "severity": "critical"},
                            {
                                "summary": summary,
                                "description": description,
                                "runbook_url": runbook,
                            },
                        ),
                    },
                    *silent(alert, "20m"),
                ],
            }
        ],
    }
    assert_promtool_passes(tmp_path, rules_file, spec)


# --------------------------------------------------------------------------------------------
# Anti-cheat events (input every 15 s, the production scrape interval; rules evaluated every
# 15 s). The collector's counters step once a collection (a minute).
# --------------------------------------------------------------------------------------------
ANTI_CHEAT_EVENTS = "mmo_voxel_anti_cheat_events_total"


def counter_values(steps: dict[int, int], minutes: int) -> str:
    """A counter sampled every 15 s for `minutes`, going up by steps[m] at minute m."""
    values, total = [], 0
    for sample in range(minutes * 4 + 1):
        if sample % 4 == 0:
            total += steps.get(sample // 4, 0)
        values.append(str(total))
    return " ".join(values)


def burst_ann(count: int, kind: str = "speed") -> dict[str, str]:
    return {
        "summary": f"Anti-cheat burst of {kind} on {HOST}",
        "description": f"{count} {kind} anti-cheat events on {HOST} in the last 10m, over 30: "
        "cheaters at work, or a check that misfires.",
        "runbook_url": "operations/runbooks/anti-cheat.md",
    }


def test_anti_cheat_burst_fires_on_the_31st_event_of_one_kind_in_10_minutes(
    tmp_path: Path, rules_file: Path
) -> None:
    """4 speed events a minute from minute 10: 28 by 16m, 32 at 17m; fly stays at 1 a minute."""
    speed = f'{ANTI_CHEAT_EVENTS}{{{TARGET},kind="speed"}}'
    fly = f'{ANTI_CHEAT_EVENTS}{{{TARGET},kind="fly"}}'
    labels = {**TARGET_LABELS, "kind": "speed", "severity": "warning"}
    spec = {
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                "input_series": [
                    {
                        "series": speed,
                        "values": counter_values(dict.fromkeys(range(10, 20), 4), 40),
                    },
                    {"series": fly, "values": counter_values(dict.fromkeys(range(40), 1), 40)},
                ],
                "alert_rule_test": [
                    *silent("MmoVoxelAntiCheatBurst", "10m", "16m45s"),  # 28 in the window
                    {
                        "eval_time": "17m",  # 32
                        "alertname": "MmoVoxelAntiCheatBurst",
                        "exp_alerts": fired(labels, burst_ann(32)),
                    },
                    {
                        "eval_time": "19m",  # 40: every event of the burst is in the window
                        "alertname": "MmoVoxelAntiCheatBurst",
                        "exp_alerts": fired(labels, burst_ann(40)),
                    },
                    # Ten minutes after 17m the first events have left the window: 28 again.
                    *silent("MmoVoxelAntiCheatBurst", "27m", "35m"),
                ],
            },
            {  # one step of 31 (a collection that read a whole burst): firing at that sample
                "interval": "15s",
                "input_series": [{"series": speed, "values": counter_values({20: 31}, 40)}],
                "alert_rule_test": [
                    *silent("MmoVoxelAntiCheatBurst", "19m45s"),
                    {
                        "eval_time": "20m",
                        "alertname": "MmoVoxelAntiCheatBurst",
                        "exp_alerts": fired(labels, burst_ann(31)),
                    },
                    {
                        "eval_time": "29m45s",
                        "alertname": "MmoVoxelAntiCheatBurst",
                        "exp_alerts": fired(labels, burst_ann(31)),
                    },
                    *silent("MmoVoxelAntiCheatBurst", "30m"),
                ],
            },
            {  # exactly the threshold, at once or spread out: never
                "interval": "15s",
                "input_series": [
                    {"series": speed, "values": counter_values({20: 30}, 40)},
                    {"series": fly, "values": counter_values(dict.fromkeys(range(10, 40), 3), 40)},
                ],
                "alert_rule_test": silent("MmoVoxelAntiCheatBurst", "20m", "25m", "29m45s", "40m"),
            },
        ],
    }
    assert_promtool_passes(tmp_path, rules_file, spec)


def test_anti_cheat_burst_across_a_collector_restart(tmp_path: Path, rules_file: Path) -> None:
    """The counter starts again at 0 when the collector restarts: no burst made of the drop,
    and none hidden by it (increase() counts across the reset)."""
    speed = f'{ANTI_CHEAT_EVENTS}{{{TARGET},kind="speed"}}'
    labels = {**TARGET_LABELS, "kind": "speed", "severity": "warning"}
    # 500 events long ago; restart at 20m (back to 0); then 5 a minute.
    after_restart = counter_values(dict.fromkeys(range(1, 20), 5), 19).split()
    values = " ".join(["500"] * 80 + after_restart)
    spec = {
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                "input_series": [{"series": speed, "values": values}],
                "alert_rule_test": [
                    # At 26m: 30 since the restart (the drop from 500 counts nothing).
                    *silent("MmoVoxelAntiCheatBurst", "20m", "21m", "26m"),
                    {
                        "eval_time": "27m",  # 35
                        "alertname": "MmoVoxelAntiCheatBurst",
                        "exp_alerts": fired(labels, burst_ann(35)),
                    },
                ],
            },
            {  # 20 before the restart and 15 after it, inside ten minutes: 35, a burst
                "interval": "15s",
                "input_series": [
                    {
                        "series": speed,
                        "values": " ".join(
                            counter_values({10: 20}, 11).split() + ["0"] * 3 + ["15"] * 100
                        ),
                    }
                ],
                "alert_rule_test": [
                    *silent("MmoVoxelAntiCheatBurst", "10m", "11m45s"),  # 20 so far
                    {
                        "eval_time": "12m",
                        "alertname": "MmoVoxelAntiCheatBurst",
                        "exp_alerts": fired(labels, burst_ann(35)),
                    },
                ],
            },
        ],
    }
    assert_promtool_passes(tmp_path, rules_file, spec)


def test_anti_cheat_player_over_5_in_one_interval_fires(tmp_path: Path, rules_file: Path) -> None:
    series = f'mmo_voxel_anti_cheat_player_events{{{TARGET},player="17"}}'
    other = f'mmo_voxel_anti_cheat_player_events{{{TARGET},player="4"}}'
    ann = {
        "summary": f"Player 17 trips the anti-cheat checks on {HOST}",
        "description": f"Player 17 on {HOST} tripped 6 anti-cheat checks in one collection "
        "interval, over 5.",
        "runbook_url": "operations/runbooks/anti-cheat.md",
    }
    spec = {
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                # 3 a minute, then 6 in the collection at 10m, then 2; player 4 at 5 throughout.
                "input_series": [
                    {"series": series, "values": "3x39 6x3 2x40"},
                    {"series": other, "values": "5x100"},
                ],
                "alert_rule_test": [
                    *silent("MmoVoxelAntiCheatPlayer", "1m", "9m45s"),
                    {
                        "eval_time": "10m",
                        "alertname": "MmoVoxelAntiCheatPlayer",
                        "exp_alerts": fired(
                            {**TARGET_LABELS, "player": "17", "severity": "warning"}, ann
                        ),
                    },
                    *silent("MmoVoxelAntiCheatPlayer", "11m", "15m"),
                ],
            }
        ],
    }
    assert_promtool_passes(tmp_path, rules_file, spec)


def test_anti_cheat_malformed_lines_fire_at_the_first_one(tmp_path: Path, rules_file: Path) -> None:
    series = f"mmo_voxel_anti_cheat_malformed_lines_total{{{TARGET}}}"
    ann = {
        "summary": f"Malformed lines in anti_cheat.jsonl on {HOST}",
        "description": f"Lines of anti_cheat.jsonl on {HOST} that are no anti-cheat record (not "
        "JSON, no check, cut off) in the last 10m: 1. Events may be lost.",
        "runbook_url": "operations/runbooks/anti-cheat.md#malformed-lines",
    }
    spec = {
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                "input_series": [{"series": series, "values": "0x39 1x100"}],
                "alert_rule_test": [
                    *silent("MmoVoxelAntiCheatMalformedLines", "1m", "9m45s"),
                    {
                        "eval_time": "10m",
                        "alertname": "MmoVoxelAntiCheatMalformedLines",
                        "exp_alerts": fired({**TARGET_LABELS, "severity": "warning"}, ann),
                    },
                    {
                        "eval_time": "19m45s",
                        "alertname": "MmoVoxelAntiCheatMalformedLines",
                        "exp_alerts": fired({**TARGET_LABELS, "severity": "warning"}, ann),
                    },
                    # No new one for a whole window: resolved.
                    *silent("MmoVoxelAntiCheatMalformedLines", "20m", "25m"),
                ],
            },
            {  # none, and a collector restart (7 -> 0) that is no new malformed line: never
                "interval": "15s",
                "input_series": [{"series": series, "values": "7x40 0x60"}],
                "alert_rule_test": silent(
                    "MmoVoxelAntiCheatMalformedLines", "5m", "10m", "10m15s", "20m"
                ),
            },
        ],
    }
    assert_promtool_passes(tmp_path, rules_file, spec)


def test_promtool_harness_reports_a_wrong_expectation(tmp_path: Path, rules_file: Path) -> None:
    """The control: expecting the tick alert a second early must make promtool fail."""
    spec = {
        "evaluation_interval": "1s",
        "tests": [
            {
                "interval": "1s",
                "input_series": [
                    {"series": f"mmo_voxel_tick_rate{{{TARGET}}}", "values": "30x59 19x400"}
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "3m59s",
                        "alertname": "MmoVoxelTickRateLow",
                        "exp_alerts": fired({**TARGET_LABELS, "severity": "critical"}, TICK_ANN),
                    }
                ],
            }
        ],
    }
    result = run_promtool(tmp_path, rules_file, spec)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr
