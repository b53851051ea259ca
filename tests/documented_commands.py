"""Every command the documentation shows, and the one way tests run them (issue #23).

Importable as `documented_commands` from every test (tests/ is on sys.path, as for
`sqlite_worlds`). `tests/unit/test_documented_commands.py` checks, without running anything,
that each collected command has an entry in the registry `tests/documented_commands.yml` and
that the test the entry names passes that exact text to `run_documented`.

What is collected (`collect()`)
-------------------------------
Documents: README.md, docs/*.md, roles/*/README.md, operations/runbooks/*.md, operations/*.md,
operations/incidents/README.md.

1. Fenced code blocks whose info string is `sh`, `bash`, `shell` or `console` (the fence may
   be indented, as in a list item; its indentation is taken off every line). Blocks labelled
   otherwise (yaml, json, ini, sql, text) or not labelled hold no commands. Each line is one
   command, after:
   - joining a line that ends in a backslash with the next one (one space between);
   - joining a line indented deeper than the block's first line to the line before it: a
     usage synopsis wrapped without backslashes (docs/database-toolkit.md) is one form;
   - dropping a comment: a whole line starting with `#`, or from the first ` #` outside
     quotes to the end of the line;
   - dropping a leading `$ ` (a prompt); surrounding blanks are stripped and blank lines
     skipped. The text in between stays as written (no re-spacing), so it can be searched for.
2. README.md's "Other jobs" table: every backticked span of the first column is one command,
   except that a parenthesised list of backticked names right after a command names other
   playbooks run the same way: each name (with or without `.yml`) replaces the file name of
   the command's playbook (its first argument ending in `.yml`), giving one more command
   each. `ansible-playbook playbooks/db_backup.yml` (`db_restore`) therefore collects
   `ansible-playbook playbooks/db_backup.yml` and `ansible-playbook playbooks/db_restore.yml`.
   Escaped pipes (`\\|`) in a cell are pipes.

A command may be a *form*: it holds `[optional parts]`, `a|b` alternatives, a placeholder
(`<env>`, `HOST`, `TIME`, `ENV`, `DB`, `DIR`, `N`, ...) or an ellipsis (`age1...`,
`GITHUB_TOKEN=...`). A form is collected as written; its registry entry lists the concrete
commands a test runs for it and says why those.

The registry (`tests/documented_commands.yml`)
----------------------------------------------
A YAML list, one entry per collected command (the file's header explains the keys):
- `command` + `test`: the test runs the command exactly as written (`why` may say in which
  directory or environment);
- `command` + `runs` + `why`: a form, or a command that needs hosts this machine lacks; `runs`
  maps each concrete command to the test that runs it (staging/production inventories with
  `--syntax-check`, the embedded default in a scratch copy of the tree, the test hosts of a
  test that already has them);
- `command` + `exempt`: no test of the suite runs it, and the reason (the list stays short);
- `pending` beside `test`/`runs`: the test is another engineer's and does not go through
  `run_documented` yet; the static check of that entry is a strict expected failure.
A test "runs" a command when the test function's source (decorators included) holds the exact
text as a string literal and calls `run_documented`, `run_documented_on` or a function of its
own module that does.
YAML rather than a Python dict: it is data that two modules read and people review per
command, commands holding quotes need no Python escaping, and yamllint checks it.

Running (`run_documented`)
--------------------------
`run_documented(command, cwd=..., env=...)` refuses a command that is neither collected from
the documents nor a concrete command of a registry entry whose command is still collected,
then runs it with `bash -c` (from the repository root unless `cwd` is given), the venv's bin
first on PATH, and returns the CompletedProcess (output captured as text, never checked:
the test asserts). Concrete commands stand placeholders in by shell variables that the
test passes in `env` (`"$INVENTORY"`, `"$AGE_RECIPIENT"`), so their text stays fixed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
REGISTRY = REPO / "tests" / "documented_commands.yml"
SHELL_LABELS = {"sh", "bash", "shell", "console"}
TABLE_SECTION = "Other jobs"

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$")
_SPAN = re.compile(r"`([^`]+)`")


@dataclass(frozen=True)
class Documented:
    """One command as a document shows it, and where (path:line, relative to the repo)."""

    text: str
    where: str


def documents() -> list[Path]:
    """The documents whose commands must run: README, docs, role READMEs, operations' guides."""
    found = [REPO / "README.md"]
    found += sorted((REPO / "docs").glob("*.md"))
    found += sorted((REPO / "roles").glob("*/README.md"))
    found += sorted((REPO / "operations" / "runbooks").glob("*.md"))
    found += sorted((REPO / "operations").glob("*.md"))
    found += [REPO / "operations" / "incidents" / "README.md"]
    return found


def strip_comment(line: str) -> str:
    """The line without a shell comment (`#` at the start or after a blank, outside quotes)."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def block_commands(lines: list[str]) -> list[tuple[int, str]]:
    """(offset of the first line, command) for each command of a shell block's lines."""
    joined: list[tuple[int, str]] = []
    base_indent: int | None = None
    pending = False  # the previous line ended with a backslash
    for offset, raw in enumerate(lines):
        indent = len(raw) - len(raw.lstrip())
        if not raw.strip():
            pending = False
            joined.append((offset, ""))
            continue
        if base_indent is None:
            base_indent = indent
        continues = pending or (indent > base_indent and joined and joined[-1][1])
        text = raw.strip()
        pending = text.endswith("\\")
        if pending:
            text = text[:-1].rstrip()
        if continues:
            start, before = joined[-1]
            joined[-1] = (start, f"{before} {text}")
        else:
            joined.append((offset, text))
    out = []
    for offset, text in joined:
        command = strip_comment(text).strip()
        command = command.removeprefix("$ ").strip()
        if command:
            out.append((offset, command))
    return out


def shell_blocks(text: str) -> list[tuple[int, list[str]]]:
    """(line number of the first content line, lines) of every sh/bash/shell/console block."""
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence = match["indent"], match["fence"]
        label = (match["info"].strip().split() or [""])[0].lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not (
            lines[j].strip().startswith(fence) and not lines[j].strip().strip(fence[0])
        ):
            line = lines[j]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            j += 1
        if label in SHELL_LABELS:
            blocks.append((i + 2, body))
        i = j + 1
    return blocks


def _section(text: str, title: str) -> tuple[int, str]:
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    if not match:
        return 0, ""
    return text[: match.start(1)].count("\n") + 1, match.group(1)


def _cells(row: str) -> list[str]:
    parts = re.split(r"(?<!\\)\|", row.strip().strip("|"))
    return [part.strip().replace("\\|", "|") for part in parts]


def with_playbook(command: str, name: str) -> str:
    """`command` with its playbook's file name replaced by `name` (with or without .yml)."""
    words = command.split(" ")
    index = next(i for i, word in enumerate(words) if word.endswith(".yml"))
    folder, _, _ = words[index].rpartition("/")
    stem = name.removesuffix(".yml")
    words[index] = f"{folder}/{stem}.yml" if folder else f"{stem}.yml"
    return " ".join(words)


def table_commands(cell: str) -> list[str]:
    """The commands of one first-column cell of the job table (see the module docstring)."""
    commands: list[str] = []
    base = ""  # the last command outside parentheses: alternatives replace its playbook
    depth = 0
    position = 0
    for match in _SPAN.finditer(cell):
        between = cell[position : match.start()]
        depth += between.count("(") - between.count(")")
        position = match.end()
        span = match.group(1).strip()
        if depth > 0 and base:
            commands.append(with_playbook(base, span))
        else:
            base = span
            commands.append(span)
    return commands


def job_table(text: str) -> list[tuple[int, str]]:
    """(line number, command) of every command in the first column of README's job table."""
    first_line, body = _section(text, TABLE_SECTION)
    out = []
    for offset, row in enumerate(body.splitlines()):
        if not row.lstrip().startswith("|"):
            continue
        first = _cells(row)[0]
        if first == "command" or set(first) <= set("-: "):
            continue
        out += [(first_line + offset, command) for command in table_commands(first)]
    return out


@cache
def collect() -> tuple[Documented, ...]:
    """Every documented command, in document order (the same text may come from several)."""
    found: list[Documented] = []
    for path in documents():
        rel = path.relative_to(REPO).as_posix()
        text = path.read_text(encoding="utf-8")
        for first, lines in shell_blocks(text):
            for offset, command in block_commands(lines):
                found.append(Documented(command, f"{rel}:{first + offset}"))
        if path.name == "README.md" and path.parent == REPO:
            found += [Documented(c, f"{rel}:{line}") for line, c in job_table(text)]
    return tuple(found)


def collected_texts() -> set[str]:
    return {documented.text for documented in collect()}


@cache
def registry() -> tuple[dict, ...]:
    """The registry's entries (tests/documented_commands.yml), as written."""
    entries = yaml.safe_load(REGISTRY.read_text(encoding="utf-8"))
    return tuple(entries)


def runnable() -> dict[str, str]:
    """Every command text a test may run -> the documented command it stands for.

    A collected command with a `test` entry stands for itself; a concrete command of a `runs`
    entry stands for that entry's command, but only while the documents still show it.
    """
    shown = collected_texts()
    out: dict[str, str] = {}
    for entry in registry():
        command = entry["command"]
        if command not in shown:
            continue
        if "test" in entry:
            out[command] = command
        for concrete in entry.get("runs", {}):
            out[concrete] = command
    return out


# What the suite's own make hands down. make exports its command-line variables to the
# environment of its recipes (not only through MAKEFLAGS), so `make test IMAGES_ARGS=--rebuild`
# (CI) would rebuild the images, removing them from under running scenarios, in every make a
# test runs: seen in CI, where `make molecule SCENARIO=base` removed the images mid-run.
MAKE_ONLY = frozenset({"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "IMAGES_ARGS"})
SUITE_ONLY = MAKE_ONLY | {"ANSIBLE_CONFIG"}


def command_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment documented commands run in: this one, the venv's bin first on PATH.

    Without what the suite's own make passes down (MAKEFLAGS carries `make test`'s command-line
    variables, IMAGES_ARGS=--rebuild in CI, into every make a test runs) and without its
    ANSIBLE_CONFIG: a person types these commands in a shell, where ./ansible.cfg applies.
    """
    out = {k: v for k, v in os.environ.items() if k not in SUITE_ONLY}
    out["PATH"] = f"{VENV_BIN}{os.pathsep}{out.get('PATH', '')}"
    out["ANSIBLE_NOCOLOR"] = "1"
    # Side by side (pytest-xdist), each worker its own fact cache (as tests/conftest.py does).
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker and "ANSIBLE_CACHE_PLUGIN_CONNECTION" not in out:
        out["ANSIBLE_CACHE_PLUGIN_CONNECTION"] = str(REPO / ".cache" / f"facts-{worker}")
    # A test's own env (often tests/conftest.py's ansible_env) never brings make's back.
    out.update({k: v for k, v in (env or {}).items() if k not in MAKE_ONLY})
    return out


def run_documented(
    command: str,
    *,
    cwd: Path | str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 900,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run one documented command (or a registered concrete form of one) as written."""
    allowed = runnable()
    assert command in allowed, (
        f"not a documented command, nor a concrete command of a registry entry whose command"
        f" the documents still show: {command!r}"
    )
    return subprocess.run(
        ["bash", "-c", command],
        cwd=str(cwd or REPO),
        env=command_env(env),
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def run_documented_on(host, command: str):
    """The same check, then `command` on a testinfra `host` (a Molecule test host), as written."""
    assert command in runnable(), f"not a documented or registered command: {command!r}"
    return host.run(command)


def scratch_checkout(dest: Path, *, git: bool = False) -> Path:
    """A copy of this tree as it is (tracked and new files) at `dest`, the venv linked.

    For commands that write into the checkout (the secrets playbooks re-key its files,
    `incidents.py new` adds a record, the database playbooks of the embedded default work on
    its `.state/`): they run as written there, and this checkout stays as it is. With `git`,
    the copy is a clone too (its own .git, the work tree as it is here), for commands that ask
    git (`git describe` names the version deploy.yml ships).
    """
    if git:
        subprocess.run(
            ["git", "clone", "--quiet", "--no-checkout", str(REPO), str(dest)], check=True
        )
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        src = REPO / name
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the work tree
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, target)
    if git:
        subprocess.run(["git", "reset", "--quiet"], cwd=dest, check=True)
    (dest / ".venv").symlink_to(REPO / ".venv")
    return dest
