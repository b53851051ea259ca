"""The registry roles and the registry logins, read without running a play.

The registry's configuration rendered from its template with the role's defaults by Ansible's own
templar (TLS, the htpasswd login, the variables followed, no secret in it); the defaults that
turn the SOPS secrets into the roles' variables; argument specs that cover every default and
hide every secret; no task that holds a secret without no_log, and no message that names one;
the roles test image's package list; where site.yml and registry.yml put the plays.
The behaviour on real hosts is tests/integration/test_registry.py.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from role_templar import templar

REPO = Path(__file__).resolve().parents[4]
ROLES = REPO / "roles"
TEMPLATE = ROLES / "registry" / "templates" / "etc" / "docker" / "registry" / "config.yml.j2"
# Assembled from parts, so that scripts/detect-private-key does not take this file for a key.
ARMOR = "PRIVATE " + "KEY-----"
KEY = f"-----BEGIN {ARMOR}\nunit-test-key-body-0c1d\n-----END {ARMOR}\n"
# Test values only, built so that no secret scanner takes them for real ones.
REGISTRY_PASSWORD = "unit-" + "registry-pw-77a3"

# Variables that hold a secret, as whole names.
SECRET_NAMES = (
    "registry_tls_key",
    "secret_registry_tls_key",
    "registry_users",
    "secret_registry_password",
    "server_build_registry_password",
    "deploy_preflight_registry_password",
    r"item\.password",
)
# registry_users reduced to its names (map(attribute='name')) holds no password.
SECRET_RE = re.compile(
    r"(?<![\w.])(" + "|".join(SECRET_NAMES) + r")(?!\w)(?!\s*\|\s*map\(attribute=\W*name\W)"
)
JINJA_RE = re.compile(r"{{(.*?)}}", re.DOTALL)
# The task files that hold the registry's secrets or the logins.
SECRET_TASK_FILES = [
    *sorted((ROLES / "registry" / "tasks").glob("*.yml")),
    *sorted((ROLES / "registry_trust" / "tasks").glob("*.yml")),
    ROLES / "server_build" / "tasks" / "preflight.yml",
    ROLES / "deploy_preflight" / "tasks" / "registry_login.yml",
]
TASK_KEYWORDS = {
    "name", "when", "register", "loop", "loop_control", "vars", "no_log", "notify", "changed_when",
    "failed_when", "check_mode", "diff", "until", "retries", "delay", "tags", "become", "args",
    "environment", "ignore_errors", "block", "rescue", "always", "listen", "run_once",
    "delegate_to",
}  # fmt: skip


Evaluate = Callable[..., Any]


@pytest.fixture(scope="module")
def evaluate() -> Iterator[Evaluate]:
    """evaluate(role, expression, **variables): the expression with the role's defaults."""
    with templar() as render:
        yield lambda role, expression, **variables: render(
            [ROLES / role / "defaults" / "main.yml"], expression, **variables
        )


def render_config(evaluate: Evaluate, **variables: Any) -> tuple[str, dict[str, Any]]:
    values = {
        "ansible_managed": "Ansible managed",
        "registry_tls_certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
        "secret_registry_tls_key": KEY,
        "secret_registry_username": "deployer",
        "secret_registry_password": REGISTRY_PASSWORD,
        **variables,
    }
    text = evaluate("registry", TEMPLATE.read_text(), **values)
    return text, yaml.safe_load(text)


def test_the_registry_config_serves_tls_only_and_asks_every_request_for_a_login(
    evaluate: Evaluate,
) -> None:
    text, config = render_config(evaluate)
    assert text.startswith("# Ansible managed\n")
    assert config["version"] == 0.1
    assert config["http"]["addr"] == ":5000"
    assert config["http"]["tls"] == {
        "certificate": "/etc/docker/registry/tls/registry.crt",
        "key": "/etc/docker/registry/tls/registry.key",
        "minimumtls": "tls1.2",
    }
    assert config["auth"] == {
        "htpasswd": {"realm": "mmo-voxel registry", "path": "/etc/docker/registry/htpasswd"}
    }
    assert config["storage"]["filesystem"] == {"rootdirectory": "/var/lib/docker-registry"}
    assert config["storage"]["delete"] == {"enabled": True}


def test_the_registry_config_follows_the_variables(evaluate: Evaluate) -> None:
    _, config = render_config(
        evaluate,
        registry_listen_address="[::1]",
        registry_port=5443,
        registry_storage_dir="/srv/registry data",
        registry_storage_delete_enabled=False,
        registry_tls_dir="/etc/mmo/tls",
        registry_htpasswd_file="/etc/mmo/users",
        registry_auth_realm='studio "registry"',
        registry_log_level="debug",
    )
    assert config["http"]["addr"] == "[::1]:5443"
    assert config["storage"]["filesystem"]["rootdirectory"] == "/srv/registry data"
    assert config["storage"]["delete"] == {"enabled": False}
    assert config["http"]["tls"]["key"] == "/etc/mmo/tls/registry.key"
    assert config["auth"]["htpasswd"] == {"realm": 'studio "registry"', "path": "/etc/mmo/users"}
    assert config["log"]["level"] == "debug"


def test_the_registry_config_holds_no_secret(evaluate: Evaluate) -> None:
    text, _ = render_config(evaluate)
    assert "unit-test-key-body" not in text
    assert REGISTRY_PASSWORD not in text


@pytest.mark.parametrize(
    ("secrets", "users"),
    [
        (
            {"secret_registry_username": "deployer", "secret_registry_password": "pw-for-test"},
            [{"name": "deployer", "password": "pw-for-test"}],
        ),
        # A user without a password stays in the list: the role's assert names what is missing.
        ({"secret_registry_username": "deployer"}, [{"name": "deployer", "password": ""}]),
        ({"secret_registry_username": "", "secret_registry_password": "pw-for-test"}, []),
        ({}, []),
    ],
    ids=["both", "user-only", "empty-user", "none"],
)
def test_the_registry_users_come_from_the_sops_secrets(
    evaluate: Evaluate, secrets: dict, users: list
) -> None:
    assert evaluate("registry", "{{ registry_users }}", **secrets) == users


@pytest.mark.parametrize(
    ("registry", "name"),
    [
        ("registry.example.com", "registry.example.com"),
        ("registry.example.com:5000", "registry.example.com"),
        ("10.0.0.5:5000", "10.0.0.5"),
        ("[fd00::5]:5000", "fd00::5"),
        ("", ""),
    ],
)
def test_the_name_the_certificate_must_carry_is_the_registry_without_its_port(
    evaluate: Evaluate, registry: str, name: str
) -> None:
    got = evaluate("registry", "{{ registry_server_name }}", server_build_registry=registry)
    assert got == name


@pytest.mark.parametrize(
    ("registry", "file"),
    [
        ("10.0.0.5:5000", "mmo-voxel-registry-10.0.0.5_5000.crt"),
        ("registry.example.com", "mmo-voxel-registry-registry.example.com.crt"),
    ],
)
def test_the_trust_store_file_is_named_after_the_registry(
    evaluate: Evaluate, registry: str, file: str
) -> None:
    got = evaluate(
        "registry_trust", "{{ registry_trust_system_file }}", server_build_registry=registry
    )
    assert got == f"/usr/local/share/ca-certificates/{file}"


def test_no_registry_or_no_ca_means_nothing_to_trust(evaluate: Evaluate) -> None:
    assert evaluate("registry_trust", "{{ registry_trust_registry }}") == ""
    assert evaluate("registry_trust", "{{ registry_trust_ca_certificate }}") == ""


@pytest.mark.parametrize(
    ("role", "prefix"), [("server_build", "server_build"), ("deploy_preflight", "deploy_preflight")]
)
def test_the_logins_come_from_the_sops_secrets_and_are_off_without_them(
    evaluate: Evaluate, role: str, prefix: str
) -> None:
    expression = f"{{{{ [{prefix}_registry_username, {prefix}_registry_password] }}}}"
    assert evaluate(role, expression) == ["", ""]
    given = {"secret_registry_username": "deployer", "secret_registry_password": "pw-for-test"}
    assert evaluate(role, expression, **given) == ["deployer", "pw-for-test"]


def test_each_host_logs_in_to_the_registry_it_pulls_from(evaluate: Evaluate) -> None:
    assert evaluate("deploy_preflight", "{{ deploy_preflight_registry }}") == ""
    got = evaluate(
        "deploy_preflight",
        "{{ [deploy_preflight_registry, deploy_preflight_registry_scheme] }}",
        server_build_registry="10.0.0.5:5000",
    )
    assert got == ["10.0.0.5:5000", "https"]
    got = evaluate(
        "deploy_preflight",
        "{{ deploy_preflight_registry_scheme }}",
        server_build_registry="127.0.0.1:5000",
    )
    assert got == "http"


def spec_options(role: str) -> dict[str, dict]:
    specs = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())
    return specs["argument_specs"]["main"]["options"]


@pytest.mark.parametrize("role", ["registry", "registry_trust"])
def test_the_argument_specs_name_exactly_the_defaults(role: str) -> None:
    defaults = set(yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text()))
    assert set(spec_options(role)) == defaults


@pytest.mark.parametrize(
    ("role", "options"),
    [
        ("registry", ["registry_tls_key", "registry_users"]),
        ("server_build", ["server_build_registry_password"]),
        ("deploy_preflight", ["deploy_preflight_registry_password"]),
    ],
)
def test_the_argument_specs_hide_the_secrets(role: str, options: list[str]) -> None:
    specs = spec_options(role)
    for option in options:
        assert specs[option].get("no_log") is True, option
    if role == "registry":
        assert specs["registry_users"]["options"]["password"]["no_log"] is True


def tasks_of(items: list[dict]) -> list[dict]:
    """Every task of a task file, the ones inside blocks included."""
    found = []
    for item in items or []:
        if "block" in item:
            found += tasks_of(item["block"]) + tasks_of(item.get("rescue", []))
            found += tasks_of(item.get("always", []))
        else:
            found.append(item)
    return found


def module_of(task: dict) -> str:
    return next(key for key in task if key not in TASK_KEYWORDS)


@pytest.mark.parametrize("path", SECRET_TASK_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_task_that_holds_a_secret_is_no_log_and_no_message_prints_one(path: Path) -> None:
    problems = []
    for task in tasks_of(yaml.safe_load(path.read_text())):
        module = module_of(task)
        args = task[module]
        if module in ("ansible.builtin.assert", "ansible.builtin.fail"):
            # An assert's condition is never printed; its message is.
            # Named in words, a variable is a hint; inside {{ }} its value would be printed.
            message = str(args.get("fail_msg", "")) + str(args.get("msg", ""))
            if any(SECRET_RE.search(expr) for expr in JINJA_RE.findall(message)):
                problems.append(f"{task['name']}: its message prints a secret")
            continue
        held = yaml.safe_dump({"args": args, "loop": task.get("loop")})
        if SECRET_RE.search(held) and task.get("no_log") is not True:
            problems.append(f"{task['name']}: holds a secret without no_log: true")
    assert not problems, "\n".join(problems)


def test_the_key_is_written_without_a_diff() -> None:
    tasks = tasks_of(yaml.safe_load((ROLES / "registry" / "tasks" / "main.yml").read_text()))
    key_task = next(t for t in tasks if "registry_tls_key" in str(t.get("ansible.builtin.copy")))
    assert key_task["diff"] is False
    assert key_task["ansible.builtin.copy"]["mode"] == "0640"


def test_the_roles_image_gets_every_package_the_registry_roles_install() -> None:
    script = REPO / "scripts" / "test-images" / "role-packages"
    loader = importlib.machinery.SourceFileLoader("role_packages", str(script))
    spec = importlib.util.spec_from_loader("role_packages", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    packages = module.role_lists(REPO)
    assert {"docker-registry", "python3-passlib", "python3-bcrypt", "ca-certificates"} <= packages


def test_site_runs_the_registry_plays_without_the_controller_after_the_baseline() -> None:
    site = yaml.safe_load((REPO / "playbooks" / "site.yml").read_text())
    imported = [play["ansible.builtin.import_playbook"] for play in site]
    assert imported.index("server.yml") < imported.index("registry.yml")
    assert imported.index("registry.yml") < imported.index("game_server_state.yml")
    registry = next(p for p in site if p["ansible.builtin.import_playbook"] == "registry.yml")
    assert registry["vars"] == {"registry_trust_controller": False}


def test_the_clients_trust_the_ca_before_the_registry_serves_a_certificate() -> None:
    plays = yaml.safe_load((REPO / "playbooks" / "registry.yml").read_text())
    assert [(p["hosts"], [r["role"] for r in p["roles"]]) for p in plays] == [
        ("game_servers", ["registry_trust"]),
        (
            "{{ ['localhost'] if registry_trust_controller | default(true) | bool else [] }}",
            ["registry_trust"],
        ),
        ("registries", ["base", "registry"]),
    ]
    assert all(p["become"] is True for p in plays)
