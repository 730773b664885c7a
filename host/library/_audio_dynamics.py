"""PCM-Stream audio templates that work sample by sample: gain, normalize, the biquad
filter and equalizer, DC offset, and the dynamics (compressor, limiter, gate, de-esser,
envelope follower)."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import numpy as np

from .._core._actor import ActorContext
from .._errors import ActorError
from ._audio import AudioGain as _RflaGain
from ._audio import AudioNormalize as _RflaNormalize
from ._audio_pcm import (
    _KINDS,
    _db_to_linear,
    _filter,
    _frequency,
    _linear_to_db,
    _ms,
    _pcm_frames,
    _PcmTemplate,
    _rate,
    _samples,
    _with_rfla,
    biquad,
    compressor_gain,
    envelope,
)
from ._base import config_choice, config_number, config_value
from ._sdk import read_stream, write_stream


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
