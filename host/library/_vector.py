"""Vector-math templates (the SDK's ``tpl_vec3*``, ``tpl_mat4_*``, ``tpl_quat_*``).

Values travel as JSON-shaped messages: a vec3 is an Object ``{x, y, z}`` (an Integer or
Float is splatted to ``x = y = z``; an Array ``[x, y, z]`` is read too), a quaternion an Object
``{x, y, z, w}``, and a 4x4 matrix an Array of 16 numbers in column-major order (an Object
wrapping that array, as the SDK writes it, is read too). A missing field counts as 0, as in
the SDK; a field that is not a number, or a packet of another kind, fails the tick naming the
in-port. Angles are in degrees.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import ActorError
from ._base import LibraryActor, config_number
from ._sdk import SyncSdkTemplate

__all__ = ["VECTOR_TEMPLATES"]

Vec = list[float]
_IDENTITY: Vec = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]


def _finite(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ActorError(f"{where} must be a number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise ActorError(f"{where} must be a finite number, got {value!r}")
    return out


def _unwrap(msg: Any) -> tuple[str, Any]:
    kind, data = msg["type"], msg.get("data")
    if kind in ("Any", "Optional") and isinstance(data, dict) and "type" in data:
        return data["type"], data.get("data")
    return kind, data


def _components(ctx: ActorContext, port: str, names: str) -> Vec:
    kind, data = _unwrap(ctx.inputs[port])
    n = len(names)
    if kind in ("Integer", "Float") and n == 3:
        v = _finite(data, f"in-port {port!r}")
        return [v, v, v]
    if kind == "Object" and isinstance(data, dict):
        return [_finite(data.get(k, 0.0), f"in-port {port!r} field {k!r}") for k in names]
    if kind == "Array" and isinstance(data, list) and len(data) == n:
        return [_finite(x, f"in-port {port!r} item {i}") for i, x in enumerate(data)]
    what = "an Object {x, y, z} (or a number)" if n == 3 else "an Object {x, y, z, w}"
    raise ActorError(
        f"in-port {port!r}: expected {what}, got {kind}"
        f"{'' if kind != 'Array' else f' of {len(data)} items'}"
    )


def _vec3(ctx: ActorContext, port: str) -> Vec:
    return _components(ctx, port, "xyz")


def _quat(ctx: ActorContext, port: str) -> Vec:
    return _components(ctx, port, "xyzw")


def _mat4(ctx: ActorContext, port: str) -> Vec:
    kind, data = _unwrap(ctx.inputs[port])
    if kind in ("Array", "Object") and isinstance(data, list):
        if len(data) != 16:
            raise ActorError(f"in-port {port!r}: a 4x4 matrix needs 16 numbers, got {len(data)}")
        return [_finite(x, f"in-port {port!r} item {i}") for i, x in enumerate(data)]
    raise ActorError(
        f"in-port {port!r}: expected a 4x4 matrix (an Array of 16 numbers, "
        f"column-major), got {kind}"
    )


def _scalar(ctx: ActorContext, port: str, default: float) -> float:
    """An optional number in-port of an await-all template (the SDK's ``t``/``scalar``)."""
    msg = ctx.inputs.get(port)
    if msg is None:
        return default
    kind, data = _unwrap(msg)
    if kind not in ("Integer", "Float"):
        raise ActorError(f"in-port {port!r}: expected a number (Integer or Float), got {kind}")
    return _finite(data, f"in-port {port!r}")


def _number_or_config(ctx: ActorContext, key: str, default: float) -> float:
    """In-port ``key`` when a number is there, else config ``key``, else ``default`` (a Flow
    or Null packet only triggers the tick, as on the SDK's config-driven templates)."""
    msg = ctx.inputs.get(key)
    if msg is not None and msg["type"] not in ("Flow", "Null"):
        return _scalar(ctx, key, default)
    return float(config_number(ctx, key, default))


def _checked(values: Vec) -> Vec:
    for v in values:
        if not math.isfinite(v):
            raise ActorError(f"result is not finite ({values})")
    return values


def _vec3_msg(v: Vec) -> Message:
    x, y, z = _checked(v)
    return Message.object({"x": x, "y": y, "z": z})


def _quat_msg(q: Vec) -> Message:
    x, y, z, w = _checked(q)
    return Message.object({"x": x, "y": y, "z": z, "w": w})


def _mat4_msg(m: Vec) -> Message:
    return Message.array([float(v) for v in _checked(m)])


def _float_msg(v: float) -> Message:
    return Message.float(_checked([v])[0])


def _dot(a: Vec, b: Vec) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def _cross(a: Vec, b: Vec) -> Vec:
    return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]


def _unit(v: Vec, fallback: Vec) -> Vec:
    n = math.sqrt(_dot(v, v))
    return [x / n for x in v] if n > 1e-10 else list(fallback)


def _mat_mul(a: Vec, b: Vec) -> Vec:
    return [
        sum(a[k * 4 + row] * b[col * 4 + k] for k in range(4))
        for col in range(4)
        for row in range(4)
    ]


class _Vector(SyncSdkTemplate):
    outports = ["result"]
    outport_types = {"result": "Object"}

    def compute(self, ctx: ActorContext) -> Message:
        raise NotImplementedError

    def tick(self, ctx: ActorContext) -> None:
        ctx.done({"result": self.compute(ctx)})


Compute = Callable[[ActorContext], Message]


def _template(
    component: str,
    inports: list[str],
    doc: str,
    *,
    await_all: bool = True,
    result: str = "Object",
    config: dict[str, float] | None = None,
) -> Callable[[Compute], type[_Vector]]:
    """A _Vector subclass whose result is ``fn(ctx)``; the decorated name is the class."""

    def wrap(fn: Compute) -> type[_Vector]:
        attrs = {
            "component": component,
            "inports": inports,
            "await_all_inports": await_all,
            "outport_types": {"result": result},
            "__doc__": doc,
            "config_defaults": dict(config or {}),
            "compute": lambda self, ctx: fn(ctx),
        }
        return type(fn.__name__, (_Vector,), attrs)

    return wrap


_VEC = "vec3 Object ``{x, y, z}``"


@_template(
    "tpl_vec3",
    ["x", "y", "z"],
    f"""Builds a vec3 from numbers.

    Ports: in ``x``, ``y``, ``z`` (Integer or Float; each tick reads the ports that have a
    packet and config for the rest) → out ``result`` ({_VEC}). Config: ``x``, ``y``, ``z``
    (number, default 0).
    """,
    await_all=False,
    config={"x": 0.0, "y": 0.0, "z": 0.0},
)
def Vec3(ctx: ActorContext) -> Message:
    return _vec3_msg([_number_or_config(ctx, k, 0.0) for k in "xyz"])


@_template(
    "tpl_vec3_add",
    ["a", "b"],
    f"""Component-wise ``a + b``.

    Ports: in ``a``, ``b`` ({_VEC}) → out ``result`` ({_VEC}). Config: none.
    """,
)
def Vec3Add(ctx: ActorContext) -> Message:
    return _vec3_msg([x + y for x, y in zip(_vec3(ctx, "a"), _vec3(ctx, "b"), strict=True)])


@_template(
    "tpl_vec3_subtract",
    ["a", "b"],
    f"""Component-wise ``a - b``.

    Ports: in ``a``, ``b`` ({_VEC}) → out ``result`` ({_VEC}). Config: none.
    """,
)
def Vec3Subtract(ctx: ActorContext) -> Message:
    return _vec3_msg([x - y for x, y in zip(_vec3(ctx, "a"), _vec3(ctx, "b"), strict=True)])


@_template(
    "tpl_vec3_scale",
    ["vector", "scalar"],
    f"""``vector * scalar``.

    Ports: in ``vector`` ({_VEC}), ``scalar`` (Integer or Float) → out ``result`` ({_VEC}).
    Config: none.
    """,
)
def Vec3Scale(ctx: ActorContext) -> Message:
    s = _scalar(ctx, "scalar", 1.0)
    return _vec3_msg([x * s for x in _vec3(ctx, "vector")])


@_template(
    "tpl_vec3_dot",
    ["a", "b"],
    f"""Dot product ``a · b``.

    Ports: in ``a``, ``b`` ({_VEC}) → out ``result`` (Float). Config: none.
    """,
    result="Float",
)
def Vec3Dot(ctx: ActorContext) -> Message:
    return _float_msg(_dot(_vec3(ctx, "a"), _vec3(ctx, "b")))


@_template(
    "tpl_vec3_cross",
    ["a", "b"],
    f"""Cross product ``a x b``.

    Ports: in ``a``, ``b`` ({_VEC}) → out ``result`` ({_VEC}). Config: none.
    """,
)
def Vec3Cross(ctx: ActorContext) -> Message:
    return _vec3_msg(_cross(_vec3(ctx, "a"), _vec3(ctx, "b")))


@_template(
    "tpl_vec3_length",
    ["input"],
    f"""Euclidean length.

    Ports: in ``input`` ({_VEC}) → out ``result`` (Float). Config: none.
    """,
    await_all=False,
    result="Float",
)
def Vec3Length(ctx: ActorContext) -> Message:
    v = _vec3(ctx, "input")
    return _float_msg(math.sqrt(_dot(v, v)))


@_template(
    "tpl_vec3_distance",
    ["a", "b"],
    f"""Euclidean distance between ``a`` and ``b``.

    Ports: in ``a``, ``b`` ({_VEC}) → out ``result`` (Float). Config: none.
    """,
    result="Float",
)
def Vec3Distance(ctx: ActorContext) -> Message:
    d = [x - y for x, y in zip(_vec3(ctx, "a"), _vec3(ctx, "b"), strict=True)]
    return _float_msg(math.sqrt(_dot(d, d)))


@_template(
    "tpl_vec3_lerp",
    ["a", "b", "t"],
    f"""Linear interpolation ``a + (b - a) * t``.

    Ports: in ``a``, ``b`` ({_VEC}), ``t`` (number; 0.5 when not connected) → out ``result``
    ({_VEC}). Config: none.
    """,
)
def Vec3Lerp(ctx: ActorContext) -> Message:
    t = _scalar(ctx, "t", 0.5)
    return _vec3_msg(
        [x + (y - x) * t for x, y in zip(_vec3(ctx, "a"), _vec3(ctx, "b"), strict=True)]
    )


@_template(
    "tpl_vec3_reflect",
    ["incident", "normal"],
    f"""Reflects ``incident`` about
    ``normal``: ``i - 2 (i · n) n`` (``normal`` is used as given; pass a unit vector).

    Ports: in ``incident``, ``normal`` ({_VEC}) → out ``result`` ({_VEC}). Config: none.
    """,
)
def Vec3Reflect(ctx: ActorContext) -> Message:
    i, n = _vec3(ctx, "incident"), _vec3(ctx, "normal")
    d = 2.0 * _dot(i, n)
    return _vec3_msg([a - d * b for a, b in zip(i, n, strict=True)])


class Vec3Normalize(_Vector):
    """Unit vector and length.

    Ports: in ``input`` (vec3 Object ``{x, y, z}``) → out ``result`` (the unit vector; the
    zero vector when the length is below 1e-10), ``length`` (Float). Config: none.
    """

    component = "tpl_vec3_normalize"
    inports = ["input"]
    outports = ["result", "length"]
    outport_types = {"result": "Object", "length": "Float"}

    def tick(self, ctx: ActorContext) -> None:
        v = _vec3(ctx, "input")
        n = math.sqrt(_dot(v, v))
        ctx.done({"result": _vec3_msg(_unit(v, [0.0, 0.0, 0.0])), "length": _float_msg(n)})


_MAT = "4x4 matrix (Array of 16 numbers, column-major)"


@_template(
    "tpl_mat4_identity",
    ["trigger"],
    f"""The identity matrix, on any packet.

    Ports: in ``trigger`` (any packet; the SDK declares no in-port) → out ``result``
    ({_MAT}). Config: none.
    """,
    await_all=False,
    result="Array",
)
def Mat4Identity(ctx: ActorContext) -> Message:
    return _mat4_msg(_IDENTITY)


@_template(
    "tpl_mat4_multiply",
    ["a", "b"],
    f"""Matrix product ``a · b``.

    Ports: in ``a``, ``b`` ({_MAT}) → out ``result`` ({_MAT}). Config: none.
    """,
    result="Array",
)
def Mat4Multiply(ctx: ActorContext) -> Message:
    return _mat4_msg(_mat_mul(_mat4(ctx, "a"), _mat4(ctx, "b")))


@_template(
    "tpl_mat4_transform",
    ["matrix", "vector"],
    f"""Transforms a point:
    ``matrix · (x, y, z, 1)`` divided by its w (no divide when |w| < 1e-10).

    Ports: in ``matrix`` ({_MAT}), ``vector`` ({_VEC}) → out ``result`` ({_VEC}).
    Config: none.
    """,
)
def Mat4Transform(ctx: ActorContext) -> Message:
    m, v = _mat4(ctx, "matrix"), _vec3(ctx, "vector")
    p = [*v, 1.0]
    out = [sum(m[col * 4 + row] * p[col] for col in range(4)) for row in range(4)]
    w = out[3] if abs(out[3]) > 1e-10 else 1.0
    return _vec3_msg([c / w for c in out[:3]])


def _xyz_template(
    component: str, default: float, what: str, build: Callable[[float, float, float], Vec]
) -> type[_Vector]:
    doc = f"""{what} matrix from ``x``, ``y``, ``z``.

    Ports: in ``x``, ``y``, ``z`` (Integer or Float; config for those without a packet) →
    out ``result`` ({_MAT}). Config: ``x``, ``y``, ``z`` (number, default {default:g}).
    """

    def compute(ctx: ActorContext) -> Message:
        return _mat4_msg(build(*(_number_or_config(ctx, k, default) for k in "xyz")))

    compute.__name__ = component
    return _template(
        component,
        ["x", "y", "z"],
        doc,
        await_all=False,
        result="Array",
        config=dict.fromkeys("xyz", default),
    )(compute)


Mat4Translate = _xyz_template(
    "tpl_mat4_translate",
    0.0,
    "Translation",
    lambda x, y, z: [1.0, 0, 0, 0, 0, 1.0, 0, 0, 0, 0, 1.0, 0, x, y, z, 1.0],
)
Mat4Scale = _xyz_template(
    "tpl_mat4_scale",
    1.0,
    "Scale",
    lambda x, y, z: [x, 0, 0, 0, 0, y, 0, 0, 0, 0, z, 0, 0, 0, 0, 1.0],
)


def _rotation(axis: str) -> type[_Vector]:
    def build(deg: float) -> Vec:
        s, c = math.sin(math.radians(deg)), math.cos(math.radians(deg))
        if axis == "x":
            return [1.0, 0, 0, 0, 0, c, s, 0, 0, -s, c, 0, 0, 0, 0, 1.0]
        if axis == "y":
            return [c, 0, -s, 0, 0, 1.0, 0, 0, s, 0, c, 0, 0, 0, 0, 1.0]
        return [c, s, 0, 0, -s, c, 0, 0, 0, 0, 1.0, 0, 0, 0, 0, 1.0]

    doc = f"""Rotation matrix about the {axis.upper()} axis (right-handed).

    Ports: in ``angle`` (degrees, Integer or Float) → out ``result`` ({_MAT}).
    Config: ``angle`` (degrees, default 0; used when no packet is on ``angle``).
    """

    def compute(ctx: ActorContext) -> Message:
        return _mat4_msg(build(_number_or_config(ctx, "angle", 0.0)))

    compute.__name__ = f"Mat4Rotate{axis.upper()}"
    return _template(
        f"tpl_mat4_rotate_{axis}",
        ["angle"],
        doc,
        await_all=False,
        result="Array",
        config={"angle": 0.0},
    )(compute)


Mat4RotateX, Mat4RotateY, Mat4RotateZ = (_rotation(a) for a in "xyz")


@_template(
    "tpl_mat4_look_at",
    ["eye", "target", "up"],
    f"""View matrix (right-handed,
    camera looking down -Z) for a camera at ``eye`` looking at ``target``.

    Ports: in ``eye``, ``target``, ``up`` ({_VEC}) → out ``result`` ({_MAT}). When ``eye``
    equals ``target`` the forward axis is -Z; when ``up`` is parallel to it the right axis is
    +X (as the SDK does). Config: none.
    """,
    result="Array",
)
def Mat4LookAt(ctx: ActorContext) -> Message:
    eye, target, up = _vec3(ctx, "eye"), _vec3(ctx, "target"), _vec3(ctx, "up")
    f = _unit([t - e for t, e in zip(target, eye, strict=True)], [0.0, 0.0, -1.0])
    r = _unit(_cross(f, up), [1.0, 0.0, 0.0])
    u = _cross(r, f)
    return _mat4_msg(
        [
            r[0],
            u[0],
            -f[0],
            0.0,
            r[1],
            u[1],
            -f[1],
            0.0,
            r[2],
            u[2],
            -f[2],
            0.0,
            -_dot(r, eye),
            -_dot(u, eye),
            _dot(f, eye),
            1.0,
        ]
    )


class Mat4Perspective(_Vector):
    """Perspective projection matrix (OpenGL clip space, depth -1..1).

    Ports: in ``fov`` (vertical field of view, degrees), ``aspect``, ``near``, ``far``
    (Integer or Float; config for those without a packet) → out ``result`` (4x4 matrix,
    Array of 16 numbers, column-major). Config: ``fov`` (default 45), ``aspect`` (default 1),
    ``near`` (default 0.1), ``far`` (default 100). ``fov`` must be in (0, 180), ``aspect``
    non-zero and ``near`` ≠ ``far``; anything else fails the tick naming the key.
    """

    component = "tpl_mat4_perspective"
    inports = ["fov", "aspect", "near", "far"]
    outport_types = {"result": "Array"}
    config_defaults = {"fov": 45.0, "aspect": 1.0, "near": 0.1, "far": 100.0}

    def compute(self, ctx: ActorContext) -> Message:
        fov, aspect, near, far = (
            _number_or_config(ctx, k, d) for k, d in self.config_defaults.items()
        )
        if not 0 < fov < 180:
            raise ActorError(f"'fov' must be between 0 and 180 degrees, got {fov}")
        if aspect == 0:
            raise ActorError("'aspect' must not be 0")
        if near == far:
            raise ActorError(f"'near' and 'far' must differ, both are {near}")
        f = 1.0 / math.tan(math.radians(fov) / 2.0)
        nf = 1.0 / (near - far)
        return _mat4_msg(
            [
                f / aspect,
                0.0,
                0.0,
                0.0,
                0.0,
                f,
                0.0,
                0.0,
                0.0,
                0.0,
                (far + near) * nf,
                -1.0,
                0.0,
                0.0,
                2.0 * far * near * nf,
                0.0,
            ]
        )


_QUAT = "quaternion Object ``{x, y, z, w}``"


@_template(
    "tpl_quat_from_euler",
    ["x", "y", "z"],
    f"""Quaternion from Euler angles in
    degrees (applied X, then Y, then Z: ``q = qz · qy · qx``).

    Ports: in ``x``, ``y``, ``z`` (Integer or Float; config for those without a packet) →
    out ``result`` ({_QUAT}). Config: ``x``, ``y``, ``z`` (degrees, default 0).
    """,
    await_all=False,
    config={"x": 0.0, "y": 0.0, "z": 0.0},
)
def QuatFromEuler(ctx: ActorContext) -> Message:
    hx, hy, hz = (math.radians(_number_or_config(ctx, k, 0.0)) / 2 for k in "xyz")
    sx, cx, sy, cy, sz, cz = (
        math.sin(hx),
        math.cos(hx),
        math.sin(hy),
        math.cos(hy),
        math.sin(hz),
        math.cos(hz),
    )
    return _quat_msg(
        [
            sx * cy * cz - cx * sy * sz,
            cx * sy * cz + sx * cy * sz,
            cx * cy * sz - sx * sy * cz,
            cx * cy * cz + sx * sy * sz,
        ]
    )


def _hamilton(a: Vec, b: Vec) -> Vec:
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return [
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    ]


@_template(
    "tpl_quat_multiply",
    ["a", "b"],
    f"""Hamilton product ``a · b`` (rotation ``b``
    then ``a``).

    Ports: in ``a``, ``b`` ({_QUAT}) → out ``result`` ({_QUAT}). Config: none.
    """,
)
def QuatMultiply(ctx: ActorContext) -> Message:
    return _quat_msg(_hamilton(_quat(ctx, "a"), _quat(ctx, "b")))


@_template(
    "tpl_quat_slerp",
    ["a", "b", "t"],
    f"""Spherical linear interpolation from ``a``
    to ``b`` along the shorter arc (normalised linear interpolation when they are within
    ~1.8° of each other).

    Ports: in ``a``, ``b`` ({_QUAT}), ``t`` (number; 0.5 when not connected) → out
    ``result`` ({_QUAT}). A zero quaternion fails the tick naming its port. Config: none.
    """,
)
def QuatSlerp(ctx: ActorContext) -> Message:
    a, b = _quat(ctx, "a"), _quat(ctx, "b")
    t = _scalar(ctx, "t", 0.5)
    for port, q in (("a", a), ("b", b)):
        if _dot(q, q) < 1e-20:
            raise ActorError(f"in-port {port!r}: the zero quaternion has no rotation")
    d = _dot(a, b)
    if d < 0:
        b, d = [-x for x in b], -d
    if d > 0.9995:
        r = [x + (y - x) * t for x, y in zip(a, b, strict=True)]
        n = math.sqrt(_dot(r, r))
        return _quat_msg([x / n for x in r])
    theta = math.acos(min(d, 1.0))
    s = math.sin(theta)
    wa, wb = math.sin((1 - t) * theta) / s, math.sin(t * theta) / s
    return _quat_msg([wa * x + wb * y for x, y in zip(a, b, strict=True)])


@_template(
    "tpl_quat_rotate_vec3",
    ["quaternion", "vector"],
    f"""Rotates ``vector`` by the
    unit quaternion ``quaternion`` (``q v q*``).

    Ports: in ``quaternion`` ({_QUAT}), ``vector`` ({_VEC}) → out ``result`` ({_VEC}).
    Config: none.
    """,
)
def QuatRotateVec3(ctx: ActorContext) -> Message:
    qx, qy, qz, qw = _quat(ctx, "quaternion")
    v = _vec3(ctx, "vector")
    t = [2 * c for c in _cross([qx, qy, qz], v)]
    u = _cross([qx, qy, qz], t)
    return _vec3_msg([v[i] + qw * t[i] + u[i] for i in range(3)])


VECTOR_TEMPLATES: dict[str, type[LibraryActor]] = {
    cls.component: cls
    for cls in (
        Vec3,
        Vec3Add,
        Vec3Subtract,
        Vec3Scale,
        Vec3Dot,
        Vec3Cross,
        Vec3Length,
        Vec3Distance,
        Vec3Lerp,
        Vec3Reflect,
        Vec3Normalize,
        Mat4Identity,
        Mat4Multiply,
        Mat4Transform,
        Mat4Translate,
        Mat4Scale,
        Mat4RotateX,
        Mat4RotateY,
        Mat4RotateZ,
        Mat4LookAt,
        Mat4Perspective,
        QuatFromEuler,
        QuatMultiply,
        QuatSlerp,
        QuatRotateVec3,
    )
}
