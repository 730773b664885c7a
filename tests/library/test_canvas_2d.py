"""reflow.library._canvas and _paths: the SDK's 2D vector templates, with expectations
computed independently (closed forms, numpy, Pillow), through real ticks."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pytest

from reflow import Message, template_actor
from reflow.library import _paths
from reflow.testing import run_tick, run_ticks


def out(tid: str, inputs: dict[str, Any], config: dict[str, Any] | None = None) -> Any:
    r = run_tick(template_actor(tid), inputs, config)
    r.raise_for_failures()
    return r.outputs


def rgba(msg: Any, w: int, h: int) -> np.ndarray:
    return np.frombuffer(msg["data"], np.uint8).reshape(h, w, 4)


def test_background_solid_and_gradients() -> None:
    o = out(
        "tpl_background",
        {"tick": Message.flow()},
        {"width": 4, "height": 3, "color": [10, 20, 30, 40]},
    )
    assert rgba(o["image"][0], 4, 3).tolist() == [[[10, 20, 30, 40]] * 4] * 3
    assert o["metadata"][0]["data"] == {"width": 4, "height": 3, "type": "solid"}
    o = out(
        "tpl_background",
        {"params": Message.object({"type": "linearGradient", "angle": 0})},
        {"width": 5, "height": 2},
    )
    img = rgba(o["image"][0], 5, 2)
    expected = [int(255 * min(1, max(0, x / 5 - 0.5 + 0.5))) for x in range(5)]
    assert img[0, :, 0].tolist() == expected and (img[..., 3] == 255).all()
    o = out(
        "tpl_background",
        {"tick": Message.flow()},
        {"width": 9, "height": 9, "type": "radialGradient", "radius": 0.5},
    )
    img = rgba(o["image"][0], 9, 9)
    d = math.hypot(4 / 9 - 0.5, 4 / 9 - 0.5) / 0.5
    assert img[4, 4, 0] == int(255 + (0 - 255) * d)
    assert img[0, 0, 0] == 0


def _blend_ref(b: np.ndarray, f: np.ndarray, mode: str, opacity: float) -> np.ndarray:
    """One pixel at a time, in plain Python, from the W3C formulas."""
    out = np.zeros_like(b)
    for i in range(len(b)):
        bb, ff = [v / 255 for v in b[i][:3]], [v / 255 for v in f[i][:3]]
        if mode == "multiply":
            m = [round(x * y * 255) for x, y in zip(bb, ff, strict=True)]
        elif mode == "screen":
            m = [round((1 - (1 - x) * (1 - y)) * 255) for x, y in zip(bb, ff, strict=True)]
        elif mode == "difference":
            m = [abs(int(x) - int(y)) for x, y in zip(b[i][:3], f[i][:3], strict=True)]
        else:
            m = list(f[i][:3])
        fa = f[i][3] / 255 * opacity
        ba = b[i][3] / 255
        oa = fa + ba * (1 - fa)
        out[i][:3] = [
            min(255, max(0, round(x * (1 - fa) + y * fa))) for x, y in zip(b[i][:3], m, strict=True)
        ]
        out[i][3] = round(oa * 255)
    return out


@pytest.mark.parametrize("mode", ["normal", "multiply", "screen", "difference"])
def test_blend_mode(mode: str) -> None:
    rng = np.random.default_rng(1)
    b = rng.integers(0, 256, (16, 4), dtype=np.uint8)
    f = rng.integers(0, 256, (16, 4), dtype=np.uint8)
    r = run_ticks(
        template_actor("tpl_blend_mode"),
        [{"base": Message.bytes(b.tobytes())}, {"overlay": Message.bytes(f.tobytes())}],
        {"mode": mode, "opacity": 0.7},
    )
    r.raise_for_failures()
    got = np.frombuffer(r.outputs["image"][0]["data"], np.uint8).reshape(16, 4)
    assert np.abs(got.astype(int) - _blend_ref(b, f, mode, 0.7).astype(int)).max() <= 1


def test_gaussian_blur() -> None:
    img = np.zeros((9, 9, 4), np.uint8)
    img[4, 4] = 255
    o = out("tpl_gaussian_blur", {"image": Message.bytes(img.tobytes())}, {"width": 9, "radius": 3})
    got = rgba(o["image"][0], 9, 9).astype(float)
    k = np.exp(-(np.arange(-3, 4) ** 2) / (2 * 1.0))
    k /= k.sum()
    assert got[4, 4, 0] == pytest.approx(round(round(255 * k[3]) * k[3]), abs=1)
    assert got[4, 1, 0] == pytest.approx(round(round(255 * k[0]) * k[3]), abs=1)
    assert o["metadata"][0]["data"] == {"width": 9, "height": 9, "radius": 3}
    same = out(
        "tpl_gaussian_blur", {"image": Message.bytes(img.tobytes())}, {"width": 9, "radius": 0}
    )
    assert same["image"][0]["data"] == img.tobytes()


def test_canvas_composites_layers_in_order() -> None:
    w, h = 2, 2
    red = np.tile(np.array([255, 0, 0, 255], np.uint8), (h, w, 1))
    half_blue = np.tile(np.array([0, 0, 255, 128], np.uint8), (h, w, 1))
    r = run_ticks(
        template_actor("tpl_canvas_2d"),
        [
            {"layer1": Message.bytes(half_blue.tobytes())},
            {"layer0": Message.bytes(red.tobytes())},
            {"layer2": Message.bytes(b"wrong size")},
            {"tick": Message.flow()},
        ],
        {"width": w, "height": h, "background": [0, 255, 0, 255]},
    )
    r.raise_for_failures()
    px = rgba(r.outputs["frame"][0], w, h)[0, 0]
    a = 128 / 255
    assert px.tolist() == [round(255 * (1 - a)), 0, round(255 * a), 255]
    assert r.outputs["metadata"][0]["data"]["layerCount"] == 3
    r = run_ticks(
        template_actor("tpl_canvas_2d"),
        [
            {"layer0": Message.bytes(red.tobytes())},
            {"tick": Message.flow()},
        ],
        {
            "width": w,
            "height": h,
            "layers": [{"name": "layer0", "blend": "multiply", "opacity": 1.0}],
            "background": [128, 128, 128, 255],
        },
    )
    r.raise_for_failures()
    assert rgba(r.outputs["frame"][0], w, h)[0, 0].tolist() == [128, 0, 0, 255]


SHAPES = [
    (
        {"shape": "rect", "cx": 10, "cy": 20, "width": 4, "height": 6},
        "M8,17 L12,17 L12,23 L8,23 Z",
        20.0,
        True,
    ),
    ({"shape": "line", "x1": 0, "y1": 0, "x2": 3, "y2": 4}, "M0,0 L3,4", 5.0, False),
    ({"shape": "polygon", "radius": 10, "sides": 4}, None, 4 * 10 * math.sqrt(2), True),
    ({"shape": "circle", "radius": 10}, None, 2 * math.pi * 10, True),
    ({"shape": "star", "points": 5, "outerRadius": 10, "innerRadius": 5}, None, None, True),
    ({"shape": "path", "d": "m 1 1 h 10 v 10 z"}, "M1,1 L11,1 L11,11 Z", 20 + math.sqrt(200), True),
]


@pytest.mark.parametrize(
    ("params", "svg", "length", "closed"), SHAPES, ids=[s[0]["shape"] for s in SHAPES]
)
def test_shape_paths(
    params: dict[str, Any], svg: str | None, length: float | None, closed: bool
) -> None:
    o = out("tpl_shape_2d", {"params": Message.object(params)})
    path = o["path"][0]["data"]
    if svg is not None:
        assert path == svg
    meta = o["metadata"][0]["data"]
    if length is not None:
        assert meta["length"] == pytest.approx(length, rel=2e-3)
    assert meta["closed"] is closed
    assert meta["segments"] == len(_paths.parse(path))


def test_rasterize_fills_and_strokes() -> None:
    w = h = 40
    r = run_ticks(
        template_actor("tpl_vector_rasterize"),
        [
            {"path": Message.string("M10,10 L30,10 L30,30 L10,30 Z")},
            {"tick": Message.flow()},
        ],
        {"width": w, "height": h, "fill": {"color": "#ff0000"}},
    )
    r.raise_for_failures()
    img = rgba(r.outputs["image"][0], w, h)
    assert img[20, 20].tolist() == [255, 0, 0, 255] and img[5, 5, 3] == 0
    assert (img[11:29, 11:29, 3] == 255).all() and (img[:9, :, 3] == 0).all()
    meta = r.outputs["metadata"][0]["data"]
    assert meta == {
        "width": 40,
        "height": 40,
        "format": "rgba",
        "hasFill": True,
        "hasStroke": False,
    }
    # translated by x=5: the square moves right
    r = run_ticks(
        template_actor("tpl_vector_rasterize"),
        [
            {"path": Message.string("M10,10 L30,10 L30,30 L10,30 Z")},
            {"x": Message.float(5.0)},
        ],
        {"width": w, "height": h, "fill": {"color": [0, 0, 1, 1]}},
    )
    r.raise_for_failures()
    img = rgba(r.outputs["image"][0], w, h)
    assert img[20, 12, 3] == 0 and img[20, 33].tolist() == [0, 0, 255, 255]
    # a stroke only: the outline is drawn, the inside stays empty
    r = run_ticks(
        template_actor("tpl_vector_rasterize"),
        [
            {"path": Message.string("M10,10 L30,10 L30,30 L10,30 Z")},
            {"tick": Message.flow()},
        ],
        {"width": w, "height": h, "stroke": {"color": "#00ff00", "width": 2}},
    )
    r.raise_for_failures()
    img = rgba(r.outputs["image"][0], w, h)
    assert img[20, 20, 3] == 0 and img[10, 20, 1] > 200
    r = run_ticks(
        template_actor("tpl_vector_rasterize"),
        [
            {"path": Message.string("M0,20 L40,20")},
            {"tick": Message.flow()},
        ],
        {"width": w, "height": h, "stroke": {"color": "#ffffff", "width": 2, "dashArray": [5, 5]}},
    )
    r.raise_for_failures()
    row = rgba(r.outputs["image"][0], w, h)[20, :, 3]
    assert row[2] > 200 and row[7] == 0 and row[12] > 200


def test_arc_flattening_is_a_real_arc() -> None:
    pts = _paths.flatten(_paths.parse("M10,0 A10,10 0 0 1 -10,0"), 64)[0]
    # cubic Béziers of quarter arcs stay within 0.03% of the radius
    assert all(math.hypot(x, y) == pytest.approx(10, abs=3e-3) for x, y in pts)
    assert max(y for _, y in pts) == pytest.approx(10, abs=1e-3)


BAD: list[tuple[str, dict[str, Any], dict[str, Any] | None, str]] = [
    ("tpl_background", {"tick": Message.flow()}, {"width": 0}, "config 'width'"),
    ("tpl_background", {"tick": Message.flow()}, {"width": 16384, "height": 16384}, "pixels"),
    ("tpl_background", {"tick": Message.flow()}, {"color": [300, 0, 0]}, "config 'color'"),
    ("tpl_background", {"tick": Message.flow()}, {"type": "plaid"}, "config 'type'"),
    ("tpl_background", {"params": Message.string("x")}, None, "in-port 'params'"),
    (
        "tpl_background",
        {"tick": Message.flow()},
        {"type": "radialGradient", "radius": 0},
        "config 'radius'",
    ),
    ("tpl_blend_mode", {"base": Message.string("x")}, None, "in-port 'base'"),
    ("tpl_blend_mode", {"base": Message.bytes(b"\0" * 4)}, {"mode": "glow"}, "config 'mode'"),
    ("tpl_blend_mode", {"base": Message.bytes(b"\0" * 4)}, {"opacity": 2}, "config 'opacity'"),
    ("tpl_canvas_2d", {"tick": Message.flow()}, {"layers": "a,b"}, "config 'layers'"),
    (
        "tpl_canvas_2d",
        {"tick": Message.flow()},
        {"layers": [{"name": "layer0", "blend": "x"}]},
        "config 'layers' item 0 'blend'",
    ),
    ("tpl_canvas_2d", {"layer0": Message.integer(1)}, None, "in-port 'layer0'"),
    ("tpl_gaussian_blur", {"image": Message.bytes(b"\0" * 10)}, {"width": 2}, "in-port 'image'"),
    (
        "tpl_gaussian_blur",
        {"image": Message.bytes(b"\0" * 16)},
        {"width": 2, "radius": 999},
        "config 'radius'",
    ),
    ("tpl_shape_2d", {"params": Message.object({"shape": "blob"})}, None, "config 'shape'"),
    (
        "tpl_shape_2d",
        {"params": Message.object({"shape": "path", "d": "M1,1 Q2"})},
        None,
        "config 'd'",
    ),
    (
        "tpl_shape_2d",
        {"params": Message.object({"shape": "path", "d": "M0,0 " * 200_000})},
        None,
        "config 'd'",
    ),
    (
        "tpl_shape_2d",
        {"params": Message.object({"shape": "polygon", "sides": 2})},
        None,
        "config 'sides'",
    ),
    ("tpl_shape_2d", {"params": Message.object({"cx": "1"})}, None, "config 'cx'"),
    ("tpl_vector_rasterize", {"path": Message.string("M0,0 X")}, None, "in-port 'path'"),
    ("tpl_vector_rasterize", {"path": Message.integer(3)}, None, "in-port 'path'"),
    (
        "tpl_vector_rasterize",
        {"path": Message.string("M0,0 L9,9"), "tick": Message.flow()},
        {"fill": {"color": "#zzzzzz"}},
        "fill 'color'",
    ),
    (
        "tpl_vector_rasterize",
        {"path": Message.string("M0,0 L9,9"), "tick": Message.flow()},
        {"stroke": {"width": -1}},
        "stroke 'width'",
    ),
    (
        "tpl_vector_rasterize",
        {"path": Message.string("M0,0 L9,9"), "tick": Message.flow()},
        {"stroke": {"dashArray": [0, 0]}},
        "stroke 'dashArray'",
    ),
    ("tpl_vector_rasterize", {"x": Message.string("1")}, None, "in-port 'x'"),
    ("tpl_vector_rasterize", {"tick": Message.flow()}, {"width": -5}, "config 'width'"),
]


@pytest.mark.parametrize(
    ("tid", "inputs", "config", "fragment"), BAD, ids=[f"{r[0]}-{i}" for i, r in enumerate(BAD)]
)
def test_bad_input_and_config_fail_the_tick(
    tid: str, inputs: dict[str, Any], config: dict[str, Any] | None, fragment: str
) -> None:
    started = time.monotonic()
    r = run_tick(template_actor(tid), inputs, config, timeout=20)
    assert time.monotonic() - started < 10
    assert r.failures, r.outputs
    assert all("ActorError" in f.error for f in r.failures)
    assert fragment in r.failures[-1].error
