"""Module github_branch_protection: GitHub's GET answer brought to the PUT shape, the comparison,
the plan line, and bad options refused before any request (main() run in-process)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from sqlite_module_helpers import run_module

from ansible_collections.mmo_voxel.ops.plugins.modules import github_branch_protection as gbp

BASE = "https://api.github.com/repos/studio/ops/branches/main/protection"
# GitHub's GET answer for a protection (as its REST documentation shows it): flags wrapped in
# {"enabled": ...}, urls, fields the PUT does not take, restrictions as objects.
GITHUB_ANSWER: dict[str, Any] = {
    "url": BASE,
    "required_status_checks": {
        "url": f"{BASE}/required_status_checks",
        "strict": True,
        "contexts": ["test", "lint"],
        "contexts_url": f"{BASE}/required_status_checks/contexts",
        "checks": [{"context": "test", "app_id": None}, {"context": "lint", "app_id": None}],
    },
    "enforce_admins": {"url": f"{BASE}/enforce_admins", "enabled": True},
    "required_pull_request_reviews": {
        "url": f"{BASE}/required_pull_request_reviews",
        "dismissal_restrictions": {"users": [], "teams": []},
        "dismiss_stale_reviews": True,
        "require_code_owner_reviews": True,
        "required_approving_review_count": 2,
        "require_last_push_approval": True,
    },
    "restrictions": {
        "url": f"{BASE}/restrictions",
        "users": [{"login": "octocat", "id": 1}, {"login": "hubot", "id": 2}],
        "teams": [{"slug": "justice-league", "id": 1}],
        "apps": [{"slug": "octoapp", "id": 1}],
    },
    "required_linear_history": {"enabled": True},
    "allow_force_pushes": {"enabled": False},
    "allow_deletions": {"enabled": False},
    "required_conversation_resolution": {"enabled": True},
    "required_signatures": {"url": f"{BASE}/required_signatures", "enabled": True},
    "lock_branch": {"enabled": False},
    "block_creations": {"enabled": False},
}

# What Ansible shows in place of a no_log option's value.
MASKED = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
# The options of the guardrails playbook's protection (the playbook's defaults).
OPTIONS: dict[str, Any] = {
    "api_url": "http://127.0.0.1:9",  # the discard port: nothing answers there
    "token": "not-a-real-token",
    "owner": "studio",
    "repo": "ops",
    "required_status_checks": {"contexts": ["test", "lint"]},
}


def declared(**options: Any) -> dict[str, Any]:
    """The PUT body for OPTIONS plus these, defaults filled in by the module's own argument spec."""
    validated = ArgumentSpecValidator(gbp.argument_spec()).validate({**OPTIONS, **options})
    assert not validated.error_messages
    return gbp.declared_protection(validated.validated_parameters)


def test_github_s_answer_is_brought_to_the_put_shape() -> None:
    assert gbp.normalise(GITHUB_ANSWER) == {
        "required_status_checks": {"strict": True, "contexts": ["lint", "test"]},
        "enforce_admins": True,
        "required_pull_request_reviews": {
            "dismiss_stale_reviews": True,
            "require_code_owner_reviews": True,
            "required_approving_review_count": 2,
        },
        "restrictions": {
            "users": ["hubot", "octocat"],
            "teams": ["justice-league"],
            "apps": ["octoapp"],
        },
        "required_linear_history": True,
        "allow_force_pushes": False,
        "allow_deletions": False,
        "required_conversation_resolution": True,
    }


def test_an_unprotected_branch_is_everything_off() -> None:
    assert gbp.normalise(None) == {
        "required_status_checks": None,
        "enforce_admins": False,
        "required_pull_request_reviews": None,
        "restrictions": None,
        "required_linear_history": False,
        "allow_force_pushes": False,
        "allow_deletions": False,
        "required_conversation_resolution": False,
    }


def test_flags_github_leaves_out_are_off() -> None:
    answer = {"url": BASE, "enforce_admins": {"enabled": True}}
    normalised = gbp.normalise(answer)
    assert normalised["enforce_admins"] is True
    assert normalised["allow_deletions"] is False
    assert normalised["required_status_checks"] is None


def test_the_declared_protection_is_the_put_body() -> None:
    assert declared() == {
        "required_status_checks": {"strict": True, "contexts": ["lint", "test"]},
        "enforce_admins": True,
        "required_pull_request_reviews": {
            "dismiss_stale_reviews": True,
            "require_code_owner_reviews": True,
            "required_approving_review_count": 1,
        },
        "restrictions": None,
        "required_linear_history": False,
        "allow_force_pushes": False,
        "allow_deletions": False,
        "required_conversation_resolution": True,
    }


def test_the_same_protection_read_back_is_no_change() -> None:
    """What GitHub answers after a PUT of the declared body compares equal, whatever its order."""
    want = declared()
    answer = copy.deepcopy(GITHUB_ANSWER)
    answer["required_status_checks"]["contexts"] = ["test", "lint", "test"]
    answer["required_pull_request_reviews"]["required_approving_review_count"] = 1
    answer["required_linear_history"] = {"enabled": False}
    del answer["restrictions"]
    assert gbp.changed_keys(gbp.normalise(answer), want) == []


@pytest.mark.parametrize(
    ("change", "keys"),
    [
        ({"allow_force_pushes": {"enabled": True}}, ["allow_force_pushes"]),
        ({"restrictions": GITHUB_ANSWER["restrictions"]}, ["restrictions"]),
        (
            {"required_status_checks": {"strict": False, "contexts": ["test", "lint"]}},
            ["required_status_checks"],
        ),
        (
            {"enforce_admins": {"enabled": False}, "required_pull_request_reviews": None},
            ["enforce_admins", "required_pull_request_reviews"],
        ),
    ],
)
def test_changed_keys_name_what_differs(change: dict[str, Any], keys: list[str]) -> None:
    converged = {
        **GITHUB_ANSWER,
        "required_pull_request_reviews": {
            **GITHUB_ANSWER["required_pull_request_reviews"],
            "required_approving_review_count": 1,
        },
        "required_linear_history": {"enabled": False},
        "restrictions": None,
    }
    current = {key: value for key, value in {**converged, **change}.items() if value is not None}
    assert sorted(gbp.changed_keys(gbp.normalise(current), declared())) == keys


def test_the_plan_names_sub_keys_within_a_section_and_whole_new_sections() -> None:
    before = gbp.normalise(
        {
            "required_pull_request_reviews": {
                "dismiss_stale_reviews": True,
                "required_approving_review_count": 1,
            },
            "allow_force_pushes": {"enabled": True},
        }
    )
    line = gbp.plan("studio/ops branch main", True, before, declared())
    assert line.startswith("studio/ops branch main: protection differs; ")
    assert "required_pull_request_reviews.require_code_owner_reviews: false -> true" in line
    assert "allow_force_pushes: true -> false" in line
    assert 'required_status_checks: null -> {"contexts": ["lint", "test"], "strict": true}' in line
    assert "dismiss_stale_reviews" not in line  # the same on both sides


def test_the_plan_of_an_unprotected_branch_and_of_a_converged_one() -> None:
    want = declared()
    assert gbp.plan("o/r branch main", False, gbp.normalise(None), want).startswith(
        "o/r branch main: not protected yet; "
    )
    assert (
        gbp.plan("o/r branch main", True, want, want) == "o/r branch main: protection as declared"
    )


@pytest.mark.parametrize(
    ("options", "option", "problem"),
    [
        (
            {"required_pull_request_reviews": {"required_approving_review_count": 0}},
            "required_pull_request_reviews.required_approving_review_count",
            "must be at least 1 (got 0)",
        ),
        (
            {"required_pull_request_reviews": {"required_approving_review_count": 7}},
            "required_pull_request_reviews.required_approving_review_count",
            "must be at most 6, GitHub's maximum (got 7)",
        ),
        (
            {"required_status_checks": {"contexts": []}},
            "required_status_checks.contexts",
            "name at least one",
        ),
        (
            {"required_status_checks": {"contexts": ["test", " "]}},
            "required_status_checks.contexts",
            "no blank name",
        ),
        ({"api_url": "api.github.com"}, "api_url", "is not an http(s):// URL"),
        ({"token": ""}, "token", "empty; every request to the API needs a token"),
        ({"owner": ""}, "owner", "empty; it must name the repository's owner"),
        ({"branch": " "}, "branch", "empty; it must name the branch"),
    ],
)
def test_bad_options_are_refused_naming_the_option_before_any_request(
    capsys, options: dict[str, Any], option: str, problem: str
) -> None:
    """Refused before a request: a request to the discard port would fail with 'no answer'."""
    result = run_module(gbp, capsys, {**OPTIONS, **options})
    assert result["failed"] is True
    assert result["invalid_option"] == option
    assert problem in result["problem"]
    assert result["msg"].startswith(f"{option}: ")


def test_a_value_of_the_wrong_type_is_refused_by_the_argument_spec(capsys) -> None:
    result = run_module(
        gbp,
        capsys,
        {**OPTIONS, "required_pull_request_reviews": {"required_approving_review_count": "many"}},
    )
    assert result["failed"] is True
    assert "required_approving_review_count" in result["msg"]


def test_the_token_is_masked_in_the_result(capsys) -> None:
    result = run_module(gbp, capsys, {**OPTIONS, "token": "s3cr3t-t0ken-value", "owner": ""})
    assert result["invocation"]["module_args"]["token"] == MASKED
    assert "s3cr3t-t0ken-value" not in str(result)
