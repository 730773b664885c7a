"""Durable runs: what checkpointing costs the chain benchmark (issue 14's target: <= 20% at
a checkpoint every 1,000 ticks).

Run: ``python tests/bench/bench_durable.py`` (``--n 100000`` for a quicker run; ``--smoke``
only shows every case still runs).

The chain of ``bench_core`` (source -> inc -> inc -> sink), its source made resumable as a
durable run needs: it emits ``CHUNK`` packets per tick and keeps its position in a pool
(``bench_core``'s source sends everything from one tick, which no checkpoint can cut). Three
ways in one process: no ``checkpoint=``; a checkpoint every 1,000 ticks (all nodes together)
to a SQLite file; every 10,000 ticks. Prints the throughputs, the number and size of the
checkpoints, and the ratios against the run without checkpoints.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from pathlib import Path
from typing import Any

from _ratios import print_ratios
from bench_core import Inc, Sink

from reflow import Actor, Every, Message, Network

CHUNK = 64


class ChunkSource(Actor):
    component = "bench_chunk_source"
    inports: list[str] = []
    outports = ["out"]

    def __init__(self, count: int) -> None:
        self.count = count

    def run(self, ctx: Any) -> None:
        pos = ctx.pool_get("position", "next", 0)
        end = min(pos + CHUNK, self.count)
        emit = ctx.emit
        integer = Message.integer
        for i in range(pos, end):
            emit("out", integer(i))
        ctx.pool_upsert("position", "next", end)
        if end < self.count:
            ctx.wake_after(0)
        ctx.done()


def chain(n: int, every: int | None, db: Path | None) -> tuple[float, int, int]:
    """Items/s, checkpoints written and the last one's size in bytes."""
    net = Network()
    sink = Sink()
    net.register_actor("src", ChunkSource(n))
    net.register_actor("inc", Inc())
    net.register_actor("sink", sink)
    net.add_node("s", "src")
    net.add_node("a", "inc")
    net.add_node("b", "inc")
    net.add_node("c", "sink")
    net.add_connection("s", "out", "a", "in")
    net.add_connection("a", "out", "b", "in")
    net.add_connection("b", "out", "c", "in")
    gc.collect()
    t0 = time.perf_counter()
    if every is None:
        summary = net.run()
    else:
        assert db is not None
        summary = net.run(
            run_id="bench", checkpoint=f"sqlite://{db}", checkpoint_every=Every(ticks=every)
        )
    dt = time.perf_counter() - t0
    durable = net._durable
    written = 0 if durable is None else durable.seq
    size = 0 if durable is None else durable.bytes
    net.shutdown()
    assert sink.count == n and sink.last == n + 1, (sink.count, sink.last)
    assert summary.ok
    return n / dt, written, size


def best(n: int, every: int | None, db: Path | None, repeat: int) -> tuple[float, int, int]:
    return max((chain(n, every, db) for _ in range(repeat)), key=lambda r: r[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=500_000, help="packets per case")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: runs, measures nothing")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.repeat = 5000, 1
    n = args.n
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "ckpt.db"
        plain, _, _ = best(n, None, None, args.repeat)
        k1, w1, s1 = best(n, 1000, db, args.repeat)
        k10, w10, s10 = best(n, 10_000, db, args.repeat)
    print(f"chain, no checkpoint=               : {plain:12,.0f} items/s")
    print(
        f"chain, checkpoint every 1,000 ticks  : {k1:12,.0f} items/s "
        f"({w1} checkpoints, last {s1:,} bytes)"
    )
    print(
        f"chain, checkpoint every 10,000 ticks : {k10:12,.0f} items/s "
        f"({w10} checkpoints, last {s10:,} bytes)"
    )
    print(f"cost of checkpoints every 1,000 ticks: {(1 - k1 / plain) * 100:.1f}% (target <= 20%)")
    print_ratios(
        [
            ("checkpoint every 1,000 ticks / no checkpoint", k1 / plain),
            ("checkpoint every 10,000 ticks / no checkpoint", k10 / plain),
        ]
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
