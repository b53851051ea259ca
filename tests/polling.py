"""The one way a test waits for something: poll for that thing, and say what it was on a timeout.

A test that waits (for a port to answer, a line to be written, a process or a container to reach
a state) polls for the awaited thing with ``wait_until`` instead of sleeping a guessed time or
writing its own deadline loop. The timeout only stops a test that would otherwise hang: it is
never what a test asserts, so a slow machine makes a test slower, not red. A ``time.sleep`` left
in ``tests/`` is time that must pass for the behaviour under test, and says so where it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# The end of a long value is kept in the message (a log's or a list's last entries say most).
MAX_SHOWN_CHARS = 3000


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    *,
    interval: float = 0.1,
    ignoring: tuple[type[Exception], ...] = (),
    context: Callable[[], object] | None = None,
) -> T:
    """Call ``predicate`` until it returns a truthy value, and return that value.

    It is called at once, then every ``interval`` seconds, and a last time when ``timeout``
    seconds have passed (so a thing that arrives during the last interval is still seen).

    Exceptions: one of a type in ``ignoring`` means "not yet" (an ``OSError`` while a server
    is still starting, say) and is the last value seen; any other exception propagates at
    once, which is how a predicate ends the wait early (``assert proc.poll() is None`` for a
    process that must not exit while awaited).

    On a timeout it raises ``AssertionError`` naming ``what`` was awaited, the last value
    seen (the predicate's last falsy value, or the ignored exception) and, when ``context``
    is given, what ``context()`` returns then (a log, the messages received so far).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except ignoring as exc:
            last: object = exc
        else:
            if value:
                return value
            last = value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(timed_out(what, timeout, last, context))
        time.sleep(min(interval, remaining))


def timed_out(what: str, timeout: float, last: object, context: Callable[[], object] | None) -> str:
    """The message of a wait that timed out."""
    message = f"timed out after {timeout} s waiting for {what}; last value seen: {clip(repr(last))}"
    if context is not None:
        extra = context()
        message += "\n" + clip(extra if isinstance(extra, str) else repr(extra))
    return message


def clip(text: str) -> str:
    """The end of a long text, marked as cut."""
    return text if len(text) <= MAX_SHOWN_CHARS else f"...{text[-MAX_SHOWN_CHARS:]}"
