"""reflow._core._scheduler on hand-built graphs: a join whose producer is parked, ten thousand
packets into one slow node, a million packets through a chain and in a stream with bounded
memory, per-connection and network capacity bounding the queues, a full edge parking its
producer, round-robin intake, when an await-all node fires, sources ticking once, one tick at a
time per node, and failures that stop nothing else (kept bounded, all counted).

The generated graph walks (exactly-once, in-order delivery, cycles) are ``test_scheduler.py``'s.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections import defaultdict
from typing import Any

import psutil
import pytest
from _sched_support import Counting, run_guarded

from reflow import Actor, Message, Network

#: how a node's tick runs (as in test_scheduler.py)
MODES = ("inline", "async", "worker")


class Join(Actor):
    """await_all join: forwards the pair it fires with."""

    component = "join"
    inports = ["a", "b"]
    outports = ["out"]
    await_all_inports = True

    def run(self, ctx: Any) -> None:
        assert set(ctx.inputs) == {"a", "b"}
        ctx.done({"out": Message.array([ctx.inputs["a"]["data"], ctx.inputs["b"]["data"]])})


class Batch(Actor):
    """Holds packets back until it has ``size`` of them, then emits them all."""

    component = "batch"
    inports = ["in"]
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        ctx.pool_upsert("held", str(ctx.pool_count("held")), ctx.inputs["in"]["data"])
        if ctx.pool_count("held") == ctx.config.get("size", 10):
            held = ctx.pool("held")
            for i in range(len(held)):
                ctx.emit("out", Message.integer(held[str(i)]))
            ctx.pool_clear("held")
        ctx.done()


class Split(Actor):
    """Sends each input on both out-ports."""

    component = "split"
    inports = ["in"]
    outports = ["a", "b"]

    def run(self, ctx: Any) -> None:
        msg = ctx.inputs["in"]
        ctx.done({"a": msg, "b": msg})


class AsyncSplit(Split):
    async def run(self, ctx: Any) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        Split.run(self, ctx)


class WorkerSplit(Split):
    execution = "worker"


@pytest.mark.parametrize("mode", MODES)
def test_join_whose_producer_is_parked(mode: str) -> None:
    """split -> join.a directly, split -> batch(10) -> join.b. The join cannot fire until the
    batch lets go, the batch needs ten packets, and split's edge into join.a is full after one:
    only letting that edge grow gets out of it."""
    split = {"inline": Split, "async": AsyncSplit, "worker": WorkerSplit}[mode]
    net = Network(capacity=1)
    for tid, actor in [("split", split()), ("batch", Batch()), ("join", Join())]:
        net.register_actor(tid, actor)
    net.add_node("p", "split")
    net.add_node("m", "batch", {"size": 10})
    net.add_node("j", "join")
    net.add_connection("p", "a", "j", "a")
    net.add_connection("p", "b", "m", "in")
    net.add_connection("m", "out", "j", "b")
    got = net.collect("j", "out")
    for i in range(200):
        net.add_initial("p", "in", Message.integer(i))
    summary = run_guarded(net, 10)
    assert summary.ok
    assert got.values() == [[i, i] for i in range(200)]
    assert summary.overflowed > 0  # the graph left no choice


@pytest.mark.parametrize("mode", [*MODES, "async-asend"])
def test_join_fed_by_one_tick_that_sends_everything_on_one_port_first(mode: str) -> None:
    class Both(Actor):
        component = "both"
        inports: list[str] = []
        outports = ["a", "b"]

        def tick(self, ctx: Any) -> None:
            for port in ("a", "b"):
                for i in range(100):
                    ctx.send({port: Message.integer(i)})
            ctx.done()

        def run(self, ctx: Any) -> None:
            self.tick(ctx)

    class AsyncBoth(Both):
        async def run(self, ctx: Any) -> None:  # type: ignore[override]
            self.tick(ctx)

    class AsyncSendBoth(Both):
        async def run(self, ctx: Any) -> None:  # type: ignore[override]
            for port in ("a", "b"):
                for i in range(100):
                    await ctx.asend({port: Message.integer(i)})
            ctx.done()

    class WorkerBoth(Both):
        execution = "worker"

    src = {"inline": Both, "async": AsyncBoth, "worker": WorkerBoth, "async-asend": AsyncSendBoth}[
        mode
    ]
    net = Network(capacity=1)
    net.register_actor("both", src())
    net.register_actor("join", Join())
    net.add_node("s", "both")
    net.add_node("j", "join")
    net.add_connection("s", "a", "j", "a")
    net.add_connection("s", "b", "j", "b")
    got = net.collect("j", "out")
    summary = run_guarded(net, 10)
    assert summary.ok
    assert got.values() == [[i, i] for i in range(100)]


class AsyncCounting(Counting):
    async def run(self, ctx: Any) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        self.tick(ctx)


class WorkerCounting(Counting):
    execution = "worker"


class Stream(Actor):
    """Source: ctx.send()s ``count`` integers in one tick."""

    component = "stream"
    inports: list[str] = []
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        send, integer = ctx.send, Message.integer
        for i in range(ctx.config["count"]):
            send({"out": integer(i)})
        ctx.done()


@pytest.mark.parametrize("mode", MODES)
def test_ten_thousand_packets_into_one_slow_node(mode: str) -> None:
    """The offbit SDK hangs once 52 packets wait for one Python node."""
    slow = {"inline": Counting, "async": AsyncCounting, "worker": WorkerCounting}[mode]()
    sink = Counting()
    net = Network()
    net.register_actor("stream", Stream())
    net.register_actor("slow", slow)
    net.register_actor("sink", sink)
    net.add_node("s", "stream", {"count": 10_000})
    net.add_node("n", "slow", {"work": 200})
    net.add_node("k", "sink")
    net.add_connection("s", "out", "n", "in")
    net.add_connection("n", "out", "k", "in")
    summary = run_guarded(net, 30)
    assert summary.ok
    assert slow.n == sink.n == 10_000
    assert slow.in_order and sink.in_order


def test_million_packets_sent_in_one_tick_through_a_chain() -> None:
    counters = [Counting() for _ in range(3)]
    net = Network(capacity=64)
    net.register_actor("stream", Stream())
    net.add_node("s", "stream", {"count": 10**6})
    prev = "s"
    for i, c in enumerate(counters):
        net.register_actor(f"c{i}", c)
        net.add_node(f"c{i}", f"c{i}")
        net.add_connection(prev, "out", f"c{i}", "in")
        prev = f"c{i}"
    summary = run_guarded(net, 60)
    assert summary.ok
    assert summary.overflowed == 0
    assert [c.n for c in counters] == [10**6] * 3
    assert all(c.in_order for c in counters)
    assert summary.node_ticks == {"s": 1, "c0": 10**6, "c1": 10**6, "c2": 10**6}


def test_million_packet_stream_memory_bounded() -> None:
    """10**6 packets through capacity-64 edges: RSS does not grow by more than ~40 MB and no
    queue ever holds more than its capacity."""
    proc = psutil.Process()
    holder: list[Network] = []
    peak = {"rss": 0, "queue": 0}

    class Probe(Counting):
        def run(self, ctx: Any) -> None:
            if self.n % 20_000 == 0:
                peak["rss"] = max(peak["rss"], proc.memory_info().rss)
            if self.n % 97 == 0:
                for node in holder[0]._sched.nodes.values():
                    for e in node.in_edges:
                        peak["queue"] = max(peak["queue"], len(e.queue))
            self.tick(ctx)

    probe = Probe()
    net = Network(capacity=64)
    holder.append(net)
    net.register_actor("stream", Stream())
    net.register_actor("pass", Counting())
    net.register_actor("probe", probe)
    net.add_node("s", "stream", {"count": 10**6})
    net.add_node("a", "pass")
    net.add_node("b", "pass")
    net.add_node("k", "probe")
    net.add_connection("s", "out", "a", "in")
    net.add_connection("a", "out", "b", "in")
    net.add_connection("b", "out", "k", "in")
    gc.collect()
    base = proc.memory_info().rss
    summary = run_guarded(net, 60)
    assert summary.ok and probe.n == 10**6 and probe.in_order
    peak["rss"] = max(peak["rss"], proc.memory_info().rss)
    assert peak["rss"] - base < 40 * 2**20, f"RSS grew by {(peak['rss'] - base) / 2**20:.1f} MB"
    assert 0 < peak["queue"] <= 64


# -- scheduling rules ------------------------------------------------------------------------


def test_per_connection_and_network_capacity_bound_queues() -> None:
    seen: dict[str, int] = defaultdict(int)
    holder: list[Network] = []

    class Watch(Actor):
        component = "watch"
        inports = ["in"]

        def run(self, ctx: Any) -> None:
            for node in holder[0]._sched.nodes.values():
                for e in node.in_edges:
                    if e.src is not None:
                        key = f"{e.src.id}->{node.id}"
                        seen[key] = max(seen[key], len(e.queue))
            ctx.done()

    net = Network(capacity=5)
    holder.append(net)
    net.register_actor("stream", Stream())
    net.register_actor("watch", Watch())
    net.add_node("s", "stream", {"count": 1000})
    net.add_node("x", "watch")
    net.add_node("y", "watch")
    net.add_connection("s", "out", "x", "in", capacity=3)
    net.add_connection("s", "out", "y", "in")
    summary = run_guarded(net, 10)
    assert summary.ok and summary.overflowed == 0
    assert summary.node_ticks == {"s": 1, "x": 1000, "y": 1000}
    assert 0 < seen["s->x"] <= 3
    assert 3 < seen["s->y"] <= 5


@pytest.mark.parametrize("mode", MODES)
def test_full_edge_parks_its_producer(mode: str) -> None:
    """A producer is not ticked while its out-edge is full: each time it runs there is room."""
    queue_at_tick: list[int] = []
    holder: list[Network] = []

    class Producer(Actor):
        component = "producer"
        inports = ["in"]
        outports = ["out"]

        def run(self, ctx: Any) -> None:
            queue_at_tick.append(len(holder[0]._sched.nodes["c"].in_edges[0].queue))
            ctx.done({"out": ctx.inputs["in"]})

    consumer = {"inline": Counting, "async": AsyncCounting, "worker": WorkerCounting}[mode]()
    net = Network(capacity=2)
    holder.append(net)
    net.register_actor("producer", Producer())
    net.register_actor("consumer", consumer)
    net.add_node("p", "producer")
    net.add_node("c", "consumer", {"work": 100})
    net.add_connection("p", "out", "c", "in")
    for i in range(300):
        net.add_initial("p", "in", Message.integer(i))
    summary = run_guarded(net, 20)
    assert summary.ok and summary.overflowed == 0
    assert consumer.n == 300 and consumer.in_order
    assert max(queue_at_tick) <= 1


def test_non_await_node_takes_one_packet_per_tick_round_robin() -> None:
    ticks: list[dict[str, Any]] = []

    class Any3(Actor):
        component = "any3"
        inports = ["a", "b", "c"]

        def run(self, ctx: Any) -> None:
            ticks.append({p: m["data"] for p, m in ctx.inputs.items()})
            ctx.done()

    net = Network()
    net.register_actor("any3", Any3())
    net.add_node("n", "any3")
    for port in "abc":
        for i in range(3 if port != "b" else 1):
            net.add_initial("n", port, Message.string(f"{port}{i}"))
    assert net.run(timeout=10).ok
    net.shutdown()
    assert ticks == [
        {"a": "a0"},
        {"b": "b0"},
        {"c": "c0"},
        {"a": "a1"},
        {"c": "c1"},
        {"a": "a2"},
        {"c": "c2"},
    ]


def test_await_all_fires_when_every_connected_port_has_a_packet() -> None:
    ticks: list[dict[str, Any]] = []

    class All3(Actor):
        component = "all3"
        inports = ["a", "b", "c"]  # c stays unconnected: not awaited
        await_all_inports = True

        def run(self, ctx: Any) -> None:
            ticks.append({p: m["data"] for p, m in ctx.inputs.items()})
            ctx.done()

    net = Network()
    net.register_actor("all3", All3())
    net.register_actor("pass", Counting())
    net.add_node("j", "all3")
    net.add_node("p", "pass")
    net.add_connection("p", "out", "j", "b")
    for i in (1, 2, 3):
        net.add_initial("j", "a", Message.integer(i))
    summary = net.run(timeout=10)
    assert ticks == []  # b is connected and has nothing yet
    assert summary.pending == {"j": 3}
    for i in (0, 1):
        net.add_initial("p", "in", Message.integer(i))
    summary = run_guarded(net, 10)
    assert ticks == [{"a": 1, "b": 0}, {"a": 2, "b": 1}]
    assert summary.pending == {"j": 1}


def test_await_all_counts_an_initial_packet_port_as_connected_once_it_has_one() -> None:
    """As implemented: an in-port fed only by initial packets is "connected" from its first
    add_initial on, so a join with initial packets on one port only fires with that port."""
    ticks: list[dict[str, Any]] = []

    class All2(Actor):
        component = "all2"
        inports = ["a", "b"]
        await_all_inports = True

        def run(self, ctx: Any) -> None:
            ticks.append({p: m["data"] for p, m in ctx.inputs.items()})
            ctx.done()

    net = Network()
    net.register_actor("all2", All2())
    net.add_node("j", "all2")
    net.add_initial("j", "a", Message.integer(1))
    net.add_initial("j", "b", Message.integer(2))
    net.add_initial("j", "a", Message.integer(3))
    run_guarded(net, 10)
    assert ticks == [{"a": 1, "b": 2}]


def test_sources_run_once_with_empty_inputs() -> None:
    seen: list[dict[str, Any]] = []

    class Src(Actor):
        component = "src"
        outports = ["out"]

        def run(self, ctx: Any) -> None:
            seen.append(dict(ctx.inputs))
            ctx.done({"out": Message.flow()})

    net = Network()
    net.register_actor("src", Src())
    net.add_node("s", "src")
    assert net.run(timeout=10).node_ticks == {"s": 1}
    assert net.run(timeout=10).node_ticks == {"s": 0}
    net.shutdown()
    assert seen == [{}]


@pytest.mark.parametrize("mode", ["async", "worker"])
def test_a_node_runs_one_tick_at_a_time(mode: str) -> None:
    state = {"now": 0, "max": 0}
    lock = threading.Lock()

    def enter() -> None:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])

    def leave() -> None:
        with lock:
            state["now"] -= 1

    class AsyncOne(Actor):
        component = "one"
        inports = ["in"]

        async def run(self, ctx: Any) -> None:
            enter()
            await asyncio.sleep(0.001)
            leave()
            ctx.done()

    class WorkerOne(Actor):
        component = "one"
        inports = ["in"]
        execution = "worker"

        def run(self, ctx: Any) -> None:
            enter()
            time.sleep(0.001)
            leave()
            ctx.done()

    net = Network(workers=4)
    net.register_actor("one", AsyncOne() if mode == "async" else WorkerOne())
    net.add_node("n", "one")
    for i in range(30):
        net.add_initial("n", "in", Message.integer(i))
    summary = run_guarded(net, 10)
    assert summary.node_ticks == {"n": 30}
    assert state["max"] == 1


# -- failures --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_failing_node_does_not_stop_the_rest(mode: str) -> None:
    """s -> bad -> k1 and s -> good -> k2: bad raises on every third packet."""

    def tick(ctx: Any) -> None:
        n = ctx.inputs["in"]["data"]
        if n % 3 == 0:
            raise ZeroDivisionError(f"bad packet {n}")
        ctx.done({"out": ctx.inputs["in"]})

    class Bad(Actor):
        component = "bad"
        inports = ["in"]
        outports = ["out"]

        def run(self, ctx: Any) -> None:
            tick(ctx)

    class AsyncBad(Bad):
        async def run(self, ctx: Any) -> None:  # type: ignore[override]
            tick(ctx)

    class WorkerBad(Bad):
        execution = "worker"

    bad = {"inline": Bad, "async": AsyncBad, "worker": WorkerBad}[mode]
    good = Counting()
    net = Network(capacity=4)
    net.register_actor("stream", Stream())
    net.register_actor("bad", bad())
    net.register_actor("good", good)
    net.add_node("s", "stream", {"count": 30})
    net.add_node("bad", "bad")
    net.add_node("good", "good")
    net.add_connection("s", "out", "bad", "in")
    net.add_connection("s", "out", "good", "in")
    from_bad = net.collect("bad", "out")
    stream = net.events()
    summary = run_guarded(net, 10)
    assert good.n == 30 and good.in_order
    assert from_bad.values() == [i for i in range(30) if i % 3]
    assert summary.failure_count == 10
    assert [f.error for f in summary.failures] == [
        f"ZeroDivisionError: bad packet {i}" for i in range(0, 30, 3)
    ]
    assert all(f.node == "bad" and f.component == "bad" for f in summary.failures)
    assert all("in tick" in f.traceback for f in summary.failures)
    failed = [e for e in stream.drain() if e["_type"] == "ActorFailed"]
    assert len(failed) == 10
    assert failed[0]["actorId"] == "bad"
    assert "ZeroDivisionError: bad packet 0" in failed[0]["traceback"]


def test_failures_kept_are_bounded_but_all_counted() -> None:
    class Fail(Actor):
        component = "fail"
        inports = ["in"]

        def run(self, ctx: Any) -> None:
            ctx.fail("no")

    net = Network()
    net.register_actor("stream", Stream())
    net.register_actor("fail", Fail())
    net.add_node("s", "stream", {"count": 1500})
    net.add_node("f", "fail")
    net.add_connection("s", "out", "f", "in")
    summary = run_guarded(net, 10)
    assert summary.failure_count == 1500
    assert len(summary.failures) == 1000
