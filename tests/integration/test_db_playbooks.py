"""Each database playbook through ansible-playbook on real SQLite files: check, apply, repeat."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from db_integration_helpers import MIGRATIONS, dump, make_world, ok, play, recap

pytestmark = pytest.mark.slow


@pytest.fixture
def paths(tmp_path):
    db = make_world(tmp_path / "db" / "world.db")
    return {"db_ops_db_path": str(db), "db_ops_backup_dir": str(tmp_path / "backups")}


def manifests(paths) -> list:
    return sorted(Path(paths["db_ops_backup_dir"]).glob("*.manifest.json"))


def test_backup_check_apply_repeat(paths, ansible_playbook, ansible_env):
    checked = ok(play(ansible_playbook, ansible_env, "db_backup", paths, check=True, diff=True))
    assert checked["changed"] == 1
    assert manifests(paths) == []
    assert ok(play(ansible_playbook, ansible_env, "db_backup", paths))["changed"] == 1
    assert len(manifests(paths)) == 1
    assert ok(play(ansible_playbook, ansible_env, "db_backup", paths))["changed"] == 0
    assert ok(play(ansible_playbook, ansible_env, "db_backup", paths, check=True))["changed"] == 0
    assert len(manifests(paths)) == 1


def test_restore_check_apply_repeat(paths, ansible_playbook, ansible_env):
    ok(play(ansible_playbook, ansible_env, "db_backup", paths))
    before = dump(paths["db_ops_db_path"])
    conn = sqlite3.connect(paths["db_ops_db_path"])
    conn.execute("DELETE FROM chunks WHERE cx < 5")
    conn.commit()
    conn.close()
    damaged = dump(paths["db_ops_db_path"])
    proc = play(ansible_playbook, ansible_env, "db_restore", paths, check=True, diff=True)
    assert ok(proc)["changed"] == 1
    assert "current database" in proc.stdout  # the --diff of the restore
    assert dump(paths["db_ops_db_path"]) == damaged
    assert ok(play(ansible_playbook, ansible_env, "db_restore", paths))["changed"] == 1
    assert dump(paths["db_ops_db_path"]) == before
    assert ok(play(ansible_playbook, ansible_env, "db_restore", paths))["changed"] == 0


def test_migrate_check_apply_repeat_and_backup_first(tmp_path, ansible_playbook, ansible_env):
    db = tmp_path / "db" / "world.db"
    db.parent.mkdir()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE settings (k TEXT PRIMARY KEY, v TEXT)")
    conn.close()
    extra = {
        "db_ops_db_path": str(db),
        "db_ops_backup_dir": str(tmp_path / "backups"),
        "db_ops_migrations_src": str(MIGRATIONS),
    }
    proc = play(ansible_playbook, ansible_env, "db_migrate", extra, check=True)
    assert ok(proc)["changed"] >= 1
    assert "0001_create_chunks" in proc.stdout
    assert not (tmp_path / "backups").exists()
    assert ok(play(ansible_playbook, ansible_env, "db_migrate", extra))["changed"] >= 1
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] == 1
    conn.close()
    assert len(list((tmp_path / "backups").glob("*.manifest.json"))) == 1
    assert ok(play(ansible_playbook, ansible_env, "db_migrate", extra))["changed"] == 0
    assert not list(tmp_path.glob("db_ops_migrations.*"))


def test_failed_migration_is_restored_from_the_backup(
    paths, tmp_path, ansible_playbook, ansible_env
):
    src = tmp_path / "migrations"
    src.mkdir()
    (src / "0001_create_chunks.sql").write_bytes(
        (MIGRATIONS / "0001_create_chunks.sql").read_bytes()
    )
    (src / "0002_add_column.sql").write_text(
        "-- migrate:up\nALTER TABLE players ADD COLUMN guild TEXT;\n"
    )
    (src / "0003_broken.sql").write_text(
        "-- migrate:up\nCREATE TABLE t3 (x);\nINSERT INTO t3 VALUES (1);\n"
        "INSERT INTO no_such_table VALUES (1);\n"
    )
    before = dump(paths["db_ops_db_path"])
    proc = play(
        ansible_playbook, ansible_env, "db_migrate", dict(paths, db_ops_migrations_src=str(src))
    )
    assert proc.returncode != 0
    assert "restored from backup" in proc.stdout
    assert "0003_broken.sql" in proc.stdout
    assert "no such table: no_such_table" in proc.stdout
    assert dump(paths["db_ops_db_path"]) == before


def test_check_healthy_then_unhealthy(paths, ansible_playbook, ansible_env):
    proc = play(
        ansible_playbook, ansible_env, "db_check", {"db_ops_db_path": paths["db_ops_db_path"]}
    )
    assert ok(proc)["changed"] == 0
    proc = play(
        ansible_playbook,
        ansible_env,
        "db_check",
        {
            "db_ops_db_path": paths["db_ops_db_path"],
            "db_ops_check_expected_indexes": ["chunks_by_owner"],
        },
    )
    assert proc.returncode != 0
    assert recap(proc)["failed"] == 1
    assert "is unhealthy: missing_indexes" in proc.stdout


def test_chunk_repair_check_apply_repeat(paths, ansible_playbook, ansible_env):
    ok(play(ansible_playbook, ansible_env, "db_backup", paths))
    good = dump(paths["db_ops_db_path"])
    conn = sqlite3.connect(paths["db_ops_db_path"])
    conn.execute("UPDATE chunks SET payload = x'deadbeef' WHERE cx IN (2, 7)")
    conn.commit()
    conn.close()
    damaged = dump(paths["db_ops_db_path"])
    proc = play(ansible_playbook, ansible_env, "chunk_repair", paths, check=True)
    assert ok(proc)["changed"] == 1
    assert dump(paths["db_ops_db_path"]) == damaged
    assert ok(play(ansible_playbook, ansible_env, "chunk_repair", paths))["changed"] == 1
    assert dump(paths["db_ops_db_path"]) == good
    assert ok(play(ansible_playbook, ansible_env, "chunk_repair", paths))["changed"] == 0


@pytest.mark.parametrize(
    ("playbook", "extra", "message"),
    [
        ("db_backup", {"db_ops_backup_method": "cp"}, "db_ops_backup_method"),
        ("db_backup", {"db_ops_backup_retention": {"keep_last": -1}}, "db_ops_backup_retention"),
        ("db_backup", {"db_ops_backup_dir": "{db_dir}"}, "db_ops_backup_dir"),
        ("db_backup", {"db_ops_db_path": "{tmp}/missing.db"}, "missing.db does not exist"),
        (
            "db_restore",
            {"db_ops_restore_name": "a", "db_ops_restore_before": "2026-01-01"},
            "db_ops_restore_name",
        ),
        ("db_restore", {"db_ops_restore_name": "no-such-backup"}, "'no-such-backup' not found"),
        ("db_migrate", {"db_ops_migrations_src": "{tmp}/nowhere"}, "db_ops_migrations_src"),
        ("db_migrate", {"db_ops_migrate_target": "latest"}, "db_ops_migrate_target"),
        ("db_check", {"db_ops_check_max_freelist_ratio": 3}, "db_ops_check_max_freelist_ratio"),
        ("chunk_repair", {"db_ops_chunk_payload_column": "blob"}, "no column(s) blob"),
    ],
)
def test_bad_input_fails_before_any_change(
    paths, tmp_path, ansible_playbook, ansible_env, playbook, extra, message
):
    db = paths["db_ops_db_path"]
    before = dump(db)
    values = {
        k: (v.format(tmp=tmp_path, db_dir=str(tmp_path / "db")) if isinstance(v, str) else v)
        for k, v in extra.items()
    }
    (tmp_path / "backups").mkdir()
    proc = play(ansible_playbook, ansible_env, playbook, dict(paths, **values))
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert dump(db) == before
    assert list((tmp_path / "backups").glob("*.manifest.json")) == []
