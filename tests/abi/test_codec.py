"""The v1 wire codec, checked against the shared test vectors in abi/vectors/."""

from __future__ import annotations

import contextlib
import json
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reflow._errors import GuestOutputError, MessageError
from reflow._messages import Message
from reflow.abi import (
    KIND_CODES,
    VECTORS_DIR,
    decode_message,
    decode_open,
    decode_outputs,
    decode_result,
    decode_tick_input,
    encode_message,
    encode_open,
    encode_outputs,
    encode_result_done,
    encode_result_fail,
    encode_tick_input,
)
from reflow.abi._codec import encode_tick_input_into


def _load(name: str) -> dict[str, Any]:
    return json.loads((VECTORS_DIR / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


MESSAGES = _load("messages.json")["messages"]
FRAMES = _load("frames.json")["frames"]
INVALID = _load("invalid.json")["invalid"]


def test_vectors_declare_abi_1_0() -> None:
    for name in ("messages.json", "frames.json", "invalid.json"):
        assert _load(name)["abi"] == "1.0"


@pytest.mark.parametrize("vector", MESSAGES, ids=[v["name"] for v in MESSAGES])
def test_message_vector(vector: dict[str, Any]) -> None:
    msg = Message.from_json(vector["message"])
    raw = bytes.fromhex(vector["hex"])
    assert encode_message(msg) == raw
    back = decode_message(raw)
    assert back.as_json() == msg.as_json()
    assert raw[0] == KIND_CODES[msg.kind]


def _frame_value(vector: dict[str, Any]) -> Any:
    kind, v = vector["frame"], vector["value"]
    if kind == "tick_input":
        return {port: Message.from_json(m) for port, m in v.items()}
    if kind in ("result_done", "outputs"):
        return [(port, Message.from_json(m)) for port, m in v]
    return v


@pytest.mark.parametrize("vector", FRAMES, ids=[v["name"] for v in FRAMES])
def test_frame_vector(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    value = _frame_value(vector)
    kind = vector["frame"]
    if kind == "tick_input":
        assert encode_tick_input(value) == raw
        assert decode_tick_input(raw) == value
    elif kind == "result_done":
        assert encode_result_done(value) == raw
        result = decode_result(raw)
        assert result.ok and result.outputs == value and result.error == ""
    elif kind == "result_fail":
        assert encode_result_fail(value) == raw
        result = decode_result(raw)
        assert not result.ok and result.error == value and result.outputs == []
    elif kind == "outputs":
        assert encode_outputs(value) == raw
        assert decode_outputs(raw) == value
    elif kind == "open":
        assert encode_open(value["template"], value["node"], value["config"]) == raw
        assert decode_open(raw) == (value["template"], value["node"], value["config"])
    else:  # pragma: no cover - a vector kind this test does not know
        pytest.fail(f"unknown frame kind {kind}")


@pytest.mark.parametrize("vector", INVALID, ids=[v["name"] for v in INVALID])
def test_invalid_result_frames(vector: dict[str, Any]) -> None:
    with pytest.raises(GuestOutputError, match="invalid output encoding") as info:
        decode_result(bytes.fromhex(vector["hex"]))
    assert vector["error"] in str(info.value)


@pytest.mark.parametrize(
    ("message", "fragment"),
    [
        (Message.integer(2**63), "does not fit in 64 bits"),
        (Message.integer(-(2**63) - 1), "does not fit in 64 bits"),
        (Message._stream(object()), "cannot cross the guest boundary"),
        (Message.object({"x": float("nan")}), "not JSON-encodable"),
    ],
)
def test_encode_rejects(message: Message, fragment: str) -> None:
    with pytest.raises(MessageError, match=fragment):
        encode_message(message)


@pytest.mark.parametrize(
    ("port", "fragment"), [("", "1..255 bytes"), ("p" * 256, "1..255 bytes")]
)
def test_port_name_limits(port: str, fragment: str) -> None:
    with pytest.raises(MessageError, match=fragment):
        encode_tick_input({port: Message.integer(1)})


def test_decoded_bytes_are_bytes() -> None:
    raw = encode_result_done([("out", Message.bytes(b"abc"))])
    assert type(decode_result(raw).outputs[0][1]["data"]) is bytes


def test_integer_is_little_endian_i64() -> None:
    assert encode_message(Message.integer(-1)) == b"\x03" + struct.pack("<q", -1)


def test_fail_text_with_bad_utf8_is_replaced_not_raised() -> None:
    raw = b"\x01" + struct.pack("<I", 2) + b"\xc3\x28"
    assert "\ufffd" in decode_result(raw).error


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)
_messages = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(Message.integer),
    st.floats(allow_nan=False).map(Message.float),
    st.text().map(Message.string),
    st.binary(max_size=256).map(Message.bytes),
    st.booleans().map(Message.boolean),
    st.text().map(Message.error),
    st.just(Message.flow()),
    st.just(Message.null()),
    st.dictionaries(st.text(max_size=5), _json, max_size=4).map(Message.object),
    st.lists(_json, max_size=4).map(Message.array),
    _json.map(Message.any),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.text(min_size=1, max_size=20), _messages), max_size=6))
def test_round_trip_property(entries: list[tuple[str, Message]]) -> None:
    entries = [(p, m) for p, m in entries if 0 < len(p.encode()) < 256]
    raw = encode_result_done(entries)
    result = decode_result(raw)
    assert result.ok
    assert [(p, m.as_json()) for p, m in result.outputs] == [(p, m.as_json()) for p, m in entries]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_garbage_never_crashes_the_decoder(raw: bytes) -> None:
    with contextlib.suppress(GuestOutputError):
        decode_result(raw)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=10), _messages, max_size=3))
def test_encode_into_matches_encode(inputs: dict[str, Message]) -> None:
    inputs = {p: m for p, m in inputs.items() if 0 < len(p.encode()) < 256}
    want = encode_tick_input(inputs)
    buf = bytearray(b"\xee" * (len(want) + 8))
    assert encode_tick_input_into(inputs, buf, 4, len(want)) == len(want)
    assert bytes(buf[4 : 4 + len(want)]) == want
    assert buf[:4] == b"\xee" * 4 and buf[4 + len(want) :] == b"\xee" * 4
    small = bytearray(len(want))
    assert encode_tick_input_into(inputs, small, 0, len(want) - 1) == -len(want)
    assert small == bytearray(len(want))
