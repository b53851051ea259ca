"""The command-line tool: subcommands, JSON output and exit codes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest
from vdb_unit_helpers import MIGRATIONS, REPO, make_world

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.cli import main


def run(capsys, *argv):
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


@pytest.fixture
def world(tmp_path):
    return make_world(tmp_path / "db" / "world.db")


def test_backup_then_dry_run_reports_nothing_to_do(tmp_path, world, capsys):
    backups = str(tmp_path / "b")
    code, result = run(capsys, "backup", "--db", str(world), "--backup-dir", backups)
    assert (code, result["changed"]) == (0, True)
    code, result = run(capsys, "backup", "--db", str(world), "--backup-dir", backups, "--dry-run")
    assert (code, result["changed"]) == (0, False)
    code, result = run(
        capsys, "backup", "--db", str(world), "--backup-dir", backups, "--force", "--dry-run"
    )
    assert (code, result["changed"]) == (2, True)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["backup", "--db", "{tmp}/missing.db", "--backup-dir", "{tmp}/b"], "does not exist"),
        (["backup", "--db", "{db}", "--backup-dir", "{db}"], "database file itself"),
        (["check", "--db", "{tmp}/missing.db"], "does not exist"),
        (["migrate", "--db", "{db}", "--migrations-dir", "{tmp}/none"], "migrations_dir"),
        (["restore", "--db", "{db}", "--backup-dir", "{tmp}"], "no backup"),
        (
            ["repair-chunks", "--db", "{db}", "--backup-dir", "{tmp}", "--table", "t"],
            "table 't' does not exist",
        ),
    ],
)
def test_errors_exit_1_with_message(tmp_path, world, capsys, argv, message):
    args = [a.format(tmp=tmp_path, db=world) for a in argv]
    code, result = run(capsys, *args)
    assert code == 1
    assert result["failed"] is True
    assert message in result["msg"]


def test_check_exit_codes(world, capsys):
    code, result = run(capsys, "check", "--db", str(world))
    assert (code, result["healthy"]) == (0, True)
    code, result = run(capsys, "check", "--db", str(world), "--expected-index", "nope")
    assert (code, result["failing"]) == (2, ["missing_indexes"])


def test_migrate_dry_run_then_apply(tmp_path, capsys):
    db = tmp_path / "new.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t(x)")
    conn.close()
    code, result = run(
        capsys, "migrate", "--db", str(db), "--migrations-dir", str(MIGRATIONS), "--dry-run"
    )
    assert (code, result["pending"]) == (2, ["0001_create_chunks"])
    code, result = run(capsys, "migrate", "--db", str(db), "--migrations-dir", str(MIGRATIONS))
    assert (code, result["version_after"]) == (0, 1)


def test_prune_and_text_output(tmp_path, world, capsys):
    backups = tmp_path / "b"
    assert main(["backup", "--db", str(world), "--backup-dir", str(backups)]) == 0
    assert "backup: changed" in capsys.readouterr().out
    assert main(["prune", "--backup-dir", str(backups), "--keep-last", "1"]) == 0
    assert "prune: no change" in capsys.readouterr().out


def test_wrapper_script_runs_without_ansible_on_path(tmp_path, world):
    env = {"PATH": "/usr/bin:/bin", "VOXELDB_PYTHON": sys.executable, "HOME": str(tmp_path)}
    proc = subprocess.run(
        [str(REPO / "scripts" / "voxeldb"), "check", "--db", str(world), "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["healthy"] is True
    assert os.access(REPO / "scripts" / "voxeldb", os.X_OK)
