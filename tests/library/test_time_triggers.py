"""offbit_reflow's time templates — tpl_interval_trigger, tpl_cron_trigger, tpl_delay,
tpl_date_time — with its ids, ports and config keys, waiting through ctx.wake_after (issue
#10). Cron schedules are checked on a table of expressions worked out by hand; the trigger
templates read the wall clock through ``wall_clock``, which tests replace."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from reflow import Actor, ActorError, Message, Network
from reflow.library._time import CronSchedule, CronTrigger, DateTime, Delay, IntervalTrigger

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


class Sink(Actor):
    component = "t_sink"
    inports = ["in"]
    outports: list[str] = []

    def __init__(self) -> None:
        self.got: list[Message] = []

    def run(self, ctx: Any) -> None:
        self.got.append(ctx.inputs["in"])
        ctx.done()


def graph(
    actor: Actor,
    config: dict[str, Any],
    outs: list[str],
    initial: tuple[str, Message] | None = None,
) -> tuple[Network, dict[str, Sink]]:
    net = Network()
    net.register_actor("under_test", actor)
    net.add_node("t", "under_test", config)
    sinks = {}
    for port in outs:
        sinks[port] = Sink()
        net.register_actor(f"sink_{port}", sinks[port])
        net.add_node(f"s_{port}", f"sink_{port}")
        net.add_connection("t", port, f"s_{port}", "in")
    if initial is not None:
        net.add_initial("t", initial[0], initial[1])
    return net, sinks


# -- tpl_interval_trigger ---------------------------------------------------------------------


@pytest.mark.parametrize("immediately", [True, False])
def test_interval_trigger_counts_then_says_done(immediately: bool) -> None:
    config = {
        "interval": 10,
        "maxExecutions": 3,
        "startImmediately": immediately,
        "payload": '{"n": ${executionCount}, "at": "${timestamp}"}',
    }
    net, sinks = graph(IntervalTrigger(), config, ["trigger", "done"], ("start", Message.flow()))
    summary = net.run(timeout=30)
    net.shutdown()
    assert summary.ok, summary.failures
    got = sinks["trigger"].got
    assert [m["data"]["n"] for m in got] == [1, 2, 3]
    assert all(m.kind == "Object" and m["data"]["at"].endswith("+00:00") for m in got)
    assert [m.kind for m in sinks["done"].got] == ["Flow"]


def test_interval_trigger_ignores_later_start_packets_and_plain_text_payloads() -> None:
    net, sinks = graph(
        IntervalTrigger(),
        {"interval": 5, "maxExecutions": 2, "payload": "tick ${executionCount}"},
        ["trigger", "done"],
        ("start", Message.flow()),
    )
    net.add_initial("t", "start", Message.integer(2))
    assert net.run(timeout=30).ok
    net.shutdown()
    assert [m["data"] for m in sinks["trigger"].got] == ["tick 1", "tick 2"]
    assert len(sinks["done"].got) == 1


def test_interval_units_scale_the_period() -> None:
    """1 'seconds' is a 1 s period: after the immediate trigger the node waits (the network
    is still busy a moment later), and shutdown cancels the wait."""
    net, sinks = graph(
        IntervalTrigger(),
        {"interval": 1, "intervalUnit": "seconds"},
        ["trigger", "done"],
        ("start", Message.flow()),
    )
    from reflow import RunTimeout

    with pytest.raises(RunTimeout):
        net.run(timeout=0.3)
    net.shutdown()
    assert len(sinks["trigger"].got) == 1


# -- cron ------------------------------------------------------------------------------------

NEXT = [
    ("* * * * *", "2026-12-06T10:07:30", "2026-12-06T10:08:00"),
    ("*/15 * * * *", "2026-12-06T10:07:00", "2026-12-06T10:15:00"),
    ("*/15 * * * *", "2026-12-06T10:45:00", "2026-12-06T11:00:00"),
    ("0 * * * *", "2026-12-06T23:00:00", "2026-12-07T00:00:00"),
    ("30 2 * * *", "2026-12-06T02:30:00", "2026-12-07T02:30:00"),
    ("0 9 * * 1", "2026-12-06T10:00:00", "2026-12-07T09:00:00"),  # Sunday -> Monday
    ("0 9 * * 1", "2026-12-07T09:00:00", "2026-12-14T09:00:00"),
    ("0 0 1 * *", "2026-12-06T00:00:00", "2027-01-01T00:00:00"),
    ("0 0 29 2 *", "2026-12-06T00:00:00", "2028-02-29T00:00:00"),  # the next leap day
    ("0 0 13 * 5", "2026-12-06T00:00:00", "2026-12-11T00:00:00"),  # 13th OR Friday
    ("0 12 * * 0", "2026-12-06T11:00:00", "2026-12-06T12:00:00"),  # 0 is Sunday
    ("0 12 * * 7", "2026-12-06T11:00:00", "2026-12-06T12:00:00"),  # and so is 7
    ("5,35 8-9 * * *", "2026-12-06T08:36:00", "2026-12-06T09:05:00"),
    ("0-10/5 * * * *", "2026-12-06T08:06:00", "2026-12-06T08:10:00"),
]


@pytest.mark.parametrize(
    ("expr", "after", "expected"), NEXT, ids=[f"{e} after {a}" for e, a, _ in NEXT]
)
def test_cron_next_due_minute(expr: str, after: str, expected: str) -> None:
    assert CronSchedule(expr).next_after(at(after)) == at(expected)


BAD_CRON = [
    ("* * *", "must have 5 fields"),
    ("60 * * * *", "outside minute 0-59"),
    ("* 24 * * *", "outside hour 0-23"),
    ("* * 0 * *", "outside day of month 1-31"),
    ("a * * * *", "'a' is not a valid minute field"),
    ("*/0 * * * *", "outside minute"),
    ("5-1 * * * *", "outside minute"),
    ("0 0 31 2 *", "never matches"),
]


@pytest.mark.parametrize(("expr", "fragment"), BAD_CRON, ids=[b[0] for b in BAD_CRON])
def test_bad_cron_expressions_name_the_field(expr: str, fragment: str) -> None:
    with pytest.raises(ActorError, match="cronExpression") as info:
        CronSchedule(expr).next_after(at("2026-12-06T00:00:00"))
    assert fragment in str(info.value)


def fake_wall(times: list[str]) -> Callable[[], dt.datetime]:
    seq = [at(t) for t in times]

    def now() -> dt.datetime:
        return seq.pop(0) if len(seq) > 1 else seq[0]

    return now


def test_cron_trigger_fires_at_due_minutes_and_stops_at_max() -> None:
    actor = CronTrigger()
    # start 2 s before 12:01; woken at 12:01 (fires), the clock then jumps to just before
    # 12:02 so the test does not wait a minute; woken at 12:02 (fires, the last)
    actor.wall_clock = fake_wall(
        ["2026-12-06T12:00:59.990", "2026-12-06T12:01:59.995", "2026-12-06T12:02:00.000"]
    )
    net, sinks = graph(
        actor,
        {"commonSchedules": "Every minute", "maxExecutions": 2},
        ["trigger"],
        ("start", Message.flow()),
    )
    net.add_initial("t", "start", Message.flow())  # ignored: already running
    assert net.run(timeout=30).ok
    net.shutdown()
    got = [m["data"] for m in sinks["trigger"].got]
    assert [g["schedule"] for g in got] == ["* * * * *", "* * * * *"]
    assert got[1]["timestamp"] == "2026-12-06T12:02:00+00:00"


def test_cron_trigger_refuses_an_unknown_preset() -> None:
    net, _ = graph(
        CronTrigger(), {"commonSchedules": "Weekly"}, ["trigger"], ("start", Message.flow())
    )
    summary = net.run(timeout=30)
    net.shutdown()
    assert "commonSchedules" in str(summary.failures[0].exception)


# -- tpl_delay --------------------------------------------------------------------------------


def test_delay_forwards_every_packet_in_order_after_its_delay() -> None:
    net, sinks = graph(Delay(), {"delayMs": 15}, ["output"])
    for i in range(4):
        net.add_initial("t", "input", Message.integer(i))
    summary = net.run(timeout=30)
    net.shutdown()
    assert summary.ok
    assert [m["data"] for m in sinks["output"].got] == [0, 1, 2, 3]


# -- tpl_date_time ----------------------------------------------------------------------------


def test_date_time_now() -> None:
    actor = DateTime()
    actor.wall_clock = lambda: at("2026-12-06T21:05:15.123456")
    net, sinks = graph(actor, {}, ["output", "timestamp", "formatted", "error"])
    assert net.run(timeout=30).ok
    net.shutdown()
    millis = int(at("2026-12-06T21:05:15.123456").timestamp() * 1000)
    assert [m["data"] for m in sinks["timestamp"].got] == [millis]
    assert [m["data"] for m in sinks["formatted"].got] == ["2026-12-06T21:05:15.123Z"]
    out = sinks["output"].got[0]["data"]
    assert (out["year"], out["month"], out["day"], out["hour"], out["minute"], out["second"]) == (
        "2026",
        "12",
        "06",
        "21",
        "05",
        "15",
    )
    assert sinks["error"].got == []


@pytest.mark.parametrize(
    ("config", "port", "expected"),
    [
        ({"operation": "epoch"}, "timestamp", int(at("2026-12-06T21:05:15").timestamp())),
        ({"format": "%d/%m/%Y"}, "formatted", "06/12/2026"),
        ({"operation": "parse"}, "error", "Unknown operation: parse"),
    ],
)
def test_date_time_operations(config: dict[str, Any], port: str, expected: Any) -> None:
    actor = DateTime()
    actor.wall_clock = lambda: at("2026-12-06T21:05:15")
    net, sinks = graph(actor, config, ["output", "timestamp", "formatted", "error"])
    assert net.run(timeout=30).ok
    net.shutdown()
    assert [m["data"] for m in sinks[port].got] == [expected]


# -- bad config fails only the tick, naming the key --------------------------------------------

BAD_CONFIG = [
    (IntervalTrigger, {"interval": 0}, "start", "interval"),
    (IntervalTrigger, {"intervalUnit": "weeks"}, "start", "intervalUnit"),
    (IntervalTrigger, {"interval": 2, "intervalUnit": "days"}, "start", "interval"),
    (IntervalTrigger, {"maxExecutions": -1}, "start", "maxExecutions"),
    (IntervalTrigger, {"startImmediately": "yes"}, "start", "startImmediately"),
    (Delay, {"delayMs": "soon"}, "input", "delayMs"),
    (Delay, {"delayMs": -5}, "input", "delayMs"),
    (CronTrigger, {"cronExpression": "every day"}, "start", "cronExpression"),
    (CronTrigger, {"maxExecutions": 1.5}, "start", "maxExecutions"),
    (DateTime, {"format": 3}, None, "format"),
]


@pytest.mark.parametrize(
    ("cls", "config", "port", "key"),
    BAD_CONFIG,
    ids=[f"{c.component}-{k}" for c, _, _, k in BAD_CONFIG],
)
def test_bad_config_names_the_key(
    cls: type[Actor], config: dict[str, Any], port: str | None, key: str
) -> None:
    net, _ = graph(cls(), config, [], None if port is None else (port, Message.flow()))
    summary = net.run(timeout=30)
    net.shutdown()
    assert len(summary.failures) == 1
    assert f"'{key}'" in str(summary.failures[0].exception)


# -- the catalog's ids, ports and config ---------------------------------------------------------


def _catalog_path() -> Any:
    from pathlib import Path

    here = Path(__file__).resolve()
    for base in here.parents:  # ../shared/ next to the checkout, wherever it was cloned
        path = base / "shared" / "anchor-catalog" / "catalog.json"
        if path.is_file():
            return path
    return None


@pytest.mark.skipif(_catalog_path() is None, reason="shared/anchor-catalog not found")
def test_the_time_family_matches_offbit_reflows_catalog() -> None:
    import json

    from reflow import template_actor, template_list

    catalog = json.loads(_catalog_path().read_text())
    family = [t for t in catalog if t["family"] == "time"]
    assert {t["id"] for t in family} == {
        "tpl_cron_trigger",
        "tpl_date_time",
        "tpl_delay",
        "tpl_interval_trigger",
    }
    ids = template_list()
    for t in family:
        assert t["id"] in ids
        actor = template_actor(t["id"])
        assert list(actor.inports) == [p["name"] for p in t["inports"]], t["id"]
        assert list(actor.outports) == [p["name"] for p in t["outports"]], t["id"]
        schema = type(actor).config_schema
        assert {c["name"]: c["default"] for c in t["config"]} == {
            k: v["default"] for k, v in schema.items()
        }, t["id"]
