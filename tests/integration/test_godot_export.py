"""mmo_voxel.ops.godot_export through ansible-playbook against the real Godot 3 headless binary.

Order as in collection integration tests: check mode, apply, apply again (no change), change an
input (export again); then the errors an ops person meets first. The fixture project is copied to
a temporary directory and Godot runs with a temporary HOME (its editor settings, caches and the
export templates lookup live there).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from system_tools import require_tools

GODOT3 = shutil.which("godot3-server")

pytestmark = [pytest.mark.slow]


@pytest.fixture(autouse=True)
def _godot3_installed() -> None:
    require_tools("godot3-server", GODOT3)


FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "godot3_project"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    shutil.copytree(FIXTURE, path)
    return path


@pytest.fixture
def run_tasks(tmp_path: Path, ansible_env: dict[str, str], ansible_playbook: str) -> Any:
    """Run tasks in a local play; return ({task name: localhost result}, exit code)."""
    home = tmp_path / "home"
    home.mkdir()
    counter = iter(range(100))

    def run(tasks: list[dict[str, Any]], check: bool = False) -> tuple[dict[str, Any], int]:
        n = next(counter)
        results_file = tmp_path / f"results{n}.json"
        registered = [{**task, "register": f"result_{i}"} for i, task in enumerate(tasks)]
        collected = ", ".join(f"{task['name']!r}: result_{i}" for i, task in enumerate(tasks))
        record = {
            "name": "Record the results",
            "ansible.builtin.copy": {
                "content": "{{ {" + collected + "} | to_json }}",
                "dest": str(results_file),
                "mode": "0644",
            },
            "check_mode": False,
        }
        play = [
            {
                "name": "Exercise godot_export",
                "hosts": "localhost",
                "gather_facts": False,
                "environment": {"HOME": str(home)},
                "tasks": [*registered, record],
            }
        ]
        playbook = tmp_path / f"play{n}.yml"
        playbook.write_text(json.dumps(play))  # JSON is YAML
        env = {**ansible_env, "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp")}
        argv = [
            ansible_playbook,
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            str(playbook),
        ]
        if check:
            argv.append("--check")
        proc = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        if not results_file.exists():
            pytest.fail(f"the play did not finish:\n{proc.stdout}\n{proc.stderr}")
        return json.loads(results_file.read_text()), proc.returncode

    run.home = home  # type: ignore[attr-defined]
    return run


def export_task(name: str, **args: Any) -> dict[str, Any]:
    return {"name": name, "mmo_voxel.ops.godot_export": args}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_pack_export_check_apply_repeat_and_change(project: Path, run_tasks: Any) -> None:
    out = project.parent / "out" / "server.pck"
    task = [export_task("Export", project_path=str(project), preset="Linux/X11", mode="pack",
                        output=str(out))]  # fmt: skip

    # Check mode: says an export would run, runs nothing.
    results, code = run_tasks(task, check=True)
    check = results["Export"]
    assert code == 0, check
    assert check["changed"] is True
    assert check["command"] == [
        GODOT3, "--path", str(project), "--export-pack", "Linux/X11", str(out)
    ]  # fmt: skip
    assert check["engine_version"] == "3.2.3.stable.custom_build"
    assert check["sha256"] is None
    assert not out.parent.exists()

    # Apply: the artifact exists and the returned checksum is its checksum.
    results, code = run_tasks(task)
    first = results["Export"]
    assert code == 0, first
    assert first["changed"] is True
    assert first["artifact"] == str(out)
    assert first["sha256"] == sha256(out)
    assert first["size"] == out.stat().st_size > 0
    assert (out.parent / "server.pck.inputs.sha256").read_text().strip() == first["inputs_hash"]
    assert sorted(p.name for p in out.parent.iterdir()) == (  # no temporary export directory left
        ["server.pck", "server.pck.inputs.sha256"]
    )
    mtime = out.stat().st_mtime_ns

    # Apply again: inputs unchanged, nothing runs.
    results, code = run_tasks(task)
    again = results["Export"]
    assert code == 0, again
    assert again["changed"] is False
    assert "inputs unchanged" in again["skipped_reason"]
    assert again["inputs_hash"] == first["inputs_hash"]
    assert again["sha256"] == first["sha256"]
    assert out.stat().st_mtime_ns == mtime

    # A changed project file makes it export again.
    with (project / "main.gd").open("a") as script:
        script.write("\n# changed\n")
    results, code = run_tasks(task)
    changed = results["Export"]
    assert code == 0, changed
    assert changed["changed"] is True
    assert changed["inputs_hash"] != first["inputs_hash"]
    assert changed["sha256"] == sha256(out)


def test_release_export_with_custom_template_and_default_output(
    project: Path, run_tasks: Any
) -> None:
    # machine-notes: a full --export works when custom_template/release is the godot3-server binary.
    presets = project / "export_presets.cfg"
    presets.write_text(
        presets.read_text().replace(
            'custom_template/release=""', f'custom_template/release="{GODOT3}"', 1
        )
    )
    task = [export_task("Export", project_path=str(project), preset="Linux/X11")]

    results, code = run_tasks(task)
    result = results["Export"]

    assert code == 0, result
    artifact = project / "build" / "fixture.x86_64"  # the preset's export_path
    assert result["artifact"] == str(artifact)
    assert result["command"][3] == "--export"
    assert result["sha256"] == sha256(artifact)
    assert (project / "build" / "fixture.pck").stat().st_size > 0  # Godot's companion pack
    results, code = run_tasks(task)
    assert code == 0
    assert results["Export"]["changed"] is False


def test_errors_name_the_presets_and_the_missing_templates(project: Path, run_tasks: Any) -> None:
    out = project.parent / "out" / "game.x86_64"
    tasks = [
        {**export_task("Unknown preset", project_path=str(project), preset="Windows",
                       mode="pack", output=str(out)), "ignore_errors": True},
        {**export_task("Missing templates", project_path=str(project), preset="Linux/X11",
                       mode="release", output=str(out)), "ignore_errors": True},
    ]  # fmt: skip

    results, _ = run_tasks(tasks)

    unknown = results["Unknown preset"]
    assert unknown["failed"] is True
    assert unknown["msg"] == (
        f"export preset 'Windows' not found in {project / 'export_presets.cfg'};"
        " available presets: 'Linux/X11', 'Server Pack'"
    )
    missing = results["Missing templates"]
    assert missing["failed"] is True
    expected = run_tasks.home / ".local/share/godot/templates/3.2.3.stable/linux_x11_64_release"
    assert f"{expected} is missing" in missing["msg"]
    assert not out.parent.exists()  # nothing was written
