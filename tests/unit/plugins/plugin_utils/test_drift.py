from __future__ import annotations

import json
from pathlib import Path

import pytest

from ansible_collections.mmo_voxel.ops.plugins.plugin_utils.drift import (
    EXIT_CLEAN,
    EXIT_DRIFT,
    EXIT_ERROR,
    REDACTED,
    Change,
    DriftReport,
    prune,
    read_history,
    redact,
    render_diff,
    secret_values,
    to_markdown,
    trend_markdown,
    write_report,
)


@pytest.mark.parametrize(
    ("diff", "expected_lines"),
    [
        (None, []),
        ({}, []),
        (
            {
                "before": "a\nb\n",
                "after": "a\nc\n",
                "before_header": "/etc/x",
                "after_header": "/etc/x",
            },
            ["--- before: /etc/x", "+++ after: /etc/x", "@@ -1,2 +1,2 @@", " a", "-b", "+c"],
        ),
        (
            {"before": {"mode": "0644"}, "after": {"mode": "0600"}},
            ['-    "mode": "0644"', '+    "mode": "0600"'],
        ),
        (
            {"prepared": "The following packages will be installed: foo"},
            ["The following packages will be installed: foo"],
        ),
        ({"dst_binary": 1}, ["diff skipped: destination file appears to be binary"]),
        ([{"before": "", "after": "x\n"}, {"prepared": "p"}], ["+x", "p"]),
    ],
)
def test_render_diff(diff, expected_lines: list[str]) -> None:
    lines = render_diff(diff).splitlines()
    for expected in expected_lines:
        assert expected in lines
    if not expected_lines:
        assert lines == []


@pytest.mark.parametrize(
    ("text", "secrets", "expected"),
    [
        ("token is hunter22", {"hunter22"}, f"token is {REDACTED}"),
        ("ab abcdef", {"abcdef", "abc"}, f"ab {REDACTED}"),  # longest first: no 'def' left over
        ("api_key = s3cr3tvalue", set(), f"api_key = {REDACTED}"),
        ("DISCORD_WEBHOOK: https://discord/x/y", set(), f"DISCORD_WEBHOOK: {REDACTED}"),
        ('"password": "pw123456"', set(), f'"password": {REDACTED}'),
        ("tick_rate = 30", set(), "tick_rate = 30"),
        ("keyboard = qwerty", set(), "keyboard = qwerty"),
        ("-bearer = tok-123", {"tok-123"}, f"-bearer = {REDACTED}"),
    ],
)
def test_redact(text: str, secrets: set[str], expected: str) -> None:
    assert redact(text, secrets) == expected


def test_secret_values_by_name_at_any_depth() -> None:
    variables = {
        "discord_webhook_url": "https://discord.example/api/webhooks/1/abc",
        "server": {"admin_token": "tok-abcdef", "port": 7777, "name": "game-1"},
        "users": [{"name": "alice", "password": "pw-alice-1"}],
        "secret_list": ["one-secret", "two-secret"],
        "tick_rate": "30",
        "short_token": "abc",  # too short to redact safely
        "db_credential_file": "/etc/x",
        "extra_name": "listed-by-name",
    }
    assert secret_values(variables, ["extra_name"]) == {
        "https://discord.example/api/webhooks/1/abc",
        "tok-abcdef",
        "pw-alice-1",
        "one-secret",
        "two-secret",
        "/etc/x",
        "listed-by-name",
    }


def test_the_passwd_and_group_facts_are_not_secrets() -> None:
    """getent's facts name "passwd" but hold /etc/passwd: a user called backup is no secret.

    The shadow database (password hashes) stays secret."""
    facts = {
        "getent_passwd": {"backup": ["x", "34", "34", "backup", "/var/backups", "/bin/false"]},
        "getent_group": {"docker": ["x", "999", "alice"]},
        "getent_shadow": {"alice": ["$y$j9T$hash-of-alice", "19000"]},
    }
    assert secret_values({"ansible_facts": facts, **facts}) == {"$y$j9T$hash-of-alice", "19000"}


def report_with(**hosts: list[Change] | str) -> DriftReport:
    report = DriftReport(started="2026-11-28T12:00:00Z")
    for name, value in hosts.items():
        if isinstance(value, str):
            report.add_error(name, value, unreachable=value == "unreachable")
        else:
            report.host(name)
            for change in value:
                report.add_change(name, change)
    return report


@pytest.mark.parametrize(
    ("hosts", "code", "status"),
    [
        ({"a": [], "b": []}, EXIT_CLEAN, "clean"),
        ({"a": [Change(task="t", action="copy")], "b": []}, EXIT_DRIFT, "drift"),
        ({"a": [Change(task="t", action="copy")], "b": "unreachable"}, EXIT_ERROR, "error"),
        ({"a": [], "b": "task failed"}, EXIT_ERROR, "error"),
    ],
)
def test_exit_code_contract(hosts: dict, code: int, status: str) -> None:
    report = report_with(**hosts)
    assert report.exit_code() == code
    assert report.summary()["status"] == status


def test_markdown_names_host_task_and_hides_no_log() -> None:
    report = report_with(
        web=[
            Change(
                task="Write config", action="ansible.builtin.template", role="base", diff="-a\n+b\n"
            ),
            Change(task="Write key", action="ansible.builtin.copy", hidden=True),
        ],
        quiet=[],
    )
    text = to_markdown(report)
    assert "1 of 2 hosts drifted (2 tasks would change)" in text
    assert "## web" in text
    assert "`base : Write config` [ansible.builtin.template]" in text
    assert "details hidden" in text
    assert "## quiet" not in text


def test_write_report_keeps_newest_and_history(tmp_path: Path) -> None:
    for minute in range(4):
        report = report_with(a=[])
        report.started = f"2026-11-28T12:0{minute}:00Z"
        write_report(tmp_path, report, keep=2)
    kept = sorted(p.name for p in tmp_path.glob("drift-*"))
    assert kept == [
        "drift-20261128T120200Z.json",
        "drift-20261128T120200Z.md",
        "drift-20261128T120300Z.json",
        "drift-20261128T120300Z.md",
    ]
    assert json.loads((tmp_path / "latest.json").read_text())["started"] == "2026-11-28T12:03:00Z"
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 4
    assert not list(tmp_path.glob(".*.tmp"))


def test_markdown_report_ends_with_the_trend_and_names_repeat_drifters(tmp_path: Path) -> None:
    runs = [("a", "b"), (), ("a",), ("a", "c")]
    for minute, drifted in enumerate(runs):
        report = report_with(
            **{
                h: ([Change(task="t", action="copy")] if h in drifted else [])
                for h in ("a", "b", "c")
            }
        )
        report.started = f"2026-11-28T12:0{minute}:00Z"
        write_report(tmp_path, report, keep=10)
    text = (tmp_path / "latest.md").read_text()
    trend = text[text.index("## Trend (last 4 runs)") :]
    rows = [line for line in trend.splitlines() if line.startswith("| 2026")]
    # newest first, with each run's own counts
    assert rows == [
        "| 2026-11-28T12:03:00Z | drift | 2 | 0 | 3 |",
        "| 2026-11-28T12:02:00Z | drift | 1 | 0 | 3 |",
        "| 2026-11-28T12:01:00Z | clean | 0 | 0 | 3 |",
        "| 2026-11-28T12:00:00Z | drift | 2 | 0 | 3 |",
    ]
    # a drifted three times, b and c once: only a is a repeat drifter
    assert "Drifted in more than one of these runs: a (3 of 4)." in trend
    # the first run's report saw only itself
    first = json.loads((tmp_path / "history.jsonl").read_text().splitlines()[0])
    assert first["drifted_hosts"] == ["a", "b"]


def test_trend_keeps_the_last_runs_and_skips_a_cut_line(tmp_path: Path) -> None:
    lines = [
        json.dumps(
            {
                "started": f"r{i:02d}",
                "status": "clean",
                "drifted": 0,
                "errors": 0,
                "hosts": 1,
                "drifted_hosts": [],
            }
        )
        for i in range(20)
    ]
    (tmp_path / "history.jsonl").write_text("\n".join(lines) + '\n{"started": "r2\n')
    history = read_history(tmp_path)
    assert len(history) == 20
    trend = trend_markdown(history, runs=5)
    assert trend[0] == "## Trend (last 5 runs)"
    assert [row.split(" | ")[0] for row in trend[4:]] == [
        "| r19",
        "| r18",
        "| r17",
        "| r16",
        "| r15",
    ]
    assert not any("more than one" in row for row in trend)


def test_prune_refuses_nothing_to_keep(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep must be at least 1"):
        write_report(tmp_path, report_with(a=[]), keep=0)
    assert prune(tmp_path, 5) == []
