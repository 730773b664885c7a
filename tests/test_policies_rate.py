"""Rate limit: a token bucket per node or shared by key; waiting never blocks the scheduler."""

from __future__ import annotations

import time
from typing import Any

import pytest
from _policies_support import MODES, FakeClock, Scripted, datas, one_node, scripted

from reflow import Message, Network, PolicyError
from reflow._core._policies_state import TokenBucket


def test_token_bucket_on_a_fake_clock() -> None:
    clock = FakeClock()
    b = TokenBucket(10.0, 2.0, clock)
    assert [b.reserve() for _ in range(4)] == pytest.approx([0.0, 0.0, 0.1, 0.2])
    clock.advance(1.0)  # 10 tokens earned, 2 owed, at most 2 kept
    assert b.reserve() == 0.0
    fresh = TokenBucket(10.0, 2.0, clock)
    fresh.restore(b.snapshot())
    assert fresh.reserve() == 0.0 and fresh.reserve() == pytest.approx(0.1)


@pytest.mark.parametrize("mode", MODES)
def test_a_rate_limited_node_waits_for_its_tokens(mode: str) -> None:
    actor = scripted(mode)
    net, out = one_node(actor, {"rate_limit": {"rate": 20, "burst": 1}}, *range(6))
    ev = net.events(kinds=["RateLimited"])
    with net:
        t0 = time.monotonic()
        net.run(timeout=10)
        elapsed = time.monotonic() - t0
        waits = [e["waited_s"] for e in ev.drain()]
    assert datas(out) == list(range(6))
    assert elapsed >= 5 / 20 * 0.9
    assert len(waits) == 5 and all(0 < w <= 5 / 20 + 1e-6 for w in waits)


def test_a_key_shares_one_bucket_across_two_nodes() -> None:
    net = Network()
    net.register_actor("t", Scripted())
    limit = {"rate_limit": {"rate": 20, "burst": 1, "key": "api"}}
    net.add_node("a", "t", policies=limit)
    net.add_node("b", "t", policies=limit)
    outs = [net.collect("a", "out"), net.collect("b", "out")]
    for i in range(3):
        net.add_initial("a", "in", Message.integer(i))
        net.add_initial("b", "in", Message.integer(i))
    ev = net.events(kinds=["RateLimited"])
    with net:
        t0 = time.monotonic()
        net.run(timeout=10)
        elapsed = time.monotonic() - t0
        limited = {e["actorId"] for e in ev.drain()}
    assert [datas(o) for o in outs] == [[0, 1, 2], [0, 1, 2]]
    assert elapsed >= 5 / 20 * 0.9  # six tokens from one bucket, not three from each
    assert limited == {"a", "b"}


def test_a_shared_key_with_another_rate_is_refused() -> None:
    net = Network()
    net.register_actor("t", Scripted())
    net.add_node("a", "t", policies={"rate_limit": {"rate": 20, "key": "api"}})
    with pytest.raises(PolicyError, match=r"key 'api' is shared with another node at rate 20"):
        net.add_node("b", "t", policies={"rate_limit": {"rate": 5, "key": "api"}})
    assert net.nodes() == ["a"]


def test_waiting_for_tokens_does_not_block_the_other_nodes() -> None:
    stamps: dict[str, float] = {}

    class Stamp(Scripted):
        def run(self, ctx: Any) -> None:
            stamps[ctx.node] = time.monotonic()
            super().run(ctx)

    net = Network()
    net.register_actor("t", Stamp())
    net.add_node("slow", "t", policies={"rate_limit": {"rate": 4, "burst": 1}})
    net.add_node("fast", "t")
    for i in range(3):
        net.add_initial("slow", "in", Message.integer(i))
    for i in range(200):
        net.add_initial("fast", "in", Message.integer(i))
    with net:
        net.run(timeout=10)
    assert stamps["slow"] - stamps["fast"] > 0.3  # the plain node finished during the waits
