"""operations/runbooks/*.md: each has its four sections, and its Fix command names a real playbook.

The Fix section holds the command(s) in fenced ``sh`` blocks. For each `ansible-playbook`
command: the playbook exists, parses as a list of plays, and every `-e name=value` it passes is
a variable that playbook or one of the roles it includes knows (so a renamed variable breaks
here, not during an incident). Playbooks still to come from another issue go in PENDING with a
strict xfail: once they land the case turns XPASS (red) and the entry must be removed.

Every such playbook must also be *run* by a test of the suite: EXERCISED_BY names the test
for each, and the check below proves that test exists and calls that playbook (by its path or,
where the test builds the path, by the name it passes), so a runbook cannot point at a
playbook nothing runs.
"""

from __future__ import annotations

import re
import shlex
from itertools import pairwise
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RUNBOOKS = REPO / "operations" / "runbooks"
NAMED = [
    "restart.md",
    "db-rollback.md",
    "chunk-repair.md",
    "deploy-rollback.md",
    "leaked-secret.md",
]
SECTIONS = ["Symptoms", "Fix", "Verify", "Record"]
# playbook path -> reason; every entry becomes xfail(strict=True). Empty: all have landed.
PENDING: dict[str, str] = {}
# playbook -> (test file, test function, the string by which that test names the playbook).
EXERCISED_BY: dict[str, tuple[str, str, str]] = {
    "playbooks/runbooks/restart.yml": (
        "tests/integration/test_deploy_e2e.py",
        "test_deploy_fail_rollback_and_noop",
        "playbooks/runbooks/restart.yml",
    ),
    "playbooks/runbooks/rollback.yml": (
        "tests/integration/test_deploy_e2e.py",
        "test_deploy_fail_rollback_and_noop",
        "playbooks/runbooks/rollback.yml",
    ),
    "playbooks/runbooks/db_rollback.yml": (
        "tests/integration/test_deploy_e2e.py",
        "test_database_runbooks_stop_fix_and_restart_the_server",
        "playbooks/runbooks/db_rollback.yml",
    ),
    "playbooks/runbooks/chunk_repair.yml": (
        "tests/integration/test_deploy_e2e.py",
        "test_database_runbooks_stop_fix_and_restart_the_server",
        "playbooks/runbooks/chunk_repair.yml",
    ),
    "playbooks/secrets_offboard.yml": (
        "tests/integration/test_secrets_playbooks.py",
        "test_offboard_removes_access_rotates_and_lists_what_to_change",
        '"offboard"',
    ),
    "playbooks/secrets_regenerate.yml": (
        "tests/integration/test_secrets_playbooks.py",
        "test_regenerate_writes_fresh_values_each_run",
        '"regenerate"',
    ),
}


def section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    return match.group(1) if match else ""


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", text, re.M | re.S)


def commands(block: str) -> list[list[str]]:
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = [line.split("#")[0].strip() for line in joined.splitlines()]
    return [shlex.split(line) for line in lines if line]


def fix_commands(runbook: str) -> list[list[str]]:
    text = (RUNBOOKS / runbook).read_text(encoding="utf-8")
    return [cmd for block in sh_blocks(section(text, "Fix")) for cmd in commands(block)]


def playbook_of(argv: list[str]) -> str:
    return next(arg for arg in argv[1:] if arg.endswith(".yml"))


def extra_var_names(argv: list[str]) -> list[str]:
    names = []
    for flag, value in pairwise(argv):
        if flag in {"-e", "--extra-vars"} and not value.startswith(("{", "@")):
            names += [pair.split("=", 1)[0] for pair in value.split()]
    return names


def included_roles(node: object) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key.split(".")[-1] in {"include_role", "import_role"} and isinstance(value, dict):
                found.add(value["name"])
            elif key == "roles" and isinstance(value, list):
                found |= {r if isinstance(r, str) else r.get("role", r.get("name")) for r in value}
            else:
                found |= included_roles(value)
    elif isinstance(node, list):
        for item in node:
            found |= included_roles(item)
    return found


def known_names(playbook: Path) -> str:
    """Text in which a known variable name must appear: the playbook and its roles' inputs."""
    parts = [playbook.read_text(encoding="utf-8")]
    for role in included_roles(yaml.safe_load(parts[0])):
        for rel in ("defaults/main.yml", "meta/argument_specs.yml"):
            path = REPO / "roles" / role / rel
            if path.exists():
                parts.append(path.read_text(encoding="utf-8"))
    return "\n".join(parts)


def cases() -> list:
    out = []
    for runbook in NAMED:
        for argv in fix_commands(runbook) if (RUNBOOKS / runbook).exists() else []:
            if argv[0] != "ansible-playbook":
                continue
            playbook = playbook_of(argv)
            marks = []
            if playbook in PENDING:
                marks = [pytest.mark.xfail(strict=True, reason=PENDING[playbook])]
            out.append(pytest.param(runbook, argv, id=f"{runbook}:{playbook}", marks=marks))
    return out


@pytest.mark.parametrize("runbook", NAMED)
def test_runbook_has_its_sections_and_a_fix_command(runbook):
    text = (RUNBOOKS / runbook).read_text(encoding="utf-8")
    for title in SECTIONS:
        assert section(text, title).strip(), f"{runbook}: no '## {title}' section"
    argvs = fix_commands(runbook)
    assert argvs, f"{runbook}: no command in a ```sh block under '## Fix'"
    assert all(argv[0] == "ansible-playbook" for argv in argvs), argvs


@pytest.mark.parametrize(("runbook", "argv"), cases())
def test_fix_command_names_an_existing_playbook_and_known_variables(runbook, argv):
    playbook = REPO / playbook_of(argv)
    assert playbook.is_file(), f"{runbook}: {playbook_of(argv)} does not exist"
    plays = yaml.safe_load(playbook.read_text(encoding="utf-8"))
    assert isinstance(plays, list), f"{playbook_of(argv)} is not a list of plays"
    assert all("hosts" in play or "import_playbook" in play for play in plays)
    inventory = argv[argv.index("-i") + 1] if "-i" in argv else None
    if inventory:
        assert (REPO / inventory).is_dir(), f"{runbook}: no inventory {inventory}"
    text = known_names(playbook)
    for name in extra_var_names(argv):
        assert re.search(rf"\b{re.escape(name)}\b", text), (
            f"{runbook}: -e {name} is not a variable of {playbook_of(argv)} or its roles"
        )


def test_cases_cover_every_named_runbook():
    assert {c.values[0] for c in cases()} == set(NAMED)


def test_every_playbook_a_runbook_mentions_exists():
    missing = []
    for page in sorted(RUNBOOKS.glob("*.md")):
        for rel in re.findall(r"playbooks/[\w/.-]+?\.yml", page.read_text(encoding="utf-8")):
            if not (REPO / rel).is_file():
                missing.append(f"{page.name}: {rel}")
    assert not missing


def test_the_index_links_every_runbook():
    index = (RUNBOOKS / "README.md").read_text(encoding="utf-8")
    for page in sorted(RUNBOOKS.glob("*.md")):
        if page.name != "README.md":
            assert f"]({page.name})" in index, page.name


def function_source(path: Path, name: str) -> str:
    """The text of one top-level test function (up to the next top-level definition)."""
    text = path.read_text(encoding="utf-8")
    match = re.search(rf"^def {re.escape(name)}\(.*?(?=^(?:def |class |@)|\Z)", text, re.M | re.S)
    assert match, f"{path.relative_to(REPO)} has no test function {name}"
    return match.group(0)


@pytest.mark.parametrize(("runbook", "argv"), cases())
def test_fix_command_is_run_by_a_test_of_the_suite(runbook, argv):
    playbook = playbook_of(argv)
    assert playbook in EXERCISED_BY, f"{runbook}: no test named in EXERCISED_BY runs {playbook}"
    test_file, function, token = EXERCISED_BY[playbook]
    body = function_source(REPO / test_file, function)
    assert token in body, f"{test_file}::{function} does not run {playbook} (no {token})"


def test_every_exercised_by_entry_is_a_fix_command():
    """No stale entries: the map lists exactly the playbooks the runbooks' Fix sections run."""
    assert set(EXERCISED_BY) == {playbook_of(c.values[1]) for c in cases()}
