"""github_api: GitHub's answer read into status, body and the message a failure shows."""

from __future__ import annotations

import pytest

from ansible_collections.mmo_voxel.ops.plugins.module_utils import github_api


def test_github_s_own_message_wins_over_the_transport_s() -> None:
    answer = github_api.parse_answer(
        401, b'{"message": "Bad credentials", "status": "401"}', "HTTP Error 401: Unauthorized"
    )
    assert answer.body == {"message": "Bad credentials", "status": "401"}
    assert answer.message == "Bad credentials"
    assert answer.describe() == (
        "HTTP 401, the token was refused (expired, revoked or mistyped): set a valid GITHUB_TOKEN"
        " (Bad credentials)"
    )


@pytest.mark.parametrize("raw", [b"", b"<html>Bad gateway</html>", b"[1, 2]"])
def test_an_answer_without_a_json_message_keeps_the_transport_s(raw: bytes) -> None:
    answer = github_api.parse_answer(502, raw, "HTTP Error 502: Bad Gateway")
    assert answer.message == "HTTP Error 502: Bad Gateway"
    assert answer.describe() == "HTTP 502 (HTTP Error 502: Bad Gateway)"


def test_no_answer_at_all_says_where_to_look() -> None:
    answer = github_api.parse_answer(-1, b"", "Request failed: <urlopen error [Errno 111]>")
    assert answer.describe().startswith("no answer from the API (address, network or TLS) (")


@pytest.mark.parametrize(
    ("api_url", "base"),
    [
        ("https://api.github.com", "https://api.github.com"),
        ("http://ghe.local/api/v3//", "http://ghe.local/api/v3"),
    ],
)
def test_the_api_url_loses_its_trailing_slashes(api_url: str, base: str) -> None:
    assert github_api.checked_api_url({"api_url": api_url, "token": "t"}) == base
