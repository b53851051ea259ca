"""Jinja filter: the packages of a list that dpkg does not show installed.

It reads the output of the command line ``dpkg_query.py`` makes, whose format is written there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

DOCUMENTATION = r"""
name: dpkg_missing
short_description: The packages of a list that dpkg's database does not show installed
version_added: 0.3.0
description:
  - Reads the output of the command line C(mmo_voxel.ops.dpkg_query) makes (C(dpkg-query --show)
    of the packages, a registered C(ansible.builtin.command) result) and returns the packages of
    the input list that it does not show installed (status C(ii), C(hi)), in the input's order.
  - What it is for. C(ansible.builtin.apt) opens apt's whole package cache on every run, about
    1.2 s of CPU on the host even when every package is there; dpkg-query answers in
    milliseconds. A role asks dpkg first and gives apt only what is missing (nothing, on a
    converged host or in a drift check of one).
  - Conservative. A package the output does not name as installed (unknown to dpkg, removed
    with its configuration kept C(rc), half-installed, a version pin C(name=1.2), a virtual
    package) counts as missing, so apt sees it and decides, as it would without this filter.
    An architecture qualifier (C(name:amd64)) is compared without it.
options:
  _input:
    description: The packages the role wants installed.
    type: list
    elements: string
    required: true
  query:
    description: The registered result of the dpkg-query command (its C(stdout_lines) are read;
      a skipped or failed query counts every package as missing).
    type: dict
    required: true
"""

EXAMPLES = r"""
# base_packages_query: the registered result of mmo_voxel.ops.dpkg_query's example.
- name: Install the packages dpkg does not show installed
  ansible.builtin.apt:
    name: "{{ base_packages_missing }}"
    state: present
  vars:
    base_packages_missing: "{{ base_packages | mmo_voxel.ops.dpkg_missing(base_packages_query) }}"
  when: base_packages_missing | length > 0
"""

RETURN = r"""
_value:
  description: The packages of the input that are not installed, in the input's order.
  type: list
  elements: string
"""

#: ``${db:Status-Abbrev}`` (dpkg_query.FORMAT) is three characters: desired action, package
#: status, error flag. Installed is status ``i`` with no error flag (``ii``, or ``hi`` for a
#: held package).
ABBREV = 3


def installed_packages(lines: Iterable[str]) -> set[str]:
    """Names dpkg-query's lines show installed."""
    found = set()
    for line in lines:
        abbrev, name = line[:ABBREV], line[ABBREV:].strip()
        if len(abbrev) == ABBREV and abbrev[1] == "i" and abbrev[2] == " " and name:
            found.add(name)
    return found


def dpkg_missing(wanted: Iterable[str], query: Mapping[str, object]) -> list[str]:
    """The packages of ``wanted`` that ``query``'s output does not show installed."""
    lines = query.get("stdout_lines")
    installed = installed_packages(
        line for line in (lines if isinstance(lines, list) else []) if isinstance(line, str)
    )
    return [name for name in wanted if name.split(":", 1)[0] not in installed]


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, object]:
        return {"dpkg_missing": dpkg_missing}
