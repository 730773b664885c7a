"""numpy templates that the GPU templates of issue #16 are twins of, where the library had
none in the same form, and the config readers both sides share (same keys, same errors).

- ``tpl_image_convolve``: a 3x3 or 5x5 kernel from config, edge modes clamp/zero/wrap/reflect;
- ``tpl_image_color_matrix``: a 3x4 (RGB) or 4x5 (RGBA) colour matrix;
- ``tpl_image_chroma_key`` / ``tpl_image_blend``: ``tpl_chroma_key`` / ``tpl_blend_mode``'s
  pixel math on RFLI image messages (the originals take raw Streams / raw RGBA Bytes);
- ``tpl_audio_fir``: a causal FIR filter, taps from config; ``tpl_audio_mix_n``:
  ``tpl_audio_mix`` over up to eight inputs;
- ``tpl_array_expression`` / ``tpl_array_reduce``: elementwise expressions
  (:mod:`._gpu_exprlang`) and sum/min/max/mean over raw float32 arrays.

Arrays travel as Bytes of little-endian float32 values (a GPU node's ``Gpu`` array message
reads back to the same).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import ActorError
from ._base import LibraryActor, config_bool, config_choice, config_number, config_value
from ._canvas_pixels import blend, blend_mode
from ._gpu_exprlang import ARRAY_PORTS, compile_expression, constants_of
from ._image import _to_dtype
from ._image_streams import ChromaKey
from ._media import decode_audio, decode_image, encode_audio, encode_image

__all__ = [
    "EDGES",
    "GPU_TWIN_TEMPLATES",
    "MIX_PORTS",
    "REDUCTIONS",
    "chroma_settings",
    "color_matrix",
    "conv_kernel",
    "decode_array",
    "fir_taps",
    "mix_gains",
    "mix_shape",
]

EDGES = ("clamp", "zero", "wrap", "reflect")
MIX_PORTS = ("a", "b", "c", "d", "e", "f", "g", "h")
REDUCTIONS = ("sum", "min", "max", "mean")
MAX_TAPS = 4096


def _numbers(value: Any) -> list[float] | None:
    """``value`` flattened (a list, or a list of equal-length lists) if every item is a
    finite number; None otherwise."""
    if not isinstance(value, list):
        return None
    rows = value if value and all(isinstance(r, list) for r in value) else [value]
    if len({len(r) for r in rows}) != 1:
        return None
    flat = [v for r in rows for v in r]
    if not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in flat
    ):
        return None
    return [float(v) for v in flat]


# -- config shared by both sides ---------------------------------------------------------
def conv_kernel(ctx: ActorContext) -> tuple[np.ndarray, str]:
    """(size x size float32 weights divided by ``divisor``, edge mode)."""
    raw = config_value(ctx, "kernel")
    flat = _numbers(raw)
    if flat is None or len(flat) not in (9, 25):
        raise ActorError(
            "config 'kernel' must be a 3x3 or 5x5 matrix of finite numbers (nested lists, "
            f"or a flat list of 9 or 25), got {str(raw)[:60]}"
        )
    divisor = config_number(ctx, "divisor", 1.0)
    if divisor == 0:
        raise ActorError("config 'divisor' must not be 0")
    size = 3 if len(flat) == 9 else 5
    weights = (np.asarray(flat, dtype=np.float64) / float(divisor)).astype(np.float32)
    return weights.reshape(size, size), config_choice(ctx, "edge", EDGES, "clamp")


def color_matrix(ctx: ActorContext, channels: int, port: str = "in") -> np.ndarray:
    """The (m, m + 1) float32 matrix (last column: offsets in 0-1 units) for an image of
    ``channels``: 3x3/3x4 applies to RGB (alpha kept), 4x4/4x5 to RGBA."""
    raw = config_value(ctx, "matrix")
    flat = _numbers(raw)
    shapes = {9: (3, 3), 12: (3, 4), 16: (4, 4), 20: (4, 5)}
    rows = len(raw) if isinstance(raw, list) and raw and isinstance(raw[0], list) else None
    if (
        flat is None
        or len(flat) not in shapes
        or (rows is not None and rows != shapes[len(flat)][0])
    ):
        raise ActorError(
            "config 'matrix' must be a 3x3, 3x4, 4x4 or 4x5 matrix of finite numbers "
            f"(rows of output channels; the last column of 3x4/4x5 adds offsets), got "
            f"{str(raw)[:60]}"
        )
    m, cols = shapes[len(flat)]
    if channels < m:
        raise ActorError(
            f"in-port {port!r}: a {m}x{cols} colour matrix needs an image of {m}+ channels, "
            f"got {channels}"
        )
    full = np.zeros((m, m + 1), dtype=np.float32)
    full[:, :cols] = np.asarray(flat, dtype=np.float32).reshape(m, cols)
    return full


def chroma_settings(ctx: ActorContext) -> tuple[float, float, float]:
    """(key hue in degrees, tolerance in degrees, spill suppression), as tpl_chroma_key."""
    ChromaKey().settings(ctx)
    key = 240.0 if config_choice(ctx, "keyColor", ("green", "blue"), "green") == "blue" else 120.0
    return (
        key,
        float(config_number(ctx, "tolerance", 0.3)) * 100.0,
        float(config_number(ctx, "spillSuppression", 0.5)),
    )


def check_chroma_image(shape: tuple[int, ...], dtype: str, port: str) -> None:
    if dtype != "uint8" or shape[2] not in (3, 4):
        raise ActorError(
            f"in-port {port!r}: chroma key needs an 8-bit RGB or RGBA image, got "
            f"{shape[2]} channel(s) of {dtype}"
        )


def check_blend_pair(base: tuple[tuple[int, ...], str], over: tuple[tuple[int, ...], str]) -> None:
    for port, (shape, dtype) in (("base", base), ("overlay", over)):
        if dtype != "uint8" or shape[2] != 4:
            raise ActorError(
                f"in-port {port!r}: blending needs an 8-bit RGBA image, got {shape[2]} "
                f"channel(s) of {dtype}"
            )
    if base[0] != over[0]:
        raise ActorError(
            f"in-ports 'base' ({base[0][1]}x{base[0][0]}) and 'overlay' ({over[0][1]}x"
            f"{over[0][0]}) differ in size; resize one with tpl_image_resize"
        )


def fir_taps(ctx: ActorContext) -> np.ndarray:
    raw = config_value(ctx, "taps")
    flat = _numbers(raw)
    if flat is None or not 1 <= len(flat) <= MAX_TAPS or (raw and isinstance(raw[0], list)):
        raise ActorError(
            f"config 'taps' must be a list of 1..{MAX_TAPS} finite numbers, got {str(raw)[:60]}"
        )
    return np.asarray(flat, dtype=np.float64)


def mix_gains(ctx: ActorContext) -> list[tuple[str, float]]:
    """(port, gain) of every in-port with a signal this tick, in port order."""
    ports = [p for p in MIX_PORTS if p in ctx.inputs]
    gains = [(p, float(config_number(ctx, f"gain_{p}", 1.0))) for p in MIX_PORTS]
    if not ports:
        raise ActorError(f"no signal on any in-port ({', '.join(MIX_PORTS)}): nothing to mix")
    return [(p, g) for p, g in gains if p in ports]


def mix_shape(signals: list[tuple[str, int, int, int]]) -> tuple[int, int, int]:
    """(frames, channels, rate) of the mix of ``(port, frames, channels, rate)``; errors name
    both ports that do not fit together."""
    first, _, _, rate = signals[0]
    for port, _, _, r in signals[1:]:
        if r != rate:
            raise ActorError(
                f"in-ports {first!r} ({rate} Hz) and {port!r} ({r} Hz) differ in sample "
                "rate; resample one with tpl_audio_resample"
            )
    channels = max(c for _, _, c, _ in signals)
    for port, _, c, _ in signals:
        if c not in (1, channels):
            wide = next(p for p, _, cc, _ in signals if cc == channels)
            raise ActorError(
                f"in-ports {wide!r} ({channels} channels) and {port!r} ({c} channels) cannot "
                "be mixed; only mono mixes into more channels"
            )
    return max(f for _, f, _, _ in signals), channels, rate


def decode_array(msg: Any, port: str) -> np.ndarray:
    """The float32 values of an array message (Bytes of float32 LE, or a Gpu array)."""
    if msg is None:
        raise ActorError(f"in-port {port!r}: no array arrived (the expression reads it)")
    if isinstance(msg, dict) and msg.get("type") == "Gpu":
        handle = msg["data"]
        if getattr(handle, "codec", None) != "array":
            raise ActorError(f"in-port {port!r}: expected a GPU array, got {handle!r}")
        msg = handle.to_message()
    if not isinstance(msg, dict) or msg.get("type") != "Bytes":
        kind = msg.get("type") if isinstance(msg, dict) else type(msg).__name__
        raise ActorError(f"in-port {port!r}: expected Bytes of float32 values, got {kind}")
    data = bytes(msg["data"])
    if len(data) % 4:
        raise ActorError(
            f"in-port {port!r}: {len(data)} bytes is not a whole number of float32 values"
        )
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


def array_message(values: np.ndarray) -> Message:
    return Message.bytes(np.ascontiguousarray(values, dtype="<f4").tobytes())


def same_lengths(lengths: dict[str, int]) -> int:
    ports = sorted(lengths)
    for port in ports[1:]:
        if lengths[port] != lengths[ports[0]]:
            raise ActorError(
                f"in-ports {ports[0]!r} ({lengths[ports[0]]} values) and {port!r} "
                f"({lengths[port]} values) differ in length"
            )
    return lengths[ports[0]]


def reduction(ctx: ActorContext) -> str:
    return config_choice(ctx, "op", REDUCTIONS, "sum")


def reduce_result(op: str, n: int, total: float, lo: float, hi: float) -> Message:
    if n == 0:
        if op == "sum":
            return Message.float(0.0)
        raise ActorError(f"in-port 'in': the {op} of an empty array is not defined")
    value = {"sum": total, "min": lo, "max": hi, "mean": total / n if n else math.nan}[op]
    return Message.float(float(value))


# -- image twins ---------------------------------------------------------------------------
def _edge_index(idx: np.ndarray, n: int, edge: str) -> np.ndarray:
    """Source indices for ``idx`` (may be out of 0..n-1); -1 where ``edge`` is zero."""
    if edge == "clamp":
        return np.clip(idx, 0, n - 1)
    if edge == "zero":
        return np.where((idx >= 0) & (idx < n), idx, -1)
    if edge == "wrap":
        return np.mod(idx, n)
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    m = np.mod(idx, period)
    return np.where(m < n, m, period - m)


class _Image1(LibraryActor):
    inports = ["in"]
    outports = ["out"]
    inport_types = {"in": "Bytes"}
    outport_types = {"out": "Bytes"}
    execution = "worker"


class ImageConvolve(_Image1):
    """Convolves an image with a 3x3 or 5x5 kernel (applied as written, as a correlation:
    ``out[y, x] = Σ kernel[i][j] * in[y + i - r, x + j - r]``), every channel, rounded and
    clipped to the dtype.

    Ports: in ``in`` (image) → out ``out`` (image). Config: ``kernel`` (required: 3x3 or
    5x5 nested lists of numbers, or a flat list of 9 or 25), ``divisor`` (number ≠ 0,
    default 1: the weights are divided by it), ``edge`` (``"clamp"``, default: the border
    repeats; ``"zero"``; ``"wrap"``; ``"reflect"``: mirrored without repeating the border).
    """

    component = "tpl_image_convolve"

    def run(self, ctx: ActorContext) -> None:
        weights, edge = conv_kernel(ctx)
        image = decode_image(ctx.inputs.get("in"), "in")
        h, w, _ = image.shape
        size = weights.shape[0]
        r = size // 2
        src = image.astype(np.float32)
        acc = np.zeros(image.shape, dtype=np.float32)
        if h and w:
            for i in range(size):
                ys = _edge_index(np.arange(h) + i - r, h, edge)
                for j in range(size):
                    xs = _edge_index(np.arange(w) + j - r, w, edge)
                    part = src[np.maximum(ys, 0)][:, np.maximum(xs, 0)]
                    if edge == "zero":
                        part = part * ((ys >= 0)[:, None, None] & (xs >= 0)[None, :, None])
                    acc += weights[i, j] * part
        ctx.done({"out": encode_image(_to_dtype(acc, image.dtype))})


class ImageColorMatrix(_Image1):
    """Multiplies every pixel's colour by a matrix: ``out[k] = Σ m[k][j] * in[j] + m[k][last]
    * top`` (top: 255, 65535 or 1), rounded and clipped to the dtype.

    Ports: in ``in`` (image of 3+ channels) → out ``out`` (image). Config: ``matrix``
    (required: 3x3 or 3x4 for RGB, alpha kept; 4x4 or 4x5 for RGBA; the 4th/5th column is
    an offset in 0-1 units; e.g. sepia, channel swaps, saturation).
    """

    component = "tpl_image_color_matrix"

    def run(self, ctx: ActorContext) -> None:
        image = decode_image(ctx.inputs.get("in"), "in")
        m = color_matrix(ctx, image.shape[2])
        k = m.shape[0]
        top = np.float32(1.0 if image.dtype == np.float32 else np.iinfo(image.dtype).max)
        src = image.astype(np.float32)
        out = src.copy()
        for row in range(k):
            acc = np.zeros(image.shape[:2], dtype=np.float32)
            for j in range(k):
                acc += m[row, j] * src[:, :, j]
            out[:, :, row] = acc + m[row, k] * top
        ctx.done({"out": encode_image(_to_dtype(out, image.dtype))})


class ImageChromaKey(_Image1):
    """``tpl_chroma_key`` on an image message: green/blue-screen pixels lose alpha.

    Ports: in ``in`` (8-bit RGB or RGBA image) → out ``out`` (8-bit RGBA image). Config:
    as ``tpl_chroma_key``: ``keyColor`` (``"green"``, default, or ``"blue"``),
    ``tolerance`` (0-1.8, default 0.3 = 30°), ``spillSuppression`` (0-1, default 0.5).
    """

    component = "tpl_image_chroma_key"

    def run(self, ctx: ActorContext) -> None:
        chroma_settings(ctx)
        image = decode_image(ctx.inputs.get("in"), "in")
        check_chroma_image(image.shape, image.dtype.name, "in")
        ctx.done({"out": encode_image(ChromaKey().process(ctx, image))})


class ImageBlend(LibraryActor):
    """``tpl_blend_mode``'s blend of ``overlay`` onto ``base`` on image messages.

    Ports: in ``base``, ``overlay`` (8-bit RGBA images of one size; waits for both) → out
    ``out`` (8-bit RGBA image). Config: as ``tpl_blend_mode``: ``mode`` (``normal``,
    default, ``multiply``, ``screen``, ``overlay``, ``add``, ``softlight``, ``hardlight``,
    ``difference``, ``exclusion``, ``colordodge``, ``colorburn``, ``darken``, ``lighten``,
    ``subtract``, ``divide``), ``opacity`` (0-1, default 1).
    """

    component = "tpl_image_blend"
    inports = ["base", "overlay"]
    outports = ["out"]
    inport_types = {"base": "Bytes", "overlay": "Bytes"}
    outport_types = {"out": "Bytes"}
    await_all_inports = True
    execution = "worker"

    def run(self, ctx: ActorContext) -> None:
        mode = blend_mode(config_value(ctx, "mode", "normal"), "config 'mode'")
        opacity = float(config_number(ctx, "opacity", 1.0, minimum=0, maximum=1))
        base = decode_image(ctx.inputs.get("base"), "base")
        over = decode_image(ctx.inputs.get("overlay"), "overlay")
        check_blend_pair((base.shape, base.dtype.name), (over.shape, over.dtype.name))
        ctx.done({"out": encode_image(blend(base, over, mode, opacity))})


# -- audio twins ---------------------------------------------------------------------------
class AudioFir(LibraryActor):
    """A causal FIR filter: ``out[n] = Σ taps[k] * in[n - k]`` per channel (silence before
    the start; the output has the input's length), computed in float64.

    Ports: in ``in`` (audio) → out ``out`` (audio). Config: ``taps`` (required: a list of
    1-4096 numbers), ``clip`` (bool, default false: limit to -1…1).
    """

    component = "tpl_audio_fir"
    inports = ["in"]
    outports = ["out"]
    inport_types = {"in": "Bytes"}
    outport_types = {"out": "Bytes"}
    execution = "worker"

    def run(self, ctx: ActorContext) -> None:
        taps = fir_taps(ctx)
        clip = config_bool(ctx, "clip", False)
        x, rate = decode_audio(ctx.inputs.get("in"), "in")
        out = np.zeros(x.shape, dtype=np.float64)
        for c in range(x.shape[1]):
            if len(x):
                out[:, c] = np.convolve(x[:, c].astype(np.float64), taps)[: len(x)]
        if clip:
            out = np.clip(out, -1.0, 1.0)
        ctx.done({"out": encode_audio(out.astype(np.float32), rate)})


class AudioMixN(LibraryActor):
    """``tpl_audio_mix`` over up to eight signals: ``out = Σ in_p * gain_p``.

    The same sample rate everywhere; mono signals spread over the others' channels; shorter
    ones padded with silence. Ports: in ``a``, ``b``, ``c``, ``d``, ``e``, ``f``, ``g``,
    ``h`` (audio; waits for every connected one) → out ``out`` (audio). Config: ``gain_a``
    … ``gain_h`` (numbers, default 1), ``clip`` (bool, default false).
    """

    component = "tpl_audio_mix_n"
    inports = list(MIX_PORTS)
    outports = ["out"]
    inport_types = dict.fromkeys(MIX_PORTS, "Bytes")
    outport_types = {"out": "Bytes"}
    await_all_inports = True
    execution = "worker"

    def run(self, ctx: ActorContext) -> None:
        gains = mix_gains(ctx)
        clip = config_bool(ctx, "clip", False)
        signals = [(p, *decode_audio(ctx.inputs[p], p), g) for p, g in gains]
        frames, channels, rate = mix_shape([(p, len(x), x.shape[1], r) for p, x, r, _ in signals])
        out = np.zeros((frames, channels), dtype=np.float32)
        for _, x, _, g in signals:
            out[: len(x)] += x * np.float32(g)
        if clip:
            out = np.clip(out, -1.0, 1.0)
        ctx.done({"out": encode_audio(out, rate)})


# -- array twins ---------------------------------------------------------------------------
def check_expression(node_id: str, config: dict[str, Any]) -> None:
    """Configure time: the node's expression compiles and its constants are there."""
    if config.get("expression") is None:
        raise ActorError(f"node {node_id!r}: config 'expression' is required")
    try:
        constants_of(config, compile_expression(config["expression"]))
    except ActorError as exc:
        raise ActorError(f"node {node_id!r}: {exc}") from None


class ArrayExpression(LibraryActor):
    """Evaluates an expression elementwise over float32 arrays (numpy, float32 throughout).

    Ports: in ``a``, ``b``, ``c``, ``d`` (Bytes of float32 LE values, one length; waits for
    every connected one) → out ``out`` (Bytes of float32 values). Config: ``expression``
    (required; the safe expression language: ``$.a`` … ``$.d`` name the in-ports,
    ``$.<name>`` a constant; numbers, ``+ - * / %``, comparisons, ``and``/``or``/``not``,
    ``abs``/``min``/``max``/``round``/``int``/``float``; anything else fails when the node
    is made), ``constants`` (object of numbers).
    """

    component = "tpl_array_expression"
    inports = list(ARRAY_PORTS)
    outports = ["out"]
    inport_types = dict.fromkeys(ARRAY_PORTS, "Bytes")
    outport_types = {"out": "Bytes"}
    await_all_inports = True
    execution = "worker"

    def open_node(self, node_id: str, config: dict[str, Any]) -> LibraryActor:
        check_expression(node_id, config)
        return self

    def run(self, ctx: ActorContext) -> None:
        program = compile_expression(config_value(ctx, "expression"))
        constants = constants_of(ctx.config, program)
        arrays = {p: decode_array(ctx.inputs.get(p), p) for p in program.ports}
        same_lengths({p: len(v) for p, v in arrays.items()})
        ctx.done({"out": array_message(program.evaluate(arrays, constants))})


class ArrayReduce(LibraryActor):
    """Reduces a float32 array to one number, in float64.

    Ports: in ``in`` (Bytes of float32 LE values) → out ``out`` (Float; NaN if a value is
    NaN). Config: ``op`` (``"sum"``, default, ``"min"``, ``"max"``, ``"mean"``; only the
    sum of an empty array is defined: 0).
    """

    component = "tpl_array_reduce"
    inports = ["in"]
    outports = ["out"]
    inport_types = {"in": "Bytes"}
    outport_types = {"out": "Float"}
    execution = "worker"

    def run(self, ctx: ActorContext) -> None:
        op = reduction(ctx)
        values = decode_array(ctx.inputs.get("in"), "in").astype(np.float64)
        if values.size == 0:
            ctx.done({"out": reduce_result(op, 0, 0.0, 0.0, 0.0)})
            return
        total, lo, hi = float(values.sum()), float(values.min()), float(values.max())
        ctx.done({"out": reduce_result(op, values.size, total, lo, hi)})


GPU_TWIN_TEMPLATES: dict[str, type[LibraryActor]] = {
    cls.component: cls
    for cls in (
        ImageConvolve,
        ImageColorMatrix,
        ImageChromaKey,
        ImageBlend,
        AudioFir,
        AudioMixN,
        ArrayExpression,
        ArrayReduce,
    )
}
