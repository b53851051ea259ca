#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: which folders stop a user on its way to a path (read-only)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: path_access
short_description: Find the folders above a path that a user cannot pass through
version_added: "0.2.0"
description:
  - Walks from C(/) down to O(path) and judges each existing folder on its own (owner, mode
    and POSIX ACL, as C(acl(5)) says) for O(uid)/O(gid) with no supplementary groups (may that
    user pass it, i.e. search it, C(x)?). Then asks the kernel itself, from a child process that has
    switched to that user, whether the deepest existing folder can be reached; the module
    fails when the two disagree rather than guess.
  - The user need not exist yet (a fresh host in a preflight); only the numbers are used.
  - Parts of O(path) that do not exist yet are not checked; RV(missing) names the first one.
  - Read-only; always C(changed=false).
author:
  - mmo_voxel operations (@mmo-voxel)
options:
  path:
    description: The folder the user must reach (it may not exist yet).
    type: path
    required: true
  uid:
    description: The user's numeric id.
    type: int
    required: true
  gid:
    description: The user's primary group id.
    type: int
    required: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: Read-only; runs the same check in check mode.
  diff_mode:
    support: none
notes:
  - Runs as root (it switches to O(uid) in a child process).
"""

EXAMPLES = r"""
- name: Find the folders that stop the service user on its way to the server's root
  mmo_voxel.ops.path_access:
    path: /home/ops/mmo-voxel/.state/server
    uid: 10001
    gid: 10001
  register: server_root_access

- name: Stop with the folder that blocks
  ansible.builtin.fail:
    msg: "{{ server_root_access.blocking[0].path }} does not let uid 10001 through"
  when: server_root_access.blocking | length > 0
"""

RETURN = r"""
blocking:
  description: Existing folders on the way to O(path) (O(path) itself included when it exists)
    that the user cannot pass through, from the top down.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The folder.
      type: str
    mode: {description: Its permission bits in octal., type: str}
    owner: {description: Its owner's uid., type: int}
    group: {description: Its group's gid., type: int}
  sample:
    - {path: /root, mode: "0700", owner: 0, group: 0}
reachable:
  description: True when no existing folder on the way blocks the user.
  returned: always
  type: bool
missing:
  description: The first part of O(path) that does not exist yet, or null.
  returned: always
  type: str
"""

import os
import stat
import struct

from ansible.module_utils.basic import AnsibleModule


def folders_on_the_way(path: str) -> tuple[list[str], str | None]:
    """Every existing folder from / down to path, and the first part that does not exist."""
    path = os.path.abspath(path)
    parts = [p for p in path.split(os.sep) if p]
    existing = ["/"]
    current = "/"
    for part in parts:
        current = os.path.join(current, part)
        if not os.path.lexists(current):
            return existing, current
        existing.append(current)
    return existing, None


# POSIX ACL entry tags (linux/posix_acl_xattr.h) and the xattr that holds a folder's ACL. One
# name a line: ansible-doc warns about a module-level tuple assignment.
ACL_USER_OBJ = 1
ACL_USER = 2
ACL_GROUP_OBJ = 4
ACL_GROUP = 8
ACL_MASK = 0x10
ACL_OTHER = 0x20
ACL_XATTR = "system.posix_acl_access"
SEARCH = 1  # the x bit of an ACL entry


def acl_entries(folder: str) -> list[tuple[int, int, int]] | None:
    """(tag, perm, id) of the folder's access ACL, or None when it has none."""
    try:
        raw = os.getxattr(folder, ACL_XATTR)
    except OSError:
        return None
    (version,) = struct.unpack_from("<I", raw)
    if version != 2:
        return None
    return [struct.unpack_from("<HHI", raw, off) for off in range(4, len(raw), 8)]


def may_search(
    st: os.stat_result, acl: list[tuple[int, int, int]] | None, uid: int, gid: int
) -> bool:
    """Whether uid (primary group gid, no other groups) may pass a folder: acl(5)'s algorithm."""
    mode = stat.S_IMODE(st.st_mode)
    if uid in (0, st.st_uid):
        return uid == 0 or bool(mode & stat.S_IXUSR)
    if not acl:  # mode bits only: the group class, else others
        return bool(mode & (stat.S_IXGRP if gid == st.st_gid else stat.S_IXOTH))
    mask = next((perm for tag, perm, _ in acl if tag == ACL_MASK), 7)
    named = [perm for tag, perm, ident in acl if tag == ACL_USER and ident == uid]
    groups = [
        perm
        for tag, perm, ident in acl
        if (tag == ACL_GROUP_OBJ and gid == st.st_gid) or (tag == ACL_GROUP and ident == gid)
    ]
    if named:  # a named-user entry decides, through the mask
        allowed = bool(named[0] & mask & SEARCH)
    elif groups:  # any matching group entry that grants it, through the mask
        allowed = any(perm & mask & SEARCH for perm in groups)
    else:
        allowed = any(tag == ACL_OTHER and perm & SEARCH for tag, perm, _ in acl)
    return allowed


def kernel_reaches(path: str, uid: int, gid: int) -> bool:
    """The kernel's own answer: can uid/gid (no other groups) pass every folder down to path?"""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to the user, answer one byte, exit
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            os.write(write_fd, b"1" if os.access(path, os.X_OK) else b"0")
            os._exit(0)
        except BaseException:  # any failure: the parent sees no answer and says so
            os._exit(1)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        answer = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or answer not in (b"0", b"1"):
        raise OSError(f"could not switch to uid {uid} gid {gid} to check access (is this root?)")
    return answer == b"1"


def describe(folder: str) -> dict[str, str | int]:
    st = os.stat(folder)
    return {
        "path": folder,
        "mode": f"{stat.S_IMODE(st.st_mode):04o}",
        "owner": st.st_uid,
        "group": st.st_gid,
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "uid": {"type": "int", "required": True},
            "gid": {"type": "int", "required": True},
        },
        supports_check_mode=True,
    )
    path, uid, gid = module.params["path"], module.params["uid"], module.params["gid"]
    if not os.path.isabs(path):
        module.fail_json(msg=f"path must be absolute, got {path!r}")
    if uid < 0 or gid < 0:
        module.fail_json(msg=f"uid and gid must be 0 or more, got uid={uid} gid={gid}")
    folders, missing = folders_on_the_way(path)
    # Each folder judged on its own (mode, owner, ACL), so a folder below a blocking one is not
    # named for its parent's fault; then the kernel's answer for the deepest one, which also
    # sees what this reading cannot (a security module, say).
    blocking = [
        describe(f) for f in folders if not may_search(os.stat(f), acl_entries(f), uid, gid)
    ]
    try:
        reachable = kernel_reaches(folders[-1], uid, gid)
    except OSError as exc:
        module.fail_json(msg=str(exc))
    if not reachable and not blocking:
        module.fail_json(
            msg=f"uid {uid} cannot reach {folders[-1]} although no folder's mode or ACL forbids it "
            "(a security module, or a mount option?)",
        )
    module.exit_json(changed=False, blocking=blocking, reachable=reachable, missing=missing)


if __name__ == "__main__":
    main()
