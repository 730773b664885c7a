"""reflow.library._image_streams: the SDK's image templates, with expectations computed
independently (Pillow, colorsys, numpy), through real ticks and real Streams."""

from __future__ import annotations

import colorsys
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sdk_media_streams import broken_stream, bytes_stream, collect, image_stream, pixels_of

from reflow import Message, template_actor
from reflow.library import encode_image
from reflow.testing import run_tick

RNG = np.random.default_rng(7)
RGBA = RNG.integers(0, 256, size=(5, 7, 4), dtype=np.uint8)


def png(pixels: np.ndarray, mode: str = "RGBA") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, mode).save(buf, "PNG")
    return buf.getvalue()


def tick(tid: str, inputs: dict[str, Any], config: dict[str, Any] | None = None) -> Any:
    r = run_tick(template_actor(tid), inputs, config)
    r.raise_for_failures()
    return r.outputs


def test_decode_then_encode_round_trips() -> None:
    out = tick("tpl_image_decode", {"input": Message.bytes(png(RGBA))})
    (msg,) = out["stream"]
    data, meta, ctype = collect(msg)
    assert ctype == "image/raw-rgba"
    assert meta == {"width": 7, "height": 5, "channels": 4, "format": "RGBA8"}
    assert np.frombuffer(data, np.uint8).reshape(5, 7, 4).tolist() == RGBA.tolist()
    for fmt, magic in (("png", b"\x89PNG"), ("jpeg", b"\xff\xd8"), ("webp", b"RIFF")):
        out = tick("tpl_image_encode", {"stream": image_stream(RGBA)}, {"format": fmt})
        encoded = out["output"][0]["data"]
        assert encoded.startswith(magic)
        meta = out["metadata"][0]["data"]
        assert meta["width"] == 7 and meta["height"] == 5 and meta["rawSize"] == RGBA.nbytes
        assert meta["encodedSize"] == len(encoded)
        back = np.asarray(Image.open(io.BytesIO(encoded)).convert("RGBA"))
        if fmt == "png":
            assert back.tolist() == RGBA.tolist()
        assert back.shape == (5, 7, 4)


def test_decode_jpeg_and_gray_png() -> None:
    gray = RNG.integers(0, 256, size=(4, 4), dtype=np.uint8)
    px = pixels_of(tick("tpl_image_decode", {"input": Message.bytes(png(gray, "L"))})["stream"][0])
    assert px[:, :, 0].tolist() == gray.tolist() and (px[:, :, 3] == 255).all()


def test_grayscale_filter() -> None:
    out = pixels_of(tick("tpl_grayscale_filter", {"stream": image_stream(RGBA)})["stream"][0])
    r, g, b = (RGBA[:, :, i].astype(int) for i in range(3))
    assert out.shape == (5, 7, 1)
    assert out[:, :, 0].tolist() == ((77 * r + 150 * g + 29 * b) // 256).tolist()


def _reference_adjust(px: np.ndarray, b: float, c: float, s: float) -> np.ndarray:
    out = px.copy()
    for y in range(px.shape[0]):
        for x in range(px.shape[1]):
            rgb = [float(v) for v in px[y, x, :3]]
            rgb = [min(255.0, max(0.0, round(v * b))) for v in rgb]
            rgb = [min(255.0, max(0.0, round(((v / 255 - 0.5) * c + 0.5) * 255))) for v in rgb]
            gray = (77 * int(rgb[0]) + 150 * int(rgb[1]) + 29 * int(rgb[2])) >> 8
            rgb = [min(255.0, max(0.0, round(gray + (v - gray) * s))) for v in rgb]
            out[y, x, :3] = rgb
    return out


@pytest.mark.parametrize(
    ("b", "c", "s"),
    [(1.0, 1.0, 1.0), (1.5, 1.0, 1.0), (1.0, 0.5, 1.0), (0.8, 1.3, 0.0), (1.0, 1.0, 2.0)],
)
def test_brightness_contrast(b: float, c: float, s: float) -> None:
    out = pixels_of(
        tick(
            "tpl_brightness_contrast",
            {"stream": image_stream(RGBA)},
            {"brightness": b, "contrast": c, "saturation": s},
        )["stream"][0]
    )
    expected = _reference_adjust(RGBA, b, c, s)
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1
    assert out[:, :, 3].tolist() == RGBA[:, :, 3].tolist()


@pytest.mark.parametrize(
    ("rgb", "key", "keyed"),
    [
        ((0, 255, 0), "green", True),
        ((20, 200, 40), "green", True),
        ((255, 0, 0), "green", False),
        ((0, 0, 255), "blue", True),
        ((0, 255, 0), "blue", False),
        ((10, 20, 10), "green", False),
        ((40, 60, 40), "green", True),
    ],
)
def test_chroma_key(rgb: tuple[int, int, int], key: str, keyed: bool) -> None:
    px = np.array([[[*rgb, 255]]], dtype=np.uint8)
    out = pixels_of(
        tick("tpl_chroma_key", {"stream": image_stream(px)}, {"keyColor": key})["stream"][0]
    )
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    target = 120 if key == "green" else 240
    d = abs(h * 360 - target)
    d = min(d, 360 - d)
    expect = 255
    if d < 30 and s >= 0.2 and v >= 0.2:
        expect = round(255 * (1 - (1 - d / 30) * min(1, (s - 0.2) / 0.8)))
    assert abs(int(out[0, 0, 3]) - expect) <= 1
    assert (out[0, 0, 3] < 255) == keyed


def test_resize_streams_and_legacy_form() -> None:
    px = RNG.integers(0, 256, size=(4, 6, 4), dtype=np.uint8)
    out = pixels_of(
        tick("tpl_image_resize", {"stream": image_stream(px)}, {"width": 11, "height": 7})[
            "stream"
        ][0]
    )
    assert out.shape == (7, 11, 4)
    # corners map onto corners; the middle of an exact 2x-1 grid is the mean of neighbours
    for y, x in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        assert out[y, x].tolist() == px[y, x].tolist()
    assert out[0, 2].tolist() == px[0, 1].tolist()
    mid = (px[0, 0].astype(float) + px[0, 1]) / 2
    assert np.abs(out[0, 1] - mid).max() <= 0.5 + 1e-9
    same = pixels_of(tick("tpl_image_resize", {"stream": image_stream(px)})["stream"][0])
    assert same.tolist() == px.tolist()
    legacy = tick("tpl_image_resize", {"in": encode_image(px)}, {"width": 3})
    assert "out" in legacy


def test_display_drains_and_describes() -> None:
    meta = tick("tpl_image_stream_display", {"stream": image_stream(RGBA)})["metadata"][0]
    assert meta["data"]["width"] == 7 and meta["data"]["chunks"] == 5
    assert meta["data"]["totalBytes"] == RGBA.nbytes and meta["data"]["format"] == "unknown"


def test_image_input_from_path_bytes_and_data_url(tmp_path: Path) -> None:
    f = tmp_path / "a.png"
    f.write_bytes(png(RGBA))
    out = tick("tpl_image_input", {"source": Message.string(str(f))})
    info = out["imageData"][0]["data"]
    assert info["width"] == 7 and info["height"] == 5 and info["contentType"] == "image/png"
    assert out["bytes"][0]["data"] == f.read_bytes()
    out = tick("tpl_image_input", {"source": Message.bytes(png(RGBA))})
    assert out["metadata"][0]["data"]["size"] == len(png(RGBA))
    import base64

    url = "data:image/png;base64," + base64.b64encode(png(RGBA)).decode()
    out = tick("tpl_image_input", {"source": Message.flow()}, {"url": url})
    assert out["imageData"][0]["data"]["width"] == 7


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims a size and carries no pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


BOMB = _png_header(100_000, 100_000)


BAD: list[tuple[str, dict[str, Any], dict[str, Any] | None, str]] = [
    ("tpl_image_decode", {"input": Message.string("x")}, None, "in-port 'input'"),
    (
        "tpl_image_decode",
        {"input": Message.bytes(b"\x89PNG\r\n\x1a\nxx")},
        None,
        "in-port 'input': not a decodable image",
    ),
    ("tpl_image_decode", {"input": Message.bytes(BOMB)}, None, "more than"),
    ("tpl_image_decode", {"input": Message.bytes(_png_header(9000, 9000))}, None, "more than"),
    (
        "tpl_image_decode",
        {"input": Message.bytes(_png_header(16, 16))},
        None,
        "not a decodable image",
    ),
    ("tpl_image_decode", {"input": Message.bytes(b"")}, None, "in-port 'input'"),
    ("tpl_image_encode", {"stream": Message.bytes(b"x")}, None, "in-port 'stream'"),
    ("tpl_image_encode", {"stream": image_stream(RGBA)}, {"format": "gif"}, "config 'format'"),
    ("tpl_image_encode", {"stream": image_stream(RGBA)}, {"quality": 0}, "config 'quality'"),
    (
        "tpl_image_encode",
        {"stream": image_stream(RGBA, {"width": 9, "height": 5})},
        None,
        "needs 180 bytes",
    ),
    (
        "tpl_image_encode",
        {"stream": image_stream(RGBA, {"width": -1, "height": 5})},
        None,
        "'width'",
    ),
    (
        "tpl_image_encode",
        {"stream": image_stream(RGBA, {"width": 7, "height": 5, "channels": 9})},
        None,
        "'channels'",
    ),
    ("tpl_grayscale_filter", {"stream": broken_stream("error")}, None, "producer failed"),
    ("tpl_grayscale_filter", {"stream": broken_stream("closed")}, None, "closed"),
    ("tpl_grayscale_filter", {"stream": image_stream(RGBA[:, :, :2].copy())}, None, "RGB or RGBA"),
    (
        "tpl_brightness_contrast",
        {"stream": image_stream(RGBA)},
        {"contrast": -1},
        "config 'contrast'",
    ),
    (
        "tpl_brightness_contrast",
        {"stream": image_stream(RGBA)},
        {"brightness": "x"},
        "config 'brightness'",
    ),
    ("tpl_chroma_key", {"stream": image_stream(RGBA)}, {"keyColor": "red"}, "config 'keyColor'"),
    (
        "tpl_image_resize",
        {"stream": image_stream(RGBA)},
        {"width": 1 << 20, "height": 1 << 20},
        "pixels",
    ),
    ("tpl_image_resize", {"stream": bytes_stream([b"\1\2\3"])}, None, "in-port 'stream'"),
    (
        "tpl_image_stream_display",
        {"stream": bytes_stream([b"x"], "text/plain")},
        None,
        "config 'acceptedFormats'",
    ),
    ("tpl_image_input", {"source": Message.integer(3)}, None, "in-port 'source'"),
    (
        "tpl_image_input",
        {"source": Message.string("/nonexistent/x.png")},
        None,
        "in-port 'source': cannot read",
    ),
    ("tpl_image_input", {"source": Message.bytes(b"hello")}, None, "config 'acceptedFormats'"),
    (
        "tpl_image_input",
        {"source": Message.bytes(b"\x89PNG" + b"\0" * 2_000_000)},
        {"maxFileSize": 1},
        "config 'maxFileSize'",
    ),
    ("tpl_image_input", {"source": Message.flow()}, {"url": "data:;base64,@@"}, "config 'url'"),
]


@pytest.mark.parametrize(("tid", "inputs", "config", "fragment"), BAD)
def test_bad_input_and_config_fail_the_tick(
    tid: str, inputs: dict[str, Any], config: dict[str, Any] | None, fragment: str
) -> None:
    r = run_tick(template_actor(tid), inputs, config, timeout=20)
    assert len(r.failures) == 1, r.failures
    assert "ActorError" in r.failures[0].error and fragment in r.failures[0].error
    (err,) = r.outputs["error"]
    assert err["type"] == "Error" and fragment in err["data"]
    assert not r.outputs.get("stream") and not r.outputs.get("output")


MEMORY_CHILD = r"""
import struct, sys, zlib
from reflow import Message, template_actor
from reflow.testing import run_tick

def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

w = h = 6000  # 36 Mpx: under Pillow's own bomb limit, over the template's
comp = zlib.compressobj(9)
row = b"\0" * (1 + w * 4)
body = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))
       + chunk(b"IDAT", body) + chunk(b"IEND", b""))
def hwm_kib():  # this image's peak RSS: ru_maxrss would carry the parent's over exec
    with open("/proc/self/status") as fh:
        return next(int(ln.split()[1]) for ln in fh if ln.startswith("VmHWM:"))
before = hwm_kib()
r = run_tick(template_actor("tpl_image_decode"), {"input": Message.bytes(png)})
after = hwm_kib()
assert r.failures and "more than" in r.failures[0].error, r.failures
print(len(png), (after - before) // 1024)
"""


def test_a_compressed_bomb_is_refused_before_it_is_inflated() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    size, grown_mib = (int(v) for v in done.stdout.split()[-2:])
    assert size < 1 << 20  # a few hundred KiB that would inflate to 144 MB of pixels
    assert grown_mib < 64, f"peak RSS grew {grown_mib} MiB"
