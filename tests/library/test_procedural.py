"""reflow.library._procedural: noise, Voronoi, L-systems, particles and heightmaps, checked
against independent computations (scalar reference formulas, brute force, Pillow)."""

from __future__ import annotations

import io
import math
import time
from typing import Any

import numpy as np
import pytest
from PIL import Image

from reflow import Message, template_actor
from reflow.testing import run_tick


def out(tid: str, inputs: dict[str, Any], config: dict[str, Any] | None = None) -> Any:
    r = run_tick(template_actor(tid), inputs, config)
    r.raise_for_failures()
    return r.outputs


def _fract(x: float) -> float:
    return x - math.trunc(x)


def _hash(x: float, y: float, z: float) -> float:
    qx, qy, qz = _fract(x * 0.1031), _fract(y * 0.1031), _fract(z * 0.1031)
    d = qx * (qy + 19.19) + qy * (qz + 19.19) + qz * (qx + 19.19)
    return _fract((qx + d + qy + d) * (qz + d))


def _value(x: float, y: float, z: float) -> float:
    ix, iy, iz = math.floor(x), math.floor(y), math.floor(z)

    def s(t: float) -> float:
        return t * t * (3 - 2 * t)

    fx, fy, fz = s(x - ix), s(y - iy), s(z - iz)

    def lerp(a: float, b: float, t: float) -> float:
        return a + (b - a) * t

    def plane(zz: float) -> float:
        return lerp(
            lerp(_hash(ix, iy, zz), _hash(ix + 1, iy, zz), fx),
            lerp(_hash(ix, iy + 1, zz), _hash(ix + 1, iy + 1, zz), fx),
            fy,
        )

    return lerp(plane(iz), plane(iz + 1), fz)


def test_value_noise_grid_matches_a_scalar_reference() -> None:
    o = out(
        "tpl_noise_generator",
        {"seed": Message.float(0.7)},
        {"noiseType": "value", "width": 6, "height": 4, "scale": 3.0, "offsetY": -1.25},
    )
    grid = np.frombuffer(o["output"][0]["data"], "<f8").reshape(4, 6)
    for y in range(4):
        for x in range(6):
            assert grid[y, x] == pytest.approx(_value(0.7 + x / 6 * 3, -1.25 + y / 4 * 3, 0.0))
    meta = o["metadata"][0]["data"]
    assert meta["min"] == pytest.approx(grid.min()) and meta["dataType"] == "f64"


@pytest.mark.parametrize("kind", ["perlin", "simplex", "worley", "ridged", "white"])
def test_noise_kinds_are_deterministic_and_bounded(kind: str) -> None:
    cfg = {"noiseType": kind, "width": 16, "height": 16}
    a = out("tpl_noise_generator", {"seed": Message.float(3.0)}, cfg)["output"][0]["data"]
    b = out("tpl_noise_generator", {"seed": Message.float(3.0)}, cfg)["output"][0]["data"]
    c = out("tpl_noise_generator", {"seed": Message.float(4.0)}, cfg)["output"][0]["data"]
    assert a == b and a != c
    grid = np.frombuffer(a, "<f8")
    assert np.isfinite(grid).all() and np.abs(grid).max() <= 2.0
    if kind == "worley":
        assert grid.min() >= 0 and grid.max() <= math.sqrt(2)


def test_voronoi_brute_force() -> None:
    o = out("tpl_voronoi", {"seed": Message.float(0.5)}, {"width": 5, "height": 4, "cellCount": 3})
    pts = [(_value(i * 7.13 + 0.5, 0, 0), _value(0, i * 11.37 + 0.5, 0)) for i in range(3)]
    dist = np.frombuffer(o["distance"][0]["data"], "<f8").reshape(4, 5)
    ids = np.frombuffer(o["cell_id"][0]["data"], "<u4").reshape(4, 5)
    for y in range(4):
        for x in range(5):
            ds = [math.dist((x / 5, y / 4), p) for p in pts]
            assert ids[y, x] == ds.index(min(ds)) and dist[y, x] == pytest.approx(min(ds))


def test_lsystem_rewrites_and_walks() -> None:
    o = out(
        "tpl_lsystem",
        {"axiom": Message.string("F")},
        {"iterations": 2, "rules": "F=F+F", "angle": 90, "stepLength": 2},
    )
    assert o["output"][0]["data"] == "F+F+F+F"
    pts = np.frombuffer(o["points"][0]["data"], "<f8").reshape(-1, 2)
    np.testing.assert_allclose(pts, [[0, 0], [0, 2], [-2, 2], [-2, 0], [0, 0]], atol=1e-12)
    o = out("tpl_lsystem", {"axiom": Message.string("F[+F]F")}, {"iterations": 0, "angle": 90})
    pts = np.frombuffer(o["points"][0]["data"], "<f8").reshape(-1, 2)
    np.testing.assert_allclose(pts, [[0, 0], [0, 1], [-1, 1], [0, 1], [0, 2]], atol=1e-12)
    assert o["metadata"][0]["data"]["pointCount"] == 5


def test_particles_stay_in_their_shape() -> None:
    for shape, check in (
        ("sphere", lambda p: np.linalg.norm(p, axis=1) <= 2 + 1e-5),
        ("cube", lambda p: np.abs(p).max(axis=1) <= 2 + 1e-5),
        ("disc", lambda p: (p[:, 1] == 0) & (np.hypot(p[:, 0], p[:, 2]) <= 2 + 1e-5)),
    ):
        o = out(
            "tpl_particle_emitter",
            {"trigger": Message.flow()},
            {"count": 200, "shape": shape, "radius": 2.0, "lifetime": 4.0},
        )
        data = np.frombuffer(o["particles"][0]["data"], "<f4").reshape(200, 8)
        assert check(data[:, :3]).all(), shape
        assert ((data[:, 6] >= 2) & (data[:, 6] <= 4)).all() and (data[:, 7] == 0).all()
        assert o["metadata"][0]["data"]["stride"] == 32


def test_heightmaps_round_trip() -> None:
    px = np.random.default_rng(2).integers(0, 256, (3, 4, 4), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(px, "RGBA").save(buf, "PNG")
    for data in (buf.getvalue(), px.tobytes()):
        cfg = None if data is not px.tobytes() else {"width": 4}
        o = out("tpl_image_to_heightmap", {"input": Message.bytes(data)}, cfg)
        grid = np.frombuffer(o["output"][0]["data"], "<f8").reshape(3, 4)
        ref = (0.299 * px[..., 0] + 0.587 * px[..., 1] + 0.114 * px[..., 2]) / 255
        np.testing.assert_allclose(grid, ref, atol=1e-12)
    o = out(
        "tpl_heightmap_to_image",
        {"input": Message.bytes(np.array([0.0, 0.5, 1.0, 2.0], "<f8").tobytes())},
    )
    img = np.frombuffer(o["output"][0]["data"], np.uint8).reshape(2, 2, 4)
    assert img[..., 0].flatten().tolist() == [0, int(0.25 * 255), int(0.5 * 255), 255]
    t = out(
        "tpl_heightmap_to_image",
        {"input": Message.bytes(np.array([0.0, 0.45, 0.7, 1.0], "<f8").tobytes())},
        {"colorMode": "terrain"},
    )
    timg = np.frombuffer(t["output"][0]["data"], np.uint8).reshape(4, 4)
    assert timg[0].tolist() == [30, 80, 180, 255] and timg[3].tolist() == [255, 255, 255, 255]


BAD: list[tuple[str, dict[str, Any], dict[str, Any] | None, str]] = [
    ("tpl_noise_generator", {"seed": Message.string("1")}, None, "in-port 'seed'"),
    (
        "tpl_noise_generator",
        {"seed": Message.float(1.0)},
        {"noiseType": "pink"},
        "config 'noiseType'",
    ),
    (
        "tpl_noise_generator",
        {"seed": Message.float(1.0)},
        {"width": 1 << 16, "height": 1 << 16},
        "cells",
    ),
    ("tpl_noise_generator", {"seed": Message.float(1.0)}, {"octaves": 1000}, "config 'octaves'"),
    ("tpl_voronoi", {"seed": Message.float(1.0)}, {"cellCount": 0}, "config 'cellCount'"),
    ("tpl_voronoi", {"seed": Message.float(1.0)}, {"mode": "edges"}, "config 'mode'"),
    (
        "tpl_voronoi",
        {"seed": Message.float(1.0)},
        {"cellCount": 4096, "width": 2048, "height": 2048},
        "distance evaluations",
    ),
    ("tpl_lsystem", {"axiom": Message.integer(1)}, None, "in-port 'axiom'"),
    ("tpl_lsystem", {"axiom": Message.string("F")}, {"iterations": 30}, "config 'iterations'"),
    ("tpl_lsystem", {"axiom": Message.string("F")}, {"rules": 5}, "config 'rules'"),
    ("tpl_particle_emitter", {"count": Message.integer(-1)}, None, "in-port 'count'"),
    ("tpl_particle_emitter", {"count": Message.string("3")}, None, "in-port 'count'"),
    ("tpl_particle_emitter", {"trigger": Message.flow()}, {"shape": "torus"}, "config 'shape'"),
    ("tpl_particle_emitter", {"trigger": Message.flow()}, {"count": 1 << 30}, "config 'count'"),
    ("tpl_image_to_heightmap", {"input": Message.string("x")}, None, "in-port 'input'"),
    ("tpl_image_to_heightmap", {"input": Message.bytes(b"\0\0")}, None, "in-port 'input'"),
    (
        "tpl_image_to_heightmap",
        {"input": Message.bytes(b"\0" * 16)},
        {"channels": 1},
        "config 'channels'",
    ),
    (
        "tpl_heightmap_to_image",
        {"input": Message.bytes(np.array([np.nan], "<f8").tobytes())},
        None,
        "NaN",
    ),
    ("tpl_heightmap_to_image", {"input": Message.bytes(b"")}, None, "in-port 'input'"),
    (
        "tpl_heightmap_to_image",
        {"input": Message.bytes(b"\0" * 8)},
        {"colorMode": "x"},
        "config 'colorMode'",
    ),
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
    assert len(r.failures) == 1, r.failures
    assert "ActorError" in r.failures[0].error and fragment in r.failures[0].error
    if "error" in r.outputs:
        assert fragment in r.outputs["error"][0]["data"]
