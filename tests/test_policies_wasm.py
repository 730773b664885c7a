"""Policies on real sandboxed actors: hand-written WAT guests on wasmtime, run as worker
nodes (their ticks on the worker pool, or on the node's own thread under a timeout)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import wasmtime

from reflow import CircuitOpenError, Collector, GuestTimeout, Message, Network, TickTimeoutError
from reflow._sandbox._guest_host import GuestLimits
from reflow._sandbox._wasm_engine import WasmEngine
from reflow.abi import encode_result_done

DESCRIBE = b'{"abi":"1.0","templates":[{"id":"pol/x","inports":["in"],"outports":["out"]}]}'
DONE_ONE = encode_result_done([("out", Message.integer(1))])


def _bytes(raw: bytes) -> str:
    return "".join(f"\\{b:02x}" for b in raw)


def _slice(ptr: int, n: int) -> str:
    return f"(i64.const {(n << 32) | ptr})"


def guest(tick: str) -> bytes:
    """A module following the guest ABI whose tick body is ``tick``; a global ``$n`` counts
    ticks, and ``DONE_ONE`` (done with out=1) sits at 8192."""
    return bytes(
        wasmtime.wat2wasm(f"""(module
      (memory (export "memory") 1)
      (global $n (mut i32) (i32.const 0))
      (data (i32.const 1024) "{_bytes(DESCRIBE)}")
      (data (i32.const 3000) "\\00\\00\\00")
      (data (i32.const 8192) "{_bytes(DONE_ONE)}")
      (func (export "reflow_abi_version") (result i32) (i32.const 0x10000))
      (func (export "reflow_alloc") (param i32) (result i32) (i32.const 4096))
      (func (export "reflow_describe") (result i64) {_slice(1024, len(DESCRIBE))})
      (func (export "reflow_open") (param i32 i32) (result i64) {_slice(3000, 3)})
      (func (export "reflow_tick") (param i32 i32) (result i64) {tick}))""")
    )


# odd ticks trap, even ones answer out=1
TRAP_EVERY_OTHER = (
    "(global.set $n (i32.add (global.get $n) (i32.const 1))) "
    "(if (i32.and (global.get $n) (i32.const 1)) (then unreachable)) "
    f"{_slice(8192, len(DONE_ONE))}"
)
LOOP = "(loop $l (br $l)) (i64.const 0)"


@pytest.fixture(scope="module")
def engine() -> Iterator[WasmEngine]:
    eng = WasmEngine(cache_dir=False)
    yield eng
    eng.close()


def _net(
    engine: WasmEngine, tick: str, policies: dict[str, Any], limits: GuestLimits | None = None
) -> tuple[Network, Collector]:
    net = Network()
    actor = (
        engine.load(guest(tick)).actor(limits=limits)
        if limits
        else engine.load(guest(tick)).actor()
    )
    net.register_actor("pol/x", actor)
    net.add_node("g", "pol/x", policies=policies)
    return net, net.collect("g", "out")


def test_retry_on_guest_traps(engine: WasmEngine) -> None:
    net, out = _net(
        engine,
        TRAP_EVERY_OTHER,
        {"retry": {"attempts": 2, "on": ["GuestTrap"], "backoff_s": 0.001}},
    )
    ev = net.events(kinds=["PolicyRetry"])
    for i in range(3):
        net.add_initial("g", "in", Message.integer(i))
    with net:
        summary = net.run(timeout=30)
        retries = ev.drain()
    assert summary.failure_count == 0 and [m["data"] for m in out.messages] == [1, 1, 1]
    assert len(retries) == 3 and all(r["error"].startswith("GuestTrap") for r in retries)


def test_a_breaker_stops_calling_a_guest_that_keeps_timing_out(engine: WasmEngine) -> None:
    policies = {"circuit_breaker": {"failures": 2, "window_s": 60, "cooldown_s": 60}}
    net, _ = _net(engine, LOOP, policies, GuestLimits(tick_ms=50))
    for i in range(5):
        net.add_initial("g", "in", Message.integer(i))
    with net:
        t0 = time.monotonic()
        summary = net.run(timeout=30)
        elapsed = time.monotonic() - t0
    kinds = [type(f.exception) for f in summary.failures]
    assert kinds == [
        GuestTimeout,
        GuestTimeout,
        CircuitOpenError,
        CircuitOpenError,
        CircuitOpenError,
    ]
    assert elapsed < 2.0  # two 50 ms guest limits, then fast failures


def test_a_policy_timeout_fails_a_guest_tick_before_its_own_limit(engine: WasmEngine) -> None:
    net, out = _net(engine, LOOP, {"timeout_s": 0.25, "dead_letter": {}}, GuestLimits(tick_ms=1500))
    net.add_initial("g", "in", Message.integer(1))
    with net:
        t0 = time.monotonic()
        summary = net.run(timeout=30)
        assert time.monotonic() - t0 < 1.2
        assert isinstance(summary.failures[0].exception, TickTimeoutError)
        assert "TickTimeoutError" in net.dead_letters()[0].error
    assert out.messages == []
