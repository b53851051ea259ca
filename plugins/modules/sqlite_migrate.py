#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: apply or undo versioned SQL migrations on a SQLite database."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: sqlite_migrate
short_description: Apply or undo versioned SQL migrations, recorded with checksums
version_added: "0.1.0"
description:
  - Reads C(NNNN_snake_name.sql) files from O(migrations_dir) (format in
    docs/database-toolkit.md - a C(-- migrate:up) section and an optional C(-- migrate:down)
    section) and brings the database to O(target) (the newest file when omitted), up or down.
  - Each migration runs in its own transaction, with C(PRAGMA foreign_key_check) before commit,
    and is recorded in C(schema_migrations) (version, name, sha256 of the file, time, duration).
  - Refused before any change, with a message naming the file - a version used twice, an applied
    migration whose file was edited or removed, a pending migration older than the applied version,
    a down migration without a down section, an unknown target, a statement that is transaction
    control (BEGIN, COMMIT, END, ROLLBACK, SAVEPOINT, RELEASE), VACUUM, ATTACH or DETACH - also
    after a C(/* */) comment; while a migration runs, SQLite itself denies those too.
  - A failing migration is rolled back; the message names the file, the statement and SQLite's
    error. Migrations before it in the same run stay applied (each has its own transaction); the
    playbook C(playbooks/db_migrate.yml) takes a backup first and restores it on failure.
  - "Idempotence: when the database is at the target version, nothing runs and C(changed=false)."
author:
  - mmo_voxel operations (@mmo-voxel)
options:
  db_path:
    description: The SQLite database. It must exist.
    type: path
    required: true
  migrations_dir:
    description: Directory with the migration files (every C(*.sql) in it must be a migration).
    type: path
    required: true
  target:
    description:
      - Version to migrate up or down to; C(0) undoes every migration.
      - Default the newest migration file (of O(migrations_dir), 0 when it holds none).
    type: int
  down_migrations_dir:
    description:
      - Where the down sections come from when the database is above the target - the files of
        the version that applied those migrations. A rollback to an older image needs it; the
        older image does not carry the newer migrations. With it, the target defaults to the
        newest file of O(migrations_dir), 0 when it holds none.
    type: path
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: Lists the migrations that would run, after every refusal check.
  diff_mode:
    support: full
    details: Shows the applied versions before and after.
seealso:
  - module: mmo_voxel.ops.sqlite_backup
"""

EXAMPLES = r"""
- name: Apply the pending migrations
  mmo_voxel.ops.sqlite_migrate:
    db_path: /srv/mmo_voxel/database/world.db
    migrations_dir: /opt/mmo_voxel/server/migrations

- name: Undo the migrations newer than version 3
  mmo_voxel.ops.sqlite_migrate:
    db_path: /srv/mmo_voxel/database/world.db
    migrations_dir: /opt/mmo_voxel/server/migrations
    target: 3
- name: Bring the world to the new image's schema, up or down (a rollback deploy)
  mmo_voxel.ops.sqlite_migrate:
    db_path: /srv/mmo_voxel/database/world.db
    migrations_dir: /srv/mmo_voxel/migrations/1.4.1
    down_migrations_dir: /srv/mmo_voxel/migrations/1.5.0
"""

RETURN = r"""
direction:
  description: C(up) or C(down).
  returned: success
  type: str
pending:
  description: Migrations that run (or would run in check mode), in order, as C(NNNN_name).
  returned: success
  type: list
  elements: str
applied:
  description: Migrations run, with C(migration) and C(duration_ms).
  returned: success
  type: list
  elements: dict
version_before:
  description: Schema version before.
  returned: success
  type: int
version_after:
  description: Schema version after (in check mode, the version it would reach).
  returned: success
  type: int
statement:
  description: The failing statement.
  returned: failure of a statement
  type: str
sqlite_error:
  description: SQLite's error message.
  returned: failure of a statement
  type: str
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.migrate import migrate
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.module_support import (
    listing,
    run_module,
)


def main() -> None:
    """Module entry point."""
    module = AnsibleModule(
        argument_spec={
            "db_path": {"type": "path", "required": True},
            "migrations_dir": {"type": "path", "required": True},
            "target": {"type": "int"},
            "down_migrations_dir": {"type": "path"},
        },
        supports_check_mode=True,
    )
    params = module.params

    def action() -> dict[str, Any]:
        result = migrate(
            params["db_path"],
            params["migrations_dir"],
            target=params["target"],
            down_migrations_dir=params["down_migrations_dir"],
            check_mode=module.check_mode,
        )
        if module._diff and result["changed"]:
            result["diff"] = {
                "before": f"schema version {result['version_before']}\n",
                "after": f"schema version {result['version_after']}\n"
                + listing(f"migrations {result['direction']}", result["pending"]),
            }
        return result

    run_module(module, action)


if __name__ == "__main__":
    main()
