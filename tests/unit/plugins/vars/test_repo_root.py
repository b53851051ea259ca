"""mmo_voxel.ops.repo_root: the repository root on the group `all`, from any playbook."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ansible.inventory.group import Group
from ansible.inventory.host import Host

from ansible_collections.mmo_voxel.ops.plugins.vars.repo_root import REPO_ROOT, VarsModule

REPO = Path(__file__).resolve().parents[4]


def test_the_root_is_this_checkout_through_the_collections_link() -> None:
    # Imported through collections/ansible_collections/mmo_voxel/ops/plugins (a link).
    assert Path(REPO_ROOT) == REPO
    assert (Path(REPO_ROOT) / "ansible.cfg").is_file()


def test_only_the_group_all_gets_it() -> None:
    plugin = VarsModule()
    assert plugin.get_vars(None, str(REPO), [Group("all")]) == {"mmo_voxel_repo_root": REPO_ROOT}
    assert plugin.get_vars(None, str(REPO), Group("all")) == {"mmo_voxel_repo_root": REPO_ROOT}
    assert plugin.get_vars(None, str(REPO), [Group("game_servers"), Host("game-1")]) == {}


def test_a_playbook_outside_the_repository_with_a_host_list_sees_it(
    tmp_path: Path, ansible_env: dict[str, str]
) -> None:
    """-i localhost, is no inventory folder: the plugin answers at the task stage."""
    playbook = tmp_path / "show.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.debug:\n        msg: 'root={{ mmo_voxel_repo_root }}'\n"
    )
    command = [str(REPO / ".venv/bin/ansible-playbook"), "-i", "localhost,", "-c", "local"]
    run = subprocess.run(
        [*command, str(playbook)],
        cwd=tmp_path, env=ansible_env, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"root={REPO}" in run.stdout
