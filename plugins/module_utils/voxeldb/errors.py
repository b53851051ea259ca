"""Exceptions of the database toolkit.

Every failure the toolkit can foresee is raised as a :class:`VoxelDBError` whose message names the
path, option or file involved, so that modules and the CLI can show it as is.
"""

from __future__ import annotations

from typing import Any


class VoxelDBError(Exception):
    """A failure with a message meant for the operator (and optional structured details)."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InputError(VoxelDBError):
    """Bad input, found before anything was changed."""


class BackupError(VoxelDBError):
    """A backup could not be made, read or verified."""


class MigrationError(VoxelDBError):
    """A migration file is invalid or a migration failed (and was rolled back)."""
