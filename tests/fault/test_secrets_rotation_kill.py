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

from ansible_collections.mmo_voxel.ops.plugins.module_utils import sops_keys as sk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import secrets_fixtures as sf

pytestmark = pytest.mark.slow

MODULE = sf.REPO / "plugins" / "modules" / "sops_recipients.py"
PYTHON = str(sf.VENV_BIN / "python") if (sf.VENV_BIN / "python").exists() else sys.executable
ITERATIONS = 30


def start_module(tree: sf.SecretTree, args: dict, workdir: Path) -> subprocess.Popen:
    args_file = workdir / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = dict(tree.env)
    env["PYTHONPATH"] = str(sf.REPO / "collections")
    # sopsy's config copies of a killed run stay behind: keep them in the test's temp dir.
    env["TMPDIR"] = str(workdir)
    return subprocess.Popen(
        [PYTHON, str(MODULE), str(args_file)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: the kill takes the sops children too
    )


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
        meta = sk.parse_sops_file(path)
        assert meta.encrypted, f"{context}: {rel} is not a complete sops file"
        assert team <= set(meta.recipients) <= team | {carol.public}, f"{context}: {rel}"
        for who in ("alice", "bob"):
            got = sf.decrypt(path, tree.keys[who], tree.env)
            assert sf.plaintext_equal(rel, got, tree), f"{context}: {who} cannot decrypt {rel}"
    config = sk.SopsConfig.load(tree.root / ".sops.yaml")
    config.validate()
    for rule in config.rules:
        assert team <= set(rule.recipients), f"{context}: .sops.yaml lost a team member"
    sk.load_ledger(tree.root / ".sops-rotation.yml")  # parses (or is absent)
    for path in tree.root.rglob(f".*{sk.TEMP_MARKER}*"):
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
        time.sleep(rng.uniform(0.0, span))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            killed_midway += 1
        proc.communicate(timeout=120)
        if list(tree.root.rglob(f".*{sk.TEMP_MARKER}*")):
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
    assert list(tree.root.rglob(f".*{sk.TEMP_MARKER}*")) == []
    for rel in tree.plaintext:
        assert sf.decrypt(tree.root / rel, carol, tree.env) is None, f"seed {seed}: {rel}"
