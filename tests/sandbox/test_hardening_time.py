"""Issue #8, row 1: the tick time limit is a budget of the guest's own time per tick.

Host calls (log, the pools, result_read, emit) no longer re-arm it: a guest that loops on any
of them is stopped at the limit (+ epoch granularity) with ``GuestTimeout`` naming the node
and the limit, on the fast path and on the public-API fallback. Only the time ``emit`` waits
for room on a full out-edge is given back. Each tick of a batch has its own budget. Guests
are written by hand as WAT; times are asserted only as generous bounds."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import wasmtime
from sandbox_helpers import TickCtx

from reflow import Actor, Message, Network
from reflow._errors import GuestOutputError, GuestTimeout, ReflowError
from reflow._sandbox._guest_host import GuestLimits
from reflow._sandbox._wasm_engine import WasmEngine
from reflow.abi import encode_message, encode_outputs

M = Message
LIMIT_MS = 250
BOUND_S = 2.0  # "stopped within ~2 s" for a 250 ms limit: proves bounded, not fast

DESCRIBE = b'{"abi":"1.1","templates":[{"id":"hard/x","inports":["in"],"outports":["out"]}]}'
IMPORTS = """
  (import "reflow" "log" (func $log (param i32 i32 i32)))
  (import "reflow" "emit" (func $emit (param i32 i32) (result i32)))
  (import "reflow" "pool_upsert" (func $pool_upsert (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "reflow" "pool_get" (func $pool_get (param i32 i32 i32 i32) (result i32)))
  (import "reflow" "pool_remove" (func $pool_remove (param i32 i32 i32 i32) (result i32)))
  (import "reflow" "pool_count" (func $pool_count (param i32 i32) (result i32)))
  (import "reflow" "pool_clear" (func $pool_clear (param i32 i32) (result i32)))
  (import "reflow" "result_read" (func $result_read (param i32 i32) (result i32)))
"""
# Fixed places in the guest's memory (data segments below).
POOL, KEY, MSG, EMPTY, ONE, TEXT, SCRATCH = 8192, 8200, 8208, 8300, 8400, 8500, 9000
MSG_BYTES = encode_message(M.integer(7))
EMPTY_FRAME = encode_outputs([])  # "\0\0": two bytes, no outputs
ONE_FRAME = encode_outputs([("out", M.integer(1))])
DONE_EMPTY = f"(i64.const {(3 << 32) | 3000})"


def _hex(raw: bytes) -> str:
    return "".join(f"\\{b:02x}" for b in raw)


def guest(tick: str, batch: str = "") -> bytes:
    """A module with every import, whose reflow_tick body is ``tick`` (written by hand)."""
    return bytes(
        wasmtime.wat2wasm(f"""(module {IMPORTS}
  (memory (export "memory") 1)
  (data (i32.const 1024) "{_hex(DESCRIBE)}")
  (data (i32.const 3000) "\\00\\00\\00")
  (data (i32.const {POOL}) "p")
  (data (i32.const {KEY}) "k")
  (data (i32.const {MSG}) "{_hex(MSG_BYTES)}")
  (data (i32.const {EMPTY}) "{_hex(EMPTY_FRAME)}")
  (data (i32.const {ONE}) "{_hex(ONE_FRAME)}")
  (data (i32.const {TEXT}) "hello")
  (func (export "reflow_abi_version") (result i32) (i32.const 0x10001))
  (func (export "reflow_alloc") (param i32) (result i32) (i32.const 4096))
  (func (export "reflow_describe") (result i64) (i64.const {(len(DESCRIBE) << 32) | 1024}))
  (func (export "reflow_open") (param i32 i32) (result i64) {DONE_EMPTY})
  (func (export "reflow_tick") (param i32 i32) (result i64) {tick})
  {batch})""")
    )


def forever(body: str) -> str:
    return f"(loop $l {body} (br $l)) {DONE_EMPTY}"


def spin(n: int) -> str:
    """Guest work: a counting loop of ``n`` iterations."""
    return (
        f"(local.set 0 (i32.const {n})) (block $b (loop $s "
        f"(br_if $b (i32.eqz (local.get 0))) "
        f"(local.set 0 (i32.sub (local.get 0) (i32.const 1))) (br $s)))"
    )


CALLS = {
    "log": f"(call $log (i32.const 1) (i32.const {TEXT}) (i32.const 5))",
    "log-empty": f"(call $log (i32.const 0) (i32.const {TEXT}) (i32.const 0))",
    "pool_get": f"(drop (call $pool_get (i32.const {POOL}) (i32.const 1) (i32.const {KEY}) "
    f"(i32.const 1)))",
    "pool_upsert": f"(drop (call $pool_upsert (i32.const {POOL}) (i32.const 1) "
    f"(i32.const {KEY}) (i32.const 1) (i32.const {MSG}) "
    f"(i32.const {len(MSG_BYTES)})))",
    "pool_remove": f"(drop (call $pool_remove (i32.const {POOL}) (i32.const 1) "
    f"(i32.const {KEY}) (i32.const 1)))",
    "pool_count": f"(drop (call $pool_count (i32.const {POOL}) (i32.const 1)))",
    "pool_clear": f"(drop (call $pool_clear (i32.const {POOL}) (i32.const 1)))",
    "result_read": f"(drop (call $result_read (i32.const {SCRATCH}) (i32.const 16)))",
    "emit-nothing": f"(drop (call $emit (i32.const {EMPTY}) (i32.const {len(EMPTY_FRAME)})))",
    "emit-packet": f"(drop (call $emit (i32.const {ONE}) (i32.const {len(ONE_FRAME)})))",
    "work-then-emit": spin(200_000)
    + f"(drop (call $emit (i32.const {EMPTY}) (i32.const {len(EMPTY_FRAME)})))",
    "work-then-log": spin(200_000) + f"(call $log (i32.const 1) (i32.const {TEXT}) (i32.const 5))",
    "pool-mix": f"(drop (call $pool_upsert (i32.const {POOL}) (i32.const 1) (i32.const {KEY}) "
    f"(i32.const 1) (i32.const {MSG}) (i32.const {len(MSG_BYTES)}))) "
    f"(drop (call $pool_get (i32.const {POOL}) (i32.const 1) (i32.const {KEY}) "
    f"(i32.const 1))) (drop (call $result_read (i32.const {SCRATCH}) (i32.const 9)))",
}


def tick_with_local(body: str) -> str:
    return f"(local i32) {body}"


@pytest.fixture(scope="module", params=["fast", "public"])
def time_engine(request: pytest.FixtureRequest) -> Iterator[WasmEngine]:
    eng = WasmEngine(cache_dir=False, fast_path=request.param == "fast")
    yield eng
    eng.close()


@pytest.mark.parametrize("call", list(CALLS))
def test_a_guest_looping_on_a_host_call_is_stopped_at_the_limit(
    time_engine: WasmEngine, call: str
) -> None:
    wasm = guest(tick_with_local(forever(CALLS[call])))
    # output_packets raised so that the time limit, not the packet cap, is what stops it
    limits = GuestLimits(tick_ms=LIMIT_MS, output_packets=10**8)
    node = time_engine.load(wasm).actor(limits=limits).open_node("looper", {})
    for _ in range(2):  # the node's next tick gets a fresh budget and fails the same way
        t0 = time.perf_counter()
        with pytest.raises(GuestTimeout) as info:
            node.run(TickCtx({"in": M.integer(1)}))
        elapsed = time.perf_counter() - t0
        assert isinstance(info.value, ReflowError)
        assert "node 'looper'" in str(info.value)
        assert f"time limit of {LIMIT_MS} ms" in str(info.value)
        assert info.value.limit_ms == LIMIT_MS and info.value.trap_code == "INTERRUPT"
        assert elapsed < BOUND_S, f"{call}: stopped after {elapsed:.2f} s"
    node.close()


def test_only_the_looping_tick_fails(time_engine: WasmEngine) -> None:
    # Loops on log when the input is 1, else returns done: the next tick is unaffected.
    body = (
        f"(if (i64.eq (i64.load offset=6 (local.get 0)) (i64.const 1)) "
        f"(then {forever(CALLS['log'])} (drop))) {DONE_EMPTY}"
    )
    node = (
        time_engine.load(guest(body))
        .actor(limits=GuestLimits(tick_ms=LIMIT_MS))
        .open_node("once", {})
    )
    with pytest.raises(GuestTimeout):
        node.run(TickCtx({"in": M.integer(1)}))
    ctx = TickCtx({"in": M.integer(2)})
    node.run(ctx)
    assert ctx.outputs == [] and ctx.error is None
    node.close()


# -- batches: each tick has its own budget ---------------------------------------------------


def batch_export(body: str) -> str:
    return f'(func (export "reflow_tick_batch") (param i32 i32) (result i64) (local i32) {body})'


@pytest.mark.parametrize(
    ("name", "batch_body"),
    [
        # tick 1 of 32 never finishes: the old single deadline of 32 x tick_ms let it run 8 s
        ("first-tick-hangs", forever("")),
        # loops on a host call inside the batch
        ("first-tick-logs", forever(CALLS["log"])),
        # counts its progress counter up without finishing anything: every tick index gets
        # at most one budget, so the whole call is bounded by 32 x tick_ms; here by 3
        (
            "progress-counter-games",
            forever(
                "(i32.store offset=4 (local.get 0) (i32.and (i32.add (i32.load offset=4 "
                "(local.get 0)) (i32.const 1)) (i32.const 1)))"
            ),
        ),
    ],
)
def test_a_batch_tick_gets_one_tick_budget(name: str, batch_body: str) -> None:
    eng = WasmEngine(cache_dir=False)
    try:
        wasm = guest(DONE_EMPTY, batch=batch_export(batch_body))
        node = eng.load(wasm).actor(limits=GuestLimits(tick_ms=LIMIT_MS)).open_node("b", {})
        assert node._batching  # type: ignore[attr-defined]
        ctxs = [TickCtx({"in": M.integer(i)}) for i in range(32)]
        t0 = time.perf_counter()
        errors = node.run_batch(ctxs)
        elapsed = time.perf_counter() - t0
        first = 1
        if name == "progress-counter-games" and not isinstance(errors[0], GuestTimeout):
            # stopped while its counter said tick 1 was done: tick 1 (claimed done, with no
            # result) is an output error and tick 2 is the one that ran out of time
            assert isinstance(errors[0], GuestOutputError), errors[0]
            first = 2
        assert isinstance(errors[first - 1], GuestTimeout), errors[first - 1]
        assert (
            f"reflow_tick_batch (tick {first} of 32) ran past its time limit of {LIMIT_MS} ms"
        ) in str(errors[first - 1])
        # the others ran one call each through reflow_tick and delivered
        assert errors[first:] == [None] * (32 - first)
        assert all(c.outputs == [] for c in ctxs[first:])
        assert elapsed < BOUND_S * (2 if name == "progress-counter-games" else 1), elapsed
        node.close()
    finally:
        eng.close()


# -- in a network: the wait on a full edge is the host's time ---------------------------------


class SlowSink(Actor):
    component = "test/slow_sink"
    inports = ["in"]
    outports = []

    def run(self, ctx) -> None:  # type: ignore[no-untyped-def]
        time.sleep(0.05)
        ctx.done()


def _emit_n(n: int, then: str) -> str:
    emit = CALLS["emit-packet"]
    return tick_with_local(
        f"(local.set 0 (i32.const {n})) (block $b (loop $e "
        f"(br_if $b (i32.eqz (local.get 0))) {emit} "
        f"(local.set 0 (i32.sub (local.get 0) (i32.const 1))) (br $e))) {then}"
    )


@pytest.mark.slow
def test_waiting_on_a_full_edge_is_not_the_guests_time() -> None:
    # 24 packets into an edge of capacity 1 drained at 20/s: ~1.2 s of waiting under a 250 ms
    # limit. The tick must succeed: the waits are given back.
    eng = WasmEngine(cache_dir=False)
    net = Network()
    try:
        net.register_actor(
            "hard/x",
            eng.load(guest(_emit_n(24, DONE_EMPTY))).actor(limits=GuestLimits(tick_ms=LIMIT_MS)),
        )
        net.register_actor("test/slow_sink", SlowSink())
        net.add_node("src", "hard/x")
        net.add_node("sink", "test/slow_sink")
        net.add_connection("src", "out", "sink", "in", capacity=1)
        got = net.collect("sink", "in")
        net.add_initial("src", "in", M.integer(1))
        t0 = time.perf_counter()
        summary = net.run(timeout=30)
        assert summary.failures == [], summary.failures
        assert len(got) == 24
        assert time.perf_counter() - t0 > LIMIT_MS / 1000  # it did wait longer than the limit
    finally:
        net.shutdown()
        eng.close()


@pytest.mark.slow
def test_a_guest_that_waits_and_then_loops_is_still_stopped() -> None:
    # The waits are given back, the guest's own loop after them is not.
    eng = WasmEngine(cache_dir=False)
    net = Network()
    try:
        net.register_actor(
            "hard/x",
            eng.load(guest(_emit_n(8, forever(CALLS["log"])))).actor(
                limits=GuestLimits(tick_ms=LIMIT_MS)
            ),
        )
        net.register_actor("test/slow_sink", SlowSink())
        net.add_node("src", "hard/x")
        net.add_node("sink", "test/slow_sink")
        net.add_connection("src", "out", "sink", "in", capacity=1)
        net.add_initial("src", "in", M.integer(1))
        t0 = time.perf_counter()
        summary = net.run(timeout=30)
        elapsed = time.perf_counter() - t0
        assert [type(f.exception) for f in summary.failures] == [GuestTimeout]
        assert summary.failures[0].node == "src"
        assert elapsed < 8 * 0.05 + BOUND_S + 1.0, elapsed
    finally:
        net.shutdown()
        eng.close()


_CHILD = r"""
import json, sys, time, threading
import psutil
sys.path.insert(0, sys.argv[1])
from test_hardening_time import CALLS, LIMIT_MS, forever, guest, tick_with_local
from reflow import Actor, Message, Network
from reflow._sandbox._guest_host import GuestLimits
from reflow._sandbox._wasm_engine import WasmEngine

class Sink(Actor):
    component = "test/sink"
    inports = ["in"]
    outports = []
    def run(self, ctx):
        ctx.done()

proc = psutil.Process()
peak = [proc.memory_info().rss]
stop = threading.Event()
def sample():
    while not stop.wait(0.01):
        peak[0] = max(peak[0], proc.memory_info().rss)
threading.Thread(target=sample, daemon=True).start()
base = proc.memory_info().rss
eng = WasmEngine(cache_dir=False)
net = Network()
net.register_actor("hard/x", eng.load(guest(tick_with_local(forever(CALLS["emit-packet"]))))
                   .actor(limits=GuestLimits(tick_ms=LIMIT_MS)))
net.register_actor("test/sink", Sink())
net.add_node("src", "hard/x")
net.add_node("sink", "test/sink")
net.add_connection("src", "out", "sink", "in")
net.add_initial("src", "in", Message.integer(1))
t0 = time.perf_counter()
summary = net.run(timeout=60)
elapsed = time.perf_counter() - t0
stop.set()
print(json.dumps({"elapsed": elapsed, "peak_mb": (peak[0] - base) / 2**20,
                  "sink_ticks": summary.node_ticks.get("sink", 0),
                  "failures": [type(f.exception).__name__ for f in summary.failures]}))
net.shutdown()
"""


@pytest.mark.slow
def test_an_emit_loop_in_a_network_is_bounded_in_time_and_memory() -> None:
    # The case: a tight emit loop ran 43-81 s and 534 MB until the output cap. Now the
    # tick ends at its limit; RSS is measured in a child process.
    import json
    import subprocess
    import sys
    from pathlib import Path

    here = str(Path(__file__).parent)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, here],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # stopped by its time limit or by GuestLimits.output_packets, whichever comes first
    assert result["failures"] in (["GuestTimeout"], ["GuestLimitError"]), result
    assert result["elapsed"] < 5.0, result
    assert result["peak_mb"] < 150, result
