"""Fault injection for the database toolkit: killed backups, failing migrations, damaged pages,
corrupted chunks. Each case is repeated on small databases with seeded randomness."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from db_fault_helpers import MIGRATIONS, REPO, dump, make_region_world, make_world
from polling import wait_until

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb import manifest as mf
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.backup import (
    FAULT_PHASES,
    create_backup,
    prepare_copy,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.chunks import repair_chunks
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.errors import MigrationError
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.fsutil import FAULT_ENV
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.health import check_health
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.migrate import migrate
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.retention import (
    RetentionPolicy,
)

pytestmark = pytest.mark.slow

KILLS = 20
KEEP_ALL = ["--retention", "--keep-last", "1000"]
CLI = "ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.cli"


def cli_env(phase: str | None = None) -> dict[str, str]:
    """The environment of a toolkit subprocess; ``phase`` arms the test-only fault hook."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "collections"))
    env.pop(FAULT_ENV, None)
    if phase is not None:
        env[FAULT_ENV] = phase
    return env


def backup_cmd(db, backups, compression):
    return [
        sys.executable,
        "-m",
        CLI,
        "backup",
        "--db",
        str(db),
        "--backup-dir",
        str(backups),
        "--force",
        "--compression",
        compression,
        "--check",
        "full",
        "--json",
    ]


def wait_for_new_temp(backups, proc, before: set[str]) -> float:
    """Wait until the backup run made a new temporary file (or ended); return that moment."""

    def made_or_ended() -> bool:
        return proc.poll() is not None or any(
            p.name.startswith(".voxeldb-tmp-") and p.name not in before for p in backups.iterdir()
        )

    # A short interval: the kills are placed relative to this moment, so it is seen early.
    wait_until(made_or_ended, 30, "a new temporary file or the run's end", interval=0.001)
    return time.monotonic()


def assert_only_whole_backups(backups, db, previous: dict[str, bytes], where: str) -> None:
    """Every manifest is a whole, verified backup; earlier backups are untouched; a new one
    holds exactly the database's content."""
    for entry in mf.list_backups(backups):
        # A manifest exists only for a finished backup: it must always verify.
        assert entry.ok, f"{where}: {entry.name}: {entry.problem}"
        if entry.name in previous:
            continue
        mf.verify_backup(entry.manifest, "full", backups.parent)
        with mf.open_db_image(entry.manifest, backups.parent) as image:
            assert dump(image) == dump(db), f"{where}: {entry.name}"
    for name, content in previous.items():
        data = next(backups.glob(f"{name}.db*"))
        assert data.read_bytes() == content, f"{where}: {name} changed"


def backup_bytes(backups) -> dict[str, bytes]:
    return {e.name: e.manifest.data_path.read_bytes() for e in mf.list_backups(backups)}


def assert_cleaned_by_a_later_run(backups, db, compression) -> None:
    """A later backup with retention removes temporaries and orphans and adds a whole backup."""
    later = subprocess.run(
        backup_cmd(db, backups, compression) + KEEP_ALL,
        env=cli_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert later.returncode == 0, later.stderr
    assert mf.orphan_files(backups) == []
    assert not list(backups.glob(".voxeldb-tmp-*"))
    newest = mf.list_backups(backups)[-1]
    assert newest.ok
    with mf.open_db_image(newest.manifest, backups.parent) as image:
        assert dump(image) == dump(db)


# Every phase a backup run passes through (``compressed`` only with compression).
# A deploy's backup starts from the earlier copy prepared before the stop ("prepared").
PHASE_KILLS = [
    pytest.param(phase, compression, prepared, id=f"{phase}-{compression}{prepared}")
    for compression, prepared in (("none", ""), ("gzip", ""), ("none", "-prepared"))
    for phase in FAULT_PHASES
    if phase != "pruning" and not (phase == "compressed" and compression == "none")
]
#: Phases after which the killed run's backup is finished (its manifest has its final name).
FINISHED_FROM = FAULT_PHASES.index("manifest-renamed")


@pytest.mark.parametrize(("phase", "compression", "prepared"), PHASE_KILLS)
def test_backup_killed_at_each_phase_never_looks_finished(tmp_path, phase, compression, prepared):
    db = make_region_world(tmp_path / "db" / "world.db", regions=4, chunks=50)
    backups = tmp_path / "backups"
    create_backup(db, backups, compression=compression)
    previous = backup_bytes(backups)
    if prepared:
        prepare_copy(db, backups)
        conn = sqlite3.connect(db)
        conn.execute("UPDATE player SET name = 'after the earlier copy' WHERE name = 'ada'")
        conn.commit()
        conn.close()
    killed = subprocess.run(
        backup_cmd(db, backups, compression), env=cli_env(phase), capture_output=True, check=False
    )
    # The hook fired exactly there: the run died by SIGKILL, not by finishing or failing.
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert_only_whole_backups(backups, db, previous, phase)
    finished = FAULT_PHASES.index(phase) >= FINISHED_FROM
    assert len(mf.list_backups(backups)) == len(previous) + finished
    orphans = mf.orphan_data_files(backups)
    if phase == "data-renamed":
        # The window this order cannot close: a whole data file with its final name and no
        # manifest. It is no backup (not listed, never restored) and retention removes it.
        assert len(orphans) == 1
        listed = {e.name for e in mf.list_backups(backups)}
        assert mf.data_file_stem(orphans[0][0].name) not in listed
    else:
        assert orphans == []
    assert_cleaned_by_a_later_run(backups, db, compression)


def test_prune_killed_between_manifest_and_data_leaves_an_orphan_that_retention_removes(tmp_path):
    db = make_region_world(tmp_path / "db" / "world.db")
    backups = tmp_path / "backups"
    names = [create_backup(db, backups, force=True)["backup"]["name"] for _ in range(3)]
    prune = [sys.executable, "-m", CLI, "prune", "--backup-dir", str(backups), "--json"]
    keep_one = ["--keep-last", "1", "--keep-daily", "0", "--keep-weekly", "0"]
    keep_one += ["--keep-monthly", "0"]
    killed = subprocess.run(
        prune + keep_one, env=cli_env("pruning"), capture_output=True, check=False
    )
    assert killed.returncode == -signal.SIGKILL
    assert [e.name for e in mf.list_backups(backups)] == names[1:]
    assert all(e.ok for e in mf.list_backups(backups))
    assert [p.name for p, _ in mf.orphan_data_files(backups)] == [f"{names[0]}.db"]
    again = subprocess.run(prune + keep_one, env=cli_env(), capture_output=True, check=True)
    result = json.loads(again.stdout)
    assert result["deleted"] == [names[1]]
    assert result["removed_orphans"] == [f"{names[0]}.db"]
    assert mf.orphan_files(backups) == []
    assert [e.name for e in mf.list_backups(backups)] == names[2:]


def test_backup_killed_at_random_moments_never_looks_finished(tmp_path):
    db = make_world(tmp_path / "db" / "world.db", chunks=1500, seed=1)
    backups = tmp_path / "backups"
    env = cli_env()
    for compression in ("none", "gzip"):
        create_backup(db, backups, compression=compression, force=True)
    previous = backup_bytes(backups)
    # How long the backup itself takes here (from its first temporary file to the exit), so
    # that kills land all over it rather than in the interpreter's start-up. Where each kill
    # lands depends on the machine's speed, so nothing below counts them: every phase is
    # killed for certain by test_backup_killed_at_each_phase_never_looks_finished.
    phase = {}
    for compression in ("none", "gzip"):
        proc = subprocess.Popen(
            backup_cmd(db, backups, compression), env=env, stdout=subprocess.DEVNULL
        )
        begun = wait_for_new_temp(backups, proc, set())
        proc.wait()
        phase[compression] = time.monotonic() - begun
    previous = backup_bytes(backups)
    rng = random.Random(2026)  # noqa: S311 - seeded timing, not secrets
    for attempt in range(KILLS):
        compression = ("none", "gzip")[attempt % 2]
        proc = subprocess.Popen(
            backup_cmd(db, backups, compression),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # The sleeps are the fault: they pick the moment of the kill, not a wait for anything.
        if attempt % 5 == 0:  # now and then anywhere, start-up and lock included
            time.sleep(rng.uniform(0, 0.3))
        else:
            wait_for_new_temp(backups, proc, {p.name for p in backups.iterdir()})
            time.sleep(rng.uniform(0, phase[compression] * 1.1))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert_only_whole_backups(backups, db, previous, f"attempt {attempt}")
        previous = backup_bytes(backups)
    # The next run cleans up temporaries and orphans, and its backup restores the database.
    create_backup(db, backups, force=True, retention=RetentionPolicy(1000, 0, 0, 0))
    assert all(e.ok for e in mf.list_backups(backups))
    assert mf.orphan_files(backups) == []
    latest = mf.list_backups(backups)[-1].manifest
    with mf.open_db_image(latest, tmp_path) as image:
        assert dump(image) == dump(db)


def test_restore_killed_at_random_moments_leaves_old_or_new_database(tmp_path):
    db = make_world(tmp_path / "db" / "world.db", chunks=1500, seed=3)
    backups = tmp_path / "backups"
    create_backup(db, backups, compression="gzip")
    good = dump(db)
    env = dict(os.environ, PYTHONPATH=str(REPO / "collections"))
    cmd = [sys.executable, "-m", CLI, "restore", "--db", str(db), "--backup-dir", str(backups)]
    rng = random.Random(7)  # noqa: S311 - seeded timing, not secrets
    # Calibrate: how long from the prepared file's appearance (verification done) to the end.
    damage(db, 0)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    begun = wait_for_new_temp(db.parent, proc, set())
    proc.wait()
    phase = time.monotonic() - begun
    outcomes = {"old": 0, "new": 0}
    for attempt in range(1, 21):
        damage(db, attempt)
        old = dump(db)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_new_temp(db.parent, proc, {p.name for p in db.parent.iterdir()})
        time.sleep(rng.uniform(0, phase * 1.2))  # the fault: picks the moment of the kill
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert db.exists(), f"attempt {attempt}: the database path vanished"
        now = dump(db)
        assert now in (old, good), f"attempt {attempt}: neither the old nor the restored database"
        outcomes["new" if now == good else "old"] += 1
        for aside in db.parent.glob("world.db.replaced-*"):
            if not aside.name.endswith(("-wal", "-shm", "-journal")):
                assert dump(aside) not in ([], good), f"attempt {attempt}: {aside.name}"
    damage(db, 99)
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    assert dump(db) == good
    assert not list(db.parent.glob(".voxeldb-tmp-*"))  # leftovers of the kills are cleaned
    # The kills landed both before and after the swap.
    assert outcomes["old"] > 0, outcomes
    assert outcomes["new"] > 0, outcomes


def damage(db, marker: int) -> None:
    """Change the database after the backup (the state a restore replaces)."""
    conn = sqlite3.connect(db)
    conn.execute("UPDATE players SET last_seen_at = ? WHERE id = 1", (f"damage {marker}",))
    conn.commit()
    conn.close()


FIVE = [
    "CREATE TABLE guilds (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);",
    "INSERT INTO guilds (name) VALUES ('red');",
    "{third}",
    "ALTER TABLE players ADD COLUMN guild_id INTEGER REFERENCES guilds(id);",
    "CREATE INDEX players_guild ON players (guild_id);",
]
FAILURES = {
    "syntax-error": ("CREATE TABLEX broken (x);", "syntax error"),
    "unique-violation": ("INSERT INTO guilds (name) VALUES ('red');", "UNIQUE constraint"),
    "not-null-violation": ("INSERT INTO guilds (name) VALUES (NULL);", "NOT NULL constraint"),
    "check-violation": ("UPDATE chunks SET cx = NULL;", "NOT NULL constraint"),
    "missing-table": ("DELETE FROM no_such_table;", "no such table"),
}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_failing_third_of_five_statements_leaves_db_identical(tmp_path, failure, seed):
    db = make_world(tmp_path / "world.db", chunks=40 + seed * 13, seed=seed)
    migrations = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, migrations)
    third, expected_error = FAILURES[failure]
    body = "\n".join(s.format(third=third) for s in FIVE)
    (migrations / "0002_guilds.sql").write_text(f"-- migrate:up\n{body}\n")
    before = dump(db)
    with pytest.raises(MigrationError) as info:
        migrate(db, migrations)
    assert dump(db) == before
    error = info.value
    assert "0002_guilds.sql" in error.message
    assert error.details["statement_number"] == 3
    assert error.details["statement"] == third
    assert expected_error in error.details["sqlite_error"]
    assert error.details["version"] == 1


@pytest.mark.parametrize("seed", range(6))
def test_foreign_key_violation_is_caught_before_commit(tmp_path, seed):
    db = make_world(tmp_path / "world.db", chunks=20, seed=seed)
    migrations = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, migrations)
    (migrations / "0002_inventory.sql").write_text(
        "-- migrate:up\n"
        "CREATE TABLE inventory (id INTEGER PRIMARY KEY, "
        "player_id INTEGER NOT NULL REFERENCES players(id));\n"
        f"INSERT INTO inventory (player_id) VALUES ({10_000 + seed});\n"
    )
    before = dump(db)
    with pytest.raises(MigrationError, match=r"foreign key violations") as info:
        migrate(db, migrations)
    assert info.value.details["violations"][0]["table"] == "inventory"
    assert dump(db) == before


def test_failure_after_a_good_migration_keeps_only_the_good_one(tmp_path):
    db = make_world(tmp_path / "world.db", chunks=30, seed=9)
    reference = make_world(tmp_path / "reference.db", chunks=30, seed=9)
    migrations = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, migrations)
    good = "-- migrate:up\nALTER TABLE players ADD COLUMN level INTEGER NOT NULL DEFAULT 1;\n"
    (migrations / "0002_level.sql").write_text(good)
    (migrations / "0003_bad.sql").write_text("-- migrate:up\nCREATE TABLE x (a);\nSELEC 1;\n")
    with pytest.raises(MigrationError, match=r"0003_bad\.sql"):
        migrate(db, migrations)
    only_good = tmp_path / "only_good"
    shutil.copytree(MIGRATIONS, only_good)
    (only_good / "0002_level.sql").write_text(good)
    migrate(reference, only_good)
    strip = [line for line in dump(db) if "schema_migrations" not in line]
    assert strip == [line for line in dump(reference) if "schema_migrations" not in line]


@pytest.mark.parametrize("seed", range(20))
def test_health_check_reports_a_damaged_page(tmp_path, seed):
    rng = random.Random(seed)  # noqa: S311 - seeded test data, not secrets
    db = make_world(tmp_path / "world.db", chunks=60, seed=seed, payload_bytes=600)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.execute("VACUUM")  # every page in use: no free page can swallow the damage
    page_size, pages = (
        conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_size", "page_count")
    )
    conn.close()
    assert check_health(db, integrity="full")["healthy"] is True
    page = rng.randrange(1, pages + 1)
    with open(db, "r+b") as handle:
        # Page 1 starts with the file header; keep it so the damage is to a b-tree page.
        offset = (page - 1) * page_size + (100 if page == 1 else 0)
        handle.seek(offset)
        handle.write(rng.randbytes(page_size - (100 if page == 1 else 0)))
    integrity = ("quick", "full")[seed % 2]
    report = check_health(db, integrity=integrity)
    assert report["healthy"] is False, f"page {page} of {pages}"
    assert report["failing"][0] in {"integrity", "read_schema", "open"}


@pytest.mark.parametrize("seed", range(20))
def test_corrupted_chunks_are_repaired_exactly_and_nothing_else_changes(tmp_path, seed):
    rng = random.Random(seed)  # noqa: S311 - seeded test data, not secrets
    db = make_world(tmp_path / "db" / "world.db", chunks=120, seed=seed, payload_bytes=512)
    backups = tmp_path / "backups"
    create_backup(db, backups, compression=("none", "gzip")[seed % 2])
    conn = sqlite3.connect(db)
    keys = conn.execute("SELECT cx, cy, cz FROM chunks").fetchall()
    chosen = rng.sample(keys, 12)
    legit, damaged = chosen[:5], chosen[5:]
    for key in legit:  # the server keeps saving chunks after the backup: these must stay
        payload = rng.randbytes(300)
        conn.execute(
            "UPDATE chunks SET payload = ?, checksum = ?, updated_at = 'later' "
            "WHERE cx = ? AND cy = ? AND cz = ?",
            (payload, hashlib.sha256(payload).hexdigest(), *key),
        )
    conn.execute("UPDATE players SET last_seen_at = 'later' WHERE id = 1")
    conn.commit()
    expected = dump(db)
    for key in damaged:
        how = rng.choice(("flip", "truncate", "checksum"))
        if how == "flip":
            (payload,) = conn.execute(
                "SELECT payload FROM chunks WHERE cx = ? AND cy = ? AND cz = ?", key
            ).fetchone()
            raw = bytearray(payload)
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
            conn.execute(
                "UPDATE chunks SET payload = ? WHERE cx = ? AND cy = ? AND cz = ?",
                (bytes(raw), *key),
            )
        elif how == "truncate":
            conn.execute(
                "UPDATE chunks SET payload = substr(payload, 1, 10) "
                "WHERE cx = ? AND cy = ? AND cz = ?",
                key,
            )
        else:
            conn.execute(
                "UPDATE chunks SET checksum = ? WHERE cx = ? AND cy = ? AND cz = ?",
                (rng.randbytes(32).hex(), *key),
            )
    conn.commit()
    conn.close()
    assert dump(db) != expected
    result = repair_chunks(db, backups)
    assert sorted(tuple(r["key"].values()) for r in result["repaired"]) == sorted(damaged)
    assert result["unrepairable"] == []
    assert dump(db) == expected
    assert repair_chunks(db, backups)["changed"] is False
    assert json.dumps(result)  # the report is plain data


WRITER = """
import hashlib, os, sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
conn.execute("CREATE TABLE IF NOT EXISTS ledger (txn INTEGER NOT NULL, side INTEGER NOT NULL)")
txn = 0
print("ready", flush=True)
while True:
    txn += 1
    payload = os.urandom(1500)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO ledger VALUES (?, 1)", (txn,))
    conn.execute(
        "UPDATE chunks SET payload = ?, checksum = ? WHERE rowid = ?",
        (payload, hashlib.sha256(payload).hexdigest(), txn % 200 + 1),
    )
    conn.execute("INSERT INTO ledger VALUES (?, 2)", (txn,))
    conn.execute("COMMIT")
    time.sleep(0.002)  # a steady writer: the backups run between its transactions
"""


@pytest.mark.parametrize("method", ["snapshot", "backup", "vacuum"])
def test_backups_taken_during_writes_are_consistent_snapshots(tmp_path, method):
    db = make_world(tmp_path / "db" / "world.db", chunks=200, seed=5)
    backups = tmp_path / "backups"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout.readline().strip() == "ready"
        names = []
        for _ in range(8):
            time.sleep(0.05)  # the writer runs on between two backups: each catches other txns
            names.append(create_backup(db, backups, method=method, check="full")["backup"]["name"])
    finally:
        writer.kill()
        writer.wait()
    txns = set()
    used = set()
    for name in names:
        manifest = mf.read_manifest(backups / f"{name}.manifest.json")
        used.add(manifest.data["method"])
        conn = mf.open_readonly(manifest.data_path)
        # Every transaction is in the copy whole or not at all, and every chunk is valid.
        halves = conn.execute("SELECT txn FROM ledger GROUP BY txn HAVING COUNT(*) != 2").fetchall()
        rows = conn.execute("SELECT payload, checksum FROM chunks").fetchall()
        txns.add(conn.execute("SELECT MAX(txn) FROM ledger").fetchone()[0])
        conn.close()
        assert halves == [], name
        assert all(hashlib.sha256(p).hexdigest() == c for p, c in rows), name
    assert len(txns) == len(names)  # the writer really wrote between the backups
    # The snapshot copy finds quiet moments between the writer's commits (it falls back to the
    # backup API only when it finds none): at least one of these copies is its own.
    assert method in used
