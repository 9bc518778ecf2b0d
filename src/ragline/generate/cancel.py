"""Stopping a generation whose caller went away, between the steps that yield nothing.

A streamed answer stops at its next token when its client leaves (the server's job loop
checks between items). The per-passage reader reads several passages before its first token,
a second or more each: it calls `check()` before each reading, so that a client gone meanwhile
frees the only worker within one reading instead of after all of them.

    with cancellable(event):      # the server's worker, around a job
        ...                       # check() raises Cancelled once event is set
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ragline.errors import RaglineError

_local = threading.local()


class Cancelled(RaglineError):
    """The caller of this generation went away (never sent to anyone)."""


@contextmanager
def cancellable(event: threading.Event) -> Iterator[None]:
    """Generation on this thread stops at the next `check()` once `event` is set."""
    before = getattr(_local, "event", None)
    _local.event = event
    try:
        yield
    finally:
        _local.event = before


def current() -> threading.Event | None:
    """The event that cancels generation on this thread, if any."""
    return getattr(_local, "event", None)


def check() -> None:
    event = getattr(_local, "event", None)
    if event is not None and event.is_set():
        raise Cancelled("the caller went away")
