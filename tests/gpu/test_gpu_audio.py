"""GPU audio templates (gain, N-input mix, FIR) against their numpy twins, the twins against
independent references, a GPU audio chain's transfers, and bad config / input rows.

Tolerance: gain and mix equal to the bit (the same float32 products and sums in the same
order); FIR within ``1e-6 * Σ|taps| * max|in|`` of the float64 twin (float32 accumulation).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from reflow import ActorError, Network, template_actor
from reflow._core._messages import Message
from reflow._gpu import configure_gpu, gpu_counters, reset_device
from reflow.library import decode_audio, encode_audio
from reflow.library._audio import AudioGain
from reflow.testing import run_tick

_RNG = np.random.default_rng(1603)
_STEREO = (_RNG.standard_normal((700, 2)) * 0.4).astype(np.float32)
_MONO = (_RNG.standard_normal((333, 1)) * 0.4).astype(np.float32)
_SIX = (_RNG.standard_normal((64, 6)) * 0.4).astype(np.float32)
_LOUD = (_RNG.standard_normal((50, 2)) * 3).astype(np.float32)
_EMPTY = np.zeros((0, 2), dtype=np.float32)
_SIGNALS = {"stereo": _STEREO, "mono": _MONO, "six": _SIX, "loud": _LOUD, "empty": _EMPTY}


@pytest.fixture
def gpu_off() -> Iterator[None]:
    reset_device()
    configure_gpu(enabled=False)
    yield
    configure_gpu()
    reset_device()


def _samples(msg: Any) -> np.ndarray:
    return decode_audio(msg)[0]


@pytest.mark.parametrize("signal", sorted(_SIGNALS))
@pytest.mark.parametrize(
    "config",
    [{"gain": 0.5}, {"gain_db": -6}, {"gain_db": 12, "clip": True}, {"gain": 0}],
)
def test_gain_matches_numpy(device: Any, signal: str, config: dict) -> None:
    msg = encode_audio(_SIGNALS[signal], 44100)
    gpu = run_tick(template_actor("tpl_gpu_audio_gain"), {"in": msg}, config)
    cpu = run_tick(AudioGain(), {"in": msg}, config)
    gpu.raise_for_failures()
    assert gpu.outputs["out"][0]["type"] == "Gpu"
    assert decode_audio(gpu.outputs["out"][0])[1] == 44100
    assert np.array_equal(_samples(gpu.outputs["out"][0]), _samples(cpu.outputs["out"][0]))


_MIXES = [
    ({"a": "stereo", "b": "mono"}, {"gain_b": 0.5}),
    ({"a": "mono", "b": "stereo"}, {"gain_a": 2, "clip": True}),
    ({"a": "stereo", "b": "stereo"}, {}),
    ({"a": "loud", "b": "mono", "c": "stereo", "h": "mono"}, {"gain_h": -1, "clip": True}),
    ({"c": "six", "e": "mono"}, {"gain_c": 0.25}),
    ({"a": "stereo"}, {"gain_a": 3}),
    ({"a": "empty", "b": "empty"}, {}),
]


@pytest.mark.parametrize(("ports", "config"), _MIXES)
def test_mix_matches_numpy(device: Any, ports: dict[str, str], config: dict) -> None:
    inputs = {p: encode_audio(_SIGNALS[s], 8000) for p, s in ports.items()}
    gpu = run_tick(template_actor("tpl_gpu_audio_mix"), inputs, config)
    cpu = run_tick(template_actor("tpl_audio_mix_n"), inputs, config)
    gpu.raise_for_failures()
    cpu.raise_for_failures()
    assert np.array_equal(_samples(gpu.outputs["out"][0]), _samples(cpu.outputs["out"][0]))


@pytest.mark.parametrize(("ports", "config"), _MIXES[:3])
def test_two_signal_mix_n_is_tpl_audio_mix(ports: dict[str, str], config: dict) -> None:
    inputs = {p: encode_audio(_SIGNALS[s], 8000) for p, s in ports.items()}
    mine = run_tick(template_actor("tpl_audio_mix_n"), inputs, config)
    theirs = run_tick(template_actor("tpl_audio_mix"), inputs, config)
    assert mine.outputs["out"][0]["data"] == theirs.outputs["out"][0]["data"]


_TAPS = {
    "one": [1.0],
    "delay": [0.0, 0.0, 1.0],
    "lowpass31": list(np.hanning(31) / np.hanning(31).sum()),
    "random200": _RNG.uniform(-1, 1, 200).tolist(),
}


@pytest.mark.parametrize("signal", ["stereo", "mono", "six", "empty"])
@pytest.mark.parametrize("taps", sorted(_TAPS))
def test_fir_matches_numpy(device: Any, signal: str, taps: str) -> None:
    x = _SIGNALS[signal]
    msg = encode_audio(x, 16000)
    config = {"taps": _TAPS[taps]}
    gpu = run_tick(template_actor("tpl_gpu_audio_fir"), {"in": msg}, config)
    cpu = run_tick(template_actor("tpl_audio_fir"), {"in": msg}, config)
    gpu.raise_for_failures()
    got, want = _samples(gpu.outputs["out"][0]), _samples(cpu.outputs["out"][0])
    assert got.shape == want.shape == x.shape
    bound = 1e-6 * np.abs(_TAPS[taps]).sum() * max(1.0, float(np.abs(x).max(initial=0)))
    assert np.abs(got.astype(np.float64) - want).max(initial=0) <= bound


def test_numpy_fir_is_lfilter() -> None:
    from scipy.signal import lfilter

    taps = _TAPS["random200"]
    result = run_tick(
        template_actor("tpl_audio_fir"), {"in": encode_audio(_STEREO, 16000)}, {"taps": taps}
    )
    want = lfilter(taps, [1.0], _STEREO.astype(np.float64), axis=0)
    assert np.allclose(_samples(result.outputs["out"][0]), want, atol=1e-5)


def test_audio_chain_uploads_once_and_reads_back_once(device: Any) -> None:
    """gain -> FIR -> mix (with itself on two ports) -> a CPU node: one upload, one
    readback, and the numpy chain's samples."""
    net = Network()
    for tid in ("tpl_gpu_audio_gain", "tpl_gpu_audio_fir", "tpl_gpu_audio_mix", "tpl_audio_level"):
        net.register_actor(tid, template_actor(tid))
    net.add_node("gain", "tpl_gpu_audio_gain", {"gain_db": -3})
    net.add_node("fir", "tpl_gpu_audio_fir", {"taps": _TAPS["lowpass31"]})
    net.add_node("mix", "tpl_gpu_audio_mix", {"gain_b": -0.5})
    net.add_node("level", "tpl_audio_level")
    net.add_connection("gain", "out", "fir", "in")
    net.add_connection("fir", "out", "mix", "a")
    net.add_connection("fir", "out", "mix", "b")
    net.add_connection("mix", "out", "level", "in")
    level = net.collect("level", "level")
    events = net.events()
    net.add_initial("gain", "in", encode_audio(_STEREO, 16000))
    net.run(timeout=60).raise_for_failures()
    transfers = [e for e in events.drain() if e["_type"] == "GpuTransfer"]
    net.shutdown()
    assert (gpu_counters().uploads, gpu_counters().readbacks) == (1, 1)
    assert [(e["actorId"], e["uploads"], e["readbacks"]) for e in transfers] == [
        ("gain", 1, 0),
        ("mix", 0, 1),
    ]
    gained = _STEREO * np.float32(10 ** (-3 / 20))
    filtered = np.stack(
        [np.convolve(gained[:, c], _TAPS["lowpass31"])[: len(gained)] for c in range(2)], axis=1
    )
    want = filtered * 0.5
    assert level.messages[0]["data"]["peak"] == pytest.approx(np.abs(want).max(), rel=1e-4)


_IN = {"in": encode_audio(_STEREO, 8000)}
_BAD = [
    ("gain", _IN, {}, "config 'gain_db' or 'gain' is required (exactly one of them)"),
    ("gain", _IN, {"gain": 1, "gain_db": 0}, "exactly one of them"),
    ("gain", _IN, {"gain_db": 300}, "config 'gain_db' must be <= 200"),
    ("gain", _IN, {"gain": -1}, "config 'gain' must be >= 0"),
    ("gain", _IN, {"gain": "2"}, "config 'gain' must be a number"),
    ("gain", _IN, {"gain": 1, "clip": "yes"}, "config 'clip'"),
    ("gain", {"in": Message.bytes(b"RFLA")}, {"gain": 1}, "not audio"),
    ("gain", {"in": Message.string("x")}, {"gain": 1}, "expected an image/audio Bytes"),
    ("fir", _IN, {}, "config 'taps' is required"),
    ("fir", _IN, {"taps": []}, "config 'taps' must be a list of 1..4096 finite numbers"),
    ("fir", _IN, {"taps": [0.5] * 4097}, "1..4096"),
    ("fir", _IN, {"taps": [1, "2"]}, "finite numbers"),
    ("fir", _IN, {"taps": [1, float("nan")]}, "finite numbers"),
    ("fir", _IN, {"taps": [[1, 2], [3, 4]]}, "config 'taps' must be a list"),
    ("fir", _IN, {"taps": 3}, "config 'taps' must be a list"),
    (
        "mix",
        {"a": encode_audio(_STEREO, 8000), "b": encode_audio(_MONO, 16000)},
        {},
        "in-ports 'a' (8000 Hz) and 'b' (16000 Hz) differ in sample rate",
    ),
    (
        "mix",
        {"a": encode_audio(_STEREO, 8000), "d": encode_audio(_SIX, 8000)},
        {},
        "in-ports 'd' (6 channels) and 'a' (2 channels) cannot be mixed",
    ),
    ("mix", {"a": encode_audio(_STEREO, 8000)}, {"gain_a": "x"}, "config 'gain_a' must be"),
    ("mix", {"b": Message.bytes(b"\0" * 20)}, {}, "in-port 'b': not audio"),
]


@pytest.mark.parametrize(("name", "inputs", "config", "fragment"), _BAD)
@pytest.mark.parametrize("side", ["gpu", "cpu"])
def test_bad_config_or_input_fails_the_tick_naming_it(
    device: Any, side: str, name: str, inputs: dict, config: dict, fragment: str
) -> None:
    cpu = {"gain": AudioGain(), "fir": template_actor("tpl_audio_fir")}
    actor = (
        template_actor(f"tpl_gpu_audio_{name}")
        if side == "gpu"
        else cpu.get(name) or template_actor("tpl_audio_mix_n")
    )
    result = run_tick(actor, inputs, config)
    assert len(result.failures) == 1, result.outputs
    first = result.failures[0].error.splitlines()[0]
    assert fragment in first and "Traceback" not in first


def test_mix_without_any_signal_fails(device: Any) -> None:
    """A tick with no signal (a node whose only inputs are other ports' packets) names the
    ports it looked at."""
    from reflow.library._gpu_twins import mix_gains

    ctx = type("Ctx", (), {"inputs": {}, "config": {}})()
    with pytest.raises(ActorError, match="no signal on any in-port"):
        mix_gains(ctx)


@pytest.mark.parametrize(
    ("name", "inputs", "config", "cpu"),
    [
        ("gain", _IN, {"gain": 2}, AudioGain()),
        ("fir", _IN, {"taps": [0.5, 0.5]}, None),
        ("mix", {"a": encode_audio(_STEREO, 8000), "b": encode_audio(_MONO, 8000)}, {}, None),
    ],
)
def test_fallback_cpu_runs_the_twin(
    gpu_off: None, name: str, inputs: dict, config: dict, cpu: Any
) -> None:
    twin = cpu or template_actor("tpl_audio_fir" if name == "fir" else "tpl_audio_mix_n")
    gpu = run_tick(template_actor(f"tpl_gpu_audio_{name}"), inputs, {**config, "fallback": "cpu"})
    want = run_tick(twin, inputs, config)
    gpu.raise_for_failures()
    assert gpu.outputs["out"][0]["data"] == want.outputs["out"][0]["data"]


def _gpu_output(tid: str, inputs: dict, config: dict) -> Message:
    result = run_tick(template_actor(tid), inputs, config)
    result.raise_for_failures()
    return result.outputs["out"][0]


@pytest.mark.parametrize(
    ("source", "target", "port", "fragment"),
    [
        ("audio", "tpl_gpu_image_convolve", "in", "in-port 'in': expected a GPU image"),
        ("audio", "tpl_gpu_image_blend", "base", "in-port 'base': expected a GPU image"),
        ("image", "tpl_gpu_audio_gain", "in", "in-port 'in': expected GPU audio"),
        ("image", "tpl_gpu_audio_mix", "c", "in-port 'c': expected GPU audio"),
        ("audio", "tpl_gpu_array_expression", "a", "in-port 'a': expected a GPU array"),
        ("image", "tpl_gpu_array_reduce", "in", "in-port 'in': expected a GPU array"),
        ("image", "tpl_array_reduce", "in", "in-port 'in': expected a GPU array"),
    ],
)
def test_a_gpu_handle_of_another_kind_is_refused_naming_the_port(
    device: Any, source: str, target: str, port: str, fragment: str
) -> None:
    from reflow.library import encode_image

    if source == "audio":
        msg = _gpu_output("tpl_gpu_audio_gain", {"in": encode_audio(_STEREO, 8000)}, {"gain": 1})
    else:
        image = np.zeros((4, 4, 4), dtype=np.uint8)
        msg = _gpu_output("tpl_gpu_image_grayscale", {"in": encode_image(image)}, {})
    config = {
        "tpl_gpu_image_convolve": {"kernel": [1] * 9},
        "tpl_gpu_audio_gain": {"gain": 1},
        "tpl_gpu_array_expression": {"expression": "$.a"},
    }.get(target, {})
    inputs = {port: msg}
    if target == "tpl_gpu_image_blend":
        inputs["overlay"] = msg
    result = run_tick(template_actor(target), inputs, config)
    assert len(result.failures) == 1
    assert fragment in result.failures[0].error.splitlines()[0]
