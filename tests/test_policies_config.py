"""Declaring policies: the bad-config table, FBP JSON ``metadata.policies``, plugin policies
through the ``reflow_policy`` hook, the new events, and nodes without policies untouched."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from _policies_support import Scripted, datas, one_node, scripted

from reflow import Graph, Message, Network, PolicyError
from reflow._core._events import EVENT_FIELDS, EVENT_TYPES, EventStream
from reflow._core._policies_base import Policy, Proceed, TickCall, TickOutcome
from reflow._loader._plugins import register_plugin, unregister_plugin
from reflow.hookspecs import hookimpl

HUGE = "x" * 1_000_000

# declared policies -> key at fault -> fragment of the message
BAD = [
    ("retry", "policies", "expected an object keyed by policy name"),
    ({1: 2}, "policies", "expected policy names"),
    ({"retry": "3"}, "retry", "expected an object"),
    ({"retry": {"attempts": 0}}, "retry.attempts", "expected an integer from 1 to 100"),
    ({"retry": {"attempts": True}}, "retry.attempts", "expected an integer from 1 to 100"),
    ({"retry": {"attempts": 101}}, "retry.attempts", "expected an integer from 1 to 100"),
    ({"retry": {"attempts": 2.0}}, "retry.attempts", "expected an integer"),
    ({"retry": {"backoff_s": -1}}, "retry.backoff_s", "expected a number of seconds from 0"),
    ({"retry": {"backoff_s": float("nan")}}, "retry.backoff_s", "number of seconds"),
    ({"retry": {"backoff_s": float("inf")}}, "retry.backoff_s", "number of seconds"),
    ({"retry": {"backoff_s": "1"}}, "retry.backoff_s", "number of seconds"),
    ({"retry": {"backoff_s": 1e12}}, "retry.backoff_s", "to 86400"),
    ({"retry": {"backoff_s": 2, "max_delay_s": 1}}, "retry.max_delay_s", "at least retry.backoff"),
    ({"retry": {"nope": 1}}, "retry.nope", "unknown key; expected one of attempts"),
    ({"retry": {"on": "not a name!"}}, "retry.on", "expected error class names"),
    ({"retry": {"on": [1]}}, "retry.on", "expected error class names"),
    ({"retry": {"on": ["E"] * 65}}, "retry.on", "at most 64"),
    ({"retry": {"on": {"a": 1}}}, "retry.on", "expected a list"),
    ({"retry": {"match": "("}}, "retry.match", "expected a regular expression"),
    ({"retry": {"match": ""}}, "retry.match", "non-empty string"),
    ({"retry": {"match": HUGE}}, "retry.match", "at most 1000 characters"),
    ({"timeout_s": 0}, "timeout_s", "above 0"),
    ({"timeout_s": -1}, "timeout_s", "above 0"),
    ({"timeout_s": "2"}, "timeout_s", "number of seconds"),
    ({"timeout_s": True}, "timeout_s", "number of seconds"),
    ({"timeout_s": HUGE}, "timeout_s", "number of seconds"),
    ({"timeout_s": 1e6}, "timeout_s", "to 86400"),
    ({"circuit_breaker": 5}, "circuit_breaker", "expected an object"),
    ({"circuit_breaker": {"failures": 0}}, "circuit_breaker.failures", "integer from 1"),
    ({"circuit_breaker": {"window_s": 0}}, "circuit_breaker.window_s", "above 0"),
    ({"circuit_breaker": {"cooldown_s": -1}}, "circuit_breaker.cooldown_s", "from 0"),
    ({"circuit_breaker": {"clock": "now"}}, "circuit_breaker.clock", "expected a callable"),
    ({"circuit_breaker": {"threshold": 3}}, "circuit_breaker.threshold", "unknown key"),
    ({"rate_limit": {}}, "rate_limit.rate", "is required"),
    ({"rate_limit": {"rate": 0}}, "rate_limit.rate", "above 0"),
    ({"rate_limit": {"rate": -3}}, "rate_limit.rate", "above 0"),
    ({"rate_limit": {"rate": 1e10}}, "rate_limit.rate", "to 1e9"),
    ({"rate_limit": {"rate": 5, "burst": 0.5}}, "rate_limit.burst", "from 1 to 1e9"),
    ({"rate_limit": {"rate": 5, "key": ""}}, "rate_limit.key", "non-empty string"),
    ({"rate_limit": {"rate": 5, "key": 7}}, "rate_limit.key", "non-empty string"),
    ({"cache": []}, "cache", "expected an object"),
    ({"cache": {"ttl_s": 0}}, "cache.ttl_s", "above 0"),
    ({"cache": {"version": 5}}, "cache.version", "expected a string"),
    ({"cache": {"max_entries": 0}}, "cache.max_entries", "integer from 1"),
    ({"cache": {"path": ""}}, "cache.path", "non-empty string"),
    ({"cache": {"path": "a\x00b"}}, "cache.path", "non-empty string"),
    ({"dead_letter": "dead"}, "dead_letter", "expected an object"),
    ({"dead_letter": {"port": ""}}, "dead_letter.port", "non-empty string"),
    ({"dead_letter": {"port": " dead"}}, "dead_letter.port", "without spaces"),
    ({"dead_letter": {"port": "out"}}, "dead_letter.port", "not one of the actor's out-ports"),
    ({"bogus": {}}, "bogus", "unknown policy; expected one of retry, timeout_s"),
]  # fmt: skip


@pytest.mark.parametrize(("declared", "key", "fragment"), BAD, ids=[r[1] for r in BAD])
def test_bad_policy_config_is_a_policy_error(declared: Any, key: str, fragment: str) -> None:
    net = Network()
    net.register_actor("t", Scripted())
    t0 = time.monotonic()
    with pytest.raises(PolicyError) as info:
        net.add_node("node-1", "t", policies=declared)
    assert time.monotonic() - t0 < 1.0
    err = info.value
    assert fragment in str(err)
    assert err.node == "node-1" and err.key == key
    assert "node 'node-1'" in str(err) and repr(key) in str(err)
    assert len(str(err)) < 400  # a huge value is cut short, not echoed
    assert net.nodes() == []  # nothing half-added


def test_an_empty_policies_dict_adds_nothing() -> None:
    actor = Scripted()
    net, _ = one_node(actor, {})
    node = net._sched.nodes["n"]
    assert node.mode == "inline" and node.run == actor.run and net._policy_host is None


def test_a_node_without_policies_is_not_wrapped() -> None:
    actor = Scripted()
    net = Network()
    net.register_actor("t", actor)
    net.add_node("plain", "t")
    net.add_node("ruled", "t", policies={"retry": 2})
    plain, ruled = net._sched.nodes["plain"], net._sched.nodes["ruled"]
    assert plain.run == actor.run and plain.mode == "inline"
    assert ruled.run != actor.run and ruled.mode == "async"


# -- FBP JSON ---------------------------------------------------------------------------------

POLICIES = {
    "retry": {"attempts": 3, "backoff_s": 0.001},
    "timeout_s": 2,
    "circuit_breaker": {"failures": 5, "window_s": 60, "cooldown_s": 30},
    "rate_limit": {"rate": 1000, "burst": 10},
    "cache": {"ttl_s": 60, "version": "1"},
}


def _doc(policies: Any) -> dict[str, Any]:
    return {
        "caseSensitive": True,
        "properties": {"name": "p"},
        "processes": {
            "n": {"component": "t", "metadata": {"config": {}, "policies": policies}},
        },
        "connections": [{"data": 4, "tgt": {"process": "n", "port": "in"}}],
        "inports": {},
        "outports": {"result": {"process": "n", "port": "out"}},
    }


def test_metadata_policies_round_trip_through_graph_json() -> None:
    doc = _doc(POLICIES)
    back = Graph.from_json(json.dumps(doc)).to_json()
    assert back["processes"]["n"]["metadata"]["policies"] == POLICIES
    assert Graph.from_json(back).to_json() == back


def test_a_graph_runs_its_nodes_policies() -> None:
    actor = scripted("inline", ["raise:RuntimeError:x"])
    net = Network.from_graph(_doc(POLICIES), templates={"t": actor})
    out = net.collect("result")
    with net:
        summary = net.run(timeout=10)
    assert summary.failure_count == 0 and datas(out) == [4] and actor.calls == 2
    assert net._sched.nodes["n"].mode == "async"


def test_a_bad_policy_in_graph_json_names_the_node() -> None:
    net = Network.from_graph(_doc({"retry": {"attempts": -1}}), templates={"t": Scripted()})
    with pytest.raises(PolicyError, match=r"policy 'retry.attempts' of node 'n'"):
        net.run(timeout=5)


# -- plugins ----------------------------------------------------------------------------------


class Tally(Policy):
    """Counts ticks and tags every output."""

    name = "tally"

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.ticks = 0

    async def around(self, call: TickCall, proceed: Proceed) -> TickOutcome:
        self.ticks += 1
        outcome = await proceed(call)
        if outcome.ok:
            outcome.pairs = [
                (p, Message.string(f"{self.tag}:{m['data']}")) for p, m in outcome.pairs
            ]
        return outcome

    def snapshot(self) -> Any:
        return {"ticks": self.ticks}


class Garbage(Policy):
    async def around(self, call: TickCall, proceed: Proceed) -> TickOutcome:
        return 42  # type: ignore[return-value]


class TallyPlugin:
    made: list[Tally] = []

    @hookimpl
    def reflow_policy(self, name: str, config: Any) -> Any:
        if name == "tally":
            if not isinstance(config, dict) or not isinstance(config.get("tag"), str):
                raise PolicyError("expected {'tag': str}")
            policy = Tally(config["tag"])
            self.made.append(policy)
            return policy
        if name == "not_a_policy":
            return object()
        if name == "garbage":
            return Garbage()
        if name == "broken":
            raise KeyError("oops")
        return None


@pytest.fixture
def plugin() -> Iterator[type[TallyPlugin]]:
    name = register_plugin(TallyPlugin(), name="test-policy-tally")
    TallyPlugin.made.clear()
    try:
        yield TallyPlugin
    finally:
        unregister_plugin(name)


def test_a_plugin_policy_wraps_each_tick(plugin: type[TallyPlugin]) -> None:
    actor = scripted("inline", ["raise:RuntimeError:x"])
    net, out = one_node(
        actor, {"tally": {"tag": "t"}, "retry": {"attempts": 2, "backoff_s": 0.001}}, 1, 2
    )
    with net:
        net.run(timeout=10)
        state = net._policy_host.runners["n"].snapshot()
    assert datas(out) == ["t:1", "t:2"]
    assert plugin.made[0].ticks == 2 and actor.calls == 3  # outside the retries
    assert state == {"tally": {"ticks": 2}}


def test_a_plugin_policy_returning_garbage_fails_the_tick(plugin: type[TallyPlugin]) -> None:
    net, out = one_node(scripted("inline"), {"garbage": {}}, 1)
    with net:
        summary = net.run(timeout=10)
    assert datas(out) == [] and summary.failure_count == 1
    assert isinstance(summary.failures[0].exception, PolicyError)
    assert "policy 'garbage' of node 'n': around() returned a int" in summary.failures[0].error


@pytest.mark.parametrize(
    ("declared", "fragment"),
    [
        ({"tally": {"tag": 5}}, "policy 'tally' of node 'n': expected {'tag': str}"),
        ({"not_a_policy": {}}, "the plugin returned a object, expected a reflow Policy"),
        ({"broken": {}}, "the plugin providing it raised KeyError"),
        ({"nobody": {}}, "unknown policy"),
    ],
)
def test_plugin_policy_errors(plugin: type[TallyPlugin], declared: Any, fragment: str) -> None:
    net = Network()
    net.register_actor("t", Scripted())
    with pytest.raises(PolicyError) as info:
        net.add_node("n", "t", policies=declared)
    assert fragment in str(info.value) and info.value.node == "n"


# -- events -----------------------------------------------------------------------------------

EVENTS = [
    ("PolicyRetry", ("actorId", "attempt", "delay", "error")),
    ("CircuitStateChanged", ("actorId", "old", "new")),
    ("CacheHit", ("actorId",)),
    ("RateLimited", ("actorId", "waited_s")),
    ("TickTimedOut", ("actorId", "limit_s")),
    ("DeadLetter", ("actorId", "error")),
]


@pytest.mark.parametrize(("kind", "fields"), EVENTS)
def test_policy_events_are_declared(kind: str, fields: tuple[str, ...]) -> None:
    assert kind in EVENT_TYPES and EVENT_FIELDS[kind] == fields


def _busy_net() -> Network:
    actor = scripted("inline", ["raise:RuntimeError:x", "raise:RuntimeError:y", "block"])
    actor.release.set()
    net = Network()
    net.register_actor("t", actor)
    policies = {
        "retry": {"attempts": 2, "backoff_s": 0.001},
        "circuit_breaker": {"failures": 2, "window_s": 60, "cooldown_s": 60},
        "rate_limit": {"rate": 5, "burst": 1},
        "cache": {},
        "timeout_s": 5,
    }
    net.add_node("n", "t", policies=policies)
    for p in (1, 1, 1):
        net.add_initial("n", "in", Message.integer(p))
    return net


def test_policy_events_reach_subscribers_as_records_and_dicts() -> None:
    net = _busy_net()
    stream = net.events(kinds=[k for k, _ in EVENTS])
    with net:
        net.run(timeout=10)
        records = stream.recv_records(100)
    kinds = [r[0] for r in records]
    assert {"PolicyRetry", "CircuitStateChanged", "DeadLetter", "RateLimited"} <= set(kinds)
    for r in records:
        assert len(r) == 2 + len(EVENT_FIELDS[r[0]])
        d = EventStream.as_dict(r)
        assert d["_type"] == r[0] and d["actorId"] == "n"
        assert set(d) == {"_type", "timestamp", *EVENT_FIELDS[r[0]]}


def test_policy_events_cost_nothing_without_subscribers() -> None:
    net = _busy_net()
    with net:
        net.run(timeout=10)
        assert net._hub.seq == 0 and net._hub.pending == []


def test_dead_letters_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from reflow._core import _policies_runner

    monkeypatch.setattr(_policies_runner, "DEAD_LETTERS_KEPT", 10)
    actor = scripted("inline", ["fail:x"] * 50)
    net, _ = one_node(actor, {"dead_letter": {}}, *range(50))
    with net:
        net.run(timeout=10)
    assert len(net.dead_letters()) == 10 and net._policy_host.dead_letters_dropped == 40


# -- subgraphs --------------------------------------------------------------------------------


def _subgraph(inner_policies: Any) -> Any:
    from reflow import SubgraphBuilder

    g = Graph("inner")
    g.add_node("x", "tpl_t", {"config": {}, "policies": inner_policies})
    g.add_inport("value", "x", "in")
    g.add_outport("result", "x", "out")
    sb = SubgraphBuilder(g.to_json())
    sb.register_actor("tpl_t", scripted("inline", ["raise:RuntimeError:x"]))
    return sb.build()


def test_policies_on_a_subgraph_node_are_refused() -> None:
    net = Network()
    net.register_actor("sub", _subgraph(None))
    with pytest.raises(PolicyError, match="a subgraph node cannot have policies") as info:
        net.add_node("s", "sub", policies={"retry": 2})
    assert info.value.node == "s"


def test_policies_inside_a_subgraph_apply_to_its_inner_node() -> None:
    net = Network()
    net.register_actor("sub", _subgraph({"retry": {"attempts": 2, "backoff_s": 0.001}}))
    net.add_node("s", "sub")
    out = net.collect("s", "result")
    net.add_initial("s", "value", Message.integer(3))
    with net:
        summary = net.run(timeout=10)
    assert summary.failure_count == 0 and datas(out) == [3]
