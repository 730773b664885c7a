"""The one boundary with extism's errors: what a failed call becomes.

Extism reports a trap only as text with a backtrace; :func:`_describe_trap` finds its cause
and the guest function it happened in, and :func:`_translate` maps every failure (trap,
memory, timeout, a guest's own ``error_set`` report, a host function's exception) into the
:class:`~reflow.SandboxError` tree, chained.
"""

from __future__ import annotations

import re
from typing import Protocol

from .._errors import (
    CapabilityError,
    GuestABIError,
    GuestMemoryError,
    GuestTimeout,
    GuestTrap,
)
from ._extism_wasm import _KERNEL, _PAGE, _USER, WasmInfo
from ._guest_host import (
    GuestNodeHost,
)

#: The stages before any guest code runs: a failure there is never the guest's own report.
_LOADING = ("compilation", "instantiation")


# -- what a trap was (extism reports only the backtrace) --------------------------------------

#: opcode -> (wasmtime trap code, what it means), for instructions that can trap.
_TRAPS: dict[int, tuple[str | None, str]] = {0x00: ("UNREACHABLE", "wasm `unreachable` executed")}
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


class _ModuleBytes(Protocol):
    """What a trap is described from: an :class:`ExtismModule`'s name, bytes and imports."""

    @property
    def name(self) -> str: ...
    @property
    def wasm(self) -> bytes: ...
    @property
    def info(self) -> WasmInfo | None: ...


class _GuestReported(Exception):
    """The guest failed the call itself (``error_set`` / a non-zero return code)."""


def _translate(
    exc: BaseException,
    what: str,
    host: GuestNodeHost,
    module: _ModuleBytes | str,
    *,
    input_size: int = 0,
) -> BaseException:
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
        return host.tag(
            GuestABIError(
                f"{who}: export {what!r} of plugin {name!r} has the wrong signature: an "
                f"Extism function takes no parameters and returns nothing or an i32 ({first})"
            )
        )
    if "unknown import" in low or "incompatible import" in low:
        kind = CapabilityError if "wasi" in low else GuestABIError
        detail = " ".join(line.strip() for line in text.splitlines() if line.strip())
        message = (
            f"{who}: plugin {name!r} cannot be linked: {detail}; the host "
            f"provides the Extism kernel ({_KERNEL}), WASI with the 'wasi' grant and "
            f"the Reflow SDK's {_USER} functions"
        )
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
    exc = GuestTimeout(
        f"{who}: {what} ran past its time limit of {limit:g} ms and was cancelled", limit_ms=limit
    )
    host.tag(exc)
    return exc
