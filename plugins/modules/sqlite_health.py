#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: read-only health check of a SQLite database."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: sqlite_health
short_description: Check a SQLite database and give one healthy/unhealthy verdict
version_added: "0.1.0"
description:
  - Opens the database read-only and checks - integrity (C(quick_check) or C(integrity_check)),
    that it holds tables at all (and O(expected_tables)), foreign key violations, foreign keys
    without a covering index, expected indexes that are missing, the free-page ratio, the size
    of the C(-wal) file and of the database.
  - Integrity, a database without tables (a 0-byte or fresh file), missing expected tables,
    foreign key violations and missing expected indexes are errors; the others are warnings,
    which make the verdict unhealthy only with O(strict=true).
  - The module never changes anything and always reports C(changed=false). It fails when the
    verdict is unhealthy unless O(fail_on_unhealthy=false).
author:
  - mmo_voxel operations (@mmo-voxel)
options:
  db_path:
    description: The SQLite database. It must exist.
    type: path
    required: true
  integrity:
    description: C(quick) runs C(PRAGMA quick_check), C(full) runs C(PRAGMA integrity_check).
    type: str
    choices: [quick, full]
    default: quick
  expected_indexes:
    description: Index names that must exist.
    type: list
    elements: str
    default: []
  expected_tables:
    description: Table names that must exist.
    type: list
    elements: str
    default: []
  max_freelist_ratio:
    description: Highest acceptable free pages / pages ratio.
    type: float
    default: 0.25
  max_wal_bytes:
    description: Largest acceptable C(-wal) file.
    type: int
    default: 536870912
  max_db_bytes:
    description: Largest acceptable database file; no limit when omitted.
    type: int
  strict:
    description: Warnings make the verdict unhealthy too.
    type: bool
    default: false
  fail_on_unhealthy:
    description: Fail the task when the verdict is unhealthy (the report is returned either way).
    type: bool
    default: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: Read-only; runs the same checks in check mode.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Run the weekly full health check
  mmo_voxel.ops.sqlite_health:
    db_path: /srv/mmo_voxel/database/world.db
    integrity: full
    expected_indexes: [chunks_updated_at, players_last_seen_at]
  register: world_db_health
"""

RETURN = r"""
healthy:
  description: The verdict.
  returned: always
  type: bool
failing:
  description: Names of the checks that make the verdict unhealthy.
  returned: always
  type: list
  elements: str
warnings_found:
  description: Names of the warning checks that failed.
  returned: always
  type: list
  elements: str
checks:
  description: Every check with C(name), C(ok), C(severity) (error or warning) and C(detail).
  returned: always
  type: list
  elements: dict
facts:
  description: Sizes, page counts, freelist ratio, journal mode, schema and SQLite versions.
  returned: always
  type: dict
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.health import (
    check_health,
    problems_of,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.module_support import run_module


def main() -> None:
    """Module entry point."""
    module = AnsibleModule(
        argument_spec={
            "db_path": {"type": "path", "required": True},
            "integrity": {"type": "str", "choices": ["quick", "full"], "default": "quick"},
            "expected_indexes": {"type": "list", "elements": "str", "default": []},
            "expected_tables": {"type": "list", "elements": "str", "default": []},
            "max_freelist_ratio": {"type": "float", "default": 0.25},
            "max_wal_bytes": {"type": "int", "default": 512 * 1024 * 1024},
            "max_db_bytes": {"type": "int"},
            "strict": {"type": "bool", "default": False},
            "fail_on_unhealthy": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    params = module.params

    def action() -> dict[str, Any]:
        report = check_health(
            params["db_path"],
            integrity=params["integrity"],
            expected_indexes=params["expected_indexes"],
            expected_tables=params["expected_tables"],
            max_freelist_ratio=params["max_freelist_ratio"],
            max_wal_bytes=params["max_wal_bytes"],
            max_db_bytes=params["max_db_bytes"],
            strict=params["strict"],
        )
        report["warnings_found"] = report.pop("warnings")
        report["changed"] = False
        if not report["healthy"] and params["fail_on_unhealthy"]:
            module.fail_json(
                msg=f"database {params['db_path']} is unhealthy: " + "; ".join(problems_of(report)),
                **report,
            )
        return report

    run_module(module, action)


if __name__ == "__main__":
    main()
