"""The scheduler's wake-ups (issue #9, scheduler speed): a worker's posts signal only whoever
waits, the sleeping driver is woken once per sleep, async output is taken in batches but waits
at most ``ASYNC_WAIT_S`` — and none of it loses a packet, stalls a graph or holds output back.
Also the batched event reads those changes came with: bad arguments, and two readers of one
stream racing."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from reflow import Actor, Message, Network, NetworkStateError


class Source(Actor):
    component = "s2_source"
    inports: list[str] = []
    outports = ["out"]

    def __init__(self, count: int) -> None:
        self.count = count

    def run(self, ctx: Any) -> None:
        for i in range(self.count):
            ctx.send({"out": Message.integer(i)})
        ctx.done()


class Collect(Actor):
    component = "s2_collect"
    inports = ["in"]
    outports: list[str] = []

    def __init__(self) -> None:
        self.got: list[int] = []
        self.at: list[float] = []

    def run(self, ctx: Any) -> None:
        self.got.append(ctx.inputs["in"]["data"])
        self.at.append(time.monotonic())
        ctx.done()


class AsyncInc(Actor):
    component = "s2_async_inc"
    inports = ["in"]
    outports = ["out"]

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.done_at: list[float] = []

    async def run(self, ctx: Any) -> None:
        await asyncio.sleep(self.delay)
        self.done_at.append(time.monotonic())
        ctx.done({"out": Message.integer(ctx.inputs["in"]["data"] + 1)})


class WorkerInc(Actor):
    component = "s2_worker_inc"
    inports = ["in"]
    outports = ["out"]
    execution = "worker"

    def run(self, ctx: Any) -> None:
        ctx.done({"out": Message.integer(ctx.inputs["in"]["data"] + 1)})


def chain(net: Network, *templates: tuple[str, Actor]) -> None:
    for i, (tid, actor) in enumerate(templates):
        net.register_actor(tid, actor)
        net.add_node(f"n{i}", tid)
        if i:
            net.add_connection(f"n{i - 1}", "out", f"n{i}", "in")


# A sync source upstream of an async node runs on a worker thread: its sends are posts that
# wake the sleeping driver (once per sleep). Every packet arrives, in order, at any capacity.
@pytest.mark.parametrize(
    ("count", "capacity", "delay"),
    [(1, 1, 0.0), (2_000, 1, 0.0), (5_000, 4, 0.0), (20_000, 64, 0.0), (200, 8, 0.001)],
)
def test_worker_fed_async_chain_delivers_everything_in_order(
    count: int, capacity: int, delay: float
) -> None:
    sink = Collect()
    net = Network(capacity=capacity)
    chain(net, ("src", Source(count)), ("ainc", AsyncInc(delay)), ("sink", sink))
    summary = net.run(timeout=60)
    net.shutdown()
    assert summary.ok
    assert sink.got == list(range(1, count + 1))
    assert summary.overflowed == 0


# An inline tick whose send fills the edge to a worker node waits for the worker's completion
# (``_relieve``): the post must signal it. Were it not, every packet would cost the 50 ms
# fallback wait (300 packets: 15 s); signalled, the run takes a fraction of a second.
@pytest.mark.parametrize(("count", "capacity", "bound_s"), [(300, 1, 5.0), (3_000, 2, 5.0)])
def test_inline_send_into_a_worker_is_signalled_not_polled(
    count: int, capacity: int, bound_s: float
) -> None:
    sink = Collect()
    net = Network(capacity=capacity)
    chain(net, ("src", Source(count)), ("winc", WorkerInc()), ("sink", sink))
    t0 = time.monotonic()
    summary = net.run(timeout=60)
    elapsed = time.monotonic() - t0
    net.shutdown()
    assert summary.ok and sink.got == list(range(1, count + 1))
    assert elapsed < bound_s, f"{count} packets took {elapsed:.1f} s: the relieve wait polled"


# The output of a running async batch is taken in batches, yet reaches its sync consumer long
# before the batch ends: the batch below lasts about a second, the first packet must arrive
# within a small part of it.
@pytest.mark.parametrize(("delay", "count", "max_lag_s"), [(0.02, 50, 0.4), (0.05, 20, 0.4)])
def test_async_output_reaches_sync_consumer_while_the_batch_runs(
    delay: float, count: int, max_lag_s: float
) -> None:
    ainc, sink = AsyncInc(delay), Collect()
    net = Network(capacity=256)
    net.register_actor("ainc", ainc)
    net.register_actor("sink", sink)
    net.add_node("a", "ainc")
    net.add_node("k", "sink")
    net.add_connection("a", "out", "k", "in")
    for i in range(count):
        net.add_initial("a", "in", Message.integer(i))
    summary = net.run(timeout=60)
    net.shutdown()
    assert summary.ok and sink.got == list(range(1, count + 1))
    lags = [got - made for made, got in zip(ainc.done_at, sink.at, strict=True)]
    assert max(lags[: count // 2]) < max_lag_s, f"lags {lags[:5]}...: output waited for the batch"


# -- batched event reads -----------------------------------------------------------------------


def _stream_with(n: int) -> Any:
    net = Network()
    stream = net.events(maxlen=1 << 16)
    chain(net, ("src", Source(n)), ("sink", Collect()))
    net.run(timeout=30)
    net.shutdown()
    return stream


@pytest.mark.parametrize("method", ["recv_records", "recv_batch"])
@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((-1,), "max_events=-1"),
        ((2.5,), "max_events=2.5"),
        (("10",), "max_events='10'"),
        ((True,), "max_events=True"),
        ((None,), "max_events=None"),
        ((10, -5), "timeout_ms=-5"),
        ((10, float("nan")), "timeout_ms=nan"),
        ((10, float("inf")), "timeout_ms=inf"),
        ((10, "20"), "timeout_ms='20'"),
    ],
)
def test_batch_reads_refuse_bad_arguments(
    method: str, args: tuple[Any, ...], fragment: str
) -> None:
    stream = _stream_with(3)
    before = len(stream._buf)
    t0 = time.monotonic()
    with pytest.raises(NetworkStateError, match="expected") as info:
        getattr(stream, method)(*args)
    assert fragment in str(info.value)
    assert time.monotonic() - t0 < 1  # refused before any wait
    assert len(stream._buf) == before  # nothing taken


@pytest.mark.parametrize("method", ["recv_records", "recv_batch"])
@pytest.mark.parametrize(("max_events", "expect"), [(0, 0), (1, 1), (7, 7), (1 << 20, None)])
def test_batch_reads_take_the_oldest_up_to_max_events(
    method: str, max_events: int, expect: int | None
) -> None:
    stream = _stream_with(20)
    records = list(stream._buf)
    got = getattr(stream, method)(max_events)
    n = len(records) if expect is None else expect
    assert len(got) == n
    want = records[:n] if method == "recv_records" else [stream.as_dict(r) for r in records[:n]]
    assert got == want
    assert len(stream._buf) == len(records) - n and stream.lost == 0


@pytest.mark.parametrize("method", ["recv_records", "recv_batch"])
def test_two_threads_reading_one_stream_lose_nothing(method: str) -> None:
    net = Network()
    stream = net.events(maxlen=1 << 22)
    chain(net, ("src", Source(30_000)), ("sink", Collect()))
    counts = [0, 0]
    finished = threading.Event()

    def reader(slot: int) -> None:
        read = getattr(stream, method)
        while True:
            got = read(97, timeout_ms=5)
            counts[slot] += len(got)
            if not got and finished.is_set():
                return

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    net.run(timeout=60)
    finished.set()
    for t in threads:
        t.join(30)
    published = stream._hub.seq - stream._start
    net.shutdown()
    assert sum(counts) == published > 30_000
    assert stream.lost == 0
