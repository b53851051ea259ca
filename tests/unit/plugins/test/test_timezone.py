from __future__ import annotations

import pytest

from ansible_collections.mmo_voxel.ops.plugins.test.timezone import TestModule as TimezoneTests
from ansible_collections.mmo_voxel.ops.plugins.test.timezone import iana_timezone


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Etc/UTC", True),
        ("Europe/Berlin", True),
        ("Asia/Tokyo", True),
        ("UTC", True),
        ("Mars/Olympus_Mons", False),
        ("europe/berlin", False),  # zone names are case-sensitive on Linux
        ("", False),
        ("Europe/Berlin ", False),
        ("../../etc/passwd", False),
        (None, False),
        (9, False),
    ],
)
def test_iana_timezone(value: object, expected: bool) -> None:
    assert iana_timezone(value) is expected


def test_plugin_exports_the_test() -> None:
    assert TimezoneTests().tests()["iana_timezone"] is iana_timezone
