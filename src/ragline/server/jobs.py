"""Generation behind a bounded queue, on worker threads of its own.

Searches never wait for a generation: they run on the server's thread pool, generations on
`workers` dedicated threads (1 for a local model: llama.cpp and the torch model are one model
on a few cores). Up to `max_waiting` more generations wait their turn; past that, `submit`
raises `QueueFullError` (a 503 with Retry-After). A caller that waits in the queue longer than
its `queue_timeout` gets a 503, one whose generation runs past `timeout` a 504; either way the
job is dropped, or stopped at its next token if it is running.

    queue = GenerationQueue(workers=1, max_waiting=32, queue_timeout=120, timeout=120)
    queue.start()
    job = queue.submit(lambda: rag.ask_stream(question))
    async for piece in job.results(): ...
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from ragline.errors import (
    GenerationTimeoutError,
    QueueFullError,
    QueueTimeoutError,
    RaglineError,
)
from ragline.generate.cancel import Cancelled, cancellable

log = logging.getLogger(__name__)


class Job:
    """One generation: `work()` returns an iterable whose items are streamed to the caller."""

    def __init__(self, work: Callable[[], Iterable[Any]], loop: asyncio.AbstractEventLoop,
                 queue_timeout: float, timeout: float) -> None:
        self.work = work
        self.queue_timeout = queue_timeout
        self.timeout = timeout
        self.cancelled = threading.Event()
        self._loop = loop
        self._items: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._started = asyncio.Event()
        self.done = False

    def cancel(self) -> None:
        self.cancelled.set()

    # called from the worker thread
    def _send(self, kind: str, value: Any = None) -> None:
        try:
            self._loop.call_soon_threadsafe(self._items.put_nowait, (kind, value))
        except RuntimeError:  # the event loop is closed: the server is shutting down
            self.cancel()

    def _mark_started(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._started.set)
        except RuntimeError:
            self.cancel()

    async def results(self) -> AsyncIterator[Any]:
        """The job's items as they come. Raises BusyError if it does not start within
        `queue_timeout`, GenerationTimeoutError if it runs longer than `timeout`, or what the
        work itself raised. Leaving the loop early (a client that went away) cancels the job."""
        queue_timeout, timeout = self.queue_timeout, self.timeout
        try:
            try:
                await asyncio.wait_for(self._started.wait(), queue_timeout)
            except TimeoutError:
                raise QueueTimeoutError(
                    f"the server is busy: no generation slot within {queue_timeout:g} s",
                    retry_after=max(1, math.ceil(queue_timeout / 4))) from None
            deadline = self._loop.time() + timeout
            while True:
                try:
                    kind, value = await asyncio.wait_for(
                        self._items.get(), max(0.0, deadline - self._loop.time()))
                except TimeoutError:
                    raise GenerationTimeoutError(
                        f"generation took longer than {timeout:g} s and was stopped") from None
                if kind == "item":
                    yield value
                elif kind == "error":
                    raise value
                else:
                    self.done = True
                    return
        finally:
            if not self.done:
                self.cancel()


class GenerationQueue:
    def __init__(self, workers: int = 1, max_waiting: int = 32, queue_timeout: float = 120.0,
                 timeout: float = 120.0) -> None:
        self.workers = workers
        self.max_waiting = max_waiting
        self.queue_timeout = queue_timeout
        self.timeout = timeout
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self.waiting = 0
        self.running = 0
        self.completed = 0
        self._mean_s = 5.0  # running mean of generation time, for Retry-After
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self.workers - len(self._threads)):
            t = threading.Thread(target=self._work, name=f"ragline-generation-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        self._threads.clear()

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue ahead, at the mean generation time."""
        ahead = self.waiting + self.running
        return max(1, min(600, math.ceil(self._mean_s * ahead / self.workers)))

    def submit(self, work: Callable[[], Iterable[Any]]) -> Job:
        """Queue a generation; QueueFullError when `max_waiting` are already waiting."""
        with self._lock:
            if self.waiting >= self.max_waiting:
                raise QueueFullError(
                    f"the server is busy: {self.running} generation(s) running and "
                    f"{self.waiting} waiting; try again shortly", retry_after=self.retry_after())
            self.waiting += 1
        job = Job(work, asyncio.get_running_loop(), self.queue_timeout, self.timeout)
        self._queue.put(job)
        return job

    def stats(self) -> dict[str, Any]:
        return {"running": self.running, "waiting": self.waiting, "max_waiting": self.max_waiting,
                "workers": self.workers, "completed": self.completed,
                "mean_generation_s": round(self._mean_s, 3)}

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                self.waiting -= 1
                self.running += 1
            try:
                if not job.cancelled.is_set():  # its caller gave up while it waited
                    self._run(job)
            finally:
                with self._lock:
                    self.running -= 1

    def _run(self, job: Job) -> None:
        job._mark_started()
        t0 = time.monotonic()
        try:
            with cancellable(job.cancelled):  # steps that yield nothing check it too
                items = iter(job.work())
                try:
                    for item in items:
                        if job.cancelled.is_set():
                            break  # the caller timed out or went away: stop at this token
                        job._send("item", item)
                finally:
                    close = getattr(items, "close", None)
                    if close is not None:
                        close()
            job._send("end")
        except Cancelled:
            job._send("end")  # nobody is waiting for it
        except Exception as e:  # handed to the caller, which maps it to an HTTP error
            if not isinstance(e, RaglineError):
                log.exception("generation failed")
            job._send("error", e)
            return
        with self._lock:
            self.completed += 1
            self._mean_s += (time.monotonic() - t0 - self._mean_s) / min(self.completed, 20)
