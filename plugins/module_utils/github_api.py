"""GitHub's REST API for the mmo_voxel.ops github_* modules: options, one request, its answer.

The options every such module shares (the API's address and the token), their validation, a
request through Ansible's own fetch_url (no third-party HTTP library on the controller), and the
readable sentence for an answer that is not the one asked for. The token only ever travels in
the Authorization header; the modules declare it no_log, so Ansible masks it in any output.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, NoReturn

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import fetch_url

DEFAULT_API_URL = "https://api.github.com"
# The REST API version the modules are written against (GitHub's date-named versions).
API_VERSION = "2022-11-28"
TIMEOUT_SECONDS = 30

# What the usual refusals mean for these modules, and what to do about them.
STATUS_MEANINGS = {
    -1: "no answer from the API (address, network or TLS)",
    401: "HTTP 401, the token was refused (expired, revoked or mistyped): set a valid GITHUB_TOKEN",
    403: "HTTP 403, the token may not administer this repository (it needs Administration: write)",
}


def api_argument_spec() -> dict[str, dict[str, Any]]:
    """The options of every github_* module: where the API is and the token for it."""
    return {
        "api_url": {"type": "str", "default": DEFAULT_API_URL},
        "token": {"type": "str", "required": True, "no_log": True},
    }


class InvalidOption(ValueError):
    """An option's value the module refuses before it sends anything."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option}: {problem}")
        self.option = option
        self.problem = problem

    def fail(self, module: AnsibleModule) -> NoReturn:  # type: ignore[misc]  # fail_json exits; ansible-core is untyped, so mypy cannot know
        """Fail the module, naming the option (and returning it, for a playbook to map)."""
        module.fail_json(msg=str(self), invalid_option=self.option, problem=self.problem)


def checked_api_url(params: dict[str, Any]) -> str:
    """The shared options checked (an http(s) URL, a token); the URL without a trailing slash."""
    api_url: str | None = params["api_url"]
    if not api_url or not re.match(r"^https?://[^/\s]+", api_url):
        raise InvalidOption("api_url", f"'{api_url}' is not an http(s):// URL")
    if not params["token"]:
        raise InvalidOption("token", "empty; every request to the API needs a token")
    return api_url.rstrip("/")


def required_name(option: str, value: str | None, what: str) -> str:
    """A path segment (owner, repository, branch, organisation): refused when blank."""
    if not value or not value.strip():
        raise InvalidOption(option, f"empty; it must name the {what}")
    return value.strip()


@dataclass(frozen=True)
class Answer:
    """GitHub's answer to one request: status (-1: none came), JSON body, message."""

    status: int
    body: Any
    message: str

    def describe(self) -> str:
        """The status in words, with GitHub's own message: for a failure's msg."""
        meaning = STATUS_MEANINGS.get(self.status, f"HTTP {self.status}")
        return f"{meaning} ({self.message or 'no message'})"


def request(
    module: AnsibleModule, method: str, url: str, body: dict[str, Any] | None = None
) -> Answer:
    """One request to the API with the module's token; never raises for an HTTP status."""
    headers = {
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": API_VERSION,
        "Authorization": f"Bearer {module.params['token']}",
    }
    data = None
    if body is not None:
        data = json.dumps(body)
        headers["Content-Type"] = "application/json"
    response, info = fetch_url(
        module, url, data=data, headers=headers, method=method, timeout=TIMEOUT_SECONDS
    )
    # An HTTP error's body was read into info already (the response it returns is spent).
    if "body" in info:
        raw = info["body"] or b""
    else:
        raw = response.read() if response is not None else b""
    return parse_answer(int(info.get("status", -1)), raw, str(info.get("msg", "")))


def parse_answer(status: int, raw: bytes | str, transport_message: str) -> Answer:
    """The JSON body (None when there is none) and GitHub's message, else the transport's."""
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    message = body.get("message") if isinstance(body, dict) else None
    return Answer(status, body, str(message or transport_message))
