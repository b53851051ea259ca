"""Every documented command is run by a test, as written or in a registered concrete form.

Static and fast: nothing is run. The documents' commands are collected by
tests/documented_commands.py (its docstring has the rule); tests/documented_commands.yml says
for each which test runs it. This fails when
(a) a collected command has no registry entry,
(b) a registry entry names a command the documents no longer show,
(c) the test an entry names does not exist, or its source does not pass the exact command text
    (for a form or an out-of-reach command: each listed concrete command) to run_documented.
An entry marked `pending` (the test is another engineer's and not routed yet) is an expected
failure of (c), strict: once routed it passes, turns red, and the key must go.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import documented_commands as dc
import pytest

REPO = dc.REPO
KEYS = {"command", "test", "runs", "why", "exempt", "pending"}
RUNNERS = {"run_documented", "run_documented_on"}
# The exemptions are few on purpose: raising this needs a reason in the entry a reviewer accepts.
MAX_EXEMPT = 9  # 9: the guide's Godot 4 export command (no Godot 4 here)


def entries() -> tuple[dict, ...]:
    return dc.registry()


def test_every_entry_is_well_formed():
    problems = []
    seen: set[str] = set()
    for entry in entries():
        command = entry.get("command")
        if not isinstance(command, str) or not command:
            problems.append(f"an entry without a command: {entry}")
            continue
        if command in seen:
            problems.append(f"{command!r}: two entries")
        seen.add(command)
        if set(entry) - KEYS:
            problems.append(f"{command!r}: unknown keys {sorted(set(entry) - KEYS)}")
        kinds = [key for key in ("test", "runs", "exempt") if key in entry]
        if len(kinds) != 1:
            problems.append(f"{command!r}: needs exactly one of test, runs, exempt (has {kinds})")
        if "runs" in entry and not (isinstance(entry["runs"], dict) and entry["runs"]):
            problems.append(f"{command!r}: runs must map concrete commands to tests")
        if "runs" in entry and not entry.get("why"):
            problems.append(f"{command!r}: runs needs a why (why these concrete commands)")
        if "exempt" in entry and len(str(entry["exempt"])) < 20:
            problems.append(f"{command!r}: an exemption needs its reason")
        if "pending" in entry and "exempt" in entry:
            problems.append(f"{command!r}: pending is for a named test, not an exemption")
        for test in concrete_tests(entry).values():
            if not isinstance(test, str) or test.count("::") != 1:
                problems.append(f"{command!r}: {test!r} is not file::function")
    assert not problems, "\n".join(problems)


def test_every_documented_command_has_an_entry():
    registered = {entry["command"] for entry in entries()}
    missing = [f"{d.where}: {d.text}" for d in dc.collect() if d.text not in registered]
    assert not missing, (
        "documented commands no test is registered for (add them to"
        " tests/documented_commands.yml):\n" + "\n".join(missing)
    )


def test_every_entry_is_still_documented():
    shown = dc.collected_texts()
    stale = [entry["command"] for entry in entries() if entry["command"] not in shown]
    assert not stale, "registry entries the documents no longer show:\n" + "\n".join(stale)


def test_exemptions_stay_few():
    exempt = [entry["command"] for entry in entries() if "exempt" in entry]
    assert len(exempt) <= MAX_EXEMPT, exempt


def concrete_tests(entry: dict) -> dict[str, str]:
    """Concrete command -> the test that runs it (the command itself for a `test` entry)."""
    if "test" in entry:
        return {entry["command"]: entry["test"]}
    return dict(entry.get("runs") or {})


def called_names(node: ast.AST) -> set[str]:
    names = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Call):
            func = child.func
            names.add(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
    return names


def module_runners(tree: ast.Module) -> set[str]:
    """run_documented, run_documented_on and the module's own functions that call them."""
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    runners = set(RUNNERS)
    grew = True
    while grew:
        found = {name for name, n in functions.items() if called_names(n) & runners}
        grew = not found <= runners
        runners |= found
    return runners


@cache
def parsed(path: Path) -> tuple[ast.Module, frozenset[str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return tree, frozenset(module_runners(tree))


def function_and_runners(path: Path, name: str) -> tuple[ast.FunctionDef | None, frozenset[str]]:
    tree, runners = parsed(path)
    node = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name), None)
    return node, runners


def strings_of(node: ast.FunctionDef) -> set[str]:
    """The string constants of a function, its decorators included."""
    return {
        child.value
        for child in ast.walk(node)
        if isinstance(child, ast.Constant) and isinstance(child.value, str)
    }


def cases() -> list:
    out = []
    for entry in entries():
        for concrete, test in concrete_tests(entry).items():
            marks = []
            if "pending" in entry:
                marks = [pytest.mark.xfail(strict=True, reason=f"pending: {entry['pending']}")]
            ident = f"{test.rsplit('::', 1)[-1]}:{concrete[:70]}"
            out.append(pytest.param(entry["command"], concrete, test, id=ident, marks=marks))
    return out


@pytest.mark.parametrize(("command", "concrete", "test"), cases())
def test_the_named_test_runs_the_command_through_run_documented(command, concrete, test):
    rel, name = test.split("::")
    path = REPO / rel
    assert path.is_file(), f"{command!r}: no test file {rel}"
    node, runners = function_and_runners(path, name)
    assert node is not None, f"{command!r}: {rel} has no top-level test function {name}"
    assert called_names(node) & runners, (
        f"{test} calls neither run_documented nor run_documented_on (nor a function of its"
        " module that does)"
    )
    assert concrete in strings_of(node), (
        f"{test} does not pass this exact text to its runner: {concrete!r}"
    )


def test_run_documented_refuses_an_undocumented_command():
    with pytest.raises(AssertionError, match="not a documented command"):
        dc.run_documented("echo this command is in no document")


def test_collection_rule_on_examples():
    block = [
        "# a comment line",
        "$ make deploy    # the main job",
        "scripts/x a \\",
        "  --b 'c # not a comment'",
        "scripts/voxeldb backup --db DB",
        "                [--force]",
        "",
        "echo done",
    ]
    assert [c for _, c in dc.block_commands(block)] == [
        "make deploy",
        "scripts/x a --b 'c # not a comment'",
        "scripts/voxeldb backup --db DB [--force]",
        "echo done",
    ]
    cell = "`ansible-playbook playbooks/a.yml -e x=1` (`b`, `c.yml`), `make lint` / `make unit`"
    assert dc.table_commands(cell) == [
        "ansible-playbook playbooks/a.yml -e x=1",
        "ansible-playbook playbooks/b.yml -e x=1",
        "ansible-playbook playbooks/c.yml -e x=1",
        "make lint",
        "make unit",
    ]
    text = "\n".join(
        ["```yaml", "- hosts: all", "```", "   ```sh", "   make test", "   ```", "```", "x", "```"]
    )
    assert [lines for _, lines in dc.shell_blocks(text)] == [["make test"]]


def test_make_test_variables_never_reach_a_documented_command(monkeypatch) -> None:
    # make exports `make test IMAGES_ARGS=--rebuild` to pytest's environment; a documented
    # `make molecule` run with it removed the images under the running scenarios.
    monkeypatch.setenv("IMAGES_ARGS", "--rebuild")
    monkeypatch.setenv("MAKEFLAGS", " -- IMAGES_ARGS=--rebuild")
    env = dc.command_env({"IMAGES_ARGS": "--rebuild", "MAKELEVEL": "1", "KEPT": "yes"})
    assert not dc.MAKE_ONLY & env.keys()
    assert env["KEPT"] == "yes"
