"""GPU audio templates on float32 PCM (the RFLA audio messages): gain, an N-input mix and a
FIR filter, the twins of ``tpl_audio_gain`` (the RFLA form in :mod:`._audio`),
``tpl_audio_mix`` / ``tpl_audio_mix_n`` and ``tpl_audio_fir``.

Gain and mix compute what numpy computes, in the same float32 order (equal to the bit). The
FIR filter accumulates in float32 where its twin convolves in float64: the difference is at
most ``1e-6 * Σ|taps| * max|in|`` (see ``tests/gpu/test_gpu_audio.py``). Outputs are ``Gpu``
audio messages (frames x channels on the device) until a CPU node reads them.
"""

from __future__ import annotations

from typing import Any

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import ActorError
from .._gpu import ComputeKernel, GpuBuffer, GpuDevice
from ._audio import AudioGain
from ._base import LibraryActor, config_bool, config_number
from ._gpu_base import INDEX_WGSL, GpuActor, params, readonly, run_1d, uniform
from ._gpu_twins import MIX_PORTS, AudioFir, AudioMixN, fir_taps, mix_gains, mix_shape
from ._media import decode_audio, encode_audio

__all__ = ["GPU_AUDIO_TEMPLATES", "audio_buffer", "new_audio"]

_P = """
struct P { frames: u32, ch: u32, in_frames: u32, in_ch: u32, n: u32, first: u32, clip: u32,
           taps: u32, gain: f32, f1: f32, f2: f32, f3: f32 }
"""

_MIX = ComputeKernel(
    _P
    + INDEX_WGSL
    + """
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> p: P;
// dst (frames x ch) = [dst +] src * gain; a mono src spreads over every channel, a shorter
// one adds silence; p.first: the first input (dst written, not added to); p.clip: -1..1
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    let f = i / p.ch;
    let c = i % p.ch;
    var v = 0.0;
    if (f < p.in_frames) {
        v = src[f * p.in_ch + select(c, 0u, p.in_ch == 1u)] * p.gain;
    }
    var acc = v;
    if (p.first == 0u) { acc = dst[i] + v; }
    if (p.clip == 1u) { acc = clamp(acc, -1.0, 1.0); }
    dst[i] = acc;
}
""",
    name="gpu_audio_mix",
)

_FIR = ComputeKernel(
    _P
    + INDEX_WGSL
    + """
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read> h: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
// out[f, c] = sum over k <= f of h[k] * in[f - k, c] (causal, silence before the start)
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n) { return; }
    let f = i / p.ch;
    let c = i % p.ch;
    let last = min(p.taps, f + 1u);
    var acc = 0.0;
    for (var k = 0u; k < last; k++) {
        acc += h[k] * src[(f - k) * p.ch + c];
    }
    if (p.clip == 1u) { acc = clamp(acc, -1.0, 1.0); }
    dst[i] = acc;
}
""",
    name="gpu_audio_fir",
)


def audio_buffer(ctx: ActorContext, device: GpuDevice, port: str) -> GpuBuffer:
    """The audio on ``port`` as a device buffer (frames x channels, ``meta["sampleRate"]``):
    a Gpu message's own buffer, or an upload of the RFLA samples."""
    msg = ctx.inputs.get(port)
    if msg is not None and msg.get("type") == "Gpu":
        handle = msg["data"]
        if not isinstance(handle, GpuBuffer) or handle.codec != "audio":
            raise ActorError(f"in-port {port!r}: expected GPU audio, got {handle!r}")
        if handle.device is device:
            return handle
        msg = handle.to_message()  # made on a device since reset: its cached host copy
    samples, rate = decode_audio(msg, port)
    return GpuBuffer.upload(device, samples, "audio", {"sampleRate": rate})


def new_audio(device: GpuDevice, frames: int, channels: int, rate: int) -> GpuBuffer:
    out = GpuBuffer.empty(device, (frames, channels), "float32", "audio", {"sampleRate": rate})
    out.encoder = lambda values: encode_audio(values, rate)
    return out


def _mix_pass(
    ctx: ActorContext,
    device: GpuDevice,
    src: GpuBuffer,
    out: GpuBuffer,
    gain: float,
    *,
    first: bool,
    clip: bool,
) -> None:
    frames, ch = out.shape
    block = uniform(
        device,
        params(
            frames, ch, src.shape[0], src.shape[1], out.size, int(first), int(clip), 0,
            float(gain), 0.0, 0.0, 0.0,
        ),
    )  # fmt: skip
    run_1d(
        ctx,
        device,
        _MIX,
        out.size,
        [("read", src.buffer), ("write", out.buffer), ("uniform", block)],
    )


class GpuAudioGain(GpuActor):
    """GPU twin of ``tpl_audio_gain`` (the RFLA form): ``out = in * factor``.

    Ports: in ``in`` (audio, Bytes or Gpu) → out ``out`` (Gpu audio). Config: ``gain_db``
    (-200…200) or ``gain`` (≥ 0), exactly one; ``clip`` (bool, default false: -1…1);
    ``fallback``, ``gpuTimeout``.
    """

    component = "tpl_gpu_audio_gain"
    cpu_twin = AudioGain
    inports = ["in"]
    outports = ["out"]
    inport_types = {"in": "Bytes"}
    outport_types = {"out": "Bytes"}

    def run_gpu(self, ctx: ActorContext, device: GpuDevice) -> dict[str, Message]:
        has_db = ctx.config.get("gain_db") is not None
        has_lin = ctx.config.get("gain") is not None
        if has_db == has_lin:
            raise ActorError("config 'gain_db' or 'gain' is required (exactly one of them)")
        if has_db:
            factor = 10 ** (config_number(ctx, "gain_db", minimum=-200, maximum=200) / 20)
        else:
            factor = config_number(ctx, "gain", minimum=0)
        clip = config_bool(ctx, "clip", False)
        src = audio_buffer(ctx, device, "in")
        frames, ch = src.shape
        out = new_audio(device, frames, ch, src.meta["sampleRate"])
        if out.size:
            _mix_pass(ctx, device, src, out, float(factor), first=True, clip=clip)
        return {"out": Message.gpu(out)}


class GpuAudioMix(GpuActor):
    """GPU twin of ``tpl_audio_mix_n`` (and of ``tpl_audio_mix`` for ``a`` and ``b``):
    ``out = Σ in_p * gain_p`` over the connected in-ports, one pass per input.

    Ports: in ``a``, ``b``, ``c``, ``d``, ``e``, ``f``, ``g``, ``h`` (audio, Bytes or Gpu;
    waits for every connected one) → out ``out`` (Gpu audio). Config: ``gain_a`` …
    ``gain_h`` (default 1), ``clip`` (bool), ``fallback``, ``gpuTimeout``. One sample
    rate; mono spreads over channels; shorter signals are padded with silence.
    """

    component = "tpl_gpu_audio_mix"
    cpu_twin = AudioMixN
    inports = list(MIX_PORTS)
    outports = ["out"]
    inport_types = dict.fromkeys(MIX_PORTS, "Bytes")
    outport_types = {"out": "Bytes"}
    await_all_inports = True

    def run_gpu(self, ctx: ActorContext, device: GpuDevice) -> dict[str, Message]:
        gains = mix_gains(ctx)
        clip = config_bool(ctx, "clip", False)
        bufs = [(p, audio_buffer(ctx, device, p), g) for p, g in gains]
        frames, channels, rate = mix_shape(
            [(p, b.shape[0], b.shape[1], b.meta["sampleRate"]) for p, b, _ in bufs]
        )
        out = new_audio(device, frames, channels, rate)
        if out.size:
            for k, (_, buf, gain) in enumerate(bufs):
                last = k == len(bufs) - 1
                _mix_pass(ctx, device, buf, out, gain, first=k == 0, clip=clip and last)
        return {"out": Message.gpu(out)}


class GpuAudioFir(GpuActor):
    """GPU twin of ``tpl_audio_fir``: a causal FIR filter, one invocation per sample.

    Ports: in ``in`` (audio, Bytes or Gpu) → out ``out`` (Gpu audio). Config: ``taps``
    (1-4096 numbers, required), ``clip`` (bool), ``fallback``, ``gpuTimeout``.
    """

    component = "tpl_gpu_audio_fir"
    cpu_twin = AudioFir
    inports = ["in"]
    outports = ["out"]
    inport_types = {"in": "Bytes"}
    outport_types = {"out": "Bytes"}

    def run_gpu(self, ctx: ActorContext, device: GpuDevice) -> dict[str, Message]:
        taps = fir_taps(ctx)
        clip = config_bool(ctx, "clip", False)
        src = audio_buffer(ctx, device, "in")
        frames, ch = src.shape
        out = new_audio(device, frames, ch, src.meta["sampleRate"])
        if out.size:
            weights = readonly(device, taps)
            block = uniform(
                device,
                params(
                    frames, ch, frames, ch, out.size, 0, int(clip), len(taps), 0.0, 0.0, 0.0, 0.0
                ),
            )
            bindings: list[tuple[str, Any]] = [
                ("read", src.buffer),
                ("read", weights),
                ("write", out.buffer),
                ("uniform", block),
            ]
            run_1d(ctx, device, _FIR, out.size, bindings)
        return {"out": Message.gpu(out)}


GPU_AUDIO_TEMPLATES: dict[str, type[LibraryActor]] = {
    cls.component: cls for cls in (GpuAudioGain, GpuAudioMix, GpuAudioFir)
}
