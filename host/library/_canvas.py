"""The SDK's 2D vector templates: backgrounds, blending, layer compositing, blur, shape paths
and path rasterizing (antialiased, through aggdraw on Pillow).

Images here are raw RGBA8 Bytes (``width x height x 4``, row-major, straight alpha), their
size given in config or metadata, as the SDK's vector family has them. Colours are
``[r, g, b, a]`` 0-255 lists for backgrounds and canvases; ``fill``/``stroke`` colours of
``tpl_vector_rasterize`` are ``"#rrggbb[aa]"`` strings or ``[r, g, b, a]`` lists of 0-1
floats, as in the SDK. Blend modes follow the W3C compositing formulas the SDK's pixel kernel
uses. Bad config or input fails the tick naming the key or port.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any

import numpy as np

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import ActorError
from . import _paths
from ._base import config_bool, config_int, config_number, config_value
from ._sdk import SyncSdkTemplate

__all__ = ["CANVAS_TEMPLATES", "blend"]

MAX_SIDE = 16384
MAX_PIXELS = 1 << 24  # 16 Mpx: blending works on a few float32 copies of an image


def _size(params: dict[str, Any], key: str, default: int, where: str = "config") -> int:
    v = params.get(key, default)
    if v is None:
        v = default
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_SIDE:
        raise ActorError(f"{where} {key!r} must be an integer 1-{MAX_SIDE}, got {v!r}")
    return v


def _dims(params: dict[str, Any], dw: int, dh: int, where: str = "config") -> tuple[int, int]:
    w, h = _size(params, "width", dw, where), _size(params, "height", dh, where)
    if w * h > MAX_PIXELS:
        raise ActorError(f"{where} 'width' x 'height' ({w}x{h}) is more than {MAX_PIXELS} pixels")
    return w, h


def _rgba255(value: Any, key: str, default: list[int], where: str = "config") -> np.ndarray:
    if value is None:
        value = default
    if (
        not isinstance(value, list)
        or not 3 <= len(value) <= 4
        or any(
            isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 <= c <= 255
            for c in value
        )
    ):
        raise ActorError(
            f"{where} {key!r} must be [r, g, b] or [r, g, b, a] of 0-255, got {value!r}"
        )
    rgba = [*value, 255] if len(value) == 3 else list(value)
    return np.array([int(c) for c in rgba], dtype=np.uint8)


def _params(ctx: ActorContext) -> dict[str, Any]:
    """Config, overridden key by key by an Object on in-port ``params``."""
    params = dict(ctx.config)
    msg = ctx.inputs.get("params")
    if msg is not None:
        if msg["type"] != "Object":
            raise ActorError(f"in-port 'params': expected an Object, got {msg['type']}")
        params.update(msg["data"])
    return params


def _raw_image(ctx: ActorContext, port: str, w: int, h: int | None = None) -> np.ndarray:
    msg = ctx.inputs[port]
    if msg["type"] != "Bytes":
        raise ActorError(f"in-port {port!r}: expected RGBA Bytes, got {msg['type']}")
    data = msg["data"]
    if h is None:
        h = len(data) // (w * 4)
    if len(data) != w * h * 4 or h == 0:
        raise ActorError(
            f"in-port {port!r}: {len(data)} bytes is not a {w}x{h} RGBA image "
            f"({w * max(h, 1) * 4} bytes; check config 'width'/'height')"
        )
    return np.frombuffer(data, np.uint8).reshape(h, w, 4)


_MODES = (
    "normal",
    "multiply",
    "screen",
    "overlay",
    "add",
    "softlight",
    "hardlight",
    "difference",
    "exclusion",
    "colordodge",
    "colorburn",
    "darken",
    "lighten",
    "subtract",
    "divide",
)
_ALIASES = {"lineardodge": "add", "linearburn": "subtract"}


def blend_mode(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ActorError(f"{where} must be a blend mode name, got {value!r}")
    key = value.lower().replace("-", "").replace("_", "").replace(" ", "")
    key = _ALIASES.get(key, key)
    if key not in _MODES:
        raise ActorError(f"{where} must be one of {', '.join(_MODES)}, got {value!r}")
    return key


def _rounded(v: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(v * 255.0), 0, 255)


def blend(base: np.ndarray, over: np.ndarray, mode: str, opacity: float) -> np.ndarray:
    """``over`` blended onto ``base`` (both H x W x 4 uint8) with ``mode`` at ``opacity``."""
    b = base[..., :3].astype(np.float32) / 255.0
    f = over[..., :3].astype(np.float32) / 255.0
    bi, fi = base[..., :3].astype(np.int32), over[..., :3].astype(np.int32)
    if mode == "normal":
        mixed = fi.astype(np.float32)
    elif mode == "multiply":
        mixed = _rounded(b * f)
    elif mode == "screen":
        mixed = _rounded(1 - (1 - b) * (1 - f))
    elif mode in ("overlay", "hardlight"):
        low = b if mode == "overlay" else f
        mixed = _rounded(np.where(low < 0.5, 2 * b * f, 1 - 2 * (1 - b) * (1 - f)))
    elif mode == "add":
        mixed = np.minimum(bi + fi, 255).astype(np.float32)
    elif mode == "softlight":
        d = np.where(b <= 0.25, ((16 * b - 12) * b + 4) * b, np.sqrt(b))
        mixed = _rounded(
            np.where(f <= 0.5, b - (1 - 2 * f) * b * (1 - b), b + (2 * f - 1) * (d - b))
        )
    elif mode == "difference":
        mixed = np.abs(bi - fi).astype(np.float32)
    elif mode == "exclusion":
        mixed = _rounded(b + f - 2 * b * f)
    elif mode == "colordodge":
        with np.errstate(divide="ignore", invalid="ignore"):
            mixed = _rounded(np.where(f >= 1, 1.0, np.minimum(b / np.maximum(1 - f, 1e-12), 1)))
    elif mode == "colorburn":
        with np.errstate(divide="ignore", invalid="ignore"):
            mixed = _rounded(
                np.where(f <= 0, 0.0, 1 - np.minimum((1 - b) / np.maximum(f, 1e-12), 1))
            )
    elif mode == "darken":
        mixed = np.minimum(bi, fi).astype(np.float32)
    elif mode == "lighten":
        mixed = np.maximum(bi, fi).astype(np.float32)
    elif mode == "subtract":
        mixed = np.maximum(bi - fi, 0).astype(np.float32)
    else:  # divide
        with np.errstate(divide="ignore", invalid="ignore"):
            mixed = _rounded(np.where(f <= 0, 1.0, np.minimum(b / np.maximum(f, 1e-12), 1)))
    fa = over[..., 3:].astype(np.float32) / 255.0 * np.float32(opacity)
    ba = base[..., 3:].astype(np.float32) / 255.0
    out_a = fa + ba * (1 - fa)
    rgb = np.clip(np.rint(base[..., :3] * (1 - fa) + mixed * fa), 0, 255)
    out = np.concatenate([rgb, np.clip(np.rint(out_a * 255), 0, 255)], axis=-1)
    out[(out_a < 1e-6)[..., 0]] = 0
    return out.astype(np.uint8)


class Background(SyncSdkTemplate):
    """A solid, linear-gradient or radial-gradient RGBA image.

    Ports: in ``tick`` (any packet), ``params`` (Object overriding config keys) → out
    ``image`` (RGBA Bytes), ``metadata`` (Object ``{width, height, type}``). Config:
    ``width`` (default 1280), ``height`` (default 720), ``type`` (``solid``, default,
    ``linearGradient``, ``radialGradient``), ``color`` (solid, default ``[0,0,0,255]``),
    ``from``/``to`` (gradient ends; default black→white linear, white→black radial),
    ``angle`` (linear, degrees, default 90: top to bottom), ``center`` (radial, ``[x, y]`` in
    0-1, default ``[0.5, 0.5]``), ``radius`` (radial, > 0, fraction of the size, default
    0.8). Channels are truncated toward zero, as in the SDK.
    """

    component = "tpl_background"
    inports = ["tick", "params"]
    outports = ["image", "metadata"]
    outport_types = {"image": "Bytes", "metadata": "Object"}
    config_defaults = {
        "width": 1280,
        "height": 720,
        "type": "solid",
        "angle": 90.0,
        "center": [0.5, 0.5],
        "radius": 0.8,
        "from": None,
        "to": None,
        "color": [0, 0, 0, 255],
    }

    def tick(self, ctx: ActorContext) -> None:
        p = _params(ctx)
        w, h = _dims(p, 1280, 720)
        kind = p.get("type", "solid")
        if kind not in ("solid", "linearGradient", "radialGradient"):
            raise ActorError(
                f"config 'type' must be solid, linearGradient or radialGradient, got {kind!r}"
            )
        if kind == "solid":
            img = np.broadcast_to(_rgba255(p.get("color"), "color", [0, 0, 0, 255]), (h, w, 4))
        else:
            linear = kind == "linearGradient"
            start = _rgba255(
                p.get("from"), "from", [0, 0, 0, 255] if linear else [255, 255, 255, 255]
            )
            end = _rgba255(p.get("to"), "to", [255, 255, 255, 255] if linear else [0, 0, 0, 255])
            nx = (np.arange(w) / w)[None, :]
            ny = (np.arange(h) / h)[:, None]
            if linear:
                ang = math.radians(_num(p, "angle", 90.0))
                t = np.clip((nx - 0.5) * math.cos(ang) + (ny - 0.5) * math.sin(ang) + 0.5, 0, 1)
            else:
                c = p.get("center", [0.5, 0.5])
                if (
                    not isinstance(c, list)
                    or len(c) != 2
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in c)
                ):
                    raise ActorError(f"config 'center' must be [x, y], got {c!r}")
                r = _num(p, "radius", 0.8)
                if r <= 0:
                    raise ActorError(f"config 'radius' must be > 0, got {r}")
                t = np.clip(np.sqrt((nx - c[0]) ** 2 + (ny - c[1]) ** 2) / r, 0, 1)
            s, e = start.astype(np.float64), end.astype(np.float64)
            img = (s + (e - s) * t[..., None]).astype(np.uint8)
        ctx.done(
            {
                "image": Message.bytes(np.ascontiguousarray(img).tobytes()),
                "metadata": Message.object({"width": w, "height": h, "type": kind}),
            }
        )


def _num(p: dict[str, Any], key: str, default: float) -> float:
    v = p.get(key, default)
    if v is None:
        v = default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ActorError(f"config {key!r} must be a number, got {v!r}")
    return float(v)


class BlendMode(SyncSdkTemplate):
    """Blends ``overlay`` onto ``base`` (both RGBA Bytes, kept until the other arrives; a
    new packet on either replaces it and blends again).

    Ports: in ``base``, ``overlay`` → out ``image`` (RGBA Bytes, the length of the shorter
    input), ``metadata`` (Object ``{mode, opacity}``). Config: ``mode`` (``normal``, default,
    ``multiply``, ``screen``, ``overlay``, ``add``, ``softlight``, ``hardlight``,
    ``difference``, ``exclusion``, ``colordodge``, ``colorburn``, ``darken``, ``lighten``,
    ``subtract``, ``divide``), ``opacity`` (0-1, default 1).
    """

    component = "tpl_blend_mode"
    inports = ["base", "overlay"]
    outports = ["image", "metadata"]
    outport_types = {"image": "Bytes", "metadata": "Object"}
    inport_types = {"base": "Bytes", "overlay": "Bytes"}
    config_defaults = {"mode": "normal", "opacity": 1.0}

    def tick(self, ctx: ActorContext) -> None:
        mode = blend_mode(config_value(ctx, "mode", "normal"), "config 'mode'")
        opacity = float(config_number(ctx, "opacity", 1.0, minimum=0, maximum=1))
        for port in self.inports:
            if port in ctx.inputs:
                msg = ctx.inputs[port]
                if msg["type"] != "Bytes" or len(msg["data"]) % 4:
                    raise ActorError(
                        f"in-port {port!r}: expected RGBA Bytes (4 bytes a "
                        f"pixel), got {msg['type']}"
                    )
                ctx.pool_upsert("_blend", port, bytes(msg["data"]))
        base, over = ctx.pool_get("_blend", "base"), ctx.pool_get("_blend", "overlay")
        if base is None or over is None:
            ctx.done()
            return
        n = min(len(base), len(over))
        a = np.frombuffer(base, np.uint8)[:n].reshape(-1, 4)
        b = np.frombuffer(over, np.uint8)[:n].reshape(-1, 4)
        out = blend(a, b, mode, opacity).tobytes() + base[n:]
        ctx.done(
            {
                "image": Message.bytes(out),
                "metadata": Message.object(
                    {"mode": config_value(ctx, "mode", "normal"), "opacity": opacity}
                ),
            }
        )


_LAYER_PORTS = [f"layer{i}" for i in range(8)]


class Canvas2D(SyncSdkTemplate):
    """Composites RGBA layers onto a background when ``tick`` arrives.

    Layer images (RGBA Bytes of ``width x height``) arrive on ``layer0``, ``layer1``,
    ``layer2``, ``layer3``, ``layer4``, ``layer5``, ``layer6``, ``layer7`` and are kept;
    ``background`` replaces the solid background. (The SDK takes any in-port name as a
    layer; this runtime checks port names when a graph is built, so the layer ports are
    these eight.) Ports: in ``tick``, ``background``, ``layer0``-``layer7`` → out ``frame``
    (RGBA Bytes), ``metadata`` (Object ``{width, height, layerCount}``). Config: ``width``
    (default 640), ``height`` (default 360), ``background`` (``[r, g, b, a]``, default
    ``[0,0,0,255]``), ``layers`` (order and blending: a list of port names or
    ``{name, blend, opacity}``; default all layers by name). Layers of the wrong size are
    skipped, as in the SDK.
    """

    component = "tpl_canvas_2d"
    inports = ["tick", "background", *_LAYER_PORTS]
    outports = ["frame", "metadata"]
    outport_types = {"frame": "Bytes", "metadata": "Object"}
    config_defaults = {"width": 640, "height": 360, "layers": None, "background": [0, 0, 0, 255]}

    def tick(self, ctx: ActorContext) -> None:
        w, h = _dims(ctx.config, 640, 360)
        bg = _rgba255(ctx.config.get("background"), "background", [0, 0, 0, 255])
        order = self._order(ctx)
        for port, msg in ctx.inputs.items():
            if port == "tick":
                continue
            if msg["type"] != "Bytes":
                raise ActorError(f"in-port {port!r}: expected RGBA Bytes, got {msg['type']}")
            ctx.pool_upsert("_canvas", port, bytes(msg["data"]))
        if "tick" not in ctx.inputs:
            ctx.done()
            return
        size = w * h * 4
        stored = ctx.pool("_canvas")
        back = stored.get("background")
        canvas = (
            np.frombuffer(back, np.uint8).reshape(h, w, 4).copy()
            if back is not None and len(back) == size
            else np.broadcast_to(bg, (h, w, 4)).copy()
        )
        if order is None:
            order = [(name, "normal", 1.0) for name in sorted(stored) if name != "background"]
        for name, mode, opacity in order:
            data = stored.get(name)
            if data is None or len(data) != size:
                continue
            canvas = blend(canvas, np.frombuffer(data, np.uint8).reshape(h, w, 4), mode, opacity)
        ctx.done(
            {
                "frame": Message.bytes(canvas.tobytes()),
                "metadata": Message.object({"width": w, "height": h, "layerCount": len(order)}),
            }
        )

    def _order(self, ctx: ActorContext) -> list[tuple[str, str, float]] | None:
        layers = ctx.config.get("layers")
        if layers is None or layers == []:
            return None
        if not isinstance(layers, list):
            raise ActorError(f"config 'layers' must be a list, got {layers!r}")
        out = []
        for i, entry in enumerate(layers):
            if isinstance(entry, str):
                out.append((entry, "normal", 1.0))
            elif isinstance(entry, dict) and isinstance(entry.get("name"), str):
                mode = blend_mode(entry.get("blend", "normal"), f"config 'layers' item {i} 'blend'")
                op = entry.get("opacity", 1.0)
                if isinstance(op, bool) or not isinstance(op, (int, float)) or not 0 <= op <= 1:
                    raise ActorError(f"config 'layers' item {i} 'opacity' must be 0-1, got {op!r}")
                out.append((entry["name"], mode, float(op)))
            else:
                raise ActorError(
                    f"config 'layers' item {i} must be a port name or "
                    f"{{name, blend, opacity}}, got {entry!r}"
                )
        return out


class GaussianBlur(SyncSdkTemplate):
    """Separable Gaussian blur (sigma = radius/3, edges clamped, rounded after each pass).

    Ports: in ``image`` (RGBA Bytes) → out ``image``, ``metadata`` (Object ``{width, height,
    radius}``). Config: ``width`` (default 512), ``height`` (default: the byte count over
    ``width x 4``), ``radius`` (0-256 px, default 3; 0 leaves the image as it is).
    """

    component = "tpl_gaussian_blur"
    inports = ["image"]
    outports = ["image", "metadata"]
    inport_types = {"image": "Bytes"}
    outport_types = {"image": "Bytes", "metadata": "Object"}
    config_defaults = {"width": 512, "height": None, "radius": 3}

    def tick(self, ctx: ActorContext) -> None:
        w = _size(ctx.config, "width", 512)
        h = _size(ctx.config, "height", 1) if ctx.config.get("height") is not None else None
        radius = config_int(ctx, "radius", 3, minimum=0, maximum=256)
        img = _raw_image(ctx, "image", w, h)
        h = img.shape[0]
        out = img
        if radius > 0:
            from scipy.ndimage import correlate1d

            sigma = radius / 3
            k = np.exp(-(np.arange(-radius, radius + 1) ** 2) / (2 * sigma * sigma))
            k = (k / k.sum()).astype(np.float32)
            tmp = np.clip(
                np.rint(correlate1d(img.astype(np.float32), k, axis=1, mode="nearest")), 0, 255
            )
            out = np.clip(np.rint(correlate1d(tmp, k, axis=0, mode="nearest")), 0, 255).astype(
                np.uint8
            )
        ctx.done(
            {
                "image": Message.bytes(out.tobytes()),
                "metadata": Message.object({"width": w, "height": h, "radius": radius}),
            }
        )


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


CANVAS_TEMPLATES: dict[str, type[SyncSdkTemplate]] = {
    cls.component: cls
    for cls in (Background, BlendMode, Canvas2D, GaussianBlur, Shape2D, VectorRasterize)
}
