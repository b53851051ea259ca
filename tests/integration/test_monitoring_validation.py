"""A wrong value for a `monitoring` or `metrics_collector` variable stops the play before any
change, naming the variable (and never printing the Discord webhook or the PagerDuty key).

The roles run against this machine in check mode, so even a validation that let bad input
through could not change anything here; the assertions prove it stopped first.
"""

from __future__ import annotations

import pytest

GOOD_WEBHOOK = "http://127.0.0.1:9/api/webhooks/1/validation-token"


@pytest.mark.parametrize(
    ("role", "extra_vars", "failing_task", "message"),
    [
        pytest.param(
            "monitoring",
            {"monitoring_alertmanager_discord_webhook_url": ""},
            "Assert monitoring_alertmanager_discord_webhook_url is an http(s) URL",
            "",  # no_log: the task name is the message
            id="webhook-missing",
        ),
        pytest.param(
            "monitoring",
            {"monitoring_alertmanager_discord_webhook_url": "ftp://leak-me-not.example/x"},
            "Assert monitoring_alertmanager_discord_webhook_url is an http(s) URL",
            "",
            id="webhook-not-http",
        ),
        pytest.param(
            "monitoring",
            {
                "monitoring_alertmanager_discord_webhook_url": GOOD_WEBHOOK,
                # Not a 32-character integration key (and a secret: never printed).
                "monitoring_alertmanager_pagerduty_routing_key": "leak-me-not-0123456789",
            },
            "Assert monitoring_alertmanager_pagerduty_routing_key is empty or a PagerDuty",
            "",
            id="pagerduty-key-malformed",
        ),
        pytest.param(
            "monitoring",
            {
                "monitoring_alertmanager_discord_webhook_url": GOOD_WEBHOOK,
                "monitoring_alert_tick_rate_for": "3 minutes",
            },
            "Assert the durations are Prometheus durations",
            "monitoring_alert_tick_rate_for '3 minutes' must be a Prometheus duration",
            id="bad-duration",
        ),
        pytest.param(
            "monitoring",
            {
                "monitoring_alertmanager_discord_webhook_url": GOOD_WEBHOOK,
                "monitoring_alert_db_latency_ms_max": "fifty",
            },
            "Validating arguments against arg spec",
            "monitoring_alert_db_latency_ms_max",
            id="threshold-not-a-number",
        ),
        pytest.param(
            "monitoring",
            {
                "monitoring_alertmanager_discord_webhook_url": GOOD_WEBHOOK,
                "monitoring_collector_hosts": ["game-1"],
                "monitoring_collector_addresses": {"game-1": "10.0.0.1"},
            },
            "Assert the collector hosts are names and their addresses host:port",
            "monitoring_collector_addresses a mapping of host name to HOST:PORT",
            id="address-without-port",
        ),
        pytest.param(
            "metrics_collector",
            {
                "metrics_collector_interval": 5,
                "metrics_collector_status_timeout": 4,
                "metrics_collector_db_timeout": 2,
            },
            "Assert the host and the variables are usable",
            "must be positive and shorter than metrics_collector_interval (5)",
            id="timeouts-longer-than-interval",
        ),
        pytest.param(
            "metrics_collector",
            {"metrics_collector_output": "logs/metrics.jsonl"},
            "Assert the host and the variables are usable",
            "metrics_collector_output 'logs/metrics.jsonl': each must be an absolute path",
            id="relative-output",
        ),
        pytest.param(
            "metrics_collector",
            {"metrics_collector_status_url": "127.0.0.1:8080/status"},
            "Assert the host and the variables are usable",
            "metrics_collector_status_url '127.0.0.1:8080/status' must be an http(s) URL",
            id="status-url-without-scheme",
        ),
        pytest.param(
            "metrics_collector",
            {"metrics_collector_shipper_host": "game 1; rm -rf /"},
            "Assert the host and the variables are usable",
            "metrics_collector_shipper_host 'game 1; rm -rf /' a host name",
            id="shipper-host-not-a-name",
        ),
        pytest.param(
            # Several mistakes at once: the one check names every one of them.
            "metrics_collector",
            {
                "metrics_collector_output": "logs/metrics.jsonl",
                "metrics_collector_install_dir": "opt/collector",
                "metrics_collector_anti_cheat_top_players": 500,
            },
            "Assert the host and the variables are usable",
            "metrics_collector_output 'logs/metrics.jsonl', metrics_collector_install_dir"
            " 'opt/collector': each must be an absolute path without spaces or quotes;"
            " metrics_collector_anti_cheat_top_players '500' must be a whole number from 0 to 100",
            id="several-mistakes-named-at-once",
        ),
        pytest.param(
            "metrics_collector",
            {"metrics_collector_port": "ninety"},
            "Validating arguments against arg spec",
            "metrics_collector_port",
            id="port-not-a-number",
        ),
    ],
)
def test_bad_input_stops_before_any_change(
    role: str, extra_vars: dict, failing_task: str, message: str, check_role
) -> None:
    result = check_role(role, extra_vars)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-3000:]
    assert "failed=1" in out
    assert "changed=0" in out, "something changed before the validation stopped the play"
    failed_task = out.split("fatal:")[0].rsplit("TASK [", 1)[1].split("]", 1)[0]
    assert failing_task in failed_task, out[-3000:]
    assert message in out, out[-3000:]
    # Nothing of the webhook reaches the output, even a wrong one.
    assert "leak-me-not" not in out
    assert "validation-token" not in out
