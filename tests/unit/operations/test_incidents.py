"""operations/tools/incidents.py: records, validation, MTTR/MTBF, the report and the CLI.

The sample records are in tests/fixtures/incidents/; every expected figure below was worked out
by hand, with the arithmetic next to it. Range 2026-Q1..2026-Q4, as of 2026-11-15T00:00:00Z.

    record        services                 started           detected  mitigated  resolved
    2026-01-10    game_server              01-10 10:00       10:10     10:40      12:10
    2026-02-20    game_server, database    02-20 08:00 (*)   08:30     09:00      10:30
    2026-03-31    database                 03-31 22:00       22:20     04-01 00:20  04-01 02:00
    2026-10-05    voxel_stream             10-05 12:00       12:05     12:35      13:05
    2026-10-05-2  game_server              10-05 12:30       12:40     12:50      13:20
    2026-11-14    game_server (open)       11-14 20:00       20:30     -          -
    (*) written as 09:00:00+01:00

Quarter lengths: Q1 = 31+28+31 = 90 d = 2160 h; Q2 = 30+31+30 = 91 d = 2184 h;
Q3 = 31+31+30 = 92 d = 2208 h; Q4 up to as-of = Oct 1 -> Nov 15 = 31+14 = 45 d = 1080 h.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
TOOL = REPO / "operations" / "tools" / "incidents.py"
FIXTURES = REPO / "tests" / "fixtures" / "incidents"
AS_OF = datetime(2026, 11, 15, tzinfo=UTC)

_spec = importlib.util.spec_from_file_location("incidents", TOOL)
assert _spec is not None
assert _spec.loader is not None
inc = importlib.util.module_from_spec(_spec)
sys.modules["incidents"] = inc
_spec.loader.exec_module(inc)


def minutes(value: float) -> timedelta:
    return timedelta(minutes=value)


def hours(value: float) -> timedelta:
    return timedelta(hours=value)


@pytest.fixture(scope="module")
def records() -> list:
    return inc.load_records(FIXTURES)


@pytest.fixture(scope="module")
def report(records):
    return inc.build_report(records, (2026, 1), (2026, 4), AS_OF)


# --- per record -----------------------------------------------------------------------------


def test_fixtures_load_and_offsets_become_utc(records):
    by_id = {r.id: r for r in records}
    assert len(by_id) == 6
    assert by_id["2026-02-20"].started == datetime(2026, 2, 20, 8, 0, tzinfo=UTC)  # 09:00+01:00
    assert by_id["2026-02-20"].services == ("game_server", "database")
    assert by_id["2026-11-14"].is_open
    assert by_id["2026-11-14"].to_resolution is None
    # 2026-03-31: detected 22:20, mitigated 00:20 next day, resolved 02:00 next day.
    assert by_id["2026-03-31"].to_mitigation == minutes(120)  # 22:20 -> 00:20
    assert by_id["2026-03-31"].to_resolution == minutes(220)  # 22:20 -> 02:00 = 3 h 40 min


# --- per quarter ----------------------------------------------------------------------------


def test_quarter_with_failures_and_a_spanning_incident(report):
    q1 = report.quarters[0]
    assert q1.label == "2026-Q1"
    assert q1.operating == hours(2160)  # 90 days
    assert q1.failures == 3  # 01-10, 02-20, 03-31 started in Q1
    # 01-10: 10:00->12:10 = 130 min; 02-20: 08:00->10:30 = 150 min;
    # 03-31: 22:00->24:00 = 120 min inside Q1 (the other 120 min fall in Q2). 130+150+120 = 400.
    assert q1.downtime == minutes(400)
    # (2160 h * 60 - 400 min) / 3 = (129600 - 400) / 3 min = 129200 / 3 min = 2,584,000 s
    assert q1.mtbf == timedelta(seconds=2_584_000)
    # to mitigation: 30 (10:10->10:40) + 30 (08:30->09:00) + 120 (22:20->00:20) = 180 / 3 = 60
    assert q1.mttr_mitigation == minutes(60)
    # to resolution: 120 (10:10->12:10) + 120 (08:30->10:30) + 220 = 460 / 3 min = 9200 s
    assert q1.mttr_resolution == timedelta(seconds=9200)


def test_quarter_with_only_the_tail_of_a_spanning_incident(report):
    q2 = report.quarters[1]
    assert q2.failures == 0  # 03-31 counts where it started (Q1)
    assert q2.downtime == minutes(120)  # 04-01 00:00 -> 02:00
    assert q2.mtbf is None  # no failure started: undefined, not infinite
    assert q2.mttr_resolution is None
    assert q2.mttr_mitigation is None
    assert q2.operating == hours(2184)


def test_quarter_with_no_incidents(report):
    q3 = report.quarters[2]
    assert (q3.label, q3.failures, q3.downtime, q3.mtbf) == ("2026-Q3", 0, timedelta(0), None)
    assert q3.operating == hours(2208)
    assert q3.availability == 1.0


def test_current_quarter_with_overlap_and_an_open_incident(report):
    q4 = report.quarters[3]
    assert q4.operating == hours(1080)  # Oct 1 -> as-of Nov 15 = 45 days
    assert q4.failures == 3  # 10-05, 10-05-2 and the open 11-14
    assert (q4.resolved, q4.open) == (2, 1)
    # 10-05 12:00-13:05 and 10-05-2 12:30-13:20 overlap: union 12:00-13:20 = 80 min;
    # open 11-14 20:00 -> as-of 11-15 00:00 = 240 min. 80 + 240 = 320 min.
    assert q4.downtime == minutes(320)
    # (1080 h * 60 - 320) / 3 = (64800 - 320) / 3 min = 64480 / 3 min = 1,289,600 s
    assert q4.mtbf == timedelta(seconds=1_289_600)
    # open 11-14 left out: to mitigation (30 + 10) / 2 = 20; to resolution (60 + 40) / 2 = 50
    assert q4.mttr_mitigation == minutes(20)
    assert q4.mttr_resolution == minutes(50)


def test_whole_range(report):
    total = report.total
    assert total.label == "2026-Q1..2026-Q4"
    assert total.operating == hours(2160 + 2184 + 2208 + 1080)  # 7632 h = 457920 min
    assert total.failures == 6
    assert total.downtime == minutes(840)  # 400 + 120 + 0 + 320
    assert total.mtbf == minutes(76180)  # (457920 - 840) / 6 = 457080 / 6
    assert total.mttr_resolution == minutes(112)  # (120 + 120 + 220 + 60 + 40) / 5 = 560 / 5
    assert total.mttr_mitigation == minutes(44)  # (30 + 30 + 120 + 30 + 10) / 5 = 220 / 5


# --- per service ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "failures", "downtime", "mtbf", "to_mitigation", "to_resolution"),
    [
        # 01-10, 02-20, 10-05-2, 11-14 (open). Downtime 130 + 150 + 50 + 240 = 570 min.
        # MTBF (457920 - 570) / 4 = 457350 / 4 = 114337.5 min. MTTR without the open one:
        # mitigation (30 + 30 + 10) / 3 = 70 / 3 min = 1400 s; resolution (120 + 120 + 40) / 3
        # = 280 / 3 min = 5600 s.
        ("game_server", 4, 570, 114_337.5, 1400 / 60, 5600 / 60),
        # 02-20 (150 min) and 03-31 (240 min, both quarters): 390 min;
        # MTBF (457920 - 390) / 2 = 228765; mitigation (30 + 120) / 2; resolution (120 + 220) / 2
        ("database", 2, 390, 228_765, 75, 170),
        # 10-05 alone: 65 min down; MTBF 457920 - 65 = 457855; 30 and 60 min
        ("voxel_stream", 1, 65, 457_855, 30, 60),
    ],
)
def test_per_service(report, service, failures, downtime, mtbf, to_mitigation, to_resolution):
    item = {s.label: s for s in report.services}[service]
    assert item.failures == failures
    assert item.downtime == minutes(downtime)
    assert item.mtbf == minutes(mtbf)
    assert item.mttr_mitigation == minutes(to_mitigation)
    assert item.mttr_resolution == minutes(to_resolution)


def test_a_range_that_starts_after_a_spanning_incident(records):
    partial = inc.build_report(records, (2026, 2), (2026, 3), AS_OF)
    assert [q.label for q in partial.quarters] == ["2026-Q2", "2026-Q3"]
    # 03-31 started before the range: its Q2 downtime counts, the failure does not.
    assert partial.total.failures == 0
    assert partial.total.downtime == minutes(120)
    assert partial.total.mtbf is None
    assert [s.label for s in partial.services] == ["database"]


def test_a_quarter_not_started_yet_is_refused(records):
    with pytest.raises(ValueError, match="2027-Q1 has not started"):
        inc.build_report(records, (2026, 1), (2027, 1), AS_OF)


def test_quarter_bounds_cross_the_year():
    assert inc.quarter_bounds((2026, 4)) == (
        datetime(2026, 10, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert inc.quarter_of(datetime(2026, 3, 31, 23, 59, tzinfo=UTC)) == (2026, 1)
    # 2026-04-01T00:30+01:00 is 2026-03-31T23:30Z: quarters are UTC.
    assert inc.quarter_of(inc.parse_time("2026-04-01T00:30:00+01:00")) == (2026, 1)


# --- validation -----------------------------------------------------------------------------

GOOD = {
    "id": "2026-11-02",
    "title": "Tick rate fell",
    "severity": "SEV2",
    "started": "2026-11-02T09:00:00Z",
    "detected": "2026-11-02T09:05:00Z",
    "mitigated": "2026-11-02T09:30:00Z",
    "resolved": "2026-11-02T10:00:00Z",
    "services": "[game_server]",
    "alert": "MmoVoxelTickRateLow",
    "runbook": "operations/runbooks/restart.md",
}


def record_text(**changes: str | None) -> str:
    fields = {**GOOD, **changes}
    lines = [f"{key}: {value}" for key, value in fields.items() if value is not None]
    return "---\n" + "\n".join(lines) + "\n---\n\nbody\n"


def test_every_alert_of_the_rules_and_none_are_accepted():
    alerts = inc.known_alerts()
    assert "MmoVoxelTickRateLow" in alerts
    assert "MmoVoxelBackupTooOld" in alerts
    for alert in [*alerts, '"none: player report"']:
        assert inc.parse_record(record_text(alert=alert), "x.md").alert == alert.strip('"')


def test_the_good_record_is_valid():
    assert inc.parse_record(record_text(), "x.md").resolved == datetime(2026, 11, 2, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param(
            {"started": "2026-13-02T09:00:00Z"},
            "field 'started': '2026-13-02T09:00:00Z' is not a valid date-time",
            id="bad-month",
        ),
        pytest.param(
            {"detected": "2026-11-31T09:05:00Z"},
            "field 'detected': '2026-11-31T09:05:00Z' is not a valid date-time",
            id="no-such-day",
        ),
        pytest.param(
            {"alert": "tick_rate_low"},
            "field 'alert': 'tick_rate_low' is not an alert of the monitoring rules"
            " (MmoVoxelTickRateLow, MmoVoxelDbLatencyHigh,",
            id="alert-not-a-rule",
        ),
        pytest.param(
            {"started": "yesterday"},
            "field 'started': 'yesterday' is not a date-time like",
            id="not-a-date",
        ),
        pytest.param(
            {"started": "2026-11-02"},
            "field 'started': '2026-11-02' is not a date-time like",
            id="date-only",
        ),
        pytest.param(
            {"resolved": "2026-11-01T10:00:00Z"},
            "field 'resolved': 2026-11-01T10:00:00Z is before 'started' 2026-11-02T09:00:00Z",
            id="resolved-before-started",
        ),
        pytest.param(
            {"detected": "2026-11-02T08:00:00Z"},
            "field 'detected': 2026-11-02T08:00:00Z is before 'started' 2026-11-02T09:00:00Z",
            id="detected-before-started",
        ),
        pytest.param(
            {"mitigated": "2026-11-02T10:30:00Z"},
            "field 'resolved': 2026-11-02T10:00:00Z is before 'mitigated' 2026-11-02T10:30:00Z",
            id="resolved-before-mitigated",
        ),
        pytest.param(
            {"started": "2026-11-02T09:00:00"},
            "field 'started': '2026-11-02T09:00:00' has no UTC offset",
            id="naive-timestamp",
        ),
        pytest.param(
            {"severity": "SEV5"},
            "field 'severity': 'SEV5' is not one of SEV1, SEV2, SEV3, SEV4",
            id="unknown-severity",
        ),
        pytest.param({"title": None}, "field 'title': missing (required)", id="missing-title"),
        pytest.param(
            {"detected": None}, "field 'detected': missing (required)", id="missing-detected"
        ),
        pytest.param(
            {"services": "[]"}, "field 'services': missing (required)", id="empty-services"
        ),
        pytest.param({"alert": '""'}, "field 'alert': missing (required)", id="empty-alert"),
        pytest.param(
            {"mitigated": '""'},
            "field 'mitigated': missing while 'resolved' is set",
            id="resolved-without-mitigated",
        ),
        pytest.param(
            {"resovled": "2026-11-02T10:00:00Z"}, "field 'resovled': unknown field", id="typo"
        ),
    ],
)
def test_bad_records_are_refused_naming_file_and_field(changes, message):
    with pytest.raises(inc.RecordError) as caught:
        inc.parse_record(record_text(**changes), "operations/incidents/2026-11-02.md")
    assert any(
        m.startswith(f"operations/incidents/2026-11-02.md: {message}")
        for m in caught.value.messages
    ), caught.value.messages


def test_an_open_record_is_valid():
    record = inc.parse_record(record_text(mitigated='""', resolved='""'), "x.md")
    assert record.is_open


def test_every_problem_is_reported_at_once():
    with pytest.raises(inc.RecordError) as caught:
        inc.parse_record(record_text(title=None, severity="P1"), "x.md")
    assert len(caught.value.messages) == 2


def test_a_file_without_front_matter_is_refused():
    with pytest.raises(inc.RecordError, match=r"^x\.md: no front matter"):
        inc.parse_record("# just a heading\n", "x.md")


def test_duplicate_ids_are_refused(tmp_path):
    (tmp_path / "a.md").write_text(record_text(), encoding="utf-8")
    (tmp_path / "b.md").write_text(record_text(), encoding="utf-8")
    with pytest.raises(inc.RecordError, match="field 'id': '2026-11-02' is also the id of"):
        inc.load_records(tmp_path)


# --- the template and `new` -----------------------------------------------------------------


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(TOOL), *args], cwd=cwd, capture_output=True, text=True, check=False
    )


@pytest.fixture
def incidents_dir(tmp_path) -> Path:
    folder = tmp_path / "incidents"
    folder.mkdir()
    shutil.copy(REPO / "operations" / "incidents" / "TEMPLATE.md", folder / "TEMPLATE.md")
    return folder


def test_the_template_lists_every_field_and_is_skipped_as_a_record():
    parts = inc.split_front_matter((REPO / "operations/incidents/TEMPLATE.md").read_text())
    assert parts is not None
    keys = {line.split(":")[0] for line in parts[0].splitlines() if line and line[0] != "#"}
    assert keys == set(inc.REQUIRED) | set(inc.OPTIONAL)
    assert "TEMPLATE.md" in inc.NOT_RECORDS


def test_new_creates_todays_record_and_never_overwrites(incidents_dir):
    today = datetime.now(UTC).date().isoformat()
    first = run_cli("new", "--dir", str(incidents_dir), "--title", "Server down: north")
    assert first.returncode == 0, first.stderr
    path = incidents_dir / f"{today}.md"
    record = inc.parse_record(
        path.read_text()
        .replace('alert: ""', "alert: MmoVoxelTickRateLow")
        .replace('runbook: ""', "runbook: none"),
        str(path),
    )
    assert (record.id, record.title, record.is_open) == (today, "Server down: north", True)
    assert record.started.date().isoformat() == today

    path.write_text(path.read_text() + "\nnotes written by the on-call\n")
    before = path.read_text()
    second = run_cli("new", "--dir", str(incidents_dir))
    third = run_cli("new", "--dir", str(incidents_dir))
    assert second.returncode == third.returncode == 0
    assert path.read_text() == before
    assert sorted(p.name for p in incidents_dir.glob(f"{today}*.md")) == [
        f"{today}-2.md",
        f"{today}-3.md",
        f"{today}.md",
    ]
    assert "id: " + today + "-3\n" in (incidents_dir / f"{today}-3.md").read_text()


def test_new_fills_the_given_fields_and_the_result_validates(incidents_dir):
    created = inc.create_record(
        incidents_dir,
        (incidents_dir / "TEMPLATE.md").read_text(),
        date(2026, 11, 2),
        {
            "title": '"Lag"',
            "started": "2026-11-02T09:00:00Z",
            "detected": "2026-11-02T09:05:00Z",
            "severity": "SEV2",
            "services": "[game_server, database]",
            "alert": "MmoVoxelDbLatencyHigh",
            "runbook": "none",
        },
    )
    assert created.name == "2026-11-02.md"
    check = run_cli("validate", "--dir", str(incidents_dir))
    assert check.returncode == 0, check.stderr
    assert "1 records valid (1 open)" in check.stdout


def test_validate_fails_naming_file_and_field(tmp_path):
    (tmp_path / "2026-11-02.md").write_text(record_text(resolved="2026-11-01T10:00:00Z"))
    proc = run_cli("validate", "--dir", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "2026-11-02.md: field 'resolved': 2026-11-01T10:00:00Z is before 'started' "
        "2026-11-02T09:00:00Z"
    )


def test_the_real_records_are_valid():
    proc = run_cli("validate")
    assert proc.returncode == 0, proc.stderr


# --- the report -----------------------------------------------------------------------------


def test_report_writes_markdown_and_a_png(tmp_path):
    proc = run_cli(
        "report",
        "--dir",
        str(FIXTURES),
        "--out",
        str(tmp_path),
        "--from",
        "2026-Q1",
        "--as-of",
        "2026-11-15T00:00:00Z",
    )
    assert proc.returncode == 0, proc.stderr
    markdown = (tmp_path / "reliability-report.md").read_text()
    # Rendered from the hand-checked figures: Q1 MTBF 2,584,000 s / 86400 = 29.907 d;
    # MTTR to resolution 9200 s = 2.556 h; Q2 has no failure: "—".
    assert "| 2026-Q1 | 3 | 0 | 6.67 h | 99.691 % | 1.00 h | 2.56 h | 29.91 d |" in markdown
    assert "| 2026-Q2 | 0 | 0 | 2.00 h | 99.908 % | — | — | — |" in markdown
    assert "| 2026-Q3 | 0 | 0 | 0.00 h | 100.000 % | — | — | — |" in markdown
    assert "| 2026-11-14 | SEV3 | game_server |" in markdown
    assert "| open |" in markdown
    assert "MTBF is undefined" in markdown
    assert "![MTTR and MTBF per quarter](reliability-trend.png)" in markdown
    png = (tmp_path / "reliability-trend.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # IHDR: width and height, big-endian, right after the signature and chunk header.
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width > 0
    assert height > 0
    assert len(png) > 5000  # a drawn chart, not an empty canvas


def test_report_refuses_invalid_records(tmp_path):
    (tmp_path / "2026-11-02.md").write_text(record_text(severity="SEV9"))
    proc = run_cli("report", "--dir", str(tmp_path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 1
    assert "field 'severity'" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_report_with_no_records_has_empty_quarters(tmp_path):
    empty = inc.build_report([], (2026, 3), (2026, 3), AS_OF)
    assert empty.quarters[0].mtbf is None
    assert "No incidents in the period." in inc.render_markdown(empty)
    chart = inc.render_chart(empty, tmp_path / "chart.png")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
