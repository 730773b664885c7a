"""The compiled tick codec: ``ccodec.c`` built on first use, and loaded if it can be.

:class:`~reflow.abi._tick_codec.TickCodec` asks :func:`get` for the module once per node; ``None``
means the pure-Python codec (same bytes, same Messages, same errors: the C module only takes
the inputs and result frames it can do exactly, and hands everything else back).

How it is built: ``python -m ziglang cc -shared -fPIC -O2`` (the ``ziglang`` package the
project already installs; no system compiler) against this interpreter's ``Python.h``, into
``$REFLOW_CACHE_DIR/ccodec`` (else ``~/.cache/reflow/ccodec``), one file per source hash,
Python version and platform, written under a lock file and renamed into place, so processes
building at once never load half a file. The cache directory must be this user's and private
(0700): a shared library in it is run as is.

When: the first :func:`get` of a process finds a built module at once; if there is none, it
starts the build on a daemon thread (bounded by :data:`BUILD_TIMEOUT_S`) and returns ``None``
— nodes made meanwhile use the Python codec; nodes made after use the compiled one. Nothing is
built at import time. ``python -m reflow.abi build-codec`` builds it ahead (CI does).

``REFLOW_CCODEC``: ``0`` never uses it; ``1`` builds it in the foreground and raises
:class:`~reflow.SandboxError` when it cannot be built or loaded (the tests use it); unset:
as above, failing silently but for one debug log line.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import logging
import os
import stat
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from ..._errors import SandboxError

__all__ = ["BUILD_TIMEOUT_S", "SOURCE", "build", "cache_dir", "get", "module_path", "require"]

SOURCE = Path(__file__).with_name("ccodec.c")
#: Seconds one build may take (zig's first run on a machine fills its cache).
BUILD_TIMEOUT_S = 300.0
_NAME = "reflow_ccodec"
_log = logging.getLogger("reflow.ccodec")
_lock = threading.Lock()
_module: ModuleType | None = None
_state = "new"  # new -> building -> ready | failed | off


def cache_dir() -> Path:
    env = os.environ.get("REFLOW_CACHE_DIR")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "reflow"
    return base / "ccodec"


def module_path() -> Path:
    """Where the module for this source, Python and platform is (or will be) built."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    tag = f"{sys.implementation.cache_tag}-{sysconfig.get_platform()}".replace("/", "_")
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    return cache_dir() / f"{_NAME}-{digest}-{tag}{suffix}"


def _private_dir(d: Path) -> None:
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = d.stat()
    if os.name == "posix" and (st.st_uid != os.geteuid() or st.st_mode & 0o022):
        raise SandboxError(
            f"compiled codec cache {d} must be owned by this user and not writable by others "
            f"(mode {stat.filemode(st.st_mode)}, uid {st.st_uid})"
        )


def build(timeout: float = BUILD_TIMEOUT_S) -> Path:
    """Build the module into the cache (if it is not there yet) and return its path.
    Raises SandboxError naming what failed."""
    out = module_path()
    _private_dir(out.parent)
    if out.is_file():
        return out
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").is_file():
        raise SandboxError(f"cannot build the compiled codec: no Python.h in {include}")
    lock_path = out.with_suffix(".lock")
    deadline = time.monotonic() + timeout
    fd = _take_lock(lock_path, deadline)
    try:
        if out.is_file():  # another process built it while we waited
            return out
        tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
        cmd = [
            sys.executable, "-m", "ziglang", "cc", "-shared", "-fPIC", "-O2",
            f"-I{include}", str(SOURCE), "-o", str(tmp),
        ]  # fmt: skip
        try:
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=max(0.01, deadline - time.monotonic()),
            )
        except subprocess.TimeoutExpired:
            raise SandboxError(
                f"building the compiled codec timed out after {timeout:g} s"
            ) from None
        except OSError as exc:
            raise SandboxError(f"cannot run the zig toolchain: {exc}") from exc
        if proc.returncode != 0 or not tmp.is_file():
            tmp.unlink(missing_ok=True)
            err = proc.stderr.strip()
            if "No module named ziglang" in err:
                err = 'the "ziglang" package is not installed'
            raise SandboxError(f"building the compiled codec failed: {err[-2000:]}")
        os.chmod(tmp, 0o700)
        os.replace(tmp, out)
        return out
    finally:
        os.close(fd)
        lock_path.unlink(missing_ok=True)


def _take_lock(path: Path, deadline: float) -> int:
    """An exclusive lock file (O_EXCL) holding this process's id; one left by a process that
    is gone, or older than the build timeout, is taken over."""
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, str(os.getpid()).encode())
            return fd
        except FileExistsError:
            if _stale(path):
                path.unlink(missing_ok=True)
                continue
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"building the compiled codec: {path} is held by another build"
                ) from None
            time.sleep(0.05)


def _stale(path: Path) -> bool:
    try:
        if time.time() - path.stat().st_mtime > BUILD_TIMEOUT_S:
            return True
        pid = int(path.read_text().strip() or "0")
    except (OSError, ValueError):
        return False  # being written or just removed: look again
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _load(path: Path) -> ModuleType:
    loader = importlib.machinery.ExtensionFileLoader(_NAME, str(path))
    spec = importlib.util.spec_from_file_location(_NAME, str(path), loader=loader)
    if spec is None:  # pragma: no cover - a file location always gives a spec
        raise ImportError(f"no module spec for {path}")
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    from ..._core._messages import Message

    mod.init(Message)
    return mod


def _build_and_load() -> ModuleType:
    path = build()
    try:
        return _load(path)
    except (ImportError, OSError) as exc:
        raise SandboxError(f"cannot load the compiled codec {path}: {exc}") from exc


def _background() -> None:
    global _module, _state
    try:
        mod = _build_and_load()
    except Exception as exc:
        _log.debug("compiled codec unavailable, using the Python codec: %s", exc)
        _state = "failed"
        return
    _module = mod
    _state = "ready"


def get() -> Any:
    """The compiled module, or None (use the Python codec). See the module docstring."""
    global _module, _state
    if _state == "ready" or _state == "failed" or _state == "off" or _state == "building":
        return _module
    mode = os.environ.get("REFLOW_CCODEC", "").strip()
    with _lock:
        if _state != "new":
            return _module
        if mode == "0":
            _state = "off"
            return None
        if mode == "1":
            _module = _build_and_load()  # raises SandboxError
            _state = "ready"
            return _module
        if mode not in ("", "auto"):
            _log.debug("REFLOW_CCODEC=%r is not 0 or 1: building it as when unset", mode)
        try:
            path = module_path()
            if path.is_file():
                _private_dir(path.parent)
                _module = _load(path)
                _state = "ready"
                return _module
        except Exception as exc:
            _log.debug("compiled codec unavailable, using the Python codec: %s", exc)
            _state = "failed"
            return None
        _state = "building"
        threading.Thread(target=_background, name="reflow-ccodec-build", daemon=True).start()
        return None


def require() -> ModuleType:
    """The compiled module, built in the foreground if need be; raises SandboxError when it
    cannot be built or loaded (whatever ``REFLOW_CCODEC`` says)."""
    global _module, _state
    with _lock:
        if _module is None:
            _module = _build_and_load()
            _state = "ready"
        return _module
