"""The test images are made from a root file system with nothing of this machine in it.

debootstrap can leave the target's /proc mounted (its own umount fails while a process it
started still holds it, and it ignores that). scripts/test-images/make-rootfs must not depend on
its cleanup: these tests put a stand-in debootstrap first that misbehaves on purpose (leaves
mounts, leaves a process holding one busy, fails, hangs until interrupted) and check that the
archive never holds proc/, sys/ or dev/ content, that nothing stays mounted, and that the
target is removed. The last test reads the real images `make images` made.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import tarfile
from pathlib import Path

import pytest
from polling import wait_until

REPO = Path(__file__).resolve().parents[2]
MAKE_ROOTFS = REPO / "scripts" / "test-images" / "make-rootfs"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")

# A stand-in for debootstrap: writes a small tree into the target, then misbehaves as MODE says.
# `proc` and `sys` get a tmpfs each holding a file that must never reach the archive, like the
# live /proc debootstrap can leave behind.
FAKE_DEBOOTSTRAP = r"""#!/usr/bin/env bash
set -eu
target=${@: -2:1}
mkdir -p "$target/etc" "$target/proc" "$target/sys" "$target/dev"
echo test-rootfs > "$target/etc/hostname"
echo node > "$target/dev/null-standin"
mount -t tmpfs fake-proc "$target/proc"
echo "SECRET_FROM_THE_MACHINE=1" > "$target/proc/environ"
mount -t tmpfs fake-sys "$target/sys"
echo machine > "$target/sys/leak"
case "$MODE" in
  leave-mounts) exit 0 ;;
  leave-busy)
    # A process of its own keeps proc busy, so a plain umount fails with EBUSY.
    (cd "$target/proc" && setsid sleep 300 </dev/null >/dev/null 2>&1 &)
    exit 0 ;;
  fail) exit 1 ;;
  hang) echo started > "$STARTED"; sleep 300 ;;
esac
"""


@pytest.fixture
def fake(tmp_path: Path) -> dict[str, str]:
    script = tmp_path / "debootstrap"
    script.write_text(FAKE_DEBOOTSTRAP)
    script.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, DEBOOTSTRAP=str(script), MAKE_ROOTFS_WORKDIR=str(work))
    return env


def mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(str(path) + os.sep)]


def run(env: dict[str, str], mode: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(MAKE_ROOTFS), "bookworm", "http://mirror.invalid/debian", "python3"],
        env={**env, "MODE": mode},
        capture_output=True,
        timeout=60,
        check=False,
    )


def members(archive: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return [m.name for m in tar.getmembers()]


def assert_clean_archive(names: list[str]) -> None:
    assert "./etc/hostname" in names
    inside = [n for n in names if n.startswith(("./proc/", "./sys/", "./dev/"))]
    assert inside == []


@pytest.mark.parametrize("mode", ["leave-mounts", "leave-busy"])
def test_mounts_debootstrap_leaves_never_reach_the_archive(fake, tmp_path: Path, mode: str) -> None:
    work = Path(fake["MAKE_ROOTFS_WORKDIR"])
    result = run(fake, mode)
    assert result.returncode == 0, result.stderr.decode()
    assert_clean_archive(members(result.stdout))
    assert b"SECRET_FROM_THE_MACHINE" not in result.stdout
    assert b"unmounting" in result.stderr
    assert mounts_under(work) == []
    assert list(work.iterdir()) == []


def test_a_failed_debootstrap_leaves_nothing_mounted_and_no_tree(fake) -> None:
    work = Path(fake["MAKE_ROOTFS_WORKDIR"])
    result = run(fake, "fail")
    assert result.returncode != 0
    assert result.stdout == b""
    assert b"debootstrap failed" in result.stderr
    assert mounts_under(work) == []
    # Only debootstrap's log stays, for the person who reads the error.
    assert [p.suffix for p in work.iterdir()] == [".log"]


def test_an_interrupted_run_unmounts_and_removes_the_tree(fake, tmp_path: Path) -> None:
    work = Path(fake["MAKE_ROOTFS_WORKDIR"])
    started = tmp_path / "started"
    proc = subprocess.Popen(
        [str(MAKE_ROOTFS), "bookworm", "http://mirror.invalid/debian", "python3"],
        env={**fake, "MODE": "hang", "STARTED": str(started)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_until(started.exists, 30, "the stand-in debootstrap to start")
    assert mounts_under(work), "the stand-in should have mounted something by now"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert out == b""
    assert mounts_under(work) == [], err.decode()
    assert [p for p in work.iterdir() if p.is_dir()] == []


def image_layers(image: str) -> list[list[str]]:
    """The member names of every layer of a local image (docker save)."""
    saved = subprocess.run(["docker", "save", image], capture_output=True, check=True).stdout
    layers = []
    with tarfile.open(fileobj=io.BytesIO(saved)) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))
        for layer in manifest[0]["Layers"]:
            with tarfile.open(fileobj=outer.extractfile(layer)) as inner:
                layers.append(inner.getnames())
    return layers


def test_the_base_image_holds_no_proc_sys_or_dev_content() -> None:
    # Every other local image is built with `docker build` on top of this one; only this
    # imported layer is archived from a directory of this machine.
    layers = image_layers("mmo-voxel/bookworm-base:latest")
    names = [n.removeprefix("./") for layer in layers for n in layer]
    assert "etc/debian_version" in names
    leaked = [n for n in names if n.startswith(("proc/", "sys/", "dev/"))]
    assert leaked == []


def test_the_base_image_root_is_open_to_every_user() -> None:
    # A 0700 "/" (mktemp -d's mode, archived) locks every user but root out of every container
    # of the image under Podman or a nested Docker engine (tests/fleet).
    mode = subprocess.run(
        ["docker", "run", "--rm", "mmo-voxel/bookworm-base:latest", "stat", "-c", "%a", "/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert mode == "755"
