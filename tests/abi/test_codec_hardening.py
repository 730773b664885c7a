"""Issue #8, codec rows: hostile bytes a guest can hand the decoder, written by hand.

Each row is (frame bytes, decoder, error fragment); every row must fail with
``GuestOutputError`` (the codec's ``ReflowError``) within bounded time. A hypothesis fuzz over
random and mutated frames checks that no decoder raises anything else, on any bytes."""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reflow._core._messages import Message
from reflow._errors import GuestOutputError, MessageError, ReflowError
from reflow.abi import VECTORS_DIR
from reflow.abi._codec import (
    MAX_JSON_DEPTH,
    TickCodec,
    decode_batch_head,
    decode_batch_results,
    decode_message,
    decode_open,
    decode_outputs,
    decode_result,
    decode_tick_input,
    encode_message,
)

U32 = struct.Struct("<I")


def text_msg(kind: int, text: str | bytes) -> bytes:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return bytes((kind,)) + U32.pack(len(raw)) + raw


def done(*msgs: bytes) -> bytes:
    """A done result frame with each message on port "out" (written by hand)."""
    out = b"\x00" + struct.pack("<H", len(msgs))
    for m in msgs:
        out += b"\x03out" + m
    return out


def fail(text: bytes) -> bytes:
    return b"\x01" + U32.pack(len(text)) + text


def open_frame(config: bytes, template: bytes = b"t/x", node: bytes = b"n") -> bytes:
    return (
        bytes((len(template),))
        + template
        + bytes((len(node),))
        + node
        + U32.pack(len(config))
        + config
    )


def nested_any(levels: int) -> str:
    return '{"type":"Any","data":' * levels + "1" + "}" * levels


def nested_objects(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


OBJECT, ARRAY, EVENT, OPTIONAL, ANY = 8, 9, 10, 11, 12
JSON_KINDS = [OBJECT, ARRAY, EVENT, OPTIONAL, ANY]
_BAD_UTF8 = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"ok\xf8\x88\x80\x80\x80", b"\xe2\x82"]
_NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e400", "1" + "0" * 400 + ".5"]


def _rows() -> list[Any]:
    rows: list[Any] = [
        # depth: nested messages, nested objects and arrays, in every JSON-carrying kind
        pytest.param(
            done(text_msg(ANY, nested_any(900))),
            decode_result,
            f"nests 900 levels deep; the limit is {MAX_JSON_DEPTH}",
            id="any-900",
        ),
        pytest.param(
            done(text_msg(OPTIONAL, nested_any(65))),
            decode_result,
            f"nests 65 levels deep; the limit is {MAX_JSON_DEPTH}",
            id="optional-65",
        ),
        pytest.param(
            done(text_msg(OBJECT, nested_objects(900))),
            decode_result,
            "nests 900 levels deep",
            id="object-900",
        ),
        pytest.param(
            done(text_msg(ARRAY, "[" * 200_000 + "]" * 200_000)),
            decode_result,
            f"limit of {MAX_JSON_DEPTH} levels",
            id="array-200k",
        ),
        pytest.param(
            done(text_msg(EVENT, "{" + '"a":[' * 100_000)),
            decode_result,
            "Event data",
            id="event-unclosed-deep",
        ),
        pytest.param(
            open_frame(nested_objects(MAX_JSON_DEPTH + 1).encode()),
            decode_open,
            f"config nests {MAX_JSON_DEPTH + 1} levels deep",
            id="open-config-deep",
        ),
        pytest.param(
            text_msg(ANY, nested_any(300)),
            decode_message,
            "nests 300 levels deep",
            id="message-any-300",
        ),
        # text fields that are not UTF-8
        pytest.param(b"\x02\x00\x03o\xffu\x00", decode_outputs, "not valid UTF-8", id="port-name"),
        pytest.param(
            open_frame(b"{}", template=b"t\xff"),
            decode_open,
            "not valid UTF-8",
            id="open-template-id",
        ),
        pytest.param(
            open_frame(b"{}", node=b"n\xc0"), decode_open, "not valid UTF-8", id="open-node-id"
        ),
        pytest.param(open_frame(b'{"a":"\xff"}'), decode_open, "not valid UTF-8", id="open-config"),
        pytest.param(
            open_frame(b"[1]"),
            decode_open,
            "config must be a JSON object",
            id="open-config-not-object",
        ),
        pytest.param(
            open_frame(b'{"a":NaN}'), decode_open, "NaN is not JSON", id="open-config-nan"
        ),
        pytest.param(b"\x08\x00\x00", decode_batch_head, "24-byte header", id="batch-head"),
    ]
    for i, raw in enumerate(_BAD_UTF8):
        rows.append(pytest.param(fail(raw), decode_result, "not valid UTF-8", id=f"fail-{i}"))
        for kind in (5, 7):  # String, Error
            rows.append(
                pytest.param(
                    done(text_msg(kind, raw)),
                    decode_result,
                    "not valid UTF-8",
                    id=f"kind{kind}-{i}",
                )
            )
        for kind in JSON_KINDS:
            rows.append(
                pytest.param(
                    done(text_msg(kind, b'["' + raw + b'"]')),
                    decode_result,
                    "not valid UTF-8",
                    id=f"json{kind}-{i}",
                )
            )
    for i, num in enumerate(_NON_FINITE):
        word = "overflows a 64-bit float" if num[-1].isdigit() or "." in num else "is not JSON"
        for kind in JSON_KINDS:
            body = f'{{"x":{num}}}' if kind in (OBJECT, EVENT, OPTIONAL, ANY) else f"[{num}]"
            rows.append(
                pytest.param(
                    done(text_msg(kind, body)), decode_result, word, id=f"nonfinite{kind}-{i}"
                )
            )
        # a Float inside a nested message is JSON text too
        rows.append(
            pytest.param(
                done(text_msg(ANY, f'{{"type":"Float","data":{num}}}')),
                decode_result,
                word,
                id=f"nested-float-{i}",
            )
        )
    return rows


@pytest.mark.parametrize(("frame", "decoder", "fragment"), _rows())
def test_hostile_frame_is_refused(
    frame: bytes, decoder: Callable[[bytes], Any], fragment: str
) -> None:
    t0 = time.perf_counter()
    with pytest.raises(GuestOutputError) as info:
        decoder(frame)
    assert fragment in str(info.value)
    assert "invalid output encoding at byte" in str(info.value)
    assert time.perf_counter() - t0 < 2.0  # bounded (generous)


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        (ANY, nested_any(MAX_JSON_DEPTH - 1)),  # the innermost data adds no level
        (OBJECT, nested_objects(MAX_JSON_DEPTH)),
        (ARRAY, "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH),
        (OBJECT, '{"big":1e308,"small":-2.5e-300,"text":"1e999 NaN"}'),
        (ARRAY, "[" + ",".join("[1]" for _ in range(5000)) + "]"),  # wide, not deep
    ],
    ids=["any-at-limit", "object-at-limit", "array-at-limit", "finite-exponents", "wide"],
)
def test_frames_within_the_limits_decode(kind: int, text: str) -> None:
    res = decode_result(done(text_msg(kind, text)))
    assert res.ok and len(res.outputs) == 1


def test_float_kind_carries_any_ieee754_value() -> None:
    # The binary Float kind is an IEEE 754 f64 (ABI.md section 3): only JSON text forbids
    # NaN and Infinity.
    for value in (float("inf"), float("-inf")):
        assert decode_message(encode_message(Message.float(value)))["data"] == value


def test_encoding_too_deep_host_data_is_a_message_error() -> None:
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(MessageError):
        encode_message({"type": "Array", "data": deep})


# -- fuzz: only the codec's error class, on any bytes, in bounded time ---------------------

_SEEDS = [
    bytes.fromhex(f["hex"])
    for f in json.loads((VECTORS_DIR / "frames.json").read_text(encoding="utf-8"))["frames"]
]
_SEEDS += [
    bytes.fromhex(m["hex"])
    for m in json.loads((VECTORS_DIR / "messages.json").read_text(encoding="utf-8"))["messages"]
]
_SEEDS += [
    done(text_msg(ANY, nested_any(3))),
    done(text_msg(OBJECT, '{"a":[1,2.5,"x"]}')),
    open_frame(b'{"k":[1,{"z":null}]}'),
    fail(b"boom"),
]

_CODEC = TickCodec(["in"], ["out"])


def _batch_results(raw: bytes) -> Any:
    return decode_batch_results(U32.pack(len(raw)) + raw, 2)


def _decode_single(raw: bytes) -> Any:
    return _CODEC.decode_single(memoryview(raw), 0, len(raw))


def _decode_batch(raw: bytes) -> Any:
    framed = U32.pack(len(raw)) + raw + U32.pack(len(raw)) + raw
    return _CODEC.decode_batch(memoryview(framed), 0, len(framed), 3, 1 << 20)


DECODERS: list[Callable[[bytes], Any]] = [
    decode_message,
    decode_outputs,
    decode_tick_input,
    decode_result,
    decode_open,
    decode_batch_head,
    _batch_results,
    _decode_single,
    _decode_batch,
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(_SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "length"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[at : at + draw(st.integers(1, 4))]
        elif op == "truncate":
            del data[at:]
        elif op == "length" and len(data) >= at + 4:
            data[at : at + 4] = U32.pack(draw(st.sampled_from([0, 1, 0xFFFF, 0xFFFFFFFF])))
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=64), mutated()))
def test_fuzz_decoders_raise_only_the_codec_error(raw: bytes) -> None:
    for decoder in DECODERS:
        t0 = time.perf_counter()
        try:
            decoder(raw)
        except GuestOutputError:
            pass
        except ReflowError as exc:  # any other ReflowError is still the wrong class
            pytest.fail(f"{decoder.__name__}({raw!r}) raised {type(exc).__name__}: {exc}")
        assert time.perf_counter() - t0 < 1.0
