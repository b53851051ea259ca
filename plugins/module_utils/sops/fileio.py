"""Files on disk: the atomic write (the repository's one, in ops_common) and the names of the
hidden temp copies, which keep the extension so that sops picks the same store and which the
next run recognises (TEMP_MARKER) and removes.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from ansible_collections.mmo_voxel.ops.plugins.module_utils import ops_common

TEMP_MARKER = ".sops-tmp-"


def temp_path_for(path: Path) -> Path:
    """A hidden sibling that keeps the extension, so sops picks the same store."""
    suffix = "".join(path.suffixes[-1:])
    return path.with_name(f".{path.name}{TEMP_MARKER}{secrets.token_hex(4)}{suffix}")


def atomic_write(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write `data` to `path` through a hidden temp copy in the same directory, fsync, rename.

    `mode` None keeps the mode of the file being replaced (0644 for a new one).
    """
    ops_common.atomic_write(path, data, mode, temp_path=temp_path_for)
