"""Retention policy: which verified backups to keep (pure logic, no file access).

The policy is the union of rules, in the manner of restic/borg "forget":

* ``keep_last`` N: the N newest backups.
* ``keep_daily`` D: the newest backup of each of the D most recent UTC days that have a backup.
* ``keep_weekly`` W: likewise per ISO week; ``keep_monthly`` M: per calendar month.
* the newest backup is always kept, whatever the numbers say.

Only *verified* backups are given to this function; unverified ones are never deleted by retention
(they are reported for a person to look at) and do not use up a keep slot.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Callable, Sequence

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.errors import InputError


@dataclasses.dataclass(frozen=True)
class RetentionPolicy:
    """How many backups to keep per rule (0 disables a rule)."""

    keep_last: int = 4
    keep_daily: int = 7
    keep_weekly: int = 4
    keep_monthly: int = 6

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InputError(f"retention {field.name} must be an integer >= 0, not {value!r}")


_BUCKETS: dict[str, Callable[[_dt.datetime], tuple[int, ...]]] = {
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: tuple(t.isocalendar()[:2]),
    "monthly": lambda t: (t.year, t.month),
}


def select_retention(
    backups: Sequence[tuple[str, _dt.datetime]], policy: RetentionPolicy
) -> tuple[dict[str, list[str]], list[str]]:
    """Split verified backups into kept (name -> reasons) and deleted names.

    ``backups`` are (name, created_at) pairs in any order. Deleted names come oldest first.
    """
    ordered = sorted(backups, key=lambda item: (item[1].astimezone(_dt.UTC), item[0]), reverse=True)
    keep: dict[str, list[str]] = {}

    def mark(name: str, reason: str) -> None:
        keep.setdefault(name, []).append(reason)

    if ordered:
        mark(ordered[0][0], "newest")
    for name, _ in ordered[: policy.keep_last]:
        mark(name, "last")
    for rule, bucket_of in _BUCKETS.items():
        limit = getattr(policy, f"keep_{rule}")
        seen: set[tuple[int, ...]] = set()
        for name, created in ordered:
            if len(seen) >= limit:
                break
            bucket = bucket_of(created.astimezone(_dt.UTC))
            if bucket in seen:
                continue
            seen.add(bucket)
            mark(name, rule)
    delete = [name for name, _ in reversed(ordered) if name not in keep]
    return keep, delete
