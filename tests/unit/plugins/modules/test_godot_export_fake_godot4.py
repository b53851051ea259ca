"""mmo_voxel.ops.godot_export in-process, with a fake Godot 4 binary (no Godot 4 is obtainable).

The fake prints a Godot 4 version, records the argv it was called with, creates .godot/imported/
when asked to import and writes the file it was asked to export; so these tests cover the module's
Godot 4 path (templates lookup, import pass, command, skip, failure handling). The real engine is
exercised with Godot 3 in tests/integration/test_godot_export.py.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

from ansible_collections.mmo_voxel.ops.plugins.modules import godot_export

FAKE_GODOT = """#!{python}
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
if args == ["--version"]:
    print(os.environ.get("FAKE_GODOT_VERSION", "4.6.stable.official.abc123"))
    sys.exit(0)
Path(os.environ["FAKE_GODOT_LOG"]).open("a").write(json.dumps(args) + "\\n")
project = Path(args[args.index("--path") + 1])
if "--import" in args or "--editor" in args:
    broken = os.environ.get("FAKE_GODOT_IMPORT_BREAK")
    if broken == "error":  # as Godot does: report the resource, go on, exit 0
        print("ERROR: Error importing 'res://icon.png'.", file=sys.stderr)
        print("   at: _reimport_file (editor/editor_file_system.cpp:2768)", file=sys.stderr)
        sys.exit(0)
    if broken == "crash":
        print("ERROR: Condition \\"!f\\" is true.", file=sys.stderr)
        print("handle_crash: Program crashed with signal 11", file=sys.stderr)
        sys.exit(134)
    (project / ".godot" / "imported").mkdir(parents=True, exist_ok=True)
    sys.exit(0)
if os.environ.get("FAKE_GODOT_BREAK") == "import":  # the export's own import fails, export goes on
    print("ERROR: Error importing 'res://icon.png'.", file=sys.stderr)
elif os.environ.get("FAKE_GODOT_BREAK") == "1":
    print("ERROR: set_locale: Unsupported locale 'C', falling back to 'en'.", file=sys.stderr)
    print("ERROR: Cannot export project with preset: template missing", file=sys.stderr)
    sys.exit(0)  # like Godot 3: a failed export that exits 0
out = Path(args[-1])
out.write_bytes((project / "main.gd").read_bytes() + args[-3].encode())
out.with_suffix(".pck").write_bytes(b"pack")
"""

PRESETS = """[preset.0]

name="Linux Server"
platform="Linux"
export_path="build/server.x86_64"

[preset.0.options]

custom_template/debug=""
custom_template/release=""
binary_format/architecture="x86_64"
"""


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    home = tmp_path / "home"
    home.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    godot = bin_dir / "godot"
    godot.write_text(FAKE_GODOT.format(python=sys.executable))
    godot.chmod(0o755)
    project = tmp_path / "project"
    project.mkdir()
    (project / "project.godot").write_text('config_version=5\n[application]\nconfig/name="x"\n')
    (project / "main.gd").write_text("extends Node\n")
    (project / "export_presets.cfg").write_text(PRESETS)
    # Imported already (a CI cache of .godot/imported restored): only the import tests remove it.
    (project / ".godot" / "imported").mkdir(parents=True)
    log = tmp_path / "godot.log"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_GODOT_LOG", str(log))
    return {"home": home, "godot": godot, "project": project, "log": log}


def run_module(capsys: pytest.CaptureFixture[str], **args: Any) -> dict[str, Any]:
    with patch_module_args(args), pytest.raises(SystemExit):
        godot_export.main()
    return json.loads(capsys.readouterr().out)


def install_templates(home: Path) -> Path:
    templates = home / ".local/share/godot/export_templates/4.6.stable"
    templates.mkdir(parents=True)
    (templates / "linux_release.x86_64").write_bytes(b"template")
    return templates


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_documentation_matches_the_argument_spec() -> None:
    options = yaml.safe_load(godot_export.DOCUMENTATION)["options"]
    spec = godot_export.ARGUMENT_SPEC

    assert set(options) == set(spec)
    for name, option in spec.items():
        documented = options[name]
        for key in ("type", "default", "choices", "elements"):
            assert documented.get(key) == option.get(key), (name, key)
        assert documented.get("required", False) == option.get("required", False), name
    yaml.safe_load(godot_export.EXAMPLES)
    assert yaml.safe_load(godot_export.RETURN)["command"]["type"] == "list"


def test_release_export_needs_templates_of_the_exact_version(
    env: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_module(capsys, project_path=str(env["project"]), preset="Linux Server")

    expected = env["home"] / ".local/share/godot/export_templates/4.6.stable/linux_release.x86_64"
    assert result["failed"] is True
    assert f"{expected} is missing" in result["msg"]
    assert calls(env["log"]) == []


def test_godot4_export_runs_then_skips_then_reruns_on_change(
    env: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    install_templates(env["home"])
    project = env["project"]
    artifact = project / "build" / "server.x86_64"
    args = {"project_path": str(project), "preset": "Linux Server"}

    first = run_module(capsys, **args)

    assert first["changed"] is True
    assert first["artifact"] == str(artifact)
    assert first["engine_version"] == "4.6.stable.official.abc123"
    assert first["command"] == [
        str(env["godot"]), "--headless", "--path", str(project),
        "--export-release", "Linux Server", str(artifact),
    ]  # fmt: skip
    (called,) = calls(env["log"])
    assert called[:-1] == first["command"][1:-1]
    assert Path(called[-1]).name == "server.x86_64"  # exported into a temporary directory first
    assert artifact.read_bytes() == b"extends Node\n--export-release"
    assert (project / "build" / "server.pck").read_bytes() == b"pack"  # companion moved too
    assert sorted(p.name for p in artifact.parent.iterdir()) == [
        "server.pck", "server.x86_64", "server.x86_64.inputs.sha256"
    ]  # fmt: skip

    second = run_module(capsys, **args)
    assert second["changed"] is False
    assert second["sha256"] == first["sha256"]
    assert len(calls(env["log"])) == 1

    forced = run_module(capsys, **args, force=True)
    assert forced["changed"] is True
    assert len(calls(env["log"])) == 2

    (project / "main.gd").write_text("extends Node2D\n")
    changed = run_module(capsys, **args)
    assert changed["changed"] is True
    assert changed["sha256"] != first["sha256"]


def test_check_mode_reports_the_export_and_runs_nothing(
    env: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = env["project"].parent / "out" / "game.pck"

    result = run_module(
        capsys,
        project_path=str(env["project"]),
        preset="Linux Server",
        mode="pack",
        output=str(out),
        _ansible_check_mode=True,
        _ansible_diff=True,
    )

    assert result["changed"] is True
    assert result["command"][4] == "--export-pack"
    assert result["sha256"] is None
    assert "inputs_hash: " + result["inputs_hash"] in result["diff"]["after"]
    assert calls(env["log"]) == []
    assert not out.parent.exists()


def test_failed_export_that_exits_zero_fails_and_keeps_the_old_artifact(
    env: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = env["project"].parent / "out" / "game.pck"
    args = {"project_path": str(env["project"]), "preset": "Linux Server", "mode": "pack"}
    assert run_module(capsys, **args, output=str(out))["changed"] is True
    before = out.read_bytes()
    (env["project"] / "main.gd").write_text("extends Node3D\n")
    monkeypatch.setenv("FAKE_GODOT_BREAK", "1")

    result = run_module(capsys, **args, output=str(out))

    assert result["failed"] is True
    assert "artifact not written" in result["msg"]
    assert "ERROR: Cannot export project with preset: template missing" in result["msg"]
    assert "locale" not in result["msg"]
    assert out.read_bytes() == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["game.pck", "game.pck.inputs.sha256"]


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("no_project", {}, "is not a Godot project (no project.godot)"),
        ("no_presets", {}, "export_presets.cfg does not exist; create the export presets"),
        ("none", {"godot_binary": "/nonexistent/godot"}, "/nonexistent/godot does not exist"),
        ("no_godot", {}, "no Godot binary found on PATH (looked for godot, godot4"),
        ("none", {"timeout": 0}, "timeout must be a positive number of seconds, got 0"),
    ],
)
def test_readable_failures(
    env: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    setup: str,
    args: dict[str, Any],
    message: str,
) -> None:
    if setup == "no_project":
        (env["project"] / "project.godot").unlink()
    elif setup == "no_presets":
        (env["project"] / "export_presets.cfg").unlink()
    elif setup == "no_godot":
        monkeypatch.setenv("PATH", str(tmp_path / "empty"))
        assert shutil.which("godot") is None

    result = run_module(
        capsys, project_path=str(env["project"]), preset="Linux Server", mode="pack", **args
    )

    assert result["failed"] is True
    assert message in result["msg"]


# --------------------------------------------------------------------------------------------
# Import pass
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("version", "import_flags"),
    [
        ("4.6.stable.official.abc123", ["--import"]),
        ("4.2.2.stable.official.15073afe3", ["--import"]),
        ("4.2.1.stable.official.b09f793f5", ["--editor", "--quit-after", "1000"]),
    ],
)
def test_fresh_project_is_imported_before_the_export(
    env: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    version: str,
    import_flags: list[str],
) -> None:
    monkeypatch.setenv("FAKE_GODOT_VERSION", version)
    project = env["project"]
    shutil.rmtree(project / ".godot")  # a fresh clone
    args = {"project_path": str(project), "preset": "Linux Server", "mode": "pack"}

    first = run_module(capsys, **args)

    import_command = [str(env["godot"]), "--headless", "--path", str(project), *import_flags]
    assert first["changed"] is True
    assert first["imported"] is True
    assert first["import_command"] == import_command
    assert first["import_reason"] == (
        f"no import cache ({project / '.godot' / 'imported'} does not exist)"
    )
    imported, exported = calls(env["log"])
    assert imported == import_command[1:]
    assert exported[:-1] == first["command"][1:-1]

    # The cache is there now: an export of changed inputs runs no import pass.
    (project / "main.gd").write_text("extends Node2D\n")
    second = run_module(capsys, **args)
    assert second["changed"] is True
    assert second["imported"] is False
    assert second["import_command"] is None
    assert second["import_reason"] == f"import cache present ({project / '.godot' / 'imported'})"
    assert len(calls(env["log"])) == 3


def test_check_mode_plans_the_import_pass_and_runs_nothing(
    env: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    project = env["project"]
    shutil.rmtree(project / ".godot")

    result = run_module(
        capsys,
        project_path=str(project),
        preset="Linux Server",
        mode="pack",
        _ansible_check_mode=True,
    )

    assert result["changed"] is True
    assert result["imported"] is False
    assert result["import_command"] == [
        str(env["godot"]), "--headless", "--path", str(project), "--import"
    ]  # fmt: skip
    assert "no import cache" in result["import_reason"]
    assert calls(env["log"]) == []
    assert not (project / ".godot").exists()


@pytest.mark.parametrize(
    ("import_first", "fresh", "imports"),
    [
        ("never", True, False),
        ("always", False, True),
        ("auto", False, False),
    ],
)
def test_import_first_never_and_always(
    env: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    import_first: str,
    fresh: bool,
    imports: bool,
) -> None:
    project = env["project"]
    if fresh:
        shutil.rmtree(project / ".godot")

    result = run_module(
        capsys,
        project_path=str(project),
        preset="Linux Server",
        mode="pack",
        import_first=import_first,
    )

    assert result["changed"] is True
    assert result["imported"] is imports
    logged = calls(env["log"])
    assert [("--import" in argv) for argv in logged] == ([True, False] if imports else [False])


def test_unchanged_inputs_run_no_import_pass_even_with_always(
    env: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args = {
        "project_path": str(env["project"]),
        "preset": "Linux Server",
        "mode": "pack",
        "import_first": "always",
    }
    assert run_module(capsys, **args)["imported"] is True
    count = len(calls(env["log"]))

    again = run_module(capsys, **args)

    assert again["changed"] is False
    assert again["imported"] is False
    assert again["import_command"] is None
    assert again["import_reason"] == "no export runs, so no import pass"
    assert len(calls(env["log"])) == count


@pytest.mark.parametrize(
    ("broken", "summary", "errors"),
    [
        ("error", "exit 0, could not import res://icon.png", "Error importing 'res://icon.png'"),
        ("crash", "exit 134", "Condition"),
    ],
)
def test_failed_import_pass_fails_naming_the_project_and_writes_nothing(
    env: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    broken: str,
    summary: str,
    errors: str,
) -> None:
    project = env["project"]
    shutil.rmtree(project / ".godot")
    monkeypatch.setenv("FAKE_GODOT_IMPORT_BREAK", broken)
    out = project.parent / "out" / "game.pck"

    result = run_module(
        capsys, project_path=str(project), preset="Linux Server", mode="pack", output=str(out)
    )

    assert result["failed"] is True
    assert result["msg"].startswith(f"Godot import pass of project {project} failed ({summary}): ")
    assert errors in result["msg"]
    assert len(calls(env["log"])) == 1  # no export after a failed import pass
    assert not out.parent.exists()


def test_export_that_reports_a_failed_import_fails_and_keeps_the_old_artifact(
    env: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = env["project"].parent / "out" / "game.pck"
    args = {"project_path": str(env["project"]), "preset": "Linux Server", "mode": "pack"}
    assert run_module(capsys, **args, output=str(out))["changed"] is True
    before = out.read_bytes()
    (env["project"] / "main.gd").write_text("extends Node3D\n")
    monkeypatch.setenv("FAKE_GODOT_BREAK", "import")  # artifact written, exit 0

    result = run_module(capsys, **args, output=str(out))

    assert result["failed"] is True
    expected = "failed (exit 0, could not import res://icon.png): ERROR: Error importing"
    assert expected in result["msg"]
    assert out.read_bytes() == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["game.pck", "game.pck.inputs.sha256"]
