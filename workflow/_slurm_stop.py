"""What may still run of a ``backend="slurm"`` run: its stop, its cancels and its jobs out.

Stopping. With ``on_error="stop"`` the first failure — an element's, seen by the poller
(``_slurm_poll``), or one the run saw (``SlurmBackend.stop()``, called by the run) — stops the
run: the poller ``scancel``s every job of this run still pending or running, of every step,
takes the results that landed meanwhile, and resolves every other task as cancelled
(:data:`~._backends.CANCELLED` and the first failure, named), which the run reports as skipped
elements; nothing more is submitted (a job whose ``sbatch`` was under way is cancelled at once).
``cancel(step)`` (``Run.cancel()``, from any thread) does the same for one step's jobs or the
run's. Only job ids this backend submitted are ever cancelled, so a second run at once is not
touched.

:class:`SlurmStops` is the one place that state lives, under one lock, because the run's
thread (``cancel``), the submitting threads (``sbatch``) and the poller all read and change it.
It decides; it runs no Slurm command: its callers ``scancel`` the ids it hands them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from ._backends import CANCELLED, Calls, Results

__all__ = ["SlurmStops", "cancelled"]


class SlurmStops:
    """The run's stop cause, the steps ``cancel()`` named and the job ids out, locked."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._out: dict[str, str] = {}  # job id -> step, submitted and not yet finished
        #: why the run stopped (on_error="stop": its first failure), once it has
        self._stop_cause: str | None = None
        #: steps cancel() stopped (None: the whole run)
        self._cancels: set[str | None] = set()

    def _halted(self, step: str) -> str | None:
        # the caller holds the lock
        if self._stop_cause is not None:
            return self._stop_cause
        if None in self._cancels:
            return "the run was cancelled"
        if step in self._cancels:
            return f"job {step!r} was cancelled"
        return None

    def halted(self, step: str) -> str | None:
        """Why nothing more of ``step`` may run, or ``None``."""
        with self._lock:
            return self._halted(step)

    def halted_steps(self, steps: Iterable[str]) -> dict[str, str]:
        """Of ``steps``, those halted and why, all read at one moment."""
        with self._lock:
            whys = {step: self._halted(step) for step in steps}
        return {step: why for step, why in whys.items() if why is not None}

    def admit(self, job_id: str, step: str) -> tuple[bool, str | None]:
        """Record a job ``sbatch`` just made, known to ``cancel()`` and ``close()`` from now
        on. ``(False, why)``: the run stopped or was cancelled meanwhile (``why``) or ended
        (``None``), and the caller cancels the job at once."""
        with self._lock:
            why = self._halted(step)
            if not self._closed and why is None:
                self._out[job_id] = step
                return True, None
            return False, why

    def finished(self, job_id: str) -> None:
        """The job ended: nothing of it is left to cancel."""
        with self._lock:
            self._out.pop(job_id, None)

    def stop(self, why: str) -> None:
        """The run stops (the first cause stays)."""
        with self._lock:
            if self._stop_cause is None:
                self._stop_cause = why

    def cancel(self, step: str | None) -> list[str]:
        """Nothing more of ``step`` (``None``: of the run) runs; its job ids out, to cancel."""
        with self._lock:
            self._cancels.add(step)
            return sorted((j for j, s in self._out.items() if step in (None, s)), key=int)

    def close(self) -> list[str]:
        """The run ended: every job id still out, to cancel; nothing more is admitted."""
        with self._lock:
            self._closed = True
            ids = sorted(self._out, key=int)
            self._out.clear()
        return ids


def cancelled(calls: Calls, why: str) -> Results:
    """The results of ``calls`` that did not run, saying why."""
    return [(i, False, f"{CANCELLED}{why}") for i, _ in calls]
