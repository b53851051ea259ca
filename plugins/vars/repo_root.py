# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# The in-repo collection's second vars plugin: the repository's root, set once for every play
# (issue #21). Roles find the repository's files through it instead of reaching out of
# themselves (role_path/../..) or guessing from where the playbook lies (playbook_dir).
from __future__ import annotations

DOCUMENTATION = r"""
name: repo_root
short_description: The repository root as the variable mmo_voxel_repo_root
description:
  - Sets C(mmo_voxel_repo_root), on the group C(all), to the folder of the repository this
    plugin is part of (the collection under C(collections/) links to its C(plugins/) folder).
  - Roles build the paths of the repository's own files on it (the toolkit's modules, the
    reference server, the compose file), so a playbook anywhere, an inventory anywhere and
    Molecule's own configuration all find the same files.
  - Enable it in C(vars_plugins_enabled) (the repository's C(ansible.cfg) and Molecule's
    shared configuration do). Without it, a role that needs the root stops with
    C(mmo_voxel_repo_root) named as undefined.
options:
  stage:
    description:
      - When Ansible asks this plugin; C(all) by default, unlike the other vars plugins, which
        follow C(run_vars_plugins) (C(start) in this repository). An inventory given as a host
        list (C(-i localhost,)) is no folder, so the inventory stage never reaches a plugin,
        and the task stage, beside the playbook, does.
    type: str
    default: all
    choices: [all, task, inventory]
    ini:
      - key: stage
        section: mmo_voxel.ops.repo_root
    env:
      - name: ANSIBLE_VARS_PLUGIN_REPO_ROOT_STAGE
"""

from pathlib import Path
from typing import Any

from ansible.inventory.group import Group
from ansible.plugins.vars import BaseVarsPlugin

# plugins/vars/repo_root.py, through the collection's link or not: two folders up from plugins/.
REPO_ROOT = str(Path(__file__).resolve().parents[2])


class VarsModule(BaseVarsPlugin):
    def get_vars(self, loader: Any, path: str, entities: Any, cache: bool = True) -> dict[str, str]:
        super().get_vars(loader, path, entities)
        entities = entities if isinstance(entities, list) else [entities]
        if any(isinstance(entity, Group) and entity.name == "all" for entity in entities):
            return {"mmo_voxel_repo_root": REPO_ROOT}
        return {}
