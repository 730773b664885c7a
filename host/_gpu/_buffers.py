"""``GpuBuffer``: an array that lives on the GPU, carried between nodes by reference.

A GPU node's output is a ``Gpu`` message (``Message.gpu(handle)``) whose data is a
:class:`GpuBuffer`: the device buffer (float32 values, in the units of ``dtype``) plus the
shape, the host dtype it reads back to, and the codec of the Bytes message it stands for
(``"image"``: the RFLI encoding, ``"audio"``, ``"array"``: raw little-endian values). The
next GPU node binds the same device buffer: nothing crosses the bus. A CPU node that reads the
message as Bytes (``decode_image``/``decode_audio`` do) calls :meth:`GpuBuffer.to_message`,
which reads back once and caches, so a fan-out to several CPU nodes reads back once too.

Transfers are counted process-wide (``gpu_counters()``) and per tick: a GPU node's tick emits
one ``GpuTransfer`` event with its uploads/readbacks; a lazy readback in a CPU node emits one
naming the GPU node whose output was read back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from ._device import GpuDevice, gpu_counters
from ._errors import GpuBufferError, GpuLimitError

__all__ = ["CODECS", "GpuBuffer", "TickTransfers", "current_transfers"]

CODECS = ("image", "audio", "array")
_DTYPES = ("uint8", "uint16", "float32")
_local = threading.local()


class TickTransfers:
    """The transfers of one GPU tick (set while the tick runs on its thread)."""

    __slots__ = ("_outer", "bytes_down", "bytes_up", "readbacks", "uploads")

    def __init__(self) -> None:
        self.uploads = self.readbacks = self.bytes_up = self.bytes_down = 0
        self._outer: TickTransfers | None = None

    def __enter__(self) -> TickTransfers:
        self._outer = getattr(_local, "tick", None)
        _local.tick = self
        return self

    def __exit__(self, *exc: object) -> None:
        _local.tick = self._outer

    @property
    def any(self) -> bool:
        return bool(self.uploads or self.readbacks)


def current_transfers() -> TickTransfers | None:
    return getattr(_local, "tick", None)


def _count(up: bool, nbytes: int) -> TickTransfers | None:
    counters = gpu_counters()
    tick = current_transfers()
    if up:
        counters.uploads += 1
        counters.bytes_up += nbytes
        if tick is not None:
            tick.uploads += 1
            tick.bytes_up += nbytes
    else:
        counters.readbacks += 1
        counters.bytes_down += nbytes
        if tick is not None:
            tick.readbacks += 1
            tick.bytes_down += nbytes
    return tick


class GpuBuffer:
    """A float32 array on ``device`` with its host metadata; see the module docstring.

    ``shape`` is the logical shape (H, W, C for images, frames x channels for audio);
    ``dtype`` the host dtype ``to_numpy()`` returns; ``meta`` codec details (``sampleRate``).
    """

    __slots__ = (
        "_host",
        "buffer",
        "codec",
        "device",
        "dtype",
        "encoder",
        "meta",
        "nbytes",
        "origin",
        "shape",
    )

    def __init__(
        self,
        device: GpuDevice,
        buffer: Any,
        shape: tuple[int, ...],
        dtype: str,
        codec: str = "array",
        meta: dict[str, Any] | None = None,
    ) -> None:
        if codec not in CODECS or dtype not in _DTYPES:
            raise GpuBufferError(f"GpuBuffer: codec {codec!r} / dtype {dtype!r} not supported")
        self.device = device
        self.buffer = buffer
        self.shape = tuple(int(n) for n in shape)
        self.dtype = dtype
        self.codec = codec
        self.meta = dict(meta or {})
        self.nbytes = int(np.prod(self.shape, dtype=np.int64)) * 4
        self.origin: tuple[Any, str, str] | None = None  # (event hub, node id, component)
        #: Turns the host array into the Bytes message this buffer stands for (set by the
        #: template that made it; raw little-endian float32/uint values otherwise).
        self.encoder: Callable[[np.ndarray], Any] | None = None
        self._host: np.ndarray | None = None

    def __repr__(self) -> str:
        dims = "x".join(map(str, self.shape))
        return f"<GpuBuffer {self.codec} {dims} {self.dtype} on {self.device.name!r}>"

    @property
    def size(self) -> int:
        """Number of values."""
        return self.nbytes // 4

    # -- making ----------------------------------------------------------------------------
    @staticmethod
    def _storage(device: GpuDevice, nbytes: int, what: str) -> Any:
        limit = min(
            device.limits["max-storage-buffer-binding-size"], device.limits["max-buffer-size"]
        )
        if nbytes > limit:
            raise GpuLimitError(
                f"{what}: {nbytes} bytes on the GPU is more than the device's "
                f"max-storage-buffer-binding-size of {limit} bytes",
                limit="max-storage-buffer-binding-size",
                value=nbytes,
                maximum=limit,
            )
        usage = device.wgpu.BufferUsage
        return device.device.create_buffer(
            size=max(4, nbytes), usage=usage.STORAGE | usage.COPY_SRC | usage.COPY_DST
        )

    @classmethod
    def empty(
        cls,
        device: GpuDevice,
        shape: tuple[int, ...],
        dtype: str,
        codec: str = "array",
        meta: dict[str, Any] | None = None,
    ) -> GpuBuffer:
        """An uninitialised device array (a kernel's output)."""
        n = int(np.prod(shape, dtype=np.int64))
        with device.lock:
            device.check_open()
            buf = cls._storage(device, n * 4, f"a {'x'.join(map(str, shape))} GPU array")
        return cls(device, buf, shape, dtype, codec, meta)

    @classmethod
    def upload(
        cls,
        device: GpuDevice,
        array: np.ndarray,
        codec: str = "array",
        meta: dict[str, Any] | None = None,
    ) -> GpuBuffer:
        """Copy ``array`` (uint8/uint16/float32, any shape) to the device as float32."""
        dtype = array.dtype.name
        if dtype not in _DTYPES:
            array = array.astype(np.float32)
            dtype = "float32"
        values = np.ascontiguousarray(array, dtype=np.float32)
        out = cls.empty(device, array.shape, dtype, codec, meta)
        with device.lock:
            device.check_open()
            if values.nbytes:
                device.queue.write_buffer(out.buffer, 0, values)
        _count(True, values.nbytes)
        return out

    # -- reading ---------------------------------------------------------------------------
    def to_numpy(self, limit_s: float = 60.0) -> np.ndarray:
        """The values as a host array of ``dtype`` and ``shape``: read back on the first call,
        then cached (read-only)."""
        host = self._host
        if host is not None:
            return host
        device = self.device
        with device.lock:
            if self._host is not None:
                return self._host
            device.check_open()
            if self.nbytes:
                raw = device.wait(
                    lambda: device.queue.read_buffer(self.buffer, 0, self.nbytes),
                    limit_s,
                    f"reading back {self!r}",
                )
                values = np.frombuffer(raw, dtype=np.float32, count=self.size)
            else:
                values = np.zeros(0, dtype=np.float32)
            values = values.reshape(self.shape)
            if self.dtype != "float32":  # kernels write values already rounded and clipped
                values = values.astype(self.dtype)
            values.flags.writeable = False
            self._host = values
        tick = _count(False, self.nbytes)
        if tick is None and self.origin is not None:
            hub, node, component = self.origin
            if hub.active:
                hub.publish("GpuTransfer", node, component, 0, 1, 0, self.nbytes)
        return values

    def to_message(self) -> Any:
        """The Bytes message this buffer stands for (reads back once)."""
        values = self.to_numpy()
        if self.encoder is not None:
            return self.encoder(values)
        from .._core._messages import Message

        little = values.astype(values.dtype.newbyteorder("<"), copy=False)
        return Message.bytes(np.ascontiguousarray(little).tobytes())
