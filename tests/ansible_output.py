"""What tests read from ansible-playbook's output. Importable as `ansible_output` from every test.

RECAP matches one host's line of the PLAY RECAP: host, ok, changed, unreachable, failed.
"""

from __future__ import annotations

import re

RECAP = re.compile(
    r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M
)
