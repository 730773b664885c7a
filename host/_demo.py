"""``reflow-demo``: the runtime at work on embedded defaults.

1. A source streams numbers, a sync actor squares them, an async actor "enriches" them, a
   join pairs them with a label, and the results are collected.
2. Built-in library actors (``tpl_…``) and a sandboxed WebAssembly actor, compiled here from
   the guest SDK's C example with the ``ziglang`` toolchain, run side by side.
3. 200 000 packets are timed through two sync actors.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._core._actor import Actor
from ._core._messages import Message
from ._core._network import Network


class Numbers(Actor):
    component = "demo_numbers"
    inports: list[str] = []
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        for i in range(int(ctx.config.get("count", 5))):
            ctx.send({"out": Message.integer(i)})
        ctx.done()


class Square(Actor):
    component = "demo_square"
    inports = ["in"]
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        n = ctx.inputs["in"]["data"]
        ctx.done({"out": Message.integer(n * n)})


class Enrich(Actor):
    component = "demo_enrich"
    inports = ["in"]
    outports = ["out"]

    async def run(self, ctx: Any) -> None:
        await asyncio.sleep(0.001)  # stands for an HTTP call or a database query
        n = ctx.inputs["in"]["data"]
        ctx.done({"out": Message.object({"value": n, "even": n % 2 == 0})})


class Label(Actor):
    component = "demo_label"
    inports = ["value", "label"]
    outports = ["out"]
    await_all_inports = True

    def run(self, ctx: Any) -> None:
        label = ctx.inputs["label"]["data"]
        ctx.pool_upsert("seen", str(ctx.pool_count("seen")), 1)
        ctx.done(
            {
                "out": Message.string(
                    f"{label} #{ctx.pool_count('seen')}: {ctx.inputs['value']['data']}"
                )
            }
        )


def _parse_args(argv: Sequence[str] | None) -> None:
    """``--help`` says what the demo does; any other argument is a usage error (status 2)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="reflow-demo",
        description="Run reflow's demo (also: python -m reflow): a pipeline of a source, a "
        "sync actor, an async actor and a join; the guest SDK's C doubler compiled to "
        "WebAssembly and run sandboxed next to built-in actors; then 200,000 packets timed "
        "through two sync actors. It takes no arguments.",
    )
    parser.parse_args(sys.argv[1:] if argv is None else list(argv))


def main(argv: Sequence[str] | None = None) -> None:
    _parse_args(argv)
    net = Network()
    for tid, actor in [
        ("numbers", Numbers()),
        ("square", Square()),
        ("enrich", Enrich()),
        ("label", Label()),
    ]:
        net.register_actor(tid, actor)
    net.add_node("numbers", "numbers", {"count": 5})
    net.add_node("square", "square")
    net.add_node("enrich", "enrich")
    net.add_node("label", "label")
    net.add_connection("numbers", "out", "square", "in")
    net.add_connection("square", "out", "enrich", "in")
    net.add_connection("enrich", "out", "label", "value")
    for _ in range(5):
        net.add_initial("label", "label", Message.string("square"))
    results = net.collect("label", "out")
    events = net.events()
    summary = net.run(timeout=30)
    for line in results.values():
        print(line)
    kinds: dict[str, int] = {}
    for ev in events.drain():
        kinds[ev["_type"]] = kinds.get(ev["_type"], 0) + 1
    print(f"{summary.ticks} ticks, {summary.failure_count} failures, events: {kinds}")
    net.shutdown()

    sandboxed_demo()

    n = 200_000
    net = Network()
    net.register_actor("numbers", Numbers())
    net.register_actor("square", Square())
    net.add_node("numbers", "numbers", {"count": n})
    net.add_node("a", "square")
    net.add_node("b", "square")
    net.add_connection("numbers", "out", "a", "in")
    net.add_connection("a", "out", "b", "in")
    last = net.collect("b", "out")
    t0 = time.perf_counter()
    net.run()
    dt = time.perf_counter() - t0
    net.shutdown()
    print(
        f"{n:,} packets through 2 sync actors in {dt:.2f} s "
        f"({2 * n / dt:,.0f} hops/s); last value {last[-1]['data']}"
    )


def sandboxed_demo() -> None:
    """Library templates and a C guest compiled to WebAssembly, in one graph."""
    from ._core._catalog import template_actor
    from ._sandbox._wasm_engine import default_engine
    from .sdk_guest import SDK_DIR
    from .tools import build_guest

    with tempfile.TemporaryDirectory() as tmp:
        try:
            built = build_guest(
                [SDK_DIR / "examples" / "doubler.c"], Path(tmp), name="doubler", targets=["wasm32"]
            )
        except Exception as exc:  # no ziglang: say so and go on
            print(f"(skipping the WebAssembly step: {exc})")
            return
        module = default_engine().load(built["wasm32"])
    net = Network()
    net.register_actor("doubler", module.actor())
    net.register_actor("add", template_actor("tpl_math_add"))
    net.register_actor("fmt", template_actor("tpl_text_template"))
    net.add_node("wasm", "doubler", {"factor": 3})
    net.add_node("add", "add", {"b": 1})
    net.add_node("fmt", "fmt", {"template": "n * 3 (in WebAssembly) + 1 (tpl_math_add) = {}"})
    net.add_connection("wasm", "out", "add", "a")
    net.add_connection("add", "out", "fmt", "in")
    out = net.collect("fmt", "out")
    for i in (1, 2, 3):
        net.add_initial("wasm", "in", Message.integer(i))
    summary = net.run(timeout=30)
    net.shutdown()
    for line in out.values():
        print(line)
    if not summary.ok:
        print("failures:", [str(f) for f in summary.failures])


if __name__ == "__main__":
    main()
