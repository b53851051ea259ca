"""deploy.yml end to end on this machine: a real Docker engine, a real registry, real SQLite.

v1 is deployed; v2 brings a schema migration; v3 fails its health check and is rolled back by
itself (v2 serves again, the database as before v3); the rollback runbook goes back to v1
(migrating down); re-deploying the running version changes nothing; the restart runbook
restarts it; --check changes nothing; bad input stops in preflight. Last, the deploy and the
drift check run through ansible-runner, as AWX and Automation Platform run jobs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shlex
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from documented_commands import run_documented
from polling import wait_until
from reference_release import MIGRATION_2, MIGRATION_3, REFERENCE, release_args
from system_tools import docker, free_port

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = "mmo-voxel/runtime-bookworm:latest"
CONTAINER = "mmo-voxel-server-e2e"
# A test value of the admin token, built so no secret scanner takes it for a real one.
ADMIN_TOKEN = "e2e-admin-" + "c41f07aa"

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    """Debian's docker-registry (distribution 2.8) on 127.0.0.1, storage in a temp dir."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail(
            "docker-registry is not installed (scripts/install-system-packages installs it)"
        )
    if docker("image", "inspect", BASE_IMAGE, check=False).returncode != 0:
        pytest.fail(f"{BASE_IMAGE} is missing: run scripts/ensure-test-images")
    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    process = subprocess.Popen(
        [binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def answers() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1):
            return True

    # An OSError: not listening yet.
    wait_until(answers, 30, "the registry to answer", ignoring=(OSError,))
    yield f"127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def discord() -> Iterator[dict]:
    """A local HTTP receiver standing in for the Discord webhook; keeps every posted body."""
    received: list[dict] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            received.append({"path": self.path, "body": json.loads(self.rfile.read(length))})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # The path stands for the webhook's secret token: it must never be printed.
    path = "/api/webhooks/1234/e2e-" + "webhook-token-9b1d"
    url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    yield {"url": url, "secret": path, "received": received}
    server.shutdown()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, registry: str, discord: dict):
    """An inventory for this machine with all state in a temp dir; the container removed after."""
    # Not under pytest's tmp dir: its 0700 parents keep the container's user out.
    root = Path(tempfile.mkdtemp(prefix="mmo-voxel-e2e-"))
    root.chmod(0o755)
    status_port = free_port()
    inventory = root / "hosts.yml"
    inventory.write_text(
        json.dumps(
            {
                "all": {
                    "children": {
                        "game_servers": {
                            "hosts": {
                                "localhost": {
                                    "ansible_connection": "local",
                                    "game_server_root": str(root / "server"),
                                    "game_server_container": CONTAINER,
                                    "game_server_status_port": status_port,
                                    "game_server_game_port": free_port(),
                                    "game_server_stop_grace": 10,
                                    # Real seconds (the gate ends at a time): a healthy
                                    # start takes seconds, more beside the rest of the suite.
                                    "game_server_health_timeout": 60,
                                    # As the inventories set them: the database playbooks
                                    # and runbooks work on the deployed world.
                                    "db_ops_db_path": str(root / "server/data/world.db"),
                                    "db_ops_backup_dir": str(root / "db-backups"),
                                }
                            }
                        }
                    },
                    "vars": {
                        "server_build_registry": registry,
                        "server_build_repository": f"mmo-voxel/server-e2e-{status_port}",
                        "server_build_base_image": BASE_IMAGE,
                        "server_build_context_root": str(root / "build"),
                        "deploy_preflight_min_free_mib": 1,
                        "deploy_discord_webhook": discord["url"],
                        "game_server_admin_token": ADMIN_TOKEN,
                        # No /etc/logrotate.d file on the test machine.
                        "game_server_logrotate": False,
                    },
                }
            }
        )
    )
    yield {
        "root": root,
        "inventory": inventory,
        "status": f"http://127.0.0.1:{status_port}",
        "status_port": status_port,
        "db": root / "server" / "data" / "world.db",
        "registry": registry,
    }
    docker("rm", "-f", CONTAINER, check=False)
    shutil.rmtree(root, ignore_errors=True)


def run(site: dict, playbook: str, env: dict, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "ansible-playbook"),
            "-i",
            str(site["inventory"]),
            str(REPO / playbook),
            *extra,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def documented(site: dict, env: dict, command: str, **extra: str) -> subprocess.CompletedProcess:
    """A documented command in its registered form for this server (tests/documented_commands.yml):
    "$INVENTORY" is this test's inventory, "$STATUS_PORT" its server's status port."""
    variables = {"INVENTORY": str(site["inventory"]), "STATUS_PORT": str(site["status_port"])}
    return run_documented(command, env=env | variables | extra, timeout=600)


def recap(result: subprocess.CompletedProcess) -> str:
    return result.stdout[result.stdout.rfind("PLAY RECAP") :][:400]


def status(site: dict) -> dict:
    with urllib.request.urlopen(site["status"] + "/status", timeout=5) as response:  # noqa: S310
        return json.loads(response.read())


def schema(db: Path) -> tuple[int, list[tuple[str, str]]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        version = con.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
        objects = con.execute(
            "SELECT name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
        ).fetchall()
    finally:
        con.close()
    return version, objects


def history(site: dict) -> list[dict]:
    lines = (site["root"] / "server" / "releases.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_deploy_fail_rollback_and_noop(
    site: dict, ansible_env: dict, tmp_path: Path, discord: dict
) -> None:
    # v1: the reference server as it is.
    v1 = run(site, "deploy.yml", ansible_env, "-e", "deploy_version=1.0.0")
    assert v1.returncode == 0, v1.stdout[-6000:]
    assert status(site)["version"] == "1.0.0"
    assert schema(site["db"])[0] == 1
    assert history(site)[-1]["digest"].startswith("sha256:")  # the registry digest
    assert "Deployed 1.0.0 to localhost" in discord["received"][-1]["body"]["content"]

    # v2: a schema migration.
    recorded = (site["root"] / "server" / "releases.jsonl").stat()
    v2_args = release_args(tmp_path / "migrations-v2", {"0002_create_guilds.sql": MIGRATION_2})
    v2 = run(site, "deploy.yml", ansible_env, "-e", "deploy_version=2.0.0", *v2_args)
    assert v2.returncode == 0, v2.stdout[-6000:]
    # The history grew in place: a reader holding the file (Alloy's single-file bind mount)
    # sees the new line, which a rewrite by rename would have hidden from it.
    grown = (site["root"] / "server" / "releases.jsonl").stat()
    assert (grown.st_dev, grown.st_ino) == (recorded.st_dev, recorded.st_ino)
    assert grown.st_size > recorded.st_size
    assert status(site)["version"] == "2.0.0"
    assert status(site)["schema_version"] == 2
    before_v3 = schema(site["db"])

    # v3: another migration, and a health check that never passes.
    v3_args = release_args(
        tmp_path / "migrations-v3",
        {"0002_create_guilds.sql": MIGRATION_2, "0003_add_motto.sql": MIGRATION_3},
    )
    v3 = run(
        site,
        "deploy.yml",
        ansible_env,
        "-e",
        "deploy_version=3.0.0",
        "-e",
        "server_build_fail_healthcheck=true",
        *v3_args,
    )
    assert v3.returncode == 2, v3.stdout[-6000:]
    assert "Deploy of" in v3.stdout
    assert "is serving again (healthy)" in v3.stdout
    assert status(site)["version"] == "2.0.0"
    assert schema(site["db"]) == before_v3  # the migration of v3 is gone with the restore
    assert history(site)[-1]["version"] == "3.0.0"
    assert history(site)[-1]["result"].startswith("rolled back")
    failed_message = discord["received"][-1]["body"]["content"]
    assert "Deploy of 3.0.0 stopped at localhost" in failed_message
    assert "2.0.0 is serving again (healthy)" in failed_message
    for result in (v1, v2, v3):
        assert discord["secret"] not in result.stdout + result.stderr

    # The runbook goes back to v1, migrating the schema down through v2's files.
    rollback = (
        'ansible-playbook -i "$INVENTORY" playbooks/runbooks/rollback.yml -e rollback_to=1.0.0'
    )
    back = documented(site, ansible_env, rollback)
    assert back.returncode == 0, back.stdout[-6000:]
    assert status(site)["version"] == "1.0.0"
    version, objects = schema(site["db"])
    assert version == 1
    assert "guilds" not in [name for name, _ in objects]

    # Re-deploying the running version changes nothing and restarts nothing.
    started = docker("inspect", "-f", "{{.State.StartedAt}}", CONTAINER).stdout
    again = documented(site, ansible_env, rollback)
    assert again.returncode == 0, again.stdout[-6000:]
    assert "changed=0" in recap(again), recap(again)
    assert docker("inspect", "-f", "{{.State.StartedAt}}", CONTAINER).stdout == started

    # The restart runbook restarts the same version and waits for its health.
    restart = documented(
        site,
        ansible_env,
        'ansible-playbook -i "$INVENTORY" playbooks/runbooks/restart.yml --limit localhost',
    )
    assert restart.returncode == 0, restart.stdout[-6000:]
    assert docker("inspect", "-f", "{{.State.StartedAt}}", CONTAINER).stdout != started
    assert status(site)["version"] == "1.0.0"
    # The restart runbook's Verify step.
    verify = documented(
        site,
        ansible_env,
        'ansible -i "$INVENTORY" localhost -m ansible.builtin.uri'
        ' -a "url=http://127.0.0.1:$STATUS_PORT/status return_content=true"',
    )
    assert verify.returncode == 0, verify.stdout[-3000:] + verify.stderr[-3000:]
    assert "1.0.0" in verify.stdout, verify.stdout[-3000:]


def exec_in(*command: str) -> subprocess.CompletedProcess:
    return docker("exec", CONTAINER, *command, check=False)


def test_container_is_confined_to_its_user_and_writable_paths(site: dict) -> None:
    """Runs after the test above, against the v1 container it left running."""

    def health() -> str:
        return docker("inspect", "-f", "{{.State.Health.Status}}", CONTAINER).stdout.strip()

    # Docker's own health check (the image's HEALTHCHECK) passes on the port the server uses.
    wait_until(lambda: health() == "healthy", 60, "a healthy container", interval=1, context=health)

    config = json.loads(docker("inspect", CONTAINER).stdout)[0]
    assert config["Config"]["User"] == "10001:10001"
    assert config["HostConfig"]["ReadonlyRootfs"] is True
    assert config["HostConfig"]["CapDrop"] == ["ALL"]
    assert not config["HostConfig"]["CapAdd"]
    assert "no-new-privileges" in config["HostConfig"]["SecurityOpt"]
    # The token reaches the container as a file, not through its environment.
    assert not any(ADMIN_TOKEN in env for env in config["Config"]["Env"])

    assert exec_in("id", "-u").stdout.strip() == "10001"
    proc_status = exec_in("cat", "/proc/1/status").stdout.splitlines()
    caps = dict(line.split(":\t", 1) for line in proc_status if ":\t" in line)
    assert int(caps["CapEff"], 16) == 0
    assert int(caps["CapBnd"], 16) == 0
    assert caps["NoNewPrivs"].strip() == "1"

    userdata = "/home/mmo-voxel/.local/share/godot/app_userdata/mmo_voxel"
    for writable in ("database", "logs", "analytics"):
        probe = exec_in("touch", f"{userdata}/{writable}/.probe")
        assert probe.returncode == 0, (writable, probe.stderr)
        exec_in("rm", "-f", f"{userdata}/{writable}/.probe")
    read_only_paths = (
        "/app/probe",
        "/home/mmo-voxel/probe",
        "/etc/probe",
        "/run/secrets/admin_token",
    )
    for read_only in read_only_paths:
        probe = exec_in("touch", read_only)
        assert probe.returncode != 0, read_only
        assert "Read-only file system" in probe.stderr or "Permission denied" in probe.stderr

    token_file = site["root"] / "server" / "secrets" / "admin_token"
    assert oct(token_file.stat().st_mode & 0o777) == "0o400"
    url = site["status"] + "/admin/save"
    request = urllib.request.Request(url, method="POST", data=b"")  # noqa: S310 - local server
    request.add_header("Authorization", f"Bearer {ADMIN_TOKEN}")
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - local server
        assert response.status == 202

    # The compose project beside it describes the same container.
    env = (site["root"] / "server" / ".env").read_text()
    assert f"MMO_VOXEL_IMAGE={config['Config']['Image']}" in env
    assert (site["root"] / "server" / "docker-compose.server.yml").read_text() == (
        REPO / "ops" / "docker-compose.server.yml"
    ).read_text()


def test_check_mode_reports_and_changes_nothing(site: dict, ansible_env: dict) -> None:
    """Runs after the test above: v1 is serving; --check of a new version changes nothing."""
    started = docker("inspect", "-f", "{{.State.StartedAt}}", CONTAINER).stdout
    db_before = schema(site["db"])
    check = run(site, "deploy.yml", ansible_env, "-e", "deploy_version=4.0.0", "--check")
    assert check.returncode == 0, check.stdout[-6000:]
    assert "changed=" in recap(check)
    assert "changed=0" not in recap(check)  # it reports what would change
    assert status(site)["version"] == "1.0.0"
    assert docker("inspect", "-f", "{{.State.StartedAt}}", CONTAINER).stdout == started
    assert schema(site["db"]) == db_before
    assert (
        docker(
            "image", "inspect", f"{site['registry']}/mmo-voxel/server:4.0.0", check=False
        ).returncode
        != 0
    )


GODOT_SOURCE = [
    "-e",
    "server_build_source=godot",
    "-e",
    f"server_build_godot_project={REPO / 'tests' / 'fixtures' / 'godot3_project'}",
    "-e",
    f"server_build_migrations_dir={REFERENCE / 'migrations'}",
]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["-e", '{"deploy_version": "1.0 beta"}'],
            "(deploy_version of deploy.yml) '1.0 beta' must be letters, digits",
        ),
        (
            ["-e", "deploy_version=5.0.0", "-e", "deploy_preflight_min_free_mib=999999999"],
            "deploy_preflight_min_free_mib asks for 999999999",
        ),
        (
            # Room for the tiny default, not for a world of its size a billion times: the
            # world's size is read (the world and its WAL).
            ["-e", "deploy_version=5.0.0", "-e", "deploy_preflight_backup_factor=1000000000"],
            "deploy_preflight_backup_factor is 1000000000",
        ),
        (
            ["-e", "deploy_version=5.0.0", "-e", f"server_build_registry=127.0.0.1:{free_port()}"],
            "is not reachable from the controller",
        ),
        (
            ["-e", "deploy_version=5.0.0", *GODOT_SOURCE, "-e", "server_build_godot_preset=Nope"],
            "Nope",
        ),
        (
            # The fixture's Linux/X11 preset has no custom template: a release export needs the
            # export templates of exactly the installed Godot, which this machine does not have.
            [*GODOT_SOURCE, "-e", "server_build_godot_preset=Linux/X11", "-e", "deploy_version=5"],
            "templates",
        ),
    ],
    ids=[
        "version-space",
        "disk",
        "disk-world-size",
        "registry-unreachable",
        "unknown-preset",
        "missing-templates",
    ],
)
def test_bad_input_fails_in_preflight(
    site: dict, ansible_env: dict, extra: list[str], message: str
) -> None:
    result = run(site, "deploy.yml", ansible_env, *extra)
    assert result.returncode == 2
    assert message in result.stdout
    assert "Build the server image once" not in result.stdout  # nothing was built
    assert "game_server :" not in result.stdout  # no host was touched


def drift_check(site: dict, env: dict, reports: Path) -> tuple[int, dict]:
    result = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "python"),
            str(REPO / "scripts" / "drift-check"),
            "-i",
            str(site["inventory"]),
            "--playbook",
            str(REPO / "playbooks" / "game_server_state.yml"),
            "--report-dir",
            str(reports),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode in (0, 2), result.stdout[-6000:] + result.stderr[-3000:]
    return result.returncode, json.loads((reports / "latest.json").read_text())


def test_drift_check_reports_a_container_changed_by_hand(
    site: dict, ansible_env: dict, tmp_path: Path
) -> None:
    """Runs last: v1 is serving. Someone starts v2's image by hand; the drift check sees it."""
    code, report = drift_check(site, ansible_env, tmp_path / "reports")
    assert code == 0, json.dumps(report["hosts"], indent=1)[:8000]

    image = json.loads(docker("inspect", CONTAINER).stdout)[0]["Config"]["Image"]
    by_hand = image.rsplit(":", 1)[0] + ":2.0.0"
    docker("rm", "-f", CONTAINER)
    docker("run", "-d", "--name", CONTAINER, by_hand)

    code, report = drift_check(site, ansible_env, tmp_path / "reports")
    assert code == 2
    tasks = [change["task"] for change in report["hosts"]["localhost"]["changes"]]
    # The container definition, compared in check mode, is the first thing that differs.
    assert tasks[0] == f"Run the server container ({image})", tasks
    # The check changed nothing: the hand-made container still runs.
    assert json.loads(docker("inspect", CONTAINER).stdout)[0]["Config"]["Image"] == by_hand

    # Applied, the same play puts the last deployed release back through the gated rollout.
    fix = run(site, "playbooks/game_server_state.yml", ansible_env)
    assert fix.returncode == 0, fix.stdout[-6000:]
    assert status(site)["version"] == "1.0.0"
    code, report = drift_check(site, ansible_env, tmp_path / "reports")
    assert code == 0, report


def write(db: Path, *statements: tuple[str, tuple]) -> None:
    """Write beside the running server (WAL: readers and one writer at a time, with a wait)."""
    con = sqlite3.connect(db, timeout=30)
    try:
        with con:
            for sql, args in statements:
                con.execute(sql, args)
    finally:
        con.close()


def started_at() -> str:
    return docker("inspect", "-f", "{{.State.StartedAt}}", CONTAINER).stdout


def container_id() -> str:
    return docker("inspect", "-f", "{{.Id}}", CONTAINER).stdout


def test_database_runbooks_stop_fix_and_restart_the_server(
    site: dict, ansible_env: dict, tmp_path: Path
) -> None:
    """Runs after the drift test: v1 is serving. The two database runbooks around a live server."""
    db = site["db"]
    # A chunk far from where the reference server edits, so only the test touches it.
    payload = b"voxel-runbook-chunk" * 64
    far = (100000, 0, 100000)
    write(
        db,
        (
            "INSERT OR REPLACE INTO chunks (cx, cy, cz, payload, checksum, updated_at)"
            " VALUES (?, ?, ?, ?, ?, datetime('now'))",
            (*far, payload, hashlib.sha256(payload).hexdigest()),
        ),
    )
    backup = run(site, "playbooks/db_backup.yml", ansible_env)
    assert backup.returncode == 0, backup.stdout[-6000:]
    # The runbook's time: just after that backup (at or before it, the newest is this one).
    time_after_backup = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )

    # A table made after the backup; the rollback runbook restores the backup without it.
    write(db, ("CREATE TABLE made_after_the_backup (x INTEGER)", ()))
    before, same = started_at(), container_id()
    rollback = documented(
        site,
        ansible_env,
        'ansible-playbook -i "$INVENTORY" playbooks/runbooks/db_rollback.yml --limit localhost'
        ' -e db_ops_restore_before="$TIME"',
        TIME=time_after_backup,
    )
    logs = docker("logs", "--tail", "30", CONTAINER, check=False)
    assert rollback.returncode == 0, rollback.stdout[-4000:] + logs.stdout + logs.stderr
    assert "made_after_the_backup" not in [name for name, _ in schema(db)[1]]
    assert started_at() != before  # stopped for the restore, started again
    assert container_id() == same  # the same container, not a re-created one
    assert status(site)["version"] == "1.0.0"
    # The runbook's Verify step: the health check passes on the restored database.
    verified = documented(
        site,
        ansible_env,
        'ansible-playbook -i "$INVENTORY" playbooks/db_check.yml --limit localhost'
        ' -e db_ops_db_path="$DB"',
        DB=str(db),
    )
    assert verified.returncode == 0, verified.stdout[-4000:]

    # A damaged chunk: the chunk repair runbook puts the backup's payload back.
    write(db, ("UPDATE chunks SET payload = ? WHERE cx = ? AND cy = ? AND cz = ?", (b"rot", *far)))
    before = started_at()
    repair = documented(
        site,
        ansible_env,
        'ansible-playbook -i "$INVENTORY" playbooks/runbooks/chunk_repair.yml --limit localhost',
    )
    logs = docker("logs", "--tail", "30", CONTAINER, check=False)
    assert repair.returncode == 0, repair.stdout[-4000:] + logs.stdout + logs.stderr
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = con.execute(
            "SELECT payload, checksum FROM chunks WHERE cx = ? AND cy = ? AND cz = ?", far
        ).fetchone()
    finally:
        con.close()
    assert row[0] == payload
    assert hashlib.sha256(row[0]).hexdigest() == row[1]
    assert started_at() != before
    assert container_id() == same
    assert status(site)["version"] == "1.0.0"


def ansible_runner(site: dict, env: dict, data: Path, ident: str, playbook: str, cmdline: str):
    """`ansible-runner run` as AWX's execution nodes start a job: its own stdout callback."""
    result = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "ansible-runner"),
            "run",
            str(data),
            "--project-dir",
            str(REPO),
            "--inventory",
            str(site["inventory"]),
            "-p",
            playbook,
            "--ident",
            ident,
            "--cmdline",
            cmdline,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    artifacts = data / "artifacts" / ident
    events = [
        json.loads(path.read_text())
        for path in sorted(
            (artifacts / "job_events").glob("*.json"), key=lambda p: int(p.name.split("-")[0])
        )
    ]
    every_file = "".join(
        path.read_text(errors="replace") for path in artifacts.rglob("*") if path.is_file()
    )
    return result, artifacts, events, every_file


def test_ansible_runner_runs_the_deploy_and_the_drift_check(
    site: dict, ansible_env: dict, tmp_path: Path, discord: dict
) -> None:
    """The engine AWX and Automation Platform run jobs with: v1 serving, v2 deployed through it,
    then the drift check with the notification twin; the artifacts are what AWX stores."""
    data = tmp_path / "runner"
    v2_args = release_args(tmp_path / "migrations-v2", {"0002_create_guilds.sql": MIGRATION_2})
    result, artifacts, events, stored = ansible_runner(
        site,
        ansible_env,
        data,
        "deploy-2",
        "deploy.yml",
        shlex.join(["-e", "deploy_version=2.0.0", *v2_args]),
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert (artifacts / "status").read_text() == "successful"
    assert (artifacts / "rc").read_text() == "0"
    assert status(site)["version"] == "2.0.0"
    assert history(site)[-1]["version"] == "2.0.0"
    assert "Deployed 2.0.0 to localhost" in discord["received"][-1]["body"]["content"]
    ran = [
        e for e in events if e["event"] == "runner_on_ok" and e["event_data"]["host"] == "localhost"
    ]
    changed = {e["event_data"]["task"] for e in ran if e["event_data"]["res"].get("changed")}
    assert any(task.startswith("Run the server container") for task in changed), sorted(changed)
    stats = next(e for e in events if e["event"] == "playbook_on_stats")["event_data"]
    assert (stats["failures"], stats["dark"]) == ({}, {}), stats
    assert "PLAY RECAP" in (artifacts / "stdout").read_text()
    # What AWX keeps of a job (events, stdout, the command) holds no secret of the inventory.
    assert ADMIN_TOKEN not in stored
    assert discord["secret"] not in stored

    # The drift check as a Check job with Show Changes, the twin callback beside the runner's.
    reports = tmp_path / "drift"
    drift_env = ansible_env | {
        "ANSIBLE_CALLBACKS_ENABLED": "mmo_voxel.ops.drift_notify",
        "DRIFT_REPORT_DIR": str(reports),
    }
    check = "--check --diff"
    result, artifacts, events, stored = ansible_runner(
        site, drift_env, data, "drift-clean", "playbooks/game_server_state.yml", check
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert (artifacts / "status").read_text() == "successful"
    clean = json.loads((reports / "latest.json").read_text())
    assert clean["hosts"]["localhost"]["changes"] == [], clean["hosts"]

    # Someone stops the server by hand: the Check job still succeeds (AWX has no exit 2), the
    # twin's report names the host and the task, and nothing on the host changes.
    docker("stop", CONTAINER)
    try:
        result, artifacts, events, stored = ansible_runner(
            site, drift_env, data, "drift-stopped", "playbooks/game_server_state.yml", check
        )
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
        assert (artifacts / "status").read_text() == "successful"
        report = json.loads((reports / "latest.json").read_text())
        tasks = [change["task"] for change in report["hosts"]["localhost"]["changes"]]
        assert any(task.startswith("Run the server container") for task in tasks), tasks
        assert docker("inspect", "-f", "{{.State.Running}}", CONTAINER).stdout.strip() == "false"
        assert ADMIN_TOKEN not in stored
        reported = "".join(p.read_text() for p in reports.iterdir() if p.is_file())
        assert ADMIN_TOKEN not in reported
    finally:
        docker("start", CONTAINER, check=False)
