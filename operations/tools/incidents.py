#!/usr/bin/env python3
"""Incident records (operations/incidents/*.md) and the quarterly reliability report.

Pure functions: parse and validate a record, compute MTTR/MTBF per quarter and per service,
render the Markdown report and the trend chart. The definitions are in
operations/incidents/README.md and in the report header (DEFINITIONS below).

    operations/tools/incidents.py new [--title T] [--date YYYY-MM-DD] [--severity SEV3] ...
    operations/tools/incidents.py validate [--dir operations/incidents]
    operations/tools/incidents.py report [--out operations/reliability] \
        [--from 2026-Q1 --to 2026-Q4] [--as-of 2026-12-31T23:59:59Z]

Exit codes: 0 ok, 1 invalid records or bad arguments (each message names the file and field).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
INCIDENTS_DIR = REPO / "operations" / "incidents"
REPORT_DIR = REPO / "operations" / "reliability"
# Files in the incidents folder that are not records.
NOT_RECORDS = {"TEMPLATE.md", "README.md"}

SEVERITIES = {
    "SEV1": "world down or data lost for all players on a server",
    "SEV2": "major degradation many players notice (lag, disconnects, a region of the world)",
    "SEV3": "partial: one feature or some players, a workaround exists",
    "SEV4": "minor: little player impact, but it needed ops work",
}
# The alerts an incident can name: the Prometheus rules the monitoring role installs.
ALERT_RULES = REPO / "roles/monitoring/templates/etc/prometheus/rules/mmo_voxel.rules.yml.j2"
TIME_FIELDS = ("started", "detected", "mitigated", "resolved")
REQUIRED = ("id", "title", "severity", "started", "detected", "services", "alert", "runbook")
OPTIONAL = ("mitigated", "resolved")
KNOWN = set(REQUIRED) | set(OPTIONAL)

DEFINITIONS = """\
- **Failure**: every incident record is one failure of each service it lists. It counts in the
  quarter (UTC) in which it *started*.
- **MTTR to resolution** = mean(`resolved` - `detected`); **MTTR to mitigation** =
  mean(`mitigated` - `detected`), over the resolved incidents that started in the period. We
  measure from detection because that is the part ops can shorten with runbooks; the time from
  start to detection is the alerting's share and shows in MTBF's downtime instead. Open
  incidents (no `resolved` yet) are listed but left out of both MTTRs: their repair time is
  not known yet.
- **Downtime** = time from `started` to `resolved` (open incidents: to the report's as-of
  time). Mitigation often restores service only in part, so downtime runs to resolution.
  Overlapping incidents count once (the union of their intervals). An incident that spans the
  end of a quarter counts as a failure in the quarter it started, and its downtime is split
  across the quarters by time.
- **MTBF** = (operating time in the period - downtime in the period) / failures that started in
  the period. Operating time is the whole quarter, or up to the as-of time for the current one.
  With no failure started in a period MTBF is undefined and shown as "—" (not infinite, not 0).
- **Per service**: an incident that lists several services counts once for each of them.
- All times carry an offset (`Z` or `±hh:mm`); quarters are calendar quarters in UTC.
"""


class RecordError(ValueError):
    """One or more problems with incident records; each message names the file and the field."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


@dataclass(frozen=True)
class Incident:
    path: str
    id: str
    title: str
    severity: str
    started: datetime
    detected: datetime
    mitigated: datetime | None
    resolved: datetime | None
    services: tuple[str, ...]
    alert: str
    runbook: str

    @property
    def is_open(self) -> bool:
        return self.resolved is None

    @property
    def to_mitigation(self) -> timedelta | None:
        return None if self.mitigated is None else self.mitigated - self.detected

    @property
    def to_resolution(self) -> timedelta | None:
        return None if self.resolved is None else self.resolved - self.detected


# --- parsing and validation ---------------------------------------------------------------


class _StringLoader(yaml.SafeLoader):
    """SafeLoader without YAML's implicit timestamps: times stay text and are parsed strictly."""


_StringLoader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(?P<offset>Z|[+-]\d{2}:\d{2})?$"
)


def parse_time(value: object) -> datetime:
    """An RFC 3339 / ISO 8601 date-time with an offset, as an aware datetime in UTC."""
    text = str(value).strip()
    match = _RFC3339.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a date-time like 2026-11-02T09:00:00Z")
    if not match.group("offset"):
        raise ValueError(f"{text!r} has no UTC offset; write it with Z or ±hh:mm")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid date-time ({exc})") from None
    return parsed.astimezone(UTC)


def _fmt(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def split_front_matter(text: str) -> tuple[str, str] | None:
    """(front matter, body) of a Markdown file starting with a '---' block, or None."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return None
    for index, line in enumerate(lines[1:], start=1):
        if line.strip() in {"---", "..."}:
            return "".join(lines[1:index]), "".join(lines[index + 1 :])
    return None


def _load_front_matter(text: str, path: str) -> dict:
    parts = split_front_matter(text)
    if parts is None:
        raise RecordError([f"{path}: no front matter (a '---' block at the top)"])
    try:
        data = yaml.load(parts[0], Loader=_StringLoader)  # noqa: S506  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise RecordError([f"{path}: front matter is not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise RecordError([f"{path}: front matter must be a mapping of fields"])
    return data


def _check_services(raw: object, err: Callable[[str, str], None]) -> tuple[str, ...]:
    if isinstance(raw, str) and raw:
        return (raw,)
    if isinstance(raw, list) and all(isinstance(s, str) and s for s in raw):
        return tuple(dict.fromkeys(raw))
    if raw not in (None, "", []):
        err("services", "must be a list of service names, e.g. [game_server, database]")
    return ()


def _check_times(data: dict, err: Callable[[str, str], None]) -> dict[str, datetime | None]:
    times: dict[str, datetime | None] = {}
    for name in TIME_FIELDS:
        times[name] = None
        if data.get(name) not in (None, ""):
            try:
                times[name] = parse_time(data[name])
            except ValueError as exc:
                err(name, str(exc))
    # started <= detected <= mitigated <= resolved; name the earliest field it precedes.
    for later_index, later in enumerate(TIME_FIELDS[1:], start=1):
        for earlier in TIME_FIELDS[:later_index]:
            later_value, earlier_value = times[later], times[earlier]
            if later_value and earlier_value and later_value < earlier_value:
                err(later, f"{_fmt(later_value)} is before '{earlier}' {_fmt(earlier_value)}")
                break
    if times["resolved"] is not None and data.get("mitigated") in (None, ""):
        err("mitigated", "missing while 'resolved' is set (use the resolution time if the same)")
    return times


def known_alerts(rules: Path = ALERT_RULES) -> tuple[str, ...]:
    """The alert names of the rules file; empty when the tool runs without the repository."""
    try:
        text = rules.read_text(encoding="utf-8")
    except OSError:
        return ()
    return tuple(re.findall(r"^\s*-\s*alert:\s*(\S+)\s*$", text, re.MULTILINE))


def _check_alert(raw: object, err: Callable[[str, str], None]) -> None:
    alert = str(raw or "")
    alerts = known_alerts()
    if not alert or not alerts or alert in alerts or alert.startswith("none"):
        return
    err(
        "alert",
        f"{alert!r} is not an alert of the monitoring rules ({', '.join(alerts)}),"
        " nor 'none: <how it was noticed>'",
    )


def parse_record(text: str, path: str) -> Incident:
    """Parse and validate one record.

    Raises RecordError listing every problem found, each naming the file and the field.
    """
    data = _load_front_matter(text, path)
    errors: list[str] = []

    def err(name: str, message: str) -> None:
        errors.append(f"{path}: field '{name}': {message}")

    for name in sorted(set(data) - KNOWN, key=str):
        err(name, f"unknown field (known: {', '.join(REQUIRED + OPTIONAL)})")
    for name in REQUIRED:
        if data.get(name) in (None, "", []):
            err(name, "missing (required)")
    severity = str(data.get("severity") or "")
    if severity and severity not in SEVERITIES:
        err("severity", f"{severity!r} is not one of {', '.join(SEVERITIES)}")
    services = _check_services(data.get("services"), err)
    _check_alert(data.get("alert"), err)
    times = _check_times(data, err)
    if errors:
        raise RecordError(errors)
    started, detected = times["started"], times["detected"]
    if started is None or detected is None:  # pragma: no cover - the required check caught it
        raise RecordError([f"{path}: field 'started': missing (required)"])
    return Incident(
        path=path,
        id=str(data["id"]),
        title=str(data["title"]),
        severity=severity,
        started=started,
        detected=detected,
        mitigated=times["mitigated"],
        resolved=times["resolved"],
        services=services,
        alert=str(data["alert"]),
        runbook=str(data["runbook"]),
    )


def display_path(path: Path) -> str:
    """The path relative to the working directory when it is below it, else as given."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def record_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.md") if p.name not in NOT_RECORDS)


def load_records(folder: Path) -> list[Incident]:
    """Every record in the folder; RecordError with all problems of all files."""
    incidents: list[Incident] = []
    errors: list[str] = []
    seen: dict[str, str] = {}
    for path in record_files(folder):
        shown = display_path(path)
        try:
            incident = parse_record(path.read_text(encoding="utf-8"), shown)
        except RecordError as exc:
            errors.extend(exc.messages)
            continue
        if incident.id in seen:
            errors.append(
                f"{shown}: field 'id': {incident.id!r} is also the id of {seen[incident.id]}"
            )
            continue
        seen[incident.id] = shown
        incidents.append(incident)
    if errors:
        raise RecordError(errors)
    return incidents


# --- quarters and figures -----------------------------------------------------------------

Quarter = tuple[int, int]
_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")


def parse_quarter(text: str) -> Quarter:
    match = _QUARTER.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a quarter like 2026-Q1")
    return int(match.group(1)), int(match.group(2))


def quarter_of(moment: datetime) -> Quarter:
    moment = moment.astimezone(UTC)
    return moment.year, (moment.month - 1) // 3 + 1


def quarter_label(quarter: Quarter) -> str:
    return f"{quarter[0]}-Q{quarter[1]}"


def quarter_bounds(quarter: Quarter) -> tuple[datetime, datetime]:
    year, number = quarter
    start = datetime(year, 3 * number - 2, 1, tzinfo=UTC)
    end = (
        datetime(year + 1, 1, 1, tzinfo=UTC)
        if number == 4
        else datetime(year, 3 * number + 1, 1, tzinfo=UTC)
    )
    return start, end


def quarters_between(first: Quarter, last: Quarter) -> list[Quarter]:
    if first > last:
        raise ValueError(f"--from {quarter_label(first)} is after --to {quarter_label(last)}")
    out, current = [], first
    while current <= last:
        out.append(current)
        current = (current[0] + 1, 1) if current[1] == 4 else (current[0], current[1] + 1)
    return out


@dataclass(frozen=True)
class Figures:
    """Reliability figures for one period (a quarter or a whole range), one service or all."""

    label: str
    operating: timedelta
    downtime: timedelta
    failures: int
    resolved: int
    open: int
    mttr_mitigation: timedelta | None
    mttr_resolution: timedelta | None
    mtbf: timedelta | None
    incident_ids: tuple[str, ...] = field(default=())

    @property
    def availability(self) -> float | None:
        if not self.operating:
            return None
        return 1 - self.downtime / self.operating


def _union_length(intervals: list[tuple[datetime, datetime]]) -> timedelta:
    total = timedelta(0)
    current: tuple[datetime, datetime] | None = None
    for start, end in sorted(intervals):
        if current is None or start > current[1]:
            if current is not None:
                total += current[1] - current[0]
            current = (start, end)
        else:
            current = (current[0], max(current[1], end))
    if current is not None:
        total += current[1] - current[0]
    return total


def _mean(values: list[timedelta]) -> timedelta | None:
    return sum(values, timedelta(0)) / len(values) if values else None


def figures(
    incidents: list[Incident],
    start: datetime,
    end: datetime,
    as_of: datetime,
    label: str,
    service: str | None = None,
) -> Figures:
    """Figures for [start, end) cut at as_of, for one service (None: any service)."""
    end = min(end, as_of)
    operating = max(end - start, timedelta(0))
    chosen = [i for i in incidents if service is None or service in i.services]
    intervals = []
    for incident in chosen:
        down_from = max(incident.started, start)
        down_to = min(incident.resolved or as_of, end)
        if down_to > down_from:
            intervals.append((down_from, down_to))
    downtime = _union_length(intervals)
    started_here = [i for i in chosen if start <= i.started < end]
    done = [i for i in started_here if not i.is_open]
    failures = len(started_here)
    return Figures(
        label=label,
        operating=operating,
        downtime=downtime,
        failures=failures,
        resolved=len(done),
        open=failures - len(done),
        mttr_mitigation=_mean([i.to_mitigation for i in done if i.to_mitigation is not None]),
        mttr_resolution=_mean([i.to_resolution for i in done if i.to_resolution is not None]),
        mtbf=(operating - downtime) / failures if failures else None,
        incident_ids=tuple(i.id for i in started_here),
    )


@dataclass(frozen=True)
class Report:
    as_of: datetime
    quarters: list[Figures]
    total: Figures
    services: list[Figures]
    incidents: list[Incident]


def default_range(incidents: list[Incident], as_of: datetime) -> tuple[Quarter, Quarter]:
    last = quarter_of(as_of)
    first = min((quarter_of(i.started) for i in incidents), default=last)
    return min(first, last), last


def build_report(
    incidents: list[Incident],
    first: Quarter,
    last: Quarter,
    as_of: datetime,
) -> Report:
    if quarter_bounds(last)[0] >= as_of:
        raise ValueError(f"--to {quarter_label(last)} has not started yet (as of {_fmt(as_of)})")
    quarters = quarters_between(first, last)
    start, end = quarter_bounds(quarters[0])[0], quarter_bounds(quarters[-1])[1]
    per_quarter = [
        figures(incidents, *quarter_bounds(q), as_of=as_of, label=quarter_label(q))
        for q in quarters
    ]
    span = f"{quarter_label(first)}..{quarter_label(last)}"
    in_range = [
        i for i in incidents if i.started < min(end, as_of) and (i.resolved or as_of) > start
    ]
    services = sorted({s for i in in_range for s in i.services})
    return Report(
        as_of=as_of,
        quarters=per_quarter,
        total=figures(incidents, start, end, as_of, label=span),
        services=[figures(incidents, start, end, as_of, label=s, service=s) for s in services],
        incidents=sorted(in_range, key=lambda i: i.started),
    )


# --- rendering ----------------------------------------------------------------------------


def hours(value: timedelta | None) -> str:
    return "—" if value is None else f"{value.total_seconds() / 3600:.2f} h"


def days(value: timedelta | None) -> str:
    return "—" if value is None else f"{value.total_seconds() / 86400:.2f} d"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.3f} %"


def _row(item: Figures) -> str:
    cells = [
        item.label,
        str(item.failures),
        str(item.open),
        hours(item.downtime),
        percent(item.availability),
        hours(item.mttr_mitigation),
        hours(item.mttr_resolution),
        days(item.mtbf),
    ]
    return "| " + " | ".join(cells) + " |"


_HEAD = (
    "| {first} | failures | open | downtime | availability | MTTR to mitigation "
    "| MTTR to resolution | MTBF |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def render_markdown(
    report: Report, source: str = "operations/incidents", chart_name: str = "reliability-trend.png"
) -> str:
    lines = [
        "# Reliability report",
        "",
        f"Generated by `operations/tools/incidents.py report` from `{source}/`, "
        f"as of {_fmt(report.as_of)}; period {report.total.label}.",
        "",
        "## Definitions",
        "",
        DEFINITIONS.rstrip(),
        "",
        "## Per quarter",
        "",
        _HEAD.format(first="quarter"),
        *(_row(q) for q in report.quarters),
        _row(report.total).replace(report.total.label, f"**{report.total.label}**", 1),
        "",
        f"![MTTR and MTBF per quarter]({chart_name})",
        "",
        "## Per service (whole period)",
        "",
    ]
    if report.services:
        lines += [_HEAD.format(first="service"), *(_row(s) for s in report.services)]
    else:
        lines.append("No incidents in the period.")
    lines += ["", "## Incidents", ""]
    if report.incidents:
        lines += [
            "| id | severity | services | started | to mitigation | to resolution | status "
            "| record |",
            "| --- | --- | --- | --- | ---: | ---: | --- | --- |",
        ]
        for i in report.incidents:
            status = "open" if i.is_open else "resolved"
            lines.append(
                f"| {i.id} | {i.severity} | {', '.join(i.services)} | {_fmt(i.started)} "
                f"| {hours(i.to_mitigation)} | {hours(i.to_resolution)} | {status} "
                f"| `{i.path}` — {i.title} |"
            )
    else:
        lines.append("No incidents in the period.")
    return "\n".join(lines) + "\n"


def render_chart(report: Report, out: Path) -> Path:
    """Write the trend chart (PNG): MTTR per quarter on top, MTBF and failures below."""
    import matplotlib  # noqa: PLC0415  # only the report needs it; import late, headless

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # noqa: PLC0415

    labels = [q.label for q in report.quarters]
    xs = list(range(len(labels)))

    def series(values: list[timedelta | None], unit: float) -> list[float]:
        return [math.nan if v is None else v.total_seconds() / unit for v in values]

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    top.plot(
        xs, series([q.mttr_mitigation for q in report.quarters], 3600), "o-", label="to mitigation"
    )
    top.plot(
        xs, series([q.mttr_resolution for q in report.quarters], 3600), "s-", label="to resolution"
    )
    top.set_ylabel("MTTR (hours)")
    top.set_ylim(bottom=0)
    top.set_title(f"Reliability per quarter (as of {_fmt(report.as_of)})")
    top.legend()
    top.grid(alpha=0.3)
    bottom.bar(xs, [q.failures for q in report.quarters], color="#cccccc", label="failures")
    bottom.set_ylabel("failures")
    mtbf_axis = bottom.twinx()
    mtbf_axis.plot(xs, series([q.mtbf for q in report.quarters], 86400), "d-", color="tab:green")
    mtbf_axis.set_ylabel("MTBF (days; gap: no failure)")
    mtbf_axis.set_ylim(bottom=0)
    bottom.set_xticks(xs, labels)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
    return out


# --- new record ---------------------------------------------------------------------------


def fill_template(template: str, values: dict[str, str]) -> str:
    """Replace `key: ...` lines of the template's front matter; comments and body stay."""
    parts = split_front_matter(template)
    if parts is None:
        raise ValueError("TEMPLATE.md has no front matter")
    front, body = parts
    for key, value in values.items():
        front, count = re.subn(
            rf"^{re.escape(key)}:.*$",
            lambda _m, k=key, v=value: f"{k}: {v}",
            front,
            count=1,
            flags=re.M,
        )
        if not count:
            raise ValueError(f"TEMPLATE.md has no field {key!r}")
    return f"---\n{front}---\n{body}"


def create_record(folder: Path, template: str, day: date, values: dict[str, str]) -> Path:
    """Write YYYY-MM-DD.md (or -2, -3, ... when taken); never overwrites."""
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(1, 1000):
        stem = day.isoformat() if number == 1 else f"{day.isoformat()}-{number}"
        path = folder / f"{stem}.md"
        text = fill_template(template, {"id": stem, **values})
        try:
            with path.open("x", encoding="utf-8") as handle:
                handle.write(text)
        except FileExistsError:
            continue
        return path
    raise RuntimeError(f"{folder}: 999 records for {day}; not creating another")


def _yaml_scalar(value: str) -> str:
    return yaml.safe_dump(value, default_style='"', width=1000).strip()


# --- CLI ----------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    new = sub.add_parser("new", help="create today's record from TEMPLATE.md (never overwrites)")
    new.add_argument("--dir", type=Path, default=INCIDENTS_DIR, help="incidents folder")
    new.add_argument("--title", default="", help="one line: what players saw")
    new.add_argument("--date", type=date.fromisoformat, help="YYYY-MM-DD (default: today, UTC)")
    new.add_argument("--severity", choices=list(SEVERITIES), help="SEV1..SEV4")
    new.add_argument("--service", action="append", default=[], help="affected service (repeat)")
    new.add_argument("--alert", default="", help="the alert that caught it, or 'none'")
    new.add_argument("--runbook", default="", help="runbook used, or 'none'")
    new.add_argument("--started", help="RFC 3339 time it began (default: now, without --date)")
    new.add_argument("--detected", help="RFC 3339 time it was noticed (default: as --started)")

    check = sub.add_parser("validate", help="check every record; exit 1 naming file and field")
    check.add_argument("--dir", type=Path, default=INCIDENTS_DIR)

    rep = sub.add_parser("report", help="write reliability-report.md and reliability-trend.png")
    rep.add_argument("--dir", type=Path, default=INCIDENTS_DIR)
    rep.add_argument("--out", type=Path, default=REPORT_DIR)
    rep.add_argument("--from", dest="first", type=parse_quarter, help="first quarter (2026-Q1)")
    rep.add_argument("--to", dest="last", type=parse_quarter, help="last quarter (default: now)")
    rep.add_argument("--as-of", type=parse_time, help="RFC 3339 'now' (default: the current time)")
    return parser


def _cmd_new(args: argparse.Namespace, now: datetime) -> int:
    values = {"title": _yaml_scalar(args.title)}
    # Without --date the record is for now; with a past --date the times are left to fill in.
    started = parse_time(args.started) if args.started else (None if args.date else now)
    detected = parse_time(args.detected) if args.detected else started
    if started:
        values["started"] = _fmt(started)
    if detected:
        values["detected"] = _fmt(detected)
    if args.severity:
        values["severity"] = args.severity
    if args.service:
        values["services"] = "[" + ", ".join(args.service) + "]"
    if args.alert:
        values["alert"] = _yaml_scalar(args.alert)
    if args.runbook:
        values["runbook"] = _yaml_scalar(args.runbook)
    template = (args.dir / "TEMPLATE.md").read_text(encoding="utf-8")
    path = create_record(args.dir, template, args.date or now.date(), values)
    print(f"created {display_path(path)}: fill in the fields, then run validate")
    return 0


def _cmd_report(args: argparse.Namespace, incidents: list[Incident], now: datetime) -> int:
    as_of = args.as_of or now
    first, last = default_range(incidents, as_of)
    report = build_report(incidents, args.first or first, args.last or last, as_of)
    args.out.mkdir(parents=True, exist_ok=True)
    markdown = args.out / "reliability-report.md"
    markdown.write_text(render_markdown(report, display_path(args.dir)), encoding="utf-8")
    chart = render_chart(report, args.out / "reliability-trend.png")
    print(f"wrote {display_path(markdown)} and {display_path(chart)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    precise = datetime.now(UTC)
    now = precise.replace(microsecond=0)
    try:
        if args.command == "new":
            return _cmd_new(args, now)
        incidents = load_records(args.dir)
        if args.command == "validate":
            opened = sum(i.is_open for i in incidents)
            print(f"{len(incidents)} records valid ({opened} open)")
            return 0
        # Not cut to the second: a record `new` wrote a moment ago (its times are whole
        # seconds) started before this report's "now", even within the same second.
        return _cmd_report(args, incidents, precise)
    except RecordError as exc:
        for message in exc.messages:
            print(message, file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
