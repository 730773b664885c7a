"""How images and audio travel between media actors: one Bytes message with a 16-byte header.

Image (``RFLI``)::

    offset  size  field
    0       4     magic b"RFLI"
    4       1     version (1)
    5       1     dtype: 1 uint8, 2 uint16, 3 float32 (nominal range 0..1)
    6       1     channels (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA)
    7       1     reserved (0)
    8       4     width  (uint32, little-endian)
    12      4     height (uint32, little-endian)
    16      ...   pixels, row-major, channels interleaved (H x W x C), little-endian

Audio (``RFLA``)::

    0       4     magic b"RFLA"
    4       1     version (1)
    5       1     dtype: 3 float32 (nominal range -1..1)
    6       1     channels (1..32)
    7       1     reserved (0)
    8       4     sample rate (Hz, uint32 LE)
    12      4     frames (uint32 LE)
    16      ...   samples, frames x channels, channels interleaved, float32 LE

A single Bytes message passes between Python actors as the same object (no copy, no JSON),
keeps pixels and samples next to their shape, and is easy to produce from any language.
``tpl_image_from_raw`` / ``tpl_image_to_raw`` convert to and from the split form
(``{width, height, channels, dtype}`` Object + raw pixel Bytes); ``tpl_audio_from_pcm`` /
``tpl_audio_to_pcm`` do the same for interleaved PCM.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from .._core._messages import Message
from .._errors import ActorError

__all__ = ["decode_audio", "decode_image", "encode_audio", "encode_image"]

_HEADER = struct.Struct("<4sBBBBII")
_VERSION = 1
_IMAGE_DTYPES: dict[int, np.dtype[Any]] = {
    1: np.dtype("<u1"),
    2: np.dtype("<u2"),
    3: np.dtype("<f4"),
}
_DTYPE_CODES = {"uint8": 1, "uint16": 2, "float32": 3}
_AUDIO_DTYPE = 3
MAX_PIXELS = 1 << 28


def encode_image(pixels: np.ndarray) -> Message:
    """An image message from an array shaped (H, W) or (H, W, C) of uint8, uint16 or
    float32 (other float types are converted to float32)."""
    a = np.asarray(pixels)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or not 1 <= a.shape[2] <= 4:
        raise ActorError(f"an image must be shaped (height, width[, 1..4 channels]), got {a.shape}")
    if a.dtype.kind == "f" and a.dtype != np.float32:
        a = a.astype(np.float32)
    name = a.dtype.name
    if name not in _DTYPE_CODES:
        raise ActorError(f"image dtype must be uint8, uint16 or float32, got {name}")
    code = _DTYPE_CODES[name]
    h, w, c = a.shape
    header = _HEADER.pack(b"RFLI", _VERSION, code, c, 0, w, h)
    body = np.ascontiguousarray(a, dtype=_IMAGE_DTYPES[code]).tobytes()
    return Message.bytes(header + body)


def _payload(value: Any, port: str) -> bytes:
    if isinstance(value, dict) and "type" in value:
        if value["type"] == "Gpu":  # a GPU node's output: read back here, once (reflow._gpu)
            value = value["data"].to_message()
        if value["type"] != "Bytes":
            raise ActorError(
                f"in-port {port!r}: expected an image/audio Bytes message, got {value['type']}"
            )
        value = value["data"]
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise ActorError(f"in-port {port!r}: expected Bytes, got {type(value).__name__}")
    return bytes(value)


def decode_image(message: Any, port: str = "in") -> np.ndarray:
    """The (H, W, C) array of an image message (read-only view of its bytes)."""
    data = _payload(message, port)
    if len(data) < _HEADER.size or data[:4] != b"RFLI":
        raise ActorError(
            f"in-port {port!r}: not an image (expected the RFLI header; convert "
            "raw pixels with tpl_image_from_raw)"
        )
    _, version, code, c, _, w, h = _HEADER.unpack_from(data)
    if version != _VERSION:
        raise ActorError(f"in-port {port!r}: image format version {version} is not supported")
    dtype = _IMAGE_DTYPES.get(code)
    if dtype is None or not 1 <= c <= 4:
        raise ActorError(f"in-port {port!r}: bad image header (dtype code {code}, {c} channels)")
    expected = w * h * c * dtype.itemsize
    if len(data) - _HEADER.size != expected:
        raise ActorError(
            f"in-port {port!r}: image {w}x{h}x{c} {dtype.name} needs {expected} "
            f"pixel bytes, got {len(data) - _HEADER.size}"
        )
    return np.frombuffer(data, dtype=dtype, offset=_HEADER.size).reshape(h, w, c)


def encode_audio(samples: np.ndarray, sample_rate: int) -> Message:
    """An audio message from float samples shaped (frames,) or (frames, channels)."""
    a = np.asarray(samples, dtype=np.float32)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or not 1 <= a.shape[1] <= 32:
        raise ActorError(f"audio must be shaped (frames[, 1..32 channels]), got {a.shape}")
    if not 1 <= int(sample_rate) <= 10_000_000:
        raise ActorError(f"sample rate must be 1..10000000 Hz, got {sample_rate}")
    frames, channels = a.shape
    header = _HEADER.pack(b"RFLA", _VERSION, _AUDIO_DTYPE, channels, 0, int(sample_rate), frames)
    return Message.bytes(header + np.ascontiguousarray(a, dtype="<f4").tobytes())


def decode_audio(message: Any, port: str = "in") -> tuple[np.ndarray, int]:
    """``(samples, sample_rate)`` of an audio message; samples shaped (frames, channels)."""
    data = _payload(message, port)
    if len(data) < _HEADER.size or data[:4] != b"RFLA":
        raise ActorError(
            f"in-port {port!r}: not audio (expected the RFLA header; convert "
            "PCM with tpl_audio_from_pcm)"
        )
    _, version, code, c, _, rate, frames = _HEADER.unpack_from(data)
    if version != _VERSION or code != _AUDIO_DTYPE or not 1 <= c <= 32 or rate < 1:
        raise ActorError(
            f"in-port {port!r}: bad audio header (version {version}, dtype "
            f"{code}, {c} channels, {rate} Hz)"
        )
    expected = frames * c * 4
    if len(data) - _HEADER.size != expected:
        raise ActorError(
            f"in-port {port!r}: audio of {frames} frames x {c} channels needs "
            f"{expected} sample bytes, got {len(data) - _HEADER.size}"
        )
    return np.frombuffer(data, dtype="<f4", offset=_HEADER.size).reshape(frames, c), rate
