"""The worker pool: threads that run ticks of "worker" actors (sandboxed, native, numpy).

Plain threads fed by one ``queue.SimpleQueue``: no future per job, no lock on the submit
path. A job is a callable; the scheduler hands in whole batches of one node's ticks, so a
wasm or native tick of a few microseconds is not drowned in dispatch cost. Those actors
release the GIL while they compute, so independent nodes run on all cores.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

__all__ = ["WorkerPool"]

_STOP = None


class WorkerPool:
    """``size`` daemon threads, started on first use. ``close()`` waits for running jobs."""

    def __init__(self, size: int, name: str = "reflow-worker") -> None:
        self.size = size
        self._name = name
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, job: Callable[[], None]) -> None:
        if self._closed:
            raise RuntimeError("worker pool is closed")
        if not self._threads:
            self._start()
        self._jobs.put(job)

    def _start(self) -> None:
        for i in range(self.size):
            t = threading.Thread(target=self._work, name=f"{self._name}-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def _work(self) -> None:
        get = self._jobs.get
        while True:
            job = get()
            if job is None:
                return
            job()  # jobs catch their own exceptions

    def close(self) -> None:
        """Stop the threads after the jobs already queued (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._jobs.put(_STOP)
        for t in self._threads:
            t.join()
        self._threads.clear()
