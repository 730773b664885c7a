"""The SDK's image templates: codecs through Pillow and pixel operations on raw image Streams.

A raw image travels as a Stream (content type ``image/raw-rgba`` or ``image/raw-gray``) whose
``begin`` frame carries ``{width, height, channels, format}`` and whose data frames are rows of
8-bit pixels, as ``tpl_image_decode`` writes it. Without ``width``/``height`` a square image
is assumed (as the SDK does); pixel bytes that do not fill ``width x height x channels`` fail
the tick naming the in-port. ``tpl_image_resize`` also still takes the library's own RFLI
image on ``in`` (answering on ``out``), as before it had the SDK's ports.
"""

from __future__ import annotations

import asyncio
import base64
import io
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import ActorError
from ._base import config_choice, config_int, config_number, config_str, config_value
from ._image import ImageResize as _RfliResize
from ._sdk import SdkTemplate, StreamData, read_stream, write_stream

__all__ = ["IMAGE_STREAM_TEMPLATES", "load_source", "pil_image", "raw_image"]

MAX_IMAGE_PIXELS = 1 << 25  # 32 Mpx: a larger image (or decompression bomb) fails its tick
_STREAM_DOC = (
    "raw image Stream: ``begin`` metadata ``{width, height, channels, format}``, "
    "rows of 8-bit pixels"
)


def pil_image(data: bytes, port: str) -> Any:
    """The decoded Pillow image of encoded bytes; anything Pillow refuses, or an image of more
    than MAX_IMAGE_PIXELS, fails naming ``port``."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as probe:
            w, h = probe.size
            if w * h > MAX_IMAGE_PIXELS:
                raise ActorError(
                    f"in-port {port!r}: image {w}x{h} has more than {MAX_IMAGE_PIXELS} pixels"
                )
            probe.load()
            return probe.copy()
    except ActorError:
        raise
    except Image.DecompressionBombError as exc:
        raise ActorError(
            f"in-port {port!r}: the image has more than {MAX_IMAGE_PIXELS} pixels ({exc})"
        ) from exc
    except Exception as exc:  # Pillow raises many kinds (OSError, SyntaxError, ...)
        text = re.sub(r"<[^>]*object at 0x[0-9a-f]+>", "the bytes", str(exc))
        raise ActorError(
            f"in-port {port!r}: not a decodable image ({type(exc).__name__}: {text})"
        ) from exc


def raw_image(stream: StreamData, port: str, channels_default: int = 4) -> np.ndarray:
    """The (H, W, C) uint8 pixels of a raw image stream."""
    meta = stream.metadata
    data = stream.data
    c = meta.get("channels", channels_default)
    if isinstance(c, bool) or not isinstance(c, int) or not 1 <= c <= 4:
        raise ActorError(f"in-port {port!r}: stream metadata 'channels' must be 1-4, got {c!r}")
    w, h = meta.get("width"), meta.get("height")
    if w is None and h is None:
        side = math.isqrt(len(data) // c)
        w = h = side
    for key, v in (("width", w), ("height", h)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ActorError(
                f"in-port {port!r}: stream metadata {key!r} must be an integer >= 0, got {v!r}"
            )
    assert isinstance(w, int) and isinstance(h, int)
    if w * h > MAX_IMAGE_PIXELS:
        raise ActorError(f"in-port {port!r}: image {w}x{h} has more than {MAX_IMAGE_PIXELS} pixels")
    if len(data) != w * h * c:
        raise ActorError(
            f"in-port {port!r}: a {w}x{h} image of {c} channels needs "
            f"{w * h * c} bytes, the stream has {len(data)}"
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(h, w, c)


_FORMATS = {1: "Gray8", 2: "GrayAlpha8", 3: "RGB8", 4: "RGBA8"}


def image_stream(
    ctx: ActorContext,
    pixels: np.ndarray,
    port: str = "stream",
    base_meta: dict[str, Any] | None = None,
) -> Message:
    """A raw image Stream of ``pixels`` (H, W, C uint8), one data frame per row."""
    h, w, c = pixels.shape
    meta = dict(base_meta or {})
    meta.update({"width": w, "height": h, "channels": c, "format": _FORMATS[c]})
    content_type = "image/raw-gray" if c <= 2 else "image/raw-rgba"
    rows = [pixels[y].tobytes() for y in range(h)]
    return write_stream(ctx, port, rows, content_type, meta)


def _rgb_alpha(pixels: np.ndarray, port: str) -> tuple[np.ndarray, np.ndarray | None]:
    c = pixels.shape[2]
    if c not in (3, 4):
        raise ActorError(f"in-port {port!r}: expected an RGB or RGBA image, got {c} channel(s)")
    return pixels[:, :, :3].astype(np.float32), (pixels[:, :, 3:] if c == 4 else None)


def _gray8(rgb: np.ndarray) -> np.ndarray:
    """The SDK's integer luma: (77 R + 150 G + 29 B) >> 8."""
    r, g, b = (rgb[:, :, i].astype(np.uint32) for i in range(3))
    return ((77 * r + 150 * g + 29 * b) >> 8).astype(np.float32)


def _u8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


class _StreamImage(SdkTemplate):
    """A pixel operation from one raw image Stream on ``stream`` to another."""

    inports = ["stream"]
    outports = ["stream", "error"]
    inport_types = {"stream": "Stream"}
    outport_types = {"stream": "Stream", "error": "Error"}

    def process(self, ctx: ActorContext, pixels: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def settings(self, ctx: ActorContext) -> None:
        """Check config before the stream is read, so bad config fails first."""

    async def tick(self, ctx: ActorContext) -> None:
        self.settings(ctx)
        stream = await read_stream(ctx, "stream")
        pixels = raw_image(stream, "stream")
        out = await asyncio.to_thread(self.process, ctx, pixels)
        ctx.done({"stream": image_stream(ctx, out, base_meta=stream.metadata)})


class ImageDecode(SdkTemplate):
    """Decodes a PNG, JPEG, WebP, GIF (first frame), BMP or TIFF image (through Pillow).

    Ports: in ``input`` (Bytes: the encoded image) → out ``stream`` ({stream}; RGBA),
    ``error`` (Error: the same text the failed tick records). Config: none. An image of more
    than 32 Mpx fails the tick instead of being decoded.
    """

    component = "tpl_image_decode"
    inports = ["input"]
    outports = ["stream", "error"]
    inport_types = {"input": "Bytes"}
    outport_types = {"stream": "Stream", "error": "Error"}

    async def tick(self, ctx: ActorContext) -> None:
        msg = ctx.inputs["input"]
        if msg["type"] != "Bytes":
            raise ActorError(f"in-port 'input': expected Bytes, got {msg['type']}")
        data = msg["data"]

        def decode() -> np.ndarray:
            return np.asarray(pil_image(data, "input").convert("RGBA"))

        pixels = await asyncio.to_thread(decode)
        ctx.done({"stream": image_stream(ctx, pixels)})


ImageDecode.__doc__ = (ImageDecode.__doc__ or "").replace("{stream}", _STREAM_DOC)


class ImageEncode(SdkTemplate):
    """Encodes a raw image Stream as PNG, JPEG or WebP (through Pillow).

    Ports: in ``stream`` (raw image Stream; 1, 3 or 4 channels) → out ``output`` (Bytes),
    ``metadata`` (Object ``{format, mimeType, width, height, encodedSize, rawSize}``),
    ``error`` (Error). Config: ``format`` (``"png"``, default, ``"jpeg"``/``"jpg"``,
    ``"webp"``), ``quality`` (1-100, default 90; JPEG and lossy WebP). JPEG drops alpha.
    """

    component = "tpl_image_encode"
    inports = ["stream"]
    outports = ["output", "metadata", "error"]
    inport_types = {"stream": "Stream"}
    outport_types = {"output": "Bytes", "metadata": "Object", "error": "Error"}
    config_defaults = {"format": "png", "quality": 90}

    async def tick(self, ctx: ActorContext) -> None:
        fmt = config_choice(ctx, "format", ("png", "jpeg", "jpg", "webp"), "png")
        quality = config_int(ctx, "quality", 90, minimum=1, maximum=100)
        stream = await read_stream(ctx, "stream")
        pixels = raw_image(stream, "stream")
        h, w, _c = pixels.shape
        if w == 0 or h == 0:
            raise ActorError("in-port 'stream': cannot encode an empty image")
        encoded = await asyncio.to_thread(encode_pixels, pixels, fmt, quality)
        mime = {"png": "image/png", "webp": "image/webp"}.get(fmt, "image/jpeg")
        ctx.done(
            {
                "output": Message.bytes(encoded),
                "metadata": Message.object(
                    {
                        "format": fmt,
                        "mimeType": mime,
                        "width": w,
                        "height": h,
                        "encodedSize": len(encoded),
                        "rawSize": len(stream.data),
                    }
                ),
            }
        )


def encode_pixels(pixels: np.ndarray, fmt: str, quality: int = 90) -> bytes:
    """PNG / JPEG / WebP bytes of (H, W, C) uint8 pixels."""
    from PIL import Image

    c = pixels.shape[2]
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[c]
    image = Image.fromarray(np.ascontiguousarray(pixels if c != 1 else pixels[:, :, 0]), mode)
    buf = io.BytesIO()
    if fmt in ("jpeg", "jpg"):
        image.convert("RGB" if c >= 3 else "L").save(buf, "JPEG", quality=quality)
    elif fmt == "webp":
        image.save(buf, "WEBP", quality=quality)
    else:
        image.save(buf, "PNG")
    return buf.getvalue()


class GrayscaleFilter(_StreamImage):
    """Converts an RGB(A) image Stream to 8-bit gray: ``(77 R + 150 G + 29 B) >> 8``.

    Ports: in ``stream`` (raw image Stream, 3 or 4 channels) → out ``stream`` (raw image
    Stream, 1 channel, content type ``image/raw-gray``, format ``Gray8``), ``error``.
    Config: none. (The SDK keeps ``channels: 4`` in the metadata; here it says 1.)
    """

    component = "tpl_grayscale_filter"

    def process(self, ctx: ActorContext, pixels: np.ndarray) -> np.ndarray:
        rgb, _ = _rgb_alpha(pixels, "stream")
        return _gray8(rgb).astype(np.uint8)[:, :, None]


class BrightnessContrast(_StreamImage):
    """Scales brightness, contrast and saturation of an RGB(A) image Stream; alpha is kept.

    In order: brightness multiplies each channel; contrast scales the distance from mid-gray
    (``(v/255 - 0.5) * contrast + 0.5``); saturation scales the distance from the pixel's
    luma. Each step rounds and clips to 0..255. Ports: in ``stream`` → out ``stream``,
    ``error``. Config: ``brightness``, ``contrast``, ``saturation`` (numbers ≥ 0, default 1:
    no change).
    """

    component = "tpl_brightness_contrast"
    config_defaults = {"brightness": 1.0, "contrast": 1.0, "saturation": 1.0}

    def settings(self, ctx: ActorContext) -> None:
        for key in self.config_defaults:
            config_number(ctx, key, 1.0, minimum=0)

    def process(self, ctx: ActorContext, pixels: np.ndarray) -> np.ndarray:
        rgb, alpha = _rgb_alpha(pixels, "stream")
        b, c, s = (float(config_number(ctx, k, 1.0, minimum=0)) for k in self.config_defaults)
        if b != 1.0:
            rgb = _u8(rgb * np.float32(b)).astype(np.float32)
        if c != 1.0:
            rgb = _u8(((rgb / 255.0 - 0.5) * np.float32(c) + 0.5) * 255.0).astype(np.float32)
        if s != 1.0:
            gray = _gray8(rgb)[:, :, None]
            rgb = _u8(gray + (rgb - gray) * np.float32(s)).astype(np.float32)
        out = _u8(rgb)
        return out if alpha is None else np.concatenate([out, alpha], axis=2)


def _hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = rgb / 255.0
    mx, mn = x.max(axis=2), x.min(axis=2)
    delta = mx - mn
    r, g, b = x[:, :, 0], x[:, :, 1], x[:, :, 2]
    safe = np.where(delta < 1e-6, 1.0, delta)
    hue = np.where(
        mx == r,
        60.0 * (((g - b) / safe) % 6.0),
        np.where(mx == g, 60.0 * ((b - r) / safe + 2.0), 60.0 * ((r - g) / safe + 4.0)),
    )
    hue = np.where(delta < 1e-6, 0.0, hue) % 360.0
    sat = np.where(mx < 1e-6, 0.0, delta / np.where(mx < 1e-6, 1.0, mx))
    return hue, sat, mx


class ChromaKey(_StreamImage):
    """Makes green- (or blue-) screen pixels transparent in an RGBA image Stream.

    A pixel whose hue is within ``tolerance x 100`` degrees of the key hue (120° green, 240°
    blue), with saturation and value ≥ 0.2, loses alpha in proportion to how close its hue is
    and how saturated it is; its colour is then pulled toward its luma by that amount times
    ``spillSuppression``. Ports: in ``stream`` (RGBA; an RGB stream gets an opaque alpha) →
    out ``stream`` (RGBA), ``error``. Config: ``keyColor`` (``"green"``, default, or
    ``"blue"``), ``tolerance`` (0-1.8, default 0.3 = 30°), ``spillSuppression`` (0-1, default
    0.5). (The SDK passes ``tolerance`` on as degrees, so its default keys a 0.3° band.)
    """

    component = "tpl_chroma_key"
    config_defaults = {"keyColor": "green", "tolerance": 0.3, "spillSuppression": 0.5}

    def settings(self, ctx: ActorContext) -> None:
        config_choice(ctx, "keyColor", ("green", "blue"), "green")
        config_number(ctx, "tolerance", 0.3, minimum=0, maximum=1.8)
        config_number(ctx, "spillSuppression", 0.5, minimum=0, maximum=1)

    def process(self, ctx: ActorContext, pixels: np.ndarray) -> np.ndarray:
        rgb, alpha = _rgb_alpha(pixels, "stream")
        if alpha is None:
            alpha = np.full((*rgb.shape[:2], 1), 255, dtype=np.uint8)
        key = (
            240.0 if config_choice(ctx, "keyColor", ("green", "blue"), "green") == "blue" else 120.0
        )
        tol = float(config_number(ctx, "tolerance", 0.3)) * 100.0
        spill = float(config_number(ctx, "spillSuppression", 0.5))
        hue, sat, val = _hsv(rgb)
        diff = np.abs(hue - key)
        diff = np.where(diff > 180.0, 360.0 - diff, diff)
        keyed = (diff < tol) & (sat >= 0.2) & (val >= 0.2) if tol > 0 else np.zeros_like(sat, bool)
        strength = np.where(
            keyed, (1.0 - diff / max(tol, 1e-9)) * np.clip((sat - 0.2) / 0.8, 0.0, 1.0), 0.0
        )
        new_alpha = _u8(alpha[:, :, 0].astype(np.float32) * (1.0 - strength))
        if spill > 0:
            gray = _gray8(rgb)[:, :, None]
            factor = (1.0 - strength * spill)[:, :, None]
            rgb = np.where(keyed[:, :, None], gray + (rgb - gray) * factor, rgb)
        return np.concatenate([_u8(rgb), new_alpha[:, :, None]], axis=2)


def resize_align_corners(pixels: np.ndarray, w: int, h: int) -> np.ndarray:
    """Bilinear resize mapping corner pixels onto corner pixels (as the SDK's kernel)."""
    ih, iw = pixels.shape[:2]
    src = pixels.astype(np.float32)
    ys = np.arange(h) * ((ih - 1) / (h - 1) if h > 1 else 0.0)
    xs = np.arange(w) * ((iw - 1) / (w - 1) if w > 1 else 0.0)
    y0 = np.floor(ys).astype(int)
    x0 = np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, ih - 1), np.minimum(x0 + 1, iw - 1)
    fy = (ys - y0)[:, None, None].astype(np.float32)
    fx = (xs - x0)[None, :, None].astype(np.float32)
    top = src[y0][:, x0] * (1 - fx) + src[y0][:, x1] * fx
    bottom = src[y1][:, x0] * (1 - fx) + src[y1][:, x1] * fx
    return _u8(top * (1 - fy) + bottom * fy)


class ImageResize(_StreamImage):
    """Resizes a raw image Stream (bilinear, corners aligned).

    Ports: in ``stream`` (raw image Stream) → out ``stream`` (same channels, new
    ``width``/``height`` in its metadata), ``error``. Config: ``width``, ``height`` (ints ≥ 0;
    0 keeps that side), ``channels`` (1-4, default 4; used when the stream's metadata has
    none).

    The library's own form still works: in ``in`` (RFLI image Bytes) → out ``out``, with
    config ``width``/``height`` (give one to keep the aspect ratio) and ``method``
    (``"bilinear"``, default, or ``"nearest"``).
    """

    component = "tpl_image_resize"
    inports = ["stream", "in"]
    outports = ["stream", "error", "out"]
    inport_types = {"stream": "Stream", "in": "Bytes"}
    outport_types = {"stream": "Stream", "error": "Error", "out": "Bytes"}
    config_defaults = {"width": 0, "height": 0, "channels": 4}

    async def tick(self, ctx: ActorContext) -> None:
        if "in" in ctx.inputs and "stream" not in ctx.inputs:
            _RfliResize().run(ctx)
            return
        tw = config_int(ctx, "width", 0, minimum=0)
        th = config_int(ctx, "height", 0, minimum=0)
        channels = config_int(ctx, "channels", 4, minimum=1, maximum=4)
        stream = await read_stream(ctx, "stream")
        pixels = raw_image(stream, "stream", channels)
        h, w = pixels.shape[:2]
        if w == 0 or h == 0:
            raise ActorError("in-port 'stream': cannot resize an empty image")
        ow, oh = tw or w, th or h
        if ow * oh > MAX_IMAGE_PIXELS:
            raise ActorError(
                f"config 'width' x 'height' ({ow}x{oh}) is more than {MAX_IMAGE_PIXELS} pixels"
            )
        out = await asyncio.to_thread(resize_align_corners, pixels, ow, oh)
        ctx.done({"stream": image_stream(ctx, out, base_meta=stream.metadata)})


def _accepted(ctx: ActorContext, default: list[str]) -> list[str]:
    value = config_value(ctx, "acceptedFormats", default)
    if isinstance(value, str):
        value = [f.strip() for f in value.split(",") if f.strip()]
    if not isinstance(value, list) or not all(isinstance(f, str) for f in value):
        raise ActorError(
            f"config 'acceptedFormats' must be a list of MIME types or a "
            f"comma-separated string, got {value!r}"
        )
    return value


_SNIFF = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
    (b"RIFF", "audio/wav"),
    (b"ID3", "audio/mpeg"),
    (b"\xff\xfb", "audio/mpeg"),
    (b"OggS", "audio/ogg"),
    (b"fLaC", "audio/flac"),
    (b"\x1aE\xdf\xa3", "video/webm"),
)


def sniff(data: bytes) -> str:
    """The MIME type of content, from its first bytes."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        return "video/mp4"
    for magic, mime in _SNIFF:
        if data.startswith(magic):
            return mime
    return "application/octet-stream"


def load_source(
    ctx: ActorContext, max_bytes: int, timeout_s: float = 30.0
) -> tuple[bytes, str, str]:
    """``(content, content_type, url)`` of what config ``url`` or in-port ``source`` names:
    an http(s) URL (fetched with httpx), a ``data:`` URL, a ``file://`` URL or a local path;
    Bytes on ``source`` are the content itself. More than ``max_bytes`` fails the tick."""
    url: str | None = None
    if ctx.config.get("url") is not None:
        url = config_str(ctx, "url")
    elif "source" in ctx.inputs:
        msg = ctx.inputs["source"]
        if msg["type"] == "Bytes":
            data = bytes(msg["data"])
            if len(data) > max_bytes:
                raise ActorError(
                    f"in-port 'source': {len(data)} bytes is more than config "
                    f"'maxFileSize' allows ({max_bytes} bytes)"
                )
            return data, sniff(data), ""
        if msg["type"] == "Object" and isinstance(msg["data"].get("url"), str):
            url = msg["data"]["url"]
        elif msg["type"] == "String":
            url = msg["data"]
        else:
            raise ActorError(
                f"in-port 'source': expected a URL or path String, an Object "
                f"with 'url', or Bytes, got {msg['type']}"
            )
    if not url:
        raise ActorError(
            "no source: set config 'url' or send a URL, path or Bytes on in-port 'source'"
        )
    where = "config 'url'" if ctx.config.get("url") is not None else "in-port 'source'"
    if url.startswith(("http://", "https://")):
        import httpx

        try:
            with (
                httpx.Client(timeout=timeout_s, follow_redirects=True) as client,
                client.stream("GET", url) as resp,
            ):
                if resp.status_code >= 400:
                    raise ActorError(f"{where}: fetching {url} answered HTTP {resp.status_code}")
                buf = bytearray()
                for chunk in resp.iter_bytes():
                    buf += chunk
                    if len(buf) > max_bytes:
                        raise ActorError(
                            f"{where}: {url} is larger than config 'maxFileSize'"
                            f" allows ({max_bytes} bytes)"
                        )
                ctype = resp.headers.get("content-type", "") or sniff(bytes(buf))
                return bytes(buf), ctype, url
        except httpx.HTTPError as exc:
            raise ActorError(f"{where}: fetching {url} failed: {exc}") from exc
    if url.startswith("data:"):
        head, _, body = url.partition(",")
        try:
            data = (
                base64.b64decode(body, validate=True) if head.endswith(";base64") else body.encode()
            )
        except ValueError as exc:
            raise ActorError(f"{where}: bad base64 in the data: URL") from exc
        if len(data) > max_bytes:
            raise ActorError(
                f"{where}: {len(data)} bytes is more than config 'maxFileSize' "
                f"allows ({max_bytes} bytes)"
            )
        return data, head[5:].split(";")[0] or sniff(data), url
    path = Path(url[7:] if url.startswith("file://") else url)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ActorError(
                f"{where}: {path} ({size} bytes) is larger than config "
                f"'maxFileSize' allows ({max_bytes} bytes)"
            )
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise ActorError(f"{where}: cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > max_bytes:
        raise ActorError(f"{where}: {path} is larger than config 'maxFileSize' allows")
    return data, sniff(data), url


def max_file_bytes(ctx: ActorContext, default_mb: int) -> int:
    return int(
        config_number(ctx, "maxFileSize", default_mb, minimum=0, maximum=1 << 20) * 1024 * 1024
    )


class ImageInput(SdkTemplate):
    """Loads an image from a URL, a file or Bytes and describes it.

    The source is config ``url`` or, without it, in-port ``source``: an http(s) URL (fetched
    with a 30 s limit), a ``data:`` URL, a ``file://`` URL or a local path (String, or an
    Object with ``url``), or the image itself as Bytes. Its type must be one of
    ``acceptedFormats`` and its size at most ``maxFileSize`` MiB; width and height are read
    from the header (through Pillow). Ports: out ``imageData`` and ``metadata`` (Object
    ``{url, contentType, size, displayMode, width, height}``), ``bytes`` (Bytes: the image,
    for ``tpl_image_decode``; the SDK has no such port), ``error``. Config:
    ``acceptedFormats`` (list or comma-separated string, default JPEG, PNG, GIF, WebP),
    ``maxFileSize`` (MiB, default 10), ``displayMode`` (default ``"contain"``), ``url``.
    """

    component = "tpl_image_input"
    inports = ["source"]
    outports = ["imageData", "metadata", "error", "bytes"]
    outport_types = {
        "imageData": "Object",
        "metadata": "Object",
        "error": "Error",
        "bytes": "Bytes",
    }
    config_defaults = {
        "acceptedFormats": ["image/jpeg", "image/png", "image/gif", "image/webp"],
        "maxFileSize": 10,
        "displayMode": "contain",
        "url": None,
    }

    async def tick(self, ctx: ActorContext) -> None:
        accepted = _accepted(ctx, self.config_defaults["acceptedFormats"])
        limit = max_file_bytes(ctx, 10)
        mode = config_str(ctx, "displayMode", "contain")
        data, ctype, url = await asyncio.to_thread(load_source, ctx, limit)
        base = ctype.split(";")[0].strip()
        if base == "application/octet-stream":
            base = ctype = sniff(data)
        if base not in accepted:
            raise ActorError(
                f"config 'acceptedFormats': {base} is not accepted (accepted: "
                f"{', '.join(accepted)})"
            )
        from PIL import Image

        width: int | None = None
        height: int | None = None
        try:
            with Image.open(io.BytesIO(data)) as probe:
                width, height = probe.size
        except Exception:  # not readable: the SDK reports no dimensions either
            pass
        info = {
            "url": url,
            "contentType": ctype,
            "size": len(data),
            "displayMode": mode,
            "width": width,
            "height": height,
        }
        ctx.done(
            {
                "imageData": Message.object(info),
                "metadata": Message.object(dict(info)),
                "bytes": Message.bytes(data),
            }
        )


class ImageStreamDisplay(SdkTemplate):
    """Drains an image Stream and reports what it carried (there is no display here: a UI
    that wants the frames reads the Stream itself, or taps it before this node).

    Ports: in ``stream`` (Stream) → out ``metadata`` (Object ``{contentType, sizeHint,
    totalBytes, chunks, width, height, format, displayMode, streamMetadata}``), ``error``.
    Config: ``displayMode`` (default ``"contain"``), ``acceptedFormats`` (list or
    comma-separated string; a stream of another content type fails the tick).
    """

    component = "tpl_image_stream_display"
    inports = ["stream"]
    outports = ["metadata", "error"]
    inport_types = {"stream": "Stream"}
    outport_types = {"metadata": "Object", "error": "Error"}
    config_defaults = {
        "displayMode": "contain",
        "acceptedFormats": [
            "image/jpeg",
            "image/png",
            "image/gif",
            "image/webp",
            "image/raw-rgba",
            "image/raw-gray",
        ],
    }

    async def tick(self, ctx: ActorContext) -> None:
        mode = config_str(ctx, "displayMode", "contain")
        accepted = _accepted(ctx, self.config_defaults["acceptedFormats"])
        stream = await read_stream(ctx, "stream")
        ct = stream.content_type or "application/octet-stream"
        if not any(ct.startswith(f) for f in accepted):
            raise ActorError(
                f"in-port 'stream': content type {ct} is not in config 'acceptedFormats'"
            )
        meta = stream.metadata
        ctx.done(
            {
                "metadata": Message.object(
                    {
                        "contentType": ct,
                        "sizeHint": stream.size_hint,
                        "totalBytes": sum(len(f) for f in stream.frames),
                        "chunks": len(stream.frames),
                        "width": meta.get("width"),
                        "height": meta.get("height"),
                        "format": meta.get("format", "unknown"),
                        "displayMode": mode,
                        "streamMetadata": meta or None,
                    }
                )
            }
        )


IMAGE_STREAM_TEMPLATES: dict[str, type[SdkTemplate]] = {
    cls.component: cls
    for cls in (
        ImageDecode,
        ImageEncode,
        GrayscaleFilter,
        BrightnessContrast,
        ChromaKey,
        ImageResize,
        ImageInput,
        ImageStreamDisplay,
    )
}
