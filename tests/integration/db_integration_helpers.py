"""Helpers for the database toolkit's playbook tests: small world DBs and playbook runs."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import subprocess
from pathlib import Path

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.migrate import migrate

REPO = Path(__file__).resolve().parents[2]
INVENTORY = Path(__file__).resolve().parent / "db_inventory.yml"
MIGRATIONS = REPO / "roles/server_build/files/reference_server/migrations"


def make_world(path: Path, chunks: int = 12) -> Path:
    """A WAL database with the reference schema (applied directly) and valid chunks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    migrate(path, MIGRATIONS)
    conn = sqlite3.connect(path)
    for i in range(chunks):
        payload = hashlib.sha256(str(i).encode()).digest() * 16
        conn.execute(
            "INSERT INTO chunks VALUES (?, 0, 0, ?, ?, 't')",
            (i, payload, hashlib.sha256(payload).hexdigest()),
        )
    conn.commit()
    conn.close()
    return path


def dump(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


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
