"""One node's wasmtime store and instance, and every way of calling into it.

:class:`_GuestInstance` builds the store under the node's limits (memory cap, tables,
instances, the epoch deadline), links the ``reflow`` host functions (and WASI when granted),
binds the exports for the fast path (or wraps the public API), keeps a view over linear memory,
arms deadlines (``set_deadline``, ``give_back``, the batch deadline callback ``_on_deadline``)
and translates every wasmtime failure into the :class:`~reflow.SandboxError` tree
(``translate``): this is the one boundary where wasmtime errors become ours. The tables of the
guest ABI's exports and imports (abi/ABI.md) live here too, for the module check to use.
"""

from __future__ import annotations

import contextlib
import ctypes
import re
import struct
import time
from collections.abc import Callable
from typing import Any

import wasmtime

from .._errors import (
    CapabilityError,
    GuestLimitError,
    GuestMemoryError,
    GuestOutputError,
    GuestTimeout,
    GuestTrap,
    SandboxError,
)
from . import _wasm_fastcall as fastcall
from ._guest_host import (
    GuestGrants,
    GuestLimits,
    GuestNodeHost,
    GuestTemplate,
)

__all__ = ["EXPORTS", "IMPORTS", "OPTIONAL_EXPORTS"]

_I32 = wasmtime.ValType.i32()
_I64 = wasmtime.ValType.i64()

#: Exports every guest must have: name -> (params, results).
EXPORTS: dict[str, tuple[list[str], list[str]]] = {
    "reflow_abi_version": ([], ["i32"]),
    "reflow_alloc": (["i32"], ["i32"]),
    "reflow_describe": ([], ["i64"]),
    "reflow_open": (["i32", "i32"], ["i64"]),
    "reflow_tick": (["i32", "i32"], ["i64"]),
}
#: Exports a guest may have (ABI 1.1); used only from a guest that reports 1.1 or later.
OPTIONAL_EXPORTS: dict[str, tuple[list[str], list[str]]] = {
    "reflow_tick_batch": (["i32", "i32"], ["i64"]),
}
#: Imports a guest may use (module "reflow"): name -> (params, results).
IMPORTS: dict[str, tuple[list[str], list[str]]] = {
    "log": (["i32"] * 3, []),
    "emit": (["i32"] * 2, ["i32"]),
    "pool_upsert": (["i32"] * 6, ["i32"]),
    "pool_get": (["i32"] * 4, ["i32"]),
    "pool_remove": (["i32"] * 4, ["i32"]),
    "pool_count": (["i32"] * 2, ["i32"]),
    "pool_clear": (["i32"] * 2, ["i32"]),
    "http_request": (["i32"] * 2, ["i32"]),
    "result_read": (["i32"] * 2, ["i32"]),
}

_PAGE = 65536
_monotonic = time.monotonic
_batch_done = struct.Struct("<I").unpack_from
_MASK32 = 0xFFFFFFFF


def _valtypes(names: list[str]) -> list[wasmtime.ValType]:
    return [_I32 if n == "i32" else _I64 for n in names]


def _type_names(types: Any) -> list[str]:
    return [str(t) for t in types]


#: A frame of a wasm backtrace ("  0:   0xb8 - <unknown>!<wasm function 4>") or its notes.
_BACKTRACE_LINE = re.compile(
    r"^\s*(\d+:\s+(0x[0-9a-f]+ - |<unknown>)|note: |error while executing at wasm backtrace"
    r"|wasm backtrace:)"
)


def _cause_text(exc: BaseException) -> str:
    """What went wrong in a wasmtime error, without its backtrace: the "Caused by:" chain
    (every link, joined by "; ") or else the lines that are not backtrace, so the cause is
    never cut off ("wasm trap: integer divide by zero", "GC heap out of memory"). At most
    500 characters."""
    text = str(exc).strip()
    head, sep, tail = text.partition("Caused by:")
    lines = [ln.strip() for ln in (tail if sep else head).splitlines() if ln.strip()]
    if sep:
        lines = [re.sub(r"^\d+:\s*", "", ln) for ln in lines]
    lines = [ln for ln in lines if not _BACKTRACE_LINE.match(ln)]
    cause = "; ".join(lines)
    if not cause:
        return type(exc).__name__
    return cause if len(cause) <= 500 else cause[:497] + "..."


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _GuestInstance:
    """One store + instance, and the ways to call into it (fast path or public API)."""

    def __init__(
        self,
        module: Any,  # a WasmModule (whose module imports this one)
        template: GuestTemplate | None,
        limits: GuestLimits,
        grants: GuestGrants,
        node: str,
    ) -> None:
        eng = module.engine
        eng._ensure_ticker()
        self.module = module
        self.limits = limits
        self.ticks = eng.deadline_ticks(limits.tick_ms)
        #: Host wait not yet given back, in epochs (below one: the deadline moves in whole
        #: epochs, and rounding up would let a guest gain time by waiting often and briefly).
        self.credit = 0.0
        #: Set when the deadline callback stopped the guest (read by :meth:`translate`).
        self.timed_out = False
        #: While a batch runs (fast path): a reader of its progress counter, its tick count,
        #: the tick whose budget is running and when that budget started, and how many epochs
        #: apart the deadline callback looks (see :meth:`_on_deadline`).
        self.batch_progress: Callable[[], int] | None = None
        self.batch_count = 0
        self.batch_at = 0
        self.batch_start = 0.0
        self.batch_poll = max(1, self.ticks // 4)
        #: (view, input pointer, reader of the batch frame's progress counter there).
        self.progress_reader: tuple[Any, int, Callable[[], int]] | None = None
        tmpl = template or GuestTemplate(id=module.name, inports=(), outports=())
        self.host = GuestNodeHost(node, tmpl, limits, grants)
        self.out_limit = limits.output_bytes
        self.store = wasmtime.Store(eng.engine)
        self.store.set_limits(
            memory_size=limits.memory_bytes,
            table_elements=limits.table_elements,
            instances=limits.instances,
            tables=limits.tables,
            memories=limits.memories,
        )
        self.fast = eng.fast_path
        self.fp = fastcall.FastPath(self.store) if self.fast else None
        self.engine = eng
        #: When the deadline was armed (time.monotonic), with how many epochs, and from when
        #: it must be armed again (``epoch_s`` later: until then it still stands).
        self.armed_at = 0.0
        self.armed_ticks = 0
        self.rearm_at = 0.0
        # With a fixed reservation that covers the cap, memory.grow never moves the memory.
        self.stable = (
            eng.memory_reservation is not None and limits.memory_bytes <= eng.memory_reservation
        )
        if eng.memory_reservation is not None and not self.stable:
            raise SandboxError(
                f"memory cap {limits.memory_bytes} bytes is larger than the engine's memory "
                f"reservation ({eng.memory_reservation} bytes); raise "
                f"WasmEngine(memory_reservation=...) or lower the cap"
            )
        self.memory: wasmtime.Memory | None = None
        self.view: memoryview | None = None
        self.base = 0
        self.size = 0
        self.in_ptr = 0
        self.in_cap = 0
        self.closed = False
        imports = [self._host_func(name) for name in module.imports]
        if module.wasi_imports and template is not None and not grants.wasi:
            shown = ", ".join(module.wasi_imports[:5])
            raise self.host.tag(
                CapabilityError(
                    f"node {node!r} ({tmpl.id}): module {module.name!r} imports WASI "
                    f"({shown}) but the node was not granted the 'wasi' capability",
                    capability="wasi",
                )
            )
        self.set_deadline(self.ticks)
        try:
            if module.wasi_imports:
                instance = self._instantiate_with_wasi(imports)
            else:
                instance = wasmtime.Instance(self.store, module.module, imports)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            raise (
                _store_limit_error(exc, self.host, limits) or self.translate(exc, "instantiation")
            ) from exc
        exports = instance.exports(self.store)
        init = exports.get("_initialize")
        if isinstance(init, wasmtime.Func):  # a WASI reactor's constructors
            try:
                init(self.store)
            except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
                raise self.translate(exc, "_initialize") from exc
        mem = exports["memory"]
        assert isinstance(mem, wasmtime.Memory)
        self.memory = mem
        funcs = {name: exports[name] for name in EXPORTS}
        self.host.on_resume = self.give_back
        if self.fp is not None:
            self.fp.on_deadline(self._on_deadline)
            self.fp.bind_memory(mem)
            self.callers: dict[str, Callable[..., tuple[int, Any]]] = {
                name: self.fp.make_caller(f, max(len(EXPORTS[name][0]), 1))  # type: ignore[arg-type]
                for name, f in funcs.items()
            }
        else:
            self.callers = {name: self._public_caller(f) for name, f in funcs.items()}  # type: ignore[arg-type]
        self.tick_call = self.callers["reflow_tick"]
        #: The fast path's reflow_tick, bound for calling inline from :meth:`tick`.
        self.tick_bound = (
            self.fp.bind(funcs["reflow_tick"], 2) if self.fp is not None else None  # type: ignore[arg-type]
        )
        #: Whether a host function can run during a tick at all (else the tick skips the
        #: host's per-tick bookkeeping).
        self.host_calls = bool(module.imports or module.wasi_imports)
        self.refresh()
        #: reflow_tick_batch, bound like reflow_tick. Batches need the fast path and a view
        #: over linear memory (the public-API fallback runs one tick per call).
        self.batch_bound = None
        if module.batch and self.fp is not None and self.view is not None:
            self.batch_bound = self.fp.bind(exports["reflow_tick_batch"], 2)

    def _instantiate_with_wasi(self, imports: list[wasmtime.Func]) -> wasmtime.Instance:
        """Instantiate with an empty WASI context (no preopens, env or args); stdio is
        routed to the node's logger."""
        host = self.host
        wasi = wasmtime.WasiConfig()
        wasi.stdout_custom = lambda data: host.host_stdio("stdout", data)
        wasi.stderr_custom = lambda data: host.host_stdio("stderr", data)
        self.store.set_wasi(wasi)
        linker = wasmtime.Linker(self.module.engine.engine)
        linker.define_wasi()
        for name, func in zip(self.module.imports, imports, strict=True):
            linker.define(self.store, "reflow", name, func)
        return linker.instantiate(self.store, self.module.module)

    # -- plumbing ------------------------------------------------------------------------------
    def set_deadline(self, ticks: int) -> None:
        # Armed at least once an epoch while ticks run: cheap enough to see a fork here.
        self.engine._ticker.restart_if_forked()
        now = time.monotonic()
        self.armed_at = now
        self.rearm_at = now + self.engine.epoch_s
        self.armed_ticks = ticks
        if self.fp is not None:
            self.fp.set_deadline(ticks)
        else:
            self.store.set_epoch_deadline(ticks)

    def give_back(self, seconds: float) -> None:
        """A host call kept the guest waiting ``seconds`` (room on a full edge, an HTTP
        server): move the armed deadline later by that much and no more. The guest's own
        time, host work done for it included, still counts: a host call never re-arms the
        full limit (ABI.md, "Time limits")."""
        if self.batch_progress is not None:  # the running batch tick's budget starts later
            self.batch_start += seconds
            return
        eng = self.engine
        self.credit += seconds * 1000.0 / eng.epoch_ms
        whole = int(self.credit)
        if whole <= 0:
            return
        self.credit -= whole
        remaining = self.armed_ticks - int((time.monotonic() - self.armed_at) / eng.epoch_s)
        self.set_deadline(max(1, remaining + whole))

    def _on_deadline(self) -> int:
        """The fast path's epoch-deadline callback: the epochs the guest may run on, 0 to
        stop it. Outside a batch the deadline is the tick's limit: stop. In a batch each
        tick has a budget of its own (``tick_ms``): the callback comes every
        ``batch_poll`` epochs (a quarter of the limit), reads the guest's progress counter
        and starts a new budget when it has moved on to a later tick of the batch; a tick
        still running after ``tick_ms`` is stopped. A tick is timed from the first look that
        saw it, so it may overrun by one look (a quarter of the limit) at most; the counter
        is the guest's to write, but it only starts a budget by moving forward to a tick of
        the batch, so ``m`` ticks get at most ``m`` budgets."""
        progress = self.batch_progress
        if progress is None:
            self.timed_out = True
            return 0
        now = time.monotonic()
        try:
            at = int(progress())
        except Exception:  # never into wasmtime
            at = -1
        if self.batch_at < at < self.batch_count:
            self.batch_at = at
            self.batch_start = now
        elif now - self.batch_start >= self.limits.tick_ms / 1000.0:
            self.timed_out = True
            return 0
        self.armed_ticks = -1  # the next call arms its own deadline
        return self.batch_poll

    def refresh(self) -> None:
        old = self.size
        if self.fp is not None:
            self.base, self.size = self.fp.memory_data()
        else:
            assert self.memory is not None
            self.size = self.memory.data_len(self.store)
            self.base = ctypes.cast(self.memory.data_ptr(self.store), ctypes.c_void_p).value or 0
        if self.stable and (self.view is None or self.size != old):
            # A view over linear memory: slicing it is ~4x cheaper than a ctypes call. Valid
            # because the memory never moves and never shrinks; dropped before the store.
            self.view = memoryview((ctypes.c_ubyte * self.size).from_address(self.base)).cast("B")

    def _public_caller(self, func: wasmtime.Func) -> Callable[..., tuple[int, Any]]:
        store = self.store

        def invoke(*params: int) -> tuple[int, Any]:
            try:
                return int(func(store, *params)), None
            except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
                return 0, exc

        return invoke

    def _host_func(self, name: str) -> wasmtime.Func:
        params, results = IMPORTS[name]
        ty = wasmtime.FuncType(_valtypes(params), _valtypes(results))
        impl = self._impl(name)
        nargs = len(params)
        has_result = bool(results)
        host = self.host

        if self.fp is not None:
            memory_at = fastcall.FastPath.memory_at
            make_trap = fastcall.make_trap
            i32 = ctypes.c_int32

            def callback(cctx: int, args: int) -> int:
                try:
                    assert self.memory is not None
                    base, size = memory_at(cctx, self.memory)
                    vals = [i32.from_address(args + 16 * i).value for i in range(nargs)]
                    r = impl(base, size, *vals)
                    if has_result:
                        i32.from_address(args).value = int(r)
                    return 0
                except BaseException as exc:  # never let it cross into the guest
                    host.pending = exc
                    return make_trap(f"host function reflow.{name} failed: {exc}")

            return self.fp.new_host_func(ty, callback)

        def public(caller: wasmtime.Caller, *vals: int) -> Any:
            try:
                assert self.memory is not None
                size = self.memory.data_len(caller)
                base = ctypes.cast(self.memory.data_ptr(caller), ctypes.c_void_p).value or 0
                r = impl(base, size, *vals)
                return int(r) if has_result else None
            except BaseException as exc:
                host.pending = exc
                raise

        return wasmtime.Func(self.store, ty, public, access_caller=True)

    def _impl(self, name: str) -> Callable[..., Any]:
        host = self.host

        def read(base: int, size: int, ptr: int, n: int) -> bytes:
            ptr &= _MASK32
            n &= _MASK32
            if ptr + n > size:
                raise host.tag(
                    GuestOutputError(
                        f"guest passed the slice [{ptr}, {ptr + n}) to reflow.{name}, outside "
                        f"its linear memory ({size} bytes)"
                    )
                )
            return ctypes.string_at(base + ptr, n)

        if name == "log":
            return lambda b, s, lvl, p, n: host.host_log(lvl, read(b, s, p, n))
        if name == "emit":
            return lambda b, s, p, n: host.host_emit(read(b, s, p, n))
        if name == "pool_upsert":
            return lambda b, s, pp, pn, ip, in_, mp, mn: host.host_pool_upsert(
                read(b, s, pp, pn), read(b, s, ip, in_), read(b, s, mp, mn)
            )
        if name == "pool_get":
            return lambda b, s, pp, pn, ip, in_: host.host_pool_get(
                read(b, s, pp, pn), read(b, s, ip, in_)
            )
        if name == "pool_remove":
            return lambda b, s, pp, pn, ip, in_: host.host_pool_remove(
                read(b, s, pp, pn), read(b, s, ip, in_)
            )
        if name == "pool_count":
            return lambda b, s, pp, pn: host.host_pool_count(read(b, s, pp, pn))
        if name == "pool_clear":
            return lambda b, s, pp, pn: host.host_pool_clear(read(b, s, pp, pn))
        if name == "http_request":
            return lambda b, s, p, n: host.host_http_request(read(b, s, p, n))
        if name == "result_read":

            def result_read(base: int, size: int, ptr: int, cap: int) -> int:
                data = host.host_result_read(cap & _MASK32)
                ptr &= _MASK32
                if ptr + len(data) > size:
                    raise host.tag(
                        GuestOutputError(
                            f"guest asked reflow.result_read to write [{ptr}, "
                            f"{ptr + len(data)}), outside its linear memory ({size} bytes)"
                        )
                    )
                ctypes.memmove(base + ptr, data, len(data))
                return len(data)

            return result_read
        raise AssertionError(name)  # pragma: no cover - IMPORTS and this table agree

    # -- calls -----------------------------------------------------------------------------
    def translate(
        self, exc: BaseException, what: str, limit_ms: float | None = None
    ) -> BaseException:
        host = self.host
        pending, host.pending = host.pending, None
        if pending is not None:
            return host.tag(pending) if isinstance(pending, SandboxError) else pending
        timed_out, self.timed_out = self.timed_out, False
        who = f"node {host.node!r} ({host.component})"
        code_name = None
        if isinstance(exc, wasmtime.Trap):
            code = exc.trap_code
            code_name = code.name if code is not None else None
        if timed_out or code_name == "INTERRUPT":
            limit = self.limits.tick_ms if limit_ms is None else limit_ms
            return host.tag(
                GuestTimeout(
                    f"{who}: {what} ran past its time limit of {limit:g} ms and was interrupted",
                    limit_ms=limit,
                )
            )
        if isinstance(exc, wasmtime.ExitTrap):
            return host.tag(
                GuestTrap(
                    f"{who}: the guest called WASI proc_exit with status "
                    f"{getattr(exc, 'code', '?')} in {what}; a guest must return a result "
                    f"frame, not exit",
                    trap_code="PROC_EXIT",
                )
            )
        if isinstance(exc, wasmtime.Trap):
            text = _cause_text(exc)
            if code_name == "STACK_OVERFLOW":
                return host.tag(
                    GuestTrap(
                        f"{who}: stack overflow in {what} (call stack exhausted)",
                        trap_code=code_name,
                    )
                )
            with contextlib.suppress(Exception):
                self.refresh()
            if self.size + _PAGE > self.limits.memory_bytes and code_name in (
                "UNREACHABLE",
                "MEMORY_OUT_OF_BOUNDS",
            ):
                return host.tag(
                    GuestMemoryError(
                        f"{who}: trapped ({text}) in {what} with its linear memory at the cap "
                        f"of {self.limits.memory_bytes} bytes: the guest ran out of memory",
                        limit=self.limits.memory_bytes,
                    )
                )
            return host.tag(
                GuestTrap(f"{who}: guest trapped in {what}: {text}", trap_code=code_name)
            )
        text = _cause_text(exc)
        if "GC heap" in text and ("out of memory" in text or "exhausted" in text):
            return host.tag(
                GuestMemoryError(
                    f"{who}: {what} exhausted the guest's GC heap ({text})",
                    limit=self.limits.memory_bytes,
                )
            )
        if "memory minimum size" in str(exc) or "exceeds memory limits" in str(exc):
            return host.tag(
                GuestMemoryError(
                    f"{who}: {what} needs more linear memory than the cap of "
                    f"{self.limits.memory_bytes} bytes ({text})",
                    limit=self.limits.memory_bytes,
                )
            )
        return host.tag(SandboxError(f"{who}: wasmtime failed in {what}: {text}"))

    def call_i32(self, export: str, *args: int) -> int:
        self.set_deadline(self.ticks)
        raw, err = self.callers[export](*args)
        self.refresh()
        if err is not None:
            raise self.translate(err, export)
        raw &= _MASK32
        return raw - (1 << 32) if raw & 0x80000000 else raw

    def read_slice(self, raw: int, what: str, count: bool = False) -> bytes:
        ptr = raw & _MASK32
        n = (raw >> 32) & _MASK32
        if count:  # before copying: a hostile length must not make the host allocate it
            self.host.count_output(n)
        if ptr + n > self.size:
            raise self.host.tag(
                GuestOutputError(
                    f"{what} returned the slice [{ptr}, {ptr + n}), outside the guest's linear "
                    f"memory ({self.size} bytes)"
                )
            )
        return ctypes.string_at(self.base + ptr, n)

    def call_slice(self, export: str) -> bytes:
        self.set_deadline(self.ticks)
        raw, err = self.callers[export]()
        self.refresh()
        if err is not None:
            raise self.translate(err, export)
        return self.read_slice(raw, export)

    def write_input(self, frame: bytes) -> int:
        """Put ``frame`` in the guest's input buffer (growing it with reflow_alloc)."""
        n = len(frame)
        if n > self.in_cap:
            # Ask for headroom so frames that grow a little do not call reflow_alloc each tick.
            want = max(n, 1024, min(2 * self.in_cap, n + (1 << 20)))
            ptr = self.call_i32("reflow_alloc", want) & _MASK32
            if ptr == 0 and want > n:
                want = n
                ptr = self.call_i32("reflow_alloc", n) & _MASK32
            if ptr == 0:
                raise self.host.tag(
                    GuestMemoryError(
                        f"node {self.host.node!r}: reflow_alloc({n}) returned 0 — the guest "
                        f"could not allocate its input buffer (memory cap "
                        f"{self.limits.memory_bytes} bytes)",
                        limit=self.limits.memory_bytes,
                    )
                )
            if ptr + want > self.size:
                raise self.host.tag(
                    GuestOutputError(
                        f"reflow_alloc({want}) returned the buffer [{ptr}, {ptr + want}), outside "
                        f"the guest's linear memory ({self.size} bytes)"
                    )
                )
            self.in_ptr, self.in_cap = ptr, want
        ctypes.memmove(self.base + self.in_ptr, frame, n)
        return n

    def call_frame(self, export: str, frame: bytes, count: bool = False) -> bytes:
        n = self.write_input(frame)
        self.set_deadline(self.ticks)
        raw, err = self.callers[export](self.in_ptr, n)
        self.refresh()
        if err is not None:
            raise self.translate(err, export)
        if self.host.pending is not None:
            pending, self.host.pending = self.host.pending, None
            raise pending
        return self.read_slice(raw, export, count)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.view is not None:
            self.view.release()
            self.view = None
        self.callers = {}
        self.fp = None
        self.memory = None
        self.store.close()


#: wasmtime's words for a store limit hit at instantiation -> the GuestLimits field.
_STORE_LIMITS = (
    (re.compile(r"table minimum size of (\d+) elements exceeds table limits"), "table_elements"),
    (re.compile(r"table count too high at (\d+)"), "tables"),
    (re.compile(r"memory count too high at (\d+)"), "memories"),
    (re.compile(r"instance count too high at (\d+)"), "instances"),
)


def _store_limit_error(
    exc: BaseException, host: GuestNodeHost, limits: GuestLimits
) -> GuestLimitError | None:
    """The GuestLimitError for an instantiation that a store limit refused, else None."""
    text = str(exc)
    for pattern, field in _STORE_LIMITS:
        m = pattern.search(text)
        if m is not None:
            limit = getattr(limits, field)
            err = GuestLimitError(
                f"node {host.node!r} ({host.component}): the module needs {m.group(1)} "
                f"{field.replace('_', ' ')} but GuestLimits.{field}={limit}",
                resource=field,
                value=int(m.group(1)),
                limit=limit,
            )
            host.tag(err)
            return err
    return None
