#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: repair chunk rows whose payload no longer matches its checksum."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: sqlite_chunk_repair
short_description: Repair damaged chunk rows from the newest backup in which they are valid
version_added: "0.1.0"
description:
  - Scans a chunk table for rows whose payload's sha256 differs from the row's checksum column.
  - For each such row, looks through the backups of O(backup_dir), newest first (each verified by
    sha256 and C(quick_check)), for the same key with a payload that matches its own checksum.
  - Then takes a fresh forced backup of the database and, in one transaction, overwrites exactly
    those rows (every column the backup's table shares) - rows rewritten meanwhile by the server
    are left alone. Keys valid in no backup are reported as unrepairable.
  - The key columns must identify one row - the primary key or a UNIQUE index (not partial) must
    be made of some of them - or the task fails before anything is read, naming the unique
    keys that would do. Every row update must change exactly one row, or the whole repair is
    rolled back; so is a repair that would violate a constraint (the message names it and the
    row).
  - "Idempotence: a second run finds nothing to repair and reports C(changed=false)."
author:
  - mmo_voxel operations (@mmo-voxel)
options:
  db_path:
    description: The SQLite database. It must exist.
    type: path
    required: true
  backup_dir:
    description:
      - Directory with the backups of M(mmo_voxel.ops.sqlite_backup).
      - The fresh backup taken before the repair goes there too.
    type: path
    required: true
  table:
    description: The chunk table.
    type: str
    default: chunks
  key_columns:
    description: The columns that identify a chunk (covered by the primary key or a UNIQUE
      index).
    type: list
    elements: str
    default: [cx, cy, cz]
  payload_column:
    description: The payload column.
    type: str
    default: payload
  checksum_column:
    description: The column holding the sha256 hex of the payload.
    type: str
    default: checksum
  fail_on_unrepairable:
    description: Fail the task (after repairing what can be) when some rows are unrepairable.
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: Lists damaged keys and the backup each would be repaired from.
  diff_mode:
    support: full
    details: Lists the repaired keys.
"""

EXAMPLES = r"""
- name: Repair damaged chunks from backups
  mmo_voxel.ops.sqlite_chunk_repair:
    db_path: /srv/mmo_voxel/database/world.db
    backup_dir: /var/backups/mmo_voxel/world
  register: chunk_repair
"""

RETURN = r"""
damaged:
  description: Keys (dicts by key column) of rows whose payload did not match the checksum.
  returned: always
  type: list
  elements: dict
repaired:
  description: Repaired keys (or that would be, in check mode) with the backup used
    (C(key), C(backup)).
  returned: always
  type: list
  elements: dict
unrepairable:
  description: Damaged keys valid in no backup.
  returned: always
  type: list
  elements: dict
rewritten_meanwhile:
  description: Damaged keys the server rewrote before the repair transaction (left alone).
  returned: always
  type: list
  elements: dict
pre_repair_backup:
  description: Name of the backup taken just before the repair.
  returned: when rows were repaired
  type: str
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.chunks import repair_chunks
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.module_support import (
    listing,
    run_module,
)


def main() -> None:
    """Module entry point."""
    module = AnsibleModule(
        argument_spec={
            "db_path": {"type": "path", "required": True},
            "backup_dir": {"type": "path", "required": True},
            "table": {"type": "str", "default": "chunks"},
            # Column names, not secrets (validate-modules guesses from "key" in the name).
            "key_columns": {
                "type": "list",
                "elements": "str",
                "default": ["cx", "cy", "cz"],
                "no_log": False,
            },
            "payload_column": {"type": "str", "default": "payload"},
            "checksum_column": {"type": "str", "default": "checksum"},
            "fail_on_unrepairable": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    params = module.params

    def action() -> dict[str, Any]:
        result = repair_chunks(
            params["db_path"],
            params["backup_dir"],
            table=params["table"],
            key_columns=params["key_columns"],
            payload_column=params["payload_column"],
            checksum_column=params["checksum_column"],
            check_mode=module.check_mode,
        )
        if module._diff and result["changed"]:
            result["diff"] = {
                "before": listing("damaged rows", [str(k) for k in result["damaged"]]),
                "after": listing("still damaged", [str(k) for k in result["unrepairable"]]),
            }
        if result["unrepairable"] and params["fail_on_unrepairable"]:
            module.fail_json(
                msg=f"{len(result['unrepairable'])} damaged row(s) of {params['table']} are "
                "valid in no backup",
                **result,
            )
        return result

    run_module(module, action)


if __name__ == "__main__":
    main()
