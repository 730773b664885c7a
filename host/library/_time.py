"""Time templates: interval timer, delay, debounce, throttle and timestamps.

The waiting ones are ``async def run`` actors: they sleep on the scheduler's event loop, so a
waiting node holds no thread and every other node keeps running. A node runs one tick at a
time, so packets queued behind a sleeping ``tpl_timer_delay`` wait their turn (each is
delayed by ``delay_ms`` after the previous one left).

A tick cannot run later on its own (there is no "wake me in 50 ms" without a packet), so
``tpl_timer_debounce`` is *leading-edge*: the first packet of a burst passes, the rest of the
burst is dropped. Each actor reads time through its ``clock`` attribute (``time.monotonic``)
and sleeps through ``sleep`` (``asyncio.sleep``), which tests may replace on an instance.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .._core._actor import ActorContext
from .._core._messages import Message
from ._base import LibraryActor, config_bool, config_choice, config_int, config_number

__all__ = ["TIME_TEMPLATES"]


class _Timed(LibraryActor):
    clock: Callable[[], float] = staticmethod(time.monotonic)
    sleep: Callable[[float], Awaitable[Any]] = staticmethod(asyncio.sleep)


class TimerInterval(_Timed):
    """A source: sends ``count`` ticks, ``interval_ms`` apart, when the network starts.

    Ports: no in-ports (runs once per network run) → out ``tick`` (Integer 0, 1, …).
    Config: ``interval_ms`` (number > 0, required), ``count`` (int 1-1000000, required: a
    graph with an endless timer never goes idle), ``immediate`` (bool, default false: the
    first tick after one interval; true: at once).
    """

    component = "tpl_timer_interval"
    inports: list[str] = []
    outports = ["tick"]
    outport_types = {"tick": "Integer"}

    async def run(self, ctx: ActorContext) -> None:
        interval = config_number(ctx, "interval_ms", minimum=0, exclusive_minimum=True) / 1000
        count = config_int(ctx, "count", minimum=1, maximum=1_000_000)
        immediate = config_bool(ctx, "immediate", False)
        start = self.clock()
        for i in range(count):
            due = start + (i if immediate else i + 1) * interval
            # sleep to an absolute schedule, so slow consumers do not make the timer drift
            wait = due - self.clock()
            if wait > 0:
                await self.sleep(wait)
            await ctx.asend({"tick": Message.integer(i)})
        ctx.done()


class TimerDelay(_Timed):
    """Forwards each packet after a delay.

    Ports: in ``in`` (any) → out ``out`` (the same message). Config: ``delay_ms`` (number ≥ 0,
    required).
    """

    component = "tpl_timer_delay"
    inports = ["in"]
    outports = ["out"]

    async def run(self, ctx: ActorContext) -> None:
        delay = config_number(ctx, "delay_ms", minimum=0) / 1000
        if delay:
            await self.sleep(delay)
        ctx.done({"out": ctx.inputs["in"]})


class TimerDebounce(_Timed):
    """Leading-edge debounce: passes a packet only after ``wait_ms`` of quiet.

    A packet passes when at least ``wait_ms`` went by since the previous packet *arrived*
    (passed or dropped); so a burst of packets closer than ``wait_ms`` yields only its first.
    Ports: in ``in`` (any) → out ``out``, ``dropped`` (the packets held back).
    Config: ``wait_ms`` (number ≥ 0, required).
    """

    component = "tpl_timer_debounce"
    inports = ["in"]
    outports = ["out", "dropped"]

    def run(self, ctx: ActorContext) -> None:
        wait = config_number(ctx, "wait_ms", minimum=0) / 1000
        now = self.clock()
        last = ctx.pool_get("timer", "last")
        ctx.pool_upsert("timer", "last", now)
        port = "out" if last is None or now - last >= wait else "dropped"
        ctx.done({port: ctx.inputs["in"]})


class TimerThrottle(_Timed):
    """At most one packet per ``interval_ms``.

    Ports: in ``in`` (any) → out ``out``, ``dropped`` (packets refused in ``"drop"`` mode).
    Config: ``interval_ms`` (number > 0, required), ``mode`` (``"drop"``, default: packets
    inside the interval go to ``dropped``; ``"wait"``: each packet waits until the interval
    since the previous one has passed — a rate limiter that loses nothing).
    """

    component = "tpl_timer_throttle"
    inports = ["in"]
    outports = ["out", "dropped"]

    async def run(self, ctx: ActorContext) -> None:
        interval = config_number(ctx, "interval_ms", minimum=0, exclusive_minimum=True) / 1000
        mode = config_choice(ctx, "mode", ("drop", "wait"), "drop")
        now = self.clock()
        last = ctx.pool_get("timer", "last")
        if last is not None and now - last < interval:
            if mode == "drop":
                ctx.done({"dropped": ctx.inputs["in"]})
                return
            await self.sleep(last + interval - now)
            now = max(self.clock(), last + interval)
        ctx.pool_upsert("timer", "last", now)
        ctx.done({"out": ctx.inputs["in"]})


class TimerNow(LibraryActor):
    """The current wall-clock time, for every trigger packet.

    Ports: in ``in`` (any, a trigger) → out ``out``. Config: ``format`` (``"unix"``, default:
    Float seconds since the epoch; ``"unix_ms"``: Integer milliseconds; ``"iso"``: String,
    ISO 8601 in UTC such as ``2026-01-02T03:04:05.678+00:00``).
    """

    component = "tpl_timer_now"
    inports = ["in"]
    outports = ["out"]

    def run(self, ctx: ActorContext) -> None:
        fmt = config_choice(ctx, "format", ("unix", "unix_ms", "iso"), "unix")
        now = time.time()
        if fmt == "unix":
            out = Message.float(now)
        elif fmt == "unix_ms":
            out = Message.integer(int(now * 1000))
        else:
            out = Message.string(dt.datetime.fromtimestamp(now, dt.UTC)
                                 .isoformat(timespec="milliseconds"))
        ctx.done({"out": out})


TIME_TEMPLATES: dict[str, type[LibraryActor]] = {
    cls.component: cls
    for cls in (TimerInterval, TimerDelay, TimerDebounce, TimerThrottle, TimerNow)
}
