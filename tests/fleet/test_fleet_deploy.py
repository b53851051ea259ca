"""deploy.yml on a fleet: hosts reached over SSH, a private registry with TLS and a login.

Four systemd test hosts on a network of their own (tests/fleet/fleet_topology.py): game-1 and game-2
run Docker, game-3 runs Podman, registry-1 runs Debian's docker-registry with a certificate from
a CA this test makes and htpasswd auth. The credentials and the registry's key live in a SOPS
file encrypted to an age key this test makes. Converged by playbooks/server.yml and
playbooks/registry.yml (as root, a cloud image's first login), then every run goes as the admin
account roles/base made, through sudo, as production does.

One story, test by test (they share the fleet and run in order):
  1. the fleet converges; a second run changes nothing;
  2. 1.0.0 goes out: game-1 alone first (the canary), then game-2 and game-3 together
     (deploy_batch=2); every host serves 1.0.0; a second deploy and --check change nothing;
  3. 2.0.0 (a migration) fails its health gate on game-2 only: game-1 serves 2.0.0, game-2 is
     back on 1.0.0 with its world as before, game-3 is untouched; the summary says so;
  4. 3.0.0 fails on game-3 (Podman) with deploy_rollback_completed: game-3 rolls back by itself,
     then game-1 and game-2, which it had reached, go back to what they ran;
  5. a wrong registry password stops the deploy in preflight, naming the registry and host;
  6. the compose project each host gets runs as documented: `docker compose` on game-1 (the
     Compose release container_engine installs, from a local mirror), podman-compose on game-3;
     playbooks/game_server_state.yml then puts the deployed servers back;
  7. neither the registry password nor its TLS key is in any output or log of these runs.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from fleet_site import (
    GAME_HOSTS,
    REGISTRY_USER,
    FleetUnavailable,
    batches,
    fail_on,
    fleet_lines,
    fleet_site,
    history,
    play,
    recap,
    release,
    schema,
    status,
)
from fleet_topology import unique_prefix
from polling import wait_until
from reference_release import MIGRATION_2

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="writes this machine's /etc/docker/certs.d"),
]


@pytest.fixture(scope="module")
def fleet(ansible_env: dict[str, str]):
    try:
        with fleet_site(unique_prefix(), ansible_env) as site:
            yield site
    except FleetUnavailable as missing:
        pytest.fail(str(missing))


def test_the_fleet_converges_over_ssh_and_a_second_run_changes_nothing(fleet: dict) -> None:
    for playbook in ("playbooks/server.yml", "playbooks/registry.yml"):
        first = play(fleet, playbook, user="root")
        assert first.returncode == 0, first.stdout[-8000:]
    again = play(fleet, "playbooks/server.yml")
    assert again.returncode == 0, again.stdout[-8000:]
    assert {h: c for h, (c, _, _) in recap(again).items()} == dict.fromkeys(GAME_HOSTS, 0)
    again = play(fleet, "playbooks/registry.yml")
    assert again.returncode == 0, again.stdout[-8000:]
    assert all(changed == 0 for changed, _, _ in recap(again).values()), again.stdout[-4000:]


def test_a_canary_then_batches_and_a_second_deploy_changes_nothing(fleet: dict) -> None:
    first = play(fleet, "deploy.yml", "-e", "deploy_version=1.0.0", "-e", "deploy_batch=2")
    assert first.returncode == 0, first.stdout[-8000:]
    assert batches(first) == [["game-1"], ["game-2", "game-3"]]
    for host in GAME_HOSTS:
        assert status(fleet, host)["version"] == "1.0.0", host
        assert fleet_lines(first)[host].startswith("deployed, runs "), fleet_lines(first)
        assert history(fleet, host)[-1]["digest"].startswith("sha256:")
    # Podman ran the server on game-3, Docker on the others.
    podman = fleet["fleet"].hosts["game-3"].exec("podman", "ps", "--format", "{{.Names}}")
    assert "mmo-voxel-server" in podman.stdout

    again = play(fleet, "deploy.yml", "-e", "deploy_version=1.0.0")
    assert again.returncode == 0, again.stdout[-8000:]
    assert all(changed == 0 for changed, _, _ in recap(again).values()), recap(again)
    check = play(fleet, "deploy.yml", "-e", "deploy_version=1.0.0", "--check")
    assert check.returncode == 0, check.stdout[-8000:]
    assert {h: c for h, (c, _, _) in recap(check).items() if h in GAME_HOSTS} == dict.fromkeys(
        GAME_HOSTS, 0
    )


def test_a_version_failing_on_one_host_rolls_it_back_and_leaves_the_rest(fleet: dict) -> None:
    fail_on(fleet, "game-2", "2.0.0")
    before = {host: schema(fleet, host) for host in GAME_HOSTS}
    untouched = history(fleet, "game-3")

    migrations = {"0002_create_guilds.sql": MIGRATION_2}
    result = play(fleet, "deploy.yml", *release(fleet, "2.0.0", migrations))

    assert result.returncode == 2, result.stdout[-8000:]
    assert status(fleet, "game-1")["version"] == "2.0.0"
    assert status(fleet, "game-2")["version"] == "1.0.0"
    assert schema(fleet, "game-2") == before["game-2"]  # the migration went with the restore
    assert schema(fleet, "game-1")[0] == 2
    assert status(fleet, "game-3")["version"] == "1.0.0"
    assert history(fleet, "game-3") == untouched
    lines = fleet_lines(result)
    assert lines["game-1"].startswith("deployed, runs ")
    assert lines["game-2"].startswith("stopped here, runs ")
    assert lines["game-2"].split(" (", 1)[0].endswith(":1.0.0")
    assert lines["game-3"] == "untouched (the rollout stopped at game-2)"
    assert recap(result)["game-2"][2] == 1  # the run fails on the host where it stopped


def test_deploy_rollback_completed_puts_the_hosts_already_moved_back(fleet: dict) -> None:
    fail_on(fleet, "game-3", "3.0.0")
    before = {host: status(fleet, host)["version"] for host in GAME_HOSTS}
    assert before == {"game-1": "2.0.0", "game-2": "1.0.0", "game-3": "1.0.0"}

    result = play(
        fleet,
        "deploy.yml",
        *release(fleet, "3.0.0", {"0002_create_guilds.sql": MIGRATION_2}),
        "-e", "deploy_rollback_completed=true",
    )  # fmt: skip

    assert result.returncode == 2, result.stdout[-8000:]
    # Every host runs what it ran before the deploy: game-3 (Podman) rolled back by itself,
    # game-1 and game-2 by the fleet rollback (game-2 migrated down to 1.0.0's schema).
    assert {host: status(fleet, host)["version"] for host in GAME_HOSTS} == before
    lines = fleet_lines(result)
    assert lines["game-1"].startswith("rolled back with the fleet, runs ")
    assert lines["game-2"].startswith("rolled back with the fleet, runs ")
    assert lines["game-3"].startswith("stopped here, runs ")
    assert [r["result"] for r in history(fleet, "game-3")][-1].startswith("rolled back")


def test_wrong_registry_credentials_stop_the_deploy_before_anything_changes(fleet: dict) -> None:
    before = {host: history(fleet, host) for host in GAME_HOSTS}
    wrong = "wrong-" + "password-for-the-test"
    result = play(
        fleet,
        "deploy.yml",
        "-e", "deploy_version=9.9.9",
        "-e", f"secret_registry_password={wrong}",
    )  # fmt: skip
    assert result.returncode != 0
    # The controller's login, the first thing the deploy does with the registry, is refused.
    said = " ".join(result.stdout.split())  # the message as one line, however it was wrapped
    assert f"the registry {fleet['registry']} refused the login of user {REGISTRY_USER}" in said
    assert wrong not in result.stdout + result.stderr
    assert {host: history(fleet, host) for host in GAME_HOSTS} == before


COMPOSE = {
    # host: (engine, the documented up, the documented down) - ops/docker-compose.server.yml
    "game-1": (
        "docker",
        "cd /srv/mmo-voxel && docker compose -f docker-compose.server.yml up -d",
        "cd /srv/mmo-voxel && docker compose -f docker-compose.server.yml down",
    ),
    "game-3": (
        "podman",
        "cd /srv/mmo-voxel && podman-compose -f docker-compose.server.yml up -d",
        "cd /srv/mmo-voxel && podman-compose -f docker-compose.server.yml down -t 30",
    ),
}


def healthy_version(site: dict, host: str, timeout: float = 60) -> str:
    """The version /status reports once the server answers healthy."""

    def version_when_healthy() -> str | None:
        answer = status(site, host)
        return answer["version"] if answer["healthy"] else None

    return wait_until(
        version_when_healthy,
        timeout,
        f"{host}: the compose project's server to answer healthy",
        interval=1,
        # Not answering yet, or not with JSON.
        ignoring=(subprocess.CalledProcessError, json.JSONDecodeError),
    )


def test_the_compose_project_each_host_gets_runs_as_documented(fleet: dict) -> None:
    """The compose file and .env the rollout leaves on each host, run as its header says: on a
    Docker host with Docker's Compose v2 (container_engine installs the pinned release), on the
    Podman host with podman-compose. The deployed container goes first (the same name); `up -d`
    serves the version the host ran, confined; `down` removes it; the state play puts the
    deployed server back."""
    hosts = fleet["fleet"].hosts
    running = {host: status(fleet, host)["version"] for host in COMPOSE}
    for host, (engine, up, down) in COMPOSE.items():
        hosts[host].exec(engine, "rm", "--force", "mmo-voxel-server")
        started = fleet["fleet"].ssh(host, up)
        assert started.returncode == 0, f"{host}: {started.stdout}{started.stderr}"
        assert healthy_version(fleet, host) == running[host], host
        inspect = hosts[host].exec(engine, "inspect", "mmo-voxel-server").stdout
        container = json.loads(inspect)[0]
        assert container["Config"]["Labels"]["com.docker.compose.project"] == "mmo-voxel", host
        assert container["Config"]["User"] == "10001:10001", host
        assert container["HostConfig"]["ReadonlyRootfs"] is True, host
        stopped = fleet["fleet"].ssh(host, down)
        assert stopped.returncode == 0, f"{host}: {stopped.stdout}{stopped.stderr}"
        left = hosts[host].exec(engine, "ps", "--all", "--quiet", "--filter", "name=mmo-voxel")
        assert left.stdout.strip() == "", host

    back = play(fleet, "playbooks/game_server_state.yml", "--limit", ",".join(COMPOSE))
    assert back.returncode == 0, back.stdout[-8000:]
    assert {host: status(fleet, host)["version"] for host in COMPOSE} == running


def test_no_registry_secret_reaches_an_output_or_the_log(fleet: dict) -> None:
    assert fleet["outputs"], "the tests above ran nothing"
    texts = [*fleet["outputs"], fleet["log"].read_text()]
    for secret in fleet["secrets"]:
        assert not any(secret in text for text in texts), "a registry secret leaked"
