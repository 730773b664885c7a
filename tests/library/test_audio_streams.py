"""reflow.library._audio_streams: the SDK's audio templates on PCM Streams, with expected
values computed independently (closed forms, scipy's own filter designs, numpy), through
real ticks and real Streams."""

from __future__ import annotations

import io
import math
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import signal
from sdk_media_streams import broken_stream, bytes_stream, collect, pcm_stream, samples_of

from reflow import Message, template_actor
from reflow.library import encode_audio
from reflow.testing import run_tick, run_ticks

RATE = 8000


def sine(freq: float, n: int = 4000, amp: float = 0.5, rate: int = RATE) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype(np.float32)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x.astype(np.float64)))))


def tick(
    tid: str, x: Any, config: dict[str, Any] | None = None, port: str = "stream", **extra: Any
) -> Any:
    r = run_tick(template_actor(tid), {"stream": pcm_stream(x), **extra}, config)
    r.raise_for_failures()
    return r.outputs if port == "*" else r.outputs[port][0]


def test_gain_and_normalize() -> None:
    x = sine(440)
    np.testing.assert_allclose(
        samples_of(tick("tpl_audio_gain", x, {"gainDb": 6.0})), x * 10 ** (6 / 20), rtol=1e-6
    )
    np.testing.assert_allclose(
        samples_of(tick("tpl_audio_gain", x, {"gainDb": 6, "gainLinear": 0.25})),
        x * 0.25,
        rtol=1e-6,
    )
    y = samples_of(tick("tpl_audio_normalize", x, {"targetDb": -6.0}))
    assert np.max(np.abs(y)) == pytest.approx(10 ** (-6 / 20), rel=1e-6)
    zeros = np.zeros(100, np.float32)
    assert samples_of(tick("tpl_audio_normalize", zeros)).tolist() == zeros.tolist()


def test_frames_and_metadata_are_kept() -> None:
    msg = tick("tpl_audio_gain", sine(100, 1000), {"gainLinear": 2})
    data, meta, ctype = collect(msg)
    assert len(data) == 4000 and ctype == "audio/raw-pcm" and meta == {}


def test_legacy_rfla_forms_still_work() -> None:
    audio = encode_audio(sine(440)[:, None], RATE)
    for tid, config in (
        ("tpl_audio_gain", {"gain": 2.0}),
        ("tpl_audio_normalize", None),
        ("tpl_audio_spectrum", None),
    ):
        r = run_tick(template_actor(tid), {"in": audio}, config)
        r.raise_for_failures()
        assert "out" in r.outputs, tid


def _gain_at(tid: str, config: dict[str, Any], freq: float, port: str = "stream") -> float:
    x = sine(freq, 8000)
    y = samples_of(tick(tid, x, {"sampleRate": RATE, **config}, port))
    return rms(y[4000:]) / rms(x[4000:])


@pytest.mark.parametrize(
    ("kind", "freq", "q", "gain_db"),
    [
        ("lowpass", 1000, 0.707, 0),
        ("highpass", 500, 0.707, 0),
        ("bandpass", 1200, 2.0, 0),
        ("notch", 1000, 5.0, 0),
        ("peaking", 900, 1.0, 6),
        ("lowshelf", 300, 0.707, -6),
        ("highshelf", 2000, 0.707, 9),
    ],
)
def test_biquad_matches_its_analytic_response(
    kind: str, freq: float, q: float, gain_db: float
) -> None:
    cfg = {"filterType": kind, "frequency": freq, "q": q, "gainDb": gain_db}
    w = 2 * np.pi * freq / RATE
    # the RBJ design's magnitude response at a few test tones, from its own formula
    for tone in (200, 1000, 2500):
        y = samples_of(tick("tpl_biquad_filter", sine(tone, 8000), {"sampleRate": RATE, **cfg}))
        measured = rms(y[4000:]) / rms(sine(tone, 8000)[4000:])
        expected = _rbj_response(kind, w, q, gain_db, 2 * np.pi * tone / RATE)
        assert measured == pytest.approx(expected, rel=0.03, abs=2e-3), (kind, tone)


def _rbj_response(kind: str, w0: float, q: float, gain_db: float, w: float) -> float:
    """|H(e^jw)| of the RBJ cookbook filter, evaluated independently with numpy."""
    a_ = 10 ** (gain_db / 40)
    alpha = math.sin(w0) / (2 * q)
    c = math.cos(w0)
    if kind == "lowpass":
        b, a = [(1 - c) / 2, 1 - c, (1 - c) / 2], [1 + alpha, -2 * c, 1 - alpha]
    elif kind == "highpass":
        b, a = [(1 + c) / 2, -(1 + c), (1 + c) / 2], [1 + alpha, -2 * c, 1 - alpha]
    elif kind == "bandpass":
        b, a = [alpha, 0, -alpha], [1 + alpha, -2 * c, 1 - alpha]
    elif kind == "notch":
        b, a = [1, -2 * c, 1], [1 + alpha, -2 * c, 1 - alpha]
    elif kind == "peaking":
        b, a = [1 + alpha * a_, -2 * c, 1 - alpha * a_], [1 + alpha / a_, -2 * c, 1 - alpha / a_]
    else:
        s = 2 * math.sqrt(a_) * alpha
        if kind == "lowshelf":
            b = [
                a_ * ((a_ + 1) - (a_ - 1) * c + s),
                2 * a_ * ((a_ - 1) - (a_ + 1) * c),
                a_ * ((a_ + 1) - (a_ - 1) * c - s),
            ]
            a = [
                (a_ + 1) + (a_ - 1) * c + s,
                -2 * ((a_ - 1) + (a_ + 1) * c),
                (a_ + 1) + (a_ - 1) * c - s,
            ]
        else:
            b = [
                a_ * ((a_ + 1) + (a_ - 1) * c + s),
                -2 * a_ * ((a_ - 1) + (a_ + 1) * c),
                a_ * ((a_ + 1) + (a_ - 1) * c - s),
            ]
            a = [
                (a_ + 1) - (a_ - 1) * c + s,
                2 * ((a_ - 1) - (a_ + 1) * c),
                (a_ + 1) - (a_ - 1) * c - s,
            ]
    z = np.exp(-1j * w * np.arange(3))
    return float(abs(np.dot(b, z) / np.dot(a, z)))


def test_lowpass_equals_scipy_butterworth() -> None:
    # a Q = 1/sqrt(2) RBJ low-pass is the bilinear 2nd-order Butterworth
    x = np.random.default_rng(0).normal(size=4000).astype(np.float32) * 0.1
    y = samples_of(
        tick(
            "tpl_biquad_filter", x, {"frequency": 1000.0, "q": 1 / math.sqrt(2), "sampleRate": RATE}
        )
    )
    b, a = signal.butter(2, 1000, fs=RATE)
    np.testing.assert_allclose(y, signal.lfilter(b, a, x.astype(np.float64)), atol=1e-5)


def test_equalizer_dc_offset_and_crossover() -> None:
    bands = [{"type": "peaking", "frequency": 1000, "gain": 12, "q": 1}]
    assert _gain_at("tpl_equalizer", {"bands": bands}, 1000) == pytest.approx(
        10 ** (12 / 20), rel=0.03
    )
    assert _gain_at("tpl_equalizer", {"bands": "[]"}, 1000) == pytest.approx(1.0)
    x = sine(200, 16000) + np.float32(0.3)
    y = samples_of(tick("tpl_dc_offset", x, {"sampleRate": RATE, "cutoffHz": 5.0}))
    assert abs(float(np.mean(y[8000:]))) < 5e-3
    assert rms(y[8000:]) == pytest.approx(rms(sine(200, 16000)[8000:]), rel=0.02)
    noise = np.random.default_rng(1).normal(size=16000).astype(np.float32) * 0.1
    out = tick(
        "tpl_crossover",
        noise,
        {"sampleRate": RATE, "lowFrequency": 300, "highFrequency": 2000},
        "*",
    )
    low, mid, high = (samples_of(out[p][0]) for p in ("low", "mid", "high"))
    f, pl = signal.welch(low, fs=RATE)
    _, ph = signal.welch(high, fs=RATE)
    assert pl[f < 100].mean() > 100 * pl[f > 3000].mean()
    assert ph[f > 3000].mean() > 100 * ph[f < 100].mean()
    assert mid.shape == noise.shape


def _envelope_reference(x: np.ndarray, att: float, rel: float, rate: float) -> np.ndarray:
    a = math.exp(-1 / (att * 1e-3 * rate))
    r = math.exp(-1 / (rel * 1e-3 * rate))
    env, out = 0.0, []
    for v in np.abs(x.astype(np.float64)):
        c = a if v > env else r
        env = c * env + (1 - c) * v
        out.append(env)
    return np.array(out)


def test_envelope_follower() -> None:
    x = np.concatenate([sine(300, 2000, 0.8), np.zeros(2000, np.float32)])
    msg = tick("tpl_envelope_follower", x, {"sampleRate": RATE})
    _, meta, ctype = collect(msg)
    assert ctype == "audio/control-signal" and meta["mode"] == "peak"
    env = samples_of(tick("tpl_envelope_follower", x, {"sampleRate": RATE}))
    np.testing.assert_allclose(env, _envelope_reference(x, 5, 50, RATE), atol=1e-6)
    rms_env = samples_of(
        tick(
            "tpl_envelope_follower",
            sine(300, 4000, 0.8),
            {"sampleRate": RATE, "mode": "rms", "attackMs": 20, "releaseMs": 20},
        )
    )
    assert float(rms_env[-1]) == pytest.approx(0.8 / math.sqrt(2), rel=0.05)


def test_compressor_limiter_gate() -> None:
    loud = sine(200, 8000, 0.9)
    y = samples_of(
        tick(
            "tpl_compressor",
            loud,
            {"sampleRate": RATE, "kneeDb": 0, "thresholdDb": -20, "ratio": 4},
        )
    )
    env = _envelope_reference(loud, 10, 100, RATE)
    over = 20 * np.log10(env[-1]) + 20
    expected_gain = 10 ** ((over / 4 - over) / 20)
    assert abs(y[-1] / loud[-1] - expected_gain) < 1e-3
    y = samples_of(tick("tpl_limiter", loud, {"sampleRate": RATE, "ceilingDb": -6}))
    env = _envelope_reference(loud, 0.1, 50, RATE)
    assert np.all(np.abs(y) <= np.maximum(np.abs(loud), 10 ** (-6 / 20)) + 1e-6)
    assert float(np.max(np.abs(y[4000:]))) <= 10 ** (-6 / 20) * 1.15
    quiet = sine(200, 4000, 0.001)
    y = samples_of(
        tick("tpl_noise_gate", quiet, {"sampleRate": RATE, "thresholdDb": -40, "ratio": 10})
    )
    env = _envelope_reference(quiet, 1, 50, RATE)
    gain = 10 ** (-(-40 - 20 * np.log10(np.maximum(env, 1e-12))) * 0.9 / 20)
    np.testing.assert_allclose(y, quiet * np.where(env < 0.01, gain, 1.0), atol=1e-7)
    assert rms(y[2000:]) < rms(quiet[2000:]) * 0.2
    assert samples_of(tick("tpl_noise_gate", loud, {"sampleRate": RATE}))[4000:] == pytest.approx(
        loud[4000:], abs=1e-6
    )


def test_de_esser_reduces_sibilance_only() -> None:
    hiss = sine(3000, 8000, 0.5, 16000)
    low = sine(200, 8000, 0.5, 16000)
    cfg = {"sampleRate": 16000, "frequency": 3000, "thresholdDb": -30}
    assert rms(samples_of(tick("tpl_de_esser", hiss, cfg))[4000:]) < 0.5 * rms(hiss[4000:])
    assert rms(samples_of(tick("tpl_de_esser", low, cfg))[4000:]) > 0.8 * rms(low[4000:])


def test_spectrum_and_ifft() -> None:
    x = sine(1000, 4096, 1.0)
    out = tick("tpl_audio_spectrum", x, {"fftSize": 256, "hopSize": 128, "sampleRate": RATE}, "*")
    data, meta, ctype = collect(out["stream"][0])
    assert ctype == "audio/frequency-bins" and meta["binCount"] == 129
    frames = np.frombuffer(data, "<f4").reshape(-1, 129)
    assert len(frames) == (4096 - 256) // 128 + 1 == out["stats"][0]["data"]["totalSpectrumFrames"]
    assert int(np.argmax(frames[3])) == round(1000 / (RATE / 256))
    window = 0.5 * (1 - np.cos(2 * np.pi * np.arange(256) / 255))
    np.testing.assert_allclose(
        frames[2], np.abs(np.fft.rfft(x[256:512] * window)), rtol=1e-4, atol=1e-3
    )
    mags = np.zeros((3, 129), np.float32)
    mags[:, 0] = 256.0  # a DC bin: each frame synthesises the window
    y = samples_of(tick("tpl_ifft", mags.flatten(), {"fftSize": 256, "hopSize": 64}))
    assert len(y) == 3 * 64
    np.testing.assert_allclose(y[:64], window[:64], atol=1e-5)
    np.testing.assert_allclose(y[64:128], window[64:128] + window[:64], atol=1e-5)


def test_noise_reduction() -> None:
    rng = np.random.default_rng(2)
    noise = rng.normal(size=16000).astype(np.float32) * 0.05
    x = noise.copy()
    x[8000:] += sine(440, 8000, 0.5)
    y = samples_of(
        tick(
            "tpl_noise_reduction",
            x,
            {"sampleRate": RATE, "profileMs": 900, "fftSize": 512, "hopSize": 128},
        )
    )
    assert len(y) == len(x)
    assert y[:7200].tolist() == pytest.approx(x[:7200].tolist())
    residual = y[9000:15000] - sine(440, 16000, 0.5)[9000:15000]
    assert rms(residual) < 0.7 * rms(noise[9000:15000])


def _dominant(x: np.ndarray, rate: int = RATE) -> float:
    f = np.fft.rfftfreq(len(x), 1 / rate)
    return float(f[np.argmax(np.abs(np.fft.rfft(x * np.hanning(len(x)))))])


def test_pitch_shift_and_time_stretch() -> None:
    x = sine(400, 8000, 0.5)
    y = samples_of(tick("tpl_pitch_shift", x, {"semitones": 12, "fftSize": 1024, "hopSize": 256}))
    assert len(y) == len(x)
    assert _dominant(y[1000:7000]) == pytest.approx(800, rel=0.03)
    assert samples_of(tick("tpl_pitch_shift", x)).tolist() == x.tolist()
    for ratio in (2.0, 0.5):
        z = samples_of(tick("tpl_time_stretch", x, {"ratio": ratio, "windowSize": 512}))
        assert len(z) == int(len(x) * ratio)
        assert _dominant(z[600:-600]) == pytest.approx(400, rel=0.03)


def test_convolve() -> None:
    x = np.random.default_rng(3).normal(size=1000).astype(np.float32)
    h = np.array([0.5, 0.0, -0.25, 0.125], np.float32)
    y = samples_of(tick("tpl_convolve", x, impulse=Message.bytes(h.tobytes())))
    np.testing.assert_allclose(y, np.convolve(x, h)[:1000], atol=1e-5)
    # the impulse may come first, in a tick of its own
    r = run_ticks(
        template_actor("tpl_convolve"),
        [{"impulse": Message.bytes(h.tobytes())}, {"stream": pcm_stream(x)}],
    )
    r.raise_for_failures()
    np.testing.assert_allclose(
        samples_of(r.outputs["stream"][0]), np.convolve(x, h)[:1000], atol=1e-5
    )


def test_correlator_finds_the_delay() -> None:
    a = np.random.default_rng(4).normal(size=2000).astype(np.float32)
    b = np.concatenate([np.zeros(37, np.float32), a[:-37]])
    r = run_ticks(
        template_actor("tpl_correlator"),
        [{"stream_a": pcm_stream(a)}, {"stream_b": pcm_stream(b)}],
        {"sampleRate": RATE, "maxLagMs": 10},
    )
    r.raise_for_failures()
    stats = r.outputs["stats"][0]["data"]
    assert stats["bestLagSamples"] == 37 and stats["signalLength"] == 2000
    assert stats["bestLagMs"] == pytest.approx(37 / RATE * 1000)
    vals = samples_of(r.outputs["stream"][0])
    assert len(vals) == 2 * 80 + 1
    ref = [float(np.dot(a[: 2000 - lag], b[lag:])) for lag in (0, 37)]
    norm = rms(a) * rms(b) * 2000
    assert vals[80] == pytest.approx(ref[0] / norm, abs=1e-4)
    assert vals[80 + 37] == pytest.approx(ref[1] / norm, abs=1e-4)


def test_silence_and_peak_events() -> None:
    x = np.concatenate([sine(300, 2000), np.zeros(4000, np.float32), sine(300, 2000)])
    out = tick("tpl_silence_detect", x, {"sampleRate": RATE, "minDurationMs": 250}, "*")
    assert samples_of(out["stream"][0]).tolist() == x.tolist()
    events = out["events"][0]["data"]
    kinds = [e["event"] for e in events]
    assert kinds == ["silence.start", "silence.end", "silence.summary"]
    # the sine's own zero crossings are single quiet samples, far shorter than 250 ms
    quiet = np.abs(x) < 0.01
    start = 2000
    while quiet[start - 1]:
        start -= 1
    assert events[0]["sampleOffset"] == start + 1
    end = 6000
    while quiet[end]:
        end += 1
    assert events[1]["sampleOffset"] == end + 1
    assert events[2]["silenceRegions"][0]["startMs"] == int((start + 1) / RATE * 1000)
    clicks = np.zeros(8000, np.float32)
    clicks[[1000, 1010, 5000]] = 0.9
    out = tick("tpl_peak_detect", clicks, {"sampleRate": RATE}, "*")
    peaks = out["events"][0]["data"]
    assert [p["sampleOffset"] for p in peaks[:-1]] == [1001, 5001]
    assert peaks[-1] == {"event": "summary", "totalPeaks": 2, "peaks": peaks[:-1]}


def _wav(x: np.ndarray, rate: int = RATE) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((x * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def test_audio_input_and_display(tmp_path: Path) -> None:
    f = tmp_path / "a.wav"
    f.write_bytes(_wav(sine(440, 4000)))
    r = run_tick(template_actor("tpl_audio_input"), {"source": Message.string(str(f))})
    r.raise_for_failures()
    info = r.outputs["audioData"][0]["data"]
    assert info["contentType"] == "audio/wav" and info["sampleRate"] == RATE
    assert info["durationMs"] == 500 and info["size"] == f.stat().st_size
    assert r.outputs["bytes"][0]["data"] == f.read_bytes()
    msg = pcm_stream(sine(440, 800), meta={"sampleRate": RATE, "channels": 1, "bitDepth": 32})
    r = run_tick(template_actor("tpl_audio_stream_display"), {"stream": msg})
    r.raise_for_failures()
    meta = r.outputs["metadata"][0]["data"]
    assert meta["totalBytes"] == 3200 and meta["durationMs"] == 100
    assert meta["playback"] == {"autoplay": False, "loop": False, "showWaveform": True}


BAD: list[tuple[str, dict[str, Any], dict[str, Any] | None, str]] = [
    ("tpl_audio_gain", {"stream": Message.bytes(b"\0\0\0\0")}, None, "in-port 'stream'"),
    ("tpl_audio_gain", {"stream": bytes_stream([b"\0\0\0"])}, None, "float32"),
    (
        "tpl_audio_gain",
        {"stream": bytes_stream([np.array([np.nan], "<f4").tobytes()])},
        None,
        "NaN",
    ),
    ("tpl_audio_gain", {"stream": broken_stream("error")}, None, "producer failed"),
    ("tpl_audio_gain", {"stream": broken_stream("closed")}, None, "closed"),
    ("tpl_audio_gain", {"stream": pcm_stream([0.1])}, {"gainLinear": -1}, "config 'gainLinear'"),
    ("tpl_audio_gain", {"stream": pcm_stream([0.1] * 300)}, {"maxBytes": 100}, "config 'maxBytes'"),
    ("tpl_audio_normalize", {"stream": pcm_stream([0.1])}, {"targetDb": "x"}, "config 'targetDb'"),
    (
        "tpl_biquad_filter",
        {"stream": pcm_stream([0.1])},
        {"filterType": "comb"},
        "config 'filterType'",
    ),
    (
        "tpl_biquad_filter",
        {"stream": pcm_stream([0.1])},
        {"frequency": 30000},
        "config 'frequency'",
    ),
    ("tpl_biquad_filter", {"stream": pcm_stream([0.1])}, {"q": 0}, "config 'q'"),
    ("tpl_biquad_filter", {"stream": pcm_stream([0.1])}, {"sampleRate": -1}, "config 'sampleRate'"),
    ("tpl_equalizer", {"stream": pcm_stream([0.1])}, {"bands": "[{"}, "config 'bands'"),
    (
        "tpl_equalizer",
        {"stream": pcm_stream([0.1])},
        {"bands": [{"type": "x"}]},
        "config 'bands' item 0 'type'",
    ),
    (
        "tpl_equalizer",
        {"stream": pcm_stream([0.1])},
        {"bands": [{"q": "1"}]},
        "config 'bands' item 0 'q'",
    ),
    ("tpl_equalizer", {"stream": pcm_stream([0.1])}, {"bands": [{}] * 65}, "config 'bands'"),
    ("tpl_compressor", {"stream": pcm_stream([0.1])}, {"ratio": 0.5}, "config 'ratio'"),
    ("tpl_compressor", {"stream": pcm_stream([0.1])}, {"attackMs": -1}, "config 'attackMs'"),
    ("tpl_limiter", {"stream": pcm_stream([0.1])}, {"releaseMs": [1]}, "config 'releaseMs'"),
    ("tpl_noise_gate", {"stream": pcm_stream([0.1])}, {"thresholdDb": 99}, "config 'thresholdDb'"),
    ("tpl_envelope_follower", {"stream": pcm_stream([0.1])}, {"mode": "avg"}, "config 'mode'"),
    ("tpl_audio_spectrum", {"stream": pcm_stream([0.1])}, {"fftSize": 1000}, "config 'fftSize'"),
    ("tpl_audio_spectrum", {"stream": pcm_stream([0.1])}, {"hopSize": 0}, "config 'hopSize'"),
    ("tpl_ifft", {"stream": pcm_stream([0.1] * 10)}, {"fftSize": 16, "hopSize": 4}, "whole frames"),
    ("tpl_noise_reduction", {"stream": pcm_stream([0.1])}, {"strength": 11}, "config 'strength'"),
    ("tpl_pitch_shift", {"stream": pcm_stream([0.1])}, {"semitones": 100}, "config 'semitones'"),
    ("tpl_time_stretch", {"stream": pcm_stream([0.1])}, {"ratio": 0}, "config 'ratio'"),
    (
        "tpl_time_stretch",
        {"stream": pcm_stream([0.1])},
        {"windowSize": 1 << 30},
        "config 'windowSize'",
    ),
    ("tpl_convolve", {"impulse": Message.bytes(b"\0\0")}, None, "in-port 'impulse'"),
    ("tpl_convolve", {"impulse": Message.string("x")}, None, "in-port 'impulse'"),
    ("tpl_correlator", {"stream_a": pcm_stream([]), "stream_b": pcm_stream([])}, None, "empty"),
    ("tpl_correlator", {"stream_a": Message.integer(1)}, None, "in-port 'stream_a'"),
    (
        "tpl_crossover",
        {"stream": pcm_stream([0.1])},
        {"lowFrequency": 5000, "highFrequency": 1000},
        "config 'highFrequency'",
    ),
    (
        "tpl_silence_detect",
        {"stream": pcm_stream([0.1])},
        {"minDurationMs": "1"},
        "config 'minDurationMs'",
    ),
    ("tpl_peak_detect", {"stream": pcm_stream([0.1])}, {"sensitivity": 0}, "config 'sensitivity'"),
    ("tpl_dc_offset", {"stream": pcm_stream([0.1])}, {"cutoffHz": 0}, "config 'cutoffHz'"),
    ("tpl_de_esser", {"stream": pcm_stream([0.1])}, {"frequency": 23000}, "config 'frequency'"),
    ("tpl_audio_input", {"source": Message.bytes(b"hello")}, None, "config 'acceptedFormats'"),
    ("tpl_audio_input", {"source": Message.flow()}, None, "in-port 'source'"),
    ("tpl_audio_input", {"source": Message.string("")}, None, "no source"),
    ("tpl_audio_input", {"source": Message.string("x")}, {"autoplay": "yes"}, "config 'autoplay'"),
    (
        "tpl_audio_stream_display",
        {"stream": bytes_stream([b"x"], "video/mp4")},
        None,
        "config 'acceptedFormats'",
    ),
]


@pytest.mark.parametrize(
    ("tid", "inputs", "config", "fragment"), BAD, ids=[f"{r[0]}-{i}" for i, r in enumerate(BAD)]
)
def test_bad_input_and_config_fail_the_tick(
    tid: str, inputs: dict[str, Any], config: dict[str, Any] | None, fragment: str
) -> None:
    r = run_tick(template_actor(tid), inputs, config, timeout=20)
    assert len(r.failures) == 1, r.failures
    assert "ActorError" in r.failures[0].error and fragment in r.failures[0].error
    (err,) = r.outputs["error"]
    assert fragment in err["data"]
    assert not r.outputs.get("stream") and not r.outputs.get("audioData")
