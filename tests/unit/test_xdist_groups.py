"""`make test`'s workers keep each test file together (tests/conftest.py's xdist groups).

The files of the deploy tests, the fleet and the registry share module fixtures (a registry, a
deployed container, four hosts): split over workers, each worker builds its own and its
teardown removes the others' (seen in CI with pytest 9, whose node ids pytest-xdist 3.8 can no
longer tag with a group). This runs a real file with three workers and asks who ran what.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from conftest import LONGEST_FIRST, rank

REPO = Path(__file__).resolve().parents[2]


def test_the_tests_of_one_file_run_on_one_worker() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "3", "--dist", "loadgroup", "-v",
         "-p", "no:cacheprovider", "tests/unit/test_requirements.py"],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:]
    workers = re.findall(r"^\[(gw\d+)\] .*PASSED", run.stdout, re.M)
    assert len(workers) > 3
    assert len(set(workers)) == 1, sorted(set(workers))


def test_collection_puts_the_longest_groups_first() -> None:
    """conftest's LONGEST_FIRST decides the order of collection, and `make test` hands the
    groups out in that order (--no-loadscope-reorder: pytest-xdist's own sort by group size put
    the one-test Molecule scenarios last; tests/conftest.py says what that cost)."""
    makefile = (REPO / "Makefile").read_text()
    assert "--dist loadgroup --no-loadscope-reorder" in makefile
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:]
    nodeids = [line for line in run.stdout.splitlines() if "::" in line]
    ranks = [rank(nodeid) for nodeid in nodeids]
    assert nodeids[0].startswith(LONGEST_FIRST[0])
    assert ranks == sorted(ranks)
    assert set(ranks) == set(range(len(LONGEST_FIRST) + 1))  # every prefix still names tests
