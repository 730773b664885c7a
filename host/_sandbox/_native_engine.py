"""The native engine: guest actors built as shared libraries, called through ctypes.

**Not sandboxed.** A native library runs inside the host process with all of its privileges:
no memory cap, time limit or capability check can stop it from reading files, opening
sockets or corrupting the interpreter, and a crash in it takes the process down. In particular
``GuestLimits.tick_ms`` does not apply: a native tick that never returns keeps its worker
thread, because nothing can interrupt a C function safely from outside. Load one only
from a trusted, signed pack; the pack loader is what enforces that, not this module.

The library speaks the native binding of guest ABI v1 (abi/ABI.md §7), which the C guest SDK
produces from the same source as the WebAssembly build: the same frames, native pointers, a
per-node handle from ``reflow_open``, host functions passed once as a table of C function
pointers, and (ABI 1.1, optional) ``reflow_tick_batch`` for several ticks per call. The
callbacks find the calling node through a thread-local (each node ticks on one
worker thread at a time), never raise into C (they return -1 and the exception is re-raised
after the call returns), and check capabilities exactly as for WebAssembly guests.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from .._core._messages import Message
from .._errors import GuestABIError, GuestOutputError, SandboxError
from ..abi._codec import decode_batch_head, decode_result, encode_open
from ..abi._version import ABI_VERSION, check_abi_compatible, pack_abi_word, unpack_abi_word
from ._guest_actor import GuestActor, GuestNodeActor, batch_progress
from ._guest_host import (
    GuestGrants,
    GuestLimits,
    GuestNodeHost,
    GuestTemplate,
    parse_describe,
    pick_template,
)

__all__ = ["NativeActor", "NativeLibrary", "NativeNodeActor"]

_u8p = ctypes.c_void_p
_u32 = ctypes.c_uint32
_i32 = ctypes.c_int32


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


#: What a path given to NativeLibrary must be (named in its errors).
_EXPECTED = "a shared library for this platform built with the reflow guest SDK (abi/ABI.md §7)"

_LOG = ctypes.CFUNCTYPE(None, _i32, _u8p, _u32)
_EMIT = ctypes.CFUNCTYPE(_i32, _u8p, _u32)
_POOL3 = ctypes.CFUNCTYPE(_i32, _u8p, _u32, _u8p, _u32, _u8p, _u32)
_POOL2 = ctypes.CFUNCTYPE(_i32, _u8p, _u32, _u8p, _u32)
_POOL1 = ctypes.CFUNCTYPE(_i32, _u8p, _u32)
_READ = ctypes.CFUNCTYPE(_i32, _u8p, _u32)


class _HostApi(ctypes.Structure):
    """Mirror of ``reflow_host_api`` in sdk-guest/reflow.h (field order is ABI)."""

    _fields_ = (
        ("abi", _u32),
        ("size", _u32),
        ("log", _LOG),
        ("emit", _EMIT),
        ("pool_upsert", _POOL3),
        ("pool_get", _POOL2),
        ("pool_remove", _POOL2),
        ("pool_count", _POOL1),
        ("pool_clear", _POOL1),
        ("http_request", _EMIT),
        ("result_read", _READ),
    )


_current = threading.local()

#: The process's address space as one byte view: slicing it copies a native guest's result
#: frame out ~2x cheaper than ``ctypes.string_at`` (a foreign call). It reads exactly what
#: string_at would — a native guest is trusted with the whole process anyway — and is only
#: ever indexed at a pointer the guest returned, with its length.
_PROCESS_MEMORY = memoryview((ctypes.c_ubyte * sys.maxsize).from_address(0)).cast("B")


def _host() -> GuestNodeHost:
    host = getattr(_current, "host", None)
    if host is None:
        raise SandboxError("a native guest called a host function outside a tick")
    return host


def _bytes(ptr: int | None, n: int) -> bytes:
    if n == 0:
        return b""
    if not ptr:
        raise GuestOutputError("a native guest passed a NULL pointer to a host function")
    return ctypes.string_at(ptr, n)


def _guarded(fn: Any, failure: Any) -> Any:
    """Run a host function; on error remember it for the caller and return ``failure``."""

    def call(*args: Any) -> Any:
        try:
            return fn(*args)
        except BaseException as exc:  # never unwind through C frames
            host = getattr(_current, "host", None)
            if host is not None:
                host.set_pending(exc)
            return failure

    return call


def _result_read(ptr: int | None, cap: int) -> int:
    data = _host().host_result_read(cap)
    if data:
        if not ptr:
            raise GuestOutputError("a native guest passed a NULL buffer to result_read")
        ctypes.memmove(ptr, data, len(data))
    return len(data)


def _make_api() -> _HostApi:
    return _HostApi(
        pack_abi_word(ABI_VERSION),
        ctypes.sizeof(_HostApi),
        _LOG(_guarded(lambda lvl, p, n: _host().host_log(lvl, _bytes(p, n)), None)),
        _EMIT(_guarded(lambda p, n: _host().host_emit(_bytes(p, n)), -1)),
        _POOL3(
            _guarded(
                lambda pp, pn, ip, in_, mp, mn: _host().host_pool_upsert(
                    _bytes(pp, pn), _bytes(ip, in_), _bytes(mp, mn)
                ),
                -1,
            )
        ),
        _POOL2(
            _guarded(
                lambda pp, pn, ip, in_: _host().host_pool_get(_bytes(pp, pn), _bytes(ip, in_)),
                -1,
            )
        ),
        _POOL2(
            _guarded(
                lambda pp, pn, ip, in_: _host().host_pool_remove(_bytes(pp, pn), _bytes(ip, in_)),
                -1,
            )
        ),
        _POOL1(_guarded(lambda pp, pn: _host().host_pool_count(_bytes(pp, pn)), -1)),
        _POOL1(_guarded(lambda pp, pn: _host().host_pool_clear(_bytes(pp, pn)), -1)),
        _EMIT(_guarded(lambda p, n: _host().host_http_request(_bytes(p, n)), -1)),
        _READ(_guarded(_result_read, -1)),
    )


_REQUIRED = (
    "reflow_abi_version",
    "reflow_native_bind",
    "reflow_describe",
    "reflow_open",
    "reflow_tick",
    "reflow_close",
)


_private_lock = threading.Lock()
#: sha256 of verified library bytes -> the private copy they were loaded from. A copy stays
#: until the process exits: the library stays mapped (ctypes never unloads one), and a deleted
#: file's inode can be reused, which glibc's dlopen would take for the library still loaded.
_private_copies: dict[str, Path] = {}


def _private_copy(data: bytes, name: str) -> Path:
    """``data`` (verified bytes) in a fresh directory only this user can reach (0700); the
    same bytes loaded again reuse their copy (dlopen then returns the same library, as it
    did for the same path)."""
    digest = hashlib.sha256(data).hexdigest()
    with _private_lock:
        found = _private_copies.get(digest)
        if found is not None and found.is_file():
            return found
        d = Path(tempfile.mkdtemp(prefix="reflow-native-"))
        target = d / (name or "guest")
        flags = (
            os.O_WRONLY
            | os.O_CREAT
            | os.O_EXCL
            | getattr(os, "O_NOFOLLOW", 0)
            | getattr(os, "O_BINARY", 0)
        )
        try:
            with os.fdopen(os.open(target, flags, 0o700), "wb") as fh:
                fh.write(data)
        except BaseException:
            shutil.rmtree(d, ignore_errors=True)
            raise
        _private_copies[digest] = target
        return target


def _drop_private_copy(path: Path) -> None:
    """Forget a copy that did not load (nothing maps it)."""
    with _private_lock:
        for digest, found in list(_private_copies.items()):
            if found == path:
                del _private_copies[digest]
    shutil.rmtree(path.parent, ignore_errors=True)


@atexit.register
def _remove_private_copies() -> None:
    with _private_lock:
        dirs = [p.parent for p in _private_copies.values()]
        _private_copies.clear()
    for d in dirs:  # best effort: Windows keeps a loaded DLL's file
        shutil.rmtree(d, ignore_errors=True)


class NativeLibrary:
    """A loaded native guest library (NOT sandboxed: see the module docstring).

    With ``data`` (the verified bytes of the library; what the pack loader passes), ``path``
    only names it: the library is loaded from a private copy of ``data`` (``loaded_from``) in
    a fresh 0700 directory, so the file at ``path`` changing after it was verified changes
    nothing. Without ``data`` the library at ``path`` is loaded as it is.
    """

    def __init__(self, path: str | os.PathLike[str], *, data: bytes | None = None) -> None:
        self.path = Path(path)
        self.name = self.path.name
        # A bare name ("libm.so.6") is for the dynamic loader to search; a path must exist.
        has_dir = os.sep in str(path) or (os.altsep is not None and os.altsep in str(path))
        if data is None and has_dir and not _is_file(self.path):
            what = "is a directory" if _is_dir(self.path) else "no such file"
            raise GuestABIError(
                f"cannot load native library {self.path}: {what}; expected {_EXPECTED}",
                component=self.name,
            )
        try:
            self.loaded_from = (
                self.path if data is None else _private_copy(bytes(data), self.path.name)
            )
        except OSError as exc:
            raise GuestABIError(
                f"cannot load native library {self.path}: cannot write its private copy in "
                f"{tempfile.gettempdir()}: {exc}",
                component=self.name,
            ) from exc
        try:
            lib = ctypes.CDLL(str(self.loaded_from))
        except (OSError, ValueError) as exc:
            if data is not None:
                _drop_private_copy(self.loaded_from)
            raise GuestABIError(
                f"cannot load native library {self.path}: {exc}; expected {_EXPECTED}"
                + (
                    ""
                    if data is None
                    else " (loaded from a private copy in the temporary "
                    "directory: if it is mounted noexec, point TMPDIR elsewhere)"
                ),
                component=self.name,
            ) from exc
        missing = [n for n in _REQUIRED if not hasattr(lib, n)]
        if missing:
            raise GuestABIError(
                f"native library {self.name!r} does not export the reflow native binding: "
                f"missing {', '.join(missing)} (see abi/ABI.md §7)",
                component=self.name,
            )
        self._lib = lib
        lib.reflow_abi_version.restype = _u32
        lib.reflow_abi_version.argtypes = []
        self.abi_version = check_abi_compatible(
            unpack_abi_word(lib.reflow_abi_version()), what=f"native library {self.name!r}"
        )
        lib.reflow_native_bind.restype = None
        lib.reflow_native_bind.argtypes = [ctypes.POINTER(_HostApi)]
        lib.reflow_describe.restype = ctypes.c_void_p
        lib.reflow_describe.argtypes = [ctypes.POINTER(_u32)]
        lib.reflow_open.restype = ctypes.c_void_p
        lib.reflow_open.argtypes = [
            ctypes.c_char_p,
            _u32,
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.POINTER(_u32),
        ]
        lib.reflow_tick.restype = ctypes.c_void_p
        lib.reflow_tick.argtypes = [ctypes.c_void_p, ctypes.c_char_p, _u32, ctypes.POINTER(_u32)]
        lib.reflow_close.restype = None
        lib.reflow_close.argtypes = [ctypes.c_void_p]
        # reflow_tick for the hot path: no argtypes, every argument a ready ctypes object or
        # a small int (the frame length), which skips ctypes' per-call conversions.
        self._tick_unchecked = lib._FuncPtr(("reflow_tick", lib))
        self._tick_unchecked.restype = ctypes.c_void_p
        #: reflow_tick_batch (ABI 1.1, optional), called like reflow_tick; None without it.
        self._batch_unchecked = None
        if self.abi_version >= (1, 1) and hasattr(lib, "reflow_tick_batch"):
            self._batch_unchecked = lib._FuncPtr(("reflow_tick_batch", lib))
            self._batch_unchecked.restype = ctypes.c_void_p
        self._api = _make_api()  # kept alive as long as the library object
        lib.reflow_native_bind(ctypes.byref(self._api))
        n = _u32()
        ptr = lib.reflow_describe(ctypes.byref(n))
        if not ptr:
            raise GuestABIError(f"{self.name}: reflow_describe returned NULL", component=self.name)
        self.templates = parse_describe(ctypes.string_at(ptr, n.value), self.abi_version)

    def actor(
        self,
        template: str | None = None,
        *,
        limits: GuestLimits | None = None,
        grants: GuestGrants | None = None,
    ) -> NativeActor:
        """An actor for one template (the only one when ``template`` is None).

        Only ``limits.output_bytes`` applies: a native guest cannot be limited otherwise."""
        spec = pick_template(self.templates, template, self.name, self.name)
        return NativeActor(self, spec, limits or GuestLimits(), grants or GuestGrants())


class NativeNodeActor(GuestNodeActor):
    """One node of a native library: a guest-side handle plus the host functions' state.
    ``run`` takes no lock: see :class:`~reflow._sandbox._guest_actor.GuestNodeActor`."""

    def __init__(self, owner: NativeActor, node_id: str, config: dict[str, Any]) -> None:
        super().__init__(owner, node_id, config)
        t = owner.template
        lib = owner.library
        self._lib = lib._lib
        self._owner = owner
        self._host = GuestNodeHost(node_id, t, owner.limits, owner.grants)
        self._out_len = _u32()
        self._out_ref = ctypes.byref(self._out_len)
        self._tick_fn = lib._tick_unchecked
        self._batch_fn = lib._batch_unchecked
        self._batching = self._batch_fn is not None and owner.limits.batch_ticks > 1
        self._batch_max = owner.limits.batch_ticks
        self._out_limit = owner.limits.output_bytes
        self._grow_input(256)
        handle = ctypes.c_void_p()
        frame = encode_open(t.id, node_id, config)
        _current.host = self._host
        try:
            ptr = self._lib.reflow_open(frame, len(frame), ctypes.byref(handle), self._out_ref)
        finally:
            _current.host = None
        self._handle = handle  # a c_void_p: passed to reflow_tick as is
        if handle.value is not None:
            self._owned.append(handle.value)
        pending, self._host.pending = self._host.pending, None
        if pending is not None:  # a host function failed during reflow_open
            self.close()
            raise self._host.tag(pending) if isinstance(pending, SandboxError) else pending
        res = decode_result(self._take(ptr, "reflow_open"))
        if not res.ok:
            self.close()
            raise self._refused(res.error)

    def _grow_input(self, size: int) -> None:
        # The input frame is encoded into this host-owned buffer, which is passed by address.
        self._in_buf = (ctypes.c_ubyte * size)()
        self._in_view = memoryview(self._in_buf).cast("B")
        self._in_cap = size

    def _take(self, ptr: int | None, what: str) -> bytes:
        n = self._out_len.value
        if not ptr:
            raise self._host.tag(GuestOutputError(f"{what} returned NULL"))
        return ctypes.string_at(ptr, n)

    def _tick(self, ctx: Any) -> dict[str, Message] | None:
        host = self._host
        # Left set after the tick: on this thread, host functions run only inside a tick.
        _current.host = host
        host.ctx = ctx
        host.out_bytes = 0
        n = self.codec.encode_into(ctx.inputs, self._in_view, 0, self._in_cap)
        if n < 0:
            self._grow_input(max(-n, 2 * self._in_cap))
            n = self.codec.encode_into(ctx.inputs, self._in_view, 0, self._in_cap)
        ptr = self._tick_fn(self._handle, self._in_buf, n, self._out_ref)
        if host.pending is not None:
            pending, host.pending = host.pending, None
            raise host.tag(pending) if isinstance(pending, SandboxError) else pending
        ln = self._out_len.value
        if ln > self._out_limit - host.out_bytes:
            host.count_output(ln)  # raises OutputLimitError with the details
        if not ptr:
            raise host.tag(GuestOutputError("reflow_tick returned NULL"))
        outputs = self.codec.decode_single(_PROCESS_MEMORY, ptr, ptr + ln)
        if outputs is None:
            self._finish(ctx, host, ctypes.string_at(ptr, ln))
        elif host._packets_ctx is ctx:  # the tick emitted: the returned packet counts too
            host.count_packets(len(outputs), ctx)
        return outputs

    def _tick_batch(
        self, ctxs: list[Any], errors: list[BaseException | None], base: int
    ) -> tuple[int, bool]:
        """One reflow_tick_batch call. A native guest cannot trap (a crash ends the process),
        so this never reports one; a host function that fails during tick ``i`` fails tick
        ``i`` alone (the guest's progress counter says which tick was running)."""
        host = self._host
        _current.host = host
        try:
            m, size, frame = self._encode_batch(ctxs, self._in_view, 0, self._in_cap)
        except Exception as bad:
            errors[base] = bad
            return 1, False
        if frame is not None:
            self._grow_input(max(size, 2 * self._in_cap))
            self._in_view[:size] = frame
        host.begin_batch(ctxs[:m], batch_progress(self._in_view, 0))
        try:
            ptr = self._batch_fn(self._handle, self._in_buf, size, self._out_ref)  # type: ignore[misc]
        finally:
            emitted, failed = host.end_batch()
        done = decode_batch_head(self._in_view, 0)[1]
        if not ptr or not 1 <= done <= m:
            exc = host.tag(
                GuestOutputError(f"reflow_tick_batch reported {done} of {m} ticks done")
                if ptr
                else GuestOutputError("reflow_tick_batch returned NULL")
            )
            for j in range(m):
                errors[base + j] = failed.get(j, exc)
            return m, False
        ln = self._out_len.value
        self._deliver_batch(
            ctxs, errors, base, _PROCESS_MEMORY, ptr, ptr + ln, done, host, emitted, failed
        )
        return done, False

    def _release(self, handle: int) -> None:
        self._lib.reflow_close(handle)


class NativeActor(GuestActor):
    """A template of a native library; each node gets its own guest handle (open_node)."""

    node_type = NativeNodeActor

    def __init__(
        self, lib: NativeLibrary, template: GuestTemplate, limits: GuestLimits, grants: GuestGrants
    ) -> None:
        super().__init__(template, limits, grants)
        self.library = lib
