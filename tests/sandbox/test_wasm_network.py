"""Sandboxed actors in a real Network, next to Python actors: data flows through, a failing
guest fails only its own tick, and two CPU-bound guests run at the same time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reflow import Actor, Message, Network
from reflow._sandbox._wasm_engine import WasmEngine

M = Message


class PyInc(Actor):
    component = "py/inc"
    inports = ["in"]
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        ctx.done({"out": M.integer(ctx.inputs["in"]["data"] + 1)})


def test_wasm_doubler_between_python_actors(
    engine: WasmEngine, guest_wasm: dict[str, Path]
) -> None:
    net = Network()
    net.register_actor("py/inc", PyInc())
    net.register_actor("example/doubler", engine.load(guest_wasm["doubler"]).actor())
    net.add_node("inc", "py/inc")
    net.add_node("dbl", "example/doubler", {"factor": 3})
    net.add_node("inc2", "py/inc")
    net.add_connection("inc", "out", "dbl", "in")
    net.add_connection("dbl", "out", "inc2", "in")
    out = net.collect("inc2", "out")
    for i in range(20):
        net.add_initial("inc", "in", M.integer(i))
    summary = net.run(timeout=30)
    assert summary.ok, summary.failures
    assert sorted(m["data"] for m in out) == sorted((i + 1) * 3 + 1 for i in range(20))
    net.shutdown()


def test_failing_guest_tick_does_not_stop_the_graph(
    engine: WasmEngine, guest_wasm: dict[str, Path]
) -> None:
    net = Network()
    net.register_actor("example/doubler", engine.load(guest_wasm["doubler"]).actor())
    net.add_node("dbl", "example/doubler")
    out = net.collect("dbl", "out")
    net.add_initial("dbl", "in", M.integer(1))
    net.add_initial("dbl", "in", M.string("boom"))
    net.add_initial("dbl", "in", M.integer(2))
    summary = net.run(timeout=30)
    assert [m["data"] for m in out] == [2, 4]
    assert summary.failure_count == 1
    assert "expected an Integer" in str(summary.failures[0])
    net.shutdown()


def test_streaming_guest_under_backpressure(
    engine: WasmEngine, guest_wasm: dict[str, Path]
) -> None:
    net = Network()
    net.register_actor("example/stream", engine.load(guest_wasm["stream"]).actor())
    net.register_actor("py/inc", PyInc())
    net.add_node("s", "example/stream")
    net.add_node("inc", "py/inc")
    net.add_connection("s", "out", "inc", "in")
    out = net.collect("inc", "out")
    done = net.collect("s", "done")
    net.add_initial("s", "in", M.integer(500))
    summary = net.run(timeout=60)
    assert summary.ok, summary.failures
    assert [m["data"] for m in out] == list(range(1, 501))
    assert [m["data"] for m in done] == [500]
    net.shutdown()


def test_await_all_guest_in_a_graph(engine: WasmEngine, guest_wasm: dict[str, Path]) -> None:
    net = Network()
    net.register_actor("example/add", engine.load(guest_wasm["await_all"]).actor())
    net.add_node("add", "example/add")
    out = net.collect("add", "sum")
    net.add_initial("add", "a", M.integer(1))
    net.add_initial("add", "a", M.integer(2))
    net.add_initial("add", "b", M.integer(10))
    net.add_initial("add", "b", M.integer(20))
    summary = net.run(timeout=30)
    assert summary.ok, summary.failures
    assert [m["data"] for m in out] == [11, 22]
    net.shutdown()


def test_counter_state_survives_across_ticks_in_a_graph(
    engine: WasmEngine, guest_wasm: dict[str, Path]
) -> None:
    net = Network()
    net.register_actor("example/counter", engine.load(guest_wasm["counter"]).actor())
    net.add_node("c", "example/counter")
    out = net.collect("c", "count")
    for _ in range(5):
        net.add_initial("c", "in", M.flow())
    summary = net.run(timeout=30)
    assert summary.ok, summary.failures
    assert [m["data"] for m in out] == [1, 2, 3, 4, 5]
    net.shutdown()


@pytest.mark.parametrize("n", [2])
def test_nodes_are_closed_at_shutdown(
    engine: WasmEngine, guest_wasm: dict[str, Path], n: int
) -> None:
    actor = engine.load(guest_wasm["doubler"]).actor()
    opened = []
    original = actor.open_node

    def spy(node_id: str, config: dict[str, Any]) -> Any:
        node = original(node_id, config)
        opened.append(node)
        return node

    actor.open_node = spy  # type: ignore[method-assign]
    net = Network()
    net.register_actor("example/doubler", actor)
    for i in range(n):
        net.add_node(f"d{i}", "example/doubler")
    net.run(timeout=10)
    net.shutdown()
    assert len(opened) == n
    assert all(node._inst is None for node in opened)
