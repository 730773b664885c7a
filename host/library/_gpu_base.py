"""What the GPU templates share: the fallback policy, turning in-port messages into device
buffers, 1-D dispatch geometry, and the ``GpuTransfer`` event of a tick.

Config every GPU template reads:

- ``fallback``: ``"none"`` (default): without a GPU adapter the tick fails with
  ``NoGpuAdapterError``, whose message says how to get one; ``"cpu"``: the numpy twin
  (``cpu_twin``) runs instead, with one warning per node.
- ``gpuTimeout``: seconds one dispatch may take (default 10); past it the tick fails with
  ``GpuTimeoutError`` and the device is reset.

In-ports accept a Bytes message (uploaded) or a ``Gpu`` message from another GPU node (bound
as it is, no copy); out-ports send ``Gpu`` messages, the device form of the same Bytes, so a
GPU node connects wherever its CPU twin does (port type ``Bytes``).
"""

from __future__ import annotations

import logging
import math
import struct
import threading
from typing import Any, ClassVar

import numpy as np

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import ActorError
from .._gpu import (
    DEFAULT_LIMIT_S,
    ComputeKernel,
    GpuBuffer,
    GpuDevice,
    NoGpuAdapterError,
    TickTransfers,
    dispatch,
    shared_device,
)
from ._base import LibraryActor, config_choice, config_number
from ._media import decode_image, encode_image

__all__ = ["GROUP", "GpuActor", "GpuImageActor", "params", "run_1d"]

log = logging.getLogger("reflow.library.gpu")

#: Invocations per workgroup of the 1-D kernels.
GROUP = 64
#: WGSL shared by the 1-D kernels: the flat index of an invocation in a 2-D grid of groups
#: (one dimension alone is limited to 65535 groups, 4 M values).
INDEX_WGSL = """
fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.y * nwg.x * 64u + gid.x;
}
fn quantise(v: f32, mode: u32, top: f32) -> f32 {
    if (mode == 1u) { return clamp(round(v), 0.0, top); }
    if (mode == 2u) { return clamp(v, 0.0, 1.0); }
    return v;
}
"""

_FALLBACK_CONFIG: dict[str, dict[str, Any]] = {
    "fallback": {"type": "string", "default": "none"},
    "gpuTimeout": {"type": "number", "default": DEFAULT_LIMIT_S},
}
_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def params(*fields: int | float) -> bytes:
    """A uniform block: ints as u32, floats as f32, padded to 16 bytes."""
    raw = b"".join(
        struct.pack("<f", v) if isinstance(v, float) else struct.pack("<I", v) for v in fields
    )
    return raw + b"\0" * (-len(raw) % 16)


def uniform(device: GpuDevice, data: bytes) -> Any:
    usage = device.wgpu.BufferUsage
    with device.lock:
        device.check_open()
        buf = device.device.create_buffer(size=len(data), usage=usage.UNIFORM | usage.COPY_DST)
        device.queue.write_buffer(buf, 0, data)
    return buf


def readonly(device: GpuDevice, values: np.ndarray) -> Any:
    """A small read-only storage buffer (kernel weights); not counted as a data upload."""
    data = np.ascontiguousarray(values, dtype=np.float32)
    usage = device.wgpu.BufferUsage
    with device.lock:
        device.check_open()
        buf = device.device.create_buffer(
            size=max(16, data.nbytes), usage=usage.STORAGE | usage.COPY_DST
        )
        device.queue.write_buffer(buf, 0, data)
    return buf


def run_1d(
    ctx: ActorContext,
    device: GpuDevice,
    kernel: ComputeKernel,
    count: int,
    bindings: list[tuple[str, Any]],
) -> None:
    """Dispatch ``kernel`` over ``count`` invocations laid out as :data:`INDEX_WGSL` expects."""
    groups = max(1, math.ceil(count / GROUP))
    x = min(groups, device.limits["max-compute-workgroups-per-dimension"])
    dispatch(device, kernel, bindings, (x, math.ceil(groups / x), 1), limit_s=time_limit(ctx))


def time_limit(ctx: ActorContext) -> float:
    return config_number(ctx, "gpuTimeout", DEFAULT_LIMIT_S, minimum=0, exclusive_minimum=True)


class GpuActor(LibraryActor):
    """Base of the GPU templates: ``run_gpu(ctx, device)`` returns the outputs; without a
    device the fallback policy runs ``cpu_twin`` or fails the tick."""

    execution = "worker"
    cpu_twin: ClassVar[type[LibraryActor] | None] = None
    config_schema: dict[str, dict[str, Any]] = dict(_FALLBACK_CONFIG)

    def run_gpu(self, ctx: ActorContext, device: GpuDevice) -> dict[str, Message]:
        raise NotImplementedError

    def run(self, ctx: ActorContext) -> None:
        fallback = config_choice(ctx, "fallback", ("none", "cpu"), "none")
        time_limit(ctx)
        try:
            device = shared_device()
        except NoGpuAdapterError as exc:
            if fallback != "cpu" or self.cpu_twin is None:
                raise type(exc)(
                    f"node {ctx.node!r} ({ctx.component}, fallback={fallback!r}): {exc}",
                    wanted=exc.wanted,
                ) from exc
            key = (ctx.node, ctx.component)
            with _warned_lock:
                first = key not in _warned
                _warned.add(key)
            if first:
                log.warning(
                    "node %r (%s): no GPU, running the numpy template %s instead: %s",
                    ctx.node,
                    ctx.component,
                    self.cpu_twin.component,
                    exc,
                )
            self.cpu_twin().run(ctx)
            return
        with TickTransfers() as moved:
            outputs = self.run_gpu(ctx, device)
        hub = ctx._hub
        for msg in outputs.values():
            if msg["type"] == "Gpu":
                msg["data"].origin = (hub, ctx.node, ctx.component)
        if moved.any and hub.active:
            hub.publish(
                "GpuTransfer",
                ctx.node,
                ctx.component,
                moved.uploads,
                moved.readbacks,
                moved.bytes_up,
                moved.bytes_down,
            )
        ctx.done(outputs)


def image_buffer(ctx: ActorContext, device: GpuDevice, port: str) -> GpuBuffer:
    """The image on ``port`` as a device buffer: a Gpu message's own buffer, or an upload."""
    msg = ctx.inputs.get(port)
    if msg is not None and msg.get("type") == "Gpu":
        handle = msg["data"]
        if not isinstance(handle, GpuBuffer) or handle.codec != "image":
            raise ActorError(f"in-port {port!r}: expected a GPU image, got {handle!r}")
        if handle.device is device:
            return handle
        msg = handle.to_message()  # made on a device since reset: its cached host copy
    image = decode_image(msg, port)
    return GpuBuffer.upload(device, image, "image")


def new_image(device: GpuDevice, h: int, w: int, c: int, dtype: str) -> GpuBuffer:
    out = GpuBuffer.empty(device, (h, w, c), dtype, "image")
    out.encoder = encode_image
    return out


def quant_mode(dtype: str) -> tuple[int, float]:
    """The kernels' (rounding mode, top of range) for an image dtype (as ``_to_dtype``)."""
    if dtype == "uint8":
        return 1, 255.0
    if dtype == "uint16":
        return 1, 65535.0
    return 2, 1.0


class GpuImageActor(GpuActor):
    inports = ["in"]
    outports = ["out"]
    inport_types = {"in": "Bytes"}
    outport_types = {"out": "Bytes"}

    def process(self, ctx: ActorContext, device: GpuDevice, src: GpuBuffer) -> GpuBuffer:
        raise NotImplementedError

    def run_gpu(self, ctx: ActorContext, device: GpuDevice) -> dict[str, Message]:
        src = image_buffer(ctx, device, "in")
        out = self.process(ctx, device, src)
        if out.encoder is None:
            out.encoder = encode_image
        return {"out": Message.gpu(out)}
