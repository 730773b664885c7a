"""The epoch ticker: what moves a wasmtime engine's epoch on, so that tick deadlines fire.

A guest is interrupted when its engine's epoch reaches the deadline its store was given, so
something must call ``wasmtime_engine_increment_epoch`` every ``epoch_ms``. A Python thread
doing it takes the GIL 200 times a second and makes every thread that wants it wait its turn
(15-20 us added to about half the batched calls). Where it can, :class:`EpochTicker` hands the
job to the C library instead: a POSIX timer (``timer_create`` with ``SIGEV_THREAD``) whose
notify function *is* ``wasmtime_engine_increment_epoch``, its argument the engine pointer —
``void f(union sigval)`` and ``void f(const wasm_engine_t *)`` take their one word in the same
register on the 64-bit Linux ABIs this is enabled for (x86_64, aarch64). libc runs the notify
function on a thread of its own (glibc starts one per expiry, musl keeps one per timer); no
Python code and no GIL are involved. It is the default (see :data:`DEFAULT_NATIVE`;
``REFLOW_EPOCH_TICKER=thread`` opts out); wherever it cannot be (macOS has no POSIX timers,
Windows, a wasmtime-py without the fast path's bindings, ``timer_create`` failing), a daemon
Python thread does the job.

Nobody reads the engine's epoch counter back (the C API has no getter): the engine's hot
path only needs to know whether a deadline it armed may have been eaten into since, which
:func:`time.monotonic` tells (see ``WasmEngine.deadline_ticks`` for the slack this costs).

Lifetime: :meth:`EpochTicker.close` deletes the timer (idempotent), and keeps the engine alive
for a grace period after, because a notify thread libc already started may still run; every
live timer is deleted at interpreter exit, before the engines are freed, and a forked child
(which inherits no timers) restarts the ticker of an engine it inherited when that engine
next arms a deadline.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import os
import platform
import sys
import threading
import time
import weakref
from typing import Any

import wasmtime

from . import _wasm_fastcall as fastcall

__all__ = ["NATIVE", "NATIVE_REASON", "EpochTicker"]

_CLOCK_MONOTONIC = 1
_SIGEV_THREAD = 2
#: Seconds a deleted timer's engine is kept alive: a notify thread already started by libc
#: may still be about to increment it.
_GRACE_S = 1.0


class _Sigevent(ctypes.Structure):
    """``struct sigevent`` of Linux (glibc and musl agree): 64 bytes."""

    _fields_ = (
        ("sigev_value", ctypes.c_void_p),  # union sigval: the engine pointer
        ("sigev_signo", ctypes.c_int),
        ("sigev_notify", ctypes.c_int),
        ("sigev_notify_function", ctypes.c_void_p),
        ("sigev_notify_attributes", ctypes.c_void_p),
        ("_pad", ctypes.c_byte * 32),
    )


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


class _Itimerspec(ctypes.Structure):
    _fields_ = (("it_interval", _Timespec), ("it_value", _Timespec))


def _probe() -> tuple[Any, str]:
    """(libc with the timer functions bound, why) or (None, why not)."""
    if not sys.platform.startswith("linux"):
        return None, f"no POSIX timers with SIGEV_THREAD on {sys.platform}"
    if platform.machine() not in ("x86_64", "amd64", "aarch64", "arm64"):
        return None, f"the notify-function calling convention is unchecked on {platform.machine()}"
    if not fastcall.AVAILABLE:
        return None, f"needs the wasmtime fast path ({fastcall.REASON})"
    if ctypes.sizeof(_Sigevent) != 64 or ctypes.sizeof(ctypes.c_void_p) != 8:
        return None, "unexpected struct sigevent layout"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        create, settime, delete = libc.timer_create, libc.timer_settime, libc.timer_delete
    except (OSError, AttributeError) as exc:
        return None, f"libc has no POSIX timers: {exc}"
    try:  # the timer holds an engine reference of its own (see EpochTicker._start_timer)
        from wasmtime import _ffi

        clone, drop = _ffi.dll.wasmtime_engine_clone, _ffi.dll.wasm_engine_delete
    except (ImportError, AttributeError) as exc:
        return None, f"wasmtime has no wasmtime_engine_clone: {exc}"
    clone.argtypes, clone.restype = (ctypes.c_void_p,), ctypes.c_void_p
    drop.argtypes, drop.restype = (ctypes.c_void_p,), None
    setattr(libc, "reflow_engine_clone", clone)  # noqa: B010 - kept with the timer functions
    setattr(libc, "reflow_engine_delete", drop)  # noqa: B010
    create.argtypes = (ctypes.c_int, ctypes.POINTER(_Sigevent), ctypes.POINTER(ctypes.c_void_p))
    create.restype = ctypes.c_int
    settime.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(_Itimerspec), ctypes.c_void_p)
    settime.restype = ctypes.c_int
    delete.argtypes = (ctypes.c_void_p,)
    delete.restype = ctypes.c_int
    return libc, "POSIX timer (timer_create, SIGEV_THREAD) calling wasmtime_engine_increment_epoch"


_LIBC, NATIVE_REASON = _probe()
#: Whether the POSIX timer can be used here (``EpochTicker(native=True)``).
NATIVE = _LIBC is not None
#: Whether tickers use it unless told (``native=None``): wherever it can be, unless
#: ``REFLOW_EPOCH_TICKER=thread``. Its first version crashed when an engine that was never
#: closed was freed by garbage collection before the ticker's ``__del__`` deleted the timer;
#: the timer now holds an engine reference of its own (``wasmtime_engine_clone``), released
#: only after the timer is deleted and its grace period passed. The time-limit, epoch and
#: batch test files passed with it in repeated runs on a loaded machine, so it is the default;
#: a timer that cannot be created at run time falls back to the thread.
DEFAULT_NATIVE = NATIVE and os.environ.get("REFLOW_EPOCH_TICKER", "").strip() != "thread"

_live: weakref.WeakSet[EpochTicker] = weakref.WeakSet()
#: (when, engine handle) of deleted timers: each handle is released once _GRACE_S passed
_retired: list[tuple[float, int]] = []
_registry_lock = threading.Lock()


class EpochTicker:
    """Increments ``engine``'s epoch every ``period_s`` seconds from :meth:`start` until
    :meth:`close`. ``native``: use the POSIX timer (``None`` = :data:`DEFAULT_NATIVE`)."""

    def __init__(self, engine: wasmtime.Engine, period_s: float, native: bool | None = None):
        if native and not NATIVE:
            raise RuntimeError(f"no native epoch ticker here: {NATIVE_REASON}")
        self.engine = engine
        self.period_s = float(period_s)
        self.native = DEFAULT_NATIVE if native is None else bool(native)
        self._asked = native  # None: the default, which may fall back to the thread
        self._timer: ctypes.c_void_p | None = None
        self._handle = 0  # the timer's own engine reference (wasmtime_engine_clone)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False
        self._lock = threading.Lock()
        self._pid = os.getpid()

    @property
    def running(self) -> bool:
        return self._timer is not None or self._thread is not None

    def restart_if_forked(self) -> None:
        """In a forked child, start again what the parent had running (cheap otherwise)."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            if not self._closed and not self.running:
                self.start()

    def start(self) -> None:
        """Start ticking (idempotent; a closed ticker stays closed)."""
        with self._lock:
            if self._closed or self.running:
                return
            if self.native:
                try:
                    self._start_timer()
                except OSError:
                    if self._asked:  # asked for by name: say why not
                        raise
                    self.native = False  # e.g. a process out of timers: the thread does it
                    self._start_thread()
            else:
                self._start_thread()
            with _registry_lock:
                _live.add(self)

    def _start_timer(self) -> None:
        assert _LIBC is not None
        # The notify thread gets an engine reference of its own, so garbage collection freeing
        # the wasmtime.Engine (in any order with this ticker's __del__) leaves it valid.
        handle = _LIBC.reflow_engine_clone(fastcall.engine_address(self.engine)) or 0
        if not handle:
            raise OSError("wasmtime_engine_clone failed")
        ev = _Sigevent()
        ev.sigev_notify = _SIGEV_THREAD
        ev.sigev_value = handle
        ev.sigev_notify_function = fastcall.INCREMENT_EPOCH
        timer = ctypes.c_void_p()
        if _LIBC.timer_create(_CLOCK_MONOTONIC, ctypes.byref(ev), ctypes.byref(timer)) != 0:
            err = ctypes.get_errno()
            _LIBC.reflow_engine_delete(handle)
            raise OSError(err, f"timer_create failed: {os.strerror(err)}")
        ns = max(1, round(self.period_s * 1e9))
        span = _Timespec(ns // 1_000_000_000, ns % 1_000_000_000)
        spec = _Itimerspec(span, span)
        if _LIBC.timer_settime(timer, 0, ctypes.byref(spec), None) != 0:
            err = ctypes.get_errno()
            _LIBC.timer_delete(timer)
            _LIBC.reflow_engine_delete(handle)
            raise OSError(err, f"timer_settime failed: {os.strerror(err)}")
        self._timer = timer
        self._handle = handle

    def _start_thread(self) -> None:
        stop, period, engine = self._stop, self.period_s, self.engine

        def tick() -> None:
            while not stop.wait(period):
                engine.increment_epoch()

        self._stop.clear()
        self._thread = threading.Thread(target=tick, name="reflow-wasm-epoch", daemon=True)
        self._thread.start()

    def _halt(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            assert _LIBC is not None
            _LIBC.timer_delete(timer)
            handle, self._handle = self._handle, 0
            now = time.monotonic()
            with _registry_lock:
                due = [h for t, h in _retired if now - t >= _GRACE_S]
                _retired[:] = [(t, h) for t, h in _retired if now - t < _GRACE_S]
                _retired.append((now, handle))
            for h in due:  # no notify thread can still be about to use these
                _LIBC.reflow_engine_delete(h)
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            if thread is not threading.current_thread():
                thread.join(timeout=1.0)

    def close(self) -> None:
        """Stop ticking. Idempotent."""
        with self._lock:
            self._closed = True
            self._halt()

    def __del__(self) -> None:
        if self._timer is not None:  # never leave a timer running for nobody
            self._halt()
        self._stop.set()  # a ticker thread (which holds only the engine) ends too

    def _after_fork(self) -> None:
        # A child inherits no timers and no threads: forget them. Nothing is started here —
        # between fork and exec (subprocess's preexec_fn) a child must not start threads —
        # the engine restarts the ticker the next time it arms a deadline.
        self._timer = None
        self._thread = None
        self._lock = threading.Lock()
        self._stop = threading.Event()


@atexit.register
def _close_all() -> None:
    """Delete every timer before interpreter teardown frees the engines."""
    with _registry_lock:
        live = list(_live)
    for ticker in live:
        ticker.close()


def _after_fork_in_child() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()
    for ticker in list(_live):
        ticker._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
