"""The extism SDK, imported only when an Extism plugin is first loaded; its cache; the
trampoline every host function goes through.

:class:`_ExtismSDK` binds the host functions to extism's ``Function`` objects once per
process, all through :func:`_host_call`: a Python exception never crosses into the guest (the
call traps and the original is re-raised on the Python side). wasmtime's cache (under
``$REFLOW_CACHE_DIR/extism``) is used only while it is this user's and writable by nobody
else: extism gives no way to authenticate what it loads.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import (
    GuestMemoryError,
    ReflowError,
    SandboxError,
)
from ._extism_host import _ExtismHost
from ._extism_traps import _timeout
from ._extism_wasm import _PAGE, Signature
from ._extism_watchdog import _watchdog

if TYPE_CHECKING:
    import extism


log = logging.getLogger("reflow.extism")


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
        return host.tag(
            SandboxError(
                f"node {host.node!r} ({host.component}): host function "
                f"{name} failed: {type(exc).__name__}: {exc}"
            )
        )
    return exc


def _return_bytes(host: _ExtismHost, plugin: Any, name: str, data: bytes) -> int:
    """``data`` as a new block of the plugin's kernel memory; its offset."""
    if not data:
        return 0
    mem = plugin.alloc(len(data))
    # extism answers a failed allocation with offset 0; writing there would run past memory
    if not mem.offset or plugin.memory_at_offset(mem.offset).length < len(data):
        limits = host.limits
        raise host.tag(
            GuestMemoryError(
                f"node {host.node!r} ({host.component}): {name} could not hand {len(data)} bytes "
                f"to the guest: they do not fit in its memory cap of {limits.memory_bytes} bytes "
                f"({limits.memory_bytes // _PAGE} pages)",
                limit=limits.memory_bytes,
            )
        )
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
            self.extism.Function(
                ns, name, [t[p] for p in sig[0]], [t[r] for r in sig[1]], self.callback, name
            )
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
            log.warning(
                "%s: cannot use extism's cache %s (%s); compiling without a cache",
                where,
                root,
                exc.strerror or exc,
            )
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
        raise OSError(
            f"{path} is writable by others or not this user's "
            f"({stat.filemode(st.st_mode)}, uid {st.st_uid})"
        )
