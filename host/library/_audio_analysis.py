"""PCM-Stream audio templates over two signals or over a whole signal: convolution,
correlation, crossover bands, silence and peak detection."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import numpy as np

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import ActorError
from ._audio_pcm import (
    _db_to_linear,
    _filter,
    _frequency,
    _ms,
    _pcm_frames,
    _PcmTemplate,
    _rate,
    _samples,
    biquad,
)
from ._base import config_number
from ._sdk import read_stream, write_stream

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
