"""Jinja tests about time zones: ``x is mmo_voxel.ops.iana_timezone``."""

from __future__ import annotations

import zoneinfo
from functools import lru_cache

DOCUMENTATION = r"""
name: iana_timezone
short_description: Whether a string names a zone in the IANA time zone database
version_added: 0.1.0
description:
  - True when the value is a zone name such as C(Europe/Berlin) or C(Etc/UTC) that the
    controller's zone database knows (the system's, or the C(tzdata) Python package of the venv).
  - Used to refuse a bad time zone before any host is changed.
options:
  _input:
    description: The name to check.
    type: string
    required: true
"""

EXAMPLES = r"""
- name: Refuse an unknown time zone
  ansible.builtin.assert:
    that: base_timezone is mmo_voxel.ops.iana_timezone
    fail_msg: "base_timezone '{{ base_timezone }}' is not an IANA time zone name"
"""

RETURN = r"""
_value:
  description: Whether the value is a known zone name.
  type: boolean
"""


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def iana_timezone(value: object) -> bool:
    """True when ``value`` is a zone name known to the zone database."""
    return isinstance(value, str) and value in _zones()


class TestModule:
    """Ansible test plugin entry point."""

    def tests(self) -> dict[str, object]:
        return {"iana_timezone": iana_timezone}
