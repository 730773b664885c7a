"""reflow._core._network: building a network (errors at the call that caused them), running it
(run/arun/start/shutdown), collecting what reaches a port, the run summary and events."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from reflow import (
    Actor,
    Collector,
    DuplicateNodeError,
    GraphError,
    MessageError,
    Network,
    NetworkStateError,
    PortTypeError,
    ReflowError,
    RunSummary,
    RunTimeout,
    UnknownComponentError,
    UnknownNodeError,
    UnknownPortError,
)
from reflow import Message as M

# -- actors ----------------------------------------------------------------------------------


class Count(Actor):
    """Source: sends ``config["n"]`` integers (default 3) through ctx.send in one tick."""

    component = "count"
    inports: list[str] = []
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        for i in range(ctx.config.get("n", 3)):
            ctx.send({"out": M.integer(i)})
        ctx.done()


class Double(Actor):
    component = "double"
    inports = ["in"]
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        ctx.done({"out": M.integer(ctx.inputs["in"]["data"] * 2)})


class Sink(Actor):
    component = "sink"
    inports = ["in"]
    outports: list[str] = []
    accept_undeclared_inports = False  # strict: the building-error rows refuse 'nope'

    def run(self, ctx: Any) -> None:
        ctx.done()


class Typed(Actor):
    component = "typed"
    inports = ["i", "f", "s", "any"]
    outports = ["i", "f", "s", "any"]
    inport_types = {"i": "Integer", "f": "Float", "s": "String"}
    outport_types = {"i": "Integer", "f": "Float", "s": "String"}

    def run(self, ctx: Any) -> None:
        ctx.done()


class Gate(Actor):
    """Blocks its tick until ``release`` is set (for tests that need a run in progress)."""

    component = "gate"
    inports = ["in"]
    outports = ["out"]

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def run(self, ctx: Any) -> None:
        self.entered.set()
        self.release.wait(10)
        ctx.done({"out": ctx.inputs["in"]})


class Slow(Actor):
    component = "slow"
    inports = ["in"]
    outports = ["out"]

    async def run(self, ctx: Any) -> None:
        await asyncio.sleep(ctx.config.get("sleep", 0.3))
        ctx.done({"out": ctx.inputs["in"]})


def build(capacity: int | None = None) -> Network:
    net = Network(capacity=capacity)
    for tid, actor in [
        ("count", Count()),
        ("double", Double()),
        ("sink", Sink()),
        ("typed", Typed()),
        ("slow", Slow()),
    ]:
        net.register_actor(tid, actor)
    return net


def chain() -> tuple[Network, Collector]:
    """count(3) -> double -> sink, collecting what reaches the sink."""
    net = build()
    net.add_node("c", "count")
    net.add_node("d", "double")
    net.add_node("s", "sink")
    net.add_connection("c", "out", "d", "in")
    net.add_connection("d", "out", "s", "in")
    return net, net.collect("s", "in")


# -- building errors: raised at the call, with a message naming the culprit ------------------

Call = Callable[[Network], Any]


def _wired(net: Network) -> Network:
    net.add_node("a", "double")
    net.add_node("b", "sink")
    net.add_node("t", "typed")
    net.add_node("t2", "typed")
    net.add_connection("a", "out", "b", "in")
    return net


@pytest.mark.parametrize(
    ("call", "error", "fragment"),
    [
        (
            lambda n: n.add_node("x", "no_such_tpl"),
            UnknownComponentError,
            "unknown component 'no_such_tpl'",
        ),
        (lambda n: n.add_node("a", "double"), DuplicateNodeError, "node id 'a' is already used"),
        (lambda n: n.add_node("", "double"), GraphError, "node id must be a non-empty string"),
        (lambda n: n.add_node(3, "double"), GraphError, "node id must be a non-empty string"),
        (lambda n: n.add_node("x", "double", [1]), GraphError, "config of node 'x' must be a dict"),
        (lambda n: n.add_connection("zz", "out", "b", "in"), UnknownNodeError, "no node 'zz'"),
        (
            lambda n: n.add_connection("a", "out", "zz", "in"),
            UnknownNodeError,
            "no node 'zz' (target of connection a.out -> zz.in)",
        ),
        (
            lambda n: n.add_connection("a", "nope", "b", "in"),
            UnknownPortError,
            "node 'a' has no out port 'nope'; declared out ports: out",
        ),
        (
            lambda n: n.add_connection("a", "out", "b", "nope"),
            UnknownPortError,
            "node 'b' has no in port 'nope'; declared in ports: in",
        ),
        (
            lambda n: n.add_connection("a", "out", "b", "in"),
            GraphError,
            "connection a.out -> b.in already exists",
        ),
        (
            lambda n: n.add_connection("a", "out", "t", "any", capacity=0),
            GraphError,
            "capacity must be a positive integer, got 0",
        ),
        (
            lambda n: n.add_connection("a", "out", "t", "any", capacity=2.0),
            GraphError,
            "capacity must be a positive integer",
        ),
        (
            lambda n: n.add_connection("t", "s", "t2", "i"),
            PortTypeError,
            "out-port t.s sends String but in-port t2.i accepts Integer",
        ),
        (lambda n: n.add_connection("t", "f", "t2", "i"), PortTypeError, "sends Float"),
        (lambda n: n.add_initial("zz", "in", M.flow()), UnknownNodeError, "no node 'zz'"),
        (
            lambda n: n.add_initial("b", "nope", M.flow()),
            UnknownPortError,
            "node 'b' has no in port 'nope'",
        ),
        (
            lambda n: n.add_initial("b", "in", {"type": "Integer", "data": "x"}),
            MessageError,
            "initial packet for b.in is not a valid message: Integer data must be an int",
        ),
        (
            lambda n: n.add_initial("b", "in", {"type": "Whatever"}),
            MessageError,
            "unknown message type 'Whatever'",
        ),
        (lambda n: n.add_initial("b", "in", 42), MessageError, "a message must be an object"),
        (lambda n: n.collect("b", "nope"), UnknownPortError, "node 'b' has no in or out port"),
        (lambda n: n.collect("zz", "in"), UnknownNodeError, "no node 'zz'"),
        (lambda n: n.collect("no_export"), UnknownPortError, "no exported out port 'no_export'"),
        (
            lambda n: n.register_actor("x", "not an actor"),
            GraphError,
            "expects an Actor instance, got str",
        ),
    ],
)
def test_building_errors(call: Call, error: type[Exception], fragment: str) -> None:
    net = _wired(build())
    before = (net.nodes(), set(net._connections))
    with pytest.raises(error) as info:
        call(net)
    assert fragment in str(info.value)
    assert isinstance(info.value, ReflowError)
    # a refused call changes nothing: the network still runs as before
    assert (net.nodes(), set(net._connections)) == before
    assert net.run(timeout=10).ok
    net.shutdown()


def test_error_attributes() -> None:
    net = _wired(build())
    with pytest.raises(UnknownComponentError) as comp:
        net.add_node("x", "nope")
    assert comp.value.component == "nope"
    assert "registered: count, double" in str(comp.value)
    with pytest.raises(DuplicateNodeError) as dup:
        net.add_node("a", "double")
    assert dup.value.node == "a"
    with pytest.raises(UnknownNodeError) as node:
        net.add_connection("a", "out", "zz", "in")
    assert node.value.node == "zz"
    with pytest.raises(UnknownPortError) as port:
        net.add_connection("a", "out", "b", "nope")
    assert (port.value.node, port.value.port, port.value.direction) == ("b", "nope", "in")
    with pytest.raises(PortTypeError) as typed:
        net.add_connection("t", "s", "t2", "i")
    assert (typed.value.source, typed.value.target) == ("t.s", "t2.i")
    with pytest.raises(MessageError) as msg:
        net.add_initial("b", "in", {"type": "Array", "data": [1, {2}]})
    assert msg.value.path == "$.data[1]"
    net.shutdown()


@pytest.mark.parametrize(
    ("out_port", "in_port"),
    [("i", "i"), ("i", "f"), ("f", "f"), ("s", "s"), ("s", "any"), ("any", "i")],
)
def test_compatible_port_types_connect(out_port: str, in_port: str) -> None:
    net = _wired(build())
    net.add_connection("t", out_port, "t2", in_port)
    net.shutdown()


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"capacity": 0}, GraphError, "capacity must be a positive integer, got 0"),
        ({"capacity": -3}, GraphError, "capacity must be a positive integer, got -3"),
        ({"capacity": True}, GraphError, "capacity must be a positive integer, got True"),
        ({"capacity": 1.5}, GraphError, "capacity must be a positive integer"),
        ({"workers": 0}, GraphError, "workers must be a positive integer"),
        ({"config": {"capacity": 0}}, GraphError, "capacity must be a positive integer"),
        ({"config": {"speed": 1}}, GraphError, "unknown network config key(s) speed"),
        ({"config": {"event_buffer": 0}}, GraphError, "event_buffer must be a positive"),
    ],
)
def test_network_options_checked(
    kwargs: dict[str, Any], error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error) as info:
        Network(**kwargs)
    assert fragment in str(info.value)


def test_network_options_accepted() -> None:
    assert Network().capacity == 64
    assert Network(capacity=1).capacity == 1
    assert Network({"capacity": 5, "workers": 2, "event_buffer": 10}).capacity == 5


@pytest.mark.parametrize(
    "error",
    [
        GraphError,
        DuplicateNodeError,
        UnknownNodeError,
        UnknownPortError,
        UnknownComponentError,
        PortTypeError,
        MessageError,
        NetworkStateError,
        RunTimeout,
    ],
)
def test_every_error_is_a_reflow_error(error: type[Exception]) -> None:
    assert issubclass(error, ReflowError)


# -- run -------------------------------------------------------------------------------------


def test_run_returns_a_summary() -> None:
    net, got = chain()
    summary = net.run(timeout=10)
    assert isinstance(summary, RunSummary)
    assert got.values() == [0, 2, 4]
    assert summary.ok
    assert summary.node_ticks == {"c": 1, "d": 3, "s": 3}
    assert summary.ticks == 7
    assert summary.failures == []
    assert summary.failure_count == 0
    assert summary.overflowed == 0
    assert summary.dropped == 0
    assert summary.pending == {}
    assert summary.elapsed >= 0
    summary.raise_for_failures()  # nothing to raise
    net.shutdown()


def test_second_run_goes_on_from_the_first() -> None:
    net, got = chain()
    net.run(timeout=10)
    # sources fire on the first run only; new initial packets are taken by the next run
    net.add_initial("d", "in", M.integer(10))
    summary = net.run(timeout=10)
    assert summary.node_ticks == {"c": 0, "d": 1, "s": 1}
    assert got.values() == [0, 2, 4, 20]
    # the graph may grow between runs
    net.add_node("d2", "double")
    net.add_connection("d2", "out", "s", "in")
    net.add_initial("d2", "in", M.integer(100))
    assert net.run(timeout=10).ok
    assert got.values() == [0, 2, 4, 20, 200]
    net.shutdown()


def test_node_with_unconnected_inport_is_not_a_source() -> None:
    # as implemented: only nodes that *declare* no in-ports run a first tick by themselves
    net = build()
    net.add_node("d", "double")
    got = net.collect("d", "out")
    summary = net.run(timeout=10)
    assert summary.node_ticks == {"d": 0}
    assert got.values() == []
    net.shutdown()


def test_run_summary_counts_failures() -> None:
    class Picky(Actor):
        component = "picky"
        inports = ["in"]
        outports = ["out"]

        def run(self, ctx: Any) -> None:
            if ctx.inputs["in"]["data"] % 2:
                raise ValueError("odd")
            ctx.done({"out": ctx.inputs["in"]})

    net = build()
    net.register_actor("picky", Picky())
    net.add_node("c", "count", {"n": 5})
    net.add_node("p", "picky")
    net.add_connection("c", "out", "p", "in")
    got = net.collect("p", "out")
    summary = net.run(timeout=10)
    assert got.values() == [0, 2, 4]
    assert not summary.ok
    assert summary.failure_count == 2
    assert [(f.node, f.component, f.error) for f in summary.failures] == [
        ("p", "picky", "ValueError: odd")
    ] * 2
    assert net.failures == summary.failures
    with pytest.raises(ReflowError) as info:
        summary.raise_for_failures()
    assert "ValueError: odd (and 1 more)" in str(info.value)
    assert info.value.node == "p"  # type: ignore[attr-defined]
    # failures are per run
    net.add_initial("p", "in", M.integer(8))
    again = net.run(timeout=10)
    assert again.ok and again.failures == [] and again.failure_count == 0
    net.shutdown()


def test_summary_counts_are_per_run() -> None:
    """RunSummary is "what one run() did": dropped and overflowed too, like ticks."""
    net = build()
    net.add_node("d", "double")  # out-port unconnected: every output is dropped
    net.add_initial("d", "in", M.integer(1))
    first = net.run(timeout=10)
    net.add_initial("d", "in", M.integer(2))
    second = net.run(timeout=10)
    net.shutdown()
    assert (first.ticks, first.dropped) == (1, 1)
    assert (second.ticks, second.dropped) == (1, 1)
    assert second.overflowed == 0


def test_run_timeout_then_resume() -> None:
    net = build()
    net.add_node("w", "slow", {"sleep": 0.5})
    got = net.collect("w", "out")
    net.add_initial("w", "in", M.integer(1))
    with pytest.raises(RunTimeout) as info:
        net.run(timeout=0.05)
    assert isinstance(info.value, TimeoutError)
    assert info.value.pending == {"w": 0}  # nothing queued, one tick in flight
    assert "not idle after 0.05 s" in str(info.value)
    summary = net.run(timeout=10)  # the tick in flight completes in the next run
    assert got.values() == [1]
    assert summary.ok
    net.shutdown()


def test_run_concurrently_is_refused() -> None:
    gate = Gate()
    net = build()
    net.register_actor("gate", gate)
    net.add_node("g", "gate")
    net.add_initial("g", "in", M.integer(1))
    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(net.run(timeout=10)))
    t.start()
    try:
        assert gate.entered.wait(10)
        with pytest.raises(NetworkStateError, match="already running"):
            net.run(timeout=1)
        with pytest.raises(NetworkStateError, match="already running"):
            net.start()
        with pytest.raises(NetworkStateError, match="cannot be changed while the network runs"):
            net.add_node("x", "sink")
        with pytest.raises(NetworkStateError, match="cannot be changed"):
            net.add_connection("g", "out", "g", "in")
        with pytest.raises(NetworkStateError, match="cannot be changed"):
            net.collect("g", "out")
    finally:
        gate.release.set()
        t.join(10)
    assert result and result[0].ok
    net.shutdown()


def test_run_from_inside_an_actor_fails_that_tick() -> None:
    holder: list[Network] = []

    class Reenter(Actor):
        component = "reenter"
        inports = ["in"]

        def run(self, ctx: Any) -> None:
            holder[0].run()
            ctx.done()

    net = build()
    holder.append(net)
    net.register_actor("r", Reenter())
    net.add_node("r", "r")
    net.add_initial("r", "in", M.flow())
    summary = net.run(timeout=10)
    (failure,) = summary.failures
    assert "NetworkStateError" in failure.error and "already running" in failure.error
    net.shutdown()


def test_arun() -> None:
    net, got = chain()

    async def main() -> RunSummary:
        return await net.arun(timeout=10)

    summary = asyncio.run(main())
    assert summary.ok and got.values() == [0, 2, 4]
    net.shutdown()


def test_arun_with_async_actor_on_the_callers_loop() -> None:
    net = build()
    net.add_node("w", "slow", {"sleep": 0.01})
    got = net.collect("w", "out")
    for i in range(3):
        net.add_initial("w", "in", M.integer(i))

    async def main() -> RunSummary:
        other = asyncio.create_task(asyncio.sleep(0))
        summary = await net.arun(timeout=10)
        await other
        return summary

    assert asyncio.run(main()).ok
    assert got.values() == [0, 1, 2]
    net.shutdown()


def test_arun_timeout() -> None:
    net = build()
    net.add_node("w", "slow", {"sleep": 1})
    net.add_initial("w", "in", M.integer(1))

    async def main() -> None:
        await net.arun(timeout=0.05)

    with pytest.raises(RunTimeout):
        asyncio.run(main())
    net.shutdown()


# -- start / shutdown ------------------------------------------------------------------------


def test_start_then_run_waits_for_idle() -> None:
    net, got = chain()
    net.start()
    summary = net.run(timeout=10)
    assert got.values() == [0, 2, 4]
    assert summary.ok
    assert summary.node_ticks == {"c": 1, "d": 3, "s": 3}
    # initial packets are accepted while the network runs in the background
    net.add_initial("d", "in", M.integer(7))
    net.run(timeout=10)
    assert got.values() == [0, 2, 4, 14]
    with pytest.raises(NetworkStateError, match="already running"):
        net.start()
    with pytest.raises(NetworkStateError, match="cannot be changed"):
        net.add_node("x", "sink")
    net.shutdown()


def test_start_then_arun() -> None:
    net, got = chain()
    net.start()
    summary = asyncio.run(net.arun(timeout=10))
    assert summary.ok and got.values() == [0, 2, 4]
    net.shutdown()


def test_start_run_timeout() -> None:
    net = build()
    net.add_node("w", "slow", {"sleep": 0.5})
    net.add_initial("w", "in", M.integer(1))
    net.start()
    with pytest.raises(RunTimeout):
        net.run(timeout=0.05)
    assert net.run(timeout=10).ok
    net.shutdown()


def test_shutdown_is_idempotent_and_context_manager_closes() -> None:
    with build() as net:
        net.add_node("d", "double")
        net.start()
    net.shutdown()
    with pytest.raises(NetworkStateError, match="shut down"):
        net.add_node("x", "sink")


def test_shutdown_of_a_network_that_never_ran() -> None:
    net = build()
    net.add_node("d", "double")
    net.shutdown()
    assert net.nodes() == ["d"]


USE_AFTER_SHUTDOWN: list[tuple[str, Call]] = [
    ("run", lambda n: n.run(timeout=1)),
    ("arun", lambda n: asyncio.run(n.arun(timeout=1))),
    ("start", lambda n: n.start()),
    ("add_node", lambda n: n.add_node("x", "sink")),
    ("add_connection", lambda n: n.add_connection("d", "out", "s", "in")),
    ("add_initial", lambda n: n.add_initial("s", "in", M.flow())),
    ("register_actor", lambda n: n.register_actor("y", Sink())),
    ("collect", lambda n: n.collect("s", "in")),
    ("events", lambda n: n.events()),
]


@pytest.mark.parametrize("started", [False, True], ids=["never-started", "started"])
@pytest.mark.parametrize(
    ("name", "call"), USE_AFTER_SHUTDOWN, ids=[u[0] for u in USE_AFTER_SHUTDOWN]
)
def test_use_after_shutdown(name: str, call: Call, started: bool) -> None:
    net = build()
    net.add_node("d", "double")
    net.add_node("s", "sink")
    if started:
        net.start()
        net.run(timeout=10)
    else:
        net.run(timeout=10)
    net.shutdown()
    with pytest.raises(NetworkStateError, match="shut down"):
        call(net)


def test_shutdown_stops_a_busy_network() -> None:
    net = build()
    net.add_node("w", "slow", {"sleep": 30})
    net.add_initial("w", "in", M.integer(1))
    stream = net.events()
    net.start()
    net.shutdown(wait=0.2)  # gives the graph 0.2 s to go idle, then stops: not 30 s
    events = stream.drain()
    assert events[-1]["_type"] == "NetworkShutdown"


def test_shutdown_lets_a_started_graph_finish_first() -> None:
    """The SDK's start() ... shutdown() delivers what is in flight (up to ``wait``)."""
    net = build()
    net.add_node("w", "slow", {"sleep": 0.2})
    net.add_node("s", "sink")
    net.add_connection("w", "out", "s", "in")
    out = net.collect("s", "in")
    for i in range(3):
        net.add_initial("w", "in", M.integer(i))
    net.start()
    net.shutdown()
    assert len(out) == 3


# -- collect ---------------------------------------------------------------------------------


def test_collect_out_port_connected_or_not() -> None:
    net = build()
    net.add_node("c", "count")
    net.add_node("d", "double")
    net.add_node("s", "sink")
    net.add_connection("c", "out", "d", "in")
    from_c = net.collect("c", "out")  # connected
    from_d = net.collect("d", "out")  # not connected: still collected, not dropped
    summary = net.run(timeout=10)
    assert from_c.values() == [0, 1, 2]
    assert from_d.values() == [0, 2, 4]
    assert summary.dropped == 0
    assert all(type(m) is M for m in from_d)
    assert [m["data"] for m in from_d.messages] == [0, 2, 4]
    assert len(from_d) == 3 and from_d[1] == M.integer(2)
    assert repr(from_d) == "<Collector d.out: 3 messages>"
    from_d.clear()
    assert len(from_d) == 0
    net.shutdown()


def test_collect_in_port_sees_edges_and_initial_packets() -> None:
    net = build()
    net.add_node("c", "count")
    net.add_node("s", "sink")
    got = net.collect("s", "in")  # before wiring
    net.add_connection("c", "out", "s", "in")
    net.add_node("c2", "count", {"n": 1})
    net.add_connection("c2", "out", "s", "in")
    net.add_initial("s", "in", M.string("iip"))
    net.run(timeout=10)
    values = got.values()
    assert sorted(values, key=str) == sorted([0, 1, 2, 0, "iip"], key=str)
    assert [v for v in values if v != "iip"][:1] == [0]
    net.shutdown()


def test_two_collectors_on_one_port() -> None:
    net, first = chain()
    second = net.collect("s", "in")
    net.run(timeout=10)
    assert first.values() == second.values() == [0, 2, 4]
    net.shutdown()


def test_collect_exported_out_port() -> None:
    net, _ = chain()
    net.export_outport("RESULT", "d", "out")
    got = net.collect("RESULT")
    net.run(timeout=10)
    assert got.values() == [0, 2, 4]
    assert got.label == "d.out"
    net.shutdown()


# -- events ----------------------------------------------------------------------------------


def test_events_of_a_run() -> None:
    net, _ = chain()
    stream = net.events()
    net.run(timeout=10)
    net.shutdown()
    events = stream.drain()
    kinds = [e["_type"] for e in events]
    assert kinds[0] == "NetworkStarted"
    assert kinds[-2:] == ["NetworkIdle", "NetworkShutdown"]
    # one ActorStarted per node when the network starts (as offbit_reflow), then one per tick
    nodes = {n["id"] if isinstance(n, dict) else n for n in net.nodes()}
    assert kinds[1 : 1 + len(nodes)] == ["ActorStarted"] * len(nodes)
    assert kinds.count("ActorStarted") == len(nodes) + kinds.count("ActorCompleted")
    assert kinds.count("ActorCompleted") == 7
    assert "ActorFailed" not in kinds
    for e in events:
        assert isinstance(e["timestamp"], int)
    sent = [e for e in events if e["_type"] == "MessageSent"]
    assert [
        (e["fromActor"], e["fromPort"], e["toActor"], e["toPort"], e["message"])
        for e in sent
        if e["toActor"] == "d"
    ] == [("c", "out", "d", "in", i) for i in range(3)]
    assert all(e["size"] == 8 for e in sent)
    done = [e for e in events if e["_type"] == "ActorCompleted"]
    assert {e["actorId"] for e in done} == {"c", "d", "s"}
    for e in done:
        assert e["duration"] >= 0
        assert e["component"] in ("count", "double", "sink")
    by_node = {e["actorId"]: e["outputSize"] for e in done}
    assert by_node["c"] == 3 and by_node["s"] == 0
    assert events[-1]["dropped"] == 0
    idle = [e for e in events if e["_type"] == "NetworkIdle"]
    assert idle[-1]["ticks"] == 7
    # after shutdown the stream is closed: iteration ends
    assert list(stream) == []
    assert stream.recv(50) is None


def test_events_recv_waits_for_the_next_event() -> None:
    net, _ = chain()
    stream = net.events()
    net.start()
    first = stream.recv(5000)
    assert first is not None and first["_type"] == "NetworkStarted"
    net.run(timeout=10)
    net.shutdown()
    rest = list(stream)  # ends once the stream is closed and drained
    assert rest[-1]["_type"] == "NetworkShutdown"


def test_events_failed_tick() -> None:
    class Boom(Actor):
        component = "boom"
        inports = ["in"]

        def run(self, ctx: Any) -> None:
            raise KeyError("missing")

    net = build()
    net.register_actor("boom", Boom())
    net.add_node("b", "boom")
    net.add_initial("b", "in", M.flow())
    stream = net.events()
    net.run(timeout=10)
    net.shutdown()
    (ev,) = [e for e in stream.drain() if e["_type"] == "ActorFailed"]
    assert ev["actorId"] == "b" and ev["component"] == "boom"
    assert ev["error"] == "KeyError: 'missing'"
    assert "raise KeyError" in ev["traceback"]


def test_slow_subscriber_loses_events_and_never_stalls() -> None:
    net = build()
    net.add_node("c", "count", {"n": 500})
    net.add_node("d", "double")
    net.add_connection("c", "out", "d", "in")
    got = net.collect("d", "out")
    small = net.events(maxlen=10)
    full = net.events()
    summary = net.run(timeout=10)
    net.shutdown()
    assert summary.ok and len(got) == 500
    assert small.lost > 0
    kept = small.drain()
    assert len(kept) == 10
    assert kept[-1]["_type"] == "NetworkShutdown"  # the newest are kept
    assert full.lost == 0
    assert len(full.drain()) == len(kept) + small.lost


def test_closed_subscription_gets_nothing() -> None:
    net, _ = chain()
    stream = net.events()
    stream.close()
    stream.close()  # idempotent
    net.run(timeout=10)
    assert stream.drain() == []
    net.shutdown()


def test_arecv() -> None:
    net, _ = chain()
    stream = net.events()
    net.start()

    async def first() -> dict[str, Any] | None:
        return await stream.arecv(5000)

    ev = asyncio.run(first())
    assert ev is not None and ev["_type"] == "NetworkStarted"
    net.shutdown()
