"""``os._exit()`` called by a job on the thread backend: that element's failure, not the end of
the process running the whole workflow.

A thread cannot stop ``os._exit`` (it ends the process at once: no ``finally``, no report), so
while a thread-backend run goes (:func:`install` by ``LocalBackend(processes=False)``,
:func:`release` at its ``close``) ``os._exit`` is a function of ours that, *when called in
this process from a thread running a job call* (:func:`job_thread`), raises
:class:`JobExited` there: the job's stack unwinds, and ``run_chunk`` fails the element with
``JobExited: os._exit(3) called by job 'each' in a thread ...``. Any other caller gets the
real ``os._exit``: another thread of the program, a process forked by a job
(multiprocessing's ``fork`` children end with ``os._exit``: the pid tells them apart), and
everything once the last run has left.

What this cannot turn into a failure, and why isolation needs ``processes=True``: a job that
took ``os._exit`` (or ``posix._exit``) by another name before the run began, C code calling
``exit()``/``abort()``, a segfault. In worker processes each of those fails only its element.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, NoReturn

__all__ = ["JobExited", "install", "job_thread", "release"]

_real_exit = os._exit
_lock = threading.Lock()
_runs = 0  # thread-backend runs going now
_pid = 0  # the process the guard was installed in
_local = threading.local()


class JobExited(BaseException):
    """What ``os._exit(code)`` raises in a job call on the thread backend. A
    ``BaseException``, as ``SystemExit`` is: an ``except Exception`` in the job does not catch
    it and go on as if the process had not been asked to end (``.code``, ``.step``)."""

    def __init__(self, code: int, step: str) -> None:
        self.code = code
        self.step = step
        super().__init__(
            f"os._exit({code}) called by job {step!r} in a thread: the thread backend fails "
            "this element instead of ending the process (run with processes=True to isolate "
            "jobs that end their process)"
        )


def _guard(status: int) -> NoReturn:
    step = getattr(_local, "step", None)
    if step is None or os.getpid() != _pid:
        _real_exit(status)
    raise JobExited(status, step)


def install() -> None:
    """A thread-backend run begins (runs at once count): ``os._exit`` is guarded."""
    global _runs, _pid
    with _lock:
        if _runs == 0 and os._exit is _real_exit:
            _pid = os.getpid()
            os._exit = _guard
        _runs += 1


def release() -> None:
    """A run that :func:`install`-ed has ended; the last one puts the real ``os._exit`` back."""
    global _runs
    with _lock:
        _runs = max(0, _runs - 1)
        if _runs == 0 and os._exit is _guard:  # not one someone else put in meanwhile
            os._exit = _real_exit


def job_thread(step: str, call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)`` marked as job ``step``'s, in this thread, for :func:`_guard`."""
    _local.step = step
    try:
        return call(*args)
    finally:
        _local.step = None
