"""tests/polling.py's wait_until: what it returns, when it gives up and what it says then.

The predicates are scripted (a list of outcomes, one per call), so every case is decided by the
calls made, never by how fast this machine runs them; the timeouts only keep a broken helper
from hanging the run.
"""

from __future__ import annotations

import re

import pytest
from polling import MAX_SHOWN_CHARS, wait_until


class Scripted:
    """A predicate that gives its outcomes in order (an exception is raised), the last one
    again and again; it counts its calls."""

    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    def __call__(self) -> object:
        outcome = self.outcomes[min(self.calls, len(self.outcomes) - 1)]
        self.calls += 1
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def test_returns_the_first_truthy_value() -> None:
    predicate = Scripted(None, [], {"ready": True}, "later")
    assert wait_until(predicate, 30, "the third answer", interval=0.001) == {"ready": True}
    assert predicate.calls == 3


def test_a_truthy_first_answer_returns_at_once() -> None:
    predicate = Scripted("ready")
    never = Scripted(AssertionError("context is only for a timeout"))
    assert wait_until(predicate, 30, "an answer", context=never) == "ready"
    assert (predicate.calls, never.calls) == (1, 0)


def test_times_out_naming_what_was_awaited_and_the_last_value() -> None:
    predicate = Scripted(None, [])
    with pytest.raises(AssertionError) as failed:
        wait_until(predicate, 0.05, "two lines in metrics.jsonl", interval=0.01)
    message = str(failed.value)
    assert re.match(r"timed out after 0\.05 s waiting for two lines in metrics\.jsonl;", message)
    assert message.endswith("last value seen: []")
    assert predicate.calls >= 2


def test_asks_a_last_time_at_the_deadline() -> None:
    """A thing that arrives during the last interval is seen: the interval is cut short."""
    predicate = Scripted(None, "arrived")
    assert wait_until(predicate, 0.05, "the late answer", interval=60) == "arrived"
    assert predicate.calls == 2


def test_ignored_exceptions_mean_not_yet() -> None:
    predicate = Scripted(ConnectionRefusedError(111, "refused"), "listening")
    found = wait_until(predicate, 30, "the port", interval=0.001, ignoring=(OSError,))
    assert found == "listening"
    assert predicate.calls == 2


def test_an_ignored_exception_is_the_last_value_on_a_timeout() -> None:
    predicate = Scripted(ConnectionRefusedError(111, "refused"))
    with pytest.raises(AssertionError, match=r"last value seen: ConnectionRefusedError\(111"):
        wait_until(predicate, 0.02, "the port", interval=0.01, ignoring=(OSError,))


def test_other_exceptions_end_the_wait_at_once() -> None:
    """How a predicate stops a wait early, e.g. when the awaited process exited."""
    predicate = Scripted(None, AssertionError("the collector exited: Traceback ..."), "never")
    with pytest.raises(AssertionError, match="the collector exited"):
        wait_until(predicate, 30, "a line", interval=0.001, ignoring=(OSError,))
    assert predicate.calls == 2


def test_context_is_added_to_the_timeout_message() -> None:
    log = "ERROR cannot bind 127.0.0.1:9464"
    with pytest.raises(AssertionError) as failed:
        wait_until(Scripted(False), 0.02, "/metrics", interval=0.01, context=lambda: log)
    assert str(failed.value).splitlines()[1:] == [log]


def test_a_long_value_is_cut_to_its_end() -> None:
    lines = [f"line {n}" for n in range(2000)]
    with pytest.raises(AssertionError) as failed:
        wait_until(Scripted(False), 0.02, "a line", interval=0.01, context=lambda: lines)
    shown = str(failed.value).splitlines()[1]
    assert shown.startswith("...")
    assert len(shown) == len("...") + MAX_SHOWN_CHARS
    assert shown.endswith("'line 1999']")
