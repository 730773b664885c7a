"""reflow.library._flow: flow-control templates, each through a real tick (reflow.testing)."""

from __future__ import annotations

from typing import Any

import pytest

from reflow import Message, Network
from reflow.library._flow import (
    Collect,
    Constant,
    Counter,
    Filter,
    Gate,
    Map,
    Merge,
    Once,
    Passthrough,
    Route,
    Split,
    Switch,
    Zip,
)
from reflow.testing import TickResult, run_tick, run_ticks


def ok(result: TickResult) -> TickResult:
    result.raise_for_failures()
    return result


def error_of(result: TickResult) -> str:
    assert not result.ok, result.outputs
    return result.failures[0].error


Int = Message.integer


def test_passthrough_forwards_the_same_message() -> None:
    msg = Message.object({"a": 1})
    r = ok(run_tick(Passthrough(), {"in": msg}))
    assert r.outputs["out"][0] is msg


def test_gate_drops_while_closed_and_passes_when_open() -> None:
    r = ok(
        run_ticks(
            Gate(),
            [
                {"in": Int(1)},
                {"control": Message.boolean(True)},
                {"in": Int(2)},
                {"control": Message.boolean(False)},
                {"in": Int(3)},
            ],
        )
    )
    assert r.values("out") == [2]


def test_gate_buffer_releases_held_packets_in_order() -> None:
    r = ok(
        run_ticks(
            Gate(),
            [{"in": Int(1)}, {"in": Int(2)}, {"in": Int(3)}, {"control": Message.boolean(True)}],
            {"buffer": 2},
        )
    )
    assert r.values("out") == [2, 3]


def test_gate_starts_open_from_config() -> None:
    assert ok(run_tick(Gate(), {"in": Int(7)}, {"open": True})).values("out") == [7]


@pytest.mark.parametrize(
    ("value", "port"),
    [
        ({"status": "ok", "size": 11}, "true"),
        ({"status": "ok", "size": 3}, "false"),
        ({"size": 99}, "false"),
    ],
)
def test_switch_routes_by_predicate(value: dict[str, Any], port: str) -> None:
    r = ok(
        run_tick(
            Switch(), {"in": Message.object(value)}, {"when": '$.status == "ok" and $.size > 10'}
        )
    )
    assert r.values(port) == [value]


def test_route_first_match_and_default() -> None:
    cfg = {"routes": ["$.kind == 'a'", "$.n > 1", "true"]}
    first = ok(run_tick(Route(), {"in": Message.object({"kind": "a", "n": 5})}, cfg))
    assert first.outputs.keys() == {"out0"}
    second = ok(run_tick(Route(), {"in": Message.object({"kind": "b", "n": 5})}, cfg))
    assert second.outputs.keys() == {"out1"}
    r = ok(
        run_tick(
            Route(), {"in": Message.object({"kind": "z", "n": 0})}, {"routes": ["$.kind == 'a'"]}
        )
    )
    assert r.outputs.keys() == {"default"}


def test_route_all_sends_to_every_match() -> None:
    r = ok(run_tick(Route(), {"in": Int(5)}, {"routes": ["$ > 1", "$ > 2", "$ > 9"], "all": True}))
    assert set(r.outputs) == {"out0", "out1"}


def test_merge_forwards_from_every_port() -> None:
    r = ok(run_ticks(Merge(), [{"in0": Int(1)}, {"in2": Int(2)}, {"in3": Int(3)}]))
    assert sorted(r.values("out")) == [1, 2, 3]


def test_split_sends_items_then_done() -> None:
    r = ok(run_tick(Split(), {"in": Message.array([1, "x", {"k": 2}, None, 1.5])}))
    assert [m["type"] for m in r.outputs["out"]] == ["Integer", "String", "Object", "Null", "Float"]
    assert r.values("out") == [1, "x", {"k": 2}, None, 1.5]
    assert [m["type"] for m in r.outputs["done"]] == ["Flow"]


def test_collect_n_into_an_array_and_flush() -> None:
    ticks: list[dict[str, Any]] = [{"in": Int(i)} for i in range(5)]
    ticks.append({"flush": Message.flow()})
    ticks.append({"flush": Message.flow()})  # nothing left: sends nothing
    r = ok(run_ticks(Collect(), ticks, {"count": 2}))
    assert r.values("out") == [[0, 1], [2, 3], [4]]


def test_zip_waits_for_all_connected_ports() -> None:
    net = Network()
    net.register_actor("zip", Zip())
    net.add_node("z", "zip", {"as": "object"})
    out = net.collect("z", "out")
    net.add_initial("z", "a", Int(1))
    net.add_initial("z", "b", Message.string("x"))
    net.add_initial("z", "a", Int(2))
    net.run(timeout=10).raise_for_failures()
    net.add_initial("z", "b", Message.string("y"))
    net.run(timeout=10).raise_for_failures()
    net.shutdown()
    assert out.values() == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]


def test_zip_array_form() -> None:
    r = ok(run_tick(Zip(), {"a": Int(1), "b": Int(2), "c": Int(3)}))
    assert r.values("out") == [[1, 2, 3]]


def test_counter_counts_and_resets() -> None:
    r = ok(
        run_ticks(
            Counter(),
            [
                {"in": Message.flow()},
                {"in": Int(9)},
                {"reset": Message.flow()},
                {"in": Message.flow()},
            ],
            {"start": 10, "step": 5},
        )
    )
    assert r.values("count") == [15, 20, 15]


def test_once_passes_first_until_reset() -> None:
    r = ok(
        run_ticks(
            Once(),
            [
                {"in": Int(1)},
                {"in": Int(2)},
                {"reset": Message.flow()},
                {"in": Int(3)},
                {"in": Int(4)},
            ],
        )
    )
    assert r.values("out") == [1, 3]


def test_filter_splits_kept_and_rejected() -> None:
    cfg = {"where": '$.price < 10 and "sale" in $.tags'}
    items = [
        {"price": 5, "tags": ["sale"]},
        {"price": 5, "tags": []},
        {"price": 50, "tags": ["sale"]},
    ]
    r = ok(run_ticks(Filter(), [{"in": Message.object(i)} for i in items], cfg))
    assert r.values("out") == [items[0]]
    assert r.values("rejected") == items[1:]


def test_map_builds_a_new_payload() -> None:
    r = ok(
        run_tick(
            Map(),
            {"in": Message.object({"name": "ada", "age": 36})},
            {"expr": '{"name": upper($.name), "next": $.age + 1, "ok": $.age >= 18}'},
        )
    )
    assert r.values("out") == [{"name": "ADA", "next": 37, "ok": True}]
    r = ok(run_tick(Map(), {"in": Int(4)}, {"expr": "$ * 2.5"}))
    assert r.outputs["out"][0] == Message.float(10.0)


def test_constant_sends_config_value() -> None:
    assert ok(run_tick(Constant(), {"in": Message.flow()}, {"value": {"a": 1}})).values("out") == [
        {"a": 1}
    ]
    r = ok(run_tick(Constant(), {"in": Int(1)}, {"value": {"type": "Flow"}}))
    assert r.outputs["out"][0]["type"] == "Flow"


@pytest.mark.parametrize(
    ("actor", "inputs", "config", "fragment"),
    [
        (Gate(), {"control": Int(1)}, None, "in-port 'control': expected a Boolean, got Integer"),
        (Gate(), {"in": Int(1)}, {"buffer": -1}, "config 'buffer' must be >= 0"),
        (Switch(), {"in": Int(1)}, None, "config 'when' is required"),
        (Switch(), {"in": Int(1)}, {"when": "$ >"}, "config 'when': unexpected end"),
        (Switch(), {"in": Int(1)}, {"when": "import os"}, "config 'when': unknown name 'import'"),
        (
            Switch(),
            {"in": Message.string("x")},
            {"when": "$ - 1"},
            "config 'when': '-' needs numbers",
        ),
        (Route(), {"in": Int(1)}, {"routes": []}, "config 'routes' must be a list of 1 to 4"),
        (Route(), {"in": Int(1)}, {"routes": ["$ ==", "true"]}, "config 'routes'[0]"),
        (Split(), {"in": Int(1)}, None, "in-port 'in': expected an Array, got Integer"),
        (Collect(), {"in": Int(1)}, {"count": "3"}, "config 'count' must be an integer"),
        (Zip(), {"a": Int(1)}, {"as": "tuple"}, "config 'as' must be one of 'array', 'object'"),
        (Counter(), {"in": Int(1)}, {"step": "x"}, "config 'step' must be a number"),
        (Filter(), {"in": Int(1)}, {"where": "__import__('os')"}, "config 'where'"),
        (Map(), {"in": Int(1)}, {"expr": "$ / 0"}, "config 'expr': division by zero"),
        (Map(), {"in": Int(1)}, None, "config 'expr' is required"),
        (Constant(), {"in": Int(1)}, None, "config 'value' is required"),
        (Constant(), {"in": Int(1)}, {"value": {"type": "Integer", "data": "x"}}, "config 'value'"),
    ],
)
def test_bad_input_fails_the_tick(
    actor: Any, inputs: dict[str, Any], config: dict[str, Any] | None, fragment: str
) -> None:
    assert fragment in error_of(run_tick(actor, inputs, config))
