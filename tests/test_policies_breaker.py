"""Circuit breaker: its state machine on a fake clock, and on a node of each execution."""

from __future__ import annotations

import pytest
from _policies_support import MODES, FakeClock, datas, one_node, scripted

from reflow import CircuitOpenError, Message
from reflow._core._policies_state import CircuitBreaker

# ops: "f" failed tick, "s" succeeded tick, "a" admit (records whether it ran), "+N" advance
BREAKER_ROWS = [
    pytest.param("f f", "open", id="threshold-opens"),
    pytest.param("f", "closed", id="below-threshold"),
    pytest.param("f +11 f", "closed", id="old-failures-leave-the-window"),
    pytest.param("f f +4 a", "open", id="cooling-down"),
    pytest.param("f f +5 a", "half_open", id="cooled-down-probe"),
    pytest.param("f f +5 a s", "closed", id="probe-succeeds"),
    pytest.param("f f +5 a f", "open", id="probe-fails"),
    pytest.param("f f +5 a f +4 a", "open", id="reopened-cools-again"),
    pytest.param("f f +5 a f +5 a s", "closed", id="second-probe-closes"),
    pytest.param("f s f", "open", id="failures-in-the-window-count-across-successes"),
]


@pytest.mark.parametrize(("ops", "state"), BREAKER_ROWS)
def test_breaker_state_machine(ops: str, state: str) -> None:
    clock = FakeClock()
    changes: list[tuple[str, str]] = []
    b = CircuitBreaker(2, 10.0, 5.0, clock, lambda o, n: changes.append((o, n)))
    for op in ops.split():
        if op == "f":
            b.failed()
        elif op == "s":
            b.succeeded()
        elif op == "a":
            b.admit()
        else:
            clock.advance(float(op))
    assert b.state == state
    for old, new in changes:
        assert old != new


def test_half_open_admits_one_probe_at_a_time() -> None:
    clock = FakeClock()
    b = CircuitBreaker(1, 10.0, 5.0, clock)
    b.failed()
    assert b.admit() == pytest.approx(5.0)
    clock.advance(5)
    assert b.admit() == 0.0  # the probe
    assert b.admit() > 0  # a second tick while the probe runs fails fast
    b.succeeded()
    assert b.admit() == 0.0 and b.state == "closed"


def test_breaker_snapshot_restores_into_a_fresh_breaker() -> None:
    clock = FakeClock()
    b = CircuitBreaker(2, 10.0, 5.0, clock)
    b.failed()
    b.failed()
    fresh = CircuitBreaker(2, 10.0, 5.0, clock)
    fresh.restore(b.snapshot())
    assert fresh.state == "open" and fresh.admit() == pytest.approx(5.0)


@pytest.mark.parametrize("mode", MODES)
def test_an_open_breaker_fails_ticks_fast_then_probes(mode: str) -> None:
    clock = FakeClock()
    actor = scripted(mode, ["raise:RuntimeError:down", "raise:RuntimeError:down"])
    policies = {
        "circuit_breaker": {"failures": 2, "window_s": 60, "cooldown_s": 30, "clock": clock}
    }
    net, out = one_node(actor, policies, 1, 2, 3, 4)
    ev = net.events(kinds=["CircuitStateChanged"])
    with net:
        summary = net.run(timeout=10)
        assert actor.calls == 2  # ticks 3 and 4 never ran
        errors = [f.exception for f in summary.failures]
        assert [type(e) for e in errors[2:]] == [CircuitOpenError, CircuitOpenError]
        assert "circuit breaker is open after 2 failures within 60 s" in str(errors[2])
        assert errors[2].retry_after_s == pytest.approx(30)  # type: ignore[union-attr]
        clock.advance(30)
        net.add_initial("n", "in", Message.integer(5))
        summary = net.run(timeout=10)
        assert summary.failure_count == 0 and datas(out) == [5]
        changes = [(e["old"], e["new"]) for e in ev.drain()]
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_a_failed_probe_opens_the_breaker_again() -> None:
    clock = FakeClock()
    actor = scripted("inline", ["raise:RuntimeError:x"] * 3)
    policies = {
        "circuit_breaker": {"failures": 1, "window_s": 60, "cooldown_s": 10, "clock": clock}
    }
    net, _ = one_node(actor, policies, 1)
    with net:
        net.run(timeout=10)
        clock.advance(10)
        net.add_initial("n", "in", Message.integer(2))  # the probe: fails
        net.add_initial("n", "in", Message.integer(3))  # open again: fails fast
        summary = net.run(timeout=10)
    assert actor.calls == 2
    assert [type(f.exception) for f in summary.failures] == [RuntimeError, CircuitOpenError]


def test_retry_does_not_retry_an_open_breaker_and_dead_letters_the_packet() -> None:
    clock = FakeClock()
    actor = scripted("inline", ["raise:RuntimeError:x"] * 10)
    policies = {
        "retry": {"attempts": 5, "backoff_s": 0.001},
        "circuit_breaker": {"failures": 2, "window_s": 60, "cooldown_s": 30, "clock": clock},
    }
    net, _ = one_node(actor, policies, 1)
    with net:
        summary = net.run(timeout=10)
        letters = net.dead_letters()
    assert actor.calls == 2  # two failed attempts opened it; the third failed fast
    assert isinstance(summary.failures[0].exception, CircuitOpenError)
    assert letters[0].attempts == 3 and "CircuitOpenError" in letters[0].error
