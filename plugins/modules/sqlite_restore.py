#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: restore a verified backup over a SQLite database."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: sqlite_restore
short_description: Restore a verified backup over a SQLite database, keeping the old one aside
version_added: "0.1.0"
description:
  - Chooses a backup made by M(mmo_voxel.ops.sqlite_backup) (by O(name), the newest taken at or
    before O(before), or the newest), verifies its sha256 and runs an integrity check on it before
    anything is touched, then sets the current database and its C(-wal)/C(-shm) aside as
    C(<db>.replaced-<time>) and atomically renames the verified copy into place.
  - With O(name) a backup that fails verification is an error. Otherwise, when the newest backup
    (taken at or before O(before)) fails verification - or, without a name, holds no tables - the
    task fails, naming every backup that failed and why and the newest one that verifies, and
    changes nothing, unless O(allow_older=true); then that older backup is restored, with a
    warning naming the newer ones that failed.
  - The game server must be stopped first; the module refuses when a checkpoint shows another
    connection busy with the database.
  - The swap happens under a lock file C(.voxeldb.lock) in the database's directory; a restore
    killed at any moment leaves the database path holding the old or the restored content.
  - "Idempotence: when the database already holds exactly the chosen backup's content, nothing is
    done and C(changed=false)."
author:
  - mmo_voxel operations (@mmo-voxel)
options:
  db_path:
    description:
      - The database to replace.
      - It may be missing (disaster recovery); its directory must exist.
    type: path
    required: true
  backup_dir:
    description: Directory holding the backups and manifests.
    type: path
    required: true
  name:
    description: Name of the backup to restore (as returned by M(mmo_voxel.ops.sqlite_backup)).
    type: str
  before:
    description:
      - Restore the newest verified backup taken at or before this ISO 8601 time.
      - A time without zone is UTC.
    type: str
  check:
    description: Integrity check run on the backup before restoring.
    type: str
    choices: [quick, full]
    default: full
  allow_older:
    description:
      - Restore the newest backup that verifies even when newer ones fail verification
        (C(scripts/voxeldb restore --allow-older)). Without it such a restore fails and
        changes nothing.
      - Has no effect with O(name).
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: Verifies the backup and reports which backup would be restored and which files
      would be set aside.
  diff_mode:
    support: full
    details: Shows the database's backup identity before and after.
seealso:
  - module: mmo_voxel.ops.sqlite_backup
"""

EXAMPLES = r"""
- name: Restore the newest verified backup
  mmo_voxel.ops.sqlite_restore:
    db_path: /srv/mmo_voxel/database/world.db
    backup_dir: /var/backups/mmo_voxel/world

- name: Roll back to the state of last night
  mmo_voxel.ops.sqlite_restore:
    db_path: /srv/mmo_voxel/database/world.db
    backup_dir: /var/backups/mmo_voxel/world
    before: "2026-11-28T00:30:00Z"
"""

RETURN = r"""
backup:
  description: Summary of the backup restored (or that the database already matches).
  returned: success
  type: dict
  contains:
    name:
      description: Backup name.
      type: str
    file:
      description: Data file.
      type: str
    created_at:
      description: Time of the backup.
      type: str
    sha256:
      description: sha256 of the data file.
      type: str
    schema_version:
      description: Schema version in the backup.
      type: int
set_aside:
  description: Files moved aside (C(from), C(to)); in check mode, the files that would be.
  returned: success
  type: list
  elements: dict
skipped_backups:
  description: Newer backups that failed verification and were passed over (C(name),
    C(created_at), C(problem)); only with O(allow_older=true) can this be non-empty.
  returned: success
  type: list
  elements: dict
failed_backups:
  description: On the refusal to fall back to an older backup, the newer backups that failed
    verification (C(name), C(created_at), C(problem)); C(verified_backup) names the older one.
  returned: failure, when newer backups failed verification and O(allow_older=false)
  type: list
  elements: dict
msg:
  description: What was done.
  returned: success
  type: str
removed_temps:
  description: Temporary files of interrupted restores removed from the database's directory.
  returned: when a restore was made
  type: list
  elements: str
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.module_support import run_module
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.restore import restore_backup


def main() -> None:
    """Module entry point."""
    module = AnsibleModule(
        argument_spec={
            "db_path": {"type": "path", "required": True},
            "backup_dir": {"type": "path", "required": True},
            "name": {"type": "str"},
            "before": {"type": "str"},
            "check": {"type": "str", "choices": ["quick", "full"], "default": "full"},
            "allow_older": {"type": "bool", "default": False},
        },
        mutually_exclusive=[("name", "before")],
        supports_check_mode=True,
    )
    params = module.params

    def action() -> dict[str, Any]:
        result = restore_backup(
            params["db_path"],
            params["backup_dir"],
            name=params["name"],
            before=params["before"],
            check=params["check"],
            allow_older=params["allow_older"],
            check_mode=module.check_mode,
        )
        for warning in result.pop("warnings", []):
            module.warn(warning)  # a fall back to an older backup is said loudly
        if module._diff and result["changed"]:
            result["diff"] = {
                "before": f"{params['db_path']}: current database\n",
                "after": f"{params['db_path']}: backup {result['backup']['name']} "
                f"(sha256 {result['backup']['sha256']})\n",
            }
        return result

    run_module(module, action)


if __name__ == "__main__":
    main()
