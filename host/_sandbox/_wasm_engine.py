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
import hashlib
import hmac
import logging
import math
import os
import platform
import tempfile
import threading
from pathlib import Path

import wasmtime

from .._errors import (
    GuestABIError,
    GuestLimitError,
    SandboxError,
)
from . import _wasm_compile as _compile
from . import _wasm_fastcall as fastcall
from ._guest_host import (
    GuestLimits,
    read_module_file,
)
from ._wasm_cache import (
    _CACHE_FORMAT,
    _CACHE_MAGIC,
    _TAG_SIZE,
    _wasmtime_version,
    default_cache_key_file,
    load_cache_key,
)
from ._wasm_epoch import NATIVE as EPOCH_NATIVE
from ._wasm_epoch import NATIVE_REASON as EPOCH_NATIVE_REASON
from ._wasm_epoch import EpochTicker
from ._wasm_instance import _first_line
from ._wasm_module import WasmModule
from ._wasm_node import WasmActor, WasmNodeActor

__all__ = [
    "WasmActor",
    "WasmEngine",
    "WasmModule",
    "WasmNodeActor",
    "default_cache_key_file",
    "default_engine",
    "load_cache_key",
]

log = logging.getLogger("reflow.wasm")


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
                        self.cache_key_file,
                        exc,
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
            detail = (
                str(exc)
                if wasm.startswith(b"\0asm")
                else f"it does not start with the WebAssembly magic bytes \\0asm "
                f"({len(wasm)} bytes)"
            )
            raise GuestABIError(
                f"cannot load {shown}: {detail}; expected a WebAssembly module (a .wasm file)",
                component=label,
            ) from exc
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


_default: WasmEngine | None = None
_default_lock = threading.Lock()


def default_engine() -> WasmEngine:
    """The process-wide engine used when none is given."""
    global _default
    with _default_lock:
        if _default is None:
            _default = WasmEngine()
        return _default
