"""Timeout policy: async ticks are cancelled; sync (inline, worker) ticks that cannot be
interrupted fail at the limit, their late results are discarded and the node takes no other
tick until the stuck call returns (issue 14, deliver 1)."""

from __future__ import annotations

import threading
import time

import pytest
from _policies_support import MODES, datas, one_node, scripted

from reflow import TickStateError, TickTimeoutError

LIMIT = 0.25
BOUND = 2.0  # a 250 ms limit stops a tick well within this, however loaded the machine


@pytest.mark.parametrize("mode", MODES)
def test_a_tick_past_its_timeout_fails_within_bounded_time(mode: str) -> None:
    actor = scripted(mode, ["sleep:5"] if mode == "async" else ["block"])
    net, out = one_node(actor, {"timeout_s": LIMIT}, 1)
    ev = net.events(kinds=["TickTimedOut", "ActorFailed"])
    try:
        t0 = time.monotonic()
        summary = net.run(timeout=10)
        elapsed = time.monotonic() - t0
        assert LIMIT * 0.9 <= elapsed < BOUND
        assert summary.failure_count == 1
        exc = summary.failures[0].exception
        assert isinstance(exc, TickTimeoutError) and exc.limit_s == LIMIT
        assert "ran past its timeout of 0.25 s" in summary.failures[0].error
        kinds = [(e["_type"], e.get("limit_s")) for e in ev.drain()]
        assert kinds == [("TickTimedOut", LIMIT), ("ActorFailed", None)]
    finally:
        actor.release.set()
        net.shutdown()
    assert datas(out) == []  # the late result of a sync tick is discarded


@pytest.mark.parametrize("mode", ["inline", "worker"])
def test_a_stuck_sync_call_holds_the_node_until_it_returns(mode: str) -> None:
    actor = scripted(mode, ["block", "ok"])
    net, out = one_node(actor, {"timeout_s": LIMIT}, 1, 2)
    timer = threading.Timer(0.8, actor.release.set)
    timer.start()
    try:
        t0 = time.monotonic()
        summary = net.run(timeout=10)
        assert time.monotonic() - t0 >= 0.7  # the second tick waited for the stuck call
        assert summary.failure_count == 1
        assert actor.most_running == 1  # never two calls of one node at once
        assert datas(out) == [2]
    finally:
        timer.cancel()
        actor.release.set()
        net.shutdown()


@pytest.mark.parametrize("mode", ["inline", "worker"])
def test_a_timed_out_tick_cannot_send_late(mode: str) -> None:
    actor = scripted(mode, ["late-send"])
    net, out = one_node(actor, {"timeout_s": LIMIT}, 1)
    try:
        net.run(timeout=10)
        actor.release.set()
        deadline = time.monotonic() + BOUND
        while actor.late_error is None and time.monotonic() < deadline:
            time.sleep(0.01)
        net.run(timeout=5)
        assert isinstance(actor.late_error, TickStateError)
        assert "sent after its tick timed out" in str(actor.late_error)
        assert datas(out) == []
    finally:
        actor.release.set()
        net.shutdown()


@pytest.mark.parametrize("mode", MODES)
def test_ticks_within_the_limit_are_untouched(mode: str) -> None:
    actor = scripted(mode, ["sleep:0.01"] * 3)
    net, out = one_node(actor, {"timeout_s": 1.0}, 1, 2, 3)
    with net:
        summary = net.run(timeout=10)
    assert summary.failure_count == 0 and datas(out) == [1, 2, 3]


@pytest.mark.parametrize("mode", MODES)
def test_timeout_with_retry_retries_the_timed_out_tick(mode: str) -> None:
    actor = scripted(mode, ["sleep:3"] if mode == "async" else ["sleep:0.6"])
    net, out = one_node(
        actor, {"timeout_s": LIMIT, "retry": {"attempts": 2, "backoff_s": 0.001}}, 4
    )
    with net:
        summary = net.run(timeout=10)
    assert summary.failure_count == 0 and datas(out) == [4] and actor.calls == 2
