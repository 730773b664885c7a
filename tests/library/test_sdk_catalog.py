"""The offbit-reflow standard catalog's flow, math, data, text, stream and io/http templates:
ids, ports and config against the catalog (read at test time), results by hand-computed
tables, and bad config or input failing only its tick with an error that names the key or
port."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from reflow import Message as M
from reflow.library import builtin_templates, describe_template
from reflow.testing import run_tick, run_ticks

TEMPLATES = builtin_templates()
FAMILIES = {"flow", "math", "data", "text", "stream", "io/http"}


def _catalog_path() -> Path | None:
    env = os.environ.get("REFLOW_ANCHOR_CATALOG")
    here = Path(__file__).resolve()
    for candidate in ([Path(env)] if env else []) + [
        p / "shared" / "anchor-catalog" / "catalog.json" for p in here.parents
    ]:
        if candidate.is_file():
            return candidate
    return None


CATALOG_PATH = _catalog_path()
CATALOG = (
    [t for t in json.loads(CATALOG_PATH.read_text()) if t["family"] in FAMILIES]
    if CATALOG_PATH
    else []
)
needs_catalog = pytest.mark.skipif(CATALOG_PATH is None, reason="anchor catalog not found")


@needs_catalog
def test_catalog_has_the_families() -> None:
    assert len(CATALOG) == 49


@needs_catalog
@pytest.mark.parametrize("entry", CATALOG, ids=lambda t: t["id"])
def test_template_matches_the_catalog(entry: dict[str, Any]) -> None:
    tid = entry["id"]
    assert tid in TEMPLATES, f"{tid} is missing"
    actor = TEMPLATES[tid]
    info = describe_template(tid)
    assert {p["name"] for p in entry["inports"]} <= set(actor.inports)
    assert {p["name"] for p in entry["outports"]} <= set(actor.outports)
    if entry["await_all_inports"]:
        assert actor.await_all_inports
    config = info["config"]
    for key in entry["config"]:
        assert key["name"] in config, f"{tid}: config {key['name']!r} is not described"
        assert config[key["name"]]["default"] == key["default"], (tid, key["name"])
        assert f"``{key['name']}``" in info["doc"], f"{tid}: {key['name']!r} not documented"
    for port in [*actor.inports, *actor.outports]:
        assert f"``{port}``" in info["doc"], f"{tid}: port {port!r} is not documented"


def _out(r: Any) -> dict[str, list[Any]]:
    assert r.ok, r.failures
    return {port: [m.get("data") for m in msgs] for port, msgs in r.outputs.items()}


Int, F, S, A, Obj, B = M.integer, M.float, M.string, M.array, M.object, M.boolean
ISSUE = {"labels": ["bug", "ui"], "age_days": 4, "has_assignee": False, "n": 1}

# (template, config, inputs, expected {port: [payloads]})
CASES: list[tuple[str, dict[str, Any] | None, dict[str, Any], dict[str, list[Any]]]] = [
    ("tpl_passthrough", None, {"input": Int(7)}, {"output": [7]}),
    (
        "tpl_collect",
        {"count": 1},
        {"input": S("x")},
        {"output": [[{"type": "String", "data": "x"}]], "count": [1]},
    ),
    (
        "tpl_filter",
        None,
        {"input": A([0, 1, "", "a", None, True])},
        {"output": [[1, "a", True]], "rejected": [[0, "", None]]},
    ),
    (
        "tpl_filter",
        {"condition": "greater_than", "field": "p", "value": 2},
        {"input": A([{"p": 1}, {"p": 3}])},
        {"output": [[{"p": 3}]], "rejected": [[{"p": 1}]]},
    ),
    (
        "tpl_filter",
        {"condition": "equals", "value": True},
        {"input": A([1, True])},
        {"output": [[True]], "rejected": [[1]]},
    ),
    (
        "tpl_filter",
        {"condition": "contains", "value": "ab"},
        {"input": A(["xaby", "b", 3])},
        {"output": [["xaby"]], "rejected": [["b", 3]]},
    ),
    ("tpl_map", {"operation": "to_number"}, {"input": A([1, "2.5"])}, {"output": [[1.0, 2.5]]}),
    (
        "tpl_map",
        {"operation": "to_string"},
        {"input": A(["a", 1, {"k": [1]}])},
        {"output": [["a", "1", '{"k":[1]}']]},
    ),
    (
        "tpl_map",
        {"operation": "extract_field", "field": "k"},
        {"input": A([{"k": 2}, {}])},
        {"output": [[2, None]]},
    ),
    ("tpl_reduce", None, {"input": A([1, 2.5, "x"])}, {"output": [3.5]}),
    ("tpl_reduce", {"operation": "product"}, {"input": A([2, 3, 4])}, {"output": [24.0]}),
    ("tpl_reduce", {"operation": "max"}, {"input": A([2, 9, 4])}, {"output": [9.0]}),
    ("tpl_reduce", {"operation": "count"}, {"input": A([2, "a"])}, {"output": [2]}),
    ("tpl_reduce", {"operation": "concat"}, {"input": A(["a", 1, "b"])}, {"output": ["ab"]}),
    ("tpl_reduce", {"operation": "last"}, {"input": A([1, {"z": 1}])}, {"output": [{"z": 1}]}),
    ("tpl_reduce", None, {"input": A([])}, {"output": [0.0]}),
    ("tpl_merge", None, {"b": Int(2)}, {"output": [{"b": {"type": "Integer", "data": 2}}]}),
    (
        "tpl_merge",
        {"mode": "array"},
        {"a": S("s")},
        {"output": [[{"type": "String", "data": "s"}]]},
    ),
    (
        "tpl_split",
        None,
        {"input": A([{"h": 1}, 2, 3])},
        {"head": [{"h": 1}], "tail": [[2, 3]], "count": [3]},
    ),
    ("tpl_split", None, {"input": A([])}, {"tail": [[]], "count": [0]}),
    ("tpl_gate", None, {"input": Int(1), "control": B(True)}, {"output": [1]}),
    ("tpl_gate", None, {"input": Int(1), "control": Int(0)}, {"blocked": [1]}),
    ("tpl_gate", {"invert": True}, {"input": Int(1), "control": B(True)}, {"blocked": [1]}),
    (
        "tpl_if_branch",
        {"condition_value": 5},
        {"data": Int(5)},
        {"true_output": [5], "true-out": [5]},
    ),
    (
        "tpl_if_branch",
        {"condition_type": "greater_than", "value": 4.5},
        {"data": Int(5)},
        {"true_output": [5], "true-out": [5]},
    ),
    (
        "tpl_if_branch",
        {"condition_field": "k", "condition_value": "a"},
        {"data": Obj({"k": "b"})},
        {"false_output": [{"k": "b"}], "false-out": [{"k": "b"}]},
    ),
    (
        "tpl_if_branch",
        {"condition_type": "contains", "value": 2},
        {"data": A([1, 2])},
        {"true_output": [[1, 2]], "true-out": [[1, 2]]},
    ),
    (
        "tpl_if_branch",
        {"condition_type": "is_empty"},
        {"data": S("")},
        {"true_output": [""], "true-out": [""]},
    ),
    (
        "tpl_if_branch",
        {
            "decisionRules": {
                "type": "OR",
                "groups": [
                    {"rules": [{"field": "n", "operator": "is", "value": 2}]},
                    {"rules": [{"field": "labels", "operator": "contains", "value": "ui"}]},
                ],
            }
        },
        {"data": Obj(ISSUE)},
        {"true_output": [ISSUE], "true-out": [ISSUE]},
    ),
    ("tpl_switch", {"case1_value": 4, "case2_value": 5}, {"data": Int(5)}, {"case2": [5]}),
    ("tpl_switch", {"case1_value": 1}, {"data": B(True)}, {"default": [True]}),
    (
        "tpl_switch",
        {"switch_field": "k", "case4_value": [1]},
        {"data": Obj({"k": [1]})},
        {"case4": [{"k": [1]}]},
    ),
    ("tpl_switch", {"field": "k", "case1_value": None}, {"data": Obj({})}, {"default": [{}]}),
    ("tpl_rules_engine", None, {"data": Int(3)}, {"output": [3]}),
    (
        "tpl_rules_engine",
        {
            "rules": {
                "groups": [
                    {
                        "connector": "AND",
                        "rules": [
                            {"field": "has_assignee", "operator": "is", "value": False},
                            {"field": "age_days", "operator": "greater_equal", "value": 3},
                        ],
                    }
                ],
                "actions": {"setProperty": [{"key": "branch", "value": "owner"}]},
            }
        },
        {"data": Obj(ISSUE)},
        {"matched": [{**ISSUE, "branch": "owner"}]},
    ),
    (
        "tpl_rules_engine",
        {
            "propertyRules": {
                "groups": [
                    {"rules": [{"field": "age_days", "operator": "between", "value": [5, 9]}]}
                ]
            }
        },
        {"data": Obj(ISSUE)},
        {"unmatched": [ISSUE]},
    ),
    (
        "tpl_rules_engine",
        {
            "rules": {
                "type": "OR",
                "groups": [
                    {
                        "connector": "OR",
                        "rules": [
                            {"field": "labels", "operator": "not_contains", "value": "bug"},
                            {"field": "n", "operator": "less_than", "value": 2},
                        ],
                    }
                ],
                "actions": {"setOutput": [{"port": "output", "value": "hit"}]},
            }
        },
        {"data": Obj(ISSUE)},
        {"output": ["hit"], "matched": [ISSUE]},
    ),
    (
        "tpl_loop",
        None,
        {"collection": A(["a", {"b": 1}])},
        {
            "item": [{"value": "a", "index": 0}, {"value": {"b": 1}, "index": 1}],
            "completed": [True],
        },
    ),
    ("tpl_loop", None, {"collection": A([])}, {"completed": [True]}),
    (
        "tpl_signal",
        {"event": "HOVER", "data": {"s": 1, "t": 2}},
        {"trigger": Obj({"t": 3})},
        {"signal": [{"id": "HOVER", "data": {"s": 1, "t": 3}}]},
    ),
    ("tpl_signal", None, {"trigger": M.flow()}, {"signal": [{"id": "signal", "data": {}}]}),
    (
        "tpl_subscriber",
        {"event": "A"},
        {"signal": Obj({"id": "A", "data": {"x": 1}})},
        {"data": [{"x": 1}], "trigger": [None]},
    ),
    ("tpl_subscriber", {"event": "A"}, {"signal": Obj({"id": "B", "data": {}})}, {}),
    ("tpl_subscriber", None, {"signal": S("any")}, {"trigger": [None]}),
    ("tpl_hit_test", None, {"values": Obj({"s2_x": 0, "s2_y": 0})}, {}),
    # math
    (
        "tpl_math_add",
        {"precision": 2},
        {"a": F(0.1), "b": S("0.205")},
        {"out": [0.305], "result": [0.31]},
    ),
    ("tpl_math_subtract", None, {"a": Int(5), "b": Int(7)}, {"out": [-2], "result": [-2.0]}),
    ("tpl_math_multiply", None, {"a": Int(6), "b": F(0.5)}, {"out": [3.0], "result": [3.0]}),
    (
        "tpl_math_divide",
        {"precision": 3},
        {"a": Int(2), "b": Int(3)},
        {"out": [2 / 3], "result": [0.667]},
    ),
    ("tpl_math_modulo", None, {"a": Int(-7), "b": Int(3)}, {"out": [2], "result": [-1.0]}),
    (
        "tpl_math_power",
        None,
        {"base": Int(2), "exponent": F(0.5)},
        {"out": [2**0.5], "result": [1.4142135624]},
    ),
    ("tpl_math_absolute", None, {"input": S("-2.5")}, {"result": [2.5]}),
    ("tpl_math_clamp", None, {"input": F(1.5)}, {"result": [1.0]}),
    ("tpl_math_clamp", {"min": -1, "max": 3}, {"input": Int(-4)}, {"result": [-1.0]}),
    ("tpl_math_clamp", {"max": 3}, {"in": Int(9)}, {"out": [3]}),
    ("tpl_math_round", {"precision": 0}, {"input": F(2.5)}, {"result": [3.0]}),
    ("tpl_math_round", {"mode": "floor"}, {"input": F(-2.5)}, {"result": [-3.0]}),
    ("tpl_math_round", {"mode": "trunc"}, {"input": F(-2.7)}, {"result": [-2.0]}),
    ("tpl_math_round", None, {"in": F(2.5)}, {"out": [2]}),
    ("tpl_math_sqrt", None, {"input": Int(2)}, {"result": [1.4142135624]}),
    ("tpl_math_min_max", None, {"a": Int(3), "b": F(-1.5)}, {"min": [-1.5], "max": [3.0]}),
    ("tpl_math_sum", None, {"values": A([1, 2, 3.5])}, {"result": [6.5]}),
    ("tpl_math_sum", None, {"values": A([])}, {"result": [0.0]}),
    ("tpl_math_average", {"precision": 4}, {"values": A([1, 2, 2])}, {"result": [1.6667]}),
    (
        "tpl_math_statistics",
        None,
        {"values": A([4, 1, 3, 2])},
        {
            "mean": [2.5],
            "median": [2.5],
            "stddev": [1.1180339887],
            "min": [1.0],
            "max": [4.0],
            "count": [4],
        },
    ),
    ("tpl_math_statistics", None, {"values": A([])}, {"count": [0]}),
    (
        "tpl_math_expression",
        {"expression": "($x + 1) * 2 ^ 3 ^ 0 - 10 % 4"},
        {"input": Int(2)},
        {"result": [4.0]},
    ),
    ("tpl_math_expression", {"expression": "-2 ^ 2"}, {"input": M.flow()}, {"result": [4.0]}),
    ("tpl_math_expression", None, {"input": M.flow()}, {"result": [0.0]}),
    # data
    ("tpl_data_emit", {"data": {"k": [1]}}, {"trigger": M.flow()}, {"output": [{"k": [1]}]}),
    ("tpl_data_emit", {"data": [1, 2]}, {"trigger": M.flow()}, {"output": [[1, 2]]}),
    ("tpl_data_emit", None, {"trigger": M.flow()}, {}),
    ("tpl_data_transformer", None, {"input": Int(1)}, {"output": [1]}),
    ("tpl_data_transformer", {"operation": "to_uppercase"}, {"input": S("aé")}, {"output": ["AÉ"]}),
    (
        "tpl_data_transformer",
        {"transform_type": "to_json"},
        {"input": Obj({"a": [1, None]})},
        {"output": ['{"a":[1,null]}']},
    ),
    (
        "tpl_data_transformer",
        {"transform_type": "from_json"},
        {"input": S("[1, 2]")},
        {"output": [[1, 2]]},
    ),
    (
        "tpl_data_transformer",
        {"transform_type": "extract_field", "field": "z"},
        {"input": Obj({"a": 1})},
        {"output": [None]},
    ),
    (
        "tpl_data_transformer",
        {"transform_type": "set_field", "field_name": "b", "field_value": 2},
        {"input": Obj({"a": 1})},
        {"output": [{"a": 1, "b": 2}]},
    ),
    (
        "tpl_data_transformer",
        {"transform_type": "template"},
        {"input": S("hi")},
        {"output": ["hi"]},
    ),
    ("tpl_data_operations", None, {"data": Int(4)}, {"output": [4]}),
    (
        "tpl_data_operations",
        {
            "dataOperations": [
                {
                    "operations": [
                        {"type": "filter", "filterExpression": "item.p >= 2 && !(item.p === 4)"},
                        {"type": "sort", "sortField": "item.p", "sortDirection": "desc"},
                        {
                            "type": "map",
                            "mapping": [
                                {"sourceField": "p", "targetField": "q", "transform": "item.p * 10"}
                            ],
                        },
                    ]
                }
            ]
        },
        {"data": A([{"p": 1}, {"p": 2}, {"p": 3}, {"p": 4}])},
        {"output": [[{"p": 3, "q": 30}, {"p": 2, "q": 20}]]},
    ),
    (
        "tpl_data_operations",
        {
            "dataOperations": [
                {"operations": [{"type": "group", "groupByField": "item.k"}]},
                {
                    "operations": [
                        {
                            "type": "aggregate",
                            "aggregateField": "item.v",
                            "aggregateFunction": "avg",
                        }
                    ]
                },
            ]
        },
        {"data": A([{"k": "a", "v": 1}, {"k": "b", "v": 2}, {"k": "a", "v": 6}])},
        {
            "output": [
                {"a": [{"k": "a", "v": 1}, {"k": "a", "v": 6}], "b": [{"k": "b", "v": 2}]},
                {"avg": 3.0},
            ]
        },
    ),
    (
        "tpl_data_operations",
        {
            "dataOperations": [
                {
                    "operations": [
                        {"type": "transform", "transformExpression": "len(data)", "enabled": True},
                        {"type": "transform", "transformExpression": "0", "enabled": False},
                    ]
                }
            ]
        },
        {"data": A([1, 2, 3])},
        {"output": [3]},
    ),
    (
        "tpl_generator",
        None,
        {"trigger": M.flow()},
        {"output": [[float(i) for i in range(10)]], "metadata": [{"type": "range", "count": 10}]},
    ),
    (
        "tpl_generator",
        {"start": 1, "end": 0, "step": -0.5},
        {"trigger": M.flow()},
        {"output": [[1.0, 0.5]], "metadata": [{"type": "range", "count": 2}]},
    ),
    (
        "tpl_generator",
        {"type": "linspace", "count": 3},
        {"params": Obj({"end": 2})},
        {"output": [[0.0, 1.0, 2.0]], "metadata": [{"type": "linspace", "count": 3}]},
    ),
    (
        "tpl_generator",
        {"type": "repeat", "count": 2, "value": "v"},
        {"trigger": M.flow()},
        {"output": [["v", "v"]], "metadata": [{"type": "repeat", "count": 2}]},
    ),
    (
        "tpl_generator",
        {"type": "index", "count": 3, "template": {"i": "$i", "t": "$t", "k$i": "n$i"}},
        {"trigger": M.flow()},
        {
            "output": [
                [
                    {"i": 0, "t": 0.0, "k0": "n0"},
                    {"i": 1, "t": 0.5, "k1": "n1"},
                    {"i": 2, "t": 1.0, "k2": "n2"},
                ]
            ],
            "metadata": [{"type": "index", "count": 3}],
        },
    ),
    (
        "tpl_generator",
        {"type": "grid", "width": 2, "height": 1, "depth": 2, "spacing": 2},
        {"trigger": M.flow()},
        {
            "output": [
                [
                    {"x": -1.0, "y": 0.0, "z": -1.0, "ix": 0, "iy": 0, "iz": 0},
                    {"x": 1.0, "y": 0.0, "z": -1.0, "ix": 1, "iy": 0, "iz": 0},
                    {"x": -1.0, "y": 0.0, "z": 1.0, "ix": 0, "iy": 0, "iz": 1},
                    {"x": 1.0, "y": 0.0, "z": 1.0, "ix": 1, "iy": 0, "iz": 1},
                ]
            ],
            "metadata": [{"type": "grid", "count": 4}],
        },
    ),
    # text
    (
        "tpl_json_parser",
        None,
        {"input": S('{"a": {"b": [1, 2]}}')},
        {"output": [{"a": {"b": [1, 2]}}]},
    ),
    (
        "tpl_json_parser",
        {"path": "a.b[1]"},
        {"input": M.bytes(b'{"a": {"b": [1, 2]}}')},
        {"output": [2]},
    ),
    ("tpl_json_parser", {"path": "a.zz"}, {"input": S('{"a": {}}')}, {"output": [None]}),
    (
        "tpl_regex_matcher",
        {"pattern": r"\d+"},
        {"input": S("ab12c3")},
        {"matched": [True], "matches": [["12"]], "groups": [{}]},
    ),
    (
        "tpl_regex_matcher",
        {"pattern": r"(?P<n>\d)", "global": True},
        {"input": S("a1b2")},
        {
            "matched": [True],
            "matches": [[{"index": 1, "match": "1"}, {"index": 3, "match": "2"}]],
            "groups": [{"n": "1"}],
        },
    ),
    ("tpl_regex_matcher", {"pattern": "lit"}, {"input": S("no")}, {"matched": [False]}),
    (
        "tpl_regex_matcher",
        None,
        {"input": S("")},
        {"matched": [True], "matches": [[""]], "groups": [{}]},
    ),
]


@pytest.mark.parametrize(
    ("tid", "config", "inputs", "expected"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_template_results(
    tid: str, config: dict[str, Any] | None, inputs: dict[str, Any], expected: dict[str, list[Any]]
) -> None:
    assert _out(run_tick(TEMPLATES[tid], inputs, config)) == expected


def test_stateful_templates_across_ticks() -> None:
    r = run_ticks(TEMPLATES["tpl_collect"], [{"input": Int(i)} for i in range(5)], {"count": 2})
    assert _out(r)["count"] == [2, 2]
    r = run_ticks(TEMPLATES["tpl_data_emit"], [{"trigger": M.flow()}] * 3, {"data": 1})
    assert _out(r) == {"output": [1]}
    r = run_ticks(
        TEMPLATES["tpl_data_emit"], [{"trigger": M.flow()}] * 2, {"data": 1, "oneshot": False}
    )
    assert _out(r) == {"output": [1, 1]}
    hit = {"target_width": 10, "target_height": 10, "padding": 2}
    steps = [{"s2_x": 50}, {"s2_x": 0}, {"s2_x": 6}, {"s2_x": 8}, {"s2_x": 0, "s0_y": 100}]
    r = run_ticks(TEMPLATES["tpl_hit_test"], [{"values": Obj(v)} for v in steps], hit)
    assert _out(r) == {"enter": ["HOVER"], "leave": ["LEAVE", "LEAVE"]} or _out(r) == {
        "enter": ["HOVER"],
        "leave": ["LEAVE"],
    }


FSM = {
    "initial": "idle",
    "context": {"n": 0},
    "guards": {
        "big": {"field": "size", "operator": "gt", "value": 10},
        "many": {"field": "n", "operator": "gte", "value": 2},
    },
    "states": {
        "idle": {"on": {"go": [{"target": "large", "guard": "big"}, {"target": "busy"}]}},
        "busy": {
            "entry": {
                "emit": {"scale": 2},
                "assign": {"n": {"op": "increment"}},
                "emit_context": True,
            },
            "on": {"stop": "idle", "_timeout": {"target": "idle", "delay": 0.1}},
            "always": {"target": "done", "guard": "many"},
        },
        "large": {"exit": {"emit": {"left": True}}, "on": {"go": "idle"}},
        "done": {"type": "final"},
    },
}


def test_fsm_runs_its_config() -> None:
    r = run_ticks(
        TEMPLATES["tpl_fsm"],
        [
            {"event": Obj({"type": "go", "payload": {"size": 20}})},  # idle -> large (guard)
            {"event": S("go")},  # large -> idle (exit emit)
            {"event": S("go")},  # idle -> busy, n = 1
            {"tick": M.flow()},
            {"tick": M.flow()},  # 0.066 s: no timeout yet
            {"tick": M.flow()},
            {"tick": M.flow()},  # 0.133 s: busy -> idle
            {"event": S("go")},  # idle -> busy, n=2 -> done
            {"control": S("reset")},
            {"data": Obj({"n": 5})},
            {"control": S("set:busy")},
            {"event": S("nope")},
        ],
        FSM,
    )
    out = _out(r)
    assert out["state"] == ["large", "idle", "busy", "idle", "done", "idle", "busy"]
    assert [t["event"] for t in out["transition"]] == ["go", "go", "go", "_timeout", "go"]
    assert out["transition"][-1] == {"from": "idle", "to": "done", "event": "go"}
    assert out["emit"] == [
        {"id": "idle", "data": {"left": True}},
        {"id": "busy", "data": {"scale": 2}},
        {"id": "done", "data": {"scale": 2}},
    ]
    assert out["data"] == [{"left": True}, {"scale": 2}, {"scale": 2}]
    assert out["context"] == [{"n": 1.0}]
    assert out["done"] == [None]


BAD: list[tuple[str, dict[str, Any] | None, dict[str, Any], str]] = [
    ("tpl_collect", {"count": "3"}, {"input": Int(1)}, "config 'count' must be an integer"),
    ("tpl_filter", None, {"input": S("x")}, "in-port 'input': expected an Array, got String"),
    ("tpl_filter", {"condition": "odd"}, {"input": A([])}, "config 'condition' must be one of"),
    ("tpl_map", {"operation": "upper"}, {"input": A([])}, "config 'operation' must be one of"),
    (
        "tpl_map",
        {"operation": "to_number"},
        {"input": A([1, "x"])},
        "in-port 'input': item [1] is not a number",
    ),
    ("tpl_map", None, {"input": Obj({})}, "in-port 'input': expected an Array, got Object"),
    ("tpl_reduce", {"operation": "mean"}, {"input": A([1])}, "config 'operation' must be one"),
    ("tpl_reduce", {"operation": "min"}, {"input": A(["a"])}, "in-port 'input': no numbers"),
    ("tpl_split", None, {"input": Int(1)}, "in-port 'input': expected an Array, got Integer"),
    ("tpl_merge", {"mode": "list"}, {"a": Int(1)}, "config 'mode' must be 'object' or 'array'"),
    (
        "tpl_gate",
        {"invert": "yes"},
        {"input": Int(1), "control": B(True)},
        "config 'invert' must be true or false",
    ),
    (
        "tpl_if_branch",
        {"condition_type": "regex"},
        {"data": Int(1)},
        "config 'condition_type' must be one of",
    ),
    (
        "tpl_if_branch",
        {"decisionRules": {"groups": [{"rules": [{"operator": "like"}]}]}},
        {"data": Int(1)},
        "config 'decisionRules'.groups[0].rules[0].operator: unknown operator",
    ),
    (
        "tpl_if_branch",
        {"decisionRules": [1]},
        {"data": Int(1)},
        "config 'decisionRules' must be an object",
    ),
    ("tpl_switch", {"switch_field": 3}, {"data": Int(1)}, "config 'switch_field' must be a str"),
    ("tpl_rules_engine", {"rules": "x"}, {"data": Int(1)}, "config 'rules' must be an object"),
    (
        "tpl_rules_engine",
        {"rules": {"type": "XOR", "groups": []}},
        {"data": Int(1)},
        "config 'rules'.type must be 'IF' or 'OR'",
    ),
    (
        "tpl_rules_engine",
        {"rules": {"groups": [{"connector": "NAND", "rules": []}]}},
        {"data": Int(1)},
        "config 'rules'.groups[0].connector must be 'AND' or 'OR'",
    ),
    (
        "tpl_rules_engine",
        {"rules": {"groups": [], "actions": {"setOutput": [{"port": "elsewhere", "value": 1}]}}},
        {"data": Int(1)},
        "config 'rules'.actions.setOutput[0].port: 'elsewhere' is not an out-port",
    ),
    (
        "tpl_rules_engine",
        {"rules": {"groups": [{"rules": [5]}]}},
        {"data": Int(1)},
        "config 'rules'.groups[0].rules[0] must be an object",
    ),
    ("tpl_loop", None, {"collection": Obj({})}, "in-port 'collection': expected an Array"),
    ("tpl_signal", {"event": 5}, {"trigger": M.flow()}, "config 'event' must be a string"),
    ("tpl_subscriber", {"event": None}, {"signal": S("a")}, None),
    ("tpl_hit_test", {"padding": "8"}, {"values": Obj({})}, "config 'padding' must be a number"),
    ("tpl_fsm", {"states": []}, {"event": S("go")}, "config 'states' must be an object"),
    (
        "tpl_fsm",
        {"states": {"initial": {"on": {"go": {"target": "b", "guard": "nope"}}}}},
        {"event": S("go")},
        "no guard named 'nope'",
    ),
    (
        "tpl_fsm",
        {
            "guards": {"g": {"operator": "like"}},
            "states": {"initial": {"on": {"go": {"target": "b", "guard": "g"}}}},
        },
        {"event": S("go")},
        "config 'guards'.g.operator: unknown operator 'like'",
    ),
    (
        "tpl_fsm",
        {
            "states": {
                "initial": {"on": {"go": "b"}},
                "b": {"entry": {"assign": {"n": {"op": "pow"}}}},
            }
        },
        {"event": S("go")},
        "config 'states'.b.entry.assign.n.op must be one of",
    ),
    ("tpl_fsm", {"dt": "fast"}, {"tick": M.flow()}, "config 'dt' must be a number"),
    ("tpl_math_add", None, {"a": S("one"), "b": Int(1)}, "in-port 'a': expected a number"),
    (
        "tpl_math_add",
        {"precision": 99},
        {"a": Int(1), "b": Int(1)},
        "config 'precision' must be an integer from 0 to 15",
    ),
    ("tpl_math_divide", None, {"a": Int(1), "b": F(0.0)}, "is zero: division by zero"),
    ("tpl_math_modulo", None, {"a": Int(1), "b": S("0")}, "is zero: division by zero"),
    ("tpl_math_power", None, {"base": Int(-8), "exponent": F(0.5)}, "fractional power"),
    ("tpl_math_power", None, {"base": Int(10), "exponent": Int(10**6)}, "too large"),
    ("tpl_math_sqrt", None, {"input": Int(-4)}, "in-port 'input': square root of a negative"),
    ("tpl_math_absolute", None, {"input": Obj({})}, "in-port 'input': expected a number"),
    ("tpl_math_absolute", None, {"input": S("nan")}, "in-port 'input': expected a number"),
    ("tpl_math_clamp", {"min": 2, "max": 1}, {"input": Int(1)}, "'min' (2) is greater than"),
    ("tpl_math_round", {"mode": "up"}, {"input": Int(1)}, "config 'mode' must be one of"),
    ("tpl_math_random", {"precision": -1}, {"trigger": M.flow()}, "config 'precision'"),
    ("tpl_math_sum", None, {"values": A([1, "2"])}, "in-port 'values': item [1] is not a "),
    ("tpl_math_average", None, {"values": S("1,2")}, "in-port 'values': expected an Array"),
    ("tpl_math_statistics", None, {"values": A([True])}, "item [0] is not a number"),
    ("tpl_math_min_max", None, {"a": Int(1), "b": A([])}, "in-port 'b': expected a number"),
    (
        "tpl_math_expression",
        {"expression": "1 / (2 - 2)"},
        {"input": Int(0)},
        "config 'expression': Division by zero",
    ),
    (
        "tpl_math_expression",
        {"expression": "2 +"},
        {"input": Int(0)},
        "config 'expression': unexpected end of expression",
    ),
    (
        "tpl_math_expression",
        {"expression": "2 $ 3"},
        {"input": Int(0)},
        "config 'expression': unexpected '$'",
    ),
    (
        "tpl_math_expression",
        {"expression": "(" * 3000 + "1" + ")" * 3000},
        {"input": Int(0)},
        "nested more than 100 levels deep",
    ),
    (
        "tpl_math_expression",
        {"expression": "9 ^ 9 ^ 9"},
        {"input": Int(0)},
        "config 'expression': 9.0 ^ 387420489.0",
    ),
    ("tpl_math_expression", {"expression": "1" * 10_001}, {"input": Int(0)}, "(limit 10000)"),
    (
        "tpl_math_expression",
        {"expression": "$x * 2"},
        {"input": S("two")},
        "in-port 'input': expected a number",
    ),
    (
        "tpl_data_emit",
        {"data": 1, "port": "out"},
        {"trigger": M.flow()},
        "config 'port' must be 'output'",
    ),
    (
        "tpl_data_emit",
        {"data": 1, "oneshot": "no"},
        {"trigger": M.flow()},
        "config 'oneshot' must be true or false",
    ),
    (
        "tpl_data_transformer",
        {"operation": "reverse"},
        {"input": Int(1)},
        "config 'transform_type' must be one of",
    ),
    (
        "tpl_data_transformer",
        {"operation": "from_json"},
        {"input": S("{oops")},
        "in-port 'input': JSON parse error",
    ),
    (
        "tpl_data_transformer",
        {"operation": "from_json"},
        {"input": S("[" * 5000)},
        "in-port 'input': JSON parse error",
    ),
    (
        "tpl_data_transformer",
        {"operation": "template", "template": 3},
        {"input": Int(1)},
        "config 'template' must be a string",
    ),
    (
        "tpl_data_operations",
        {"dataOperations": {}},
        {"data": Int(1)},
        "config 'dataOperations' must be a list",
    ),
    (
        "tpl_data_operations",
        {"dataOperations": [{"operations": [{"type": "pivot"}]}]},
        {"data": A([])},
        "config 'dataOperations'[0].operations[0].type must be one of",
    ),
    (
        "tpl_data_operations",
        {"dataOperations": [{"operations": [{"type": "filter", "filterExpression": "item.p >"}]}]},
        {"data": A([{"p": 1}])},
        "config 'dataOperations'[0].operations[0].filterExpression",
    ),
    (
        "tpl_data_operations",
        {
            "dataOperations": [
                {"operations": [{"type": "transform", "transformExpression": "import('os')"}]}
            ]
        },
        {"data": A([])},
        "unknown name 'import'",
    ),
    (
        "tpl_data_operations",
        {
            "dataOperations": [
                {"operations": [{"type": "transform", "transformExpression": "data - 1"}]}
            ]
        },
        {"data": S("x")},
        "config 'dataOperations'[0].operations[0]",
    ),
    ("tpl_generator", {"type": "spiral"}, {"trigger": M.flow()}, "config 'type' must be one of"),
    ("tpl_generator", {"end": 1e12}, {"trigger": M.flow()}, "more than 1000000 items"),
    (
        "tpl_generator",
        {"type": "grid", "width": 1000, "height": 1000, "depth": 1000},
        {"trigger": M.flow()},
        "(limit 1000000)",
    ),
    (
        "tpl_generator",
        {"type": "repeat", "count": -1},
        {"trigger": M.flow()},
        "config 'count' must be an integer from 0 to 1000000",
    ),
    (
        "tpl_generator",
        {"type": "linspace"},
        {"params": Obj({"start": "a"})},
        "config 'start' must be a number",
    ),
    ("tpl_json_parser", None, {"input": Int(1)}, "in-port 'input': expected a String or Bytes"),
    ("tpl_json_parser", None, {"input": S('{"a": 1')}, "in-port 'input': JSON parse error"),
    (
        "tpl_json_parser",
        None,
        {"input": S("[" * 100_000 + "]" * 100_000)},
        "in-port 'input': JSON parse error",
    ),
    ("tpl_json_parser", {"path": "a..b"}, {"input": S("{}")}, "config 'path'"),
    (
        "tpl_regex_matcher",
        {"pattern": "(unclosed"},
        {"input": S("x")},
        "config 'pattern': invalid regular expression",
    ),
    ("tpl_regex_matcher", None, {"input": Int(1)}, "in-port 'input': expected a String"),
    (
        "tpl_regex_matcher",
        {"max_length": 10},
        {"input": S("x" * 11)},
        "longer than config 'max_length' (10)",
    ),
]


@pytest.mark.parametrize(
    ("tid", "config", "inputs", "fragment"), BAD, ids=[f"{c[0]}-{i}" for i, c in enumerate(BAD)]
)
def test_bad_config_or_input_fails_only_that_tick(
    tid: str, config: dict[str, Any] | None, inputs: dict[str, Any], fragment: str | None
) -> None:
    start = time.monotonic()
    r = run_tick(TEMPLATES[tid], inputs, config)
    assert time.monotonic() - start < 5, "a bad input must fail fast"
    if fragment is None:  # a null config value means "use the default"
        assert r.ok
        return
    assert not r.ok, r.outputs
    assert "ActorError" in r.failures[0].error and fragment in r.failures[0].error
    actor = TEMPLATES[tid]
    if "error" in actor.outports and "in-port" in fragment:
        assert [m["type"] for m in r.outputs.get("error", [])] == ["Error"]


def test_a_failed_tick_leaves_the_node_working() -> None:
    r = run_ticks(
        TEMPLATES["tpl_math_divide"], [{"a": Int(1), "b": Int(0)}, {"a": Int(1), "b": Int(4)}]
    )
    assert len(r.failures) == 1
    assert r.values("result") == [0.25]
    assert r.values("error") == ["Division by zero"]
