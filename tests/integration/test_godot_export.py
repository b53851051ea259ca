"""mmo_voxel.ops.godot_export through ansible-playbook against the real Godot 3 headless binary.

Order as in collection integration tests: check mode, apply, apply again (no change), change an
input (export again); then the errors an ops person meets first. The fixture project is copied to
a temporary directory and Godot runs with a temporary HOME (its editor settings, caches and the
export templates lookup live there).

The fixture's main.tscn shows icon.png, a resource Godot must import: each copy starts as a fresh
clone (no .import/), so the exported pack's file table tells whether the texture was imported.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import struct
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


def pck_files(path: Path) -> dict[str, str]:
    """The file table of a Godot 3 .pck: {res:// path: md5 hex of the stored file}.

    Pack format 1, little-endian: magic "GDPC", format version, engine major, minor, patch
    (uint32 each), 16 reserved uint32, file count (uint32); then per file the path length (uint32,
    padded to 4), the path (NUL-padded), offset and size (uint64 each) and md5 (16 bytes).
    """
    data = path.read_bytes()
    assert data[:4] == b"GDPC", f"{path} is not a Godot pack"
    assert struct.unpack_from("<4I", data, 4) == (1, 3, 2, 3)  # format 1, written by 3.2.3
    pos = 4 + 4 * 4 + 16 * 4
    (count,) = struct.unpack_from("<I", data, pos)
    pos += 4
    files: dict[str, str] = {}
    for _ in range(count):
        (length,) = struct.unpack_from("<I", data, pos)
        name = data[pos + 4 : pos + 4 + length].rstrip(b"\0").decode()
        pos += 4 + length + 16  # path, then offset and size
        files[name] = data[pos : pos + 16].hex()
        pos += 16
    return files


# What Godot 3 makes of icon.png: the .import sidecar and the texture in .import/.
TEXTURE_RE = re.compile(r"res://\.import/icon\.png-[0-9a-f]{32}\.stex")


def imported_texture(files: dict[str, str]) -> str:
    """The pack path of the imported icon texture (fails when the pack has none)."""
    (texture,) = [name for name in files if TEXTURE_RE.fullmatch(name)]
    assert "res://icon.png.import" in files
    return texture


# Runs godot3-server, logging each call and whether the project had .import/ when it started.
LOGGING_GODOT = """#!{python}
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
project = Path(args[args.index("--path") + 1]) if "--path" in args else None
with open({log!r}, "a") as log:
    cache = bool(project and (project / ".import").is_dir())
    log.write(json.dumps({{"args": args, "import_cache": cache}}) + "\\n")
os.execv({godot!r}, [{godot!r}, *args])
"""


def logging_godot(tmp_path: Path) -> tuple[Path, Path]:
    """A godot_binary that logs its calls: (wrapper, log)."""
    wrapper, log = tmp_path / "godot-logged", tmp_path / "godot-calls.jsonl"
    wrapper.write_text(LOGGING_GODOT.format(python=sys.executable, log=str(log), godot=GODOT3))
    wrapper.chmod(0o755)
    return wrapper, log


def godot_calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


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
    # A fresh clone: the import pass is planned, not run.
    assert check["imported"] is False
    assert check["import_command"] == [
        GODOT3, "--path", str(project), "--export-pack", "Linux/X11",
        "<temporary directory>/import-pass.pck",
    ]  # fmt: skip
    assert check["import_reason"] == f"no import cache ({project / '.import'} does not exist)"
    assert not out.parent.exists()
    assert not (project / ".import").exists()

    # Apply: the import pass, then the export; the artifact exists and the returned checksum is
    # its checksum; the pack holds the imported texture.
    results, code = run_tasks(task)
    first = results["Export"]
    assert code == 0, first
    assert first["changed"] is True
    assert first["imported"] is True
    throwaway = Path(first["import_command"][-1])
    assert first["import_command"][:-1] == check["import_command"][:-1]
    assert throwaway.name == "import-pass.pck"
    assert not throwaway.parent.exists()  # Godot 3's throwaway pack is gone
    texture = imported_texture(pck_files(out))
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
    assert again["imported"] is False
    assert "inputs unchanged" in again["skipped_reason"]
    assert again["inputs_hash"] == first["inputs_hash"]
    assert again["sha256"] == first["sha256"]
    assert out.stat().st_mtime_ns == mtime

    # A changed project file makes it export again, without an import pass: the cache is there.
    with (project / "main.gd").open("a") as script:
        script.write("\n# changed\n")
    results, code = run_tasks(task)
    changed = results["Export"]
    assert code == 0, changed
    assert changed["changed"] is True
    assert changed["imported"] is False
    assert changed["import_reason"] == f"import cache present ({project / '.import'})"
    assert imported_texture(pck_files(out)) == texture
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


def test_never_on_a_fresh_copy_leaves_the_import_to_godot3s_export(
    project: Path, tmp_path: Path, run_tasks: Any
) -> None:
    """import_first=never: no pass, and Godot 3 imports by itself during the export.

    What this shows about Godot 3.2.3: an export from a copy without .import/ waits for the
    editor's filesystem scan and imports what it finds, so the pack holds the texture anyway (by
    hand, the pack was byte-identical to one exported after the pass). The pass matters for
    Godot 4, whose exports from a fresh clone can be broken.
    """
    godot, log = logging_godot(tmp_path)
    out = project.parent / "out" / "server.pck"
    task = [export_task("Export", project_path=str(project), preset="Linux/X11", mode="pack",
                        output=str(out), godot_binary=str(godot),
                        import_first="never")]  # fmt: skip

    results, code = run_tasks(task)

    result = results["Export"]
    assert code == 0, result
    assert result["imported"] is False
    assert result["import_command"] is None
    assert result["import_reason"] == "import_first=never"
    version, export = godot_calls(log)  # no third call: no import pass
    assert version["args"] == ["--version"]
    assert export["args"][2] == "--export-pack"
    assert export["import_cache"] is False  # the export started without .import/ ...
    files = pck_files(out)
    texture = imported_texture(files)  # ... and still packed the imported texture
    stored = project / texture.removeprefix("res://")
    assert files[texture] == hashlib.md5(stored.read_bytes()).hexdigest()  # noqa: S324 - pck's md5


def test_a_corrupt_texture_fails_the_import_pass_and_the_export(
    project: Path, run_tasks: Any
) -> None:
    """Godot 3 exits 0 after `Error importing 'res://icon.png'`; the module fails instead."""
    (project / "icon.png").write_bytes(b"not a png")
    out = project.parent / "out" / "server.pck"
    tasks = [
        {**export_task("Auto", project_path=str(project), preset="Linux/X11", mode="pack",
                       output=str(out)), "ignore_errors": True},
        # The failed pass left .import/ behind: the export's own import fails the same way.
        {**export_task("Again", project_path=str(project), preset="Linux/X11", mode="pack",
                       output=str(out)), "ignore_errors": True},
    ]  # fmt: skip

    results, _ = run_tasks(tasks)

    auto = results["Auto"]
    assert auto["failed"] is True
    assert auto["msg"].startswith(
        f"Godot import pass of project {project} failed (exit 0, could not import res://icon.png): "
    )
    assert "ERROR: _reimport_file: Error importing 'res://icon.png'." in auto["msg"]
    assert "locale" not in auto["msg"]
    again = results["Again"]
    assert again["failed"] is True
    assert again["msg"].startswith(
        "Godot export of preset 'Linux/X11' failed (exit 0, could not import res://icon.png): "
    )
    assert not out.exists()
    assert not (out.parent / "server.pck.inputs.sha256").exists()
