"""plugins/module_utils/ops_common.py: atomic writes, RFC 3339 times and Discord posts.

The writes run against real directories; the posts go to a local HTTP receiver
(tests/discord_receiver.py) standing in for Discord.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from discord_receiver import DiscordReceiver

from ansible_collections.mmo_voxel.ops.plugins.module_utils import ops_common
from ansible_collections.mmo_voxel.ops.plugins.module_utils.ops_common import (
    DISCORD_LIMIT,
    DiscordError,
    atomic_write,
    format_rfc3339,
    parse_rfc3339,
    post_discord,
)

# --------------------------------------------------------------------------- atomic writes


def test_atomic_write_replaces_the_file_and_keeps_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "status.json"
    target.write_bytes(b"old")
    target.chmod(0o600)

    atomic_write(target, b"new")

    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]


def test_atomic_write_gives_a_new_file_the_mode_asked_or_0644(tmp_path: Path) -> None:
    atomic_write(tmp_path / "a", b"x")
    atomic_write(tmp_path / "b", b"x", 0o640)

    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b").stat().st_mode & 0o777 == 0o640


def test_a_write_that_fails_midway_keeps_the_old_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "ledger.yml"
    target.write_bytes(b"old")

    def full_disk(fd: int) -> None:  # the data is written; the flush to disk fails
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ops_common.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, b"new")

    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.yml"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory")
def test_a_read_only_directory_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    target.write_bytes(b"old")
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(PermissionError):
            atomic_write(target, b"new")
    finally:
        tmp_path.chmod(0o755)
    assert target.read_bytes() == b"old"


def test_a_failed_rename_keeps_what_is_there_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "latest.json"
    target.mkdir()  # a directory in the way: the rename over it fails
    (target / "kept").write_bytes(b"old")

    with pytest.raises(IsADirectoryError):
        atomic_write(target, b"new")

    assert (target / "kept").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.json"]


def test_a_callers_temp_name_is_used_and_removed(tmp_path: Path) -> None:
    seen: list[Path] = []

    def named(path: Path) -> Path:
        seen.append(path.with_name(f".mine-{path.name}"))
        return seen[-1]

    atomic_write(tmp_path / "x.yaml", b"data", temp_path=named)

    assert seen == [tmp_path / ".mine-x.yaml"]
    assert not seen[0].exists()
    assert (tmp_path / "x.yaml").read_bytes() == b"data"


# --------------------------------------------------------------------------- RFC 3339


MOMENT = dt.datetime(2026, 11, 29, 9, 0, 5, 123456, tzinfo=dt.timezone(dt.timedelta(hours=9)))


@pytest.mark.parametrize(
    ("timespec", "text"),
    [
        ("seconds", "2026-11-29T00:00:05Z"),
        ("milliseconds", "2026-11-29T00:00:05.123Z"),
        ("microseconds", "2026-11-29T00:00:05.123456Z"),
    ],
)
def test_format_is_utc_with_z_at_the_precision_asked(timespec: str, text: str) -> None:
    assert format_rfc3339(MOMENT, timespec=timespec) == text


@pytest.mark.parametrize("timespec", ["seconds", "milliseconds", "microseconds"])
def test_parse_reads_back_what_format_wrote(timespec: str) -> None:
    text = format_rfc3339(MOMENT, timespec=timespec)
    assert format_rfc3339(parse_rfc3339(text), timespec=timespec) == text


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2026-11-29T00:00:05Z", "2026-11-29T00:00:05+00:00"),
        ("2026-11-29T09:00:05+09:00", "2026-11-29T00:00:05+00:00"),
        ("2026-11-29T00:00:05", "2026-11-29T00:00:05+00:00"),  # no zone: UTC
        (" 2026-11-29T00:00:05.5z ", "2026-11-29T00:00:05.500000+00:00"),
    ],
)
def test_parse_gives_aware_utc(text: str, utc: str) -> None:
    assert parse_rfc3339(text).isoformat() == utc


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01T00:00:00Z", None, 5])
def test_parse_refuses_what_is_not_a_time(text: object) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        parse_rfc3339(text)  # type: ignore[arg-type]


def test_format_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="aware"):
        format_rfc3339(dt.datetime(2026, 1, 1), timespec="seconds")


# --------------------------------------------------------------------------- Discord


def test_a_post_carries_json_a_user_agent_and_no_mentions(
    discord_receiver: DiscordReceiver,
) -> None:
    status = post_discord(
        discord_receiver.url, "@everyone backup failed", timeout=5, username="mmo-voxel deploy"
    )

    assert status == 204
    [post] = discord_receiver.received()
    assert post.path == DiscordReceiver.TOKEN_PATH
    assert post.headers["Content-Type"] == "application/json"
    assert post.headers["User-Agent"] == ops_common.DISCORD_USER_AGENT
    assert post.body == {
        "content": "@everyone backup failed",
        "allowed_mentions": {"parse": []},
        "username": "mmo-voxel deploy",
    }


def test_a_long_message_is_cut_to_discords_limit(discord_receiver: DiscordReceiver) -> None:
    post_discord(discord_receiver.url, "x" * 5000, timeout=5, user_agent="mmo-voxel-db-job/1")

    [post] = discord_receiver.received()
    assert len(post.body["content"]) == DISCORD_LIMIT
    assert post.body["content"].endswith("[...]")
    assert "username" not in post.body
    assert post.headers["User-Agent"] == "mmo-voxel-db-job/1"


def test_a_message_at_the_limit_is_sent_whole(discord_receiver: DiscordReceiver) -> None:
    post_discord(discord_receiver.url, "y" * DISCORD_LIMIT, timeout=5)
    assert discord_receiver.received()[0].body["content"] == "y" * DISCORD_LIMIT


def test_a_refused_post_says_the_status_never_the_url(discord_receiver: DiscordReceiver) -> None:
    discord_receiver.status = 404

    with pytest.raises(DiscordError) as raised:
        post_discord(discord_receiver.url, "hello", timeout=5)

    assert str(raised.value) == "HTTP 404"
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:1/api/webhooks/1/tok-secret-1",  # nothing listens
        "http://127.0.0.1:notaport/api/webhooks/1/tok-secret-1",
        "file:///api/webhooks/1/tok-secret-1",
        "discord.com/api/webhooks/1/tok-secret-1",
    ],
)
def test_an_unreachable_or_bad_webhook_is_an_error_without_the_token(url: str) -> None:
    with pytest.raises(DiscordError) as raised:
        post_discord(url, "hello", timeout=5)

    assert "tok-secret-1" not in str(raised.value)
    assert str(raised.value)
