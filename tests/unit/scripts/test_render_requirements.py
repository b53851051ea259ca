"""scripts/render-requirements: operations/requirements.md is the manifest, rendered."""

from __future__ import annotations

import copy
import importlib.machinery
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "scripts" / "render-requirements"


def load_script() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("render_requirements", str(SCRIPT))
    spec = importlib.util.spec_from_loader("render_requirements", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


render = load_script()
MANIFEST = render.load()


def test_committed_requirements_equal_the_rendered_manifest() -> None:
    committed = (REPO / "operations" / "requirements.md").read_text()
    assert committed == render.render(MANIFEST), "run scripts/render-requirements and commit"


def test_check_mode_agrees(capsys: pytest.CaptureFixture[str]) -> None:
    assert render.main(["--check"]) == 0


@pytest.mark.parametrize("tool", sorted(MANIFEST["tools"]))
def test_every_manifest_tool_is_on_the_page(tool: str) -> None:
    entry = MANIFEST["tools"][tool]
    page = render.render(MANIFEST)
    row = next((line for line in page.splitlines() if line.startswith(f"| {entry['name']} |")), "")
    assert row, f"{tool} has no row"
    assert f"| {entry['version']} |" in row


@pytest.mark.parametrize("ident", sorted(MANIFEST["downloads"]))
def test_every_download_is_listed_with_how_it_is_verified(ident: str) -> None:
    entry = MANIFEST["downloads"][ident]
    row = next(line for line in render.render(MANIFEST).splitlines() if f"| `{ident}` |" in line)
    assert f"{MANIFEST['sources'][entry['source']]}/{entry['path']}" in row
    if entry.get("checksum"):
        assert entry["checksum"].split(":", 1)[1] in row
    elif entry.get("checksum_file"):
        assert f"{MANIFEST['sources'][entry['source']]}/{entry['checksum_file']}" in row
    else:
        assert "**a pinned" in row


@pytest.mark.parametrize("ident", sorted(MANIFEST["downloads"]))
def test_manifest_verification_is_well_formed(ident: str) -> None:
    entry = MANIFEST["downloads"][ident]
    assert entry["checksum_algorithm"] in {"sha256", "sha512"}, ident
    checksum = entry.get("checksum") or ""
    assert not checksum or re.fullmatch(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}", checksum), (
        f"{ident}: {checksum!r}"
    )


def test_godot_is_verified_with_sha512_as_godot_publishes() -> None:
    for ident, entry in MANIFEST["downloads"].items():
        if entry["source"] == "godot":
            assert entry["checksum_algorithm"] == "sha512", ident
            assert entry["checksum_file"].endswith("/SHA512-SUMS.txt"), ident


def test_every_tool_download_exists() -> None:
    for name, tool in MANIFEST["tools"].items():
        for os_key in ("linux", "windows"):
            for ident in (tool.get(os_key) or {}).get("download", []):
                assert ident in MANIFEST["downloads"], f"{name}.{os_key} names {ident}"


def test_a_pinned_checksum_changes_the_page_and_drops_the_note() -> None:
    manifest = copy.deepcopy(MANIFEST)
    for entry in manifest["downloads"].values():
        entry["checksum"] = "sha512:" + "a" * 128
    page = render.render(manifest)
    assert "TO-BE-FILLED" not in page
    assert "Needs a pinned checksum" not in page
    assert "pinned sha512:`" + "a" * 128 + "`" in page


def test_check_fails_on_a_stale_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "requirements.md"
    stale.write_text("old\n")
    monkeypatch.setattr(render, "OUTPUT", stale)
    monkeypatch.setattr(render, "REPO", tmp_path)
    assert render.main(["--check"]) == 1
    assert render.main([]) == 0
    assert render.main(["--check"]) == 0
