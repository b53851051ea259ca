"""The registry roles and the registry logins against a real registry, from this machine.

A systemd test host runs Debian's docker-registry through roles/registry (playbooks/registry.yml),
with a certificate from a CA this test makes for the host's address and an htpasswd login. This
machine is the controller: registry_trust makes its Docker engine and its system store trust the
CA (the files are removed again at the end, through the role's state absent), the server_build
preflight logs it in, and a small local image is pushed through that login. The test host is also
a game server host that runs Podman, and this machine one that runs Docker: deploy_preflight's
registry login is run on both.

  1. check mode on the fresh host, apply, apply again (changed=0), check again (changed=0);
  2. the registry serves TLS only, with the certificate made for it, and wants a login;
  3. the controller logs in and a push goes through; a second preflight changes nothing;
  4. a wrong password, half a login, no login at all: a clear stop naming registry, user and
     "controller" (or the variable), never the password; no login attempted without a user;
  5. each game host logs in with its engine, idempotently; a wrong password stops both, naming them;
  6. neither the password nor any line of the TLS key is in any output or log of these runs.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from ansible_output import RECAP
from registry_pki import (
    forget_on_this_machine,
    make_ca,
    make_server_certificate,
    secret_lines,
)
from system_tools import docker
from systemd_instance import COMMAND, IMAGE, docker_run_options, wait_for_boot

REPO = Path(__file__).resolve().parents[2]
PUSH_SOURCE = "mmo-voxel/bookworm-base:latest"
PORT = 5000
USER = "deployer"
# Test values, built so that no secret scanner takes them for real ones. The CI leak scan knows
# this one (a *PASSWORD* constant of tests/); the TLS key is made here, so the last test scans
# this file's outputs for it.
REGISTRY_PASSWORD = "it-" + "registry-pw-3f9b"
WRONG_PASSWORD = "it-" + "wrong-pw-a8c1"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0, reason="writes this machine's trust store and /etc/docker/certs.d"
    ),
]

CONTROLLER_PREFLIGHT = """\
- name: Run the server_build preflight on the controller (deploy.yml's first play)
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Check the build's inputs and log in to the registry
      ansible.builtin.include_role:
        name: server_build
        tasks_from: preflight.yml
      vars:
        server_build_version: it-1
"""
HOST_LOGIN = """\
- name: Log each game server host in, as deploy.yml's host preflight does
  hosts: game_servers
  gather_facts: false
  tasks:
    - name: Log in to the registry
      ansible.builtin.include_role:
        name: deploy_preflight
        tasks_from: registry_login.yml
"""
TRUST_ABSENT = """\
- name: Forget the registry's CA on this controller
  hosts: localhost
  become: true
  gather_facts: false
  roles:
    - role: registry_trust
      vars:
        registry_trust_state: absent
"""


def recap(result: subprocess.CompletedProcess) -> dict[str, int]:
    """host -> changed, from the PLAY RECAP."""
    return {m[1]: int(m[3]) for m in RECAP.finditer(result.stdout)}


def start_host(name: str) -> str:
    """A systemd test host; its address once systemd runs."""
    docker("run", "-d", "--name", name, "--hostname", name, *docker_run_options(), IMAGE, COMMAND)
    wait_for_boot(name, timeout=60)
    return docker(
        "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name
    ).stdout.strip()


@pytest.fixture(scope="module")
def site(ansible_env: dict[str, str]) -> Iterator[dict]:
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        pytest.fail(f"{IMAGE} is missing: run scripts/ensure-test-images")
    if docker("image", "inspect", PUSH_SOURCE, check=False).returncode != 0:
        pytest.fail(f"{PUSH_SOURCE} is missing: run scripts/ensure-test-images")
    prefix = os.environ.get("REGISTRY_IT_PREFIX", "mmo-registry-it")
    name = f"{prefix}-{os.getpid()}"
    workdir = Path(tempfile.mkdtemp(prefix="mmo-registry-it-"))
    registry = ""
    try:
        address = start_host(name)
        registry = f"{address}:{PORT}"
        ca = make_ca()
        server = make_server_certificate(ca, address)
        inventory = {
            "all": {
                "vars": {
                    "server_build_registry": registry,
                    "registry_ca_certificate": ca.certificate_pem,
                    "registry_tls_certificate": server.certificate_pem,
                    "secret_registry_username": USER,
                    "secret_registry_password": REGISTRY_PASSWORD,
                    "secret_registry_tls_key": server.key_pem,
                },
                "children": {
                    "registries": {"hosts": {name: None}},
                    # Podman on the test host, Docker on this machine.
                    "game_servers": {"hosts": {name: None, "localhost": None}},
                },
                "hosts": {
                    name: {
                        "ansible_connection": "community.docker.docker",
                        "deploy_preflight_engine": "podman",
                    },
                    # The controller, as the inventories reach it: its own Python (the venv).
                    "localhost": {
                        "ansible_connection": "local",
                        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                        "deploy_preflight_engine": "docker",
                    },
                },
            }
        }
        (workdir / "hosts.yml").write_text(yaml.safe_dump(inventory))
        for playbook, text in (
            ("controller_preflight.yml", CONTROLLER_PREFLIGHT),
            ("host_login.yml", HOST_LOGIN),
            ("trust_absent.yml", TRUST_ABSENT),
        ):
            (workdir / playbook).write_text(text)
        secrets = workdir / "secrets.txt"
        secrets.write_text(f"{REGISTRY_PASSWORD}\n{server.key_pem}")
        (workdir / "outputs").mkdir()
        home = workdir / "home"
        home.mkdir()
        env = dict(ansible_env)
        # The hosts' own Python (ansible.cfg); the controller's is set in the inventory.
        env.pop("ANSIBLE_PYTHON_INTERPRETER", None)
        # The logins go to this test's own ~/.docker/config.json, not the machine user's.
        env["HOME"] = str(home)
        env.setdefault("ANSIBLE_LOG_PATH", str(workdir / "ansible.log"))
        yield {
            "name": name,
            "address": address,
            "registry": registry,
            "ca": ca.certificate_pem,
            "workdir": workdir,
            "inventory": workdir / "hosts.yml",
            "env": env,
            "home": home,
            "secrets": secrets,
            "key_lines": secret_lines(server.key_pem),
            "runs": 0,
        }
        gone = play_raw(workdir, env, "trust_absent.yml")
        assert gone.returncode == 0, gone.stdout[-3000:]
        assert not Path(f"/etc/docker/certs.d/{registry}").exists()
        assert not Path(f"/etc/containers/certs.d/{registry}").exists()
    finally:
        if registry:
            forget_on_this_machine(registry)
        docker("rm", "-f", name, check=False)
        shutil.rmtree(workdir, ignore_errors=True)


def play_raw(
    workdir: Path, env: dict[str, str], playbook: str, *extra: str
) -> subprocess.CompletedProcess:
    path = playbook if playbook.startswith("playbooks/") else str(workdir / playbook)
    return subprocess.run(
        [str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", str(workdir / "hosts.yml"),
         path, *extra],
        cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip


def play(site: dict, playbook: str, *extra: str, home: Path | None = None):
    """Run a playbook; its output is kept for the leak scan at the end."""
    env = site["env"] | ({"HOME": str(home)} if home else {})
    result = play_raw(site["workdir"], env, playbook, *extra)
    site["runs"] += 1
    out = site["workdir"] / "outputs" / f"{site['runs']:02d}-{Path(playbook).stem}.txt"
    out.write_text(result.stdout + result.stderr)
    return result


def get_v2(site: dict, login: str | None = None) -> int:
    request = urllib.request.Request(f"https://{site['registry']}/v2/")
    if login:
        request.add_header("Authorization", "Basic " + base64.b64encode(login.encode()).decode())
    context = ssl.create_default_context(cadata=site["ca"])
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_the_registry_converges_checked_first_and_a_second_run_changes_nothing(site: dict) -> None:
    check = play(site, "playbooks/registry.yml", "--check", "--diff")
    assert check.returncode == 0, check.stdout[-6000:]
    first = play(site, "playbooks/registry.yml")
    assert first.returncode == 0, first.stdout[-6000:]
    assert recap(first)[site["name"]] > 0
    again = play(site, "playbooks/registry.yml")
    assert again.returncode == 0, again.stdout[-6000:]
    assert recap(again) == {site["name"]: 0, "localhost": 0}, again.stdout[-3000:]
    check = play(site, "playbooks/registry.yml", "--check", "--diff")
    assert check.returncode == 0, check.stdout[-6000:]
    assert recap(check) == {site["name"]: 0, "localhost": 0}, check.stdout[-3000:]

    modes = docker(
        "exec", site["name"], "stat", "-c", "%n %a %U:%G", "/etc/docker/registry/tls/registry.key",
        "/etc/docker/registry/htpasswd", "/etc/docker/registry/config.yml",
    ).stdout.splitlines()  # fmt: skip
    assert modes == [
        "/etc/docker/registry/tls/registry.key 640 root:docker-registry",
        "/etc/docker/registry/htpasswd 640 root:docker-registry",
        "/etc/docker/registry/config.yml 644 root:root",
    ]
    enabled = docker("exec", site["name"], "systemctl", "is-enabled", "docker-registry")
    assert enabled.stdout.strip() == "enabled"
    # This machine trusts the CA for its engine and its system store.
    assert Path(f"/etc/docker/certs.d/{site['registry']}/ca.crt").read_text().strip() == (
        site["ca"].strip()
    )


def test_the_registry_serves_its_certificate_and_wants_a_login(site: dict) -> None:
    assert get_v2(site) == 401
    assert get_v2(site, f"{USER}:{REGISTRY_PASSWORD}") == 200
    assert get_v2(site, f"{USER}:{WRONG_PASSWORD}") == 401
    assert get_v2(site, f"nobody:{REGISTRY_PASSWORD}") == 401
    config = yaml.safe_load(
        docker("exec", site["name"], "cat", "/etc/docker/registry/config.yml").stdout
    )
    assert config["http"]["tls"]["certificate"] == "/etc/docker/registry/tls/registry.crt"
    assert config["auth"]["htpasswd"]["path"] == "/etc/docker/registry/htpasswd"
    htpasswd = docker("exec", site["name"], "cat", "/etc/docker/registry/htpasswd").stdout
    assert htpasswd.startswith(f"{USER}:$2")  # bcrypt, the only hash the registry reads


def test_the_controller_logs_in_before_the_push_and_the_push_goes_through(site: dict) -> None:
    first = play(site, "controller_preflight.yml")
    assert first.returncode == 0, first.stdout[-6000:]
    assert recap(first) == {"localhost": 1}
    again = play(site, "controller_preflight.yml")
    assert recap(again) == {"localhost": 0}, again.stdout[-3000:]
    config = site["home"] / ".docker" / "config.json"
    assert list(json.loads(config.read_text())["auths"]) == [site["registry"]]
    assert config.stat().st_mode & 0o077 == 0

    tag = f"{site['registry']}/mmo-voxel/probe:it-{os.getpid()}"
    docker("tag", PUSH_SOURCE, tag)
    try:
        pushed = docker("--config", str(config.parent), "push", tag, check=False)
        assert pushed.returncode == 0, pushed.stdout + pushed.stderr
        without = site["workdir"] / "no-login"
        without.mkdir(exist_ok=True)
        refused = docker("--config", str(without), "push", tag, check=False)
        assert refused.returncode != 0
        assert "no basic auth credentials" in refused.stdout + refused.stderr
    finally:
        docker("rmi", tag, check=False)  # only the tag this test made


def test_a_wrong_password_stops_the_controller_preflight_naming_registry_and_user(
    site: dict,
) -> None:
    wrong = f"secret_registry_password={WRONG_PASSWORD}"
    result = play(site, "controller_preflight.yml", "-e", wrong)
    assert result.returncode == 2
    out = result.stdout + result.stderr
    assert (
        f"controller localhost: the registry {site['registry']} refused the login of user {USER}"
        in out
    ), out[-3000:]
    assert WRONG_PASSWORD not in out
    assert REGISTRY_PASSWORD not in out


def test_half_a_login_stops_the_controller_preflight_naming_the_variable(site: dict) -> None:
    result = play(site, "controller_preflight.yml", "-e", "secret_registry_password=")
    assert result.returncode == 2
    assert "server_build_registry_password (the SOPS secret secret_registry_password) is empty" in (
        result.stdout
    ), result.stdout[-3000:]
    result = play(site, "controller_preflight.yml", "-e", "secret_registry_username=")
    assert result.returncode == 2
    assert "secret_registry_username) is empty while a password" in result.stdout


def test_without_a_user_no_login_is_attempted(site: dict) -> None:
    home = site["workdir"] / "home-no-login"
    home.mkdir()
    result = play(
        site, "controller_preflight.yml", "-e", "secret_registry_username=",
        "-e", "secret_registry_password=", home=home,
    )  # fmt: skip
    # The registry answers 401 to the anonymous probe: a registry that wants a login the
    # operator may have stored by hand (docker login) is still accepted.
    assert result.returncode == 0, result.stdout[-3000:]
    assert not (home / ".docker").exists()
    for task in ("Ask the registry whether it accepts", "Log the controller's Docker engine in"):
        section = result.stdout.split(task, 1)[1][:300]
        assert "skipping: [localhost]" in section, section


def test_each_game_host_logs_in_with_its_engine(site: dict) -> None:
    first = play(site, "host_login.yml")
    assert first.returncode == 0, first.stdout[-6000:]
    again = play(site, "host_login.yml")
    assert recap(again) == {site["name"]: 0, "localhost": 0}, again.stdout[-3000:]
    # Podman keeps it where its pulls look without options.
    login = docker("exec", site["name"], "podman", "login", "--get-login", site["registry"])
    assert login.stdout.strip() == USER
    mode = docker("exec", site["name"], "stat", "-c", "%a", "/root/.config/containers/auth.json")
    assert mode.stdout.strip() == "600"

    wrong = play(site, "host_login.yml", "-e", f"secret_registry_password={WRONG_PASSWORD}")
    assert wrong.returncode == 2
    for host in (site["name"], "localhost"):
        assert (
            f"{host}: the registry {site['registry']} refused the login of user {USER}"
            in wrong.stdout
        ), wrong.stdout[-3000:]
    assert WRONG_PASSWORD not in wrong.stdout + wrong.stderr


def test_no_password_or_key_line_in_any_output_or_log(site: dict) -> None:
    outputs = site["workdir"] / "outputs"
    assert len(list(outputs.iterdir())) >= 10, "the tests above ran nothing"
    log = Path(site["env"]["ANSIBLE_LOG_PATH"])
    scanned = [str(outputs), *([str(log)] if log.exists() else [])]
    scan = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), str(REPO / "scripts" / "leak-scan"),
         "--secrets-file", str(site["secrets"]), *scanned],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert scan.returncode == 0, scan.stdout + scan.stderr
    assert f"{1 + len(site['key_lines'])} secrets" in scan.stderr
