"""reflow._core._scheduler: bounded edges, parking, per-edge order, exactly-once delivery, and the
promise that no graph deadlocks (capacity is exceeded only where the graph leaves no choice).

Packets in the graph tests carry ``{"seq": i, "path": [source, relay, ...]}``: each relay
records what it receives and forwards it with its own id appended, until the path is ``hops``
long (which is what makes cycles terminate). Every walk of the graph then has to deliver the
source's sequence numbers exactly once and in order, which checks per-edge FIFO order along
the whole walk. The rules a tick follows on hand-built graphs (joins, floods of packets, memory
and queue bounds, await-all, failures) are ``test_sched_rules.py``'s; what is particular to
async ticks and to worker ticks is in ``test_sched_async.py`` and ``test_sched_workers.py``.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest
from _sched_support import run_guarded
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from reflow import Actor, Message, Network

MODES = ("inline", "async", "worker")

# -- the packet-tracing graph family ---------------------------------------------------------


class Recorder:
    """What each node received: node -> path -> sequence numbers in arrival order."""

    def __init__(self) -> None:
        self.got: dict[str, dict[tuple[str, ...], list[int]]] = defaultdict(
            lambda: defaultdict(list)
        )

    def record(self, node: str, path: list[str], seq: int) -> None:
        self.got[node][tuple(path)].append(seq)

    def as_plain(self) -> dict[str, dict[tuple[str, ...], list[int]]]:
        return {node: dict(paths) for node, paths in self.got.items() if paths}


def source_tick(ctx: Any) -> None:
    cfg = ctx.config
    for i in range(cfg["count"]):
        msg = Message.object({"seq": i, "path": [ctx.node]})
        if cfg["style"] == "send":
            ctx.send({"out": msg})
        else:
            ctx.emit("out", msg)
    ctx.done()


def relay_tick(rec: Recorder, ctx: Any) -> None:
    data = ctx.inputs["in"]["data"]
    path = data["path"]
    rec.record(ctx.node, path, data["seq"])
    cfg = ctx.config
    if len(path) < cfg["hops"]:
        out = Message.object({"seq": data["seq"], "path": [*path, ctx.node]})
        if cfg["style"] == "done":
            ctx.done({"out": out})
            return
        if cfg["style"] == "emit":
            ctx.emit("out", out)
        else:
            ctx.send({"out": out})
    ctx.done()


class Source(Actor):
    component = "trace_source"
    inports: list[str] = []
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        source_tick(ctx)


class AsyncSource(Source):
    async def run(self, ctx: Any) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        if ctx.config["style"] != "asend":
            source_tick(ctx)
            return
        for i in range(ctx.config["count"]):
            await ctx.asend({"out": Message.object({"seq": i, "path": [ctx.node]})})
        ctx.done()


class WorkerSource(Source):
    execution = "worker"


class Relay(Actor):
    component = "trace_relay"
    inports = ["in"]
    outports = ["out"]

    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    def run(self, ctx: Any) -> None:
        relay_tick(self.rec, ctx)


class AsyncRelay(Relay):
    async def run(self, ctx: Any) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        if ctx.config["style"] != "asend":
            relay_tick(self.rec, ctx)
            return
        data = ctx.inputs["in"]["data"]
        path = data["path"]
        self.rec.record(ctx.node, path, data["seq"])
        if len(path) < ctx.config["hops"]:
            await ctx.asend(
                {"out": Message.object({"seq": data["seq"], "path": [*path, ctx.node]})}
            )
        ctx.done()


class WorkerRelay(Relay):
    execution = "worker"


@dataclass
class Spec:
    """A traced graph: sources ``id -> (mode, style, count)``, relays ``id -> (mode, style)``,
    edges ``(src, dst, capacity or None)``."""

    sources: dict[str, tuple[str, str, int]]
    relays: dict[str, tuple[str, str]]
    edges: list[tuple[str, str, int | None]]
    capacity: int = 64
    hops: int = 16
    workers: int | None = None
    notes: list[str] = field(default_factory=list)

    def expected(self) -> dict[str, dict[tuple[str, ...], list[int]]]:
        out: dict[str, list[str]] = defaultdict(list)
        for src, dst, _ in self.edges:
            out[src].append(dst)
        exp: dict[str, dict[tuple[str, ...], list[int]]] = defaultdict(dict)

        def walk(path: list[str], seqs: list[int]) -> None:
            for nxt in out[path[-1]]:
                exp[nxt][tuple(path)] = seqs
                if len(path) < self.hops:
                    walk([*path, nxt], seqs)

        for sid, (_, _, count) in self.sources.items():
            if count:
                walk([sid], list(range(count)))
        return dict(exp)


def build(spec: Spec) -> tuple[Network, Recorder]:
    rec = Recorder()
    net = Network(capacity=spec.capacity, workers=spec.workers)
    templates: dict[str, Actor] = {
        "src-inline": Source(),
        "src-async": AsyncSource(),
        "src-worker": WorkerSource(),
        "rel-inline": Relay(rec),
        "rel-async": AsyncRelay(rec),
        "rel-worker": WorkerRelay(rec),
    }
    for tid, actor in templates.items():
        net.register_actor(tid, actor)
    for sid, (mode, style, count) in spec.sources.items():
        net.add_node(sid, f"src-{mode}", {"style": style, "count": count})
    for rid, (mode, style) in spec.relays.items():
        net.add_node(rid, f"rel-{mode}", {"style": style, "hops": spec.hops})
    for src, dst, cap in spec.edges:
        net.add_connection(src, "out", dst, "in", capacity=cap)
    return net, rec


def run_spec(spec: Spec, timeout: float = 5) -> Any:
    """Run ``spec``; check exactly-once, per-path order, no failure, nothing left."""
    net, rec = build(spec)
    summary = run_guarded(net, timeout)
    assert summary.ok, summary.failures[:3]
    assert summary.pending == {}
    got, want = rec.as_plain(), spec.expected()
    assert got.keys() == want.keys()
    for node in want:
        assert got[node] == want[node], f"node {node}"
    return summary


@st.composite
def specs(draw: Any) -> Spec:
    n_src = draw(st.integers(1, 2))
    n_rel = draw(st.integers(1, 4))
    cyclic = draw(st.booleans())
    sources = [f"s{i}" for i in range(n_src)]
    relays = [f"r{i}" for i in range(n_rel)]
    pairs: list[tuple[str, str]] = []
    for s in sources:  # fan-out from sources, fan-in at relays
        targets = draw(st.lists(st.sampled_from(relays), min_size=1, max_size=n_rel, unique=True))
        pairs += [(s, t) for t in targets]
    for i, a in enumerate(relays):
        for j, b in enumerate(relays):
            if (j > i or cyclic) and draw(st.booleans()):
                pairs.append((a, b))
    edge_cap = st.none() | st.integers(1, 8)

    def mode_and_style(styles: list[str]) -> tuple[str, str]:
        mode = draw(st.sampled_from(MODES))
        return mode, draw(st.sampled_from(styles + (["asend"] if mode == "async" else [])))

    return Spec(
        sources={s: (*mode_and_style(["send", "emit"]), draw(st.integers(0, 6))) for s in sources},
        relays={r: mode_and_style(["done", "emit", "send"]) for r in relays},
        edges=[(a, b, draw(edge_cap)) for a, b in pairs],
        capacity=draw(st.integers(1, 8)),
        hops=3 if cyclic else n_rel + 1,
        workers=2,
    )


# No shrinking: a deadlock shows as a run timeout, and shrinking would repeat it many times;
# the graphs drawn are small enough to read as they are.
@settings(
    max_examples=200,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(specs())
def test_generated_graphs_deliver_exactly_once_in_order(spec: Spec) -> None:
    run_spec(spec, timeout=5)


# -- named no-deadlock cases -----------------------------------------------------------------


MODE_STYLES = [(m, s) for m in MODES for s in ("done", "emit", "send")] + [("async", "asend")]


@pytest.mark.parametrize(("mode", "style"), MODE_STYLES)
def test_capacity_one_everywhere(mode: str, style: str) -> None:
    """A diamond with a fan-in relay and a cycle back, every edge of capacity 1."""
    sync_style = "send" if style == "asend" else style
    summary = run_spec(
        Spec(
            sources={"s": (mode, "asend" if style == "asend" else "send", 300)},
            relays={
                "a": (mode, style),
                "b": ("inline", sync_style),
                "j": (mode, "done"),
                "k": ("inline", sync_style),
            },
            edges=[
                ("s", "a", None),
                ("s", "b", None),
                ("a", "j", None),
                ("b", "j", None),
                ("j", "k", None),
                ("k", "a", None),
            ],
            capacity=1,
            hops=5,
        )
    )
    assert summary.node_ticks["s"] == 1


@pytest.mark.parametrize(("mode", "style"), [(m, "send") for m in MODES] + [("async", "asend")])
def test_fan_in_of_ten_producers_into_one_capacity_one_port(mode: str, style: str) -> None:
    run_spec(
        Spec(
            sources={f"p{i}": (mode, style, 100) for i in range(10)},
            relays={"k": ("inline", "done")},
            edges=[(f"p{i}", "k", 1) for i in range(10)],
        )
    )


@pytest.mark.parametrize(("mode", "style"), MODE_STYLES)
def test_two_node_cycle_capacity_one_amplifies(mode: str, style: str) -> None:
    """a sends every packet twice to b, b sends it back: 2**k packets per generation."""

    class Doubler(Actor):
        component = "amp"
        inports = ["in"]
        outports = ["out"]

        def tick(self, ctx: Any) -> None:
            ttl = ctx.inputs["in"]["data"]
            outs = [Message.integer(ttl - 1)] * 2 if ttl else []
            if style == "done" and outs:
                ctx.emit("out", outs[0])
                ctx.done({"out": outs[1]})
                return
            for out in outs:
                if style == "send":
                    ctx.send({"out": out})
                else:
                    ctx.emit("out", out)
            ctx.done()

        def run(self, ctx: Any) -> None:
            self.tick(ctx)

    class AsyncDoubler(Doubler):
        async def run(self, ctx: Any) -> None:  # type: ignore[override]
            await asyncio.sleep(0)
            if style != "asend":
                self.tick(ctx)
                return
            ttl = ctx.inputs["in"]["data"]
            for _ in range(2 if ttl else 0):
                await ctx.asend({"out": Message.integer(ttl - 1)})
            ctx.done()

    class WorkerDoubler(Doubler):
        execution = "worker"

    class Back(Actor):
        component = "back"
        inports = ["in"]
        outports = ["out"]

        def run(self, ctx: Any) -> None:
            ctx.done({"out": ctx.inputs["in"]})

    amp = {"inline": Doubler, "async": AsyncDoubler, "worker": WorkerDoubler}[mode]
    net = Network(capacity=1)
    net.register_actor("amp", amp())
    net.register_actor("back", Back())
    net.add_node("a", "amp")
    net.add_node("b", "back")
    net.add_connection("a", "out", "b", "in")
    net.add_connection("b", "out", "a", "in")
    net.add_initial("a", "in", Message.integer(9))
    summary = run_guarded(net, 10)
    assert summary.ok
    assert summary.node_ticks == {"a": 2**10 - 1, "b": 2**10 - 2}
    assert summary.pending == {}


@pytest.mark.parametrize("workers", [1, 2])
def test_more_blocked_worker_senders_than_pool_threads(workers: int) -> None:
    """Every pool thread holds a worker tick blocked in send() while the consumer's worker
    tick waits in the pool's queue: the scheduler must not count that queued tick as
    progress to wait for."""
    spec = Spec(
        sources={f"s{i}": ("worker", "send", 20) for i in range(workers)},
        relays={"k": ("worker", "done")},
        edges=[(f"s{i}", "k", 1) for i in range(workers)],
        workers=workers,
    )
    run_spec(spec, timeout=5)
