#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: several directories with owner, group and mode, in one module run."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: directories
short_description: Ensure several directories, each with its owner, group and mode, in one run
version_added: "0.2.0"
description:
  - Does for each entry of O(directories) what M(ansible.builtin.file) does with
    C(state=directory), but in one module run instead of one per directory (each run starts a
    Python process on the host, about 0.3 s of CPU, on every deploy and every drift check).
  - Checks every entry before it changes anything, and fails naming the entry when a path exists
    and is not a directory, when an owner or a group does not exist on the host, when a mode is
    neither octal nor symbolic, or when a parent does not exist and is not an earlier entry.
  - Then, in list order, creates each missing directory and sets its owner, group and mode where
    they differ, through the same helpers M(ansible.builtin.file) uses.
  - Unlike M(ansible.builtin.file), creates no missing parents (no C(mkdir -p)); list them, in
    order, before the directories inside them. A path must be absolute.
  - A symlink is followed, as M(ansible.builtin.file) does with its default C(follow=true) - a
    link to a directory is that directory; a link to nothing gets its target created.
author:
  - mmo_voxel operations (@mmo-voxel)
options:
  directories:
    description: The directories, parents before the directories inside them.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path of the directory.
        type: path
        required: true
      owner:
        description:
          - User name or numeric uid that should own the directory.
          - Left as it is when omitted (a new directory belongs to the user running the module).
        type: str
      group:
        description:
          - Group name or numeric gid that should own the directory.
          - Left as it is when omitted.
        type: str
      mode:
        description:
          - The permissions, as M(ansible.builtin.file) takes them - an octal string such as
            C("0750") (quote it), or symbolic such as C(u=rwx,g=rx,o=).
          - Left as it is when omitted (a new directory gets C(0777) less the umask).
          - A new directory is created with no permission for group and others, and no more for
            its owner than asked, then gets its owner, group and mode; it is never wider than
            asked, not even for a moment.
        type: raw
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: Creates and changes nothing; reports what would change.
  diff_mode:
    support: full
    details: One line per directory that changes - its path, owner, group and mode.
seealso:
  - module: ansible.builtin.file
notes:
  - Changing an owner needs root, as with M(ansible.builtin.file).
"""

EXAMPLES = r"""
- name: Create the server's directories
  mmo_voxel.ops.directories:
    directories:
      - {path: /srv/mmo-voxel, owner: root, group: root, mode: "0755"}
      - {path: /srv/mmo-voxel/data, owner: mmo-voxel, group: mmo-voxel, mode: "0750"}
      - {path: /srv/mmo-voxel/logs, owner: mmo-voxel, group: mmo-voxel, mode: "0750"}
      - {path: /srv/mmo-voxel/backups, owner: "0", group: "10001", mode: "u=rwx,g=rx,o="}
"""

RETURN = r"""
directories:
  description: One entry per item of O(directories), in the same order.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The path as given.
      type: str
    created:
      description: The directory was created (in check mode - would be).
      type: bool
    changed:
      description: The directory was created, or its owner, group or mode changed (in check
        mode - would be).
      type: bool
  sample:
    - {path: /srv/mmo-voxel, created: false, changed: false}
    - {path: /srv/mmo-voxel/data, created: true, changed: true}
diff:
  description:
    - With C(--diff) - one line per directory that changes, C(<path> <owner>:<group> <mode>)
      before and after; a directory that did not exist reads as its path and "(absent)" before.
    - Owners and groups by name when the host knows one, else by number.
  returned: when diff mode is on
  type: dict
  contains:
    before:
      description: The directories before the run.
      type: str
    after:
      description: The directories after the run (in check mode - as they would be).
      type: str
  sample:
    before: "/srv/mmo-voxel/data (absent)\n/srv/mmo-voxel/logs root:root 0755\n"
    after: "/srv/mmo-voxel/data mmo-voxel:mmo-voxel 0750\n/srv/mmo-voxel/logs root:root 0750\n"
"""

import grp
import os
import pwd
import stat
from dataclasses import dataclass
from typing import Any

from ansible.module_utils.basic import AnsibleModule


class PlanError(Exception):
    """An entry that cannot be done; the message names it."""


@dataclass(frozen=True)
class State:
    """A directory's owner, group and permission bits."""

    uid: int
    gid: int
    mode: int


@dataclass
class Entry:
    """One directory: what is asked, what is there before it is done, what will be there after."""

    path: str  # as given
    target: str  # the real path that is created or changed (links followed)
    uid: int | None
    gid: int | None
    mode: int | None
    before: State | None  # None: absent
    after: State


def now(target: str) -> State:
    """A directory's owner, group and permission bits as the disk has them (links followed)."""
    st = os.stat(target)
    return State(st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))


def current_umask() -> int:
    """The process's umask (reading it means setting it: put it back at once)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


def user_id(owner: str) -> int:
    """The uid of a user name or numeric uid, as set_owner_if_different reads it."""
    try:
        uid = int(owner)
    except ValueError:
        try:
            return pwd.getpwnam(owner).pw_uid
        except KeyError:
            raise PlanError(f"user {owner} does not exist on this host") from None
    if uid < 0:
        raise PlanError(f"owner {owner} is not a uid")
    return uid


def group_id(group: str) -> int:
    """The gid of a group name or numeric gid, as set_group_if_different reads it."""
    try:
        gid = int(group)
    except ValueError:
        try:
            return grp.getgrnam(group).gr_gid
        except KeyError:
            raise PlanError(f"group {group} does not exist on this host") from None
    if gid < 0:
        raise PlanError(f"group {group} is not a gid")
    return gid


def permission_bits(mode: Any, base: int) -> int:
    """The bits a mode asks for, read as set_mode_if_different reads it; `base` is the mode a
    symbolic mode starts from (the directory's mode, or the one mkdir would give it)."""
    if isinstance(mode, int):
        bits = mode
    else:
        try:
            bits = int(str(mode), 8)
        except ValueError:
            try:
                # AnsibleModule's own parser, the one set_mode_if_different calls; the mode is
                # read here, before anything changes, so a bad one fails the whole run up front.
                bits = AnsibleModule._symbolic_mode_to_octal(
                    os.stat_result((stat.S_IFDIR | base, 0, 0, 0, 0, 0, 0, 0, 0, 0)), str(mode)
                )
            except Exception as exc:
                raise PlanError(f"mode {mode} is neither octal nor symbolic ({exc})") from None
    if bits != stat.S_IMODE(bits) or bits < 0:
        raise PlanError(f"mode {mode} has more than permission bits")
    return bits


def describe(path: str) -> str:
    """What a path that is not a directory is, for the message."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return "a link to something that is not a directory"
    if stat.S_ISREG(st.st_mode):
        return "a file"
    return "not a directory"


def parent_of(target: str, planned: dict[str, State]) -> State:
    """The state of the folder a new directory goes in: an earlier entry's, or the disk's."""
    parent = os.path.dirname(target)
    if parent in planned:
        return planned[parent]
    if os.path.isdir(parent):
        return now(parent)
    if os.path.lexists(parent):
        raise PlanError(f"its parent {parent} is not a directory")
    raise PlanError(
        f"its parent {parent} does not exist and is not listed before it "
        "(no parent is created implicitly)"
    )


def plan(items: list[dict[str, Any]]) -> list[Entry]:
    """Every entry checked, nothing changed: what each directory is now and will be after."""
    umask = current_umask()
    planned: dict[str, State] = {}  # real path -> its state once the earlier entries are done
    entries = []
    for item in items:
        path = item["path"]
        try:
            if not os.path.isabs(path):
                raise PlanError("the path must be absolute")
            # realpath follows the links file's follow=true follows, and names a directory the
            # same way whichever link an entry reaches it through.
            target = os.path.realpath(path)
            uid = None if item["owner"] is None else user_id(item["owner"])
            gid = None if item["group"] is None else group_id(item["group"])
            before: State | None
            if target in planned:
                before = planned[target]
            elif os.path.isdir(target):
                before = now(target)
            elif os.path.lexists(target):
                raise PlanError(f"it exists and is {describe(path)}")
            else:  # absent, or a link to nothing: file creates the link's target
                before = None
            if before is None:
                parent_state = parent_of(target, planned)
                # What mkdir gives when no mode is asked (Linux: a setgid parent passes on its
                # group and its setgid bit).
                setgid = parent_state.mode & stat.S_ISGID
                fresh = State(
                    os.geteuid(),
                    parent_state.gid if setgid else os.getegid(),
                    (0o777 & ~umask) | setgid,
                )
            else:
                fresh = before
            mode = None if item["mode"] is None else permission_bits(item["mode"], fresh.mode)
        except PlanError as exc:
            raise PlanError(f"{path}: {exc}") from None
        after = State(
            fresh.uid if uid is None else uid,
            fresh.gid if gid is None else gid,
            fresh.mode if mode is None else mode,
        )
        planned[target] = after
        entries.append(Entry(path, target, uid, gid, mode, before, after))
    return entries


def apply(module: AnsibleModule, entry: Entry) -> tuple[bool, bool]:
    """Create the directory when missing, then set what differs: (created, changed)."""
    created = entry.before is None
    if module.check_mode and not os.path.isdir(entry.target):
        # To be created, by this entry or (the same directory listed twice) an earlier one; the
        # helpers below would call any entry for a missing path a change.
        return created, created or entry.before != entry.after
    if created:
        # Nothing for group and others, and no more for the owner than asked, until owner, group
        # and mode are set below; without a mode, what file gives (0777 less the umask).
        try:
            os.mkdir(entry.target, 0o777 if entry.mode is None else entry.mode & 0o700)
        except FileExistsError:
            # Made since the plan was drawn up (as file does, a directory that is there is fine).
            if not os.path.isdir(entry.target):
                raise
            created = False
    # The helpers file uses: they honour check mode, and the mode is already read into bits.
    changed = module.set_owner_if_different(entry.target, entry.uid, created, expand=False)
    changed = module.set_group_if_different(entry.target, entry.gid, changed, expand=False)
    changed = module.set_mode_if_different(entry.target, entry.mode, changed, expand=False)
    return created, bool(changed)


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def diff_line(path: str, state: State | None) -> str:
    if state is None:
        return f"{path} (absent)\n"
    return f"{path} {user_name(state.uid)}:{group_name(state.gid)} {state.mode:04o}\n"


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "directories": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "path": {"type": "path", "required": True},
                    "owner": {"type": "str"},
                    "group": {"type": "str"},
                    "mode": {"type": "raw"},
                },
            },
        },
        supports_check_mode=True,
    )
    try:
        entries = plan(module.params["directories"])
    except PlanError as exc:
        module.fail_json(msg=str(exc))
    results: list[dict[str, Any]] = []
    before_text = after_text = ""
    for entry in entries:
        try:
            created, changed = apply(module, entry)
        except OSError as exc:
            module.fail_json(msg=f"{entry.path}: {exc}", directories=results)
        results.append({"path": entry.path, "created": created, "changed": changed})
        if changed:
            before_text += diff_line(entry.path, entry.before)
            # After a real run, what the disk says; in check mode, what the plan says.
            after_text += diff_line(
                entry.path, entry.after if module.check_mode else now(entry.target)
            )
    result: dict[str, Any] = {
        "changed": any(r["changed"] for r in results),
        "directories": results,
    }
    if module._diff:
        result["diff"] = {"before": before_text, "after": after_text}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
