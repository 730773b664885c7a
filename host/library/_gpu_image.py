"""GPU twins of the image templates (``tpl_gpu_image_*``), on WebGPU compute kernels.

Each takes and gives the same images as its numpy twin in :mod:`reflow.library._image` (same
config, same errors) and rounds/clips its output as that twin does, so a result differs from
the numpy one by at most one unit of the dtype (float32 arithmetic where numpy sums in another
order or in float64; see ``tests/gpu/test_gpu_image.py``). Outputs stay on the device as
``Gpu`` messages until a CPU node reads them.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .._core._actor import ActorContext
from .._errors import ActorError
from .._gpu import ComputeKernel, GpuBuffer, GpuDevice
from ._base import LibraryActor, config_bool, config_choice, config_int, config_number
from ._gpu_base import (
    INDEX_WGSL,
    GpuImageActor,
    new_image,
    params,
    quant_mode,
    readonly,
    run_1d,
    uniform,
)
from ._image import ImageAdjust, ImageBlur, ImageGrayscale, ImageResize, ImageThreshold
from ._media import MAX_PIXELS

__all__ = ["GPU_IMAGE_TEMPLATES", "pixel_pass"]

_HEAD = """
struct P { h: u32, w: u32, c: u32, n: u32, mode: u32, a: u32, b: u32, d: u32,
           top: f32, f0: f32, f1: f32, f2: f32, oh: u32, ow: u32, oc: u32, e: u32 }
@group(0) @binding(0) var<storage, read> src: array<f32>;
"""

_BLUR = ComputeKernel(
    _HEAD
    + INDEX_WGSL
    + """
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
// one pass of a separable convolution along axis p.a (0: rows, 1: columns), edges repeated
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    let ch = i % p.c;
    let x = (i / p.c) % p.w;
    let y = i / (p.c * p.w);
    let r = i32(p.b);
    var acc = 0.0;
    for (var t = -r; t <= r; t++) {
        var yy = i32(y);
        var xx = i32(x);
        if (p.a == 0u) { yy = clamp(yy + t, 0, i32(p.h) - 1); }
        else { xx = clamp(xx + t, 0, i32(p.w) - 1); }
        acc += k[u32(t + r)] * src[(u32(yy) * p.w + u32(xx)) * p.c + ch];
    }
    dst[i] = quantise(acc, p.mode, p.top);
}
""",
    name="gpu_blur",
)

_RESIZE = ComputeKernel(
    _HEAD
    + INDEX_WGSL
    + """
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> p: P;
// output (oh, ow, c); p.a: 0 bilinear (pixel centres aligned, clamped), 1 nearest
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    let ch = i % p.c;
    let x = (i / p.c) % p.ow;
    let y = i / (p.c * p.ow);
    let sy = (f32(y) + 0.5) * f32(p.h) / f32(p.oh);
    let sx = (f32(x) + 0.5) * f32(p.w) / f32(p.ow);
    if (p.a == 1u) {
        let ny = min(u32(sy), p.h - 1u);
        let nx = min(u32(sx), p.w - 1u);
        dst[i] = src[(ny * p.w + nx) * p.c + ch];
        return;
    }
    let fy = clamp(sy - 0.5, 0.0, f32(p.h - 1u));
    let fx = clamp(sx - 0.5, 0.0, f32(p.w - 1u));
    let y0 = u32(floor(fy));
    let x0 = u32(floor(fx));
    let y1 = min(y0 + 1u, p.h - 1u);
    let x1 = min(x0 + 1u, p.w - 1u);
    let wy = fy - f32(y0);
    let wx = fx - f32(x0);
    let top = src[(y0 * p.w + x0) * p.c + ch] * (1.0 - wx) + src[(y0 * p.w + x1) * p.c + ch] * wx;
    let bot = src[(y1 * p.w + x0) * p.c + ch] * (1.0 - wx) + src[(y1 * p.w + x1) * p.c + ch] * wx;
    dst[i] = quantise(top * (1.0 - wy) + bot * wy, p.mode, p.top);
}
""",
    name="gpu_resize",
)

_PIXEL = ComputeKernel(
    _HEAD
    + INDEX_WGSL
    + """
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> p: P;
// one output value per invocation, from the pixel's input channels; p.a picks the operation:
// 0 grayscale (BT.601 luma), 1 brightness/contrast (f0 contrast, f1 brightness * top; alpha
// kept), 2 threshold (f0 threshold, p.b invert; luma first when 3+ channels)
fn luma(base: u32) -> f32 {
    return src[base] * 0.299 + src[base + 1u] * 0.587 + src[base + 2u] * 0.114;
}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    let ch = i % p.oc;
    let px = i / p.oc;
    let base = px * p.c;
    if (p.a == 0u) {
        dst[i] = quantise(luma(base), p.mode, p.top);
    } else if (p.a == 1u) {
        let v = src[base + ch];
        let colour = select(p.c, p.c - 1u, p.c == 2u || p.c == 4u);
        if (ch < colour) {
            let mid = p.top / 2.0;
            dst[i] = quantise((v - mid) * p.f0 + mid + p.f1, p.mode, p.top);
        } else {
            dst[i] = v;
        }
    } else {
        var g = src[base];
        if (p.c >= 3u) { g = luma(base); }
        var on = g >= p.f0;
        if (p.b == 1u) { on = !on; }
        dst[i] = select(0.0, p.top, on);
    }
}
""",
    name="gpu_pixel",
)


def _uniform_for(device: GpuDevice, src: GpuBuffer, n: int, op: int, **kw: float | int) -> object:
    h, w, c = src.shape
    mode, top = quant_mode(src.dtype)
    return uniform(
        device,
        params(
            h,
            w,
            c,
            n,
            int(kw.get("mode", mode)),
            op,
            int(kw.get("b", 0)),
            0,
            float(top),
            float(kw.get("f0", 0.0)),
            float(kw.get("f1", 0.0)),
            0.0,
            int(kw.get("oh", h)),
            int(kw.get("ow", w)),
            int(kw.get("oc", c)),
            0,
        ),
    )


def pixel_pass(
    ctx: ActorContext,
    device: GpuDevice,
    kernel: ComputeKernel,
    src: GpuBuffer,
    out: GpuBuffer,
    op: int,
    **kw: float | int,
) -> GpuBuffer:
    """One pass of ``kernel`` from ``src`` into ``out`` (one invocation per output value):
    the uniform block of :func:`_uniform_for` with ``op`` and ``kw``, then the dispatch.
    Nothing runs for an empty output."""
    n = out.size
    if n:
        block = _uniform_for(device, src, n, op, **kw)
        run_1d(
            ctx,
            device,
            kernel,
            n,
            [("read", src.buffer), ("write", out.buffer), ("uniform", block)],
        )
    return out


def _gaussian(ctx: ActorContext) -> np.ndarray:
    """The blur kernel the numpy template uses, from the same config."""
    method = config_choice(ctx, "method", ("gaussian", "box"), "gaussian")
    if method == "box":
        r = config_int(ctx, "radius", 1, minimum=1, maximum=64)
        return np.full(2 * r + 1, 1.0 / (2 * r + 1), dtype=np.float32)
    sigma = config_number(ctx, "sigma", 1.0, minimum=0, exclusive_minimum=True)
    r = min(64, max(1, int(np.ceil(3 * sigma))))
    x = np.arange(-r, r + 1, dtype=np.float32)
    kernel = np.exp(-(x * x) / (2 * sigma * sigma))
    return kernel / kernel.sum()


class GpuImageBlur(GpuImageActor):
    """GPU twin of ``tpl_image_blur``: separable box or Gaussian blur (edges repeat), two
    passes on the device.

    Ports: in ``in`` (image, Bytes or Gpu) → out ``out`` (Gpu image). Config: as
    ``tpl_image_blur`` (``method``, ``radius``, ``sigma``), plus ``fallback``, ``gpuTimeout``.
    """

    component = "tpl_gpu_image_blur"
    cpu_twin = ImageBlur

    def process(self, ctx: ActorContext, device: GpuDevice, src: GpuBuffer) -> GpuBuffer:
        kernel = _gaussian(ctx)
        h, w, c = src.shape
        n = h * w * c
        out = new_image(device, h, w, c, src.dtype)
        if n == 0:
            return out
        weights = readonly(device, kernel)
        r = len(kernel) // 2
        mid = GpuBuffer.empty(device, (h, w, c), "float32", "image")
        for axis, a, b, mode in ((0, src, mid, 0), (1, mid, out, None)):
            block = _uniform_for(device, src, n, axis, b=r, **({} if mode is None else {"mode": 0}))
            run_1d(
                ctx,
                device,
                _BLUR,
                n,
                [("read", a.buffer), ("read", weights), ("write", b.buffer), ("uniform", block)],
            )
        return out


class GpuImageResize(GpuImageActor):
    """GPU twin of ``tpl_image_resize`` (bilinear with pixel centres aligned, or nearest).

    Ports: in ``in`` (image) → out ``out`` (Gpu image). Config: as ``tpl_image_resize``
    (``width``, ``height``, ``method``), plus ``fallback``, ``gpuTimeout``.
    """

    component = "tpl_gpu_image_resize"
    cpu_twin = ImageResize

    def process(self, ctx: ActorContext, device: GpuDevice, src: GpuBuffer) -> GpuBuffer:
        method = config_choice(ctx, "method", ("bilinear", "nearest"), "bilinear")
        ih, iw, c = src.shape
        has_w = ctx.config.get("width") is not None
        has_h = ctx.config.get("height") is not None
        if not (has_w or has_h):
            raise ActorError("config 'width' or 'height' is required")
        if ih == 0 or iw == 0:
            raise ActorError("in-port 'in': cannot resize an empty image")
        w = config_int(ctx, "width", minimum=1) if has_w else 0
        h = config_int(ctx, "height", minimum=1) if has_h else 0
        if not w:
            w = max(1, round(iw * h / ih))
        if not h:
            h = max(1, round(ih * w / iw))
        if w * h > MAX_PIXELS:
            raise ActorError(
                f"config 'width' x 'height' ({w}x{h}) is more than {MAX_PIXELS} pixels"
            )
        out = new_image(device, h, w, c, src.dtype)
        op = 1 if method == "nearest" else 0
        return pixel_pass(ctx, device, _RESIZE, src, out, op, oh=h, ow=w)


class _GpuPixelActor(GpuImageActor):
    op: ClassVar[int] = 0

    def settings(self, ctx: ActorContext, src: GpuBuffer) -> dict[str, float | int]:
        return {}

    def out_channels(self, c: int) -> int:
        return 1

    def process(self, ctx: ActorContext, device: GpuDevice, src: GpuBuffer) -> GpuBuffer:
        h, w, c = src.shape
        kw = self.settings(ctx, src)
        oc = self.out_channels(c)
        out = new_image(device, h, w, oc, src.dtype)
        return pixel_pass(ctx, device, _PIXEL, src, out, self.op, oc=oc, **kw)


class GpuImageGrayscale(_GpuPixelActor):
    """GPU twin of ``tpl_image_grayscale`` (BT.601 luma; 1-2 channel images keep channel 0).

    Ports: in ``in`` (image) → out ``out`` (1-channel Gpu image). Config: ``fallback``,
    ``gpuTimeout``.
    """

    component = "tpl_gpu_image_grayscale"
    cpu_twin = ImageGrayscale
    op = 0

    def process(self, ctx: ActorContext, device: GpuDevice, src: GpuBuffer) -> GpuBuffer:
        if src.shape[2] <= 2:  # as the numpy twin: channel 0 as it is
            h, w = src.shape[:2]
            out = new_image(device, h, w, 1, src.dtype)
            # brightness/contrast with contrast 1 on channel 0 of a 1-2 channel image
            return pixel_pass(ctx, device, _PIXEL, src, out, 1, oc=1, f0=1.0, f1=0.0, mode=0)
        return super().process(ctx, device, src)


class GpuImageAdjust(_GpuPixelActor):
    """GPU twin of ``tpl_image_adjust``: ``out = (in - mid) * contrast + mid + brightness``
    on colour channels, alpha kept.

    Ports: in ``in`` (image) → out ``out`` (Gpu image). Config: ``brightness`` (-1…1),
    ``contrast`` (≥ 0), ``fallback``, ``gpuTimeout``.
    """

    component = "tpl_gpu_image_adjust"
    cpu_twin = ImageAdjust
    op = 1

    def out_channels(self, c: int) -> int:
        return c

    def settings(self, ctx: ActorContext, src: GpuBuffer) -> dict[str, float | int]:
        brightness = config_number(ctx, "brightness", 0, minimum=-1, maximum=1)
        contrast = config_number(ctx, "contrast", 1, minimum=0)
        top = quant_mode(src.dtype)[1]
        return {"f0": float(contrast), "f1": float(brightness) * top}


class GpuImageThreshold(_GpuPixelActor):
    """GPU twin of ``tpl_image_threshold``: luma ≥ ``threshold`` → the maximum, else 0.

    Ports: in ``in`` (image) → out ``out`` (1-channel Gpu image). Config: ``threshold``
    (required, in the image's units), ``invert``, ``fallback``, ``gpuTimeout``.
    """

    component = "tpl_gpu_image_threshold"
    cpu_twin = ImageThreshold
    op = 2

    def settings(self, ctx: ActorContext, src: GpuBuffer) -> dict[str, float | int]:
        top = quant_mode(src.dtype)[1]
        t = config_number(ctx, "threshold", minimum=0, maximum=top)
        return {"f0": float(t), "b": int(config_bool(ctx, "invert", False))}


GPU_IMAGE_TEMPLATES: dict[str, type[LibraryActor]] = {
    cls.component: cls
    for cls in (GpuImageBlur, GpuImageResize, GpuImageGrayscale, GpuImageAdjust, GpuImageThreshold)
}
