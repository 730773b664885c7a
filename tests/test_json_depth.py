"""Every JSON reader of the host refuses deep nesting with a clear error (issue 8, row 3).

Hostile inputs are written by hand here (bracket strings, nested dicts and lists built in
loops, a WAT guest), not through the project's builders. Each row: input -> the ReflowError
subclass -> fragments of its message (the depth, the limit, where), within a generous time
bound that proves "bounded" and without RecursionError. Huge but shallow input stays fine.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import wasmtime
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reflow import (
    Graph,
    GraphFormatError,
    GuestGrants,
    Message,
    MessageError,
    Network,
    ReflowError,
    SubgraphBuilder,
    compose_graphs,
    template_actor,
)
from reflow._jsonread import MAX_DEPTH, JSONDepthError, loads, measure_depth, text_depth
from reflow.testing import run_tick

DEEP = 100_000  # levels, for the "10^5 deep" rows
BOUND_S = 5.0  # generous (a shared, busy machine): each row takes well under a second


# -- hand-built deep values --------------------------------------------------------------------


def nested_lists(n: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(n):
        value = [value]
    return value


def nested_dicts(n: int, key: str = "a", leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(n):
        value = {key: value}
    return value


def nested_mixed(n: int) -> Any:
    value: Any = 1
    for i in range(n):
        value = [value] if i % 2 else {"k": value}
    return value


def nested_messages(n: int, kind: str = "Any") -> dict[str, Any]:
    value: dict[str, Any] = {"type": "Integer", "data": 1}
    for _ in range(n):
        value = {"type": kind, "data": value}
    return value


def cyclic_list() -> list[Any]:
    value: list[Any] = []
    value.append(value)
    return value


def shared_dag(levels: int) -> list[Any]:
    """2**levels paths through ``levels`` distinct lists: walked as a tree it never ends."""
    value: list[Any] = []
    for _ in range(levels):
        value = [value, value]
    return value


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    try:
        result: Any = fn()
    except RecursionError as exc:  # the failure class this file is about
        pytest.fail(f"RecursionError leaked: {exc}")
    except Exception as exc:  # returned for the row to judge
        result = exc
    return result, time.perf_counter() - t0


def expect(fn: Callable[[], Any], error: type[Exception], fragments: tuple[str, ...]) -> Exception:
    result, elapsed = timed(fn)
    assert isinstance(result, error), f"expected {error.__name__}, got {result!r}"
    for fragment in fragments:
        assert fragment in str(result), f"{fragment!r} not in {str(result)!r}"
    assert elapsed < BOUND_S, f"took {elapsed:.2f} s"
    assert len(str(result)) < 400, "the message must stay short, however deep the input"
    return result


# -- messages ----------------------------------------------------------------------------------

LIMIT = f"deeper than {MAX_DEPTH} (the limit)"

MESSAGE_ROWS: list[tuple[str, Callable[[], Any], tuple[str, ...], str]] = [
    # id, call, message fragments, start of the error's .path
    (
        "text [[[ unterminated",
        lambda: Message.from_json("[" * DEEP),
        (f"nests {DEEP} levels deep", LIMIT, "line 1 column 201"),
        "$[0][0]",
    ),
    (
        "text [[[ ]]] balanced",
        lambda: Message.from_json("[" * DEEP + "]" * DEEP),
        (f"nests {DEEP} levels deep", LIMIT),
        "$[0]",
    ),
    (
        "text {{{ objects",
        lambda: Message.from_json('{"a":' * DEEP + "1" + "}" * DEEP),
        (f"nests {DEEP} levels deep", LIMIT),
        "$.a.a",
    ),
    (
        "text mixed [{",
        lambda: Message.from_json('[{"k":' * (DEEP // 2)),
        (f"nests {DEEP} levels deep", LIMIT),
        "$[0].k[0].k",
    ),
    (
        "text as bytes",
        lambda: Message.from_json(b"[" * DEEP),
        (f"nests {DEEP} levels", LIMIT),
        "$[0]",
    ),
    (
        "text Object data deep",
        lambda: Message.from_json('{"type":"Object","data":' + '{"x":' * DEEP),
        (f"nests {DEEP + 1} levels deep", LIMIT),
        "$.data.x.x",
    ),
    (
        "text odd keys",
        lambda: Message.from_json('{"a b":' * 300),
        ("nests 300 levels deep", LIMIT),
        '$["a b"]["a b"]',
    ),
    (
        "text 900 nested Any",
        lambda: Message.from_json(json.dumps(nested_messages(900))),
        ("nests 901 levels deep", LIMIT),
        "$.data.data",
    ),
    (
        "dict 900 nested Any",
        lambda: Message.from_json(nested_messages(900)),
        ("nests 901 levels deep", LIMIT),
        "$.data.data.data",
    ),
    (
        "dict 900 nested Optional",
        lambda: Message.from_json(nested_messages(900, "Optional")),
        ("nests 901 levels deep", LIMIT),
        "$.data.data",
    ),
    (
        "dict Object data 10^5",
        lambda: Message.from_json({"type": "Object", "data": nested_dicts(DEEP)}),
        (f"nests {DEEP + 1} levels", LIMIT),
        "$.data.a.a",
    ),
    (
        "dict Array data 10^5",
        lambda: Message.from_json({"type": "Array", "data": nested_lists(DEEP)}),
        (f"nests {DEEP + 1} levels", LIMIT),
        "$.data[0][0]",
    ),
    (
        "dict Any data mixed",
        lambda: Message.from_json({"type": "Any", "data": nested_mixed(1000)}),
        ("nests 1001 levels", LIMIT),
        "$.data[0].k[0]",
    ),
    (
        "dict Event data",
        lambda: Message.event(nested_dicts(500)),
        ("nests 501 levels", LIMIT),
        "$.data.a",
    ),
    (
        "from_value lists 10^5",
        lambda: Message.from_value(nested_lists(DEEP)),
        (f"nests {DEEP + 1} levels deep", LIMIT),
        "$.data[0]",
    ),
    (
        "from_value dicts 10^5",
        lambda: Message.from_value(nested_dicts(DEEP)),
        (f"nests {DEEP + 1} levels deep", LIMIT),
        "$.data.a",
    ),
    (
        "from_value tuples",
        lambda: Message.from_value(tuple(nested_lists(1000))),
        ("nests 1001 levels deep", LIMIT),
        "$.data[0]",
    ),
    (
        "from_value mixed",
        lambda: Message.from_value(nested_mixed(DEEP)),
        (f"nests {DEEP + 1} levels deep", LIMIT),
        "$.data",
    ),
    (
        "from_value cycle",
        lambda: Message.from_value(cyclic_list()),
        ("nests without end (it contains itself)", LIMIT),
        "$.data[0][0]",
    ),
    (
        "Message.array cycle",
        lambda: Message.array([1, cyclic_list()]),
        ("contains itself",),
        "$.data[1][0]",
    ),
    (
        "Message.object cycle through dict",
        lambda: (lambda d: (d.__setitem__("me", d), Message.object(d)))({})[1],
        ("contains itself",),
        "$.data.me.me",
    ),
    (
        "Array around deep built Messages",
        lambda: _deep_built(150),
        ("nests 202 levels deep", LIMIT),
        "$.data[0][0]",
    ),
]


def _deep_built(n: int) -> Message:
    """``n`` Any messages around an Integer, built with the constructors (each step legal),
    then put 50 lists deep in an Array message."""
    msg = Message.integer(1)
    for _ in range(n):
        msg = Message.any(msg)
    return Message.array(nested_lists(50, msg))


@pytest.mark.parametrize(
    ("call", "fragments", "path"), [pytest.param(*row[1:], id=row[0]) for row in MESSAGE_ROWS]
)
def test_deep_messages_are_refused(
    call: Callable[[], Any], fragments: tuple[str, ...], path: str
) -> None:
    err = expect(call, MessageError, fragments)
    assert err.path.startswith(path), err.path  # type: ignore[attr-defined]


def test_message_any_chain_built_by_constructors_stops_at_the_limit() -> None:
    msg = Message.integer(1)
    built = 0
    with pytest.raises(MessageError, match=LIMIT.replace("(", r"\(").replace(")", r"\)")):
        for _ in range(900):
            msg = Message.any(msg)
            built += 1
    assert built == MAX_DEPTH - 1  # 199 Any around the Integer: 200 levels
    assert len(json.dumps(msg.as_json())) > 0 and repr(msg)  # what was built is usable


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(lambda: "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1), id="text lists"),
        pytest.param(
            lambda: {"type": "Array", "data": nested_lists(MAX_DEPTH - 2)}, id="dict Array data"
        ),
        pytest.param(lambda: nested_messages(MAX_DEPTH - 1), id="nested Any"),
    ],
)
def test_nesting_up_to_the_limit_is_fine(value: Callable[[], Any]) -> None:
    v = value()
    if isinstance(v, str):  # the message is level 1: put the lists in its data
        v = '{"type":"Array","data":' + v + "}"
    msg = Message.from_json(v)
    again = Message.from_json(msg.to_json_string())  # its own JSON reads back
    assert again.as_json() == msg.as_json()


def test_one_level_past_the_limit_is_refused_in_text_and_values() -> None:
    text = '{"type":"Array","data":' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}"
    with pytest.raises(MessageError, match=f"nests {MAX_DEPTH + 1} levels deep"):
        Message.from_json(text)
    with pytest.raises(MessageError, match=f"nests {MAX_DEPTH + 1} levels deep"):
        Message.from_json(json.loads(text))


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        pytest.param(
            '{"type":"String","data":"' + "[" * DEEP + '"}', "String", id="brackets inside a string"
        ),
        pytest.param(
            '{"type":"String","data":"' + '\\"[{' * DEEP + '"}',
            "String",
            id="escaped quotes and brackets inside a string",
        ),
        pytest.param(
            '{"type":"Array","data":[' + ",".join(["[1]"] * 200_000) + "]}",
            "Array",
            id="200000 shallow items",
        ),
        pytest.param(
            '{"type":"Object","data":{'
            + ",".join(f'"k{i}":{{"v":[{i}]}}' for i in range(50_000))
            + "}}",
            "Object",
            id="50000 shallow keys",
        ),
    ],
)
def test_huge_but_shallow_messages_are_fine(text: str, kind: str) -> None:
    result, elapsed = timed(lambda: Message.from_json(text))
    assert isinstance(result, Message), result
    assert result.kind == kind
    assert elapsed < 10 * BOUND_S


def test_shared_sub_values_are_checked_once() -> None:
    # 2**60 paths through 60 lists: a tree walk would never end, a checked-once walk is instant
    msg, elapsed = timed(lambda: Message.from_value(shared_dag(60)))
    assert isinstance(msg, Message) and elapsed < BOUND_S
    err = expect(
        lambda: Message.from_value(shared_dag(300)), MessageError, ("nests 302 levels deep", LIMIT)
    )  # 301 lists in an Array message
    assert err.path.startswith("$.data[0]")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"type": "Float", "data": 10**400}, "Float data must fit a 64-bit float"),
        ('{"type":"Float","data":' + "9" * 400 + "}", "Float data must fit a 64-bit float"),
        ('{"type":"Integer","data":' + "9" * 5000 + "}", "not valid JSON"),
        ({"type": nested_dicts(DEEP)}, "unknown message type {'a': {'a': {"),
        ({"type": "Integer", "data": 1, **{f"x{i}": 0 for i in range(1000)}}, "(and 995 more)"),
        (b"\xff\xfe\x00[", "not valid JSON"),
    ],
)
def test_other_message_input_that_used_to_leak(value: Any, fragment: str) -> None:
    expect(lambda: Message.from_json(value), MessageError, (fragment,))


_JSONISH = st.text(
    alphabet=st.sampled_from(
        '[]{}",:\\ 0123456789.eE-+truefalsn\nInteger type data Array Any Object'
    ),
    max_size=400,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(max_size=300),
        _JSONISH,
        st.builds(lambda n, s: "[" * n + s, st.integers(0, 3000), _JSONISH),
    )
)
def test_from_json_on_any_text_raises_only_message_error(text: str) -> None:
    with contextlib.suppress(MessageError):
        Message.from_json(text)
    with contextlib.suppress(MessageError):
        Message.from_json(text.encode("utf-8", "surrogatepass"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=300), _JSONISH))
def test_graph_from_json_on_any_text_raises_only_graph_format_error(text: str) -> None:
    with contextlib.suppress(GraphFormatError):
        Graph.from_json(text)


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='ab"\\[]{}:,', max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(alphabet='k"\\[{', max_size=3), inner, max_size=3)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(_JSON_VALUES)
def test_text_depth_is_the_depth_of_the_value(value: Any) -> None:
    assert text_depth(json.dumps(value)) == measure_depth(value)
    assert text_depth(json.dumps(value, indent=2)) == measure_depth(value)


def test_loads_names_the_position_in_multi_line_text() -> None:
    text = '{\n  "ok": [1, 2],\n  "deep": ' + "[" * 300 + "]" * 300 + "\n}"
    with pytest.raises(JSONDepthError) as info:
        loads(text)
    assert info.value.position == "line 3 column 210"  # the 200th "[" of that line
    assert info.value.path == "$.deep[0][0][0][0][0][0][0][...191 levels...][0]"
    assert (info.value.depth, info.value.limit) == (301, MAX_DEPTH)


# -- graphs ------------------------------------------------------------------------------------

GLIMIT = f"deeper than {MAX_DEPTH} (the limit)"


def _graph_text(where: str, deep_json: str) -> str:
    docs = {
        "metadata": '{"processes":{"n":{"component":"c","metadata":%s}}}',
        "iip": '{"processes":{"n":{"component":"c"}},"connections":[{"data":%s,'
        '"tgt":{"process":"n","port":"in"}}]}',
        "properties": '{"properties":{"name":"g","x":%s}}',
        "group": '{"processes":{"n":{"component":"c"}},'
        '"groups":[{"name":"g","nodes":["n"],"metadata":%s}]}',
        "unknown key": '{"extra":%s}',
        "root": "%s",
    }
    return docs[where] % deep_json


GRAPH_ROWS: list[tuple[str, Callable[[], Any], tuple[str, ...], str]] = [
    (
        "text metadata {{{",
        lambda: Graph.from_json(_graph_text("metadata", '{"a":' * DEEP)),
        (f"graph JSON nests {DEEP + 3} levels deep", GLIMIT, "line 1 column"),
        "$.processes.n.metadata.a",
    ),
    # the arrays never close, so the "tgt" object after them is one level deeper still
    (
        "text iip [[[",
        lambda: Graph.from_json(_graph_text("iip", "[" * DEEP)),
        (f"nests {DEEP + 4} levels deep", GLIMIT),
        "$.connections[0].data[0]",
    ),
    (
        "text properties mixed",
        lambda: Graph.from_json(_graph_text("properties", '[{"k":' * 5000)),
        ("nests 10002 levels deep", GLIMIT),
        "$.properties.x[0].k",
    ),
    (
        "text group metadata",
        lambda: Graph.from_json(_graph_text("group", '{"a":' * 500)),
        ("nests 503 levels deep", GLIMIT),
        "$.groups[0].metadata.a",
    ),
    (
        "text unknown key",
        lambda: Graph.from_json(_graph_text("unknown key", "[" * DEEP)),
        (f"nests {DEEP + 1} levels deep", GLIMIT),
        "$.extra[0]",
    ),
    ("text root [[[", lambda: Graph.from_json("[" * DEEP), (f"nests {DEEP} levels deep",), "$[0]"),
    (
        "bytes",
        lambda: Graph.from_json(_graph_text("metadata", '{"a":' * DEEP).encode()),
        (f"nests {DEEP + 3} levels deep",),
        "$.processes.n.metadata",
    ),
    (
        "dict metadata",
        lambda: Graph.from_json(
            {"processes": {"n": {"component": "c", "metadata": nested_dicts(DEEP)}}}
        ),
        (f"graph nests {DEEP + 3} levels deep", GLIMIT),
        "$.processes.n.metadata.a",
    ),
    (
        "dict iip data cycle",
        lambda: Graph.from_json(
            {
                "processes": {"n": {"component": "c"}},
                "connections": [{"data": cyclic_list(), "tgt": {"process": "n", "port": "in"}}],
            }
        ),
        ("without end (it contains itself)",),
        "$.connections[0].data[0]",
    ),
    (
        "dict port type",
        lambda: Graph.from_json(
            {
                "processes": {"n": {"component": "c"}},
                "inports": {
                    "in": {"process": "n", "port": "in", "portType": nested_dicts(DEEP, "value")}
                },
            }
        ),
        (f"nests {DEEP + 3} levels",),
        "$.inports.in.portType.value",
    ),
    ("Graph.import_graph", lambda: Graph().import_graph("[" * DEEP), ("nests",), "$[0]"),
    (
        "add_initial",
        lambda: _graph().add_initial("n", "in", nested_lists(DEEP)),
        ("initial packet nests", GLIMIT),
        "$.connections[0].data[0]",
    ),
    (
        "add_initial message-shaped",
        lambda: _graph().add_initial("n", "in", nested_messages(900)),
        ("initial packet nests", GLIMIT),
        "$.connections[0].data.data",
    ),
    (
        "add_node metadata",
        lambda: _graph().add_node("m", "c", nested_dicts(DEEP)),
        ("metadata nests", GLIMIT),
        "$.processes.m.metadata.a",
    ),
    (
        "set_node_metadata",
        lambda: _graph().set_node_metadata("n", nested_dicts(DEEP)),
        ("metadata nests", GLIMIT),
        "$.processes.n.metadata.a",
    ),
    (
        "add_connection metadata",
        lambda: _graph().add_connection("n", "out", "n", "in", nested_mixed(DEEP)),
        ("metadata nests",),
        "$.connections[0]",
    ),
    (
        "add_group metadata",
        lambda: _graph().add_group("g", ["n"], nested_dicts(DEEP)),
        ("metadata nests",),
        "$.groups[0].metadata.a",
    ),
    (
        "add_inport port type",
        lambda: _graph().add_inport("in", "n", "in", nested_dicts(DEEP, "value")),
        ("port type nests",),
        "$.inports.in.portType.value",
    ),
    (
        "set_properties",
        lambda: _graph().set_properties({"x": nested_lists(DEEP)}),
        ("properties nests", GLIMIT),
        "$.properties.x[0]",
    ),
    (
        "compose_graphs member text",
        lambda: compose_graphs({"graphs": [_graph_text("properties", "[" * DEEP)]}),
        ("graph JSON nests",),
        "$.graphs[0].properties.x[0]",
    ),
    (
        "compose_graphs member dict",
        lambda: compose_graphs(
            {
                "graphs": [
                    {
                        "properties": {"name": "a"},
                        "processes": {"n": {"component": "c", "metadata": nested_dicts(DEEP)}},
                    }
                ]
            }
        ),
        ("graph nests",),
        "$.graphs[0].processes.n.metadata.a",
    ),
    (
        "compose_graphs properties",
        lambda: compose_graphs(
            {"graphs": [{"properties": {"name": "a"}}], "properties": nested_dicts(DEEP)}
        ),
        ("composition nests", GLIMIT),
        "$.properties.a",
    ),
    (
        "compose_graphs connection metadata",
        lambda: compose_graphs(
            {
                "graphs": [{"properties": {"name": "a"}}],
                "connections": [{"metadata": nested_lists(DEEP)}],
            }
        ),
        ("composition nests",),
        "$.connections[0].metadata[0]",
    ),
    (
        "Network.from_graph text",
        lambda: Network.from_graph(_graph_text("iip", "[" * DEEP)),
        ("graph JSON nests",),
        "$.connections[0].data",
    ),
    (
        "Network.from_graph dict",
        lambda: Network.from_graph(
            {"processes": {"n": {"component": "c", "metadata": nested_mixed(DEEP)}}}
        ),
        ("graph nests",),
        "$.processes.n.metadata",
    ),
    (
        "SubgraphBuilder text",
        lambda: SubgraphBuilder(_graph_text("metadata", '{"a":' * DEEP)),
        ("graph JSON nests",),
        "$.processes.n.metadata.a",
    ),
    (
        "SubgraphBuilder dict",
        lambda: SubgraphBuilder(
            {"processes": {"n": {"component": "c", "metadata": cyclic_list()}}}
        ),
        ("contains itself",),
        "$.processes.n.metadata[0]",
    ),
]


def _graph() -> Graph:
    g = Graph("g")
    g.add_node("n", "c")
    return g


@pytest.mark.parametrize(
    ("call", "fragments", "path"), [pytest.param(*row[1:], id=row[0]) for row in GRAPH_ROWS]
)
def test_deep_graphs_are_refused(
    call: Callable[[], Any], fragments: tuple[str, ...], path: str
) -> None:
    err = expect(call, GraphFormatError, fragments)
    assert err.path.startswith(path), err.path  # type: ignore[attr-defined]
    assert str(err).startswith(err.path + ": ")  # type: ignore[attr-defined]


def test_a_graph_as_deep_as_methods_allow_reads_back_from_its_own_json() -> None:
    # values handed to methods are counted at level 5 of the document
    # (see reflow._core._graph_values.VALUE_LEVEL)
    g = _graph()
    g.add_initial("n", "in", nested_lists(MAX_DEPTH - 4))  # the deepest add_initial allows
    g.add_node("m", "c", nested_dicts(MAX_DEPTH - 4))
    g.add_connection("n", "out", "m", "in", nested_dicts(MAX_DEPTH - 4))
    g.set_properties({"x": nested_lists(MAX_DEPTH - 2)})
    text = json.dumps(g.to_json())
    assert Graph.from_json(text).to_json() == g.to_json()
    with pytest.raises(GraphFormatError, match="initial packet nests 201 levels"):
        g.add_initial("n", "in", nested_lists(MAX_DEPTH - 3))
    with pytest.raises(GraphFormatError, match="properties nests 201 levels"):
        g.set_properties({"x": nested_lists(MAX_DEPTH - 1)})


def test_network_add_initial_deep_data_is_a_message_error() -> None:
    with Network() as net:
        net.register_actor("c", template_actor("tpl_flow_passthrough"))
        net.add_node("n", "c")
        expect(
            lambda: net.add_initial("n", "in", {"type": "Array", "data": nested_lists(DEEP)}),
            MessageError,
            (f"nests {DEEP + 1} levels deep",),
        )
        expect(
            lambda: net.add_initial("n", "in", nested_messages(900)),
            MessageError,
            ("nests 901 levels deep",),
        )


def test_huge_but_shallow_graph_is_fine() -> None:
    doc = {
        "processes": {
            f"n{i}": {"component": "c", "metadata": {"x": [i, {"y": i}]}} for i in range(20_000)
        },
        "connections": [
            {
                "src": {"process": f"n{i}", "port": "out"},
                "tgt": {"process": f"n{i + 1}", "port": "in"},
            }
            for i in range(19_999)
        ],
    }
    g, elapsed = timed(lambda: Graph.from_json(json.dumps(doc)))
    assert isinstance(g, Graph), g
    assert len(g.nodes()) == 20_000 and elapsed < 20 * BOUND_S


# -- other readers: the json_parse actor, a guest's http_request -------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[" * DEEP, f"nests {DEEP} levels deep"),
        ('{"a":' * DEEP, f"nests {DEEP} levels deep"),
        ("[" * 150 + "]" * 150, None),  # fine
    ],
)
def test_json_parse_actor(text: str, fragment: str | None) -> None:
    result, elapsed = timed(
        lambda: run_tick(template_actor("tpl_json_parse"), {"in": Message.string(text)})
    )
    assert elapsed < BOUND_S
    if fragment is None:
        assert result.failures == [] and result.values("out")
    else:
        (failure,) = result.failures
        assert "in-port 'in': not valid JSON" in failure.error and fragment in failure.error


def _wat_bytes(raw: bytes) -> str:
    return "".join(f"\\{b:02x}" for b in raw)


def _http_guest(request: bytes) -> bytes:
    """A guest whose tick calls http_request with ``request`` (hand-written WAT)."""
    describe = (
        b'{"abi":"1.0","templates":[{"id":"deep/http","inports":["in"],'
        b'"outports":[],"capabilities":["http"]}]}'
    )
    done = f"(i64.const {(3 << 32) | 3000})"
    pages = len(request) // 65536 + 2
    return wasmtime.wat2wasm(f"""(module
      (import "reflow" "http_request" (func $http (param i32 i32) (result i32)))
      (memory (export "memory") {pages})
      (data (i32.const 1024) "{_wat_bytes(describe)}")
      (data (i32.const 3000) "\\00\\00\\00")
      (data (i32.const 65536) "{_wat_bytes(request)}")
      (func (export "reflow_abi_version") (result i32) (i32.const 65536))
      (func (export "reflow_alloc") (param i32) (result i32) (i32.const 8192))
      (func (export "reflow_describe") (result i64) (i64.const {(len(describe) << 32) | 1024}))
      (func (export "reflow_open") (param i32 i32) (result i64) {done})
      (func (export "reflow_tick") (param i32 i32) (result i64)
        (drop (call $http (i32.const 65536) (i32.const {len(request)}))) {done}))""")


@pytest.mark.parametrize(
    "request_text",
    [b'{"url":' + b"[" * DEEP, b'{"method":"GET","url":"http://x/","headers":' + b'{"a":' * DEEP],
    ids=["url [[[", "headers {{{"],
)
def test_guest_http_request_too_deep_fails_its_tick(request_text: bytes) -> None:
    from reflow import default_engine

    actor = (
        default_engine()
        .load(_http_guest(request_text))
        .actor(grants=GuestGrants(http_hosts=("*",)))
    )
    with Network() as net:
        net.register_actor("deep/http", actor)
        net.add_node("g", "deep/http")
        net.add_initial("g", "in", Message.flow())
        summary, elapsed = timed(lambda: net.run(timeout=30))
    assert elapsed < 10 * BOUND_S
    (failure,) = summary.failures
    assert "GuestOutputError: http_request" in failure.error
    assert f"nests {DEEP + 1} levels deep" in failure.error


# -- memory: a 10 MB bracket bomb, in a child process ---------------------------------------

_RSS_CHILD = """
import psutil
from reflow import Graph, GraphFormatError, Message, MessageError

def high_water():  # this process's peak RSS (VmHWM: not inherited across exec, unlike maxrss)
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))

text = '[" ",' * 2_000_000  # 10 MB, 2 000 000 levels, strings for the scanner to skip
base = psutil.Process().memory_info().rss
for reader, error in ((Message.from_json, MessageError), (Graph.from_json, GraphFormatError)):
    try:
        reader(text)
    except error as exc:
        assert "nests 2000000 levels deep" in str(exc), exc
print(max(0, high_water() - base))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_a_10mb_bracket_bomb_is_refused_in_bounded_memory() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _RSS_CHILD], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    grown = int(proc.stdout.strip())
    # the text itself is 10 MB; the scan makes at most a few copies of it, never a tree
    assert grown < 64 * 2**20, f"peak RSS grew by {grown / 2**20:.0f} MiB"


def test_every_depth_error_is_a_reflow_error() -> None:
    for row in MESSAGE_ROWS[:3] + GRAPH_ROWS[:3]:
        result, _ = timed(row[1])
        assert isinstance(result, ReflowError)
