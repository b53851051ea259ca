# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# The in-repo collection's vars plugin: keeps the values the community.sops vars plugin decrypted
# out of Ansible's log file (issue #18, item 11).
from __future__ import annotations

DOCUMENTATION = r"""
name: sops_log_redaction
short_description: Keep SOPS-decrypted inventory values out of Ansible's log file
description:
  - Ansible's log handler (C(ANSIBLE_LOG_PATH), C(log_path)) writes everything Ansible displays.
    C(ansible-inventory --list), C(--host) and C(--graph --vars) display the inventory's
    variables, which the P(community.sops.sops#vars) plugin has already decrypted, and
    C(ansible-inventory) has no C(no_log) and loads no callback.
  - This plugin adds no variable. On its first call it puts a filter on the log handlers that
    replaces every value the community.sops vars plugin decrypted with C(********) in each log
    record, in the forms a display writes it (as is, JSON- and Python-escaped, YAML
    single-quoted, each line of a multi-line value, each whitespace-separated piece). The
    terminal still shows the values; only the log file is redacted.
  - Values shorter than 6 characters are not redacted (they would blank common words all over
    the log); booleans and nulls are never secret.
  - Enable it after C(community.sops.sops) in C(vars_plugins_enabled). It fails the run if the
    community.sops plugin no longer keeps its decrypted files where this plugin reads them
    (a new community.sops), since a log that might hold secrets is refused rather than written.
extends_documentation_fragment:
  - ansible.builtin.vars_plugin_staging
"""

import json
import logging
import re
import threading
from typing import Any

import yaml
from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.vars import BaseVarsPlugin

try:
    # The decrypted files, by path, as community.sops 2.x keeps them (filled whether or not
    # its cache option is on).
    from ansible_collections.community.sops.plugins.vars.sops import DECRYPTED
except ImportError:  # pragma: no cover - checked by get_vars below, with a clear message
    DECRYPTED = None

# community.sops's DECRYPTED: each decrypted file's content (bytes or text) by its path.
Decrypted = dict[str, bytes | str]

MASK = "********"
MIN_LENGTH = 6


def secret_leaves(value: object) -> list[str]:
    """Every scalar of a decrypted file worth hiding, as text."""
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in secret_leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in secret_leaves(item)]
    if value is None or isinstance(value, bool):
        return []
    return [to_text(value)]


def written_forms(value: str) -> set[str]:
    """The ways a display can write one value: the redaction must catch each of them."""
    forms = {value, json.dumps(value)[1:-1], repr(value)[1:-1], value.replace("'", "''")}
    forms.update(line.strip() for line in value.splitlines())
    # A long value folded over lines by a YAML dumper breaks at spaces.
    forms.update(value.split())
    return {form for form in forms if len(form) >= MIN_LENGTH}


class RedactDecrypted(logging.Filter):
    """Rewrites each log record with every decrypted value masked."""

    def __init__(self, decrypted: Decrypted) -> None:
        super().__init__()
        self._decrypted = decrypted
        self._seen = -1
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def _current(self) -> re.Pattern[str] | None:
        # Files are decrypted as the inventory loads: rebuild when the plugin's dict grew.
        with self._lock:
            if len(self._decrypted) != self._seen:
                forms: set[str] = set()
                for content in list(self._decrypted.values()):
                    data = yaml.safe_load(to_text(content))
                    for leaf in secret_leaves(data):
                        forms |= written_forms(leaf)
                ordered = sorted(forms, key=len, reverse=True)  # longest first: no fragments left
                self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
                self._seen = len(self._decrypted)
            return self._pattern

    def filter(self, record: logging.LogRecord) -> bool:
        pattern = self._current()
        if pattern is not None:
            message = record.getMessage()
            redacted = pattern.sub(MASK, message)
            if redacted != message:
                record.msg, record.args = redacted, ()
        return True


def install(decrypted: Decrypted) -> None:
    """Once per process, on every handler of the root logger (where Ansible puts its log file)."""
    for handler in logging.root.handlers:
        if not any(isinstance(f, RedactDecrypted) for f in handler.filters):
            handler.addFilter(RedactDecrypted(decrypted))


class VarsModule(BaseVarsPlugin):
    def get_vars(
        self, loader: Any, path: str, entities: Any, cache: bool | None = None
    ) -> dict[str, Any]:
        super().get_vars(loader, path, entities)
        if DECRYPTED is None or not isinstance(DECRYPTED, dict):
            raise AnsibleError(
                "mmo_voxel.ops.sops_log_redaction: community.sops no longer keeps its decrypted"
                " files in plugins/vars/sops.py DECRYPTED, so decrypted values could reach the log"
                " file; update plugins/vars/sops_log_redaction.py for this community.sops, or"
                " unset ANSIBLE_LOG_PATH"
            )
        install(DECRYPTED)
        return {}
