"""Releases of the reference server for the deploy tests: its own migrations plus new ones.

Importable as `reference_release` from every test (tests/ is on sys.path). deploy.yml builds
them as a 'prebuilt' artifact (server_build_source=prebuilt): the reference server.py with the
migrations folder given here, so a test can ship a version whose schema moves.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

REFERENCE = Path(__file__).resolve().parent.parent / "roles/server_build/files/reference_server"

MIGRATION_2 = (
    "-- migrate:up\nCREATE TABLE guilds (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);\n"
    "-- migrate:down\nDROP TABLE guilds;\n"
)
MIGRATION_3 = (
    "-- migrate:up\nALTER TABLE guilds ADD COLUMN motto TEXT;\n"
    "-- migrate:down\nALTER TABLE guilds DROP COLUMN motto;\n"
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def release_args(folder: Path, migrations: dict[str, str]) -> list[str]:
    """-e arguments for the reference server with extra migrations, written to folder."""
    shutil.copytree(REFERENCE / "migrations", folder, dirs_exist_ok=True)
    for name, body in migrations.items():
        (folder / name).write_text(body)
    return [
        "-e", "server_build_source=prebuilt",
        "-e", f"server_build_artifact_src={REFERENCE / 'server.py'}",
        "-e", f"server_build_artifact_sha256={sha256(REFERENCE / 'server.py')}",
        "-e", f"server_build_migrations_dir={folder}",
        "-e", '{"server_build_command": ["python3", "/app/server.py"]}',
    ]  # fmt: skip
