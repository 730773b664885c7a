"""Graceful shutdown: a SIGTERM or SIGINT becomes :class:`TaskInterrupted` inside the job.

Slurm sends SIGTERM at a job's time limit (and the signal of ``signal="B:INT@60"`` before it),
a user sends it with ``kill``; reflow-hpc's contract is that the job sees
:class:`TaskInterrupted` raised where it is, can clean up (``except TaskInterrupted: ...;
raise``), and the task is reported failed with that reason, not killed mid-write.

While a run works here (:func:`interrupts`, installed by ``run_plan`` in the main thread), a
first SIGTERM/SIGINT raises :class:`TaskInterrupted` in every job call running at that moment
and tells the run to start nothing more; the handlers that were there before are then put
back, so a second signal acts as it would have (SIGINT: ``KeyboardInterrupt``; SIGTERM: the
process ends). A call running in a thread (the default backend) sees the exception at its next
Python instruction: a thread cannot be interrupted inside C code (a long ``time.sleep``, a
blocking read), so such a call sees it when that returns. A call running in a process's main
thread (``processes=True`` workers, Slurm's tasks) is interrupted at once, sleeps included;
worker processes get the signal forwarded.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ._errors import WorkflowError

__all__ = [
    "Interrupts",
    "TaskInterrupted",
    "graceful_shutdown",
    "interrupt_all",
    "interrupts",
    "job_call",
    "running",
]

#: the signals turned into :class:`TaskInterrupted`
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TaskInterrupted(WorkflowError):
    """Raised inside a job when its process receives SIGTERM or SIGINT (``.signal_number``,
    ``.signal_name``)."""

    def __init__(self, signal_number: int = signal.SIGTERM) -> None:
        try:
            name = signal.Signals(signal_number).name
        except (ValueError, TypeError):
            name = f"signal {signal_number!r}"
        self.signal_number = signal_number
        self.signal_name = name
        super().__init__(f"Task interrupted by {name} (signal {signal_number})")

    def __reduce__(self) -> tuple[Any, ...]:  # a worker's failure travels pickled
        return (TaskInterrupted, (self.signal_number,))


_kinds: dict[int, type[TaskInterrupted]] = {}


def _kind(signum: int) -> type[TaskInterrupted]:
    """A :class:`TaskInterrupted` subclass whose no-argument form names ``signum``: what
    ``PyThreadState_SetAsyncExc`` raises in another thread takes no arguments."""
    kind = _kinds.get(signum)
    if kind is None:

        def init(self: TaskInterrupted, signal_number: int = signum) -> None:
            TaskInterrupted.__init__(self, signal_number)

        kind = type("TaskInterrupted", (TaskInterrupted,), {"__init__": init})
        kind.__module__ = __name__
        _kinds[signum] = kind
    return kind


# reentrant: a signal handler may run in a thread that holds it (entering a job call)
_lock = threading.RLock()
_calls: dict[int, int] = {}  # thread ident -> how many job calls it is inside


class job_call:
    """Mark this thread as running job calls (what a signal interrupts); a class, not a
    generator, as it wraps every chunk."""

    __slots__ = ("_ident",)

    def __enter__(self) -> None:
        self._ident = ident = threading.get_ident()
        with _lock:
            _calls[ident] = _calls.get(ident, 0) + 1

    def __exit__(self, *exc: object) -> None:
        with _lock:
            n = _calls.pop(self._ident, 1) - 1
            if n > 0:
                _calls[self._ident] = n


class Interrupts:
    """What :func:`interrupts` yields: ``signal_number`` is the first signal received
    (``None``: none yet)."""

    def __init__(self) -> None:
        self.signal_number: int | None = None

    @property
    def signal_name(self) -> str | None:
        n = self.signal_number
        return None if n is None else signal.Signals(n).name


def _raise_in(ident: int, kind: type[BaseException]) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(kind))


_runs: dict[int, tuple[Callable[[int], None], Callable[[], list[int]] | None]] = {}


@contextlib.contextmanager
def running(
    on_signal: Callable[[int], None], *, children: Callable[[], list[int]] | None = None
) -> Iterator[None]:
    """While inside, :func:`interrupt_all` calls ``on_signal(signum)`` (a run stops starting
    calls) and forwards the signal to the pids ``children()`` lists (worker processes)."""
    key = id(on_signal)
    with _lock:
        _runs[key] = (on_signal, children)
    try:
        yield
    finally:
        with _lock:
            _runs.pop(key, None)


def interrupt_all(signum: int) -> bool:
    """Raise :class:`TaskInterrupted` in every other thread running a job call, forward the
    signal to the runs' worker processes and tell the runs; whether this thread is in a job
    call itself (the caller raises there). Safe in a signal handler: it only sets flags and
    sends signals."""
    here = threading.get_ident()
    with _lock:
        others = [t for t in _calls if t != here]
        mine = here in _calls
        hooks = list(_runs.values())
    kind = _kind(signum)
    for ident in others:
        _raise_in(ident, kind)
    for on_signal, children in hooks:
        if children is not None:
            for pid in children():
                with contextlib.suppress(OSError):
                    os.kill(pid, signum)
        on_signal(signum)
    return mine


@contextlib.contextmanager
def interrupts() -> Iterator[Interrupts]:
    """Turn the first SIGTERM/SIGINT into :func:`interrupt_all` (and :class:`TaskInterrupted`
    here when this thread runs a job call), then put the old handlers back. Outside the main
    thread it does nothing (Python lets only the main thread set handlers)."""
    state = Interrupts()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    owner = os.getpid()
    old = {s: signal.getsignal(s) for s in SIGNALS}

    def restore() -> None:
        for s, h in old.items():
            with contextlib.suppress(ValueError, TypeError, OSError):
                signal.signal(s, h if h is not None else signal.SIG_DFL)

    def handler(signum: int, frame: Any) -> None:
        del frame
        if os.getpid() != owner:  # a forked worker process: the job runs in this thread
            if threading.get_ident() in _calls:
                raise _kind(signum)()
            return
        if state.signal_number is None:
            state.signal_number = signum
        restore()  # a second signal acts as it would have
        if interrupt_all(signum):
            raise _kind(signum)()

    for s in SIGNALS:
        signal.signal(s, handler)
    try:
        yield state
    finally:
        if os.getpid() == owner:
            restore()


@contextlib.contextmanager
def graceful_shutdown() -> Iterator[Interrupts]:
    """reflow-hpc's ``graceful_shutdown()``: inside it, SIGTERM/SIGINT raise
    :class:`TaskInterrupted` in the code running in the main thread."""
    with job_call(), interrupts() as state:
        yield state
