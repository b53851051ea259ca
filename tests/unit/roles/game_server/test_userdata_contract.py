"""Godot's user:// in the server's container is named twice: the image makes it, the rollout
mounts the world below it. Both defaults must be one path (docs/contracts.md)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROLES = Path(__file__).resolve().parents[4] / "roles"


def defaults(role: str) -> dict:
    return yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())


def test_the_image_makes_the_user_dir_the_rollout_mounts_into() -> None:
    image = defaults("server_build")["server_build_userdata"]
    rollout = defaults("game_server")["game_server_container_userdata"]
    assert image == rollout
    assert image.endswith("/godot/app_userdata/mmo_voxel")


def test_the_dockerfile_makes_and_owns_it() -> None:
    dockerfile = (ROLES / "server_build" / "templates" / "Dockerfile.j2").read_text()
    assert "mkdir -p {{ server_build_userdata }}/database" in dockerfile
    assert "chown -R mmo-voxel:mmo-voxel /home/mmo-voxel {{ server_build_userdata }}" in dockerfile
