"""The extism engine: Extism plugins as sandboxed actors.

Any module built with an Extism PDK runs here, in one of two ways:

* **Reflow-SDK plugins** (the original Reflow WASM SDK, or anything speaking its protocol)
  export ``get_metadata`` and ``process``. ``get_metadata`` returns the template —
  ``{"component", "description", "inports", "outports", "await_all_inports"?,
  "config_schema"?}``, ports as names or ``{"name": ...}`` objects. Each tick calls
  ``process`` with the JSON context ``{"payload": {port: message}, "config": {"node_id",
  "component", "resolved_env", "config", "namespace"}, "state": ...}`` and expects
  ``{"outputs": {port: message}, "state": ...}`` back; a non-null ``state`` replaces the node's
  state for the next tick. The SDK's host functions ``__send_output`` / ``__get_state`` /
  ``__set_state`` (namespace ``extism:host/user``) are provided, each bound with the
  signature the module imports (the Go SDK's, or the earlier Rust SDK's with i64 results;
  see :func:`bind_imports`). As in the original host, outputs on ports the metadata does not
  declare do not fail the tick (:meth:`_ExtismHost.declared`). The state outlives ticks, so
  it is held to the pool limits (``GuestLimits.pool_entries`` / ``pool_bytes`` /
  ``pool_key_bytes`` / ``pool_value_bytes``), whether set key by key or handed back whole.
* **Plain Extism functions**: :meth:`ExtismModule.function_actor` wraps one export as a
  one-in/one-out actor — bytes or text in, text / bytes / JSON / a message out.

Every node gets its own plugin instance (``open_node``), compiled on its own wasmtime engine
(wasmtime's cache under ``$REFLOW_CACHE_DIR/extism`` makes that a load after the first), with
the limits of :class:`~reflow.GuestLimits` and only what
:class:`~reflow.GuestGrants` grants: linear memory capped through the manifest's
``memory.max_pages``, a tick deadline kept by one watchdog thread (see :class:`_Call`: the
guest's own time, host calls included, except waiting for room downstream; it cancels through
the node's own engine, so no other node is interrupted), WASI only with the ``wasi`` grant,
and HTTP only to the granted hosts: the kernel's ``http_request`` is replaced by one that
checks the grant (``host`` or ``host:port``, ``*`` for any) and raises
:class:`~reflow.CapabilityError` naming the host, then fetches through httpx within the
tick's remaining time and the grant's response cap (the manifest's ``allowed_hosts`` carries
the same hosts as a second fence). Ticks run on the worker pool (``execution = "worker"``);
the extism call releases the GIL.

Errors from extism are translated here, in :func:`_translate`, into the
:class:`~reflow.SandboxError` tree. An error the guest reports itself (``error_set`` and a
non-zero return — a PDK function returning ``Err``) fails the tick with the guest's message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .._core._actor import Actor
from .._core._messages import Message
from .._errors import (
    CapabilityError,
    GuestABIError,
    GuestMemoryError,
    GuestOutputError,
    GuestTimeout,
    GuestTrap,
    MessageError,
    ReflowError,
    SandboxError,
)
from .._jsonread import loads
from ._guest_host import (
    GuestActor,
    GuestGrants,
    GuestLimits,
    GuestNodeActor,
    GuestNodeHost,
    GuestTemplate,
    pick_template,
)

if TYPE_CHECKING:
    import extism
    from extism.extism import CompiledPlugin

    from ..abi._manifest import Artifact, PackManifest, TemplateSpec

__all__ = [
    "ExtismActor",
    "ExtismModule",
    "ExtismNodeActor",
    "load_extism_artifact",
]

log = logging.getLogger("reflow.extism")
_PAGE = 65536
#: How a function actor turns the export's output into a message.
OUTPUT_MODES = ("string", "bytes", "json", "message")
_USER = "extism:host/user"
_KERNEL = "extism:host/env"
#: The stages before any guest code runs: a failure there is never the guest's own report.
_LOADING = ("compilation", "instantiation")


# -- what the module imports (read from its bytes, before extism sees it) ----------------------

_VALTYPES = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64", 0x7B: "v128",
             0x70: "funcref", 0x6F: "externref"}
_KINDS = {0: "function", 1: "table", 2: "memory", 3: "global", 4: "tag"}
Signature = tuple[tuple[str, ...], tuple[str, ...]]


class _Malformed(Exception):
    """A structural error in the module bytes (offset, what)."""


class _Unsupported(Exception):
    """An encoding this reader does not know (a newer proposal): extism decides."""


class _Reader:
    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise _Malformed(f"unexpected end at offset {self.pos}")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def uleb(self, bits: int = 32) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result
            if shift >= bits + 7:
                raise _Malformed(f"integer too long at offset {self.pos}")

    def name(self) -> str:
        n = self.uleb()
        if n > self.end - self.pos:
            raise _Malformed(f"a name of {n} bytes at offset {self.pos} runs past its section")
        raw = self.data[self.pos:self.pos + n]
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Malformed(f"a name at offset {self.pos - n} is not UTF-8") from exc

    def count(self, min_size: int = 1) -> int:
        n = self.uleb()
        if n * min_size > self.end - self.pos:  # every entry takes at least min_size bytes
            raise _Malformed(f"a count of {n} at offset {self.pos} exceeds its section")
        return n

    def valtype(self) -> str:
        b = self.byte()
        if b in _VALTYPES:
            return _VALTYPES[b]
        raise _Unsupported(f"value type 0x{b:02x}")

    def limits(self) -> None:
        flags = self.byte()
        if flags > 0x07:
            raise _Unsupported(f"limits flags 0x{flags:02x}")
        self.uleb(64)
        if flags & 1:
            self.uleb(64)


class WasmInfo:
    """The parts of a core WebAssembly module the extism engine checks before compiling it:
    its imports (with function signatures where the type section is one this reader knows)
    and where each function body lies (to name a trap's instruction)."""

    def __init__(self, imports: list[tuple[str, str, str, Signature | None]],
                 func_imports: int, bodies: list[tuple[int, int]]) -> None:
        self.imports = imports
        self.func_imports = func_imports
        self.bodies = bodies


def read_wasm(wasm: bytes, where: str) -> WasmInfo:
    """Check that ``wasm`` is a core WebAssembly module and read its imports; a
    GuestABIError naming ``where`` and what was expected otherwise (bounded: one pass)."""
    expected = "expected a WebAssembly core module (a .wasm file starting with \\0asm, version 1)"
    if not wasm:
        raise GuestABIError(f"{where} is empty; {expected}")
    if wasm[:4] != b"\0asm":
        raise GuestABIError(f"{where} is not WebAssembly: it starts with {bytes(wasm[:8])!r}; "
                            f"{expected}")
    if len(wasm) < 8:
        raise GuestABIError(f"{where} is truncated: {len(wasm)} bytes, shorter than the "
                            f"8-byte header; {expected}")
    version = int.from_bytes(wasm[4:8], "little")
    if version != 1:
        kind = "a WebAssembly component" if wasm[6:8] == b"\x01\x00" else "an unknown version"
        raise GuestABIError(f"{where} is {kind} (version bytes {bytes(wasm[4:8]).hex()}), not a "
                            f"core module; {expected}")
    types: list[Signature | None] | None = []
    imports: list[tuple[str, str, str, Signature | None]] = []
    func_imports = 0
    bodies: list[tuple[int, int]] = []
    top = _Reader(wasm, 8, len(wasm))
    try:
        while top.pos < top.end:
            sid, start = top.byte(), top.pos
            if sid > 13:
                raise _Malformed(f"unknown section id {sid} at offset {start - 1}")
            size = top.uleb()
            if size > top.end - top.pos:
                raise _Malformed(f"section {sid} at offset {start - 1} declares {size} bytes "
                                 f"but only {top.end - top.pos} remain (truncated?)")
            sec = _Reader(wasm, top.pos, top.pos + size)
            top.pos += size
            try:
                if sid == 1:
                    types = _read_types(sec)
                elif sid == 2:
                    func_imports = _read_imports(sec, types, imports)
                elif sid == 10:
                    for _ in range(sec.count()):
                        n = sec.uleb()
                        if n > sec.end - sec.pos:
                            raise _Malformed(f"a function body at offset {sec.pos} runs past "
                                             "the code section")
                        bodies.append((sec.pos, sec.pos + n))
                        sec.pos += n
            except _Unsupported:
                if sid == 1:
                    types = None  # signatures unknown: extism checks them at link time
                # an import or body this reader cannot decode: extism has the last word
    except _Malformed as exc:
        raise GuestABIError(f"{where} is not a valid WebAssembly module: {exc}; {expected}") \
            from None
    return WasmInfo(imports, func_imports, bodies)


def _read_types(sec: _Reader) -> list[Signature | None]:
    types: list[Signature | None] = []
    for _ in range(sec.count()):
        form = sec.byte()
        if form != 0x60:
            raise _Unsupported(f"type form 0x{form:02x}")  # rec/sub/struct/array (GC)
        params = tuple(sec.valtype() for _ in range(sec.count()))
        results = tuple(sec.valtype() for _ in range(sec.count()))
        types.append((params, results))
    return types


def _read_imports(sec: _Reader, types: list[Signature | None] | None,
                  out: list[tuple[str, str, str, Signature | None]]) -> int:
    funcs = 0
    for _ in range(sec.count(3)):
        module, name = sec.name(), sec.name()
        kind = sec.byte()
        sig: Signature | None = None
        if kind == 0:
            idx = sec.uleb()
            funcs += 1
            if types is not None:
                if idx >= len(types):
                    raise _Malformed(f"import {module}.{name} names type {idx}, but the module "
                                     f"has {len(types)}")
                sig = types[idx]
        elif kind == 1:
            sec.valtype()
            sec.limits()
        elif kind == 2:
            sec.limits()
        elif kind == 3:
            sec.valtype()
            sec.byte()
        elif kind == 4:
            sec.byte()
            sec.uleb()
        else:
            raise _Malformed(f"import {module}.{name} has unknown kind 0x{kind:02x}")
        out.append((module, name, _KINDS[kind], sig))
    return funcs


def _show(sig: Signature | None) -> str:
    if sig is None:
        return "(unknown)"
    params, results = sig
    return f"({', '.join(params)}) -> ({', '.join(results)})"


#: The host functions a plugin may import from the Reflow SDK namespace: every signature
#: generation the original SDKs produced (extism-pdk's ``#[host_fn]`` before 1.0 gave
#: every import an i64 result; the Go SDK and later Rust SDKs have none where nothing is
#: returned). The one bound is the one the module imports.
_USER_SIGNATURES: dict[str, tuple[Signature, ...]] = {
    "__send_output": ((("i64",), ()), (("i64",), ("i64",))),
    "__get_state": ((("i64",), ("i64",)),),
    "__set_state": ((("i64", "i64"), ()), (("i64", "i64"), ("i64",))),
}
#: Kernel functions this host replaces (HTTP goes through the node's grants).
_KERNEL_OVERRIDES: dict[str, Signature] = {
    "http_request": (("i64", "i64"), ("i64",)),
    "http_status_code": ((), ("i32",)),
    "http_headers": ((), ("i64",)),
}
_WASI = ("wasi_snapshot_preview1", "wasi_unstable")


def bind_imports(info: WasmInfo, where: str) -> list[tuple[str, str, Signature]]:
    """The host functions to link for a module with these imports, each with the signature
    the module imports; GuestABIError naming the import that is missing or mistyped."""
    provided = ", ".join(f"{_USER}.{n}" for n in _USER_SIGNATURES)
    bound: dict[tuple[str, str], Signature] = {
        (_KERNEL, n): sig for n, sig in _KERNEL_OVERRIDES.items()
    }
    for module, name, kind, sig in info.imports:
        label = f"{module}.{name}"
        if kind != "function":
            raise GuestABIError(f"{where} imports the {kind} {label}; an Extism plugin may "
                                "import only functions (its memory is its own)")
        if module == _USER:
            accepted = _USER_SIGNATURES.get(name)
            if accepted is None:
                raise GuestABIError(
                    f"{where} imports {label}, which this host does not provide; it provides "
                    f"{provided}"
                )
            if sig is not None and sig not in accepted:
                raise GuestABIError(
                    f"{where} imports {label} with signature {_show(sig)}; expected "
                    + " or ".join(_show(s) for s in accepted)
                )
            bound[(module, name)] = sig or accepted[0]
        elif module == _KERNEL:
            want = _KERNEL_OVERRIDES.get(name)
            if want is not None and sig is not None and sig != want:
                raise GuestABIError(f"{where} imports {label} with signature {_show(sig)}; "
                                    f"expected {_show(want)}")
        elif module in _WASI:
            continue  # allowed with the 'wasi' grant (checked per instance)
        elif module == "env" and (name in _USER_SIGNATURES or name.startswith("extism_")):
            if name in _USER_SIGNATURES:
                hint = (f"the Reflow SDK's host functions are in {_USER} (expected "
                        f"{_USER}.{name} {_show(_USER_SIGNATURES[name][0])})")
            else:
                hint = ("that is the kernel of Extism before 1.0; rebuild the plugin with an "
                        f"Extism 1.x PDK (kernel imports in {_KERNEL})")
            raise GuestABIError(f"{where} imports {label}: {hint}")
        else:
            raise GuestABIError(
                f"{where} imports {label}, which the host does not provide; it provides the "
                f"Extism kernel ({_KERNEL}), WASI with the 'wasi' grant and {provided}"
            )
    return [(ns, name, sig) for (ns, name), sig in bound.items()]


def wasi_imports(info: WasmInfo) -> list[str]:
    return [f"{m}.{n}" for m, n, _k, _s in info.imports if m in _WASI]


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
                self._thread = threading.Thread(target=self._run, name="reflow-extism-watchdog",
                                                daemon=True)
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


# -- what a trap was (extism reports only the backtrace) --------------------------------------

#: opcode -> (wasmtime trap code, what it means), for instructions that can trap.
_TRAPS: dict[int, tuple[str | None, str]] = {0x00: ("UNREACHABLE", "wasm `unreachable` executed")}
for _op in (0x6D, 0x6E, 0x6F, 0x70, 0x7F, 0x80, 0x81, 0x82):
    _TRAPS[_op] = ("INTEGER_DIVISION_BY_ZERO", "integer divide by zero (or overflow)")
for _op in range(0x28, 0x3F):
    _TRAPS[_op] = ("MEMORY_OUT_OF_BOUNDS", "out-of-bounds memory access")
for _op in (0x11, 0x13):
    _TRAPS[_op] = ("BAD_SIGNATURE", "indirect call to a null, missing or mistyped table entry")
for _op in (0xA8, 0xA9, 0xAA, 0xAB, 0xAE, 0xAF, 0xB0, 0xB1):
    _TRAPS[_op] = ("BAD_CONVERSION_TO_INTEGER", "invalid float-to-integer conversion")
for _op in (0x25, 0x26):
    _TRAPS[_op] = ("TABLE_OUT_OF_BOUNDS", "out-of-bounds table access")
for _op in (0x10, 0x12):
    # a trap at a call that is not a stack overflow: the callee, an import, failed
    _TRAPS[_op] = (None, "a host or kernel function it called failed (extism "
                   "does not say why: e.g. a memory handle that is not a live block)")
_FRAME = re.compile(r"^\s*\d+:\s*(?:0x([0-9a-fA-F]+)\s*-\s*)?(.*)$")


def _describe_trap(text: str, wasm: bytes, info: WasmInfo | None) -> tuple[str | None, str]:
    """(trap code, a description) of the trap a backtrace ends in: the instruction at the
    innermost frame's offset when that offset lies in a function body of this module."""
    frames = [m for m in (_FRAME.match(line) for line in text.splitlines()[1:]) if m]
    if not frames:
        return None, text.splitlines()[0].strip() if text.strip() else "no backtrace"
    shown = "; ".join(f.group(0).strip() for f in frames[:3])
    more = f" (+{len(frames) - 3} frames)" if len(frames) > 3 else ""
    where = f"wasm backtrace: {shown}{more}"
    first = frames[0]
    if first.group(1) is None:
        # Wasmtime checks the stack in a function's prologue, before its first instruction:
        # the one trap whose innermost frame has no offset (an interrupt, the other one that
        # happens there, is reported as "timeout").
        return "STACK_OVERFLOW", f"call stack exhausted ({where})"
    offset = int(first.group(1), 16)
    if info is not None and any(a <= offset < b for a, b in info.bodies) and offset < len(wasm):
        op = wasm[offset]
        code, what = _TRAPS.get(op, (None, f"a trap at instruction 0x{op:02x}"))
        return code, f"{what} at offset 0x{offset:x} ({where})"
    return None, where


# -- the one boundary with extism ------------------------------------------------------------


class _GuestReported(Exception):
    """The guest failed the call itself (``error_set`` / a non-zero return code)."""


def _translate(exc: BaseException, what: str, host: GuestNodeHost,
               module: ExtismModule | str, *, input_size: int = 0) -> BaseException:
    """Map an ``extism.Error`` to the SandboxError tree (or to a guest-reported failure).

    Extism reports runtime failures as text only: ``timeout`` (an epoch interrupt: our
    watchdog's cancel), ``oom`` (the memory limiter), ``failed to allocate extism memory``
    (the input does not fit), ``Function not found``, a wasm backtrace for a trap (without its
    cause: :func:`_describe_trap` names it from the module's bytes), ``unknown import`` when
    linking. Anything else came from the guest (``error_set``) or is its bare return code
    (``Error code: N``).
    """
    text = str(exc.args[0] if exc.args else exc).strip()
    first = text.splitlines()[0].strip() if text else type(exc).__name__
    low = text.lower()
    name = module if isinstance(module, str) else module.name
    who = f"node {host.node!r} ({host.component})" if host.node else f"plugin {name!r}"
    limits = host.limits
    cap = f"{limits.memory_bytes} bytes ({limits.memory_bytes // _PAGE} pages)"
    if first == "timeout":
        return _timeout(host, what)
    if first == "oom" or "out of memory" in low or "memory limit" in low:
        return host.tag(
            GuestMemoryError(
                f"{who}: {what} needed more memory than the cap of {cap}: the guest's memory "
                f"grew past it and it ran out of memory (extism: {first})",
                limit=limits.memory_bytes,
            )
        )
    if "failed to allocate" in low or "allocate extism memory" in low:
        return host.tag(
            GuestMemoryError(
                f"{who}: the input of {what} ({input_size} bytes) does not fit in the guest's "
                f"memory cap of {cap}; raise memory_bytes or send smaller messages "
                f"(extism: {first})",
                limit=limits.memory_bytes,
            )
        )
    if first.startswith("Function not found"):
        return host.tag(GuestABIError(f"{who}: plugin {name!r} has no export {what!r}"))
    if "results, expected 0 or 1" in low or ("expected" in low and "arguments" in low):
        return host.tag(GuestABIError(
            f"{who}: export {what!r} of plugin {name!r} has the wrong signature: an "
            f"Extism function takes no parameters and returns nothing or an i32 ({first})"))
    if "unknown import" in low or "incompatible import" in low:
        kind = CapabilityError if "wasi" in low else GuestABIError
        detail = " ".join(line.strip() for line in text.splitlines() if line.strip())
        message = (f"{who}: plugin {name!r} cannot be linked: {detail}; the host "
                   f"provides the Extism kernel ({_KERNEL}), WASI with the 'wasi' grant and "
                   f"the Reflow SDK's {_USER} functions")
        if kind is CapabilityError:
            return host.tag(CapabilityError(message, capability="wasi"))
        return host.tag(GuestABIError(message))
    if "wasm backtrace" in low or "wasm trap" in low or "unreachable" in low:
        if isinstance(module, str):
            code, detail = _describe_trap(text, b"", None)
        else:
            code, detail = _describe_trap(text, module.wasm, module.info)
        return host.tag(GuestTrap(f"{who}: guest trapped in {what}: {detail}", trap_code=code))
    if what in _LOADING or first.startswith(("Unable to create", "Unable to compile")):
        detail = " ".join(line.strip() for line in text.splitlines() if line.strip())
        return host.tag(GuestABIError(f"{who}: not a valid Extism plugin: {detail}"))
    return _GuestReported(text)


def _timeout(host: GuestNodeHost, what: str) -> GuestTimeout:
    who = f"node {host.node!r} ({host.component})" if host.node else "the load-time probe"
    limit = host.limits.tick_ms
    exc = GuestTimeout(f"{who}: {what} ran past its time limit of {limit:g} ms and was "
                       "cancelled", limit_ms=limit)
    host.tag(exc)
    return exc


class _Instance:
    """One extism plugin instance and its host side (one per node, or a load-time probe).
    Each instance has its own compiled plugin, so its own wasmtime engine: the epoch
    interrupt that stops it at its deadline cannot reach any other node."""

    def __init__(self, module: ExtismModule, host: _ExtismHost, config: Mapping[str, Any]) -> None:
        self.module = module
        self.host = host
        sdk = _sdk()
        self.compiled = module._compile(host)
        try:
            self.plugin: extism.Plugin | None = sdk.extism.Plugin(
                self.compiled, config=_extism_config(config)
            )
        except sdk.extism.Error as exc:
            raise _translate(exc, "instantiation", host, module) from exc
        self.cancel = self.plugin.cancel_handle()

    def has(self, export: str) -> bool:
        assert self.plugin is not None
        return bool(self.plugin.function_exists(export))

    def call(self, export: str, data: bytes) -> bytes:
        """Call ``export``; the output (within the node's output cap), or raise."""
        plugin, host = self.plugin, self.host
        if plugin is None:
            raise host.tag(SandboxError(f"node {host.node!r} ({host.component}) is closed"))
        host.pending = None
        call = _watchdog.start(self.cancel, host.limits.tick_ms)
        host.call = call
        try:
            buf = plugin.call(export, data, parse=None, host_context=host)
        except _sdk().extism.Error as exc:
            _watchdog.finish(call)
            pending, host.pending = host.pending, None
            if pending is not None:  # a host function failed: that is the real cause
                raise pending from exc
            if call.fired:
                # Past the deadline the interrupt also fails what the guest or a host function
                # runs in the kernel (extism then reports that, not "timeout").
                raise _timeout(host, export) from exc
            raise _translate(exc, export, host, self.module, input_size=len(data)) from exc
        finally:
            _watchdog.finish(call)
            host.call = None
        pending, host.pending = host.pending, None
        if pending is not None:
            raise pending
        host.count_output(len(buf))  # before copying: a hostile length must not be copied
        return bytes(buf)

    def close(self) -> None:
        plugin, self.plugin = self.plugin, None
        if plugin is not None:
            plugin.__exit__(None, None, None)
        self.compiled = None


def _extism_config(config: Mapping[str, Any]) -> dict[str, str]:
    """Node config as Extism config (string values, read by the PDK's ``config::get``)."""
    return {
        str(k): v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
        for k, v in config.items()
    }


# -- host functions --------------------------------------------------------------------------


class _ExtismHost(GuestNodeHost):
    """What a node's host functions act on: the tick's ctx (from GuestNodeHost), the node's
    Reflow-SDK state and the status and headers of its last HTTP response."""

    __slots__ = ("call", "http_headers", "http_status", "passed_through", "state",
                 "state_bytes", "state_sizes")

    def __init__(self, node: str, template: GuestTemplate, limits: GuestLimits,
                 grants: GuestGrants) -> None:
        super().__init__(node, template, limits, grants)
        self.state: Any = {}
        #: Bytes of each state key (its UTF-8 and its JSON value): the state outlives ticks,
        #: so it is held to the pool limits (GuestLimits.pool_*), like a wasm guest's pools.
        self.state_sizes: dict[str, int] = {}
        self.state_bytes = 0
        self.http_status = 0
        self.http_headers: dict[str, str] = {}
        self.call: _Call | None = None
        #: Messages on out-ports the plugin's metadata does not declare, by port.
        self.passed_through: dict[str, int] = {}

    def put_state(self, key: str, value: Any, size: int, what: str) -> None:
        """Set one state key, held to GuestLimits.pool_entries and pool_bytes."""
        lim = self.limits
        sizes = self.state_sizes
        old = sizes.get(key)
        if old is None and len(sizes) + 1 > lim.pool_entries:
            raise self._limit("pool_entries", len(sizes) + 1, lim.pool_entries,
                              f"{what}: keys in the node's state")
        total = self.state_bytes - (old or 0) + size
        if total > lim.pool_bytes:
            raise self._limit("pool_bytes", total, lim.pool_bytes,
                              f"{what}: bytes in the node's state")
        sizes[key] = size
        self.state_bytes = total
        self.state[key] = value

    def replace_state(self, state: Any) -> None:
        """The state a process result hands back (already bounded by output_bytes), held to
        the same limits as state set key by key."""
        sizes: dict[str, int] = {}
        if isinstance(state, dict):
            for k, v in state.items():
                sizes[str(k)] = len(str(k).encode("utf-8", "surrogatepass")) + len(
                    json.dumps(v, separators=(",", ":")))
        total = sum(sizes.values()) if sizes else len(json.dumps(state))
        lim = self.limits
        if len(sizes) > lim.pool_entries:
            raise self._limit("pool_entries", len(sizes), lim.pool_entries,
                              "process: keys in the returned state")
        if total > lim.pool_bytes:
            raise self._limit("pool_bytes", total, lim.pool_bytes,
                              "process: bytes in the returned state")
        self.state, self.state_sizes, self.state_bytes = state, sizes, total

    def declared(self, outputs: list[tuple[str, Message]]) -> list[tuple[str, Message]]:
        """The outputs on declared out-ports. The original Reflow host passes every port a
        plugin names through to the network, where a port nothing is connected to goes
        nowhere; undeclared ports cannot be connected here, so their messages are counted
        (``passed_through``) and dropped instead of failing the tick and losing the rest."""
        ports = self.outports
        kept = [(p, m) for p, m in outputs if p in ports]
        if len(kept) != len(outputs):
            for port, _ in outputs:
                if port not in ports:
                    if port not in self.passed_through:
                        self.log.debug("node %r sent on undeclared out-port %r (not connected; "
                                       "dropped, as the original Reflow host does)",
                                       self.node, port)
                    self.passed_through[port] = self.passed_through.get(port, 0) + 1
        return kept

    def send_parked(self, ctx: Any, port: str, msg: Message) -> None:
        """``ctx.send`` with the tick's deadline paused: waiting for room downstream is not
        the guest's time."""
        call = self.call
        if call is None:
            ctx.send({port: msg})
            return
        _watchdog.pause(call)
        try:
            ctx.send({port: msg})
        finally:
            _watchdog.resume(call)

    def dispatch(
        self, name: str, plugin: extism.CurrentPlugin, args: list[int]
    ) -> bytes | int | None:
        """Run host function ``name``: bytes go back as a new block of plugin memory, an int
        as the plain result."""

        def read(offset: int) -> bytes:
            if offset == 0:
                return b""
            return bytes(plugin.memory(plugin.memory_at_offset(offset)))

        if name == "__send_output":
            ctx = self._need_ctx(name)
            raw = read(args[0])
            self.count_output(len(raw))
            outputs = _loads(raw, name)
            if not isinstance(outputs, dict):
                raise self.tag(GuestOutputError(f"{name} expects a JSON object of port: value"))
            messages = [(str(p), _plain_message(v, f"{name}.{p}")) for p, v in outputs.items()]
            for port, msg in self.declared(messages):
                self.send_parked(ctx, port, msg)
            return None
        if name == "__get_state":
            key = _text(read(args[0]), name)
            state = self.state if isinstance(self.state, dict) else {}
            return json.dumps(state.get(key)).encode("utf-8")
        if name == "__set_state":
            raw_key, raw_value = read(args[0]), read(args[1])
            lim = self.limits
            if len(raw_key) > lim.pool_key_bytes:
                raise self._limit("pool_key_bytes", len(raw_key), lim.pool_key_bytes,
                                  f"{name}: bytes in the key")
            if len(raw_value) > lim.pool_value_bytes:
                raise self._limit("pool_value_bytes", len(raw_value), lim.pool_value_bytes,
                                  f"{name}: bytes in the value")
            key = _text(raw_key, name)
            value = _loads(raw_value, name)
            if not isinstance(self.state, dict):
                self.state, self.state_sizes, self.state_bytes = {}, {}, 0
            self.put_state(key, value, len(raw_key) + len(raw_value), name)
            return None
        if name == "http_request":
            return self.http_request(read(args[0]), read(args[1]) if args[1] else None)
        if name == "http_status_code":
            return self.http_status
        if name == "http_headers":
            return json.dumps(self.http_headers).encode("utf-8")
        raise self.tag(SandboxError(f"no host function {name!r}"))  # pragma: no cover

    def http_request(self, request: bytes, body: bytes | None) -> bytes:
        """The kernel's ``http_request``, through the node's grants: a request the grant does
        not cover raises CapabilityError naming the host (extism itself would only trap)."""
        self._need_ctx("http_request")
        try:
            req = loads(request.decode("utf-8"))  # bounded depth (a ValueError)
            url = str(req["url"])
            method = str(req.get("method") or "GET").upper()
            headers = {str(k): str(v) for k, v in dict(req.get("headers") or {}).items()}
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise self.tag(
                GuestOutputError(f"http_request: the request is not JSON with a url: {exc}")
            ) from exc
        who = f"node {self.node!r} ({self.component})"
        if not self.grants.allows_http():
            raise self.tag(
                CapabilityError(
                    f"{who} made an HTTP request to {url!r} but was not granted the 'http' "
                    "capability; grant it with the hosts it may reach",
                    capability="http",
                )
            )
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        hostport = f"{host}:{parts.port}" if parts.port else host
        allowed = {h.lower() for h in self.grants.http_hosts}
        if parts.scheme not in ("http", "https") or not host:
            raise self.tag(
                CapabilityError(f"{who}: {url!r} is not an http(s) URL", capability="http")
            )
        if "*" not in allowed and host not in allowed and hostport not in allowed:
            raise self.tag(
                CapabilityError(
                    f"{who} may not reach host {hostport!r} over HTTP; allowed hosts: "
                    f"{', '.join(sorted(allowed))}",
                    capability="http",
                )
            )
        left = self.call.remaining() if self.call is not None else self.limits.tick_ms / 1000.0
        if left <= 0:
            raise self.tag(GuestTimeout(
                f"{who}: http_request to {url!r} came after the tick's time limit of "
                f"{self.limits.tick_ms:g} ms", limit_ms=self.limits.tick_ms))
        timeout = min(self.grants.http_timeout, left)
        self.http_status, self.http_headers, data = _fetch(
            method, url, headers, body, timeout, self.grants.http_max_response, who
        )
        return data


def _fetch(
    method: str, url: str, headers: dict[str, str], body: bytes | None, timeout: float,
    limit: int, who: str,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request through httpx: status, headers, body (at most ``limit`` bytes)."""
    import httpx

    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=False) as client,
            client.stream(method, url, headers=headers, content=body) as resp,
        ):
            chunks: list[bytes] = []
            size = 0
            for chunk in resp.iter_bytes():
                size += len(chunk)
                if size > limit:
                    raise CapabilityError(
                        f"{who}: the response from {url!r} is larger than the granted "
                        f"{limit} bytes",
                        capability="http",
                    )
                chunks.append(chunk)
            return resp.status_code, dict(resp.headers), b"".join(chunks)
    except httpx.HTTPError as exc:
        raise SandboxError(
            f"{who}: HTTP request to {url!r} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _host_call(current: Any, inputs: Any, n_in: int, outputs: Any, n_out: int, data: Any) -> None:
    """Every host function lands here (``data`` names it). Never lets a Python exception
    cross into the guest: the first one is kept in ``host.pending`` (as a ReflowError), the
    guest is cancelled at once, and _Instance.call re-raises it once extism returns."""
    for i in range(n_out):
        outputs[i].v.i64 = 0
    host = None
    name = "?"
    try:
        sdk = _sdk()
        plugin = sdk.extism.CurrentPlugin(current)
        host = plugin.host_context()
        name = sdk.ffi.from_handle(data)[0]
        if not isinstance(host, _ExtismHost):
            return  # not called through _Instance.call: nothing to act on
        result = host.dispatch(name, plugin, [inputs[i].v.i64 for i in range(n_in)])
        if isinstance(result, bytes) and n_out:
            outputs[0].v.i64 = _return_bytes(host, plugin, name, result)
        elif isinstance(result, int) and n_out:
            outputs[0].v.i32 = result
    except BaseException as exc:
        if isinstance(host, _ExtismHost) and host.pending is None:
            host.pending = _host_failure(host, name, exc)
        if isinstance(host, _ExtismHost) and host.call is not None:
            _watchdog.cancel(host.call)


def _host_failure(host: _ExtismHost, name: str, exc: BaseException) -> BaseException:
    """What a host function's exception means for the tick (always a ReflowError, except
    KeyboardInterrupt and the like)."""
    call = host.call
    if call is not None and call.fired:
        return _timeout(host, name)  # the deadline came first: this failure is its consequence
    if isinstance(exc, SandboxError):
        return host.tag(exc)
    if isinstance(exc, Exception) and not isinstance(exc, ReflowError):
        return host.tag(SandboxError(f"node {host.node!r} ({host.component}): host function "
                                     f"{name} failed: {type(exc).__name__}: {exc}"))
    return exc


def _return_bytes(host: _ExtismHost, plugin: Any, name: str, data: bytes) -> int:
    """``data`` as a new block of the plugin's kernel memory; its offset."""
    if not data:
        return 0
    mem = plugin.alloc(len(data))
    # extism answers a failed allocation with offset 0; writing there would run past memory
    if not mem.offset or plugin.memory_at_offset(mem.offset).length < len(data):
        limits = host.limits
        raise host.tag(GuestMemoryError(
            f"node {host.node!r} ({host.component}): {name} could not hand {len(data)} bytes "
            f"to the guest: they do not fit in its memory cap of {limits.memory_bytes} bytes "
            f"({limits.memory_bytes // _PAGE} pages)", limit=limits.memory_bytes))
    view = plugin.memory(mem)
    if view is None:
        raise host.tag(SandboxError(f"{name}: the plugin has no memory"))
    view[:] = data
    return int(mem.offset)


class _ExtismSDK:
    """extism, loaded on first use (importing reflow, or registering this engine, must not
    load libextism), with the host functions plugins get: the Reflow SDK's, and the kernel's
    HTTP functions replaced by ones that go through the node's grants and httpx."""

    def __init__(self) -> None:
        import extism
        from extism.extism import CompiledPlugin  # documented; not re-exported by extism 1.1
        from extism_sys import ffi

        self.extism = extism
        self.ffi = ffi
        self.CompiledPlugin = CompiledPlugin
        self.callback = ffi.callback(
            "void(ExtismCurrentPlugin*, const ExtismVal*, ExtismSize, ExtismVal*, ExtismSize, "
            "void*)"
        )(_host_call)
        self.types = {"i32": extism.ValType.I32, "i64": extism.ValType.I64}
        self.cache_lock = threading.Lock()

    def functions(self, bound: Sequence[tuple[str, str, Signature]]) -> list[extism.Function]:
        """Host functions for the imports of one module, each with the signature it imports."""
        t = self.types
        return [
            self.extism.Function(ns, name, [t[p] for p in sig[0]], [t[r] for r in sig[1]],
                                 self.callback, name)
            for ns, name, sig in bound
        ]


_sdk_lock = threading.Lock()
_sdk_loaded: _ExtismSDK | None = None


def _sdk() -> _ExtismSDK:
    global _sdk_loaded
    sdk = _sdk_loaded
    if sdk is None:
        with _sdk_lock:
            if _sdk_loaded is None:
                _sdk_loaded = _ExtismSDK()
            sdk = _sdk_loaded
    return sdk


def extism_cache_dir() -> Path:
    """Where wasmtime keeps what it compiled for extism plugins: ``$REFLOW_CACHE_DIR/extism``,
    else ``~/.cache/reflow/extism``. Extism would otherwise use wasmtime's default,
    ``~/.cache/wasmtime``: nothing of reflow's is written outside reflow's cache."""
    env = os.environ.get("REFLOW_CACHE_DIR")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "reflow"
    return base / "extism"


def _point_cache(sdk: _ExtismSDK, where: str) -> None:
    """Point extism's wasmtime cache (``EXTISM_CACHE_CONFIG``, read at each compile) at
    :func:`extism_cache_dir`. Called with ``sdk.cache_lock`` held, around every compile."""
    root = extism_cache_dir()
    config = root / "wasmtime-cache.toml"
    text = f"[cache]\ndirectory = {json.dumps(str(root / 'wasmtime'))}\n"
    try:
        if not config.is_file() or config.read_text(encoding="utf-8") != text:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = root / f".wasmtime-cache.toml.{os.getpid()}.{threading.get_ident()}"
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, config)
        (root / "wasmtime").mkdir(mode=0o700, exist_ok=True)
        # wasmtime loads compiled code from this cache as it finds it (extism gives no way to
        # authenticate entries, unlike reflow's own wasm cache): use it only while nobody
        # else can write it.
        for p in (root, root / "wasmtime", config):
            _check_private(p)
    except OSError as exc:
        # No cache then (an empty EXTISM_CACHE_CONFIG disables it): slower, never elsewhere.
        if os.environ.get("EXTISM_CACHE_CONFIG") != "":
            log.warning("%s: cannot use extism's cache %s (%s); compiling without a cache",
                        where, root, exc.strerror or exc)
            os.environ["EXTISM_CACHE_CONFIG"] = ""
        return
    if os.environ.get("EXTISM_CACHE_CONFIG") != str(config):
        os.environ["EXTISM_CACHE_CONFIG"] = str(config)


def _check_private(path: Path) -> None:
    """OSError unless ``path`` (not a link) is this user's and writable by nobody else."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise OSError(f"{path} is a symbolic link")
    if os.name == "posix" and (st.st_uid != os.geteuid() or st.st_mode & 0o022):
        raise OSError(f"{path} is writable by others or not this user's "
                      f"({stat.filemode(st.st_mode)}, uid {st.st_uid})")


def _loads(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise GuestOutputError(
            f"{what}: the guest's output is not valid UTF-8 JSON: {exc}"
        ) from exc


def _sdk_result(doc: Any) -> Any:
    """``process``'s result; a JSON string is the base64 of the JSON result (what the Go
    SDK's ``pdk.OutputJSON`` of marshalled bytes gives, and the original host accepts)."""
    if not isinstance(doc, str):
        return doc
    try:
        raw = base64.b64decode(doc, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise GuestOutputError(f"process returned a JSON string that is not base64: {exc}") \
            from exc
    return _loads(raw, "process (base64)")


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GuestOutputError(f"{what}: key is not valid UTF-8: {exc}") from exc


# -- messages across the Reflow-SDK protocol --------------------------------------------------


def _to_sdk(msg: Message) -> Any:
    """A message in the original SDK's vocabulary (it has no Bytes or Null kinds)."""
    doc = msg.as_json()
    kind = doc["type"]
    if kind == "Bytes":
        return {"type": "Stream", "data": doc["data"]}
    if kind == "Null":
        return {"type": "Optional", "data": None}
    return doc


def _guest_message(raw: Any, where: str) -> Message:
    """A tagged message from the guest, validated; the SDK's ``Stream`` of bytes is Bytes."""
    try:
        if isinstance(raw, dict) and raw.get("type") == "Stream" and isinstance(
            raw.get("data"), list
        ):
            return Message.bytes(raw["data"])
        return Message.from_json(raw, _path=where)
    except MessageError as exc:
        raise GuestOutputError(f"the guest returned an invalid message at {exc.path}: {exc}") \
            from exc


def _plain_message(value: Any, where: str) -> Message:
    """A plain JSON value from ``__send_output`` as a message (a tagged one is kept)."""
    if isinstance(value, dict) and isinstance(value.get("type"), str) and set(value) <= {
        "type",
        "data",
    }:
        return _guest_message(value, where)
    try:
        return Message.from_value(value)
    except MessageError as exc:
        raise GuestOutputError(f"the guest sent an invalid value at {where}: {exc}") from exc


def _input_bytes(msg: Message | None) -> bytes:
    """What a function actor passes to its export: Bytes raw, String as UTF-8, Flow/Null
    empty, anything else as the JSON of its data."""
    if msg is None:
        return b""
    kind = msg.kind
    if kind == "Bytes":
        return msg["data"]
    if kind == "String":
        return msg["data"].encode("utf-8")
    if kind in ("Flow", "Null"):
        return b""
    data = msg.as_json().get("data")
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# -- modules, templates, actors --------------------------------------------------------------


def _port_names(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise GuestABIError(f"get_metadata: {what} must be a list of ports")
    names = []
    for p in value:
        name = p.get("name") if isinstance(p, dict) else p
        if not isinstance(name, str) or not name:
            raise GuestABIError(f"get_metadata: {what} has a port without a name: {p!r}")
        names.append(name)
    if len(set(names)) != len(names):
        raise GuestABIError(f"get_metadata: {what} lists a port twice")
    return tuple(names)


def parse_metadata(raw: bytes) -> GuestTemplate:
    """The template described by a Reflow-SDK ``get_metadata`` document."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise GuestABIError(f"get_metadata did not return UTF-8 JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise GuestABIError("get_metadata must return a JSON object")
    tid = doc.get("component", doc.get("id"))
    if not isinstance(tid, str) or not tid:
        raise GuestABIError('get_metadata needs a non-empty string "component"')
    schema = doc.get("config_schema")
    caps = doc.get("capabilities", [])
    return GuestTemplate(
        id=tid,
        inports=_port_names(doc.get("inports", []), "inports"),
        outports=_port_names(doc.get("outports", []), "outports"),
        await_all_inports=bool(doc.get("await_all_inports", False)),
        description=str(doc.get("description", "")),
        config_schema=schema if isinstance(schema, dict) else {},
        capabilities=tuple(c for c in caps if isinstance(c, str)) if isinstance(caps, list)
        else (),
    )


class ExtismModule:
    """An Extism plugin: its bytes, its template (when it exports ``get_metadata``) and a
    factory for actors. ``grants`` are those of the load-time probe that reads the metadata.
    """

    def __init__(self, wasm: bytes, *, name: str | None = None,
                 grants: GuestGrants | None = None) -> None:
        if not isinstance(wasm, (bytes, bytearray, memoryview)):
            raise GuestABIError(f"plugin {name or '?'!r}: expected the bytes of a WebAssembly "
                                f"module, not {type(wasm).__name__}")
        self.wasm = bytes(wasm)
        self.sha256 = hashlib.sha256(self.wasm).hexdigest()
        self.name = name or self.sha256[:12]
        where = f"plugin {self.name!r}"
        try:
            self.info = read_wasm(self.wasm, where)
            #: The host functions to link, with the signatures this module imports them with.
            self.bound = bind_imports(self.info, where)
        except GuestABIError as exc:
            exc.component = self.name
            raise
        probe_tmpl = GuestTemplate(id=self.name, inports=(), outports=())
        host = _ExtismHost("", probe_tmpl, GuestLimits(), grants or GuestGrants())
        probe = _Instance(self, host, {})
        try:
            self.has_metadata = probe.has("get_metadata") and probe.has("process")
            self.templates: dict[str, GuestTemplate] = {}
            if self.has_metadata:
                try:
                    t = parse_metadata(probe.call("get_metadata", b""))
                except _GuestReported as exc:
                    raise GuestABIError(f"get_metadata failed: {exc}") from exc
                self.templates[t.id] = t
        except SandboxError as exc:
            if not exc.component:
                exc.component = self.name
            raise
        finally:
            probe.close()

    @classmethod
    def load(cls, wasm: bytes | str | os.PathLike[str], *, name: str | None = None,
             grants: GuestGrants | None = None) -> ExtismModule:
        """Load a plugin from bytes or a ``.wasm`` path. A path that is missing, not a file or
        unreadable, and bytes that are not a WebAssembly module, are a GuestABIError naming
        the path and what was expected."""
        if isinstance(wasm, (str, os.PathLike)):
            path = Path(wasm)
            name = name or path.name
            expected = "expected a WebAssembly module file (.wasm)"
            try:
                if not path.exists():
                    raise GuestABIError(f"plugin file {str(path)!r} does not exist; {expected}",
                                        component=name)
                if not path.is_file():
                    raise GuestABIError(f"plugin path {str(path)!r} is not a regular file; "
                                        f"{expected}", component=name)
                wasm = path.read_bytes()
            except OSError as exc:
                raise GuestABIError(f"plugin file {str(path)!r} cannot be read: "
                                    f"{exc.strerror or exc}; {expected}", component=name) \
                    from exc
            except ValueError as exc:  # e.g. a NUL byte in the path
                raise GuestABIError(f"plugin path {str(path)!r} is not a valid path: {exc}; "
                                    f"{expected}", component=name) from exc
            try:
                read_wasm(wasm, f"plugin file {str(path)!r}")
            except GuestABIError as exc:
                exc.component = name
                raise
            try:
                return cls(wasm, name=name, grants=grants)
            except SandboxError as exc:
                if str(path) not in str(exc):
                    exc.args = (f"{exc} (plugin file {str(path)!r})", *exc.args[1:])
                raise
        return cls(wasm, name=name, grants=grants)

    def _manifest(self, limits: GuestLimits, grants: GuestGrants) -> dict[str, Any]:
        hosts = list(grants.http_hosts) if grants.allows_http() else []
        return {
            "wasm": [{"data": self.wasm, "name": "main"}],
            "memory": {
                "max_pages": max(1, limits.memory_bytes // _PAGE),
                "max_http_response_bytes": int(grants.http_max_response),
            },
            # No "timeout_ms": extism's timer is wall-clock from the call's start, host calls
            # included; the tick deadline is kept by _watchdog (see _Call) instead.
            # Extism matches host names only; a "host:port" grant never matches (fails closed).
            "allowed_hosts": hosts,
            "allowed_paths": {},
        }

    def _compile(self, host: _ExtismHost) -> CompiledPlugin:
        """A compiled plugin (and wasmtime engine) of its own for one instance. Wasmtime's
        cache under :func:`extism_cache_dir` makes every compile after the first a load."""
        limits, grants = host.limits, host.grants
        who = f"node {host.node!r} ({host.component})" if host.node else f"plugin {self.name!r}"
        wasi = wasi_imports(self.info)
        if wasi and not grants.wasi:
            raise host.tag(CapabilityError(
                f"{who} imports WASI ({', '.join(wasi[:3])}{', ...' if len(wasi) > 3 else ''}) "
                "but was not granted the 'wasi' capability", capability="wasi"))
        sdk = _sdk()
        with sdk.cache_lock:
            _point_cache(sdk, who)
            try:
                return sdk.CompiledPlugin(self._manifest(limits, grants), wasi=bool(grants.wasi),
                                          functions=sdk.functions(self.bound))
            except sdk.extism.Error as exc:
                raise _translate(exc, "compilation", host, self) from exc

    def actor(self, template: str | None = None, *, limits: GuestLimits | None = None,
              grants: GuestGrants | None = None) -> ExtismActor:
        """The Reflow-SDK actor (``get_metadata`` + ``process``) of this plugin."""
        if not self.has_metadata:
            raise GuestABIError(
                f"plugin {self.name!r} does not export get_metadata and process (the Reflow "
                "SDK protocol); wrap one of its functions with function_actor(export)",
                component=self.name,
            )
        spec = pick_template(self.templates, template, self.name, f"plugin {self.name!r}")
        return ExtismActor(self, spec, limits or GuestLimits(), grants or GuestGrants())

    def function_actor(
        self,
        export: str,
        *,
        component: str | None = None,
        inport: str = "in",
        outport: str = "out",
        output: str = "string",
        limits: GuestLimits | None = None,
        grants: GuestGrants | None = None,
    ) -> ExtismActor:
        """Wrap the plugin function ``export`` as a one-in/one-out actor.

        The in-port's message goes in as bytes (Bytes raw, String as UTF-8, anything else as
        the JSON of its data); ``output`` says what comes out: ``"string"`` (UTF-8 text),
        ``"bytes"``, ``"json"`` (any JSON value, as an Any message) or ``"message"`` (a tagged
        message ``{"type": ..., "data": ...}``).
        """
        if output not in OUTPUT_MODES:
            raise ValueError(f"output must be one of {', '.join(OUTPUT_MODES)}, not {output!r}")
        probe = _Instance(self, _ExtismHost("", GuestTemplate(id=self.name, inports=(),
                                                              outports=()),
                                            GuestLimits(), grants or GuestGrants()), {})
        try:
            found = probe.has(export)
        finally:
            probe.close()
        if not found:
            raise GuestABIError(f"plugin {self.name!r} has no export {export!r}",
                                component=self.name)
        spec = GuestTemplate(
            id=component or export,
            inports=(inport,),
            outports=(outport,),
            description=f"Extism function {export!r} of {self.name}",
        )
        return ExtismActor(self, spec, limits or GuestLimits(), grants or GuestGrants(),
                           export=export, output=output)


class ExtismNodeActor(GuestNodeActor):
    """One node: its own plugin instance. ``run`` is one tick; ``close`` frees the instance
    (the close protocol of :class:`~reflow._sandbox._guest_host.GuestNodeActor`)."""

    def __init__(self, owner: ExtismActor, node_id: str, config: dict[str, Any]) -> None:
        super().__init__(owner, node_id, config)
        self.template_actor = owner
        self.config = dict(config)
        host = _ExtismHost(node_id, owner.template, owner.limits, owner.grants)
        self._inst: _Instance | None = _Instance(owner.module, host, self.config)
        self._owned.append(self._inst)

    def _tick(self, ctx: Any) -> dict[str, Message] | None:
        inst = self._inst
        assert inst is not None
        host = inst.host
        host.begin(ctx)
        try:
            if self.template_actor.export is None:
                return self._process(ctx, inst, host)
            return self._function(ctx, inst, host)
        except _GuestReported as exc:
            ctx.fail(f"{self._who()}: the guest failed: {exc}")
            return None
        finally:
            host.end()

    def _process(self, ctx: Any, inst: _Instance, host: _ExtismHost) -> dict[str, Message]:
        context = {
            "payload": {port: _to_sdk(msg) for port, msg in ctx.inputs.items()},
            "config": {
                "node_id": self.node,
                "component": self.component,
                "resolved_env": {},
                "config": self.config,
                "namespace": None,
            },
            "state": host.state,
        }
        raw = inst.call("process", json.dumps(context, separators=(",", ":")).encode("utf-8"))
        try:
            doc = _sdk_result(_loads(raw, "process"))
            if not isinstance(doc, dict) or not isinstance(doc.get("outputs", {}), dict):
                raise GuestOutputError(
                    'process must return a JSON object {"outputs": {port: message}, "state": ...}'
                )
            outputs = [
                (str(port), _guest_message(m, f"$.outputs.{port}"))
                for port, m in (doc.get("outputs") or {}).items()
            ]
        except GuestOutputError as exc:
            raise host.tag(GuestOutputError(f"{self._who()}: {exc}")) from exc
        if doc.get("state") is not None:
            host.replace_state(doc["state"])
        return dict(host.declared(outputs))

    def _function(self, ctx: Any, inst: _Instance, host: _ExtismHost) -> dict[str, Message]:
        owner = self.template_actor
        raw = inst.call(owner.export or "", _input_bytes(ctx.inputs.get(self.inports[0])))
        mode = owner.output
        try:
            if mode == "bytes":
                msg = Message.bytes(raw)
            elif mode == "string":
                try:
                    msg = Message.string(raw.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    raise GuestOutputError(
                        f"{owner.export} returned bytes that are not UTF-8 text: {exc}"
                    ) from exc
            elif mode == "json":
                msg = Message.any(_loads(raw, owner.export or ""))
            else:
                msg = _guest_message(_loads(raw, owner.export or ""), "$")
        except (GuestOutputError, MessageError) as exc:
            raise host.tag(GuestOutputError(f"{self._who()}: {exc}")) from exc
        return {self.outports[0]: msg}

    def _who(self) -> str:
        return f"node {self.node!r} ({self.component})"

    def _release(self, inst: _Instance) -> None:
        self._inst = None
        inst.close()


class ExtismActor(GuestActor):
    """A template of an Extism plugin, registered in a network like any actor. Each node
    built from it gets its own plugin instance from :meth:`open_node`."""

    node_type = ExtismNodeActor

    def __init__(self, module: ExtismModule, template: GuestTemplate, limits: GuestLimits,
                 grants: GuestGrants, *, export: str | None = None,
                 output: str = "string") -> None:
        super().__init__(template, limits, grants)
        self.module = module
        #: The wrapped function (a function actor), or None for the Reflow-SDK protocol.
        self.export = export
        self.output = output


def load_extism_artifact(
    path: Path,
    *,
    artifact: Artifact,
    templates: Sequence[TemplateSpec],
    manifest: PackManifest,
    grants: Any,
    data: bytes | None = None,
) -> Mapping[str, Actor]:
    """Actors for a pack's ``kind = "extism"`` artifact (see ``reflow._loader._plugins``).

    A plugin exporting ``get_metadata``/``process`` provides the template its metadata names.
    Otherwise each manifest template wraps one export: ``config_schema["x-extism"]`` may say
    ``{"export": name, "output": "string" | "bytes" | "json" | "message"}`` (the export
    defaults to the template id), with the template's one in-port and one out-port.
    ``data``: the artifact's verified bytes (the file at ``path`` is not read again then).
    """
    g = grants if isinstance(grants, GuestGrants) else GuestGrants()
    module = ExtismModule.load(data if data is not None else path,
                               name=f"{manifest.name}:{artifact.entry}", grants=g)
    actors: dict[str, Actor] = {}
    for t in templates:
        if module.has_metadata:
            actors[t.id] = module.actor(t.id, grants=g)
            continue
        opts = dict(t.config_schema or {}).get("x-extism") or {}
        actors[t.id] = module.function_actor(
            str(opts.get("export", t.id)),
            component=t.id,
            inport=t.inports[0] if t.inports else "in",
            outport=t.outports[0] if t.outports else "out",
            output=str(opts.get("output", "string")),
            grants=g,
        )
    return actors
