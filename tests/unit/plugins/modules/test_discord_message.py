"""The discord_message module and the deploy's task file that uses it, against a local receiver.

The module's main() runs in-process (as the sqlite_* module tests run theirs); the task file
playbooks/tasks/deploy_notify.yml runs in a real ansible-playbook. tests/discord_receiver.py
stands in for Discord; its path stands for the webhook's token, which no output may hold.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from discord_receiver import DiscordReceiver
from sqlite_module_helpers import run_module
from system_tools import play_on_localhost

from ansible_collections.mmo_voxel.ops.plugins.modules import discord_message

REPO = Path(__file__).resolve().parents[4]


def test_the_message_is_posted_without_mentions(
    capsys: pytest.CaptureFixture, discord_receiver: DiscordReceiver
) -> None:
    args = {"url": discord_receiver.url, "content": "@here Deployed 1.0.0", "username": "deploy"}

    result = run_module(discord_message, capsys, args)

    assert result["_rc"] == 0
    assert (result["changed"], result["sent"], result["status"]) == (False, True, 204)
    [post] = discord_receiver.received()
    assert post.body == {
        "content": "@here Deployed 1.0.0",
        "allowed_mentions": {"parse": []},
        "username": "deploy",
    }
    assert post.headers["User-Agent"] == discord_message.USER_AGENT


def test_check_mode_says_what_it_would_post_and_sends_nothing(
    capsys: pytest.CaptureFixture, discord_receiver: DiscordReceiver
) -> None:
    args = {"url": discord_receiver.url, "content": "z" * 2500}

    result = run_module(discord_message, capsys, args, check_mode=True)

    assert (result["changed"], result["sent"], result["length"]) == (False, False, 2000)
    assert discord_receiver.received() == []


def test_a_refused_message_fails_without_the_url(
    capsys: pytest.CaptureFixture, discord_receiver: DiscordReceiver
) -> None:
    discord_receiver.status = 404

    result = run_module(discord_message, capsys, {"url": discord_receiver.url, "content": "x"})

    assert result["_rc"] == 1
    assert result["failed"] is True
    assert result["msg"] == "Discord did not take the message: HTTP 404"
    assert DiscordReceiver.TOKEN_PATH not in json.dumps(result)


PLAY = """
- name: Tell Discord
  hosts: localhost
  gather_facts: false
  vars:
    deploy_discord_webhook: "{url}"
  tasks:
    - name: The deploy's message
      ansible.builtin.include_tasks: {tasks}
      vars:
        deploy_notify_text: "  Deployed 1.0.0 to localhost  "
"""


def deploy_notify(tmp_path: Path, env: dict, playbook: str, url: str, *extra: str) -> str:
    book = tmp_path / "notify.yml"
    book.write_text(PLAY.format(url=url, tasks=REPO / "playbooks" / "tasks" / "deploy_notify.yml"))
    output = play_on_localhost(playbook, book, env, *extra)
    assert DiscordReceiver.TOKEN_PATH not in output
    return " ".join(output.split())  # the message as one line, however the output wraps it


def test_the_deploy_task_file_posts_and_warns_when_refused(
    tmp_path: Path, ansible_env: dict, ansible_playbook: str, discord_receiver: DiscordReceiver
) -> None:
    deploy_notify(tmp_path, ansible_env, ansible_playbook, discord_receiver.url)
    [post] = discord_receiver.received()
    assert post.body["content"] == "Deployed 1.0.0 to localhost"
    assert post.body["username"] == "mmo-voxel deploy"

    deploy_notify(tmp_path, ansible_env, ansible_playbook, discord_receiver.url, "--check")
    assert len(discord_receiver.received()) == 1  # check mode sent nothing

    discord_receiver.status = 500
    output = deploy_notify(tmp_path, ansible_env, ansible_playbook, discord_receiver.url)
    assert "was not delivered (Discord did not take the message: HTTP 500)" in output
