"""Every role entry point other plays borrow checks its arguments before any of its tasks.

Ansible validates a role's arguments against an entry point only when `tasks_from` names it
exactly (`tasks_from: stop.yml` skips the check: ansible/ansible#75456). So every `tasks_from` in
the tree must be a bare entry point name, and each entry point, given one wrong argument, must
stop at its validation task: the first task of the role, so nothing of the role ran.

One play on localhost calls every entry point in a block whose rescue records the failed task
and the argument errors; the test reads that record.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLES = REPO / "roles"
# Everything but the virtualenv and caches: the playbooks, roles, Molecule scenarios.
YAML_TREES = ["deploy.yml", "playbooks", "roles", "molecule"]


def specs() -> dict[str, dict]:
    """role -> its argument_specs (the roles that declare any)."""
    found = {}
    for path in sorted(ROLES.glob("*/meta/argument_specs.yml")):
        found[path.parents[1].name] = yaml.safe_load(path.read_text())["argument_specs"]
    return found


def yaml_files() -> list[Path]:
    files = []
    for name in YAML_TREES:
        path = REPO / name
        files.extend([path] if path.is_file() else sorted(path.rglob("*.yml")))
    return files


def borrowed() -> list[tuple[str, str]]:
    """(role, entry point) of every include_role/import_role with tasks_from in the tree."""
    pairs = []
    for path in yaml_files():
        text = path.read_text()
        for match in re.finditer(r"name:\s*([\w.]+)\s*\n\s*tasks_from:\s*(\S+)", text):
            pairs.append((match[1].split(".")[-1], match[2].strip("'\"")))
    return pairs


def test_every_tasks_from_names_a_declared_entry_point() -> None:
    declared = specs()
    pairs = borrowed()
    # The tree borrows at least this many (a regex gone wrong would find none and pass).
    assert len(pairs) >= 15, pairs
    for role, entry in pairs:
        if entry.startswith("{{"):
            # db_runbook.yml's step variable: each value it takes is an entry point of db_ops.
            assert role == "db_ops", (role, entry)
            continue
        assert not entry.endswith((".yml", ".yaml")), f"{role}: tasks_from {entry} skips the spec"
        assert entry in declared.get(role, {}), f"{role} declares no entry point {entry}"


MISSING = object()


def wrong_argument(options: dict) -> tuple[str, object]:
    """One option of the entry point and a value its spec refuses (MISSING: a required option
    left out)."""
    for kind, value in (("int", "soon"), ("bool", "maybe"), ("float", "soon")):
        for name, spec in options.items():
            if spec.get("type") == kind:
                return name, value
    for name, spec in options.items():
        if spec.get("choices"):
            return name, "none-of-the-choices"
    # A list takes a lone value as a list of one, and a dict takes "k=v" text: neither takes these.
    for kind, value in (("list", {"not": "a list"}), ("dict", 5)):
        for name, spec in options.items():
            if spec.get("type") == kind:
                return name, value
    for name, spec in options.items():
        if spec.get("required"):
            return name, MISSING
    raise AssertionError(f"no option to get wrong among {sorted(options)}")


# Every entry point other plays borrow, plus each role's own that takes arguments.
ENTRY_POINTS = sorted(
    {(role, entry) for role, entry in borrowed() if not entry.startswith("{{")}
    | {("db_ops", entry) for entry in specs()["db_ops"]}
)


def play_for(entries: list[tuple[str, str]]) -> list[dict]:
    tasks = []
    for role, entry in entries:
        options = specs()[role][entry].get("options") or {}
        name, value = wrong_argument(options)
        tasks.append(
            {
                "name": f"Call {role} {entry}",
                "block": [
                    {
                        "ansible.builtin.include_role": {"name": role, "tasks_from": entry},
                        "vars": {} if value is MISSING else {name: value},
                    },
                    {
                        "ansible.builtin.set_fact": {
                            "entry_results": "{{ entry_results | combine({"
                            + f"'{role} {entry}'"
                            + ": {'ran': true}}) }}"
                        }
                    },
                ],
                "rescue": [
                    {
                        "ansible.builtin.set_fact": {
                            "entry_results": "{{ entry_results | combine({"
                            + f"'{role} {entry}'"
                            + ": {'option': '"
                            + name
                            + "', 'task': ansible_failed_task.name,"
                            + " 'errors': ansible_failed_result.argument_errors | default([])}}) }}"
                        }
                    }
                ],
            }
        )
    tasks.append(
        {
            "ansible.builtin.copy": {
                "content": "{{ entry_results | to_json }}",
                "dest": "{{ results_file }}",
                "mode": "0644",
            }
        }
    )
    return [
        {
            "name": "Call every entry point with one wrong argument",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars": {"entry_results": {}},
            "tasks": tasks,
        }
    ]


@pytest.fixture(scope="module")
def results(tmp_path_factory, ansible_env: dict[str, str]) -> dict:
    folder = tmp_path_factory.mktemp("entry-points")
    playbook = folder / "entry_points.yml"
    playbook.write_text(yaml.safe_dump(play_for(ENTRY_POINTS), sort_keys=False))
    out = folder / "results.json"
    run = subprocess.run(
        [str(REPO / ".venv/bin/ansible-playbook"), "-i", "localhost,", str(playbook),
         "-e", f"results_file={out}"],
        cwd=REPO, env=ansible_env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    return json.loads(out.read_text())


def test_the_borrowed_entry_points_include_game_servers_steps() -> None:
    borrowed_game_server = {entry for role, entry in ENTRY_POINTS if role == "game_server"}
    assert {"info", "stop", "start", "health", "restart", "release", "host"} <= borrowed_game_server


@pytest.mark.parametrize(("role", "entry"), ENTRY_POINTS, ids=[f"{r}-{e}" for r, e in ENTRY_POINTS])
def test_a_wrong_argument_stops_the_entry_point_before_any_task(
    results: dict, role: str, entry: str
) -> None:
    got = results[f"{role} {entry}"]
    assert "ran" not in got, f"{role} {entry} ran with a wrong argument"
    # The failed task is the validation itself: the role's first task, so none of its own ran.
    # (Ansible appends the entry point's short description to the task's name.)
    assert got["task"].startswith(f"Validating arguments against arg spec '{entry}'"), got
    assert any(got["option"] in error for error in got["errors"]), got
