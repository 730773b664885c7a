"""The expression language's limits: nesting depth (MAX_DEPTH) and length, at the parser and
at every entry point that takes an expression (flow templates, data operations, the array
expression templates and their WGSL compiler). Inputs are written by hand, not built."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest

from reflow import ActorError, Network, ReflowError, template_actor
from reflow._core._messages import Message
from reflow.library import Expression, ExpressionError
from reflow.library._expr import MAX_DEPTH, get_path, parse_path, set_path
from reflow.library._gpu_exprlang import compile_expression
from reflow.testing import run_tick

N = MAX_DEPTH

# construct: (opening, innermost, closing), each repeated n times; the value at depth N.
CONSTRUCTS: dict[str, tuple[str, str, str, Any]] = {
    "unary minus": ("-", "1", "", 1),
    "parentheses": ("(", "1", ")", 1),
    "not": ("not ", "1", "", True),
    "call": ("abs(", "1", ")", 1),
    "second argument": ("max(0, ", "1", ")", 1),
    "array": ("[", "1", "]", None),
    "object": ('{"k": ', "1", "}", None),
    "index": ("[1][", "0", "]", None),
    "exists": ("exists(", "1", ")", True),
    "right operand": ("1 - (", "1", ")", 1),
    "minus of a group": ("-(", "1", ")", 1),
}


def _nested(construct: str, n: int) -> str:
    opening, inner, closing, _ = CONSTRUCTS[construct]
    return opening * n + inner + closing * n


def _depth_of(construct: str) -> int:
    # "1 - (" and "-(" open two levels each (an operand and a group)
    return 2 if construct in ("right operand", "minus of a group") else 1


@pytest.mark.parametrize("construct", sorted(CONSTRUCTS))
def test_each_construct_at_the_limit_works(construct: str) -> None:
    source = _nested(construct, N // _depth_of(construct))
    value = Expression(source).evaluate({})
    expected = CONSTRUCTS[construct][3]
    if expected is not None:
        assert value == expected
    elif construct == "index":
        assert value == 1 or value is None
    else:
        assert value is not None


@pytest.mark.parametrize("construct", sorted(CONSTRUCTS))
def test_each_construct_past_the_limit_is_refused(construct: str) -> None:
    source = _nested(construct, N // _depth_of(construct) + 1)
    with pytest.raises(ExpressionError) as info:
        Expression(source)
    message = str(info.value)
    assert f"nesting deeper than {N} levels at position " in message
    position = int(message.rsplit(" ", 1)[1])
    assert 0 <= position < len(source)
    assert isinstance(info.value, ReflowError)


@pytest.mark.parametrize(
    ("source", "position"),
    [
        ("-" * (N + 1) + "1", N),
        ("(" * (N + 1) + "1" + ")" * (N + 1), N),
        ("not " * (N + 1) + "1", 4 * N),
        ("1 + " + "-" * N + "1", 4 + N - 1),  # the operand is one level, its minuses N more
        ("$.a[" + "-" * N + "0]", 4 + N - 1),
    ],
)
def test_the_message_names_where_the_limit_is_passed(source: str, position: int) -> None:
    with pytest.raises(ExpressionError, match=f"at position {position}$"):
        Expression(source)


@pytest.mark.parametrize(
    ("source", "data", "expected"),
    [
        ("+".join(["1"] * 900), None, 900),
        ("-".join(["1"] * 900), None, 1 - 899),
        ("$" + ".a" * 900, {}, None),
        ("$" + "[0]" * 600, [[[1]]], None),
        (" and ".join(["1"] * 300), None, True),
        (" or ".join(["0"] * 300), None, False),
        ("*".join(["1"] * 900), None, 1),
    ],
)
def test_a_chain_stays_on_one_level(source: str, data: Any, expected: Any) -> None:
    """A flat chain is built and evaluated in a loop: hundreds of links, no recursion."""
    assert Expression(source).evaluate(data) == expected


def test_the_limit_leaves_headroom_on_a_deep_stack() -> None:
    """Parsing and evaluating at the limit needs a few frames per level, so a caller already
    300 frames deep still has room below Python's default limit of 1000."""
    sources = [_nested(c, N // _depth_of(c)) for c in sorted(CONSTRUCTS)]

    def at(depth: int) -> None:
        if depth:
            at(depth - 1)
            return
        for source in sources:
            Expression(source).evaluate({})

    at(300)


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("-" * 1999 + "1", f"nesting deeper than {N}"),
        ("(" * 999 + "1" + ")" * 999, f"nesting deeper than {N}"),
        ("not " * 499 + "1", f"nesting deeper than {N}"),
        ("[" * 1999, f"nesting deeper than {N}"),
        ("abs(" * 499, f"nesting deeper than {N}"),
        ("$[" * 999, f"nesting deeper than {N}"),
        ("1-(" * 600, f"nesting deeper than {N}"),
        ("-" * 100_000 + "1", "longer than 2000 characters"),
        ("(" * 100_000 + "1" + ")" * 100_000, "longer than 2000 characters"),
        ("not " * 100_000 + "1", "longer than 2000 characters"),
    ],
)
def test_hostile_depths_are_refused(source: str, fragment: str) -> None:
    t0 = time.perf_counter()
    with pytest.raises(ExpressionError, match=None) as info:
        Expression(source)
    assert time.perf_counter() - t0 < 2
    assert fragment in str(info.value)


_CHILD = """
import json, sys, time, psutil
from reflow.library import Expression, ExpressionError
from reflow.library._gpu_exprlang import compile_expression
from reflow import ReflowError
proc = psutil.Process()
before = proc.memory_info().rss
sources = [
    "-" * 100_000 + "1", "(" * 100_000 + "1" + ")" * 100_000, "not " * 100_000 + "1",
    "abs(" * 100_000 + "1" + ")" * 100_000, "[" * 100_000, "-" * 1999 + "1", "[" * 1999,
    "$.a[" * 499, "max(" * 499,
]
t0 = time.perf_counter()
kinds = []
for source in sources:
    for parse in (Expression, compile_expression):
        try:
            parse(source)
            kinds.append("accepted")
        except ReflowError as exc:
            kinds.append(type(exc).__name__)
        except BaseException as exc:
            kinds.append("LEAK " + type(exc).__name__)
elapsed = time.perf_counter() - t0
print(json.dumps({"kinds": kinds, "grew": proc.memory_info().rss - before, "s": elapsed}))
"""


def test_a_hundred_thousand_deep_is_refused_in_bounded_time_and_memory() -> None:
    """In a child process (RSS by psutil): every hostile source is refused with a
    ReflowError, quickly, without the process growing."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=60, check=True
    )
    report = json.loads(out.stdout)
    assert set(report["kinds"]) <= {"ExpressionError", "ActorError"}, report["kinds"]
    assert report["grew"] < 32 * 2**20, report
    assert report["s"] < 5, report


_TOO_DEEP = [
    "-" * (N + 1) + "$.a",
    "(" * (N + 1) + "$.a" + ")" * (N + 1),
    "not " * (N + 1) + "$.a",
    "abs(" * (N + 1) + "$.a" + ")" * (N + 1),
    "-" * 1999 + "$.a",
    "-" * 100_000 + "$.a",
]


@pytest.mark.parametrize("source", _TOO_DEEP)
@pytest.mark.parametrize(
    ("component", "key", "port"),
    [
        ("tpl_flow_filter", "where", "in"),
        ("tpl_flow_map", "expr", "in"),
        ("tpl_flow_switch", "when", "in"),
    ],
)
def test_flow_templates_fail_the_tick_cleanly(
    component: str, key: str, port: str, source: str
) -> None:
    result = run_tick(template_actor(component), {port: Message.object({"a": 1})}, {key: source})
    assert len(result.failures) == 1
    error = result.failures[0].error
    assert f"config {key!r}" in error and "ActorError" in error
    assert "nesting deeper than" in error or "longer than 2000" in error
    assert "RecursionError" not in result.failures[0].traceback


@pytest.mark.parametrize("source", _TOO_DEEP)
def test_route_and_data_operations_fail_the_tick_cleanly(source: str) -> None:
    routes = run_tick(
        template_actor("tpl_flow_route"), {"in": Message.object({"a": 1})}, {"routes": [source]}
    )
    ops = run_tick(
        template_actor("tpl_data_operations"),
        {"data": Message.object({"a": 1})},
        {
            "dataOperations": [
                {"operations": [{"type": "transform", "transformExpression": source}]}
            ]
        },
    )
    for result, where in ((routes, "config 'routes'[0]"), (ops, "transformExpression")):
        assert len(result.failures) == 1
        error = result.failures[0].error
        assert where in error, error
        assert "nesting deeper than" in error or "longer than 2000" in error
        assert "RecursionError" not in result.failures[0].traceback


@pytest.mark.parametrize("source", _TOO_DEEP)
@pytest.mark.parametrize("component", ["tpl_array_expression", "tpl_gpu_array_expression"])
def test_array_templates_refuse_when_the_node_is_made(component: str, source: str) -> None:
    net = Network()
    net.register_actor("x", template_actor(component))
    t0 = time.perf_counter()
    try:
        with pytest.raises(ActorError) as info:
            net.add_node("expr", "x", {"expression": source})
    finally:
        net.shutdown()
    assert time.perf_counter() - t0 < 2
    message = str(info.value)
    assert "node 'expr'" in message and "config 'expression'" in message
    assert "nesting deeper than" in message or "longer than 2000" in message


@pytest.mark.parametrize(
    ("source", "works"),
    [
        ("-" * N + "$.a", True),
        ("(" * (N - 1) + "$.a" + ")" * (N - 1), True),
        ("not " * N + "$.a", True),
        ("+".join(["$.a"] * 500), True),
        ("-" * (N + 1) + "$.a", False),
        ("abs(" * (N + 1) + "$.a" + ")" * (N + 1), False),
    ],
)
def test_the_wgsl_compiler_at_and_past_the_limit(source: str, works: bool) -> None:
    if works:
        assert "dst[i]" in compile_expression(source).wgsl
    else:
        with pytest.raises(ActorError, match=f"nesting deeper than {N}"):
            compile_expression(source)


def test_paths_are_bounded_and_set_path_loops() -> None:
    parts: list[str | int] = ["k"] * 5000
    deep = set_path({}, parts, 1)
    assert get_path(deep, parts) == 1
    assert get_path(set_path(deep, [*parts[:10], "x"], 2), [*parts[:10], "x"]) == 2
    assert parse_path("a" + ".b" * 999) == ["a"] + ["b"] * 999
    with pytest.raises(ExpressionError, match="path is longer than 2000 characters"):
        parse_path("a" + ".b" * 100_000)
