"""Retention selection: keep-last and grandfather-father-son rules, never the newest."""

from __future__ import annotations

import datetime as dt

import pytest

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.errors import InputError
from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.retention import (
    RetentionPolicy,
    select_retention,
)


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def twice_daily(days: int, start: str = "2026-01-01") -> list[tuple[str, dt.datetime]]:
    """Backups at 00:00 and 12:00 for `days` days (the guide's schedule)."""
    first = at(start)
    out = []
    for day in range(days):
        for hour in (0, 12):
            moment = first + dt.timedelta(days=day, hours=hour)
            out.append((moment.strftime("b-%Y%m%dT%H"), moment))
    return out


@pytest.mark.parametrize(
    ("backups", "policy", "expected_keep"),
    [
        pytest.param([], RetentionPolicy(1, 0, 0, 0), set(), id="empty"),
        pytest.param(
            [("a", at("2026-01-01T00:00")), ("b", at("2026-01-01T12:00"))],
            RetentionPolicy(0, 0, 0, 0),
            {"b"},
            id="all-zero-still-keeps-newest",
        ),
        pytest.param(
            twice_daily(3),
            RetentionPolicy(2, 0, 0, 0),
            {"b-20260103T12", "b-20260103T00"},
            id="keep-last-2",
        ),
        pytest.param(
            twice_daily(3),
            RetentionPolicy(0, 2, 0, 0),
            {"b-20260103T12", "b-20260102T12"},
            id="daily-keeps-newest-of-each-day",
        ),
        pytest.param(
            twice_daily(15),  # 2026-01-01 is a Thursday: ISO weeks 1, 2, 3
            RetentionPolicy(0, 0, 2, 0),
            {"b-20260115T12", "b-20260111T12"},
            id="weekly-by-iso-week",
        ),
        pytest.param(
            twice_daily(40),
            RetentionPolicy(0, 0, 0, 3),
            {"b-20260209T12", "b-20260131T12"},
            id="monthly-fewer-months-than-slots",
        ),
        pytest.param(
            twice_daily(2),
            RetentionPolicy(10, 10, 10, 10),
            {name for name, _ in twice_daily(2)},
            id="more-slots-than-backups",
        ),
    ],
)
def test_select_retention_keeps(backups, policy, expected_keep):
    keep, delete = select_retention(backups, policy)
    assert set(keep) == expected_keep
    assert set(delete) == {name for name, _ in backups} - expected_keep


def test_union_of_rules_and_reasons():
    backups = twice_daily(10)
    keep, delete = select_retention(backups, RetentionPolicy(1, 3, 2, 1))
    assert keep["b-20260110T12"] == ["newest", "last", "daily", "weekly", "monthly"]
    assert keep["b-20260109T12"] == ["daily"]
    # 2026-01-04 is the Sunday ending ISO week 1.
    assert keep["b-20260104T12"] == ["weekly"]
    assert len(keep) + len(delete) == len(backups)


def test_deleted_come_oldest_first_and_order_of_input_does_not_matter():
    backups = twice_daily(4)
    shuffled = list(reversed(backups))
    assert select_retention(backups, RetentionPolicy(1, 1, 0, 0)) == select_retention(
        shuffled, RetentionPolicy(1, 1, 0, 0)
    )
    _, delete = select_retention(backups, RetentionPolicy(1, 0, 0, 0))
    assert delete == [name for name, _ in backups[:-1]]


def test_buckets_use_utc():
    plus2 = dt.timezone(dt.timedelta(hours=2))
    backups = [
        ("late", dt.datetime(2026, 1, 2, 1, 0, tzinfo=plus2)),  # 2026-01-01 23:00 UTC
        ("early", dt.datetime(2026, 1, 1, 10, 0, tzinfo=dt.UTC)),
    ]
    keep, _ = select_retention(backups, RetentionPolicy(0, 1, 0, 0))
    assert set(keep) == {"late"}


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_policy_rejects_bad_numbers(bad):
    with pytest.raises(InputError, match="keep_last"):
        RetentionPolicy(keep_last=bad)
