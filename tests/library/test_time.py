"""reflow.library._time: timers, delay, debounce, throttle, timestamps.

The waiting actors read a ``clock`` and ``sleep`` that tests replace with a fake clock, so the
schedule is checked exactly and no test depends on how fast the machine is.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest

from reflow import Message
from reflow.library._time import (
    TimerDebounce,
    TimerDelay,
    TimerInterval,
    TimerNow,
    TimerThrottle,
)
from reflow.testing import run_tick, run_ticks


class FakeClock:
    """A monotonic clock that only moves when slept on (or told to)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


def faked(actor: Any, clock: FakeClock) -> Any:
    actor.clock = clock
    actor.sleep = clock.sleep
    return actor


def test_interval_sends_count_ticks_on_schedule() -> None:
    clock = FakeClock()
    r = run_tick(faked(TimerInterval(), clock), None, {"interval_ms": 250, "count": 3})
    r.raise_for_failures()
    assert r.values("tick") == [0, 1, 2]
    assert clock.sleeps == [0.25, 0.25, 0.25]


def test_interval_immediate_and_real_sleep() -> None:
    r = run_tick(TimerInterval(), None, {"interval_ms": 5, "count": 3, "immediate": True})
    r.raise_for_failures()
    assert r.values("tick") == [0, 1, 2]


def test_delay_waits_then_forwards() -> None:
    clock = FakeClock()
    r = run_ticks(
        faked(TimerDelay(), clock),
        [{"in": Message.integer(1)}, {"in": Message.integer(2)}],
        {"delay_ms": 40},
    )
    r.raise_for_failures()
    assert r.values("out") == [1, 2]
    assert clock.sleeps == [0.04, 0.04]
    real = run_tick(TimerDelay(), {"in": Message.string("x")}, {"delay_ms": 1})
    assert real.values("out") == ["x"]


def test_debounce_passes_the_first_of_a_burst() -> None:
    actor = TimerDebounce()
    moments = iter([0.0, 0.05, 0.10, 0.30, 0.35])  # arrival times, seconds
    actor.clock = lambda: next(moments)  # type: ignore[method-assign]
    ticks = [{"in": Message.integer(i)} for i in range(5)]
    r = run_ticks(actor, ticks, {"wait_ms": 100})
    r.raise_for_failures()
    assert r.values("out") == [0, 3]
    assert r.values("dropped") == [1, 2, 4]


def test_throttle_drop_mode() -> None:
    actor = TimerThrottle()
    moments = iter([0.0, 0.05, 0.12, 0.2, 0.23])
    actor.clock = lambda: next(moments)  # type: ignore[method-assign]
    ticks = [{"in": Message.integer(i)} for i in range(5)]
    r = run_ticks(actor, ticks, {"interval_ms": 100})
    r.raise_for_failures()
    assert r.values("out") == [0, 2, 4]  # 4 arrives 0.11 s after 2 passed
    assert r.values("dropped") == [1, 3]


def test_throttle_wait_mode_spaces_packets() -> None:
    clock = FakeClock()
    ticks = [{"in": Message.integer(i)} for i in range(3)]
    r = run_ticks(faked(TimerThrottle(), clock), ticks, {"interval_ms": 100, "mode": "wait"})
    r.raise_for_failures()
    assert r.values("out") == [0, 1, 2]
    assert "dropped" not in r.outputs
    assert clock.sleeps == [0.1, 0.1]


@pytest.mark.parametrize(
    ("fmt", "kind"), [("unix", "Float"), ("unix_ms", "Integer"), ("iso", "String")]
)
def test_now(fmt: str, kind: str) -> None:
    before = time.time()
    r = run_tick(TimerNow(), {"in": Message.flow()}, {"format": fmt})
    r.raise_for_failures()
    (msg,) = r.outputs["out"]
    assert msg["type"] == kind
    value = msg["data"]
    seconds = {
        "unix": lambda v: v,
        "unix_ms": lambda v: v / 1000,
        "iso": lambda v: dt.datetime.fromisoformat(v).timestamp(),
    }[fmt](value)
    assert before - 1 <= seconds <= time.time() + 1


@pytest.mark.parametrize(
    ("actor", "inputs", "config", "fragment"),
    [
        (TimerInterval(), None, {"count": 1}, "config 'interval_ms' is required"),
        (TimerInterval(), None, {"interval_ms": 0, "count": 1}, "config 'interval_ms' must be > 0"),
        (TimerInterval(), None, {"interval_ms": 10}, "config 'count' is required"),
        (TimerInterval(), None, {"interval_ms": 10, "count": 0}, "config 'count' must be >= 1"),
        (TimerDelay(), {"in": Message.flow()}, {"delay_ms": -1}, "config 'delay_ms' must be >= 0"),
        (
            TimerDelay(),
            {"in": Message.flow()},
            {"delay_ms": "1s"},
            "config 'delay_ms' must be a number",
        ),
        (TimerDebounce(), {"in": Message.flow()}, None, "config 'wait_ms' is required"),
        (
            TimerThrottle(),
            {"in": Message.flow()},
            {"interval_ms": 10, "mode": "queue"},
            "config 'mode' must be one of 'drop', 'wait'",
        ),
        (TimerNow(), {"in": Message.flow()}, {"format": "rfc"}, "config 'format' must be one of"),
    ],
)
def test_bad_config_fails_the_tick(
    actor: Any, inputs: dict[str, Any] | None, config: dict[str, Any], fragment: str
) -> None:
    r = run_tick(actor, inputs, config)
    assert not r.ok
    assert fragment in r.failures[0].error
