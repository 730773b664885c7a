"""Subgraphs: a graph packaged as one actor and inlined into the network that uses it."""

from __future__ import annotations

from typing import Any

import pytest

from reflow import (
    Actor,
    DuplicateNodeError,
    Graph,
    GraphError,
    Message,
    Network,
    SubgraphBuilder,
    UnknownComponentError,
    UnknownPortError,
)


class Scale(Actor):
    component = "scale"
    inports = ["In"]
    outports = ["Out"]

    def run(self, ctx: Any) -> None:
        factor = ctx.config.get("factor", 2)
        ctx.done({"Out": Message.integer(ctx.inputs["In"]["data"] * factor)})


def two_scales() -> Graph:
    """x -> a (x2) -> b (x3, from the graph's node config) -> exported out-port 'result'."""
    g = Graph("twice")
    g.add_node("a", "tpl_scale")
    g.add_node("b", "tpl_scale", {"config": {"factor": 3}})
    g.add_connection("a", "Out", "b", "In")
    g.add_inport("value", "a", "In")
    g.add_outport("result", "b", "Out")
    return g


def build(graph: Graph | None = None) -> Any:
    sb = SubgraphBuilder((graph or two_scales()).to_json())
    sb.register_actor("tpl_scale", Scale())
    return sb.build()


def test_subgraph_runs_inlined_with_its_exported_ports() -> None:
    sub = build()
    assert (sub.inports, sub.outports) == (["value"], ["result"])
    net = Network()
    net.register_actor("sub", sub)
    net.register_actor("scale", Scale())
    net.add_node("s", "sub")
    net.add_node("after", "scale")
    net.add_connection("s", "result", "after", "In")
    out = net.collect("after", "Out")
    net.add_initial("s", "value", Message.integer(1))
    summary = net.run(timeout=10)
    net.shutdown()
    assert out.values() == [12]  # 1 * 2 * 3 * 2
    assert summary.node_ticks == {"s/a": 1, "s/b": 1, "after": 1}


def test_node_config_overrides_inner_config() -> None:
    net = Network()
    net.register_actor("sub", build())
    net.add_node("s", "sub", {"b": {"factor": 10}})
    out = net.collect("s", "result")
    net.add_initial("s", "value", Message.integer(1))
    net.run(timeout=10)
    net.shutdown()
    assert out.values() == [20]


def test_two_nodes_of_one_subgraph_are_separate() -> None:
    net = Network()
    net.register_actor("sub", build())
    net.add_node("x", "sub")
    net.add_node("y", "sub")
    assert sorted(net.nodes()) == ["x/a", "x/b", "y/a", "y/b"]
    with pytest.raises(DuplicateNodeError, match="'x'"):
        net.add_node("x", "sub")


@pytest.mark.parametrize(
    ("action", "error", "fragment"),
    [
        (
            lambda: SubgraphBuilder(two_scales().to_json()).build(),
            UnknownComponentError,
            "tpl_scale",
        ),
        (
            lambda: SubgraphBuilder(two_scales().to_json()).register_actor("tpl_scale", 42),
            GraphError,
            "expects an Actor instance, got int",
        ),
        (
            lambda: _connect_unknown_port(),
            UnknownPortError,
            "node 's' has no exported out port 'nope'; declared exported out ports: result",
        ),
        (
            lambda: _initial_on_unknown_port(),
            UnknownPortError,
            "node 's' has no exported in port 'nope'; declared exported in ports: value",
        ),
    ],
)
def test_bad_subgraphs(action: Any, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        action()


def _connect_unknown_port() -> None:
    net = Network()
    net.register_actor("sub", build())
    net.register_actor("scale", Scale())
    net.add_node("s", "sub")
    net.add_node("t", "scale")
    net.add_connection("s", "nope", "t", "In")


def _initial_on_unknown_port() -> None:
    net = Network()
    net.register_actor("sub", build())
    net.add_node("s", "sub")
    net.add_initial("s", "nope", Message.integer(1))


def test_fill_from_catalog_takes_missing_components() -> None:
    g = Graph("lib")
    g.add_node("p", "tpl_flow_passthrough")
    g.add_inport("in", "p", "in")
    g.add_outport("out", "p", "out")
    sb = SubgraphBuilder(g.to_json())
    sb.fill_from_catalog()
    net = Network()
    net.register_actor("sub", sb.build())
    net.add_node("s", "sub")
    out = net.collect("s", "out")
    net.add_initial("s", "in", Message.string("hi"))
    net.run(timeout=10)
    net.shutdown()
    assert out.values() == ["hi"]


def test_from_graph_resolves_templates_registered_afterwards() -> None:
    """The SDK's order: Network.from_graph(g), then register_actor, then run."""
    g = two_scales()
    g.add_initial("a", "In", {"type": "Integer", "data": 5})
    net = Network.from_graph(g)
    net.register_actor("tpl_scale", Scale())
    out = net.collect("result")
    net.run(timeout=10)
    net.shutdown()
    assert out.values() == [30]
