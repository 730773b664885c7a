"""Audio templates on numpy arrays.

Audio travels as the ``RFLA`` Bytes encoding of :mod:`reflow.library._media` (a 16-byte
header with the sample rate + float32 samples, frames x channels interleaved, nominal range
-1…1). Nothing clips unless a template says so; ``tpl_audio_to_pcm`` clips when it converts
to integers. The templates run on the worker pool (``execution = "worker"``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import ActorError
from ._base import (
    LibraryActor,
    config_bool,
    config_choice,
    config_int,
    config_number,
    input_bytes,
)
from ._media import decode_audio, encode_audio

__all__ = ["AUDIO_TEMPLATES"]

_PCM: dict[str, np.dtype[Any]] = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}


def _db(x: float) -> float | None:
    return None if x <= 0 else 20 * math.log10(x)


class _AudioActor(LibraryActor):
    inports = ["in"]
    outports = ["out"]
    inport_types = {"in": "Bytes"}
    outport_types = {"out": "Bytes"}
    execution = "worker"

    def process(self, ctx: ActorContext, samples: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
        raise NotImplementedError

    def run(self, ctx: ActorContext) -> None:
        samples, rate = decode_audio(ctx.inputs["in"], "in")
        out, out_rate = self.process(ctx, samples, rate)
        ctx.done({"out": encode_audio(out, out_rate)})


class AudioFromPcm(LibraryActor):
    """Wraps interleaved PCM bytes as audio.

    Ports: in ``in`` (Bytes: interleaved PCM) → out ``out`` (audio). Config: ``sample_rate``
    (int Hz, required), ``channels`` (int 1-32, default 1), ``format`` (``"s16le"``, default:
    16-bit signed, scaled by 1/32768; ``"f32le"``: 32-bit float).
    """

    component = "tpl_audio_from_pcm"
    inports = ["in"]
    outports = ["out"]
    inport_types = {"in": "Bytes"}
    outport_types = {"out": "Bytes"}
    execution = "worker"

    def run(self, ctx: ActorContext) -> None:
        rate = config_int(ctx, "sample_rate", minimum=1, maximum=10_000_000)
        channels = config_int(ctx, "channels", 1, minimum=1, maximum=32)
        fmt = config_choice(ctx, "format", tuple(_PCM), "s16le")
        data = input_bytes(ctx, "in")
        frame = _PCM[fmt].itemsize * channels
        if len(data) % frame:
            raise ActorError(
                f"in-port 'in': {len(data)} bytes is not a whole number of "
                f"{channels}-channel {fmt} frames ({frame} bytes each)"
            )
        pcm = np.frombuffer(data, dtype=_PCM[fmt]).reshape(-1, channels)
        samples = pcm.astype(np.float32) / 32768.0 if fmt == "s16le" else pcm
        ctx.done({"out": encode_audio(samples, rate)})


class AudioToPcm(LibraryActor):
    """Converts audio to interleaved PCM bytes.

    Ports: in ``in`` (audio) → out ``out`` (Bytes), ``format`` (Object ``{sample_rate,
    channels, format, frames}``). Config: ``format`` (``"s16le"``, default, clipped to
    -1…1 and scaled by 32767; ``"f32le"``).
    """

    component = "tpl_audio_to_pcm"
    inports = ["in"]
    outports = ["out", "format"]
    inport_types = {"in": "Bytes"}
    outport_types = {"out": "Bytes", "format": "Object"}
    execution = "worker"

    def run(self, ctx: ActorContext) -> None:
        fmt = config_choice(ctx, "format", tuple(_PCM), "s16le")
        samples, rate = decode_audio(ctx.inputs["in"], "in")
        if fmt == "s16le":
            pcm = np.rint(np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
        else:
            pcm = samples.astype("<f4")
        ctx.done(
            {
                "out": Message.bytes(pcm.tobytes()),
                "format": Message.object(
                    {
                        "sample_rate": rate,
                        "channels": samples.shape[1],
                        "format": fmt,
                        "frames": samples.shape[0],
                    }
                ),
            }
        )


class AudioTone(LibraryActor):
    """Generates a sine tone for every trigger packet.

    Ports: in ``in`` (any, a trigger) → out ``out`` (audio). Config: ``frequency`` (Hz > 0,
    required), ``duration_ms`` (number > 0, default 1000), ``sample_rate`` (int, default
    48000), ``amplitude`` (0-1, default 0.5), ``channels`` (int 1-32, default 1).
    """

    component = "tpl_audio_tone"
    inports = ["in"]
    outports = ["out"]
    outport_types = {"out": "Bytes"}
    execution = "worker"

    def run(self, ctx: ActorContext) -> None:
        rate = config_int(ctx, "sample_rate", 48_000, minimum=1, maximum=10_000_000)
        freq = config_number(ctx, "frequency", minimum=0, exclusive_minimum=True)
        if freq > rate / 2:
            raise ActorError(
                f"config 'frequency' {freq} Hz is above the Nyquist frequency "
                f"({rate / 2} Hz for config 'sample_rate' {rate})"
            )
        duration = config_number(
            ctx, "duration_ms", 1000, minimum=0, exclusive_minimum=True, maximum=3_600_000
        )
        amplitude = config_number(ctx, "amplitude", 0.5, minimum=0, maximum=1)
        channels = config_int(ctx, "channels", 1, minimum=1, maximum=32)
        n = round(rate * duration / 1000)
        t = np.arange(n, dtype=np.float64) / rate
        wave = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)
        ctx.done({"out": encode_audio(np.repeat(wave[:, None], channels, axis=1), rate)})


class AudioGain(_AudioActor):
    """Scales the level.

    Ports: in ``in`` (audio) → out ``out`` (audio). Config: ``gain_db`` (number, decibels)
    or ``gain`` (number ≥ 0, a linear factor) — one of them, required; ``clip`` (bool, default
    false: limit the result to -1…1).
    """

    component = "tpl_audio_gain"

    def process(self, ctx: ActorContext, samples: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
        has_db = ctx.config.get("gain_db") is not None
        has_lin = ctx.config.get("gain") is not None
        if has_db == has_lin:
            raise ActorError("config 'gain_db' or 'gain' is required (exactly one of them)")
        if has_db:
            factor = 10 ** (config_number(ctx, "gain_db", minimum=-200, maximum=200) / 20)
        else:
            factor = config_number(ctx, "gain", minimum=0)
        out = samples * np.float32(factor)
        if config_bool(ctx, "clip", False):
            out = np.clip(out, -1.0, 1.0)
        return out, rate


class AudioNormalize(_AudioActor):
    """Scales audio so its peak (or RMS) reaches a target level. Silence passes unchanged.

    Ports: in ``in`` (audio) → out ``out`` (audio). Config: ``target_db`` (number ≤ 0, dBFS,
    default -1), ``measure`` (``"peak"``, default, or ``"rms"``).
    """

    component = "tpl_audio_normalize"

    def process(self, ctx: ActorContext, samples: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
        target = 10 ** (config_number(ctx, "target_db", -1.0, minimum=-200, maximum=0) / 20)
        measure = config_choice(ctx, "measure", ("peak", "rms"), "peak")
        if samples.size == 0:
            return samples, rate
        level = (
            float(np.max(np.abs(samples)))
            if measure == "peak"
            else float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
        )
        if level == 0:
            return samples, rate
        return samples * np.float32(target / level), rate


class AudioMix(LibraryActor):
    """Mixes two signals: ``out = a * gain_a + b * gain_b``.

    Both must have the same sample rate; a mono signal is spread over the other's channels;
    the shorter one is padded with silence. Ports: in ``a``, ``b`` (audio; waits for both) →
    out ``out`` (audio). Config: ``gain_a``, ``gain_b`` (numbers, default 1), ``clip`` (bool,
    default false).
    """

    component = "tpl_audio_mix"
    inports = ["a", "b"]
    outports = ["out"]
    await_all_inports = True
    inport_types = {"a": "Bytes", "b": "Bytes"}
    outport_types = {"out": "Bytes"}
    execution = "worker"

    def run(self, ctx: ActorContext) -> None:
        ga = config_number(ctx, "gain_a", 1.0)
        gb = config_number(ctx, "gain_b", 1.0)
        for port in self.inports:
            if port not in ctx.inputs:
                raise ActorError(
                    f"in-port {port!r} is not connected: tpl_audio_mix needs two signals"
                )
        a, rate_a = decode_audio(ctx.inputs["a"], "a")
        b, rate_b = decode_audio(ctx.inputs["b"], "b")
        if rate_a != rate_b:
            raise ActorError(
                f"in-ports 'a' ({rate_a} Hz) and 'b' ({rate_b} Hz) differ in "
                "sample rate; resample one with tpl_audio_resample"
            )
        ca, cb = a.shape[1], b.shape[1]
        if ca != cb and 1 not in (ca, cb):
            raise ActorError(
                f"in-ports 'a' ({ca} channels) and 'b' ({cb} channels) cannot be "
                "mixed; only mono mixes into more channels"
            )
        frames, channels = max(len(a), len(b)), max(ca, cb)
        out = np.zeros((frames, channels), dtype=np.float32)
        out[: len(a)] += a * np.float32(ga)
        out[: len(b)] += b * np.float32(gb)
        if config_bool(ctx, "clip", False):
            out = np.clip(out, -1.0, 1.0)
        ctx.done({"out": encode_audio(out, rate_a)})


def _lowpass_fir(cutoff: float, taps: int = 63) -> np.ndarray:
    """A Hann-windowed sinc low-pass; ``cutoff`` as a fraction of the sample rate."""
    n = np.arange(taps) - (taps - 1) / 2
    h = 2 * cutoff * np.sinc(2 * cutoff * n) * np.hanning(taps)
    return (h / h.sum()).astype(np.float64)


class AudioResample(_AudioActor):
    """Changes the sample rate (linear interpolation; when lowering the rate a windowed-sinc
    low-pass at 90 % of the new Nyquist frequency is applied first against aliasing).

    Ports: in ``in`` (audio) → out ``out`` (audio at ``rate``). Config: ``rate`` (int Hz,
    1-10000000, required).
    """

    component = "tpl_audio_resample"

    def process(self, ctx: ActorContext, samples: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
        new_rate = config_int(ctx, "rate", minimum=1, maximum=10_000_000)
        if new_rate == rate or len(samples) == 0:
            return samples, new_rate
        src = samples.astype(np.float64)
        if new_rate < rate:
            fir = _lowpass_fir(0.45 * new_rate / rate)
            src = np.stack(
                [np.convolve(src[:, c], fir, mode="same") for c in range(src.shape[1])], axis=1
            )
        frames = max(1, round(len(src) * new_rate / rate))
        t = np.arange(frames) * (rate / new_rate)
        x = np.arange(len(src))
        out = np.stack([np.interp(t, x, src[:, c]) for c in range(src.shape[1])], axis=1)
        return out.astype(np.float32), new_rate


def _biquad(
    samples: np.ndarray, b: tuple[float, float, float], a: tuple[float, float]
) -> np.ndarray:
    # Direct form I, one channel at a time. An IIR filter is sequential by nature; the loop
    # runs on plain floats, which is several times faster than indexing numpy scalars.
    b0, b1, b2 = b
    a1, a2 = a
    out = np.empty_like(samples, dtype=np.float64)
    for c in range(samples.shape[1]):
        x1 = x2 = y1 = y2 = 0.0
        col = samples[:, c].tolist()
        res = [0.0] * len(col)
        for i, x0 in enumerate(col):
            y0 = b0 * x0 + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2
            res[i] = y0
            x2, x1, y2, y1 = x1, x0, y1, y0
        out[:, c] = res
    return out.astype(np.float32)


class _AudioFilter(_AudioActor):
    kind = "lowpass"

    def process(self, ctx: ActorContext, samples: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
        cutoff = config_number(ctx, "cutoff_hz", minimum=0, exclusive_minimum=True)
        if cutoff >= rate / 2:
            raise ActorError(
                f"config 'cutoff_hz' {cutoff} Hz must be below the Nyquist "
                f"frequency ({rate / 2} Hz) of the audio on in-port 'in'"
            )
        q = config_number(ctx, "q", 1 / math.sqrt(2), minimum=0, exclusive_minimum=True)
        w0 = 2 * math.pi * cutoff / rate
        cos_w0, alpha = math.cos(w0), math.sin(w0) / (2 * q)
        a0 = 1 + alpha
        if self.kind == "lowpass":
            b = ((1 - cos_w0) / 2, 1 - cos_w0, (1 - cos_w0) / 2)
        else:
            b = ((1 + cos_w0) / 2, -(1 + cos_w0), (1 + cos_w0) / 2)
        return _biquad(
            samples, (b[0] / a0, b[1] / a0, b[2] / a0), (-2 * cos_w0 / a0, (1 - alpha) / a0)
        ), rate


class AudioLowpass(_AudioFilter):
    """Second-order (biquad, RBJ cookbook) low-pass filter: -12 dB/octave above the cutoff.

    Ports: in ``in`` (audio) → out ``out`` (audio). Config: ``cutoff_hz`` (number > 0, below
    half the sample rate, required), ``q`` (number > 0, default 0.7071: Butterworth).
    """

    component = "tpl_audio_lowpass"
    kind = "lowpass"


class AudioHighpass(_AudioFilter):
    """Second-order (biquad, RBJ cookbook) high-pass filter: -12 dB/octave below the cutoff.

    Ports: in ``in`` (audio) → out ``out`` (audio). Config: ``cutoff_hz`` (number > 0, below
    half the sample rate, required), ``q`` (number > 0, default 0.7071: Butterworth).
    """

    component = "tpl_audio_highpass"
    kind = "highpass"


class AudioLevel(LibraryActor):
    """Measures the level of a signal over all its channels.

    Ports: in ``in`` (audio) → out ``rms``, ``peak`` (Float: linear 0…1, or dBFS with
    ``unit: "db"`` — silence is then -inf and sent as -1000), ``level`` (Object ``{rms, peak,
    rms_db, peak_db, frames, channels, sample_rate, duration_s}``; dB values null for
    silence). Config: ``unit`` (``"linear"``, default, or ``"db"``).
    """

    component = "tpl_audio_level"
    inports = ["in"]
    outports = ["rms", "peak", "level"]
    inport_types = {"in": "Bytes"}
    outport_types = {"rms": "Float", "peak": "Float", "level": "Object"}
    execution = "worker"

    def run(self, ctx: ActorContext) -> None:
        unit = config_choice(ctx, "unit", ("linear", "db"), "linear")
        samples, rate = decode_audio(ctx.inputs["in"], "in")
        if samples.size:
            rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
            peak = float(np.max(np.abs(samples)))
        else:
            rms = peak = 0.0

        def shown(x: float) -> float:
            if unit == "linear":
                return x
            db = _db(x)
            return -1000.0 if db is None else db

        ctx.done(
            {
                "rms": Message.float(shown(rms)),
                "peak": Message.float(shown(peak)),
                "level": Message.object(
                    {
                        "rms": rms,
                        "peak": peak,
                        "rms_db": _db(rms),
                        "peak_db": _db(peak),
                        "frames": samples.shape[0],
                        "channels": samples.shape[1],
                        "sample_rate": rate,
                        "duration_s": samples.shape[0] / rate,
                    }
                ),
            }
        )


class AudioSpectrum(LibraryActor):
    """The magnitude spectrum (FFT) of a signal, mixed to mono.

    The signal is cut into frames of ``size`` samples (the last zero-padded), each weighted
    by a Hann window; the magnitudes are averaged over frames and scaled so a full-scale sine
    reads 1.0 (0 dB). Ports: in ``in`` (audio) → out ``out`` (Object ``{sample_rate, size,
    bin_hz, magnitudes, peak_hz, frames}``; ``magnitudes`` has ``size/2 + 1`` values from
    0 Hz to the Nyquist frequency). Config: ``size`` (power of two 16-65536, default 1024),
    ``unit`` (``"linear"``, default, or ``"db"``: 20*log10, floored at -200).
    """

    component = "tpl_audio_spectrum"
    inports = ["in"]
    outports = ["out"]
    inport_types = {"in": "Bytes"}
    outport_types = {"out": "Object"}
    execution = "worker"

    def run(self, ctx: ActorContext) -> None:
        size = config_int(ctx, "size", 1024, minimum=16, maximum=65536)
        if size & (size - 1):
            raise ActorError(f"config 'size' must be a power of two, got {size}")
        unit = config_choice(ctx, "unit", ("linear", "db"), "linear")
        samples, rate = decode_audio(ctx.inputs["in"], "in")
        mono = samples.mean(axis=1, dtype=np.float64)
        frames = max(1, math.ceil(len(mono) / size))
        padded = np.zeros(frames * size)
        padded[: len(mono)] = mono
        window = np.hanning(size)
        spectra = np.abs(np.fft.rfft(padded.reshape(frames, size) * window, axis=1))
        mags = spectra.mean(axis=0) * (2 / window.sum())
        peak_bin = int(np.argmax(mags[1:]) + 1) if len(mags) > 1 else 0
        if unit == "db":
            mags = 20 * np.log10(np.maximum(mags, 1e-10))
        ctx.done(
            {
                "out": Message.object(
                    {
                        "sample_rate": rate,
                        "size": size,
                        "bin_hz": rate / size,
                        "magnitudes": [round(float(m), 9) for m in mags],
                        "peak_hz": peak_bin * rate / size,
                        "frames": frames,
                    }
                )
            }
        )


AUDIO_TEMPLATES: dict[str, type[LibraryActor]] = {
    cls.component: cls
    for cls in (
        AudioFromPcm,
        AudioToPcm,
        AudioTone,
        AudioGain,
        AudioNormalize,
        AudioMix,
        AudioResample,
        AudioLowpass,
        AudioHighpass,
        AudioLevel,
        AudioSpectrum,
    )
}
