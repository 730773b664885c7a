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
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from .._core._actor import ActorContext
from .._core._messages import Message
from .._errors import ActorError
from ._base import (
    LibraryActor,
    config_bool,
    config_choice,
    config_int,
    config_number,
    config_str,
)

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
            out = Message.string(
                dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="milliseconds")
            )
        ctx.done({"out": out})


# -- offbit_reflow's time templates (same ids, ports and config keys) ----------------------
# They wait with ctx.wake_after instead of a background task or a sleep inside the tick: a
# waiting node holds no thread, later packets are not stuck behind a sleep, and shutdown()
# cancels what is pending.

_UNITS_MS = {
    "milliseconds": 1,
    "seconds": 1_000,
    "minutes": 60_000,
    "hours": 3_600_000,
    "days": 86_400_000,
}


def _now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _trigger_payload(template: str, values: dict[str, str]) -> Message:
    """The SDK's payload templates: ``${name}`` substituted, then JSON if it parses (an
    Object for a JSON object, the natural kind otherwise), else the text as a String."""
    text = template
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    try:
        value = json.loads(text)
    except ValueError:
        return Message.string(text)
    return Message.object(value) if isinstance(value, dict) else Message.from_value(value)


class IntervalTrigger(_Timed):
    """Emits ``trigger`` every ``interval`` (in ``intervalUnit``) once started.

    The first packet on ``start`` (any message) starts it; later packets are ignored. With
    ``startImmediately`` the first trigger goes out at once, then one per interval on a fixed
    schedule (a slow consumer does not make it drift). After ``maxExecutions`` triggers
    (0 = no end) it sends Flow on ``done`` and stops. An endless trigger keeps the network
    busy: use ``start()``/``shutdown()`` or ``run(timeout=...)`` with it.
    Ports: in ``start`` → out ``trigger`` (the payload), ``done`` (Flow).
    Config: ``interval`` (integer > 0, default 60000), ``intervalUnit`` (milliseconds,
    seconds, minutes, hours, days; default milliseconds), ``startImmediately`` (default
    true), ``maxExecutions`` (integer >= 0, default 0), ``payload`` (JSON text; ``${timestamp}``
    — RFC 3339 UTC — and ``${executionCount}`` are substituted; default
    ``{"timestamp": "${timestamp}"}``).
    """

    component = "tpl_interval_trigger"
    inports = ["start"]
    outports = ["trigger", "done"]
    outport_types = {"done": "Flow"}
    config_schema = {
        "interval": {"type": "integer", "default": 60000},
        "intervalUnit": {"type": "string", "default": "milliseconds"},
        "startImmediately": {"type": "boolean", "default": True},
        "maxExecutions": {"type": "integer", "default": 0},
        "payload": {"type": "string", "default": '{"timestamp": "${timestamp}"}'},
    }
    wall_clock: Callable[[], dt.datetime] = staticmethod(_now_utc)

    def run(self, ctx: ActorContext) -> None:
        interval = config_int(ctx, "interval", 60000, minimum=1)
        unit = config_choice(ctx, "intervalUnit", tuple(_UNITS_MS), "milliseconds")
        period = interval * _UNITS_MS[unit] / 1000.0
        if period > 86_400:
            raise ActorError(f"config 'interval': {interval} {unit} is more than one day")
        immediate = config_bool(ctx, "startImmediately", True)
        limit = config_int(ctx, "maxExecutions", 0, minimum=0)
        template = config_str(ctx, "payload", '{"timestamp": "${timestamp}"}')
        state = ctx.pool_get("_trigger", "state")
        if ctx.inputs:  # a packet on start
            if state is not None:  # already running: ignored, as in the SDK
                ctx.done()
                return
            state = {"start": self.clock(), "count": 0, "slot": 0}
            if immediate:
                state["count"] = 1
                ctx.emit("trigger", self._payload(template, 1))
        else:  # woken: the next slot of the schedule is due
            if state is None:
                ctx.done()
                return
            state["count"] += 1
            if limit and state["count"] > limit:
                ctx.pool_upsert("_trigger", "state", {**state, "finished": True})
                ctx.done({"done": Message.flow()})
                return
            ctx.emit("trigger", self._payload(template, state["count"]))
        state["slot"] += 1
        ctx.pool_upsert("_trigger", "state", state)
        due = state["start"] + state["slot"] * period
        ctx.wake_after(max(0.0, due - self.clock()))
        ctx.done()

    def _payload(self, template: str, count: int) -> Message:
        now = self.wall_clock().isoformat()
        return _trigger_payload(template, {"timestamp": now, "executionCount": str(count)})


#: commonSchedules presets, as the SDK names them.
_PRESETS = {
    "Every minute": "* * * * *",
    "Every 5 minutes": "*/5 * * * *",
    "Every 15 minutes": "*/15 * * * *",
    "Every 30 minutes": "*/30 * * * *",
    "Every hour": "0 * * * *",
    "Every day at midnight": "0 0 * * *",
    "Every Monday at 9 AM": "0 9 * * 1",
    "First day of month": "0 0 1 * *",
}


class CronSchedule:
    """A five-field cron expression (minute hour day-of-month month day-of-week, UTC):
    ``*``, numbers, ranges ``a-b``, lists ``a,b`` and steps ``*/n`` / ``a-b/n``; day of week
    0-7 (0 and 7 are Sunday). As in cron, when both day fields are restricted a day matching
    either one matches."""

    _FIELDS = (
        ("minute", 0, 59),
        ("hour", 0, 23),
        ("day of month", 1, 31),
        ("month", 1, 12),
        ("day of week", 0, 7),
    )

    def __init__(self, expr: str) -> None:
        parts = expr.split()
        if len(parts) != 5:
            raise ActorError(
                f"config 'cronExpression': {expr!r} must have 5 fields "
                f"(minute hour day-of-month month day-of-week), got {len(parts)}"
            )
        self.expr = expr
        sets = [
            self._field(p, name, lo, hi)
            for p, (name, lo, hi) in zip(parts, self._FIELDS, strict=True)
        ]
        self.minutes, self.hours, self.days, self.months, dows = sets
        self.dows = {d % 7 for d in dows}
        self.any_day = parts[2] == "*"
        self.any_dow = parts[4] == "*"

    @staticmethod
    def _field(text: str, name: str, lo: int, hi: int) -> set[int]:
        out: set[int] = set()
        for item in text.split(","):
            base, _, step_text = item.partition("/")
            try:
                step = int(step_text) if step_text else 1
                if base == "*":
                    a, b = lo, hi
                elif "-" in base:
                    a_text, b_text = base.split("-", 1)
                    a, b = int(a_text), int(b_text)
                else:
                    a = b = int(base)
                    if step_text:
                        b = hi
            except ValueError:
                raise ActorError(
                    f"config 'cronExpression': {item!r} is not a valid {name} field"
                ) from None
            if step < 1 or not lo <= a <= b <= hi:
                raise ActorError(f"config 'cronExpression': {item!r} is outside {name} {lo}-{hi}")
            out.update(range(a, b + 1, step))
        return out

    def _day_ok(self, day: dt.date) -> bool:
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.dows
        if self.any_day and self.any_dow:
            return True
        if self.any_day:
            return dow
        if self.any_dow:
            return dom
        return dom or dow

    def next_after(self, t: dt.datetime) -> dt.datetime:
        """The first matching minute strictly after ``t`` (UTC), within five years."""
        start = (t + dt.timedelta(minutes=1)).replace(second=0, microsecond=0)
        day = start.date()
        for _ in range(366 * 5):
            if day.month in self.months and self._day_ok(day):
                first = start if day == start.date() else None
                for hour in sorted(self.hours):
                    if first is not None and hour < first.hour:
                        continue
                    for minute in sorted(self.minutes):
                        if first is not None and hour == first.hour and minute < first.minute:
                            continue
                        return dt.datetime(
                            day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC
                        )
            day += dt.timedelta(days=1)
        raise ActorError(f"config 'cronExpression': {self.expr!r} never matches")


class CronTrigger(_Timed):
    """Emits ``trigger`` at each minute a cron schedule names (UTC), once started.

    (The SDK maps a few expressions onto fixed intervals; this follows the expression.)
    ``commonSchedules`` picks a preset (Every minute, Every 5/15/30 minutes, Every hour, Every
    day at midnight, Every Monday at 9 AM, First day of month); ``Custom`` uses
    ``cronExpression``. The first packet on ``start`` (any message) starts it; later packets
    are ignored. After ``maxExecutions`` triggers (0 = no end) it stops.
    Ports: in ``start`` → out ``trigger``.
    Config: ``commonSchedules`` (default Custom), ``cronExpression`` (default ``0 * * * *``),
    ``maxExecutions`` (integer >= 0, default 0), ``payload`` (JSON text with ``${timestamp}``
    and ``${schedule}``; default ``{"timestamp": "${timestamp}", "schedule": "${schedule}"}``).
    """

    component = "tpl_cron_trigger"
    inports = ["start"]
    outports = ["trigger"]
    config_schema = {
        "commonSchedules": {"type": "string", "default": "Custom"},
        "cronExpression": {"type": "string", "default": "0 * * * *"},
        "maxExecutions": {"type": "integer", "default": 0},
        "payload": {
            "type": "string",
            "default": '{"timestamp": "${timestamp}", "schedule": "${schedule}"}',
        },
    }
    wall_clock: Callable[[], dt.datetime] = staticmethod(_now_utc)

    def run(self, ctx: ActorContext) -> None:
        preset = config_str(ctx, "commonSchedules", "Custom")
        if preset != "Custom" and preset not in _PRESETS:
            raise ActorError(
                f"config 'commonSchedules' must be Custom or one of "
                f"{', '.join(map(repr, _PRESETS))}, got {preset!r}"
            )
        expr = _PRESETS.get(preset) or config_str(ctx, "cronExpression", "0 * * * *")
        schedule = CronSchedule(expr)
        limit = config_int(ctx, "maxExecutions", 0, minimum=0)
        template = config_str(
            ctx, "payload", '{"timestamp": "${timestamp}", "schedule": "${schedule}"}'
        )
        state = ctx.pool_get("_cron", "state")
        if (state is None) != bool(ctx.inputs):  # a packet once running, or a stray wake
            ctx.done()
            return
        state = state or {"count": 0, "due": None}
        now = self.wall_clock()
        after = now
        due = state["due"]
        if due is not None and now >= due - dt.timedelta(seconds=1):  # a due minute came
            state["count"] += 1
            ctx.emit(
                "trigger",
                _trigger_payload(template, {"timestamp": now.isoformat(), "schedule": expr}),
            )
            after = max(now, due)  # a timer a little early must not fire this minute twice
        if limit and state["count"] >= limit:
            state["due"] = None
        else:
            # the next due minute; a wake is at most a day away (further out, the wake only
            # plans again)
            state["due"] = schedule.next_after(after)
            wait = min((state["due"] - now).total_seconds(), 86_400.0)
            ctx.wake_after(max(0.0, wait))
        ctx.pool_upsert("_cron", "state", state)
        ctx.done()


class Delay(_Timed):
    """Forwards each ``input`` packet on ``output`` ``delayMs`` after it arrived, in order.

    (The SDK sleeps inside the tick, holding the node; here each packet waits on a timer of
    its own, so packets arriving during a delay are not delayed twice.)
    Ports: in ``input`` (any) → out ``output``. Config: ``delayMs`` (integer >= 0, default
    1000).
    """

    component = "tpl_delay"
    inports = ["input"]
    outports = ["output"]
    config_schema = {"delayMs": {"type": "integer", "default": 1000}}

    def run(self, ctx: ActorContext) -> None:
        delay = config_int(ctx, "delayMs", 1000, minimum=0, maximum=86_400_000) / 1000.0
        now = self.clock()
        waiting = ctx.pool_get("_delay", "queue")
        if waiting is None:  # packets in arrival order, each with when it is due
            waiting = deque()
            ctx.pool_upsert("_delay", "queue", waiting)
        if "input" in ctx.inputs:
            waiting.append((now + delay, ctx.inputs["input"]))
            ctx.wake_after(delay)
        while waiting and waiting[0][0] <= now + 1e-9:
            ctx.emit("output", waiting.popleft()[1])
        ctx.done()


class DateTime(LibraryActor):
    """The current time (UTC), once when the network starts.

    ``operation`` ``now``: ``timestamp`` (Integer milliseconds since the epoch),
    ``formatted`` (String, ``format`` through strftime; chrono's ``%.3f`` — a dot and
    milliseconds — is understood) and ``output`` (Object: timestamp, iso, formatted, year,
    month, day, hour, minute, second as text); ``epoch``: ``timestamp`` in seconds; any other
    operation sends an Error on ``error``.
    Ports: no in-ports → out ``output``, ``timestamp``, ``formatted``, ``error``.
    Config: ``operation`` (default now), ``format`` (default ``%Y-%m-%dT%H:%M:%S%.3fZ``).
    """

    component = "tpl_date_time"
    inports: list[str] = []
    outports = ["output", "timestamp", "formatted", "error"]
    outport_types = {
        "output": "Object",
        "timestamp": "Integer",
        "formatted": "String",
        "error": "Error",
    }
    config_schema = {
        "operation": {"type": "string", "default": "now"},
        "format": {"type": "string", "default": "%Y-%m-%dT%H:%M:%S%.3fZ"},
    }
    wall_clock: Callable[[], dt.datetime] = staticmethod(_now_utc)

    def run(self, ctx: ActorContext) -> None:
        op = config_str(ctx, "operation", "now")
        fmt = config_str(ctx, "format", "%Y-%m-%dT%H:%M:%S%.3fZ")
        now = self.wall_clock()
        if op == "epoch":
            ctx.done({"timestamp": Message.integer(int(now.timestamp()))})
            return
        if op != "now":
            ctx.done({"error": Message.error(f"Unknown operation: {op}")})
            return
        millis = int(now.timestamp() * 1000)
        text = now.strftime(fmt.replace("%.3f", f".{now.microsecond // 1000:03d}"))
        ctx.done(
            {
                "timestamp": Message.integer(millis),
                "formatted": Message.string(text),
                "output": Message.object(
                    {
                        "timestamp": millis,
                        "iso": now.isoformat(),
                        "formatted": text,
                        "year": now.strftime("%Y"),
                        "month": now.strftime("%m"),
                        "day": now.strftime("%d"),
                        "hour": now.strftime("%H"),
                        "minute": now.strftime("%M"),
                        "second": now.strftime("%S"),
                    }
                ),
            }
        )


TIME_TEMPLATES: dict[str, type[LibraryActor]] = {
    cls.component: cls
    for cls in (
        TimerInterval,
        TimerDelay,
        TimerDebounce,
        TimerThrottle,
        TimerNow,
        IntervalTrigger,
        CronTrigger,
        Delay,
        DateTime,
    )
}
