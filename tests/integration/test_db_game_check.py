"""The game's own database check in the weekly check (roles/db_schedule, issue #20).

The reference server image is built for real by playbooks/server_image.yml (server_build's
label org.mmo-voxel.db-healthcheck and its stand-in script); a container of it stands for the
running server. The db job (roles/db_schedule/files/mmo_voxel_db_job.py, as installed on a host)
runs `run check`: SQLite's checks through the repository's voxeldb, then the game's check in a
throwaway container of that image on a copy of the world. A chunk whose payload no longer
matches its checksum is something only the game knows: SQLite's checks pass, the game's fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlite_worlds import make_world
from system_tools import docker, free_port

REPO = Path(__file__).resolve().parents[2]
JOB = REPO / "roles" / "db_schedule" / "files" / "mmo_voxel_db_job.py"
LABEL = "org.mmo-voxel.db-healthcheck"
USERDATA = "/home/mmo-voxel/.local/share/godot/app_userdata/mmo_voxel"
BASE = "mmo-voxel/runtime-bookworm:latest"

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def server_image(tmp_path_factory: pytest.TempPathFactory):
    """The reference server's image, built as a deploy builds it (no registry, own repository)."""
    if docker("image", "inspect", BASE, check=False).returncode != 0:
        pytest.fail(f"{BASE} is missing: run scripts/ensure-test-images")
    repository = f"mmo-voxel/server-game-check-{free_port()}"
    context = tmp_path_factory.mktemp("build")
    built = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "ansible-playbook"),
            "-i", str(REPO / "inventories" / "local"),
            str(REPO / "playbooks" / "server_image.yml"),
            "-e", "deploy_version=1.0.0",
            "-e", f"server_build_repository={repository}",
            "-e", "server_build_local_tag=",  # leave this machine's :local alone
            "-e", f"server_build_context_root={context}",
        ],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-6000:] + built.stderr[-2000:]
    image = f"{repository}:1.0.0"
    yield image
    docker("image", "rm", "-f", image, f"{repository}:sha-{git_sha()}", check=False)


def git_sha() -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip


@pytest.fixture
def running(server_image: str, tmp_path: Path):
    """A container of the image standing for the running server; removed after."""
    name = f"mmo-voxel-game-check-{free_port()}"
    docker("run", "-d", "--name", name, "--entrypoint", "sleep", server_image, "infinity")
    yield name
    docker("rm", "-f", name, check=False)


def world(path: Path) -> Path:
    return make_world(path, chunks=20, payload=lambda i: bytes([i % 251]) * 512, players=3)


def change(db: Path, sql: str) -> None:
    """Damage the world behind the server's back, as a bad write would."""
    conn = sqlite3.connect(db)
    conn.execute(sql)
    conn.commit()
    conn.close()


def config(tmp_path: Path, db: Path, container: str) -> Path:
    """db-ops.json as the role renders it (vars/main.yml: db_schedule_job_settings)."""
    path = tmp_path / "db-ops.json"
    path.write_text(
        json.dumps(
            {
                "voxeldb": str(REPO / "scripts" / "voxeldb"),
                "status_file": str(tmp_path / "status.json"),
                "webhook_file": str(tmp_path / "no-webhook"),
                "alert_timeout": 1,
                "host": "game-1",
                "units": {},
                "jobs": {"check": ["check", "--db", str(db), "--integrity", "quick"]},
                "game_check": {
                    "engine": "docker",
                    "container": container,
                    "label": LABEL,
                    "db": str(db),
                    "mount": f"{USERDATA}/database",
                    "user": "10001:10001",
                    "timeout": 120,
                    "scratch_dir": str(tmp_path / "scratch"),
                },
            }
        )
    )
    return path


def run_check(cfg: Path) -> tuple[subprocess.CompletedProcess, dict]:
    result = subprocess.run(
        [sys.executable, str(JOB), "--config", str(cfg), "run", "check"],
        # The shared helpers: on a host in the install's lib/, here in the repository's collection.
        env={**os.environ, "PYTHONPATH": str(REPO / "collections")},
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    status = json.loads((cfg.parent / "status.json").read_text())["check"]
    return result, status


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_image_declares_the_games_check(server_image: str) -> None:
    labels = json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}",
                               server_image).stdout)  # fmt: skip
    assert json.loads(labels[LABEL]) == ["python3", "/app/tools/db_healthcheck.py", "--db", "{db}"]


def test_a_healthy_world_passes_both_checks_and_is_not_touched(
    running: str, tmp_path: Path
) -> None:
    db = world(tmp_path / "data" / "world.db")
    before = sha256(db)

    result, status = run_check(config(tmp_path, db, running))

    assert result.returncode == 0, result.stdout + result.stderr
    assert status["result"] == "ok"
    assert status["detail"].startswith("healthy; game check ok: ")
    assert json.loads(status["detail"].split("game check ok: ", 1)[1]) == {
        "chunks": 20, "healthy": True, "problems": []
    }  # fmt: skip
    assert sha256(db) == before
    assert list((tmp_path / "scratch").iterdir()) == []  # the copy is gone


def test_a_chunk_only_the_game_knows_is_damaged_fails_the_weekly_check(
    running: str, tmp_path: Path
) -> None:
    db = world(tmp_path / "data" / "world.db")
    change(db, "UPDATE chunks SET payload = x'00ff' WHERE cx = 7")

    result, status = run_check(config(tmp_path, db, running))

    assert result.returncode == 1
    assert status["result"] == "failed"
    # SQLite's own checks find nothing wrong; the game's check names the chunk.
    assert status["detail"].startswith("healthy; game check failed (exit 1): ")
    assert "chunk (7, 0, 0): payload does not match its checksum" in status["detail"]
    assert list((tmp_path / "scratch").iterdir()) == []


def test_a_missing_index_is_found_by_the_game_too(running: str, tmp_path: Path) -> None:
    db = world(tmp_path / "data" / "world.db")
    change(db, "DROP INDEX players_last_seen_at")

    result, status = run_check(config(tmp_path, db, running))

    assert result.returncode == 1
    assert "game check failed (exit 1)" in status["detail"]
    assert "index players_last_seen_at is missing" in status["detail"]


def test_no_server_or_no_declared_check_is_said_not_failed(tmp_path: Path) -> None:
    db = world(tmp_path / "data" / "world.db")
    result, status = run_check(config(tmp_path, db, "mmo-voxel-no-such-container"))
    assert result.returncode == 0, result.stdout + result.stderr
    said = status["detail"]
    assert said == "healthy; game check skipped: no container mmo-voxel-no-such-container"

    bare = f"mmo-voxel-game-check-bare-{free_port()}"
    docker("run", "-d", "--name", bare, "--entrypoint", "sleep", BASE, "infinity")
    try:
        result, status = run_check(config(tmp_path, db, bare))
    finally:
        docker("rm", "-f", bare, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    said = status["detail"]
    assert said == f"healthy; game check skipped: the running image has no {LABEL} label"


def test_a_label_that_is_no_command_fails_naming_it(tmp_path: Path) -> None:
    """A hostile or broken image: the label is not a JSON list of strings."""
    db = world(tmp_path / "data" / "world.db")
    tag = f"mmo-voxel/game-check-broken:{free_port()}"
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text(
        f'FROM {BASE}\nLABEL {LABEL}="rm -rf /; echo {{db}}"\n'
    )
    docker("build", "-q", "-t", tag, str(tmp_path / "ctx"))
    name = f"mmo-voxel-game-check-broken-{free_port()}"
    docker("run", "-d", "--name", name, "--entrypoint", "sleep", tag, "infinity")
    try:
        result, status = run_check(config(tmp_path, db, name))
    finally:
        docker("rm", "-f", name, check=False)
        docker("image", "rm", "-f", tag, check=False)
    assert result.returncode == 1
    assert status["result"] == "failed"
    assert status["detail"].startswith("healthy; game check: ")
    assert f"label {LABEL} of the running image is not a JSON list of strings" in status["detail"]
