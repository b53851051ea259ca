"""playbooks/github_guardrails.yml against a local stand-in for GitHub's REST API.

GitHub cannot be reached from CI, so a small HTTP server in a thread answers the three endpoints
the playbook uses, the way GitHub does (the GET answer of a protection has a different shape from
the PUT body), and records every request. The playbook runs for real (ansible-playbook).
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from documented_commands import run_documented

OWNER = "studio-test"
REPO = "ops-test"
PROTECTION_PATH = f"/repos/{OWNER}/{REPO}/branches/main/protection"
ORG_PATH = f"/orgs/{OWNER}"
# Built at run time, so that no token-like literal sits in the repository.
TOKEN = "ghp_" + "guardrailsTEST" + "0123456789abcdefXYZ"

EXPECTED_PUT = {
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


@dataclass
class Recorded:
    method: str
    path: str
    authorization: str | None
    body: Any


@dataclass
class FakeGitHub:
    """State of the emulated GitHub: the branch protection (PUT body form) and the org's 2FA."""

    token: str = TOKEN
    protection: dict[str, Any] | None = None
    two_factor: bool | None = True
    read_only: bool = False  # the token may read the repository but not administer it
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""

    def puts(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "PUT"]

    def as_github_returns_it(self) -> dict[str, Any]:
        """The GET answer GitHub gives for a protection set with self.protection."""
        body = self.protection or {}
        base = f"{self.url}{PROTECTION_PATH}"
        out: dict[str, Any] = {"url": base}
        checks = body.get("required_status_checks")
        if checks:
            out["required_status_checks"] = {
                "url": f"{base}/required_status_checks",
                "strict": checks["strict"],
                "contexts": list(checks["contexts"]),
                "checks": [{"context": c, "app_id": None} for c in checks["contexts"]],
                "contexts_url": f"{base}/required_status_checks/contexts",
            }
        reviews = body.get("required_pull_request_reviews")
        if reviews:
            out["required_pull_request_reviews"] = {
                "url": f"{base}/required_pull_request_reviews",
                "dismiss_stale_reviews": reviews.get("dismiss_stale_reviews", False),
                "require_code_owner_reviews": reviews.get("require_code_owner_reviews", False),
                "required_approving_review_count": reviews.get(
                    "required_approving_review_count", 0
                ),
                "require_last_push_approval": False,
            }
        out["required_signatures"] = {"url": f"{base}/required_signatures", "enabled": False}
        out["enforce_admins"] = {
            "url": f"{base}/enforce_admins",
            "enabled": body.get("enforce_admins", False),
        }
        for key in (
            "required_linear_history",
            "allow_force_pushes",
            "allow_deletions",
            "required_conversation_resolution",
        ):
            out[key] = {"enabled": bool(body.get(key, False))}
        out["block_creations"] = {"enabled": False}
        out["lock_branch"] = {"enabled": False}
        out["allow_fork_syncing"] = {"enabled": False}
        return out


def make_handler(state: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep pytest's output clean
            pass

        def reply(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def handle_any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            state.requests.append(
                Recorded(self.command, self.path, self.headers.get("Authorization"), body)
            )
            if self.headers.get("Authorization") != f"Bearer {state.token}":
                self.reply(401, {"message": "Bad credentials", "status": "401"})
            elif self.path == PROTECTION_PATH and self.command == "GET":
                if state.protection is None:
                    self.reply(404, {"message": "Branch not protected", "status": "404"})
                else:
                    self.reply(200, state.as_github_returns_it())
            elif self.path == PROTECTION_PATH and self.command == "PUT" and state.read_only:
                self.reply(403, {"message": "Resource not accessible by personal access token"})
            elif self.path == PROTECTION_PATH and self.command == "PUT":
                state.protection = body
                self.reply(200, state.as_github_returns_it())
            elif self.path == ORG_PATH and self.command == "GET":
                org: dict[str, Any] = {"login": OWNER, "id": 1}
                if state.two_factor is not None:  # only organisation owners see the field
                    org["two_factor_requirement_enabled"] = state.two_factor
                self.reply(200, org)
            else:
                self.reply(404, {"message": "Not Found", "status": "404"})

        do_GET = handle_any
        do_PUT = handle_any

    return Handler


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    state = FakeGitHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def run(github: FakeGitHub, repo: Path, ansible_env: dict[str, str], ansible_playbook: str):
    def _run(*flags: str, token: str | None = TOKEN, **extra: Any) -> subprocess.CompletedProcess:
        env = dict(ansible_env)
        env.pop("GITHUB_TOKEN", None)
        if token is not None:
            env["GITHUB_TOKEN"] = token
        variables = {
            "github_guardrails_api_url": github.url,
            "github_guardrails_owner": OWNER,
            "github_guardrails_repo": REPO,
            "github_guardrails_required_checks": ["test", "lint"],
            **extra,
        }
        return subprocess.run(
            [
                ansible_playbook,
                "-i",
                "localhost,",
                str(repo / "playbooks" / "github_guardrails.yml"),
                "-e",
                json.dumps(variables),
                *flags,
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )

    return _run


def documented(
    github: FakeGitHub, ansible_env: dict[str, str], command: str
) -> subprocess.CompletedProcess:
    """A documented command (tests/documented_commands.yml): GITHUB_TOKEN="$TOKEN", and
    -e "$STAND_IN" pointing the playbook at the stand-in (its URL, owner and repository)."""
    stand_in = {
        "github_guardrails_api_url": github.url,
        "github_guardrails_owner": OWNER,
        "github_guardrails_repo": REPO,
        "github_guardrails_required_checks": ["test", "lint"],
    }
    env = ansible_env | {"TOKEN": TOKEN, "STAND_IN": json.dumps(stand_in)}
    return run_documented(command, env=env, timeout=300)


def recap(result: subprocess.CompletedProcess) -> dict[str, int]:
    line = next(line for line in result.stdout.splitlines() if line.startswith("localhost"))
    return {
        key: int(value)
        for key, value in (part.split("=") for part in line.split(":", 1)[1].split())
    }


def test_first_run_puts_the_protection_and_second_run_changes_nothing(github, run):
    first = run()
    assert first.returncode == 0, first.stdout + first.stderr
    puts = github.puts()
    assert len(puts) == 1
    assert puts[0].path == PROTECTION_PATH
    assert puts[0].body == EXPECTED_PUT
    assert recap(first)["changed"] == 1
    assert "not protected yet" in first.stdout
    # Every request carried the token the way GitHub takes it.
    assert {r.authorization for r in github.requests} == {f"Bearer {TOKEN}"}

    github.requests.clear()
    second = run()
    assert second.returncode == 0, second.stdout + second.stderr
    assert recap(second)["changed"] == 0
    assert github.puts() == []
    assert [(r.method, r.path) for r in github.requests] == [
        ("GET", PROTECTION_PATH),
        ("GET", ORG_PATH),
    ]


def test_check_mode_shows_the_plan_and_writes_nothing(github, ansible_env):
    """The documented commands (README, docs/hardening.md): the plan, then the change."""
    # A branch protected by hand, loosely: force pushes allowed, no code owner reviews.
    github.protection = {
        **EXPECTED_PUT,
        "allow_force_pushes": True,
        "required_pull_request_reviews": {
            "dismiss_stale_reviews": True,
            "require_code_owner_reviews": False,
            "required_approving_review_count": 1,
        },
    }
    before = json.loads(json.dumps(github.protection))
    check = documented(
        github,
        ansible_env,
        'GITHUB_TOKEN="$TOKEN" ansible-playbook playbooks/github_guardrails.yml --check'
        ' -e "$STAND_IN"',
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert recap(check)["changed"] == 1
    result = documented(
        github,
        ansible_env,
        'GITHUB_TOKEN="$TOKEN" ansible-playbook playbooks/github_guardrails.yml --check --diff'
        ' -e "$STAND_IN"',
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert github.puts() == []
    assert github.protection == before
    assert recap(result)["changed"] == 1
    assert "allow_force_pushes: true -> false" in result.stdout
    assert "require_code_owner_reviews" in result.stdout
    # Only the keys that differ are in the plan.
    assert "enforce_admins:" not in result.stdout

    applied = documented(
        github,
        ansible_env,
        'GITHUB_TOKEN="$TOKEN" ansible-playbook playbooks/github_guardrails.yml -e "$STAND_IN"',
    )
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert [p.body for p in github.puts()] == [EXPECTED_PUT]
    assert {r.authorization for r in github.requests} == {f"Bearer {TOKEN}"}


def test_the_token_never_appears_in_the_output(github, run):
    runs = [run("-vvv"), run("-vvv", "--check", "--diff")]
    github.token = TOKEN + "-rotated"  # the API now refuses ours: the failure path too
    runs.append(run("-vvv"))
    for result in runs:
        assert TOKEN not in result.stdout + result.stderr
    assert runs[-1].returncode != 0


def test_a_refused_token_gives_a_clear_error(github, run):
    github.token = TOKEN[::-1]
    result = run()
    assert result.returncode == 2
    assert "HTTP 401, the token was refused" in result.stdout
    assert "Bad credentials" in result.stdout
    assert github.puts() == []
    assert TOKEN not in result.stdout + result.stderr


def test_a_missing_token_is_refused_before_any_request(github, run):
    result = run(token=None)
    assert result.returncode == 2
    assert "github_guardrails_token: empty; set GITHUB_TOKEN" in result.stdout
    assert github.requests == []


def test_an_organisation_without_2fa_fails_or_warns(github, run):
    github.two_factor = False
    failed = run()
    assert failed.returncode == 2
    assert f"Organisation {OWNER} does NOT require two-factor authentication" in failed.stdout
    # The protection was still put in place before the 2FA check failed.
    assert len(github.puts()) == 1

    warned = run(github_guardrails_org_2fa="warn")
    assert warned.returncode == 0, warned.stdout + warned.stderr
    assert "WARNING: Organisation" in warned.stdout


def test_too_few_approvals_are_refused_before_any_request(github, run):
    result = run(github_guardrails_required_approvals=0)
    assert result.returncode == 2
    assert "github_guardrails_required_approvals: must be at least 1" in result.stdout
    assert github.requests == []


def test_an_unreadable_2fa_setting_is_reported(github, run):
    github.two_factor = None  # the token is no organisation owner: GitHub leaves the field out
    result = run(github_guardrails_org_2fa="warn")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "The token cannot see whether organisation" in result.stdout


def test_check_diff_shows_before_and_after_of_what_differs_and_puts_nothing(github, run):
    github.protection = {**EXPECTED_PUT, "allow_force_pushes": True}
    result = run("--check", "--diff")
    assert result.returncode == 0, result.stdout + result.stderr
    assert recap(result)["changed"] == 1
    assert re.search(r"^-\s+allow_force_pushes: true$", result.stdout, re.MULTILINE)
    assert re.search(r"^\+\s+allow_force_pushes: false$", result.stdout, re.MULTILINE)
    # The keys left as they are stay out of the diff.
    assert not re.search(r"^[-+ ]\s+enforce_admins:", result.stdout, re.MULTILINE)
    assert github.puts() == []
    assert {r.method for r in github.requests} == {"GET"}


def test_check_mode_on_a_converged_repository_changes_nothing(github, run):
    github.protection = json.loads(json.dumps(EXPECTED_PUT))
    result = run("--check", "--diff")
    assert result.returncode == 0, result.stdout + result.stderr
    assert recap(result)["changed"] == 0
    assert "branch main: protection as declared" in result.stdout
    assert github.puts() == []


def test_a_repository_the_token_cannot_see_gives_a_clear_error(github, run):
    result = run(github_guardrails_repo="no-such-repo")
    assert result.returncode == 2
    assert "HTTP 404, no such repository or branch, or the token cannot see it" in result.stdout
    assert "(Not Found)" in result.stdout
    assert github.puts() == []


def test_a_token_that_may_not_administer_gives_a_clear_error(github, run):
    github.read_only = True
    result = run()
    assert result.returncode == 2
    assert "HTTP 403, the token may not administer this repository" in result.stdout
    assert "Resource not accessible by personal access token" in result.stdout
    assert github.protection is None
    assert TOKEN not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"github_guardrails_api_url": "ftp://example.com"},
            "github_guardrails_api_url: 'ftp://example.com' is not an http(s):// URL",
        ),
        (
            {"github_guardrails_required_checks": []},
            "github_guardrails_required_checks: name at least one status check",
        ),
        ({"github_guardrails_repo": " "}, "github_guardrails_repo: empty"),
    ],
)
def test_bad_input_is_refused_naming_the_variable_before_any_request(github, run, extra, message):
    result = run(**extra)
    assert result.returncode == 2
    assert message in result.stdout
    assert github.requests == []


@pytest.mark.parametrize(
    ("module", "shown"),
    [
        ("github_branch_protection", "required_approving_review_count"),
        ("github_org_two_factor_info", "two_factor_requirement_enabled"),
    ],
)
def test_ansible_doc_renders_the_modules(repo, ansible_env, ansible_playbook, module, shown):
    """docs/hardening.md points to ansible-doc: every part of the documentation must parse."""
    result = subprocess.run(
        [str(Path(ansible_playbook).with_name("ansible-doc")), f"mmo_voxel.ops.{module}"],
        cwd=repo,
        env=ansible_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr  # a part that does not parse is skipped with a warning
    for part in ("OPTIONS", "EXAMPLES", "RETURN VALUES", shown):
        assert part in result.stdout
