"""The drift callbacks in plugins/callback/, run by a real ansible-playbook against localhost.

drift_report (stdout) and drift_notify (notification) are driven by a small check-mode play: one
file that differs from what the play declares, with a secret in the play's variables. The
reports land in a temporary folder; drift_notify posts to a local Discord receiver
(tests/discord_receiver.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from discord_receiver import DiscordReceiver
from system_tools import play_on_localhost

SECRET = "s3cr3t-" + "bearer-77c1"
PLAY = """
- name: Declared configuration
  hosts: localhost
  gather_facts: false
  vars:
    admin_token: "{secret}"
  tasks:
    - name: Write the server's configuration
      ansible.builtin.copy:
        content: "bearer = {{{{ admin_token }}}}\\ntick_rate = 30\\n"
        dest: "{target}"
        mode: "0600"
"""


def run(tmp_path: Path, env: dict[str, str], playbook: str, *, drifted: bool) -> str:
    """Run the play with --check --diff; the file it declares differs when ``drifted``."""
    target = tmp_path / "server.conf"
    declared = f"bearer = {SECRET}\ntick_rate = 30\n"
    target.write_text("bearer = old-value\ntick_rate = 20\n" if drifted else declared)
    target.chmod(0o600)
    book = tmp_path / "play.yml"
    book.write_text(PLAY.format(secret=SECRET, target=target))
    # The play's diff holds the planted secret on purpose (the callbacks must keep it out of
    # their report and message): the run stays out of the suite's Ansible log, which the CI's
    # leak scan reads, as in tests/integration/test_drift_check.py.
    env = {k: v for k, v in env.items() if k != "ANSIBLE_LOG_PATH"}
    env["DRIFT_REPORT_DIR"] = str(tmp_path / "reports")
    return play_on_localhost(playbook, book, env, "--check", "--diff")


def latest(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "reports" / "latest.json").read_text())


@pytest.fixture
def report_env(ansible_env: dict[str, str]) -> dict[str, str]:
    return {**ansible_env, "ANSIBLE_STDOUT_CALLBACK": "mmo_voxel.ops.drift_report"}


def test_drift_report_records_the_change_and_prints_no_secret(
    tmp_path: Path, report_env: dict[str, str], ansible_playbook: str
) -> None:
    output = run(tmp_path, report_env, ansible_playbook, drifted=True)

    report = latest(tmp_path)
    assert report["summary"]["status"] == "drift"
    [change] = report["hosts"]["localhost"]["changes"]
    assert change["task"] == "Write the server's configuration"
    assert "-tick_rate = 20" in change["diff"]
    assert "+tick_rate = 30" in change["diff"]
    assert "<redacted>" in change["diff"]
    assert SECRET not in output
    assert SECRET not in (tmp_path / "reports" / "latest.md").read_text()
    assert report["started"].endswith("Z")
    assert (tmp_path / "reports" / "latest.json").stat().st_mode & 0o777 == 0o600


def test_drift_report_of_a_clean_run_says_clean(
    tmp_path: Path, report_env: dict[str, str], ansible_playbook: str
) -> None:
    run(tmp_path, report_env, ansible_playbook, drifted=False)

    assert latest(tmp_path)["summary"]["status"] == "clean"
    assert latest(tmp_path)["hosts"]["localhost"]["changes"] == []


@pytest.fixture
def notify_env(ansible_env: dict[str, str], discord_receiver: DiscordReceiver) -> dict[str, str]:
    return {
        **ansible_env,
        "ANSIBLE_CALLBACKS_ENABLED": "mmo_voxel.ops.drift_notify",
        "DRIFT_DISCORD_WEBHOOK": discord_receiver.url,
    }


def test_drift_notify_posts_the_summary_of_a_drifted_run_only(
    tmp_path: Path,
    notify_env: dict[str, str],
    ansible_playbook: str,
    discord_receiver: DiscordReceiver,
) -> None:
    run(tmp_path, notify_env, ansible_playbook, drifted=False)
    assert discord_receiver.received() == []  # clean: nobody is paged
    assert latest(tmp_path)["summary"]["status"] == "clean"

    run(tmp_path, notify_env, ansible_playbook, drifted=True)

    [post] = discord_receiver.received()
    content = post.body["content"]
    assert content.startswith(f"Drift check {latest(tmp_path)['started']}: **drift**")
    assert "localhost" in content
    assert "tick_rate" not in content  # never the diffs
    assert SECRET not in content
    assert post.body["allowed_mentions"] == {"parse": []}
    assert post.headers["User-Agent"] == "mmo-voxel-drift/1"


def test_drift_notify_warns_of_a_refused_post_without_the_url(
    tmp_path: Path,
    notify_env: dict[str, str],
    ansible_playbook: str,
    discord_receiver: DiscordReceiver,
) -> None:
    discord_receiver.status = 404

    output = run(tmp_path, notify_env, ansible_playbook, drifted=True)

    assert "drift_notify: could not post to Discord: HTTP 404" in " ".join(output.split())
    assert DiscordReceiver.TOKEN_PATH not in output
    assert latest(tmp_path)["summary"]["status"] == "drift"  # the report stands
