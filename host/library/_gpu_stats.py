"""GPU reductions: ``tpl_gpu_image_info``, the GPU twin of ``tpl_image_info`` (width, height,
channels, dtype, and min / max / mean over every value), computed where the image lives.

The kernel reduces in two steps: each of up to 1024 workgroups of 256 invocations walks the
array with a stride, then folds its invocations' partial sums/minima/maxima in workgroup
memory; the host reads back the 4 x groups partials (at most 16 KiB, the only readback) and
combines them in float64. Sums accumulate in float32 per invocation, so the mean matches the
numpy twin's float64 mean to about 1e-6 relative; min and max are exact; a NaN anywhere
makes all three NaN, as in numpy.
"""

from __future__ import annotations

import math

import numpy as np

from .._core._actor import ActorContext
from .._core._messages import Message
from .._gpu import ComputeKernel, GpuBuffer, GpuDevice, dispatch
from ._base import LibraryActor
from ._gpu_base import GpuActor, image_buffer, params, time_limit, uniform
from ._image import ImageInfo

__all__ = ["GPU_STATS_TEMPLATES", "reduce_sum_min_max"]

_WG = 256
_MAX_GROUPS = 1024

_REDUCE = ComputeKernel(
    """
struct P { n: u32, stride: u32, a: u32, b: u32 }
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> partial: array<f32>;
@group(0) @binding(2) var<uniform> p: P;
var<workgroup> s_sum: array<f32, 256>;
var<workgroup> s_min: array<f32, 256>;
var<workgroup> s_max: array<f32, 256>;
var<workgroup> s_nan: array<u32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(workgroup_id) wid: vec3<u32>) {
    var acc = 0.0;
    var lo = 3.4e38;
    var hi = -3.4e38;
    var nan = 0u;
    for (var i = gid.x; i < p.n; i += p.stride) {
        let v = src[i];
        // NaN tested on the bits: min/max of a NaN is undefined in WGSL
        if ((bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u) { nan = 1u; continue; }
        acc += v;
        lo = min(lo, v);
        hi = max(hi, v);
    }
    s_sum[lid.x] = acc;
    s_min[lid.x] = lo;
    s_max[lid.x] = hi;
    s_nan[lid.x] = nan;
    workgroupBarrier();
    for (var half = 128u; half > 0u; half = half / 2u) {
        if (lid.x < half) {
            s_sum[lid.x] += s_sum[lid.x + half];
            s_min[lid.x] = min(s_min[lid.x], s_min[lid.x + half]);
            s_max[lid.x] = max(s_max[lid.x], s_max[lid.x + half]);
            s_nan[lid.x] = max(s_nan[lid.x], s_nan[lid.x + half]);
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        partial[wid.x * 4u] = s_sum[0];
        partial[wid.x * 4u + 1u] = s_min[0];
        partial[wid.x * 4u + 2u] = s_max[0];
        partial[wid.x * 4u + 3u] = f32(s_nan[0]);
    }
}
""",
    name="gpu_reduce",
)


def reduce_sum_min_max(
    device: GpuDevice, src: GpuBuffer, limit_s: float
) -> tuple[float, float, float]:
    """(sum, min, max) of every value of ``src`` (not empty), reduced on the device."""
    groups = max(1, min(_MAX_GROUPS, math.ceil(src.size / _WG)))
    partial = GpuBuffer.empty(device, (groups, 4), "float32")
    block = uniform(device, params(src.size, groups * _WG, 0, 0))
    dispatch(
        device,
        _REDUCE,
        [("read", src.buffer), ("write", partial.buffer), ("uniform", block)],
        (groups,),
        limit_s=limit_s,
    )
    parts = partial.to_numpy().astype(np.float64)
    if parts[:, 3].any():  # as numpy: a NaN anywhere makes every statistic NaN
        return math.nan, math.nan, math.nan
    return float(parts[:, 0].sum()), float(parts[:, 1].min()), float(parts[:, 2].max())


class GpuImageInfo(GpuActor):
    """GPU twin of ``tpl_image_info``: the image's shape and dtype, and min / max / mean over
    all channels (in the image's units), reduced on the device.

    Ports: in ``in`` (image, Bytes or Gpu) → out ``out`` (Object ``{width, height, channels,
    dtype, min, max, mean}``; ``None`` statistics for an empty image). Config: ``fallback``,
    ``gpuTimeout``.
    """

    component = "tpl_gpu_image_info"
    cpu_twin = ImageInfo
    inports = ["in"]
    outports = ["out"]
    inport_types = {"in": "Bytes"}
    outport_types = {"out": "Object"}

    def run_gpu(self, ctx: ActorContext, device: GpuDevice) -> dict[str, Message]:
        src = image_buffer(ctx, device, "in")
        h, w, c = src.shape
        info: dict[str, object] = {"width": w, "height": h, "channels": c, "dtype": src.dtype}
        if src.size == 0:
            info.update(min=None, max=None, mean=None)
        else:
            total, lo, hi = reduce_sum_min_max(device, src, time_limit(ctx))
            info.update(min=lo, max=hi, mean=total / src.size)
        return {"out": Message.object(info)}


GPU_STATS_TEMPLATES: dict[str, type[LibraryActor]] = {GpuImageInfo.component: GpuImageInfo}
