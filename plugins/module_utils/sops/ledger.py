"""The rotation ledger: when each file's data key was last rotated (sops keeps no such date)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml

from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.errors import SopsKeysError

LEDGER_HEADER = (
    "# Written by mmo_voxel.ops.sops_recipients: when each file's data key was last rotated\n"
    "# (sops keeps no such date). A file missing here counts as due for rotation.\n"
)


def load_ledger(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SopsKeysError(f"{path}: not valid YAML: {exc}") from None
    files = data.get("files") if isinstance(data, Mapping) else None
    if files is None:
        return {}
    if not isinstance(files, Mapping):
        raise SopsKeysError(f"{path}: 'files' must be a mapping of path to time")
    return {str(k): str(v) for k, v in files.items()}


def dump_ledger(entries: Mapping[str, str]) -> str:
    body = yaml.safe_dump({"files": dict(sorted(entries.items()))}, default_flow_style=False)
    return "---\n" + LEDGER_HEADER + body
