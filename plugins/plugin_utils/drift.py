"""Drift reports: what a check-mode run of the declared configuration would change, per host.

Pure logic shared by the ``mmo_voxel.ops.drift_report`` callback and ``scripts/drift-check``:
building the report from task results, redacting secrets, rendering JSON and Markdown, writing
reports atomically with a bounded history, and the exit code contract (0 clean, 2 drift,
1 error), after Terraform's ``plan -detailed-exitcode``.
"""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.mmo_voxel.ops.plugins.module_utils.ops_common import (
    DiscordError,
    atomic_write,
    format_rfc3339,
    post_discord,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.ops_common import (
    utc_now as _utc_now,
)

EXIT_CLEAN = 0
EXIT_ERROR = 1
EXIT_DRIFT = 2
STATUS = {EXIT_CLEAN: "clean", EXIT_DRIFT: "drift", EXIT_ERROR: "error"}

REDACTED = "<redacted>"
# Variable names whose values are secrets: their values are removed from every diff and message.
SECRET_NAME = re.compile(
    r"(pass(word|wd|phrase)?|secret|token|api_?key|private_?key|webhook|credential|shadow)", re.I
)
# `key = value` / `key: value` lines whose key names a secret: the value is removed even when
# the secret's variable is unknown to the report (a hand-edited file on the host, say).
SECRET_ASSIGNMENT = re.compile(
    r"(?P<key>[\w.-]*(?:pass(?:word|wd|phrase)?|secret|token|api_?key|private_?key|webhook|credential)[\w.-]*"
    r"[\"']?\s*[:=]\s*)(?P<value>[^\s#;]+)",
    re.I,
)
MIN_SECRET_LENGTH = 4  # shorter values would redact ordinary words everywhere
# Names that look like secrets but hold world-readable data: the facts of ansible.builtin.getent
# for the passwd and group databases (user names, home directories, shells). Taken for secrets,
# they redacted every occurrence of a system user's name ("backup", say) in every report.
PUBLIC_NAMES = frozenset({"getent_passwd", "getent_group"})
HIDDEN = "details hidden: the task is no_log"
# Runs shown in the trend section of the Markdown report (history.jsonl holds them all).
TREND_RUNS = 14


def utc_now() -> str:
    """The report's time stamps: RFC 3339 UTC to the second (docs/drift-detection.md)."""
    return format_rfc3339(_utc_now(), timespec="seconds")


@dataclass
class Change:
    """One task that would change one host."""

    task: str
    action: str
    role: str | None = None
    item: str | None = None
    diff: str = ""
    hidden: bool = False


@dataclass
class HostResult:
    """What the check found on one host."""

    changes: list[Change] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unreachable: bool = False

    @property
    def status(self) -> str:
        if self.unreachable or self.errors:
            return "error"
        return "drift" if self.changes else "clean"


@dataclass
class DriftReport:
    """The result of one drift check run."""

    started: str = field(default_factory=utc_now)
    finished: str | None = None
    playbook: str | None = None
    inventory: str | None = None
    hosts: dict[str, HostResult] = field(default_factory=dict)

    def host(self, name: str) -> HostResult:
        return self.hosts.setdefault(name, HostResult())

    def add_change(self, host: str, change: Change) -> None:
        self.host(host).changes.append(change)

    def add_error(self, host: str, message: str, *, unreachable: bool = False) -> None:
        result = self.host(host)
        result.errors.append(message)
        result.unreachable = result.unreachable or unreachable

    @property
    def drifted_hosts(self) -> list[str]:
        return sorted(h for h, r in self.hosts.items() if r.changes)

    @property
    def error_hosts(self) -> list[str]:
        return sorted(h for h, r in self.hosts.items() if r.status == "error")

    def exit_code(self) -> int:
        if self.error_hosts:
            return EXIT_ERROR
        return EXIT_DRIFT if self.drifted_hosts else EXIT_CLEAN

    def summary(self) -> dict[str, Any]:
        return {
            "hosts": len(self.hosts),
            "drifted": len(self.drifted_hosts),
            "errors": len(self.error_hosts),
            "changes": sum(len(r.changes) for r in self.hosts.values()),
            "status": STATUS[self.exit_code()],
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "finished": self.finished,
            "playbook": self.playbook,
            "inventory": self.inventory,
            "summary": self.summary(),
            "hosts": {
                name: {"status": r.status, **asdict(r)} for name, r in sorted(self.hosts.items())
            },
        }


def render_diff(diff: Mapping[str, Any] | list[Mapping[str, Any]] | None) -> str:
    """A task result's diff as plain unified-diff text (no colours), like Ansible shows it."""
    if not diff:
        return ""
    parts: list[str] = []
    for one in diff if isinstance(diff, list) else [diff]:
        for key, text in (
            ("dst_binary", "diff skipped: destination file appears to be binary"),
            ("src_binary", "diff skipped: source file appears to be binary"),
            ("dst_larger", "diff skipped: destination file is too large"),
            ("src_larger", "diff skipped: source file is too large"),
        ):
            if key in one:
                parts.append(text + "\n")
        if "before" in one and "after" in one:
            before, after = (_as_text(one[k]) for k in ("before", "after"))
            header = ("before" + _header(one, "before"), "after" + _header(one, "after"))
            parts.extend(
                difflib.unified_diff(
                    before.splitlines(keepends=True),
                    after.splitlines(keepends=True),
                    fromfile=header[0],
                    tofile=header[1],
                    lineterm="\n",
                )
            )
        if "prepared" in one:
            parts.append(str(one["prepared"]).rstrip("\n") + "\n")
    return "".join(line if line.endswith("\n") else line + "\n" for line in parts)


def _header(diff: Mapping[str, Any], side: str) -> str:
    value = diff.get(f"{side}_header")
    return f": {value}" if value else ""


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Mapping | list):
        return json.dumps(value, indent=4, sort_keys=True, default=str) + "\n"
    return str(value)


def secret_values(variables: Mapping[str, Any], extra_names: Iterable[str] = ()) -> set[str]:
    """String values under keys that name secrets (or are in ``extra_names``), at any depth."""
    found: set[str] = set()
    extra = set(extra_names)

    def walk(value: Any, secret: bool) -> None:
        if isinstance(value, Mapping):
            for key, sub in value.items():
                named = key in extra or bool(SECRET_NAME.search(str(key)))
                walk(sub, (secret or named) and str(key) not in PUBLIC_NAMES)
        elif isinstance(value, list | tuple):
            for sub in value:
                walk(sub, secret)
        elif secret and isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
            found.add(value)

    walk(variables, False)
    return found


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without any of ``secrets`` and without the values of secret-looking assignments."""
    for secret in sorted(secrets, key=len, reverse=True):  # longest first: no partial leftovers
        if secret:
            text = text.replace(secret, REDACTED)
    return SECRET_ASSIGNMENT.sub(lambda m: m.group("key") + REDACTED, text)


def to_markdown(report: DriftReport, history: Sequence[Mapping[str, Any]] | None = None) -> str:
    """The human report: a summary table, each drifted or failed host with its tasks, then the
    trend of the last runs when ``history`` (``history.jsonl`` lines, oldest first) is given."""
    s = report.summary()
    lines = [
        f"# Drift check {report.started}",
        "",
        f"**{s['status'].upper()}**: {s['drifted']} of {s['hosts']} hosts drifted "
        f"({s['changes']} tasks would change), {s['errors']} hosts with errors.",
        "",
        "| host | status | tasks that would change |",
        "| --- | --- | --- |",
    ]
    lines += [
        f"| {name} | {r.status} | {len(r.changes)} |" for name, r in sorted(report.hosts.items())
    ]
    for name, r in sorted(report.hosts.items()):
        if r.status == "clean":
            continue
        lines += ["", f"## {name}", ""]
        lines += [f"- **error**: {message}" for message in r.errors]
        for c in r.changes:
            where = f"{c.role} : " if c.role else ""
            item = f" ({c.item})" if c.item else ""
            lines.append(f"- `{where}{c.task}`{item} [{c.action}]")
            if c.hidden:
                lines.append(f"  - {HIDDEN}")
            elif c.diff:
                lines += ["", "  ```diff", *("  " + d for d in c.diff.splitlines()), "  ```", ""]
    if history:
        lines += ["", *trend_markdown(history)]
    return "\n".join(lines).rstrip() + "\n"


def trend_markdown(history: Sequence[Mapping[str, Any]], runs: int = TREND_RUNS) -> list[str]:
    """The last ``runs`` runs, newest first, and the hosts that drifted in more than one of them.

    A host that keeps coming back is being fixed by hand, or has a role that does not converge:
    either way the next thing to look at.
    """
    recent = history[-runs:]
    lines = [
        f"## Trend (last {len(recent)} runs)",
        "",
        "| run | status | drifted | errors | hosts |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {h.get('started', '?')} | {h.get('status', '?')} | {h.get('drifted', 0)} | "
        f"{h.get('errors', 0)} | {h.get('hosts', 0)} |"
        for h in reversed(recent)
    ]
    counts = Counter(name for h in recent for name in h.get("drifted_hosts", []))
    repeat = sorted((name for name, n in counts.items() if n > 1), key=lambda h: (-counts[h], h))
    if repeat:
        named = ", ".join(f"{name} ({counts[name]} of {len(recent)})" for name in repeat)
        lines += ["", f"Drifted in more than one of these runs: {named}."]
    return lines


def read_history(directory: Path) -> list[dict[str, Any]]:
    """The lines of ``history.jsonl``, oldest first; a line that does not parse is skipped."""
    path = directory / "history.jsonl"
    if not path.exists():
        return []
    runs: list[dict[str, Any]] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        try:
            run = json.loads(raw)
        except ValueError:
            continue  # a line cut by a full disk must not cost every later report its trend
        if isinstance(run, dict):
            runs.append(run)
    return runs


def write_atomic(path: Path, text: str) -> None:
    """Write a report file atomically (never a half report), 0600 as the reports always were."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text.encode("utf-8"), 0o600)


def write_report(directory: Path, report: DriftReport, keep: int) -> Path:
    """Write ``drift-<time>.json`` and ``.md``, ``latest.*`` and a history line; keep the last N.

    Returns the JSON report's path. ``history.jsonl`` holds one summary line per run (never
    pruned: it is small and is what a trend is drawn from); the Markdown report ends with the
    trend of the last runs, this one included.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    stamp = report.started.replace(":", "").replace("-", "")
    data = report.to_dict()
    directory.mkdir(parents=True, exist_ok=True)
    line = {"started": report.started, **data["summary"], "drifted_hosts": report.drifted_hosts}
    with (directory / "history.jsonl").open("a", encoding="utf-8") as history:
        history.write(json.dumps(line, sort_keys=True) + "\n")
    text_json = json.dumps(data, indent=2, sort_keys=True) + "\n"
    text_md = to_markdown(report, read_history(directory))
    json_path = directory / f"drift-{stamp}.json"
    write_atomic(json_path, text_json)
    write_atomic(directory / f"drift-{stamp}.md", text_md)
    write_atomic(directory / "latest.json", text_json)
    write_atomic(directory / "latest.md", text_md)
    prune(directory, keep)
    return json_path


def prune(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` reports (both files of each); returns what went."""
    reports = sorted(directory.glob("drift-*.json"))
    gone: list[Path] = []
    for old in reports[:-keep]:
        for path in (old, old.with_suffix(".md")):
            if path.exists():
                path.unlink()
                gone.append(path)
    return gone


def discord_summary(report: Mapping[str, Any]) -> str:
    """One Discord line about a report: status, counts and the hosts that are not clean.

    Never the diffs: they stay in the report.
    """
    s = report["summary"]
    hosts = [h for h, r in report["hosts"].items() if r["status"] != "clean"]
    text = (
        f"Drift check {report['started']}: **{s['status']}** - {s['drifted']} of {s['hosts']} "
        f"hosts drifted ({s['changes']} tasks), {s['errors']} with errors: "
        + ", ".join(hosts[:20])
        + (" ..." if len(hosts) > 20 else "")
    )
    return text[:1900]


def post_summary(url: str, report: Mapping[str, Any], timeout: float = 10) -> str | None:
    """Post the report's Discord summary; why it failed (never the URL, a secret), else None."""
    try:
        post_discord(url, discord_summary(report), timeout=timeout, user_agent="mmo-voxel-drift/1")
    except DiscordError as error:
        return str(error)
    return None
