"""ctx.wake_after(s): a node gets a tick of its own later, with empty inputs — what timers,
delays, debounce and throttle need (issue #10). Inline, async and worker ticks; run() waits
for pending wakes; shutdown() cancels them; bad values fail only the tick."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from reflow import Actor, Message, Network, RunTimeout, TickStateError


class Debounce(Actor):
    """Trailing-edge debounce: the last packet of a burst, once the burst is quiet."""

    component = "t_debounce"
    inports = ["in"]
    outports = ["out"]

    def __init__(self, quiet: float = 0.05, execution: str | None = None) -> None:
        self.quiet = quiet
        if execution is not None:
            self.execution = execution

    def run(self, ctx: Any) -> None:
        if "in" in ctx.inputs:
            ctx.pool_upsert("s", "last", ctx.inputs["in"])
            ctx.pool_upsert("s", "seq", ctx.pool_get("s", "seq", 0) + 1)
            ctx.wake_after(self.quiet)
            ctx.done()
            return
        # woken: only the wake of the newest packet emits
        ctx.pool_upsert("s", "woken", ctx.pool_get("s", "woken", 0) + 1)
        if ctx.pool_get("s", "woken") == ctx.pool_get("s", "seq"):
            ctx.done({"out": ctx.pool_get("s", "last")})
        else:
            ctx.done()


class AsyncDebounce(Debounce):
    async def run(self, ctx: Any) -> None:  # type: ignore[override]
        Debounce.run(self, ctx)


class Sink(Actor):
    component = "t_sink"
    inports = ["in"]
    outports: list[str] = []

    def __init__(self) -> None:
        self.got: list[Any] = []

    def run(self, ctx: Any) -> None:
        self.got.append(ctx.inputs["in"]["data"])
        ctx.done()


def _net(actor: Actor) -> tuple[Network, Sink]:
    net = Network()
    sink = Sink()
    net.register_actor("t_debounce", actor)
    net.register_actor("t_sink", sink)
    net.add_node("d", "t_debounce")
    net.add_node("s", "t_sink")
    net.add_connection("d", "out", "s", "in")
    return net, sink


@pytest.mark.parametrize(
    "make",
    [lambda: Debounce(), lambda: AsyncDebounce(), lambda: Debounce(execution="worker")],
    ids=["inline", "async", "worker"],
)
def test_run_waits_for_the_wake_and_the_woken_tick_has_empty_inputs(make: Any) -> None:
    net, sink = _net(make())
    for i in range(5):
        net.add_initial("d", "in", Message.integer(i))
    summary = net.run(timeout=30)
    assert summary.ok, summary.failures
    assert sink.got == [4]  # one output, the burst's last packet, after the burst
    assert summary.node_ticks["d"] == 5 + 5  # five packets, five wakes
    net.shutdown()


def test_a_node_can_wake_itself_again_and_again() -> None:
    class Interval(Actor):
        component = "t_interval"
        inports: list[str] = []
        outports = ["tick"]

        def run(self, ctx: Any) -> None:
            n = ctx.pool_get("s", "n", 0)
            ctx.pool_upsert("s", "n", n + 1)
            if n + 1 < 6:
                ctx.wake_after(0.01)
            ctx.done({"tick": Message.integer(n)})

    net = Network()
    sink = Sink()
    net.register_actor("t_interval", Interval())
    net.register_actor("t_sink", sink)
    net.add_node("i", "t_interval")
    net.add_node("s", "t_sink")
    net.add_connection("i", "tick", "s", "in")
    assert net.run(timeout=30).ok
    assert sink.got == [0, 1, 2, 3, 4, 5]
    net.shutdown()


def test_start_mode_wakes_and_shutdown_cancels_pending_wakes() -> None:
    woken = threading.Event()

    class Later(Actor):
        component = "t_later"
        inports = ["in"]
        outports: list[str] = []

        def run(self, ctx: Any) -> None:
            if "in" in ctx.inputs:
                ctx.wake_after(0.02 if ctx.inputs["in"]["data"] == 1 else 3600)
            else:
                woken.set()
            ctx.done()

    net = Network()
    net.register_actor("t_later", Later())
    net.add_node("l", "t_later")
    net.add_initial("l", "in", Message.integer(1))
    net.start()
    assert woken.wait(10), "the wake never came in start() mode"
    woken.clear()
    net.add_initial("l", "in", Message.integer(2))  # a wake an hour away
    time.sleep(0.05)
    t0 = time.monotonic()
    net.shutdown()
    assert time.monotonic() - t0 < 10  # shutdown does not wait for the hour
    assert not woken.is_set()


def test_a_pending_wake_keeps_the_network_busy_until_shutdown() -> None:
    class Far(Actor):
        component = "t_far"
        inports: list[str] = []
        outports: list[str] = []

        def run(self, ctx: Any) -> None:
            if ctx.pool_get("s", "armed") is None:
                ctx.pool_upsert("s", "armed", True)
                ctx.wake_after(3600)
            ctx.done()

    net = Network()
    net.register_actor("t_far", Far())
    net.add_node("f", "t_far")
    with pytest.raises(RunTimeout):
        net.run(timeout=0.2)
    net.shutdown()


@pytest.mark.parametrize("value", [-1, float("nan"), float("inf"), "1", True, None, 86_401])
def test_a_bad_delay_fails_only_that_tick(value: Any) -> None:
    class Bad(Actor):
        component = "t_bad"
        inports = ["in"]
        outports: list[str] = []

        def run(self, ctx: Any) -> None:
            ctx.wake_after(value)
            ctx.done()

    net = Network()
    net.register_actor("t_bad", Bad())
    net.add_node("b", "t_bad")
    net.add_initial("b", "in", Message.integer(1))
    summary = net.run(timeout=30)
    assert [type(f.exception) for f in summary.failures] == [TickStateError]
    text = str(summary.failures[0].exception)
    assert "wake_after" in text and repr(value) in text and "node 'b'" in text
    net.shutdown()
