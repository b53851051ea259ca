"""Ansible's own templar, for tests that render a role's expressions and templates.

It runs in a process of its own: importing Ansible's controller code turns every module run in
the same process into a "controller" one (module warnings then go to the display instead of the
result), which the in-process module tests of this suite rely on. Importable as `role_templar`
from every test (tests/ is on sys.path).

    with templar() as render:
        render([ROLE / "defaults" / "main.yml"], "{{ some_var }}", other_var=1)
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

WORKER = """
import json, sys
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

def trusted(value):
    # A role's variable files as Ansible holds them: strings are templates.
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, list):
        return [trusted(v) for v in value]
    if isinstance(value, dict):
        return {k: trusted(v) for k, v in value.items()}
    return value

loader = DataLoader()
for line in sys.stdin:
    request = json.loads(line)
    variables = {}
    for name in request["files"]:
        variables.update({k: trusted(v) for k, v in (loader.load_from_file(name) or {}).items()})
    variables.update(request["variables"])
    try:
        templar = Templar(loader=loader, variables=variables)
        reply = {"result": templar.template(trust_as_template(request["expression"]))}
    except Exception as exc:
        reply = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(reply), flush=True)
"""

Render = Callable[..., Any]


@contextmanager
def templar() -> Iterator[Render]:
    """render(files, expression, **variables): the expression with the files' variables (later
    files win) and then the given ones; a templating error fails the calling test."""
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert worker.stdin is not None
    assert worker.stdout is not None

    def render(files: list[Path], expression: str, **variables: Any) -> Any:
        request = {"files": [str(f) for f in files], "expression": expression}
        worker.stdin.write(json.dumps(request | {"variables": variables}) + "\n")
        worker.stdin.flush()
        reply = json.loads(worker.stdout.readline())
        assert "error" not in reply, reply.get("error")
        return reply["result"]

    try:
        yield render
    finally:
        worker.stdin.close()
        worker.wait(timeout=30)
