#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: make a verified online backup of a live SQLite database."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: sqlite_backup
short_description: Make a verified, checksummed online backup of a live SQLite database
version_added: "0.1.0"
description:
  - Copies a consistent image of a SQLite database that may be in use (see O(method)) into a
    temporary file in O(backup_dir), verifies it with C(quick_check) or
    C(integrity_check), checksums it, optionally compresses it, fsyncs and renames it into place,
    and writes a manifest last. An interrupted backup never leaves files that look finished.
  - A database that holds no tables (a 0-byte or freshly created file) is refused unless
    O(allow_empty=true); with O(expected_tables), so is one that holds none of them.
  - "Idempotence: a new backup is written only when the database content differs from the newest
    verified backup in O(backup_dir) (compared by the sha256 of the uncompressed image), or when
    O(force=true). A second run on an unchanged database reports C(changed=false)."
  - With O(retention), the retention policy is applied afterwards to the verified backups of
    O(backup_dir); the newest verified backup is never deleted. It also removes data files left
    without manifest by an interrupted backup when they are older than the newest verified backup,
    and leftover temporary files. Deleting anything also reports C(changed=true).
  - The logic lives in C(plugins/module_utils/voxeldb/) and is shared with C(scripts/voxeldb).
author:
  - mmo_voxel operations (@mmo-voxel)
options:
  db_path:
    description: The SQLite database to back up. It must exist.
    type: path
    required: true
  backup_dir:
    description:
      - Directory for backups and manifests; created (mode 0750) when missing.
      - Must not be the database file nor the database's own directory.
    type: path
    required: true
  method:
    description:
      - C(snapshot) (the default, see bench/README.md) copies the database file under one read
        transaction once a checkpoint has backfilled the whole WAL, hashing it as it is written; it
        falls back to C(backup) when the WAL is never fully backfilled (the manifest records the
        method used). C(backup) is the SQLite online backup API in one pass;
        C(stepped) copies O(step_pages) pages per step (restarts when the source is written);
        C(vacuum) uses C(VACUUM INTO) (compacts the copy).
    type: str
    choices: [snapshot, backup, stepped, vacuum]
    default: snapshot
  step_pages:
    description: Pages per step for O(method=stepped).
    type: int
    default: 4096
  check:
    description: Integrity check run on the copy before it is kept.
    type: str
    choices: [quick, full]
    default: quick
  compression:
    description: Compression of the stored file; C(zstd) needs the Python package zstandard.
    type: str
    choices: [none, gzip, zstd]
    default: none
  compression_level:
    description: Compression level (gzip 1-9, default 6; zstd default 3).
    type: int
  prefix:
    description: Backup name prefix; defaults to the database file's stem (C(world)).
    type: str
  force:
    description: Make a backup even when the content equals the newest verified backup.
    type: bool
    default: false
  expected_tables:
    description:
      - Tables of the world database; a database holding none of them is refused (it is not the
        world database).
    type: list
    elements: str
    default: []
  prepare:
    description:
      - Make no backup; copy the database (live) into O(backup_dir) for the next backup to start
        from. That backup (any, into the same directory, O(method=snapshot)) compares the database
        with the copy and writes only the blocks that differ, so a backup taken after a stop
        costs a read of the world instead of a whole copy's write and fsync.
      - The copy is never listed as a backup; the next backup takes it, the next O(prepare)
        replaces it. The backup is the same bytes with or without it.
      - Reports C(changed=true) and C(prepared=true) when the copy was made; C(prepared=false)
        when the WAL was never quiet enough for a snapshot (the backup then copies everything).
    type: bool
    default: false
  allow_empty:
    description:
      - Back up a database that holds no tables (a fresh, empty database, as on a first deploy).
      - Refused by default, since such a backup would become the newest one a restore picks.
    type: bool
    default: false
  retention:
    description: Retention policy applied after the backup; omit to keep every backup.
    type: dict
    suboptions:
      keep_last:
        description: Keep the N newest backups.
        type: int
        default: 4
      keep_daily:
        description: Keep the newest backup of each of the N most recent days with backups (UTC).
        type: int
        default: 7
      keep_weekly:
        description: Likewise per ISO week.
        type: int
        default: 4
      keep_monthly:
        description: Likewise per calendar month.
        type: int
        default: 6
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: Reports whether a backup would be written (an image is hashed in a temporary
      directory outside O(backup_dir) when a previous backup exists) and what retention
      would delete.
  diff_mode:
    support: full
    details: Shows the list of backups before and after.
seealso:
  - module: mmo_voxel.ops.sqlite_restore
"""

EXAMPLES = r"""
- name: Back up the world database with the 00:00/12:00 retention policy
  mmo_voxel.ops.sqlite_backup:
    db_path: /srv/mmo_voxel/database/world.db
    backup_dir: /var/backups/mmo_voxel/world
    compression: gzip
    retention:
      keep_last: 4
      keep_daily: 7
      keep_weekly: 4
      keep_monthly: 6

- name: Take a backup before a risky change, even if nothing changed since the last one
  mmo_voxel.ops.sqlite_backup:
    db_path: /srv/mmo_voxel/database/world.db
    backup_dir: /var/backups/mmo_voxel/world
    force: true
    check: full
  register: pre_change_backup
"""

RETURN = r"""
backup:
  description: Summary of the backup written, or of the newest verified backup that already holds
    the same content when nothing was written. Absent in check mode when a backup would be written.
  returned: when a backup exists or was written
  type: dict
  contains:
    name:
      description: Backup name (manifest file name without C(.manifest.json)).
      type: str
      sample: world-20261128T120000000000Z
    file:
      description: Path of the data file.
      type: str
    created_at:
      description: RFC 3339 UTC time of the backup.
      type: str
    sha256:
      description: sha256 of the data file.
      type: str
    size:
      description: Size of the data file in bytes.
      type: int
    written_bytes:
      description: Bytes the copy wrote (less than the database's size when it started from a
        O(prepare) copy); null when SQLite wrote it (methods other than snapshot).
      returned: when a backup was written
      type: int
    schema_version:
      description: MAX(version) of schema_migrations in the backup.
      type: int
    compression:
      description: none, gzip or zstd.
      type: str
skipped_reason:
  description: Why no backup was written.
  returned: when no backup was written
  type: str
retention:
  description: Outcome of the retention policy - C(kept) (names with their reasons), C(deleted),
    C(invalid) (backups that failed verification, left alone), C(removed_orphans) (data files
    without manifest older than the newest verified backup, removed), C(removed_temps) and
    C(orphans) (files without manifest left in place).
  returned: when O(retention) is set
  type: dict
prepared:
  description: Whether O(prepare=true) made the copy the next backup starts from.
  returned: when O(prepare=true), not in check mode
  type: bool
removed_temps:
  description: Leftover temporary files of interrupted runs that were removed.
  returned: when not in check mode
  type: list
  elements: str
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.backup import (
    create_backup,
    prepare_copy,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.manifest import list_backups
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.module_support import (
    listing,
    run_module,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.retention import (
    RetentionPolicy,
)

RETENTION_SPEC = {
    "keep_last": {"type": "int", "default": 4},
    "keep_daily": {"type": "int", "default": 7},
    "keep_weekly": {"type": "int", "default": 4},
    "keep_monthly": {"type": "int", "default": 6},
}


def main() -> None:
    """Module entry point."""
    module = AnsibleModule(
        argument_spec={
            "db_path": {"type": "path", "required": True},
            "backup_dir": {"type": "path", "required": True},
            "method": {
                "type": "str",
                "choices": ["snapshot", "backup", "stepped", "vacuum"],
                "default": "snapshot",
            },
            "step_pages": {"type": "int", "default": 4096},
            "check": {"type": "str", "choices": ["quick", "full"], "default": "quick"},
            "compression": {"type": "str", "choices": ["none", "gzip", "zstd"], "default": "none"},
            "compression_level": {"type": "int"},
            "prefix": {"type": "str"},
            "force": {"type": "bool", "default": False},
            "expected_tables": {"type": "list", "elements": "str", "default": []},
            "allow_empty": {"type": "bool", "default": False},
            "prepare": {"type": "bool", "default": False},
            "retention": {"type": "dict", "options": RETENTION_SPEC},
        },
        supports_check_mode=True,
    )
    params = module.params

    def action() -> dict[str, Any]:
        if params["prepare"]:
            return prepare_copy(
                params["db_path"], params["backup_dir"], check_mode=module.check_mode
            )
        before = [e.name for e in list_backups(params["backup_dir"], verify=False)]
        policy = RetentionPolicy(**params["retention"]) if params["retention"] else None
        result = create_backup(
            params["db_path"],
            params["backup_dir"],
            method=params["method"],
            check=params["check"],
            compression=params["compression"],
            compression_level=params["compression_level"],
            prefix=params["prefix"],
            force=params["force"],
            retention=policy,
            check_mode=module.check_mode,
            step_pages=params["step_pages"],
            allow_empty=params["allow_empty"],
            expected_tables=params["expected_tables"],
        )
        if module.check_mode:
            after = list(before)
            if result.get("would_backup"):
                after.append("(new backup)")
            after = [n for n in after if n not in result.get("retention", {}).get("deleted", [])]
        else:
            after = [e.name for e in list_backups(params["backup_dir"], verify=False)]
        if module._diff:
            result["diff"] = {
                "before": listing("backups", before),
                "after": listing("backups", after),
                "before_header": params["backup_dir"],
                "after_header": params["backup_dir"],
            }
        return result

    run_module(module, action)


if __name__ == "__main__":
    main()
