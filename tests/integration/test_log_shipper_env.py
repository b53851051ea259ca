"""The log shipper's project as metrics_collector lays it out on a game server host (issue #20).

Alloy labels every stream it ships with the host's name; that name used to be typed by hand into
a .env on each server. The role now writes the project (the compose file, Alloy's configuration
and the .env naming the host by its inventory name) and this test runs its task file against
this machine into a temporary folder, then reads the project with `docker compose` as the
README's start command does, from inside that folder, with nothing set in the environment.
A second run changes nothing. Grafana, Loki and Alloy cannot run here (no registry serves their
images): test_monitoring_stack_config.py says what is checked of them.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from ansible_output import RECAP
from documented_commands import run_documented

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the role makes root-owned files")

PLAYBOOK = """
- name: Lay out the log shipper's project
  hosts: all
  gather_facts: false
  tasks:
    - name: The shipper's task file of metrics_collector
      ansible.builtin.include_role:
        name: metrics_collector
        tasks_from: shipper
"""


def lay_out(tmp_path: Path, env: dict[str, str], playbook: str) -> subprocess.CompletedProcess:
    book = tmp_path / "shipper.yml"
    book.write_text(PLAYBOOK)
    argv = [
        playbook,
        # The inventory name is the label: no variable names the host.
        "-i", "game-7.example.net,",
        "-c", "local",
        str(book),
        "-e", f"metrics_collector_shipper_dir={tmp_path / 'shipper'}",
        "-e", "metrics_collector_game_server_root=/srv/game-7",
        "-e", "metrics_collector_shipper_loki_push_url=http://10.0.0.5:3100/loki/api/v1/push",
    ]  # fmt: skip
    return subprocess.run(
        argv,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_the_role_names_the_host_and_compose_reads_it(
    tmp_path: Path, ansible_env: dict[str, str], ansible_playbook: str
) -> None:
    first = lay_out(tmp_path, ansible_env, ansible_playbook)
    assert first.returncode == 0, first.stdout[-4000:]
    again = lay_out(tmp_path, ansible_env, ansible_playbook)
    assert again.returncode == 0, again.stdout[-4000:]
    assert [(m[0], m[2]) for m in RECAP.findall(again.stdout)] == [("game-7.example.net", "0")]

    project = tmp_path / "shipper"
    assert not any(k.startswith("MMO_VOXEL_") for k in os.environ)  # the .env alone says it
    # The README's start command with `config` for `up -d` (tests/documented_commands.yml).
    result = run_documented(
        'cd "$SHIPPER_DIR" && docker compose -f docker-compose.monitoring.yml --profile shipper'
        " config --format json",
        env={"SHIPPER_DIR": str(project)},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert set(services) == {"alloy"}
    alloy = services["alloy"]
    assert alloy["environment"] == {
        "MMO_VOXEL_HOST": "game-7.example.net",
        "MMO_VOXEL_LOKI_PUSH_URL": "http://10.0.0.5:3100/loki/api/v1/push",
    }
    mounts = {v["target"]: v["source"] for v in alloy["volumes"] if v["type"] == "bind"}
    alloy_config = project / "monitoring" / "alloy" / "config.alloy"
    assert mounts["/etc/alloy/config.alloy"] == str(alloy_config)
    assert mounts["/srv/mmo-voxel/logs"] == "/srv/game-7/logs"
    assert mounts["/srv/mmo-voxel/releases.jsonl"] == "/srv/game-7/releases.jsonl"
    # Alloy's configuration takes the label from that variable.
    config = alloy_config.read_text()
    assert 'host = sys.env("MMO_VOXEL_HOST")' in config
