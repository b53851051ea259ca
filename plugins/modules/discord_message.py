#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: post one message to a Discord webhook, through the shared ops_common post."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: discord_message
short_description: Post one message to a Discord webhook given by its full URL
version_added: "0.2.0"
description:
  - Posts O(content) to the webhook O(url) with the same code every other Discord message of
    this repository uses (C(plugins/module_utils/ops_common.py)), so that no message can ping
    anyone (C(allowed_mentions) parses nothing), each says who sent it (a User-Agent), and
    content longer than Discord's 2000 characters is cut and marked.
  - Why not M(community.general.discord) - that module builds the URL from a webhook id and token
    and always posts to C(discord.com), so a studio relay or a test's local receiver cannot stand
    in, and it sends no C(allowed_mentions).
  - The URL holds the webhook's token - it is a C(no_log) option and no message or result of this
    module repeats it.
  - A message changes no managed state - the result is always C(changed=false); RV(sent) says
    whether it went out.
author:
  - mmo_voxel operations (@mmo-voxel)
options:
  url:
    description:
      - The webhook's full URL, C(https://discord.com/api/webhooks/<id>/<token>) or a relay's.
    type: str
    required: true
  content:
    description: The message; cut to Discord's limit of 2000 characters when longer.
    type: str
    required: true
  username:
    description: The name the message is shown under; the webhook's own when omitted.
    type: str
  timeout:
    description: Seconds to wait for Discord's answer.
    type: int
    default: 10
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: Reports what it would post (RV(length)) and sends nothing.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Post the deploy message to Discord
  mmo_voxel.ops.discord_message:
    url: "{{ deploy_discord_webhook }}"
    username: mmo-voxel deploy
    content: "Deployed {{ version }} to {{ inventory_hostname }}"
  register: posted
  failed_when: false
  delegate_to: localhost

- name: Warn when Discord did not take it
  ansible.builtin.debug:
    msg: "Not delivered: {{ posted.msg }}"
  when: posted is failed
"""

RETURN = r"""
sent:
  description: Whether the message was posted (false in check mode).
  returned: always
  type: bool
status:
  description: Discord's HTTP status for the post.
  returned: when sent
  type: int
  sample: 204
length:
  description: Characters of content posted (or that would be), after the cut to Discord's limit.
  returned: always
  type: int
  sample: 42
msg:
  description: What happened; on failure the HTTP status or network error, never the URL.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mmo_voxel.ops.plugins.module_utils.ops_common import (
    DiscordError,
    discord_content,
    post_discord,
)

USER_AGENT = "mmo-voxel-ansible/1"


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True, "no_log": True},
            "content": {"type": "str", "required": True},
            "username": {"type": "str"},
            "timeout": {"type": "int", "default": 10},
        },
        supports_check_mode=True,
    )
    params = module.params
    length = len(discord_content(params["content"]))
    if module.check_mode:
        module.exit_json(changed=False, sent=False, length=length, msg="would post the message")
    try:
        status = post_discord(
            params["url"],
            params["content"],
            timeout=params["timeout"],
            username=params["username"],
            user_agent=USER_AGENT,
        )
    except DiscordError as exc:  # its message never holds the URL
        module.fail_json(sent=False, length=length, msg=f"Discord did not take the message: {exc}")
    module.exit_json(changed=False, sent=True, status=status, length=length, msg="posted")


if __name__ == "__main__":
    main()
