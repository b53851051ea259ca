"""requirements.yml pins exactly the collection versions the installed `ansible` bundle carries."""

from __future__ import annotations

import json
import os
from pathlib import Path

import ansible_collections
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PINNED = {
    c["name"]: c["version"]
    for c in yaml.safe_load((REPO / "requirements.yml").read_text())["collections"]
}
# Every collection of the bundle, by its MANIFEST.json.
KNOWN_BUNDLED = {
    f"{ns.name}.{c.name}"
    for root in ansible_collections.__path__
    for ns in Path(root).iterdir()
    if ns.is_dir()
    for c in ns.iterdir()
    if (c / "MANIFEST.json").exists()
}


def bundled_version(name: str) -> str | None:
    namespace, collection = name.split(".")
    for root in ansible_collections.__path__:
        manifest = Path(root) / namespace / collection / "MANIFEST.json"
        if manifest.exists():
            return json.loads(manifest.read_text())["collection_info"]["version"]
    return None


@pytest.mark.parametrize("name", sorted(PINNED))
def test_pin_matches_the_bundle(name: str) -> None:
    assert bundled_version(name) == PINNED[name]


def yaml_files() -> list[Path]:
    """The tree's YAML files, never walking into the venv, caches or the collections link (an
    image build's root file system under .cache can hold a live /proc)."""
    found = []
    for folder, subfolders, files in os.walk(REPO):
        skipped = {".venv", ".cache", "collections", ".git"}
        subfolders[:] = [d for d in subfolders if d not in skipped]
        found += [Path(folder) / name for name in files if name.endswith(".yml")]
    return found


def test_every_fqcn_used_in_the_tree_is_pinned() -> None:
    """A collection used by a task but missing from requirements.yml breaks Galaxy installs."""
    used = set()
    for path in yaml_files():
        for word in path.read_text(errors="replace").split():
            parts = word.strip("\"':,[]{}()").split(".")
            if len(parts) >= 3 and f"{parts[0]}.{parts[1]}" in KNOWN_BUNDLED:
                used.add(f"{parts[0]}.{parts[1]}")
    assert used <= set(PINNED), used - set(PINNED)
