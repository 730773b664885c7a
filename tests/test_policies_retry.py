"""Retry policy and dead letters on inline, async and worker actors (issue 14, deliver 1)."""

from __future__ import annotations

from typing import Any

import pytest
from _policies_support import MODES, datas, one_node, scripted

from reflow import Actor, Message, Network

FAST = {"backoff_s": 0.001, "max_delay_s": 0.002}

# script, retry policy, expected calls, expected outputs, expected failures
RETRY_ROWS = [
    pytest.param(["raise:RuntimeError:x"] * 2, {"attempts": 3}, 3, [7], 0, id="recovers"),
    pytest.param(["raise:RuntimeError:x"] * 3, {"attempts": 3}, 3, [], 1, id="exhausted"),
    pytest.param(["fail:bad"], {"attempts": 2}, 2, [7], 0, id="fail-is-retried"),
    pytest.param(["raise:RuntimeError:x"], {"attempts": 1}, 1, [], 1, id="one-attempt"),
    pytest.param(
        ["raise:RuntimeError:x"], {"attempts": 3, "on": ["GuestTrap"]}, 1, [], 1, id="on-no-match"
    ),
    pytest.param(
        ["raise:GuestTrap:trap"], {"attempts": 3, "on": ["SandboxError"]}, 2, [7], 0, id="on-base"
    ),
    pytest.param(
        ["raise:RuntimeError:permanent"], {"attempts": 3, "match": "transient"}, 1, [], 1,
        id="match-no",
    ),
    pytest.param(
        ["raise:RuntimeError:a transient glitch"], {"attempts": 3, "match": "trans"}, 2, [7], 0,
        id="match-yes",
    ),
    pytest.param(
        ["fail:HTTP 503"], {"attempts": 3, "on": ["ActorError"], "match": r"\b503\b"}, 2, [7], 0,
        id="fail-as-ActorError",
    ),
    pytest.param(["emit-raise"], {"attempts": 2}, 2, [7], 0, id="emitted-discarded"),
    pytest.param(["send-raise"], {"attempts": 3}, 1, ["sent"], 1, id="sent-never-retried"),
    pytest.param(["stream-raise"], {"attempts": 3}, 1, ["<stream>"], 1, id="stream-never-retried"),
]  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("script", "retry", "calls", "outputs", "failures"), RETRY_ROWS)
def test_retry_table(
    mode: str,
    script: list[str],
    retry: dict[str, Any],
    calls: int,
    outputs: list[Any],
    failures: int,
) -> None:
    actor = scripted(mode, script)
    net, out = one_node(actor, {"retry": {**retry, **FAST}}, 7)
    with net:
        summary = net.run(timeout=10)
        assert actor.calls == calls
        assert datas(out) == outputs
        assert summary.failure_count == failures
        letters = net.dead_letters()
        assert len(letters) == failures
        if failures:
            assert letters[0].node == "n"
            assert letters[0].inputs == {"in": Message.integer(7)}
            assert letters[0].attempts == calls


@pytest.mark.parametrize("mode", MODES)
def test_exhausted_retry_keeps_the_last_error_and_its_class(mode: str) -> None:
    actor = scripted(mode, ["raise:ValueError:first", "raise:ValueError:second"])
    net, _ = one_node(actor, {"retry": {"attempts": 2, **FAST}}, 1)
    with net:
        summary = net.run(timeout=10)
        assert [f.error for f in summary.failures] == ["ValueError: second"]
        assert isinstance(summary.failures[0].exception, ValueError)
        assert net.dead_letters()[0].error == "ValueError: second"


@pytest.mark.parametrize("mode", MODES)
def test_dead_letter_port_carries_the_packet_and_the_error(mode: str) -> None:
    actor = scripted(mode, ["fail:nope"] * 4)
    net = Network()
    net.register_actor("t", actor)
    net.add_node(
        "n", "t", policies={"retry": {"attempts": 2, **FAST}, "dead_letter": {"port": "dead"}}
    )
    dead = net.collect("n", "dead")
    net.add_initial("n", "in", Message.integer(5))
    net.add_initial("n", "in", Message.integer(6))
    with net:
        net.run(timeout=10)
    assert [m["data"] for m in dead.messages] == [
        {"node": "n", "error": "nope", "attempts": 2, "inputs": {"in": Message.integer(v)}}
        for v in (5, 6)
    ]


def test_dead_letter_port_can_be_connected_to_a_node() -> None:
    class Sink(Actor):
        component = "sink"
        inports = ["in"]
        outports: list[str] = []
        seen: list[Any] = []

        def run(self, ctx: Any) -> None:
            self.seen.append(ctx.inputs["in"]["data"]["error"])
            ctx.done()

    net = Network()
    net.register_actor("t", scripted("inline", ["raise:RuntimeError:gone"]))
    net.register_actor("sink", Sink())
    net.add_node("n", "t", policies={"dead_letter": {"port": "dlq"}})
    net.add_node("s", "sink")
    net.add_connection("n", "dlq", "s", "in")
    net.add_initial("n", "in", Message.integer(1))
    with net:
        net.run(timeout=10)
    assert Sink.seen == ["RuntimeError: gone"]


def test_backoff_is_bounded_by_max_delay() -> None:
    actor = scripted("inline", ["raise:RuntimeError:x"] * 4)
    retry = {"attempts": 5, "backoff_s": 0.005, "max_delay_s": 0.01}
    net, out = one_node(actor, {"retry": retry}, 1)
    ev = net.events(kinds=["PolicyRetry"])
    with net:
        net.run(timeout=10)
        delays = [e["delay"] for e in ev.drain()]
    assert len(delays) == 4 and all(0 <= d <= 0.01 for d in delays)
    assert datas(out) == [1]
