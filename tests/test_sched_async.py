"""reflow._core._sched_async: async ticks run as tasks on the scheduler's loop without holding
up the sync nodes, overlap across nodes, and their sends (``send``/``asend``) flow while they
await, within the edges' capacity."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _sched_support import Counting, run_guarded

from reflow import Actor, Message, Network


def test_slow_async_actor_does_not_hold_up_sync_nodes() -> None:
    """An async tick that waits lets the sync branch run meanwhile: the slow actor only
    finishes once it has seen the sync sink take every packet, so if the scheduler waited
    for it the run would time out instead."""
    n_fast = 20_000
    log: list[str] = []
    sink = Counting()

    class SlowAsync(Actor):
        component = "slow_async"
        inports = ["in"]
        outports = ["out"]

        async def run(self, ctx: Any) -> None:
            log.append("slow-start")
            for _ in range(10_000):  # a bound, not a timing: ~10 s of polling at most
                if sink.n == n_fast:
                    break
                await asyncio.sleep(0.001)
            log.append(f"slow-end fast={sink.n}")
            ctx.done({"out": ctx.inputs["in"]})

    class LoggingSink(Counting):
        def run(self, ctx: Any) -> None:
            self.tick(ctx)
            if self.n == n_fast:
                log.append("fast-end")

    sink = LoggingSink()
    net = Network(capacity=8)
    net.register_actor("slow", SlowAsync())
    net.register_actor("pass", Counting())
    net.register_actor("sink", sink)
    net.add_node("w", "slow")
    net.add_node("a", "pass")
    net.add_node("b", "pass")
    net.add_node("k", "sink")
    net.add_connection("a", "out", "b", "in")
    net.add_connection("b", "out", "k", "in")
    done = net.collect("w", "out")
    stream = net.events(maxlen=10**6)
    net.add_initial("w", "in", Message.integer(-1))
    for i in range(n_fast):
        net.add_initial("a", "in", Message.integer(i))
    summary = run_guarded(net, 30)
    assert summary.ok
    assert done.values() == [-1]
    assert log == ["slow-start", "fast-end", f"slow-end fast={n_fast}"]
    # the same story told by the events: the sink's last tick completed before the slow one
    completed = [e["actorId"] for e in stream.drain() if e["_type"] == "ActorCompleted"]
    assert completed.count("k") == n_fast
    assert completed.index("w") > len(completed) - 1 - completed[::-1].index("k")


def test_async_ticks_of_different_nodes_overlap() -> None:
    started = {"n": 0}

    class Wait(Actor):
        component = "wait"
        inports = ["in"]

        async def run(self, ctx: Any) -> None:
            started["n"] += 1
            for _ in range(5000):  # until the other node has started too
                if started["n"] == 2:
                    break
                await asyncio.sleep(0.001)
            ctx.done() if started["n"] == 2 else ctx.fail("the other node never started")

    net = Network()
    net.register_actor("wait", Wait())
    net.add_node("x", "wait")
    net.add_node("y", "wait")
    net.add_initial("x", "in", Message.flow())
    net.add_initial("y", "in", Message.flow())
    summary = run_guarded(net, 20)
    assert summary.ok, summary.failures


@pytest.mark.parametrize("capacity", [1, 4])
@pytest.mark.parametrize("how", ["send", "asend"])
def test_packets_sent_by_an_async_tick_flow_while_it_awaits(how: str, capacity: int) -> None:
    """An async tick that sends and then waits: the packet is processed downstream meanwhile
    (the tick waits for the sink to have it, so a stall would end as a failed tick)."""
    sink = Counting()

    class Talker(Actor):
        component = "talker"
        inports = ["in"]
        outports = ["out"]

        async def run(self, ctx: Any) -> None:
            await asyncio.sleep(0.01)  # let the driver go idle first
            msg = {"out": Message.integer(0)}
            if how == "send":
                ctx.send(msg)
            else:
                await ctx.asend(msg)
            for _ in range(2000):  # a bound, not a timing
                if sink.n:
                    break
                await asyncio.sleep(0.001)
            ctx.done() if sink.n else ctx.fail("the sent packet was not processed meanwhile")

    net = Network(capacity=capacity)
    net.register_actor("talker", Talker())
    net.register_actor("sink", sink)
    net.add_node("t", "talker")
    net.add_node("k", "sink")
    net.add_connection("t", "out", "k", "in")
    net.add_initial("t", "in", Message.flow())
    summary = run_guarded(net, 20)
    assert summary.ok, summary.failures
    assert sink.n == 1


def test_sync_source_streaming_into_an_async_actor_stays_bounded() -> None:
    """A sync source feeding async consumers runs its tick on a worker thread, so its send()
    waits for room instead of growing the edge."""

    class Numbers(Actor):
        component = "numbers"
        inports: list[str] = []
        outports = ["out"]

        def run(self, ctx: Any) -> None:
            for i in range(3000):
                ctx.send({"out": Message.integer(i)})
            ctx.done()

    class SlowInc(Actor):
        component = "slow_inc"
        inports = ["in"]
        outports = ["out"]

        async def run(self, ctx: Any) -> None:
            await asyncio.sleep(0)
            ctx.done({"out": Message.integer(ctx.inputs["in"]["data"] + 1)})

    net = Network(capacity=4)
    net.register_actor("numbers", Numbers())
    net.register_actor("inc", SlowInc())
    net.add_node("src", "numbers")
    net.add_node("inc", "inc")
    net.add_connection("src", "out", "inc", "in")
    out = net.collect("inc", "out")
    summary = net.run(timeout=60)
    net.shutdown()
    assert summary.ok
    assert summary.overflowed == 0
    assert out.values() == list(range(1, 3001))
