"""The new-hire workstation seen from outside (testinfra): every tool's version, as the hire."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
MANIFEST = yaml.safe_load((REPO / "roles/workstation/vars/manifest.yml").read_text())[
    "workstation_manifest"
]
TOOLS = MANIFEST["tools"]
HIRE = "hire"
HOME = f"/home/{HIRE}"


def as_hire(host, command: str) -> str:
    """Run a command in the hire's login shell (their PATH) and return its stdout."""
    result = host.run(f"runuser -l {HIRE} -c {command!r}")
    assert result.rc == 0, f"{command}: rc={result.rc} {result.stderr}"
    return result.stdout.strip()


def test_godot_on_path_is_the_manifest_release(host):
    assert as_hire(host, "godot --version") == TOOLS["godot"]["version_output"]
    link = host.file("/usr/local/bin/godot")
    assert link.is_symlink
    binary = MANIFEST["downloads"]["godot_linux"]["binary"]
    assert link.linked_to == f"/opt/godot/{TOOLS['godot']['version']}/{binary}"


def test_export_templates_of_exactly_that_version(host):
    folder = host.file(
        f"{HOME}/.local/share/godot/export_templates/{TOOLS['godot']['templates_version']}"
    )
    assert folder.is_directory
    assert folder.user == HIRE
    version = host.file(f"{folder.path}/version.txt")
    assert version.content_string.strip() == TOOLS["godot"]["templates_version"]
    assert host.file(f"{folder.path}/linux_release.x86_64").mode & 0o111


def test_desktop_entry_starts_godot(host):
    entry = host.file("/usr/local/share/applications/godot.desktop")
    assert entry.contains("^Exec=/usr/local/bin/godot ")
    assert host.run("desktop-file-validate /usr/local/share/applications/godot.desktop").rc == 0


def test_python_3_11(host):
    assert as_hire(host, "python3.11 --version").startswith(f"Python {TOOLS['python']['version']}.")
    assert as_hire(host, "python3.11 -c 'import venv, ensurepip; print(1)'") == "1"


def test_node_20_and_its_tools(host):
    assert as_hire(host, "node --version") == f"v{TOOLS['nodejs']['version']}"
    for tool in ("npm", "npx", "corepack"):
        assert re.match(r"^\d+\.\d+\.\d+$", as_hire(host, f"{tool} --version"))
    folder = MANIFEST["downloads"]["nodejs_linux"]["folder"]
    assert host.file("/usr/local/bin/node").linked_to == f"/opt/{folder}/bin/node"


def test_git_and_git_lfs_with_system_filters(host):
    assert as_hire(host, "git --version").startswith("git version ")
    assert as_hire(host, "git lfs version").startswith("git-lfs/")
    assert "git-lfs filter-process" in as_hire(host, "git config --system filter.lfs.process")


def test_docker_answers_the_hire(host):
    assert as_hire(host, "docker --version").startswith("Docker version ")
    assert re.match(r"^\d+\.\d+", as_hire(host, "docker info --format '{{.ServerVersion}}'"))
    assert "docker" in host.user(HIRE).groups


def test_sops_and_age(host):
    assert as_hire(host, "sops --version --disable-version-check").startswith(
        f"sops {TOOLS['sops']['version']}"
    )
    assert host.file("/usr/local/bin/sops").linked_to == (
        f"/opt/sops/{TOOLS['sops']['version']}/sops"
    )
    assert re.match(r"^v?1\.\d+\.\d+", as_hire(host, "age --version"))


def test_age_key_is_the_hires_only_and_gives_an_onboarding_key(host):
    key = host.file(f"{HOME}/.config/sops/age/keys.txt")
    assert key.user == HIRE
    assert key.mode == 0o600
    assert host.file(f"{HOME}/.config/sops/age").mode == 0o700
    # The identity is real: age-keygen derives a public key secrets_onboard.yml accepts.
    public = as_hire(host, "age-keygen -y ~/.config/sops/age/keys.txt")
    assert re.match(r"^age1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}$", public)
    marker = "AGE-SECRET" + "-KEY-1"
    assert marker in key.content_string  # never printed: only asserted


def test_editor_settings_carry_the_studio_keys_and_the_override(host):
    settings = host.file(f"{HOME}/.config/godot/editor_settings-4.6.tres")
    assert settings.user == HIRE
    text = settings.content_string
    assert text.startswith('[gd_resource type="EditorSettings" format=3]')
    assert "text_editor/behavior/files/trim_trailing_whitespace_on_save = true" in text
    # From molecule/workstation/vars/hire-override.yml (the hire's override file).
    assert "interface/editor/code_font_size = 15" in text
    # The role default the override file replaced is gone from the managed set, not added.
    assert "autosave_interval_secs" not in text


def test_project_metadata_points_at_the_editor(host):
    meta = host.file(f"{HOME}/src/mmo_voxel/.godot/editor/project_metadata.cfg")
    assert meta.user == HIRE
    assert 'executable_path="/usr/local/bin/godot"' in meta.content_string


@pytest.mark.parametrize(
    "leftover",
    [
        f"/opt/godot/.staging-{TOOLS['godot']['version']}",
        f"/opt/.staging-{MANIFEST['downloads']['nodejs_linux']['folder']}",
        f"/opt/sops/.staging-{TOOLS['sops']['version']}",
    ],
)
def test_nothing_half_installed_is_left(host, leftover):
    assert not host.file(leftover).exists
    assert host.run("find /var/cache/mmo-voxel-workstation -type f | wc -l").stdout.strip() == "0"


@pytest.mark.parametrize(
    ("ident", "folder"),
    [
        ("godot_linux", f"/opt/godot/{TOOLS['godot']['version']}"),
        (
            "godot_templates",
            f"{HOME}/.local/share/godot/export_templates/{TOOLS['godot']['templates_version']}",
        ),
        ("nodejs_linux", f"/opt/{MANIFEST['downloads']['nodejs_linux']['folder']}"),
        ("sops_linux", f"/opt/sops/{TOOLS['sops']['version']}"),
    ],
)
def test_each_install_was_verified_against_its_publishers_checksums_file(host, ident, folder):
    """The scenario pins nothing: the marker records the checksums file the download was
    checked against (the mirror's copy of the publisher's, in the manifest's algorithm)."""
    entry = MANIFEST["downloads"][ident]
    marker = host.file(f"{folder}/.mmo-voxel-workstation").content_string.strip()
    assert marker == (
        f"{entry['checksum_algorithm']} per {entry['source']}/{entry['checksum_file']}"
    )
