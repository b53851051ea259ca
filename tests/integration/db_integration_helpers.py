"""Helpers for the database toolkit's playbook tests: small world DBs and playbook runs."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import sqlite_worlds
from sqlite_worlds import MIGRATIONS, REPO, dump

__all__ = ["MIGRATIONS", "dump", "make_world", "ok", "play", "recap"]

INVENTORY = Path(__file__).resolve().parent / "db_inventory.yml"


def make_world(path: Path, chunks: int = 12) -> Path:
    """A WAL database with the reference schema (applied directly) and valid chunks."""
    return sqlite_worlds.make_world(
        path, chunks=chunks, payload=lambda i: hashlib.sha256(str(i).encode()).digest() * 16
    )


def play(
    ansible_playbook: str,
    env: dict[str, str],
    playbook: str,
    extra: dict,
    *,
    check: bool = False,
    diff: bool = False,
) -> subprocess.CompletedProcess:
    """Run playbooks/<playbook>.yml against this machine with extra vars given as JSON."""
    cmd = [
        ansible_playbook,
        "-i",
        str(INVENTORY),
        str(REPO / "playbooks" / f"{playbook}.yml"),
        "-e",
        json.dumps(extra),
    ]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)


def recap(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """The PLAY RECAP counters of localhost (ok, changed, failed, ...)."""
    match = re.search(r"^localhost\s*:\s*(.*)$", proc.stdout, re.MULTILINE)
    assert match, proc.stdout + proc.stderr
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


def ok(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """Assert the run succeeded; return its recap."""
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return recap(proc)
