"""Actors the policy tests script: each call of ``run`` takes the next action of a script.

Not a test module (no ``test_`` prefix); ``tests/test_policies_*.py`` import it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from reflow import Actor, GuestTrap, Message, Network, Stream
from reflow._errors import ReflowError

MODES = ["inline", "async", "worker"]

_ERRORS: dict[str, type[Exception]] = {
    "RuntimeError": RuntimeError,
    "ValueError": ValueError,
    "GuestTrap": GuestTrap,
    "ReflowError": ReflowError,
}


class Scripted(Actor):
    """``script``: actions, one per call (then "ok"):

    ``ok`` done({"out": input}); ``raise:Class:text``; ``fail:text``; ``emit-raise`` emit then
    raise; ``send-raise`` send mid-tick then raise; ``stream-raise`` done() with a Stream, then
    raise; ``send-ok``, ``stream-ok`` as their names say; ``sleep:s`` sleep s seconds, then
    ok; ``block`` wait for ``release`` then ok; ``late-send`` block, then send (after a
    timeout: refused).
    """

    component = "scripted"
    inports = ["in"]
    outports = ["out"]

    def __init__(self, script: list[str] | None = None, execution: str = "inline") -> None:
        self.script = list(script or [])
        self.execution = execution
        self.calls = 0
        self.running = 0
        self.most_running = 0
        self.release = threading.Event()
        self.late_error: BaseException | None = None
        self._lock = threading.Lock()

    def _next(self) -> str:
        with self._lock:
            i = self.calls
            self.calls += 1
        return self.script[i] if i < len(self.script) else "ok"

    def act(self, ctx: Any, action: str) -> None:
        data = ctx.inputs.get("in", Message.integer(0))
        kind, _, rest = action.partition(":")
        if kind == "ok":
            ctx.done({"out": data})
        elif kind == "raise":
            cls, _, text = rest.partition(":")
            raise _ERRORS[cls](text)
        elif kind == "fail":
            ctx.fail(rest)
        elif kind == "emit-raise":
            ctx.emit("out", Message.string("partial"))
            raise RuntimeError("after emit")
        elif kind == "send-raise":
            ctx.send({"out": Message.string("sent")})
            raise RuntimeError("after send")
        elif kind == "stream-raise":
            stream = Stream.create()
            ctx.done({"out": stream.into_message()})
            stream.end()
            raise RuntimeError("after stream")
        elif kind == "send-ok":
            ctx.send({"out": Message.string("sent")})
            ctx.done({"out": data})
        elif kind == "stream-ok":
            stream = Stream.create()
            ctx.done({"out": stream.into_message()})
            stream.end()
        elif kind == "sleep":
            time.sleep(float(rest))
            ctx.done({"out": data})
        elif kind == "block":
            self.release.wait(10)
            ctx.done({"out": data})
        elif kind == "late-send":
            self.release.wait(10)
            try:
                ctx.send({"out": Message.string("late")})
            except ReflowError as exc:
                self.late_error = exc
            ctx.done({"out": Message.string("late-done")})
        else:
            raise AssertionError(f"unknown action {action!r}")

    def run(self, ctx: Any) -> None:
        with self._lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            self.act(ctx, self._next())
        finally:
            with self._lock:
                self.running -= 1


class AsyncScripted(Scripted):
    async def run(self, ctx: Any) -> None:  # type: ignore[override]
        action = self._next()
        if action.startswith("sleep:"):
            await asyncio.sleep(float(action.split(":")[1]))
            action = "ok"
        self.act(ctx, action)


def scripted(mode: str, script: list[str] | None = None) -> Scripted:
    if mode == "async":
        return AsyncScripted(script)
    return Scripted(script, execution=mode)


def one_node(
    actor: Actor, policies: dict[str, Any] | None, *packets: int, **net_kw: Any
) -> tuple[Network, Any]:
    """A network of one node ``n`` with ``policies``, its out-port collected, ``packets``
    queued on its in-port (not yet run)."""
    net = Network(**net_kw)
    net.register_actor("t", actor)
    net.add_node("n", "t", policies=policies)
    out = net.collect("n", "out")
    for p in packets:
        net.add_initial("n", "in", Message.integer(p))
    return net, out


def datas(collector: Any) -> list[Any]:
    return [m.get("data") if m.get("type") != "Stream" else "<stream>" for m in collector.messages]


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s
