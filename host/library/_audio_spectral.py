"""PCM-Stream audio templates in the frequency domain: spectrum (STFT), inverse FFT,
spectral noise reduction, and the phase-vocoder pitch shift and time stretch."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import ActorError
from ._audio import AudioSpectrum as _RflaSpectrum
from ._audio_pcm import (
    _fft_size,
    _hop,
    _ms,
    _pcm_frames,
    _PcmTemplate,
    _rate,
    _samples,
)
from ._base import config_int, config_number
from ._sdk import read_stream, write_stream


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
