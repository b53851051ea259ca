"""Migration files: names, sections, statement splitting, ordering and planning."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb import migrate as mg
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.errors import (
    InputError,
    MigrationError,
)

REFERENCE = (
    Path(__file__).resolve().parents[4] / "roles/server_build/files/reference_server/migrations"
)


@pytest.mark.parametrize(
    ("text", "up", "down"),
    [
        pytest.param(
            "-- migrate:up\nCREATE TABLE a(x);\n", ["CREATE TABLE a(x);"], None, id="up-only"
        ),
        pytest.param(
            "-- a header comment\n\n-- migrate:up\nCREATE TABLE a(x);\nCREATE TABLE b(y);\n"
            "-- migrate:down\nDROP TABLE b;\nDROP TABLE a;\n",
            ["CREATE TABLE a(x);", "CREATE TABLE b(y);"],
            ["DROP TABLE b;", "DROP TABLE a;"],
            id="up-and-down-with-header",
        ),
        pytest.param(
            "-- migrate:up\nINSERT INTO a VALUES ('x;y'); INSERT INTO a VALUES (2);\n",
            ["INSERT INTO a VALUES ('x;y');", "INSERT INTO a VALUES (2);"],
            None,
            id="semicolon-in-string-and-two-on-a-line",
        ),
        pytest.param(
            "-- migrate:up\nCREATE TRIGGER t AFTER INSERT ON a BEGIN\n  UPDATE a SET x = 1;\n"
            "  UPDATE a SET x = 2;\nEND;\n",
            [
                "CREATE TRIGGER t AFTER INSERT ON a BEGIN\n  UPDATE a SET x = 1;\n"
                "  UPDATE a SET x = 2;\nEND;"
            ],
            None,
            id="trigger-body-kept-whole",
        ),
        pytest.param(
            "-- migrate:up\n-- a comment; with a semicolon\nCREATE TABLE a(x);\n-- migrate:down\n",
            ["-- a comment; with a semicolon\nCREATE TABLE a(x);"],
            [],
            id="comment-with-semicolon-and-empty-down",
        ),
        pytest.param("  -- MIGRATE:UP  \nSELECT 1;\n", ["SELECT 1;"], None, id="marker-case"),
    ],
)
def test_parse_migration_text(text, up, down):
    assert mg.parse_migration_text(text, "f.sql") == (up, down)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("CREATE TABLE a(x);\n-- migrate:up\nSELECT 1;", "SQL before", id="sql-first"),
        pytest.param("-- nothing\n", "no '-- migrate:up'", id="no-up"),
        pytest.param("-- migrate:up\n-- only comment\n", "no statement", id="empty-up"),
        pytest.param("-- migrate:up\nSELECT 1;\n-- migrate:up\n", "second", id="two-ups"),
        pytest.param("-- migrate:down\nSELECT 1;\n", "before up", id="down-first"),
        pytest.param("-- migrate:up\nSELECT 1\n", "without terminating", id="no-semicolon"),
        pytest.param("-- migrate:up\nBEGIN;\nSELECT 1;\nCOMMIT;\n", "transaction", id="begin"),
        pytest.param(
            "-- migrate:up\nSELECT 1;\n-- migrate:down\nVACUUM;\n", "VACUUM", id="vacuum-in-down"
        ),
    ],
)
def test_parse_migration_text_refuses(text, message):
    with pytest.raises(MigrationError, match=message) as info:
        mg.parse_migration_text(text, "dir/0001_x.sql")
    assert "dir/0001_x.sql" in info.value.message


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("0001_create_chunks.sql", True),
        ("12345_big_version.sql", True),
        ("001_too_short.sql", False),
        ("0001-dash.sql", False),
        ("0001_CamelCase.sql", False),
        ("0001_.sql", False),
        ("abcd_letters.sql", False),
    ],
)
def test_file_name_pattern(tmp_path, name, valid):
    path = tmp_path / name
    path.write_text("-- migrate:up\nSELECT 1;\n")
    if valid:
        assert mg.parse_migration_file(path).label == path.stem
    else:
        with pytest.raises(MigrationError, match="NNNN_snake_name"):
            mg.parse_migration_file(path)


def write(folder: Path, name: str, up: str = "SELECT 1;", down: str | None = None) -> Path:
    text = f"-- migrate:up\n{up}\n" + (f"-- migrate:down\n{down}\n" if down is not None else "")
    path = folder / name
    path.write_text(text)
    return path


def test_load_orders_numerically_and_checksums_bytes(tmp_path):
    write(tmp_path, "0010_ten.sql")
    write(tmp_path, "0002_two.sql")
    write(tmp_path, "10000_big.sql")
    (tmp_path / "README.md").write_text("not a migration")
    loaded = mg.load_migrations(tmp_path)
    assert [m.version for m in loaded] == [2, 10, 10000]
    assert (
        loaded[0].checksum == hashlib.sha256((tmp_path / "0002_two.sql").read_bytes()).hexdigest()
    )


def test_load_refuses_a_version_used_twice(tmp_path):
    write(tmp_path, "0002_two.sql")
    write(tmp_path, "0002_other.sql")
    with pytest.raises(MigrationError, match="version 2 is used twice"):
        mg.load_migrations(tmp_path)


def test_load_refuses_missing_dir(tmp_path):
    with pytest.raises(InputError, match="migrations_dir"):
        mg.load_migrations(tmp_path / "nope")


def migration(version: int, down: bool = True, checksum: str | None = None) -> mg.Migration:
    return mg.Migration(
        version,
        f"m{version}",
        Path(f"{version:04d}_m{version}.sql"),
        checksum or f"c{version}",
        ("SELECT 1;",),
        ("SELECT 2;",) if down else None,
    )


def applied(*versions: int) -> dict:
    return {v: {"version": v, "name": f"m{v}", "checksum": f"c{v}"} for v in versions}


@pytest.mark.parametrize(
    ("files", "done", "target", "direction", "todo"),
    [
        ([1, 2, 3], (), None, "up", [1, 2, 3]),
        ([1, 2, 3], (1,), None, "up", [2, 3]),
        ([1, 2, 3], (1, 2, 3), None, "up", []),
        ([1, 2, 3], (), 2, "up", [1, 2]),
        ([1, 2, 3], (1, 2, 3), 1, "down", [3, 2]),
        ([1, 2, 3], (1, 2, 3), 0, "down", [3, 2, 1]),
        ([1, 2, 3], (1, 2), 2, "up", []),
        ([], (), None, "up", []),
    ],
)
def test_plan(files, done, target, direction, todo):
    got_direction, got = mg.plan_migrations([migration(v) for v in files], applied(*done), target)
    assert (got_direction, [m.version for m in got]) == (direction, todo)


@pytest.mark.parametrize(
    ("files", "done", "target", "error", "message"),
    [
        ([migration(1, checksum="edited")], (1,), None, MigrationError, "edited after"),
        ([migration(2)], (1, 2), None, MigrationError, "file is missing"),
        ([migration(1), migration(2), migration(3)], (1, 3), None, MigrationError, "never applied"),
        (
            [migration(1), migration(2, down=False)],
            (1, 2),
            1,
            MigrationError,
            "no '-- migrate:down'",
        ),
        ([migration(1)], (), 5, InputError, "target 5"),
    ],
)
def test_plan_refuses(files, done, target, error, message):
    with pytest.raises(error, match=message):
        mg.plan_migrations(files, applied(*done), target)


def test_reference_migration_parses_and_builds_the_contract_schema(tmp_path):
    (only,) = mg.load_migrations(REFERENCE)
    assert (only.version, only.name) == (1, "create_chunks")
    assert only.down is not None
    conn = sqlite3.connect(tmp_path / "w.db", isolation_level=None)
    mg.run_migration(conn, only, "up")
    cols = [(r[1], r[2], r[3], r[5]) for r in conn.execute("PRAGMA table_info(chunks)")]
    assert cols == [
        ("cx", "INTEGER", 1, 1),
        ("cy", "INTEGER", 1, 2),
        ("cz", "INTEGER", 1, 3),
        ("payload", "BLOB", 1, 0),
        ("checksum", "TEXT", 1, 0),
        ("updated_at", "TEXT", 1, 0),
    ]
    mg.run_migration(conn, only, "down")
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert names == {"schema_migrations"}


def versions_dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A world at version 2 (applied from the newer image's files), and the older image's files."""
    newer, older = tmp_path / "1.5.0", tmp_path / "1.4.1"
    newer.mkdir()
    older.mkdir()
    for folder in (newer, older):
        write(folder, "0001_t1.sql", "CREATE TABLE t1 (x);", "DROP TABLE t1;")
    write(newer, "0002_t2.sql", "CREATE TABLE t2 (x);", "DROP TABLE t2;")
    db = tmp_path / "world.db"
    sqlite3.connect(db).close()
    assert mg.migrate(db, newer)["version_after"] == 2
    return db, newer, older


def tables(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


def test_a_rollback_goes_down_with_the_running_versions_files(tmp_path):
    db, newer, older = versions_dirs(tmp_path)
    # Without them the older image's files cannot undo version 2: refused, nothing changes.
    with pytest.raises(MigrationError, match=r"migration 2 \(t2\) is applied but its file"):
        mg.migrate(db, older)
    result = mg.migrate(db, older, down_migrations_dir=newer)
    assert (result["direction"], result["version_after"]) == ("down", 1)
    assert result["pending"] == ["0002_t2"]
    assert tables(db) == {"schema_migrations", "t1"}
    again = mg.migrate(db, older, down_migrations_dir=newer)
    assert again["changed"] is False


def test_an_image_without_migrations_takes_the_world_down_to_zero(tmp_path):
    db, newer, _ = versions_dirs(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    planned = mg.migrate(db, empty, down_migrations_dir=newer, check_mode=True)
    assert (planned["version_after"], planned["pending"]) == (0, ["0002_t2", "0001_t1"])
    assert tables(db) == {"schema_migrations", "t1", "t2"}  # check mode ran nothing
    assert mg.migrate(db, empty, down_migrations_dir=newer)["version_after"] == 0


def test_going_up_never_reads_the_down_directory(tmp_path):
    db, newer, older = versions_dirs(tmp_path)
    mg.migrate(db, older, down_migrations_dir=newer)
    result = mg.migrate(db, newer, down_migrations_dir=tmp_path / "no-such-dir")
    assert (result["direction"], result["version_after"]) == ("up", 2)


def test_a_missing_down_directory_is_named_when_it_is_needed(tmp_path):
    db, _, older = versions_dirs(tmp_path)
    with pytest.raises(InputError, match="no-such-dir"):
        mg.migrate(db, older, down_migrations_dir=tmp_path / "no-such-dir")
    assert tables(db) == {"schema_migrations", "t1", "t2"}
