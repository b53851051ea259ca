"""Applying a plan to one file, safely: work on an encrypted temp copy, verify, fsync, rename."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ansible_collections.mmo_voxel.ops.plugins.module_utils.ops_common import fsync_dir
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.errors import SopsKeysError
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.fileio import temp_path_for
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.files import parse_sops_file
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.runner import SopsRunner
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.walk import FilePlan


def rekey_file(
    runner: SopsRunner,
    path: Path,
    plan: FilePlan,
    desired: list[str],
    expected_digest: str,
) -> None:
    """Apply `plan` to `path`: work on an encrypted temp copy, verify, fsync, rename.

    A kill at any moment leaves either the old file or the new, fully written and verified file
    in place, plus at most one hidden encrypted temp copy (removed by the next run).
    """
    original = path.read_bytes()
    mode = path.stat().st_mode & 0o7777
    tmp = temp_path_for(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(original)
        if plan.rotate:
            runner.rotate(tmp, plan.add, plan.remove)
        else:
            runner.updatekeys(tmp, desired)
        meta = parse_sops_file(tmp)
        if not meta.encrypted or sorted(meta.recipients) != sorted(desired):
            raise SopsKeysError(
                f"{plan.path}: after re-keying the recipients are {meta.recipients}, "
                f"expected {desired}; the original file was left untouched"
            )
        if runner.decrypt_digest(tmp) != expected_digest:
            raise SopsKeysError(
                f"{plan.path}: the re-keyed copy does not decrypt to the same content; "
                "the original file was left untouched"
            )
        os.chmod(tmp, mode)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
