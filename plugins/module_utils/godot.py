"""Pure helpers for exporting Godot projects (used by mmo_voxel.ops.godot_export).

No Ansible imports and no process execution here: version parsing, export_presets.cfg parsing,
export template lookup, command construction and project input hashing, each unit-tested.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The binaries looked for on PATH when none is given, in this order.
BINARY_CANDIDATES = ("godot", "godot4", "godot3-server", "godot3")

EXPORT_MODES = ("release", "debug", "pack")

# Directories never hashed as project inputs: Godot's caches, VCS data.
IGNORED_DIRS = frozenset({".godot", ".import", ".git", ".hg", ".svn", ".mono"})

# Sidecar that records the inputs hash next to the artifact.
INPUTS_SUFFIX = ".inputs.sha256"

# Temporary directories the module exports into before moving the files into place.
TEMP_EXPORT_PREFIX = ".godot-export-"

# Values of the module's import_first option.
IMPORT_FIRST_CHOICES = ("auto", "always", "never")

# Export template file names per (major version, platform), by mode and architecture.
# Only used to name the exact file that is missing; unknown platforms check the directory.
_TEMPLATE_FILES: dict[tuple[int, str], dict[str, str]] = {
    (3, "Linux/X11"): {
        "release": "linux_x11_64_release",
        "debug": "linux_x11_64_debug",
        "release.32": "linux_x11_32_release",
        "debug.32": "linux_x11_32_debug",
    },
    (3, "Windows Desktop"): {
        "release": "windows_64_release.exe",
        "debug": "windows_64_debug.exe",
        "release.32": "windows_32_release.exe",
        "debug.32": "windows_32_debug.exe",
    },
    (4, "Linux"): {"release": "linux_release.{arch}", "debug": "linux_debug.{arch}"},
    (4, "Linux/X11"): {"release": "linux_release.{arch}", "debug": "linux_debug.{arch}"},
    (4, "Windows Desktop"): {
        "release": "windows_release_{arch}.exe",
        "debug": "windows_debug_{arch}.exe",
    },
}


class GodotError(Exception):
    """A problem the ops person must fix; the message says what and where."""


# --------------------------------------------------------------------------------------------
# Engine version
# --------------------------------------------------------------------------------------------
_VERSION_RE = re.compile(
    r"^(?P<major>\d+)\.(?P<minor>\d+)(?:\.(?P<patch>\d+))?"
    r"\.(?P<status>stable|dev\d*|alpha\d*|beta\d*|rc\d*)"
    r"(?P<rest>(?:\.[A-Za-z0-9_\-]+)*)$"
)


@dataclass(frozen=True)
class GodotVersion:
    """A Godot engine version as `godot --version` prints it."""

    major: int
    minor: int
    patch: int
    status: str
    build: str
    mono: bool
    raw: str

    @property
    def number(self) -> str:
        """`4.6`, `4.2.1`, `3.2.3`: the patch is left out when it is 0, as Godot does."""
        base = f"{self.major}.{self.minor}"
        return f"{base}.{self.patch}" if self.patch else base

    @property
    def templates_name(self) -> str:
        """The name of this version's export templates directory, e.g. `4.6.stable`."""
        return f"{self.number}.{self.status}" + (".mono" if self.mono else "")


def parse_version(output: str) -> GodotVersion:
    """Parse the output of `godot --version` (the last line that looks like a version)."""
    for line in reversed(output.strip().splitlines()):
        match = _VERSION_RE.match(line.strip())
        if match:
            rest = [part for part in match["rest"].split(".") if part]
            build = [part for part in rest if part != "mono"]
            return GodotVersion(
                major=int(match["major"]),
                minor=int(match["minor"]),
                patch=int(match["patch"] or 0),
                status=match["status"],
                build=build[0] if build else "",
                mono="mono" in rest,
                raw=line.strip(),
            )
    shown = output.strip()[-200:] or "(no output)"
    raise GodotError(f"cannot read a Godot version from `--version` output: {shown}")


# --------------------------------------------------------------------------------------------
# export_presets.cfg
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preset:
    """One `[preset.N]` section with its `[preset.N.options]`."""

    index: int
    name: str
    platform: str
    export_path: str
    options: dict[str, Any] = field(default_factory=dict)

    def custom_template(self, mode: str) -> str:
        """The preset's custom template for a mode (`release`/`debug`), or ''."""
        value = self.options.get(f"custom_template/{mode}", "")
        return value if isinstance(value, str) else ""


_SECTION_RE = re.compile(r"^\[(?P<name>[^\[\]]+)\]$")
_PRESET_RE = re.compile(r"^preset\.(?P<index>\d+)(?P<options>\.options)?$")
_KEY_RE = re.compile(r"^(?P<key>[A-Za-z0-9_/.\-]+)\s*=\s*(?P<value>.*)$", re.DOTALL)
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r"}


def _string_end(text: str) -> int | None:
    """Index of the closing quote of a string that starts at text[0], or None."""
    i = 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i
        i += 1
    return None


def _unquote(text: str) -> str:
    out = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            out.append(_ESCAPES.get(text[i + 1], text[i + 1]))
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _value(raw: str) -> Any:
    """A Godot variant literal: strings, bools, numbers; anything else stays as its text."""
    raw = raw.strip()
    if raw.startswith('"'):
        return _unquote(raw[1:-1])
    if raw in ("true", "false"):
        return raw == "true"
    if re.fullmatch(r"-?\d+", raw):
        return int(raw)
    if re.fullmatch(r"-?\d+\.\d*(e-?\d+)?", raw):
        return float(raw)
    return raw


def _read_value(
    value: str, lines: list[str], lineno: int, source: str, key: str
) -> tuple[str, int]:
    """Complete a quoted value that may span lines; return it and the next line number."""
    start = lineno
    while (end := _string_end(value)) is None:
        if lineno >= len(lines):
            raise GodotError(f"{source}:{start}: unterminated string for key {key!r}")
        value += "\n" + lines[lineno]
        lineno += 1
    if value[end + 1 :].strip():
        raise GodotError(f"{source}:{start}: unexpected text after the string of key {key!r}")
    return value[: end + 1], lineno


def parse_sections(text: str, source: str = "export_presets.cfg") -> dict[str, dict[str, Any]]:
    """Parse Godot's ConfigFile text into {section: {key: value}}; errors name file and line."""
    sections: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    lines = text.splitlines()
    lineno = 0
    while lineno < len(lines):
        line = lines[lineno].strip()
        lineno += 1
        if not line or line.startswith(";"):
            continue
        if line.startswith("["):
            match = _SECTION_RE.match(line)
            if not match:
                raise GodotError(f"{source}:{lineno}: malformed section header {line!r}")
            current = sections.setdefault(match["name"], {})
            continue
        match = _KEY_RE.match(line)
        if not match:
            raise GodotError(f"{source}:{lineno}: expected key=value, got {line!r}")
        if current is None:
            raise GodotError(f"{source}:{lineno}: key {match['key']!r} before any [section]")
        value = match["value"].strip()
        if value.startswith('"'):
            # Strings may span lines (Godot 4's ssh_remote_deploy scripts do).
            value, lineno = _read_value(value, lines, lineno, source, match["key"])
        current[match["key"]] = _value(value)
    return sections


def parse_presets(text: str, source: str = "export_presets.cfg") -> list[Preset]:
    """The presets of export_presets.cfg, by index; raise GodotError naming the file when bad."""
    sections = parse_sections(text, source)
    presets: list[Preset] = []
    for section, values in sections.items():
        match = _PRESET_RE.match(section)
        if not match or match["options"]:
            continue
        name = values.get("name")
        if not isinstance(name, str) or not name:
            raise GodotError(f'{source}: [{section}] has no name="..."')
        platform = values.get("platform")
        if not isinstance(platform, str) or not platform:
            raise GodotError(f'{source}: [{section}] ({name!r}) has no platform="..."')
        export_path = values.get("export_path", "")
        presets.append(
            Preset(
                index=int(match["index"]),
                name=name,
                platform=platform,
                export_path=export_path if isinstance(export_path, str) else "",
                options=dict(sections.get(f"{section}.options", {})),
            )
        )
    presets.sort(key=lambda p: p.index)
    seen: dict[str, int] = {}
    for preset in presets:
        if preset.name in seen:
            raise GodotError(
                f"{source}: preset name {preset.name!r} is used by both"
                f" [preset.{seen[preset.name]}] and [preset.{preset.index}];"
                " Godot would pick one silently, rename one"
            )
        seen[preset.name] = preset.index
    return presets


def find_preset(presets: list[Preset], name: str, source: str) -> Preset:
    """The preset called `name`; the error lists what the file offers."""
    for preset in presets:
        if preset.name == name:
            return preset
    available = ", ".join(repr(p.name) for p in presets) or "none"
    raise GodotError(
        f"export preset {name!r} not found in {source}; available presets: {available}"
    )


# --------------------------------------------------------------------------------------------
# Export templates
# --------------------------------------------------------------------------------------------
def default_templates_dir(
    version: GodotVersion, home: str | Path, data_home: str | Path | None = None
) -> Path:
    """Where Godot looks for this version's export templates on Linux.

    Godot 4: `$XDG_DATA_HOME/godot/export_templates/<4.6.stable>/`;
    Godot 3: `$XDG_DATA_HOME/godot/templates/<3.2.3.stable>/`; XDG_DATA_HOME defaults to
    `~/.local/share`.
    """
    base = Path(data_home) if data_home else Path(home) / ".local" / "share"
    folder = "export_templates" if version.major >= 4 else "templates"
    return base / "godot" / folder / version.templates_name


def _architecture(preset: Preset) -> str:
    arch = preset.options.get("binary_format/architecture")
    if isinstance(arch, str) and arch:
        return arch
    return "x86_64"


def template_file_name(version: GodotVersion, preset: Preset, mode: str) -> str | None:
    """The template file a release/debug export of this preset needs, when known."""
    table = _TEMPLATE_FILES.get((min(version.major, 4), preset.platform))
    if table is None:
        return None
    key = mode
    if version.major == 3 and preset.options.get("binary_format/64_bits") is False:
        key = f"{mode}.32"
    return table[key].format(arch=_architecture(preset))


def required_template(
    version: GodotVersion,
    *,
    preset: Preset,
    mode: str,
    templates_dir: Path,
    project_path: str | Path,
) -> Path | None:
    """The template path the export needs (None for `pack`, which needs no template).

    A preset's `custom_template/<mode>` wins (relative paths are relative to the project, as in
    Godot); otherwise the file for the platform inside the templates directory, or the directory
    itself for platforms this table does not know.
    """
    if mode == "pack":
        return None
    custom = preset.custom_template(mode)
    if custom:
        path = Path(custom[len("res://") :] if custom.startswith("res://") else custom)
        return path if path.is_absolute() else Path(project_path) / path
    name = template_file_name(version, preset, mode)
    return templates_dir / name if name else templates_dir


def check_template(
    version: GodotVersion,
    *,
    preset: Preset,
    mode: str,
    templates_dir: Path,
    project_path: str | Path,
    source: str = "export_presets.cfg",
) -> Path | None:
    """Like required_template, and raise GodotError naming the missing path."""
    path = required_template(
        version, preset=preset, mode=mode, templates_dir=templates_dir, project_path=project_path
    )
    if path is None or path.exists():
        return path
    if preset.custom_template(mode):
        raise GodotError(
            f"custom export template for preset {preset.name!r} not found: {path}"
            f" (custom_template/{mode} in {source})"
        )
    raise GodotError(
        f"export templates for Godot {version.templates_name} not found: {path} is missing;"
        f" install the export templates of exactly this engine version there"
        f" (or set templates_dir, or use mode=pack, which needs none)"
    )


# --------------------------------------------------------------------------------------------
# Command
# --------------------------------------------------------------------------------------------
_MODE_FLAGS = {
    3: {"release": "--export", "debug": "--export-debug", "pack": "--export-pack"},
    4: {"release": "--export-release", "debug": "--export-debug", "pack": "--export-pack"},
}


def build_command(
    binary: str, version: GodotVersion, *, project_path: str, preset: str, mode: str, output: str
) -> list[str]:
    """The export command line.

    Godot 4: `godot --headless --path PROJ --export-release|--export-debug|--export-pack PRESET
    OUT`. Godot 3: `godot3-server --path PROJ --export|--export-debug|--export-pack PRESET OUT` (the
    headless server build; Godot 3 has no --headless flag).
    """
    if mode not in EXPORT_MODES:
        raise GodotError(f"unknown export mode {mode!r}; choose one of {', '.join(EXPORT_MODES)}")
    if version.major < 3:
        raise GodotError(f"Godot {version.raw} is not supported; Godot 3 or 4 is needed")
    flags = _MODE_FLAGS[min(version.major, 4)]
    headless = ["--headless"] if version.major >= 4 else []
    return [binary, *headless, "--path", project_path, flags[mode], preset, output]


# --------------------------------------------------------------------------------------------
# Import pass
# --------------------------------------------------------------------------------------------
# `--import` ("Starts the editor, waits for any resources to be imported, and then quits") came
# with godotengine/godot#90431 and was backported to 4.2.2: the 4.2.2 section of the engine's
# CHANGELOG.md lists "Add `--import` command-line flag (GH-90431)". Older 4.x builds ignore an
# unknown flag and would run the game instead, so the boundary matters.
IMPORT_FLAG_SINCE = (4, 2, 2)

# 4.0-4.2.1 have no --import. `--editor --quit` quits after the first main-loop iteration, while
# the editor's filesystem scan may still be queueing imports (godotengine/godot#68461, closed
# unmerged). What the field ran instead was a fixed number of iterations: #90431 names
# `godot --editor --quit-after 1000` as the workaround it replaces. A heuristic: very large
# projects may need an engine with --import.
IMPORT_QUIT_AFTER = 1000


def import_cache_dir(project_path: str | Path, version: GodotVersion) -> Path:
    """The directory whose presence means "this project has been imported".

    Godot 3: `.import/`. Godot 4: `.godot/imported/`, not all of `.godot/`: the imported
    resources are the expensive part and what CI caches restore (godot-ci's .gitlab-ci.yml caches
    exactly `.godot/imported/`). The rest of `.godot/` (uid_cache.bin, the global script class
    cache, editor state) is small and rewritten by the editor's filesystem scan, which every
    export runs; requiring it would make a restored cache trigger the pass anyway.
    """
    project = Path(project_path)
    return project / ".import" if version.major < 4 else project / ".godot" / "imported"


def plan_import(import_first: str, cache_dir: Path) -> tuple[bool, str]:
    """Whether the import pass runs before an export, and why (for the task result)."""
    if import_first not in IMPORT_FIRST_CHOICES:
        choices = ", ".join(IMPORT_FIRST_CHOICES)
        raise GodotError(f"unknown import_first {import_first!r}; choose one of {choices}")
    if import_first == "never":
        return False, "import_first=never"
    if import_first == "always":
        return True, "import_first=always"
    if cache_dir.is_dir():
        return False, f"import cache present ({cache_dir})"
    return True, f"no import cache ({cache_dir} does not exist)"


def build_import_command(
    binary: str, version: GodotVersion, *, project_path: str, preset: str, pack_path: str
) -> list[str]:
    """The import pass command line.

    Godot >= 4.2.2: `godot --headless --path PROJ --import`.
    Godot 4.0-4.2.1: `godot --headless --path PROJ --editor --quit-after 1000`.
    Godot 3: `godot3-server --path PROJ --export-pack PRESET PACK` into a throwaway pack.
    Godot 3.2.3 has no --import; its `--editor --quit` did import the fixture, but the server
    build then crashes on exit (SIGSEGV, exit 134, in a thread still loading the textures for
    the editor's previews) once a project has about a hundred textures, and upstream reports it
    quitting before the import (godotengine/godot#42746). An export waits for the import and
    exits cleanly: the workaround given in that issue.
    """
    if version.major < 3:
        raise GodotError(f"Godot {version.raw} is not supported; Godot 3 or 4 is needed")
    if version.major == 3:
        return [binary, "--path", project_path, "--export-pack", preset, pack_path]
    if (version.major, version.minor, version.patch) >= IMPORT_FLAG_SINCE:
        return [binary, "--headless", "--path", project_path, "--import"]
    return [
        binary, "--headless", "--path", project_path, "--editor",
        "--quit-after", str(IMPORT_QUIT_AFTER),
    ]  # fmt: skip


def failed_imports(output: str) -> list[str]:
    """Godot's lines that report a resource it could not import.

    Godot 3 and 4 print `Error importing 'res://...'` (EditorFileSystem::_reimport_file) and go
    on: Godot 3.2.3 exits 0 after a corrupt PNG, with the texture missing from the export.
    """
    return [
        line.strip()
        for line in output.splitlines()
        if line.lstrip().startswith("ERROR:") and "Error importing '" in line
    ]


def resolve_output(project_path: str | Path, output: str | None, preset: Preset) -> Path:
    """The artifact path: `output`, else the preset's export_path; relative to the project."""
    chosen = output or preset.export_path
    if not chosen:
        raise GodotError(
            f"preset {preset.name!r} has no export_path; set the module's output option"
        )
    if chosen.startswith("res://"):
        chosen = chosen[len("res://") :]
    path = Path(os.path.expanduser(chosen))
    return path if path.is_absolute() else Path(project_path) / path


# --------------------------------------------------------------------------------------------
# Input hashing
# --------------------------------------------------------------------------------------------
def _is_output(path: Path, artifact: Path | None) -> bool:
    """Whether a file is written by this export: the artifact and its companions.

    Companions share the artifact's directory and stem: `server.x86_64` comes with `server.pck`,
    `server.sh` (console wrapper) and the sidecar `server.x86_64.inputs.sha256`.
    """
    if artifact is None or path.parent != artifact.parent:
        return False
    stem = Path(artifact.name).stem
    return path.name == artifact.name or path.name.startswith(stem + ".")


def iter_input_files(
    project_path: str | Path, artifact: str | Path | None = None, exclude: list[str] | None = None
) -> list[Path]:
    """The project files that are export inputs, as sorted paths relative to the project.

    Left out: Godot's caches (.godot/, .import/, .mono/), VCS directories, temporary export
    directories, this export's output (the artifact and its companions, see _is_output) and
    `exclude` glob patterns (matched against the relative path with `/` separators).
    """
    project = Path(project_path).resolve()
    target = Path(artifact).resolve() if artifact else None
    patterns = exclude or []
    found: list[Path] = []
    for root, dirs, files in os.walk(project):
        root_path = Path(root)
        dirs[:] = sorted(
            d for d in dirs if d not in IGNORED_DIRS and not d.startswith(TEMP_EXPORT_PREFIX)
        )
        for name in files:
            path = root_path / name
            if _is_output(path, target):
                continue
            rel = path.relative_to(project)
            if any(fnmatch.fnmatch(rel.as_posix(), p) for p in patterns):
                continue
            found.append(rel)
    return sorted(found, key=lambda p: p.as_posix())


def hash_inputs(
    project_path: str | Path,
    artifact: str | Path | None = None,
    exclude: list[str] | None = None,
    extra: dict[str, str] | None = None,
) -> str:
    """sha256 over the input files (relative path + content) and `extra` settings.

    `extra` carries what changes the artifact without changing a project file: engine version,
    preset, mode.
    """
    digest = hashlib.sha256()
    for key, value in sorted((extra or {}).items()):
        digest.update(f"setting {key}={value}\n".encode())
    project = Path(project_path)
    for rel in iter_input_files(project, artifact, exclude):
        digest.update(f"file {rel.as_posix()}\n".encode())
        digest.update(file_sha256(project / rel).encode() + b"\n")
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 hex of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def inputs_sidecar(artifact: str | Path) -> Path:
    """`<artifact>.inputs.sha256`: where the inputs hash of the last export is kept."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + INPUTS_SUFFIX)
