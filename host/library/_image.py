"""Image templates on numpy arrays.

Images travel as the ``RFLI`` Bytes encoding of :mod:`reflow.library._media` (a 16-byte
header + HxWxC pixels, uint8 / uint16 / float32). Operations compute in float32 and convert
back to the input's dtype, rounding and clipping to its range (0..255, 0..65535, or 0..1 for
float32 where an operation clips). They run on the worker pool (``execution = "worker"``):
numpy releases the GIL, so several image nodes use several cores.
"""

from __future__ import annotations

import numpy as np

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import ActorError
from ._base import (
    LibraryActor,
    config_bool,
    config_choice,
    config_int,
    config_number,
    config_value,
    input_bytes,
    input_object,
)
from ._media import MAX_PIXELS, decode_image, encode_image

__all__ = ["IMAGE_TEMPLATES"]

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601


def _range(dtype: np.dtype) -> float:
    return float(np.iinfo(dtype).max) if dtype.kind in "ui" else 1.0


def _to_dtype(values: np.ndarray, dtype: np.dtype, clip: bool = True) -> np.ndarray:
    if dtype.kind in "ui":
        return np.clip(np.rint(values), 0, _range(dtype)).astype(dtype)
    return (np.clip(values, 0.0, 1.0) if clip else values).astype(np.float32)


class _ImageActor(LibraryActor):
    inports = ["in"]
    outports = ["out"]
    inport_types = {"in": "Bytes"}
    outport_types = {"out": "Bytes"}
    execution = "worker"

    def process(self, ctx: ActorContext, image: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def run(self, ctx: ActorContext) -> None:
        image = decode_image(ctx.inputs["in"], "in")
        ctx.done({"out": encode_image(self.process(ctx, image))})


class ImageFromRaw(LibraryActor):
    """Builds an image from raw pixels and their shape.

    Ports: in ``pixels`` (Bytes: HxWxC interleaved, row-major, little-endian), ``meta``
    (Object ``{width, height, channels, dtype}``; when not connected, the same keys are read
    from config) → out ``out`` (image). Config: ``width``, ``height``, ``channels`` (1-4,
    default 3), ``dtype`` (``uint8`` default, ``uint16``, ``float32``).
    """

    component = "tpl_image_from_raw"
    inports = ["pixels", "meta"]
    outports = ["out"]
    await_all_inports = True
    inport_types = {"pixels": "Bytes", "meta": "Object"}
    outport_types = {"out": "Bytes"}
    execution = "worker"

    def run(self, ctx: ActorContext) -> None:
        if "meta" in ctx.inputs:
            meta = input_object(ctx, "meta")
            where = "in-port 'meta' field"
        else:
            meta = {k: config_value(ctx, k, None) for k in ("width", "height", "channels", "dtype")}
            where = "config"
        shape = []
        for key in ("width", "height", "channels"):
            value = meta.get(key)
            if value is None and key == "channels":
                value = 3
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < 1
                or (key == "channels" and value > 4)
            ):
                raise ActorError(
                    f"{where} {key!r} must be a positive integer"
                    f"{' (1-4)' if key == 'channels' else ''}, got {value!r}"
                )
            shape.append(value)
        dtype = meta.get("dtype") or "uint8"
        if dtype not in ("uint8", "uint16", "float32"):
            raise ActorError(f"{where} 'dtype' must be uint8, uint16 or float32, got {dtype!r}")
        w, h, c = shape
        if w * h > MAX_PIXELS:
            raise ActorError(f"image {w}x{h} has more than {MAX_PIXELS} pixels")
        np_dtype = np.dtype(dtype).newbyteorder("<")
        data = input_bytes(ctx, "pixels")
        expected = w * h * c * np_dtype.itemsize
        if len(data) != expected:
            raise ActorError(
                f"in-port 'pixels': {w}x{h}x{c} {dtype} needs {expected} bytes, got {len(data)}"
            )
        pixels = np.frombuffer(data, dtype=np_dtype).reshape(h, w, c)
        ctx.done({"out": encode_image(pixels.astype(np.dtype(dtype)))})


class ImageToRaw(LibraryActor):
    """Splits an image into its shape and raw pixels.

    Ports: in ``in`` (image) → out ``meta`` (Object ``{width, height, channels, dtype}``),
    ``pixels`` (Bytes: HxWxC interleaved, little-endian). Config: none.
    """

    component = "tpl_image_to_raw"
    inports = ["in"]
    outports = ["meta", "pixels"]
    inport_types = {"in": "Bytes"}
    outport_types = {"meta": "Object", "pixels": "Bytes"}
    execution = "worker"

    def run(self, ctx: ActorContext) -> None:
        image = decode_image(ctx.inputs["in"], "in")
        h, w, c = image.shape
        ctx.done(
            {
                "meta": Message.object(
                    {"width": w, "height": h, "channels": c, "dtype": image.dtype.name}
                ),
                "pixels": Message.bytes(image.tobytes()),
            }
        )


class ImageInfo(LibraryActor):
    """Describes an image.

    Ports: in ``in`` (image) → out ``out`` (Object ``{width, height, channels, dtype, min,
    max, mean}``; statistics over all channels, in the image's units). Config: none.
    """

    component = "tpl_image_info"
    inports = ["in"]
    outports = ["out"]
    inport_types = {"in": "Bytes"}
    outport_types = {"out": "Object"}
    execution = "worker"

    def run(self, ctx: ActorContext) -> None:
        image = decode_image(ctx.inputs["in"], "in")
        h, w, c = image.shape
        empty = image.size == 0
        ctx.done(
            {
                "out": Message.object(
                    {
                        "width": w,
                        "height": h,
                        "channels": c,
                        "dtype": image.dtype.name,
                        "min": None if empty else float(image.min()),
                        "max": None if empty else float(image.max()),
                        "mean": None if empty else float(image.mean(dtype=np.float64)),
                    }
                )
            }
        )


class ImageGrayscale(_ImageActor):
    """Converts to one-channel luma (ITU-R BT.601: 0.299 R + 0.587 G + 0.114 B).

    Ports: in ``in`` (image, 1-4 channels; alpha is dropped) → out ``out`` (1-channel image,
    same dtype). Config: none.
    """

    component = "tpl_image_grayscale"

    def process(self, ctx: ActorContext, image: np.ndarray) -> np.ndarray:
        c = image.shape[2]
        if c <= 2:
            return image[:, :, :1]
        gray = image[:, :, :3].astype(np.float32) @ _LUMA
        return _to_dtype(gray[:, :, None], image.dtype)


def _resize_nearest(image: np.ndarray, h: int, w: int) -> np.ndarray:
    ys = np.minimum((np.arange(h) + 0.5) * image.shape[0] / h, image.shape[0] - 1).astype(int)
    xs = np.minimum((np.arange(w) + 0.5) * image.shape[1] / w, image.shape[1] - 1).astype(int)
    return image[ys[:, None], xs[None, :]]


def _resize_bilinear(image: np.ndarray, h: int, w: int) -> np.ndarray:
    src = image.astype(np.float32)
    ih, iw = image.shape[:2]
    # pixel centres aligned (as OpenCV / PIL do), clamped at the borders
    y = np.clip((np.arange(h) + 0.5) * ih / h - 0.5, 0, ih - 1)
    x = np.clip((np.arange(w) + 0.5) * iw / w - 0.5, 0, iw - 1)
    y0 = np.floor(y).astype(int)
    x0 = np.floor(x).astype(int)
    y1 = np.minimum(y0 + 1, ih - 1)
    x1 = np.minimum(x0 + 1, iw - 1)
    wy = (y - y0)[:, None, None]
    wx = (x - x0)[None, :, None]
    top = src[y0][:, x0] * (1 - wx) + src[y0][:, x1] * wx
    bottom = src[y1][:, x0] * (1 - wx) + src[y1][:, x1] * wx
    return _to_dtype(top * (1 - wy) + bottom * wy, image.dtype)


class ImageResize(_ImageActor):
    """Resizes an image.

    Ports: in ``in`` (image) → out ``out`` (image). Config: ``width``, ``height`` (ints ≥ 1;
    give one to keep the aspect ratio), ``method`` (``"bilinear"``, default, or
    ``"nearest"``).
    """

    component = "tpl_image_resize"

    def process(self, ctx: ActorContext, image: np.ndarray) -> np.ndarray:
        method = config_choice(ctx, "method", ("bilinear", "nearest"), "bilinear")
        ih, iw = image.shape[:2]
        has_w = ctx.config.get("width") is not None
        has_h = ctx.config.get("height") is not None
        if not (has_w or has_h):
            raise ActorError("config 'width' or 'height' is required")
        if ih == 0 or iw == 0:
            raise ActorError("in-port 'in': cannot resize an empty image")
        w = config_int(ctx, "width", minimum=1) if has_w else None
        h = config_int(ctx, "height", minimum=1) if has_h else None
        if w is None:
            w = max(1, round(iw * h / ih))
        if h is None:
            h = max(1, round(ih * w / iw))
        if w * h > MAX_PIXELS:
            raise ActorError(
                f"config 'width' x 'height' ({w}x{h}) is more than {MAX_PIXELS} pixels"
            )
        if method == "nearest":
            return _resize_nearest(image, h, w)
        return _resize_bilinear(image, h, w)


def _convolve_axis(values: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    r = len(kernel) // 2
    pad = [(0, 0)] * values.ndim
    pad[axis] = (r, r)
    padded = np.pad(values, pad, mode="edge")
    n = values.shape[axis]
    out = np.zeros_like(values)
    for i, k in enumerate(kernel):
        out += k * np.take(padded, np.arange(i, i + n), axis=axis)
    return out


class ImageBlur(_ImageActor):
    """Blurs an image with a separable box or Gaussian kernel (edges repeat the border).

    Ports: in ``in`` (image) → out ``out`` (image). Config: ``method`` (``"gaussian"``,
    default, or ``"box"``), ``radius`` (int 1-64, box: the kernel is 2*radius+1 wide;
    default 1), ``sigma`` (number > 0, gaussian; default 1.0; the kernel spans ±3 sigma, at most
    ±64 pixels).
    """

    component = "tpl_image_blur"

    def process(self, ctx: ActorContext, image: np.ndarray) -> np.ndarray:
        method = config_choice(ctx, "method", ("gaussian", "box"), "gaussian")
        if method == "box":
            r = config_int(ctx, "radius", 1, minimum=1, maximum=64)
            kernel = np.full(2 * r + 1, 1.0 / (2 * r + 1), dtype=np.float32)
        else:
            sigma = config_number(ctx, "sigma", 1.0, minimum=0, exclusive_minimum=True)
            r = min(64, max(1, int(np.ceil(3 * sigma))))
            x = np.arange(-r, r + 1, dtype=np.float32)
            kernel = np.exp(-(x * x) / (2 * sigma * sigma))
            kernel /= kernel.sum()
        values = image.astype(np.float32)
        values = _convolve_axis(_convolve_axis(values, kernel, 0), kernel, 1)
        return _to_dtype(values, image.dtype)


class ImageThreshold(_ImageActor):
    """Binarises an image: pixels at or above ``threshold`` become the maximum, others 0.

    Multi-channel images are converted to luma first. Ports: in ``in`` (image) → out ``out``
    (1-channel image, same dtype). Config: ``threshold`` (number, required, in the image's
    units: 0-255 for uint8, 0-65535 for uint16, 0-1 for float32), ``invert`` (bool, default
    false).
    """

    component = "tpl_image_threshold"

    def process(self, ctx: ActorContext, image: np.ndarray) -> np.ndarray:
        top = _range(image.dtype)
        t = config_number(ctx, "threshold", minimum=0, maximum=top)
        invert = config_bool(ctx, "invert", False)
        if image.shape[2] >= 3:
            gray = image[:, :, :3].astype(np.float32) @ _LUMA
        else:
            gray = image[:, :, 0].astype(np.float32)
        mask = gray >= t
        if invert:
            mask = ~mask
        return (mask[:, :, None] * top).astype(image.dtype)


class ImageFlip(_ImageActor):
    """Mirrors or rotates an image.

    Ports: in ``in`` (image) → out ``out`` (image). Config: ``mode`` (``"horizontal"``,
    default: left-right; ``"vertical"``: top-bottom; ``"both"``; ``"rotate90"``,
    ``"rotate180"``, ``"rotate270"``: counter-clockwise; ``"transpose"``).
    """

    component = "tpl_image_flip"

    def process(self, ctx: ActorContext, image: np.ndarray) -> np.ndarray:
        mode = config_choice(
            ctx,
            "mode",
            ("horizontal", "vertical", "both", "rotate90", "rotate180", "rotate270", "transpose"),
            "horizontal",
        )
        if mode == "horizontal":
            return image[:, ::-1]
        if mode == "vertical":
            return image[::-1]
        if mode in ("both", "rotate180"):
            return image[::-1, ::-1]
        if mode == "transpose":
            return image.transpose(1, 0, 2)
        return np.rot90(image, 1 if mode == "rotate90" else 3, axes=(0, 1))


class ImageCrop(_ImageActor):
    """Cuts out a rectangle.

    Ports: in ``in`` (image) → out ``out`` (image). Config: ``x``, ``y`` (ints ≥ 0, the top
    left corner, default 0), ``width``, ``height`` (ints ≥ 1, required). The rectangle must
    lie inside the image.
    """

    component = "tpl_image_crop"

    def process(self, ctx: ActorContext, image: np.ndarray) -> np.ndarray:
        x = config_int(ctx, "x", 0, minimum=0)
        y = config_int(ctx, "y", 0, minimum=0)
        w = config_int(ctx, "width", minimum=1)
        h = config_int(ctx, "height", minimum=1)
        ih, iw = image.shape[:2]
        if x + w > iw or y + h > ih:
            raise ActorError(
                f"config crop x={x} y={y} width={w} height={h} reaches outside "
                f"the {iw}x{ih} image on in-port 'in'"
            )
        return image[y : y + h, x : x + w]


class ImageAdjust(_ImageActor):
    """Changes brightness and contrast: ``out = (in - mid) * contrast + mid + brightness``.

    Alpha (channel 2 of 2, 4 of 4) is left alone. Ports: in ``in`` (image) → out ``out``
    (image, same dtype, clipped). Config: ``brightness`` (number -1…1, a fraction of the full
    range, default 0), ``contrast`` (number ≥ 0, default 1: 0 gives flat grey).
    """

    component = "tpl_image_adjust"

    def process(self, ctx: ActorContext, image: np.ndarray) -> np.ndarray:
        brightness = config_number(ctx, "brightness", 0, minimum=-1, maximum=1)
        contrast = config_number(ctx, "contrast", 1, minimum=0)
        top = _range(image.dtype)
        c = image.shape[2]
        colour = c - 1 if c in (2, 4) else c
        values = image.astype(np.float32)
        mid = top / 2
        values[:, :, :colour] = (values[:, :, :colour] - mid) * contrast + mid + brightness * top
        return _to_dtype(values, image.dtype)


def _pnm_token(data: bytes, pos: int) -> tuple[bytes, int]:
    while pos < len(data):
        ch = data[pos : pos + 1]
        if ch == b"#":
            end = data.find(b"\n", pos)
            pos = len(data) if end < 0 else end + 1
        elif ch.isspace():
            pos += 1
        else:
            break
    start = pos
    while pos < len(data) and not data[pos : pos + 1].isspace() and data[pos : pos + 1] != b"#":
        pos += 1
    return data[start:pos], pos


class ImageDecodePnm(LibraryActor):
    """Decodes a binary PGM (``P5``) or PPM (``P6``) file into an image.

    Ports: in ``in`` (Bytes of the file) → out ``out`` (image: 1 or 3 channels, uint8, or
    uint16 when the file's maxval is above 255; samples are scaled to the full range).
    Config: none.
    """

    component = "tpl_image_decode_pnm"
    inports = ["in"]
    outports = ["out"]
    inport_types = {"in": "Bytes"}
    outport_types = {"out": "Bytes"}
    execution = "worker"

    def run(self, ctx: ActorContext) -> None:
        data = input_bytes(ctx, "in")
        magic, pos = _pnm_token(data, 0)
        if magic not in (b"P5", b"P6"):
            raise ActorError("in-port 'in': not a binary PGM/PPM file (expected P5 or P6)")
        fields = []
        for _ in range(3):
            tok, pos = _pnm_token(data, pos)
            if not tok.isdigit():
                raise ActorError(f"in-port 'in': bad PNM header field {tok[:20]!r}")
            fields.append(int(tok))
        w, h, maxval = fields
        if not 0 < maxval < 65536 or w * h > MAX_PIXELS:
            raise ActorError(f"in-port 'in': unsupported PNM {w}x{h} maxval {maxval}")
        pos += 1  # exactly one whitespace byte after maxval
        c = 3 if magic == b"P6" else 1
        dtype = np.dtype(">u2") if maxval > 255 else np.dtype("u1")
        need = w * h * c * dtype.itemsize
        if len(data) - pos < need:
            raise ActorError(
                f"in-port 'in': PNM {w}x{h} needs {need} pixel bytes, got {len(data) - pos}"
            )
        pixels = np.frombuffer(data, dtype=dtype, count=w * h * c, offset=pos).reshape(h, w, c)
        out_dtype = np.dtype(np.uint16 if maxval > 255 else np.uint8)
        if maxval != _range(out_dtype):
            pixels = _to_dtype(pixels.astype(np.float32) * (_range(out_dtype) / maxval), out_dtype)
        ctx.done({"out": encode_image(pixels.astype(out_dtype))})


class ImageEncodePnm(LibraryActor):
    """Encodes an image as a binary PGM (1 channel) or PPM (3 channels) file.

    Ports: in ``in`` (image; alpha is dropped, 2-channel gray+alpha gives PGM; float32 is
    scaled to 0..255) → out ``out`` (Bytes of the file). Config: none.
    """

    component = "tpl_image_encode_pnm"
    inports = ["in"]
    outports = ["out"]
    inport_types = {"in": "Bytes"}
    outport_types = {"out": "Bytes"}
    execution = "worker"

    def run(self, ctx: ActorContext) -> None:
        image = decode_image(ctx.inputs["in"], "in")
        if image.dtype == np.float32:
            image = _to_dtype(image * 255.0, np.dtype(np.uint8))
        c = image.shape[2]
        image = image[:, :, :1] if c <= 2 else image[:, :, :3]
        h, w, c = image.shape
        maxval = int(_range(image.dtype))
        header = f"{'P6' if c == 3 else 'P5'}\n{w} {h}\n{maxval}\n".encode()
        body = image.astype(">u2").tobytes() if image.dtype == np.uint16 else image.tobytes()
        ctx.done({"out": Message.bytes(header + body)})


IMAGE_TEMPLATES: dict[str, type[LibraryActor]] = {
    cls.component: cls
    for cls in (
        ImageFromRaw,
        ImageToRaw,
        ImageInfo,
        ImageGrayscale,
        ImageResize,
        ImageBlur,
        ImageThreshold,
        ImageFlip,
        ImageCrop,
        ImageAdjust,
        ImageDecodePnm,
        ImageEncodePnm,
    )
}
