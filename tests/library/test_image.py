"""reflow.library._image: image templates on small numpy images, through real ticks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from reflow import Message, Network
from reflow.library import decode_image, encode_image
from reflow.library._image import (
    ImageAdjust,
    ImageBlur,
    ImageCrop,
    ImageDecodePnm,
    ImageEncodePnm,
    ImageFlip,
    ImageFromRaw,
    ImageGrayscale,
    ImageInfo,
    ImageResize,
    ImageThreshold,
    ImageToRaw,
)
from reflow.testing import TickResult, run_tick

RGB = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 255]]], dtype=np.uint8)


def image_out(result: TickResult, port: str = "out") -> np.ndarray:
    result.raise_for_failures()
    (msg,) = result.outputs[port]
    return decode_image(msg)


def run(actor: Any, pixels: np.ndarray, config: dict[str, Any] | None = None) -> np.ndarray:
    return image_out(run_tick(actor, {"in": encode_image(pixels)}, config))


def test_raw_round_trip_through_meta_and_pixels() -> None:
    r = run_tick(ImageToRaw(), {"in": encode_image(RGB)})
    r.raise_for_failures()
    meta = r.values("meta")[0]
    assert meta == {"width": 2, "height": 2, "channels": 3, "dtype": "uint8"}
    back = image_out(
        run_tick(ImageFromRaw(), {"pixels": r.outputs["pixels"][0], "meta": r.outputs["meta"][0]})
    )
    np.testing.assert_array_equal(back, RGB)
    from_config = image_out(
        run_tick(
            ImageFromRaw(), {"pixels": Message.bytes(RGB.tobytes())}, {"width": 2, "height": 2}
        )
    )
    np.testing.assert_array_equal(from_config, RGB)


def test_info() -> None:
    r = run_tick(ImageInfo(), {"in": encode_image(RGB)})
    r.raise_for_failures()
    info = r.values("out")[0]
    assert info["width"] == 2 and info["channels"] == 3 and info["max"] == 255.0
    assert info["mean"] == pytest.approx(RGB.mean())


def test_grayscale_uses_bt601_weights() -> None:
    gray = run(ImageGrayscale(), RGB)
    assert gray.shape == (2, 2, 1)
    assert gray[:, :, 0].tolist() == [[76, 150], [29, 255]]
    rgba = np.dstack([RGB, np.full((2, 2), 7, np.uint8)])
    assert run(ImageGrayscale(), rgba).shape == (2, 2, 1)


def test_resize_nearest_and_bilinear() -> None:
    small = np.array([[0, 100], [200, 255]], dtype=np.uint8)
    big = run(ImageResize(), small, {"width": 4, "height": 4, "method": "nearest"})
    assert big[:, :, 0].tolist() == [
        [0, 0, 100, 100],
        [0, 0, 100, 100],
        [200, 200, 255, 255],
        [200, 200, 255, 255],
    ]
    smooth = run(ImageResize(), small, {"width": 4, "height": 4})
    assert smooth[0, 0, 0] == 0 and smooth[3, 3, 0] == 255
    assert 0 < smooth[0, 1, 0] < 100  # interpolated
    aspect = run(ImageResize(), np.zeros((10, 20, 3), np.uint8), {"width": 10})
    assert aspect.shape == (5, 10, 3)
    floats = run(ImageResize(), np.ones((4, 4), np.float32) * 0.5, {"height": 2})
    assert floats.dtype == np.float32 and np.allclose(floats, 0.5)


@pytest.mark.parametrize("config", [{"method": "box", "radius": 1}, {"sigma": 1.0}])
def test_blur_spreads_a_point_and_keeps_flat_areas(config: dict[str, Any]) -> None:
    dot = np.zeros((7, 7), np.uint16)
    dot[3, 3] = 9000
    out = run(ImageBlur(), dot, config)
    assert out.dtype == np.uint16
    assert out[3, 3, 0] < 9000 and out[3, 4, 0] > 0 and out[0, 0, 0] == 0
    assert abs(int(out.sum()) - 9000) < 50  # energy preserved (rounding aside)
    flat = np.full((5, 5, 3), 77, np.uint8)
    np.testing.assert_array_equal(run(ImageBlur(), flat, config), flat)


def test_threshold() -> None:
    out = run(ImageThreshold(), RGB, {"threshold": 100})
    assert out[:, :, 0].tolist() == [[0, 255], [0, 255]]
    inv = run(ImageThreshold(), RGB, {"threshold": 100, "invert": True})
    assert inv[:, :, 0].tolist() == [[255, 0], [255, 0]]
    f = run(ImageThreshold(), np.array([[0.2, 0.8]], np.float32), {"threshold": 0.5})
    assert f[:, :, 0].tolist() == [[0.0, 1.0]]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("horizontal", [[2, 1], [4, 3]]),
        ("vertical", [[3, 4], [1, 2]]),
        ("both", [[4, 3], [2, 1]]),
        ("rotate180", [[4, 3], [2, 1]]),
        ("rotate90", [[2, 4], [1, 3]]),
        ("rotate270", [[3, 1], [4, 2]]),
        ("transpose", [[1, 3], [2, 4]]),
    ],
)
def test_flip(mode: str, expected: list[list[int]]) -> None:
    img = np.array([[1, 2], [3, 4]], np.uint8)
    assert run(ImageFlip(), img, {"mode": mode})[:, :, 0].tolist() == expected


def test_crop() -> None:
    img = np.arange(20, dtype=np.uint8).reshape(4, 5)
    out = run(ImageCrop(), img, {"x": 1, "y": 2, "width": 3, "height": 2})
    assert out[:, :, 0].tolist() == [[11, 12, 13], [16, 17, 18]]


def test_adjust_brightness_contrast_and_alpha() -> None:
    img = np.array([[[100, 100, 100, 9]]], np.uint8)
    out = run(ImageAdjust(), img, {"brightness": 0.2})
    assert out[0, 0].tolist() == [151, 151, 151, 9]  # 100 + 0.2 * 255, alpha unchanged
    out = run(ImageAdjust(), np.array([[0, 255]], np.uint8), {"contrast": 0})
    assert out[:, :, 0].tolist() == [[128, 128]]
    out = run(ImageAdjust(), np.array([[50, 200]], np.uint8), {"contrast": 3})
    assert out[:, :, 0].tolist() == [[0, 255]]  # clipped


def test_pnm_round_trip() -> None:
    r = run_tick(ImageEncodePnm(), {"in": encode_image(RGB)})
    r.raise_for_failures()
    ppm = r.values("out")[0]
    assert ppm.startswith(b"P6\n2 2\n255\n")
    np.testing.assert_array_equal(
        image_out(run_tick(ImageDecodePnm(), {"in": Message.bytes(ppm)})), RGB
    )
    pgm = b"P5 # comment\n3 1\n# another\n15\n" + bytes([0, 5, 15])
    gray = image_out(run_tick(ImageDecodePnm(), {"in": Message.bytes(pgm)}))
    assert gray[:, :, 0].tolist() == [[0, 85, 255]]  # scaled from maxval 15
    wide = np.array([[0, 65535]], np.uint16)
    r = run_tick(ImageEncodePnm(), {"in": encode_image(wide)})
    back = image_out(run_tick(ImageDecodePnm(), {"in": r.outputs["out"][0]}))
    np.testing.assert_array_equal(back[:, :, 0], wide)


def test_media_nodes_run_on_the_worker_pool() -> None:
    assert ImageBlur()._execution() == "worker"


def test_a_pipeline_of_image_nodes() -> None:
    net = Network()
    for tid, actor in [
        ("raw", ImageFromRaw()),
        ("gray", ImageGrayscale()),
        ("resize", ImageResize()),
        ("out", ImageToRaw()),
    ]:
        net.register_actor(tid, actor)
    net.add_node("raw", "raw", {"width": 4, "height": 2})
    net.add_node("gray", "gray")
    net.add_node("resize", "resize", {"width": 2, "method": "nearest"})
    net.add_node("out", "out")
    net.add_connection("raw", "out", "gray", "in")
    net.add_connection("gray", "out", "resize", "in")
    net.add_connection("resize", "out", "out", "in")
    meta = net.collect("out", "meta")
    for value in (0, 255):
        net.add_initial("raw", "pixels", Message.bytes(bytes([value]) * 24))
    net.run(timeout=20).raise_for_failures()
    net.shutdown()
    assert meta.values() == [{"width": 2, "height": 1, "channels": 1, "dtype": "uint8"}] * 2


IMG = encode_image(RGB)


@pytest.mark.parametrize(
    ("actor", "inputs", "config", "fragment"),
    [
        (
            ImageGrayscale(),
            {"in": Message.bytes(b"png?")},
            None,
            "in-port 'in': not an image (expected the RFLI header",
        ),
        (ImageGrayscale(), {"in": Message.string("x")}, None, "in-port 'in': expected"),
        (
            ImageFromRaw(),
            {"pixels": Message.bytes(b"abc")},
            {"width": 2, "height": 2},
            "in-port 'pixels': 2x2x3 uint8 needs 12 bytes, got 3",
        ),
        (
            ImageFromRaw(),
            {"pixels": Message.bytes(b"abc")},
            {"height": 1},
            "config 'width' must be a positive integer",
        ),
        (
            ImageFromRaw(),
            {
                "pixels": Message.bytes(b"abc"),
                "meta": Message.object({"width": 1, "height": 1, "dtype": "int8"}),
            },
            None,
            "in-port 'meta' field 'dtype' must be uint8, uint16 or float32",
        ),
        (ImageResize(), {"in": IMG}, None, "config 'width' or 'height' is required"),
        (ImageResize(), {"in": IMG}, {"width": 0}, "config 'width' must be >= 1"),
        (ImageResize(), {"in": IMG}, {"width": 2, "method": "cubic"}, "config 'method'"),
        (
            ImageResize(),
            {"in": IMG},
            {"width": 100000, "height": 100000},
            "config 'width' x 'height' (100000x100000) is more than",
        ),
        (ImageBlur(), {"in": IMG}, {"sigma": 0}, "config 'sigma' must be > 0"),
        (ImageBlur(), {"in": IMG}, {"method": "box", "radius": 65}, "config 'radius' must be <="),
        (ImageThreshold(), {"in": IMG}, None, "config 'threshold' is required"),
        (ImageThreshold(), {"in": IMG}, {"threshold": 300}, "config 'threshold' must be <= 255"),
        (ImageFlip(), {"in": IMG}, {"mode": "diagonal"}, "config 'mode' must be one of"),
        (
            ImageCrop(),
            {"in": IMG},
            {"width": 3, "height": 1},
            "config crop x=0 y=0 width=3 height=1 reaches outside the 2x2 image on in-port 'in'",
        ),
        (ImageCrop(), {"in": IMG}, {"width": 1}, "config 'height' is required"),
        (ImageAdjust(), {"in": IMG}, {"brightness": 2}, "config 'brightness' must be <= 1"),
        (ImageAdjust(), {"in": IMG}, {"contrast": -1}, "config 'contrast' must be >= 0"),
        (
            ImageDecodePnm(),
            {"in": Message.bytes(b"P3\n1 1\n255\n0 0 0")},
            None,
            "not a binary PGM/PPM file",
        ),
        (
            ImageDecodePnm(),
            {"in": Message.bytes(b"P6\n2 2\n255\n" + bytes(3))},
            None,
            "PNM 2x2 needs 12 pixel bytes, got 3",
        ),
        (ImageDecodePnm(), {"in": Message.bytes(b"P5\nx 2\n255\n")}, None, "bad PNM header field"),
    ],
)
def test_bad_input_fails_the_tick(
    actor: Any, inputs: dict[str, Any], config: dict[str, Any] | None, fragment: str
) -> None:
    r = run_tick(actor, inputs, config)
    assert not r.ok
    assert fragment in r.failures[0].error
