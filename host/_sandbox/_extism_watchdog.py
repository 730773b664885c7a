"""Tick deadlines for Extism plugins: one watchdog thread for every node.

A call registers its deadline (:class:`_Call`); the watchdog cancels a call that passes it
through that node's own plugin handle, so no other node is interrupted. Waiting for room
downstream pauses the clock: the limit is the guest's own time, host calls included.
"""

from __future__ import annotations

import threading
import time
from typing import Any

# -- tick deadlines --------------------------------------------------------------------------


class _Call:
    """One guest call's deadline. The limit bounds the guest's own time: the wasm it runs and
    the host work it asks for (parsing, HTTP, ...). Only time a host function spends parked
    waiting for room downstream (backpressure, another node's doing) moves the deadline, by
    exactly that long; nothing re-arms the full limit."""

    __slots__ = ("deadline", "done", "fired", "handle", "paused_at")

    def __init__(self, handle: Any, limit_s: float) -> None:
        self.handle = handle
        self.deadline = time.monotonic() + limit_s
        self.paused_at: float | None = None
        self.fired = False  # the deadline passed and the watchdog cancelled it
        self.done = False

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


class _Watchdog:
    """One thread for every extism call of the process: it cancels a call (extism's cancel
    handle: an epoch interrupt of that plugin's own engine) once its deadline passes. A
    cancel is sent only while the call is running, under the lock that ends it, so it can
    never reach the next call of the same plugin."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._calls: set[_Call] = set()
        self._thread: threading.Thread | None = None

    def start(self, handle: Any, limit_ms: float) -> _Call:
        call = _Call(handle, limit_ms / 1000.0)
        with self._cond:
            self._calls.add(call)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="reflow-extism-watchdog", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        return call

    def finish(self, call: _Call) -> None:
        with self._cond:
            call.done = True
            self._calls.discard(call)

    def cancel(self, call: _Call) -> None:
        """Stop the guest now (a host function failed: what it does next is moot)."""
        with self._cond:
            if not call.done:
                call.paused_at = None
                call.deadline = time.monotonic()
                self._cond.notify()

    def pause(self, call: _Call) -> None:
        with self._cond:
            if call.paused_at is None:
                call.paused_at = time.monotonic()

    def resume(self, call: _Call) -> None:
        with self._cond:
            if call.paused_at is not None:
                call.deadline += time.monotonic() - call.paused_at
                call.paused_at = None
                self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                wait: float | None = None
                for call in list(self._calls):
                    if call.paused_at is not None:
                        continue
                    if call.deadline <= now:
                        # Sent again until the call ends: a cancel that reaches extism before
                        # the call has started its timer entry is dropped there.
                        call.fired = True
                        call.deadline = now + _RECANCEL_S
                        call.handle.cancel()
                    else:
                        left = call.deadline - now
                        wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)


_RECANCEL_S = 0.05
_watchdog = _Watchdog()
