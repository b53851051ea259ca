"""The GitHub workflows: scripts/lint-workflows, and what the game pipeline promises.

No GitHub Actions runner is reachable from these machines, so nothing here runs a workflow. What
is checked: the linter passes the committed files and refuses hostile copies (an action pinned by
a tag, no permissions, a schema error, broken YAML) naming file and line; and the game pipeline's
structure - the stages in playbooks/game_ci.yml's order, each job needing the one before it, no
job that runs after a failure, the write permission on the release job alone
(docs/game-pipeline.md).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
LINT = REPO / "scripts" / "lint-workflows"
PIPELINE = REPO / ".github" / "workflows" / "game-pipeline.yml"
CALLER = REPO / "ops" / "github" / "game-repository-pipeline.yml"
DRIFT = REPO / ".github" / "workflows" / "drift-check.yml"
WORKFLOWS = (PIPELINE, CALLER, DRIFT)
TAG_ORDER = ["lint", "test", "export", "manifest"]
PIN = re.compile(r"uses: ([\w./-]+)@([0-9a-f]{40}) # (v\d[\w.]*)$", re.MULTILINE)


def lint(*files: Path, path: str | None = None) -> subprocess.CompletedProcess[str]:
    """scripts/lint-workflows as make lint runs it (the venv's Python), from the repository."""
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, str(LINT), *map(str, files)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def without_actionlint() -> str:
    """PATH without any actionlint: the case of the build machines."""
    return os.pathsep.join(
        folder
        for folder in os.environ.get("PATH", "").split(os.pathsep)
        if folder and not (Path(folder) / "actionlint").exists()
    )


def line_number(text: str, needle: str) -> int:
    """1-based line of the first line holding `needle`."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in the text")


def hostile(tmp_path: Path, source: Path, old: str, new: str) -> tuple[Path, int]:
    """A copy of `source` with the first `old` replaced; (its path, the line of the change)."""
    text = source.read_text()
    assert old in text, old
    changed = text.replace(old, new, 1)
    copy = tmp_path / source.name
    copy.write_text(changed)
    return copy, line_number(text, old.splitlines()[0] if old.strip() else old)


@pytest.fixture(scope="module")
def pipeline() -> dict:
    return yaml.safe_load(PIPELINE.read_text())


@pytest.fixture(scope="module")
def caller() -> dict:
    return yaml.safe_load(CALLER.read_text())


def test_lint_passes_the_committed_workflows():
    result = lint(path=without_actionlint())
    assert result.returncode == 0, result.stdout + result.stderr


def test_lint_says_in_one_line_that_actionlint_is_missing():
    result = lint(PIPELINE, path=without_actionlint())
    notes = [line for line in result.stdout.splitlines() if "actionlint" in line]
    assert len(notes) == 1, result.stdout
    assert "not found" in notes[0]
    assert "docs/game-pipeline.md" in notes[0]


def test_lint_runs_actionlint_when_there_is_one_and_fails_with_it(tmp_path: Path):
    fake = tmp_path / "bin" / "actionlint"
    fake.parent.mkdir()
    log = tmp_path / "args"
    fake.write_text(
        f'#!/bin/sh\necho "$@" > {shlex.quote(str(log))}\necho "game-pipeline.yml:7:9: boom"\n'
        "exit 1\n"
    )
    fake.chmod(0o755)
    result = lint(PIPELINE, path=f"{fake.parent}{os.pathsep}{without_actionlint()}")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "game-pipeline.yml:7:9: boom" in result.stdout
    assert str(PIPELINE) in log.read_text()


def test_lint_refuses_an_action_pinned_by_a_tag(tmp_path: Path):
    old = "uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1"
    copy, line = hostile(tmp_path, PIPELINE, old, "uses: actions/checkout@v7")
    result = lint(copy, path=without_actionlint())
    assert result.returncode == 1
    assert f"{copy}:{line}: uses: actions/checkout@v7 is pinned by 'v7'" in result.stdout


def test_lint_refuses_a_sha_without_its_version(tmp_path: Path):
    old = "uses: actions/cache@27d5ce7f107fe9357f9df03efb73ab90386fccae # v5.0.5"
    new = "uses: actions/cache@27d5ce7f107fe9357f9df03efb73ab90386fccae"
    copy, line = hostile(tmp_path, PIPELINE, old, new)
    result = lint(copy, path=without_actionlint())
    assert result.returncode == 1
    assert f"{copy}:{line}: uses: actions/cache@" in result.stdout
    assert "trailing comment" in result.stdout


def test_lint_refuses_another_unpinned_reusable_workflow(tmp_path: Path):
    old = "uses: studio/mmo-voxel-ops/.github/workflows/game-pipeline.yml@main"
    new = "uses: studio/other/.github/workflows/game-pipeline.yml@main"
    copy, line = hostile(tmp_path, CALLER, old, new)
    result = lint(copy, path=without_actionlint())
    assert result.returncode == 1
    assert f"{copy}:{line}: uses: studio/other/" in result.stdout


def test_lint_lets_through_local_actions_and_the_one_documented_call(tmp_path: Path):
    copy = tmp_path / "local.yml"
    copy.write_text(
        '---\nname: Local\n"on": push\npermissions:\n  contents: read\njobs:\n'
        "  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - uses: ./.github/actions/x\n"
        "  b:\n    uses: studio/mmo-voxel-ops/.github/workflows/game-pipeline.yml@main\n"
    )
    result = lint(copy, path=without_actionlint())
    assert result.returncode == 0, result.stdout + result.stderr


def test_lint_refuses_a_workflow_without_permissions(tmp_path: Path):
    copy, _ = hostile(tmp_path, DRIFT, "permissions:\n  contents: read\n\n", "")
    result = lint(copy, path=without_actionlint())
    assert result.returncode == 1
    # Reported where it belongs: above jobs:.
    line = line_number(copy.read_text(), "jobs:")
    assert f"{copy}:{line}: no top-level `permissions:`" in result.stdout


def test_lint_refuses_a_job_without_runs_on(tmp_path: Path):
    text = PIPELINE.read_text()
    release = text.index("\n  release:\n")
    runs_on = text.index("    runs-on: ubuntu-24.04\n", release)
    copy = tmp_path / PIPELINE.name
    copy.write_text(text[:runs_on] + text[runs_on + len("    runs-on: ubuntu-24.04\n") :])
    result = lint(copy, path=without_actionlint())
    assert result.returncode == 1
    line = line_number(text, "  release:")
    assert f"{copy}:{line}: schema (vendor.github-workflows): $.jobs.release:" in result.stdout
    assert "'runs-on' is a required property" in result.stdout


def test_lint_refuses_an_unknown_event(tmp_path: Path):
    copy, line = hostile(tmp_path, CALLER, "  push:\n", "  pushh:\n")
    result = lint(copy, path=without_actionlint())
    assert result.returncode == 1
    assert f"{copy}:{line}: schema (vendor.github-workflows): $.on:" in result.stdout
    assert "'pushh' was unexpected" in result.stdout


def test_lint_refuses_broken_yaml_with_its_line(tmp_path: Path):
    copy = tmp_path / "broken.yml"
    copy.write_text('---\nname: Broken\n"on": push\njobs:\n  a: [\n')
    result = lint(copy, path=without_actionlint())
    assert result.returncode == 1
    assert f"{copy}:6: YAML:" in result.stdout


def test_lint_says_which_file_does_not_exist(tmp_path: Path):
    result = lint(tmp_path / "absent.yml", path=without_actionlint())
    assert result.returncode == 2
    assert "absent.yml: no such file" in result.stderr


def test_yamllint_strict_passes_the_workflows():
    result = subprocess.run(
        [str(Path(sys.executable).parent / "yamllint"), "--strict", *map(str, WORKFLOWS)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_action_is_pinned_to_the_same_commit_everywhere():
    pins: dict[str, set[tuple[str, str]]] = {}
    for workflow in WORKFLOWS:
        for action, sha, version in PIN.findall(workflow.read_text()):
            repository = "/".join(action.split("/")[:2])  # actions/cache/save is actions/cache
            pins.setdefault(repository, set()).add((sha, version))
    assert set(pins) >= {
        "actions/checkout",
        "actions/setup-python",
        "actions/cache",
        "actions/upload-artifact",
        "actions/download-artifact",
        "chickensoft-games/setup-godot",
    }
    assert all(len(found) == 1 for found in pins.values()), pins


def game_ci_tags(job: dict) -> list[str]:
    tags = []
    for step in job["steps"]:
        run = step.get("run", "")
        if "game-ci" in run:
            args = re.search(r'GAME_CI_ARGS="([^"]*)"', run)
            assert args, step["name"]
            tags += re.findall(r"--tags (\S+)", args[1])
    return tags


def test_pipeline_runs_one_step_per_tag_in_the_pipelines_order(pipeline: dict):
    assert game_ci_tags(pipeline["jobs"]["pipeline"]) == TAG_ORDER


def test_each_stage_runs_make_game_ci_with_the_version_and_godot(pipeline: dict):
    steps = [s for s in pipeline["jobs"]["pipeline"]["steps"] if "game-ci" in s.get("run", "")]
    for step in steps:
        assert step["run"].startswith('make -C ops game-ci GAME="$GAME" GAME_CI_ARGS="')
        assert "-e game_ci_version=$GAME_VERSION" in step["run"]
        assert "-e game_ci_godot=$GODOT" in step["run"]


def test_pipeline_caches_templates_and_imports_and_uploads_build(pipeline: dict):
    steps = pipeline["jobs"]["pipeline"]["steps"]
    names = [s.get("uses", "").split("@")[0] for s in steps]
    godot = steps[names.index("chickensoft-games/setup-godot")]["with"]
    assert godot["include-templates"] is True
    assert godot["cache"] is True
    assert godot["use-dotnet"] is False
    cache = steps[names.index("actions/cache")]["with"]
    assert cache["path"].endswith("/.godot/imported")
    assert "steps.godot.outputs.version" in cache["key"]
    assert "steps.resources.outputs.hash" in cache["key"]
    checkout = steps[names.index("actions/checkout")]["with"]
    assert checkout["lfs"] is True
    upload = names.index("actions/upload-artifact")
    assert upload > max(i for i, s in enumerate(steps) if "game-ci" in s.get("run", ""))
    assert steps[upload]["with"]["if-no-files-found"] == "error"


def needs(job: dict) -> list[str]:
    value = job.get("needs", [])
    return [value] if isinstance(value, str) else list(value)


def test_later_jobs_need_the_earlier_ones(pipeline: dict):
    jobs = pipeline["jobs"]
    assert list(jobs) == ["pipeline", "release", "image", "deploy-staging"]
    assert needs(jobs["pipeline"]) == []
    assert needs(jobs["release"]) == ["pipeline"]
    assert needs(jobs["image"]) == ["pipeline"]
    assert "image" in needs(jobs["deploy-staging"])


def test_jobs_run_when_they_should(pipeline: dict):
    jobs = pipeline["jobs"]
    assert jobs["release"]["if"] == "startsWith(github.ref, 'refs/tags/')"
    assert jobs["image"]["if"] == "startsWith(github.ref, 'refs/tags/') || inputs.deploy-staging"
    assert jobs["deploy-staging"]["if"] == "inputs.deploy-staging"
    assert jobs["deploy-staging"]["environment"] == "staging"


def test_nothing_runs_after_a_failure(pipeline: dict):
    for name, job in pipeline["jobs"].items():
        for where in [job, *job.get("steps", [])]:
            assert "always()" not in str(where.get("if", "")), name
            assert "failure()" not in str(where.get("if", "")), name
            assert where.get("continue-on-error", False) is False, name


def test_only_the_release_job_writes(pipeline: dict, caller: dict):
    assert pipeline["permissions"] == {"contents": "read"}
    writers = [
        name
        for name, job in pipeline["jobs"].items()
        if "write" in str(job.get("permissions", {})) or job.get("permissions") == "write-all"
    ]
    assert writers == ["release"]
    assert pipeline["jobs"]["release"]["permissions"] == {"contents": "write"}
    # The caller grants the most the called workflow may use; it cannot widen it.
    assert caller["permissions"] == {"contents": "read"}
    assert caller["jobs"]["pipeline"]["permissions"] == {"contents": "write"}


def test_release_uses_gh_on_the_built_tag(pipeline: dict):
    runs = " ".join(s.get("run", "") for s in pipeline["jobs"]["release"]["steps"])
    assert 'gh release create "$GITHUB_REF_NAME"' in runs
    assert "--verify-tag" in runs
    assert "sha256sum --check" in runs
    assert all(
        not s.get("uses", "").startswith(("softprops/", "ncipollo/"))
        for s in pipeline["jobs"]["release"]["steps"]
    )


def test_image_and_deploy_take_the_release_and_the_staging_inventory(pipeline: dict):
    image = " ".join(s.get("run", "") for s in pipeline["jobs"]["image"]["steps"])
    assert "ansible-playbook playbooks/server_image.yml -i inventories/staging" in image
    deploy = " ".join(s.get("run", "") for s in pipeline["jobs"]["deploy-staging"]["steps"])
    assert "ansible-playbook deploy.yml -i inventories/staging" in deploy
    for text in (image, deploy):
        assert "-e server_build_source=release" in text
        assert '-e server_build_release_manifest="$GAME/build/release.json"' in text


def test_secrets_reach_steps_through_env_only(pipeline: dict):
    for job in pipeline["jobs"].values():
        for step in job["steps"]:
            assert "secrets." not in step.get("run", ""), step["name"]
    image = {s["name"]: s for s in pipeline["jobs"]["image"]["steps"]}
    assert image["Build and push the server image"]["env"]["SOPS_AGE_KEY"] == (
        "${{ secrets.SOPS_AGE_KEY }}"
    )
    deploy = {s["name"]: s for s in pipeline["jobs"]["deploy-staging"]["steps"]}
    key_env = deploy["Install the SSH key for staging"]["env"]
    assert key_env["DEPLOY_SSH_PRIVATE_KEY"] == "${{ secrets.DEPLOY_SSH_PRIVATE_KEY }}"
    # The SSH key is installed by the approved deploy job only.
    for name in ("pipeline", "release", "image"):
        text = yaml.safe_dump(pipeline["jobs"][name])
        assert "DEPLOY_SSH" not in text, name


def test_reusable_workflow_interface(pipeline: dict):
    call = pipeline["on"]["workflow_call"]
    inputs = call["inputs"]
    assert inputs["godot-version"]["default"] == "4.6"
    assert inputs["ops-ref"]["default"] == "main"
    assert inputs["project-path"]["default"] == "."
    assert inputs["deploy-staging"]["type"] == "boolean"
    assert inputs["deploy-staging"]["default"] is False
    assert inputs["ops-repository"]["default"] == "${{ github.repository_owner }}/mmo-voxel-ops"
    assert set(call["secrets"]) >= {
        "SOPS_AGE_KEY",
        "DEPLOY_SSH_PRIVATE_KEY",
        "DEPLOY_SSH_KNOWN_HOSTS",
    }
    assert all(secret["required"] is False for secret in call["secrets"].values())
    assert "github.ref" in pipeline["concurrency"]["group"]


def test_caller_triggers_and_call(caller: dict):
    on = caller["on"]
    assert on["push"] == {"branches": ["main"], "tags": ["v*"]}
    assert "pull_request" in on
    assert on["workflow_dispatch"]["inputs"]["deploy-staging"]["type"] == "boolean"
    (job,) = caller["jobs"].values()
    assert job["uses"] == "studio/mmo-voxel-ops/.github/workflows/game-pipeline.yml@main"
    assert job["secrets"] == "inherit"
    assert set(job["with"]) <= set(
        yaml.safe_load(PIPELINE.read_text())["on"]["workflow_call"]["inputs"]
    )
    # The same concurrency group in caller and callee would make the call wait for itself.
    assert "concurrency" not in caller
