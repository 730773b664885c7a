"""One tick of a pack's WGSL kernel: in-port messages to device buffers, the sizes and the
dispatch its manifest rules give, the bounds, the pipeline, the dispatch, the outputs.

Bounds, all checked before anything is allocated or dispatched (node config, with defaults):

- ``gpuMaxWorkgroups`` (default 65536): most workgroups of one dispatch, all axes together;
  each axis is also held to the device's ``max-compute-workgroups-per-dimension``;
- ``gpuMaxBufferBytes`` (default 256 MiB, never above the device's
  ``max-storage-buffer-binding-size``): largest input or output buffer;
- ``gpuTimeout`` (default 10 s): how long the dispatch may take (``GpuTimeoutError``, the
  device is reset; see PACK_FORMAT.md §3.1 for what a software driver does with the work).

f32 and vec4<f32> outputs stay on the device as ``GpuBuffer`` handles (``Gpu`` messages) that
the next GPU node binds as they are; u32/i32 outputs are read back at the end of the tick and
sent as Bytes (the handles shared between GPU nodes hold float32 values).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import ActorError
from ..abi._manifest_wgsl import ELEMENTS, SizeRule, WgslBinding, WgslKernelSpec
from ._buffers import GpuBuffer, _count
from ._device import GpuDevice, gpu_counters, translate
from ._errors import GpuKernelError, GpuLimitError
from ._kernels import DEFAULT_LIMIT_S, check_workgroups

__all__ = [
    "DEFAULT_MAX_BUFFER",
    "DEFAULT_MAX_WORKGROUPS",
    "KernelSource",
    "TickLimits",
    "run_kernel",
]

DEFAULT_MAX_WORKGROUPS = 65536
DEFAULT_MAX_BUFFER = 256 << 20
_MAX_UNIFORM = 64 << 10
_NUMPY = {"f32": "<f4", "u32": "<u4", "i32": "<i4", "vec4<f32>": "<f4"}


@dataclass(frozen=True)
class KernelSource:
    """A verified kernel of a pack: its text and what errors call it."""

    text: str
    sha256: str
    pack: str
    path: str
    template: str

    @property
    def what(self) -> str:
        return f"pack {self.pack!r} kernel {self.path} (template {self.template!r})"


@dataclass(frozen=True)
class TickLimits:
    time_s: float
    max_workgroups: int
    max_buffer: int


def _config(ctx: ActorContext, schema: Mapping[str, Any], key: str) -> Any:
    config = ctx.config or {}
    if key in config:
        return config[key]
    props = schema.get("properties") if isinstance(schema, Mapping) else None
    prop = props.get(key) if isinstance(props, Mapping) else None
    if isinstance(prop, Mapping) and "default" in prop:
        return prop["default"]
    return None


def _bad(ctx: ActorContext, what: str) -> ActorError:
    return ActorError(
        f"node {ctx.node!r} ({ctx.component}): {what}", node=ctx.node, component=ctx.component
    )


def _positive(ctx: ActorContext, key: str, default: float, integer: bool) -> float:
    value = (ctx.config or {}).get(key, default)
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or value <= 0 or (integer and value != int(value)):
        kind = "a positive integer" if integer else "a positive number of seconds"
        raise _bad(ctx, f"config {key!r} must be {kind}, got {value!r}")
    return value


def tick_limits(ctx: ActorContext, device: GpuDevice) -> TickLimits:
    device_max = min(
        device.limits["max-storage-buffer-binding-size"], device.limits["max-buffer-size"]
    )
    return TickLimits(
        time_s=float(_positive(ctx, "gpuTimeout", DEFAULT_LIMIT_S, False)),
        max_workgroups=int(_positive(ctx, "gpuMaxWorkgroups", DEFAULT_MAX_WORKGROUPS, True)),
        max_buffer=min(
            int(_positive(ctx, "gpuMaxBufferBytes", DEFAULT_MAX_BUFFER, True)), device_max
        ),
    )


def _check_bytes(nbytes: int, limits: TickLimits, what: str) -> None:
    if nbytes > limits.max_buffer:
        raise GpuLimitError(
            f"{what}: {nbytes} bytes is over the buffer limit of {limits.max_buffer} bytes "
            "(config gpuMaxBufferBytes, at most the device's max-storage-buffer-binding-size)",
            limit="gpuMaxBufferBytes",
            value=nbytes,
            maximum=limits.max_buffer,
        )


@dataclass
class _Bound:
    buffer: Any  # the wgpu buffer
    count: int  # elements of the binding's element type
    handle: GpuBuffer | None = None


def _raw_buffer(device: GpuDevice, nbytes: int, usage_bits: int) -> Any:
    with device.lock:
        device.check_open()
        # exact size (a multiple of 4): arrayLength() in the kernel is the element count
        return device.device.create_buffer(size=max(4, nbytes), usage=usage_bits)


def _values(
    ctx: ActorContext, b: WgslBinding, msg: Mapping[str, Any], limits: TickLimits, what: str
) -> np.ndarray:
    """A Bytes or Array message as the binding's element values (little-endian)."""
    kind = msg.get("type")
    width, _ = ELEMENTS[b.element]
    if kind == "Bytes":
        data = msg.get("data")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise _bad(ctx, f"{what}: a Bytes message without bytes")
        _check_bytes(len(data), limits, what)
        if len(data) % width:
            raise _bad(
                ctx,
                f"{what}: {len(data)} bytes is not a whole number of {b.element} values "
                f"({width} bytes each, little-endian)",
            )
        return np.frombuffer(bytes(data), dtype=_NUMPY[b.element])
    if kind == "Array":
        items = msg.get("data")
        if not isinstance(items, list):
            raise _bad(ctx, f"{what}: an Array message without a list")
        flat: list[Any] = []
        for item in items:
            value = item.get("data") if isinstance(item, Mapping) else item
            if isinstance(value, list) and b.element == "vec4<f32>":
                flat.extend(value)
            else:
                flat.append(value)
            if len(flat) * 4 > limits.max_buffer:
                _check_bytes(len(flat) * 4, limits, what)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat):
            raise _bad(ctx, f"{what}: an Array of numbers is expected")
        if b.element == "vec4<f32>" and len(flat) % 4:
            raise _bad(ctx, f"{what}: {len(flat)} numbers is not a whole number of vec4<f32>")
        return _as_element(ctx, flat, b.element, what)
    raise _bad(ctx, f"{what}: expected Bytes, an Array of numbers or a Gpu message, got {kind!r}")


def _as_element(ctx: ActorContext, values: list[Any], element: str, what: str) -> np.ndarray:
    """Python numbers as the element type, refusing what it cannot hold (no silent wrap or
    overflow to infinity)."""
    try:
        with np.errstate(over="raise", invalid="raise"):
            arr = np.asarray(values, dtype=_NUMPY[element])
    except (OverflowError, ValueError, FloatingPointError, TypeError) as exc:
        raise _bad(ctx, f"{what}: a value does not fit {element}: {exc}") from None
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise _bad(ctx, f"{what}: a value does not fit {element} (finite, |v| < 3.4e38)")
    if arr.dtype.kind in "iu" and any(isinstance(v, float) and v != int(v) for v in values):
        raise _bad(ctx, f"{what}: {element} values must be whole numbers")
    return arr


def bind_input(ctx: ActorContext, device: GpuDevice, b: WgslBinding, limits: TickLimits) -> _Bound:
    from ..library._media import decode_image, encode_image

    what = f"in-port {b.inport!r}"
    msg = ctx.inputs.get(b.inport)
    if msg is None:
        raise _bad(
            ctx,
            f"{what} has no packet this tick; a kernel needs every bound in-port "
            "(declare await_all_inports = true for several)",
        )
    width = ELEMENTS[b.element][0] // 4
    if msg.get("type") == "Gpu":
        handle = msg.get("data")
        if not isinstance(handle, GpuBuffer):
            raise _bad(ctx, f"{what}: a Gpu message without a GpuBuffer")
        if b.element not in ("f32", "vec4<f32>"):
            raise _bad(
                ctx,
                f"{what} binds {b.element} values; a Gpu message holds f32 values: send "
                "Bytes, or declare the binding f32",
            )
        if b.format == "image" and handle.codec != "image":
            raise _bad(ctx, f"{what}: expected a GPU image, got {handle!r}")
        if b.format == "image" and b.element == "vec4<f32>" and handle.shape[-1:] != (4,):
            raise _bad(ctx, f"{what}: a vec4<f32> image binding needs RGBA, got {handle!r}")
        if handle.device is device:
            _check_bytes(handle.nbytes, limits, what)
            if handle.size % width:
                raise _bad(
                    ctx, f"{what}: {handle.size} values is not a whole number of {b.element}"
                )
            return _Bound(handle.buffer, handle.size // width, handle)
        msg = handle.to_message()  # made on a device since reset: its cached host copy
    if b.format == "image":
        image = decode_image(msg, b.inport)
        if b.element == "vec4<f32>" and (image.ndim != 3 or image.shape[2] != 4):
            raise _bad(
                ctx, f"{what}: a vec4<f32> image binding needs RGBA, got shape {image.shape}"
            )
        _check_bytes(image.size * 4, limits, what)
        handle = GpuBuffer.upload(device, image, "image")
        handle.encoder = encode_image
        return _Bound(handle.buffer, handle.size // width, handle)
    values = _values(ctx, b, msg, limits, what)
    if b.element in ("f32", "vec4<f32>"):
        handle = GpuBuffer.upload(device, values.astype(np.float32))
        return _Bound(handle.buffer, handle.size // width, handle)
    usage = device.wgpu.BufferUsage
    buf = _raw_buffer(device, values.nbytes, usage.STORAGE | usage.COPY_DST)
    with device.lock:
        device.check_open()
        if values.nbytes:
            device.queue.write_buffer(buf, 0, values)
    _count(True, values.nbytes)
    return _Bound(buf, values.size)


def _resolve(
    ctx: ActorContext,
    rule: SizeRule,
    inputs: Mapping[str, _Bound],
    schema: Mapping[str, Any],
    what: str,
) -> int:
    if isinstance(rule, int):
        return rule
    source, name = rule
    if source == "in":
        return inputs[name].count
    value = _config(ctx, schema, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(ctx, f"{what} is config {name!r}, which must be an integer >= 0, got {value!r}")
    return value


def _uniform(
    ctx: ActorContext, device: GpuDevice, b: WgslBinding, schema: Mapping[str, Any]
) -> Any:
    value = _config(ctx, schema, b.config)
    values = value if isinstance(value, list) else [value]
    if not values or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    ):
        raise _bad(
            ctx,
            f"config {b.config!r} (uniform @group({b.group}) @binding({b.binding}), "
            f"{b.element}) must be a number or a list of numbers, got {value!r}",
        )
    data = _as_element(ctx, values, b.element, f"config {b.config!r}").tobytes()
    if len(data) > _MAX_UNIFORM:
        raise _bad(
            ctx, f"config {b.config!r} is {len(data)} bytes, over a uniform's {_MAX_UNIFORM}"
        )
    data += b"\0" * (-len(data) % 16)
    usage = device.wgpu.BufferUsage
    buf = _raw_buffer(device, len(data), usage.UNIFORM | usage.COPY_DST)
    with device.lock:
        device.check_open()
        device.queue.write_buffer(buf, 0, data)
    return buf


def _pipeline(
    device: GpuDevice, source: KernelSource, spec: WgslKernelSpec, limit_s: float
) -> tuple[Any, list[Any]]:
    """The kernel's compiled pipeline on ``device`` (cached). Compiling runs under the tick's
    time limit, like the dispatch: a software driver compiles on the CPU, and a kernel that
    takes it past the limit fails its tick (GpuTimeoutError; the device is reset)."""
    groups = max(b.group for b in spec.bindings) + 1
    sig = ";".join(b.describe() for b in spec.bindings)
    key = (source.sha256, f"wgsl|{spec.entry_point}|{sig}")
    cached = device.pipelines.get(key)
    if cached is not None:
        return cached
    wgpu = device.wgpu
    kinds = {
        ("storage", "read"): wgpu.BufferBindingType.read_only_storage,
        ("storage", "read_write"): wgpu.BufferBindingType.storage,
        ("uniform", ""): wgpu.BufferBindingType.uniform,
    }

    def build() -> tuple[Any, Any]:
        try:
            module = device.device.create_shader_module(code=source.text, label=source.template)
            layouts = [
                device.device.create_bind_group_layout(
                    entries=[
                        {
                            "binding": b.binding,
                            "visibility": wgpu.ShaderStage.COMPUTE,
                            "buffer": {"type": kinds[(b.type, b.access)]},
                        }
                        for b in spec.bindings
                        if b.group == g
                    ]
                )
                for g in range(groups)
            ]
            pipeline = device.device.create_compute_pipeline(
                layout=device.device.create_pipeline_layout(bind_group_layouts=layouts),
                compute={"module": module, "entry_point": spec.entry_point},
            )
        except Exception as exc:  # naga parse/validation, layout mismatch: the kernel's fault
            return None, exc
        return (pipeline, layouts), None

    built, error = device.wait(build, limit_s, f"compiling {source.what}")
    if error is not None:
        raise GpuKernelError(
            f"{source.what} was refused by wgpu: {str(error).strip()[:2000]}",
            kernel=f"{source.pack}:{source.template}",
        ) from error
    device.pipelines[key] = built
    return built


def run_kernel(
    ctx: ActorContext,
    device: GpuDevice,
    source: KernelSource,
    spec: WgslKernelSpec,
    schema: Mapping[str, Any],
) -> dict[str, Message]:
    """Run one tick of the kernel; return its out-port messages."""
    limits = tick_limits(ctx, device)
    inputs = {b.inport: bind_input(ctx, device, b, limits) for b in spec.bindings if b.inport}
    counts: list[int] = []
    for axis, rule in enumerate(spec.dispatch):
        size = _resolve(ctx, rule, inputs, schema, f"dispatch[{axis}]")
        counts.append(-(-size // spec.workgroup_size[axis]))
    total = math.prod(counts)
    if total > limits.max_workgroups:
        raise GpuLimitError(
            f"{source.what}: a dispatch of {'x'.join(map(str, counts))} = {total} workgroups is "
            f"over the limit of {limits.max_workgroups} (config gpuMaxWorkgroups)",
            limit="gpuMaxWorkgroups",
            value=total,
            maximum=limits.max_workgroups,
        )
    if total:
        check_workgroups(device, counts, source.what)
    outputs: dict[str, tuple[WgslBinding, Any, GpuBuffer | None, int]] = {}
    buffers: dict[tuple[int, int], Any] = {}
    usage = device.wgpu.BufferUsage
    for b in spec.bindings:
        if b.inport:
            buffers[(b.group, b.binding)] = inputs[b.inport].buffer
        elif b.config:
            buffers[(b.group, b.binding)] = _uniform(ctx, device, b, schema)
        else:
            assert b.size is not None
            n = _resolve(ctx, b.size, inputs, schema, f"out-port {b.outport!r} size")
            nbytes = n * ELEMENTS[b.element][0]
            _check_bytes(nbytes, limits, f"out-port {b.outport!r}")
            handle: GpuBuffer | None = None
            if b.format == "image":
                src = inputs[b.size[1]].handle
                assert src is not None
                handle = GpuBuffer.empty(device, src.shape, src.dtype, "image", src.meta)
                handle.encoder = src.encoder
                buf = handle.buffer
            elif b.element in ("f32", "vec4<f32>"):
                handle = GpuBuffer.empty(device, (nbytes // 4,), "float32")
                buf = handle.buffer
            else:
                buf = _raw_buffer(device, nbytes, usage.STORAGE | usage.COPY_SRC | usage.COPY_DST)
            buffers[(b.group, b.binding)] = buf
            outputs[b.outport] = (b, buf, handle, nbytes)
    if total:
        _dispatch(device, source, spec, buffers, counts, limits.time_s)
    result: dict[str, Message] = {}
    for port, (_b, buf, handle, nbytes) in outputs.items():
        if handle is not None:
            result[port] = Message.gpu(handle)
            continue
        raw = b""
        if nbytes:
            raw = device.wait(
                functools.partial(device.queue.read_buffer, buf, 0, nbytes),
                limits.time_s,
                f"reading back out-port {port!r} of {source.what}",
            )
        _count(False, nbytes)
        result[port] = Message.bytes(bytes(raw))
    return result


def _dispatch(
    device: GpuDevice,
    source: KernelSource,
    spec: WgslKernelSpec,
    buffers: Mapping[tuple[int, int], Any],
    counts: list[int],
    limit_s: float,
) -> None:
    with device.lock:
        device.check_open()
        pipeline, layouts = _pipeline(device, source, spec, limit_s)
        try:
            groups = [
                device.device.create_bind_group(
                    layout=layout,
                    entries=[
                        {
                            "binding": b.binding,
                            "resource": {
                                "buffer": buffers[(b.group, b.binding)],
                                "offset": 0,
                                "size": buffers[(b.group, b.binding)].size,
                            },
                        }
                        for b in spec.bindings
                        if b.group == g
                    ],
                )
                for g, layout in enumerate(layouts)
            ]
            encoder = device.device.create_command_encoder()
            cpass = encoder.begin_compute_pass()
            cpass.set_pipeline(pipeline)
            for g, group in enumerate(groups):
                cpass.set_bind_group(g, group)
            cpass.dispatch_workgroups(*counts, *(1,) * (3 - len(counts)))
            cpass.end()
            commands = encoder.finish()
        except Exception as exc:
            raise translate(exc, source.what) from exc

        def run() -> None:
            device.queue.submit([commands])
            device.settle()

        device.wait(run, limit_s, f"{source.what} ({'x'.join(map(str, counts))} groups)")
        gpu_counters().dispatches += 1
