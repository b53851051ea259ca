"""Callback: gather what a check-mode run would change, host by host, into a drift report."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ansible.plugins.callback.default import CallbackModule as DefaultCallback
from ansible.template import Templar

from ansible_collections.mmo_voxel.ops.plugins.plugin_utils.drift import (
    SECRET_NAME,
    Change,
    DriftReport,
    redact,
    render_diff,
    secret_values,
    utc_now,
    write_report,
)

DOCUMENTATION = r"""
name: drift_report
type: stdout
short_description: Default output without secrets, plus a drift report (JSON and Markdown)
version_added: 0.1.0
description:
  - The default output callback, with every line it prints passed through the same redaction
    as the report, so the log of a drift run holds no secret either.
  - Records, for every host, each task that would change it (with its diff) and every failure
    or unreachable host, then writes C(drift-<time>.json), C(drift-<time>.md), C(latest.json),
    C(latest.md) and a line in C(history.jsonl) into I(report_dir), keeping the newest I(keep).
  - Secrets never reach the report. A C(no_log) task is listed as changed with its details
    hidden. Values of variables whose names say they are secrets (password, secret, token,
    api_key, private_key, webhook, credential, and the names in I(secret_vars)) are replaced
    by C(<redacted>) wherever they appear, and so is the value of any C(key=value) or
    C(key:value) line (spaces allowed) whose key names a secret.
  - Meant for C(playbooks/drift_check.yml) run with C(--check --diff) through
    C(scripts/drift-check), which turns the report into the exit code (0 clean, 2 drift, 1 error).
extends_documentation_fragment:
  - ansible.builtin.default_callback
  - ansible.builtin.result_format_callback
requirements:
  - set it as the output callback, C(ANSIBLE_STDOUT_CALLBACK=mmo_voxel.ops.drift_report)
    (scripts/drift-check does)
options:
  report_dir:
    description: Directory the reports go to.
    type: path
    default: .cache/drift
    env:
      - name: DRIFT_REPORT_DIR
    ini:
      - section: callback_drift_report
        key: report_dir
  keep:
    description: How many reports to keep (older ones are deleted; history.jsonl stays).
    type: int
    default: 30
    env:
      - name: DRIFT_REPORT_KEEP
    ini:
      - section: callback_drift_report
        key: keep
  secret_vars:
    description: Further variable names whose values are secrets.
    type: list
    elements: str
    default: []
    env:
      - name: DRIFT_REPORT_SECRET_VARS
    ini:
      - section: callback_drift_report
        key: secret_vars
"""


class CallbackModule(DefaultCallback):
    """Default output, redacted; collects per-host drift and writes the report at the end."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "mmo_voxel.ops.drift_report"

    def __init__(self) -> None:
        super().__init__()
        self.report = DriftReport()
        self.secrets: set[str] = set()
        # Everything the default callback prints goes through self._display: redact it there.
        self._display = RedactingDisplay(self._display, self._clean)

    # -- what the run is -------------------------------------------------------------------
    def v2_playbook_on_start(self, playbook: Any) -> None:
        self.report.playbook = os.path.relpath(playbook._file_name)
        super().v2_playbook_on_start(playbook)

    def v2_playbook_on_play_start(self, play: Any) -> None:
        self._learn_secrets(play)
        super().v2_playbook_on_play_start(play)

    def _learn_secrets(self, play: Any) -> None:
        """Collect the secret values of the play's hosts before any of their results arrive."""
        extra = set(self.get_option("secret_vars") or [])
        manager = play.get_variable_manager()
        inventory = manager._inventory
        self.report.inventory = ",".join(str(s) for s in inventory._sources)
        for host in inventory.get_hosts(play.hosts):
            self.report.host(host.name)
            hostvars = manager.get_vars(play=play, host=host, include_hostvars=False)
            templar = Templar(loader=manager._loader, variables=hostvars)
            for name, value in hostvars.items():
                # Only secret-named variables and structures that may hold one are rendered.
                if not (SECRET_NAME.search(name) or name in extra or isinstance(value, dict)):
                    continue
                try:
                    rendered = templar.template(value)
                except Exception:  # noqa: S112  # what cannot be rendered cannot leak
                    continue
                self.secrets |= secret_values({name: rendered}, extra)

    # -- results -----------------------------------------------------------------------------
    def v2_runner_on_ok(self, result: Any) -> None:
        super().v2_runner_on_ok(result)
        # A loop's items arrive one by one in v2_runner_item_on_ok; its summary is skipped here.
        looped = result.task.loop is not None or result.task.loop_with
        if not looped and result.result.get("changed"):
            self._record(result, result.result, None)

    def v2_runner_item_on_ok(self, result: Any) -> None:
        super().v2_runner_item_on_ok(result)
        if result.result.get("changed"):
            self._record(result, result.result, item_label(result.result))

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        super().v2_runner_on_failed(result, ignore_errors)
        if ignore_errors:
            return
        message = result.result.get("msg") or "task failed"
        if result.task.no_log or result.result.get("censored"):
            message = "task failed (details hidden: the task is no_log)"
        self.report.add_error(
            result.host.name, f"{result.task.get_name()}: {self._clean(str(message))}"
        )

    def v2_runner_on_unreachable(self, result: Any) -> None:
        super().v2_runner_on_unreachable(result)
        message = result.result.get("msg") or "unreachable"
        self.report.add_error(
            result.host.name, f"unreachable: {self._clean(str(message))}", unreachable=True
        )

    def v2_playbook_on_stats(self, stats: Any) -> None:
        super().v2_playbook_on_stats(stats)
        self.report.finished = utc_now()
        directory = Path(self.get_option("report_dir"))
        path = write_report(directory, self.report, int(self.get_option("keep")))
        self._display.display(f"drift report: {path} ({self.report.summary()['status']})")

    # -- helpers -----------------------------------------------------------------------------
    def _record(self, result: Any, data: dict[str, Any], item: str | None) -> None:
        task = result.task
        hidden = bool(task.no_log or data.get("censored") or data.get("_ansible_no_log"))
        role = task._role.get_name() if task._role else None
        diff = "" if hidden else self._clean(render_diff(data.get("diff")))
        change = Change(
            task=task.get_name().split(" : ", 1)[-1],
            action=task.action,
            role=role,
            item=None if hidden else (self._clean(item) if item else None),
            diff=diff,
            hidden=hidden,
        )
        self.report.add_change(result.host.name, change)

    def _clean(self, text: str) -> str:
        return redact(text, self.secrets)


def item_label(item: dict[str, Any]) -> str:
    """How the default output names a loop item: loop_control.label, else the item itself."""
    label = item.get("_ansible_item_label", item.get("item"))
    return label if isinstance(label, str) else str(label)


class RedactingDisplay:
    """Stands in for Display: the same methods, with each message redacted first."""

    _WRAPPED = frozenset(
        {"display", "warning", "error", "banner", "v", "vv", "vvv", "vvvv", "vvvvv", "vvvvvv"}
    )

    def __init__(self, display: Any, clean: Any) -> None:
        self._inner = display
        self._clean = clean

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name not in self._WRAPPED:
            return attribute

        def redacted(msg: Any = "", *args: Any, **kwargs: Any) -> Any:
            return attribute(self._clean(str(msg)), *args, **kwargs)

        return redacted
