"""reflow.library._vector: the SDK's vec3 / mat4 / quaternion templates, against numpy and
scipy computed independently, through real ticks."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from reflow import Message, template_actor
from reflow.testing import run_tick


def vec(x: float, y: float, z: float) -> Message:
    return Message.object({"x": x, "y": y, "z": z})


def quat(q: Any) -> Message:
    x, y, z, w = (float(c) for c in q)
    return Message.object({"x": x, "y": y, "z": z, "w": w})


def mat(m: np.ndarray) -> Message:
    return Message.array([float(v) for v in m.flatten(order="F")])


def out(
    tid: str, inputs: dict[str, Any], config: dict[str, Any] | None = None, port: str = "result"
) -> Any:
    r = run_tick(template_actor(tid), inputs, config)
    r.raise_for_failures()
    (msg,) = r.outputs[port]
    return msg


def as_np(msg: Any) -> np.ndarray:
    d = msg["data"]
    if isinstance(d, dict):
        return np.array([d[k] for k in ("x", "y", "z", "w") if k in d])
    return np.array(d, dtype=float).reshape(4, 4, order="F") if len(d) == 16 else np.array(d)


A, B = np.array([1.0, -2.0, 3.5]), np.array([0.5, 4.0, -1.0])

VEC_CASES = [
    ("tpl_vec3_add", {"a": vec(*A), "b": vec(*B)}, A + B),
    ("tpl_vec3_subtract", {"a": vec(*A), "b": vec(*B)}, A - B),
    ("tpl_vec3_cross", {"a": vec(*A), "b": vec(*B)}, np.cross(A, B)),
    ("tpl_vec3_scale", {"vector": vec(*A), "scalar": Message.integer(3)}, A * 3),
    ("tpl_vec3_lerp", {"a": vec(*A), "b": vec(*B), "t": Message.float(0.25)}, A + (B - A) * 0.25),
    (
        "tpl_vec3_reflect",
        {"incident": vec(1, -1, 0), "normal": vec(0, 1, 0)},
        np.array([1.0, 1.0, 0.0]),
    ),
    (
        "tpl_vec3_add",
        {"a": Message.float(2.0), "b": Message.array([1, 2, 3])},
        np.array([3.0, 4.0, 5.0]),
    ),
    ("tpl_vec3_add", {"a": Message.object({"x": 1}), "b": vec(0, 0, 0)}, np.array([1.0, 0.0, 0.0])),
    ("tpl_vec3", {"x": Message.integer(7)}, np.array([7.0, 0.0, 0.0])),
    (
        "tpl_quat_rotate_vec3",
        {"quaternion": quat(Rotation.from_euler("z", 90, True).as_quat()), "vector": vec(1, 0, 0)},
        np.array([0.0, 1.0, 0.0]),
    ),
]


@pytest.mark.parametrize(("tid", "inputs", "expected"), VEC_CASES)
def test_vec3_results(tid: str, inputs: dict[str, Any], expected: np.ndarray) -> None:
    np.testing.assert_allclose(as_np(out(tid, inputs)), expected, atol=1e-12)


def test_scalars_and_normalize() -> None:
    assert out("tpl_vec3_dot", {"a": vec(*A), "b": vec(*B)})["data"] == pytest.approx(A @ B)
    assert out("tpl_vec3_length", {"input": vec(*A)})["data"] == pytest.approx(np.linalg.norm(A))
    assert out("tpl_vec3_distance", {"a": vec(*A), "b": vec(*B)})["data"] == pytest.approx(
        np.linalg.norm(A - B)
    )
    r = run_tick(template_actor("tpl_vec3_normalize"), {"input": vec(*A)})
    np.testing.assert_allclose(as_np(r.outputs["result"][0]), A / np.linalg.norm(A))
    assert r.outputs["length"][0]["data"] == pytest.approx(np.linalg.norm(A))
    r = run_tick(template_actor("tpl_vec3_normalize"), {"input": vec(0, 0, 0)})
    assert as_np(r.outputs["result"][0]).tolist() == [0, 0, 0]
    assert out("tpl_vec3", {"z": Message.float(3.0)}, {"x": 1, "y": 2})["data"] == {
        "x": 1,
        "y": 2,
        "z": 3,
    }


def _rot(axis: str, deg: float) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler(axis, deg, degrees=True).as_matrix()
    return m


MAT_CASES = [
    ("tpl_mat4_identity", {"trigger": Message.flow()}, None, np.eye(4)),
    (
        "tpl_mat4_translate",
        {"x": Message.float(2.0)},
        {"y": 3},
        np.array([[1, 0, 0, 2], [0, 1, 0, 3], [0, 0, 1, 0], [0, 0, 0, 1.0]]),
    ),
    ("tpl_mat4_scale", {"z": Message.integer(4)}, {"x": 2}, np.diag([2.0, 1.0, 4.0, 1.0])),
    ("tpl_mat4_rotate_x", {"angle": Message.float(30.0)}, None, _rot("x", 30)),
    ("tpl_mat4_rotate_y", {"angle": Message.float(-45.0)}, {"angle": 10}, _rot("y", -45)),
    ("tpl_mat4_rotate_z", {"angle": Message.integer(120)}, None, _rot("z", 120)),
]


@pytest.mark.parametrize(("tid", "inputs", "config", "expected"), MAT_CASES)
def test_matrices(tid: str, inputs: dict[str, Any], config: Any, expected: np.ndarray) -> None:
    np.testing.assert_allclose(as_np(out(tid, inputs, config)), expected, atol=1e-12)


def test_multiply_transform_look_at_perspective() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    np.testing.assert_allclose(
        as_np(out("tpl_mat4_multiply", {"a": mat(a), "b": mat(b)})), a @ b, atol=1e-12
    )
    p = a @ np.array([1.0, 2.0, 3.0, 1.0])
    np.testing.assert_allclose(
        as_np(out("tpl_mat4_transform", {"matrix": mat(a), "vector": vec(1, 2, 3)})),
        p[:3] / p[3],
        atol=1e-9,
    )
    eye, target = np.array([1.0, 2.0, 5.0]), np.array([0.0, 0.0, 0.0])
    view = as_np(
        out("tpl_mat4_look_at", {"eye": vec(*eye), "target": vec(*target), "up": vec(0, 1, 0)})
    )
    # the camera sits at the origin of view space and looks down -Z at the target
    np.testing.assert_allclose(view @ np.append(eye, 1), [0, 0, 0, 1], atol=1e-12)
    t = view @ np.append(target, 1)
    assert t[0] == pytest.approx(0) and t[1] == pytest.approx(0)
    assert t[2] == pytest.approx(-np.linalg.norm(eye))
    np.testing.assert_allclose(view[:3, :3] @ view[:3, :3].T, np.eye(3), atol=1e-12)
    proj = as_np(
        out(
            "tpl_mat4_perspective",
            {"near": Message.float(1.0)},
            {"fov": 90, "aspect": 2.0, "far": 10.0},
        )
    )
    for z, ndc in ((-1.0, -1.0), (-10.0, 1.0)):  # near maps to -1, far to +1
        clip = proj @ np.array([0.0, 0.0, z, 1.0])
        assert clip[2] / clip[3] == pytest.approx(ndc)
    assert proj[0, 0] == pytest.approx(0.5) and proj[1, 1] == pytest.approx(1.0)


def test_quaternions() -> None:
    e = (30.0, -20.0, 75.0)
    q = as_np(out("tpl_quat_from_euler", {"x": Message.float(e[0])}, {"y": e[1], "z": e[2]}))
    expected = Rotation.from_euler("xyz", e, degrees=True).as_quat()  # extrinsic X, Y, Z
    assert abs(q @ expected) == pytest.approx(1.0)
    r1, r2 = Rotation.from_euler("x", 40, True), Rotation.from_euler("y", 70, True)
    m = as_np(out("tpl_quat_multiply", {"a": quat(r1.as_quat()), "b": quat(r2.as_quat())}))
    assert abs(m @ (r1 * r2).as_quat()) == pytest.approx(1.0)
    s = as_np(
        out(
            "tpl_quat_slerp",
            {"a": quat(r1.as_quat()), "b": quat(r2.as_quat()), "t": Message.float(0.3)},
        )
    )
    from scipy.spatial.transform import Slerp

    ref = Slerp([0, 1], Rotation.concatenate([r1, r2]))([0.3]).as_quat()[0]
    assert abs(s @ ref) == pytest.approx(1.0)
    near = as_np(out("tpl_quat_slerp", {"a": quat([0, 0, 0, 1]), "b": quat([0, 0, 1e-3, 1])}))
    assert np.linalg.norm(near) == pytest.approx(1.0)


BAD = [
    ("tpl_vec3_add", {"a": Message.string("x"), "b": vec(1, 2, 3)}, "in-port 'a'"),
    ("tpl_vec3_add", {"a": vec(1, 2, 3), "b": Message.object({"y": "2"})}, "in-port 'b' field 'y'"),
    ("tpl_vec3_add", {"a": Message.array([1, 2]), "b": vec(1, 2, 3)}, "in-port 'a'"),
    ("tpl_vec3_scale", {"vector": vec(1, 2, 3), "scalar": Message.string("2")}, "in-port 'scalar'"),
    (
        "tpl_vec3_lerp",
        {"a": vec(1, 2, 3), "b": vec(1, 2, 3), "t": Message.boolean(True)},
        "in-port 't'",
    ),
    ("tpl_vec3_add", {"a": Message.float(1e308), "b": Message.float(1e308)}, "not finite"),
    (
        "tpl_mat4_multiply",
        {"a": Message.array([1.0] * 15), "b": mat(np.eye(4))},
        "in-port 'a': a 4x4 matrix needs 16",
    ),
    ("tpl_mat4_transform", {"matrix": vec(1, 2, 3), "vector": vec(1, 2, 3)}, "in-port 'matrix'"),
    ("tpl_mat4_translate", {"x": Message.string("1")}, "in-port 'x'"),
    ("tpl_mat4_perspective", {"fov": Message.float(180.0)}, "'fov'"),
    ("tpl_mat4_perspective", {"aspect": Message.integer(0)}, "'aspect'"),
    ("tpl_quat_multiply", {"a": vec(1, 2, 3), "b": Message.integer(1)}, "in-port 'b'"),
    ("tpl_quat_slerp", {"a": quat([0, 0, 0, 0]), "b": quat([0, 0, 0, 1])}, "in-port 'a'"),
    (
        "tpl_quat_rotate_vec3",
        {"quaternion": quat([0, 0, 0, 1]), "vector": Message.object({"x": None})},
        "in-port 'vector'",
    ),
]


@pytest.mark.parametrize(("tid", "inputs", "fragment"), BAD)
def test_bad_input_fails_the_tick_naming_the_port(
    tid: str, inputs: dict[str, Any], fragment: str
) -> None:
    r = run_tick(template_actor(tid), inputs)
    assert not r.outputs.get("result")
    (failure,) = r.failures
    assert "ActorError" in failure.error and fragment in failure.error


@pytest.mark.parametrize(
    ("tid", "trigger", "config", "fragment"),
    [
        ("tpl_vec3", "y", {"x": "1"}, "config 'x'"),
        ("tpl_mat4_rotate_x", "", {"angle": [1]}, "config 'angle'"),
        ("tpl_mat4_perspective", "fov", {"near": 5, "far": 5}, "'near' and 'far'"),
        ("tpl_quat_from_euler", "x", {"z": True}, "config 'z'"),
        ("tpl_mat4_scale", "x", {"y": math.nan}, "config 'y'"),
        ("tpl_mat4_translate", "x", {"y": 10**400}, "bad config or input value"),
    ],
)
def test_bad_config_fails_the_tick_naming_the_key(
    tid: str, trigger: str, config: dict[str, Any], fragment: str
) -> None:
    actor = template_actor(tid)
    port = trigger or actor.inports[0]
    inputs = {port: Message.float(30.0)} if trigger else {port: Message.null()}
    r = run_tick(actor, inputs, config)
    (failure,) = r.failures
    assert fragment in failure.error
