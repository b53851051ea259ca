#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: whether a GitHub organisation requires two-factor authentication (read-only)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: github_org_two_factor_info
short_description: Read whether a GitHub organisation requires two-factor authentication
version_added: "0.3.0"
description:
  - Reads the organisation (C(GET /orgs/ORG)) and reports its C(two_factor_requirement_enabled).
  - GitHub shows that field to organisation owners only, and its API cannot set it (an owner turns
    it on in Settings > Authentication security). RV(msg) says so when it is off or unknown.
  - An organisation that cannot be read (a refused token, no answer) is reported as unknown, not
    failed; what to do about an unknown or missing requirement (fail or warn) is the caller's call.
  - Read-only; always C(changed=false).
author:
  - mmo_voxel operations (@mmo-voxel)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: Read-only; reads in check mode too.
  diff_mode:
    support: none
options:
  api_url:
    description: GitHub's REST API; on GitHub Enterprise Server C(https://HOST/api/v3).
    type: str
    default: https://api.github.com
  token:
    description:
      - A token of an organisation owner (fine-grained with organisation C(Administration) read,
        or classic with C(read:org)); others cannot see the setting.
      - Sent only in the C(Authorization) header; never in results or logs.
    type: str
    required: true
  org:
    description: The organisation's login.
    type: str
    required: true
seealso:
  - name: GitHub REST API, get an organization
    link: https://docs.github.com/en/rest/orgs/orgs#get-an-organization
    description: The endpoint this module reads, and who sees two_factor_requirement_enabled.
  - module: mmo_voxel.ops.github_branch_protection
"""

EXAMPLES = r"""
- name: Read whether the organisation requires two-factor authentication
  mmo_voxel.ops.github_org_two_factor_info:
    token: "{{ lookup('ansible.builtin.env', 'GITHUB_TOKEN') }}"
    org: mmo-voxel
  register: two_factor

- name: Stop unless it does
  ansible.builtin.fail:
    msg: "{{ two_factor.msg }}"
  when: two_factor.two_factor_requirement_enabled is not true
"""

RETURN = r"""
two_factor_requirement_enabled:
  description: GitHub's answer; null when it is unknown (the organisation could not be read, or
    the token is no owner's and GitHub leaves the field out).
  returned: always
  type: bool
  sample: true
msg:
  description: The finding in one sentence; when the requirement is off or unknown, why, and how an
    owner turns it on.
  returned: always
  type: str
  sample: Organisation mmo-voxel requires two-factor authentication for its members.
status:
  description: The HTTP status of GitHub's answer (-1 when none came).
  returned: always
  type: int
  sample: 200
"""

from typing import Any
from urllib.parse import quote

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mmo_voxel.ops.plugins.module_utils import github_api

REMEDY = (
    "An organisation owner turns it on in Settings > Authentication security > "
    '"Require two-factor authentication" (GitHub\'s API cannot set it).'
)


def argument_spec() -> dict[str, Any]:
    return {**github_api.api_argument_spec(), "org": {"type": "str", "required": True}}


def finding(org: str, answer: github_api.Answer) -> tuple[bool | None, str]:
    """The requirement as read (None: unknown) and the sentence that says so."""
    if answer.status != 200:
        status = "no answer" if answer.status == -1 else f"HTTP {answer.status}"
        return None, (
            f"Organisation {org} could not be read ({status}: {answer.message or 'no message'}), "
            f"so its two-factor requirement is unknown. {REMEDY}"
        )
    enabled = (answer.body or {}).get("two_factor_requirement_enabled")
    if enabled is True:
        return True, f"Organisation {org} requires two-factor authentication for its members."
    if enabled is None:
        return None, (
            f"The token cannot see whether organisation {org} requires two-factor authentication "
            f"(GitHub shows two_factor_requirement_enabled to organisation owners only). {REMEDY}"
        )
    return False, (
        f"Organisation {org} does NOT require two-factor authentication for its members. {REMEDY}"
    )


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        api = github_api.checked_api_url(module.params)
        org = github_api.required_name("org", module.params["org"], "organisation")
    except github_api.InvalidOption as invalid:
        invalid.fail(module)
    answer = github_api.request(module, "GET", f"{api}/orgs/{quote(org)}")
    enabled, msg = finding(org, answer)
    module.exit_json(
        changed=False, two_factor_requirement_enabled=enabled, msg=msg, status=answer.status
    )


if __name__ == "__main__":
    main()
