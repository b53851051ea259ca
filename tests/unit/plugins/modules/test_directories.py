"""Module directories: what file state=directory does, for a list, in one run."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlite_module_helpers import run_module

from ansible_collections.mmo_voxel.ops.plugins.modules import directories

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing a directory's owner needs root")
UID = GID = 10001  # need not exist as a user or group: numbers are taken as they are


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def run(capsys, entries: list[dict], check_mode: bool = False, diff: bool = False) -> dict:
    return run_module(
        directories, capsys, {"directories": entries}, check_mode=check_mode, diff=diff
    )


def me() -> str:
    """owner:group of what this process creates, as the diff lines name them."""
    return f"{pwd.getpwuid(os.geteuid()).pw_name}:{grp.getgrgid(os.getegid()).gr_name}"


@pytest.fixture
def umask_022() -> Iterator[None]:
    """A known umask, so what a directory without a mode gets is known."""
    was = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(was)


@pytest.fixture
def nested(tmp_path: Path) -> list[dict]:
    """srv / data / world, each inside the one before, none there yet."""
    return [
        {"path": str(tmp_path / "srv"), "mode": "0755"},
        {"path": str(tmp_path / "srv" / "data"), "mode": "0750"},
        {"path": str(tmp_path / "srv" / "data" / "world"), "mode": "0700"},
    ]


def test_creates_nested_entries_in_order_with_their_modes(
    tmp_path: Path, nested: list[dict], capsys
) -> None:
    result = run(capsys, nested)
    assert result["changed"] is True
    assert result["directories"] == [
        {"path": e["path"], "created": True, "changed": True} for e in nested
    ]
    assert mode_of(tmp_path / "srv") == 0o755
    assert mode_of(tmp_path / "srv" / "data") == 0o750
    assert mode_of(tmp_path / "srv" / "data" / "world") == 0o700


def test_a_second_run_changes_nothing(nested: list[dict], capsys) -> None:
    assert run(capsys, nested)["changed"] is True
    again = run(capsys, nested)
    assert again["changed"] is False
    assert again["directories"] == [
        {"path": e["path"], "created": False, "changed": False} for e in nested
    ]


def test_check_mode_creates_nothing_and_reports_what_would_change(
    tmp_path: Path, nested: list[dict], capsys
) -> None:
    result = run(capsys, nested, check_mode=True)
    assert result["changed"] is True
    # The nested entries pass although their parents are not there: earlier entries make them.
    assert [(d["created"], d["changed"]) for d in result["directories"]] == [(True, True)] * 3
    assert list(tmp_path.iterdir()) == []


def test_check_mode_on_an_existing_directory_changes_nothing(tmp_path: Path, capsys) -> None:
    (tmp_path / "srv").mkdir(mode=0o755)
    (tmp_path / "srv").chmod(0o755)
    result = run(capsys, [{"path": str(tmp_path / "srv"), "mode": "0700"}], check_mode=True)
    assert result["directories"] == [
        {"path": str(tmp_path / "srv"), "created": False, "changed": True}
    ]
    assert mode_of(tmp_path / "srv") == 0o755


def test_a_mode_change_on_an_existing_directory_is_applied_and_reported(
    tmp_path: Path, capsys
) -> None:
    for name in ("data", "logs"):
        (tmp_path / name).mkdir()
        (tmp_path / name).chmod(0o755)
    result = run(
        capsys,
        [
            {"path": str(tmp_path / "data"), "mode": "0750"},
            {"path": str(tmp_path / "logs"), "mode": "0755"},
        ],
    )
    assert result["changed"] is True
    assert result["directories"] == [
        {"path": str(tmp_path / "data"), "created": False, "changed": True},
        {"path": str(tmp_path / "logs"), "created": False, "changed": False},
    ]
    assert mode_of(tmp_path / "data") == 0o750
    assert mode_of(tmp_path / "logs") == 0o755


def test_symbolic_modes_are_read_as_file_reads_them(
    tmp_path: Path, umask_022: None, capsys
) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "old").chmod(0o777)
    entries = [
        {"path": str(tmp_path / "new"), "mode": "u=rwx,g=rx,o="},
        # Relative to what mkdir would give without a mode (0777 less the umask 022: 0755).
        {"path": str(tmp_path / "new2"), "mode": "o-rx"},
        {"path": str(tmp_path / "old"), "mode": "go-w"},
    ]
    assert run(capsys, entries)["changed"] is True
    assert mode_of(tmp_path / "new") == 0o750
    assert mode_of(tmp_path / "new2") == 0o750
    assert mode_of(tmp_path / "old") == 0o755
    assert run(capsys, entries)["changed"] is False


def test_without_a_mode_a_new_directory_gets_what_file_gives_it(
    tmp_path: Path, umask_022: None, capsys
) -> None:
    result = run(capsys, [{"path": str(tmp_path / "plain")}])
    assert result["changed"] is True
    assert mode_of(tmp_path / "plain") == 0o755


def test_a_new_directory_is_never_wider_than_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """What the directory looks like the moment it exists, before owner and mode are set."""
    seen: dict[str, int] = {}
    real_mkdir = os.mkdir

    def mkdir_and_look(path, mode=0o777, *args, **kwargs) -> None:
        real_mkdir(path, mode, *args, **kwargs)
        seen[os.fsdecode(path)] = stat.S_IMODE(os.stat(path).st_mode)

    monkeypatch.setattr(os, "mkdir", mkdir_and_look)
    run(
        capsys,
        [
            {"path": str(tmp_path / "shared"), "mode": "0775"},
            {"path": str(tmp_path / "readonly"), "mode": "0500"},
        ],
    )
    monkeypatch.undo()
    assert seen[str(tmp_path / "shared")] & 0o077 == 0  # nothing for group and others yet
    assert seen[str(tmp_path / "readonly")] & ~0o500 == 0  # nothing the owner was not given
    assert mode_of(tmp_path / "shared") == 0o775
    assert mode_of(tmp_path / "readonly") == 0o500


def test_set_owner_if_different_takes_a_numeric_string_as_a_uid() -> None:
    """Why owner and group may be numbers that name no user: the helper reads them as ids
    before it looks for a name (and so does this module)."""
    assert directories.user_id("10001") == 10001
    assert directories.group_id("10001") == 10001
    assert directories.user_id("root") == 0


@as_root
def test_owner_and_group_by_number_are_set_and_then_left_alone(tmp_path: Path, capsys) -> None:
    (tmp_path / "data").mkdir()
    entries = [
        {"path": str(tmp_path / "data"), "owner": str(UID), "group": str(GID), "mode": "0750"},
        {"path": str(tmp_path / "data" / "world"), "owner": str(UID), "group": "0"},
    ]
    result = run(capsys, entries)
    assert [(d["created"], d["changed"]) for d in result["directories"]] == [
        (False, True),
        (True, True),
    ]
    data, world = (tmp_path / "data").stat(), (tmp_path / "data" / "world").stat()
    assert (data.st_uid, data.st_gid, stat.S_IMODE(data.st_mode)) == (UID, GID, 0o750)
    assert (world.st_uid, world.st_gid) == (UID, 0)
    assert run(capsys, entries)["changed"] is False


@as_root
def test_an_owner_change_alone_is_reported(tmp_path: Path, capsys) -> None:
    (tmp_path / "data").mkdir()
    os.chown(tmp_path / "data", UID, GID)
    result = run(capsys, [{"path": str(tmp_path / "data"), "owner": "root"}])
    assert result["directories"][0]["changed"] is True
    assert ((tmp_path / "data").stat().st_uid, (tmp_path / "data").stat().st_gid) == (0, GID)


def test_a_file_in_the_way_fails_naming_it_and_creates_nothing(tmp_path: Path, capsys) -> None:
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv").chmod(0o755)
    (tmp_path / "srv" / "logs").write_text("not a directory\n")
    result = run(
        capsys,
        [
            {"path": str(tmp_path / "srv"), "mode": "0700"},
            {"path": str(tmp_path / "srv" / "data"), "mode": "0750"},
            {"path": str(tmp_path / "srv" / "logs"), "mode": "0750"},
            {"path": str(tmp_path / "srv" / "backups"), "mode": "0750"},
        ],
    )
    assert result["failed"] is True
    assert str(tmp_path / "srv" / "logs") in result["msg"]
    assert "a file" in result["msg"]
    assert sorted(p.name for p in (tmp_path / "srv").iterdir()) == ["logs"]
    assert mode_of(tmp_path / "srv") == 0o755  # an entry before it: not changed either


def test_a_missing_parent_not_listed_fails_naming_it_before_anything_is_created(
    tmp_path: Path, capsys
) -> None:
    result = run(
        capsys,
        [
            {"path": str(tmp_path / "srv"), "mode": "0755"},
            {"path": str(tmp_path / "opt" / "data"), "mode": "0750"},
        ],
    )
    assert result["failed"] is True
    assert str(tmp_path / "opt") + " does not exist" in result["msg"]
    assert list(tmp_path.iterdir()) == []


def test_a_parent_listed_after_its_child_is_missing(tmp_path: Path, capsys) -> None:
    result = run(
        capsys,
        [
            {"path": str(tmp_path / "srv" / "data")},
            {"path": str(tmp_path / "srv")},
        ],
    )
    assert result["failed"] is True
    assert f"its parent {tmp_path / 'srv'} does not exist" in result["msg"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("option", "what"), [("owner", "user"), ("group", "group")], ids=["user", "group"]
)
def test_an_unknown_user_or_group_fails_naming_it_before_anything_is_created(
    tmp_path: Path, option: str, what: str, capsys
) -> None:
    result = run(
        capsys,
        [
            {"path": str(tmp_path / "srv"), "mode": "0755"},
            {"path": str(tmp_path / "srv" / "data"), option: "no-such-name-mmo"},
        ],
    )
    assert result["failed"] is True
    assert f"{what} no-such-name-mmo does not exist" in result["msg"]
    assert str(tmp_path / "srv" / "data") in result["msg"]
    assert list(tmp_path.iterdir()) == []


def test_a_bad_mode_fails_before_anything_is_created(tmp_path: Path, capsys) -> None:
    result = run(
        capsys,
        [
            {"path": str(tmp_path / "srv"), "mode": "0755"},
            {"path": str(tmp_path / "data"), "mode": "rwxr-x---"},
        ],
    )
    assert result["failed"] is True
    assert "mode rwxr-x--- is neither octal nor symbolic" in result["msg"]
    assert list(tmp_path.iterdir()) == []


def test_a_relative_path_is_refused(capsys) -> None:
    result = run(capsys, [{"path": "relative/dir"}])
    assert result["failed"] is True
    assert "relative/dir: the path must be absolute" in result["msg"]


def test_a_link_to_a_directory_is_followed(tmp_path: Path, capsys) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real").chmod(0o755)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    entries = [
        {"path": str(tmp_path / "link"), "mode": "0700"},
        {"path": str(tmp_path / "link" / "inside"), "mode": "0750"},
    ]
    assert run(capsys, entries)["changed"] is True
    assert (tmp_path / "link").is_symlink()
    assert mode_of(tmp_path / "real") == 0o700
    assert mode_of(tmp_path / "real" / "inside") == 0o750
    assert run(capsys, entries)["changed"] is False


def test_a_link_to_a_file_is_not_a_directory(tmp_path: Path, capsys) -> None:
    (tmp_path / "file").write_text("x\n")
    (tmp_path / "link").symlink_to(tmp_path / "file")
    result = run(capsys, [{"path": str(tmp_path / "link")}])
    assert result["failed"] is True
    assert f"{tmp_path / 'link'}: it exists and is a link" in result["msg"]


def test_diff_lists_each_directory_that_changes(tmp_path: Path, capsys) -> None:
    for name in ("data", "logs"):
        (tmp_path / name).mkdir()
        (tmp_path / name).chmod(0o755)
    entries = [
        {"path": str(tmp_path / "data"), "mode": "0750"},
        {"path": str(tmp_path / "logs"), "mode": "0755"},  # unchanged: not listed
        {"path": str(tmp_path / "world"), "mode": "0700"},
    ]
    expected = {
        "before": f"{tmp_path / 'data'} {me()} 0755\n{tmp_path / 'world'} (absent)\n",
        "after": f"{tmp_path / 'data'} {me()} 0750\n{tmp_path / 'world'} {me()} 0700\n",
    }
    planned = run(capsys, entries, check_mode=True, diff=True)
    assert planned["diff"] == expected
    assert not (tmp_path / "world").exists()
    assert run(capsys, entries, diff=True)["diff"] == expected
    assert run(capsys, entries, diff=True)["diff"] == {"before": "", "after": ""}


def test_no_diff_without_diff_mode(tmp_path: Path, capsys) -> None:
    assert "diff" not in run(capsys, [{"path": str(tmp_path / "data")}])


def unnamed_id() -> int:
    """An id from 10001 up that is neither a user's nor a group's on this host (a test run of
    the deploy may have left a user 10001 behind)."""
    for candidate in range(10001, 20000):
        try:
            pwd.getpwuid(candidate)
            continue
        except KeyError:
            pass
        try:
            grp.getgrgid(candidate)
        except KeyError:
            return candidate
    raise AssertionError("no free id between 10001 and 19999")


@as_root
def test_diff_names_ids_without_a_name_by_number(tmp_path: Path, capsys) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data").chmod(0o755)
    os.chown(tmp_path / "data", 0, 0)
    free = unnamed_id()
    result = run(
        capsys,
        [{"path": str(tmp_path / "data"), "owner": str(free), "group": str(free)}],
        diff=True,
    )
    name = pwd.getpwuid(0).pw_name, grp.getgrgid(0).gr_name
    assert result["diff"] == {
        "before": f"{tmp_path / 'data'} {name[0]}:{name[1]} 0755\n",
        "after": f"{tmp_path / 'data'} {free}:{free} 0755\n",
    }
