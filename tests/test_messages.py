"""reflow._core._messages: Message kinds, constructors, validation, JSON form."""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import pytest

from reflow import Message, MessageError, ReflowError
from reflow._core._messages import KINDS, as_message

# -- constructors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg", "kind", "data"),
    [
        (Message.integer(42), "Integer", 42),
        (Message.float(1.5), "Float", 1.5),
        (Message.string("hi"), "String", "hi"),
        (Message.boolean(True), "Boolean", True),
        (Message.boolean(0), "Boolean", False),
        (Message.object({"a": [1, {"b": None}]}), "Object", {"a": [1, {"b": None}]}),
        (Message.array([1, "x", None]), "Array", [1, "x", None]),
        (Message.array((1, 2)), "Array", [1, 2]),
        (Message.bytes(b"\x00\xff"), "Bytes", b"\x00\xff"),
        (Message.bytes(bytearray(b"ab")), "Bytes", b"ab"),
        (Message.bytes(memoryview(b"ab")), "Bytes", b"ab"),
        (Message.bytes([1, 2, 255]), "Bytes", b"\x01\x02\xff"),
        (Message.flow(), "Flow", None),
        (Message.null(), "Null", None),
        (Message.error("bad"), "Error", "bad"),
        (Message.error(ValueError("v")), "Error", "v"),
        (Message.event({"name": "tick"}), "Event", {"name": "tick"}),
        (Message.optional(), "Optional", None),
        (Message.optional(3), "Optional", 3),
        (Message.any({"x": 1}), "Any", {"x": 1}),
    ],
)
def test_constructors(msg: Message, kind: str, data: Any) -> None:
    assert isinstance(msg, dict)
    assert type(msg) is Message
    assert msg.kind == kind
    assert msg["type"] == kind
    # as offbit_reflow: Bytes has no portable JSON payload (as_bytes() gives the bytes)
    assert msg.data() == (None if kind == "Bytes" else data)
    if kind in ("Flow", "Null"):
        assert "data" not in msg
    else:
        assert msg["data"] == data


def test_message_is_its_json_dict() -> None:
    m = Message.integer(21)
    assert m == {"type": "Integer", "data": 21}
    assert repr(m) == "{'data': 21, 'type': 'Integer'}"  # as offbit_reflow prints it
    assert json.loads(json.dumps(m)) == {"type": "Integer", "data": 21}


def test_kinds_are_those_of_the_design() -> None:
    assert set(KINDS) == {
        "Flow",
        "Event",
        "Boolean",
        "Integer",
        "Float",
        "String",
        "Object",
        "Array",
        "Bytes",
        "Stream",
        "Optional",
        "Any",
        "Error",
        "Null",
    }


# -- from_json -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"type": "Integer", "data": 7}, Message.integer(7)),
        ({"type": "Float", "data": 2}, Message.float(2.0)),
        ({"type": "String", "data": ""}, Message.string("")),
        ({"type": "Boolean", "data": False}, Message.boolean(False)),
        ({"type": "Flow"}, Message.flow()),
        ({"type": "Null"}, Message.null()),
        ({"type": "Null", "data": None}, Message.null()),
        ({"type": "Optional"}, Message.optional()),
        ({"type": "Array", "data": [[1], {"a": 2}]}, Message.array([[1], {"a": 2}])),
        ({"type": "Bytes", "data": [104, 105]}, Message.bytes(b"hi")),
        ({"type": "Bytes", "data": "aGk="}, Message.bytes(b"hi")),
        ({"type": "Error", "data": "x"}, Message.error("x")),
        ({"type": "Event", "data": {}}, Message.event({})),
        ('{"type": "Integer", "data": 5}', Message.integer(5)),
        (b'{"type": "String", "data": "b"}', Message.string("b")),
    ],
)
def test_from_json_valid(value: Any, expected: Message) -> None:
    got = Message.from_json(value)
    assert type(got) is Message
    assert got == expected
    assert type(got.data()) is type(expected.data())


def test_from_json_float_is_stored_as_float() -> None:
    assert type(Message.from_json({"type": "Float", "data": 3}).data()) is float


def test_from_json_returns_a_message_unchanged() -> None:
    m = Message.integer(1)
    assert Message.from_json(m) is m
    assert as_message(m) is m


def test_from_json_nested_message_in_any_and_optional() -> None:
    m = Message.from_json({"type": "Optional", "data": {"type": "Integer", "data": 3}})
    inner = m.data()
    assert type(inner) is Message
    assert inner.kind == "Integer"
    assert m.as_json() == {"type": "Optional", "data": {"type": "Integer", "data": 3}}
    a = Message.from_json({"type": "Any", "data": {"type": "Bytes", "data": [1]}})
    assert a.data().as_bytes() == b"\x01"
    assert a.as_json() == {"type": "Any", "data": {"type": "Bytes", "data": [1]}}


def test_stream_handle_alias_needs_a_live_stream() -> None:
    with pytest.raises(MessageError, match="live Stream") as info:
        Message.from_json({"type": "StreamHandle", "data": {"id": 1}})
    assert info.value.path == "$.data"


@pytest.mark.parametrize(
    ("value", "error", "fragment", "path"),
    [
        (42, MessageError, "a message must be an object", "$"),
        ([1, 2], MessageError, "got list", "$"),
        ("not json", MessageError, "not valid JSON", "$"),
        ({}, MessageError, 'needs a "type" field', "$.type"),
        ({"data": 1}, MessageError, 'needs a "type" field', "$.type"),
        ({"type": "Nope", "data": 1}, MessageError, "unknown message type 'Nope'", "$.type"),
        ({"type": 3, "data": 1}, MessageError, "unknown message type 3", "$.type"),
        ({"type": "Integer"}, MessageError, 'needs a "data" field', "$.data"),
        ({"type": "Integer", "data": "1"}, MessageError, "Integer data must be an int", "$.data"),
        ({"type": "Integer", "data": 1.0}, MessageError, "got float", "$.data"),
        ({"type": "Integer", "data": True}, MessageError, "got bool", "$.data"),
        ({"type": "Float", "data": "1"}, MessageError, "Float data must be a number", "$.data"),
        ({"type": "Float", "data": False}, MessageError, "got bool", "$.data"),
        ({"type": "Boolean", "data": 1}, MessageError, "Boolean data must be a bool", "$.data"),
        ({"type": "String", "data": 1}, MessageError, "String data must be a str", "$.data"),
        ({"type": "Error", "data": None}, MessageError, "Error data must be a str", "$.data"),
        ({"type": "Object", "data": []}, MessageError, "Object data must be an object", "$.data"),
        ({"type": "Event", "data": 1}, MessageError, "Event data must be an object", "$.data"),
        ({"type": "Array", "data": {}}, MessageError, "Array data must be a list", "$.data"),
        ({"type": "Flow", "data": 1}, MessageError, "Flow carries no data", "$.data"),
        ({"type": "Null", "data": "x"}, MessageError, "Null carries no data", "$.data"),
        ({"type": "Bytes", "data": [256]}, MessageError, "integers 0..255", "$.data"),
        ({"type": "Bytes", "data": "!!"}, MessageError, "must be base64", "$.data"),
        ({"type": "Bytes", "data": 5}, MessageError, "got int", "$.data"),
        ({"type": "Integer", "data": 1, "x": 2}, MessageError, "unexpected field(s) x", "$"),
        (
            {"type": "Object", "data": {"a": {"b": {1, 2}}}},
            MessageError,
            "set is not JSON data",
            "$.data.a.b",
        ),
        ({"type": "Array", "data": [1, b"x"]}, MessageError, "bytes is not JSON data", "$.data[1]"),
        ({"type": "Object", "data": {1: 2}}, MessageError, "keys must be strings", "$.data"),
        ({"type": "Any", "data": object()}, MessageError, "object is not JSON data", "$.data"),
        (
            {"type": "Optional", "data": {"type": "Integer", "data": "x"}},
            MessageError,
            "Integer data must be an int",
            "$.data.data",
        ),
    ],
)
def test_from_json_invalid(value: Any, error: type[Exception], fragment: str, path: str) -> None:
    with pytest.raises(error) as info:
        Message.from_json(value)
    assert fragment in str(info.value)
    assert info.value.path == path  # type: ignore[attr-defined]


def test_too_deep_nesting_is_refused() -> None:
    deep: Any = 1
    for _ in range(300):
        deep = [deep]
    with pytest.raises(MessageError, match="deeper than 200"):
        Message.array(deep)


@pytest.mark.parametrize(
    ("build", "fragment", "path"),
    [
        (lambda: Message.object([1]), "Object data must be an object", "$.data"),
        (lambda: Message.object({"k": object()}), "object is not JSON data", "$.data.k"),
        (lambda: Message.array("abc"), "Array data must be a list", "$.data"),
        (lambda: Message.bytes("abc"), "must be base64", "$.data"),
        (lambda: Message.bytes(3.5), "got float", "$.data"),
        (lambda: Message.bytes([-1]), "integers 0..255", "$.data"),
        (lambda: Message.event("x"), "Event data must be an object", "$.data"),
        (lambda: Message.any({1}), "set is not JSON data", "$.data"),
    ],
)
def test_validating_constructors_refuse_bad_data(build: Any, fragment: str, path: str) -> None:
    with pytest.raises(MessageError) as info:
        build()
    assert fragment in str(info.value)
    assert info.value.path == path


def test_message_error_is_a_reflow_error_and_a_value_error() -> None:
    assert issubclass(MessageError, ReflowError)
    assert issubclass(MessageError, ValueError)


# -- JSON form and accessors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg", "as_json"),
    [
        (Message.integer(1), {"type": "Integer", "data": 1}),
        (Message.bytes(b"\x01\x02"), {"type": "Bytes", "data": [1, 2]}),
        (Message.flow(), {"type": "Flow"}),
        (Message.null(), {"type": "Null"}),
        (Message.object({"a": 1}), {"type": "Object", "data": {"a": 1}}),
        (Message.optional(None), {"type": "Optional", "data": None}),
    ],
)
def test_as_json_round_trips(msg: Message, as_json: dict[str, Any]) -> None:
    got = msg.as_json()
    assert got == as_json
    assert type(got) is dict
    json.dumps(got)  # plain JSON
    assert Message.from_json(got) == msg
    assert Message.from_json(msg.to_json_string()) == msg


@pytest.mark.parametrize(
    ("msg", "accessor", "value"),
    [
        (Message.integer(3), "as_integer", 3),
        (Message.float(2.5), "as_float", 2.5),
        (Message.string("s"), "as_string", "s"),
        (Message.boolean(True), "as_boolean", True),
        (Message.bytes(b"b"), "as_bytes", b"b"),
    ],
)
def test_typed_accessors(msg: Message, accessor: str, value: Any) -> None:
    assert getattr(msg, accessor)() == value


@pytest.mark.parametrize(
    ("msg", "accessor", "fragment"),
    [
        (Message.integer(1), "take_stream", "not Stream"),
    ],
)
def test_typed_accessors_refuse_other_kinds(msg: Message, accessor: str, fragment: str) -> None:
    with pytest.raises(MessageError, match=fragment):
        getattr(msg, accessor)()


def test_copy_pickle_deepcopy() -> None:
    m = Message.object({"a": [1, 2]})
    assert copy.copy(m) is m
    d = copy.deepcopy(m)
    assert d == m and d is not m and type(d) is Message
    assert d["data"]["a"] is not m["data"]["a"]
    b = Message.bytes(b"xyz")
    for original in (m, b, Message.flow()):
        back = pickle.loads(pickle.dumps(original))
        assert back == original
        assert type(back) is Message


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (None, "Null"),
        (True, "Boolean"),
        (3, "Integer"),
        (2.5, "Float"),
        ("x", "String"),
        (b"ab", "Bytes"),
        ([1, 2], "Array"),
        ((1, 2), "Array"),
        ({"a": 1}, "Object"),
    ],
)
def test_from_value_infers_the_kind(value: object, kind: str) -> None:
    assert Message.from_value(value).kind == kind


@pytest.mark.parametrize(
    ("value", "fragment"),
    [(object(), "no message kind for a object"), ({1: 2}, "keys must be strings")],
)
def test_from_value_refuses(value: object, fragment: str) -> None:
    with pytest.raises(MessageError, match=fragment):
        Message.from_value(value)


ACCESSORS = ["as_integer", "as_float", "as_string", "as_boolean", "as_bytes"]
ANSWERS: list[tuple[Message, dict[str, Any]]] = [
    (Message.integer(42), {"as_integer": 42}),  # no conversion: as_float() is None
    (Message.float(1.5), {"as_float": 1.5}),
    (Message.string("abc"), {"as_string": "abc"}),
    (Message.error("bad"), {"as_string": "bad"}),
    (Message.boolean(False), {"as_boolean": False}),
    (Message.bytes(b"abc"), {"as_bytes": b"abc"}),
    (Message.flow(), {}),
    (Message.null(), {}),
    (Message.object({"a": 1}), {}),
    (Message.array([1]), {}),
]


@pytest.mark.parametrize(("msg", "answers"), ANSWERS, ids=[m.kind for m, _ in ANSWERS])
def test_typed_accessors_answer_none_for_other_kinds(msg: Message, answers: dict[str, Any]) -> None:
    """offbit_reflow's accessors return None for a message of another kind; so do these."""
    for name in ACCESSORS:
        got = getattr(msg, name)()
        assert got == answers.get(name) and (name in answers or got is None), (name, got)
