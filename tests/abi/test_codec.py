"""The v1 wire codec, checked against the shared test vectors in abi/vectors/."""

from __future__ import annotations

import contextlib
import json
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reflow._core._messages import Message
from reflow._errors import GuestOutputError, MessageError
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
from reflow.abi._codec import (
    BATCH_HEAD,
    TickCodec,
    decode_batch_head,
    decode_batch_results,
    encode_batch,
)


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


@pytest.mark.parametrize(("port", "fragment"), [("", "1..255 bytes"), ("p" * 256, "1..255 bytes")])
def test_port_name_limits(port: str, fragment: str) -> None:
    with pytest.raises(MessageError, match=fragment):
        encode_tick_input({port: Message.integer(1)})


def test_decoded_bytes_are_bytes() -> None:
    raw = encode_result_done([("out", Message.bytes(b"abc"))])
    assert type(decode_result(raw).outputs[0][1]["data"]) is bytes


def test_integer_is_little_endian_i64() -> None:
    assert encode_message(Message.integer(-1)) == b"\x03" + struct.pack("<q", -1)


def test_fail_text_with_bad_utf8_is_refused() -> None:
    # ABI.md section 3: the fail message is UTF-8 like every text field (issue #8).
    raw = b"\x01" + struct.pack("<I", 2) + b"\xc3\x28"
    with pytest.raises(GuestOutputError, match="at byte 5: text is not valid UTF-8"):
        decode_result(raw)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
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


def _codec_for(inputs: dict[str, Message]) -> TickCodec:
    return TickCodec(list(inputs), ["out", "in", "a"])


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=10), _messages, max_size=3))
def test_tick_codec_encode_into_matches_encode(inputs: dict[str, Message]) -> None:
    inputs = {p: m for p, m in inputs.items() if 0 < len(p.encode()) < 256}
    want = encode_tick_input(inputs)
    for codec in (_codec_for(inputs), TickCodec([], [])):  # declared ports, and none
        buf = bytearray(b"\xee" * (len(want) + 8))
        assert codec.encode_into(inputs, buf, 4, len(want)) == len(want)
        assert bytes(buf[4 : 4 + len(want)]) == want
        assert buf[:4] == b"\xee" * 4 and buf[4 + len(want) :] == b"\xee" * 4
        assert codec.encode_into(inputs, bytearray(len(want)), 0, len(want) - 1) == -len(want)


@pytest.mark.parametrize(
    "vector", [v for v in FRAMES if v["frame"] == "tick_input"], ids=lambda v: v["name"]
)
def test_tick_codec_encodes_input_vectors(vector: dict[str, Any]) -> None:
    value = _frame_value(vector)
    raw = bytes.fromhex(vector["hex"])
    buf = bytearray(len(raw))
    assert TickCodec(list(value), []).encode_into(value, buf, 0, len(raw)) == len(raw)
    assert bytes(buf) == raw


def _forged_integer(data: object) -> Message:
    """An Integer message whose data was changed after it was made (the constructor refuses
    a float): the codec still refuses it."""
    message = Message.integer(0)
    message["data"] = data
    return message


@pytest.mark.parametrize(
    ("message", "fragment"),
    [(Message.integer(2**63), "does not fit in 64 bits"), (_forged_integer(1.5), "64 bits")],
)
def test_tick_codec_rejects_like_the_encoder(message: Message, fragment: str) -> None:
    with pytest.raises(MessageError, match=fragment):
        TickCodec(["in"], []).encode_into({"in": message}, bytearray(64), 0, 64)


def _decode_single(codec: TickCodec, raw: bytes) -> Any:
    # Surrounded by other bytes, as in linear memory: nothing outside the frame may count.
    before = b"\x00\x01\x00\x03out\x03"
    view = memoryview(before + raw + b"\x06\x00\x00\x00\x00" * 4)
    return codec.decode_single(view, len(before), len(before) + len(raw))


@pytest.mark.parametrize(
    "vector",
    [v for v in FRAMES if v["frame"] in ("result_done", "result_fail")],
    ids=lambda v: v["name"],
)
def test_tick_codec_decodes_result_vectors_like_decode_result(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    full = decode_result(raw)
    ports = [p for p, _ in full.outputs]
    got = _decode_single(TickCodec([], ports), raw)
    hot = full.ok and len(full.outputs) == 1 and full.outputs[0][1].kind in ("Integer", "Bytes")
    if hot:
        assert got == dict(full.outputs)
        assert all(type(m) is Message for m in got.values())
    else:
        assert got is None
    # An undeclared port is never taken by the fast decoder.
    assert _decode_single(TickCodec([], ["zz"]), raw) is None


@pytest.mark.parametrize("vector", INVALID, ids=[v["name"] for v in INVALID])
def test_tick_codec_leaves_invalid_frames_to_decode_result(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    assert _decode_single(TickCodec([], ["out", "in", "a", "x"]), raw) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40), st.sampled_from(["out", "in"]))
def test_tick_codec_decode_agrees_with_decode_result(raw: bytes, port: str) -> None:
    frame = bytes((0, 1, 0, len(port))) + port.encode() + raw
    got = _decode_single(TickCodec([], [port]), frame)
    if got is not None:
        assert decode_result(frame).outputs == list(got.items())


def test_tick_codec_decodes_the_hot_kinds() -> None:
    codec = TickCodec([], ["out"])
    for m in (Message.integer(-7), Message.bytes(b""), Message.bytes(bytes(range(256)) * 4)):
        raw = encode_result_done([("out", m)])
        assert _decode_single(codec, raw) == {"out": m}
        assert _decode_single(codec, raw[:-1]) is None
        assert _decode_single(codec, raw + b"\x00") is None


def test_tick_codec_remembers_the_last_shape_without_trusting_it() -> None:
    # The decoder first tries the shape of the previous result; every kind of change after it
    # (port, kind, length, garbage) must still decode exactly like decode_result, or be None.
    codec = TickCodec([], ["out", "in"])
    frames = [
        encode_result_done([("out", Message.integer(1))]),
        encode_result_done([("out", Message.integer(2))]),
        encode_result_done([("in", Message.integer(3))]),
        encode_result_done([("in", Message.bytes(b"xyz"))]),
        encode_result_done([("in", Message.bytes(b""))]),
        encode_result_done([("in", Message.bytes(b"xyz"))])[:-1],
        encode_result_done([("out", Message.string("s"))]),
        encode_result_done([("out", Message.integer(4)), ("in", Message.integer(5))]),
        encode_result_done([("out", Message.integer(6))]) + b"\x00",
        encode_result_fail("no"),
        encode_result_done([("out", Message.integer(7))]),
    ]
    for raw in frames:
        got = _decode_single(codec, raw)
        try:
            full = decode_result(raw)
        except GuestOutputError:
            assert got is None
            continue
        hot = full.ok and len(full.outputs) == 1 and full.outputs[0][1].kind in ("Integer", "Bytes")
        assert got == (dict(full.outputs) if hot else None), raw


# -- batch frames (ABI 1.1) ----------------------------------------------------------------------
_ticks = st.lists(
    st.dictionaries(st.sampled_from(["in", "a", "zz"]), _messages, min_size=0, max_size=2),
    min_size=1,
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(_ticks)
def test_encode_batch_into_matches_encode_batch(ticks: list[dict[str, Message]]) -> None:
    want = encode_batch([encode_tick_input(t) for t in ticks])
    codec = TickCodec(["in", "a"], [])
    buf = bytearray(b"\xee" * (len(want) + 8))
    assert codec.encode_batch_into(ticks, buf, 4, len(want)) == (len(ticks), len(want), False)
    assert bytes(buf[4 : 4 + len(want)]) == want
    assert buf[:4] == b"\xee" * 4 and buf[4 + len(want) :] == b"\xee" * 4
    # One byte short: every tick but the last fits, and it says the buffer was full.
    m, size, full = codec.encode_batch_into(ticks, bytearray(len(want)), 0, len(want) - 1)
    assert full and m == len(ticks) - 1
    assert size == (len(encode_batch([encode_tick_input(t) for t in ticks[:-1]])) if m else 0)


def test_encode_batch_layout() -> None:
    frames = [encode_tick_input({"in": Message.integer(i)}) for i in (1, 2)]
    raw = encode_batch(frames)
    assert raw[:24] == struct.pack("<IIQII", 2, 0, 0, 0, 0) and len(raw) == BATCH_HEAD + 2 * 18
    assert raw[24:28] == struct.pack("<I", 14) and raw[28:42] == frames[0]
    assert decode_batch_head(raw) == (2, 0, 0, 0)


def test_encode_batch_into_stops_before_a_tick_that_cannot_cross() -> None:
    codec = TickCodec(["in"], [])
    good, bad = {"in": Message.integer(1)}, {"in": Message.integer(2**64)}
    buf = bytearray(256)
    assert codec.encode_batch_into([good, good, bad, good], buf, 0, 256)[:1] == (2,)
    with pytest.raises(MessageError, match="64 bits"):
        codec.encode_batch_into([bad, good], buf, 0, 256)


def _results(frames: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(f)) + f for f in frames)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.lists(st.tuples(st.sampled_from(["out", "in", "zz"]), _messages), max_size=2).map(
                encode_result_done
            ),
            st.text(max_size=8).map(encode_result_fail),
            st.binary(max_size=24),
        ),
        min_size=1,
        max_size=6,
    ),
    st.integers(0, 40),
)
def test_decode_batch_agrees_with_decode_batch_results(frames: list[bytes], limit: int) -> None:
    raw = _results(frames)
    codec = TickCodec([], ["out", "in"])
    view = memoryview(b"\x00\x01\x00\x03out\x03" + raw + b"\x00" * 16)  # bytes around it
    got = codec.decode_batch(view, 8, 8 + len(raw), len(frames), limit)
    want = decode_batch_results(raw, len(frames))
    assert len(got) == len(want) == len(frames)
    for g, w, f in zip(got, want, frames, strict=True):
        if type(g) is dict:  # a hot frame: exactly what decode_result makes of it
            assert isinstance(w, tuple) and w.ok and w.outputs == list(g.items())
            assert len(f) <= limit
        else:  # the span of the frame, for the full decoder
            assert bytes(view[g[0] : g[1]]) == f


def test_decode_batch_reports_truncated_results() -> None:
    frames = [encode_result_done([("out", Message.integer(i))]) for i in range(3)]
    raw = _results(frames)[:-5]
    codec = TickCodec([], ["out"])
    got = codec.decode_batch(memoryview(raw), 0, len(raw), 3, 1 << 20)
    assert got[:2] == [{"out": Message.integer(0)}, {"out": Message.integer(1)}]
    assert got[2] is None
    errs = decode_batch_results(raw, 3)
    assert isinstance(errs[2], GuestOutputError) and "before the result of tick 3" in str(errs[2])


def test_decode_batch_reads_runs_of_hot_frames() -> None:
    kib = bytes(range(256)) * 4
    frames = [encode_result_done([("out", Message.bytes(kib[: 1000 + i]))]) for i in range(5)]
    frames += [encode_result_done([("out", Message.integer(i))]) for i in range(5)]
    # equal-sized Bytes (read with one Struct each), then a frame of the same size that is
    # not hot (an undeclared port) and one with a bad length
    frames += [encode_result_done([("out", Message.bytes(kib[i:] + kib[:i]))]) for i in range(4)]
    frames += [encode_result_done([("zz", Message.bytes(kib))])]
    frames += [encode_result_done([("out", Message.bytes(kib))])[:-1] + b"\x00\x00"]
    frames += [encode_result_done([("out", Message.bytes(kib))])]
    raw = _results(frames)
    got = TickCodec([], ["out"]).decode_batch(memoryview(raw), 0, len(raw), len(frames), 1 << 20)
    assert got[:-3] == [dict(decode_result(f).outputs) for f in frames[:-3]]
    assert isinstance(got[-3], tuple) and isinstance(got[-2], tuple)  # left to decode_result
    assert got[-1] == {"out": Message.bytes(kib)}


def test_encode_batch_into_equal_sized_bytes() -> None:
    ticks = [{"in": Message.bytes(bytes([i]) * 1024)} for i in range(5)]
    ticks += [{"in": Message.bytes(b"y" * 1024)}, {"in": Message.bytes(b"z" * 9)}]
    want = encode_batch([encode_tick_input(t) for t in ticks])
    buf = bytearray(len(want))
    assert TickCodec(["in"], []).encode_batch_into(ticks, buf, 0, len(want))[:2] == (7, len(want))
    assert bytes(buf) == want
