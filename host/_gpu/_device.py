"""The one WebGPU device of the process, shared by every GPU node, made on first use.

Which adapter: ``configure_gpu(adapter=...)`` if called, else ``REFLOW_GPU_ADAPTER``: a power
preference (``high-performance``, ``low-power``) or a substring of the adapter's name
(``"llvmpipe"``, ``"nvidia"``), matched case-insensitively against every adapter wgpu lists.
``REFLOW_GPU=off`` (or ``configure_gpu(enabled=False)``) switches the GPU off: GPU nodes then
behave as on a machine without an adapter (their fallback policy decides).

Every wgpu call that can block runs under the device's lock and, where it waits for the GPU,
on the device's waiter thread with a deadline (see :meth:`GpuDevice.wait`). WebGPU cannot
cancel submitted work, so a wait that passes its deadline fails the tick with
:class:`GpuTimeoutError`, destroys the device and drops it; the next GPU tick gets a fresh one,
and handles made on the old one raise :class:`GpuBufferError`.
"""

from __future__ import annotations

import contextlib
import os
import queue
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ._errors import (
    HOW_TO_GET_ONE,
    GpuError,
    GpuTimeoutError,
    GpuUnavailableError,
    NoGpuAdapterError,
)

__all__ = [
    "GpuCounters",
    "GpuDevice",
    "configure_gpu",
    "gpu_counters",
    "reset_device",
    "shared_device",
]

_POWER = ("high-performance", "low-power")
#: Limits raised from WebGPU's defaults to what the adapter offers (a 4K RGBA float image
#: is 133 MB; the default binding size is 128 MiB).
_RAISED_LIMITS = ("max-storage-buffer-binding-size", "max-buffer-size")


@dataclass
class GpuCounters:
    """Transfers between host and device, process-wide since start (or ``reset()``)."""

    uploads: int = 0
    readbacks: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    dispatches: int = 0

    def reset(self) -> None:
        self.uploads = self.readbacks = self.bytes_up = self.bytes_down = self.dispatches = 0


_counters = GpuCounters()
_lock = threading.Lock()
_device: GpuDevice | None = None
_settings: dict[str, Any] = {}


def gpu_counters() -> GpuCounters:
    """The process-wide transfer counters (the same object every time)."""
    return _counters


def configure_gpu(*, adapter: str | None = None, enabled: bool | None = None) -> None:
    """Choose the adapter (power preference or name substring) or switch the GPU on/off for
    this process; overrides ``REFLOW_GPU_ADAPTER`` / ``REFLOW_GPU``. Takes effect for the next
    device made: call :func:`reset_device` to drop one already made."""
    if adapter is not None and (not isinstance(adapter, str) or not adapter.strip()):
        raise GpuError(f"configure_gpu(adapter=...) expects a non-empty string, got {adapter!r}")
    if enabled is not None and not isinstance(enabled, bool):
        raise GpuError(f"configure_gpu(enabled=...) expects True or False, got {enabled!r}")
    with _lock:
        _settings["adapter"] = adapter
        _settings["enabled"] = enabled


def _wanted_adapter() -> str:
    chosen = _settings.get("adapter") or os.environ.get("REFLOW_GPU_ADAPTER", "")
    return chosen.strip()


def _enabled() -> bool:
    if _settings.get("enabled") is not None:
        return bool(_settings["enabled"])
    return os.environ.get("REFLOW_GPU", "").strip().lower() not in ("off", "0", "false", "no")


def _runtime_dir_usable(path: str) -> bool:
    """``path`` is what the XDG spec asks of ``$XDG_RUNTIME_DIR``: a directory this user owns,
    mode 0700 (Mesa's Vulkan window-system code checks that and prints an error otherwise)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and (st.st_mode & 0o077) == 0


@contextlib.contextmanager
def _private_runtime_dir() -> Iterator[None]:
    """While the adapter is requested, a missing or unusable ``$XDG_RUNTIME_DIR`` is a fresh
    private (0700) temporary directory, removed afterwards and the variable put back as it
    was: Mesa's software Vulkan then prints no "XDG_RUNTIME_DIR is invalid or not set" line,
    and nothing else in the process sees the change after the request (a GPU device opens
    no window, so nothing it keeps needs that directory)."""
    if not hasattr(os, "getuid") or _runtime_dir_usable(os.environ.get("XDG_RUNTIME_DIR", "")):
        yield
        return
    before = os.environ.get("XDG_RUNTIME_DIR")
    with tempfile.TemporaryDirectory(prefix="reflow-xdg-") as private:  # mkdtemp: 0700
        os.environ["XDG_RUNTIME_DIR"] = private
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("XDG_RUNTIME_DIR", None)
            else:
                os.environ["XDG_RUNTIME_DIR"] = before


def _find_adapter(wgpu: Any, wanted: str) -> Any:
    """The adapter ``wanted`` names (power preference, name substring, or "" for wgpu's
    default choice); NoGpuAdapterError saying what was looked for and what exists."""
    with _private_runtime_dir():
        return _request_adapter(wgpu, wanted)


def _request_adapter(wgpu: Any, wanted: str) -> Any:
    try:
        if wanted.lower() in ("", *_POWER):
            adapter = wgpu.gpu.request_adapter_sync(
                power_preference=wanted.lower() or "high-performance"
            )
            if adapter is not None:
                return adapter
            found: list[str] = []
        else:
            adapters = list(wgpu.gpu.enumerate_adapters_sync())
            for adapter in adapters:
                if wanted.lower() in adapter.summary.lower():
                    return adapter
            found = [a.summary for a in adapters]
    except Exception as exc:  # wgpu-native missing a backend, driver errors: no adapter
        raise NoGpuAdapterError(
            f"no GPU adapter was found (wgpu: {type(exc).__name__}: {exc}); {HOW_TO_GET_ONE}",
            wanted=wanted or None,
        ) from exc
    if wanted and found:
        raise NoGpuAdapterError(
            f"no GPU adapter matches REFLOW_GPU_ADAPTER={wanted!r}; adapters found: "
            f"{'; '.join(found)} (set REFLOW_GPU_ADAPTER to a part of one of those names, or "
            f"'high-performance' / 'low-power')",
            wanted=wanted,
        )
    raise NoGpuAdapterError(
        f"no GPU adapter was found{f' for {wanted!r}' if wanted else ''}; {HOW_TO_GET_ONE}",
        wanted=wanted or None,
    )


def shared_device() -> GpuDevice:
    """The process's device, made on first call; raises NoGpuAdapterError (or its subclass
    GpuUnavailableError) when there is none to make."""
    global _device
    device = _device
    if device is not None and not device.closed:
        return device
    with _lock:
        if _device is not None and not _device.closed:
            return _device
        if not _enabled():
            raise GpuUnavailableError(
                "the GPU is switched off (REFLOW_GPU=off or configure_gpu(enabled=False)), "
                "so no GPU adapter is used; unset REFLOW_GPU to use one, or give the node "
                "fallback='cpu' to run its numpy twin"
            )
        try:
            import wgpu
        except ImportError as exc:
            raise GpuUnavailableError(
                f"wgpu is not installed (pip install 'reflow[gpu]'), so no GPU adapter was "
                f"found; {HOW_TO_GET_ONE}"
            ) from exc
        adapter = _find_adapter(wgpu, _wanted_adapter())
        _device = GpuDevice(wgpu, adapter)
        return _device


def reset_device() -> None:
    """Drop the shared device (destroying it); the next GPU tick makes a new one."""
    global _device
    with _lock:
        device, _device = _device, None
    if device is not None:
        device.close()


class _Waiter:
    """A daemon thread that runs blocking wgpu waits, so the caller can give up on one."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        threading.Thread(target=self._loop, name="reflow-gpu-wait", daemon=True).start()

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, done, box = job
            try:
                box.append((True, fn()))
            except BaseException as exc:  # handed to the caller, never lost
                box.append((False, exc))
            done.set()

    def call(self, fn: Callable[[], Any], limit_s: float) -> tuple[bool, Any]:
        done = threading.Event()
        box: list[tuple[bool, Any]] = []
        self._jobs.put((fn, done, box))
        if not done.wait(limit_s):
            raise TimeoutError
        return box[0]

    def stop(self) -> None:
        self._jobs.put(None)


class GpuDevice:
    """One wgpu adapter + device + queue, with its limits and a lock for its users."""

    def __init__(self, wgpu: Any, adapter: Any) -> None:
        self.wgpu = wgpu
        self.adapter = adapter
        self.name: str = adapter.summary
        self.info: dict[str, Any] = dict(adapter.info)
        wanted = {k: adapter.limits[k] for k in _RAISED_LIMITS if k in adapter.limits}
        # Asked for where offered, so a profiler can time passes (no cost unless it does).
        features = [f for f in ("timestamp-query",) if f in adapter.features]
        #: Whether passes can carry GPU timestamps (see ``_kernels.observe_dispatches``).
        self.timestamps = bool(features)
        try:
            self.device = adapter.request_device_sync(
                required_features=features, required_limits=wanted
            )
        except Exception as exc:
            raise NoGpuAdapterError(
                f"the GPU adapter {self.name!r} did not give a device "
                f"({type(exc).__name__}: {exc}); {HOW_TO_GET_ONE}"
            ) from exc
        self.limits: dict[str, int] = dict(self.device.limits)
        self.queue = self.device.queue
        self.lock = threading.RLock()
        self.closed = False
        self._waiter = _Waiter()
        usage = wgpu.BufferUsage
        self._probe = self.device.create_buffer(size=4, usage=usage.COPY_SRC | usage.COPY_DST)
        #: Compiled pipelines of this device, by (source sha256, entry point).
        self.pipelines: dict[tuple[str, str], Any] = {}

    def __repr__(self) -> str:
        return f"<GpuDevice {self.name!r}{' closed' if self.closed else ''}>"

    def check_open(self) -> None:
        if self.closed:
            from ._errors import GpuBufferError

            raise GpuBufferError(
                f"the GPU device {self.name!r} was reset (after a timeout or reset_device()); "
                "buffers made on it cannot be used"
            )

    def wait(self, fn: Callable[[], Any], limit_s: float, what: str) -> Any:
        """Run the blocking ``fn`` (a readback, or waiting for submitted work) within
        ``limit_s`` seconds. Past it, this device is destroyed and dropped and
        GpuTimeoutError names ``what`` and the limit."""
        try:
            ok, value = self._waiter.call(fn, limit_s)
        except TimeoutError:
            self._abandon()
            raise GpuTimeoutError(
                f"{what} did not finish within its time limit of {limit_s:g} s; the GPU "
                f"device was reset",
                limit_s=limit_s,
            ) from None
        if not ok:
            raise translate(value, what) from value
        return value

    def settle(self) -> None:
        """Block until every submitted command buffer has run: a 4-byte readback waits for
        the queue (``on_submitted_work_done`` is not reliable across wgpu releases)."""
        self.queue.read_buffer(self._probe, 0, 4)

    def _abandon(self) -> None:
        global _device
        with _lock:
            if _device is self:
                _device = None
        self.closed = True
        self._waiter.stop()  # its thread ends once the stuck wait returns, if ever

    def close(self) -> None:
        """Destroy the device; idempotent. Buffers made on it become unusable."""
        if self.closed:
            return
        self.closed = True
        self._waiter.stop()
        with contextlib.suppress(Exception):  # already lost: nothing more to release
            self.device.destroy()


def translate(exc: BaseException, what: str) -> GpuError:
    """The GpuError for a wgpu failure during ``what`` (the one translation boundary)."""
    if isinstance(exc, GpuError):
        return exc
    return GpuError(f"{what} failed on the GPU: {type(exc).__name__}: {exc}")
