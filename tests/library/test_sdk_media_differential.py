"""Differential tests: the SDK's media and vector-math templates against offbit_reflow itself.

Runs only where ``REFLOW_SDK_PYTHON`` names a python that can ``import offbit_reflow`` (a side
virtualenv; the SDK is no dependency of this project). Each case runs one small graph there in
a subprocess with a time limit (the SDK hangs for good on larger inputs) and the same template
here, and compares what reached the same out-ports. Where the SDK is evidently wrong the case
is not here but in the README's "Differences from offbit_reflow" table.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import os
import subprocess
import textwrap
from typing import Any

import numpy as np
import pytest

from reflow import Message, template_actor
from reflow.testing import run_tick

SDK_PYTHON = os.environ.get("REFLOW_SDK_PYTHON")
pytestmark = pytest.mark.skipif(not SDK_PYTHON, reason="REFLOW_SDK_PYTHON is not set")

RUNNER = textwrap.dedent("""
    import base64, json, sys, time
    from offbit_reflow import Actor, Network, template_actor
    spec = json.loads(sys.stdin.read())
    got = {}
    def sink(key):
        class S(Actor):
            component = "sink_" + key
            inports = ["in"]
            outports = []
            def run(self, ctx):
                got.setdefault(key, []).append(ctx.inputs["in"])
                ctx.done()
        return S()
    net = Network()
    for tpl in {t for t, _ in spec["nodes"].values()}:
        net.register_actor(tpl, template_actor(tpl))
    for nid, (tpl, cfg) in spec["nodes"].items():
        net.add_node(nid, tpl, cfg or {})
    for a, ap, b, bp in spec.get("edges", []):
        net.add_connection(a, ap, b, bp)
    for i, (n, p) in enumerate(spec["sinks"]):
        key = n + "." + p
        net.register_actor("sink_" + key, sink(key))
        net.add_node("sink%d" % i, "sink_" + key)
        net.add_connection(n, p, "sink%d" % i, "in")
    for n, p, m in spec["initials"]:
        if m["type"] == "Bytes":
            m = {"type": "Bytes", "data": list(base64.b64decode(m["data"]))}
        net.add_initial(n, p, m)
    net.start()
    deadline = time.time() + 5.0
    while time.time() < deadline and len(got) < spec["expect"]:
        time.sleep(0.02)
    time.sleep(0.05)
    net.shutdown()
    def enc(m):
        if isinstance(m, dict) and m.get("type") == "Bytes":
            return {"type": "Bytes", "data": base64.b64encode(bytes(m["data"])).decode()}
        return m
    print(json.dumps({k: [enc(m) for m in v] for k, v in got.items()}, default=repr))
""")


def sdk(
    nodes: dict[str, Any],
    initials: list[Any],
    sinks: list[tuple[str, str]],
    edges: list[Any] | None = None,
) -> dict[str, list[Any]]:
    """What reached each ``node.port`` of ``sinks`` in a graph run by the SDK."""

    def wire(m: Any) -> Any:
        if m["type"] == "Bytes":
            return {"type": "Bytes", "data": base64.b64encode(bytes(m["data"])).decode()}
        return dict(m)

    spec = {
        "nodes": nodes,
        "edges": edges or [],
        "sinks": sinks,
        "expect": len(sinks),
        "initials": [[n, p, wire(m)] for n, p, m in initials],
    }
    assert SDK_PYTHON
    done = subprocess.run(
        [SDK_PYTHON, "-c", RUNNER],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    for msgs in out.values():
        for m in msgs:
            if m.get("type") == "Bytes":
                m["data"] = base64.b64decode(m["data"])
    return out


def same(ours: Any, theirs: Any, tol: float = 1e-9) -> None:
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and set(ours) == set(theirs), (ours, theirs)
        for k in theirs:
            same(ours[k], theirs[k], tol)
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), (ours, theirs)
        for a, b in zip(ours, theirs, strict=True):
            same(a, b, tol)
    elif isinstance(theirs, (int, float)) and not isinstance(theirs, bool):
        assert ours == pytest.approx(theirs, abs=tol, rel=tol), (ours, theirs)
    else:
        assert ours == theirs


def vec(x: float, y: float, z: float) -> dict[str, Any]:
    return {"type": "Object", "data": {"x": x, "y": y, "z": z}}


def quat(x: float, y: float, z: float, w: float) -> dict[str, Any]:
    return {"type": "Object", "data": {"x": x, "y": y, "z": z, "w": w}}


M = [float(v) for v in np.arange(1, 17) / 7.0]
VECTOR_CASES: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = [
    ("tpl_vec3_add", {"a": vec(1, 2, 3), "b": vec(0.5, -1, 4)}, None),
    ("tpl_vec3_subtract", {"a": vec(1, 2, 3), "b": {"type": "Float", "data": 0.5}}, None),
    ("tpl_vec3_scale", {"vector": vec(1, 2, 3), "scalar": {"type": "Integer", "data": 3}}, None),
    ("tpl_vec3_dot", {"a": vec(1, 2, 3), "b": vec(4, 5, 6)}, None),
    ("tpl_vec3_cross", {"a": vec(1, 2, 3), "b": vec(4, 5, 6)}, None),
    ("tpl_vec3_length", {"input": vec(3, 4, 12)}, None),
    ("tpl_vec3_distance", {"a": vec(1, 2, 3), "b": vec(4, 6, 3)}, None),
    (
        "tpl_vec3_lerp",
        {"a": vec(0, 0, 0), "b": vec(2, 4, 6), "t": {"type": "Float", "data": 0.25}},
        None,
    ),
    ("tpl_vec3_reflect", {"incident": vec(1, -1, 0), "normal": vec(0, 1, 0)}, None),
    ("tpl_vec3_normalize", {"input": vec(3, 0, 4)}, None),
    ("tpl_vec3", {"x": {"type": "Float", "data": 1.5}}, {"y": 2, "z": -3}),
    ("tpl_mat4_translate", {"x": {"type": "Float", "data": 2.0}}, {"y": 3}),
    ("tpl_mat4_scale", {"y": {"type": "Integer", "data": 2}}, {"z": 4}),
    ("tpl_mat4_rotate_x", {"angle": {"type": "Float", "data": 30.0}}, None),
    ("tpl_mat4_rotate_y", {"angle": {"type": "Float", "data": -45.0}}, None),
    ("tpl_mat4_rotate_z", {"angle": {"type": "Integer", "data": 120}}, None),
    ("tpl_mat4_perspective", {"fov": {"type": "Float", "data": 60.0}}, {"aspect": 1.5}),
    (
        "tpl_mat4_multiply",
        {"a": {"type": "Array", "data": M}, "b": {"type": "Array", "data": M[::-1]}},
        None,
    ),
    ("tpl_mat4_transform", {"matrix": {"type": "Array", "data": M}, "vector": vec(1, 2, 3)}, None),
    ("tpl_mat4_look_at", {"eye": vec(1, 2, 5), "target": vec(0, 0, 0), "up": vec(0, 1, 0)}, None),
    ("tpl_quat_from_euler", {"x": {"type": "Float", "data": 30.0}}, {"y": -20, "z": 75}),
    ("tpl_quat_multiply", {"a": quat(0.1, 0.2, 0.3, 0.9), "b": quat(-0.3, 0.1, 0.2, 0.8)}, None),
    (
        "tpl_quat_slerp",
        {
            "a": quat(0, 0, 0, 1),
            "b": quat(0, 0.7071067811865476, 0, 0.7071067811865476),
            "t": {"type": "Float", "data": 0.3},
        },
        None,
    ),
    (
        "tpl_quat_rotate_vec3",
        {"quaternion": quat(0, 0, 0.7071067811865476, 0.7071067811865476), "vector": vec(1, 0, 0)},
        None,
    ),
]


def _arrays_as_objects(out: dict[str, list[Any]]) -> dict[str, list[Any]]:
    # matrices: the SDK writes an Object wrapping the 16 numbers, here an Array (README)
    return {
        k: [{"type": "Object", "data": m["data"]} if m["type"] == "Array" else m for m in v]
        for k, v in out.items()
    }


@pytest.mark.parametrize(("tid", "inputs", "config"), VECTOR_CASES, ids=lambda v: str(v)[:40])
def test_vector_math_matches_sdk(
    tid: str, inputs: dict[str, Any], config: dict[str, Any] | None
) -> None:
    actor = template_actor(tid)
    # matrices: sent to the SDK as it reads them, an Object wrapping the 16 numbers
    theirs = sdk(
        {"n": [tid, config]},
        [
            ["n", p, {"type": "Object", "data": m["data"]} if m["type"] == "Array" else m]
            for p, m in inputs.items()
        ],
        [("n", p) for p in actor.outports],
    )
    r = run_tick(actor, {p: Message.from_json(m) for p, m in inputs.items()}, config)
    r.raise_for_failures()
    ours = _arrays_as_objects({f"n.{p}": [dict(m) for m in v] for p, v in r.outputs.items()})
    same(ours, theirs, 1e-9)


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(buf, "PNG")
    return buf.getvalue()


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))


RGBA = np.random.default_rng(3).integers(0, 256, size=(6, 5, 4), dtype=np.uint8)
RGBA[:, :, 3] = 255


def _ours_chain(ops: list[tuple[str, dict[str, Any] | None]], png: bytes) -> dict[str, Any]:
    """decode -> ops -> encode here, with the same node names as the SDK graph."""
    from reflow import Network

    net = Network()
    nodes = [
        ("dec", "tpl_image_decode", None),
        *[(f"op{i}", t, c) for i, (t, c) in enumerate(ops)],
        ("enc", "tpl_image_encode", None),
    ]
    for nid, tid, cfg in nodes:
        net.register_actor(tid, template_actor(tid))
        net.add_node(nid, tid, cfg)
    for (a, *_), (b, *_) in itertools.pairwise(nodes):
        net.add_connection(a, "stream", b, "stream")
    out = net.collect("enc", "output")
    meta = net.collect("enc", "metadata")
    net.add_initial("dec", "input", Message.bytes(png))
    summary = net.run(timeout=30)
    net.shutdown()
    assert not summary.failures, summary.failures
    return {
        "enc.output": [dict(m) for m in out.messages],
        "enc.metadata": [dict(m) for m in meta.messages],
    }


@pytest.mark.parametrize(
    "ops",
    [
        [],
        [("tpl_brightness_contrast", {"brightness": 1.3})],
        [("tpl_image_resize", {"width": 9, "height": 4})],
        [("tpl_chroma_key", {"tolerance": 0.0})],
    ],
    ids=lambda ops: "+".join(t for t, _ in ops) or "roundtrip",
)
def test_image_chain_matches_sdk(ops: list[tuple[str, dict[str, Any] | None]]) -> None:
    png = _png(RGBA)
    nodes: dict[str, Any] = {"dec": ["tpl_image_decode", None], "enc": ["tpl_image_encode", None]}
    chain = ["dec"]
    for i, (tid, cfg) in enumerate(ops):
        nodes[f"op{i}"] = [tid, cfg]
        chain.append(f"op{i}")
    chain.append("enc")
    edges = [[a, "stream", b, "stream"] for a, b in itertools.pairwise(chain)]
    theirs = sdk(
        nodes,
        [["dec", "input", {"type": "Bytes", "data": png}]],
        [("enc", "output"), ("enc", "metadata")],
        edges,
    )
    ours = _ours_chain(ops, png)
    a, b = _pixels(ours["enc.output"][0]["data"]), _pixels(theirs["enc.output"][0]["data"])
    assert a.shape == b.shape
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    mo, mt = ours["enc.metadata"][0]["data"], theirs["enc.metadata"][0]["data"]
    for key in ("format", "mimeType", "width", "height", "rawSize"):
        assert mo[key] == mt[key], key


def _pcm(n: int = 3000, seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 8000
    x = 0.6 * np.sin(2 * np.pi * 300 * t) * (t < 0.15) + 0.02 * rng.normal(size=n)
    return x.astype("<f4")


def _sdk_pcm(
    tid: str, config: dict[str, Any] | None, x: np.ndarray, port: str = "stream", chunk: int = 65536
) -> np.ndarray:
    out = sdk(
        {
            "b": ["tpl_bytes_to_stream", {"chunkSize": chunk}],
            "n": [tid, config],
            "s": ["tpl_stream_to_bytes", {}],
        },
        [["b", "input", {"type": "Bytes", "data": x.tobytes()}]],
        [("s", "output")],
        [["b", "stream", "n", "stream"], ["n", port, "s", "stream"]],
    )
    return np.frombuffer(out["s.output"][0]["data"], "<f4")


def _ours_pcm(
    tid: str, config: dict[str, Any] | None, x: np.ndarray, port: str = "stream"
) -> np.ndarray:
    from sdk_media_streams import pcm_stream, samples_of

    r = run_tick(template_actor(tid), {"stream": pcm_stream(x)}, config)
    r.raise_for_failures()
    return samples_of(r.outputs[port][0])


@pytest.mark.parametrize(
    ("tid", "config"),
    [
        ("tpl_audio_gain", {"gainDb": -4.5}),
        ("tpl_audio_gain", {"gainLinear": 1.7}),
        ("tpl_audio_normalize", {"targetDb": -3.0}),
        ("tpl_envelope_follower", {"sampleRate": 8000.0}),
        ("tpl_envelope_follower", {"mode": "rms", "attackMs": 2.0, "releaseMs": 30.0}),
        ("tpl_compressor", {"sampleRate": 8000.0, "thresholdDb": -12.0, "kneeDb": 3.0}),
        ("tpl_compressor", {"ratio": 2.0, "kneeDb": 0.0, "makeupDb": 3.0}),
        ("tpl_limiter", {"ceilingDb": -9.0, "sampleRate": 8000.0}),
        ("tpl_noise_gate", {"thresholdDb": -20.0, "sampleRate": 8000.0}),
        ("tpl_time_stretch", {"ratio": 1.0}),
        ("tpl_audio_spectrum", {"fftSize": 256, "hopSize": 128, "sampleRate": 8000.0}),
    ],
    ids=lambda v: str(v),
)
def test_audio_matches_sdk(tid: str, config: dict[str, Any]) -> None:
    x = _pcm()
    theirs = _sdk_pcm(tid, config, x)
    ours = _ours_pcm(tid, config, x)
    assert ours.shape == theirs.shape
    scale = max(1.0, float(np.max(np.abs(theirs))))
    np.testing.assert_allclose(ours, theirs, atol=2e-5 * scale, rtol=1e-4)


def test_ifft_matches_sdk() -> None:
    frames = np.abs(np.random.default_rng(9).normal(size=(4, 129))).astype("<f4")
    config = {"fftSize": 256, "hopSize": 64}
    np.testing.assert_allclose(
        _ours_pcm("tpl_ifft", config, frames.flatten()),
        _sdk_pcm("tpl_ifft", config, frames.flatten(), chunk=129 * 4),
        atol=1e-5,
    )


def _bytes_close(a: bytes, b: bytes, tol: int = 1) -> None:
    assert len(a) == len(b)
    diff = np.abs(np.frombuffer(a, np.uint8).astype(int) - np.frombuffer(b, np.uint8))
    assert int(diff.max(initial=0)) <= tol


GRAD = {"width": 7, "height": 5}
SQUARE = np.random.default_rng(11).integers(0, 256, (6, 6, 4), dtype=np.uint8)
CANVAS_CASES: list[tuple[str, list[dict[str, Any]], dict[str, Any] | None]] = [
    (
        "tpl_shape_2d",
        [{"params": {"type": "Object", "data": {"shape": s, "cx": 1.5, "cy": -2}}}],
        None,
    )
    for s in ("rect", "ellipse", "circle", "polygon", "star", "line")
] + [
    (
        "tpl_shape_2d",
        [{"params": {"type": "Object", "data": {"shape": "rect", "cornerRadius": 10}}}],
        None,
    ),
    (
        "tpl_shape_2d",
        [{"params": {"type": "Object", "data": {"shape": "path", "d": "M1,2 L3,4 L5,1 Z"}}}],
        None,
    ),
    ("tpl_background", [{"tick": {"type": "Flow", "data": None}}], {**GRAD, "color": [1, 2, 3, 4]}),
    (
        "tpl_background",
        [{"tick": {"type": "Flow", "data": None}}],
        {**GRAD, "type": "linearGradient", "angle": 30},
    ),
    (
        "tpl_background",
        [{"tick": {"type": "Flow", "data": None}}],
        {**GRAD, "type": "radialGradient", "center": [0.3, 0.6]},
    ),
    (
        "tpl_gaussian_blur",
        [{"image": {"type": "Bytes", "data": SQUARE.tobytes()}}],
        {"width": 6, "radius": 2},
    ),
]


@pytest.mark.parametrize(
    ("tid", "ticks", "config"),
    CANVAS_CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CANVAS_CASES)],
)
def test_vector_2d_matches_sdk(
    tid: str, ticks: list[dict[str, Any]], config: dict[str, Any] | None
) -> None:
    from reflow.testing import run_ticks

    actor = template_actor(tid)
    theirs = sdk(
        {"n": [tid, config]},
        [["n", p, m] for t in ticks for p, m in t.items()],
        [("n", p) for p in actor.outports],
    )
    r = run_ticks(
        actor,
        [
            {
                p: Message.from_json(m) if m["type"] != "Bytes" else Message.bytes(m["data"])
                for p, m in t.items()
            }
            for t in ticks
        ],
        config,
    )
    r.raise_for_failures()
    for key, msgs in theirs.items():
        port = key.split(".", 1)[1]
        ours = r.outputs[port][-1]
        if msgs[-1]["type"] == "Bytes":
            _bytes_close(ours["data"], msgs[-1]["data"])
        elif port == "metadata" and "length" in msgs[-1]["data"]:
            meta, want = dict(ours["data"]), dict(msgs[-1]["data"])
            # the SDK measures length on a coarse polyline: within 1% here
            assert meta.pop("length") == pytest.approx(want.pop("length"), rel=1e-2)
            same(meta, want, 1e-9)
        else:
            same(dict(ours), msgs[-1], 1e-9)


HEIGHTS = np.random.default_rng(13).random(36)
PROCEDURAL_CASES: list[tuple[str, list[dict[str, Any]], dict[str, Any] | None]] = [
    (
        "tpl_noise_generator",
        [{"seed": {"type": "Float", "data": 1.5}}],
        {"noiseType": kind, "width": 8, "height": 6, "octaves": 3},
    )
    for kind in ("perlin", "simplex", "worley", "value", "ridged")
] + [
    (
        "tpl_noise_generator",
        [{"offsetX": {"type": "Integer", "data": -3}}],
        {"width": 5, "height": 5, "scale": 9.5, "lacunarity": 2.5, "persistence": 0.7},
    ),
    (
        "tpl_voronoi",
        [{"seed": {"type": "Float", "data": 0.25}}],
        {"width": 9, "height": 7, "cellCount": 5},
    ),
    (
        "tpl_lsystem",
        [{"axiom": {"type": "String", "data": "F-G"}}],
        {"iterations": 2, "rules": "F=F[+F]F; G=GG", "angle": 30},
    ),
    ("tpl_particle_emitter", [{"count": {"type": "Integer", "data": 7}}], {"seed": 2.5}),
    ("tpl_particle_emitter", [{"count": {"type": "Integer", "data": 5}}], {"shape": "cube"}),
    ("tpl_particle_emitter", [{"count": {"type": "Float", "data": 5.0}}], {"shape": "disc"}),
    ("tpl_heightmap_to_image", [{"input": {"type": "Bytes", "data": HEIGHTS.tobytes()}}], None),
    (
        "tpl_heightmap_to_image",
        [{"input": {"type": "Bytes", "data": HEIGHTS.tobytes()}}],
        {"colorMode": "terrain", "width": 4},
    ),
    ("tpl_image_to_heightmap", [{"input": {"type": "Bytes", "data": SQUARE.tobytes()}}], None),
    ("tpl_image_to_heightmap", [{"input": {"type": "Bytes", "data": _png(SQUARE)}}], None),
]


def _float_bytes_close(a: bytes, b: bytes, dtype: str) -> None:
    x, y = np.frombuffer(a, dtype), np.frombuffer(b, dtype)
    assert x.shape == y.shape
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize(
    ("tid", "ticks", "config"),
    PROCEDURAL_CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(PROCEDURAL_CASES)],
)
def test_procedural_matches_sdk(
    tid: str, ticks: list[dict[str, Any]], config: dict[str, Any] | None
) -> None:
    from reflow.testing import run_ticks

    actor = template_actor(tid)
    theirs = sdk(
        {"n": [tid, config]},
        [["n", p, m] for t in ticks for p, m in t.items()],
        [("n", p) for p in actor.outports if p != "error"],
    )
    r = run_ticks(
        actor,
        [
            {
                p: Message.from_json(m) if m["type"] != "Bytes" else Message.bytes(m["data"])
                for p, m in t.items()
            }
            for t in ticks
        ],
        config,
    )
    r.raise_for_failures()
    dtypes = {"particles": "<f4", "cell_id": "<u4", "points": "<f8", "distance": "<f8"}
    for key, msgs in theirs.items():
        port = key.split(".", 1)[1]
        ours, want = r.outputs[port][-1], msgs[-1]
        if want["type"] == "Bytes":
            if tid == "tpl_heightmap_to_image":
                _bytes_close(ours["data"], want["data"])
            else:
                _float_bytes_close(ours["data"], want["data"], dtypes.get(port, "<f8"))
        else:
            same(dict(ours), want, 1e-6)


def test_camera_test_pattern_matches_sdk() -> None:
    from reflow.library._video import test_pattern

    out = sdk(
        {
            "c": ["tpl_camera_capture", {"width": 40, "height": 35, "frameCount": 2, "fps": 100}],
            "s": ["tpl_stream_to_bytes", {}],
        },
        [["c", "start", {"type": "Flow", "data": None}]],
        [("s", "output")],
        [["c", "stream", "s", "stream"]],
    )
    theirs = out["s.output"][0]["data"]
    assert theirs == test_pattern(40, 35, 0) + test_pattern(40, 35, 1)
