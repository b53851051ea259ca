"""Migrations cannot leave their transaction (issue #18 item 1), on a region-schema WAL world.

First line: statements are split with a real tokenizer and refused by their first keyword, after
any comment. Second line: while a migration runs, an authorizer denies transaction control, and
the runner stops if the connection leaves its transaction anyway.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from vdb_unit_helpers import dump, make_region_world

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb import migrate as mg
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.errors import MigrationError

HALF_APPLY = "CREATE TABLE t1(x); /* c */ COMMIT; CREATE TABLE t2(y); UPDATE no_such_table SET a=1;"


@pytest.fixture
def world(tmp_path):
    return make_region_world(tmp_path / "db" / "world.db")


def recorded(db) -> list:
    conn = sqlite3.connect(db)
    try:
        if not conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'schema_migrations'"
        ).fetchone():
            return []
        return conn.execute("SELECT version FROM schema_migrations").fetchall()
    finally:
        conn.close()


def test_commit_after_a_block_comment_cannot_half_apply_a_migration(tmp_path, world):
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_half.sql").write_text(f"-- migrate:up\n{HALF_APPLY}\n")
    before = dump(world)
    for _ in range(2):  # a re-run fails the same way, not with "table t1 already exists"
        with pytest.raises(MigrationError, match=r"0001_half\.sql.*statement 2 is COMMIT"):
            mg.migrate(world, migrations)
        assert dump(world) == before
        assert recorded(world) == []


@pytest.mark.parametrize(
    "statement",
    [
        "/* c */ COMMIT;",
        "/* a\nblock */ BEGIN IMMEDIATE;",
        "-- line\n/* block */ END TRANSACTION;",
        "/**/ROLLBACK;",
        "/* c */ SAVEPOINT s;",
        "/* c */ release s;",
        "/* c */ VACUUM;",
        "ATTACH DATABASE 'other.db' AS other;",
        "/* c */ DETACH other;",
    ],
)
def test_transaction_control_is_refused_after_any_comment(statement):
    text = f"-- migrate:up\nCREATE TABLE a(x);\n{statement}\nCREATE TABLE b(y);\n"
    with pytest.raises(MigrationError, match="not allowed in a migration") as info:
        mg.parse_migration_text(text, "0001_x.sql")
    assert info.value.details["statement_number"] == 2


@pytest.mark.parametrize(
    ("sql", "statements"),
    [
        pytest.param(
            'CREATE TABLE "a;b"(x); CREATE TABLE [c;d](y); CREATE TABLE `e;f`(z);',
            ['CREATE TABLE "a;b"(x);', "CREATE TABLE [c;d](y);", "CREATE TABLE `e;f`(z);"],
            id="semicolons-in-quoted-identifiers",
        ),
        pytest.param(
            "INSERT INTO a VALUES ('it''s; fine'); /* ; COMMIT; */ SELECT 1;",
            ["INSERT INTO a VALUES ('it''s; fine');", "/* ; COMMIT; */ SELECT 1;"],
            id="semicolons-in-strings-and-block-comments",
        ),
        pytest.param(
            "/* only a comment */;\n-- and another;\nSELECT 2;",
            ["-- and another;\nSELECT 2;"],
            id="comment-only-statements-dropped",
        ),
        pytest.param(
            "CREATE TRIGGER tr AFTER INSERT ON a BEGIN\n  UPDATE a SET x = 1; /* ; */\nEND;",
            ["CREATE TRIGGER tr AFTER INSERT ON a BEGIN\n  UPDATE a SET x = 1; /* ; */\nEND;"],
            id="trigger-body-with-begin-end-kept-whole",
        ),
    ],
)
def test_split_statements_like_sqlite(sql, statements):
    assert mg.split_statements(sql, "f.sql") == statements


def test_a_trigger_whose_body_says_begin_and_end_is_allowed(tmp_path, world):
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_trigger.sql").write_text(
        "-- migrate:up\n"
        "/* keep player names tidy */ CREATE TRIGGER player_trim AFTER INSERT ON player BEGIN\n"
        "  UPDATE player SET name = trim(name) WHERE id = NEW.id;\n"
        "END;\n"
    )
    assert mg.migrate(world, migrations)["version_after"] == 1
    conn = sqlite3.connect(world)
    conn.execute("INSERT INTO player (name) VALUES ('  cy  ')")
    assert conn.execute("SELECT name FROM player WHERE name LIKE '%cy%'").fetchone() == ("cy",)
    conn.close()


def unparsed(*statements: str) -> mg.Migration:
    """A migration as if the file parser had let these statements through."""
    return mg.Migration(1, "slipped", Path("0001_slipped.sql"), "0" * 64, statements, None)


def connect(db) -> sqlite3.Connection:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA foreign_keys=OFF")
    return conn


@pytest.mark.parametrize(
    "control", ["COMMIT;", "END;", "ROLLBACK;", "SAVEPOINT s;", "BEGIN;", "ATTACH ':memory:' AS m;"]
)
def test_sqlite_denies_transaction_control_that_slipped_past_the_parser(world, control):
    before = dump(world)
    conn = connect(world)
    try:
        with pytest.raises(MigrationError, match=r"statement 2 of 4 is .*refused and rolled back"):
            mg.run_migration(
                conn,
                unparsed("CREATE TABLE t1(x);", control, "CREATE TABLE t2(y);", "SELECT 1;"),
                "up",
            )
        assert not conn.in_transaction
    finally:
        conn.close()
    assert dump(world) == before
    assert recorded(world) == []


def test_the_run_stops_when_the_connection_leaves_its_transaction(world, monkeypatch):
    # Without the authorizer (as if SQLite allowed it), a ROLLBACK ends the transaction: the
    # runner must notice at once, not run the next statements in autocommit.
    monkeypatch.setattr(mg, "DENIED_ACTIONS", {}, raising=False)
    before = dump(world)
    conn = connect(world)
    try:
        with pytest.raises(MigrationError, match="ended the migration's transaction") as info:
            mg.run_migration(
                conn, unparsed("CREATE TABLE t1(x);", "ROLLBACK;", "CREATE TABLE t2(y);"), "up"
            )
    finally:
        conn.close()
    assert info.value.details["statement_number"] == 2
    assert dump(world) == before
    assert recorded(world) == []
