"""hardening's kernel settings: the sysctl.d file in one template, the live values in one read.

tasks/sysctl.yml applies with ansible.posix.sysctl only the settings whose live value differs
(vars/main.yml, hardening_sysctl_differing). These render that expression with Ansible's templar
over what `sysctl -e name...` answers: this machine's kernel (read, never written), a value of
several tab-separated fields, and a name the kernel lacks. The file must hold each setting as
ansible.posix.sysctl writes it, or the module would rewrite it on the run that applies a value
and the template would rewrite it back on the next (a change on every other run). The path
where values are applied for real: the fleet test (tests/fleet), whose hosts may write /proc/sys.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from role_templar import templar

REPO = Path(__file__).resolve().parents[4]
ROLE = REPO / "roles" / "hardening"
FILES = [ROLE / "defaults" / "main.yml", ROLE / "vars" / "main.yml"]
TEMPLATE = ROLE / "templates" / "etc" / "sysctl.d" / "60-mmo-voxel-hardening.conf.j2"


def differing(render, stdout: str, **variables) -> dict[str, str]:
    items = render(
        FILES,
        "{{ hardening_sysctl_differing }}",
        hardening_sysctl_live={"stdout_lines": stdout.splitlines()},
        **variables,
    )
    return {item["key"]: str(item["value"]) for item in items}


def test_the_live_kernel_answer_is_read_back_per_setting() -> None:
    if not shutil.which("sysctl"):
        pytest.skip("no sysctl on this machine")
    with templar() as render:
        declared = render(FILES, "{{ hardening_sysctl_all }}")
        live = subprocess.run(
            ["sysctl", "-e", *declared], capture_output=True, text=True, check=False
        ).stdout
        values = dict(line.split(" = ", 1) for line in live.splitlines() if " = " in line)
        expected = {k: str(v) for k, v in declared.items() if values.get(k) != str(v)}
        assert differing(render, live) == expected
        # The same answer with every declared value taken as the live one: nothing to apply.
        agreed = "\n".join(f"{k} = {v}" for k, v in declared.items())
        assert differing(render, agreed) == {}


def test_multi_field_values_and_missing_names() -> None:
    extra = {"net.ipv4.ip_local_port_range": "32768   60999", "kernel.not_here": 1}
    with templar() as render:
        declared = render(FILES, "{{ hardening_sysctl_all }}", hardening_sysctl_extra=extra)
        lines = [f"{k} = {v}" for k, v in declared.items() if k != "kernel.not_here"]
        # The kernel separates the fields with a tab; the declared value has spaces.
        port_range = "net.ipv4.ip_local_port_range"
        lines = [
            f"{port_range} = 32768\t60999" if line.startswith(port_range) else line
            for line in lines
        ]
        assert differing(render, "\n".join(lines), hardening_sysctl_extra=extra) == {
            "kernel.not_here": "1"
        }
        # One setting changed by hand on the live kernel: that one, with the declared value.
        changed = [
            "kernel.kptr_restrict = 0" if line.startswith("kernel.kptr_restrict ") else line
            for line in lines
        ]
        assert differing(render, "\n".join(changed), hardening_sysctl_extra=extra) == {
            "kernel.kptr_restrict": "2",
            "kernel.not_here": "1",
        }


def test_the_file_holds_each_setting_as_the_module_writes_it() -> None:
    with templar() as render:
        declared = render(FILES, "{{ hardening_sysctl_all }}")
        text = render(FILES, TEMPLATE.read_text(), ansible_managed="managed")
    settings = [line for line in text.splitlines() if line and not line.startswith("#")]
    # ansible.posix.sysctl's own line format (its fix_lines): name=value, nothing around.
    assert settings == [f"{k}={v}" for k, v in sorted(declared.items())]
