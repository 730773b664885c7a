"""The tick time limit bounds the guest's own time (ABI.md, "Time limits").

Rows are guests written as WAT that try to stretch a tick through host calls: under the
old rule every emit re-armed the whole limit, so a guest that emitted between bursts of work
ran for 12 s under a 250 ms limit. Now only time the host kept the guest waiting (room on a
full edge, an HTTP server, at most ``http_timeout`` per tick) is given back."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from test_hostile_guests import DATA, DESCRIBE, DONE_EMPTY, guest

from reflow import Actor, Message, Network
from reflow._errors import GuestTimeout
from reflow._sandbox._guest_host import GuestGrants, GuestLimits
from reflow._sandbox._wasm_engine import WasmEngine
from reflow.abi import encode_outputs

M = Message
EMIT = '(import "reflow" "emit" (func $emit (param i32 i32) (result i32)))'
POOL_COUNT = '(import "reflow" "pool_count" (func $pc (param i32 i32) (result i32)))'
LOG = '(import "reflow" "log" (func $log (param i32 i32 i32)))'
HTTP = '(import "reflow" "http_request" (func $http (param i32 i32) (result i32)))'
FRAME = encode_outputs([("out", M.integer(7))])
CALL_EMIT = f"(drop (call $emit (i32.const {DATA}) (i32.const {len(FRAME)})))"
SPIN = (
    "(local.set $i (i32.const 0)) (loop $s (local.set $i (i32.add (local.get $i) "
    "(i32.const 1))) (br_if $s (i32.lt_u (local.get $i) (i32.const {n}))))"
)
LOCAL = "(local $i i32) (local $k i32)"


def forever(body: str) -> str:
    return f"{LOCAL} (loop $l {body} (br $l)) (i64.const 0)"


@pytest.fixture(scope="module")
def engine() -> Iterator[WasmEngine]:
    eng = WasmEngine(cache_dir=False)
    yield eng
    eng.close()


class Slow(Actor):
    """Takes ``delay`` seconds per packet: a full edge in front of it keeps senders waiting."""

    component = "slow_sink"
    inports = ["in"]

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.seen: list[Any] = []

    def run(self, ctx: Any) -> None:
        time.sleep(self.delay)
        self.seen.append(ctx.inputs["in"]["data"])
        ctx.done()


def run_guest(
    engine: WasmEngine,
    wasm: bytes,
    *,
    tick_ms: float,
    sink: Actor | None = None,
    capacity: int = 64,
    grants: GuestGrants | None = None,
    execution: str | None = None,
) -> tuple[Network, float]:
    # output caps far away: the time limit is what must stop these guests
    limits = GuestLimits(tick_ms=tick_ms, output_bytes=1 << 30, output_packets=1 << 30)
    actor = engine.load(wasm).actor(limits=limits, grants=grants or GuestGrants())
    if execution is not None:
        actor.execution = execution
    net = Network(capacity=capacity)
    net.register_actor("g", actor)
    net.add_node("g", "g")
    if sink is not None:
        net.register_actor("sink", sink)
        net.add_node("s", "sink")
        net.add_connection("g", "out", "s", "in")
    net.add_initial("g", "in", M.integer(1))
    t0 = time.monotonic()
    net.run(timeout=60)
    return net, time.monotonic() - t0


# id, tick body, data
STRETCHERS = [
    ("emit_between_bursts_of_work", forever(f"{CALL_EMIT} {SPIN.format(n=300_000)}"), FRAME),
    ("tight_emit_loop", forever(CALL_EMIT), FRAME),
    (
        "tight_pool_count_loop",
        forever(f"(drop (call $pc (i32.const {DATA}) (i32.const 4)))"),
        b"pool",
    ),
    (
        "log_between_bursts",
        forever(
            f"(call $log (i32.const 0) (i32.const {DATA}) (i32.const 2)) {SPIN.format(n=100_000)}"
        ),
        b"hi",
    ),
]


@pytest.mark.parametrize("execution", ["inline", "worker"])
@pytest.mark.parametrize("body, data", [r[1:] for r in STRETCHERS], ids=[r[0] for r in STRETCHERS])
def test_host_calls_do_not_stretch_the_limit(
    engine: WasmEngine, body: str, data: bytes, execution: str
) -> None:
    wasm = guest(body, imports=f"{EMIT} {POOL_COUNT} {LOG}", data=data)
    net, took = run_guest(engine, wasm, tick_ms=250, execution=execution)
    (failure,) = net.failures
    net.shutdown()
    assert isinstance(failure.exception, GuestTimeout), failure.error
    assert "250 ms" in failure.error
    assert took < 3.0  # 250 ms + epoch granularity, with room for a loaded machine


def test_waiting_on_a_full_edge_is_the_hosts_time(engine: WasmEngine) -> None:
    """8 packets into a capacity-1 edge whose consumer takes 80 ms each: ~600 ms of waiting
    under a 150 ms limit. The guest computes almost nothing, so the tick succeeds."""
    n = 8
    body = (
        f"{LOCAL} (local.set $k (i32.const 0)) (loop $l {CALL_EMIT} "
        f"(local.set $k (i32.add (local.get $k) (i32.const 1))) "
        f"(br_if $l (i32.lt_u (local.get $k) (i32.const {n})))) {DONE_EMPTY}"
    )
    wasm = guest(body, imports=EMIT, data=FRAME)
    for execution in ("inline", "worker"):
        sink = Slow(0.08)
        net, took = run_guest(engine, wasm, tick_ms=150, sink=sink, capacity=1, execution=execution)
        failures = net.failures
        net.shutdown()
        assert failures == [], failures
        assert sink.seen == [7] * n
        assert took >= 0.5


def test_waiting_does_not_cover_the_guests_own_work(engine: WasmEngine) -> None:
    """Blocked emits give back only the wait: a guest that also spins forever still fails."""
    body = forever(f"{CALL_EMIT} {SPIN.format(n=3_000_000)}")
    wasm = guest(body, imports=EMIT, data=FRAME)
    net, took = run_guest(engine, wasm, tick_ms=100, sink=Slow(0.01), capacity=1)
    (failure,) = net.failures
    net.shutdown()
    assert isinstance(failure.exception, GuestTimeout), failure.error
    assert took < 15  # wait given back is bounded by the work the consumer really did


class _SlowHandler(http.server.BaseHTTPRequestHandler):
    delay = 0.3

    def do_GET(self) -> None:
        time.sleep(self.delay)
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def slow_server() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/x"
    srv.shutdown()
    srv.server_close()


def _http_guest(url: str, body_fmt: str) -> bytes:
    req = f'{{"method":"GET","url":"{url}"}}'.encode()
    call = f"(drop (call $http (i32.const {DATA}) (i32.const {len(req)})))"
    describe = DESCRIBE  # declares the http capability
    return guest(body_fmt.format(call=call), imports=HTTP, data=req, describe=describe)


def test_one_slow_http_call_is_given_back(engine: WasmEngine, slow_server: str) -> None:
    wasm = _http_guest(slow_server, "{call} " + DONE_EMPTY)
    grants = GuestGrants(http_hosts=("127.0.0.1",), http_timeout=5.0)
    net, took = run_guest(engine, wasm, tick_ms=100, grants=grants)
    failures = net.failures
    net.shutdown()
    assert failures == [], failures
    assert took >= 0.3


def test_http_waits_are_given_back_only_up_to_http_timeout(
    engine: WasmEngine, slow_server: str
) -> None:
    wasm = _http_guest(slow_server, LOCAL + " (loop $l {call} (br $l)) (i64.const 0)")
    grants = GuestGrants(http_hosts=("127.0.0.1",), http_timeout=1.0)
    net, took = run_guest(engine, wasm, tick_ms=100, grants=grants)
    (failure,) = net.failures
    net.shutdown()
    assert isinstance(failure.exception, GuestTimeout), failure.error
    assert 0.9 < took < 6.0  # ~1 s of given-back waiting + the 100 ms limit
