"""Private fast path into wasmtime's C API, through wasmtime-py's private bindings.

wasmtime-py's public ``Func.__call__`` costs ~26 µs per call, almost all of it boxing values
in Python; the C API's ``wasmtime_func_call_unchecked`` called through ctypes costs ~1.7 µs.
This module is the *only* place reflow touches wasmtime-py internals (``wasmtime._ffi``, the
``_func``/``_memory`` fields of ``Func``/``Memory``, ``Trap._from_ptr``). It is verified
against the wasmtime-py versions in :data:`SUPPORTED`; on any other version, or if a probe
fails, :data:`AVAILABLE` is False with :data:`REASON` saying why, and the engine uses the
public API instead (slower, same behaviour). ``tests/sandbox/test_wasm_fastcall.py`` fails
loudly when the fast path is not available with the pinned wasmtime.

Deadlines: :meth:`FastPath.on_deadline` installs a store's epoch-deadline callback, so the
engine decides at each deadline whether the guest has time left (its per-tick budget of guest
time) instead of the store trapping at a fixed epoch.

Host functions made here (``new_host_func``) never raise into wasmtime: a Python callback
returns 0 or a trap pointer built with :func:`make_trap`, so no exception crosses into guest
code and wasmtime-py's process-global "last exception" slot is never used.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from typing import Any

import wasmtime

__all__ = ["AVAILABLE", "REASON", "SUPPORTED", "BoundCall", "FastPath", "engine_address"]

#: wasmtime-py major versions whose private layout this module was checked against.
SUPPORTED = ("50.",)

_VAL_RAW_SIZE = 16  # sizeof(wasmtime_val_raw_t): a union with a v128 member

AVAILABLE = False
REASON = "not probed"

try:  # every private name used below, resolved once
    from wasmtime import _ffi as _ffi

    _dll = _ffi.dll
    _version = getattr(wasmtime, "__version__", "") or ""
    try:
        from importlib.metadata import version as _dist_version

        _version = _dist_version("wasmtime")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        pass

    def _fn(name: str, restype: Any, *argtypes: Any) -> Any:
        # A fresh function pointer: never mutate the one wasmtime-py's bindings share.
        f = _dll._FuncPtr((name, _dll))
        f.restype = restype
        f.argtypes = list(argtypes)
        return f

    _vp = ctypes.c_void_p
    # No argtypes: every argument is a prebuilt ctypes object (see FastPath.bind), which
    # skips ctypes' per-call from_param conversions (~0.1 us of a ~0.4 us call).
    _call_unchecked = _fn("wasmtime_func_call_unchecked", _vp)
    _call_unchecked.argtypes = None
    _memory_data = _fn("wasmtime_memory_data", _vp, _vp, _vp)
    _memory_data_size = _fn("wasmtime_memory_data_size", ctypes.c_size_t, _vp, _vp)
    _set_epoch_deadline = _fn("wasmtime_context_set_epoch_deadline", None, _vp, ctypes.c_uint64)
    _caller_context = _fn("wasmtime_caller_context", _vp, _vp)
    _trap_new = _fn("wasmtime_trap_new", _vp, ctypes.c_char_p, ctypes.c_size_t)
    _CALLBACK = ctypes.CFUNCTYPE(ctypes.c_size_t, _vp, _vp, _vp, ctypes.c_size_t)
    _func_new_unchecked = _fn(
        "wasmtime_func_new_unchecked", None, _vp, _vp, _CALLBACK, _vp, _vp, _vp
    )
    _TrapPtr = ctypes.POINTER(_ffi.wasm_trap_t)
    _ErrPtr = ctypes.POINTER(_ffi.wasmtime_error_t)
    _func_t = _ffi.wasmtime_func_t
    # The epoch-deadline callback: (context, env, *delta, *update kind) -> error or NULL.
    _EPOCH_CALLBACK = ctypes.CFUNCTYPE(
        ctypes.c_size_t, _vp, _vp, ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(ctypes.c_uint8)
    )
    _store_epoch_callback = _fn(
        "wasmtime_store_epoch_deadline_callback", None, _vp, _EPOCH_CALLBACK, _vp, _vp
    )
    _error_new = _fn("wasmtime_error_new", _vp, ctypes.c_char_p)
    #: Address of ``wasmtime_engine_increment_epoch`` (for a timer that calls it from C).
    INCREMENT_EPOCH: int = (
        ctypes.cast(_fn("wasmtime_engine_increment_epoch", None, _vp), _vp).value or 0
    )
    if not INCREMENT_EPOCH:
        raise RuntimeError("wasmtime_engine_increment_epoch not found")
    if ctypes.sizeof(_ffi.wasmtime_val_raw_t) != _VAL_RAW_SIZE:
        raise RuntimeError("wasmtime_val_raw_t changed size")
    if not _version.startswith(SUPPORTED):
        raise RuntimeError(
            f"wasmtime-py {_version} is not one of the verified versions "
            f"{', '.join(v + 'x' for v in SUPPORTED)}"
        )
    AVAILABLE = True
    REASON = f"wasmtime-py {_version}: private C-API fast path enabled"
except Exception as exc:  # any drift in the private layout disables the fast path
    AVAILABLE = False
    REASON = f"fast path disabled: {type(exc).__name__}: {exc}"


def engine_address(engine: wasmtime.Engine) -> int:
    """The ``wasm_engine_t*`` of ``engine``, as an int."""
    return ctypes.cast(engine.ptr(), ctypes.c_void_p).value or 0


def make_trap(message: str) -> int:
    """A new ``wasm_trap_t*`` (as an int) for a host callback to return."""
    raw = message.encode("utf-8", "replace")
    return int(_trap_new(raw, len(raw)))


class FastPath:
    """Per-store handles for unchecked calls and raw linear-memory access."""

    __slots__ = ("_ctx", "_keep", "_mem", "_store")

    def __init__(self, store: wasmtime.Store) -> None:
        self._store = store
        self._ctx = ctypes.cast(store._context(), ctypes.c_void_p).value
        self._mem = 0
        self._keep: list[Any] = []

    @property
    def context(self) -> int:
        return self._ctx  # type: ignore[return-value]

    def bind_memory(self, memory: wasmtime.Memory) -> None:
        self._mem = ctypes.addressof(memory._memory)

    @staticmethod
    def func_address(func: wasmtime.Func) -> int:
        return ctypes.addressof(func._func)

    def memory_data(self) -> tuple[int, int]:
        """(base address, size in bytes) of the bound memory, as of now."""
        base = _memory_data(self._ctx, self._mem) or 0
        return base, _memory_data_size(self._ctx, self._mem)

    def set_deadline(self, ticks: int) -> None:
        _set_epoch_deadline(self._ctx, ticks)

    def on_deadline(self, decide: Callable[[], int]) -> None:
        """Call ``decide()`` whenever guest code reaches its epoch deadline, instead of
        trapping at once: it returns the epochs to run on (> 0), or 0 to stop the guest, whose
        call then fails with a :class:`wasmtime.WasmtimeError`. ``decide`` must not raise (an
        exception stops the guest too)."""
        message = b"reflow: the guest's time budget is spent"

        def raw(ctx: int, env: int, delta: Any, kind: Any) -> int:
            try:
                more = int(decide())
            except BaseException:  # never into wasmtime
                more = 0
            if more > 0:
                delta[0] = more
                kind[0] = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE
                return 0
            return int(_error_new(message) or 0)

        cb = _EPOCH_CALLBACK(raw)
        self._keep.append(cb)  # as long as the store: wasmtime keeps only the pointer
        _store_epoch_callback(ctypes.cast(self._store.ptr(), ctypes.c_void_p), cb, None, None)

    def bind(self, func: wasmtime.Func, nslots: int) -> BoundCall:
        """Everything needed to call ``func`` with ``nslots`` i32/i64 slots, bound once."""
        bound = BoundCall(self.context, func, nslots)
        self._keep.append(bound)
        return bound

    def make_caller(self, func: wasmtime.Func, nslots: int) -> Callable[..., Any]:
        """A function ``call(*i32_args) -> (raw first slot as int, error)`` around one export.

        ``error`` is ``None`` or a ``wasmtime.Trap``/``wasmtime.WasmtimeError``.
        """
        bound = self.bind(func, nslots)
        args, call, trap, failure = bound.args, bound.call, bound.trap, bound.failure

        def invoke(*params: int) -> tuple[int, Any]:
            for i, p in enumerate(params):
                args[2 * i] = p & 0xFFFFFFFF
            err = call()
            if err or trap.value:
                return 0, failure(err)
            return args[0], None

        return invoke

    def new_host_func(
        self, ty: wasmtime.FuncType, callback: Callable[[int, int], int]
    ) -> wasmtime.Func:
        """A host function for this store. ``callback(caller_context, args_address)`` reads
        its i32 arguments from 16-byte slots at ``args_address``, writes results there, and
        returns 0 or a trap from :func:`make_trap`. It must not raise."""

        def raw(env: int, caller: int, args: int, nargs: int) -> int:
            return callback(_caller_context(caller), args)

        cb = _CALLBACK(raw)
        out = _func_t()
        _func_new_unchecked(
            self._ctx, ctypes.cast(ty.ptr(), ctypes.c_void_p), cb, None, None, ctypes.addressof(out)
        )
        self._keep.append((cb, out, ty))
        return wasmtime.Func._from_raw(out)

    @staticmethod
    def memory_at(context: int, memory: wasmtime.Memory) -> tuple[int, int]:
        """(base, size) of ``memory`` seen from a caller context inside a host callback."""
        addr = ctypes.addressof(memory._memory)
        return (_memory_data(context, addr) or 0), _memory_data_size(context, addr)


class BoundCall:
    """One export bound for unchecked calls: write the i32 arguments into ``args[0]``,
    ``args[2]``, ... (16-byte slots), call ``call()`` — it returns an error pointer or None —
    and read the result from ``args[0]``; if the error pointer or ``trap.value`` is set,
    ``failure(err)`` turns it into the exception (and clears the trap). No Python frame of
    ours sits between the caller and the ctypes call: that is what makes it cheap."""

    __slots__ = ("args", "call", "func", "trap")

    def __init__(self, context: int, func: wasmtime.Func, nslots: int) -> None:
        self.func = func  # keeps the function (and its store) alive
        self.args = (ctypes.c_int64 * (2 * max(nslots, 1)))()
        self.trap = ctypes.c_void_p()
        self.call = functools.partial(
            _call_unchecked,
            ctypes.c_void_p(context),
            ctypes.c_void_p(ctypes.addressof(func._func)),
            self.args,  # an array argument is passed as a pointer to its first element
            ctypes.c_size_t(max(nslots, 1)),
            ctypes.byref(self.trap),
        )

    def failure(self, err: int | None) -> Any:
        trap, self.trap.value = self.trap.value, None  # never seen again by the next call
        if err:
            return wasmtime.WasmtimeError._from_ptr(ctypes.cast(err, _ErrPtr))
        return wasmtime.Trap._from_ptr(ctypes.cast(trap or 0, _TrapPtr))
