#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: a GitHub branch's protection as declared, written only when it differs."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: github_branch_protection
short_description: Keep a GitHub branch's protection as declared
version_added: "0.3.0"
description:
  - Reads the branch's protection through GitHub's REST API (C(GET .../branches/BRANCH/protection)),
    brings GitHub's answer to the shape of the write request, compares it with the declared
    protection and writes it (C(PUT)) only when the two differ. A second run changes nothing.
  - The whole protection is declared, as GitHub's C(PUT) takes it. Push restrictions are always
    none. Required signatures, last-push approval and branch locking are not options here and are
    left as GitHub keeps them (C(PUT) does not touch them).
  - Bad input (too few approvals, no status check, a blank name, an API address that is no URL) is
    refused before any request, with the option named in C(msg) and in RV(invalid_option).
  - Runs on the controller (a local play, or C(delegate_to) localhost); needs no Python library
    beyond Ansible's own.
author:
  - mmo_voxel operations (@mmo-voxel)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: Reads the protection (GET only) and reports the plan as a change when it differs.
  diff_mode:
    support: full
    details: >-
      The keys of the protection that differ, before and after, in the shape of the write request;
      never the token.
  idempotent:
    description: Run twice in a row with the same options, the second run reports no change.
    support: full
options:
  api_url:
    description: GitHub's REST API; on GitHub Enterprise Server C(https://HOST/api/v3).
    type: str
    default: https://api.github.com
  token:
    description:
      - A fine-grained token with C(Administration) read and write on the repository, or a classic
        token with C(repo).
      - Sent only in the C(Authorization) header; never in results, diffs or logs.
    type: str
    required: true
  owner:
    description: The repository's owner (organisation or user).
    type: str
    required: true
  repo:
    description: The repository's name.
    type: str
    required: true
  branch:
    description: The protected branch.
    type: str
    default: main
  required_status_checks:
    description: The status checks that must pass before a merge.
    type: dict
    required: true
    suboptions:
      contexts:
        description:
          - The names CI reports for its checks; at least one, or nothing guards the merge.
          - Order and repeats do not matter (compared and written sorted).
        type: list
        elements: str
        required: true
      strict:
        description: The branch must be up to date with the base before merging.
        type: bool
        default: true
  required_pull_request_reviews:
    description: The reviews a pull request needs before it merges.
    type: dict
    default: {}
    suboptions:
      required_approving_review_count:
        description: Approvals needed, from 1 to 6 (GitHub's maximum).
        type: int
        default: 1
      require_code_owner_reviews:
        description: One of the approvals must come from a code owner (C(.github/CODEOWNERS)).
        type: bool
        default: true
      dismiss_stale_reviews:
        description: A new push dismisses earlier approvals.
        type: bool
        default: true
  enforce_admins:
    description: Administrators are held to the same rules.
    type: bool
    default: true
  required_linear_history:
    description: Only squash or rebase merges (no merge commits).
    type: bool
    default: false
  allow_force_pushes:
    description: Allow force pushes to the branch.
    type: bool
    default: false
  allow_deletions:
    description: Allow deleting the branch.
    type: bool
    default: false
  required_conversation_resolution:
    description: Open review threads block the merge.
    type: bool
    default: true
notes:
  - GitHub answers C(404 Branch not protected) for a branch without protection (the module then
    writes it); any other C(404) (no such repository or branch, or one the token cannot see) fails.
seealso:
  - name: GitHub REST API, protected branches
    link: https://docs.github.com/en/rest/branches/branch-protection
    description: The endpoints this module reads and writes, and their fields.
  - module: mmo_voxel.ops.github_org_two_factor_info
"""

EXAMPLES = r"""
- name: Protect main (check mode shows the plan, --diff the before and after)
  mmo_voxel.ops.github_branch_protection:
    token: "{{ lookup('ansible.builtin.env', 'GITHUB_TOKEN') }}"
    owner: mmo-voxel
    repo: ops
    branch: main
    required_status_checks:
      contexts: [test]
    required_pull_request_reviews:
      required_approving_review_count: 1
  register: protection

- name: Say what changed
  ansible.builtin.debug:
    msg: "{{ protection.msg }}"

- name: Protect a branch of a GitHub Enterprise Server repository, merge commits refused
  mmo_voxel.ops.github_branch_protection:
    api_url: https://github.example.com/api/v3
    token: "{{ secret_github_admin_token }}"
    owner: studio
    repo: game
    branch: release
    required_status_checks:
      contexts: [build, test]
      strict: false
    required_pull_request_reviews:
      required_approving_review_count: 2
    required_linear_history: true
"""

RETURN = r"""
msg:
  description: >-
    One line for a person; each value that differs as C(KEY: BEFORE -> AFTER) in JSON
    (C(KEY.SUBKEY) within a section that exists on both sides).
  returned: always
  type: str
  sample: "mmo-voxel/ops branch main: protection differs; allow_force_pushes: true -> false"
changed_keys:
  description: The top-level keys of the protection that differ from the declared one (written,
    or in check mode to be written); empty when it is as declared.
  returned: always
  type: list
  elements: str
  sample: [allow_force_pushes, required_pull_request_reviews]
protected_before:
  description: Whether the branch had any protection before this run.
  returned: always
  type: bool
protection:
  description: The branch's protection after this run (in check mode, as it would be), in the
    shape of the write request.
  returned: always
  type: dict
  sample:
    required_status_checks: {strict: true, contexts: [test]}
    enforce_admins: true
    required_pull_request_reviews:
      dismiss_stale_reviews: true
      require_code_owner_reviews: true
      required_approving_review_count: 1
    restrictions: null
    required_linear_history: false
    allow_force_pushes: false
    allow_deletions: false
    required_conversation_resolution: true
invalid_option:
  description: The option refused before any request (its path, for a suboption).
  returned: when an option's value was refused
  type: str
  sample: required_pull_request_reviews.required_approving_review_count
problem:
  description: What is wrong with RV(invalid_option)'s value.
  returned: when an option's value was refused
  type: str
  sample: must be at least 1 (got 0)
"""

import json
from typing import Any, NoReturn, cast
from urllib.parse import quote

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mmo_voxel.ops.plugins.module_utils import github_api

# GitHub's limits on required approvals (the API refuses more than 6).
MIN_APPROVALS = 1
MAX_APPROVALS = 6
# GitHub's 404 message for a branch that exists without protection (any other 404 is an error).
NOT_PROTECTED = "Branch not protected"
# Keys the GET answer wraps as {"enabled": bool} that the PUT takes as a bare bool.
ENABLED_FLAGS = (
    "enforce_admins",
    "required_linear_history",
    "allow_force_pushes",
    "allow_deletions",
    "required_conversation_resolution",
)


def argument_spec() -> dict[str, Any]:
    return {
        **github_api.api_argument_spec(),
        "owner": {"type": "str", "required": True},
        "repo": {"type": "str", "required": True},
        "branch": {"type": "str", "default": "main"},
        "required_status_checks": {
            "type": "dict",
            "required": True,
            "options": {
                "contexts": {"type": "list", "elements": "str", "required": True},
                "strict": {"type": "bool", "default": True},
            },
        },
        "required_pull_request_reviews": {
            "type": "dict",
            "default": {},
            "options": {
                "required_approving_review_count": {"type": "int", "default": MIN_APPROVALS},
                "require_code_owner_reviews": {"type": "bool", "default": True},
                "dismiss_stale_reviews": {"type": "bool", "default": True},
            },
        },
        "enforce_admins": {"type": "bool", "default": True},
        "required_linear_history": {"type": "bool", "default": False},
        "allow_force_pushes": {"type": "bool", "default": False},
        "allow_deletions": {"type": "bool", "default": False},
        "required_conversation_resolution": {"type": "bool", "default": True},
    }


def declared_protection(params: dict[str, Any]) -> dict[str, Any]:
    """The PUT body the options declare; refuses values GitHub or the guardrails would not take."""
    checks = params["required_status_checks"]
    contexts = sorted({name.strip() for name in checks["contexts"]})
    if not contexts or "" in contexts:
        raise github_api.InvalidOption(
            "required_status_checks.contexts",
            "name at least one status check (the CI job), and no blank name, "
            "or nothing guards the merge",
        )
    reviews = params["required_pull_request_reviews"]
    approvals = reviews["required_approving_review_count"]
    if approvals < MIN_APPROVALS:
        raise github_api.InvalidOption(
            "required_pull_request_reviews.required_approving_review_count",
            f"must be at least {MIN_APPROVALS} (got {approvals})",
        )
    if approvals > MAX_APPROVALS:
        raise github_api.InvalidOption(
            "required_pull_request_reviews.required_approving_review_count",
            f"must be at most {MAX_APPROVALS}, GitHub's maximum (got {approvals})",
        )
    return {
        "required_status_checks": {"strict": checks["strict"], "contexts": contexts},
        "required_pull_request_reviews": {
            "dismiss_stale_reviews": reviews["dismiss_stale_reviews"],
            "require_code_owner_reviews": reviews["require_code_owner_reviews"],
            "required_approving_review_count": approvals,
        },
        "restrictions": None,
        **{key: params[key] for key in ENABLED_FLAGS},
    }


def normalise(current: dict[str, Any] | None) -> dict[str, Any]:
    """GitHub's GET answer (None: not protected) in the shape of the PUT body.

    The GET answer wraps flags as {"enabled": bool}, adds urls and fields the PUT does not take,
    lists restrictions as objects; what it leaves out is off.
    """
    raw = current or {}
    checks = raw.get("required_status_checks")
    reviews = raw.get("required_pull_request_reviews")
    restrictions = raw.get("restrictions")
    return {
        "required_status_checks": None
        if checks is None
        else {
            "strict": bool(checks.get("strict", False)),
            "contexts": sorted(set(checks.get("contexts") or [])),
        },
        "required_pull_request_reviews": None
        if reviews is None
        else {
            "dismiss_stale_reviews": bool(reviews.get("dismiss_stale_reviews", False)),
            "require_code_owner_reviews": bool(reviews.get("require_code_owner_reviews", False)),
            "required_approving_review_count": int(
                reviews.get("required_approving_review_count", 0)
            ),
        },
        "restrictions": None
        if restrictions is None
        else {
            "users": sorted(user["login"] for user in restrictions.get("users", [])),
            "teams": sorted(team["slug"] for team in restrictions.get("teams", [])),
            "apps": sorted(app["slug"] for app in restrictions.get("apps", [])),
        },
        **{key: enabled(raw, key) for key in ENABLED_FLAGS},
    }


def enabled(raw: dict[str, Any], key: str) -> bool:
    """A flag of the GET answer ({"enabled": bool}); absent means off."""
    return bool((raw.get(key) or {}).get("enabled", False))


def changed_keys(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The top-level keys whose value differs, in the order of the declared protection."""
    return [key for key in after if before.get(key) != after[key]]


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, before, after) for each value that differs; within two dicts, key.sub per sub-key."""
    found = []
    for key in changed_keys(before, after):
        old, new = before.get(key), after[key]
        if isinstance(old, dict) and isinstance(new, dict):
            found += [(f"{key}.{sub}", old.get(sub), new[sub]) for sub in changed_keys(old, new)]
        else:
            found.append((key, old, new))
    return found


def plan(where: str, protected: bool, before: dict[str, Any], after: dict[str, Any]) -> str:
    """One line: where, and each value that differs as `key: before -> after` in JSON."""
    found = differences(before, after)
    if not found:
        return f"{where}: protection as declared"
    state = "protection differs" if protected else "not protected yet"
    changes = "; ".join(
        f"{key}: {json.dumps(old, sort_keys=True)} -> {json.dumps(new, sort_keys=True)}"
        for key, old, new in found
    )
    return f"{where}: {state}; {changes}"


class BranchProtection:
    """One run: read, compare, and write when the protection differs (not in check mode)."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        params = module.params
        api = github_api.checked_api_url(params)
        owner = github_api.required_name("owner", params["owner"], "repository's owner")
        repo = github_api.required_name("repo", params["repo"], "repository")
        branch = github_api.required_name("branch", params["branch"], "branch")
        self.declared = declared_protection(params)
        self.where = f"{owner}/{repo} branch {branch}"
        self.url = f"{api}/repos/{quote(owner)}/{quote(repo)}/branches/{quote(branch, safe='')}"
        self.url += "/protection"

    def read(self) -> dict[str, Any] | None:
        """The current protection as GitHub answers it; None when the branch has none."""
        answer = github_api.request(self.module, "GET", self.url)
        if answer.status == 200:
            # GitHub answers a branch's protection with a JSON object.
            return cast(dict[str, Any], answer.body)
        if answer.status == 404 and answer.message == NOT_PROTECTED:
            return None
        if answer.status == 404:  # GitHub's answer to a token that may not see the repository too
            self.fail(
                "Reading",
                f"HTTP 404, no such repository or branch, or the token cannot see it "
                f"({answer.message})",
            )
        self.fail("Reading", answer.describe())

    def write(self) -> dict[str, Any]:
        """PUT the declared protection; GitHub answers with the protection it now keeps."""
        answer = github_api.request(self.module, "PUT", self.url, self.declared)
        if answer.status != 200:
            self.fail("Writing", answer.describe())
        return normalise(answer.body)

    def fail(self, action: str, why: str) -> NoReturn:  # type: ignore[misc]  # fail_json exits; ansible-core is untyped, so mypy cannot know
        self.module.fail_json(
            msg=f"{action} the protection of {self.where} at {self.url} failed: {why}"
        )

    def run(self) -> dict[str, Any]:
        current = self.read()
        before = normalise(current)
        keys = changed_keys(before, self.declared)
        result: dict[str, Any] = {
            "changed": bool(keys),
            "changed_keys": keys,
            "protected_before": current is not None,
            "protection": before if not keys else self.declared,
            "msg": plan(self.where, current is not None, before, self.declared),
        }
        if self.module._diff:
            # Only what changes: the keys left as they are would bury the change in context.
            result["diff"] = {
                "before": {key: before[key] for key in keys},
                "after": {key: self.declared[key] for key in keys},
            }
        if keys and not self.module.check_mode:
            result["protection"] = self.write()
        return result


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        manager = BranchProtection(module)
    except github_api.InvalidOption as invalid:
        invalid.fail(module)
    module.exit_json(**manager.run())


if __name__ == "__main__":
    main()
