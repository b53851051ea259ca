"""Module github_org_two_factor_info: GitHub's answer about an organisation, in one finding."""

from __future__ import annotations

import pytest
from sqlite_module_helpers import run_module

from ansible_collections.mmo_voxel.ops.plugins.module_utils.github_api import Answer
from ansible_collections.mmo_voxel.ops.plugins.modules import github_org_two_factor_info as tfa


@pytest.mark.parametrize(
    ("answer", "enabled", "says"),
    [
        (
            Answer(200, {"login": "studio", "two_factor_requirement_enabled": True}, ""),
            True,
            "Organisation studio requires two-factor authentication for its members.",
        ),
        (
            Answer(200, {"login": "studio", "two_factor_requirement_enabled": False}, ""),
            False,
            "Organisation studio does NOT require two-factor authentication for its members.",
        ),
        (
            Answer(200, {"login": "studio"}, ""),  # GitHub's answer to a token of no owner
            None,
            "The token cannot see whether organisation studio requires two-factor authentication",
        ),
        (
            Answer(403, {"message": "Must have admin rights"}, "Must have admin rights"),
            None,
            "Organisation studio could not be read (HTTP 403: Must have admin rights), so its "
            "two-factor requirement is unknown.",
        ),
        (
            Answer(-1, None, "Connection refused"),
            None,
            "Organisation studio could not be read (no answer: Connection refused)",
        ),
    ],
)
def test_the_finding_says_what_github_answered(answer: Answer, enabled: bool | None, says: str):
    found, msg = tfa.finding("studio", answer)
    assert found is enabled
    assert says in msg
    # Unless it is on, the sentence says how an owner turns it on.
    assert (tfa.REMEDY in msg) is (enabled is not True)


def test_a_blank_organisation_is_refused_before_any_request(capsys) -> None:
    result = run_module(
        tfa, capsys, {"api_url": "http://127.0.0.1:9", "token": "not-a-real-token", "org": " "}
    )
    assert result["failed"] is True
    assert result["invalid_option"] == "org"
    assert result["msg"] == "org: empty; it must name the organisation"
