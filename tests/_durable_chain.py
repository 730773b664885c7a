"""A durable source -> transform -> sink run, as a user's program: the subprocess the durable
tests start, resume and kill.

``python tests/_durable_chain.py CKPT EFFECTS N [--dedupe] [--every TICKS] [--resume MODE]
[--crash-at SEQ] [--mid inline|async|worker]`` (CKPT: a store URL; ``--crash-at``: the
process exits at that sink tick; ``--mid``: where ``inc``'s ticks run)

The source emits ``N`` integers, ``CHUNK`` per tick (its position in a pool, the next chunk
through ``ctx.wake_after(0)``); ``inc`` adds one; the sink (``sequenced = True``) writes each
packet it gets with its tick's ``ctx.seq`` and this process's id into the SQLite file
EFFECTS, committed before its tick ends. With ``--dedupe`` the row is keyed by ``seq``
(``INSERT OR IGNORE``: a tick run again after a resume has no second effect); without, every
tick adds a row. Prints ``running`` once the graph is built, ``finished`` at the end.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from typing import Any

from reflow import Actor, Every, Message, Network

CHUNK = 8


class ChunkSource(Actor):
    component = "durable_source"
    inports: list[str] = []
    outports = ["out"]

    def __init__(self, n: int) -> None:
        self.n = n

    def run(self, ctx: Any) -> None:
        pos = ctx.pool_get("position", "next", 0)
        end = min(pos + CHUNK, self.n)
        for i in range(pos, end):
            ctx.emit("out", Message.integer(i))
        ctx.pool_upsert("position", "next", end)
        if end < self.n:
            ctx.wake_after(0)
        ctx.done()


class Inc(Actor):
    component = "durable_inc"
    inports = ["in"]
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        ctx.done({"out": Message.integer(ctx.inputs["in"]["data"] + 1)})


class AsyncInc(Inc):
    component = "durable_async_inc"

    async def run(self, ctx: Any) -> None:  # type: ignore[override]
        ctx.done({"out": Message.integer(ctx.inputs["in"]["data"] + 1)})


class WorkerInc(Inc):
    component = "durable_worker_inc"
    execution = "worker"


MIDDLES = {"inline": Inc, "async": AsyncInc, "worker": WorkerInc}


class EffectSink(Actor):
    component = "durable_sink"
    inports = ["in"]
    outports: list[str] = []
    sequenced = True

    def __init__(self, path: str, dedupe: bool, crash_at: int = -1) -> None:
        self.crash_at = crash_at
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=OFF")  # a killed process loses nothing the OS has
        key = "PRIMARY KEY" if dedupe else ""
        self.db.execute(
            f"CREATE TABLE IF NOT EXISTS effects (seq INTEGER {key}, id INTEGER, pid INTEGER)"
        )
        verb = "INSERT OR IGNORE" if dedupe else "INSERT"
        self.sql = f"{verb} INTO effects (seq, id, pid) VALUES (?, ?, ?)"
        self.pid = os.getpid()

    def run(self, ctx: Any) -> None:
        if ctx.seq == self.crash_at:
            os._exit(3)  # the process dies mid-run, as a crash would
        self.db.execute(self.sql, (ctx.seq, ctx.inputs["in"]["data"], self.pid))
        ctx.done()


def build(n: int, effects: str, dedupe: bool, crash_at: int = -1, mid: str = "inline") -> Network:
    net = Network()
    net.register_actor("src", ChunkSource(n))
    net.register_actor("inc", MIDDLES[mid]())
    net.register_actor("sink", EffectSink(effects, dedupe, crash_at))
    net.add_node("source", "src")
    net.add_node("inc", "inc")
    net.add_node("sink", "sink")
    net.add_connection("source", "out", "inc", "in")
    net.add_connection("inc", "out", "sink", "in")
    return net


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("checkpoint")
    p.add_argument("effects")
    p.add_argument("n", type=int)
    p.add_argument("--dedupe", action="store_true")
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--resume", default="if-exists", choices=["if-exists", "true", "false"])
    p.add_argument("--run-id", default="chain")
    p.add_argument("--crash-at", type=int, default=-1, help="exit(3) at this sink tick")
    p.add_argument("--mid", default="inline", choices=sorted(MIDDLES), help="inc's execution")
    args = p.parse_args(argv)
    resume: bool | str = {"if-exists": "if-exists", "true": True, "false": False}[args.resume]
    net = build(args.n, args.effects, args.dedupe, args.crash_at, args.mid)
    print("running", flush=True)
    summary = net.run(
        run_id=args.run_id,
        checkpoint=args.checkpoint,
        resume=resume,
        checkpoint_every=Every(ticks=args.every),
    )
    net.shutdown()
    print("finished", summary.ticks, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
