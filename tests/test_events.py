"""Trace events: kind filters, batched reads, ordering and accounting across batch flushes."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from reflow import Actor, Network, NetworkStateError
from reflow import Message as M


class Count(Actor):
    component = "ev_count"
    inports: list[str] = []
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        for i in range(int(ctx.config.get("n", 3))):
            ctx.send({"out": M.integer(i)})
        ctx.done()


class Inc(Actor):
    component = "ev_inc"
    inports = ["in"]
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        v = ctx.inputs["in"]["data"]
        if v == 7:
            raise ValueError("seven")
        ctx.done({"out": M.integer(v + 1)})


class Sink(Actor):
    component = "ev_sink"
    inports = ["in"]

    def __init__(self) -> None:
        self.seen: list[int] = []

    def run(self, ctx: Any) -> None:
        self.seen.append(ctx.inputs["in"]["data"])
        ctx.done()


def chain(n: int) -> tuple[Network, Sink]:
    net = Network()
    sink = Sink()
    net.register_actor("count", Count())
    net.register_actor("inc", Inc())
    net.register_actor("sink", sink)
    net.add_node("c", "count", {"n": n})
    net.add_node("a", "inc")
    net.add_node("s", "sink")
    net.add_connection("c", "out", "a", "in")
    net.add_connection("a", "out", "s", "in")
    return net, sink


N = 2000  # several scheduler batches (256 ticks each)


def test_unfiltered_stream_sees_every_event_in_causal_order() -> None:
    net, sink = chain(N)
    stream = net.events(maxlen=1 << 16)
    net.run(timeout=30)
    net.shutdown()
    events = stream.drain()
    assert stream.lost == 0
    kinds = [e["_type"] for e in events]
    assert kinds.count("ActorFailed") == 1
    # each node's actor starts once with the network, as in offbit_reflow: one ActorStarted
    # per node right after NetworkStarted, before any tick
    nodes = {"a", "b", "c", "s"} & {e.get("actorId") for e in events}
    assert kinds[0] == "NetworkStarted"
    assert kinds[1 : 1 + len(nodes)] == ["ActorStarted"] * len(nodes)
    assert {e["actorId"] for e in events[1 : 1 + len(nodes)]} == nodes
    # then, node a: every tick's Started is followed by its Completed/Failed before the next
    open_tick = False
    for e in events[1 + len(nodes) :]:
        if e.get("actorId") == "a":
            if e["_type"] == "ActorStarted":
                assert not open_tick
                open_tick = True
            else:
                assert open_tick
                open_tick = False
    # packets into s are announced in the order s received them
    into_s = [e["message"] for e in events if e["_type"] == "MessageSent" and e["toActor"] == "s"]
    assert into_s == sink.seen == [i + 1 for i in range(N) if i != 7]
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps)


@pytest.mark.parametrize(
    "kinds, expect",
    [
        (["ActorFailed"], {"ActorFailed": 1}),
        ("ActorFailed", {"ActorFailed": 1}),
        (["ActorCompleted"], {"ActorCompleted": 1 + (N - 1) + (N - 1)}),
        (["MessageSent"], {"MessageSent": N + (N - 1)}),
        (["NetworkStarted", "NetworkShutdown"], {"NetworkStarted": 1, "NetworkShutdown": 1}),
    ],
)
def test_kind_filter_delivers_only_those_kinds(kinds: Any, expect: dict[str, int]) -> None:
    net, _ = chain(N)
    stream = net.events(kinds=kinds)
    everything = net.events(maxlen=1 << 16)
    net.run(timeout=30)
    net.shutdown()
    got: dict[str, int] = {}
    for e in stream.drain():
        got[e["_type"]] = got.get(e["_type"], 0) + 1
    assert got == expect
    assert stream.lost == 0  # filtered-out events are not "lost"
    assert everything.lost == 0
    assert len(everything.drain()) > sum(expect.values())


def test_filtered_subscribers_let_the_scheduler_skip_tick_events() -> None:
    net, sink = chain(N)
    failures = net.events(kinds=["ActorFailed"])
    hub = net._hub
    assert hub.active and not hub.wants_ticks and not hub.wants_sent
    net.run(timeout=30)
    net.shutdown()
    (ev,) = failures.drain()
    assert ev["actorId"] == "a" and ev["error"] == "ValueError: seven"
    assert len(sink.seen) == N - 1


@pytest.mark.parametrize(
    "kinds, fragment",
    [
        (["ActorDone"], "unknown event type 'ActorDone'"),
        ([], "expects event type names"),
        ([1, 2], "expects event type names"),
        (42, "expects event type names"),
    ],
)
def test_bad_kind_filters_are_refused(kinds: Any, fragment: str) -> None:
    net, _ = chain(3)
    with pytest.raises(NetworkStateError, match=fragment) as info:
        net.events(kinds=kinds)
    assert "ActorCompleted" in str(info.value)  # names what is allowed
    net.shutdown()


def test_recv_batch_reads_everything_a_live_run_publishes() -> None:
    net, _ = chain(N)
    stream = net.events(maxlen=1 << 16)
    batches: list[int] = []
    got: list[dict[str, Any]] = []
    done = threading.Event()

    def reader() -> None:
        while True:
            evs = stream.recv_batch(500, timeout_ms=50)
            if evs:
                batches.append(len(evs))
                got.extend(evs)
            elif done.is_set() or stream.closed:
                return

    t = threading.Thread(target=reader)
    t.start()
    net.run(timeout=30)
    net.shutdown()
    done.set()
    t.join(10)
    assert not t.is_alive()
    got.extend(stream.drain())
    assert got[0]["_type"] == "NetworkStarted" and got[-1]["_type"] == "NetworkShutdown"
    assert stream.lost == 0
    assert max(batches) <= 500
    assert sum(batches) > 0  # the reader saw events while the graph ran
    assert stream.recv_batch(10) == []


def test_recv_batch_times_out_empty() -> None:
    net, _ = chain(3)
    stream = net.events()
    assert stream.recv_batch(10, timeout_ms=20) == []
    net.shutdown()
    assert [e["_type"] for e in stream.recv_batch(10)] == ["NetworkShutdown"]
    t0 = time.monotonic()
    assert stream.recv_batch(10, timeout_ms=5000) == []  # closed and drained: no waiting
    assert time.monotonic() - t0 < 2


def test_a_subscriber_added_mid_run_starts_counting_from_then() -> None:
    net, _ = chain(300)
    first = net.events()
    net.run(timeout=30)
    late = net.events(maxlen=4)
    net.shutdown()
    assert first.lost == 0
    kept = late.drain()
    assert [e["_type"] for e in kept] == ["NetworkShutdown"]
    assert late.lost == 0
