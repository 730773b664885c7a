"""reflow.library._audio: audio templates on generated signals, through real ticks."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from reflow import Message
from reflow.library import decode_audio, encode_audio
from reflow.library._audio import (
    AudioFromPcm,
    AudioGain,
    AudioHighpass,
    AudioLevel,
    AudioLowpass,
    AudioMix,
    AudioNormalize,
    AudioResample,
    AudioSpectrum,
    AudioTone,
    AudioToPcm,
)
from reflow.testing import TickResult, run_tick

RATE = 8000


def sine(
    freq: float, seconds: float = 0.25, amp: float = 0.5, rate: int = RATE, channels: int = 1
) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    wave = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(wave[:, None], channels, axis=1)


def audio_out(result: TickResult, port: str = "out") -> tuple[np.ndarray, int]:
    result.raise_for_failures()
    (msg,) = result.outputs[port]
    return decode_audio(msg)


def run(
    actor: Any, samples: np.ndarray, config: dict[str, Any] | None = None, rate: int = RATE
) -> tuple[np.ndarray, int]:
    return audio_out(run_tick(actor, {"in": encode_audio(samples, rate)}, config))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def test_pcm_round_trip() -> None:
    pcm = np.array([[0, -32768], [16384, 32767]], dtype="<i2")
    samples, rate = audio_out(
        run_tick(
            AudioFromPcm(),
            {"in": Message.bytes(pcm.tobytes())},
            {"sample_rate": 44100, "channels": 2},
        )
    )
    assert rate == 44100 and samples.shape == (2, 2)
    assert samples.tolist() == [[0.0, -1.0], [0.5, 32767 / 32768]]
    r = run_tick(AudioToPcm(), {"in": encode_audio(samples, rate)})
    r.raise_for_failures()
    back = np.frombuffer(r.values("out")[0], "<i2").reshape(2, 2)
    assert back.tolist() == [[0, -32767], [16384, 32766]]
    assert r.values("format") == [
        {"sample_rate": 44100, "channels": 2, "format": "s16le", "frames": 2}
    ]
    f32 = run_tick(AudioToPcm(), {"in": encode_audio(samples, rate)}, {"format": "f32le"})
    assert np.frombuffer(f32.values("out")[0], "<f4").tolist() == samples.ravel().tolist()


def test_tone() -> None:
    samples, rate = audio_out(
        run_tick(
            AudioTone(),
            {"in": Message.flow()},
            {
                "frequency": 440,
                "duration_ms": 100,
                "sample_rate": 8000,
                "amplitude": 0.25,
                "channels": 2,
            },
        )
    )
    assert rate == 8000 and samples.shape == (800, 2)
    assert float(np.max(np.abs(samples))) == pytest.approx(0.25, abs=1e-3)


def test_gain_db_and_linear() -> None:
    x = sine(100)
    out, _ = run(AudioGain(), x, {"gain_db": -6.0206})
    assert rms(out) == pytest.approx(rms(x) / 2, rel=1e-3)
    out, _ = run(AudioGain(), x, {"gain": 4, "clip": True})
    assert float(np.max(out)) == 1.0


def test_normalize_peak_and_rms() -> None:
    out, _ = run(AudioNormalize(), sine(100, amp=0.1))
    assert float(np.max(np.abs(out))) == pytest.approx(10 ** (-1 / 20), rel=1e-3)
    out, _ = run(AudioNormalize(), sine(100, amp=0.1), {"measure": "rms", "target_db": -20})
    assert rms(out) == pytest.approx(0.1, rel=1e-3)
    silent, _ = run(AudioNormalize(), np.zeros((10, 1), np.float32))
    assert not silent.any()


def test_mix_pads_and_spreads_mono() -> None:
    a = encode_audio(np.ones((4, 2), np.float32) * 0.25, RATE)
    b = encode_audio(np.ones((2, 1), np.float32), RATE)
    out, rate = audio_out(run_tick(AudioMix(), {"a": a, "b": b}, {"gain_b": 0.5}))
    assert rate == RATE
    assert out.tolist() == [[0.75, 0.75], [0.75, 0.75], [0.25, 0.25], [0.25, 0.25]]


def test_resample_keeps_the_tone() -> None:
    x = sine(200, seconds=0.5, rate=8000)
    out, rate = run(AudioResample(), x, {"rate": 16000})
    assert rate == 16000 and len(out) == 8000
    assert rms(out) == pytest.approx(rms(x), rel=0.02)
    down, rate = run(
        AudioResample(), sine(200, seconds=0.5, rate=16000), {"rate": 8000}, rate=16000
    )
    assert rate == 8000 and len(down) == 4000
    assert rms(down[100:-100]) == pytest.approx(0.5 / math.sqrt(2), rel=0.03)


def test_resample_filters_what_would_alias() -> None:
    # 3.5 kHz at 16 kHz is above the 2 kHz Nyquist limit of 4 kHz: it must be removed.
    high, _ = run(AudioResample(), sine(3500, seconds=0.5, rate=16000), {"rate": 4000}, rate=16000)
    assert rms(high[50:-50]) < 0.05


@pytest.mark.parametrize(
    ("actor", "passed", "stopped"), [(AudioLowpass(), 100, 3000), (AudioHighpass(), 3000, 100)]
)
def test_biquad_filters(actor: Any, passed: float, stopped: float) -> None:
    cfg = {"cutoff_hz": 800}
    keep, _ = run(actor, sine(passed), cfg)
    cut, _ = run(actor, sine(stopped), cfg)
    assert rms(keep[200:]) == pytest.approx(rms(sine(passed)), rel=0.1)
    assert rms(cut[200:]) < 0.1 * rms(sine(stopped))


def test_level() -> None:
    x = sine(100, amp=0.5)
    r = run_tick(AudioLevel(), {"in": encode_audio(x, RATE)})
    r.raise_for_failures()
    assert r.values("peak")[0] == pytest.approx(0.5, abs=1e-3)
    assert r.values("rms")[0] == pytest.approx(0.5 / math.sqrt(2), rel=1e-3)
    level = r.values("level")[0]
    assert level["peak_db"] == pytest.approx(-6.02, abs=0.01) and level["duration_s"] == 0.25
    db = run_tick(AudioLevel(), {"in": encode_audio(np.zeros(4), RATE)}, {"unit": "db"})
    assert db.values("rms") == [-1000.0] and db.values("level")[0]["rms_db"] is None


def test_spectrum_finds_the_tone() -> None:
    r = run_tick(
        AudioSpectrum(), {"in": encode_audio(sine(1000, seconds=0.5, amp=1.0), RATE)}, {"size": 256}
    )
    r.raise_for_failures()
    spec = r.values("out")[0]
    assert spec["bin_hz"] == RATE / 256 and len(spec["magnitudes"]) == 129
    assert spec["peak_hz"] == pytest.approx(1000, abs=spec["bin_hz"])
    assert max(spec["magnitudes"]) == pytest.approx(1.0, rel=0.05)
    db = run_tick(AudioSpectrum(), {"in": encode_audio(sine(1000), RATE)}, {"unit": "db"})
    assert max(db.values("out")[0]["magnitudes"]) == pytest.approx(-6.02, abs=0.3)


SND = encode_audio(sine(100), RATE)


@pytest.mark.parametrize(
    ("actor", "inputs", "config", "fragment"),
    [
        (
            AudioGain(),
            {"in": Message.bytes(b"RIFF....")},
            {"gain": 1},
            "in-port 'in': not audio (expected the RFLA header",
        ),
        (AudioGain(), {"in": SND}, None, "config 'gain_db' or 'gain' is required"),
        (AudioGain(), {"in": SND}, {"gain": -1}, "config 'gain' must be >= 0"),
        (
            AudioFromPcm(),
            {"in": Message.bytes(b"abc")},
            {"sample_rate": 8000},
            "in-port 'in': 3 bytes is not a whole number of 1-channel s16le frames",
        ),
        (AudioFromPcm(), {"in": Message.bytes(b"ab")}, None, "config 'sample_rate' is required"),
        (
            AudioFromPcm(),
            {"in": Message.bytes(b"ab")},
            {"sample_rate": 8000, "format": "mp3"},
            "config 'format' must be one of",
        ),
        (
            AudioTone(),
            {"in": Message.flow()},
            {"frequency": 5000, "sample_rate": 8000},
            "config 'frequency' 5000 Hz is above the Nyquist frequency",
        ),
        (AudioTone(), {"in": Message.flow()}, None, "config 'frequency' is required"),
        (AudioNormalize(), {"in": SND}, {"target_db": 3}, "config 'target_db' must be <= 0"),
        (
            AudioMix(),
            {"a": SND, "b": encode_audio(sine(100), 16000)},
            None,
            "in-ports 'a' (8000 Hz) and 'b' (16000 Hz) differ in sample rate",
        ),
        (
            AudioMix(),
            {"a": encode_audio(np.zeros((2, 2)), RATE), "b": encode_audio(np.zeros((2, 3)), RATE)},
            None,
            "in-ports 'a' (2 channels) and 'b' (3 channels) cannot be mixed",
        ),
        (AudioMix(), {"a": SND}, None, "in-port 'b' is not connected"),
        (AudioResample(), {"in": SND}, None, "config 'rate' is required"),
        (
            AudioLowpass(),
            {"in": SND},
            {"cutoff_hz": 4000},
            "config 'cutoff_hz' 4000 Hz must be below the Nyquist frequency",
        ),
        (AudioHighpass(), {"in": SND}, {"cutoff_hz": 100, "q": 0}, "config 'q' must be > 0"),
        (AudioLevel(), {"in": SND}, {"unit": "dBu"}, "config 'unit' must be one of"),
        (AudioSpectrum(), {"in": SND}, {"size": 1000}, "config 'size' must be a power of two"),
        (AudioSpectrum(), {"in": SND}, {"size": 8}, "config 'size' must be >= 16"),
    ],
)
def test_bad_input_fails_the_tick(
    actor: Any, inputs: dict[str, Any], config: dict[str, Any] | None, fragment: str
) -> None:
    r = run_tick(actor, inputs, config)
    assert not r.ok
    assert fragment in r.failures[0].error
