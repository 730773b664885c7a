"""What the 2D vector templates share: raw RGBA8 image sizes and colours read from config,
and the W3C compositing formulas of the blend modes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._core._actor import ActorContext
from .._errors import ActorError

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


def _num(p: dict[str, Any], key: str, default: float) -> float:
    v = p.get(key, default)
    if v is None:
        v = default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ActorError(f"config {key!r} must be a number, got {v!r}")
    return float(v)
