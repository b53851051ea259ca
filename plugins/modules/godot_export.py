#!/usr/bin/python
# Copyright: mmo_voxel operations
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module mmo_voxel.ops.godot_export: export a Godot project headless, idempotently."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: godot_export
short_description: Export a Godot project with a named export preset, only when its inputs changed
version_added: "0.1.0"
description:
  - Finds the Godot binary and reads its engine version (C(--version)).
  - Checks that the export preset exists in the project's C(export_presets.cfg); the error lists
    the presets the file has.
  - For C(release) and C(debug) exports, checks that the export templates of exactly this engine
    version are installed (or the preset's C(custom_template/release|debug) file exists) and names
    the missing path. C(pack) exports need no templates.
  - Before the export, runs Godot's import pass when the project has no import cache (see
    O(import_first)); from a fresh clone without C(.godot/), Godot 4 can export broken or empty
    builds. Godot >= 4.2.2 C(godot --headless --path PROJ --import); Godot 4.0-4.2.1
    C(godot --headless --path PROJ --editor --quit-after 1000); Godot 3
    C(godot3-server --path PROJ --export-pack PRESET TMP/import-pass.pck), a throwaway pack,
    because Godot 3 has no import flag and its C(--editor --quit) is unreliable headless.
    Resources Godot reports it could not import (C(Error importing 'res://...')) fail the task,
    in the import pass and in the export; Godot 3 itself exits 0 after them.
  - Runs the export headless. Godot 4 C(godot --headless --path PROJ
    --export-release|--export-debug|--export-pack PRESET OUT); Godot 3 (its headless server
    build, for example Debian's C(godot3-server))
    C(godot3-server --path PROJ --export|--export-debug|--export-pack PRESET OUT).
  - Skips the export when the project's inputs are unchanged since the last export. The inputs
    hash covers every project file (relative path and content) except Godot's caches
    (C(.godot/), C(.import/), C(.mono/)), VCS directories, the build output and O(exclude)
    patterns, plus the engine version, preset and mode. It is stored next to the artifact in
    C(<artifact>.inputs.sha256).
  - The export is written into a temporary directory next to the artifact and moved into place
    only when Godot produced a non-empty artifact and reported no failed import, so a failed
    export leaves the previous artifact as it was.
author:
  - mmo_voxel operations (@mmo-voxel)
options:
  project_path:
    description:
      - Directory of the Godot project (the one holding C(project.godot) and
        C(export_presets.cfg)).
    type: path
    required: true
  preset:
    description:
      - Name of the export preset, as in C(name="...") of a C([preset.N]) section of
        C(export_presets.cfg).
    type: str
    required: true
  output:
    description:
      - Path of the artifact to write. Relative paths are relative to O(project_path), as Godot
        resolves them.
      - Defaults to the preset's C(export_path).
      - Its directory is created when missing.
    type: path
  mode:
    description:
      - V(release) exports with release templates, V(debug) with debug templates, V(pack) writes
        only the C(.pck)/C(.zip) data pack (no templates needed).
    type: str
    choices: [release, debug, pack]
    default: release
  godot_binary:
    description:
      - Godot binary to run (a name on PATH or a path).
      - When not set, the first of C(godot), C(godot4), C(godot3-server), C(godot3) found on PATH.
    type: str
  templates_dir:
    description:
      - Directory holding the export templates of this exact engine version (the version
        directory itself, for example C(/home/ci/.local/share/godot/export_templates/4.6.stable)).
      - Defaults to where Godot looks on Linux,
        C($XDG_DATA_HOME/godot/export_templates/<version>) for Godot 4 and
        C($XDG_DATA_HOME/godot/templates/<version>) for Godot 3, with C(XDG_DATA_HOME) defaulting
        to C(~/.local/share).
      - The module only checks this path; it does not tell Godot where to look. Set it when Godot
        runs self-contained or with another data directory.
      - Ignored when the preset sets C(custom_template/release|debug) for the mode.
    type: path
  exclude:
    description:
      - Extra glob patterns (relative paths with C(/)) of project files that are not export inputs.
    type: list
    elements: str
    default: []
  force:
    description:
      - Export even when the inputs hash matches the last export.
    type: bool
    default: false
  import_first:
    description:
      - Whether Godot's import pass runs before the export. It only runs when an export runs
        (not when the inputs are unchanged) and never in check mode.
      - V(auto) runs it when the project has no import cache. Godot 4, no C(.godot/imported/)
        directory (what a CI cache of C(.godot/imported) restores; the rest of C(.godot/) is
        rewritten by the filesystem scan every export runs); Godot 3, no C(.import/) directory.
      - V(always) runs it before every export; V(never) leaves importing to the export itself.
    type: str
    choices: [auto, always, never]
    default: auto
  timeout:
    description:
      - Seconds to wait for the import pass, and then for the export, before Godot is killed and
        the task fails.
    type: int
    default: 600
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  platform:
    platforms: posix
  check_mode:
    support: full
    details: Reports whether an import pass and an export would run; runs neither.
  diff_mode:
    support: full
    details: Shows the artifact's sha256 and inputs hash before and after.
  idempotent:
    description: Run twice in a row with the same options, the second run reports no change.
    support: full
notes:
  - Godot writes editor settings and caches under the HOME of the user the task runs as
    (C(~/.config/godot), C(~/.cache/godot)), and Godot 3 rewrites C(project.godot) into its
    canonical layout the first time it opens a project; the inputs hash is taken after the
    export, so this does not cause a second export.
  - Godot 3 exits 0 on some failed exports; the module therefore also requires a non-empty
    artifact.
  - The import pass writes Godot's cache into the project (C(.godot/) or C(.import/), and
    C(*.import) files next to new resources); a failed pass leaves what Godot wrote there, and
    no artifact. Godot retries a failed resource on the next run, so the failure repeats.
requirements:
  - Godot 3 (headless server build) or Godot 4 on the target.
"""

EXAMPLES = r"""
- name: Export the dedicated server build
  mmo_voxel.ops.godot_export:
    project_path: /srv/build/mmo_voxel
    preset: Linux Server
    output: /srv/build/out/mmo_voxel_server.x86_64
  register: server_export

- name: Export only the data pack (no export templates needed)
  mmo_voxel.ops.godot_export:
    project_path: /srv/build/mmo_voxel
    preset: Linux Server
    mode: pack
    output: /srv/build/out/mmo_voxel.pck

- name: Export the server pack, with an import pass before every export
  mmo_voxel.ops.godot_export:
    project_path: /srv/build/mmo_voxel
    preset: Linux Server
    mode: pack
    output: /srv/build/out/mmo_voxel.pck
    import_first: always

- name: Export with an explicit binary and templates, always
  mmo_voxel.ops.godot_export:
    project_path: /srv/build/mmo_voxel
    preset: Linux Server
    godot_binary: /opt/godot/Godot_v4.6-stable_linux.x86_64
    templates_dir: /opt/godot/editor_data/export_templates/4.6.stable
    exclude:
      - "docs/*"
    force: true
    timeout: 1200
"""

RETURN = r"""
artifact:
  description: Absolute path of the exported artifact.
  returned: always
  type: str
  sample: /srv/build/out/mmo_voxel_server.x86_64
sha256:
  description: sha256 hex of the artifact; null in check mode when it does not exist yet.
  returned: always
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
size:
  description: Size of the artifact in bytes; null in check mode when it does not exist yet.
  returned: always
  type: int
  sample: 65304480
engine_version:
  description: Godot version as C(--version) printed it.
  returned: always
  type: str
  sample: 4.6.stable.official.abc123
command:
  description: The export command that ran, or would run (check mode, skipped export).
  returned: always
  type: list
  elements: str
  sample:
    - godot
    - --headless
    - --path
    - /srv/build/mmo_voxel
    - --export-release
    - Linux Server
    - /srv/build/out/mmo_voxel_server.x86_64
imported:
  description: Whether an import pass ran before the export (always false in check mode).
  returned: always
  type: bool
  sample: true
import_command:
  description:
    - The import pass command that ran, or would run in check mode; null when none runs.
    - For Godot 3 the throwaway pack is written into a new temporary directory, shown as
      C(<temporary directory>) in check mode.
  returned: always
  type: list
  elements: str
  sample:
    - godot
    - --headless
    - --path
    - /srv/build/mmo_voxel
    - --import
import_reason:
  description: Why the import pass runs or not.
  returned: always
  type: str
  sample: no import cache (/srv/build/mmo_voxel/.godot/imported does not exist)
inputs_hash:
  description: sha256 over the project's input files, engine version, preset and mode.
  returned: always
  type: str
  sample: 2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae
skipped_reason:
  description: Why no export ran (inputs unchanged); absent when an export ran or would run.
  returned: when the export was skipped
  type: str
  sample: inputs unchanged since the last export (inputs_hash matches /srv/out/x.inputs.sha256)
stdout:
  description: Godot's standard output of the export.
  returned: when an export ran
  type: str
stderr:
  description: Godot's standard error of the export.
  returned: when an export ran
  type: str
"""

import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mmo_voxel.ops.plugins.module_utils.godot import (
    BINARY_CANDIDATES,
    IMPORT_FIRST_CHOICES,
    TEMP_EXPORT_PREFIX,
    GodotError,
    GodotVersion,
    build_command,
    build_import_command,
    check_template,
    default_templates_dir,
    failed_imports,
    file_sha256,
    find_preset,
    hash_inputs,
    import_cache_dir,
    inputs_sidecar,
    parse_presets,
    parse_version,
    plan_import,
    resolve_output,
)

ARGUMENT_SPEC: dict[str, Any] = {
    "project_path": {"type": "path", "required": True},
    "preset": {"type": "str", "required": True},
    "output": {"type": "path"},
    "mode": {"type": "str", "choices": ["release", "debug", "pack"], "default": "release"},
    "godot_binary": {"type": "str"},
    "templates_dir": {"type": "path"},
    "exclude": {"type": "list", "elements": "str", "default": []},
    "force": {"type": "bool", "default": False},
    "import_first": {"type": "str", "choices": list(IMPORT_FIRST_CHOICES), "default": "auto"},
    "timeout": {"type": "int", "default": 600},
}

OUTPUT_TAIL = 4000

# Godot 3's import pass exports a throwaway pack into a new temporary directory.
IMPORT_PACK_NAME = "import-pass.pck"
IMPORT_PACK_PLACEHOLDER = "<temporary directory>"

# The resource named in Godot's "Error importing 'res://...'" line.
IMPORT_FAILED_RE = re.compile(r"Error importing '([^']+)'")

# ERROR lines a working Godot 3 prints on minimal machines; left out of failure messages.
BENIGN_GODOT_ERRORS = ("locale", '"patch_list"')


class GodotExporter:
    """Resolves everything the export needs, decides whether to run, runs it."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        self.project = Path(self.params["project_path"]).resolve()

    # -- inputs ---------------------------------------------------------------------------
    def find_binary(self) -> str:
        wanted: str | None = self.params["godot_binary"]
        if wanted:
            if os.sep in wanted:
                if not os.access(wanted, os.X_OK):
                    raise GodotError(f"godot_binary {wanted} does not exist or is not executable")
                return wanted
            found = shutil.which(wanted)
            if not found:
                raise GodotError(f"godot_binary {wanted!r} not found on PATH")
            return found
        for name in BINARY_CANDIDATES:
            found = shutil.which(name)
            if found:
                return found
        raise GodotError(
            f"no Godot binary found on PATH (looked for {', '.join(BINARY_CANDIDATES)});"
            " install Godot or set godot_binary"
        )

    def engine_version(self, binary: str) -> GodotVersion:
        try:
            proc = subprocess.run(  # noqa: S603 - argv list, no shell
                [binary, "--version"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise GodotError(f"cannot run {binary} --version: {exc}") from exc
        # Godot 3 prints its version and exits 255: trust the output, not the exit code.
        try:
            return parse_version(proc.stdout)
        except GodotError:
            shown = (proc.stderr + proc.stdout)[-500:].strip() or "(no output)"
            raise GodotError(
                f"cannot read the Godot version: {binary} --version exited"
                f" {proc.returncode}: {shown}"
            ) from None

    # -- main -----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        params = self.params
        if not (self.project / "project.godot").is_file():
            raise GodotError(
                f"project_path {self.project} is not a Godot project (no project.godot)"
            )
        presets_file = self.project / "export_presets.cfg"
        if not presets_file.is_file():
            raise GodotError(
                f"{presets_file} does not exist; create the export presets in the editor"
                " (Project > Export) and commit export_presets.cfg"
            )
        binary = self.find_binary()
        version = self.engine_version(binary)
        presets = parse_presets(presets_file.read_text(encoding="utf-8"), str(presets_file))
        preset = find_preset(presets, params["preset"], str(presets_file))
        mode = params["mode"]
        templates_dir = Path(
            params["templates_dir"]
            or default_templates_dir(
                version, os.path.expanduser("~"), os.environ.get("XDG_DATA_HOME") or None
            )
        )
        check_template(
            version,
            preset=preset,
            mode=mode,
            templates_dir=templates_dir,
            project_path=self.project,
            source=str(presets_file),
        )
        artifact = resolve_output(self.project, params["output"], preset).absolute()
        command = build_command(
            binary,
            version,
            project_path=str(self.project),
            preset=preset.name,
            mode=mode,
            output=str(artifact),
        )
        settings = {"engine": version.raw, "preset": preset.name, "mode": mode}
        exclude = params["exclude"]
        inputs_hash = hash_inputs(self.project, artifact, exclude, settings)
        sidecar = inputs_sidecar(artifact)

        result: dict[str, Any] = {
            "changed": False,
            "artifact": str(artifact),
            "engine_version": version.raw,
            "command": command,
            "inputs_hash": inputs_hash,
            "sha256": None,
            "size": None,
            "imported": False,
            "import_command": None,
        }
        before = self.describe(artifact, sidecar)
        if artifact.is_file():
            result["sha256"] = before["sha256"]
            result["size"] = artifact.stat().st_size

        if not params["force"] and artifact.is_file() and before["inputs_hash"] == inputs_hash:
            result["skipped_reason"] = (
                f"inputs unchanged since the last export (inputs_hash matches {sidecar})"
            )
            result["import_reason"] = "no export runs, so no import pass"
            return result

        run_import, result["import_reason"] = plan_import(
            params["import_first"], import_cache_dir(self.project, version)
        )
        result["changed"] = True
        if self.module.check_mode:
            if run_import:
                result["import_command"] = self.import_command(
                    binary, version, preset.name, Path(IMPORT_PACK_PLACEHOLDER)
                )
            if self.module._diff:
                result["diff"] = {
                    "before": self.render(before),
                    "after": self.render({"sha256": "(new export)", "inputs_hash": inputs_hash}),
                    "before_header": str(artifact),
                    "after_header": str(artifact),
                }
            return result

        if run_import:
            result["import_command"] = self.import_pass(binary, version, preset.name)
            result["imported"] = True
        stdout, stderr = self.export(command, artifact)
        # Godot 3 rewrites project.godot into its canonical layout on first open: hash after.
        inputs_hash = hash_inputs(self.project, artifact, exclude, settings)
        self.write_sidecar(sidecar, inputs_hash)
        result.update(
            inputs_hash=inputs_hash,
            sha256=file_sha256(artifact),
            size=artifact.stat().st_size,
            stdout=stdout[-OUTPUT_TAIL:],
            stderr=stderr[-OUTPUT_TAIL:],
        )
        if self.module._diff:
            result["diff"] = {
                "before": self.render(before),
                "after": self.render(self.describe(artifact, sidecar)),
                "before_header": str(artifact),
                "after_header": str(artifact),
            }
        return result

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def describe(artifact: Path, sidecar: Path) -> dict[str, str | None]:
        recorded = None
        if sidecar.is_file():
            recorded = sidecar.read_text(encoding="utf-8").strip() or None
        return {
            "sha256": file_sha256(artifact) if artifact.is_file() else None,
            "inputs_hash": recorded,
        }

    @staticmethod
    def render(state: dict[str, str | None]) -> str:
        return "".join(f"{key}: {value or '(none)'}\n" for key, value in state.items())

    def import_command(
        self, binary: str, version: GodotVersion, preset: str, workdir: Path
    ) -> list[str]:
        return build_import_command(
            binary,
            version,
            project_path=str(self.project),
            preset=preset,
            pack_path=str(workdir / IMPORT_PACK_NAME),
        )

    def import_pass(self, binary: str, version: GodotVersion, preset: str) -> list[str]:
        """Run Godot's import pass; fail, naming the project, when Godot reports a failure.

        Only Godot 3's pass writes outside the project (its throwaway pack, in a temporary
        directory removed afterwards).
        """
        workdir = Path(tempfile.mkdtemp(prefix="godot-import-pass-"))
        try:
            command = self.import_command(binary, version, preset, workdir)
            stdout, stderr, code = self.run_godot(command, "import pass")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        failed = failed_imports(stderr + "\n" + stdout)
        if code != 0 or failed:
            raise GodotError(
                f"Godot import pass of project {self.project} failed"
                f" ({self.failure_summary(code, failed)}): {self.godot_errors(stdout, stderr)}"
            )
        return command

    @staticmethod
    def failure_summary(code: int, failed: list[str], artifact: str | None = None) -> str:
        parts = [f"exit {code}"]
        if artifact:
            parts.append(f"artifact {artifact}")
        if failed:
            names = [m.group(1) for line in failed if (m := IMPORT_FAILED_RE.search(line))]
            parts.append(f"could not import {', '.join(dict.fromkeys(names))}")
        return ", ".join(parts)

    def export(self, command: list[str], artifact: Path) -> tuple[str, str]:
        """Run Godot into a temporary directory next to the artifact, then move the files in."""
        artifact.parent.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=TEMP_EXPORT_PREFIX, dir=artifact.parent))
        try:
            temp_artifact = workdir / artifact.name
            argv = [*command[:-1], str(temp_artifact)]
            stdout, stderr, code = self.run_godot(argv, "export")
            # Godot exits 0 after a resource it could not import, and exports without it.
            failed = failed_imports(stderr + "\n" + stdout)
            missing = None
            if not temp_artifact.is_file():
                missing = "not written"
            elif temp_artifact.stat().st_size == 0:
                missing = "empty"
            if code != 0 or missing or failed:
                raise GodotError(
                    f"Godot export of preset {command[-2]!r} failed"
                    f" ({self.failure_summary(code, failed, missing)}):"
                    f" {self.godot_errors(stdout, stderr)}"
                )
            # Godot may write companions (e.g. game.pck next to game.x86_64): move them all.
            for produced in sorted(workdir.iterdir()):
                os.replace(produced, artifact.parent / produced.name)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return stdout, stderr

    def run_godot(self, argv: list[str], what: str) -> tuple[str, str, int]:
        timeout = self.params["timeout"]
        with subprocess.Popen(  # noqa: S603 - argv list, no shell
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        ) as proc:
            try:
                stdout, stderr = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                raise GodotError(
                    f"Godot {what} did not finish within timeout={timeout}s and was killed:"
                    f" {' '.join(argv)}"
                ) from None
        return stdout, stderr, proc.returncode

    @staticmethod
    def godot_errors(stdout: str, stderr: str) -> str:
        lines = [ln.strip() for ln in (stderr + "\n" + stdout).splitlines()]
        errors = [
            ln
            for ln in lines
            if ln.startswith("ERROR:") and not any(noise in ln for noise in BENIGN_GODOT_ERRORS)
        ]
        return " | ".join(errors[-5:]) if errors else (stderr or stdout)[-1000:].strip()

    def write_sidecar(self, sidecar: Path, inputs_hash: str) -> None:
        fd, temp = tempfile.mkstemp(prefix=".inputs-", dir=sidecar.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(inputs_hash + "\n")
        self.module.atomic_move(temp, str(sidecar))


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if module.params["timeout"] <= 0:
        module.fail_json(
            msg=f"timeout must be a positive number of seconds, got {module.params['timeout']}"
        )
    try:
        result = GodotExporter(module).run()
    except GodotError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"godot_export: {exc}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
