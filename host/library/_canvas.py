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

import numpy as np

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import ActorError
from ._base import config_int, config_number, config_value
from ._canvas_pixels import (
    _dims,
    _num,
    _params,
    _raw_image,
    _rgba255,
    _size,
    blend,
    blend_mode,
)
from ._canvas_shapes import Shape2D, VectorRasterize
from ._sdk import SyncSdkTemplate

__all__ = ["CANVAS_TEMPLATES", "blend"]


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


CANVAS_TEMPLATES: dict[str, type[SyncSdkTemplate]] = {
    cls.component: cls
    for cls in (Background, BlendMode, Canvas2D, GaussianBlur, Shape2D, VectorRasterize)
}
