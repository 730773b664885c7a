"""Runtime core benchmarks: items/s and hops/s of pure-Python actor graphs.

Run: ``python tests/bench/bench_core.py`` (add ``--n 200000`` for a quicker run; ``--smoke``
runs every case on a few thousand packets, only to show they all still work).

``--callgrind`` counts instructions instead of timing (the repeatable measure on a busy
machine): each scheduler case and its baseline runs under ``valgrind --tool=callgrind`` at
``--cg-n`` and twice that many items, and the difference divided by the extra items is its
cost per item, so interpreter start-up and graph building cancel out. Threads are counted
together (the reader's cost counts); time spent waiting is not counted at all.

Each case prints its throughput and the ratio to a baseline measured in the same process: a
bare Python loop that calls the same ``run`` functions per item through a minimal context.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from _ratios import print_ratios

from reflow import Actor, Message, Network


class Source(Actor):
    """Streams ``count`` integers from one tick through ctx.send."""

    component = "bench_source"
    inports: list[str] = []
    outports = ["out"]

    def __init__(self, count: int) -> None:
        self.count = count

    def run(self, ctx: Any) -> None:
        send = ctx.send
        integer = Message.integer
        for i in range(self.count):
            send({"out": integer(i)})
        ctx.done()


class Inc(Actor):
    component = "bench_inc"
    inports = ["in"]
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        ctx.done({"out": Message.integer(ctx.inputs["in"]["data"] + 1)})


class Sink(Actor):
    component = "bench_sink"
    inports = ["in"]
    outports: list[str] = []

    def __init__(self) -> None:
        self.count = 0
        self.last: Any = None

    def run(self, ctx: Any) -> None:
        self.count += 1
        self.last = ctx.inputs["in"]["data"]
        ctx.done()


class AsyncInc(Actor):
    component = "bench_async_inc"
    inports = ["in"]
    outports = ["out"]

    async def run(self, ctx: Any) -> None:
        await asyncio.sleep(0)
        ctx.done({"out": Message.integer(ctx.inputs["in"]["data"] + 1)})


class Merge(Actor):
    component = "bench_merge"
    inports = ["a", "b"]
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        (msg,) = ctx.inputs.values()
        ctx.done({"out": msg})


class _StubCtx:
    """The least a run() needs: inputs, done() recording outputs."""

    __slots__ = ("inputs", "out")

    def __init__(self) -> None:
        self.inputs: dict[str, Any] = {}
        self.out: Any = None

    def done(self, outputs: Any = None) -> None:
        self.out = outputs


def bare_chain(n: int) -> float:
    """Items/s of a bare loop calling Inc, Inc, Sink run() per item."""
    a, b, sink = Inc(), Inc(), Sink()
    ctx = _StubCtx()
    integer = Message.integer
    t0 = time.perf_counter()
    for i in range(n):
        ctx.inputs = {"in": integer(i)}
        a.run(ctx)
        ctx.inputs = {"in": ctx.out["out"]}
        b.run(ctx)
        ctx.inputs = {"in": ctx.out["out"]}
        sink.run(ctx)
    dt = time.perf_counter() - t0
    assert sink.count == n
    return n / dt


def chain(n: int, capacity: int = 64, traced: bool = False) -> float:
    net = Network(capacity=capacity)
    events = net.events(maxlen=1024) if traced else None
    sink = Sink()
    net.register_actor("src", Source(n))
    net.register_actor("inc", Inc())
    net.register_actor("sink", sink)
    net.add_node("s", "src")
    net.add_node("a", "inc")
    net.add_node("b", "inc")
    net.add_node("c", "sink")
    net.add_connection("s", "out", "a", "in")
    net.add_connection("a", "out", "b", "in")
    net.add_connection("b", "out", "c", "in")
    t0 = time.perf_counter()
    summary = net.run()
    dt = time.perf_counter() - t0
    net.shutdown()
    assert sink.count == n and sink.last == n + 1, (sink.count, sink.last)
    assert summary.ok
    if events is not None:
        assert events.lost > 0  # the subscriber never read: it lost events, nothing stalled
    return n / dt


def fan_out_in(n: int) -> float:
    """source -> (inc, inc) -> merge -> sink: every item crosses 4 edges... twice."""
    net = Network()
    sink = Sink()
    net.register_actor("src", Source(n))
    net.register_actor("inc", Inc())
    net.register_actor("merge", Merge())
    net.register_actor("sink", sink)
    for node, tpl in [("s", "src"), ("l", "inc"), ("r", "inc"), ("m", "merge"), ("k", "sink")]:
        net.add_node(node, tpl)
    net.add_connection("s", "out", "l", "in")
    net.add_connection("s", "out", "r", "in")
    net.add_connection("l", "out", "m", "a")
    net.add_connection("r", "out", "m", "b")
    net.add_connection("m", "out", "k", "in")
    t0 = time.perf_counter()
    net.run()
    dt = time.perf_counter() - t0
    net.shutdown()
    assert sink.count == 2 * n
    return n / dt


def async_chain(n: int) -> float:
    net = Network()
    sink = Sink()
    net.register_actor("src", Source(n))
    net.register_actor("ainc", AsyncInc())
    net.register_actor("sink", sink)
    net.add_node("s", "src")
    net.add_node("a", "ainc")
    net.add_node("c", "sink")
    net.add_connection("s", "out", "a", "in")
    net.add_connection("a", "out", "c", "in")
    t0 = time.perf_counter()
    net.run()
    dt = time.perf_counter() - t0
    net.shutdown()
    assert sink.count == n
    return n / dt


def bare_async(n: int) -> float:
    a, sink = AsyncInc(), Sink()
    ctx = _StubCtx()

    async def loop() -> None:
        for i in range(n):
            ctx.inputs = {"in": Message.integer(i)}
            await a.run(ctx)
            ctx.inputs = {"in": ctx.out["out"]}
            sink.run(ctx)

    t0 = time.perf_counter()
    asyncio.run(loop())
    return n / (time.perf_counter() - t0)


def drained_chain(n: int, kinds: Any = None, dicts: bool = False) -> float:
    """The chain while a reader thread takes every event (of ``kinds``) as it comes, in
    batches, and looks at each one's type: the reader's own cost counts, since it shares the
    GIL with the graph. It reads records (``recv_records``) or, with ``dicts``, the dict form
    (``recv_batch``)."""
    net = Network()
    stream = net.events(maxlen=1 << 20, kinds=kinds)
    sink = Sink()
    net.register_actor("src", Source(n))
    net.register_actor("inc", Inc())
    net.register_actor("sink", sink)
    for node, tpl in [("s", "src"), ("a", "inc"), ("b", "inc"), ("c", "sink")]:
        net.add_node(node, tpl)
    net.add_connection("s", "out", "a", "in")
    net.add_connection("a", "out", "b", "in")
    net.add_connection("b", "out", "c", "in")
    got = [0]
    finished = threading.Event()
    kinds_seen: dict[str, int] = {}

    def reader() -> None:
        read = stream.recv_batch if dicts else stream.recv_records
        key: Any = "_type" if dicts else 0
        seen = kinds_seen
        while True:
            events = read(4096, timeout_ms=20)
            for ev in events:
                kind = ev[key]
                seen[kind] = seen.get(kind, 0) + 1
            got[0] += len(events)
            if not events and finished.is_set():
                return

    thread = threading.Thread(target=reader)
    thread.start()
    t0 = time.perf_counter()
    net.run()
    finished.set()
    thread.join()
    dt = time.perf_counter() - t0
    net.shutdown()
    assert sink.count == n and stream.lost == 0 and got[0] == sum(kinds_seen.values()) > 0
    return n / dt


def build_chain(n: int) -> tuple[float, float]:
    """Seconds to build an ``n``-node chain, and bytes of RSS per idle node."""
    import psutil

    gc.collect()
    rss0 = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    net = Network()
    net.register_actor("inc", Inc())
    net.add_node("n0", "inc")
    for i in range(1, n):
        net.add_node(f"n{i}", "inc")
        net.add_connection(f"n{i - 1}", "out", f"n{i}", "in")
    dt = time.perf_counter() - t0
    gc.collect()
    per_node = (psutil.Process().memory_info().rss - rss0) / n
    net.shutdown()
    return dt, per_node


def build_from_graph(n: int) -> float:
    """Seconds to read an ``n``-node chain's FBP JSON and build its network from it."""
    from reflow import Graph

    doc = {
        "processes": {f"n{i}": {"component": "inc"} for i in range(n)},
        "connections": [
            {
                "src": {"process": f"n{i - 1}", "port": "out"},
                "tgt": {"process": f"n{i}", "port": "in"},
            }
            for i in range(1, n)
        ],
    }
    text = json.dumps(doc)
    gc.collect()
    t0 = time.perf_counter()
    net = Network.from_graph(Graph.from_json(text), templates={"inc": Inc()})
    assert len(net.nodes()) == n  # applies the graph
    dt = time.perf_counter() - t0
    net.shutdown()
    return dt


def best(fn: Any, *args: Any, repeat: int = 3) -> float:
    results = []
    for _ in range(repeat):
        gc.collect()
        results.append(fn(*args))
    return max(results)


#: The scheduler cases by name: (function, extra arguments), for
#: ``--case`` and ``--callgrind``. Each ratio row compares a case with its baseline.
CASES: dict[str, tuple[Any, tuple[Any, ...]]] = {
    "bare": (bare_chain, ()),
    "chain": (chain, ()),
    "capacity1": (chain, (1,)),
    "subscribed": (chain, (64, True)),
    "fan": (fan_out_in, ()),
    "bare_async": (bare_async, ()),
    "async": (async_chain, ()),
    "drained": (drained_chain, ()),
    "drained_dicts": (drained_chain, (None, True)),
    "drained_results": (drained_chain, (["ActorCompleted", "ActorFailed"],)),
}
CG_ROWS = [
    ("chain, capacity 64 / bare loop", "chain", "bare"),
    ("chain, capacity 1 / bare loop", "capacity1", "bare"),
    ("chain, events subscribed / bare loop", "subscribed", "bare"),
    ("fan-out/fan-in / bare loop", "fan", "bare"),
    ("async chain / bare async loop", "async", "bare_async"),
    ("chain, a thread reading every event / bare loop", "drained", "bare"),
    ("chain, a thread reading every event as dicts / bare", "drained_dicts", "bare"),
    ("chain, a thread reading tick results / bare loop", "drained_results", "bare"),
]


def _instructions(case: str, n: int) -> int:
    """Instructions (all threads) of one process running ``case`` on ``n`` items."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        subprocess.run(
            [*valgrind, sys.executable, __file__, "--case", case, "--n", str(n)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        total = 0
        for name in os.listdir(tmp):  # one file per thread with --separate-threads only
            with open(os.path.join(tmp, name)) as f:
                m = re.search(r"^(?:summary|totals): (\d+)", f.read(), re.M)
            total += int(m.group(1)) if m else 0
        return total


def callgrind(n: int, only: list[str] | None) -> int:
    """Instructions per item of each case, and each row's ratio (baseline / case)."""
    needed = {c for row in CG_ROWS for c in row[1:] if not only or row[1] in only}
    per_item: dict[str, float] = {}
    for case in [c for c in CASES if c in needed]:
        per_item[case] = (_instructions(case, 2 * n) - _instructions(case, n)) / n
        print(f"{case:16s}: {per_item[case]:10,.0f} instructions/item", flush=True)
    print_ratios([(name, per_item[b] / per_item[c]) for name, c, b in CG_ROWS if c in per_item])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000, help="packets per case")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, one repeat: checks the cases run, measures nothing",
    )
    parser.add_argument("--case", choices=sorted(CASES), help="run one case once, print items/s")
    parser.add_argument(
        "--callgrind", action="store_true", help="instruction counts under valgrind, see above"
    )
    parser.add_argument("--cg-n", type=int, default=20_000, help="items per --callgrind run")
    parser.add_argument("--only", nargs="*", help="with --callgrind: these cases only")
    args = parser.parse_args(argv)
    if args.case:
        fn, extra = CASES[args.case]
        cpu = time.process_time()  # every thread's, kernel time included: less noisy than wall
        rate = fn(args.n, *extra)
        cpu = time.process_time() - cpu
        print(f"{args.case}: {rate:,.0f} items/s  {args.n / cpu:,.0f} items per CPU second")
        return 0
    if args.callgrind:
        return callgrind(args.cg_n, args.only)
    if args.smoke:
        args.n, args.repeat = 4000, 1
    n = args.n
    base = best(bare_chain, n, repeat=args.repeat)
    print(f"bare loop, 3 run() calls/item : {base:12,.0f} items/s  {3 * base:12,.0f} calls/s")
    rate = best(chain, n, repeat=args.repeat)
    print(
        f"chain src->inc->inc->sink      : {rate:12,.0f} items/s  {3 * rate:12,.0f} hops/s"
        f"  ratio to bare loop {rate / base:.2f}"
    )
    rate1 = best(chain, n, 1, repeat=1)
    print(f"same chain, capacity 1         : {rate1:12,.0f} items/s  ratio {rate1 / base:.2f}")
    traced = best(chain, n // 4, 64, True, repeat=1)
    print(f"same chain, events subscribed  : {traced:12,.0f} items/s  ratio {traced / base:.2f}")
    fan = best(fan_out_in, n // 2, repeat=args.repeat)
    print(
        f"fan-out 2 / fan-in (join)      : {fan:12,.0f} items/s  ratio {fan / base:.2f}"
        f"  ({5 * fan:,.0f} hops/s)"
    )
    m = max(n // 20, 1000)
    abase = best(bare_async, m, repeat=args.repeat)
    arate = best(async_chain, m, repeat=args.repeat)
    print(
        f"async actor chain              : {arate:12,.0f} items/s  ratio to bare async "
        f"loop {arate / abase:.2f}"
    )
    drained = best(drained_chain, n // 4, repeat=1)
    print(
        f"same chain, a thread reads all : {drained:12,.0f} items/s  ratio {drained / base:.2f}"
        "  (records)"
    )
    as_dicts = best(drained_chain, n // 4, None, True, repeat=1)
    print(
        f"  ... reads all as dicts       : {as_dicts:12,.0f} items/s  ratio {as_dicts / base:.2f}"
    )
    done_only = best(drained_chain, n // 4, ["ActorCompleted", "ActorFailed"], repeat=1)
    print(
        f"  ... reads only tick results  : {done_only:12,.0f} items/s  ratio {done_only / base:.2f}"
    )
    small, big = max(n // 100, 1000), max(n // 10, 10000)
    t_small, _ = build_chain(small)  # too small for RSS to show (freed memory is reused)
    t_big, per_big = build_chain(big)
    print(f"build a {small:,}-node chain     : {t_small * 1000:8.1f} ms")
    print(
        f"build a {big:,}-node chain    : {t_big * 1000:8.1f} ms  "
        f"{per_big / 1024:.2f} KiB RSS per idle node"
    )
    g_small, g_big = build_from_graph(small), build_from_graph(big)
    print(
        f"same from FBP JSON, {small:,} / {big:,} : {g_small * 1000:8.1f} ms / "
        f"{g_big * 1000:.1f} ms"
    )
    print_ratios(
        [
            ("chain, capacity 64 / bare loop", rate / base),
            ("chain, capacity 1 / bare loop", rate1 / base),
            ("chain, events subscribed / bare loop", traced / base),
            ("fan-out/fan-in / bare loop", fan / base),
            ("async chain / bare async loop", arate / abase),
            ("chain, a thread reading every event / bare loop", drained / base),
            ("chain, a thread reading every event as dicts / bare", as_dicts / base),
            ("chain, a thread reading tick results / bare loop", done_only / base),
            # 1.0 is linear in nodes; a build that slows as the graph grows shows above 1
            (f"build time per node, {big:,} / {small:,} nodes", (t_big / big) / (t_small / small)),
            (
                f"build from graph JSON per node, {big:,} / {small:,} nodes",
                (g_big / big) / (g_small / small),
            ),
        ]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
