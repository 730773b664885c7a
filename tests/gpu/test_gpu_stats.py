"""tpl_gpu_image_info (a reduction on the device) against tpl_image_info.

Tolerance: shape, dtype, min and max equal; mean within 1e-6 relative (float32 partial sums,
combined in float64 on the host); NaN anywhere gives NaN statistics, as numpy does.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from reflow import template_actor
from reflow._core._messages import Message
from reflow._gpu import gpu_counters
from reflow.library import encode_image
from reflow.testing import run_tick

_RNG = np.random.default_rng(7)


def _special() -> np.ndarray:
    a = _RNG.random((5, 7, 3), dtype=np.float32)
    a[2, 3, 1] = np.inf
    a[0, 0, 0] = -3.5
    return a


def _nan() -> np.ndarray:
    a = _RNG.random((40, 40, 1), dtype=np.float32)
    a[39, 39, 0] = np.nan
    return a


_IMAGES = {
    "rgba8": _RNG.integers(0, 256, (37, 53, 4), dtype=np.uint8),
    "rgb16": _RNG.integers(0, 65536, (300, 301, 3), dtype=np.uint16),
    "one": np.full((1, 1, 1), 200, dtype=np.uint8),
    "float": _RNG.random((512, 600, 4), dtype=np.float32),
    "constant": np.full((17, 3, 2), 0.25, dtype=np.float32),
    "inf": _special(),
    "nan": _nan(),
    "empty": np.zeros((0, 5, 3), dtype=np.uint8),
}


@pytest.mark.parametrize("name", sorted(_IMAGES))
def test_gpu_image_info_matches_numpy(device: Any, name: str) -> None:
    msg = encode_image(_IMAGES[name])
    gpu = run_tick(template_actor("tpl_gpu_image_info"), {"in": msg})
    cpu = run_tick(template_actor("tpl_image_info"), {"in": msg})
    gpu.raise_for_failures()
    got, want = gpu.outputs["out"][0]["data"], cpu.outputs["out"][0]["data"]
    for key in ("width", "height", "channels", "dtype"):
        assert got[key] == want[key]
    for key in ("min", "max", "mean"):
        if want[key] is None or math.isnan(want[key]):
            assert got[key] is None or math.isnan(got[key]), (key, got[key])
        elif key == "mean" and math.isfinite(want[key]):
            assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-9)
        else:
            assert got[key] == want[key]


def test_reduction_reads_back_partials_only(device: Any) -> None:
    image = _IMAGES["float"]
    run_tick(template_actor("tpl_gpu_image_info"), {"in": encode_image(image)}).raise_for_failures()
    counters = gpu_counters()
    assert counters.uploads == 1 and counters.readbacks == 1
    assert counters.bytes_down <= 1024 * 4 * 4 < image.nbytes


@pytest.mark.parametrize(
    ("inputs", "fragment"),
    [
        ({"in": Message.bytes(b"RFLI")}, "not an image"),
        ({"in": Message.integer(3)}, "expected an image/audio Bytes message"),
    ],
)
def test_bad_input(device: Any, inputs: dict, fragment: str) -> None:
    result = run_tick(template_actor("tpl_gpu_image_info"), inputs)
    assert len(result.failures) == 1 and fragment in result.failures[0].error
