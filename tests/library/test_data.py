"""reflow.library._data and ._text: JSON, object, array, text and regex templates, through
real ticks."""

from __future__ import annotations

from typing import Any

import pytest

from reflow import Message
from reflow.library._data import (
    ArrayConcat,
    ArrayLength,
    ArrayPluck,
    ArraySlice,
    ArraySort,
    JsonParse,
    JsonStringify,
    ObjectGet,
    ObjectKeys,
    ObjectMerge,
    ObjectPick,
    ObjectSet,
)
from reflow.library._text import (
    RegexExtract,
    RegexMatch,
    RegexReplace,
    TextCase,
    TextEncode,
    TextJoin,
    TextReplace,
    TextSplit,
    TextTemplate,
)
from reflow.testing import TickResult, run_tick

S, Obj, A = Message.string, Message.object, Message.array


def only(result: TickResult, port: str = "out") -> Any:
    result.raise_for_failures()
    (msg,) = result.outputs[port]
    return msg


# -- JSON ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ('{"a": [1, 2]}', "Object", {"a": [1, 2]}),
        ("[1]", "Array", [1]),
        ("3", "Integer", 3),
        ("2.5", "Float", 2.5),
        ('"s"', "String", "s"),
        ("true", "Boolean", True),
        ("null", "Null", None),
    ],
)
def test_json_parse(text: str, kind: str, value: Any) -> None:
    msg = only(run_tick(JsonParse(), {"in": S(text)}))
    assert msg["type"] == kind and msg.get("data") == value
    assert only(run_tick(JsonParse(), {"in": Message.bytes(text.encode())})).get("data") == value


def test_json_stringify() -> None:
    assert only(run_tick(JsonStringify(), {"in": Obj({"b": 1, "a": "é"})})) == S('{"b":1,"a":"é"}')
    pretty = only(
        run_tick(JsonStringify(), {"in": Obj({"b": 1, "a": 2})}, {"indent": 2, "sort_keys": True})
    )
    assert pretty == S('{\n  "a": 2,\n  "b": 1\n}')
    assert only(run_tick(JsonStringify(), {"in": Message.bytes(b"\x01")})) == S("[1]")


# -- objects ---------------------------------------------------------------------------------

USER = {"user": {"name": "Ada", "emails": ["a@x", "b@x"]}, "n": 1}


def test_object_get() -> None:
    assert only(run_tick(ObjectGet(), {"in": Obj(USER)}, {"path": "user.emails[1]"})) == S("b@x")
    assert only(run_tick(ObjectGet(), {"in": Obj(USER)}, {"path": "$.n"})) == Message.integer(1)
    r = run_tick(ObjectGet(), {"in": Obj(USER)}, {"path": "user.phone"})
    assert only(r, "missing") == Obj(USER)
    r = run_tick(ObjectGet(), {"in": Obj(USER)}, {"path": "user.phone", "default": "none"})
    assert only(r) == S("none")


def test_object_set_from_config_and_port() -> None:
    out = only(run_tick(ObjectSet(), {"in": Obj(USER)}, {"path": "user.age", "value": 36}))
    assert out["data"]["user"]["age"] == 36 and "age" not in USER["user"]
    out = only(
        run_tick(ObjectSet(), {"in": Obj({}), "value": Message.bytes(b"\x02")}, {"path": "a.b"})
    )
    assert out["data"] == {"a": {"b": [2]}}


def test_object_pick_and_omit() -> None:
    obj = {"a": 1, "b": 2, "c": 3}
    assert only(run_tick(ObjectPick(), {"in": Obj(obj)}, {"keys": ["a", "c", "z"]}))["data"] == {
        "a": 1,
        "c": 3,
    }
    assert only(run_tick(ObjectPick(), {"in": Obj(obj)}, {"omit": ["a"]}))["data"] == {
        "b": 2,
        "c": 3,
    }


def test_object_merge_shallow_and_deep() -> None:
    a, b = {"x": {"p": 1}, "k": 1}, {"x": {"q": 2}}
    assert only(run_tick(ObjectMerge(), {"a": Obj(a), "b": Obj(b)}))["data"] == {
        "x": {"q": 2},
        "k": 1,
    }
    assert only(run_tick(ObjectMerge(), {"a": Obj(a), "b": Obj(b)}, {"deep": True}))["data"] == {
        "x": {"p": 1, "q": 2},
        "k": 1,
    }


def test_object_keys() -> None:
    r = run_tick(ObjectKeys(), {"in": Obj({"b": 2, "a": 1})}, {"sort": True})
    assert r.values("keys") == [["a", "b"]]
    assert r.values("values") == [[1, 2]]
    assert r.values("entries") == [[["a", 1], ["b", 2]]]


# -- arrays ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg", "n"),
    [(A([1, 2, 3]), 3), (S("héllo"), 5), (Obj({"a": 1}), 1), (Message.bytes(b"ab"), 2)],
)
def test_array_length(msg: Message, n: int) -> None:
    assert only(run_tick(ArrayLength(), {"in": msg})) == Message.integer(n)


def test_array_slice() -> None:
    data = A(list(range(10)))
    assert only(run_tick(ArraySlice(), {"in": data}, {"start": 2, "end": 5}))["data"] == [2, 3, 4]
    assert only(run_tick(ArraySlice(), {"in": data}, {"start": -2}))["data"] == [8, 9]
    assert only(run_tick(ArraySlice(), {"in": data}, {"step": 4}))["data"] == [0, 4, 8]


def test_array_sort() -> None:
    people = [{"n": "b", "age": 3}, {"n": "a", "age": 9}, {"n": "c"}]
    out = only(run_tick(ArraySort(), {"in": A(people)}, {"by": "age", "reverse": True}))
    assert [p["n"] for p in out["data"]] == ["a", "b", "c"]
    mixed = only(run_tick(ArraySort(), {"in": A(["b", 2, None, True, "a", 1.5, [1]])}))
    assert mixed["data"] == [None, True, 1.5, 2, "a", "b", [1]]


def test_array_concat_and_pluck() -> None:
    assert only(run_tick(ArrayConcat(), {"a": A([1]), "b": A([2, 3])}))["data"] == [1, 2, 3]
    items = A([{"id": 1}, {}, {"id": 3}])
    assert only(run_tick(ArrayPluck(), {"in": items}, {"path": "id"}))["data"] == [1, None, 3]
    assert only(run_tick(ArrayPluck(), {"in": items}, {"path": "id", "skip_missing": True}))[
        "data"
    ] == [1, 3]


# -- text ------------------------------------------------------------------------------------


def test_text_template() -> None:
    cfg = {"template": "Hi {user.name}, {{literal}} {user.emails[0]} {n} {user.emails}"}
    assert only(run_tick(TextTemplate(), {"in": Obj(USER)}, cfg)) == S(
        'Hi Ada, {literal} a@x 1 ["a@x","b@x"]'
    )
    assert only(run_tick(TextTemplate(), {"in": S("x")}, {"template": "<{}>"})) == S("<x>")
    assert only(
        run_tick(TextTemplate(), {"in": Obj({})}, {"template": "[{a}]", "missing": "empty"})
    ) == S("[]")


@pytest.mark.parametrize(
    ("mode", "text", "expected"),
    [
        ("upper", "abc", "ABC"),
        ("lower", "ABC", "abc"),
        ("title", "a b", "A B"),
        ("capitalize", "ab cd", "Ab cd"),
        ("trim", "  x  ", "x"),
        ("snake", "HelloWorld-again now", "hello_world_again_now"),
    ],
)
def test_text_case(mode: str, text: str, expected: str) -> None:
    assert only(run_tick(TextCase(), {"in": S(text)}, {"mode": mode})) == S(expected)


def test_text_split_join_replace() -> None:
    assert only(run_tick(TextSplit(), {"in": S(" a  b c ")}))["data"] == ["a", "b", "c"]
    assert only(run_tick(TextSplit(), {"in": S("a, b,,c")}, {"separator": ",", "trim": True}))[
        "data"
    ] == ["a", "b", "c"]
    assert only(run_tick(TextSplit(), {"in": S("a:b:c")}, {"separator": ":", "limit": 1}))[
        "data"
    ] == ["a", "b:c"]
    assert only(run_tick(TextJoin(), {"in": A(["a", 1, None])}, {"separator": "-"})) == S(
        "a-1-null"
    )
    assert only(
        run_tick(TextReplace(), {"in": S("a.b.c")}, {"find": ".", "replace": "/", "count": 1})
    ) == S("a/b.c")


def test_text_encode_round_trips() -> None:
    assert only(run_tick(TextEncode(), {"in": S("é")})) == Message.bytes("é".encode())
    assert only(
        run_tick(TextEncode(), {"in": Message.bytes(b"\xe9")}, {"encoding": "latin-1"})
    ) == S("é")
    assert only(run_tick(TextEncode(), {"in": Message.bytes(b"hi")}, {"encoding": "base64"})) == S(
        "aGk="
    )
    assert only(run_tick(TextEncode(), {"in": S("aGk=")}, {"encoding": "base64"})) == Message.bytes(
        b"hi"
    )
    assert only(run_tick(TextEncode(), {"in": S("6869")}, {"encoding": "hex"})) == Message.bytes(
        b"hi"
    )
    assert only(run_tick(TextEncode(), {"in": Message.bytes(b"\xff")}, {"errors": "replace"})) == S(
        "\ufffd"
    )


# -- regex -----------------------------------------------------------------------------------


def test_regex_match() -> None:
    cfg = {"pattern": r"(?P<user>\w+)@(\w+)\.com"}
    r = run_tick(RegexMatch(), {"in": S("mail ada@example.com now")}, cfg)
    r.raise_for_failures()
    assert r.values("matched") == [
        {
            "match": "ada@example.com",
            "start": 5,
            "end": 20,
            "groups": ["ada", "example"],
            "named": {"user": "ada"},
        }
    ]
    assert r.values("result") == [True]
    r = run_tick(RegexMatch(), {"in": S("mail ada@example.com now")}, {**cfg, "full": True})
    assert r.values("unmatched") == ["mail ada@example.com now"]
    assert r.values("result") == [False]
    r = run_tick(RegexMatch(), {"in": S("ABC")}, {"pattern": "abc", "flags": "i"})
    assert r.values("result") == [True]


def test_regex_extract() -> None:
    text = S("a1 b22 c333")
    assert only(run_tick(RegexExtract(), {"in": text}, {"pattern": r"\d+"}))["data"] == [
        "1",
        "22",
        "333",
    ]
    assert only(run_tick(RegexExtract(), {"in": text}, {"pattern": r"(\w)(\d+)", "group": 1}))[
        "data"
    ] == ["a", "b", "c"]
    detail = only(run_tick(RegexExtract(), {"in": text}, {"pattern": r"b\d+", "detail": True}))
    assert detail["data"][0]["start"] == 3


def test_regex_replace() -> None:
    assert only(
        run_tick(
            RegexReplace(),
            {"in": S("2026-01-02")},
            {"pattern": r"(\d+)-(\d+)-(\d+)", "replace": r"\3/\2/\1"},
        )
    ) == S("02/01/2026")


@pytest.mark.parametrize(
    ("actor", "inputs", "config", "fragment"),
    [
        (JsonParse(), {"in": S("{bad")}, None, "in-port 'in': not valid JSON: Expecting"),
        (JsonParse(), {"in": Message.integer(1)}, None, "in-port 'in': expected a String"),
        (JsonParse(), {"in": Message.bytes(b"\xff")}, None, "in-port 'in': Bytes are not UTF-8"),
        (JsonStringify(), {"in": S("x")}, {"indent": 99}, "config 'indent' must be <= 8"),
        (ObjectGet(), {"in": Obj({})}, None, "config 'path' is required"),
        (ObjectGet(), {"in": Obj({})}, {"path": "a..b"}, "config 'path': bad path"),
        (ObjectSet(), {"in": Obj({})}, {"path": "a"}, "config 'value' is not set"),
        (ObjectSet(), {"in": Obj({})}, {"path": "", "value": 1}, "config 'path' must name a field"),
        (
            ObjectSet(),
            {"in": Obj({"a": 1})},
            {"path": "a.b", "value": 1},
            "cannot set field 'b' on a int",
        ),
        (
            ObjectSet(),
            {"in": S("x")},
            {"path": "a", "value": 1},
            "in-port 'in': expected an Object, got String",
        ),
        (ObjectPick(), {"in": Obj({})}, None, "config 'keys' or 'omit' is required"),
        (ObjectPick(), {"in": Obj({})}, {"keys": "a"}, "config 'keys' must be a list"),
        (ObjectMerge(), {"a": Obj({}), "b": A([])}, None, "in-port 'b': expected an Object"),
        (ArrayLength(), {"in": Message.integer(1)}, None, "in-port 'in': expected an Array"),
        (ArraySlice(), {"in": A([])}, {"step": 0}, "config 'step' must be >= 1"),
        (ArraySort(), {"in": Obj({})}, None, "in-port 'in': expected an Array, got Object"),
        (ArrayPluck(), {"in": A([])}, None, "config 'path' is required"),
        (TextTemplate(), {"in": Obj({})}, None, "config 'template' is required"),
        (
            TextTemplate(),
            {"in": Obj({})},
            {"template": "{a}"},
            "placeholder {a} names a field that in-port 'in' does not have",
        ),
        (TextTemplate(), {"in": Obj({})}, {"template": "{a b}"}, "placeholder {a b}: bad path"),
        (TextCase(), {"in": S("x")}, {"mode": "shout"}, "config 'mode' must be one of"),
        (TextSplit(), {"in": A([])}, None, "in-port 'in': expected a String, got Array"),
        (TextJoin(), {"in": A([])}, {"separator": 1}, "config 'separator' must be a string"),
        (TextReplace(), {"in": S("x")}, {"find": ""}, "config 'find' must not be empty"),
        (TextEncode(), {"in": S("x")}, {"encoding": "klingon"}, "config 'encoding': unknown"),
        (TextEncode(), {"in": S("é")}, {"encoding": "ascii"}, "in-port 'in': cannot convert"),
        (TextEncode(), {"in": S("!!")}, {"encoding": "base64"}, "in-port 'in': not valid base64"),
        (RegexMatch(), {"in": S("x")}, {"pattern": "("}, "config 'pattern': invalid regular"),
        (RegexMatch(), {"in": S("x")}, None, "config 'pattern' is required"),
        (RegexMatch(), {"in": S("x")}, {"pattern": "x", "flags": "q"}, "config 'flags'"),
        (
            RegexMatch(),
            {"in": S("xxxx")},
            {"pattern": "x", "max_length": 2},
            "longer than config 'max_length' (2)",
        ),
        (
            RegexExtract(),
            {"in": S("x")},
            {"pattern": "x", "group": 3},
            "config 'group': the pattern has no group 3",
        ),
        (RegexReplace(), {"in": S("x")}, {"pattern": "x", "replace": r"\9"}, "config 'replace'"),
    ],
)
def test_bad_input_fails_the_tick(
    actor: Any, inputs: dict[str, Any], config: dict[str, Any] | None, fragment: str
) -> None:
    r = run_tick(actor, inputs, config)
    assert not r.ok
    assert fragment in r.failures[0].error
