"""What every bad-input test asserts about a role run that the role's checks stopped."""

from __future__ import annotations

import re
import subprocess


def assert_stopped_before_change(
    result: subprocess.CompletedProcess,
    role: str,
    failing_task: str,
    message: str,
    later: list[str],
) -> None:
    """The run failed at the validation task `failing_task` with `message` (a regex), changed
    nothing, and none of the `later` tasks (ones that change a host) started."""
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert re.search(message, out, re.DOTALL), out
    failed_at = out.rfind("TASK [")
    assert failing_task in out[failed_at : failed_at + 200], out
    assert "changed=0" in out, out
    for task in later:
        assert f"TASK [{role} : {task}" not in out, out
