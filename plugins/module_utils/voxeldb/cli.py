"""Command-line entry point of the database toolkit, for hosts without Ansible (timers, cron).

Usage::

    scripts/voxeldb backup  --db DB --backup-dir DIR [--method snapshot|backup|stepped|vacuum]
                            [--check quick|full] [--compression none|gzip|zstd] [--force]
                            [--expected-table NAME ...] [--allow-empty]
                            [--retention [--keep-last N --keep-daily N --keep-weekly N
                             --keep-monthly N]]
    scripts/voxeldb prune   --backup-dir DIR [--keep-...]
    scripts/voxeldb restore --db DB --backup-dir DIR [--name NAME | --before TIME] [--check ...]
                            [--allow-older]
    scripts/voxeldb migrate --db DB --migrations-dir DIR [--target VERSION]
    scripts/voxeldb check   --db DB [--integrity quick|full] [--expected-index NAME ...]
                            [--expected-table NAME ...]
    scripts/voxeldb repair-chunks --db DB --backup-dir DIR [--table T --key-columns a,b,c ...]
    scripts/voxeldb drill   --backup-dir DIR --scratch-dir DIR [--check quick|full]

Every subcommand takes ``--dry-run`` (check mode: report, change nothing) and ``--json``.

Exit codes: 0 success (also "nothing to do"); 1 error (bad input, usage errors included, failed
verification, failed migration: the message says what and that nothing, or what, was changed);
2 attention needed: ``check`` found the database unhealthy, ``repair-chunks`` left unrepairable
rows, or, with ``--dry-run``, a change would be made; 3 ``restore`` refused to fall back to an
older backup because newer ones failed verification (named in the message; nothing changed;
``--allow-older`` restores the older one). A failed ``drill`` (the newest backup does not
restore and verify) exits 1.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.backup import (
    DEFAULT_METHOD,
    METHODS,
    create_backup,
    prune,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.chunks import repair_chunks
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.drill import run_drill
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.errors import (
    OlderBackupRefused,
    VoxelDBError,
    os_error_message,
    sqlite_error_message,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.health import (
    check_health,
    problems_of,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.migrate import migrate
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.restore import restore_backup
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.retention import (
    RetentionPolicy,
)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_ATTENTION = 2
EXIT_OLDER_REFUSED = 3
RULES = ("last", "daily", "weekly", "monthly")


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors exiting 1 (bad input), not 2 (which means attention here)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def _count(text: str) -> int:
    """An argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {value}")
    return value


def _retention_args(parser: argparse.ArgumentParser, required: bool) -> None:
    defaults = RetentionPolicy()
    group = parser.add_argument_group("retention (applied after the backup)")
    if not required:
        group.add_argument(
            "--retention",
            action="store_true",
            help="apply retention afterwards (the --keep-* options need it)",
        )
    for rule in RULES:
        group.add_argument(
            f"--keep-{rule}",
            type=_count,
            default=None,
            metavar="N",
            help=f"default {getattr(defaults, f'keep_{rule}')}",
        )


def _backup_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("backup", parents=[common], help="make a verified backup")
    p.add_argument("--db", required=True)
    p.add_argument("--backup-dir", required=True)
    p.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD)
    p.add_argument("--check", choices=("quick", "full"), default="quick")
    p.add_argument("--compression", choices=("none", "gzip", "zstd"), default="none")
    p.add_argument("--prefix")
    p.add_argument("--force", action="store_true", help="back up even if nothing changed")
    p.add_argument(
        "--expected-table",
        action="append",
        default=[],
        metavar="NAME",
        help="refuse a database holding none of these tables",
    )
    p.add_argument(
        "--allow-empty",
        action="store_true",
        help="back up a database that holds no tables (refused otherwise)",
    )
    _retention_args(p, required=False)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and --help)."""
    parser = _Parser(
        prog="voxeldb", description="Backup, restore, migrate, check and repair the world DB."
    )
    common = _Parser(add_help=False)  # only lends its arguments (parents=)
    common.add_argument("--json", action="store_true", help="print the result as JSON")
    common.add_argument("--dry-run", action="store_true", help="check mode: change nothing")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    _backup_parser(sub, common)

    p = sub.add_parser("prune", parents=[common], help="apply the retention policy")
    p.add_argument("--backup-dir", required=True)
    _retention_args(p, required=True)

    p = sub.add_parser("restore", parents=[common], help="restore a verified backup")
    p.add_argument("--db", required=True)
    p.add_argument("--backup-dir", required=True)
    choice = p.add_mutually_exclusive_group()
    choice.add_argument("--name", help="the backup's name (default: newest verified)")
    choice.add_argument("--before", help="newest backup taken at or before this ISO time")
    p.add_argument("--check", choices=("quick", "full"), default="full")
    p.add_argument(
        "--allow-older",
        action="store_true",
        help="restore an older backup when newer ones fail verification (refused otherwise)",
    )

    p = sub.add_parser("migrate", parents=[common], help="apply or undo migrations")
    p.add_argument("--db", required=True)
    p.add_argument("--migrations-dir", required=True)
    p.add_argument("--target", type=int, help="version to migrate up or down to")

    p = sub.add_parser("check", parents=[common], help="health check (read-only)")
    p.add_argument("--db", required=True)
    p.add_argument("--integrity", choices=("quick", "full"), default="quick")
    p.add_argument("--expected-index", action="append", default=[], metavar="NAME")
    p.add_argument("--expected-table", action="append", default=[], metavar="NAME")
    p.add_argument("--max-freelist-ratio", type=float, default=0.25)
    p.add_argument("--max-wal-bytes", type=int, default=512 * 1024 * 1024)
    p.add_argument("--max-db-bytes", type=int)
    p.add_argument("--strict", action="store_true", help="warnings make it unhealthy too")

    p = sub.add_parser("repair-chunks", parents=[common], help="repair damaged chunk rows")
    p.add_argument("--db", required=True)
    p.add_argument("--backup-dir", required=True)
    p.add_argument("--table", default="chunks")
    p.add_argument("--key-columns", default="cx,cy,cz", help="comma-separated")
    p.add_argument("--payload-column", default="payload")
    p.add_argument("--checksum-column", default="checksum")

    p = sub.add_parser("drill", parents=[common], help="restore the newest backup to scratch")
    p.add_argument("--backup-dir", required=True)
    p.add_argument("--scratch-dir", required=True, help="an existing directory to work in")
    p.add_argument("--check", choices=("quick", "full"), default="full")
    return parser


def _policy(args: argparse.Namespace) -> RetentionPolicy:
    defaults = RetentionPolicy()
    return RetentionPolicy(
        **{
            f"keep_{rule}": getattr(defaults, f"keep_{rule}")
            if getattr(args, f"keep_{rule}") is None
            else getattr(args, f"keep_{rule}")
            for rule in RULES
        }
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``; usage errors (including --keep-* without --retention) exit 1."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "backup" and not args.retention:
        given = [f"--keep-{rule}" for rule in RULES if getattr(args, f"keep_{rule}") is not None]
        if given:
            parser.error(
                f"{', '.join(given)} given without --retention: add --retention to apply the "
                "retention policy after the backup (or use the prune command)"
            )
    return args


def run(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    """Run one parsed command; return (result, exit code)."""
    dry = args.dry_run
    if args.command == "backup":
        result = create_backup(
            args.db,
            args.backup_dir,
            method=args.method,
            check=args.check,
            compression=args.compression,
            prefix=args.prefix,
            force=args.force,
            retention=_policy(args) if args.retention else None,
            check_mode=dry,
            allow_empty=args.allow_empty,
            expected_tables=args.expected_table,
        )
    elif args.command == "prune":
        result = prune(args.backup_dir, _policy(args), check_mode=dry)
    elif args.command == "restore":
        result = restore_backup(
            args.db,
            args.backup_dir,
            name=args.name,
            before=args.before,
            check=args.check,
            allow_older=args.allow_older,
            check_mode=dry,
        )
    elif args.command == "migrate":
        result = migrate(args.db, args.migrations_dir, target=args.target, check_mode=dry)
    elif args.command == "check":
        result = check_health(
            args.db,
            integrity=args.integrity,
            expected_indexes=args.expected_index,
            expected_tables=args.expected_table,
            max_freelist_ratio=args.max_freelist_ratio,
            max_wal_bytes=args.max_wal_bytes,
            max_db_bytes=args.max_db_bytes,
            strict=args.strict,
        )
        return result, EXIT_OK if result["healthy"] else EXIT_ATTENTION
    elif args.command == "drill":
        result = run_drill(args.backup_dir, args.scratch_dir, check=args.check, check_mode=dry)
        return result, EXIT_OK if result["ok"] else EXIT_ERROR
    else:
        keys = [k.strip() for k in args.key_columns.split(",") if k.strip()]
        result = repair_chunks(
            args.db,
            args.backup_dir,
            table=args.table,
            key_columns=keys,
            payload_column=args.payload_column,
            checksum_column=args.checksum_column,
            check_mode=dry,
        )
        if result["unrepairable"]:
            return result, EXIT_ATTENTION
    if dry and result.get("changed"):
        return result, EXIT_ATTENTION
    return result, EXIT_OK


def _summary(command: str, result: dict[str, Any]) -> str:
    if command == "check":
        if result["healthy"]:
            return f"{result['facts']['db_path']}: healthy"
        lines = [f"{result['facts']['db_path']}: UNHEALTHY: {', '.join(result['failing'])}"]
        return "\n".join(lines + [f"  {line}" for line in problems_of(result)])
    lines = [f"{command}: {'changed' if result.get('changed') else 'no change'}"]
    for key in ("msg", "skipped_reason"):
        if result.get(key):
            lines.append(str(result[key]))
    return "\n".join(lines) + "\n" + json.dumps(result, indent=2, default=str)


def _fail(
    args: argparse.Namespace, message: str, details: dict[str, Any], code: int = EXIT_ERROR
) -> int:
    if args.json:
        print(json.dumps({"failed": True, "msg": message, **details}, default=str))
    else:
        print(f"voxeldb {args.command}: error: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run, print, return the exit code."""
    args = parse_args(argv)
    try:
        result, code = run(args)
    except OlderBackupRefused as exc:
        return _fail(args, exc.message, exc.details, EXIT_OLDER_REFUSED)
    except VoxelDBError as exc:
        return _fail(args, exc.message, exc.details)
    except sqlite3.Error as exc:
        return _fail(args, sqlite_error_message(exc), {})
    except OSError as exc:
        return _fail(args, os_error_message(exc), {})
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True, default=str))
    else:
        print(_summary(args.command, result))
        for warning in result.get("warnings", []):
            print(f"voxeldb {args.command}: WARNING: {warning}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
