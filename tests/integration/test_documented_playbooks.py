"""Documented playbook commands whose hosts this machine lacks: --syntax-check, as registered.

Staging and production hosts, a hire's laptop and (for plays that would change it) this machine
itself are out of reach of a test. Each command below is the registered concrete form of a
documented one (tests/documented_commands.yml says which and why): the inventory loads, its
group_vars included, the limit matches a host, and the plays parse.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from documented_commands import REPO, run_documented


@pytest.mark.parametrize(
    "command",
    [
        "ansible-playbook -i inventories/local playbooks/server.yml --syntax-check",
        "ansible-playbook -i inventories/staging playbooks/server.yml --syntax-check",
        "ansible-playbook -i inventories/production playbooks/server.yml --syntax-check",
        "ansible-playbook playbooks/runbooks/rollback.yml --syntax-check",
        "ansible-playbook playbooks/runbooks/restart.yml --syntax-check",
        "ansible-playbook -i inventories/production playbooks/db_schedule.yml --syntax-check",
        (
            "ansible-playbook -i inventories/production playbooks/runbooks/db_rollback.yml "
            "--limit game-1.example.com -e db_ops_restore_to=2026-11-29T10:42:00Z --syntax-check"
        ),
        (
            "ansible-playbook -i inventories/production playbooks/runbooks/chunk_repair.yml "
            "--limit game-1.example.com --syntax-check"
        ),
        "ansible-playbook -i inventories/production playbooks/monitoring.yml --syntax-check",
        (
            "ansible-playbook -i inventories/local playbooks/workstation.yml --check --tags "
            "godot --syntax-check"
        ),
        "ansible-playbook -i inventories/production playbooks/hardening.yml --syntax-check",
        "ansible-playbook playbooks/site.yml --syntax-check",
        (
            "ansible-playbook -i inventories/production playbooks/hardening.yml --check --diff "
            "--syntax-check"
        ),
        (
            "ansible-playbook -i inventories/production playbooks/db_restore.yml --check --diff "
            "-e db_ops_restore_before=2026-11-28T00:30:00Z --syntax-check"
        ),
        (
            "ansible-playbook -i inventories/local playbooks/workstation.yml --ask-become-pass "
            "--syntax-check"
        ),
        (
            "ansible-playbook -i inventories/local playbooks/workstation.yml --check --diff "
            "--syntax-check"
        ),
        (
            "ansible-playbook -i inventories/local playbooks/workstation.yml --tags godot "
            "--syntax-check"
        ),
        (
            "ansible-playbook -i inventories/production playbooks/db_check.yml -e "
            "db_ops_check_integrity=full --syntax-check"
        ),
        (
            "ansible-playbook -i inventories/production playbooks/chunk_repair.yml --check "
            "--syntax-check"
        ),
        "ansible-playbook -i inventories/local playbooks/registry.yml --syntax-check",
        "ansible-playbook -i inventories/staging playbooks/registry.yml --syntax-check",
        "ansible-playbook -i inventories/production playbooks/registry.yml --syntax-check",
        "ansible-playbook -i inventories/production playbooks/chunk_repair.yml --syntax-check",
        (
            "ansible-playbook -i inventories/production playbooks/db_restore.yml --check --diff "
            "-e db_ops_restore_before=2026-11-28T11:59:00Z --syntax-check"
        ),
        (
            "ansible-playbook -i inventories/production playbooks/runbooks/db_rollback.yml "
            "--limit game-1.example.com -e db_ops_restore_before=2026-11-28T11:59:00Z "
            "--syntax-check"
        ),
        (
            "ansible-playbook -i inventories/production playbooks/db_check.yml --limit "
            "game-1.example.com -e db_ops_db_path=/srv/mmo-voxel/data/world.db --syntax-check"
        ),
        (
            "ansible-playbook -i inventories/production playbooks/runbooks/rollback.yml -e "
            "rollback_to=1.4.1 --syntax-check"
        ),
        (
            "ansible-playbook -i inventories/production playbooks/runbooks/restart.yml --limit "
            "game-1.example.com --syntax-check"
        ),
    ],
)
def test_playbook_parses_where_its_hosts_are_out_of_reach(command: str) -> None:
    result = run_documented(command, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "playbook: playbooks/" in result.stdout


def test_workstation_from_another_machine_parses_with_the_example_inventory(
    tmp_path: Path,
) -> None:
    """The README's own inventory example holds the laptop the command limits the run to."""
    readme = (REPO / "roles" / "workstation" / "README.md").read_text(encoding="utf-8")
    example = next(
        block
        for block in re.findall(r"^```yaml\n(.*?)^```", readme, re.M | re.S)
        if block.startswith("workstations:")
    )
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(example, encoding="utf-8")
    result = run_documented(
        (
            'ansible-playbook -i "$INVENTORY" playbooks/workstation.yml --limit '
            "laptop-ana.studio.lan --syntax-check"
        ),
        env={"INVENTORY": str(inventory)},
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
