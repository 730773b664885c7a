"""The wasmtime engine: sandboxed WebAssembly actors speaking guest ABI v1 (abi/ABI.md).

``WasmEngine.load(wasm)`` compiles (or fetches from the module cache), checks the exports,
imports, ABI version and describe document, and returns a :class:`WasmModule`;
``module.actor(template_id)`` is an :class:`~reflow.Actor` to register in a network. Every node
gets its own wasmtime store and instance (``open_node``), with its own limits: a linear-memory
cap, an epoch deadline per tick (per batch of ticks, for a guest that exports
``reflow_tick_batch``: ABI 1.1), an output-size cap and store limits (tables, table
elements, instances, memories: ``GuestLimits``). Modules are compiled in a child process under
``GuestLimits.compile_memory_bytes``/``compile_ms`` (:mod:`reflow._sandbox._wasm_compile`) and their
size and describe document are bounded before use (abi/ABI.md §8). Nothing but module
``reflow`` is importable: no WASI, and ``http_request`` only with a grant. Ticks run on the
runtime's worker pool (``execution = "worker"``); wasmtime releases the GIL while guest code
runs, so independent nodes use all cores.

Calls go through :mod:`reflow._sandbox._wasm_fastcall` (unchecked C-API calls, ~15x cheaper than
``Func.__call__``) when it is available, else through wasmtime-py's public API (whose host
functions re-raise through a process-global slot, so with the fallback two nodes failing in
host functions at the same instant could swap their exceptions). Errors from wasmtime are
translated here, and only here, into the :class:`~reflow.SandboxError` tree.

Compiled-module cache: ``Module.deserialize`` runs the cached machine code as is, so an entry
is used only if it carries an HMAC-SHA256 over the wasm's sha256, the engine configuration
(wasmtime version included) and the compiled bytes, keyed by a secret kept outside the cache
(``cache.key`` in ``$REFLOW_CONFIG_DIR``, else ``~/.config/reflow``; created 0600). Anything
else found in the cache is recompiled from the verified wasm and overwritten.

Memory: each linear memory gets a fixed reservation (256 MiB of address space by default
instead of wasmtime's 4 GiB + guard, so tens of thousands of nodes fit in one process) and
never moves, which lets a node keep a memoryview over its memory across ticks. A node's memory
cap must not exceed the reservation.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import hmac
import logging
import math
import os
import platform
import re
import secrets
import stat
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import wasmtime

from .._core._messages import Message
from .._errors import (
    CapabilityError,
    GuestABIError,
    GuestLimitError,
    GuestMemoryError,
    GuestOutputError,
    GuestTimeout,
    GuestTrap,
    SandboxError,
)
from ..abi._codec import (
    decode_batch_head,
    decode_result,
    encode_open,
    encode_tick_input,
)
from ..abi._version import check_abi_compatible, unpack_abi_word
from . import _wasm_compile as _compile
from . import _wasm_fastcall as fastcall
from ._guest_host import (
    GuestActor,
    GuestGrants,
    GuestLimits,
    GuestNodeActor,
    GuestNodeHost,
    GuestTemplate,
    batch_progress,
    parse_describe,
    pick_template,
    read_module_file,
)
from ._wasm_epoch import NATIVE as EPOCH_NATIVE
from ._wasm_epoch import NATIVE_REASON as EPOCH_NATIVE_REASON
from ._wasm_epoch import EpochTicker

__all__ = ["WasmActor", "WasmEngine", "WasmModule", "WasmNodeActor", "default_engine"]

log = logging.getLogger("reflow.wasm")

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


class WasmEngine:
    """One wasmtime engine with its config, module cache and epoch ticker.

    ``cache_dir``: where compiled modules are kept (``None`` = ``$REFLOW_CACHE_DIR`` or
    ``~/.cache/reflow/wasmtime``; ``False`` = memory only). ``epoch_ms``: granularity of
    tick deadlines. ``memory_reservation``: virtual address space reserved per linear memory
    (wasmtime's default is 4 GiB, which limits a process to a few thousand nodes).
    ``fast_path``: force the private fast path on/off (``None`` = use it when available).
    ``cache_key_file``: the secret that authenticates disk-cache entries (``None`` =
    ``$REFLOW_CONFIG_DIR/cache.key``, else ``~/.config/reflow/cache.key``); created (0600) on
    first use. Keep it outside the cache: whoever can read it can forge compiled code.
    ``isolate_compile``: compile in a child process, so that ``GuestLimits.compile_memory_bytes``
    and ``compile_ms`` hold (``None`` = wherever it can: POSIX; see
    :mod:`reflow._sandbox._wasm_compile`). ``False`` compiles in this process, with no bound on
    what a hostile module's compile costs.
    """

    def __init__(
        self,
        *,
        cache_dir: str | os.PathLike[str] | bool | None = None,
        epoch_ms: float = 5.0,
        max_wasm_stack: int = 512 * 1024,
        memory_reservation: int | None = 256 * 1024 * 1024,
        memory_guard: int = 64 * 1024 * 1024,
        fast_path: bool | None = None,
        cache_key_file: str | os.PathLike[str] | None = None,
        isolate_compile: bool | None = None,
        native_ticker: bool | None = None,
    ) -> None:
        #: What the engine's config is made from; a compiler process rebuilds it from this.
        self._compile_params = {
            "max_wasm_stack": max_wasm_stack,
            "memory_reservation": memory_reservation,
            "memory_guard": memory_guard,
        }
        config = _compile.engine_config(self._compile_params)
        self.memory_reservation = memory_reservation
        if isolate_compile and not _compile.AVAILABLE:
            raise SandboxError("compiling in a child process needs a POSIX system")
        #: Whether modules are compiled in a child process under GuestLimits' compile limits.
        self.isolate_compile = _compile.AVAILABLE if isolate_compile is None else isolate_compile
        #: Everything compiled code depends on; part of the cache key and of its HMAC.
        self._cache_config = repr(
            (
                _CACHE_FORMAT,
                _wasmtime_version(),
                fastcall._version if fastcall.AVAILABLE else None,
                platform.machine(),
                max_wasm_stack,
                memory_reservation,
                memory_guard,
                "epoch",
                "speed",
            )
        )
        self._fingerprint = hashlib.sha256(self._cache_config.encode()).hexdigest()[:16]
        self.engine = wasmtime.Engine(config)
        self.epoch_ms = float(epoch_ms)
        if fast_path and not fastcall.AVAILABLE:
            raise SandboxError(f"the wasmtime fast path is not available: {fastcall.REASON}")
        self.fast_path = fastcall.AVAILABLE if fast_path is None else bool(fast_path)
        if cache_dir is None:
            env = os.environ.get("REFLOW_CACHE_DIR")
            base = Path(env) if env else Path.home() / ".cache" / "reflow"
            self.cache_dir: Path | None = base / "wasmtime"
        elif cache_dir is False:
            self.cache_dir = None
        else:
            self.cache_dir = Path(cache_dir)  # type: ignore[arg-type]
        self.cache_key_file = (
            Path(cache_key_file) if cache_key_file is not None else default_cache_key_file()
        )
        self._cache_key: bytes | None = None
        self._cache_key_failed = False
        self._key_lock = threading.Lock()
        self._modules: dict[str, WasmModule] = {}
        self._lock = threading.Lock()
        self.stats = {"compiled": 0, "deserialized": 0, "memory_hits": 0}
        #: Seconds per epoch: a deadline armed less than this long ago still stands.
        self.epoch_s = self.epoch_ms / 1000.0
        if native_ticker and not EPOCH_NATIVE:
            raise SandboxError(f"no native epoch ticker here: {EPOCH_NATIVE_REASON}")
        self._ticker = EpochTicker(self.engine, self.epoch_s, native_ticker)

    # -- epoch ticker -------------------------------------------------------------------------
    def _ensure_ticker(self) -> None:
        """Start the epoch ticker (:mod:`reflow._sandbox._wasm_epoch`) if it is not running."""
        if not self._ticker.running:
            self._ticker.start()

    @property
    def native_ticker(self) -> bool:
        """Whether the epoch ticks without the GIL (a POSIX timer), not from a Python thread."""
        return self._ticker.native

    def deadline_ticks(self, tick_ms: float) -> int:
        """Epoch ticks for a time limit: the guest is interrupted between ``tick_ms`` and
        ``tick_ms + 2 * epoch_ms`` after the deadline was set. Two epochs of slack, not one:
        a deadline is re-armed only once ``epoch_ms`` has passed since it was armed (the hot
        path reads the clock, not the engine's counter, which has no getter), and an
        increment due before the arming may land just after it."""
        return max(1, math.ceil(tick_ms / self.epoch_ms)) + 2

    def close(self) -> None:
        """Stop the epoch ticker. Idempotent; loaded modules stay usable for inspection."""
        self._ticker.close()

    # -- loading ---------------------------------------------------------------------------
    def compile(
        self, wasm: bytes, limits: GuestLimits | None = None, *, name: str = ""
    ) -> wasmtime.Module:
        """A compiled module for ``wasm``, from the disk cache when possible; compiled
        within ``limits`` (module size, compile memory and time) otherwise."""
        limits = limits or GuestLimits()
        _check_module_size(len(wasm), limits, name)
        digest = hashlib.sha256(wasm).hexdigest()
        path = key = None
        if self.cache_dir is not None:
            key = self._key()
        if key is not None:
            assert self.cache_dir is not None
            path = self.cache_dir / f"{digest}-{self._fingerprint}.cwasm"
            module = self._from_cache(path, key, digest)
            if module is not None:
                self.stats["deserialized"] += 1
                return module
        module, data = self._compile(wasm, limits, name or digest[:12])
        self.stats["compiled"] += 1
        if path is not None and key is not None:
            self._to_cache(path, key, digest, data or bytes(module.serialize()))
        return module

    def _compile(
        self, wasm: bytes, limits: GuestLimits, name: str
    ) -> tuple[wasmtime.Module, bytes | None]:
        """Compile (in a compiler process when ``isolate_compile``, which also returns the
        serialized module); wasmtime's and the compiler's failures become GuestABIError /
        GuestLimitError here."""
        if not self.isolate_compile:
            try:
                return wasmtime.Module(self.engine, wasm), None
            except wasmtime.WasmtimeError as exc:
                raise GuestABIError(
                    f"module {name!r} is not a valid WebAssembly module: {_first_line(exc)}",
                    component=name,
                ) from exc
        who = f"compiling module {name!r} ({len(wasm)} bytes)"
        try:
            data = _compile.compile_isolated(
                wasm, self._compile_params, limits.compile_memory_bytes, limits.compile_ms
            )
        except _compile.CompileInvalid as exc:
            raise GuestABIError(
                f"module {name!r} is not a valid WebAssembly module: {_first_line(exc)}",
                component=name,
            ) from None
        except _compile.CompileOutOfMemory as exc:
            raise GuestLimitError(
                f"{who} needed more memory than GuestLimits.compile_memory_bytes="
                f"{limits.compile_memory_bytes}; the compiler was stopped ({_first_line(exc)})",
                resource="compile_memory_bytes",
                value=None,
                limit=limits.compile_memory_bytes,
                component=name,
            ) from None
        except _compile.CompileTimeout as exc:
            ran = float(exc.args[0]) * 1000.0
            raise GuestLimitError(
                f"{who} ran {ran:.0f} ms, past GuestLimits.compile_ms={limits.compile_ms:g}; "
                f"the compiler was stopped",
                resource="compile_ms",
                value=ran,
                limit=limits.compile_ms,
                component=name,
            ) from None
        except (_compile.CompileDied, OSError) as exc:
            raise SandboxError(
                f"{who}: the compiler process failed: {_first_line(exc)}", component=name
            ) from None
        try:
            return wasmtime.Module.deserialize(self.engine, data), data
        except wasmtime.WasmtimeError as exc:
            raise SandboxError(
                f"{who}: the compiler process returned a module this engine cannot load: "
                f"{_first_line(exc)}",
                component=name,
            ) from exc

    def _key(self) -> bytes | None:
        """The cache's HMAC key (loaded or created on first use); None = no disk cache."""
        if self._cache_key is not None or self._cache_key_failed:
            return self._cache_key
        with self._key_lock:
            if self._cache_key is None and not self._cache_key_failed:
                try:
                    self._cache_key = load_cache_key(self.cache_key_file)
                except (OSError, ValueError) as exc:
                    self._cache_key_failed = True
                    log.warning(
                        "compiled-module disk cache disabled: cannot use the cache key %s (%s)",
                        self.cache_key_file, exc,
                    )
        return self._cache_key

    def _tag(self, key: bytes, digest: str, data: bytes) -> bytes:
        mac = hmac.new(key, digestmod=hashlib.sha256)
        mac.update(_CACHE_MAGIC)
        mac.update(f"{digest}\0{self._cache_config}\0".encode())
        mac.update(data)
        return mac.digest()

    def _from_cache(self, path: Path, key: bytes, digest: str) -> wasmtime.Module | None:
        try:
            blob = path.read_bytes()
        except OSError:
            return None
        head = len(_CACHE_MAGIC)
        tag, data = blob[head : head + _TAG_SIZE], blob[head + _TAG_SIZE :]
        # Deserializing runs native code: only bytes we wrote (authenticated with the key
        # kept outside the cache, for this wasm and this config) are loaded.
        if not blob.startswith(_CACHE_MAGIC) or not hmac.compare_digest(
            tag, self._tag(key, digest, data)
        ):
            log.debug("compiled-module cache entry %s fails authentication; recompiling", path)
            return None
        try:
            return wasmtime.Module.deserialize(self.engine, data)
        except wasmtime.WasmtimeError as exc:
            log.warning("cannot deserialize %s (%s); recompiling", path, _first_line(exc))
            return None

    def _to_cache(self, path: Path, key: bytes, digest: str, data: bytes) -> None:
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            tmp = Path(name)
            with os.fdopen(fd, "wb") as fh:
                fh.write(_CACHE_MAGIC + self._tag(key, digest, data) + data)
            os.replace(tmp, path)
            tmp = None
            with contextlib.suppress(OSError):  # the sidecar of the old format
                path.with_suffix(".sha256").unlink()
        except OSError as exc:
            log.warning("cannot write compiled-module cache %s: %s", path, exc)
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    tmp.unlink()

    def load(
        self,
        wasm: bytes | str | os.PathLike[str],
        *,
        name: str | None = None,
        limits: GuestLimits | None = None,
    ) -> WasmModule:
        """Compile, validate and describe a guest module (idempotent per content hash).
        ``limits``: its ``module_bytes``, ``compile_*`` and ``describe_*`` fields bound the
        loading (the defaults when None)."""
        limits = limits or GuestLimits()
        path: Path | None = None
        if isinstance(wasm, (str, os.PathLike)):
            name = name or Path(wasm).name
            path = Path(wasm)
            try:
                size = path.stat().st_size
            except (OSError, ValueError):
                size = 0  # read_module_file says what is wrong
            _check_module_size(size, limits, name)
            wasm = read_module_file(path)
        wasm = bytes(wasm)
        _check_module_size(len(wasm), limits, name or "")
        digest = hashlib.sha256(wasm).hexdigest()
        with self._lock:
            cached = self._modules.get(digest)
        if cached is not None:
            self.stats["memory_hits"] += 1
            return cached
        label = name or digest[:12]
        try:
            compiled = self.compile(wasm, limits, name=label)
        except GuestABIError as exc:
            if path is None:
                raise
            shown = repr(str(path))
            detail = (str(exc) if wasm.startswith(b"\0asm") else
                      f"it does not start with the WebAssembly magic bytes \\0asm "
                      f"({len(wasm)} bytes)")
            raise GuestABIError(f"cannot load {shown}: {detail}; expected a WebAssembly "
                                f"module (a .wasm file)", component=label) from exc
        module = WasmModule(self, compiled, digest, label, limits)
        with self._lock:
            return self._modules.setdefault(digest, module)


def _check_module_size(size: int, limits: GuestLimits, name: str) -> None:
    if size > limits.module_bytes:
        raise GuestLimitError(
            f"module {name!r} is {size} bytes, more than GuestLimits.module_bytes="
            f"{limits.module_bytes}",
            resource="module_bytes",
            value=size,
            limit=limits.module_bytes,
            component=name,
        )


_CACHE_FORMAT = "cwasm-hmac-v1"
_CACHE_MAGIC = b"RFLCWv1\n"
_TAG_SIZE = 32
_KEY_NAME = "cache.key"


def _wasmtime_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("wasmtime")
    except metadata.PackageNotFoundError:  # pragma: no cover - wasmtime imported above
        return getattr(wasmtime, "__version__", "unknown")


def default_cache_key_file() -> Path:
    """``$REFLOW_CONFIG_DIR/cache.key``, else ``~/.config/reflow/cache.key``."""
    env = os.environ.get("REFLOW_CONFIG_DIR")
    base = Path(env).expanduser() if env else Path.home() / ".config" / "reflow"
    return base / _KEY_NAME


def load_cache_key(path: str | os.PathLike[str]) -> bytes:
    """The secret in ``path`` (64 hex digits), created with 32 random bytes (mode 0600,
    exclusively) if missing. Raises OSError/ValueError if it cannot be used safely."""
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_BINARY", 0), 0o600)
    except FileExistsError:
        return _read_cache_key(path)
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.hex().encode() + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    return key


def _read_cache_key(path: Path) -> bytes:
    deadline = time.monotonic() + 2.0
    while True:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ValueError("not a regular file")
            if os.name == "posix" and (st.st_mode & 0o077 or st.st_uid != os.geteuid()):
                raise ValueError(
                    f"must be owned by this user and private (mode 0600), not "
                    f"{stat.filemode(st.st_mode)} uid {st.st_uid}"
                )
            text = fh.read(200).strip()
        if len(text) == 64:
            try:
                return bytes.fromhex(text.decode("ascii"))
            except (UnicodeDecodeError, ValueError):
                pass
        if text or time.monotonic() > deadline:  # empty: another process is writing it
            raise ValueError("not 64 hex digits (delete it to make a new key)")
        time.sleep(0.01)


_default: WasmEngine | None = None
_default_lock = threading.Lock()


def default_engine() -> WasmEngine:
    """The process-wide engine used when none is given."""
    global _default
    with _default_lock:
        if _default is None:
            _default = WasmEngine()
        return _default


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


class WasmModule:
    """A validated guest module: its templates and a factory for actors."""

    def __init__(
        self,
        engine: WasmEngine,
        module: wasmtime.Module,
        digest: str,
        name: str,
        limits: GuestLimits | None = None,
    ):
        limits = limits or GuestLimits()
        self.engine = engine
        self.module = module
        self.sha256 = digest
        self.name = name
        #: Whether nodes get several ticks per call (reflow_tick_batch); decided below.
        self.batch = False
        self._check_exports()
        self.imports = self._check_imports()
        probe = _GuestInstance(self, None, limits, GuestGrants(), "<load>")
        try:
            word = probe.call_i32("reflow_abi_version")
            self.abi_version = check_abi_compatible(
                unpack_abi_word(word), what=f"module {name!r}"
            )
            self.templates = parse_describe(self._describe(probe, limits), self.abi_version, limits)
            self.batch = self.has_batch and self.abi_version >= (1, 1)
        except SandboxError as exc:
            if not exc.component:
                exc.component = name
            raise
        finally:
            probe.close()

    def _describe(self, probe: _GuestInstance, limits: GuestLimits) -> bytes:
        """The describe document, its length checked before a byte of it is copied."""
        probe.set_deadline(probe.ticks)
        raw, err = probe.callers["reflow_describe"]()
        probe.refresh()
        if err is not None:
            raise probe.translate(err, "reflow_describe")
        n = (raw >> 32) & _MASK32
        if n > limits.describe_bytes:
            raise GuestLimitError(
                f"module {self.name!r}: reflow_describe returned a document of {n} bytes, more "
                f"than GuestLimits.describe_bytes={limits.describe_bytes}",
                resource="describe_bytes",
                value=n,
                limit=limits.describe_bytes,
                component=self.name,
            )
        return probe.read_slice(raw, "reflow_describe")

    def _check_exports(self) -> None:
        found = {e.name: e.type for e in self.module.exports}
        problems = []
        if not isinstance(found.get("memory"), wasmtime.MemoryType):
            problems.append("memory (a linear memory)")
        for name, (params, results) in EXPORTS.items():
            ty = found.get(name)
            if not isinstance(ty, wasmtime.FuncType):
                problems.append(f"{name} (a function)")
                continue
            got = (_type_names(ty.params), _type_names(ty.results))
            if got != (params, results):
                problems.append(f"{name} with type {params} -> {results}, not {got[0]} -> {got[1]}")
        self.has_batch = False
        for name, (params, results) in OPTIONAL_EXPORTS.items():
            if name not in found:
                continue
            ty = found[name]
            if not isinstance(ty, wasmtime.FuncType) or (
                _type_names(ty.params),
                _type_names(ty.results),
            ) != (params, results):
                problems.append(f"{name} (optional) with type {params} -> {results}")
            else:
                self.has_batch = True
        if problems:
            raise GuestABIError(
                f"module {self.name!r} does not export the reflow guest ABI: missing or "
                f"mistyped export(s): {'; '.join(problems)} (see abi/ABI.md)",
                component=self.name,
            )

    def _check_imports(self) -> list[str]:
        names = []
        self.wasi_imports: list[str] = []
        for imp in self.module.imports:
            if imp.module == "wasi_snapshot_preview1":
                # Provided only to nodes granted "wasi" (checked when a node opens).
                self.wasi_imports.append(imp.name or "")
                continue
            spec = IMPORTS.get(imp.name or "") if imp.module == "reflow" else None
            if spec is None:
                hint = (
                    " (of WASI only wasi_snapshot_preview1 exists, and only with a grant)"
                    if str(imp.module).startswith("wasi")
                    else ""
                )
                raise GuestABIError(
                    f"module {self.name!r} imports {imp.module}.{imp.name}, which the host "
                    f"does not provide{hint}",
                    component=self.name,
                )
            ty = imp.type
            if not isinstance(ty, wasmtime.FuncType) or (
                _type_names(ty.params),
                _type_names(ty.results),
            ) != spec:
                raise GuestABIError(
                    f"module {self.name!r} imports reflow.{imp.name} with the wrong type; "
                    f"expected {spec[0]} -> {spec[1]}",
                    component=self.name,
                )
            names.append(imp.name or "")
        return names

    def actor(
        self,
        template: str | None = None,
        *,
        limits: GuestLimits | None = None,
        grants: GuestGrants | None = None,
    ) -> WasmActor:
        """An actor for one template (the only one when ``template`` is None)."""
        spec = pick_template(self.templates, template, self.name, f"module {self.name!r}")
        return WasmActor(self, spec, limits or GuestLimits(), grants or GuestGrants())


class _GuestInstance:
    """One store + instance, and the ways to call into it (fast path or public API)."""

    def __init__(
        self,
        module: WasmModule,
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
            raise (_store_limit_error(exc, self.host, limits) or self.translate(
                exc, "instantiation"
            )) from exc
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
                    f"{who}: {what} ran past its time limit of {limit:g} ms "
                    f"and was interrupted",
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


class WasmNodeActor(GuestNodeActor):
    """One node's sandboxed instance (its own store). ``run`` is one tick; ``close`` frees
    the store (see :class:`~reflow._sandbox._guest_host.GuestNodeActor` for why ``run`` takes no
    lock)."""

    def __init__(self, owner: WasmActor, node_id: str, config: dict[str, Any]) -> None:
        super().__init__(owner, node_id, config)
        self.template_actor = owner
        t = owner.template
        inst = _GuestInstance(owner.module, t, owner.limits, owner.grants, node_id)
        try:
            res = decode_result(inst.call_frame("reflow_open", encode_open(t.id, node_id, config)))
        except BaseException:
            inst.close()
            raise
        if not res.ok:
            inst.close()
            raise self._refused(res.error)
        self._inst: _GuestInstance | None = inst
        self._owned.append(inst)
        self._batching = inst.batch_bound is not None and owner.limits.batch_ticks > 1
        self._batch_max = owner.limits.batch_ticks

    def _tick(self, ctx: Any) -> dict[str, Message] | None:
        """The hot path, kept flat on purpose (each call saved is ~0.1 us of a ~2 us tick):
        encode into the guest's input buffer, one unchecked call, decode the result frame in
        place."""
        inst = self._inst
        assert inst is not None
        host = inst.host
        host.out_bytes = 0
        if inst.host_calls:  # ctx stays set until the next tick: imports run only inside
            host.ctx = ctx
            host.pending = None
        codec = self.codec
        view = inst.view
        in_ptr = inst.in_ptr
        if view is not None:  # encode straight into the guest's input buffer
            n = codec.encode_into(ctx.inputs, view, in_ptr, inst.in_cap)
            if n < 0:
                n = inst.write_input(encode_tick_input(ctx.inputs))
                in_ptr = inst.in_ptr
                view = inst.view  # growing the buffer may have grown the memory
        else:
            n = inst.write_input(encode_tick_input(ctx.inputs))
            in_ptr = inst.in_ptr
        if _monotonic() >= inst.rearm_at or inst.armed_ticks != inst.ticks:
            # A deadline armed less than an epoch ago still stands (deadline_ticks' slack).
            inst.set_deadline(inst.ticks)
        bound = inst.tick_bound
        if bound is not None:  # the fast path's unchecked call
            args = bound.args
            args[0] = in_ptr
            args[2] = n
            e = bound.call()
            if e or bound.trap.value:
                raise inst.translate(bound.failure(e), "reflow_tick")
            raw = args[0]
        else:
            raw, err = inst.tick_call(in_ptr, n)
            if err is not None:
                raise inst.translate(err, "reflow_tick")
        if not inst.stable:  # the memory may have moved
            inst.refresh()
        if host.pending is not None:
            pending, host.pending = host.pending, None
            raise pending
        ptr = raw & _MASK32
        ln = (raw >> 32) & _MASK32  # args[0] is a signed i64
        if ln > inst.out_limit - host.out_bytes:
            host.count_output(ln)  # raises OutputLimitError with the details
        if ptr + ln > inst.size:
            inst.refresh()  # the guest grew its memory during the tick
            if ptr + ln > inst.size:
                inst.read_slice(raw, "reflow_tick")  # raises GuestOutputError
            view = inst.view
        if view is None:  # the public-API fallback: no view over linear memory
            view, ptr = memoryview(ctypes.string_at(inst.base + ptr, ln)), 0
        outputs = codec.decode_single(view, ptr, ptr + ln)
        if outputs is None:
            self._finish(ctx, host, view[ptr : ptr + ln].tobytes())
        elif host._packets_ctx is ctx:  # the tick emitted: the returned packet counts too
            host.count_packets(len(outputs), ctx)
        return outputs

    def _tick_batch(
        self, ctxs: list[Any], errors: list[BaseException | None], base: int
    ) -> tuple[int, bool]:
        """One reflow_tick_batch call (ABI.md, "Batched ticks"): encode the ticks' inputs into
        the guest's input buffer, one unchecked call with a deadline of ``tick_ms`` per tick,
        then each result frame decoded into its ctx. After a trap, the guest's progress
        header says which results are complete: those are delivered and the tick that was
        running gets the error."""
        inst = self._inst
        assert inst is not None and inst.view is not None and inst.batch_bound is not None
        host = inst.host
        try:
            m, size, frame = self._encode_batch(ctxs, inst.view, inst.in_ptr, inst.in_cap)
            if frame is not None:  # the input buffer is too small: grow it (reflow_alloc)
                inst.write_input(frame)
        except Exception as exc:  # the first tick's inputs cannot cross, or alloc failed
            errors[base] = exc
            return 1, False
        view, in_ptr = inst.view, inst.in_ptr
        # Each tick of the batch has its own budget of tick_ms (see _on_deadline): the first
        # look comes after a quarter of it.
        progress = inst.progress_reader
        if progress is None or progress[0] is not view or progress[1] != in_ptr:
            progress = inst.progress_reader = (view, in_ptr, batch_progress(view, in_ptr))
        inst.batch_progress = progress[2]
        inst.batch_count = m
        inst.batch_at = 0
        now = inst.batch_start = _monotonic()
        if now >= inst.rearm_at or inst.armed_ticks != inst.batch_poll:
            inst.set_deadline(inst.batch_poll)  # else the one armed < an epoch ago stands
        host_calls = inst.host_calls
        if host_calls:
            host.begin_batch(ctxs[:m], progress[2])
        bound = inst.batch_bound
        args = bound.args
        args[0] = in_ptr
        args[2] = size
        emitted = None
        try:
            e = bound.call()
            failure = bound.failure(e) if e or bound.trap.value else None
        finally:
            inst.batch_progress = None
            if host_calls:
                emitted = host.end_batch()[0]
        if failure is None:
            raw = args[0]
            rptr = raw & _MASK32
            rlen = (raw >> 32) & _MASK32
            done = _batch_done(view, in_ptr + 4)[0]
        else:  # what the guest reported before it trapped
            _, done, rptr, rlen = decode_batch_head(view, in_ptr)
        if rptr + rlen > inst.size:
            inst.refresh()  # the guest grew its memory during the call
            view = inst.view
        if failure is not None:
            limit_ms = inst.limits.tick_ms
            if done >= m or rptr + rlen > inst.size:  # no usable progress: all of them fail
                exc = inst.translate(failure, f"reflow_tick_batch ({m} ticks)", limit_ms)
                for j in range(m):
                    errors[base + j] = exc
                return m, True
            exc = inst.translate(
                failure, f"reflow_tick_batch (tick {done + 1} of {m})", limit_ms
            )
            self._deliver_batch(ctxs, errors, base, view, rptr, rptr + rlen, done, host, emitted)
            errors[base + done] = exc
            return done + 1, True
        if not 1 <= done <= m or rptr + rlen > inst.size:
            exc = host.tag(
                GuestOutputError(
                    f"reflow_tick_batch reported {done} of {m} ticks done with the results "
                    f"[{rptr}, {rptr + rlen}) (linear memory: {inst.size} bytes)"
                )
            )
            for j in range(m):
                errors[base + j] = exc
            return m, False
        self._deliver_batch(ctxs, errors, base, view, rptr, rptr + rlen, done, host, emitted)
        return done, False

    def _release(self, inst: _GuestInstance) -> None:
        self._inst = None
        inst.close()


class WasmActor(GuestActor):
    """A template of a guest module, registered in a network like any actor. Each node built
    from it gets its own sandboxed instance from :meth:`open_node`."""

    node_type = WasmNodeActor

    def __init__(
        self, module: WasmModule, template: GuestTemplate, limits: GuestLimits, grants: GuestGrants
    ) -> None:
        super().__init__(template, limits, grants)
        self.module = module
