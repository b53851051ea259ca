# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Callback: gather what a check-mode run would change, host by host, into a drift report."""

from __future__ import annotations

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
    api_key, private_key, webhook, credential, shadow, and the names in I(secret_vars)) are replaced
    by C(<redacted>) wherever they appear, and so is the value of any C(key=value) or
    C(key:value) line (spaces allowed) whose key names a secret.
  - Meant for C(playbooks/drift_check.yml) run with C(--check --diff) through
    C(scripts/drift-check), which turns the report into the exit code (0 clean, 2 drift, 1 error).
extends_documentation_fragment:
  - ansible.builtin.default_callback
  - ansible.builtin.result_format_callback
  - mmo_voxel.ops.drift_report
requirements:
  - set it as the output callback, C(ANSIBLE_STDOUT_CALLBACK=mmo_voxel.ops.drift_report)
    (scripts/drift-check does)
"""

import os
from collections.abc import Callable
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


class DriftRecorder:
    """What both drift callbacks do with the run: learn the secrets, record changes and failures,
    write the report. The stdout callback adds the (redacted) default output; the notification
    twin (drift_notify) adds nothing, for runners that keep their own output (AWX).

    A subclass provides get_option() (CallbackBase) and calls the hooks below.
    """

    report: DriftReport
    secrets: set[str]
    # Provided by the subclass's CallbackBase (the plugin's options, from its DOCUMENTATION).
    get_option: Callable[[str], Any]

    def _start_recording(self) -> None:
        self.report = DriftReport()
        self.secrets = set()

    def _record_playbook(self, playbook: Any) -> None:
        self.report.playbook = os.path.relpath(playbook._file_name)

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
                # `vars` holds every variable again, each of which is seen here on its own;
                # rendering it renders them all twice and touches deprecated magic variables
                # (play_hosts), a deprecation warning in every run.
                if name == "vars":
                    continue
                # Only secret-named variables and structures that may hold one are rendered.
                if not (SECRET_NAME.search(name) or name in extra or isinstance(value, dict)):
                    continue
                try:
                    rendered = templar.template(value)
                except Exception:  # noqa: S112  # what cannot be rendered cannot leak
                    continue
                self.secrets |= secret_values({name: rendered}, extra)

    def _record_ok(self, result: Any) -> None:
        # A loop's items arrive one by one in v2_runner_item_on_ok; its summary is skipped here.
        looped = result.task.loop is not None or result.task.loop_with
        if not looped and result.result.get("changed"):
            self._record(result, result.result, None)

    def _record_item_ok(self, result: Any) -> None:
        if result.result.get("changed"):
            self._record(result, result.result, item_label(result.result))

    def _record_failed(self, result: Any, ignore_errors: bool) -> None:
        if ignore_errors:
            return
        message = result.result.get("msg") or "task failed"
        if result.task.no_log or result.result.get("censored"):
            message = "task failed (details hidden: the task is no_log)"
        self.report.add_error(
            result.host.name, f"{result.task.get_name()}: {self._clean(str(message))}"
        )

    def _record_unreachable(self, result: Any) -> None:
        message = result.result.get("msg") or "unreachable"
        self.report.add_error(
            result.host.name, f"unreachable: {self._clean(str(message))}", unreachable=True
        )

    def _write_report(self) -> Path:
        self.report.finished = utc_now()
        directory = Path(self.get_option("report_dir"))
        return write_report(directory, self.report, int(self.get_option("keep")))

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


class CallbackModule(DriftRecorder, DefaultCallback):
    """Default output, redacted; collects per-host drift and writes the report at the end."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "mmo_voxel.ops.drift_report"
    # Ansible's Display (from CallbackBase), then the RedactingDisplay that stands in for it.
    _display: Any

    def __init__(self) -> None:
        super().__init__()
        self._start_recording()
        # Everything the default callback prints goes through self._display: redact it there.
        self._display = RedactingDisplay(self._display, self._clean)

    def v2_playbook_on_start(self, playbook: Any) -> None:
        self._record_playbook(playbook)
        super().v2_playbook_on_start(playbook)

    def v2_playbook_on_play_start(self, play: Any) -> None:
        self._learn_secrets(play)
        super().v2_playbook_on_play_start(play)

    def v2_runner_on_ok(self, result: Any) -> None:
        super().v2_runner_on_ok(result)
        self._record_ok(result)

    def v2_runner_item_on_ok(self, result: Any) -> None:
        super().v2_runner_item_on_ok(result)
        self._record_item_ok(result)

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        super().v2_runner_on_failed(result, ignore_errors)
        self._record_failed(result, ignore_errors)

    def v2_runner_on_unreachable(self, result: Any) -> None:
        super().v2_runner_on_unreachable(result)
        self._record_unreachable(result)

    def v2_playbook_on_stats(self, stats: Any) -> None:
        super().v2_playbook_on_stats(stats)
        path = self._write_report()
        self._display.display(f"drift report: {path} ({self.report.summary()['status']})")


def item_label(item: dict[str, Any]) -> str:
    """How the default output names a loop item: loop_control.label, else the item itself."""
    label = item.get("_ansible_item_label", item.get("item"))
    return label if isinstance(label, str) else str(label)


class RedactingDisplay:
    """Stands in for Display: the same methods, with each message redacted first."""

    _WRAPPED = frozenset(
        {"display", "warning", "error", "banner", "v", "vv", "vvv", "vvvv", "vvvvv", "vvvvvv"}
    )

    def __init__(self, display: Any, clean: Callable[[str], str]) -> None:
        self._inner = display
        self._clean = clean

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name not in self._WRAPPED:
            return attribute

        def redacted(msg: Any = "", *args: Any, **kwargs: Any) -> Any:
            return attribute(self._clean(str(msg)), *args, **kwargs)

        return redacted
