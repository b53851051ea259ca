# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Callback: the drift report for runners that keep their own output (AWX, ansible-runner)."""

from __future__ import annotations

DOCUMENTATION = r"""
name: drift_notify
type: notification
short_description: The drift report (JSON and Markdown) and a Discord summary, beside any output
version_added: 0.1.0
description:
  - The notification-type twin of M(mmo_voxel.ops.drift_report)'s output callback. AWX and
    ansible-runner print through their own output callback and have no "would change" status
    for a check job, so C(scripts/drift-check) cannot be their entry point; enabled through
    C(callbacks_enabled), this callback records the same report (same redaction, same files,
    same history) while the runner prints as it likes.
  - At the end of the run, when I(discord_webhook) is set and the report is not clean, it posts
    the same one-line summary as C(scripts/drift-check) (never the diffs). A failed post is a
    warning.
  - It prints nothing else, so it adds no secret to the runner's output; that output is the
    runner's own callback's, which must be trusted not to print secrets (AWX honours no_log).
extends_documentation_fragment:
  - mmo_voxel.ops.drift_report
requirements:
  - enable it, C(ANSIBLE_CALLBACKS_ENABLED=mmo_voxel.ops.drift_notify) (an environment
    variable of the AWX job template), and run the playbook with C(--check --diff)
options:
  discord_webhook:
    description: Discord webhook URL for the summary of a report that is not clean; empty for none.
    type: str
    default: ""
    env:
      - name: DRIFT_DISCORD_WEBHOOK
"""

from typing import Any

from ansible.plugins.callback import CallbackBase

from ansible_collections.mmo_voxel.ops.plugins.callback.drift_report import DriftRecorder
from ansible_collections.mmo_voxel.ops.plugins.plugin_utils.drift import post_summary


class CallbackModule(DriftRecorder, CallbackBase):
    """Records the drift report of the run; prints one line and posts the summary."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "mmo_voxel.ops.drift_notify"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._start_recording()

    def v2_playbook_on_start(self, playbook: Any) -> None:
        self._record_playbook(playbook)

    def v2_playbook_on_play_start(self, play: Any) -> None:
        self._learn_secrets(play)

    def v2_runner_on_ok(self, result: Any) -> None:
        self._record_ok(result)

    def v2_runner_item_on_ok(self, result: Any) -> None:
        self._record_item_ok(result)

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._record_failed(result, ignore_errors)

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._record_unreachable(result)

    def v2_playbook_on_stats(self, stats: Any) -> None:
        path = self._write_report()
        summary = self.report.summary()
        self._display.display(f"drift report: {path} ({summary['status']})")
        webhook = self.get_option("discord_webhook")
        if webhook and summary["status"] != "clean":
            error = post_summary(webhook, self.report.to_dict())
            if error:  # never the URL: it holds the webhook's token
                self._display.warning(f"drift_notify: could not post to Discord: {error}")
