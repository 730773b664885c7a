"""reflow._core._sched_workers: worker ticks run on the thread pool at the same time across
nodes, whole batches go to ``run_batch``, and a worker's ``send`` posts ahead without letting
an edge grow past about twice its capacity."""

from __future__ import annotations

import threading
from typing import Any

from _sched_support import run_guarded

from reflow import Actor, Message, Network


def test_independent_worker_nodes_run_at_the_same_time() -> None:
    barrier = threading.Barrier(2, timeout=10)

    class Meet(Actor):
        component = "meet"
        inports = ["in"]
        execution = "worker"

        def run(self, ctx: Any) -> None:
            barrier.wait()  # breaks (and fails the tick) unless both nodes run at once
            ctx.done()

    net = Network(workers=2)
    net.register_actor("meet", Meet())
    net.add_node("x", "meet")
    net.add_node("y", "meet")
    net.add_initial("x", "in", Message.flow())
    net.add_initial("y", "in", Message.flow())
    summary = run_guarded(net, 20)
    assert summary.ok, summary.failures


def test_worker_run_batch_gets_whole_batches_and_reports_each_tick() -> None:
    """An actor with run_batch receives several ticks per call; a tick it reports as failed
    fails alone, the others deliver, in order."""
    sizes: list[int] = []

    class Batched(Actor):
        component = "batched"
        inports = ["in"]
        outports = ["out"]
        execution = "worker"

        def run(self, ctx: Any) -> None:
            ctx.done({"out": Message.integer(ctx.inputs["in"]["data"] * 10)})

        def run_batch(self, ctxs: list[Any]) -> list[BaseException | None]:
            sizes.append(len(ctxs))
            errors: list[BaseException | None] = []
            for ctx in ctxs:
                n = ctx.inputs["in"]["data"]
                if n == 7:
                    errors.append(ValueError("seven is refused"))
                    continue
                ctx.done({"out": Message.integer(n * 10)})
                errors.append(None)
            return errors

    net = Network(capacity=64)
    net.register_actor("b", Batched())
    net.add_node("b", "b")
    out = net.collect("b", "out")
    for i in range(50):
        net.add_initial("b", "in", Message.integer(i))
    summary = net.run(timeout=30)
    net.shutdown()
    assert out.values() == [i * 10 for i in range(50) if i != 7]
    assert summary.failure_count == 1 and "seven is refused" in summary.failures[0].error
    assert max(sizes) > 1 and sum(sizes) >= 49


def test_worker_send_posts_ahead_but_stays_within_twice_the_capacity() -> None:
    """A worker tick's send() does not wait per packet while there is room, yet the edge
    never holds more than about twice its capacity."""
    seen: list[int] = []

    class Numbers(Actor):
        component = "numbers"
        inports: list[str] = []
        outports = ["out"]
        execution = "worker"

        def run(self, ctx: Any) -> None:
            for i in range(5000):
                ctx.send({"out": Message.integer(i)})
            ctx.done()

    net = Network(capacity=8)

    class Probe(Actor):
        component = "probe"
        inports = ["in"]
        outports: list[str] = []

        def run(self, ctx: Any) -> None:
            seen.append(len(net._sched.nodes["probe"].in_edges[0].queue))
            ctx.done()

    net.register_actor("numbers", Numbers())
    net.register_actor("probe", Probe())
    net.add_node("src", "numbers")
    net.add_node("probe", "probe")
    net.add_connection("src", "out", "probe", "in")
    summary = net.run(timeout=60)
    net.shutdown()
    assert summary.ok and len(seen) == 5000
    assert max(seen) <= 2 * 8
