"""Helpers the scheduler's test files share: a guarded run, and a counting sink."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from reflow import Actor, Network


def run_guarded(net: Network, timeout: float) -> Any:
    """``net.run(timeout=...)`` then shutdown, on a helper thread so that a scheduler stuck
    inside a sync tick (where run's own timeout cannot fire) fails the test instead of
    hanging the suite. A stuck network is left behind (its threads are daemons)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["summary"] = net.run(timeout=timeout)
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=target, name="run-guarded", daemon=True)
    t.start()
    t.join(timeout + 10)
    if t.is_alive():
        pytest.fail(
            f"run(timeout={timeout}) did not return {timeout + 10} s later: the "
            f"scheduler is stuck inside a tick; pending {net._sched.pending()}"
        )
    net.shutdown()
    if "error" in box:
        raise box["error"]
    return box["summary"]


class Counting(Actor):
    """Sink that checks the integers it gets are 0, 1, 2, ... and does a little work."""

    component = "counting"
    inports = ["in"]
    outports = ["out"]

    def __init__(self) -> None:
        self.n = 0
        self.in_order = True

    def tick(self, ctx: Any) -> None:
        if ctx.inputs["in"]["data"] != self.n:
            self.in_order = False
        self.n += 1
        sum(range(ctx.config.get("work", 0)))
        ctx.done({"out": ctx.inputs["in"]})

    def run(self, ctx: Any) -> None:
        self.tick(ctx)
