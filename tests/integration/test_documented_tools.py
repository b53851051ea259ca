"""Documented `make` targets and repository tools, run as written (tests/documented_commands.yml).

Commands that write into the checkout (the drift report, the leak scan's inputs, incident
records) run in a scratch copy of the tree.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from documented_commands import run_documented, scratch_checkout

pytestmark = pytest.mark.slow


def test_make_unit_and_integration_collect() -> None:
    """As written, collecting only: the target, the venv and the paths are real; the tests
    themselves run in the suite's own run."""
    env = {"PYTEST_ADDOPTS": "--collect-only -q -p no:cacheprovider"}
    for command, folder in (
        ("make unit", "tests/unit/"),
        ("make integration", "tests/integration/"),
    ):
        result = run_documented(command, env=env, timeout=300)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert re.search(r"^\d+ tests collected", result.stdout, re.M), result.stdout[-2000:]
        assert folder in result.stdout


def test_make_drift_without_the_hosts_is_an_error_and_its_report_scans_clean(
    tmp_path: Path,
) -> None:
    checkout = scratch_checkout(tmp_path / "checkout")
    drift = run_documented("make drift INVENTORY=inventories/production", cwd=checkout, timeout=600)
    out = drift.stdout + drift.stderr
    # scripts/drift-check answers 1 (error: unreachable hosts); make turns it into its own 2.
    assert drift.returncode == 2, out[-4000:]
    assert "drift-check: error" in out, out[-4000:]
    report = json.loads((checkout / ".cache" / "drift" / "latest.json").read_text())
    hosts = {name: host["status"] for name, host in report["hosts"].items()}
    # The game servers fail first; the run ends there, so the monitoring host is never reached.
    assert hosts["game-1.example.com"] == hosts["game-2.example.com"] == "error", hosts
    scan = run_documented("scripts/leak-scan --repo-defaults .cache/drift", cwd=checkout)
    assert scan.returncode == 0, scan.stdout + scan.stderr


def test_make_drift_on_the_embedded_default_runs_to_the_end(tmp_path: Path) -> None:
    """As root with no sudo needed, no mitogen respawn trouble, no systemd as PID 1 here."""
    checkout = scratch_checkout(tmp_path / "checkout")
    drift = run_documented("make drift", cwd=checkout, timeout=900)
    out = drift.stdout + drift.stderr
    report = json.loads((checkout / ".cache" / "drift" / "latest.json").read_text())
    hosts = {name: host["status"] for name, host in report["hosts"].items()}
    assert set(hosts) == {"localhost"}, hosts
    # This machine is no converged game server: drift (make's 2) or clean (0), never an error.
    assert hosts["localhost"] in {"drift", "clean"}, out[-4000:]
    assert drift.returncode in {0, 2}, out[-4000:]
    assert "drift-check: error" not in out, out[-4000:]


def test_leak_scan_of_the_test_reports(tmp_path: Path) -> None:
    checkout = scratch_checkout(tmp_path / "checkout")
    reports = checkout / ".cache" / "test-reports"
    reports.mkdir(parents=True)
    (reports / "junit.xml").write_text('<testsuites><testsuite name="pytest"/></testsuites>\n')
    scan = run_documented("scripts/leak-scan --repo-defaults .cache/test-reports", cwd=checkout)
    assert scan.returncode == 0, scan.stdout + scan.stderr


def test_incident_report_and_record(tmp_path: Path) -> None:
    checkout = scratch_checkout(tmp_path / "checkout")
    report = run_documented("operations/tools/incidents.py report", cwd=checkout)
    assert report.returncode == 0, report.stdout + report.stderr
    for name in ("reliability-report.md", "reliability-trend.png"):
        assert (checkout / "operations" / "reliability" / name).stat().st_size > 0
    record = run_documented('operations/tools/incidents.py new --title "..."', cwd=checkout)
    assert record.returncode == 0, record.stdout + record.stderr
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert list((checkout / "operations" / "incidents").glob(f"{today}*.md")), record.stdout


def test_incident_commands_of_the_incidents_readme(tmp_path: Path) -> None:
    """operations/incidents/README.md's three commands, in its order, in a scratch copy."""
    checkout = scratch_checkout(tmp_path / "checkout")
    incidents = checkout / "operations" / "incidents"
    before = {p.name for p in incidents.glob("*.md")}
    record = run_documented(
        'operations/tools/incidents.py new --title "Tick rate fell to 12 on eu-1" --severity SEV2'
        " --service game_server --alert MmoVoxelTickRateLow",
        cwd=checkout,
    )
    assert record.returncode == 0, record.stdout + record.stderr
    (created,) = {p.name for p in incidents.glob("*.md")} - before
    text = (incidents / created).read_text()
    assert 'title: "Tick rate fell to 12 on eu-1"' in text
    assert 'alert: "MmoVoxelTickRateLow"' in text

    # Freshly made, the record still lacks what only a person knows: validate names it.
    unfinished = run_documented("operations/tools/incidents.py validate", cwd=checkout)
    assert unfinished.returncode == 1
    said = unfinished.stdout + unfinished.stderr
    assert f"{created}: field 'runbook': missing (required)" in said
    (incidents / created).write_text(
        text.replace('runbook: ""', "runbook: operations/runbooks/restart.md")
    )
    valid = run_documented("operations/tools/incidents.py validate", cwd=checkout)
    assert valid.returncode == 0, valid.stdout + valid.stderr

    report = run_documented(
        "operations/tools/incidents.py report --from 2026-Q1 --to 2026-Q4", cwd=checkout
    )
    assert report.returncode == 0, report.stdout + report.stderr
    assert (
        "Tick rate fell to 12 on eu-1"
        in (checkout / "operations" / "reliability" / "reliability-report.md").read_text()
    )
