"""Options shared by the drift callbacks: where the reports go and how many are kept."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  report_dir:
    description: Directory the reports go to.
    type: path
    default: .cache/drift
    env:
      - name: DRIFT_REPORT_DIR
    ini:
      - section: callback_drift_report
        key: report_dir
  keep:
    description: How many reports to keep (older ones are deleted; history.jsonl stays).
    type: int
    default: 30
    env:
      - name: DRIFT_REPORT_KEEP
    ini:
      - section: callback_drift_report
        key: keep
  secret_vars:
    description: Further variable names whose values are secrets.
    type: list
    elements: str
    default: []
    env:
      - name: DRIFT_REPORT_SECRET_VARS
    ini:
      - section: callback_drift_report
        key: secret_vars
"""
