"""db_schedule installs the toolkit's modules with one read and a copy of only what differs.

tasks/toolkit_modules.yml reads every installed module with ansible.builtin.find (checksums,
owner, mode) and copies only those vars/main.yml's db_schedule_pkg_to_copy names: the toolkit's
package (voxeldb/*.py) and, beside it, the shared helpers it and mmo-voxel-db-job import
(ops_common.py). Here that task file runs for real against this machine, into a temporary
folder: a fresh install copies every module; a second run copies none; then, with one module
edited by hand, one removed, one with a loose mode and one of another owner, `--check` reports
exactly those four and a run puts exactly those four back.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from system_tools import play_on_localhost

REPO = Path(__file__).resolve().parents[4]
MODULE_UTILS = REPO / "plugins" / "module_utils"
# Each installed file by its path below module_utils/, as the task file labels its copies.
SOURCES = {
    path.relative_to(MODULE_UTILS).as_posix(): path
    for path in [MODULE_UTILS / "ops_common.py", *(MODULE_UTILS / "voxeldb").glob("*.py")]
}
PLAYBOOK = """
- name: Install the toolkit's modules
  hosts: localhost
  gather_facts: false
  tasks:
    - name: The role's task file
      ansible.builtin.include_role:
        name: db_schedule
        tasks_from: toolkit_modules
"""

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="installed modules are root's")


def install(tmp_path: Path, folder: Path, env: dict, playbook: str, *extra: str) -> list[str]:
    """Run the task file; the names of the modules it copied (or would copy, in --check)."""
    book = tmp_path / "toolkit.yml"
    book.write_text(PLAYBOOK)
    output = play_on_localhost(
        playbook, book, env, "-v", "-e", f"db_schedule_module_utils_dir={folder}", *extra
    )
    return sorted(re.findall(r"^changed: \[localhost\] => \(item=(\S+?\.py)\)", output, re.M))


def test_only_the_modules_that_differ_are_copied(
    tmp_path: Path, ansible_env: dict, ansible_playbook: str
) -> None:
    names = sorted(SOURCES)
    assert "ops_common.py" in names
    folder = tmp_path / "module_utils"
    (folder / "voxeldb").mkdir(parents=True)  # tasks/install.yml creates it
    assert install(tmp_path, folder, ansible_env, ansible_playbook) == names
    assert all((folder / name).read_bytes() == src.read_bytes() for name, src in SOURCES.items())
    assert install(tmp_path, folder, ansible_env, ansible_playbook) == []

    edited, missing, loose, foreign = names[:4]
    with (folder / edited).open("a") as f:
        f.write("# edited by hand\n")
    (folder / missing).unlink()
    (folder / loose).chmod(0o666)
    os.chown(folder / foreign, 65534, 65534)
    drifted = sorted([edited, missing, loose, foreign])
    assert install(tmp_path, folder, ansible_env, ansible_playbook, "--check") == drifted
    assert not (folder / missing).exists()  # check mode changed nothing
    assert install(tmp_path, folder, ansible_env, ansible_playbook) == drifted
    assert install(tmp_path, folder, ansible_env, ansible_playbook) == []
    assert (folder / loose).stat().st_mode & 0o777 == 0o644
    assert (folder / foreign).stat().st_uid == 0
