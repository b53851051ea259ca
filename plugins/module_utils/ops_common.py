"""The helpers every part of the repository shares: atomic writes, RFC 3339 times, Discord posts.

One copy of each (issue #21): before, each lived in up to five places that had drifted apart (one
atomic write skipped the directory fsync, one Discord post let messages ping ``@everyone``).

Standard library only, because it runs in three settings: inside Ansible modules (AnsiballZ
bundles it with the module), in controller plugins and scripts, and on hosts without Ansible,
where the db_schedule role installs it beside the database toolkit for ``mmo-voxel-db-job``.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import secrets
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

# --------------------------------------------------------------------------- files


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Flush a directory's entries (creations, renames) to stable storage."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def hidden_temp_path(path: Path) -> Path:
    """A fresh hidden sibling of ``path`` (same directory, so the rename stays atomic)."""
    return path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")


def atomic_write(
    path: str | os.PathLike[str],
    data: bytes,
    mode: int | None = None,
    *,
    temp_path: Callable[[Path], Path] = hidden_temp_path,
) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old file or the new, never half.

    A temporary file in the same directory is written, fsynced, given ``mode`` and renamed over
    ``path``; then the directory is fsynced so the rename itself survives a power cut. ``mode``
    None keeps the mode of the file being replaced (0644 for a new one). The temporary file is
    created 0600 (it may hold a secret before its mode is set) and removed on any failure.
    ``temp_path`` names it, for callers whose listings or cleanups recognise their own.
    """
    target = Path(path)
    if mode is None:
        mode = target.stat().st_mode & 0o7777 if target.exists() else 0o644
    tmp = temp_path(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


# --------------------------------------------------------------------------- RFC 3339 times


def utc_now() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


def format_rfc3339(moment: dt.datetime, *, timespec: str) -> str:
    """``moment`` as RFC 3339 UTC ending in ``Z``.

    ``timespec`` has no default on purpose: the formats are contracts (docs/contracts.md), and
    each caller names its own precision: ``seconds`` (``2026-11-29T00:00:05Z``),
    ``milliseconds`` or ``microseconds`` (``2026-11-29T00:00:05.000123Z``).
    """
    if moment.tzinfo is None:
        raise ValueError("an RFC 3339 time needs an aware datetime")
    text = moment.astimezone(dt.UTC).isoformat(timespec=timespec)
    return text.removesuffix("+00:00") + "Z"


def parse_rfc3339(text: str) -> dt.datetime:
    """The aware UTC time of an RFC 3339 / ISO 8601 string; one without a zone is taken as UTC.

    Raises ValueError when ``text`` is not such a time (callers decide what a bad time means).
    """
    if not isinstance(text, str):
        raise ValueError(f"not a time: {text!r}")
    clean = text.strip()
    if clean[-1:] in ("Z", "z"):
        clean = clean[:-1] + "+00:00"
    moment = dt.datetime.fromisoformat(clean)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


# --------------------------------------------------------------------------- Discord


#: Discord refuses a message whose content is longer.
DISCORD_LIMIT = 2000
DISCORD_USER_AGENT = "mmo-voxel-ops/1"
_CUT = " [...]"


class DiscordError(Exception):
    """A post that Discord did not take. The message never holds the webhook URL (a secret)."""


def discord_content(text: str) -> str:
    """``text`` cut to Discord's limit, marked as cut when it was."""
    if len(text) <= DISCORD_LIMIT:
        return text
    return text[: DISCORD_LIMIT - len(_CUT)] + _CUT


def discord_body(text: str, username: str | None = None) -> dict[str, object]:
    """The webhook's JSON body: the content, and no mention that could ping anyone."""
    body: dict[str, object] = {
        "content": discord_content(text),
        # "@everyone" or a role in a host name or an error text must not page a whole server.
        "allowed_mentions": {"parse": []},
    }
    if username:
        body["username"] = username
    return body


def post_discord(
    url: str,
    text: str,
    *,
    timeout: float,
    username: str | None = None,
    user_agent: str = DISCORD_USER_AGENT,
) -> int:
    """Post ``text`` to the webhook ``url``; the HTTP status when Discord took it.

    Raises DiscordError otherwise. Its message is the status or the network's reason, with the
    URL scrubbed out: the URL holds the webhook's token, and some errors repeat it.
    """
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise DiscordError("the webhook is not an http(s) URL")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url,
        data=json.dumps(discord_body(text, username)).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": user_agent},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        raise DiscordError(f"HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        raise DiscordError(_scrub(str(exc.reason), url)) from None
    # A timeout while reading, a bad answer, a malformed URL (a port that is not a number).
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise DiscordError(_scrub(f"{type(exc).__name__}: {exc}", url)) from None


def _scrub(message: str, url: str) -> str:
    """``message`` without the URL or its path (the token is in the path)."""
    path = urllib.parse.urlsplit(url).path
    for secret in (url, path):
        if len(secret) > 1:
            message = message.replace(secret, "<webhook>")
    return message
