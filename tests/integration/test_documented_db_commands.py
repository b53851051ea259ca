"""The database toolkit's documented commands, run as written or in their registered forms.

`scripts/voxeldb`'s synopsis (docs/database-toolkit.md) with every option it shows, the timer
example and the runbook's commands on a copy, and the toolkit's playbooks as the README shows
them: on the embedded default of a scratch copy of the tree, whose world
(`.state/server/data/world.db`) is a small test world. tests/documented_commands.yml says why
each concrete command stands for its documented one.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from pathlib import Path

import pytest
from db_integration_helpers import make_world
from documented_commands import run_documented, scratch_checkout

pytestmark = pytest.mark.slow


def ok(result) -> str:
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    return result.stdout


def soon() -> str:
    """A time just after now, as the toolkit takes it: every backup so far is at or before it."""
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    return later.strftime("%Y-%m-%dT%H:%M:%SZ")


def damage(db: Path, cx: int) -> None:
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE chunks SET payload = x'00' WHERE cx = ?", (cx,))
    con.close()


def changed(stdout: str) -> int:
    match = re.search(
        r"^localhost\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0", stdout, re.M
    )
    assert match, stdout[-3000:]
    return int(match.group(1))


def test_voxeldb_command_line_forms(tmp_path: Path) -> None:
    db = make_world(tmp_path / "world.db")
    env = {"DB": str(db), "DIR": str(tmp_path / "backups")}
    ok(
        run_documented(
            (
                'scripts/voxeldb backup --db "$DB" --backup-dir "$DIR" --method stepped --check '
                "full --compression gzip --prefix world --force --retention --keep-last 4 "
                "--keep-daily 7 --keep-weekly 4 --keep-monthly 6"
            ),
            env=env,
        )
    )
    ok(
        run_documented(
            ('scripts/voxeldb backup --db "$DB" --backup-dir "$DIR" --method vacuum --force'),
            env=env,
        )
    )
    pruned = ok(
        run_documented(
            (
                'scripts/voxeldb prune --backup-dir "$DIR" --keep-last 1 --keep-daily 1 '
                "--keep-weekly 1 --keep-monthly 1"
            ),
            env=env,
        )
    )
    assert len(json.loads(pruned[pruned.index("{") :])["deleted"]) == 1
    (newest,) = sorted(p.name.split(".")[0] for p in (tmp_path / "backups").glob("*.manifest.json"))
    env |= {"TIME": soon(), "NAME": newest}
    ok(
        run_documented(
            (
                'scripts/voxeldb restore --db "$DB" --backup-dir "$DIR" --before '
                '"$TIME" --check full'
            ),
            env=env,
        )
    )
    ok(
        run_documented(
            'scripts/voxeldb restore --db "$DB" --backup-dir "$DIR" --name "$NAME"', env=env
        )
    )
    ok(
        run_documented(
            (
                'scripts/voxeldb migrate --db "$DB" --migrations-dir '
                "roles/server_build/files/reference_server/migrations --target 1"
            ),
            env=env,
        )
    )
    ok(
        run_documented(
            (
                'scripts/voxeldb check --db "$DB" --integrity full --expected-index '
                "chunks_updated_at --expected-index players_last_seen_at --strict "
                "--max-freelist-ratio 0.25 --max-wal-bytes 536870912 --max-db-bytes 1073741824"
            ),
            env=env,
        )
    )
    damage(db, 3)
    repaired = ok(
        run_documented(
            (
                'scripts/voxeldb repair-chunks --db "$DB" --backup-dir "$DIR" --table chunks '
                "--key-columns cx,cy,cz --payload-column payload --checksum-column checksum"
            ),
            env=env,
        )
    )
    assert json.loads(repaired[repaired.index("{") :])["repaired"][0]["key"]["cx"] == 3


def test_voxeldb_examples(tmp_path: Path) -> None:
    home = tmp_path / "home"
    make_world(home / ".local/share/godot/app_userdata/mmo_voxel/database/world.db")
    env = {"HOME": str(home)}
    out = ok(
        run_documented(
            (
                "scripts/voxeldb backup --db "
                "~/.local/share/godot/app_userdata/mmo_voxel/database/world.db --backup-dir "
                "~/backups/world --compression gzip --retention --json"
            ),
            env=env,
        )
    )
    backup = json.loads(out)["backup"]
    assert backup["compression"] == "gzip"
    # The runbook's test of a migration on a copy (db-rollback-and-chunk-repair.md, step 4).
    env |= {
        "COPY": str(tmp_path / "copy.db"),
        "BACKUPS": str(home / "backups" / "world"),
        "NAME": backup["name"],
    }
    ok(
        run_documented(
            ('scripts/voxeldb restore --db "$COPY" --backup-dir "$BACKUPS" --name "$NAME"'), env=env
        )
    )
    ok(
        run_documented(
            (
                'scripts/voxeldb migrate --db "$COPY" --migrations-dir '
                "roles/server_build/files/reference_server/migrations"
            ),
            env=env,
        )
    )
    assert (tmp_path / "copy.db").is_file()


def test_database_playbooks_on_the_embedded_default(tmp_path: Path) -> None:
    checkout = scratch_checkout(tmp_path / "checkout")
    db = make_world(checkout / ".state" / "server" / "data" / "world.db")
    backups = checkout / ".state" / "backups"

    def run(command: str, **env: str) -> str:
        return ok(run_documented(command, cwd=checkout, env=env, timeout=600))

    assert changed(run("ansible-playbook playbooks/db_check.yml")) == 0
    assert changed(run("ansible-playbook playbooks/db_backup.yml")) == 1
    assert len(list(backups.glob("*.manifest.json"))) == 1
    assert changed(run("ansible-playbook playbooks/db_migrate.yml")) == 0  # at the newest already
    time = soon()
    damage(db, 5)
    full_check = run(
        "ansible-playbook -i inventories/local playbooks/db_check.yml"
        " -e db_ops_check_integrity=full"
    )
    assert changed(full_check) == 0  # the file is sound; only a payload is wrong
    listed = run("ansible-playbook -i inventories/local playbooks/chunk_repair.yml --check")
    assert changed(listed) == 1
    restore_plan = run(
        "ansible-playbook -i inventories/local playbooks/db_restore.yml --check --diff"
        ' -e db_ops_restore_before="$TIME"',
        TIME=time,
    )
    assert changed(restore_plan) == 1
    assert changed(run("ansible-playbook playbooks/db_restore.yml")) == 1
    assert list(db.parent.glob("world.db.replaced-*"))
    damage(db, 7)
    assert changed(run("ansible-playbook playbooks/chunk_repair.yml")) == 1
    assert changed(run("ansible-playbook playbooks/db_check.yml")) == 0
