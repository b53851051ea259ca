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
  6. neither the registry password nor its TLS key is in any output or log of these runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from ansible_output import RECAP
from fleet_inventory import NESTED_DOCKER_DAEMON, make_age_key, write_inventory
from fleet_topology import Fleet, start_fleet, unique_prefix
from reference_release import MIGRATION_2, release_args
from registry_pki import (
    forget_on_this_machine,
    make_ca,
    make_server_certificate,
    secret_lines,
)

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = "mmo-voxel/runtime-bookworm:latest"
GAME_HOSTS = ["game-1", "game-2", "game-3"]
REGISTRY_PORT = 5000
STATUS_PORT = 8080
ADMIN = "ops"
# Test values, built so that no secret scanner takes them for real ones.
REGISTRY_USER = "deployer"
REGISTRY_PASSWORD = "fleet-" + "registry-pw-5e1c"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="writes this machine's /etc/docker/certs.d"),
]


@pytest.fixture(scope="module")
def fleet(ansible_env: dict[str, str]):
    found = subprocess.run(
        ["docker", "image", "inspect", BASE_IMAGE], capture_output=True, check=False
    )
    if found.returncode:
        pytest.fail(f"{BASE_IMAGE} is missing: run scripts/ensure-test-images")
    # Not under pytest's tmp dir: the build context and logs are read by other users' processes.
    workdir = Path(tempfile.mkdtemp(prefix="mmo-fleet-"))
    fleet = start_fleet(workdir, nested=GAME_HOSTS, plain=["registry-1"], prefix=unique_prefix())
    registry = f"{fleet.hosts['registry-1'].address}:{REGISTRY_PORT}"
    try:
        yield build_site(fleet, registry, ansible_env)
    finally:
        fleet.stop()
        # What registry_trust and the login wrote on this machine (the controller).
        forget_on_this_machine(registry)
        subprocess.run(["docker", "logout", registry], capture_output=True, check=False)
        shutil.rmtree(workdir, ignore_errors=True)


def build_site(fleet: Fleet, registry: str, ansible_env: dict[str, str]) -> dict:
    workdir = fleet.workdir
    sops_env = ansible_env | {"SOPS_DISABLE_VERSION_CHECK": "1"}
    age_key, recipient = make_age_key(workdir)
    ca = make_ca()
    server = make_server_certificate(ca, fleet.hosts["registry-1"].address)
    public_key = fleet.key.with_suffix(".pub").read_text().strip()
    hosts = {name: {"ansible_host": host.address} for name, host in fleet.hosts.items()}
    hosts["game-3"] |= {
        "container_engine_name": "podman",
        # Podman inside a test host (machine notes): runc, cgroupfs, rlimits within the hard
        # limits, and vfs storage on the host's own overlay file system.
        "container_engine_podman_containers_conf": {
            "engine": {"runtime": "runc", "cgroup_manager": "cgroupfs"},
            "containers": {"default_ulimits": ["nofile=20000:20000", "nproc=20000:20000"]},
        },
        "container_engine_podman_storage_driver": "vfs",
        # Podman makes its own bridge inside the host and publishes the ports there (as on a
        # real host); the Docker hosts cannot (their nested engine has no bridge).
        "game_server_network_mode": "published",
    }
    group_vars = {
        "all": {
            "base_admin_users": [{"name": ADMIN, "ssh_keys": [public_key]}],
            "server_build_registry": registry,
            "server_build_repository": "mmo-voxel/server",
            "server_build_base_image": BASE_IMAGE,
            "server_build_context_root": str(workdir / "build"),
            "registry_ca_certificate": ca.certificate_pem,
            "registry_tls_certificate": server.certificate_pem,
            "deploy_discord_webhook": "",
        },
        "game_servers": {
            "ansible_become": True,
            "container_engine_docker_daemon_options": NESTED_DOCKER_DAEMON,
            # Engines nested in a test host run containers on the host's network only.
            "game_server_network_mode": "host",
            "game_server_stop_grace": 10,
            "game_server_health_timeout": 30,
            "deploy_preflight_min_free_mib": 1,
        },
        "registries": {"ansible_become": True},
    }
    secrets = {
        "secret_registry_username": REGISTRY_USER,
        "secret_registry_password": REGISTRY_PASSWORD,
        "secret_registry_tls_key": server.key_pem,
    }
    inventory = write_inventory(
        workdir,
        hosts,
        {"game_servers": GAME_HOSTS, "registries": ["registry-1"]},
        group_vars,
        secrets,
        recipient,
        sops_env,
    )
    log = workdir / "ansible.log"
    env = ansible_env | {
        "ANSIBLE_SOPS_AGE_KEYFILE": str(age_key),
        "SOPS_DISABLE_VERSION_CHECK": "1",
        # The playbooks' own interpreter settings: hosts use /usr/bin/python3 (ansible.cfg).
        "ANSIBLE_LOG_PATH": str(log),
    }
    env.pop("ANSIBLE_PYTHON_INTERPRETER", None)
    return {
        "fleet": fleet,
        "inventory": inventory,
        "env": env,
        "registry": registry,
        "log": log,
        "secrets": [REGISTRY_PASSWORD, *secret_lines(server.key_pem)],
        "outputs": [],
        "workdir": workdir,
    }


def play(site: dict, playbook: str, *extra: str, user: str = ADMIN) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", str(site["inventory"]),
         str(REPO / playbook), *extra],
        cwd=REPO,
        env=site["env"] | site["fleet"].ssh_env(user),
        capture_output=True,
        text=True,
        check=False,
        timeout=1200,
    )  # fmt: skip
    site["outputs"].append(result.stdout + result.stderr)
    return result


def recap(result: subprocess.CompletedProcess) -> dict[str, tuple[int, int, int]]:
    """host -> (changed, unreachable, failed) from the PLAY RECAP."""
    return {m[1]: (int(m[3]), int(m[4]), int(m[5])) for m in RECAP.finditer(result.stdout)}


def status(site: dict, host: str) -> dict:
    """/status as the host itself sees it (the status port listens on the host's loopback)."""
    answer = site["fleet"].hosts[host].exec(
        "python3", "-c",
        "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
        f"'http://127.0.0.1:{STATUS_PORT}/status', timeout=5).read().decode())",
    )  # fmt: skip
    return json.loads(answer.stdout)


def history(site: dict, host: str) -> list[dict]:
    host_ = site["fleet"].hosts[host]
    text = host_.exec("cat", "/srv/mmo-voxel/releases.jsonl", check=False).stdout
    return [json.loads(line) for line in text.splitlines()]


SCHEMA_PY = """
import json, sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
version = db.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
names = "SELECT name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
print(json.dumps([version, db.execute(names).fetchall()]))
"""


def schema(site: dict, host: str) -> list:
    """The world's schema version and objects (the running server keeps writing rows, so the
    rows differ from one look to the next; what a rollback must give back is the schema)."""
    answer = (
        site["fleet"].hosts[host].exec("python3", "-c", SCHEMA_PY, "/srv/mmo-voxel/data/world.db")
    )
    return json.loads(answer.stdout)


def fleet_lines(result: subprocess.CompletedProcess) -> dict[str, str]:
    """The summary's line per host (deploy.yml, "Show the fleet")."""
    block = result.stdout.split("Show the fleet", 1)[1].split("TASK [", 1)[0]
    return {m[1]: m[2] for m in re.finditer(r"^\s*- ['\"]?(game-\d): (.*?)['\"]?$", block, re.M)}


def batches(result: subprocess.CompletedProcess) -> list[list[str]]:
    """The hosts of each batch of the rollout play, in order (serial prints the play per batch)."""
    sections = result.stdout.split("PLAY [Roll out a canary")[1:]
    found = []
    for section in sections:
        play_part = section.split("PLAY [", 1)[0]
        found.append(sorted(set(re.findall(r"\b(game-\d)\b", play_part))))
    return found


def release(site: dict, version: str, migrations: dict[str, str]) -> list[str]:
    """-e arguments of a reference server release with extra migrations."""
    folder = site["workdir"] / f"migrations-{version}"
    return ["-e", f"deploy_version={version}", *release_args(folder, migrations)]


def fail_on(site: dict, host: str, version: str) -> None:
    """Make `version` fail its health gate on this host only (reference server's host switch)."""
    site["fleet"].hosts[host].exec("touch", f"/srv/mmo-voxel/data/FAIL_HEALTHCHECK.{version}")


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


def test_no_registry_secret_reaches_an_output_or_the_log(fleet: dict) -> None:
    assert fleet["outputs"], "the tests above ran nothing"
    texts = [*fleet["outputs"], fleet["log"].read_text()]
    for secret in fleet["secrets"]:
        assert not any(secret in text for text in texts), "a registry secret leaked"
