"""Helpers for the SDK media template tests: raw image / PCM Streams in, collected out."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from reflow import Message
from reflow._core._streams import Stream


def image_stream(
    pixels: np.ndarray, meta: dict[str, Any] | None = None, content_type: str = "image/raw-rgba"
) -> Message:
    h, w, c = pixels.shape
    s = Stream.create(0, content_type=content_type)
    s.send_begin(
        content_type,
        pixels.nbytes,
        {"width": w, "height": h, "channels": c} if meta is None else meta,
    )
    for y in range(h):
        s.send_bytes(pixels[y].tobytes())
    s.end()
    return s.into_message()


def pcm_stream(samples: Any, frame: int = 256, meta: dict[str, Any] | None = None) -> Message:
    data = np.asarray(samples, dtype="<f4").tobytes()
    s = Stream.create(0, content_type="audio/raw-pcm")
    s.send_begin("audio/raw-pcm", len(data), meta or {})
    for i in range(0, len(data), frame * 4):
        s.send_bytes(data[i : i + frame * 4])
    s.end()
    return s.into_message()


def bytes_stream(chunks: list[bytes], content_type: str | None = None) -> Message:
    s = Stream.create(0, content_type=content_type)
    for c in chunks:
        s.send_bytes(c)
    s.end()
    return s.into_message()


def broken_stream(kind: str) -> Message:
    s = Stream.create(0)
    s.send_bytes(b"\0\0\0\0")
    if kind == "error":
        s.error("producer failed")
    else:
        s.close()
    return s.into_message()


def collect(msg: Any) -> tuple[bytes, dict[str, Any], str | None]:
    """``(data, begin metadata, content type)`` of a Stream message."""
    assert msg["type"] == "Stream", msg
    reader = msg.take_stream()
    data, meta, ctype = bytearray(), {}, None

    async def read() -> None:
        nonlocal meta, ctype
        while True:
            f = await reader.arecv(5000)
            if f["kind"] == "data":
                data.extend(f["data"])
            elif f["kind"] == "begin":
                meta, ctype = f["metadata"], f["content_type"]
            elif f["kind"] == "end":
                return
            else:
                raise AssertionError(f)

    asyncio.run(read())
    return bytes(data), meta, ctype


def pixels_of(msg: Any) -> np.ndarray:
    data, meta, _ = collect(msg)
    return np.frombuffer(data, np.uint8).reshape(meta["height"], meta["width"], meta["channels"])


def samples_of(msg: Any) -> np.ndarray:
    return np.frombuffer(collect(msg)[0], dtype="<f4")
