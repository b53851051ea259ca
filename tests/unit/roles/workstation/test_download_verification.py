"""roles/workstation: how each download is verified, read without running a play.

The manifest names, for each download, the checksums file its publisher ships next to it and the
algorithm (or needs a pinned value: age on Windows). Rendered by Ansible's templar: the role's
resolution of a download (URLs through the mirror, the pinned value winning, the install marker),
the checks of tasks/assert.yml that refuse a download nothing can verify, the parsing of
get_url's and win_get_url's messages in the rescues, and the check-mode lookup of the file in a
checksums file (against get_url's own parser). The page scripts/render-requirements renders.
Behaviour on a real instance: tests/integration/test_workstation_check_and_mismatch.py and
molecule/workstation.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.machinery
import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import ansible_collections
import pytest
import yaml
from role_templar import templar

REPO = Path(__file__).resolve().parents[4]
ROLE = REPO / "roles" / "workstation"
VAR_FILES = [
    ROLE / "defaults" / "main.yml",
    ROLE / "vars" / "manifest.yml",
    ROLE / "vars" / "main.yml",
]
MANIFEST = yaml.safe_load((ROLE / "vars" / "manifest.yml").read_text())["workstation_manifest"]
DOWNLOADS = MANIFEST["downloads"]
TOOLS = MANIFEST["tools"]
# What each publisher ships next to its files: the checksums file's name and algorithm.
PUBLISHED = {
    "godot": ("SHA512-SUMS.txt", "sha512"),
    "nodejs": ("SHASUMS256.txt", "sha256"),
    "sops": (f"sops-v{TOOLS['sops']['version']}.checksums.txt", "sha256"),
}
SHA512 = "sha512:" + "ab" * 64
SHA256 = "sha256:" + "cd" * 32


def load_script(path: Path, name: str) -> ModuleType:
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


RENDER = load_script(REPO / "scripts" / "render-requirements", "render_requirements_ws")
BUILD_MIRROR = load_script(REPO / "tests" / "fixtures" / "workstation" / "build_mirror.py", "bm")


def task(path: Path, name: str) -> dict[str, Any]:
    """The task of that name in a task file (searching blocks and rescues)."""

    def walk(tasks: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for entry in tasks:
            yield entry
            for key in ("block", "rescue", "always"):
                yield from walk(entry.get(key, []))

    found = [t for t in walk(yaml.safe_load(path.read_text())) if t.get("name") == name]
    assert len(found) == 1, f"{path.name}: {name!r}"
    return found[0]


@pytest.fixture(scope="module")
def render() -> Iterator[Any]:
    with templar() as render:
        yield render


def resolved(render, ident: str, **variables: Any) -> dict[str, Any]:
    return render(VAR_FILES, f"{{{{ workstation_downloads['{ident}'] }}}}", **variables)


# --- the manifest ------------------------------------------------------------------------------


def test_no_placeholder_is_left_in_the_manifest() -> None:
    assert "TO-BE-FILLED" not in (ROLE / "vars" / "manifest.yml").read_text()


@pytest.mark.parametrize("ident", sorted(i for i, d in DOWNLOADS.items() if d["source"] != "age"))
def test_each_download_names_its_publishers_checksums_file(ident: str) -> None:
    entry = DOWNLOADS[ident]
    name, algorithm = PUBLISHED[entry["source"]]
    # Beside the file, in the same release folder, so a mirror of the layout has it too.
    assert entry["checksum_file"] == f"{entry['path'].rsplit('/', 1)[0]}/{name}"
    assert entry["checksum_algorithm"] == algorithm
    assert not entry.get("checksum"), "a pinned value would hide the publisher's file"


def test_age_publishes_no_checksums_and_needs_a_pinned_one() -> None:
    entry = DOWNLOADS["age_windows"]
    assert "checksum_file" not in entry
    assert entry["checksum_algorithm"] == "sha256"
    assert not entry.get("checksum")


# --- workstation_downloads ---------------------------------------------------------------------


def test_upstream_the_checksums_file_is_the_publishers(render) -> None:
    godot = resolved(render, "godot_linux")
    base = MANIFEST["sources"]["godot"]
    assert godot["url"] == f"{base}/4.6-stable/Godot_v4.6-stable_linux.x86_64.zip"
    assert godot["file"] == "Godot_v4.6-stable_linux.x86_64.zip"
    assert godot["checksum_url"] == f"{base}/4.6-stable/SHA512-SUMS.txt"
    # What get_url's `checksum` takes: "<algorithm>:<url of the checksums file>".
    assert godot["checksum"] == f"sha512:{base}/4.6-stable/SHA512-SUMS.txt"
    assert godot["pinned"] == ""
    node = resolved(render, "nodejs_linux")
    assert node["checksum"] == "sha256:https://nodejs.org/dist/v20.20.2/SHASUMS256.txt"


def test_a_mirror_serves_the_checksums_file_in_the_same_layout(render) -> None:
    mirror = "https://mirror.studio.lan/workstation/"
    upstream = resolved(render, "sops_linux")
    mirrored = resolved(render, "sops_linux", workstation_mirror_url=mirror)
    assert mirrored["url"] == f"{mirror}sops/v3.11.0/sops-v3.11.0.linux.amd64"
    assert mirrored["checksum_url"] == f"{mirror}sops/v3.11.0/sops-v3.11.0.checksums.txt"
    assert mirrored["checksum"] == f"sha256:{mirrored['checksum_url']}"
    # The install marker does not depend on where the files came from: no reinstall for that.
    assert (
        mirrored["marker"]
        == upstream["marker"]
        == "sha256 per sops/v3.11.0/sops-v3.11.0.checksums.txt"
    )


def test_a_pinned_checksum_wins_over_the_checksums_file(render) -> None:
    manifest = copy.deepcopy(MANIFEST)
    manifest["downloads"]["godot_linux"]["checksum"] = SHA512
    from_manifest = resolved(render, "godot_linux", workstation_manifest=manifest)
    assert (from_manifest["checksum"], from_manifest["marker"]) == (SHA512, SHA512)
    assert from_manifest["verified_by"] == f"the pinned {SHA512}"
    # workstation_checksums wins over the manifest's own pinned value (and is normalised).
    given = "SHA256:" + "EF" * 32
    per_host = resolved(
        render,
        "godot_linux",
        workstation_manifest=manifest,
        workstation_checksums={"godot_linux": given},
    )
    assert per_host["checksum"] == given.lower()
    assert per_host["algorithm"] == "sha256"
    assert per_host["pinned"] == given.lower()


def test_age_resolves_to_nothing_to_verify_until_pinned(render) -> None:
    age = resolved(render, "age_windows")
    assert (age["checksum"], age["checksum_url"], age["pinned"]) == ("", "", "")
    pinned = resolved(render, "age_windows", workstation_checksums={"age_windows": SHA256})
    assert (pinned["checksum"], pinned["algorithm"], pinned["marker"]) == (SHA256, "sha256", SHA256)


# --- tasks/assert.yml: refused before anything changes ------------------------------------------

ASSERTS = ROLE / "tasks" / "assert.yml"
PINNED_TASK = task(ASSERTS, "Assert every pinned checksum of this run is a checksum")
VERIFIABLE_TASK = task(ASSERTS, "Assert every download of this run can be verified")


def check(render, assert_task: dict[str, Any], ident: str, **variables: Any) -> tuple[bool, str]:
    """The assert for one download (its loop item): whether it passes, and its message."""
    args = assert_task["ansible.builtin.assert"]
    for name, expression in assert_task.get("vars", {}).items():  # the task's own variables
        variables[name] = render(VAR_FILES, expression, item=ident, **variables)
    passed = render(VAR_FILES, f"{{{{ ({args['that']}) | bool }}}}", item=ident, **variables)
    message = render(VAR_FILES, args["fail_msg"], item=ident, **variables)
    return passed, " ".join(str(message).split())


@pytest.mark.parametrize("ident", sorted(i for i in DOWNLOADS if i != "age_windows"))
def test_downloads_with_a_checksums_file_pass_without_any_pinned_value(render, ident) -> None:
    assert check(render, PINNED_TASK, ident)[0]
    assert check(render, VERIFIABLE_TASK, ident)[0]


def test_age_without_a_pinned_value_is_refused_naming_it_and_the_variable(render) -> None:
    passed, message = check(render, VERIFIABLE_TASK, "age_windows")
    assert not passed
    assert message.startswith("age-v1.1.1-windows-amd64.zip (download 'age_windows') cannot be")
    assert "publisher ships no checksums file" in message
    assert "workstation_checksums.age_windows" in message
    pinned = {"workstation_checksums": {"age_windows": SHA256}}
    assert check(render, VERIFIABLE_TASK, "age_windows", **pinned)[0]
    assert check(render, PINNED_TASK, "age_windows", **pinned)[0]


@pytest.mark.parametrize(
    "value", ["TO-BE-FILLED", "sha256:abc", "md5:" + "0" * 32, "sha512:" + "0" * 64]
)
def test_a_pinned_value_that_is_no_checksum_is_refused(render, value: str) -> None:
    passed, message = check(
        render, PINNED_TASK, "sops_linux", workstation_checksums={"sops_linux": value}
    )
    assert not passed
    assert "sops-v3.11.0.linux.amd64 (download 'sops_linux')" in message
    assert "(workstation_checksums.sops_linux)" in message


def test_a_checksums_file_in_an_unknown_algorithm_is_refused(render) -> None:
    manifest = copy.deepcopy(MANIFEST)
    manifest["downloads"]["nodejs_linux"]["checksum_algorithm"] = "md5"
    passed, message = check(render, VERIFIABLE_TASK, "nodejs_linux", workstation_manifest=manifest)
    assert not passed
    assert "checksum_algorithm 'md5' is not sha256 or sha512" in message


# --- tasks/linux/download.yml and tasks/windows/install_download.yml: the messages --------------

DOWNLOAD = ROLE / "tasks" / "linux" / "download.yml"
WINDOWS = ROLE / "tasks" / "windows" / "install_download.yml"
GET_URL = Path(importlib.util.find_spec("ansible").origin).parent / "modules" / "get_url.py"
WIN_GET_URL = next(
    path
    for root in ansible_collections.__path__
    if (path := Path(root) / "ansible/windows/plugins/modules/win_get_url.ps1").exists()
)


def test_the_messages_parsed_are_the_modules_own() -> None:
    """The rescues read the modules' messages: they fail here when a module changes them."""
    get_url = GET_URL.read_text()
    assert (
        'f"The checksum for {tmpsrc} did not match {checksum}; it was {tmpsrc_checksum}."'
        in get_url
    )
    assert "Unable to find a checksum for file '%s' in '%s'" in get_url
    win_get_url = WIN_GET_URL.read_text()
    assert "did not match '{1}', it was '{2}'" in win_get_url
    assert "Checksum record not found for file name '$basename'" in win_get_url


def test_the_linux_rescue_reads_both_checksums_of_a_mismatch(render) -> None:
    expression = task(DOWNLOAD, "Download and verify the file")["vars"][
        "workstation_download_mismatch"
    ]
    failed = {"msg": f"The checksum for /tmp/tmpx did not match {'a' * 128}; it was {'b' * 128}."}
    assert render([], expression, ansible_failed_result=failed) == ["a" * 128, "b" * 128]
    missing = {"msg": "Unable to find a checksum for file 'x.zip' in 'http://m/SUMS'"}
    assert render([], expression, ansible_failed_result=missing) == []


def test_the_windows_rescue_reads_both_checksums_of_a_mismatch(render) -> None:
    block = task(WINDOWS, "Download and verify the file")
    expression = block["vars"]["workstation_install_mismatch"]
    failed = {
        "msg": f"The checksum for http://m/a.zip did not match '{'A' * 64}', it was '{'b' * 64}'"
    }
    assert render([], expression, ansible_failed_result=failed) == ["A" * 64, "b" * 64]


def test_the_linux_mismatch_message_names_file_url_source_and_both(render) -> None:
    fail = task(DOWNLOAD, "Stop on a checksum mismatch, naming the file and both checksums")
    block = task(DOWNLOAD, "Download and verify the file")
    download = resolved(render, "godot_templates", workstation_mirror_url="http://m")
    message = render(
        VAR_FILES,
        fail["ansible.builtin.fail"]["msg"],
        workstation_download=download,
        workstation_download_mismatch=["a" * 128, "b" * 128],
        workstation_download_source=render(
            VAR_FILES, block["vars"]["workstation_download_source"], workstation_download=download
        ),
    )
    assert " ".join(message.split()) == (
        "Checksum mismatch for Godot_v4.6-stable_export_templates.tpz (download 'godot_templates', "
        "http://m/godot/4.6-stable/Godot_v4.6-stable_export_templates.tpz): "
        f"expected sha512:{'a' * 128} (listed in http://m/godot/4.6-stable/SHA512-SUMS.txt), "
        f"got sha512:{'b' * 128}. The file was discarded and nothing was installed."
    )


def test_the_linux_message_for_a_file_the_checksums_file_lacks(render) -> None:
    fail = task(DOWNLOAD, "Stop when the checksums file does not list the file")
    download = resolved(render, "sops_linux", workstation_mirror_url="http://m")
    failed = {
        "msg": "Unable to find a checksum for file 'sops-v3.11.0.linux.amd64' in 'http://m/x'"
    }
    assert render([], f"{{{{ ({fail['when']}) | bool }}}}", ansible_failed_result=failed) is True
    message = " ".join(
        render(
            VAR_FILES, fail["ansible.builtin.fail"]["msg"], workstation_download=download
        ).split()
    )
    assert message.startswith(
        "No checksum for sops-v3.11.0.linux.amd64 (download 'sops_linux', "
        "http://m/sops/v3.11.0/sops-v3.11.0.linux.amd64) in "
        "http://m/sops/v3.11.0/sops-v3.11.0.checksums.txt: the checksums file does not list "
        "sops-v3.11.0.linux.amd64."
    )


# --- check mode: the file's line in the checksums file, as get_url finds it --------------------

NAME = "Godot_v4.6-stable_linux.x86_64.zip"
HEX = "0123456789abcdef" * 8
SUMS_FILES = {
    "two spaces (sha256sum, the publishers')": f"{HEX}  {NAME}\n",
    "binary mark": f"{HEX} *{NAME}\n",
    "dot slash": f"{HEX}  ./{NAME}\n",
    "BSD": f"SHA512 ({NAME}) = {HEX}\n",
    "among others": f"{HEX}  a.zip\n{HEX}  {NAME}\n{HEX}  {NAME}.sig\n",
    "CRLF": f"{HEX}  {NAME}\r\n",
    "missing": f"{HEX}  Godot_v4.6-stable_win64.exe.zip\n",
    "only a longer name": f"{HEX}  {NAME}.sig\n{HEX}  mono_{NAME}\n",
    "only a shorter name": f"{HEX}  {NAME[:-4]}\n",
}


def get_url_finds(text: str, filename: str) -> bool:
    """get_url's own lookup (its parse_digest_lines), run in a process of its own."""
    code = (
        "import json, sys; from ansible.modules.get_url import parse_digest_lines as p;"
        "a = json.load(sys.stdin);"
        "lines = [l.rstrip('\\n') for l in a['text'].splitlines(keepends=True)];"
        "print(json.dumps(any(f == a['name'] for _, f in p(a['name'], lines))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps({"text": text, "name": filename}),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


@pytest.mark.parametrize("case", sorted(SUMS_FILES))
def test_check_mode_finds_the_file_where_get_url_would(render, case: str) -> None:
    text = SUMS_FILES[case]
    that = task(DOWNLOAD, "Assert the checksums file lists the file (check mode)")[
        "ansible.builtin.assert"
    ]["that"]
    found = render(
        [],
        f"{{{{ ({that}) | bool }}}}",
        workstation_download_sums={"content": text},
        workstation_download={"file": NAME},
    )
    # get_url keeps a \r in the name (it strips only \n) and misses it: check mode says so too.
    expected = case not in {"missing", "only a longer name", "only a shorter name", "CRLF"}
    assert get_url_finds(text, NAME) is expected
    assert found is expected


# --- the test mirror's checksums files ---------------------------------------------------------


def test_the_test_mirror_writes_checksums_files_as_the_publishers_do() -> None:
    listing = {"b.zip": "22", "a.tar.xz": "11"}
    text = BUILD_MIRROR.sums_text(listing)
    assert text == "11  a.tar.xz\n22  b.zip\n"
    data = b"stand-in"
    line = BUILD_MIRROR.sums_text({NAME: hashlib.sha512(data).hexdigest()})
    assert get_url_finds(line, NAME)


# --- operations/requirements.md ------------------------------------------------------------------


def row(page: str, ident: str) -> str:
    return next(line for line in page.splitlines() if line.startswith(f"| `{ident}` |"))


@pytest.mark.parametrize("ident", sorted(i for i in DOWNLOADS if i != "age_windows"))
def test_the_page_says_which_checksums_file_verifies_each_download(ident: str) -> None:
    entry = DOWNLOADS[ident]
    cell = row(RENDER.render(MANIFEST), ident).split(" | ")[-1]
    base = MANIFEST["sources"][entry["source"]]
    assert cell.startswith(f"{entry['checksum_algorithm']} listed in ")
    assert f"{base}/{entry['checksum_file']}" in cell
    assert f"mirror: `{entry['source']}/{entry['checksum_file']}`" in cell


def test_the_page_says_age_needs_a_pinned_value_and_where_to_give_it() -> None:
    page = RENDER.render(MANIFEST)
    assert "**a pinned sha256, required**" in row(page, "age_windows")
    footer = " ".join(page.split("**Needs a pinned checksum:**", 1)[1].split())
    assert footer.startswith("`age_windows`.")
    assert "`workstation_checksums.age_windows`" in footer
    assert "TO-BE-FILLED" not in page


def test_a_pinned_value_shows_on_the_page_and_drops_the_note() -> None:
    manifest = copy.deepcopy(MANIFEST)
    manifest["downloads"]["age_windows"]["checksum"] = SHA256
    page = RENDER.render(manifest)
    assert f"pinned sha256:`{SHA256.split(':')[1]}`" in row(page, "age_windows")
    assert "Needs a pinned checksum" not in page


@pytest.mark.parametrize(
    ("field", "value"), [("checksum", "TO-BE-FILLED"), ("checksum_algorithm", "md5")]
)
def test_the_renderer_refuses_what_the_role_would(field: str, value: str) -> None:
    manifest = copy.deepcopy(MANIFEST)
    manifest["downloads"]["sops_linux"][field] = value
    with pytest.raises(ValueError, match=re.escape("sops-v3.11.0.linux.amd64")):
        RENDER.render(manifest)


def test_the_committed_page_is_the_rendered_manifest() -> None:
    assert (REPO / "operations" / "requirements.md").read_text() == RENDER.render(MANIFEST)
