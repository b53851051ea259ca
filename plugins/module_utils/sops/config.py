"""`.sops.yaml`: its creation rules, the settings that decide what sops encrypts, and edits of
their recipients that keep the file's comments and layout (ruamel).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.age import (
    age_recipient_error,
    split_recipients,
)
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.errors import SopsKeysError

try:  # ruamel keeps comments and layout of .sops.yaml when recipients are edited.
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedSeq

    HAS_RUAMEL = True
except ImportError:  # pragma: no cover - depends on the environment
    HAS_RUAMEL = False

# Creation-rule options that decide what sops encrypts; sops writes them into each file's metadata.
KEY_SELECTORS = ("unencrypted_suffix", "encrypted_suffix", "unencrypted_regex", "encrypted_regex")
ENCRYPTION_SETTINGS = (
    *KEY_SELECTORS,
    "unencrypted_comment_regex",
    "encrypted_comment_regex",
    "mac_only_encrypted",
)
# What sops uses (and records) when a rule sets none of KEY_SELECTORS.
SOPS_DEFAULT_SETTINGS = {"unencrypted_suffix": "_unencrypted"}


@dataclass
class CreationRule:
    """One entry of `creation_rules` in `.sops.yaml`, as far as this code manages it."""

    index: int
    path_regex: str
    recipients: list[str]
    unsupported: list[str] = field(default_factory=list)
    # The ENCRYPTION_SETTINGS the rule sets explicitly (normalized by `_setting_value`).
    settings: dict[str, str] = field(default_factory=dict)

    def matches(self, relpath: str) -> bool:
        # sops matches path_regex (Go regexp, unanchored) against the path relative to the
        # directory of .sops.yaml.
        return re.search(self.path_regex, relpath) is not None

    @property
    def label(self) -> str:
        return f"creation_rules[{self.index}] (path_regex {self.path_regex!r})"

    @property
    def file_settings(self) -> dict[str, str]:
        """The settings sops applies to a file it encrypts under this rule."""
        return effective_settings(self.settings)


def effective_settings(settings: Mapping[str, str]) -> dict[str, str]:
    """Settings with sops' default made explicit: with no key selector sops uses (and, except in
    binary files, records) `unencrypted_suffix: _unencrypted`."""
    if any(key in settings for key in KEY_SELECTORS):
        return dict(settings)
    return {**SOPS_DEFAULT_SETTINGS, **settings}


def _setting_value(value: object) -> str | None:
    """One encryption setting as text; None for unset (sops omits empty and false settings)."""
    if value is None or value is False or value == "":
        return None
    if isinstance(value, bool):
        return "true"
    text = str(value)
    return None if text.lower() == "false" else text.lower() if text.lower() == "true" else text


def settings_of(raw: Mapping[str, Any]) -> dict[str, str]:
    """The ENCRYPTION_SETTINGS set in `raw` (a creation rule or a file's sops metadata)."""
    out = {}
    for key in ENCRYPTION_SETTINGS:
        value = _setting_value(raw.get(key))
        if value is not None:
            out[key] = value
    return out


_UNSUPPORTED_KEYS = (
    "key_groups",
    "pgp",
    "kms",
    "gcp_kms",
    "azure_keyvault",
    "hc_vault_transit_uri",
)


class SopsConfig:
    """`.sops.yaml` loaded for round-trip editing (comments and layout kept by ruamel.yaml)."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.original_text = text
        if not HAS_RUAMEL:
            raise SopsKeysError("the Python library ruamel.yaml is required to edit .sops.yaml")
        self._yaml = YAML(typ="rt")
        self._yaml.preserve_quotes = True
        self._yaml.width = 4096
        self._yaml.indent(mapping=2, sequence=4, offset=2)
        try:
            self.doc = self._yaml.load(text)
        except Exception as exc:  # ruamel raises many types; the message names the line
            raise SopsKeysError(f"{path}: not valid YAML: {exc}") from None
        rules = self.doc.get("creation_rules") if isinstance(self.doc, Mapping) else None
        if not isinstance(rules, list) or not rules:
            raise SopsKeysError(f"{path}: no creation_rules list")
        self.rules: list[CreationRule] = []
        for index, raw in enumerate(rules):
            if not isinstance(raw, Mapping):
                raise SopsKeysError(f"{path}: creation_rules[{index}] is not a mapping")
            regex = raw.get("path_regex")
            if regex is None:
                regex = ""  # a rule without path_regex matches every file, as in sops
            try:
                re.compile(str(regex))
            except re.error as exc:
                raise SopsKeysError(
                    f"{path}: creation_rules[{index}] path_regex {regex!r} is invalid: {exc}"
                ) from None
            rule = CreationRule(index, str(regex), split_recipients(raw.get("age")))
            rule.unsupported = [key for key in _UNSUPPORTED_KEYS if raw.get(key)]
            rule.settings = settings_of(raw)
            self.rules.append(rule)

    @classmethod
    def load(cls, path: Path) -> SopsConfig:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SopsKeysError(f"{path}: SOPS configuration not found") from None
        return cls(path, text)

    def rule_for(self, relpath: str) -> CreationRule | None:
        """The first rule matching `relpath` (sops uses the first match), or None."""
        for rule in self.rules:
            if rule.matches(relpath):
                return rule
        return None

    def validate(self, rules: Iterable[CreationRule] | None = None) -> None:
        """Fail on malformed recipients or key types this code does not manage."""
        for rule in self.rules if rules is None else rules:
            if rule.unsupported:
                raise SopsKeysError(
                    f"{self.path}: {rule.label} uses {', '.join(rule.unsupported)}; only "
                    "age recipients directly under a rule are managed here"
                )
            if not rule.recipients:
                raise SopsKeysError(f"{self.path}: {rule.label} has no age recipients")
            for recipient in rule.recipients:
                error = age_recipient_error(recipient)
                if error:
                    raise SopsKeysError(f"{self.path}: {rule.label}: {error}")

    def holds(self, recipient: str) -> bool:
        """Whether any rule lists `recipient`."""
        return any(recipient in rule.recipients for rule in self.rules)

    def rules_matching(self, selectors: Iterable[str]) -> list[CreationRule]:
        """Rules whose path_regex contains one of `selectors` (none when there is none)."""
        chosen = list(selectors)
        return [rule for rule in self.rules if any(sel in rule.path_regex for sel in chosen)]

    def select_rules(self, selectors: list[str]) -> list[CreationRule]:
        """Rules whose path_regex contains one of `selectors` (all rules when empty)."""
        if not selectors:
            return list(self.rules)
        chosen: list[CreationRule] = []
        for selector in selectors:
            found = [rule for rule in self.rules if selector in rule.path_regex]
            if not found:
                known = ", ".join(repr(rule.path_regex) for rule in self.rules)
                raise SopsKeysError(
                    f"rule selector {selector!r} matches no creation rule in {self.path} "
                    f"(path_regex values: {known})"
                )
            chosen.extend(rule for rule in found if rule not in chosen)
        return chosen

    def _set_recipients(self, rule: CreationRule, recipients: list[str]) -> None:
        raw = self.doc["creation_rules"][rule.index]
        current = raw.get("age")
        if isinstance(current, list):
            seq = current
            # Remove gone entries in place (keeps the comments of the others), then append.
            for pos in range(len(seq) - 1, -1, -1):
                if str(seq[pos]).strip() not in recipients:
                    del seq[pos]
            present = [str(item).strip() for item in seq]
            for recipient in recipients:
                if recipient not in present:
                    seq.append(recipient)
        elif isinstance(current, str):
            raw["age"] = ",".join(recipients)  # keep the rule's string form
        else:
            raw["age"] = CommentedSeq(recipients)
        rule.recipients = list(recipients)

    def add_recipient(self, recipient: str, rules: list[CreationRule]) -> list[str]:
        """Add `recipient` to `rules`; returns the labels of the rules that changed."""
        changed = []
        for rule in rules:
            if recipient not in rule.recipients:
                self._set_recipients(rule, [*rule.recipients, recipient])
                changed.append(rule.label)
        return changed

    def remove_recipient(self, recipient: str) -> list[str]:
        """Remove `recipient` from every rule; fails when it is in none or a rule would be empty."""
        holders = [rule for rule in self.rules if recipient in rule.recipients]
        if not holders:
            raise SopsKeysError(
                f"recipient {recipient} is not in {self.path}: nothing to remove (check the key; "
                "a recipient must be listed in a creation rule to be offboarded)"
            )
        for rule in holders:
            remaining = [r for r in rule.recipients if r != recipient]
            if not remaining:
                raise SopsKeysError(
                    f"removing {recipient} would leave {rule.label} without any recipient; "
                    "add the replacement recipient first"
                )
            self._set_recipients(rule, remaining)
        return [rule.label for rule in holders]

    def dump(self) -> str:
        stream = io.StringIO()
        self._yaml.dump(self.doc, stream)
        text = stream.getvalue()
        if self.original_text.startswith("---") and not text.startswith("---"):
            text = "---\n" + text
        return text
