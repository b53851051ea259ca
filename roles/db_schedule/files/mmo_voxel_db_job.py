#!/usr/bin/python3
"""Run one scheduled database job of a game server host and record its outcome; send alerts.

Installed by the db_schedule role as ``<install_dir>/bin/mmo-voxel-db-job``; needs only the
Python standard library and the toolkit's command line (``voxeldb``), no Ansible.

    mmo-voxel-db-job run backup|check|drill [--alert] [--timezone ZONE --hours H --weekdays W]
        Run the toolkit command the configuration names for the job, record the result in the
        status file and exit 0 (ok) or 1 (failed). ``--alert`` posts a failure to Discord
        itself (cron hosts; on systemd hosts OnFailure= starts ``alert`` instead).
        ``--timezone`` (cron hosts, started every hour): go on only when the hour and the
        weekday in ZONE match H and W (cron syntax: ``*``, ``0,12``, ``1-5``, ``*/6``; weekday 0
        or 7 is Sunday); otherwise exit 0 at once, recording nothing.
    mmo-voxel-db-job alert UNIT
        OnFailure handler (mmo-voxel-db-alert@UNIT.service): mark the unit's job failed in the
        status file unless the job already recorded its own failure, then post to Discord.

Configuration: JSON (default /etc/mmo-voxel/db-ops.json, or --config) with ``voxeldb``,
``status_file``, ``webhook_file``, ``alert_timeout``, ``host``, ``units`` (service -> job) and
``jobs`` (job -> toolkit arguments).

Status file (docs/contracts.md): one JSON object, one entry per job (``backup``, ``check``,
``drill``): ``result`` ok|failed, ``finished_at`` and ``last_ok_at`` (RFC 3339 UTC, null when
never ok), ``detail``. Written under a lock, atomically (temp file, fsync, rename).

The webhook URL is read from a root-only file and never printed.

The atomic write, the times and the Discord post are the repository's shared helpers
(``ops_common``), which the role installs beside the toolkit in ``<install_dir>/lib``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import zoneinfo
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# This file is <install_dir>/bin/mmo-voxel-db-job and the shared helpers are in <install_dir>/lib
# (roles/db_schedule/vars/main.yml). Appended: a PYTHONPATH, as the voxeldb launcher sets it,
# comes first (the repository's tests point it at collections/).
sys.path.append(str(Path(__file__).resolve().parent.parent / "lib"))
from ansible_collections.mmo_voxel.ops.plugins.module_utils.ops_common import (
    DiscordError,
    atomic_write,
    format_rfc3339,
    parse_rfc3339,
    post_discord,
    utc_now,
)

DEFAULT_CONFIG = "/etc/mmo-voxel/db-ops.json"
STATUS_JOBS = ("backup", "check", "drill")
# An own failure record this recent is the one the alert reports (the job wrote it just now).
FRESH_SECONDS = 600


def rfc3339(moment: dt.datetime) -> str:
    """The status file's times: RFC 3339 UTC to the second (``2026-11-29T00:00:05Z``)."""
    return format_rfc3339(moment, timespec="seconds")


def finished_at(entry: dict[str, Any]) -> dt.datetime | None:
    """When a status entry's job finished; None when the entry has no readable time."""
    try:
        return parse_rfc3339(entry.get("finished_at"))
    except ValueError:
        return None


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock beside the status file (job and alert may write at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def read_status(path: Path) -> dict[str, Any]:
    """The status document, or an empty one when missing or unreadable."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def write_status(path: Path, doc: dict[str, Any]) -> None:
    """Write the status document atomically (0644: the metrics collector reads it)."""
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    atomic_write(path, text.encode("utf-8"), 0o644)


def record(path: Path, job: str, ok: bool, detail: str, keep_fresh_failure: bool = False) -> str:
    """Record one outcome of ``job``; return the detail the status file now holds."""
    with locked(path):
        doc = read_status(path)
        previous = doc.get(job) if isinstance(doc.get(job), dict) else {}
        now = utc_now()
        if keep_fresh_failure and previous.get("result") == "failed":
            finished = finished_at(previous)
            if finished and (now - finished).total_seconds() <= FRESH_SECONDS:
                return str(previous.get("detail", detail))
        doc[job] = {
            "result": "ok" if ok else "failed",
            "finished_at": rfc3339(now),
            "last_ok_at": rfc3339(now) if ok else previous.get("last_ok_at"),
            "detail": detail[:500],
        }
        write_status(path, doc)
    return detail


def describe(job: str, code: int, result: dict[str, Any] | None, stderr: str) -> str:
    """One line for the status file and the alert."""
    if result is None:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        return lines[-1] if lines else f"voxeldb exited {code} without a result"
    if result.get("failed"):
        return str(result.get("msg", "failed"))
    if job == "backup":
        backup = result.get("backup") or {}
        made = "wrote" if result.get("changed") else "unchanged since"
        return f"{made} {backup.get('name', '?')} ({backup.get('size', '?')} bytes)"
    if job == "check":
        if result.get("healthy"):
            return "healthy" + (
                f", warnings: {result['warnings']}" if result.get("warnings") else ""
            )
        return f"unhealthy: {', '.join(result.get('failing', []))}"
    return str(result.get("msg", ""))


def run_job(config: dict[str, Any], job: str) -> tuple[bool, str]:
    """Run the toolkit for ``job``; return (ok, detail)."""
    argv = [config["voxeldb"], *config["jobs"][job], "--json"]
    # The arguments come from the root-owned configuration the role wrote, never from a user.
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
    try:
        result = json.loads(proc.stdout) if proc.stdout.strip() else None
    except ValueError:
        result = None
    if proc.stderr:
        sys.stderr.write(proc.stderr)
    if result is not None:
        print(json.dumps(result, sort_keys=True, default=str))
    return proc.returncode == 0, describe(job, proc.returncode, result, proc.stderr)


def engine(config: dict[str, Any], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """The container engine's CLI (docker or podman), output captured."""
    argv = [config["engine"], *args]
    # Every argument comes from the root-owned configuration or the engine's own answers.
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)  # noqa: S603


def snapshot_world(db: str, folder: Path) -> Path:
    """A consistent copy of the world (SQLite's backup API, the server may be writing), in
    rollback-journal mode so it opens read-only without -wal/-shm files."""
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    copy = folder / "world.db"
    source = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    target = sqlite3.connect(copy)
    try:
        source.backup(target)
        target.execute("PRAGMA journal_mode = DELETE")
    finally:
        target.close()
        source.close()
    copy.chmod(0o644)  # read by the image's unprivileged user through a read-only mount
    return copy


class GameCheckSkipped(Exception):
    """No game check to run (no server container, or its image declares none): not a failure."""


def find_game_check(game: dict[str, Any]) -> tuple[str, list[str]]:
    """(image id, command) of the running server's game check, from the image's label.

    Raises GameCheckSkipped when there is none, ValueError when the label is unusable.
    """
    label = game["label"]
    found = engine(game, "inspect", "--format", "{{.Image}}", game["container"])
    if found.returncode != 0 or not found.stdout.strip():
        raise GameCheckSkipped(f"no container {game['container']}")
    image = found.stdout.strip()
    labels = engine(game, "image", "inspect", "--format", "{{json .Config.Labels}}", image)
    text = (json.loads(labels.stdout or "null") or {}).get(label)
    if not text:
        raise GameCheckSkipped(f"the running image has no {label} label")
    try:
        command = json.loads(text)
    except ValueError:
        command = None
    if not command or not isinstance(command, list) or not all(isinstance(p, str) for p in command):
        raise ValueError(f"label {label} of the running image is not a JSON list of strings")
    return image, command


def run_game_check(config: dict[str, Any]) -> tuple[bool, str]:
    """The game's own database check (the running image's label), on a copy of the world, in a
    throwaway container without network; (ok, detail). An image without one, or no running
    server, is not a failure: the detail says the check was skipped and why."""
    game = config["game_check"]
    try:
        image, command = find_game_check(game)
    except GameCheckSkipped as exc:
        return True, f"game check skipped: {exc}"
    except FileNotFoundError:
        # No engine CLI on this host: no server container either.
        return True, f"game check skipped: no {game['engine']} on this host"
    except (ValueError, OSError, subprocess.TimeoutExpired) as exc:
        return False, f"game check: {exc}"
    folder = Path(game["scratch_dir"]) / "world"
    inside = game["mount"].rstrip("/")
    try:
        snapshot_world(game["db"], folder)
        argv = [part.replace("{db}", f"{inside}/world.db") for part in command]
        run = engine(
            game,
            # A read-only root needs a scratch /tmp of its own (inside the container).
            "run", "--rm", "--network", "none", "--read-only", "--user", game["user"],
            "--tmpfs", "/tmp", "--volume", f"{folder}:{inside}:ro",  # noqa: S108
            "--entrypoint", argv[0], image, *argv[1:],
            timeout=float(game["timeout"]),
        )  # fmt: skip
    except (OSError, sqlite3.Error, subprocess.TimeoutExpired) as exc:
        return False, f"game check could not run: {exc}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    out = (run.stdout.strip().splitlines() or [""])[-1]
    if run.returncode == 0:
        return True, "game check ok" + (f": {out}" if out else "")
    said = out or (run.stderr.strip().splitlines() or [""])[-1]
    return False, f"game check failed (exit {run.returncode}): {said}"


def cron_values(field: str, low: int, high: int) -> set[int]:
    """The values a cron field (``*``, ``a``, ``a-b``, ``*/n``, ``a-b/n``, comma lists) names."""
    values: set[int] = set()
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if span == "*":
            first, last = low, high
        else:
            first_text, _, last_text = span.partition("-")
            first = int(first_text)
            last = int(last_text) if last_text else (high if step_text else first)
        if not (low <= first <= last <= high) or step < 1:
            raise ValueError(f"{field!r}: {part!r} is outside {low}-{high}")
        values.update(range(first, last + 1, step))
    return values


def due(now: dt.datetime, zone: str, hours: str, weekdays: str) -> bool:
    """Whether ``now`` falls in one of the hours and weekdays (cron syntax) in ``zone``."""
    local = now.astimezone(zoneinfo.ZoneInfo(zone))
    # cron: 0 and 7 are Sunday; isoweekday: Monday 1 .. Sunday 7.
    days = {day % 7 for day in cron_values(weekdays, 0, 7)}
    return local.hour in cron_values(hours, 0, 23) and local.isoweekday() % 7 in days


def read_webhook(path: str) -> str:
    """The webhook URL from its root-only file; empty when not configured."""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return ""


def send_alert(config: dict[str, Any], text: str) -> bool:
    """Post ``text`` to the configured webhook; True when there is none or it was accepted."""
    url = read_webhook(config["webhook_file"])
    if not url:
        print("no Discord webhook configured: status file only")
        return True
    try:
        status = post_discord(
            url, text, timeout=float(config["alert_timeout"]), user_agent="mmo-voxel-db-job/1"
        )
    except DiscordError as exc:  # its message never holds the URL (the token is in it)
        print(f"posting the alert to Discord failed: {exc}", file=sys.stderr)
        return False
    print(f"alert posted to Discord (HTTP {status})")
    return True


def systemd_result(unit: str) -> str:
    """systemd's Result= of a unit (exit-code, timeout, signal, ...), or unknown."""
    try:
        proc = subprocess.run(  # noqa: S603 - argv list, unit name from systemd's %n
            ["/bin/systemctl", "show", unit, "-p", "Result", "--value"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return proc.stdout.strip() or "unknown"


def alert_text(config: dict[str, Any], what: str, detail: str) -> str:
    """The Discord message."""
    return f"mmo_voxel {config['host']}: database {what} FAILED: {detail}"


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="mmo-voxel-db-job", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--config", default=os.environ.get("MMO_VOXEL_DB_OPS_CONFIG", DEFAULT_CONFIG)
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run one job and record it")
    p.add_argument("job", choices=STATUS_JOBS)
    p.add_argument("--alert", action="store_true", help="post a failure to Discord (cron)")
    p.add_argument("--timezone", help="cron: run only when due in this zone (--hours, --weekdays)")
    p.add_argument("--hours", default="*", help="cron syntax, in --timezone")
    p.add_argument("--weekdays", default="*", help="cron syntax (0 or 7 Sunday), in --timezone")
    p = sub.add_parser("alert", help="OnFailure handler for a unit")
    p.add_argument("unit")
    args = parser.parse_args(argv)
    config = json.loads(Path(args.config).read_text(encoding="utf-8"))
    status = Path(config["status_file"])

    if args.command == "run":
        if args.timezone and not due(utc_now(), args.timezone, args.hours, args.weekdays):
            return 0
        try:
            ok, detail = run_job(config, args.job)
        except OSError as exc:
            ok, detail = False, f"cannot run the toolkit: {exc}"
        # The weekly check: SQLite's checks, then the game's own on a copy of the world.
        if args.job == "check" and config.get("game_check"):
            game_ok, game_detail = run_game_check(config)
            ok, detail = ok and game_ok, f"{detail}; {game_detail}"
        detail = record(status, args.job, ok, detail)
        print(f"{args.job}: {'ok' if ok else 'FAILED'}: {detail}")
        if not ok and args.alert:
            send_alert(config, alert_text(config, args.job, detail))
        return 0 if ok else 1

    job = config["units"].get(args.unit)
    detail = f"{args.unit} failed (systemd result: {systemd_result(args.unit)})"
    if job in STATUS_JOBS:
        detail = record(status, job, False, detail, keep_fresh_failure=True)
    print(f"{args.unit}: {detail}")
    return 0 if send_alert(config, alert_text(config, job or args.unit, detail)) else 1


if __name__ == "__main__":
    sys.exit(main())
