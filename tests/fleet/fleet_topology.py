"""A fleet on this machine: systemd test hosts reached over SSH, as the studio's hosts are.

Each host is a container of the Molecule image (systemd as PID 1, sshd, the roles' packages)
on a network of its own. Game server hosts get the options a nested container engine needs to
run containers (machine notes: every capability but SYS_RESOURCE, no seccomp/AppArmor
confinement, the host's cgroup tree read-write); other hosts get the plain systemd platform.
The test makes an SSH key, puts it in root's authorized_keys (what a cloud image's first boot
does) and starts sshd; from then on Ansible reaches the hosts over SSH only, with the addresses
in a known_hosts file made by ssh-keyscan (no host key checking turned off).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from polling import wait_until
from systemd_instance import COMMAND, IMAGE, docker_run_options, wait_for_boot

# What a container engine inside a test host needs to run containers (machine notes): the
# containers it runs use the host's network, so the engine makes no bridge and no iptables.
NESTED_ENGINE_OPTIONS = [
    "--cap-add=ALL",
    "--cap-drop=SYS_RESOURCE",
    "--security-opt=seccomp=unconfined",
    "--security-opt=apparmor=unconfined",
    "--security-opt=systempaths=unconfined",
    "--cgroupns=host",
    "-v=/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs=/run",
    "--tmpfs=/run/lock",
    # The engines' stores on volumes of their own (this machine's ext4), not on the host's
    # overlay root: overlay storage works there, where the overlay root allows only vfs, which
    # copies the whole image for every layer and every container. Removed with the host
    # (`rm --volumes`).
    "-v=/var/lib/docker",
    "-v=/var/lib/containers",
]


def docker(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, **kwargs)


@dataclass
class Host:
    name: str
    container: str
    address: str

    def exec(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command on the host outside of Ansible (to look, or to inject a fault)."""
        return docker("exec", self.container, *argv, check=check)


@dataclass
class Fleet:
    workdir: Path
    network: str
    hosts: dict[str, Host] = field(default_factory=dict)

    @property
    def key(self) -> Path:
        return self.workdir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.workdir / "known_hosts"

    def ssh_env(self, user: str) -> dict[str, str]:
        """What a person's shell gives Ansible: their key, their known_hosts, their login."""
        return {
            "ANSIBLE_PRIVATE_KEY_FILE": str(self.key),
            "ANSIBLE_SSH_COMMON_ARGS": f"-o UserKnownHostsFile={self.known_hosts}",
            "ANSIBLE_REMOTE_USER": user,
        }

    @property
    def gateway(self) -> str:
        """This machine's address on the fleet's network (where the hosts reach the controller)."""
        return docker(
            "network", "inspect", "--format", "{{(index .IPAM.Config 0).Gateway}}", self.network
        ).stdout.strip()

    def ssh(self, name: str, command: str, user: str = "root") -> subprocess.CompletedProcess[str]:
        host = self.hosts[name]
        return subprocess.run(
            [
                "ssh",
                "-i",
                str(self.key),
                "-o",
                f"UserKnownHostsFile={self.known_hosts}",
                "-o",
                "BatchMode=yes",
                f"{user}@{host.address}",
                command,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    def stop(self) -> None:
        for host in self.hosts.values():
            docker("rm", "--force", "--volumes", host.container, check=False)
        docker("network", "rm", self.network, check=False)


def start_fleet(workdir: Path, nested: list[str], plain: list[str], prefix: str) -> Fleet:
    """Start the hosts, give root the test's key, start sshd, learn the host keys."""
    workdir.mkdir(parents=True, exist_ok=True)
    fleet = Fleet(workdir=workdir, network=f"{prefix}-net")
    docker("network", "rm", fleet.network, check=False)
    docker("network", "create", fleet.network)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fleet-test", "-f", str(fleet.key)],
        check=True,
    )
    public_key = fleet.key.with_suffix(".pub").read_text()
    for name in nested + plain:
        container = f"{prefix}-{name}"
        docker("rm", "--force", "--volumes", container, check=False)
        options = NESTED_ENGINE_OPTIONS if name in nested else docker_run_options()
        docker(
            "run",
            "--detach",
            f"--name={container}",
            f"--hostname={name}",
            f"--network={fleet.network}",
            *options,
            IMAGE,
            COMMAND,
        )
        address = docker(
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            container,
        ).stdout.strip()
        fleet.hosts[name] = Host(name=name, container=container, address=address)
    for host in fleet.hosts.values():
        wait_for_boot(host.container, timeout=90)
        # The image keeps the services of the roles' packages disabled; sshd is what a new
        # server has running, so it is started here, with the key root was given at creation.
        docker(
            "exec",
            "-i",
            host.container,
            "sh",
            "-c",
            "install -d -m 0700 /root/.ssh && cat > /root/.ssh/authorized_keys"
            " && chmod 0600 /root/.ssh/authorized_keys && systemctl enable --now ssh",
            input=public_key,
        )
    fleet.known_hosts.write_text("".join(_scan(host) for host in fleet.hosts.values()))
    for name in fleet.hosts:
        probe = fleet.ssh(name, "true")
        assert probe.returncode == 0, f"{name}: ssh does not answer: {probe.stderr}"
    return fleet


def _scan(host: Host) -> str:
    def host_keys() -> str:
        found = subprocess.run(
            ["ssh-keyscan", "-T", "5", host.address], capture_output=True, text=True, check=False
        ).stdout
        return found if found.strip() else ""

    return wait_until(
        host_keys, 120, f"{host.name}: a host key from sshd at {host.address}", interval=1
    )


def unique_prefix() -> str:
    """Containers of two runs at once (two checkouts, a bench) never share a name."""
    return f"mmo-fleet-{os.getpid()}"
