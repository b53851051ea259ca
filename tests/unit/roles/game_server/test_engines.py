"""game_server on Docker and on Podman, read without running a play.

The rollout's logic is written once and calls the engine through tasks/<engine>/<step>.yml: both
engines must have every step, no engine module may be called outside those folders, and the two
container definitions (docker/run.yml, podman/run.yml) must set the same things. The role's own
variables, rendered by Ansible's templar: the network modes (ports, the server's listen address)
and the Podman form of the mounts. The compose file: only the variable forms Debian 12's
podman-compose 1.0.3 substitutes. Behaviour on real hosts: the deploy end-to-end test (Docker)
and the fleet test (a Podman host).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from role_templar import templar

REPO = Path(__file__).resolve().parents[4]
ROLE = REPO / "roles" / "game_server"
TASKS = ROLE / "tasks"
ENGINES = ("docker", "podman")
ENGINE_COLLECTIONS = ("community.docker.", "containers.podman.")
# What the rollout, the runbooks and the database runbooks call.
STEPS = (
    "info.yml",
    "pull.yml",
    "run.yml",
    "stop.yml",
    "start.yml",
    "restart.yml",
    "image_info.yml",
)
# Every place outside the role that calls the engine through it (the entry points info, stop,
# start: tasks/<step>.yml, which include tasks/<engine>/<step>.yml).
ENGINE_CALLERS = [REPO / "playbooks" / "tasks" / "db_runbook.yml"]

# The container's settings, as each engine's module names them. A setting added to one
# definition and not to the other fails here.
RUN_TWINS = {
    "name": "name",
    "image": "image",
    "state": "state",
    "restart_policy": "restart_policy",
    "stop_timeout": "stop_timeout",
    "network_mode": "network",
    "published_ports": "publish",
    "env": "env",
    "mounts": "volume",
    "user": "user",
    "cap_drop": "cap_drop",
    "security_opts": "security_opt",
    "read_only": "read_only",
    "tmpfs": "tmpfs",
    "labels": "label",
}
# A test value of the admin token (not a secret): with one, the token file is mounted too.
TOKEN = "unit-" + "token-0e51"

# Podman-only arguments, each for a reason given in podman/run.yml.
PODMAN_ONLY = {"image_strict", "pull", "read_only_tmpfs"}
# Docker-only: how long one call to the engine's API may take (podman_container runs the podman
# CLI, which has no such call).
DOCKER_ONLY = {"timeout"}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def tasks_of(path: Path) -> Iterator[dict]:
    """Every task of a task file, the ones inside block/rescue/always included."""
    stack = list(load(path) or [])
    while stack:
        task = stack.pop(0)
        yield task
        for section in ("block", "rescue", "always"):
            stack.extend(task.get(section, []))


def module_of(task: dict) -> str:
    keys = [k for k in task if "." in k and not k.startswith("ansible.builtin.include")]
    return keys[0] if keys else ""


def test_both_engines_have_every_step() -> None:
    steps = {engine: sorted(p.name for p in (TASKS / engine).glob("*.yml")) for engine in ENGINES}
    assert steps["docker"] == steps["podman"]
    assert set(STEPS) <= set(steps["docker"])


def test_every_engine_step_named_exists() -> None:
    included = set()
    for path in [*TASKS.glob("*.yml"), *ENGINE_CALLERS]:
        for task in tasks_of(path):
            target = task.get("ansible.builtin.include_tasks")
            if isinstance(target, dict):
                target = target["file"]
            if isinstance(target, str) and target.startswith("{{ game_server_engine }}/"):
                included.add(target.split("/", 1)[1])
    assert included, "no engine step is included"
    for engine in ENGINES:
        missing = sorted(name for name in included if not (TASKS / engine / name).is_file())
        assert not missing, f"tasks/{engine}/ lacks {missing}"


def test_no_engine_module_is_called_outside_the_engine_folders() -> None:
    outside = [*TASKS.glob("*.yml"), *ENGINE_CALLERS]
    for path in outside:
        for task in tasks_of(path):
            assert not module_of(task).startswith(ENGINE_COLLECTIONS), (path, task.get("name"))
    for engine, collection in zip(ENGINES, ENGINE_COLLECTIONS, strict=True):
        for path in (TASKS / engine).glob("*.yml"):
            for task in tasks_of(path):
                module = module_of(task)
                assert not module.startswith(ENGINE_COLLECTIONS) or module.startswith(collection), (
                    path,
                    module,
                )


CONTAINER_MODULES = {
    "docker": "community.docker.docker_container",
    "podman": "containers.podman.podman_container",
}
# The same value on both engines, written the same way.
SAME_VALUE = ("name", "image", "state", "stop_timeout", "env", "user", "cap_drop", "read_only")


def run_task(engine: str) -> dict:
    module = CONTAINER_MODULES[engine]
    tasks = [t for t in tasks_of(TASKS / engine / "run.yml") if module in t]
    assert len(tasks) == 1, f"{engine}/run.yml must define the container once"
    # The drift check reports the container by this task's name; main.yml reads the result.
    assert tasks[0]["name"] == "Run the server container ({{ game_server_run_ref }})"
    assert tasks[0]["register"] == "game_server_container_result"
    return tasks[0][module]


def test_the_two_container_definitions_set_the_same_things() -> None:
    docker, podman = run_task("docker"), run_task("podman")
    assert set(docker) == set(RUN_TWINS) | DOCKER_ONLY
    assert set(podman) == set(RUN_TWINS.values()) | PODMAN_ONLY
    for key in SAME_VALUE:
        assert docker[key] == podman[RUN_TWINS[key]], key
    assert docker["published_ports"] == podman["publish"] == "{{ game_server_published_ports }}"
    # The mounts: the same list in each engine's form (rendered in a test below).
    assert (docker["mounts"], podman["volume"]) == (
        "{{ game_server_mounts }}",
        "{{ game_server_podman_volumes }}",
    )
    assert "game_server_network_mode == 'host'" in docker["network_mode"]
    assert "game_server_network_mode == 'host'" in podman["network"]
    assert docker["security_opts"] == podman["security_opt"] == ["no-new-privileges"]
    assert docker["labels"] == podman["label"]
    assert docker["tmpfs"] == [f"/tmp:{podman['tmpfs']['/tmp']}"]
    assert podman["read_only_tmpfs"] is False  # Podman's writable /run and /var/tmp: off
    assert podman["image_strict"] is True  # image ids compared, as Docker does
    # Podman starts only `always` containers at boot (podman-restart.service).
    assert (docker["restart_policy"], podman["restart_policy"]) == ("unless-stopped", "always")


def test_the_engine_is_checked_before_anything_changes() -> None:
    main = list(tasks_of(TASKS / "main.yml"))
    first_change = next(i for i, t in enumerate(main) if "ansible.builtin.include_tasks" in t)
    asserts = [t for t in main[:first_change] if "ansible.builtin.assert" in t]
    conditions = " ".join(str(a["ansible.builtin.assert"]["that"]) for a in asserts)
    assert "game_server_engine in ['docker', 'podman']" in conditions
    assert "game_server_network_mode in ['published', 'host']" in conditions
    assert "rollout runs on Docker only" not in (TASKS / "main.yml").read_text()


@pytest.fixture(scope="module")
def evaluate() -> Iterator[Any]:
    """evaluate(expression, **variables) with game_server's defaults and vars."""
    files = [ROLE / "defaults" / "main.yml", ROLE / "vars" / "main.yml"]
    with templar() as render:
        yield lambda expression, **variables: render(files, expression, **variables)


def test_the_engine_follows_the_hosts_container_engine(evaluate) -> None:
    assert evaluate("{{ game_server_engine }}") == "docker"
    assert evaluate("{{ game_server_engine }}", container_engine_name="podman") == "podman"


def test_published_mode_is_the_default_and_publishes_as_before(evaluate) -> None:
    assert evaluate("{{ game_server_network_mode }}") == "published"
    assert evaluate("{{ game_server_published_ports }}") == [
        "127.0.0.1:8080:8080/tcp",
        "7777:7777/udp",
    ]
    env = evaluate("{{ game_server_env }}")
    assert "MMO_VOXEL_HTTP_HOST" not in env  # the Docker container of a default host is unchanged


def test_host_mode_publishes_nothing_and_keeps_status_on_the_bind_address(evaluate) -> None:
    host = {"game_server_network_mode": "host", "game_server_status_bind": "127.0.0.1"}
    assert evaluate("{{ game_server_published_ports }}", **host) == []
    assert evaluate("{{ game_server_env }}", **host)["MMO_VOXEL_HTTP_HOST"] == "127.0.0.1"


def test_podman_gets_the_same_mounts_with_the_token_read_only(evaluate) -> None:
    root = "/srv/mmo-voxel"
    userdata = "/home/mmo-voxel/.local/share/godot/app_userdata/mmo_voxel"
    volumes = evaluate("{{ game_server_podman_volumes }}", game_server_admin_token=TOKEN)
    assert volumes == [
        f"{root}/data:{userdata}/database:rw",
        f"{root}/logs:{userdata}/logs:rw",
        f"{root}/analytics:{userdata}/analytics:rw",
        f"{root}/secrets/admin_token:/run/secrets/admin_token:ro",
    ]
    assert len(evaluate("{{ game_server_podman_volumes }}", game_server_admin_token="")) == 3


# podman-compose 1.0.3 (Debian 12) substitutes $VAR, ${VAR} and ${VAR:-default} with a default
# of at least one character; `${VAR:-}` and `${VAR-}` reach Podman as they are written.
PODMAN_COMPOSE_103_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)|(?P<named>[_a-zA-Z][_a-zA-Z0-9]*)"
    r"|\{(?P<braced>[_a-zA-Z][_a-zA-Z0-9]*)(?::?-(?P<default>[^}]+)|:?\?(?P<err>[^}]+))?\})"
)


def test_the_compose_file_uses_only_what_podman_compose_1_0_3_substitutes() -> None:
    text = (REPO / "ops" / "docker-compose.server.yml").read_text()
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    left = PODMAN_COMPOSE_103_VAR.sub("", body)
    assert "$" not in left, [line for line in left.splitlines() if "$" in line]
    service = yaml.safe_load(text)["services"]["server"]
    # No empty default: the network mode is `bridge` unless the .env says `host`.
    assert service["network_mode"] == "${MMO_VOXEL_NETWORK_MODE:-bridge}"
    env = (ROLE / "templates" / "compose.env.j2").read_text()
    assert "MMO_VOXEL_NETWORK_MODE=host" in env
