"""Scheduled database operations on a systemd host, seen from outside (testinfra).

prepare.yml made a real SQLite world at /srv/mmo-voxel/data/world.db and one pre-deploy backup;
converge.yml pointed the alerts at http://127.0.0.1:8765 inside the instance, where the
`receiver` fixture runs a small HTTP server that stands in for Discord.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import sys
import zoneinfo
from pathlib import Path

import pytest

# The repository's tests/ (documented_commands: the commands roles/db_schedule/README.md shows,
# run here as written through run_documented_on; polling: the one way a test waits).
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from documented_commands import run_documented_on
from polling import wait_until

# The studio's zone (db_schedule_timezone's default): the timers' times are its local times.
STUDIO = zoneinfo.ZoneInfo("Asia/Tokyo")
DB = "/srv/mmo-voxel/data/world.db"
BACKUPS = "/srv/mmo-voxel/backups"
STATUS = "/var/lib/mmo_voxel/db_ops/status.json"
BIN = "/opt/mmo-voxel/voxeldb/bin"
TOKEN = "planted-db-webhook-token"  # noqa: S105  # the converge's fake webhook token
RECEIVED = "/tmp/received.jsonl"  # noqa: S108  # inside the instance
RECEIVER = r"""
import http.server, json

class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open("/tmp/received.jsonl", "a") as out:
            out.write(json.dumps({"path": self.path, "body": json.loads(body)}) + "\n")
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):  # the receiver's own access log would hold the URL
        pass

http.server.HTTPServer(("127.0.0.1", 8765), Handler).serve_forever()
"""


def show(host, unit: str, prop: str) -> str:
    return host.check_output(f"systemctl show {unit} -p {prop} --value")


def status(host) -> dict:
    return json.loads(host.file(STATUS).content_string)


def manifests(host) -> list[str]:
    out = host.check_output(f"ls -1 {BACKUPS}")
    return sorted(n for n in out.split() if n.endswith(".manifest.json"))


def received(host) -> list[dict]:
    if not host.file(RECEIVED).exists:
        return []
    return [json.loads(line) for line in host.file(RECEIVED).content_string.splitlines()]


def wait_for_post(host, count: int, timeout: float = 30.0) -> list[dict]:
    def enough() -> list[dict] | None:
        posts = received(host)
        return posts if len(posts) >= count else None

    def alert_journal() -> str:
        return host.run("journalctl -u 'mmo-voxel-db-alert@*' --no-pager | tail -20").stdout

    return wait_until(
        enough, timeout, f"{count} alert(s) at the receiver", interval=0.5, context=alert_journal
    )


@pytest.fixture(scope="module")
def receiver(host):
    host.run("systemctl stop db-test-receiver.service")
    host.run(f"rm -f {RECEIVED}")
    host.check_output("cat > /tmp/receiver.py <<'EOF'\n" + RECEIVER + "\nEOF")
    host.check_output("systemd-run --unit=db-test-receiver --collect python3 /tmp/receiver.py")
    connect = "python3 -c \"import socket; socket.create_connection(('127.0.0.1', 8765))\""
    wait_until(lambda: host.run(connect).rc == 0, 10, "the receiver to listen", interval=0.25)
    yield
    host.run("systemctl stop db-test-receiver.service")


# First: later tests make backups, and retention may then prune the pre-deploy one.
def test_backups_were_copied_off_the_host(host):
    """converge fetched the backup directory to the controller (db_schedule_offhost_*)."""
    local = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "offhost" / "instance-db_schedule"
    copied = sorted(p.name for p in local.glob("pre-deploy-*"))
    assert len(copied) == 2, copied  # data file + manifest
    for name in copied:
        remote = host.file(f"{BACKUPS}/{name}").sha256sum
        assert hashlib.sha256((local / name).read_bytes()).hexdigest() == remote
    manifest = json.loads(next(local.glob("*.manifest.json")).read_text())
    assert hashlib.sha256((local / manifest["file"]).read_bytes()).hexdigest() == manifest["sha256"]


def in_studio_time(day: str, clock: str, zone: str) -> dt.datetime:
    """A time systemd printed in the host's zone (UTC), as the studio's clock reads it."""
    assert zone == "UTC", zone  # the host runs on UTC (base_timezone)
    moment = dt.datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=dt.UTC)
    return moment.astimezone(STUDIO)


def test_backup_timer_fires_at_00_and_12_studio_time_as_systemd_computes_it(host):
    timer = host.service("mmo-voxel-backup.timer")
    assert timer.is_enabled
    assert timer.is_running
    listing = run_documented_on(host, "systemctl list-timers 'mmo-voxel-*'")
    assert listing.rc == 0, listing.stderr
    assert "mmo-voxel-backup.timer" in listing.stdout
    assert show(host, "mmo-voxel-backup.timer", "Persistent") == "yes"
    # systemd's own view: one entry per OnCalendar= (carrying the studio's zone) with the next
    # elapse it computed, in the host's UTC; in Tokyo those are 00:00 and 12:00.
    calendars = show(host, "mmo-voxel-backup.timer", "TimersCalendar")
    assert calendars.count("OnCalendar=*-*-* 00:00:00 Asia/Tokyo") == 1, calendars
    assert calendars.count("OnCalendar=*-*-* 12:00:00 Asia/Tokyo") == 1, calendars
    elapses = re.findall(r"next_elapse=\w{3} (\S+) (\d\d:\d\d:\d\d) (\S+)", calendars)
    assert sorted(t for _, t, _ in elapses) == ["03:00:00", "15:00:00"], calendars
    studio = sorted(in_studio_time(*e).strftime("%H:%M:%S") for e in elapses)
    assert studio == ["00:00:00", "12:00:00"], calendars
    # The timer's next run is the earlier of the two.
    next_run = show(host, "mmo-voxel-backup.timer", "NextElapseUSecRealtime")
    assert next_run.split(" ", 1)[1] == min(f"{d} {t} {z}" for d, t, z in elapses)


@pytest.mark.parametrize(
    ("unit", "when"),
    [("mmo-voxel-db-check", "03:30:00"), ("mmo-voxel-db-drill", "04:00:00")],
)
def test_weekly_check_and_drill_timers_run_on_the_studios_sunday(host, unit, when):
    timer = host.service(f"{unit}.timer")
    assert timer.is_enabled
    assert timer.is_running
    next_run = show(host, f"{unit}.timer", "NextElapseUSecRealtime")
    # Sunday early morning in Tokyo is Saturday evening on the host's UTC clock.
    found = re.match(r"Sat (\S+) (\S+) (UTC)$", next_run)
    assert found, next_run
    local = in_studio_time(*found.groups())
    assert (local.strftime("%a"), local.strftime("%H:%M:%S")) == ("Sun", when), next_run


def test_every_service_alerts_on_failure(host):
    for unit in ("mmo-voxel-backup", "mmo-voxel-db-check", "mmo-voxel-db-drill"):
        on_failure = show(host, f"{unit}.service", "OnFailure")
        assert on_failure == f"mmo-voxel-db-alert@{unit}.service.service", on_failure


def test_toolkit_is_installed_root_owned(host):
    launcher = host.file(f"{BIN}/voxeldb")
    assert (launcher.user, launcher.mode) == ("root", 0o755)
    module = host.file(
        "/opt/mmo-voxel/voxeldb/lib/ansible_collections/mmo_voxel/ops/plugins/module_utils/"
        "voxeldb/drill.py"
    )
    assert (module.user, module.mode) == ("root", 0o644)
    assert "drill" in host.check_output(f"{BIN}/voxeldb --help")


def test_webhook_is_a_root_only_file_and_nowhere_else(host):
    hook = host.file("/etc/mmo-voxel/db-alert-webhook")
    assert (hook.user, hook.mode) == ("root", 0o600)
    assert TOKEN in hook.content_string
    leaks = host.run(
        f"grep -rl {TOKEN} /etc/systemd/system /etc/mmo-voxel/db-ops.json /opt/mmo-voxel"
    )
    assert leaks.stdout == ""


def test_backup_service_makes_a_verified_backup_with_manifest(host):
    before = manifests(host)
    # A change, so the backup has something new to write (the toolkit skips equal content).
    host.check_output(
        f"python3 -c \"import sqlite3; c = sqlite3.connect('{DB}'); "  # noqa: S608
        "c.execute('UPDATE chunks SET updated_at = datetime()'); c.commit()\""
    )
    started = run_documented_on(host, "systemctl start mmo-voxel-backup.service")
    assert started.rc == 0, started.stderr
    new = sorted(set(manifests(host)) - set(before))
    assert len(new) == 1, (before, manifests(host))
    manifest = json.loads(host.file(f"{BACKUPS}/{new[0]}").content_string)
    assert manifest["source"] == DB
    assert manifest["check"] == "quick"
    data = host.file(f"{BACKUPS}/{manifest['file']}")
    assert data.size == manifest["size"]
    assert data.sha256sum == manifest["sha256"]
    check = host.check_output(
        f"python3 -c \"import sqlite3; print(sqlite3.connect('file:{data.path}?mode=ro', "
        "uri=True).execute('PRAGMA integrity_check').fetchone()[0])\""
    )
    assert check == "ok"
    entry = status(host)["backup"]
    assert entry["result"] == "ok"
    assert entry["last_ok_at"] == entry["finished_at"]
    assert manifest["file"][: -len(".db")] in entry["detail"]


def test_health_check_service_records_ok(host):
    host.check_output("systemctl start mmo-voxel-db-check.service")
    assert status(host)["check"]["result"] == "ok"
    assert status(host)["check"]["detail"].startswith("healthy")
    shown = run_documented_on(host, "cat /var/lib/mmo_voxel/db_ops/status.json")
    assert json.loads(shown.stdout)["check"]["result"] == "ok"
    by_hand = run_documented_on(
        host,
        "/opt/mmo-voxel/voxeldb/bin/voxeldb check --db /srv/mmo-voxel/data/world.db"
        " --integrity full --json",
    )
    assert by_hand.rc == 0, by_hand.stdout + by_hand.stderr
    assert json.loads(by_hand.stdout)["healthy"] is True


def test_failed_backup_alerts_the_receiver_and_the_status_file(host, receiver):
    since = host.check_output("date -u '+%Y-%m-%d %H:%M:%S UTC'")
    ok_before = status(host)["backup"]["last_ok_at"]
    posts_before = len(received(host))
    host.check_output(f"mv {DB} {DB}.away")
    try:
        assert host.run("systemctl start mmo-voxel-backup.service").rc != 0
        posts = wait_for_post(host, posts_before + 1)
    finally:
        host.check_output(f"mv {DB}.away {DB}")
    post = posts[-1]
    assert post["path"] == f"/api/webhooks/1/{TOKEN}"
    assert "database backup FAILED" in post["body"]["content"]
    assert "does not exist" in post["body"]["content"]
    entry = status(host)["backup"]
    assert entry["result"] == "failed"
    assert "does not exist" in entry["detail"]
    assert entry["last_ok_at"] == ok_before
    assert show(host, "mmo-voxel-db-alert@mmo-voxel-backup.service.service", "Result") == "success"
    # The token never reaches a log.
    journal = host.check_output(f"journalctl --no-pager -o cat --since '{since}'")
    assert "backup: FAILED" in journal
    assert TOKEN not in journal


def test_drill_passes_then_finds_a_corrupted_backup(host, receiver):
    # By hand first, as the README shows it (this scenario's backups are in BACKUPS).
    by_hand = run_documented_on(
        host,
        "/opt/mmo-voxel/voxeldb/bin/voxeldb drill --backup-dir /srv/mmo-voxel/backups"
        " --scratch-dir /var/lib/mmo_voxel/db_ops/drill --json",
    )
    assert by_hand.rc == 0, by_hand.stdout + by_hand.stderr
    host.check_output("systemctl start mmo-voxel-db-drill.service")
    entry = status(host)["drill"]
    assert entry["result"] == "ok", entry
    newest = json.loads(host.file(f"{BACKUPS}/{manifests(host)[-1]}").content_string)
    path = f"{BACKUPS}/{newest['file']}"
    host.check_output(f"cp -p {path} /root/drill-good.db")
    posts_before = len(received(host))
    try:
        # Damage one byte in the middle of the newest backup.
        host.check_output(
            f"python3 -c \"import sys; f = open('{path}', 'r+b'); f.seek({newest['size'] // 2}); "
            'b = f.read(1); f.seek(-1, 1); f.write(bytes([b[0] ^ 0xFF])); f.close()"'
        )
        assert host.run("systemctl start mmo-voxel-db-drill.service").rc != 0
        posts = wait_for_post(host, posts_before + 1)
    finally:
        host.check_output(f"cp -p /root/drill-good.db {path}")
    entry = status(host)["drill"]
    assert entry["result"] == "failed"
    assert newest["file"][: -len(".db")] in entry["detail"]
    assert "FAILED the drill" in entry["detail"]
    assert entry["last_ok_at"] is not None
    assert "database drill FAILED" in posts[-1]["body"]["content"]
    assert host.check_output("ls -A /var/lib/mmo_voxel/db_ops/drill") == ""
