"""Checks of the drift check's CI definitions, whose real runs need what these machines lack.

.github/workflows/drift-check.yml (GitHub Actions) and execution-environment.yml
(ansible-builder v3): what the rest of the repository relies on them to do. The execution
environment's build context is made for real (`ansible-builder create` pulls nothing); its
image build needs the CentOS Stream base image and Galaxy, out of reach here.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from documented_commands import run_documented

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "drift-check.yml"
EE = REPO / "execution-environment.yml"


def pins() -> dict[str, str]:
    """name -> version of every `name==version` line of constraints.txt."""
    found = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)$", line.strip())
        if match:
            found[match[1].lower()] = match[2]
    return found


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


@pytest.fixture(scope="module")
def steps(workflow: dict) -> dict[str, dict]:
    return {step["name"]: step for step in workflow["jobs"]["drift-check"]["steps"]}


def test_workflow_runs_on_a_schedule_and_by_hand(workflow: dict) -> None:
    # `on` must be quoted in the file: YAML 1.1 reads a bare `on` as the boolean true.
    assert "on" in workflow, "the `on:` key must be quoted"
    triggers = workflow["on"]
    crons = [entry["cron"] for entry in triggers["schedule"]]
    assert crons
    assert all(len(cron.split()) == 5 for cron in crons)
    assert "workflow_dispatch" in triggers
    assert workflow["permissions"] == {"contents": "read"}
    assert workflow["concurrency"]["cancel-in-progress"] is False


def test_workflow_checks_out_makes_the_venv_and_runs_the_wrapper(steps: dict) -> None:
    names = list(steps)
    assert steps[names[0]]["uses"].startswith("actions/checkout@")
    assert steps["Make the venv"]["run"].strip() == "make venv"
    run = steps["Run the drift check"]
    assert "scripts/drift-check" in run["run"]
    assert '--report-dir "$REPORT_DIR"' in run["run"]
    # The exit code is recorded, not acted on, so the report is uploaded in every case.
    assert 'echo "exit=$rc" >> "$GITHUB_OUTPUT"' in run["run"]
    assert names.index("Make the venv") < names.index("Run the drift check")


def test_secrets_come_from_github_secrets_only(steps: dict) -> None:
    env = steps["Run the drift check"]["env"]
    assert env["SOPS_AGE_KEY"] == "${{ secrets.SOPS_AGE_KEY }}"
    assert env["DRIFT_DISCORD_WEBHOOK"] == "${{ secrets.DRIFT_DISCORD_WEBHOOK }}"
    key_env = steps["Install the SSH key for the fleet"]["env"]
    assert key_env["DRIFT_SSH_PRIVATE_KEY"] == "${{ secrets.DRIFT_SSH_PRIVATE_KEY }}"
    # No secret is expanded straight into a shell line (it would be echoed on error).
    for step in steps.values():
        assert "secrets." not in step.get("run", ""), step["name"]


def test_report_is_uploaded_and_history_kept_whatever_the_result(steps: dict) -> None:
    upload = steps["Upload the report"]
    assert upload["uses"].startswith("actions/upload-artifact@")
    assert upload["if"] == "always()"
    assert upload["with"]["path"] == ".cache/drift/"
    save = steps["Keep the report history for the next run"]
    assert save["if"] == "always()"
    restore = steps["Restore the report history of earlier runs"]
    assert restore["with"]["path"] == save["with"]["path"] == ".cache/drift"
    assert restore["with"]["restore-keys"] == "drift-history-"


def test_drift_annotates_and_error_fails(steps: dict) -> None:
    annotate = steps["Annotate drift"]
    assert annotate["if"] == "steps.drift.outputs.exit == '2'"
    assert "::warning" in annotate["run"]
    assert "exit 1" not in annotate["run"]
    fail = steps["Fail on an error of the check"]
    assert fail["if"] == "steps.drift.outputs.exit != '0' && steps.drift.outputs.exit != '2'"
    assert "::error" in fail["run"]
    assert fail["run"].rstrip().endswith("exit 1")


def test_workflow_python_matches_the_project(steps: dict) -> None:
    assert steps["Set up Python 3.11"]["with"]["python-version"] == "3.11"


@pytest.fixture(scope="module")
def ee() -> dict:
    return yaml.safe_load(EE.read_text())


def test_execution_environment_is_ansible_builder_v3(ee: dict) -> None:
    assert ee["version"] == 3
    assert ee["images"]["base_image"]["name"]
    deps = ee["dependencies"]
    assert set(deps) <= {
        "python_interpreter",
        "ansible_core",
        "ansible_runner",
        "galaxy",
        "python",
        "system",
        "exclude",
    }
    assert deps["python_interpreter"]["python_path"].endswith("python3.11")
    assert (REPO / deps["galaxy"]).is_file()
    assert all(isinstance(line, str) for line in deps["python"] + deps["system"])


def test_execution_environment_pins_match_constraints(ee: dict) -> None:
    constraints = pins()
    deps = ee["dependencies"]
    core = deps["ansible_core"]["package_pip"]
    assert core == f"ansible-core=={constraints['ansible-core']}"
    runner = deps["ansible_runner"]["package_pip"]
    assert runner == f"ansible-runner=={constraints['ansible-runner']}"
    for requirement in deps["python"]:
        if "==" in requirement:
            name, version = requirement.split("==")
            assert constraints.get(name.lower()) == version, requirement


def test_execution_environment_matches_ansible_builder_schema(ee: dict) -> None:
    """The ansible-builder v3 JSON schema that ansible-lint ships."""
    jsonschema = pytest.importorskip("jsonschema")
    schemas = pytest.importorskip("ansiblelint.schemas")
    schema_file = Path(schemas.__file__).parent / "execution-environment.json"
    schema = json.loads(schema_file.read_text())
    jsonschema.validate(ee, schema)


def test_ansible_builder_create_makes_the_build_context(ee: dict) -> None:
    """docs/drift-check.md's command, as written: the Containerfile and the inputs it copies."""
    context = REPO / ".cache" / "ee-context"
    shutil.rmtree(context, ignore_errors=True)
    try:
        result = run_documented(
            "ansible-builder create -f execution-environment.yml -c .cache/ee-context"
        )
        assert result.returncode == 0, result.stdout + result.stderr
        # Named after the engine ansible-builder finds: Containerfile (Podman), Dockerfile.
        named = [context / name for name in ("Containerfile", "Dockerfile")]
        containerfile = "".join(path.read_text() for path in named if path.is_file())
        build = context / "_build"
        requirements_yml = (build / "requirements.yml").read_text()
        python = (build / "requirements.txt").read_text().split()
        system = (build / "bindep.txt").read_text().splitlines()
    finally:
        shutil.rmtree(context, ignore_errors=True)
    deps = ee["dependencies"]
    base = ee["images"]["base_image"]["name"]
    assert f'ARG EE_BASE_IMAGE="{base}"' in containerfile
    assert f'ARG PYCMD="{deps["python_interpreter"]["python_path"]}"' in containerfile
    refs = f"{deps['ansible_core']['package_pip']} {deps['ansible_runner']['package_pip']}"
    assert f'ARG ANSIBLE_INSTALL_REFS="{refs}"' in containerfile
    # The collections come from the repository's own list, the Python and system packages
    # from the file's lists, unchanged.
    assert requirements_yml == (REPO / deps["galaxy"]).read_text()
    assert python == deps["python"]
    assert system == deps["system"]
    # The step appended to the final stage is there, after the final FROM.
    final = containerfile[containerfile.rindex("FROM base AS final") :]
    for step in ee["additional_build_steps"]["append_final"]:
        assert step in final
