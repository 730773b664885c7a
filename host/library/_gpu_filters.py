"""GPU image filters: 3x3/5x5 convolution, colour matrix, chroma key and blend modes, the
twins of ``tpl_image_convolve``, ``tpl_image_color_matrix``, ``tpl_image_chroma_key`` and
``tpl_image_blend`` (:mod:`._gpu_twins`; the last two are ``tpl_chroma_key``'s and
``tpl_blend_mode``'s pixel math).

Same config and errors as the twins (they share the config readers); results within one
unit of the dtype (1e-5 for float32 images). Chroma key compares hues against its tolerance
band: a pixel whose hue is within float32 rounding of the band's edge may be keyed on one
side and not on the other (see ``tests/gpu/test_gpu_conv.py``).
"""

from __future__ import annotations

from typing import Any

from .._core._actor import ActorContext
from .._core._messages import Message
from .._gpu import ComputeKernel, GpuBuffer, GpuDevice
from ._base import LibraryActor, config_number, config_value
from ._canvas_pixels import _MODES, blend_mode
from ._gpu_base import (
    INDEX_WGSL,
    GpuActor,
    GpuImageActor,
    image_buffer,
    new_image,
    params,
    quant_mode,
    readonly,
    run_1d,
    uniform,
)
from ._gpu_twins import (
    EDGES,
    ImageBlend,
    ImageChromaKey,
    ImageColorMatrix,
    ImageConvolve,
    check_blend_pair,
    check_chroma_image,
    chroma_settings,
    color_matrix,
    conv_kernel,
)

__all__ = ["GPU_FILTER_TEMPLATES"]

_P = """
struct P { h: u32, w: u32, c: u32, n: u32, mode: u32, op: u32, size: u32, k: u32,
           top: f32, f0: f32, f1: f32, f2: f32 }
"""

_CONVOLVE = ComputeKernel(
    _P
    + INDEX_WGSL
    + """
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read> wts: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
// p.op: edge mode 0 clamp, 1 zero (-1: outside), 2 wrap, 3 reflect (period 2(n-1))
fn edge(v: i32, n: i32, mode: u32) -> i32 {
    if (mode == 0u) { return clamp(v, 0, n - 1); }
    if (mode == 1u) { return select(-1, v, v >= 0 && v < n); }
    if (mode == 2u) { return ((v % n) + n) % n; }
    if (n == 1) { return 0; }
    let period = 2 * (n - 1);
    let m = ((v % period) + period) % period;
    return select(period - m, m, m < n);
}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    let ch = i % p.c;
    let x = i32((i / p.c) % p.w);
    let y = i32(i / (p.c * p.w));
    let r = i32(p.size / 2u);
    var acc = 0.0;
    for (var a = 0; a < i32(p.size); a++) {
        let yy = edge(y + a - r, i32(p.h), p.op);
        for (var b = 0; b < i32(p.size); b++) {
            let xx = edge(x + b - r, i32(p.w), p.op);
            var v = 0.0;
            if (yy >= 0 && xx >= 0) { v = src[(u32(yy) * p.w + u32(xx)) * p.c + ch]; }
            acc += wts[u32(a) * p.size + u32(b)] * v;
        }
    }
    dst[i] = quantise(acc, p.mode, p.top);
}
""",
    name="gpu_convolve",
)

_COLOR_MATRIX = ComputeKernel(
    _P
    + INDEX_WGSL
    + """
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read> m: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
// p.k: matrix rows (3 or 4), each k + 1 wide (the last: an offset in 0-1 units)
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    let ch = i % p.c;
    let base = i - ch;
    if (ch >= p.k) { dst[i] = src[i]; return; }
    var acc = 0.0;
    for (var j = 0u; j < p.k; j++) {
        acc += m[ch * (p.k + 1u) + j] * src[base + j];
    }
    dst[i] = quantise(acc + m[ch * (p.k + 1u) + p.k] * p.top, p.mode, p.top);
}
""",
    name="gpu_color_matrix",
)

_CHROMA = ComputeKernel(
    _P
    + INDEX_WGSL
    + """
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> p: P;
// one pixel per invocation, RGB(A) 0-255 in, RGBA out; f0 key hue, f1 tolerance (degrees),
// f2 spill suppression: tpl_chroma_key's HSV test and luma pull
fn u8(v: f32) -> f32 { return clamp(round(v), 0.0, 255.0); }
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let px = flat_index(gid, nwg);
    if (px >= p.n) { return; }
    let s = px * p.c;
    let rgb = vec3<f32>(src[s], src[s + 1u], src[s + 2u]);
    var alpha = 255.0;
    if (p.c == 4u) { alpha = src[s + 3u]; }
    let x = rgb / 255.0;
    let mx = max(x.r, max(x.g, x.b));
    let mn = min(x.r, min(x.g, x.b));
    let delta = mx - mn;
    let safe = select(delta, 1.0, delta < 1e-6);
    var hue: f32;
    if (mx == x.r) {
        let t = (x.g - x.b) / safe;
        hue = 60.0 * (t - 6.0 * floor(t / 6.0));
    } else if (mx == x.g) {
        hue = 60.0 * ((x.b - x.r) / safe + 2.0);
    } else {
        hue = 60.0 * ((x.r - x.g) / safe + 4.0);
    }
    hue = select(hue, 0.0, delta < 1e-6);
    hue = hue - 360.0 * floor(hue / 360.0);
    let sat = select(delta / select(mx, 1.0, mx < 1e-6), 0.0, mx < 1e-6);
    var diff = abs(hue - p.f0);
    if (diff > 180.0) { diff = 360.0 - diff; }
    let keyed = p.f1 > 0.0 && diff < p.f1 && sat >= 0.2 && mx >= 0.2;
    var strength = 0.0;
    if (keyed) {
        strength = (1.0 - diff / max(p.f1, 1e-9)) * clamp((sat - 0.2) / 0.8, 0.0, 1.0);
    }
    var out = rgb;
    if (keyed && p.f2 > 0.0) {
        let q = vec3<u32>(rgb);
        let gray = f32((77u * q.r + 150u * q.g + 29u * q.b) >> 8u);
        out = gray + (rgb - gray) * (1.0 - strength * p.f2);
    }
    let o = px * 4u;
    dst[o] = u8(out.r);
    dst[o + 1u] = u8(out.g);
    dst[o + 2u] = u8(out.b);
    dst[o + 3u] = u8(alpha * (1.0 - strength));
}
""",
    name="gpu_chroma_key",
)

_BLEND = ComputeKernel(
    _P
    + INDEX_WGSL
    + """
@group(0) @binding(0) var<storage, read> base: array<f32>;
@group(0) @binding(1) var<storage, read> over: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
// one pixel per invocation, 8-bit RGBA both; p.op: the mode's index in tpl_blend_mode's
// list; f0 opacity. W3C compositing formulas, rounded as tpl_blend_mode rounds them.
fn rnd(v: f32) -> f32 { return clamp(round(v * 255.0), 0.0, 255.0); }
fn mixed(op: u32, bi: f32, fi: f32) -> f32 {
    let b = bi / 255.0;
    let f = fi / 255.0;
    switch op {
        case 0u: { return fi; }
        case 1u: { return rnd(b * f); }
        case 2u: { return rnd(1.0 - (1.0 - b) * (1.0 - f)); }
        case 3u: { return rnd(select(1.0 - 2.0 * (1.0 - b) * (1.0 - f), 2.0 * b * f, b < 0.5)); }
        case 4u: { return min(bi + fi, 255.0); }
        case 5u: {
            let d = select(sqrt(b), ((16.0 * b - 12.0) * b + 4.0) * b, b <= 0.25);
            return rnd(select(b + (2.0 * f - 1.0) * (d - b), b - (1.0 - 2.0 * f) * b * (1.0 - b),
                              f <= 0.5));
        }
        case 6u: { return rnd(select(1.0 - 2.0 * (1.0 - b) * (1.0 - f), 2.0 * b * f, f < 0.5)); }
        case 7u: { return abs(bi - fi); }
        case 8u: { return rnd(b + f - 2.0 * b * f); }
        case 9u: { return rnd(select(min(b / max(1.0 - f, 1e-12), 1.0), 1.0, f >= 1.0)); }
        case 10u: {
            return rnd(select(1.0 - min((1.0 - b) / max(f, 1e-12), 1.0), 0.0, f <= 0.0));
        }
        case 11u: { return min(bi, fi); }
        case 12u: { return max(bi, fi); }
        case 13u: { return max(bi - fi, 0.0); }
        default: { return rnd(select(min(b / max(f, 1e-12), 1.0), 1.0, f <= 0.0)); }
    }
}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let px = flat_index(gid, nwg);
    if (px >= p.n) { return; }
    let o = px * 4u;
    let fa = over[o + 3u] / 255.0 * p.f0;
    let ba = base[o + 3u] / 255.0;
    let out_a = fa + ba * (1.0 - fa);
    if (out_a < 1e-6) {
        dst[o] = 0.0; dst[o + 1u] = 0.0; dst[o + 2u] = 0.0; dst[o + 3u] = 0.0;
        return;
    }
    for (var k = 0u; k < 3u; k++) {
        let m = mixed(p.op, base[o + k], over[o + k]);
        dst[o + k] = clamp(round(base[o + k] * (1.0 - fa) + m * fa), 0.0, 255.0);
    }
    dst[o + 3u] = clamp(round(out_a * 255.0), 0.0, 255.0);
}
""",
    name="gpu_blend",
)


def _block(
    device: GpuDevice,
    shape: tuple[int, ...],
    dtype: str,
    n: int,
    op: int = 0,
    size: int = 0,
    k: int = 0,
    f: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> Any:
    h, w, c = shape
    mode, top = quant_mode(dtype)
    return uniform(device, params(h, w, c, n, mode, op, size, k, float(top), *map(float, f)))


class GpuImageConvolve(GpuImageActor):
    """GPU twin of ``tpl_image_convolve``: a 3x3 or 5x5 kernel from config, one pass.

    Ports: in ``in`` (image, Bytes or Gpu) → out ``out`` (Gpu image). Config: as
    ``tpl_image_convolve`` (``kernel``, ``divisor``, ``edge``: clamp/zero/wrap/reflect),
    plus ``fallback``, ``gpuTimeout``.
    """

    component = "tpl_gpu_image_convolve"
    cpu_twin = ImageConvolve

    def process(self, ctx: ActorContext, device: GpuDevice, src: GpuBuffer) -> GpuBuffer:
        weights, edge = conv_kernel(ctx)
        h, w, c = src.shape
        out = new_image(device, h, w, c, src.dtype)
        if out.size:
            wts = readonly(device, weights.ravel())
            block = _block(device, src.shape, src.dtype, out.size, EDGES.index(edge), len(weights))
            bindings = [("read", src.buffer), ("read", wts), ("write", out.buffer)]
            run_1d(ctx, device, _CONVOLVE, out.size, [*bindings, ("uniform", block)])
        return out


class GpuImageColorMatrix(GpuImageActor):
    """GPU twin of ``tpl_image_color_matrix``.

    Ports: in ``in`` (image of 3+ channels, Bytes or Gpu) → out ``out`` (Gpu image).
    Config: as ``tpl_image_color_matrix`` (``matrix``), plus ``fallback``, ``gpuTimeout``.
    """

    component = "tpl_gpu_image_color_matrix"
    cpu_twin = ImageColorMatrix

    def process(self, ctx: ActorContext, device: GpuDevice, src: GpuBuffer) -> GpuBuffer:
        m = color_matrix(ctx, src.shape[2])
        h, w, c = src.shape
        out = new_image(device, h, w, c, src.dtype)
        if out.size:
            mat = readonly(device, m.ravel())
            block = _block(device, src.shape, src.dtype, out.size, k=m.shape[0])
            bindings = [("read", src.buffer), ("read", mat), ("write", out.buffer)]
            run_1d(ctx, device, _COLOR_MATRIX, out.size, [*bindings, ("uniform", block)])
        return out


class GpuImageChromaKey(GpuImageActor):
    """GPU twin of ``tpl_image_chroma_key`` (``tpl_chroma_key``'s keying on images).

    Ports: in ``in`` (8-bit RGB/RGBA image, Bytes or Gpu) → out ``out`` (8-bit RGBA Gpu
    image). Config: ``keyColor``, ``tolerance``, ``spillSuppression`` as
    ``tpl_chroma_key``, plus ``fallback``, ``gpuTimeout``.
    """

    component = "tpl_gpu_image_chroma_key"
    cpu_twin = ImageChromaKey

    def process(self, ctx: ActorContext, device: GpuDevice, src: GpuBuffer) -> GpuBuffer:
        key, tol, spill = chroma_settings(ctx)
        check_chroma_image(src.shape, src.dtype, "in")
        h, w, _ = src.shape
        out = new_image(device, h, w, 4, "uint8")
        if h * w:
            block = _block(device, src.shape, src.dtype, h * w, f=(key, tol, spill))
            bindings = [("read", src.buffer), ("write", out.buffer), ("uniform", block)]
            run_1d(ctx, device, _CHROMA, h * w, bindings)
        return out


class GpuImageBlend(GpuActor):
    """GPU twin of ``tpl_image_blend``: ``overlay`` blended onto ``base`` with a blend mode.

    Ports: in ``base``, ``overlay`` (8-bit RGBA images of one size, Bytes or Gpu; waits for
    both) → out ``out`` (8-bit RGBA Gpu image). Config: ``mode`` (the 15 modes of
    ``tpl_blend_mode``), ``opacity`` (0-1, default 1), ``fallback``, ``gpuTimeout``.
    """

    component = "tpl_gpu_image_blend"
    cpu_twin = ImageBlend
    inports = ["base", "overlay"]
    outports = ["out"]
    inport_types = {"base": "Bytes", "overlay": "Bytes"}
    outport_types = {"out": "Bytes"}
    await_all_inports = True

    def run_gpu(self, ctx: ActorContext, device: GpuDevice) -> dict[str, Message]:
        mode = blend_mode(config_value(ctx, "mode", "normal"), "config 'mode'")
        opacity = float(config_number(ctx, "opacity", 1.0, minimum=0, maximum=1))
        base = image_buffer(ctx, device, "base")
        over = image_buffer(ctx, device, "overlay")
        check_blend_pair((base.shape, base.dtype), (over.shape, over.dtype))
        h, w, _ = base.shape
        out = new_image(device, h, w, 4, "uint8")
        if h * w:
            block = _block(
                device, base.shape, "uint8", h * w, _MODES.index(mode), f=(opacity, 0, 0)
            )
            bindings = [("read", base.buffer), ("read", over.buffer), ("write", out.buffer)]
            run_1d(ctx, device, _BLEND, h * w, [*bindings, ("uniform", block)])
        return {"out": Message.gpu(out)}


GPU_FILTER_TEMPLATES: dict[str, type[LibraryActor]] = {
    cls.component: cls
    for cls in (GpuImageConvolve, GpuImageColorMatrix, GpuImageChromaKey, GpuImageBlend)
}
