"""Jinja filter: the dpkg-query command line whose output ``dpkg_missing`` reads."""

from __future__ import annotations

from collections.abc import Iterable

DOCUMENTATION = r"""
name: dpkg_query
short_description: The dpkg-query command line whose output mmo_voxel.ops.dpkg_missing reads
version_added: 0.3.0
description:
  - Returns the argv of C(dpkg-query --show) for the input's packages, in the output format
    C(mmo_voxel.ops.dpkg_missing) reads (each package's status, then its name).
  - Run it with C(ansible.builtin.command), C(failed_when) false (dpkg-query exits 1 when it
    does not know one of the packages) and C(check_mode) false (it only reads).
options:
  _input:
    description: The packages to ask about.
    type: list
    elements: string
    required: true
"""

EXAMPLES = r"""
- name: Ask dpkg which of the role's packages are installed (apt's cache is not opened)
  ansible.builtin.command:
    argv: "{{ base_packages | mmo_voxel.ops.dpkg_query }}"
  register: base_packages_query
  changed_when: false
  failed_when: false
  check_mode: false
"""

RETURN = r"""
_value:
  description: The command line, a list for the argv of ansible.builtin.command.
  type: list
  elements: string
"""

#: What dpkg-query prints for each package it knows: its status (three characters), its name.
FORMAT = "--showformat=${db:Status-Abbrev}${Package}\\n"


def dpkg_query(wanted: Iterable[str]) -> list[str]:
    """The argv of the dpkg-query that ``dpkg_missing`` reads."""
    return ["dpkg-query", "--show", FORMAT, *wanted]


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, object]:
        return {"dpkg_query": dpkg_query}
