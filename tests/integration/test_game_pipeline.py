"""The game's pipeline (playbooks/game_ci.yml, `make game-ci`) on a Godot project, and its release
through server_build into deploy.yml.

The project is tests/fixtures/game_project, a Godot 3 project (the engine this machine has),
copied into a git checkout tagged v1.0.0: real gdtoolkit over its GDScript, its own unit tests
run by the real godot3-server, real exports (the Linux server is a runnable Godot server), the
manifest and SHA256SUMS; then the manifest goes through server_build (source `release`) into
deploy.yml on an inventory like the embedded default (this machine, no registry), whose health
gate asks the exported Godot server itself. Each red step stops the pipeline with the step and
the reason and leaves no manifest; a tampered release is refused before any image is built.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest
from ansible_output import RECAP
from documented_commands import run_documented
from reference_release import REFERENCE, release_args
from system_tools import docker, free_port, require_tools

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "game_project"
# Debian's godot3-server and its libraries on the runtime image (scripts/ensure-test-images).
GODOT_IMAGE = "mmo-voxel/godot3-runtime:latest"
CONTAINER = "mmo-voxel-server-game-ci"
SERVICE_USER = "mmo-voxel-game-ci"
SERVICE_UID = 10011

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("godot3-server") is None, reason="needs Debian's godot3-server"
    ),
]


def git(project: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(project), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def checkout(root: Path) -> Path:
    """The fixture project as a git checkout whose HEAD is tagged v1.0.0."""
    project = root / "game"
    shutil.copytree(FIXTURE, project)
    git(project, "init", "--quiet", "--initial-branch=main")
    git(project, "-c", "user.name=ci", "-c", "user.email=ci@example.invalid", "add", ".")
    git(project, "-c", "user.name=ci", "-c", "user.email=ci@example.invalid", "commit", "-qm", "v1")
    git(project, "tag", "v1.0.0")
    return project


def pipeline(project: Path, env: dict[str, str], args: str = "") -> subprocess.CompletedProcess:
    """`make game-ci GAME=...` as documented; GAME_CI_ARGS reaches make from the environment."""
    return documented('make game-ci GAME="$GAME"', project, env, args)


def documented(
    command: str, project: Path, env: dict[str, str], args: str = ""
) -> subprocess.CompletedProcess:
    return run_documented(command, env=env | {"GAME": str(project), "GAME_CI_ARGS": args})


def changed(result: subprocess.CompletedProcess) -> int:
    match = RECAP.search(result.stdout)
    assert match, result.stdout[-3000:]
    return int(match.group(3))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def game(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tools("godot3-server", shutil.which("godot3-server"))
    return checkout(tmp_path_factory.mktemp("game-ci"))


def test_the_pipeline_lints_tests_exports_and_writes_the_manifest(
    game: Path, ansible_env: dict[str, str]
) -> None:
    first = documented('make game-ci GAME="$GAME"', game, ansible_env)
    assert first.returncode == 0, first.stdout[-6000:]

    build = game / "build"
    manifest = json.loads((build / "release.json").read_text())
    assert manifest["format"] == 1
    assert manifest["version"] == "v1.0.0"  # git describe of the tagged checkout
    assert manifest["commit"] == git(game, "rev-parse", "HEAD")
    assert manifest["created"] == git(game, "log", "-1", "--format=%cI")
    assert manifest["engine"].startswith("3.2.3.stable")
    assert manifest["server"] == "server"
    listed = {a["path"]: a for a in manifest["artifacts"]}
    assert set(listed) == {
        "server/mmo_voxel_server.x86_64",
        "server/mmo_voxel_server.pck",
        "server/migrations/0001_create_chunks.sql",
        "windows/mmo_voxel.exe",
        "windows/mmo_voxel.pck",
    }
    for path, artifact in listed.items():
        assert artifact["sha256"] == sha256(build / path), path
        assert artifact["size"] == (build / path).stat().st_size, path
    assert listed["server/mmo_voxel_server.x86_64"]["preset"] == "Linux/X11"
    assert listed["windows/mmo_voxel.exe"]["preset"] == "Windows Desktop"
    # The tests are the project's, not the game's: the export filter leaves them out.
    assert b"run_tests" not in (build / "server" / "mmo_voxel_server.pck").read_bytes()

    sums = run_documented('cd "$GAME/build" && sha256sum -c SHA256SUMS', env={"GAME": str(game)})
    assert sums.returncode == 0, sums.stdout + sums.stderr
    assert sums.stdout.count(": OK") == len(listed)

    again = pipeline(game, ansible_env)
    assert again.returncode == 0, again.stdout[-6000:]
    assert changed(again) == 0, again.stdout[-6000:]
    check = pipeline(game, ansible_env, "--check")
    assert check.returncode == 0, check.stdout[-6000:]
    assert changed(check) == 0, check.stdout[-6000:]


def test_one_step_alone_runs_as_documented(game: Path, ansible_env: dict[str, str]) -> None:
    lint = run_documented(
        "make game-ci GAME=\"$GAME\" GAME_CI_ARGS='-e game_ci_version=1.4.2 --tags lint'",
        env=ansible_env | {"GAME": str(game)},
    )
    assert lint.returncode == 0, lint.stdout[-4000:]
    assert "Lint the GDScript (gdlint)" in lint.stdout
    assert "Run the unit tests" not in lint.stdout
    assert "Export " not in lint.stdout


def break_lint(project: Path) -> None:
    (project / "src" / "bad_name.gd").write_text("extends Reference\n\n\nfunc BadName():\n\tpass\n")


def break_format(project: Path) -> None:
    (project / "src" / "ugly.gd").write_text(
        "extends Reference\n\n\nfunc twice(x):\n\treturn x*2\n"
    )


def break_test(project: Path) -> None:
    math = project / "src" / "chunk_math.gd"
    math.write_text(math.read_text().replace("return -((-voxel - 1)", "return -((-voxel)"))


def drop_client_preset(project: Path) -> None:
    presets = project / "export_presets.cfg"
    presets.write_text(presets.read_text().replace('name="Windows Desktop"', 'name="Windows"'))


def drop_template(project: Path) -> None:
    presets = project / "export_presets.cfg"
    presets.write_text(
        presets.read_text().replace(
            'custom_template/release="/usr/bin/godot3-server"',
            'custom_template/release="/opt/godot/missing_template.x86_64"',
            1,
        )
    )


@pytest.mark.parametrize(
    ("breakage", "says", "exported"),
    [
        (break_lint, ["game_ci lint: gdlint found problems", "src/bad_name.gd", "BadName"], False),
        (break_format, ["game_ci lint: gdformat would reformat src/ugly.gd"], False),
        (
            break_test,
            ["game_ci test: the script tests", "FAIL res://tests/test_chunk_math.gd::test_"],
            False,
        ),
        (
            drop_client_preset,
            ["game_ci preflight: the client export needs a preset named Windows Desktop"],
            False,
        ),
        (drop_template, ["/opt/godot/missing_template.x86_64"], False),
    ],
    ids=["lint", "format", "failing-test", "missing-preset", "missing-template"],
)
def test_a_red_step_stops_the_pipeline_and_leaves_no_manifest(
    tmp_path: Path, ansible_env: dict[str, str], breakage, says: list[str], exported: bool
) -> None:
    project = checkout(tmp_path)
    breakage(project)
    result = pipeline(project, ansible_env)
    assert result.returncode != 0, result.stdout[-4000:]
    said = " ".join(result.stdout.split())
    for text in says:
        assert text in said, result.stdout[-6000:]
    assert not (project / "build" / "release.json").exists()
    assert not (project / "build" / "SHA256SUMS").exists()
    assert (project / "build" / "server" / "mmo_voxel_server.x86_64").exists() == exported


def test_a_project_without_tests_warns_or_stops_as_asked(
    tmp_path: Path, ansible_env: dict[str, str]
) -> None:
    project = checkout(tmp_path)
    (project / "game_ci.yml").unlink()  # no runner named; no GUT, no GdUnit4
    warned = pipeline(project, ansible_env, "--tags test")
    assert warned.returncode == 0, warned.stdout[-4000:]
    assert "has no unit tests" in warned.stdout
    assert "going on (game_ci_require_tests is false)" in " ".join(warned.stdout.split())
    stopped = pipeline(project, ansible_env, "--tags test -e game_ci_require_tests=true")
    assert stopped.returncode != 0
    assert "has no unit tests" in stopped.stdout


def test_a_red_run_after_a_green_one_leaves_the_last_release_whole(
    game: Path, ansible_env: dict[str, str]
) -> None:
    """Runs after the first test: its release stays as it was, and still checks out."""
    before = (game / "build" / "release.json").read_text()
    break_lint(game)
    try:
        result = pipeline(game, ansible_env)
    finally:
        (game / "src" / "bad_name.gd").unlink()
    assert result.returncode != 0
    assert (game / "build" / "release.json").read_text() == before
    sums = run_documented('cd "$GAME/build" && sha256sum -c SHA256SUMS', env={"GAME": str(game)})
    assert sums.returncode == 0, sums.stdout + sums.stderr


@pytest.fixture(scope="module")
def site():
    """An inventory like the embedded default (this machine, no registry: the image stays
    local), all state in a temp dir; its container and images removed after."""
    if docker("image", "inspect", GODOT_IMAGE, check=False).returncode != 0:
        pytest.fail(f"{GODOT_IMAGE} is missing: run scripts/ensure-test-images")
    # Not under pytest's tmp dir: its 0700 parents keep the container's user out.
    root = Path(tempfile.mkdtemp(prefix="mmo-voxel-game-ci-"))
    root.chmod(0o755)
    status_port = free_port()
    repository = f"mmo-voxel/server-game-ci-{status_port}"
    host = {
        "ansible_connection": "local",
        "game_server_root": str(root / "server"),
        # A service user of its own: the deploy tests on this machine side by side would
        # otherwise each set the one mmo-voxel user's home to their root (drift for the others).
        "game_server_user": SERVICE_USER,
        "game_server_uid": SERVICE_UID,
        "game_server_container": CONTAINER,
        "game_server_status_port": status_port,
        "game_server_game_port": free_port(),
        "game_server_stop_grace": 10,
        # Real seconds (the gate ends at a time); Godot 3's start beside the rest of the suite.
        "game_server_health_timeout": 90,
        "game_server_logrotate": False,
    }
    inventory = root / "hosts.yml"
    inventory.write_text(
        json.dumps(
            {
                "all": {
                    "children": {"game_servers": {"hosts": {"localhost": host}}},
                    "vars": {
                        "server_build_repository": repository,
                        "server_build_uid": SERVICE_UID,
                        "server_build_base_image": GODOT_IMAGE,
                        "server_build_context_root": str(root / "build"),
                        "deploy_preflight_min_free_mib": 1,
                    },
                }
            }
        )
    )
    yield {
        "root": root,
        "inventory": inventory,
        "status": f"http://127.0.0.1:{status_port}",
        "repository": repository,
    }
    docker("rm", "-f", CONTAINER, check=False)
    images = docker("image", "ls", "--quiet", repository, check=False).stdout.split()
    if images:
        docker("rmi", "--force", *sorted(set(images)), check=False)
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run(["userdel", SERVICE_USER], capture_output=True, check=False)


def status(site: dict) -> dict:
    with urllib.request.urlopen(site["status"] + "/status", timeout=5) as response:  # noqa: S310
        return json.loads(response.read())


def test_the_release_goes_through_server_build_into_deploy(
    game: Path, site: dict, ansible_env: dict[str, str]
) -> None:
    """Runs after the first test (the release of v1.0.0 is in the game's build folder)."""
    env = ansible_env | {"INVENTORY": str(site["inventory"]), "GAME": str(game)}
    manifest = json.loads((game / "build" / "release.json").read_text())

    built = run_documented(
        'ansible-playbook -i "$INVENTORY" playbooks/server_image.yml -e server_build_source=release'
        ' -e server_build_release_manifest="$GAME/build/release.json"',
        env=env,
    )
    assert built.returncode == 0, built.stdout[-6000:]
    image = f"{site['repository']}:v1.0.0"
    labels = json.loads(docker("image", "inspect", image).stdout)[0]["Config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == "v1.0.0"
    assert labels["org.opencontainers.image.revision"] == manifest["commit"][:12]
    assert labels["org.mmo-voxel.source"] == "release"
    image_id = docker("image", "inspect", "--format", "{{.Id}}", image).stdout.strip()

    deployed = run_documented(
        'ansible-playbook -i "$INVENTORY" deploy.yml -e server_build_source=release'
        ' -e server_build_release_manifest="$GAME/build/release.json"',
        env=env,
    )
    assert deployed.returncode == 0, deployed.stdout[-8000:]
    # The health gate asked the exported Godot server; the version is the manifest's.
    answer = status(site)
    assert (answer["version"], answer["healthy"]) == ("v1.0.0", True)
    # Built once: the deploy reused the image server_image.yml made.
    assert docker("image", "inspect", "--format", "{{.Id}}", image).stdout.strip() == image_id
    app = docker("exec", CONTAINER, "sh", "-c", "cd /app && sha256sum $(find . -type f)").stdout
    copied = {line.split()[1].removeprefix("./"): line.split()[0] for line in app.splitlines()}
    for artifact in manifest["artifacts"]:
        if artifact["path"].startswith("server/"):
            assert copied[artifact["path"].removeprefix("server/")] == artifact["sha256"]
    assert "mmo_voxel.exe" not in app  # the client stays out of the server image

    again = run_documented(
        'ansible-playbook -i "$INVENTORY" deploy.yml -e server_build_source=release'
        ' -e server_build_release_manifest="$GAME/build/release.json"',
        env=env,
    )
    assert again.returncode == 0, again.stdout[-6000:]
    assert {m.group(1): int(m.group(3)) for m in RECAP.finditer(again.stdout)} == {"localhost": 0}


def tampered_release(game: Path, root: Path, version: str) -> Path:
    """A copy of the game's build folder whose manifest names `version` and whose server pck
    no longer is the file the manifest lists."""
    build = root / "tampered"
    shutil.copytree(game / "build", build)
    manifest = json.loads((build / "release.json").read_text())
    manifest["version"] = version
    (build / "release.json").write_text(json.dumps(manifest))
    with (build / "server" / "mmo_voxel_server.pck").open("ab") as pck:
        pck.write(b"\0")
    return build / "release.json"


def test_a_release_that_is_not_what_its_manifest_says_is_refused(
    game: Path, site: dict, ansible_env: dict[str, str], tmp_path: Path
) -> None:
    """Runs after the deploy above: v1.0.0 keeps serving whatever is refused here."""
    env = ansible_env | {"INVENTORY": str(site["inventory"]), "GAME": str(game)}

    def deploy(manifest: Path, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                str(REPO / ".venv" / "bin" / "ansible-playbook"),
                "-i",
                str(site["inventory"]),
                str(REPO / "deploy.yml"),
                "-e",
                "server_build_source=release",
                "-e",
                f"server_build_release_manifest={manifest}",
                *extra,
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )

    tampered = deploy(tampered_release(game, tmp_path, "v1.0.1"))
    assert tampered.returncode != 0
    said = " ".join(tampered.stdout.split())
    assert "server/mmo_voxel_server.pck has sha256" in said, tampered.stdout[-6000:]
    assert "the build folder changed after the pipeline wrote its manifest" in said
    assert docker("image", "inspect", f"{site['repository']}:v1.0.1", check=False).returncode != 0

    other = deploy(game / "build" / "release.json", "-e", "deploy_version=9.9.9")
    assert other.returncode != 0
    assert "it is the release of v1.0.0, not of server_build_version 9.9.9" in " ".join(
        other.stdout.split()
    )

    garbage = tmp_path / "release.json"
    garbage.write_text("<html>not a manifest</html>")
    refused = deploy(garbage, "-e", "deploy_version=9.9.8")
    assert refused.returncode != 0
    assert f"server_build_release_manifest {garbage} is not JSON" in " ".join(
        refused.stdout.split()
    )

    # A prebuilt artifact (a path, not a manifest) whose sha256 is not the one given.
    wrong = deploy(
        tmp_path / "unused.json",
        *release_args(tmp_path / "migrations", {}),
        "-e", "server_build_artifact_sha256=" + "0" * 64,
        "-e", "deploy_version=9.9.7",
    )  # fmt: skip
    assert wrong.returncode != 0
    assert f"{REFERENCE / 'server.py'} has sha256 {sha256(REFERENCE / 'server.py')}" in " ".join(
        wrong.stdout.split()
    ), wrong.stdout[-6000:]
    assert docker("image", "inspect", f"{site['repository']}:9.9.7", check=False).returncode != 0

    assert status(site)["version"] == "v1.0.0"
