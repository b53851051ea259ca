"""game_server's health gate ends at its timeout, however long each ask takes.

The gate asks /healthz through a module run per ask; on a busy host one ask takes a second or
more. A gate that counted asks (timeout / interval of them) lasted several times its timeout
when the new version never became healthy: 5.5 min for a 90 s gate on the test fleet. Here the
server answers 503 after 1 s, so every ask takes at least 1 s: a 2 s gate asks a few times and
fails; counting asks, it would ask all 20 times (2 s / 0.1 s).
"""

from __future__ import annotations

import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: game_server
        tasks_from: health
      vars:
        game_server_status_url: {url}
        game_server_health_timeout: 2
        game_server_health_interval: 0.1
        game_server_expect_version: "1.0.0"
"""


class SlowUnhealthy(BaseHTTPRequestHandler):
    asks = 0

    def do_GET(self) -> None:
        type(self).asks += 1
        time.sleep(1)
        self.send_response(503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowUnhealthy)
    SlowUnhealthy.asks = 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_gate_that_never_passes_ends_at_its_timeout(
    slow_server: str, ansible_env: dict, tmp_path: Path
) -> None:
    play = tmp_path / "gate.yml"
    play.write_text(PLAY.format(url=slow_server))
    result = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "ansible-playbook"),
            "-i",
            "localhost,",
            "-c",
            "local",
            str(play),
        ],
        env=ansible_env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2, result.stdout[-4000:]
    assert "Wait for /healthz to answer 200" in result.stdout
    # At most the asks that fit in 2 s of 1 s answers, and then some slack for a busy machine;
    # far fewer than the 20 a count of asks would make.
    assert 1 <= SlowUnhealthy.asks <= 6, SlowUnhealthy.asks
