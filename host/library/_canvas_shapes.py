"""The 2D vector templates that draw: shape paths (rectangles, ellipses, polygons, stars…)
and path rasterizing with fill, stroke and dashes through aggdraw on Pillow."""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any

import numpy as np

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import ActorError
from . import _paths
from ._base import config_bool, config_value
from ._canvas_pixels import (
    _dims,
    _num,
    _params,
    _rgba255,
)
from ._sdk import SyncSdkTemplate

_KAPPA = 0.5522847498


def shape_path(p: dict[str, Any]) -> _paths.Path:
    """The path of a ``tpl_shape_2d`` parameter set (see its docstring)."""
    shape = p.get("shape", "rect")
    cx, cy = _num(p, "cx", 0.0), _num(p, "cy", 0.0)
    if shape == "rect":
        w, h, r = _num(p, "width", 100.0), _num(p, "height", 100.0), _num(p, "cornerRadius", 0)
        x, y = cx - w / 2, cy - h / 2
        r = min(r, w / 2, h / 2)
        if r <= 0:
            return [("M", x, y), ("L", x + w, y), ("L", x + w, y + h), ("L", x, y + h), ("Z",)]
        k = _KAPPA * r
        return [
            ("M", x + r, y),
            ("L", x + w - r, y),
            ("C", x + w - r + k, y, x + w, y + r - k, x + w, y + r),
            ("L", x + w, y + h - r),
            ("C", x + w, y + h - r + k, x + w - r + k, y + h, x + w - r, y + h),
            ("L", x + r, y + h),
            ("C", x + r - k, y + h, x, y + h - r + k, x, y + h - r),
            ("L", x, y + r),
            ("C", x, y + r - k, x + r - k, y, x + r, y),
            ("Z",),
        ]
    if shape in ("ellipse", "circle"):
        if shape == "circle":
            rx = ry = _num(p, "radius", 50.0)
        else:
            rx, ry = _num(p, "rx", 50.0), _num(p, "ry", 50.0)
        kx, ky = _KAPPA * rx, _KAPPA * ry
        return [
            ("M", cx + rx, cy),
            ("C", cx + rx, cy + ky, cx + kx, cy + ry, cx, cy + ry),
            ("C", cx - kx, cy + ry, cx - rx, cy + ky, cx - rx, cy),
            ("C", cx - rx, cy - ky, cx - kx, cy - ry, cx, cy - ry),
            ("C", cx + kx, cy - ry, cx + rx, cy - ky, cx + rx, cy),
            ("Z",),
        ]
    if shape in ("polygon", "star"):
        if shape == "polygon":
            n = _count(p, "sides", 6, 3)
            radii = [_num(p, "radius", 50.0)]
        else:
            n = 2 * _count(p, "points", 5, 2)
            radii = [_num(p, "outerRadius", 50.0), _num(p, "innerRadius", 25.0)]
        path: _paths.Path = []
        for i in range(n):
            a = i / n * math.pi * 2 - math.pi / 2
            r = radii[i % len(radii)]
            path.append(("M" if i == 0 else "L", cx + r * math.cos(a), cy + r * math.sin(a)))
        return [*path, ("Z",)]
    if shape == "line":
        return [
            ("M", _num(p, "x1", 0.0), _num(p, "y1", 0.0)),
            ("L", _num(p, "x2", 100.0), _num(p, "y2", 100.0)),
        ]
    if shape == "path":
        d = p.get("d", "M0,0")
        if not isinstance(d, str):
            raise ActorError(f"config 'd' must be SVG path data, got {d!r}")
        try:
            return _paths.parse(d)
        except ValueError as exc:
            raise ActorError(f"config 'd': {exc}") from exc
    raise ActorError(
        f"config 'shape' must be one of rect, ellipse, circle, polygon, star, "
        f"line, path, got {shape!r}"
    )


def _count(p: dict[str, Any], key: str, default: int, minimum: int) -> int:
    v = p.get(key, default)
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or not minimum <= v <= 100_000:
        raise ActorError(f"config {key!r} must be an integer {minimum}-100000, got {v!r}")
    return v


class Shape2D(SyncSdkTemplate):
    """An SVG path for a rectangle, ellipse, circle, regular polygon, star, line or given
    path data, centred on ``cx``/``cy``.

    Ports: in ``params`` (Object overriding config keys) → out ``path`` (String: SVG path
    data, absolute commands), ``metadata`` (Object ``{type, bounds: [x, y, w, h], width,
    height, length, segments, closed}`` plus ``color``, ``shadow``, ``border``, ``index``,
    ``cornerRadius`` when given). Config: ``shape`` (``rect``, default, ``ellipse``,
    ``circle``, ``polygon``, ``star``, ``line``, ``path``), ``cx``, ``cy`` (default 0),
    ``width``, ``height`` (rect, default 100), ``cornerRadius`` (default 0), ``rx``, ``ry``
    (ellipse, default 50), ``radius`` (circle/polygon, default 50), ``sides`` (polygon ≥ 3,
    default 6), ``outerRadius`` (default 50), ``innerRadius`` (default 25), ``points`` (star ≥
    2, default 5), ``x1``, ``y1``, ``x2``, ``y2`` (line, default 0,0 → 100,100), ``d``
    (path data, default ``"M0,0"``). Curves are cubic Béziers (κ = 0.5522847498).
    """

    component = "tpl_shape_2d"
    inports = ["params"]
    outports = ["path", "metadata"]
    outport_types = {"path": "String", "metadata": "Object"}
    config_defaults = {
        "shape": "rect",
        "cx": 0.0,
        "cy": 0.0,
        "width": 100.0,
        "height": 100.0,
        "cornerRadius": 0.0,
        "rx": 50.0,
        "ry": 50.0,
        "radius": 50.0,
        "sides": 6,
        "outerRadius": 50.0,
        "innerRadius": 25.0,
        "points": 5,
        "x1": 0.0,
        "y1": 0.0,
        "x2": 100.0,
        "y2": 100.0,
        "d": "M0,0",
    }

    def tick(self, ctx: ActorContext) -> None:
        p = _params(ctx)
        path = shape_path(p)
        x0, y0, x1, y1 = _paths.bounds(path)
        w, h = x1 - x0, y1 - y0
        cx, cy = _num(p, "cx", 0.0), _num(p, "cy", 0.0)
        meta: dict[str, Any] = {
            "type": p.get("shape", "rect"),
            "bounds": [cx - w / 2, cy - h / 2, w, h],
            "width": w,
            "height": h,
            "length": _paths.length(path),
            "segments": len(path),
            "closed": bool(path) and path[-1][0] == "Z",
        }
        for key in ("color", "shadow", "border", "index", "cornerRadius"):
            if key in p:
                meta[key] = p[key]
        ctx.done({"path": Message.string(_paths.to_svg(path)), "metadata": Message.object(meta)})


def _color01(value: Any, where: str) -> tuple[int, int, int, int]:
    if isinstance(value, str):
        text = value.lstrip("#")
        if len(text) in (3, 4):
            text = "".join(c * 2 for c in text)
        try:
            if len(text) not in (6, 8):
                raise ValueError
            vals = [int(text[i : i + 2], 16) for i in range(0, len(text), 2)]
        except ValueError:
            raise ActorError(
                f'{where} must be "#rrggbb[aa]" or [r, g, b, a] in 0-1, got {value!r}'
            ) from None
        return (vals[0], vals[1], vals[2], vals[3] if len(vals) == 4 else 255)
    if value is None:
        return (0, 0, 0, 255)
    if (
        isinstance(value, list)
        and 3 <= len(value) <= 4
        and all(
            isinstance(c, (int, float)) and not isinstance(c, bool) and 0 <= c <= 1 for c in value
        )
    ):
        c = [*value, 1.0][:4]
        return (round(c[0] * 255), round(c[1] * 255), round(c[2] * 255), round(c[3] * 255))
    raise ActorError(f'{where} must be "#rrggbb[aa]" or [r, g, b, a] in 0-1, got {value!r}')


def _style(ctx: ActorContext, port: str) -> dict[str, Any] | None:
    msg = ctx.inputs.get(port)
    if msg is not None:
        if msg["type"] != "Object":
            raise ActorError(f"in-port {port!r}: expected an Object, got {msg['type']}")
        return dict(msg["data"])
    value = ctx.config.get(port)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ActorError(f"config {port!r} must be an Object, got {value!r}")
    return dict(value)


def _dashes(
    lines: list[list[tuple[float, float]]], intervals: list[float], offset: float
) -> list[list[tuple[float, float]]]:
    """The on-pieces of polylines under a dash pattern."""
    total = sum(intervals)
    out: list[list[tuple[float, float]]] = []
    for line in lines:
        pos = offset % total
        idx = 0
        while pos >= intervals[idx]:
            pos -= intervals[idx]
            idx = (idx + 1) % len(intervals)
        left = intervals[idx] - pos
        cur: list[tuple[float, float]] = [line[0]] if idx % 2 == 0 else []
        for a, b in pairwise(line):
            seg = math.dist(a, b)
            t = 0.0
            while seg - t > left:
                t += left
                p = (a[0] + (b[0] - a[0]) * t / seg, a[1] + (b[1] - a[1]) * t / seg)
                if idx % 2 == 0:
                    cur.append(p)
                    out.append(cur)
                    cur = []
                else:
                    cur = [p]
                idx = (idx + 1) % len(intervals)
                left = intervals[idx]
                if len(out) > 200_000:
                    raise ActorError("stroke 'dashArray' makes more than 200000 dashes")
            left -= seg - t
            if idx % 2 == 0:
                cur.append(b)
        if len(cur) > 1:
            out.append(cur)
    return out


class VectorRasterize(SyncSdkTemplate):
    """Rasterizes an SVG path to RGBA (antialiased, through aggdraw).

    ``path`` (String) is kept; drawing happens when a packet comes on ``tick``,
    ``transform``, ``x``, ``y``, ``scale`` or ``rotation``. The transform, applied to the
    path: translate by ``x``, ``y``, then rotate by ``rotation`` degrees about the origin,
    then scale by ``scale``; each number is the last one seen on its port (or in an Object on
    ``transform``, its keys renamed by config ``transformMap``), else config ``transform``'s
    key, else 0 (1 for scale). Ports: in ``path``, ``fill``/``stroke`` (Objects overriding
    config), ``transform``, ``tick``, ``x``, ``y``, ``scale``, ``rotation`` → out ``image``
    (RGBA Bytes, straight alpha), ``metadata`` (Object ``{width, height, format, hasFill,
    hasStroke}``). Config: ``width``, ``height`` (default 512), ``antiAlias`` (default true),
    ``fill`` (``{color}``), ``stroke`` (``{color, width (default 1), dashArray,
    dashOffset}``; ``cap``/``join`` are read but aggdraw draws butt caps and miter joins),
    ``background`` (``[r, g, b, a]`` 0-255, default transparent), ``transformMap``,
    ``transform`` (default ``{}``). Arcs are drawn as arcs (the SDK draws them as lines).
    """

    component = "tpl_vector_rasterize"
    inports = ["path", "fill", "stroke", "transform", "tick", "x", "y", "scale", "rotation"]
    outports = ["image", "metadata"]
    outport_types = {"image": "Bytes", "metadata": "Object"}
    config_defaults = {
        "width": 512,
        "height": 512,
        "antiAlias": True,
        "fill": None,
        "stroke": None,
        "background": [0, 0, 0, 0],
        "transformMap": None,
        "transform": {},
    }
    _TRIGGERS = ("transform", "tick", "scale", "rotation", "x", "y")

    def tick(self, ctx: ActorContext) -> None:
        w, h = _dims(ctx.config, 512, 512)
        aa = config_bool(ctx, "antiAlias", True)
        bg = _rgba255(ctx.config.get("background"), "background", [0, 0, 0, 0])
        if "path" in ctx.inputs:
            msg = ctx.inputs["path"]
            if msg["type"] != "String":
                raise ActorError(
                    f"in-port 'path': expected SVG path data (String), got {msg['type']}"
                )
            try:
                ctx.pool_upsert("_raster", "path", _paths.parse(msg["data"]))
            except ValueError as exc:
                raise ActorError(f"in-port 'path': {exc}") from exc
        self._transform_inputs(ctx)
        path = ctx.pool_get("_raster", "path")
        if not any(p in ctx.inputs for p in self._TRIGGERS) or not path:
            ctx.done()
            return
        fill, stroke = _style(ctx, "fill"), _style(ctx, "stroke")
        tf = self._transform(ctx)
        image = self._draw(path, w, h, aa, bg, fill, stroke, tf)
        ctx.done(
            {
                "image": Message.bytes(image),
                "metadata": Message.object(
                    {
                        "width": w,
                        "height": h,
                        "format": "rgba",
                        "hasFill": fill is not None,
                        "hasStroke": stroke is not None,
                    }
                ),
            }
        )

    def _transform_inputs(self, ctx: ActorContext) -> None:
        for port in ("x", "y", "scale", "rotation"):
            msg = ctx.inputs.get(port)
            if msg is None:
                continue
            if msg["type"] not in ("Integer", "Float") or not math.isfinite(msg["data"]):
                raise ActorError(f"in-port {port!r}: expected a number, got {msg['type']}")
            ctx.pool_upsert("_tf", port, float(msg["data"]))
        msg = ctx.inputs.get("transform")
        if msg is not None:
            if msg["type"] != "Object":
                raise ActorError(f"in-port 'transform': expected an Object, got {msg['type']}")
            names = ctx.config.get("transformMap") or {}
            if not isinstance(names, dict):
                raise ActorError(f"config 'transformMap' must be an Object, got {names!r}")
            for key, v in msg["data"].items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    target = names.get(key, key)
                    ctx.pool_upsert("_tf", target if isinstance(target, str) else key, float(v))

    def _transform(self, ctx: ActorContext) -> tuple[float, float, float, float]:
        conf = config_value(ctx, "transform", {})
        if not isinstance(conf, dict):
            raise ActorError(f"config 'transform' must be an Object, got {conf!r}")
        out = []
        for key, default in (("x", 0.0), ("y", 0.0), ("rotation", 0.0), ("scale", 1.0)):
            v = ctx.pool_get("_tf", key)
            if v is None:
                v = conf.get(key, default)
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise ActorError(f"config 'transform' {key!r} must be a number, got {v!r}")
            out.append(float(v))
        return out[0], out[1], out[2], out[3]

    @staticmethod
    def _draw(
        path: _paths.Path,
        w: int,
        h: int,
        aa: bool,
        bg: np.ndarray,
        fill: dict[str, Any] | None,
        stroke: dict[str, Any] | None,
        tf: tuple[float, float, float, float],
    ) -> bytes:
        import aggdraw

        tx, ty, rot, s = tf
        c, sn = math.cos(math.radians(rot)), math.sin(math.radians(rot))
        # p' = S · R · (p + t)
        a, b, e = s * c, -s * sn, s * (c * tx - sn * ty)
        d, f, g = s * sn, s * c, s * (sn * tx + c * ty)
        draw = aggdraw.Draw("RGBA", (w, h), tuple(int(v) for v in bg))
        draw.setantialias(aa)
        draw.settransform((a, b, e, d, f, g))
        cubic = _paths.to_cubics(path)
        if fill is not None:
            color = _color01(fill.get("color"), "fill 'color'")
            symbol = aggdraw.Symbol(_paths.to_svg(cubic))
            draw.symbol((0, 0), symbol, None, aggdraw.Brush(color[:3], color[3]))
        if stroke is not None:
            color = _color01(stroke.get("color"), "stroke 'color'")
            width = stroke.get("width", 1.0)
            if (
                isinstance(width, bool)
                or not isinstance(width, (int, float))
                or not 0 < width <= 10_000
            ):
                raise ActorError(f"stroke 'width' must be a number in (0, 10000], got {width!r}")
            pen = aggdraw.Pen(color[:3], float(width), color[3])
            lines = _paths.flatten(path)
            dash = stroke.get("dashArray")
            if dash:
                if (
                    not isinstance(dash, list)
                    or not all(
                        isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                        for v in dash
                    )
                    or sum(dash) <= 0
                ):
                    raise ActorError(
                        f"stroke 'dashArray' must be a list of lengths >= 0 with "
                        f"a positive sum, got {dash!r}"
                    )
                intervals = [float(v) for v in (dash * 2 if len(dash) % 2 else dash)]
                offset = stroke.get("dashOffset", 0.0)
                if isinstance(offset, bool) or not isinstance(offset, (int, float)):
                    raise ActorError(f"stroke 'dashOffset' must be a number, got {offset!r}")
                for piece in _dashes(lines, intervals, float(offset)):
                    draw.line([v for pt in piece for v in pt], pen)
            else:
                symbol = aggdraw.Symbol(_paths.to_svg(cubic))
                draw.symbol((0, 0), symbol, pen)
        draw.flush()
        return bytes(draw.tobytes())
