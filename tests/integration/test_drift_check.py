"""scripts/drift-check end to end on localhost: exit codes, what the report names, no secrets.

The declared configuration is tests/fixtures/drift/converge.yml (files in a temp directory);
drift is made by hand between runs, as an operator's hand fix would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from discord_receiver import DiscordReceiver

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "drift"
SCRIPT = REPO / "scripts" / "drift-check"
SECRET = "tok-PLANTED-7f3c9a1e5d"  # noqa: S105  # planted on purpose: it must never show up


@pytest.fixture
def fleet(tmp_path: Path, ansible_env: dict, ansible_playbook: str) -> dict:
    """A converged localhost 'fleet' with its inventory, root directory and report directory."""
    root = tmp_path / "root"
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        json.dumps(
            {
                "all": {
                    "hosts": {
                        "game-1": {
                            "ansible_connection": "local",
                            "drift_root": str(root),
                            "drift_test_api_token": SECRET,
                        }
                    }
                }
            }
        )
    )
    converge = subprocess.run(
        [ansible_playbook, "-i", str(inventory), str(FIXTURES / "converge.yml")],
        env=ansible_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert converge.returncode == 0, converge.stdout + converge.stderr
    return {
        "root": root,
        "inventory": inventory,
        "reports": tmp_path / "reports",
        "env": ansible_env,
    }


def drift_check(
    fleet: dict,
    *extra: str,
    env: dict | None = None,
    python: str = sys.executable,
    playbook: Path = FIXTURES / "check.yml",
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            python,
            str(SCRIPT),
            "-i",
            str(fleet["inventory"]),
            "--playbook",
            str(playbook),
            "--report-dir",
            str(fleet["reports"]),
            *extra,
        ],
        env=env or fleet["env"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def latest(fleet: dict) -> dict:
    return json.loads((fleet["reports"] / "latest.json").read_text())


def changed_tasks(report: dict, host: str = "game-1") -> dict[str, dict]:
    return {
        c["task"] + (f" ({c['item']})" if c["item"] else ""): c
        for c in report["hosts"][host]["changes"]
    }


def everything_written(fleet: dict, result: subprocess.CompletedProcess) -> str:
    files = [p.read_text() for p in fleet["reports"].iterdir() if p.is_file()]
    return "\n".join([result.stdout, result.stderr, *files])


def test_converged_host_is_clean(fleet: dict) -> None:
    result = drift_check(fleet)
    assert result.returncode == 0, result.stdout + result.stderr
    report = latest(fleet)
    assert report["summary"] == {
        "hosts": 1,
        "drifted": 0,
        "errors": 0,
        "changes": 0,
        "status": "clean",
    }
    assert report["hosts"]["game-1"]["changes"] == []


def test_each_kind_of_drift_is_reported_with_host_and_task(fleet: dict) -> None:
    root = fleet["root"]
    (root / "server.conf").write_text("tick_rate = 30\nmax_sessions = 999\n")  # content edited
    (root / "admin.conf").chmod(0o644)  # mode loosened
    (root / "beta").unlink()  # file removed
    (root / "hidden.conf").write_text("changed by hand\n")  # drift under a no_log task

    result = drift_check(fleet)
    assert result.returncode == 2, result.stdout + result.stderr
    report = latest(fleet)
    assert report["summary"]["status"] == "drift"
    tasks = changed_tasks(report)
    assert set(tasks) == {
        "Write the server config",
        "Write the config that holds a secret",
        "Write the file only a no_log task touches",
        "Create the listed marker files (beta)",
    }
    server = tasks["Write the server config"]
    assert server["action"] == "ansible.builtin.copy"
    assert "-max_sessions = 999" in server["diff"]
    assert "+max_sessions = 200" in server["diff"]
    assert '-    "mode": "0644"' in tasks["Write the config that holds a secret"]["diff"]
    hidden = tasks["Write the file only a no_log task touches"]
    assert hidden["hidden"] is True
    assert hidden["diff"] == ""
    markdown = (fleet["reports"] / "latest.md").read_text()
    assert "## game-1" in markdown
    assert "Create the listed marker files` (beta)" in markdown


def test_nothing_changes_on_the_host(fleet: dict) -> None:
    (fleet["root"] / "server.conf").write_text("edited by hand\n")
    assert drift_check(fleet).returncode == 2
    assert (fleet["root"] / "server.conf").read_text() == "edited by hand\n"


def test_planted_secret_never_reaches_output_or_report(fleet: dict) -> None:
    # The secret's file drifts too, so its diff is in play; -vvv prints module arguments.
    (fleet["root"] / "admin.conf").write_text(f"bearer = {SECRET}-old\n")
    (fleet["root"] / "hidden.conf").write_text("x\n")
    result = drift_check(fleet, "--", "-vvv")
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-3000:]
    written = everything_written(fleet, result)
    assert SECRET not in written
    assert "<redacted>" in written  # the diff line was there, its value was removed


def test_unreachable_host_is_an_error(fleet: dict, tmp_path: Path) -> None:
    inventory = json.loads(fleet["inventory"].read_text())
    inventory["all"]["hosts"]["game-2"] = {
        "ansible_host": "127.0.0.1",
        "ansible_port": 1,
        "ansible_connection": "ssh",
        "drift_root": str(tmp_path / "other"),
        "drift_test_api_token": SECRET,
    }
    fleet["inventory"].write_text(json.dumps(inventory))
    result = drift_check(fleet)
    assert result.returncode == 1, result.stdout + result.stderr
    report = latest(fleet)
    assert report["hosts"]["game-2"]["status"] == "error"
    assert report["hosts"]["game-2"]["unreachable"] is True
    assert report["hosts"]["game-1"]["status"] == "clean"


def test_a_run_that_cannot_start_is_an_error(fleet: dict, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("- hosts: all\n  tasks: [\n")
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "-i",
            str(fleet["inventory"]),
            "--playbook",
            str(broken),
            "--report-dir",
            str(fleet["reports"]),
        ],
        env=fleet["env"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 1
    assert "did not run to the end" in result.stderr


def test_reports_are_kept_to_the_limit_with_history(fleet: dict) -> None:
    for _ in range(3):
        assert drift_check(fleet, "--keep", "2").returncode == 0
    assert len(list(fleet["reports"].glob("drift-*.json"))) <= 2
    history = (fleet["reports"] / "history.jsonl").read_text().splitlines()
    assert len(history) == 3
    assert all(json.loads(line)["status"] == "clean" for line in history)


def test_drift_posts_a_summary_to_discord(fleet: dict, discord_receiver: DiscordReceiver) -> None:
    """A local HTTP receiver stands in for Discord's webhook."""
    env = {**fleet["env"], "DRIFT_DISCORD_WEBHOOK": discord_receiver.url}
    assert drift_check(fleet, env=env).returncode == 0
    assert discord_receiver.messages == []  # clean: nobody is paged
    (fleet["root"] / "admin.conf").write_text(f"bearer = {SECRET}\nextra\n")
    assert drift_check(fleet, env=env).returncode == 2
    assert len(discord_receiver.messages) == 1
    content = discord_receiver.messages[0]["content"]
    assert "drift" in content
    assert "game-1" in content
    assert SECRET not in content


def drift_in(fleet: dict) -> None:
    root = fleet["root"]
    (root / "server.conf").write_text("tick_rate = 30\nmax_sessions = 999\n")
    (root / "beta").unlink()


def comparable(report: dict) -> tuple:
    """What a report says, without its times."""
    host = report["hosts"]["game-1"]
    return (
        report["summary"],
        host["status"],
        sorted((c["task"], c["item"], c["action"], c["diff"]) for c in host["changes"]),
    )


def test_mitogen_and_linear_strategies_report_the_same_drift(fleet: dict) -> None:
    drift_in(fleet)
    with_mitogen = drift_check(fleet, "--strategy", "mitogen")
    assert with_mitogen.returncode == 2, with_mitogen.stdout + with_mitogen.stderr
    assert "strategy mitogen_linear" in with_mitogen.stderr
    assert "strategy linear" not in with_mitogen.stderr  # no fallback was needed
    mitogen_report = comparable(latest(fleet))

    linear = drift_check(fleet, "--strategy", "linear")
    assert linear.returncode == 2, linear.stdout + linear.stderr
    assert "mitogen" not in linear.stderr
    assert comparable(latest(fleet)) == mitogen_report


def allowed_cpus(status: str) -> str:
    return re.search(r"Cpus_allowed_list:\s*([0-9,-]+)", status).group(1)


def test_mitogen_leaves_cpu_placement_to_the_kernel_on_small_machines(
    fleet: dict, tmp_path: Path
) -> None:
    """mitogen pins the strategy, its workers and their children to one CPU of a 2-CPU machine
    (all but CPU 0 below 4 CPUs); the drift check's strategy (scripts/mitogen/mitogen_linear.py)
    leaves a worker the CPUs this test may use."""
    if (os.cpu_count() or 1) >= 4:
        pytest.skip("4 CPUs or more: mitogen's own placement is kept")
    playbook = tmp_path / "cpus.yml"
    playbook.write_text(
        "- name: Say where the controller's workers may run\n"
        "  hosts: all\n"
        "  gather_facts: false\n"
        "  tasks:\n"
        "    - name: Read the CPUs a worker may run on\n"
        "      ansible.builtin.debug:\n"
        "        msg: \"worker {{ lookup('ansible.builtin.pipe',"
        " 'grep Cpus_allowed_list /proc/self/status') }}\"\n"
    )
    result = drift_check(fleet, "--strategy", "mitogen", playbook=playbook)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "strategy mitogen_linear" in result.stderr
    worker = allowed_cpus(result.stdout.replace("\\t", " "))
    assert worker == allowed_cpus(Path("/proc/self/status").read_text())


def test_auto_falls_back_to_linear_where_mitogen_cannot_be_imported(fleet: dict) -> None:
    """The machine's own Python has no mitogen: auto says so and checks with linear."""
    system_python = shutil.which("python3", path="/usr/bin:/bin")
    assert system_python, "a system python3 is needed for this test"
    probe = subprocess.run([system_python, "-c", "import ansible_mitogen"], check=False)
    if probe.returncode == 0:
        pytest.skip("the system Python has mitogen: nothing to fall back from")
    drift_in(fleet)
    # The venv's ansible-playbook comes first on PATH (fleet env).
    result = drift_check(fleet, python=system_python)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "mitogen not available" in result.stderr
    assert "strategy linear" in result.stderr
    assert "Write the server config" in changed_tasks(latest(fleet))

    insisted = drift_check(fleet, "--strategy", "mitogen", python=system_python)
    assert insisted.returncode == 1
    assert "--strategy mitogen, but mitogen is not available" in insisted.stderr


def test_notification_twin_writes_the_same_report_beside_another_output(
    fleet: dict, discord_receiver: DiscordReceiver
) -> None:
    """As under AWX: the runner's own output callback, the twin enabled beside it."""
    drift_in(fleet)
    (fleet["root"] / "admin.conf").write_text(f"bearer = {SECRET}-old\n")
    wrapper = drift_check(fleet, "--strategy", "linear")
    assert wrapper.returncode == 2, wrapper.stdout + wrapper.stderr
    expected = comparable(latest(fleet))

    twin_reports = fleet["reports"].parent / "twin-reports"
    # The runner's own output callback prints diffs as it likes (docs/drift-check.md, AWX): the
    # fixture's secret task has no `diff: false` on purpose, so its output stays captured here
    # and out of the suite's Ansible log, which the CI leak scan reads.
    inherited = {k: v for k, v in fleet["env"].items() if k != "ANSIBLE_LOG_PATH"}
    env = {
        **inherited,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default",
        "ANSIBLE_CALLBACKS_ENABLED": "mmo_voxel.ops.drift_notify",
        "DRIFT_REPORT_DIR": str(twin_reports),
        "DRIFT_DISCORD_WEBHOOK": discord_receiver.url,
    }
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(fleet["inventory"]),
            str(FIXTURES / "check.yml"),
            "--check",
            "--diff",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr  # the runner sees a successful check
    assert "drift report:" in run.stdout
    twin = json.loads((twin_reports / "latest.json").read_text())
    assert comparable(twin) == expected
    assert SECRET not in "".join(p.read_text() for p in twin_reports.iterdir() if p.is_file())
    assert len(discord_receiver.messages) == 1
    assert "**drift**" in discord_receiver.messages[0]["content"]
