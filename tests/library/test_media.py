"""reflow.library._media: the RFLI image and RFLA audio encodings."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from reflow import ActorError, Message
from reflow.library import decode_audio, decode_image, encode_audio, encode_image


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 1), (4, 5, 3), (1, 1, 4)])
def test_image_round_trip(dtype: type, shape: tuple[int, ...]) -> None:
    pixels = (np.arange(np.prod(shape)) % 200).reshape(shape).astype(dtype)
    msg = encode_image(pixels)
    assert msg["type"] == "Bytes"
    back = decode_image(msg)
    assert back.shape == (shape if len(shape) == 3 else (*shape, 1))
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.reshape(pixels.shape), pixels)


def test_image_header_layout() -> None:
    data = encode_image(np.zeros((2, 3, 4), np.uint8))["data"]
    assert data[:4] == b"RFLI"
    assert struct.unpack_from("<BBBBII", data, 4) == (1, 1, 4, 0, 3, 2)
    assert len(data) == 16 + 2 * 3 * 4


def test_float64_images_become_float32() -> None:
    assert decode_image(encode_image(np.ones((1, 1)))).dtype == np.float32


def test_audio_round_trip() -> None:
    samples = np.linspace(-1, 1, 20, dtype=np.float32).reshape(10, 2)
    msg = encode_audio(samples, 44100)
    back, rate = decode_audio(msg)
    assert rate == 44100 and back.shape == (10, 2)
    np.testing.assert_array_equal(back, samples)
    mono, _ = decode_audio(encode_audio(np.zeros(5), 8000))
    assert mono.shape == (5, 1)


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: encode_image(np.zeros((2, 2, 5), np.uint8)), "shaped (height, width"),
        (lambda: encode_image(np.zeros((2, 2), np.int32)), "dtype must be uint8"),
        (lambda: decode_image(Message.bytes(b"nope")), "not an image"),
        (lambda: decode_image(Message.string("x")), "expected an image/audio Bytes message"),
        (
            lambda: decode_image(
                Message.bytes(encode_image(np.zeros((2, 2), np.uint8))["data"][:-1])
            ),
            "needs 4 pixel bytes, got 3",
        ),
        (
            lambda: decode_image(Message.bytes(b"RFLI" + bytes([9, 1, 1, 0]) + bytes(8))),
            "format version 9",
        ),
        (lambda: encode_audio(np.zeros((2, 2, 2)), 8000), "audio must be shaped"),
        (lambda: encode_audio(np.zeros(2), 0), "sample rate must be"),
        (lambda: decode_audio(encode_image(np.zeros((1, 1), np.uint8))), "not audio"),
        (
            lambda: decode_audio(Message.bytes(encode_audio(np.zeros(4), 8000)["data"][:-4])),
            "needs 16 sample bytes, got 12",
        ),
    ],
)
def test_bad_media_raise_actor_error(call: object, fragment: str) -> None:
    with pytest.raises(ActorError) as info:
        call()  # type: ignore[operator]
    assert fragment in str(info.value)
