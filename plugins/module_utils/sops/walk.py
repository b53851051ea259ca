"""The repository's files and the plan for each: which files hold secrets and which creation
rule covers each, private keys committed by mistake, temp copies left by killed runs, and what
should happen to each file (recipients to add or remove, data key rotation).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ansible_collections.mmo_voxel.ops.plugins.module_utils.ops_common import parse_rfc3339
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.age import (
    IDENTITY_PREFIX,
    recipients_of_identities,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.config import (
    CreationRule,
    SopsConfig,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.errors import SopsKeysError
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.fileio import TEMP_MARKER

DEFAULT_EXCLUDES = (".git", ".venv", ".cache", "collections", "node_modules", ".tox")

# Where secrets live: every file under these directories, and every file named `*.sops*`, must be
# covered by a creation rule (the guard fails otherwise).
SECRETS_DIRS = ("operations/secrets/",)
_SECRET_NAME_RE = re.compile(r"\.sops(\.|$)")

# The public demo identity of the local inventory and the rules it may be a recipient of.
DEMO_KEYFILE = "inventories/local/demo-age-key.txt"
DEMO_RULES = ("inventories/local/", "operations/secrets/local/")


def is_secret_path(rel: str) -> bool:
    """Whether a path is where secrets live (SECRETS_DIRS or a `*.sops*` name)."""
    name = rel.rsplit("/", 1)[-1]
    if TEMP_MARKER in name or name == ".gitkeep":
        return False
    return rel.startswith(SECRETS_DIRS) or _SECRET_NAME_RE.search(name) is not None


def _walk(root: Path, excludes: Iterable[str]) -> Iterator[tuple[Path, str]]:
    excluded = set(excludes)
    base = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in excluded)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            yield path, path.resolve().relative_to(base).as_posix()


def uncovered_secret_files(
    root: Path, config: SopsConfig, excludes: Iterable[str] = DEFAULT_EXCLUDES
) -> list[str]:
    """Files where secrets live (`is_secret_path`) that no creation rule covers."""
    skip = {config.path.resolve()}
    return [
        rel
        for path, rel in _walk(root, excludes)
        if path.resolve() not in skip and is_secret_path(rel) and config.rule_for(rel) is None
    ]


def repository_files(root: Path, excludes: Iterable[str] = DEFAULT_EXCLUDES) -> list[Path]:
    """Files git tracks under `root`; every file under it when it is not a git checkout."""
    try:
        proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
            ["git", "-C", str(root), "ls-files", "-z", "--cached"],  # noqa: S607 - git from PATH
            capture_output=True,
            check=False,
        )
    except OSError:
        proc = None
    if proc is not None and proc.returncode == 0:
        names = proc.stdout.decode("utf-8", errors="replace").split("\0")
        return [root / name for name in names if name]
    return [path for path, _ in _walk(root, excludes)]


def exposed_recipients(
    root: Path, excludes: Iterable[str] = DEFAULT_EXCLUDES
) -> dict[str, list[str]]:
    """Public keys whose private key (AGE-SECRET-KEY-...) is in a file of the repository.

    Maps each public key to the files (relative to `root`) that hold its identity. Only public keys
    leave this function.
    """
    found: dict[str, list[str]] = {}
    for path in repository_files(root, excludes):
        try:
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()
        except OSError:
            continue
        if IDENTITY_PREFIX.encode() not in data.upper():
            continue
        rel = path.relative_to(root).as_posix()
        for public in recipients_of_identities(data.decode("utf-8", errors="replace")):
            found.setdefault(public, []).append(rel)
        del data
    return found


def exposed_recipient_error(
    recipient: str,
    rules: Iterable[CreationRule],
    exposed: Mapping[str, list[str]],
    demo_recipients: Iterable[str],
    demo_rules: Iterable[CreationRule],
) -> str | None:
    """Why `recipient` may not be in `rules` because its private key is in the repository.

    The demo identity (`demo_recipients`) may be a recipient of `demo_rules`; any other key whose
    private half is in the repository, of no rule.
    """
    holders = exposed.get(recipient)
    if not holders:
        return None
    is_demo = recipient in set(demo_recipients)
    allowed = {rule.index for rule in demo_rules} if is_demo else set()
    refused = [rule.label for rule in rules if rule.index not in allowed]
    if not refused:
        return None
    where = (
        "the public demo key may only be a recipient of the demo rules"
        if is_demo
        else "such a key may not be a recipient of any rule"
    )
    return (
        f"{recipient}: its private key is in the repository ({', '.join(holders)}), so anyone "
        f"with a copy can decrypt what is encrypted to it; {where}. Refused for "
        f"{', '.join(refused)}"
    )


def walk_files(
    root: Path,
    config: SopsConfig,
    limit_to: list[Path] | None = None,
    excludes: Iterable[str] = DEFAULT_EXCLUDES,
) -> list[tuple[Path, str, CreationRule]]:
    """Every regular file under `root` (or `limit_to`) covered by a creation rule, sorted.

    Explicitly named files that no rule covers are an error. Temporary copies this code makes
    (hidden, with `.sops-tmp-` in the name) and the configuration itself are skipped.
    """
    excluded = set(excludes)
    found: dict[str, tuple[Path, str, CreationRule]] = {}
    starts = limit_to or [root]
    for given in starts:
        start = given if given.is_absolute() else root / given
        if not start.exists():
            raise SopsKeysError(f"{start}: no such file or directory")
        try:
            start.resolve().relative_to(root.resolve())
        except ValueError:
            raise SopsKeysError(f"{start}: outside the repository root {root}") from None
        if start.is_file():
            rel = start.resolve().relative_to(root.resolve()).as_posix()
            rule = config.rule_for(rel)
            if rule is None:
                raise SopsKeysError(
                    f"{rel}: no creation rule in {config.path} covers this file; add a rule "
                    "or leave the file out"
                )
            found[rel] = (start, rel, rule)
            continue
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = sorted(d for d in dirnames if d not in excluded)
            for name in filenames:
                path = Path(dirpath) / name
                if TEMP_MARKER in name or not path.is_file() or path.is_symlink():
                    continue
                rel = path.resolve().relative_to(root.resolve()).as_posix()
                if path.resolve() == config.path.resolve():
                    continue
                rule = config.rule_for(rel)
                if rule is not None:
                    found[rel] = (path, rel, rule)
    return [found[key] for key in sorted(found)]


def stale_temp_files(directory: Path) -> list[Path]:
    """Encrypted temporary copies left by an interrupted run (safe to delete)."""
    return sorted(p for p in directory.glob(f".*{TEMP_MARKER}*") if p.is_file())


def stale_temp_files_under(root: Path, excludes: Iterable[str] = DEFAULT_EXCLUDES) -> list[Path]:
    """Every temporary copy this code made anywhere under `root` (hidden, `.sops-tmp-` in the name).

    They hold ciphertext to the recipients of their time, a removed one included, or (the
    configuration of `updatekeys`) public keys; a run deletes them all, whatever its `paths`.
    """
    return [
        path
        for path, _ in _walk(root, excludes)
        if path.name.startswith(".") and TEMP_MARKER in path.name
    ]


# --------------------------------------------------------------------------- planning


@dataclass
class FilePlan:
    """What should happen to one file. Holds names and public keys only."""

    path: str
    rule: str
    add: list[str]
    remove: list[str]
    rotate: bool
    reasons: list[str]

    @property
    def changes(self) -> bool:
        return bool(self.add or self.remove or self.rotate)


def parse_time(value: str | None) -> dt.datetime | None:
    """The time of a ledger entry (RFC 3339, UTC when it has no zone); None when absent or bad."""
    if not value:
        return None
    try:
        return parse_rfc3339(str(value))
    except ValueError:
        return None


def plan_file(
    rel: str,
    rule: CreationRule,
    current: list[str],
    rotate: str,
    max_age_days: int,
    rotated_at: dt.datetime | None,
    now: dt.datetime,
) -> FilePlan:
    """Decide what to do with one file (pure; unit-tested)."""
    desired = rule.recipients
    add = [r for r in desired if r not in current]
    remove = [r for r in current if r not in desired]
    reasons = []
    if add:
        reasons.append(f"add {len(add)} recipient(s)")
    if remove:
        reasons.append(f"remove {len(remove)} recipient(s)")
    do_rotate = False
    if rotate == "always":
        do_rotate = True
        reasons.append("data key rotation requested")
    elif rotate == "expired" and max_age_days > 0:
        if rotated_at is None:
            do_rotate = True
            reasons.append("data key age unknown (no rotation recorded)")
        elif now - rotated_at > dt.timedelta(days=max_age_days):
            do_rotate = True
            age_days = (now - rotated_at).days
            reasons.append(f"data key is {age_days} days old (max {max_age_days})")
    if remove and rotate != "never" and not do_rotate:
        # A removed recipient may have kept the data key: never drop one without rotating.
        do_rotate = True
        reasons.append("data key rotated because a recipient is removed")
    return FilePlan(rel, rule.label, add, remove, do_rotate, reasons)
