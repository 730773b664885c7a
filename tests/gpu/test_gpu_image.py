"""GPU image templates against their numpy twins on the adapter at hand (llvmpipe in CI).

Tolerance: at most 1 unit of the dtype for uint8/uint16 (float32 sums in another order, or
float32 where numpy uses float64, can round a .5 the other way), 1e-5 for float32 images.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from reflow import template_actor
from reflow._core._messages import Message
from reflow.library import decode_image, encode_image
from reflow.testing import run_tick

_RNG = np.random.default_rng(16)
_IMAGES = {
    "rgba8": _RNG.integers(0, 256, (37, 53, 4), dtype=np.uint8),
    "rgb16": _RNG.integers(0, 65536, (19, 31, 3), dtype=np.uint16),
    "gray8": _RNG.integers(0, 256, (23, 17, 1), dtype=np.uint8),
    "ga8": _RNG.integers(0, 256, (9, 11, 2), dtype=np.uint8),
    "rgbf": _RNG.random((21, 13, 3), dtype=np.float32),
    "row": _RNG.integers(0, 256, (1, 40, 4), dtype=np.uint8),
}
_CASES = [
    ("blur", {"sigma": 2.0}),
    ("blur", {"sigma": 0.3}),
    ("blur", {"method": "box", "radius": 3}),
    ("blur", {"sigma": 30.0}),
    ("resize", {"width": 20, "height": 71}),
    ("resize", {"width": 101}),
    ("resize", {"height": 5, "method": "nearest"}),
    ("grayscale", {}),
    ("adjust", {"brightness": 0.1, "contrast": 1.5}),
    ("adjust", {"brightness": -1, "contrast": 0}),
    ("threshold", {"threshold": 0.5}),
    ("threshold", {"threshold": 0.25, "invert": True}),
]


def _scale(config: dict[str, Any], image: np.ndarray) -> dict[str, Any]:
    if "threshold" in config and image.dtype != np.float32:
        top = np.iinfo(image.dtype).max
        return {**config, "threshold": round(config["threshold"] * top)}
    return config


@pytest.mark.parametrize("image_name", sorted(_IMAGES))
@pytest.mark.parametrize(("name", "config"), _CASES)
def test_gpu_twin_matches_numpy(device: Any, image_name: str, name: str, config: dict) -> None:
    image = _IMAGES[image_name]
    config = _scale(config, image)
    msg = encode_image(image)
    gpu = run_tick(template_actor(f"tpl_gpu_image_{name}"), {"in": msg}, config)
    cpu = run_tick(template_actor(f"tpl_image_{name}"), {"in": msg}, config)
    gpu.raise_for_failures()
    cpu.raise_for_failures()
    out = gpu.outputs["out"][0]
    assert out["type"] == "Gpu"
    got, want = decode_image(out), decode_image(cpu.outputs["out"][0])
    assert got.shape == want.shape and got.dtype == want.dtype
    tolerance = 1e-5 if image.dtype == np.float32 else 1
    assert np.abs(got.astype(np.float64) - want).max() <= tolerance


@pytest.mark.parametrize(
    ("name", "inputs", "config", "fragment"),
    [
        ("blur", {"in": Message.bytes(b"png?")}, {}, "not an image"),
        ("blur", {"in": Message.string("x")}, {}, "expected an image/audio Bytes message"),
        ("blur", None, {"sigma": 0}, "config 'sigma' must be > 0"),
        ("blur", None, {"method": "box", "radius": 65}, "config 'radius' must be <= 64"),
        ("resize", None, {}, "config 'width' or 'height' is required"),
        ("resize", None, {"width": 0}, "config 'width' must be >= 1"),
        ("resize", None, {"width": 100000, "height": 100000}, "more than"),
        ("threshold", None, {}, "config 'threshold' is required"),
        ("threshold", None, {"threshold": 300}, "must be <= 255"),
        ("adjust", None, {"brightness": 2}, "config 'brightness' must be <= 1"),
        ("grayscale", {"in": Message.any({"gpu": "handle"})}, {}, "expected an image/audio"),
    ],
)
def test_bad_input_fails_the_tick_as_the_twin_does(
    device: Any, name: str, inputs: dict | None, config: dict, fragment: str
) -> None:
    inputs = {"in": encode_image(_IMAGES["rgba8"])} if inputs is None else inputs
    result = run_tick(template_actor(f"tpl_gpu_image_{name}"), inputs, config)
    assert len(result.failures) == 1
    assert fragment in result.failures[0].error
    assert "Traceback" not in result.failures[0].error.splitlines()[0]


def test_empty_image(device: Any) -> None:
    empty = encode_image(np.zeros((0, 4, 3), dtype=np.uint8))
    for name in ("blur", "grayscale", "adjust", "threshold"):
        config = {"threshold": 3} if name == "threshold" else {}
        result = run_tick(template_actor(f"tpl_gpu_image_{name}"), {"in": empty}, config)
        result.raise_for_failures()
        assert decode_image(result.outputs["out"][0]).shape[0] == 0
