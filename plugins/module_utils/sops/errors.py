"""The error of the sops package whose message is safe to show."""

from __future__ import annotations


class SopsKeysError(Exception):
    """An error whose message is safe to show (names files and keys, never plaintext)."""
