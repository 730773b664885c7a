"""The SDK's audio templates: DSP on Streams of little-endian float32 PCM samples.

A PCM Stream's data frames are float32 samples (one channel, or channels interleaved, which
level-based templates treat alike), its sample rate is config ``sampleRate`` (default 44100)
as in the SDK. A template collects the whole stream (bounded by config ``maxBytes``, default
256 MiB, and ``timeoutMs`` per frame), computes with numpy/scipy, and answers with a finished
Stream carrying the input's content type and ``begin`` metadata, cut at the input's frame
boundaries where the length is unchanged. Filters are the RBJ cookbook biquads run through
``scipy.signal.lfilter``; dynamics follow an attack/release envelope (one-pole, per sample).

``tpl_audio_gain``, ``tpl_audio_normalize`` and ``tpl_audio_spectrum`` also still take the
library's own RFLA audio on ``in`` (answering on ``out``), as before they had the SDK's ports.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
from typing import Any

import numpy as np

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import ActorError
from ._audio import AudioGain as _RflaGain
from ._audio import AudioNormalize as _RflaNormalize
from ._audio import AudioSpectrum as _RflaSpectrum
from ._base import LibraryActor, config_choice, config_int, config_number, config_value
from ._image_streams import _accepted, load_source, max_file_bytes
from ._sdk import SdkTemplate, StreamData, read_stream, write_stream

__all__ = ["AUDIO_STREAM_TEMPLATES"]

MIN_DB = -150.0
_PCM_DOC = "PCM Stream (float32 LE samples)"


def _db_to_linear(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def _linear_to_db(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(x > 0, 20.0 * np.log10(np.maximum(x, 1e-300)), MIN_DB)


def _samples(stream: StreamData, port: str) -> np.ndarray:
    data = stream.data
    if len(data) % 4:
        raise ActorError(
            f"in-port {port!r}: {len(data)} bytes is not a whole number of float32 samples"
        )
    x = np.frombuffer(data, dtype="<f4").astype(np.float64)
    if not np.isfinite(x).all():
        raise ActorError(f"in-port {port!r}: the samples include NaN or infinity")
    return x


def _pcm_frames(samples: np.ndarray, like: StreamData | None) -> list[bytes]:
    data = np.asarray(samples, dtype="<f4").tobytes()
    if like is not None and len(data) == sum(len(f) for f in like.frames):
        out, pos = [], 0
        for f in like.frames:
            out.append(data[pos : pos + len(f)])
            pos += len(f)
        return out
    step = 4096 * 4
    return [data[i : i + step] for i in range(0, len(data), step)]


def _rate(ctx: ActorContext) -> float:
    return float(
        config_number(
            ctx, "sampleRate", 44100.0, minimum=0, exclusive_minimum=True, maximum=10_000_000
        )
    )


def _frequency(ctx: ActorContext, key: str, default: float, rate: float) -> float:
    f = float(config_number(ctx, key, default, minimum=0, exclusive_minimum=True))
    if f >= rate / 2:
        raise ActorError(
            f"config {key!r} ({f} Hz) must be below half of config 'sampleRate' ({rate / 2} Hz)"
        )
    return f


def _ms(ctx: ActorContext, key: str, default: float) -> float:
    return float(config_number(ctx, key, default, minimum=0, maximum=3_600_000))


def _fft_size(ctx: ActorContext, default: int) -> int:
    n = config_int(ctx, "fftSize", default, minimum=16, maximum=65536)
    if n & (n - 1):
        raise ActorError(f"config 'fftSize' must be a power of two, got {n}")
    return n


def _hop(ctx: ActorContext, default: int, fft: int) -> int:
    return config_int(ctx, "hopSize", default, minimum=1, maximum=fft)


_KINDS = {
    "lowpass": "lowpass",
    "lpf": "lowpass",
    "highpass": "highpass",
    "hpf": "highpass",
    "bandpass": "bandpass",
    "bpf": "bandpass",
    "notch": "notch",
    "peaking": "peaking",
    "eq": "peaking",
    "lowshelf": "lowshelf",
    "highshelf": "highshelf",
}


def biquad(
    kind: str, rate: float, freq: float, q: float, gain_db: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(b, a)`` of an RBJ cookbook biquad, normalised so ``a[0] == 1``."""
    w0 = 2 * math.pi * freq / rate
    cw, sw = math.cos(w0), math.sin(w0)
    alpha = sw / (2 * q)
    big_a = 10 ** (gain_db / 40)
    if kind == "lowpass":
        b = [(1 - cw) / 2, 1 - cw, (1 - cw) / 2]
        a = [1 + alpha, -2 * cw, 1 - alpha]
    elif kind == "highpass":
        b = [(1 + cw) / 2, -(1 + cw), (1 + cw) / 2]
        a = [1 + alpha, -2 * cw, 1 - alpha]
    elif kind == "bandpass":
        b = [alpha, 0.0, -alpha]
        a = [1 + alpha, -2 * cw, 1 - alpha]
    elif kind == "notch":
        b = [1.0, -2 * cw, 1.0]
        a = [1 + alpha, -2 * cw, 1 - alpha]
    elif kind == "peaking":
        b = [1 + alpha * big_a, -2 * cw, 1 - alpha * big_a]
        a = [1 + alpha / big_a, -2 * cw, 1 - alpha / big_a]
    else:
        s = 2 * math.sqrt(big_a) * alpha
        sign = 1 if kind == "lowshelf" else -1
        b = [
            big_a * ((big_a + 1) - sign * (big_a - 1) * cw + s),
            sign * 2 * big_a * ((big_a - 1) - sign * (big_a + 1) * cw),
            big_a * ((big_a + 1) - sign * (big_a - 1) * cw - s),
        ]
        a = [
            (big_a + 1) + sign * (big_a - 1) * cw + s,
            -sign * 2 * ((big_a - 1) + sign * (big_a + 1) * cw),
            (big_a + 1) + sign * (big_a - 1) * cw - s,
        ]
    bn, an = np.array(b) / a[0], np.array(a) / a[0]
    return bn, an


def _filter(x: np.ndarray, ba: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    from scipy.signal import lfilter

    return np.asarray(lfilter(ba[0], ba[1], x))


def _coeff(ms: float, rate: float) -> float:
    return 0.0 if ms <= 0 else math.exp(-1.0 / (ms * 0.001 * rate))


def envelope(
    x: np.ndarray, attack_ms: float, release_ms: float, rate: float, rms: bool = False
) -> np.ndarray:
    """One-pole attack/release envelope of ``|x|`` (or of ``x²``, square-rooted, for RMS)."""
    att, rel = _coeff(attack_ms, rate), _coeff(release_ms, rate)
    levels = (np.square(x) if rms else np.abs(x)).tolist()
    out = [0.0] * len(levels)
    env = 0.0
    for i, v in enumerate(levels):
        c = att if v > env else rel
        env = c * env + (1.0 - c) * v
        out[i] = env
    result = np.array(out)
    return np.sqrt(result) if rms else result


def compressor_gain(
    env: np.ndarray, threshold_db: float, ratio: float, knee_db: float
) -> np.ndarray:
    over = _linear_to_db(env) - threshold_db
    inv = 0.0 if math.isinf(ratio) else 1.0 / ratio
    soft = over * (1 - (over / knee_db if knee_db > 0 else 1.0) * (1 - inv))
    hard = over * inv
    compressed = np.where((knee_db > 0) & (over < knee_db), soft, hard)
    return np.where(env > _db_to_linear(threshold_db), 10 ** ((compressed - over) / 20), 1.0)


class _PcmTemplate(SdkTemplate):
    """One PCM Stream on ``stream`` in, one on ``stream`` out."""

    inports = ["stream"]
    outports = ["stream", "error"]
    inport_types = {"stream": "Stream"}
    outport_types = {"stream": "Stream", "error": "Error"}
    #: an RFLA form of the library this id had before: in ``in`` → out ``out``
    rfla: type[LibraryActor] | None = None

    def settings(self, ctx: ActorContext) -> Any:
        """Config read and checked before the stream is, so bad config fails first."""
        return None

    def process(self, x: np.ndarray, s: Any) -> np.ndarray:
        raise NotImplementedError

    async def tick(self, ctx: ActorContext) -> None:
        if self.rfla is not None and "in" in ctx.inputs and "stream" not in ctx.inputs:
            self.rfla().run(ctx)
            return
        s = self.settings(ctx)
        stream = await read_stream(ctx, "stream")
        x = _samples(stream, "stream")
        y = await asyncio.to_thread(self.process, x, s)
        if not np.isfinite(y).all():
            raise ActorError("the result is not finite (check the filter settings)")
        ctx.done(
            {
                "stream": write_stream(
                    ctx, "stream", _pcm_frames(y, stream), stream.content_type, stream.metadata
                )
            }
        )


def _with_rfla(cls: type[_PcmTemplate], legacy: type[LibraryActor], doc: str) -> None:
    cls.rfla = legacy
    cls.inports = ["stream", "in"]
    cls.outports = [*cls.outports, "out"]
    cls.inport_types = {**cls.inport_types, "in": "Bytes"}
    cls.outport_types = {**cls.outport_types, "out": legacy.outport_types["out"]}
    cls.__doc__ = (cls.__doc__ or "") + "\n    " + doc + "\n    "


class AudioGain(_PcmTemplate):
    """Multiplies every sample by a gain.

    Ports: in ``stream`` (PCM Stream) → out ``stream``, ``error``. Config: ``gainDb``
    (decibels, default 0), ``gainLinear`` (a factor ≥ 0; when set it wins over ``gainDb``).
    """

    component = "tpl_audio_gain"
    config_defaults = {"gainDb": 0.0, "gainLinear": None}

    def settings(self, ctx: ActorContext) -> float:
        if ctx.config.get("gainLinear") is not None:
            return float(config_number(ctx, "gainLinear", minimum=0, maximum=1e6))
        return _db_to_linear(float(config_number(ctx, "gainDb", 0.0, minimum=-300, maximum=120)))

    def process(self, x: np.ndarray, s: float) -> np.ndarray:
        return (x.astype(np.float32) * np.float32(s)).astype(np.float64)


_with_rfla(
    AudioGain,
    _RflaGain,
    "The library's own form still works: in ``in`` (RFLA "
    "audio) → out ``out``, config ``gain_db`` or ``gain``, ``clip``.",
)


class AudioNormalize(_PcmTemplate):
    """Scales the stream so its peak reaches ``targetDb`` (silence passes unchanged).

    Ports: in ``stream`` (PCM Stream) → out ``stream``, ``error``. Config: ``targetDb``
    (dBFS ≤ 20, default -1).
    """

    component = "tpl_audio_normalize"
    config_defaults = {"targetDb": -1.0}

    def settings(self, ctx: ActorContext) -> float:
        return _db_to_linear(float(config_number(ctx, "targetDb", -1.0, minimum=-300, maximum=20)))

    def process(self, x: np.ndarray, s: float) -> np.ndarray:
        peak = float(np.max(np.abs(x.astype(np.float32)))) if x.size else 0.0
        gain = np.float32(s / peak) if peak > 0 else np.float32(1.0)
        return (x.astype(np.float32) * gain).astype(np.float64)


_with_rfla(
    AudioNormalize,
    _RflaNormalize,
    "The library's own form still works: in ``in`` "
    "(RFLA audio) → out ``out``, config ``target_db``, ``measure``.",
)


class BiquadFilter(_PcmTemplate):
    """A second-order IIR filter (RBJ cookbook).

    Ports: in ``stream`` (PCM Stream) → out ``stream``, ``error``. Config: ``filterType``
    (``lowpass``/``lpf``, default, ``highpass``/``hpf``, ``bandpass``/``bpf``, ``notch``,
    ``peaking``/``eq``, ``lowshelf``, ``highshelf``), ``frequency`` (Hz, below half the
    sample rate, default 1000), ``q`` (> 0, default 0.707), ``gainDb`` (peaking and shelves,
    default 0), ``sampleRate`` (default 44100).
    """

    component = "tpl_biquad_filter"
    config_defaults = {
        "filterType": "lowpass",
        "frequency": 1000.0,
        "q": 0.707,
        "gainDb": 0.0,
        "sampleRate": 44100.0,
    }

    def settings(self, ctx: ActorContext) -> tuple[np.ndarray, np.ndarray]:
        kind = config_choice(ctx, "filterType", tuple(_KINDS), "lowpass")
        rate = _rate(ctx)
        return biquad(
            _KINDS[kind],
            rate,
            _frequency(ctx, "frequency", 1000.0, rate),
            float(config_number(ctx, "q", 0.707, minimum=0, exclusive_minimum=True, maximum=1000)),
            float(config_number(ctx, "gainDb", 0.0, minimum=-120, maximum=120)),
        )

    def process(self, x: np.ndarray, s: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        return _filter(x, s)


def _bands(ctx: ActorContext) -> list[tuple[str, float, float, float]]:
    raw = config_value(ctx, "bands", [])
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else []
        except ValueError as exc:
            raise ActorError(f"config 'bands' is not valid JSON: {exc}") from exc
    if not isinstance(raw, list) or len(raw) > 64:
        raise ActorError(
            "config 'bands' must be a list of at most 64 band objects {type, frequency, gain, q}"
        )
    out = []
    for i, band in enumerate(raw):
        if not isinstance(band, dict):
            raise ActorError(f"config 'bands' item {i} must be an object, got {band!r}")
        kind = band.get("type", "peaking")
        if kind not in _KINDS:
            raise ActorError(
                f"config 'bands' item {i} 'type' must be one of {', '.join(_KINDS)}, got {kind!r}"
            )
        vals = []
        for key, default in (("frequency", 1000.0), ("gain", 0.0), ("q", 1.0)):
            v = band.get(key, default)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ActorError(f"config 'bands' item {i} {key!r} must be a number, got {v!r}")
            vals.append(float(v))
        if vals[0] <= 0 or vals[2] <= 0 or abs(vals[1]) > 120:
            raise ActorError(
                f"config 'bands' item {i}: frequency and q must be > 0 and |gain| <= 120 dB"
            )
        out.append((_KINDS[kind], vals[0], vals[1], vals[2]))
    return out


class Equalizer(_PcmTemplate):
    """N biquad filters in series.

    Ports: in ``stream`` (PCM Stream) → out ``stream``, ``error``. Config: ``bands`` (a list,
    or its JSON text, of ``{type, frequency, gain, q}``; ``type`` as ``tpl_biquad_filter``'s
    ``filterType``, default ``peaking``; ``frequency`` default 1000 Hz, ``gain`` dB default 0,
    ``q`` default 1; empty: unchanged), ``sampleRate`` (default 44100).
    """

    component = "tpl_equalizer"
    config_defaults = {"sampleRate": 44100.0, "bands": []}

    def settings(self, ctx: ActorContext) -> list[tuple[np.ndarray, np.ndarray]]:
        rate = _rate(ctx)
        filters = []
        for i, (kind, f, g, q) in enumerate(_bands(ctx)):
            if f >= rate / 2:
                raise ActorError(
                    f"config 'bands' item {i}: frequency {f} Hz is not below "
                    "half of config 'sampleRate'"
                )
            filters.append(biquad(kind, rate, f, q, g))
        return filters

    def process(self, x: np.ndarray, s: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        for ba in s:
            x = _filter(x, ba)
        return x


class DcOffset(_PcmTemplate):
    """Removes DC offset with a high-pass biquad (Q 0.707) at ``cutoffHz``.

    Ports: in ``stream`` (PCM Stream) → out ``stream``, ``error``. Config: ``cutoffHz``
    (default 5), ``sampleRate`` (default 44100).
    """

    component = "tpl_dc_offset"
    config_defaults = {"cutoffHz": 5.0, "sampleRate": 44100.0}

    def settings(self, ctx: ActorContext) -> tuple[np.ndarray, np.ndarray]:
        rate = _rate(ctx)
        return biquad("highpass", rate, _frequency(ctx, "cutoffHz", 5.0, rate), 0.707, 0.0)

    def process(self, x: np.ndarray, s: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        return _filter(x, s)


class Compressor(_PcmTemplate):
    """Reduces the level above ``thresholdDb`` by ``ratio`` (peak envelope, soft knee).

    Gain per sample: with ``over`` = envelope dB - threshold, ``over > 0`` is reduced to
    ``over / ratio`` (within the knee, ``over · (1 - (over/knee)(1 - 1/ratio))``), then
    ``makeupDb`` is added. Ports: in ``stream`` → out ``stream``, ``error``. Config:
    ``thresholdDb`` (default -20), ``ratio`` (≥ 1, default 4), ``attackMs`` (default 10),
    ``releaseMs`` (default 100), ``kneeDb`` (≥ 0, default 6), ``makeupDb`` (default 0),
    ``sampleRate`` (default 44100).
    """

    component = "tpl_compressor"
    config_defaults = {
        "thresholdDb": -20.0,
        "ratio": 4.0,
        "attackMs": 10.0,
        "releaseMs": 100.0,
        "kneeDb": 6.0,
        "makeupDb": 0.0,
        "sampleRate": 44100.0,
    }

    def settings(self, ctx: ActorContext) -> tuple[float, ...]:
        return (
            float(config_number(ctx, "thresholdDb", -20.0, minimum=-150, maximum=20)),
            float(config_number(ctx, "ratio", 4.0, minimum=1, maximum=1e6)),
            _ms(ctx, "attackMs", 10.0),
            _ms(ctx, "releaseMs", 100.0),
            float(config_number(ctx, "kneeDb", 6.0, minimum=0, maximum=60)),
            float(config_number(ctx, "makeupDb", 0.0, minimum=-60, maximum=60)),
            _rate(ctx),
        )

    def process(self, x: np.ndarray, s: tuple[float, ...]) -> np.ndarray:
        thr, ratio, att, rel, knee, makeup, rate = s
        env = envelope(x, att, rel, rate)
        return x * compressor_gain(env, thr, ratio, knee) * _db_to_linear(makeup)


class Limiter(_PcmTemplate):
    """Keeps the peak envelope at or below ``ceilingDb`` (infinite ratio, hard knee).

    Ports: in ``stream`` → out ``stream``, ``error``. Config: ``ceilingDb`` (default -1),
    ``attackMs`` (default 0.1), ``releaseMs`` (default 50), ``sampleRate`` (default 44100).
    """

    component = "tpl_limiter"
    config_defaults = {"ceilingDb": -1.0, "attackMs": 0.1, "releaseMs": 50.0, "sampleRate": 44100.0}

    def settings(self, ctx: ActorContext) -> tuple[float, ...]:
        return (
            float(config_number(ctx, "ceilingDb", -1.0, minimum=-150, maximum=20)),
            _ms(ctx, "attackMs", 0.1),
            _ms(ctx, "releaseMs", 50.0),
            _rate(ctx),
        )

    def process(self, x: np.ndarray, s: tuple[float, ...]) -> np.ndarray:
        ceiling, att, rel, rate = s
        return x * compressor_gain(envelope(x, att, rel, rate), ceiling, math.inf, 0.0)


class NoiseGate(_PcmTemplate):
    """Attenuates the signal while its peak envelope is below ``thresholdDb``: by
    ``(threshold - level) · (1 - 1/ratio)`` dB.

    Ports: in ``stream`` → out ``stream``, ``error``. Config: ``thresholdDb`` (default -40),
    ``ratio`` (≥ 1, default 10), ``attackMs`` (default 1), ``releaseMs`` (default 50),
    ``sampleRate`` (default 44100).
    """

    component = "tpl_noise_gate"
    config_defaults = {
        "thresholdDb": -40.0,
        "ratio": 10.0,
        "attackMs": 1.0,
        "releaseMs": 50.0,
        "sampleRate": 44100.0,
    }

    def settings(self, ctx: ActorContext) -> tuple[float, ...]:
        return (
            float(config_number(ctx, "thresholdDb", -40.0, minimum=-150, maximum=20)),
            float(config_number(ctx, "ratio", 10.0, minimum=1, maximum=1e6)),
            _ms(ctx, "attackMs", 1.0),
            _ms(ctx, "releaseMs", 50.0),
            _rate(ctx),
        )

    def process(self, x: np.ndarray, s: tuple[float, ...]) -> np.ndarray:
        thr, ratio, att, rel, rate = s
        env = envelope(x, att, rel, rate)
        under = thr - _linear_to_db(env)
        gain = np.where(env < _db_to_linear(thr), 10 ** (-under * (1 - 1 / ratio) / 20), 1.0)
        return x * gain


class DeEsser(_PcmTemplate):
    """Compresses sibilance: a band-pass (Q 2) at ``frequency`` feeds a fast peak envelope
    (0.5 ms attack, 20 ms release); where it exceeds ``thresholdDb`` the whole signal is
    reduced by ``excess · (1 - 1/ratio)`` dB.

    Ports: in ``stream`` → out ``stream``, ``error``. Config: ``frequency`` (default 6000),
    ``thresholdDb`` (default -20), ``ratio`` (≥ 1, default 4), ``sampleRate`` (default 44100).
    """

    component = "tpl_de_esser"
    config_defaults = {
        "frequency": 6000.0,
        "thresholdDb": -20.0,
        "ratio": 4.0,
        "sampleRate": 44100.0,
    }

    def settings(self, ctx: ActorContext) -> tuple[Any, ...]:
        rate = _rate(ctx)
        return (
            biquad("bandpass", rate, _frequency(ctx, "frequency", 6000.0, rate), 2.0, 0.0),
            float(config_number(ctx, "thresholdDb", -20.0, minimum=-150, maximum=20)),
            float(config_number(ctx, "ratio", 4.0, minimum=1, maximum=1e6)),
            rate,
        )

    def process(self, x: np.ndarray, s: tuple[Any, ...]) -> np.ndarray:
        ba, thr, ratio, rate = s
        env = envelope(_filter(x, ba), 0.5, 20.0, rate)
        t = _db_to_linear(thr)
        excess = np.where(env > t, 20 * np.log10(np.maximum(env, 1e-300) / t), 0.0)
        return x * 10 ** (-excess * (1 - 1 / ratio) / 20)


class EnvelopeFollower(_PcmTemplate):
    """The amplitude envelope as a control-signal Stream (one float32 per input sample).

    Ports: in ``stream`` → out ``stream`` (content type ``audio/control-signal``, ``begin``
    metadata ``{attackMs, releaseMs, mode, sampleRate}``), ``error``. Config: ``attackMs``
    (default 5), ``releaseMs`` (default 50), ``mode`` (``peak``, default, or ``rms``),
    ``sampleRate`` (default 44100).
    """

    component = "tpl_envelope_follower"
    config_defaults = {"attackMs": 5.0, "releaseMs": 50.0, "mode": "peak", "sampleRate": 44100.0}

    def settings(self, ctx: ActorContext) -> tuple[Any, ...]:
        return (
            _ms(ctx, "attackMs", 5.0),
            _ms(ctx, "releaseMs", 50.0),
            config_choice(ctx, "mode", ("peak", "rms"), "peak"),
            _rate(ctx),
        )

    def process(self, x: np.ndarray, s: tuple[Any, ...]) -> np.ndarray:
        att, rel, mode, rate = s
        return envelope(x, att, rel, rate, rms=mode == "rms")

    async def tick(self, ctx: ActorContext) -> None:
        s = self.settings(ctx)
        stream = await read_stream(ctx, "stream")
        y = await asyncio.to_thread(self.process, _samples(stream, "stream"), s)
        meta = {"attackMs": s[0], "releaseMs": s[1], "mode": s[2], "sampleRate": s[3]}
        ctx.done(
            {
                "stream": write_stream(
                    ctx, "stream", _pcm_frames(y, stream), "audio/control-signal", meta
                )
            }
        )


def _hann(n: int) -> np.ndarray:
    """The symmetric Hann window the SDK uses (zero at both ends)."""
    return 0.5 * (1 - np.cos(2 * np.pi * np.arange(n) / max(n - 1, 1)))


def stft_magnitudes(x: np.ndarray, fft: int, hop: int) -> np.ndarray:
    """Magnitude frames of the SDK's analysis: the first frame ends at sample ``fft``, one
    every ``hop`` samples after; Hann-windowed, unnormalised."""
    if len(x) < fft:
        return np.zeros((0, fft // 2 + 1))
    starts = np.arange(0, len(x) - fft + 1, hop)
    frames = np.lib.stride_tricks.sliding_window_view(x, fft)[starts]
    return np.abs(np.fft.rfft(frames * _hann(fft), axis=1))


class AudioSpectrum(_PcmTemplate):
    """Hann-windowed FFT magnitude frames as an ``audio/frequency-bins`` Stream.

    Frames start every ``hopSize`` samples, the first covering samples 0..fftSize-1 (a
    stream shorter than ``fftSize`` gives none); each data frame is ``fftSize/2 + 1``
    float32 magnitudes (unnormalised), bin ``k`` at ``k · sampleRate / fftSize`` Hz. Ports:
    in ``stream`` → out ``stream`` (``begin`` metadata ``{fftSize, binCount, hopSize,
    sampleRate, binResolution}``), ``stats`` (Object ``{totalSpectrumFrames, fftSize,
    binCount, hopSize, sampleRate}``), ``error``. Config: ``fftSize`` (power of two 16-65536,
    default 2048), ``hopSize`` (1..fftSize, default 512), ``sampleRate`` (default 44100).
    """

    component = "tpl_audio_spectrum"
    outports = ["stream", "stats", "error"]
    outport_types = {"stream": "Stream", "stats": "Object", "error": "Error"}
    config_defaults = {"fftSize": 2048, "hopSize": 512, "sampleRate": 44100.0}

    async def tick(self, ctx: ActorContext) -> None:
        if "in" in ctx.inputs and "stream" not in ctx.inputs:
            _RflaSpectrum().run(ctx)
            return
        fft = _fft_size(ctx, 2048)
        hop = _hop(ctx, 512, fft)
        rate = _rate(ctx)
        stream = await read_stream(ctx, "stream")
        mags = await asyncio.to_thread(stft_magnitudes, _samples(stream, "stream"), fft, hop)
        bins = fft // 2 + 1
        meta = {
            "fftSize": fft,
            "binCount": bins,
            "hopSize": hop,
            "sampleRate": rate,
            "binResolution": rate / fft,
        }
        frames = [row.astype("<f4").tobytes() for row in mags]
        ctx.done(
            {
                "stream": write_stream(ctx, "stream", frames, "audio/frequency-bins", meta),
                "stats": Message.object(
                    {
                        "totalSpectrumFrames": len(frames),
                        "fftSize": fft,
                        "binCount": bins,
                        "hopSize": hop,
                        "sampleRate": rate,
                    }
                ),
            }
        )


AudioSpectrum.rfla = _RflaSpectrum
AudioSpectrum.inports = ["stream", "in"]
AudioSpectrum.outports = [*AudioSpectrum.outports, "out"]
AudioSpectrum.inport_types = {"stream": "Stream", "in": "Bytes"}
AudioSpectrum.outport_types = {**AudioSpectrum.outport_types, "out": "Object"}
AudioSpectrum.__doc__ = (AudioSpectrum.__doc__ or "") + (
    "\n    The library's own form still works: in ``in`` (RFLA audio) → out ``out`` (Object),"
    " config ``size``, ``unit``.\n    "
)


class Ifft(_PcmTemplate):
    """Magnitude frames back to PCM: each frame (``fftSize/2 + 1`` float32 bins, zero
    phase) is inverse-FFT'd, scaled by 1/fftSize, Hann-windowed and overlap-added every
    ``hopSize`` samples; ``hopSize`` samples come out per frame.

    Ports: in ``stream`` (frequency-bins Stream, e.g. from ``tpl_audio_spectrum``) → out
    ``stream`` (``audio/raw-pcm-f32``, ``begin`` metadata ``{fftSize, hopSize}``), ``error``.
    Bytes that do not fill whole frames fail the tick. Config: ``fftSize`` (default 2048),
    ``hopSize`` (default 512).
    """

    component = "tpl_ifft"
    config_defaults = {"fftSize": 2048, "hopSize": 512}

    async def tick(self, ctx: ActorContext) -> None:
        fft = _fft_size(ctx, 2048)
        hop = _hop(ctx, 512, fft)
        stream = await read_stream(ctx, "stream")
        x = _samples(stream, "stream")
        bins = fft // 2 + 1
        if len(x) % bins:
            raise ActorError(
                f"in-port 'stream': {len(x)} values are not whole frames of "
                f"{bins} bins (config 'fftSize' {fft})"
            )

        def synth() -> np.ndarray:
            frames = x.reshape(-1, bins)
            out = np.zeros(len(frames) * hop + fft)
            win = _hann(fft)
            for i, mags in enumerate(frames):
                out[i * hop : i * hop + fft] += np.fft.irfft(mags, fft) * win
            return out[: len(frames) * hop]

        y = await asyncio.to_thread(synth)
        ctx.done(
            {
                "stream": write_stream(
                    ctx,
                    "stream",
                    _pcm_frames(y, None),
                    "audio/raw-pcm-f32",
                    {"fftSize": fft, "hopSize": hop},
                )
            }
        )


class NoiseReduction(_PcmTemplate):
    """Spectral subtraction: the mean magnitude spectrum of the first ``profileMs`` is the
    noise profile; from then on ``strength`` x that profile is subtracted from every STFT
    frame's magnitudes (floored at 0, phases kept) and the signal resynthesised.

    The profile part passes unchanged. Ports: in ``stream`` → out ``stream`` (same length),
    ``error``. Config: ``fftSize`` (default 2048), ``hopSize`` (default 512), ``profileMs``
    (default 500), ``strength`` (0-10, default 1), ``sampleRate`` (default 44100).
    """

    component = "tpl_noise_reduction"
    config_defaults = {
        "fftSize": 2048,
        "hopSize": 512,
        "profileMs": 500.0,
        "strength": 1.0,
        "sampleRate": 44100.0,
    }

    def settings(self, ctx: ActorContext) -> tuple[Any, ...]:
        fft = _fft_size(ctx, 2048)
        return (
            fft,
            _hop(ctx, 512, fft),
            _ms(ctx, "profileMs", 500.0),
            float(config_number(ctx, "strength", 1.0, minimum=0, maximum=10)),
            _rate(ctx),
        )

    def process(self, x: np.ndarray, s: tuple[Any, ...]) -> np.ndarray:
        from scipy.signal import istft, stft

        fft, hop, profile_ms, strength, rate = s
        n_profile = min(len(x), int(profile_ms * rate / 1000))
        head, tail = x[:n_profile], x[n_profile:]
        profile = stft_magnitudes(head, fft, hop)
        if not len(profile) or not len(tail):
            return x
        noise = profile.mean(axis=0) * strength
        window = "hann"
        _, _, z = stft(
            tail,
            nperseg=fft,
            noverlap=fft - hop,
            window=window,
            boundary="zeros",
            padded=True,
            scaling="spectrum",
        )
        # the profile is unnormalised (as the SDK's), scipy's "spectrum" scaling divides by
        # the window sum: bring the profile to the same scale
        noise = noise / _hann(fft).sum() * np.hanning(fft).sum() / np.hanning(fft).sum()
        mags = np.maximum(np.abs(z) - noise[:, None], 0.0)
        _, y = istft(
            mags * np.exp(1j * np.angle(z)),
            nperseg=fft,
            noverlap=fft - hop,
            window=window,
            scaling="spectrum",
        )
        return np.concatenate(
            [head, np.asarray(y)[: len(tail)], np.zeros(max(0, len(tail) - len(y)))]
        )


def _phase_vocoder(x: np.ndarray, stretch: float, fft: int, hop: int) -> np.ndarray:
    """``x`` stretched in time by ``stretch`` with its pitch kept (phase vocoder)."""
    from scipy.signal import istft, stft

    _, _, z = stft(x, nperseg=fft, noverlap=fft - hop, window="hann")
    steps = np.arange(0, z.shape[1], 1 / stretch)
    expected = 2 * np.pi * hop * np.arange(z.shape[0]) / fft
    phase = np.angle(z[:, 0])
    out = np.zeros((z.shape[0], len(steps)), dtype=complex)
    padded = np.concatenate([z, np.zeros((z.shape[0], 2))], axis=1)
    for i, t in enumerate(steps):
        k = int(t)
        frac = t - k
        a, b = padded[:, k], padded[:, k + 1]
        mag = (1 - frac) * np.abs(a) + frac * np.abs(b)
        out[:, i] = mag * np.exp(1j * phase)
        delta = np.angle(b) - np.angle(a) - expected
        delta -= 2 * np.pi * np.round(delta / (2 * np.pi))
        phase = phase + expected + delta
    _, y = istft(out, nperseg=fft, noverlap=fft - hop, window="hann")
    return np.asarray(y)


class PitchShift(_PcmTemplate):
    """Shifts pitch by ``semitones`` keeping the duration: a phase-vocoder time stretch by
    ``2^(semitones/12)`` followed by resampling back to the input's length.

    Ports: in ``stream`` → out ``stream`` (same length), ``error``. Config: ``semitones``
    (-48..48, default 0: unchanged), ``fftSize`` (default 4096), ``hopSize`` (default 256).
    """

    component = "tpl_pitch_shift"
    config_defaults = {"semitones": 0.0, "fftSize": 4096, "hopSize": 256}

    def settings(self, ctx: ActorContext) -> tuple[Any, ...]:
        fft = _fft_size(ctx, 4096)
        return (
            float(config_number(ctx, "semitones", 0.0, minimum=-48, maximum=48)),
            fft,
            _hop(ctx, 256, fft),
        )

    def process(self, x: np.ndarray, s: tuple[Any, ...]) -> np.ndarray:
        semitones, fft, hop = s
        if semitones == 0 or len(x) < 2:
            return x
        fft = min(fft, 1 << max(4, (len(x) - 1).bit_length() - 1))
        hop = min(hop, fft // 4)
        factor = 2 ** (semitones / 12)
        stretched = _phase_vocoder(x, factor, fft, max(1, hop))
        want = max(2, round(len(x) * factor))
        stretched = np.concatenate([stretched, np.zeros(max(0, want - len(stretched)))])[:want]
        positions = np.linspace(0, len(stretched) - 1, len(x))
        return np.interp(positions, np.arange(len(stretched)), stretched)


class TimeStretch(_PcmTemplate):
    """Changes duration keeping pitch (WSOLA): Hann-windowed segments of ``windowSize`` are
    taken every ``windowSize/4`` input samples (each shifted by up to ``windowSize/8`` to best
    continue the output) and overlap-added every ``ratio · windowSize/4`` output samples.

    Ports: in ``stream`` → out ``stream`` (about ``ratio`` x as long), ``error``. Config:
    ``ratio`` (0.1-10, default 1: unchanged; 2 doubles the duration), ``windowSize`` (64-16384,
    default 1024).
    """

    component = "tpl_time_stretch"
    config_defaults = {"ratio": 1.0, "windowSize": 1024}

    def settings(self, ctx: ActorContext) -> tuple[float, int]:
        return (
            float(config_number(ctx, "ratio", 1.0, minimum=0.1, maximum=10)),
            config_int(ctx, "windowSize", 1024, minimum=64, maximum=16384),
        )

    def process(self, x: np.ndarray, s: tuple[float, int]) -> np.ndarray:
        ratio, win = s
        if abs(ratio - 1) < 1e-3 or len(x) < win:
            return x
        hop_a = win // 4
        hop_s = max(1, int(hop_a * ratio))
        search = hop_a // 2
        window = 0.5 * (1 - np.cos(2 * np.pi * np.arange(win) / win))
        n_out = int(len(x) * ratio)
        out = np.zeros(n_out + win)
        norm = np.zeros(n_out + win)
        in_pos = out_pos = 0
        prev_tail: np.ndarray | None = None
        while in_pos + win <= len(x) and out_pos < n_out:
            best = in_pos
            if prev_tail is not None:
                lo, hi = max(0, in_pos - search), min(len(x) - win, in_pos + search)
                cands = np.arange(lo, hi + 1)
                seg = np.lib.stride_tricks.sliding_window_view(x, len(prev_tail))[cands]
                best = int(cands[np.argmax(seg @ prev_tail)])
            out[out_pos : out_pos + win] += x[best : best + win] * window
            norm[out_pos : out_pos + win] += window
            nxt = best + hop_s
            prev_tail = x[nxt : nxt + min(64, win)] if nxt + 64 <= len(x) else None
            in_pos += hop_a
            out_pos += hop_s
        return out[:n_out] / np.where(norm[:n_out] > 1e-3, norm[:n_out], 1.0)


_POOL = "sdk_audio"  # per-node pool: an impulse response, or a stream waiting for its pair


class Convolve(_PcmTemplate):
    """Convolves a PCM Stream with an impulse response (FIR / convolution reverb, by FFT).

    The output has the input's length (the tail past its end is dropped, as in the SDK).
    Ports: in ``stream`` (PCM Stream), ``impulse`` (Bytes: float32 LE samples; kept for the
    streams that follow; either may arrive first, a stream waits for the impulse) → out
    ``stream``, ``error``.
    Config: none.
    """

    component = "tpl_convolve"
    inports = ["stream", "impulse"]
    inport_types = {"stream": "Stream", "impulse": "Bytes"}

    async def tick(self, ctx: ActorContext) -> None:
        if "impulse" in ctx.inputs:
            msg = ctx.inputs["impulse"]
            if msg["type"] != "Bytes":
                raise ActorError(
                    f"in-port 'impulse': expected Bytes of float32 samples, got {msg['type']}"
                )
            data = bytes(msg["data"])
            if not data or len(data) % 4:
                raise ActorError(
                    f"in-port 'impulse': {len(data)} bytes is not a non-empty "
                    "whole number of float32 samples"
                )
            ir = np.frombuffer(data, "<f4").astype(np.float64)
            if not np.isfinite(ir).all():
                raise ActorError("in-port 'impulse': the samples include NaN or infinity")
            ctx.pool_upsert(_POOL, "impulse", ir)
        if "stream" in ctx.inputs:
            ctx.pool_upsert(_POOL, "stream", await read_stream(ctx, "stream"))
        h = ctx.pool_get(_POOL, "impulse")
        stream = ctx.pool_get(_POOL, "stream")
        if h is None or stream is None:  # the other half comes in a later tick
            ctx.done()
            return
        ctx.pool_remove(_POOL, "stream")
        x = _samples(stream, "stream")

        def conv() -> np.ndarray:
            from scipy.signal import oaconvolve

            return np.asarray(oaconvolve(x, h))[: len(x)] if len(x) else x

        y = await asyncio.to_thread(conv)
        ctx.done(
            {
                "stream": write_stream(
                    ctx, "stream", _pcm_frames(y, stream), stream.content_type, stream.metadata
                )
            }
        )


class Correlator(_PcmTemplate):
    """Normalised cross-correlation of two PCM Streams, for delay estimation.

    For each lag from ``-maxLag`` to ``+maxLag`` samples: ``Σ a[i]·b[i+lag] / (rms(a)·rms(b)·n)``
    over the common length ``n``. Ports: in ``stream_a``, ``stream_b`` (PCM Streams; either
    may come first, it is kept until the other arrives) → out ``stream`` (``audio/correlation``:
    the ``2·maxLag + 1`` values as float32, ``begin`` metadata ``{maxLag, sampleRate}``),
    ``stats`` (Object ``{bestLagSamples, bestLagMs, peakCorrelation, signalLength}``),
    ``error``. Config: ``sampleRate`` (default 44100), ``maxLagMs`` (default 100).
    """

    component = "tpl_correlator"
    inports = ["stream_a", "stream_b"]
    outports = ["stream", "stats", "error"]
    inport_types = {"stream_a": "Stream", "stream_b": "Stream"}
    outport_types = {"stream": "Stream", "stats": "Object", "error": "Error"}
    config_defaults = {"sampleRate": 44100.0, "maxLagMs": 100.0}

    async def tick(self, ctx: ActorContext) -> None:
        rate = _rate(ctx)
        max_lag = int(_ms(ctx, "maxLagMs", 100.0) * rate / 1000)
        if max_lag > 1 << 22:
            raise ActorError("config 'maxLagMs' spans more than 4194304 samples")
        got = {}
        for port in self.inports:
            if port in ctx.inputs:
                got[port] = _samples(await read_stream(ctx, port), port)
        for port, samples in got.items():
            ctx.pool_upsert(_POOL, port, samples)
        a, b = (ctx.pool_get(_POOL, p) for p in self.inports)
        if a is None or b is None:
            ctx.done()
            return
        for port in self.inports:
            ctx.pool_remove(_POOL, port)
        n = min(len(a), len(b))
        if n == 0:
            raise ActorError("in-ports 'stream_a'/'stream_b': an input stream is empty")

        def corr() -> tuple[np.ndarray, int, float]:
            from scipy.signal import correlate

            a1, b1 = a[:n], b[:n]
            full = np.asarray(correlate(b1, a1, mode="full"))  # index n-1 is lag 0
            lags = np.arange(-max_lag, max_lag + 1)
            idx = lags + n - 1
            vals = np.where(
                (idx >= 0) & (idx < len(full)), full[np.clip(idx, 0, len(full) - 1)], 0.0
            )
            norm = math.sqrt(float(a1 @ a1) / n) * math.sqrt(float(b1 @ b1) / n) * n
            vals = vals / norm if norm > 0 else np.zeros_like(vals)
            best = int(np.argmax(vals))
            return vals, int(lags[best]), float(vals[best])

        vals, lag, peak = await asyncio.to_thread(corr)
        ctx.done(
            {
                "stream": write_stream(
                    ctx,
                    "stream",
                    vals.astype("<f4").tobytes(),
                    "audio/correlation",
                    {"maxLag": max_lag, "sampleRate": rate},
                ),
                "stats": Message.object(
                    {
                        "bestLagSamples": lag,
                        "bestLagMs": lag / rate * 1000,
                        "peakCorrelation": peak,
                        "signalLength": n,
                    }
                ),
            }
        )


class Crossover(_PcmTemplate):
    """3-way Linkwitz-Riley (4th order) crossover: low = two low-passes at
    ``lowFrequency``; mid = two high-passes there, then two low-passes at ``highFrequency``;
    high = the same two high-passes, then two high-passes at ``highFrequency`` (Q 0.707).

    Ports: in ``stream`` → out ``low``, ``mid``, ``high`` (PCM Streams), ``error``. Config:
    ``lowFrequency`` (default 200), ``highFrequency`` (above ``lowFrequency``, default 4000),
    ``sampleRate`` (default 44100).
    """

    component = "tpl_crossover"
    outports = ["low", "mid", "high", "error"]
    outport_types = {"low": "Stream", "mid": "Stream", "high": "Stream", "error": "Error"}
    config_defaults = {"lowFrequency": 200.0, "highFrequency": 4000.0, "sampleRate": 44100.0}

    async def tick(self, ctx: ActorContext) -> None:
        rate = _rate(ctx)
        lo = _frequency(ctx, "lowFrequency", 200.0, rate)
        hi = _frequency(ctx, "highFrequency", 4000.0, rate)
        if hi <= lo:
            raise ActorError(f"config 'highFrequency' ({hi}) must be above 'lowFrequency' ({lo})")
        stream = await read_stream(ctx, "stream")
        x = _samples(stream, "stream")

        def split() -> tuple[np.ndarray, ...]:
            lp1, hp1 = biquad("lowpass", rate, lo, 0.707, 0), biquad("highpass", rate, lo, 0.707, 0)
            lp2, hp2 = biquad("lowpass", rate, hi, 0.707, 0), biquad("highpass", rate, hi, 0.707, 0)
            low = _filter(_filter(x, lp1), lp1)
            mid_high = _filter(_filter(x, hp1), hp1)
            return low, _filter(_filter(mid_high, lp2), lp2), _filter(_filter(mid_high, hp2), hp2)

        bands = await asyncio.to_thread(split)
        ctx.done(
            {
                port: write_stream(
                    ctx, port, _pcm_frames(y, stream), stream.content_type, stream.metadata
                )
                for port, y in zip(("low", "mid", "high"), bands, strict=True)
            }
        )


class _Detector(_PcmTemplate):
    """Passes the stream through and reports events found in it on ``events``."""

    outports = ["stream", "events", "error"]
    outport_types = {"stream": "Stream", "events": "Array", "error": "Error"}

    def detect(self, x: np.ndarray, s: Any) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def tick(self, ctx: ActorContext) -> None:
        s = self.settings(ctx)
        stream = await read_stream(ctx, "stream")
        events = await asyncio.to_thread(self.detect, _samples(stream, "stream"), s)
        ctx.done(
            {
                "stream": write_stream(
                    ctx, "stream", stream.frames, stream.content_type, stream.metadata
                ),
                "events": Message.array(events),
            }
        )


class SilenceDetect(_Detector):
    """Finds silences: runs of at least ``minDurationMs`` whose samples are all below
    ``thresholdDb``.

    Ports: in ``stream`` → out ``stream`` (unchanged), ``events`` (Array, in order:
    ``{event: "silence.start", sampleOffset, timeMs}``, ``{event: "silence.end",
    sampleOffset, timeMs, durationMs}``, and last ``{event: "silence.summary", totalSamples,
    silenceRegions: [{startMs, endMs, durationMs}], isSilentAtEnd}``), ``error``. Offsets
    count samples from 1, as the SDK's. Config: ``thresholdDb`` (default -40),
    ``minDurationMs`` (default 500), ``sampleRate`` (default 44100).
    """

    component = "tpl_silence_detect"
    config_defaults = {"thresholdDb": -40.0, "minDurationMs": 500, "sampleRate": 44100.0}

    def settings(self, ctx: ActorContext) -> tuple[float, int, float]:
        thr = _db_to_linear(
            float(config_number(ctx, "thresholdDb", -40.0, minimum=-150, maximum=20))
        )
        rate = _rate(ctx)
        return thr, int(_ms(ctx, "minDurationMs", 500) * rate / 1000), rate

    def detect(self, x: np.ndarray, s: tuple[float, int, float]) -> list[dict[str, Any]]:
        thr, min_samples, rate = s
        quiet = np.abs(x.astype(np.float32)) < np.float32(thr)
        events: list[dict[str, Any]] = []
        regions = []
        n = len(x)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]])))
        silent_at_end = False

        def ms(samples: int) -> int:
            return int(samples / rate * 1000)

        for start, end in zip(edges[::2], edges[1::2], strict=True):  # quiet run [start, end)
            if end - start < max(min_samples, 1):
                continue
            first = int(start) + 1
            events.append({"event": "silence.start", "sampleOffset": first, "timeMs": ms(first)})
            if end < n:
                stop = int(end) + 1
                events.append(
                    {
                        "event": "silence.end",
                        "sampleOffset": stop,
                        "timeMs": ms(stop),
                        "durationMs": ms(stop) - ms(first),
                    }
                )
                regions.append(
                    {"startMs": ms(first), "endMs": ms(stop), "durationMs": ms(stop) - ms(first)}
                )
            else:
                silent_at_end = True
        events.append(
            {
                "event": "silence.summary",
                "totalSamples": n,
                "silenceRegions": regions,
                "isSilentAtEnd": silent_at_end,
            }
        )
        return events


class PeakDetect(_Detector):
    """Finds transients: a sample whose energy ``s²`` exceeds ``sensitivity²`` x the running
    mean energy (one-pole, over ``windowMs``), at least ``minIntervalMs`` after the last one.

    Ports: in ``stream`` → out ``stream`` (unchanged), ``events`` (Array: ``{event: "peak",
    sampleOffset, timeMs, energy}`` per transient, then ``{event: "summary", totalPeaks,
    peaks}``), ``error``. Config: ``sensitivity`` (> 0, default 3), ``windowMs`` (default 50),
    ``sampleRate`` (default 44100), ``minIntervalMs`` (default 100).
    """

    component = "tpl_peak_detect"
    config_defaults = {
        "sensitivity": 3.0,
        "windowMs": 50.0,
        "sampleRate": 44100.0,
        "minIntervalMs": 100.0,
    }

    def settings(self, ctx: ActorContext) -> tuple[float, int, int, float]:
        rate = _rate(ctx)
        sens = float(
            config_number(ctx, "sensitivity", 3.0, minimum=0, exclusive_minimum=True, maximum=1e6)
        )
        return (
            sens,
            int(_ms(ctx, "windowMs", 50.0) * rate / 1000),
            int(_ms(ctx, "minIntervalMs", 100.0) * rate / 1000),
            rate,
        )

    def detect(self, x: np.ndarray, s: tuple[float, int, int, float]) -> list[dict[str, Any]]:
        sens, window, min_gap, rate = s
        k = 1.0 / window if window > 0 else 1.0
        factor = sens * sens
        energy = np.square(x.astype(np.float32)).astype(np.float64).tolist()
        running = 0.0
        last = 0
        peaks: list[dict[str, Any]] = []
        for i, e in enumerate(energy, start=1):
            running = running * (1 - k) + e * k
            if e > running * factor and i - last >= min_gap:
                last = i
                peaks.append(
                    {
                        "event": "peak",
                        "sampleOffset": i,
                        "timeMs": int(i / rate * 1000),
                        "energy": e,
                    }
                )
        return [*peaks, {"event": "summary", "totalPeaks": len(peaks), "peaks": list(peaks)}]


def _wav_info(data: bytes) -> dict[str, Any]:
    import wave

    try:
        with wave.open(io.BytesIO(data)) as w:
            rate, frames = w.getframerate(), w.getnframes()
            return {
                "sampleRate": rate,
                "channels": w.getnchannels(),
                "bitDepth": w.getsampwidth() * 8,
                "durationMs": int(frames / rate * 1000) if rate else None,
            }
    except Exception:  # not a PCM WAV the stdlib reads: no details, as the SDK
        return {}


class AudioInput(SdkTemplate):
    """Loads audio from a URL, a file or Bytes and describes it.

    The source is config ``url`` or, without it, in-port ``source`` (an http(s), ``data:`` or
    ``file://`` URL or a path as a String or an Object with ``url``, or the audio as Bytes).
    Its type must be in ``acceptedFormats`` and its size at most ``maxFileSize`` MiB; a PCM WAV
    also reports ``sampleRate``, ``channels``, ``bitDepth``, ``durationMs``. Ports: in
    ``source`` → out ``audioData`` (Object ``{url, contentType, size, autoplay, loop,
    showWaveform, ...}``), ``metadata`` (Object), ``bytes`` (Bytes: the audio; the SDK has no
    such port), ``error``. Config: ``acceptedFormats`` (default MPEG, WAV, OGG, WebM),
    ``maxFileSize`` (MiB, default 50), ``autoplay``, ``loop`` (default false),
    ``showWaveform`` (default true), ``url``. There is no recording device here: a ``record``
    source must arrive as its file or bytes.
    """

    component = "tpl_audio_input"
    inports = ["source"]
    outports = ["audioData", "metadata", "error", "bytes"]
    outport_types = {
        "audioData": "Object",
        "metadata": "Object",
        "error": "Error",
        "bytes": "Bytes",
    }
    config_defaults = {
        "acceptedFormats": ["audio/mpeg", "audio/wav", "audio/ogg", "audio/webm"],
        "maxFileSize": 50,
        "autoplay": False,
        "loop": False,
        "showWaveform": True,
        "url": None,
    }

    async def tick(self, ctx: ActorContext) -> None:
        accepted = _accepted(ctx, self.config_defaults["acceptedFormats"])
        flags = {
            k: ctx.config.get(k, self.config_defaults[k])
            for k in ("autoplay", "loop", "showWaveform")
        }
        for k, v in flags.items():
            if not isinstance(v, bool):
                raise ActorError(f"config {k!r} must be true or false, got {v!r}")
        data, ctype, url = await asyncio.to_thread(load_source, ctx, max_file_bytes(ctx, 50))
        from ._image_streams import sniff

        base = ctype.split(";")[0].strip()
        if base == "application/octet-stream":
            base = ctype = sniff(data)
        aliases = {"audio/x-wav": "audio/wav", "audio/wave": "audio/wav", "audio/mp3": "audio/mpeg"}
        if aliases.get(base, base) not in accepted and base not in accepted:
            raise ActorError(
                f"config 'acceptedFormats': {base} is not accepted (accepted: "
                f"{', '.join(accepted)})"
            )
        info = {"url": url, "contentType": ctype, "size": len(data), **flags, **_wav_info(data)}
        ctx.done(
            {
                "audioData": Message.object(info),
                "metadata": Message.object(dict(info)),
                "bytes": Message.bytes(data),
            }
        )


class AudioStreamDisplay(SdkTemplate):
    """Drains an audio Stream and reports what it carried (there is no audio device here: a
    player reads the Stream itself, or taps it before this node).

    Ports: in ``stream`` → out ``metadata`` (Object ``{contentType, sizeHint, totalBytes,
    chunks, sampleRate, channels, bitDepth, durationMs, playback: {autoplay, loop,
    showWaveform}, streamMetadata}``; sample rate, channels and bit depth from the stream's
    ``begin`` metadata, ``durationMs`` from them and the byte count), ``error``. Config:
    ``autoplay``, ``loop`` (default false), ``showWaveform`` (default true),
    ``acceptedFormats`` (a stream of another content type fails the tick).
    """

    component = "tpl_audio_stream_display"
    inports = ["stream"]
    outports = ["metadata", "error"]
    inport_types = {"stream": "Stream"}
    outport_types = {"metadata": "Object", "error": "Error"}
    config_defaults = {
        "autoplay": False,
        "loop": False,
        "showWaveform": True,
        "acceptedFormats": [
            "audio/mpeg",
            "audio/wav",
            "audio/ogg",
            "audio/webm",
            "audio/aac",
            "audio/flac",
            "audio/raw-pcm",
        ],
    }

    async def tick(self, ctx: ActorContext) -> None:
        flags = {}
        for k in ("autoplay", "loop", "showWaveform"):
            v = ctx.config.get(k, self.config_defaults[k])
            if not isinstance(v, bool):
                raise ActorError(f"config {k!r} must be true or false, got {v!r}")
            flags[k] = v
        accepted = _accepted(ctx, self.config_defaults["acceptedFormats"])
        stream = await read_stream(ctx, "stream")
        ct = stream.content_type or "application/octet-stream"
        if not any(ct.startswith(f) for f in accepted):
            raise ActorError(
                f"in-port 'stream': content type {ct} is not in config 'acceptedFormats'"
            )
        meta = stream.metadata
        total = sum(len(f) for f in stream.frames)
        rate, channels, bits = (meta.get("sampleRate"), meta.get("channels"), meta.get("bitDepth"))
        duration = None
        if (
            isinstance(rate, (int, float))
            and isinstance(channels, (int, float))
            and isinstance(bits, (int, float))
            and min(rate, channels, bits) > 0
        ):
            duration = int(total / (channels * bits / 8) / rate * 1000)
        ctx.done(
            {
                "metadata": Message.object(
                    {
                        "contentType": ct,
                        "sizeHint": stream.size_hint,
                        "totalBytes": total,
                        "chunks": len(stream.frames),
                        "sampleRate": rate,
                        "channels": channels,
                        "bitDepth": bits,
                        "durationMs": duration,
                        "playback": flags,
                        "streamMetadata": meta or None,
                    }
                )
            }
        )


AUDIO_STREAM_TEMPLATES: dict[str, type[SdkTemplate]] = {
    cls.component: cls
    for cls in (
        AudioGain,
        AudioNormalize,
        AudioSpectrum,
        BiquadFilter,
        Compressor,
        Convolve,
        Correlator,
        Crossover,
        DcOffset,
        DeEsser,
        EnvelopeFollower,
        Equalizer,
        Ifft,
        Limiter,
        NoiseGate,
        NoiseReduction,
        PeakDetect,
        PitchShift,
        SilenceDetect,
        TimeStretch,
        AudioInput,
        AudioStreamDisplay,
    )
}
