"""A run known only by its record in the run index (another process's, or an earlier one's):
its steps read back as reports, waiting for it to end, and cancelling it.

Such a run is driven by the process that owns it, so what a handle here does goes through its
record: ``wait()`` re-reads it until it ends, ``cancel()`` asks its owner through the index.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ._errors import RunStateError
from ._index import RunIndex
from ._report import StepReport
from ._snapshot import TERMINAL, active_count

__all__ = ["cancel_recorded", "record_steps", "wait_recorded"]

#: how often a handle re-reads a foreign run's record while it waits
POLL_S = 0.25


def record_steps(snap: dict[str, Any]) -> dict[str, StepReport]:
    """A foreign run's steps as its record says (at attach, and again when wait() sees it
    end: a handle must not report what it read before another process retried it). The
    record's step states are made UPPERCASE in place, as the handle reports them."""
    steps = {}
    for name, st in (snap.get("steps") or {}).items():
        rep = StepReport(name, bool(st.get("array")))
        rep.elements = int(st.get("total", 0))
        rep.cached = int(st.get("cached", 0))
        rep.done = int(st.get("done", 0))
        for e in st.get("errors", []):
            rep.failures[e.get("index") or 0] = str(e.get("error", ""))
        state = str(st.get("state", "")).upper()
        state = "SUCCESS" if state == "SUCCEEDED" else state
        rep.status = {
            "SUCCESS": "done",
            "FAILED": "failed",
            "CANCELLED": "skipped",
        }.get(state, state.lower())
        st["state"] = state
        steps[name] = rep
    return steps


def wait_recorded(done: Callable[[], bool], run_id: str, timeout: float | None) -> None:
    """Re-read (``done``) a foreign run's record until it has ended; a
    :class:`RunStateError` after ``timeout`` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not done():
        if deadline is not None and time.monotonic() >= deadline:
            raise RunStateError(f"run {run_id!r} is still running after {timeout:g} s")
        time.sleep(POLL_S)


def cancel_recorded(index: RunIndex, run_id: str, snap: dict[str, Any], task: str | None) -> int:
    """Ask the owner of a foreign run (its record ``snap``, just re-read) to cancel it through
    the index; how many task instances (of ``task`` only) were still to finish."""
    if str(snap.get("status")) in TERMINAL:
        return 0
    n = active_count(snap, task)
    index.request_cancel(run_id)
    return n
