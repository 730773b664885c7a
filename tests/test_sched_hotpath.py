"""The scheduler's fast paths behave as its general paths do (issue 9, speed rows).

``ctx.done`` and ``ctx.send`` deliver untraced packets themselves (``Scheduler._deliver``
inlined); a sync node with several in-edges runs on a round-robin fast path; events are flat
records. Each row runs the same graph untraced (fast paths) and traced (a subscriber forces
the general paths) and expects the same packets, the same failures and the same messages.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from reflow import Actor, Message, Network, TickStateError
from reflow._core._events import EVENT_FIELDS, EVENT_TYPES, EventStream


class Feed(Actor):
    """Sends the configured values on ``out``, one packet per send."""

    component = "hp_feed"
    inports: list[str] = []
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        for v in ctx.config["values"]:
            ctx.send({"out": Message.integer(v)})
        ctx.done()


class Emit(Actor):
    """Ends each tick with ``done(outputs)``, outputs chosen by the input value."""

    component = "hp_emit"
    inports = ["in"]
    outports = ["out", "spare"]

    def __init__(self, outputs: Any) -> None:
        self.outputs = outputs
        self.errors: list[BaseException] = []

    def run(self, ctx: Any) -> None:
        try:
            ctx.done(self.outputs)
        except TickStateError as exc:  # seen inside run(), as an actor could catch it
            self.errors.append(exc)
            raise


class Sink(Actor):
    component = "hp_sink"
    inports = ["in", "x", "y"]

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def run(self, ctx: Any) -> None:
        ((port, msg),) = ctx.inputs.items()
        self.seen.append((port, msg["data"] if "data" in msg else msg["type"]))
        ctx.done()


def emit_graph(outputs: Any) -> tuple[Network, Emit, Sink]:
    net = Network()
    emit, sink = Emit(outputs), Sink()
    net.register_actor("feed", Feed())
    net.register_actor("emit", emit)
    net.register_actor("sink", sink)
    net.add_node("f", "feed", {"values": [1, 2]})
    net.add_node("e", "emit")
    net.add_node("k", "sink")
    net.add_connection("f", "out", "e", "in")
    net.add_connection("e", "out", "k", "in")
    return net, emit, sink


class NotAMessage:
    def __repr__(self) -> str:
        return "<not a message>"


# outputs given to done() -> what the sink sees, or the error class and a message fragment
DONE_ROWS = [
    ({"out": Message.integer(5)}, [("in", 5), ("in", 5)], None, ""),
    ({"out": {"type": "Integer", "data": 6}}, [("in", 6), ("in", 6)], None, ""),
    ({"out": None}, [], None, ""),
    ({"spare": Message.integer(1)}, [], None, ""),  # declared, unconnected: dropped
    ({}, [], None, ""),
    ({"nope": Message.integer(1)}, [], TickStateError, "undeclared out-port 'nope'"),
    ({"out": NotAMessage()}, [], TickStateError, "invalid message on port 'out'"),
    ({"out": {"type": "Integer"}}, [], TickStateError, "invalid message on port 'out'"),
    ({"out": {"type": "Nope", "data": 1}}, [], TickStateError, "invalid message on port"),
    (["out"], [], TickStateError, "expects a dict keyed by output port, got list"),
    ("out", [], TickStateError, "expects a dict keyed by output port, got str"),
]


@pytest.mark.parametrize("traced", [False, True], ids=["fast", "traced"])
@pytest.mark.parametrize("outputs, seen, error, fragment", DONE_ROWS)
def test_done_delivers_or_refuses_the_same_on_both_paths(
    traced: bool, outputs: Any, seen: list[Any], error: type[Exception] | None, fragment: str
) -> None:
    net, emit, sink = emit_graph(outputs)
    stream = net.events() if traced else None
    t0 = time.monotonic()
    summary = net.run(timeout=10)
    net.shutdown()
    assert time.monotonic() - t0 < 5
    assert sink.seen == seen
    if error is None:
        assert summary.ok, summary.failures
        assert not emit.errors
    else:
        assert summary.failure_count == 2
        assert all(isinstance(e, error) and fragment in str(e) for e in emit.errors), emit.errors
        assert all(fragment in f.error and f.node == "e" for f in summary.failures)
    if stream is not None:
        stream.close()


class Merge(Actor):
    component = "hp_merge"
    inports = ["a", "b", "c"]
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        ((port, msg),) = ctx.inputs.items()
        if msg["data"] == 13:
            raise ValueError("thirteen")
        if msg["data"] == 14:
            return  # unresolved tick
        ctx.done({"out": Message.string(f"{port}{msg['data']}")})


def merge_graph(capacity: int, feeds: dict[str, list[int]]) -> tuple[Network, Sink]:
    net = Network(capacity=capacity)
    sink = Sink()
    net.register_actor("feed", Feed())
    net.register_actor("merge", Merge())
    net.register_actor("sink", sink)
    net.add_node("m", "merge")
    net.add_node("k", "sink")
    net.add_connection("m", "out", "k", "in")
    for port, values in feeds.items():
        net.add_node(f"f{port}", "feed", {"values": values})
        net.add_connection(f"f{port}", "out", "m", port)
    return net, sink


FEEDS = [
    {"a": list(range(50)), "b": list(range(100, 103)), "c": list(range(200, 260))},
    {"a": [1, 13, 2, 14, 3], "b": [], "c": [4, 5]},
    {"a": list(range(600)), "b": list(range(1000, 1600))},  # more than one batch
]


@pytest.mark.parametrize("capacity", [1, 2, 64])
@pytest.mark.parametrize("feeds", FEEDS, ids=["uneven", "failing", "long"])
def test_round_robin_fast_path_takes_packets_as_the_general_path(
    capacity: int, feeds: dict[str, list[int]]
) -> None:
    results = []
    for traced in (False, True):
        net, sink = merge_graph(capacity, feeds)
        stream = net.events(maxlen=1 << 16) if traced else None
        summary = net.run(timeout=20)
        net.shutdown()
        results.append((sink.seen, summary.failure_count, summary.node_ticks))
        if stream is not None:
            assert stream.lost == 0
    assert results[0] == results[1]
    seen, failures, _ticks = results[0]
    expect = sum(len(v) for v in feeds.values()) - failures
    assert len(seen) == expect


def test_records_are_flat_and_convert_to_the_dicts_recv_batch_gives() -> None:
    net, _emit, _sink = emit_graph({"out": Message.integer(3), "spare": Message.integer(4)})
    raw = net.events(maxlen=1 << 12)
    dicts = net.events(maxlen=1 << 12)
    before = time.time()
    net.run(timeout=10)
    net.shutdown()
    after = time.time()
    records = raw.recv_records(1 << 12)
    as_dicts = dicts.recv_batch(1 << 12)
    assert records and raw.lost == 0 and dicts.lost == 0
    assert [EventStream.as_dict(r) for r in records] == as_dicts
    kinds = {r[0] for r in records}
    assert {"ActorStarted", "ActorCompleted", "MessageSent"} <= kinds <= set(EVENT_TYPES)
    stamps = []
    for r in records:
        assert type(r) is tuple and len(r) == 2 + len(EVENT_FIELDS[r[0]]), r
        stamps.append(r[1])
    assert stamps == sorted(stamps)  # one monotonic clock
    for d in as_dicts:
        assert before * 1000 - 1000 <= d["timestamp"] <= after * 1000 + 1000
    done = [d for d in as_dicts if d["_type"] == "ActorCompleted" and d["actorId"] == "e"]
    assert [d["outputSize"] for d in done] == [1, 1]  # the spare port has no edge
    assert all(d["duration"] >= 0 for d in done)


@pytest.mark.parametrize("max_events, expect", [(1, 1), (3, 3), (10_000, None)])
def test_recv_records_takes_at_most_max_events(max_events: int, expect: int | None) -> None:
    net, _emit, _sink = emit_graph({"out": Message.integer(3)})
    stream = net.events()
    net.run(timeout=10)
    net.shutdown()
    total = len(stream._buf)
    got = stream.recv_records(max_events)
    assert len(got) == (total if expect is None else expect)
    assert len(stream.recv_records(10_000)) == total - len(got)
    assert stream.recv_records(10, timeout_ms=1) == []
    assert stream.lost == 0


class SendAll(Actor):
    """Sends the configured outputs with ``ctx.send`` twice, then ends the tick."""

    component = "hp_send_all"
    inports: list[str] = []
    outports = ["out", "spare"]

    def __init__(self, outputs: Any) -> None:
        self.outputs = outputs
        self.errors: list[BaseException] = []

    def run(self, ctx: Any) -> None:
        try:
            ctx.send(self.outputs)
            ctx.send(self.outputs)
        except TickStateError as exc:
            self.errors.append(exc)
            raise
        ctx.done()


# the rows of done() whose input send() takes (a dict; send of a non-dict is no API)
SEND_ROWS = [row for row in DONE_ROWS if isinstance(row[0], dict)]


@pytest.mark.parametrize("traced", [False, True], ids=["fast", "traced"])
@pytest.mark.parametrize("outputs, seen, error, fragment", SEND_ROWS)
def test_send_delivers_or_refuses_the_same_on_both_paths(
    traced: bool, outputs: Any, seen: list[Any], error: type[Exception] | None, fragment: str
) -> None:
    net = Network(capacity=1)  # the second send finds the edge full: it runs the sink first
    src, sink = SendAll(outputs), Sink()
    net.register_actor("src", src)
    net.register_actor("sink", sink)
    net.add_node("s", "src")
    net.add_node("k", "sink")
    net.add_connection("s", "out", "k", "in")
    stream = net.events() if traced else None
    summary = net.run(timeout=10)
    net.shutdown()
    assert sink.seen == seen
    if error is None:
        assert summary.ok, summary.failures
    else:
        assert summary.failure_count == 1
        assert len(src.errors) == 1 and isinstance(src.errors[0], error)
        assert fragment in str(src.errors[0])
    if stream is not None:
        stream.close()
