"""The engine on each instance, seen from outside (testinfra)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

ROLE_VARS = Path(__file__).resolve().parents[3] / "roles" / "container_engine" / "vars" / "main.yml"


def hostname(host) -> str:
    return host.backend.get_hostname()


def test_docker_answers_root_and_the_deploy_user(host):
    if "podman" in hostname(host):
        pytest.skip("the Podman instance has no Docker")
    version = host.check_output("docker info --format '{{.ServerVersion}}'")
    assert version.split(".")[0].isdigit()
    as_deploy = host.run("runuser -u deploy -- docker info --format '{{.ServerVersion}}'")
    assert as_deploy.rc == 0, as_deploy.stderr
    assert as_deploy.stdout.strip() == version
    assert "docker" in host.user("deploy").groups


def test_docker_runs_with_the_declared_settings(host):
    if "podman" in hostname(host):
        pytest.skip("the Podman instance has no Docker")
    settings = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert settings["log-driver"] == "local"
    assert host.check_output("docker info --format '{{.LoggingDriver}}'") == "local"
    assert host.check_output("docker info --format '{{.Driver}}'") == settings["storage-driver"]


def test_docker_compose_is_the_pinned_release(host):
    if "podman" in hostname(host):
        assert not host.file("/usr/local/lib/docker/cli-plugins/docker-compose").exists
        pytest.skip("the Podman instance runs podman-compose")
    pins = yaml.safe_load(ROLE_VARS.read_text())
    plugin = host.file(pins["container_engine_compose_dest"])
    assert plugin.mode == 0o755
    assert plugin.user == "root"
    # Docker's published sha256 of that release for this architecture.
    arch = host.system_info.arch
    assert plugin.sha256sum == pins["container_engine_compose_sha256"][arch]
    as_deploy = host.run("runuser -u deploy -- docker compose version --short")
    assert as_deploy.rc == 0, as_deploy.stderr
    assert as_deploy.stdout.strip() == pins["container_engine_compose_version"]


def test_systemd_runs_docker_where_there_is_systemd(host):
    name = hostname(host)
    if name == "ce-docker-systemd":
        docker = host.service("docker")
        assert docker.is_running
        assert docker.is_enabled
        assert host.check_output("ps -o comm= -p $(pgrep --exact dockerd)") == "dockerd"
        parent = host.check_output("ps -o ppid= -p $(pgrep --exact dockerd)").strip()
        assert parent == "1"  # started by systemd, PID 1
    elif name == "ce-docker-nosystemd":
        # No init system: the role started dockerd itself.
        assert host.check_output("ps -o comm= -p 1") == "sleep"
        assert host.run("pgrep --exact dockerd").rc == 0
    else:
        pytest.skip("Podman has no daemon")


def test_podman_answers_and_the_deploy_user_has_subordinate_ids(host):
    if "podman" not in hostname(host):
        pytest.skip("a Docker instance")
    assert host.check_output("podman --version").startswith("podman version")
    assert host.check_output("podman info --format '{{.Host.OCIRuntime.Name}}'")
    assert host.file("/etc/subuid").contains("^deploy:100000:65536$")
    assert host.file("/etc/subgid").contains("^deploy:100000:65536$")
    assert host.run("docker --version").rc != 0  # only the engine asked for


def test_podman_runs_with_the_declared_settings(host):
    if "podman" not in hostname(host):
        pytest.skip("a Docker instance")
    # The drop-in and storage.conf the role wrote are what Podman runs with.
    fields = "{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}} {{.Store.GraphDriverName}}"
    reported = host.check_output(f"podman info --format '{fields}'")
    assert reported.split() == ["runc", "cgroupfs", "vfs"]
    dropin = host.file("/etc/containers/containers.conf.d/50-mmo-voxel.conf")
    assert dropin.mode == 0o644
    assert 'default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]' in dropin.content_string
    # Podman has no daemon: the package's unit starts the containers of policy `always` at
    # boot, and the role's drop-in keeps a package upgrade (a restart of it) from stopping them.
    restart = host.service("podman-restart")
    assert restart.is_enabled
    assert host.check_output("systemctl show -p KillMode --value podman-restart") == "process"
    assert host.check_output("systemctl show -p ExecStop --value podman-restart") == ""
    assert host.run("podman-compose version").rc == 0
