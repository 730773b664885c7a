"""GPU image filters (convolution, colour matrix, chroma key, blend modes) against their numpy
twins, the twins against independent references, and bad config / input rows.

Tolerance: at most 1 unit of the dtype for uint8/uint16, 1e-5 for float32 images (float32
sums of the same terms in the same order on both sides; WGSL's division may differ by 2.5
ULP). Chroma key: 1 unit, except that at most 0.5 % of the pixels (hues within float32
rounding of the tolerance band's edge) may be keyed on one side only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from reflow import Network, template_actor
from reflow._core._messages import Message
from reflow._gpu import configure_gpu, gpu_counters, reset_device
from reflow.library import decode_image, encode_image
from reflow.testing import run_tick

_RNG = np.random.default_rng(1616)
_IMAGES: dict[str, np.ndarray] = {
    "rgba8": _RNG.integers(0, 256, (29, 41, 4), dtype=np.uint8),
    "rgb16": _RNG.integers(0, 65536, (17, 23, 3), dtype=np.uint16),
    "gray8": _RNG.integers(0, 256, (11, 9, 1), dtype=np.uint8),
    "rgbf": _RNG.random((13, 19, 3), dtype=np.float32),
    "tiny": _RNG.integers(0, 256, (1, 2, 4), dtype=np.uint8),
}
_SHARPEN = [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]
_RANDOM5 = _RNG.uniform(-1, 1, 25).round(3).tolist()
_SEPIA = [[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]]
_CONV_CASES = (
    [
        ("convolve", {"kernel": _SHARPEN, "edge": edge})
        for edge in ("clamp", "zero", "wrap", "reflect")
    ]
    + [
        ("convolve", {"kernel": _RANDOM5, "edge": edge})
        for edge in ("clamp", "zero", "wrap", "reflect")
    ]
    + [
        ("convolve", {"kernel": [1] * 9, "divisor": 9}),
        ("color_matrix", {"matrix": _SEPIA}),
        ("color_matrix", {"matrix": [[0, 0, 1, 0.1], [0, 1, 0, 0], [1, 0, 0, -0.2]]}),
    ]
)


@pytest.fixture
def gpu_off() -> Iterator[None]:
    """No GPU for this test (the shared device dropped before and after)."""
    reset_device()
    configure_gpu(enabled=False)
    yield
    configure_gpu()
    reset_device()


def _both(name: str, inputs: dict[str, Any], config: dict[str, Any]) -> tuple[Any, Any]:
    gpu = run_tick(template_actor(f"tpl_gpu_image_{name}"), inputs, config)
    cpu = run_tick(template_actor(f"tpl_image_{name}"), inputs, config)
    gpu.raise_for_failures()
    cpu.raise_for_failures()
    out = gpu.outputs["out"][0]
    assert out["type"] == "Gpu"
    return decode_image(out), decode_image(cpu.outputs["out"][0])


_ROWS = [
    (image, name, config)
    for image in sorted(_IMAGES)
    for name, config in _CONV_CASES
    if name == "convolve" or _IMAGES[image].shape[2] >= 3  # a matrix needs 3+ channels
]


@pytest.mark.parametrize(("image_name", "name", "config"), _ROWS)
def test_filter_matches_numpy(device: Any, image_name: str, name: str, config: dict) -> None:
    image = _IMAGES[image_name]
    got, want = _both(name, {"in": encode_image(image)}, config)
    assert got.shape == want.shape and got.dtype == want.dtype
    tolerance = 1e-5 if image.dtype == np.float32 else 1
    assert np.abs(got.astype(np.float64) - want).max() <= tolerance


@pytest.mark.parametrize("edge", ["clamp", "zero", "wrap", "reflect"])
def test_numpy_convolve_matches_an_independent_reference(edge: str) -> None:
    """The twin itself against np.pad + a float64 sliding sum (scipy's modes, by name)."""
    image = _IMAGES["rgb16"]
    kernel = np.asarray(_RANDOM5, dtype=np.float64).reshape(5, 5)
    pad: Any = {"clamp": "edge", "zero": "constant", "wrap": "wrap", "reflect": "reflect"}[edge]
    padded = np.pad(image.astype(np.float64), ((2, 2), (2, 2), (0, 0)), mode=pad)
    h, w, _ = image.shape
    ref = sum(kernel[i, j] * padded[i : i + h, j : j + w] for i in range(5) for j in range(5))
    ref = np.clip(np.rint(ref), 0, 65535)
    result = run_tick(
        template_actor("tpl_image_convolve"),
        {"in": encode_image(image)},
        {"kernel": _RANDOM5, "edge": edge},
    )
    result.raise_for_failures()
    assert np.abs(decode_image(result.outputs["out"][0]) - ref).max() <= 1


def _green_screen() -> np.ndarray:
    image = _RNG.integers(0, 256, (32, 48, 4), dtype=np.uint8)
    image[:, :24, 1] = np.maximum(image[:, :24, 1], 180)  # half of it greenish
    image[:, :24, 0] //= 3
    return image


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"tolerance": 1.0, "spillSuppression": 1.0},
        {"tolerance": 0.6, "spillSuppression": 0},
        {"keyColor": "blue", "tolerance": 1.8},
        {"tolerance": 0},
    ],
)
@pytest.mark.parametrize("channels", [3, 4])
def test_chroma_key_matches_numpy(device: Any, config: dict, channels: int) -> None:
    image = _green_screen()[:, :, :channels]
    got, want = _both("chroma_key", {"in": encode_image(image)}, config)
    assert got.shape == want.shape == (32, 48, 4)
    off = np.abs(got.astype(np.int64) - want).max(axis=2) > 1
    assert off.mean() <= 0.005
    if config.get("tolerance", 0.3) > 0 and config.get("keyColor") != "blue":
        assert (want[:, :24, 3] < 255).any()  # something was keyed


def test_numpy_chroma_key_is_tpl_chroma_keys_math() -> None:
    """tpl_image_chroma_key gives what tpl_chroma_key gives on the same pixels as a Stream's
    frame (its process step, called as that template calls it)."""
    from reflow.library._image_streams import ChromaKey

    image = _green_screen()
    result = run_tick(template_actor("tpl_image_chroma_key"), {"in": encode_image(image)})
    result.raise_for_failures()
    ctx = type("Ctx", (), {"config": {}})()
    assert np.array_equal(
        decode_image(result.outputs["out"][0]),
        ChromaKey().process(ctx, image),
    )


_MODES = [
    "normal", "multiply", "screen", "overlay", "add", "softlight", "hardlight", "difference",
    "exclusion", "colordodge", "colorburn", "darken", "lighten", "subtract", "divide",
]  # fmt: skip


def _rgba_pair() -> tuple[np.ndarray, np.ndarray]:
    base = _RNG.integers(0, 256, (24, 31, 4), dtype=np.uint8)
    over = _RNG.integers(0, 256, (24, 31, 4), dtype=np.uint8)
    base[0, :4] = (0, 255, 128, 0)  # transparent base, extreme colours
    over[0, :4] = (255, 0, 0, 0)
    over[1, :4] = (0, 0, 0, 255)
    over[2, :4] = (255, 255, 255, 255)
    return base, over


@pytest.mark.parametrize("opacity", [1.0, 0.35])
@pytest.mark.parametrize("mode", _MODES)
def test_blend_matches_numpy(device: Any, mode: str, opacity: float) -> None:
    base, over = _rgba_pair()
    inputs = {"base": encode_image(base), "overlay": encode_image(over)}
    got, want = _both("blend", inputs, {"mode": mode, "opacity": opacity})
    assert np.abs(got.astype(np.int64) - want).max() <= 1


def test_numpy_blend_is_tpl_blend_modes_math() -> None:
    base, over = _rgba_pair()
    inputs = {"base": encode_image(base), "overlay": encode_image(over)}
    mine = run_tick(template_actor("tpl_image_blend"), inputs, {"mode": "screen"})
    raw = run_tick(
        template_actor("tpl_blend_mode"),
        {"base": Message.bytes(base.tobytes()), "overlay": Message.bytes(over.tobytes())},
        {"mode": "screen"},
    )
    mine.raise_for_failures()
    raw.raise_for_failures()
    assert decode_image(mine.outputs["out"][0]).tobytes() == raw.outputs["image"][0]["data"]


def test_blend_of_two_gpu_images_stays_on_the_device(device: Any) -> None:
    """convolve -> blend (its base) and convolve -> blend (its overlay) -> a CPU node: two
    uploads, one readback."""
    base, over = _rgba_pair()
    net = Network()
    for name in ("tpl_gpu_image_convolve", "tpl_gpu_image_blend", "tpl_image_info"):
        net.register_actor(name, template_actor(name))
    net.add_node("c1", "tpl_gpu_image_convolve", {"kernel": _SHARPEN})
    net.add_node("c2", "tpl_gpu_image_convolve", {"kernel": [1] * 9, "divisor": 9})
    net.add_node("mix", "tpl_gpu_image_blend", {"mode": "overlay"})
    net.add_node("info", "tpl_image_info")
    net.add_connection("c1", "out", "mix", "base")
    net.add_connection("c2", "out", "mix", "overlay")
    net.add_connection("mix", "out", "info", "in")
    out = net.collect("info", "out")
    net.add_initial("c1", "in", encode_image(base))
    net.add_initial("c2", "in", encode_image(over))
    net.run(timeout=60).raise_for_failures()
    net.shutdown()
    assert (gpu_counters().uploads, gpu_counters().readbacks) == (2, 1)
    assert out.messages[0]["data"]["width"] == 31


_BASE = {"in": encode_image(_IMAGES["rgba8"])}
_PAIR = {"base": encode_image(_IMAGES["rgba8"]), "overlay": encode_image(_IMAGES["rgba8"])}
_BAD = [
    ("convolve", _BASE, {}, "config 'kernel' is required"),
    ("convolve", _BASE, {"kernel": [1, 2, 3, 4]}, "config 'kernel' must be a 3x3 or 5x5"),
    ("convolve", _BASE, {"kernel": [[1, 2], [3, 4], [5, 6]]}, "3x3 or 5x5"),
    ("convolve", _BASE, {"kernel": [[1, 2, 3], [4, 5], [6, 7, 8, 9]]}, "3x3 or 5x5"),
    ("convolve", _BASE, {"kernel": [1] * 8 + ["1"]}, "finite numbers"),
    ("convolve", _BASE, {"kernel": [1] * 8 + [True]}, "finite numbers"),
    ("convolve", _BASE, {"kernel": [1] * 8 + [float("nan")]}, "finite numbers"),
    ("convolve", _BASE, {"kernel": [1] * 8 + [float("inf")]}, "finite numbers"),
    ("convolve", _BASE, {"kernel": "sharpen"}, "config 'kernel' must be"),
    ("convolve", _BASE, {"kernel": [[[1]] * 3] * 3}, "config 'kernel' must be"),
    ("convolve", _BASE, {"kernel": _SHARPEN, "divisor": 0}, "config 'divisor' must not be 0"),
    ("convolve", _BASE, {"kernel": _SHARPEN, "edge": "mirror"}, "config 'edge'"),
    ("convolve", {"in": Message.bytes(b"RFLI\0\0")}, {"kernel": _SHARPEN}, "not an image"),
    ("convolve", {"in": Message.integer(4)}, {"kernel": _SHARPEN}, "expected an image/audio"),
    ("color_matrix", _BASE, {}, "config 'matrix' is required"),
    ("color_matrix", _BASE, {"matrix": [[1, 0], [0, 1]]}, "config 'matrix' must be a 3x3"),
    ("color_matrix", _BASE, {"matrix": [1] * 12 + [None]}, "config 'matrix' must be"),
    ("color_matrix", _BASE, {"matrix": [[1] * 3] * 4}, "config 'matrix' must be"),
    (
        "color_matrix",
        {"in": encode_image(_IMAGES["rgb16"])},
        {"matrix": [[1] * 5] * 4},
        "in-port 'in': a 4x5 colour matrix needs an image of 4+ channels, got 3",
    ),
    ("chroma_key", _BASE, {"keyColor": "red"}, "config 'keyColor'"),
    ("chroma_key", _BASE, {"tolerance": 2}, "config 'tolerance' must be <= 1.8"),
    ("chroma_key", _BASE, {"spillSuppression": -1}, "config 'spillSuppression' must be >= 0"),
    (
        "chroma_key",
        {"in": encode_image(_IMAGES["rgb16"])},
        {},
        "in-port 'in': chroma key needs an 8-bit RGB or RGBA image, got 3 channel(s) of uint16",
    ),
    ("chroma_key", {"in": encode_image(_IMAGES["gray8"])}, {}, "got 1 channel(s) of uint8"),
    ("blend", _PAIR, {"mode": "burn"}, "config 'mode' must be one of normal, multiply"),
    ("blend", _PAIR, {"mode": 3}, "config 'mode' must be a blend mode name"),
    ("blend", _PAIR, {"opacity": 1.5}, "config 'opacity' must be <= 1"),
    (
        "blend",
        {"base": encode_image(_IMAGES["rgba8"]), "overlay": encode_image(_IMAGES["tiny"])},
        {},
        "in-ports 'base' (41x29) and 'overlay' (2x1) differ in size",
    ),
    (
        "blend",
        {"base": encode_image(_IMAGES["rgb16"]), "overlay": encode_image(_IMAGES["rgba8"])},
        {},
        "in-port 'base': blending needs an 8-bit RGBA image",
    ),
    (
        "blend",
        {"base": encode_image(_IMAGES["rgba8"]), "overlay": Message.bytes(b"x")},
        {},
        "in-port 'overlay': not an image",
    ),
]


@pytest.mark.parametrize(("name", "inputs", "config", "fragment"), _BAD)
@pytest.mark.parametrize("side", ["gpu", "cpu"])
def test_bad_config_or_input_fails_the_tick_naming_it(
    device: Any, side: str, name: str, inputs: dict, config: dict, fragment: str
) -> None:
    tid = f"tpl_gpu_image_{name}" if side == "gpu" else f"tpl_image_{name}"
    result = run_tick(template_actor(tid), inputs, config)
    assert len(result.failures) == 1, result.outputs
    first = result.failures[0].error.splitlines()[0]
    assert fragment in first and "Traceback" not in first


@pytest.mark.parametrize(
    ("name", "inputs", "config"),
    [
        ("convolve", _BASE, {"kernel": _SHARPEN, "edge": "wrap"}),
        ("color_matrix", _BASE, {"matrix": _SEPIA}),
        ("chroma_key", _BASE, {"tolerance": 0.5}),
        ("blend", _PAIR, {"mode": "multiply"}),
    ],
)
def test_fallback_cpu_runs_the_twin(gpu_off: None, name: str, inputs: dict, config: dict) -> None:
    gpu = run_tick(template_actor(f"tpl_gpu_image_{name}"), inputs, {**config, "fallback": "cpu"})
    cpu = run_tick(template_actor(f"tpl_image_{name}"), inputs, config)
    gpu.raise_for_failures()
    assert gpu.outputs["out"][0]["data"] == cpu.outputs["out"][0]["data"]
    failed = run_tick(template_actor(f"tpl_gpu_image_{name}"), inputs, config)
    assert "no GPU adapter" in failed.failures[0].error
