"""Fault injection: SIGKILL the re-keying module (and its sops children) at random moments.

After every kill, every secret file must still be a complete sops file that the current
recipients decrypt to the original content: never empty, never half written. Leftover temporary
copies are allowed (hidden, encrypted, removed by the next run) but must hold no plaintext. At the
end an uninterrupted run finishes the job.

The seed is printed on failure; set SECRETS_KILL_SEED to replay a run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.config import SopsConfig
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.fileio import TEMP_MARKER
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.files import parse_sops_file
from ansible_collections.mmo_voxel.ops.plugins.module_utils.sops.ledger import load_ledger

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import secrets_fixtures as sf

pytestmark = pytest.mark.slow

MODULE = sf.REPO / "plugins" / "modules" / "sops_recipients.py"
PYTHON = str(sf.VENV_BIN / "python") if (sf.VENV_BIN / "python").exists() else sys.executable
ITERATIONS = 30


# Runs the module and SIGKILLs it (itself) at a chosen point, so that a kill lands exactly there:
#   after-config-written  right after .sops.yaml was written (atomic_write returned), nothing else
#   in-sops-rotate        when the first `sops rotate` starts: a temp copy of a secret file exists
#                         and sopsy's configuration copy is in TMPDIR
KILL_AT = """
import os, signal, sys
from ansible_collections.mmo_voxel.ops.plugins.modules import sops_recipients

def die():
    os.kill(os.getpid(), signal.SIGKILL)

point = os.environ["SECRETS_KILL_AT"]
if point == "after-config-written":
    write = sops_recipients.atomic_write
    def atomic_write(path, data, mode=None):
        write(path, data, mode)
        if path.name == ".sops.yaml":
            die()
    sops_recipients.atomic_write = atomic_write
elif point == "in-sops-rotate":
    import sopsy.sopsy
    run_cmd = sopsy.sopsy.run_cmd
    def guarded(cmd, *args, **kwargs):
        if "rotate" in cmd:
            die()
        return run_cmd(cmd, *args, **kwargs)
    sopsy.sopsy.run_cmd = guarded
else:
    raise SystemExit(f"unknown kill point {point}")
sops_recipients.main()
"""


def start_module(
    tree: sf.SecretTree, args: dict, workdir: Path, kill_at: str | None = None
) -> subprocess.Popen:
    args_file = workdir / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = dict(tree.env)
    env["PYTHONPATH"] = str(sf.REPO / "collections")
    # sopsy's config copies of a killed run stay behind: keep them in the test's temp dir.
    env["TMPDIR"] = str(workdir)
    command = [PYTHON, str(MODULE), str(args_file)]
    if kill_at:
        env["SECRETS_KILL_AT"] = kill_at
        command = [PYTHON, "-c", KILL_AT, str(args_file)]
    return subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: the kill takes the sops children too
    )


def leftovers_in(workdir: Path) -> list[str]:
    """What runs left in their TMPDIR (the test's own args file aside)."""
    return sorted(path.name for path in workdir.iterdir() if path.name != "args.json")


def next_args(tree: sf.SecretTree, carol: sf.AgeKey, step: int) -> dict:
    """Alternate onboarding carol, offboarding her and plain rotation."""
    args = {"root": str(tree.root), "age_keyfile": str(tree.keys["alice"].keyfile)}
    in_config = carol.public in (tree.root / ".sops.yaml").read_text()
    if step % 3 == 2:
        return {**args, "rotate": "always"}
    if in_config:
        return {**args, "remove_recipients": [carol.public], "rotate": "always"}
    return {**args, "add_recipients": [carol.public], "rotate": "never"}


def check_invariants(tree: sf.SecretTree, carol: sf.AgeKey, context: str) -> None:
    team = {tree.keys["alice"].public, tree.keys["bob"].public}
    for rel in tree.plaintext:
        path = tree.root / rel
        assert path.stat().st_size > 0, f"{context}: {rel} is empty"
        meta = parse_sops_file(path)
        assert meta.encrypted, f"{context}: {rel} is not a complete sops file"
        assert team <= set(meta.recipients) <= team | {carol.public}, f"{context}: {rel}"
        for who in ("alice", "bob"):
            readable = sf.reads_back(tree, rel, tree.keys[who])
            assert readable, f"{context}: {who} cannot decrypt {rel}"
    config = SopsConfig.load(tree.root / ".sops.yaml")
    config.validate()
    for rule in config.rules:
        assert team <= set(rule.recipients), f"{context}: .sops.yaml lost a team member"
    load_ledger(tree.root / ".sops-rotation.yml")  # parses (or is absent)
    for path in tree.root.rglob(f".*{TEMP_MARKER}*"):
        data = path.read_bytes()
        assert not [c for c in tree.canaries if c.encode() in data], (
            f"{context}: plaintext in {path}"
        )


def test_rotation_killed_at_random_moments_leaves_every_file_whole(tmp_path):
    seed = int(os.environ.get("SECRETS_KILL_SEED", time.time_ns() % 2**32))
    rng = random.Random(seed)  # noqa: S311 - picks kill moments, not keys
    tree = sf.make_tree(tmp_path)
    carol = sf.new_key(tmp_path / "keys", "carol")
    work = tmp_path / "work"
    work.mkdir()

    # How long one uninterrupted run takes here: kills are spread over that span.
    began = time.monotonic()
    proc = start_module(
        tree,
        {
            "root": str(tree.root),
            "rotate": "always",
            "age_keyfile": str(tree.keys["alice"].keyfile),
        },
        work,
    )
    out, err = proc.communicate(timeout=120)
    span = time.monotonic() - began
    assert proc.returncode == 0, (out + err).decode()

    killed_midway = killed_while_writing = 0
    for step in range(ITERATIONS):
        context = f"seed {seed}, step {step}"
        proc = start_module(tree, next_args(tree, carol, step), work)
        time.sleep(rng.uniform(0.0, span))  # the fault: picks the moment of the kill
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            killed_midway += 1
        proc.communicate(timeout=120)
        if list(tree.root.rglob(f".*{TEMP_MARKER}*")):
            killed_while_writing += 1
        check_invariants(tree, carol, context)

    # Enough of the kills landed while the module was working for the test to mean something.
    assert killed_midway >= ITERATIONS // 3, f"seed {seed}: only {killed_midway} kills mid-run"
    # ...and some of them while a file was being rewritten (a temp copy was left behind).
    assert killed_while_writing > 0, f"seed {seed}: no kill landed while a file was rewritten"

    # An uninterrupted offboarding of carol finishes the job from whatever state was left.
    args = {
        "root": str(tree.root),
        "rotate": "always",
        "age_keyfile": str(tree.keys["alice"].keyfile),
    }
    if carol.public in (tree.root / ".sops.yaml").read_text():
        args["remove_recipients"] = [carol.public]
    proc = start_module(tree, args, work)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out + err).decode()
    check_invariants(tree, carol, f"seed {seed}, final")
    assert list(tree.root.rglob(f".*{TEMP_MARKER}*")) == []
    # ...and removes what the killed runs left in TMPDIR (sopsy's configuration copies).
    assert leftovers_in(work) == [], f"seed {seed}"
    for rel in tree.plaintext:
        assert not sf.can_decrypt(tree.root / rel, carol, tree.env), f"seed {seed}: {rel}"


# --- item 7: an offboarding killed right after .sops.yaml was written -------------------------


@pytest.mark.parametrize("rerun", ["offboard", "rotate", "onboard", "regenerate"])
def test_offboarding_killed_after_the_config_is_finished_by_any_secrets_playbook(tmp_path, rerun):
    tree = sf.make_tree(tmp_path)
    alice, bob = tree.keys["alice"], tree.keys["bob"]
    work = tmp_path / "work"
    work.mkdir()
    before = {rel: sf.enc_values(tree.root / rel) for rel in tree.plaintext}
    args = {
        "root": str(tree.root),
        "remove_recipients": [bob.public],
        "rotate": "always",
        "age_keyfile": str(alice.keyfile),
    }
    proc = start_module(tree, args, work, kill_at="after-config-written")
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL

    # The state of the bug: bob is gone from .sops.yaml, but every file still lets him in.
    assert bob.public not in (tree.root / ".sops.yaml").read_text()
    for rel in tree.plaintext:
        assert bob.public in parse_sops_file(tree.root / rel).recipients, rel
        assert sf.can_decrypt(tree.root / rel, bob, tree.env), rel
    guard = sf.run_guard(tree)
    assert guard.returncode == 1
    assert "still encrypted to recipient(s)" in guard.stderr
    assert bob.public in guard.stderr

    carol = sf.new_key(tmp_path / "keys", "carol")
    extra = {
        "offboard": {"secrets_recipient": bob.public},
        "rotate": {},
        "onboard": {"secrets_recipient": carol.public},
        "regenerate": {
            "secrets_generated": [
                {"file": "inventories/local/group_vars/all/generated.sops.yml", "keys": ["x"]}
            ]
        },
    }[rerun]
    run = sf.run_playbook(tree, rerun, extra)
    assert run.returncode == 0, run.stdout + run.stderr

    for rel in tree.plaintext:
        assert not sf.can_decrypt(tree.root / rel, bob, tree.env), f"{rerun}: bob reads {rel}"
        assert sf.reads_back(tree, rel, alice), f"{rerun}: {rel}"
        # bob may have kept the data key: the re-run gave every file a new one.
        assert not set(sf.enc_values(tree.root / rel)) & set(before[rel]), f"{rerun}: {rel}"
    assert sf.run_guard(tree).returncode == 0


# --- item 12: what a killed run leaves in the tree and in TMPDIR ------------------------------


def test_leftovers_of_a_killed_run_are_ignored_by_git_and_removed_by_the_next_run(tmp_path):
    tree = sf.make_tree(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    args = {
        "root": str(tree.root),
        "rotate": "always",
        "age_keyfile": str(tree.keys["alice"].keyfile),
    }
    proc = start_module(tree, args, work, kill_at="in-sops-rotate")
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL

    copies = [
        path.relative_to(tree.root).as_posix() for path in tree.root.rglob(f"*{TEMP_MARKER}*")
    ]
    assert copies, "the kill left no temp copy: it did not land inside a re-keying"
    for rel in copies:  # ciphertext to the old recipients: never to be committed
        ignored = subprocess.run(
            ["git", "-C", str(sf.REPO), "check-ignore", "--no-index", "-q", rel], check=False
        )
        assert ignored.returncode == 0, f"git does not ignore {rel}"
    assert leftovers_in(work), "the kill left nothing in TMPDIR: it did not land inside sopsy"

    # The next run, even one limited to other paths, removes all of it.
    proc = start_module(tree, {**args, "paths": ["operations/secrets/local"]}, work)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out + err).decode()
    result = json.loads(out)
    assert sorted(result["stale_temp_files_removed"]) == sorted(copies)
    assert list(tree.root.rglob(f"*{TEMP_MARKER}*")) == []
    assert leftovers_in(work) == []
