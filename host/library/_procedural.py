"""The SDK's procedural templates: noise grids, Voronoi cells, L-systems, particles and
heightmap/image conversion.

Grids travel as Bytes of little-endian float64 values, row-major (``width x height``), as the
SDK writes them; images as raw RGBA8 Bytes (or, into ``tpl_image_to_heightmap``, an encoded
PNG/JPEG/WebP/GIF, decoded through Pillow). The noise functions are the SDK's (a sine-free
3D hash, gradient "Perlin", 2D simplex, Worley F1, value noise, fBm and ridged sums),
evaluated on numpy arrays, so the same seed gives the same grid there and here.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import ActorError
from ._base import config_choice, config_int, config_number, config_str
from ._image_streams import MAX_IMAGE_PIXELS
from ._sdk import SyncSdkTemplate

__all__ = ["PROCEDURAL_TEMPLATES", "value_noise"]

MAX_GRID = 1 << 22  # cells of one grid (4 Mi: 32 MiB of float64; the noise sums hold a few)
MAX_VORONOI_WORK = 1 << 28  # cells x points


def _fract(x: np.ndarray) -> np.ndarray:
    return x - np.trunc(x)  # Rust's f64::fract keeps the sign


def _hash3(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    qx, qy, qz = _fract(x * 0.1031), _fract(y * 0.1031), _fract(z * 0.1031)
    dot = qx * (qy + 19.19) + qy * (qz + 19.19) + qz * (qx + 19.19)
    return _fract((qx + dot + qy + dot) * (qz + dot))


def _smooth(t: np.ndarray) -> np.ndarray:
    return t * t * (3.0 - 2.0 * t)


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    return a + (b - a) * t


def value_noise(x: Any, y: Any, z: Any) -> np.ndarray:
    """Trilinear value noise in [0, 1) with smoothstep easing."""
    x, y, z = (np.asarray(v, dtype=np.float64) for v in (x, y, z))
    ix, iy, iz = np.floor(x), np.floor(y), np.floor(z)
    fx, fy, fz = _smooth(x - ix), _smooth(y - iy), _smooth(z - iz)

    def layer(zz: np.ndarray) -> np.ndarray:
        return _lerp(
            _lerp(_hash3(ix, iy, zz), _hash3(ix + 1, iy, zz), fx),
            _lerp(_hash3(ix, iy + 1, zz), _hash3(ix + 1, iy + 1, zz), fx),
            fy,
        )

    return _lerp(layer(iz), layer(iz + 1), fz)


def _perlin(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    ixf, iyf = np.floor(x), np.floor(y)
    fx, fy = x - ixf, y - iyf
    ix, iy = ixf.astype(np.int64), iyf.astype(np.int64)
    ux, uy = _smooth(fx), _smooth(fy)

    def grad(gx: np.ndarray, gy: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            h = (
                (gx * np.int64(374761393) + gy * np.int64(668265263)).view(np.uint64)
                * np.uint64(1274126177)
            ) >> np.uint64(30)
        h = (h & np.uint64(3)).astype(np.int64)
        return np.select([h == 0, h == 1, h == 2], [dx + dy, -dx + dy, dx - dy], -dx - dy)

    n00 = grad(ix, iy, fx, fy)
    n10 = grad(ix + 1, iy, fx - 1, fy)
    n01 = grad(ix, iy + 1, fx, fy - 1)
    n11 = grad(ix + 1, iy + 1, fx - 1, fy - 1)
    return _lerp(_lerp(n00, n10, ux), _lerp(n01, n11, ux), uy)


_GRAD2 = np.array(
    [
        [1, 0],
        [-1, 0],
        [0, 1],
        [0, -1],
        [0.707, 0.707],
        [-0.707, 0.707],
        [0.707, -0.707],
        [-0.707, -0.707],
    ]
)


def _simplex(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    f2, g2 = 0.3660254037844386, 0.21132486540518713
    s = (x + y) * f2
    i, j = np.floor(x + s), np.floor(y + s)
    t = (i + j) * g2
    x0, y0 = x - (i - t), y - (j - t)
    i1 = (x0 > y0).astype(np.float64)
    j1 = 1.0 - i1
    corners = [
        (i, j, x0, y0),
        (i + i1, j + j1, x0 - i1 + g2, y0 - j1 + g2),
        (i + 1, j + 1, x0 - 1 + 2 * g2, y0 - 1 + 2 * g2),
    ]
    total = np.zeros_like(x)
    for ci, cj, dx, dy in corners:
        g = _GRAD2[(_hash3(ci, cj, np.zeros_like(ci)) * 8).astype(np.int64) % 8]
        tt = 0.5 - dx * dx - dy * dy
        total += np.where(tt < 0, 0.0, tt**4 * (g[..., 0] * dx + g[..., 1] * dy))
    return 70.0 * total


def _worley(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    ix, iy = np.floor(x), np.floor(y)
    fx, fy = x - ix, y - iy
    best = np.full_like(x, np.inf)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            nx, ny = ix + dx, iy + dy
            px = dx + _hash3(nx, ny, np.zeros_like(nx))
            py = dy + _hash3(nx, ny, np.ones_like(nx))
            best = np.minimum(best, (fx - px) ** 2 + (fy - py) ** 2)
    return np.sqrt(best)


def _fbm(
    fn: Any, x: np.ndarray, y: np.ndarray, octaves: int, lac: float, pers: float
) -> np.ndarray:
    value, amp, freq, total = np.zeros_like(x), 1.0, 1.0, 0.0
    for _ in range(octaves):
        value = value + amp * fn(x * freq, y * freq)
        total += amp
        amp *= pers
        freq *= lac
    return value / total if total else value


def _ridged(
    fn: Any, x: np.ndarray, y: np.ndarray, octaves: int, lac: float, pers: float
) -> np.ndarray:
    value, amp, freq, weight = np.zeros_like(x), 1.0, 1.0, np.ones_like(x)
    for _ in range(octaves):
        sig = (1.0 - np.abs(fn(x * freq, y * freq))) ** 2 * weight
        weight = np.clip(sig * 2.0, 0.0, 1.0)
        value = value + sig * amp
        amp *= pers
        freq *= lac
    return value


def _number(ctx: ActorContext, key: str, default: float, port: str | None = None) -> float:
    """In-port ``port`` (a number) if a packet is there, else config ``key``."""
    msg = ctx.inputs.get(port) if port else None
    if msg is not None and msg["type"] not in ("Flow", "Null"):
        if msg["type"] not in ("Integer", "Float") or not math.isfinite(msg["data"]):
            raise ActorError(f"in-port {port!r}: expected a number, got {msg['type']}")
        return float(msg["data"])
    return float(config_number(ctx, key, default, minimum=-1e12, maximum=1e12))


def _grid_dims(ctx: ActorContext, dw: int = 256, dh: int = 256) -> tuple[int, int]:
    w = config_int(ctx, "width", dw, minimum=1, maximum=1 << 16)
    h = config_int(ctx, "height", dh, minimum=1, maximum=1 << 16)
    if w * h > MAX_GRID:
        raise ActorError(f"config 'width' x 'height' ({w}x{h}) is more than {MAX_GRID} cells")
    return w, h


def _f64(grid: np.ndarray) -> bytes:
    return np.ascontiguousarray(grid, dtype="<f8").tobytes()


_NOISE_TYPES = ("perlin", "simplex", "worley", "value", "ridged", "white")


class NoiseGenerator(SyncSdkTemplate):
    """A 2D noise grid: cell ``(x, y)`` samples noise at ``(offsetX + seed + x/width·scale,
    offsetY + y/height·scale)``.

    Ports: in ``scale``, ``seed``, ``offsetX``, ``offsetY`` (numbers overriding config; any
    packet makes a grid) → out ``output`` (Bytes: float64 LE grid), ``metadata`` (Object
    ``{width, height, noiseType, scale, octaves, min, max, dataType: "f64"}``). Config:
    ``noiseType`` (``perlin``, default, and ``simplex``: fBm sums; ``ridged``; ``worley``;
    ``value``; ``white``: per-cell value noise of the seed — reproducible here, where the SDK
    seeds it from the clock), ``width``, ``height`` (default 256), ``octaves`` (1-16, default
    6), ``lacunarity`` (default 2), ``persistence`` (default 0.5), ``scale`` (default 4),
    ``offsetX``, ``offsetY``, ``seed`` (default 0).
    """

    component = "tpl_noise_generator"
    inports = ["scale", "seed", "offsetX", "offsetY"]
    outports = ["output", "metadata"]
    outport_types = {"output": "Bytes", "metadata": "Object"}
    config_defaults = {
        "noiseType": "perlin",
        "width": 256,
        "height": 256,
        "octaves": 6,
        "lacunarity": 2.0,
        "persistence": 0.5,
        "scale": 4.0,
        "offsetX": 0.0,
        "offsetY": 0.0,
        "seed": 0.0,
    }

    def tick(self, ctx: ActorContext) -> None:
        kind = config_choice(ctx, "noiseType", _NOISE_TYPES, "perlin")
        w, h = _grid_dims(ctx)
        scale = _number(ctx, "scale", 4.0, "scale")
        ox, oy = _number(ctx, "offsetX", 0.0, "offsetX"), _number(ctx, "offsetY", 0.0, "offsetY")
        seed = _number(ctx, "seed", 0.0, "seed")
        octaves = config_int(ctx, "octaves", 6, minimum=1, maximum=16)
        lac = float(config_number(ctx, "lacunarity", 2.0, minimum=0, maximum=16))
        pers = float(config_number(ctx, "persistence", 0.5, minimum=0, maximum=4))
        if kind == "white":
            x = (np.arange(w) / w)[None, :] * np.ones((h, 1))
            y = (np.arange(h) / h)[:, None] * np.ones((1, w))
            grid = value_noise(x * 1000, y * 1000, np.full_like(x, seed))
        else:
            x = ox + seed + (np.arange(w) / w * scale)[None, :] * np.ones((h, 1))
            y = oy + (np.arange(h) / h * scale)[:, None] * np.ones((1, w))
            if kind == "perlin":
                grid = _fbm(_perlin, x, y, octaves, lac, pers)
            elif kind == "simplex":
                grid = _fbm(_simplex, x, y, octaves, lac, pers)
            elif kind == "ridged":
                grid = _ridged(_perlin, x, y, octaves, lac, pers)
            elif kind == "worley":
                grid = _worley(x, y)
            else:
                grid = value_noise(x, y, np.zeros_like(x))
        ctx.done(
            {
                "output": Message.bytes(_f64(grid)),
                "metadata": Message.object(
                    {
                        "width": w,
                        "height": h,
                        "noiseType": kind,
                        "scale": scale,
                        "octaves": octaves,
                        "min": float(grid.min()),
                        "max": float(grid.max()),
                        "dataType": "f64",
                    }
                ),
            }
        )


class Voronoi(SyncSdkTemplate):
    """A Voronoi diagram of ``cellCount`` seed points placed by value noise of the seed.

    Ports: in ``seed`` (number overriding config; any packet makes a diagram) → out
    ``distance`` (Bytes: float64 LE grid, distance to the nearest point in units of the
    image width/height), ``cell_id`` (Bytes: uint32 LE grid, index of the nearest point),
    ``metadata`` (Object ``{width, height, cellCount, dataType: "f64"}``). Config: ``width``,
    ``height`` (default 256), ``cellCount`` (1-4096, default 32), ``seed`` (default 0),
    ``mode`` (``distance``, default, or ``cell_id``; both grids are always sent, as in the
    SDK, where the key has no effect).
    """

    component = "tpl_voronoi"
    inports = ["seed"]
    outports = ["distance", "cell_id", "metadata"]
    outport_types = {"distance": "Bytes", "cell_id": "Bytes", "metadata": "Object"}
    config_defaults = {
        "width": 256,
        "height": 256,
        "cellCount": 32,
        "seed": 0.0,
        "mode": "distance",
    }

    def tick(self, ctx: ActorContext) -> None:
        w, h = _grid_dims(ctx)
        n = config_int(ctx, "cellCount", 32, minimum=1, maximum=4096)
        if n * w * h > MAX_VORONOI_WORK:
            raise ActorError(
                f"config 'cellCount' x 'width' x 'height' ({n}x{w}x{h}) is more "
                f"than {MAX_VORONOI_WORK} distance evaluations"
            )
        seed = _number(ctx, "seed", 0.0, "seed")
        config_choice(ctx, "mode", ("distance", "cell_id"), "distance")
        idx = np.arange(n, dtype=np.float64)
        zero = np.zeros(n)
        px = value_noise(idx * 7.13 + seed, zero, zero)
        py = value_noise(zero, idx * 11.37 + seed, zero)
        gx = (np.arange(w) / w)[None, :]
        gy = (np.arange(h) / h)[:, None]
        best = np.full((h, w), np.inf)
        ids = np.zeros((h, w), dtype=np.uint32)
        for i in range(n):  # one pass per point keeps memory at two grids
            d = np.sqrt((gx - px[i]) ** 2 + (gy - py[i]) ** 2)
            closer = d < best
            best = np.where(closer, d, best)
            ids[closer] = i
        ctx.done(
            {
                "distance": Message.bytes(_f64(best)),
                "cell_id": Message.bytes(ids.astype("<u4").tobytes()),
                "metadata": Message.object(
                    {"width": w, "height": h, "cellCount": n, "dataType": "f64"}
                ),
            }
        )


MAX_LSYSTEM = 1 << 22  # symbols of the rewritten string


class LSystem(SyncSdkTemplate):
    """Rewrites an axiom with rules, then walks it with a turtle.

    Rules are ``"A=replacement; B=…"`` (one symbol each side of ``=``). Turtle: ``F``/``G``
    step and draw, ``f``/``g`` step, ``+``/``-`` turn by ``angle`` degrees, ``[``/``]`` push
    and pop (a pop adds a point), starting at (0, 0) facing +y. Ports: in ``axiom`` (String
    overriding config) → out ``output`` (String: the rewritten string), ``points`` (Bytes:
    float64 LE ``x, y`` pairs), ``metadata`` (Object ``{stringLength, pointCount,
    iterations, angle}``). Config: ``axiom`` (default ``"F"``), ``iterations`` (0-32, default
    4), ``angle`` (default 25), ``stepLength`` (default 1), ``rules`` (default
    ``"F=F+F-F-FF+F+F-F"``). A string that would grow past 4 Mi symbols fails the tick.
    """

    component = "tpl_lsystem"
    inports = ["axiom"]
    outports = ["output", "points", "metadata"]
    outport_types = {"output": "String", "points": "Bytes", "metadata": "Object"}
    config_defaults = {
        "axiom": "F",
        "iterations": 4,
        "angle": 25.0,
        "stepLength": 1.0,
        "rules": "F=F+F-F-FF+F+F-F",
    }

    def tick(self, ctx: ActorContext) -> None:
        msg = ctx.inputs.get("axiom")
        if msg is not None and msg["type"] == "String":
            axiom = msg["data"]
        elif msg is not None and msg["type"] not in ("Flow", "Null"):
            raise ActorError(f"in-port 'axiom': expected a String, got {msg['type']}")
        else:
            axiom = config_str(ctx, "axiom", "F")
        iterations = config_int(ctx, "iterations", 4, minimum=0, maximum=32)
        angle = float(config_number(ctx, "angle", 25.0, minimum=-1e6, maximum=1e6))
        step = float(config_number(ctx, "stepLength", 1.0, minimum=-1e9, maximum=1e9))
        rules: dict[str, str] = {}
        for part in config_str(ctx, "rules", "F=F+F-F-FF+F+F-F").split(";"):
            head, sep, body = part.strip().partition("=")
            if sep and head.strip():
                rules[head.strip()[0]] = body.strip()
        text = axiom
        if len(text) > MAX_LSYSTEM:
            raise ActorError(f"in-port 'axiom' is longer than {MAX_LSYSTEM} symbols")
        table = str.maketrans(rules)
        for i in range(iterations):
            lengths = {c: len(rules.get(c, c)) for c in set(text)}
            if sum(lengths[c] * text.count(c) for c in lengths) > MAX_LSYSTEM:
                raise ActorError(
                    f"config 'iterations': after {i} rewrites the string would "
                    f"be longer than {MAX_LSYSTEM} symbols"
                )
            text = text.translate(table)
        rad = math.radians(angle)
        x = y = 0.0
        heading = math.pi / 2
        stack: list[tuple[float, float, float]] = []
        points = [(0.0, 0.0)]
        for ch in text:
            if ch in "FGfg":
                x += math.cos(heading) * step
                y += math.sin(heading) * step
                if ch in "FG":
                    points.append((x, y))
            elif ch == "+":
                heading += rad
            elif ch == "-":
                heading -= rad
            elif ch == "[":
                stack.append((x, y, heading))
            elif ch == "]" and stack:
                x, y, heading = stack.pop()
                points.append((x, y))
        ctx.done(
            {
                "output": Message.string(text),
                "points": Message.bytes(np.array(points, dtype="<f8").tobytes()),
                "metadata": Message.object(
                    {
                        "stringLength": len(text.encode()),
                        "pointCount": len(points),
                        "iterations": iterations,
                        "angle": angle,
                    }
                ),
            }
        )


class ParticleEmitter(SyncSdkTemplate):
    """Particles placed in a sphere, cube or disc, moving outward.

    Per particle, eight float32 LE values: position x, y, z, velocity x, y, z, lifetime, age
    (0); the random numbers are value noise of the index and seed, as in the SDK. Ports: in
    ``count`` (number overriding config), ``trigger`` (any packet) → out ``particles``
    (Bytes, 32 bytes a particle), ``metadata`` (Object ``{count, shape, radius, speed,
    lifetime, format: "pos3_vel3_life_age_f32", stride: 32}``). Config: ``count`` (0-4194304,
    default 1000), ``shape`` (``sphere``, default, ``cube``, ``disc``), ``radius`` (default
    1), ``speed`` (default 1), ``lifetime`` (default 5), ``seed`` (default 0).
    """

    component = "tpl_particle_emitter"
    inports = ["count", "trigger"]
    outports = ["particles", "metadata"]
    outport_types = {"particles": "Bytes", "metadata": "Object"}
    config_defaults = {
        "count": 1000,
        "shape": "sphere",
        "radius": 1.0,
        "speed": 1.0,
        "lifetime": 5.0,
        "seed": 0.0,
    }

    def tick(self, ctx: ActorContext) -> None:
        msg = ctx.inputs.get("count")
        if msg is not None and msg["type"] in ("Integer", "Float"):
            if not math.isfinite(msg["data"]) or not 0 <= msg["data"] <= 1 << 22:
                raise ActorError(f"in-port 'count' must be 0-{1 << 22}, got {msg['data']!r}")
            count = int(msg["data"])
        elif msg is not None and msg["type"] not in ("Flow", "Null"):
            raise ActorError(f"in-port 'count': expected a number, got {msg['type']}")
        else:
            count = config_int(ctx, "count", 1000, minimum=0, maximum=1 << 22)
        shape = config_choice(ctx, "shape", ("sphere", "cube", "disc"), "sphere")
        radius, speed, life, seed = (
            float(config_number(ctx, k, d, minimum=-1e9, maximum=1e9))
            for k, d in (("radius", 1.0), ("speed", 1.0), ("lifetime", 5.0), ("seed", 0.0))
        )
        i = np.arange(count, dtype=np.float64)
        z = np.zeros(count)
        r1 = value_noise(i * 1.37 + seed, z, z)
        r2 = value_noise(z, i * 2.71 + seed, z)
        r3 = value_noise(z, z, i * math.pi + seed)
        if shape == "cube":
            px, py, pz = ((r - 0.5) * 2 * radius for r in (r1, r2, r3))
        elif shape == "disc":
            a, r = r1 * math.tau, np.sqrt(r2) * radius
            px, py, pz = np.cos(a) * r, z, np.sin(a) * r
        else:
            theta, phi, r = r1 * math.tau, np.arccos(1 - 2 * r2), np.cbrt(r3) * radius
            px, py, pz = (
                r * np.sin(phi) * np.cos(theta),
                r * np.cos(phi),
                r * np.sin(phi) * np.sin(theta),
            )
        n = np.maximum(np.sqrt(px * px + py * py + pz * pz), 0.001)
        data = np.stack(
            [
                px,
                py,
                pz,
                px / n * speed * (0.5 + r1 * 0.5),
                py / n * speed * (0.5 + r2 * 0.5),
                pz / n * speed * (0.5 + r3 * 0.5),
                life * (0.5 + r1 * 0.5),
                z,
            ],
            axis=1,
        )
        ctx.done(
            {
                "particles": Message.bytes(data.astype("<f4").tobytes()),
                "metadata": Message.object(
                    {
                        "count": count,
                        "shape": shape,
                        "radius": radius,
                        "speed": speed,
                        "lifetime": life,
                        "format": "pos3_vel3_life_age_f32",
                        "stride": 32,
                    }
                ),
            }
        )


def _luma(rgb: np.ndarray) -> np.ndarray:
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


class ImageToHeightmap(SyncSdkTemplate):
    """An image's luma (0.299 R + 0.587 G + 0.114 B, in 0-1) as a float64 grid.

    Ports: in ``input`` (Bytes: an encoded image Pillow reads, or raw pixels of ``channels``
    bytes each) → out ``output`` (Bytes: float64 LE grid), ``metadata`` (Object ``{width,
    height, dataType: "f64"}``, with ``min``/``max`` for an encoded image), ``error``.
    Config: ``channels`` (raw pixels, 3-4, default 4), ``width`` (raw pixels; default a
    square: the floor of the square root of the pixel count).
    """

    component = "tpl_image_to_heightmap"
    inports = ["input"]
    outports = ["output", "metadata", "error"]
    inport_types = {"input": "Bytes"}
    outport_types = {"output": "Bytes", "metadata": "Object", "error": "Error"}
    config_defaults = {"channels": 4, "width": None}

    def tick(self, ctx: ActorContext) -> None:
        msg = ctx.inputs["input"]
        if msg["type"] != "Bytes":
            raise ActorError(f"in-port 'input': expected Bytes, got {msg['type']}")
        data = bytes(msg["data"])
        channels = config_int(ctx, "channels", 4, minimum=3, maximum=4)
        pixels = self._decoded(data)
        raw = pixels is None
        if pixels is None:
            total = len(data) // channels
            w = config_int(ctx, "width", max(1, math.isqrt(total)), minimum=1, maximum=1 << 16)
            h = total // w
            if h == 0 or w * h > MAX_GRID:
                raise ActorError(
                    f"in-port 'input': {len(data)} bytes make no {w}-wide image "
                    f"of {channels}-byte pixels (config 'width', 'channels')"
                )
            pixels = np.frombuffer(data, np.uint8)[: w * h * channels].reshape(h, w, channels)
        grid = _luma(pixels[..., :3].astype(np.float64) / 255.0)
        h, w = grid.shape
        meta: dict[str, Any] = {"width": w, "height": h, "dataType": "f64"}
        if not raw and grid.size:  # as the SDK: min/max for decoded images only
            meta.update(min=float(grid.min()), max=float(grid.max()))
        ctx.done({"output": Message.bytes(_f64(grid)), "metadata": Message.object(meta)})

    @staticmethod
    def _decoded(data: bytes) -> np.ndarray | None:
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as probe:
                if probe.size[0] * probe.size[1] > MAX_IMAGE_PIXELS:
                    raise ActorError(
                        f"in-port 'input': image {probe.size[0]}x{probe.size[1]}"
                        f" has more than {MAX_IMAGE_PIXELS} pixels"
                    )
                return np.asarray(probe.convert("RGBA"))
        except ActorError:
            raise
        except Exception:  # not an encoded image: raw pixels, as the SDK falls back
            return None


def _terrain(norm: np.ndarray) -> np.ndarray:
    """The SDK's four-band terrain palette (water, grass, rock, snow)."""
    out = np.zeros((*norm.shape, 3))
    water, grass, rock = norm < 0.3, (norm >= 0.3) & (norm < 0.6), (norm >= 0.6) & (norm < 0.85)
    snow = norm >= 0.85
    out[water] = np.stack(
        [np.full(water.sum(), 30.0), np.full(water.sum(), 80.0), 180.0 + norm[water] * 200.0],
        axis=1,
    )
    t = (norm[grass] - 0.3) / 0.3
    out[grass] = np.stack([30.0 + t * 100, 120.0 + t * 60, 40.0 + t * 30], axis=1)
    t = (norm[rock] - 0.6) / 0.25
    out[rock] = np.stack([130.0 + t * 60, 100.0 - t * 40, 50.0 + t * 20], axis=1)
    g = 200.0 + (norm[snow] - 0.85) / 0.15 * 55
    out[snow] = np.stack([g, g, g], axis=1)
    return np.trunc(np.clip(out, 0, 255))


class HeightmapToImage(SyncSdkTemplate):
    """A float64 grid as an RGBA image, normalised from its min..max.

    Ports: in ``input`` (Bytes: float64 LE grid) → out ``output`` (RGBA Bytes), ``metadata``
    (Object ``{width, height, format: "RGBA8", channels: 4, colorMode}``), ``error``.
    Config: ``width`` (default a square: the floor of the square root of the cell count),
    ``colorMode`` (``grayscale``, default, or ``terrain``: water, grass, rock, snow bands).
    NaN cells fail the tick.
    """

    component = "tpl_heightmap_to_image"
    inports = ["input"]
    outports = ["output", "metadata", "error"]
    inport_types = {"input": "Bytes"}
    outport_types = {"output": "Bytes", "metadata": "Object", "error": "Error"}
    config_defaults = {"width": None, "colorMode": "grayscale"}

    def tick(self, ctx: ActorContext) -> None:
        msg = ctx.inputs["input"]
        if msg["type"] != "Bytes":
            raise ActorError(f"in-port 'input': expected Bytes of float64, got {msg['type']}")
        data = bytes(msg["data"])
        mode = config_choice(ctx, "colorMode", ("grayscale", "terrain"), "grayscale")
        grid = np.frombuffer(data[: len(data) // 8 * 8], "<f8")
        total = len(grid)
        if total > MAX_GRID:
            raise ActorError(f"in-port 'input': more than {MAX_GRID} cells")
        if not np.isfinite(grid).all():
            raise ActorError("in-port 'input': the grid has NaN or infinite cells")
        w = config_int(ctx, "width", max(1, math.isqrt(total)), minimum=1, maximum=1 << 16)
        h = total // w
        if h == 0:
            raise ActorError(f"in-port 'input': {total} cells make no row of config 'width' {w}")
        lo, hi = (float(grid.min()), float(grid.max())) if total else (0.0, 0.0)
        span = hi - lo if abs(hi - lo) > 1e-10 else 1.0
        norm = np.clip((grid - lo) / span, 0, 1)
        if mode == "terrain":
            rgb = _terrain(norm)
        else:
            v = np.trunc(norm * 255)
            rgb = np.stack([v, v, v], axis=1)
        rgba = np.concatenate([rgb, np.full((total, 1), 255.0)], axis=1).astype(np.uint8)
        ctx.done(
            {
                "output": Message.bytes(rgba.tobytes()),
                "metadata": Message.object(
                    {"width": w, "height": h, "format": "RGBA8", "channels": 4, "colorMode": mode}
                ),
            }
        )


PROCEDURAL_TEMPLATES: dict[str, type[SyncSdkTemplate]] = {
    cls.component: cls
    for cls in (
        NoiseGenerator,
        Voronoi,
        LSystem,
        ParticleEmitter,
        ImageToHeightmap,
        HeightmapToImage,
    )
}
