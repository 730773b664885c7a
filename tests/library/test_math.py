"""reflow.library._math: math templates, each through a real tick (reflow.testing)."""

from __future__ import annotations

from typing import Any

import pytest

from reflow import Message, Network, PortTypeError
from reflow.library._math import (
    MathAbs,
    MathAdd,
    MathClamp,
    MathCompare,
    MathDivide,
    MathMax,
    MathMin,
    MathModulo,
    MathMultiply,
    MathPower,
    MathRandom,
    MathRound,
    MathSqrt,
    MathStats,
    MathSubtract,
)
from reflow.testing import TickResult, run_tick, run_ticks

Int, Flt = Message.integer, Message.float


def only(result: TickResult, port: str = "out") -> Message:
    result.raise_for_failures()
    (msg,) = result.outputs[port]
    return msg


@pytest.mark.parametrize(
    ("cls", "a", "b", "expected"),
    [
        (MathAdd, Int(40), Int(2), Int(42)),
        (MathAdd, Int(1), Flt(0.5), Flt(1.5)),
        (MathSubtract, Int(1), Int(3), Int(-2)),
        (MathMultiply, Flt(1.5), Int(2), Flt(3.0)),
        (MathMultiply, Int(6), Int(7), Int(42)),
        (MathDivide, Int(7), Int(2), Flt(3.5)),
        (MathDivide, Int(8), Int(2), Flt(4.0)),
        (MathModulo, Int(-7), Int(3), Int(2)),
        (MathPower, Int(2), Int(10), Int(1024)),
        (MathPower, Int(2), Int(-1), Flt(0.5)),
        (MathPower, Flt(9.0), Flt(0.5), Flt(3.0)),
        (MathMin, Int(3), Flt(2.5), Flt(2.5)),
        (MathMax, Int(3), Int(9), Int(9)),
    ],
)
def test_binary_operations(cls: type, a: Message, b: Message, expected: Message) -> None:
    assert only(run_tick(cls(), {"a": a, "b": b})) == expected


def test_b_from_config_when_port_unconnected() -> None:
    assert only(run_tick(MathMultiply(), {"a": Int(14)}, {"b": 3})) == Int(42)


def test_binary_waits_for_both_ports() -> None:
    net = Network()
    net.register_actor("add", MathAdd())
    net.add_node("m", "add")
    out = net.collect("m", "out")
    net.add_initial("m", "a", Int(1))
    net.add_initial("m", "a", Int(2))
    net.add_initial("m", "b", Int(10))
    net.run(timeout=10).raise_for_failures()
    assert out.values() == [11]
    net.add_initial("m", "b", Int(20))
    net.run(timeout=10).raise_for_failures()
    net.shutdown()
    assert out.values() == [11, 22]


@pytest.mark.parametrize(
    ("op", "a", "b", "expected"),
    [
        ("==", 1, 1.0, True),
        ("!=", 1, 2, True),
        ("<", 1, 2, True),
        ("<=", 2, 2, True),
        (">", 1, 2, False),
        (">=", 3, 2, True),
    ],
)
def test_compare(op: str, a: int, b: float, expected: bool) -> None:
    msg = only(run_tick(MathCompare(), {"a": Int(a), "b": Flt(b)}, {"op": op}))
    assert msg == Message.boolean(expected)


@pytest.mark.parametrize(
    ("x", "config", "expected"),
    [
        (2.5, {}, Int(2)),
        (3.5, {}, Int(4)),
        (2.7, {"mode": "floor"}, Int(2)),
        (2.1, {"mode": "ceil"}, Int(3)),
        (-2.7, {"mode": "trunc"}, Int(-2)),
        (3.14159, {"digits": 2}, Flt(3.14)),
        (7, {}, Int(7)),
    ],
)
def test_round(x: float, config: dict[str, Any], expected: Message) -> None:
    assert (
        only(
            run_tick(
                MathRound(), {"in": Message.float(x) if isinstance(x, float) else Int(x)}, config
            )
        )
        == expected
    )


def test_unary_operations() -> None:
    assert only(run_tick(MathAbs(), {"in": Int(-3)})) == Int(3)
    assert only(run_tick(MathAbs(), {"in": Flt(-3.5)})) == Flt(3.5)
    assert only(run_tick(MathClamp(), {"in": Int(15)}, {"min": 0, "max": 10})) == Int(10)
    assert only(run_tick(MathClamp(), {"in": Int(-5)}, {"min": 0})) == Int(0)
    assert only(run_tick(MathClamp(), {"in": Flt(0.5)}, {"max": 1})) == Flt(0.5)
    assert only(run_tick(MathSqrt(), {"in": Int(16)})) == Flt(4.0)


def test_stats() -> None:
    r = run_tick(MathStats(), {"in": Message.array([1, 2, 3, 4])})
    r.raise_for_failures()
    assert r.values("sum") == [10]
    assert r.values("mean") == [2.5]
    assert r.values("min") == [1] and r.values("max") == [4]
    stats = r.values("stats")[0]
    assert stats["count"] == 4 and stats["std"] == pytest.approx(1.118034, rel=1e-5)


def test_random_is_reproducible_with_a_seed_and_in_range() -> None:
    ticks: list[dict[str, Any]] = [{"in": Message.flow()}] * 20
    cfg = {"seed": 7, "min": 1, "max": 6, "integer": True}
    first = run_ticks(MathRandom(), ticks, cfg).values("out")
    second = run_ticks(MathRandom(), ticks, cfg).values("out")
    assert first == second and all(1 <= v <= 6 for v in first) and len(set(first)) > 1
    floats = run_ticks(MathRandom(), ticks, {"min": -1, "max": 1}).values("out")
    assert all(-1 <= v <= 1 and isinstance(v, float) for v in floats)


def test_typed_ports_refuse_a_string_producer() -> None:
    from reflow.library._text import TextCase

    net = Network()
    net.register_actor("case", TextCase())
    net.register_actor("add", MathAdd())
    net.add_node("c", "case")
    net.add_node("m", "add")
    with pytest.raises(PortTypeError, match=r"sends String but in-port m\.a accepts Float"):
        net.add_connection("c", "out", "m", "a")
    net.shutdown()


@pytest.mark.parametrize(
    ("actor", "inputs", "config", "fragment"),
    [
        (
            MathAdd(),
            {"a": Message.string("one"), "b": Int(1)},
            None,
            "in-port 'a': expected a number, got the String",
        ),
        (MathAdd(), {"a": Int(1)}, None, "config 'b' is required"),
        (MathAdd(), {"a": Int(1)}, {"b": "2"}, "config 'b' must be a number"),
        (MathDivide(), {"a": Int(1), "b": Int(0)}, None, "in-port 'b' (or config 'b') is zero"),
        (MathModulo(), {"a": Int(1)}, {"b": 0}, "division by zero"),
        (MathPower(), {"a": Int(0), "b": Int(-1)}, None, "0 to a negative power"),
        (MathPower(), {"a": Int(-8), "b": Flt(0.5)}, None, "fractional power"),
        (MathPower(), {"a": Int(2), "b": Int(100000)}, None, "too large"),
        (MathMultiply(), {"a": Flt(1e308), "b": Flt(10.0)}, None, "not a finite number"),
        (MathCompare(), {"a": Int(1), "b": Int(1)}, {"op": "=~"}, "config 'op' must be one of"),
        (MathRound(), {"in": Flt(1.5)}, {"mode": "up"}, "config 'mode' must be one of"),
        (MathRound(), {"in": Flt(1.5)}, {"digits": 2, "mode": "floor"}, "config 'digits'"),
        (MathRound(), {"in": Flt(float("inf"))}, None, "in-port 'in': cannot round inf"),
        (MathClamp(), {"in": Int(1)}, None, "config 'min' or 'max' is required"),
        (MathClamp(), {"in": Int(1)}, {"min": 5, "max": 1}, "config 'min' (5) is greater"),
        (MathSqrt(), {"in": Int(-1)}, None, "in-port 'in': square root of a negative"),
        (MathStats(), {"in": Message.array([])}, None, "in-port 'in': the array is empty"),
        (MathStats(), {"in": Message.array([1, "2"])}, None, "item [1] is not a number"),
        (MathRandom(), {"in": Int(1)}, {"min": 2, "max": 1}, "config 'min' (2) is greater"),
        (MathRandom(), {"in": Int(1)}, {"seed": "x"}, "config 'seed' must be an integer"),
    ],
)
def test_bad_input_fails_the_tick(
    actor: Any, inputs: dict[str, Any], config: dict[str, Any] | None, fragment: str
) -> None:
    r = run_tick(actor, inputs, config)
    assert not r.ok
    assert fragment in r.failures[0].error
