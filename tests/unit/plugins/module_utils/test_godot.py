"""Unit tests of the pure Godot export helpers (module_utils/godot.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ansible_collections.mmo_voxel.ops.plugins.module_utils.godot import (
    GodotError,
    GodotVersion,
    Preset,
    build_command,
    build_import_command,
    check_template,
    default_templates_dir,
    failed_imports,
    find_preset,
    hash_inputs,
    import_cache_dir,
    inputs_sidecar,
    iter_input_files,
    parse_presets,
    parse_version,
    plan_import,
    required_template,
    resolve_output,
    template_file_name,
)

GODOT4 = parse_version("4.6.stable.official.abc123")
GODOT3 = parse_version("3.2.3.stable.custom_build")


# --------------------------------------------------------------------------------------------
# Version parsing
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("output", "major", "minor", "patch", "status", "build", "mono", "templates_name"),
    [
        ("4.6.stable.official.abc123", 4, 6, 0, "stable", "official", False, "4.6.stable"),
        ("4.2.1.stable.official.b09f793f5", 4, 2, 1, "stable", "official", False, "4.2.1.stable"),
        ("3.2.3.stable.custom_build", 3, 2, 3, "stable", "custom_build", False, "3.2.3.stable"),
        ("4.3.beta2.official.a4f2ea91a", 4, 3, 0, "beta2", "official", False, "4.3.beta2"),
        ("4.6.dev.custom_build.0123abcd", 4, 6, 0, "dev", "custom_build", False, "4.6.dev"),
        ("4.2.1.stable.mono.official.b09f793f5", 4, 2, 1, "stable", "official", True,
         "4.2.1.stable.mono"),
        ("3.5.rc1.official", 3, 5, 0, "rc1", "official", False, "3.5.rc1"),
        # Warnings before the version line (locale, drivers) are ignored.
        ("ERROR: set_locale: Unsupported locale 'C'\n   At: core/translation.cpp:969.\n"
         "3.2.3.stable.custom_build\n", 3, 2, 3, "stable", "custom_build", False, "3.2.3.stable"),
    ],
)  # fmt: skip
def test_parse_version(
    output: str,
    major: int,
    minor: int,
    patch: int,
    status: str,
    build: str,
    mono: bool,
    templates_name: str,
) -> None:
    version = parse_version(output)

    assert (version.major, version.minor, version.patch) == (major, minor, patch)
    assert version.status == status
    assert version.build == build
    assert version.mono is mono
    assert version.templates_name == templates_name


@pytest.mark.parametrize("output", ["", "Godot Engine", "v4.6", "4.stable", "four.six.stable"])
def test_parse_version_rejects_what_is_not_a_version(output: str) -> None:
    with pytest.raises(GodotError, match="cannot read a Godot version"):
        parse_version(output)


# --------------------------------------------------------------------------------------------
# export_presets.cfg
# --------------------------------------------------------------------------------------------
PRESETS_GODOT4 = r"""[preset.0]

name="Linux Server"
platform="Linux"
runnable=true
dedicated_server=true
custom_features=""
export_filter="all_resources"
include_filter=""
exclude_filter=""
export_path="build/server.x86_64"
encryption_include_filters=""

[preset.0.options]

custom_template/debug=""
custom_template/release="/opt/templates/server_release.x86_64"
debug/export_console_wrapper=1
binary_format/embed_pck=false
binary_format/architecture="x86_64"
ssh_remote_deploy/run_script="#!/usr/bin/env bash
export DISPLAY=:0
unzip -o -q \"{temp_dir}/{archive_name}\" -d \"{temp_dir}\"
\"{temp_dir}/{exe_name}\" {cmd_args}"
ssh_remote_deploy/cleanup_script="#!/usr/bin/env bash
kill $(pgrep -x -f \"{temp_dir}/{exe_name} {cmd_args}\")"

[preset.1]

name="Windows Client"
platform="Windows Desktop"
runnable=true
export_path=""

[preset.1.options]

custom_template/release=""
binary_format/architecture="arm64"
"""


def test_parse_presets_godot4_with_multiline_strings() -> None:
    presets = parse_presets(PRESETS_GODOT4, "/p/export_presets.cfg")

    assert [(p.index, p.name, p.platform, p.export_path) for p in presets] == [
        (0, "Linux Server", "Linux", "build/server.x86_64"),
        (1, "Windows Client", "Windows Desktop", ""),
    ]
    server = presets[0]
    assert server.custom_template("release") == "/opt/templates/server_release.x86_64"
    assert server.custom_template("debug") == ""
    assert server.options["debug/export_console_wrapper"] == 1
    assert server.options["binary_format/embed_pck"] is False
    script = server.options["ssh_remote_deploy/run_script"]
    assert script.splitlines()[2] == 'unzip -o -q "{temp_dir}/{archive_name}" -d "{temp_dir}"'
    assert server.options["ssh_remote_deploy/cleanup_script"].endswith('{cmd_args}")')


def test_parse_presets_of_the_godot3_fixture(repo: Path) -> None:
    text = (repo / "tests/fixtures/godot3_project/export_presets.cfg").read_text()

    presets = parse_presets(text)

    assert [p.name for p in presets] == ["Linux/X11", "Server Pack"]
    assert presets[0].options["binary_format/64_bits"] is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name="x"\n', r"cfg:1: key 'name' before any \[section\]"),
        ('[preset.0\nname="x"\n', r"cfg:1: malformed section header"),
        ('[preset.0]\nname="x"\nplatform="Linux"\njunk\n', r"cfg:4: expected key=value"),
        ('[preset.0]\nname="x\nplatform=1\n', r"cfg:2: unterminated string for key 'name'"),
        ('[preset.0]\nname="x" y\n', r"cfg:2: unexpected text after the string of key 'name'"),
        ('[preset.0]\nplatform="Linux"\n', r'\[preset.0\] has no name="..."'),
        ('[preset.3]\nname="x"\n', r"\[preset.3\] \('x'\) has no platform"),
        ('[preset.0]\nname="a"\nplatform="Linux"\n[preset.1]\nname="a"\nplatform="Linux"\n',
         r"preset name 'a' is used by both \[preset.0\] and \[preset.1\]"),
    ],
)  # fmt: skip
def test_parse_presets_rejects_malformed_files_naming_file_and_line(
    text: str, message: str
) -> None:
    with pytest.raises(GodotError, match=message) as error:
        parse_presets(text, "/proj/export_presets.cfg")

    assert str(error.value).startswith("/proj/export_presets.cfg")


def test_parse_presets_of_an_empty_file_is_empty() -> None:
    assert parse_presets("; no presets yet\n\n") == []


def test_find_preset_lists_the_available_presets_when_missing() -> None:
    presets = parse_presets(PRESETS_GODOT4)

    assert find_preset(presets, "Windows Client", "f").index == 1
    with pytest.raises(GodotError) as error:
        find_preset(presets, "Linux/X11", "/proj/export_presets.cfg")
    assert str(error.value) == (
        "export preset 'Linux/X11' not found in /proj/export_presets.cfg;"
        " available presets: 'Linux Server', 'Windows Client'"
    )
    with pytest.raises(GodotError, match="available presets: none"):
        find_preset([], "x", "f")


# --------------------------------------------------------------------------------------------
# Command construction
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("version", "binary", "mode", "expected"),
    [
        (GODOT4, "godot", "release",
         ["godot", "--headless", "--path", "/p", "--export-release", "Linux Server", "/o/a"]),
        (GODOT4, "godot", "debug",
         ["godot", "--headless", "--path", "/p", "--export-debug", "Linux Server", "/o/a"]),
        (GODOT4, "godot4", "pack",
         ["godot4", "--headless", "--path", "/p", "--export-pack", "Linux Server", "/o/a"]),
        (GODOT3, "godot3-server", "release",
         ["godot3-server", "--path", "/p", "--export", "Linux Server", "/o/a"]),
        (GODOT3, "godot3-server", "debug",
         ["godot3-server", "--path", "/p", "--export-debug", "Linux Server", "/o/a"]),
        (GODOT3, "godot3-server", "pack",
         ["godot3-server", "--path", "/p", "--export-pack", "Linux Server", "/o/a"]),
    ],
)  # fmt: skip
def test_build_command(version: GodotVersion, binary: str, mode: str, expected: list[str]) -> None:
    command = build_command(
        binary, version, project_path="/p", preset="Linux Server", mode=mode, output="/o/a"
    )

    assert command == expected


def test_build_command_rejects_unknown_modes_and_old_engines() -> None:
    with pytest.raises(GodotError, match="unknown export mode 'fast'"):
        build_command("g", GODOT4, project_path="/p", preset="x", mode="fast", output="/o")
    with pytest.raises(GodotError, match=r"Godot 2\.1\.stable is not supported"):
        build_command(
            "g",
            parse_version("2.1.stable"),
            project_path="/p",
            preset="x",
            mode="pack",
            output="/o",
        )


# --------------------------------------------------------------------------------------------
# Import pass
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("4.6.stable.official.abc123", ["--headless", "--path", "/p", "--import"]),
        ("4.3.stable.official.77dcf97d8", ["--headless", "--path", "/p", "--import"]),
        # --import was backported to 4.2.2; 4.2.1 and older would ignore it and run the game.
        ("4.2.2.stable.official.15073afe3", ["--headless", "--path", "/p", "--import"]),
        ("4.2.1.stable.official.b09f793f5",
         ["--headless", "--path", "/p", "--editor", "--quit-after", "1000"]),
        ("4.0.stable.official.92bee43ad",
         ["--headless", "--path", "/p", "--editor", "--quit-after", "1000"]),
        ("3.2.3.stable.custom_build",
         ["--path", "/p", "--export-pack", "Server Pack", "/tmp/x/import-pass.pck"]),
    ],
)  # fmt: skip
def test_build_import_command(version: str, expected: list[str]) -> None:
    command = build_import_command(
        "godot",
        parse_version(version),
        project_path="/p",
        preset="Server Pack",
        pack_path="/tmp/x/import-pass.pck",
    )

    assert command == ["godot", *expected]


def test_build_import_command_rejects_old_engines() -> None:
    with pytest.raises(GodotError, match=r"Godot 2\.1\.stable is not supported"):
        build_import_command(
            "g", parse_version("2.1.stable"), project_path="/p", preset="x", pack_path="/t.pck"
        )


def test_import_cache_dir_per_engine() -> None:
    assert import_cache_dir("/p", GODOT4) == Path("/p/.godot/imported")
    assert import_cache_dir("/p", GODOT3) == Path("/p/.import")


@pytest.mark.parametrize(
    ("import_first", "cache", "runs", "reason"),
    [
        ("auto", None, True, "no import cache ({cache} does not exist)"),
        ("auto", ".godot/imported", False, "import cache present ({cache})"),
        # A CI cache that restores only .godot/imported counts as imported.
        ("auto", ".godot/imported/x.ctex", False, "import cache present ({cache})"),
        # .godot/ without imported/ (editor state only) is not an import cache.
        ("auto", ".godot/editor", True, "no import cache ({cache} does not exist)"),
        ("always", ".godot/imported", True, "import_first=always"),
        ("never", None, False, "import_first=never"),
    ],
)
def test_plan_import(
    tmp_path: Path, import_first: str, cache: str | None, runs: bool, reason: str
) -> None:
    if cache:
        (tmp_path / cache).mkdir(parents=True)
    cache_dir = import_cache_dir(tmp_path, GODOT4)

    assert plan_import(import_first, cache_dir) == (runs, reason.format(cache=cache_dir))


def test_plan_import_rejects_unknown_choices(tmp_path: Path) -> None:
    with pytest.raises(GodotError, match="unknown import_first 'sometimes'; choose one of auto"):
        plan_import("sometimes", tmp_path)


def test_failed_imports_reads_godots_import_errors() -> None:
    # What godot3-server 3.2.3 prints for a corrupt PNG (and then exits 0).
    output = """\
ERROR: set_locale: Unsupported locale 'C', falling back to 'en'.
   At: core/translation.cpp:969.
WARNING: check_error: Not a PNG file
ERROR: png_to_image: Condition "!success" is true. Returned: ERR_FILE_CORRUPT
ERROR: load_image: Error loading image: res://icon.png
ERROR: _reimport_file: Error importing 'res://icon.png'.
   At: editor/editor_file_system.cpp:1801.
ERROR: Error importing 'res://art/hero.glb'.
"""

    assert failed_imports(output) == [
        "ERROR: _reimport_file: Error importing 'res://icon.png'.",
        "ERROR: Error importing 'res://art/hero.glb'.",
    ]
    assert failed_imports("savepack: step 2: Storing File: res://icon.png.import\n") == []


@pytest.mark.parametrize(
    ("output", "export_path", "expected"),
    [
        (None, "build/game.x86_64", "/proj/build/game.x86_64"),
        (None, "res://build/game.pck", "/proj/build/game.pck"),
        ("/abs/out.pck", "build/game.x86_64", "/abs/out.pck"),
        ("out/x.pck", "", "/proj/out/x.pck"),
    ],
)
def test_resolve_output_is_relative_to_the_project(
    output: str | None, export_path: str, expected: str
) -> None:
    preset = Preset(0, "p", "Linux", export_path)

    assert resolve_output("/proj", output, preset) == Path(expected)


def test_resolve_output_without_any_path_names_the_preset() -> None:
    with pytest.raises(GodotError, match="preset 'p' has no export_path; set the module's output"):
        resolve_output("/proj", None, Preset(0, "p", "Linux", ""))


# --------------------------------------------------------------------------------------------
# Export templates
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("version", "data_home", "expected"),
    [
        (GODOT4, None, "/home/ci/.local/share/godot/export_templates/4.6.stable"),
        (GODOT3, None, "/home/ci/.local/share/godot/templates/3.2.3.stable"),
        (parse_version("4.2.1.stable.mono.official.x"), "/xdg",
         "/xdg/godot/export_templates/4.2.1.stable.mono"),
    ],
)  # fmt: skip
def test_default_templates_dir(version: GodotVersion, data_home: str | None, expected: str) -> None:
    assert default_templates_dir(version, "/home/ci", data_home) == Path(expected)


@pytest.mark.parametrize(
    ("version", "platform", "mode", "options", "expected"),
    [
        (GODOT4, "Linux", "release", {}, "linux_release.x86_64"),
        (GODOT4, "Linux", "debug", {"binary_format/architecture": "arm64"}, "linux_debug.arm64"),
        (GODOT4, "Linux/X11", "release", {}, "linux_release.x86_64"),
        (GODOT4, "Windows Desktop", "release", {}, "windows_release_x86_64.exe"),
        (GODOT3, "Linux/X11", "release", {"binary_format/64_bits": True}, "linux_x11_64_release"),
        (GODOT3, "Linux/X11", "debug", {"binary_format/64_bits": False}, "linux_x11_32_debug"),
        (GODOT3, "Windows Desktop", "release", {}, "windows_64_release.exe"),
        (GODOT4, "Android", "release", {}, None),
    ],
)
def test_template_file_name(
    version: GodotVersion, platform: str, mode: str, options: dict, expected: str | None
) -> None:
    preset = Preset(0, "p", platform, "", options)

    assert template_file_name(version, preset, mode) == expected


def test_required_template_by_mode_and_custom_template(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    plain = Preset(0, "p", "Linux", "")
    custom = Preset(0, "p", "Linux", "", {"custom_template/release": "tpl/server_release"})
    android = Preset(0, "p", "Android", "")

    def required(preset: Preset, mode: str) -> Path | None:
        return required_template(
            GODOT4, preset=preset, mode=mode, templates_dir=templates, project_path="/proj"
        )

    assert required(plain, "pack") is None
    assert required(plain, "release") == templates / "linux_release.x86_64"
    assert required(plain, "debug") == templates / "linux_debug.x86_64"
    assert required(custom, "release") == Path("/proj/tpl/server_release")
    assert required(custom, "debug") == templates / "linux_debug.x86_64"
    assert required(android, "release") == templates


def test_check_template_names_the_missing_path(tmp_path: Path) -> None:
    templates = tmp_path / "export_templates" / "4.6.stable"
    preset = Preset(0, "Linux Server", "Linux", "")

    with pytest.raises(GodotError) as error:
        check_template(
            GODOT4, preset=preset, mode="release", templates_dir=templates, project_path=tmp_path
        )
    assert f"{templates / 'linux_release.x86_64'} is missing" in str(error.value)
    assert "4.6.stable" in str(error.value)

    templates.mkdir(parents=True)
    (templates / "linux_release.x86_64").write_bytes(b"ELF")
    found = check_template(
        GODOT4, preset=preset, mode="release", templates_dir=templates, project_path=tmp_path
    )
    assert found == templates / "linux_release.x86_64"
    assert (
        check_template(
            GODOT4, preset=preset, mode="pack", templates_dir=tmp_path / "nothing", project_path="/"
        )
        is None
    )


def test_check_template_names_a_missing_custom_template_and_its_key(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_template"
    preset = Preset(0, "X", "Linux/X11", "", {"custom_template/release": str(missing)})

    with pytest.raises(GodotError) as error:
        check_template(
            GODOT3,
            preset=preset,
            mode="release",
            templates_dir=tmp_path,
            project_path=tmp_path,
            source="/proj/export_presets.cfg",
        )

    assert str(error.value) == (
        f"custom export template for preset 'X' not found: {missing}"
        " (custom_template/release in /proj/export_presets.cfg)"
    )


# --------------------------------------------------------------------------------------------
# Input hashing
# --------------------------------------------------------------------------------------------
def make_project(root: Path) -> Path:
    files = {
        "project.godot": "config_version=4\n",
        "main.gd": "extends Node\n",
        "scenes/world.tscn": "[gd_scene]\n",
        ".godot/imported/x.ctex": "cache",
        ".import/icon.png-abc.stex": "cache",
        ".git/HEAD": "ref: refs/heads/main\n",
        "build/game.x86_64": "binary",
        "build/game.pck": "pack",
        "build/game.sh": "console wrapper",
        "build/game.x86_64.inputs.sha256": "abc",
        "build/tools.gd": "extends Node",
        ".godot-export-abc123/game.x86_64": "half written",
        "docs/notes.md": "notes",
    }
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(content)
    return root


def test_iter_input_files_leaves_out_caches_vcs_and_build_output(tmp_path: Path) -> None:
    project = make_project(tmp_path)

    files = iter_input_files(project, project / "build" / "game.x86_64")

    assert [f.as_posix() for f in files] == [
        "build/tools.gd",  # only this export's files are left out of its directory
        "docs/notes.md",
        "main.gd",
        "project.godot",
        "scenes/world.tscn",
    ]
    excluded = iter_input_files(project, project / "build" / "game.x86_64", exclude=["docs/*"])
    assert "docs/notes.md" not in [f.as_posix() for f in excluded]


def test_iter_input_files_with_the_artifact_at_the_project_root(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    (project / "game.pck").write_text("pack")
    (project / "game.pck.inputs.sha256").write_text("abc\n")

    files = [f.as_posix() for f in iter_input_files(project, project / "game.pck")]

    assert "game.pck" not in files
    assert "game.pck.inputs.sha256" not in files
    assert "build/game.x86_64" in files  # not this export's output


@pytest.mark.parametrize(
    ("change", "hash_changes"),
    [
        (".godot/imported/x.ctex", False),
        (".import/icon.png-abc.stex", False),
        (".git/HEAD", False),
        ("build/game.x86_64", False),
        ("build/game.pck", False),
        ("build/game.sh", False),
        (".godot-export-abc123/game.x86_64", False),
        ("build/tools.gd", True),
        ("main.gd", True),
        ("scenes/world.tscn", True),
        ("scenes/new.tscn", True),
    ],
)
def test_hash_inputs_changes_only_with_real_inputs(
    tmp_path: Path, change: str, hash_changes: bool
) -> None:
    project = make_project(tmp_path)
    artifact = project / "build" / "game.x86_64"
    before = hash_inputs(project, artifact)

    (project / change).write_text("edited")

    assert (hash_inputs(project, artifact) != before) is hash_changes


def test_hash_inputs_ignores_timestamps(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    before = hash_inputs(project)

    os.utime(project / "main.gd", (1_000_000, 1_000_000))

    assert hash_inputs(project) == before


def test_hash_inputs_covers_renames_and_settings(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    before = hash_inputs(project, None, extra={"engine": "4.6.stable", "mode": "release"})

    assert hash_inputs(project, None, extra={"engine": "4.6.stable", "mode": "release"}) == before
    assert hash_inputs(project, None, extra={"engine": "4.6.stable", "mode": "pack"}) != before
    (project / "main.gd").rename(project / "other.gd")
    assert hash_inputs(project, None, extra={"engine": "4.6.stable", "mode": "release"}) != before


def test_inputs_sidecar_sits_next_to_the_artifact() -> None:
    assert inputs_sidecar("/out/game.x86_64") == Path("/out/game.x86_64.inputs.sha256")
