"""Building graphs and networks: lookups that stay O(1) as the graph grows, what they refuse,
the collector hold while a graph is built (reflow._core._gcdefer), memory per idle node, and
the hook that forwards network events without the core importing the loader.

Times are never asserted, except generous bounds on sizes where a quadratic step (the ones
these modules had) would take minutes and a linear one takes about a second.
"""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from reflow import (
    Actor,
    ActorError,
    Graph,
    GraphError,
    GraphFormatError,
    Message,
    Network,
    UnknownComponentError,
    UnknownNodeError,
    compose_graphs,
)
from reflow._core import _gcdefer, _network
from reflow._core._graph_spec import graph_to_network_spec


class Inc(Actor):
    component = "inc"
    inports = ["in"]
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        ctx.done({"out": Message.integer(ctx.inputs["in"]["data"] + 1)})


class Emit(Actor):
    """A source: one integer out of ``out``; ``spare`` is never connected."""

    component = "emit"
    inports: list[str] = []
    outports = ["out", "spare"]

    def run(self, ctx: Any) -> None:
        ctx.done({"out": Message.integer(1), "spare": Message.integer(2)})


class AsyncInc(Actor):
    component = "ainc"
    inports = ["in"]
    outports = ["out"]

    async def run(self, ctx: Any) -> None:
        await asyncio.sleep(0)
        ctx.done({"out": Message.integer(ctx.inputs["in"]["data"] + 1)})


class Join(Actor):
    component = "join"
    inports = ["a", "b"]
    outports = ["out"]
    await_all_inports = True

    def run(self, ctx: Any) -> None:
        total = ctx.inputs["a"]["data"] + ctx.inputs["b"]["data"]
        ctx.done({"out": Message.integer(total)})


def _net() -> Network:
    net = Network()
    for tid, actor in (("inc", Inc()), ("emit", Emit()), ("ainc", AsyncInc()), ("join", Join())):
        net.register_actor(tid, actor)
    return net


@pytest.fixture(autouse=True)
def _no_hold_left() -> Iterator[None]:
    """Every test starts and ends without a collector hold, with the thresholds it found."""
    _gcdefer.built()
    before = gc.get_threshold()
    yield
    _gcdefer.built()
    assert gc.get_threshold() == before
    assert _gcdefer._watch not in gc.callbacks


# -- duplicate connections: found on the source's route, whatever its width ----------------


def _fan(net: Network, width: int) -> None:
    net.add_node("src", "emit")
    for i in range(width):
        net.add_node(f"k{i}", "inc")
        net.add_connection("src", "out", f"k{i}", "in")


@pytest.mark.parametrize(
    ("width", "again"),
    [
        (1, 0),  # a route of one edge
        (5, 3),  # searched: shorter than the wide-route limit
        (7, 6),  # the last edge before the route keeps a set
        (8, 0),  # the set is made from the route on this call
        (40, 0),
        (40, 39),
        (40, 20),
    ],
)
def test_a_duplicate_connection_is_refused_on_any_route(width: int, again: int) -> None:
    net = _net()
    _fan(net, width)
    before = net._connections
    with pytest.raises(GraphError, match=rf"connection src\.out -> k{again}\.in already exists"):
        net.add_connection("src", "out", f"k{again}", "in")
    assert net._connections == before and len(before) == width
    summary = net.run(timeout=10)
    assert summary.ok and summary.node_ticks[f"k{again}"] == 1
    net.shutdown()


def test_wide_routes_still_take_new_targets_and_other_ports() -> None:
    net = _net()
    _fan(net, 12)
    net.add_node("j", "join")
    net.add_connection("src", "out", "j", "a")
    net.add_connection("src", "spare", "j", "b")  # another port of src: its own route
    with pytest.raises(GraphError, match="already exists"):
        net.add_connection("src", "out", "j", "a")
    net.add_connection("src", "spare", "k0", "in")
    result = net.collect("j", "out")
    assert net.run(timeout=10).ok
    assert result.values() == [3]
    assert len(net._connections) == 15
    net.shutdown()


def test_collectors_are_not_connections() -> None:
    """A collector edge on a route is neither a duplicate nor counted as a connection."""
    net = _net()
    net.add_node("src", "emit")
    net.add_node("a", "inc")
    seen = [net.collect("src", "out") for _ in range(9)]  # a wide route of collectors
    net.add_connection("src", "out", "a", "in")
    tapped = net.collect("a", "in")
    assert net._connections == {("src", "out", "a", "in")}
    assert net.run(timeout=10).ok
    assert [c.values() for c in seen] == [[1]] * 9 and tapped.values() == [1]
    net.shutdown()


def test_one_in_port_fed_by_initial_packets_and_an_edge() -> None:
    """A node with one in-port keeps one list for its in-edges and that port's edges: an
    initial packet added before and after the connection, and a tap, all still count once."""
    net = _net()
    net.add_node("a", "inc")
    net.add_node("b", "inc")
    net.add_initial("b", "in", Message.integer(10))
    net.add_connection("a", "out", "b", "in")
    net.add_initial("b", "in", Message.integer(20))
    net.add_initial("a", "in", Message.integer(0))
    out = net.collect("b", "out")
    node = net._sched.nodes["b"]
    assert node.in_edges is node.port_edges["in"] and len(node.in_edges) == 2
    assert net.run(timeout=10).ok
    assert sorted(out.values()) == [2, 11, 21]
    net.shutdown()


def test_an_unconnected_out_port_drops_what_it_gets() -> None:
    net = _net()
    net.add_node("src", "emit")
    net.add_node("a", "inc")
    net.add_connection("src", "out", "a", "in")
    assert net._sched.nodes["a"].routes["out"] == ()
    summary = net.run(timeout=10)
    assert summary.ok and summary.dropped == 2  # src.spare and a.out lead nowhere
    net.shutdown()


# -- a shared template's mode is worked out once, and again when it changes ----------------


def test_a_templates_mode_follows_its_changes() -> None:
    actor = Inc()
    net = Network()
    net.register_actor("inc", actor)
    net.add_node("a", "inc")
    actor.execution = "worker"
    net.add_node("b", "inc")
    actor.execution = "bogus"
    with pytest.raises(ActorError, match="execution='bogus'"):
        net.add_node("c", "inc")
    with pytest.raises(ActorError, match="execution='bogus'"):  # refused each time
        net.add_node("c", "inc")
    actor.execution = "inline"

    async def arun(ctx: Any) -> None:
        ctx.done()

    actor.run = arun  # type: ignore[method-assign]
    net.add_node("d", "inc")
    modes = {n: net._sched.nodes[n].mode for n in ("a", "b", "d")}
    assert modes == {"a": "inline", "b": "worker", "d": "async"}
    assert "c" not in net.nodes()
    net.shutdown()


# -- sources that feed async nodes run on a worker ------------------------------------------


@pytest.mark.parametrize(
    ("chain", "worker"),
    [
        (["ainc"], True),
        (["inc", "inc", "ainc"], True),
        (["inc", "inc"], False),
        (["ainc", "inc"], True),
    ],
)
def test_sources_feeding_async_nodes_run_on_a_worker(chain: list[str], worker: bool) -> None:
    net = _net()
    net.add_node("src", "emit")
    prev = "src"
    for i, tid in enumerate(chain):
        net.add_node(f"n{i}", tid)
        net.add_connection(prev, "out", f"n{i}", "in")
        prev = f"n{i}"
    out = net.collect(prev, "out")
    assert net.run(timeout=10).ok
    assert out.values() == [1 + len(chain)]
    assert (net._sched.nodes["src"].mode == "worker") is worker
    net.shutdown()


def test_many_sources_into_a_long_chain_are_armed_in_linear_time() -> None:
    """10,000 sources in front of a 10,000-node chain ending in an async node: one walk per
    source down the chain (as before) is 10^8 steps; one walk up is 2 x 10^4."""
    n = 10_000
    net = _net()
    for i in range(n):
        net.add_node(f"c{i}", "ainc" if i == n - 1 else "inc")
        if i:
            net.add_connection(f"c{i - 1}", "out", f"c{i}", "in")
    for i in range(n):
        net.add_node(f"s{i}", "emit")
        net.add_connection(f"s{i}", "out", "c0", "in")
    t0 = time.perf_counter()
    net._arm_sources_now()
    assert time.perf_counter() - t0 < 10  # generous: the quadratic walk took a minute
    assert all(net._sched.nodes[f"s{i}"].mode == "worker" for i in range(n))
    net.shutdown(wait=0)


# -- graphs: the connection index follows every edit ------------------------------------------


def _graph() -> Graph:
    g = Graph("g")
    for node in ("a", "b", "c"):
        g.add_node(node, "inc")
    g.add_connection("a", "out", "b", "in")
    g.add_connection("b", "out", "c", "in")
    return g


def _renamed(g: Graph) -> None:
    g.rename_node("b", "bee")


def _removed(g: Graph) -> None:
    g.remove_node("b")
    g.add_node("b", "inc")


def _reconnected(g: Graph) -> None:
    g.remove_connection("a", "out", "b", "in")


def _imported(g: Graph) -> None:
    g.import_graph(_graph().to_json())


@pytest.mark.parametrize(
    ("edit", "call", "error", "fragment"),
    [
        (None, ("a", "out", "b", "in"), GraphError, "a.out -> b.in already exists"),
        (None, ("a", "OUT", "b", "In"), GraphError, "a.out -> b.in already exists"),
        (_renamed, ("a", "out", "bee", "in"), GraphError, "a.out -> bee.in already exists"),
        (_renamed, ("bee", "out", "c", "in"), GraphError, "bee.out -> c.in already exists"),
        (_renamed, ("a", "out", "b", "in"), UnknownNodeError, "no node 'b'"),
        (_removed, ("a", "out", "b", "in"), None, ""),
        (_removed, ("b", "out", "c", "in"), None, ""),
        (_reconnected, ("a", "out", "b", "in"), None, ""),
        (_imported, ("b", "out", "c", "in"), GraphError, "b.out -> c.in already exists"),
    ],
)
def test_the_graphs_connection_index_follows_edits(
    edit: Callable[[Graph], None] | None,
    call: tuple[str, str, str, str],
    error: type[Exception] | None,
    fragment: str,
) -> None:
    g = _graph()
    if edit is not None:
        edit(g)
    before = g.to_json()
    if error is None:
        g.add_connection(*call)
        assert g.get_connection(*call) is not None
        return
    with pytest.raises(error, match=fragment):
        g.add_connection(*call)
    assert g.to_json() == before


def test_a_connection_read_from_json_is_found_by_its_ports() -> None:
    doc = {
        "processes": {"a": {"component": "inc"}, "b": {"component": "inc"}},
        "connections": [
            {"src": {"process": "a", "port": "Out"}, "tgt": {"process": "b", "port": "IN"}}
        ],
    }
    g = Graph.from_json(doc)
    assert g.get_connection("a", "out", "b", "in") is not None
    with pytest.raises(GraphError, match="already exists"):
        g.add_connection("a", "out", "b", "in")
    g.set_connection_metadata("a", "OUT", "b", "in", {"capacity": 2})
    assert graph_to_network_spec(g).connections[0].capacity == 2


def test_a_duplicate_cross_connection_in_a_composition() -> None:
    left = Graph("left")
    left.add_node("src", "emit")
    right = Graph("right")
    right.add_node("sink", "inc")
    link = {
        "from": {"process": "left/src", "port": "out"},
        "to": {"process": "right/sink", "port": "in"},
    }
    with pytest.raises(GraphFormatError, match="duplicate connection") as info:
        compose_graphs({"graphs": [left, right], "connections": [link, dict(link)]})
    assert info.value.path == "$.connections[1]"


def _typed_chain(n: int, clash: bool = False) -> dict[str, Any]:
    integer = {"type": "integer"}
    doc: dict[str, Any] = {
        "processes": {f"n{i}": {"component": "inc"} for i in range(n)},
        "connections": [],
    }
    for i in range(1, n):
        in_type = {"type": "string"} if clash and i == n - 1 else integer
        doc["connections"].append(
            {
                "src": {"process": f"n{i - 1}", "port": "out", "portType": integer},
                "tgt": {"process": f"n{i}", "port": "in", "portType": in_type},
            }
        )
    return doc


def test_a_big_graph_reads_checks_and_writes_in_linear_time() -> None:
    """10,000 typed nodes: read, turned into a network spec (every port's type checked), and
    written back. The old per-connection and per-port scans made this 10^8 steps and more."""
    n = 10_000
    t0 = time.perf_counter()
    g = Graph.from_json(json.dumps(_typed_chain(n)))
    spec = graph_to_network_spec(g)
    again = Graph.from_json(g.to_json())
    built_here = Graph()
    for i in range(n):
        built_here.add_node(f"n{i}", "inc")
        if i:
            built_here.add_connection(f"n{i - 1}", "out", f"n{i}", "in")
    assert time.perf_counter() - t0 < 30  # generous; linear takes about a second
    assert len(spec.connections) == n - 1 and len(spec.port_types) == 2 * (n - 1)
    assert again == g and len(built_here.connections()) == n - 1


def test_a_type_clash_at_the_end_of_a_big_graph_is_named() -> None:
    from reflow import PortTypeError

    g = Graph.from_json(_typed_chain(2000, clash=True))
    with pytest.raises(
        PortTypeError,
        match=r"cannot connect n1998\.out \(integer\) to "
        r"n1999\.in \(string\)",
    ):
        graph_to_network_spec(g)


# -- the collector hold ---------------------------------------------------------------------


def _held() -> bool:
    return _gcdefer.holding() and gc.get_threshold()[2] == _gcdefer._RAISED


@pytest.mark.parametrize(
    ("end", "released"),
    [
        (lambda net: net.run(timeout=10), True),
        (lambda net: net.shutdown(), True),
        (lambda net: net.start(), True),
        (lambda net: net.nodes(), False),
        (lambda net: net.collect("a", "out"), False),
    ],
)
def test_a_network_build_holds_full_collections(
    end: Callable[[Network], Any], released: bool
) -> None:
    t2 = gc.get_threshold()[2]
    net = _net()
    assert not _held()
    net.add_node("a", "inc")
    assert _held() and _gcdefer._watch in gc.callbacks
    end(net)
    assert _held() is not released
    net.shutdown()
    assert not _held() and gc.get_threshold()[2] == t2


def test_reading_a_graph_holds_only_while_it_reads() -> None:
    Graph.from_json(_typed_chain(50))
    assert not _held()
    net = _net()
    net.add_node("a", "inc")
    Graph.from_json(_typed_chain(50))  # inside a network's build: that hold stays
    assert _held()
    net.shutdown()
    assert not _held()


def test_a_build_left_alone_lets_go_by_itself() -> None:
    net = _net()
    net.add_node("a", "inc")
    assert _held()
    gc.collect(0)  # the callback sees the build calls so far
    time.sleep(_gcdefer.IDLE_S + 0.1)
    gc.collect(0)  # a young collection after IDLE_S without a build call
    assert not _held()
    net.add_node("b", "inc")  # building again holds again
    assert _held()
    net.shutdown()


def test_a_threshold_someone_else_set_is_kept() -> None:
    t0, t1, t2 = gc.get_threshold()
    net = _net()
    net.add_node("a", "inc")
    try:
        gc.set_threshold(t0, t1, 25)
        net.shutdown()
        assert gc.get_threshold() == (t0, t1, 25)
    finally:
        gc.set_threshold(t0, t1, t2)


def test_a_build_gives_the_same_network_with_the_collector_off() -> None:
    """The hold changes when memory is reclaimed, never what is built."""

    def build() -> list[Any]:
        net = _net()
        net.add_node("src", "emit")
        net.add_node("a", "inc")
        net.add_connection("src", "out", "a", "in")
        out = net.collect("a", "out")
        net.run(timeout=10)
        net.shutdown()
        return out.values()

    on = build()
    gc.disable()
    try:
        off = build()
    finally:
        gc.enable()
    assert on == off == [2]


# -- memory per idle node, measured in a fresh process ---------------------------------------


def test_an_idle_node_costs_at_most_2_kib() -> None:
    script = textwrap.dedent("""
        import gc, json, psutil
        from reflow import Actor, Network

        class Inc(Actor):
            component = "inc"
            inports = ["in"]
            outports = ["out"]

            def run(self, ctx):
                ctx.done()

        n = 50_000
        names = [f"n{i}" for i in range(n)]
        gc.collect()
        rss0 = psutil.Process().memory_info().rss
        net = Network()
        net.register_actor("inc", Inc())
        net.add_node(names[0], "inc")
        for i in range(1, n):
            net.add_node(names[i], "inc")
            net.add_connection(names[i - 1], "out", names[i], "in")
        gc.collect()
        print(json.dumps((psutil.Process().memory_info().rss - rss0) / n))
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    per_node = json.loads(out.stdout)
    assert 0 < per_node <= 2048, per_node


# -- network events reach plugins through a hook the package wires ---------------------------


def test_the_network_observer_is_called_once_per_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[Any] = []

    def observer(subscribe: Callable[[], Any]) -> None:
        stream = subscribe()
        calls.append(stream)

    monkeypatch.setattr(_network, "_network_observer", None)
    _network.set_network_observer(observer)
    net = _net()
    net.add_node("src", "emit")
    net.run(timeout=10)
    net.run(timeout=10)
    assert len(calls) == 1
    events = calls[0].recv_batch(100, timeout_ms=100)
    assert "NetworkStarted" in [e["_type"] for e in events]
    net.shutdown()


def test_importing_reflow_loads_neither_the_loader_nor_pluggy() -> None:
    script = (
        "import sys, reflow\n"
        "print(sorted(m for m in sys.modules if m.startswith(('pluggy', 'reflow._loader',"
        " 'reflow._sandbox'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


def test_a_network_from_a_graph_lists_its_nodes() -> None:
    g = Graph("g")
    g.add_node("a", "inc")
    g.add_node("b", "inc")
    g.add_connection("a", "out", "b", "in")
    net = Network.from_graph(g, templates={"inc": Inc()})
    assert net.nodes() == ["a", "b"]
    assert net._connections == {("a", "out", "b", "in")}
    net.shutdown()
    missing = Network.from_graph(g)
    with pytest.raises(UnknownComponentError, match="unknown component 'inc'"):
        missing.nodes()  # the graph is applied here, so its errors surface here
    missing.shutdown()


def test_a_hold_that_lasts_too_long_lets_one_full_collection_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A process that never stops building still gets its old garbage collected: after
    MAX_HOLD_S the threshold goes back until one full collection has run, then holds again."""
    monkeypatch.setattr(_gcdefer, "MAX_HOLD_S", 0.2)
    net = _net()
    net.add_node("n0", "inc")
    assert _held()
    deadline = time.monotonic() + 10
    i = 0
    while _held() and time.monotonic() < deadline:  # building on and on, never idle
        i += 1
        net.add_node(f"n{i}", "inc")
        gc.collect(0)
    assert not _held()
    net.add_node("again", "inc")
    assert not _held()  # no new hold before the full collection
    gc.collect()  # the full collection (a young one that grows into it does the same)
    net.add_node("after", "inc")
    assert _held()
    net.shutdown()
    assert not _held()
