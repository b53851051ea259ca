"""Glue between AnsibleModule and the toolkit: shared option specs and error reporting."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from ansible_collections.mmo_voxel.ops.plugins.module_utils.voxeldb.errors import (
    VoxelDBError,
    os_error_message,
    sqlite_error_message,
)


def run_module(module: Any, action: Callable[[], dict[str, Any]]) -> None:
    """Run ``action`` and exit the module with its result, or fail with a readable message."""
    try:
        result = action()
    except VoxelDBError as exc:
        details = {k: v for k, v in exc.details.items() if k not in {"msg", "failed", "changed"}}
        module.fail_json(msg=exc.message, **details)
    except sqlite3.Error as exc:
        module.fail_json(msg=sqlite_error_message(exc), sqlite_error=str(exc))
    except OSError as exc:
        module.fail_json(msg=os_error_message(exc))
    module.exit_json(**result)


def listing(title: str, items: list[str]) -> str:
    """A small text block for --diff output."""
    body = "".join(f"  - {item}\n" for item in items) or "  (none)\n"
    return f"{title}:\n{body}"
