"""Helpers for the server tests: a real uvicorn server on a free loopback port, and generators
that block, crawl or fail on purpose."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import uvicorn

from conftest import ScriptedGenerator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live_server(app: object) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


class GatedGenerator(ScriptedGenerator):
    """Streams `reply` one character at a time, each after `delay` seconds, but only once
    `gate` is open: a test holds a generation "running" as long as it likes."""

    id = "gated"

    def __init__(self, reply: str, delay: float = 0.0, open_: bool = True) -> None:
        super().__init__(reply)
        self.delay = delay
        self.gate = threading.Event()
        if open_:
            self.gate.set()
        self.started = threading.Event()
        self.closed = threading.Event()  # the stream was closed before its end (cancelled)

    def stream(self, prompt: str, max_tokens: int = 256, stop: Sequence[str] = (),
               temperature: float = 0.0) -> Iterator[str]:
        self.started.set()
        finished = False
        try:
            if not self.gate.wait(30):
                raise TimeoutError("the test never opened the gate")
            for ch in self.reply:
                if self.delay:
                    time.sleep(self.delay)
                yield ch
            finished = True
        finally:
            if not finished:
                self.closed.set()


class BrokenGenerator(ScriptedGenerator):
    """A generator with a bug: it raises something that is not a RaglineError."""

    id = "broken"

    def __init__(self) -> None:
        super().__init__("")

    def stream(self, prompt: str, max_tokens: int = 256, stop: Sequence[str] = (),
               temperature: float = 0.0) -> Iterator[str]:
        raise RuntimeError("secret internal detail /home/someone/ragline/generate.py line 7")
        yield ""
