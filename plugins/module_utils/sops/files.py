"""One encrypted file: its format, its sops metadata (recipients, settings, what is in clear),
and its audit by the plaintext guard (`scripts/check-sops-encrypted`): the metadata compared
with the creation rule that covers its path, every value and comment encrypted unless the rule
itself says otherwise.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml

try:  # ruamel keeps the comments of a YAML document, which the guard checks are encrypted.
    from ruamel.yaml import YAML

    HAS_RUAMEL = True
except ImportError:  # pragma: no cover - depends on the environment
    HAS_RUAMEL = False

from ansible_collections.mmo_voxel.ops.plugins.module_utils.ops_common import parse_rfc3339
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.age import age_recipient_error
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.config import (
    ENCRYPTION_SETTINGS,
    CreationRule,
    effective_settings,
    settings_of,
)

# A sops ciphertext (values, comments and the MAC all have this form).
ENC_RE = re.compile(
    r"^ENC\[AES256_GCM,data:[A-Za-z0-9+/]*={0,2},iv:[A-Za-z0-9+/]+={0,2},"
    r"tag:[A-Za-z0-9+/]+={0,2},type:(str|int|float|bool|bytes|comment)\]$"
)


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
        while loader.check_data():  # type: ignore[no-untyped-call]  # unannotated in types-PyYAML
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
                (key, value)
                for key, sep, value in (line.partition("=") for line in text.splitlines())
                if sep and not key.lstrip().startswith("#")
            ]
            names = [pair[0] for pair in pairs]
            duplicates = sorted({name for name in names if names.count(name) > 1})
            data, flat_meta = _flat_to_tree(pairs)
            tree = {**data, "sops": flat_meta} if any(k == "mac" for k in flat_meta) else data
        else:  # ini
            section, pairs = None, []
            for line in text.splitlines():
                stripped = line.strip()
                if stripped.startswith("[") and stripped.endswith("]"):
                    section = stripped[1:-1]
                elif "=" in stripped and not stripped.startswith((";", "#")):
                    key, value = (part.strip() for part in stripped.split("=", 1))
                    pairs.append((f"sops_{key}" if section == "sops" else key, value))
            data, flat_meta = _flat_to_tree(pairs)
            tree = {**data, "sops": flat_meta} if "mac" in flat_meta else data
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
            # Not a mapping: a CommentedSeq or CommentedSet, iterable (CommentedBase is not).
            children = node.values() if isinstance(node, Mapping) else cast(Iterable[Any], node)
            for child in children:
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


def _is_time(value: object) -> bool:
    try:
        parse_rfc3339(str(value))
    except ValueError:
        return False
    return True


def _metadata_problems(meta: FileMetadata) -> list[str]:
    """Structure of the sops block: what sops writes, nothing else (names only in messages)."""
    block = meta.block
    problems = []
    unknown = sorted(str(key) for key in block if key not in _METADATA_KEYS)
    if unknown:
        problems.append(f"unknown keys in the sops metadata: {', '.join(unknown)}")
    if not _is_ciphertext(block.get("mac")):
        problems.append("the sops metadata's mac is not a sops ciphertext")
    if not _is_time(block.get("lastmodified")):
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
