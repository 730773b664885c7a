"""Batched ticks (guest ABI 1.1, ``reflow_tick_batch``): a batch gives every tick exactly the
result it gets alone, state carries across batches, a trap, timeout, invalid frame or output
over the cap in tick k fails tick k only, host functions act for the tick that is running, and
1.0 guests (no batch export) still run — for WebAssembly and native guests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from sandbox_helpers import TickCtx

from reflow import Message, Network
from reflow._errors import (
    CapabilityError,
    GuestABIError,
    GuestOutputError,
    GuestTimeout,
    GuestTrap,
    OutputLimitError,
)
from reflow._sandbox._guest_actor import GuestNodeActor
from reflow._sandbox._guest_host import GuestGrants, GuestLimits
from reflow._sandbox._native_engine import NativeLibrary
from reflow._sandbox._wasm_engine import WasmEngine
from reflow.abi import VECTORS_DIR
from reflow.tools._guest_build import SDK_DIR, build_guest, host_target

M = Message
MESSAGES = json.loads((VECTORS_DIR / "messages.json").read_text(encoding="utf-8"))["messages"]
ENGINES = ["wasm", "native"]


def open_node(
    kind: str,
    name: str,
    engine: WasmEngine,
    guest_wasm: dict[str, Path],
    guest_native: Callable[[], dict[str, Path]],
    *,
    limits: GuestLimits | None = None,
    grants: GuestGrants | None = None,
    node: str = "n",
) -> GuestNodeActor:
    if kind == "wasm":
        actor: Any = engine.load(guest_wasm[name]).actor(limits=limits, grants=grants)
    else:
        actor = NativeLibrary(guest_native()[name]).actor(limits=limits, grants=grants)
    return actor.open_node(node, {})


@pytest.fixture
def native(request: pytest.FixtureRequest) -> Callable[[], dict[str, Path]]:
    """The native examples, built only when a test asks for them (skips without a target)."""
    return lambda: request.getfixturevalue("guest_native")


class SingleTickForbidden(AssertionError):
    pass


def batched(node: GuestNodeActor, ctxs: list[TickCtx]) -> list[BaseException | None]:
    """run_batch, asserting that no tick took the one-call-per-tick path."""

    def no_single(ctx: Any) -> Any:
        raise SingleTickForbidden("a tick ran through reflow_tick instead of the batch")

    node._tick = no_single
    try:
        return node.run_batch(ctxs)
    finally:
        del node._tick


def outcome(ctx: TickCtx, exc: BaseException | None) -> tuple[Any, ...]:
    if exc is not None:
        return ("raised", type(exc).__name__, str(exc))
    if ctx.error is not None:
        return ("failed", ctx.error)
    return ("done", ctx.outputs, ctx.sent)


@pytest.mark.parametrize("kind", ENGINES)
def test_batch_results_equal_single_tick_results_for_every_vector(
    kind: str,
    engine: WasmEngine,
    guest_wasm: dict[str, Path],
    native: Callable[[], dict[str, Path]],
) -> None:
    ticks: list[dict[str, Message]] = [
        {"in": Message.from_json(v["message"])}
        for v in MESSAGES
        if v["message"]["type"] != "Stream"
    ]
    ticks += [
        {"a": M.integer(1), "b": M.string("two")},  # several inputs in one tick
        {"in": M.string("fail:tick failed on purpose")},  # a fail() in the middle
        {"in": M.bytes(bytes(range(256)) * 64)},  # 16 KiB: grows the input buffer
        {"b": M.flow()},
    ]
    single = open_node(kind, "echo", engine, guest_wasm, native, node="single")
    batch = open_node(kind, "echo", engine, guest_wasm, native, node="batch")
    assert batch._batching
    want = []
    for inputs in ticks:
        ctx = TickCtx(dict(inputs))
        want.append(outcome(ctx, single._one(ctx)))
    for size in (2, 5, 32):
        got = []
        for i in range(0, len(ticks), size):
            ctxs = [TickCtx(dict(t)) for t in ticks[i : i + size]]
            errors = batched(batch, ctxs) if len(ctxs) > 1 else [batch._one(ctxs[0])]
            got += [outcome(c, e) for c, e in zip(ctxs, errors, strict=True)]
        assert got == want, f"batches of {size}"
    single.close()
    batch.close()


@pytest.mark.parametrize("kind", ENGINES)
def test_counter_state_carries_across_batches(
    kind: str,
    engine: WasmEngine,
    guest_wasm: dict[str, Path],
    native: Callable[[], dict[str, Path]],
) -> None:
    node = open_node(kind, "counter", engine, guest_wasm, native)
    pools: dict[str, dict[str, Any]] = {}
    counts, ticks = [], []
    for batch_size in (32, 7, 32, 2):
        ctxs = [TickCtx({"in": M.flow()}, pools=pools) for _ in range(batch_size)]
        assert batched(node, ctxs) == [None] * batch_size
        for c in ctxs:
            assert c.outputs is not None, c.error
            out = dict(c.outputs)
            counts.append(out["count"]["data"])
            ticks.append(out["ticks"]["data"])
    assert counts == list(range(1, 74)) == ticks
    assert pools["state"]["count"] == M.integer(73)
    node.close()


@pytest.mark.parametrize("kind", ENGINES)
def test_emit_mid_tick_goes_to_the_tick_that_emitted(
    kind: str,
    engine: WasmEngine,
    guest_wasm: dict[str, Path],
    native: Callable[[], dict[str, Path]],
) -> None:
    node = open_node(kind, "stream", engine, guest_wasm, native)
    ctxs = [TickCtx({"in": M.integer(n)}) for n in (3, 0, 2, 5)]
    assert batched(node, ctxs) == [None] * 4
    for n, c in zip((3, 0, 2, 5), ctxs, strict=True):
        assert c.sent == [("out", M.integer(i)) for i in range(n)]
        assert c.outputs == [("done", M.integer(n))]
    node.close()


@pytest.mark.parametrize("kind", ENGINES)
def test_sdk_ends_a_big_batch_early_and_the_host_sends_the_rest(
    kind: str,
    engine: WasmEngine,
    guest_wasm: dict[str, Path],
    native: Callable[[], dict[str, Path]],
) -> None:
    node = open_node(kind, "echo", engine, guest_wasm, native)
    covered: list[int] = []
    real = node._tick_batch

    def counting(ctxs: list[Any], errors: list[Any], base: int) -> tuple[int, bool]:
        used, trapped = real(ctxs, errors, base)
        covered.append(used)
        return used, trapped

    node._tick_batch = counting
    payload = bytes(range(256)) * 400  # 100 KiB a tick: past the SDK's 1 MiB batch budget
    ctxs = [TickCtx({"in": M.bytes(payload + bytes([i]))}) for i in range(20)]
    assert batched(node, ctxs) == [None] * 20
    assert [c.outputs for c in ctxs] == [[("in", M.bytes(payload + bytes([i])))] for i in range(20)]
    assert len(covered) > 1 and sum(covered) == 20, covered
    node.close()


@pytest.mark.parametrize("size_kib", [700, 1500, 3000])
def test_big_ticks_under_a_tight_memory_cap_fare_as_they_do_alone(
    engine: WasmEngine, guest_wasm: dict[str, Path], size_kib: int
) -> None:
    """A batch needs no more guest memory than its biggest tick: results are written in
    place, the input buffer grows to about 1 MiB for a batch, and the SDK ends a batch once
    it used 1 MiB of arena."""
    module = engine.load(guest_wasm["echo"])
    got = {}
    for batch_ticks in (1, 32):
        limits = GuestLimits(memory_bytes=8 << 20, batch_ticks=batch_ticks)
        node = module.actor(limits=limits).open_node("n", {})
        ctxs = [TickCtx({"in": M.bytes(bytes([i]) * (size_kib << 10))}) for i in range(6)]
        errors = node.run_batch(ctxs)
        got[batch_ticks] = [
            type(e).__name__ if e else c.error or c.outputs == [("in", c.inputs["in"])]
            for c, e in zip(ctxs, errors, strict=True)
        ]
        node.close()
    assert got[32] == got[1]
    # 3000 KiB: the guest cannot allocate its output and fails the tick itself
    assert got[1] == ([True] * 6 if size_kib < 3000 else ["echo: output failed"] * 6)


def test_counter_in_a_network_across_worker_batches(
    engine: WasmEngine, guest_wasm: dict[str, Path]
) -> None:
    net = Network()
    net.register_actor("example/counter", engine.load(guest_wasm["counter"]).actor())
    net.add_node("c", "example/counter")
    out = net.collect("c", "count")
    for _ in range(200):
        net.add_initial("c", "in", M.flow())
    summary = net.run(timeout=30)
    assert summary.ok, summary.failures
    assert [m["data"] for m in out] == list(range(1, 201))
    net.shutdown()


@pytest.mark.parametrize("kind", ENGINES)
def test_output_over_the_cap_fails_only_its_tick(
    kind: str,
    engine: WasmEngine,
    guest_wasm: dict[str, Path],
    native: Callable[[], dict[str, Path]],
) -> None:
    node = open_node(kind, "echo", engine, guest_wasm, native, limits=GuestLimits(output_bytes=600))
    sizes = [10, 1000, 20, 700, 30]
    ctxs = [TickCtx({"in": M.bytes(b"x" * n)}) for n in sizes]
    errors = batched(node, ctxs)
    for n, c, e in zip(sizes, ctxs, errors, strict=True):
        if n > 600:
            assert isinstance(e, OutputLimitError), e
            assert "the limit is 600" in str(e)
        else:
            assert e is None and c.outputs == [("in", M.bytes(b"x" * n))]
    node.close()


@pytest.mark.parametrize("kind", ENGINES)
def test_host_function_error_fails_only_the_tick_that_called_it(
    kind: str,
    engine: WasmEngine,
    guest_wasm: dict[str, Path],
    native: Callable[[], dict[str, Path]],
) -> None:
    node = open_node(
        kind, "http", engine, guest_wasm, native, grants=GuestGrants(http_hosts=("a.example",))
    )
    ctxs = [
        TickCtx({"url": M.integer(1)}),  # fails (not a URL) without calling the host
        TickCtx({"url": M.string("http://127.0.0.1:9/x")}),  # host not allowed
        TickCtx({"url": M.integer(3)}),
    ]
    errors = node.run_batch(ctxs)
    assert errors[0] is None and ctxs[0].error == "http: expected a String URL on 'url'"
    assert isinstance(errors[1], CapabilityError) and "may not reach host" in str(errors[1])
    assert ctxs[1].outputs is None and ctxs[1].error is None
    assert errors[2] is None and ctxs[2].error == "http: expected a String URL on 'url'"
    node.close()


# -- hostile batch guests, inline WAT ------------------------------------------------------------
# Ticks take one Integer on "in"; a batch input frame is then 18 bytes (u32 14 + 01 00 02 "in" 03
# + i64), its value at offset 10. Results are "done, out=value" (16 bytes), written at RESULTS.
# The value picks a misbehaviour: 13 traps, 99 loops forever, 7 returns a bad status byte.
RESULTS = 16384
HEAD_OK = int.from_bytes(b"\x00\x01\x00\x03out\x03", "little")
HEAD_BAD = int.from_bytes(b"\x09\x01\x00\x03out\x03", "little")


def describe(abi: str) -> bytes:
    return (
        b'{"abi":"' + abi.encode() + b'","templates":[{"id":"batch/x","inports":["in"],'
        b'"outports":["out"]}]}'
    )


def misbehave(value: str) -> str:
    return f"""
    (if (i64.eq {value} (i64.const 13)) (then unreachable))
    (if (i64.eq {value} (i64.const 99)) (then (loop $spin (br $spin))))"""


def batch_guest(
    *,
    abi: int = 0x10001,
    batch: bool = True,
    report_done: str = "(local.get $i)",
    extra: str = "",
) -> bytes:
    doc = describe(f"{abi >> 16}.{abi & 0xFFFF}")
    hexdoc = "".join(f"\\{b:02x}" for b in doc)
    head = f"(select (i64.const {HEAD_BAD}) (i64.const {HEAD_OK}) (i64.eq $V (i64.const 7)))"
    batch_func = (
        f"""
  (func (export "reflow_tick_batch") (param i32 i32) (result i64)
    (local $n i32) (local $i i32) (local $v i64) (local $r i32)
    (local.set $n (i32.load (local.get 0)))
    (i32.store offset=4 (local.get 0) (i32.const 0))
    (block $out (loop $next
      (br_if $out (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $v (i64.load offset=34
                      (i32.add (local.get 0) (i32.mul (local.get $i) (i32.const 18)))))
      {misbehave("(local.get $v)")}
      (local.set $r (i32.add (i32.const {RESULTS}) (i32.mul (local.get $i) (i32.const 20))))
      (i32.store (local.get $r) (i32.const 16))
      (i64.store offset=4 (local.get $r) {head.replace("$V", "(local.get $v)")})
      (i64.store offset=12 (local.get $r) (local.get $v))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (i64.store offset=8 (local.get 0) (i64.const {RESULTS}))
      (i32.store offset=16 (local.get 0) (i32.mul (local.get $i) (i32.const 20)))
      (i32.store offset=4 (local.get 0) {report_done})
      (br $next)))
    (i64.or (i64.shl (i64.extend_i32_u (i32.mul (local.get $n) (i32.const 20))) (i64.const 32))
            (i64.const {RESULTS})))"""
        if batch
        else ""
    )
    return bytes(
        wasmtime.wat2wasm(f"""(module
  (memory (export "memory") 1)
  (data (i32.const 1024) "{hexdoc}")
  (data (i32.const 3000) "\\00\\00\\00")
  (func (export "reflow_abi_version") (result i32) (i32.const {abi}))
  (func (export "reflow_alloc") (param i32) (result i32) (i32.const 4096))
  (func (export "reflow_describe") (result i64) (i64.const {(len(doc) << 32) | 1024}))
  (func (export "reflow_open") (param i32 i32) (result i64) (i64.const {(3 << 32) | 3000}))
  (func (export "reflow_tick") (param i32 i32) (result i64) (local $v i64)
    (local.set $v (i64.load offset=6 (local.get 0)))
    {misbehave("(local.get $v)")}
    (i64.store (i32.const {RESULTS}) {head.replace("$V", "(local.get $v)")})
    (i64.store (i32.const {RESULTS + 8}) (local.get $v))
    (i64.const {(16 << 32) | RESULTS})){batch_func}{extra})""")
    )


def run_values(
    node: GuestNodeActor, values: list[int]
) -> tuple[list[TickCtx], list[BaseException | None]]:
    ctxs = [TickCtx({"in": M.integer(v)}) for v in values]
    return ctxs, node.run_batch(ctxs)


def check_delivered(ctxs: list[TickCtx], errors: list[Any], values: list[int], bad: int) -> None:
    for i, (c, e, v) in enumerate(zip(ctxs, errors, values, strict=True)):
        if i == bad:
            assert c.outputs is None and c.error is None
        else:
            assert e is None, f"tick {i}: {e}"
            assert c.outputs == [("out", M.integer(v))], f"tick {i}"


@pytest.mark.parametrize("k", [0, 2, 4])
def test_trap_in_tick_k_fails_only_tick_k(engine: WasmEngine, k: int) -> None:
    node = engine.load(batch_guest(), name="trap.wasm").actor().open_node("t", {})
    assert node._batching
    values = [1, 2, 3, 4, 5]
    values[k] = 13
    ctxs, errors = run_values(node, values)
    assert isinstance(errors[k], GuestTrap), errors[k]
    assert f"reflow_tick_batch (tick {k + 1} of 5)" in str(errors[k])
    assert "unreachable" in str(errors[k])
    check_delivered(ctxs, errors, values, k)
    ctxs, errors = run_values(node, [6, 8, 9])  # the node keeps working, batched again
    check_delivered(ctxs, errors, [6, 8, 9], -1)
    node.close()


def test_timeout_in_tick_k_fails_only_tick_k(engine: WasmEngine) -> None:
    limits = GuestLimits(tick_ms=40)
    node = engine.load(batch_guest(), name="spin.wasm").actor(limits=limits).open_node("t", {})
    values = [1, 2, 99, 4]
    ctxs, errors = run_values(node, values)
    assert isinstance(errors[2], GuestTimeout), errors[2]
    # each tick of the batch has its own budget of tick_ms (issue #8)
    assert "reflow_tick_batch (tick 3 of 4) ran past its time limit of 40 ms" in str(errors[2])
    check_delivered(ctxs, errors, values, 2)
    node.close()


def test_invalid_result_frame_fails_only_its_tick(engine: WasmEngine) -> None:
    node = engine.load(batch_guest(), name="bad.wasm").actor().open_node("t", {})
    values = [1, 7, 3]
    ctxs, errors = run_values(node, values)
    assert isinstance(errors[1], GuestOutputError)
    assert "result status byte must be 0 (done) or 1 (fail), got 9" in str(errors[1])
    check_delivered(ctxs, errors, values, 1)
    node.close()


def test_guest_that_reports_no_progress_fails_the_batch_cleanly(engine: WasmEngine) -> None:
    node = (
        engine.load(batch_guest(report_done="(i32.const 0)"), name="stuck.wasm")
        .actor()
        .open_node("t", {})
    )
    ctxs, errors = run_values(node, [1, 2])
    assert all(isinstance(e, GuestOutputError) for e in errors)
    assert "reported 0 of 2 ticks done" in str(errors[0])
    ctxs, errors = run_values(node, [1])  # a lone tick still goes through reflow_tick
    assert errors == [None] and ctxs[0].outputs == [("out", M.integer(1))]
    node.close()


@pytest.mark.parametrize(
    ("abi", "batch"), [(0x10000, False), (0x10000, True)], ids=["1.0", "1.0-with-export"]
)
def test_abi_1_0_guest_runs_one_call_per_tick(engine: WasmEngine, abi: int, batch: bool) -> None:
    """A 1.0 guest is never sent a batch, even if it happens to export the name."""
    module = engine.load(batch_guest(abi=abi, batch=batch), name="v10.wasm")
    assert module.abi_version == (1, 0) and not module.batch
    node = module.actor().open_node("t", {})
    assert not node._batching
    values = [1, 13, 3]
    ctxs, errors = run_values(node, values)
    assert isinstance(errors[1], GuestTrap) and "reflow_tick" in str(errors[1])
    check_delivered(ctxs, errors, values, 1)
    node.close()


def test_abi_1_0_guest_in_a_network(engine: WasmEngine) -> None:
    net = Network()
    net.register_actor("batch/x", engine.load(batch_guest(abi=0x10000, batch=False)).actor())
    net.add_node("x", "batch/x")
    out = net.collect("x", "out")
    values = list(range(100, 200))  # clear of the values that misbehave
    for v in values:
        net.add_initial("x", "in", M.integer(v))
    summary = net.run(timeout=30)
    assert summary.ok, summary.failures
    assert [m["data"] for m in out] == values
    net.shutdown()


@pytest.fixture(scope="module")
def echo_1_0(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The echo example built with -DREFLOW_ABI_1_0: a 1.0 guest, no reflow_tick_batch."""
    targets = ["wasm32"] + ([t] if (t := host_target()) is not None else [])
    return build_guest(
        [SDK_DIR / "examples" / "echo.c"],
        tmp_path_factory.mktemp("echo10"),
        name="echo10",
        targets=targets,
        extra_flags=["-DREFLOW_ABI_1_0"],
    )


@pytest.mark.parametrize("kind", ENGINES)
def test_sdk_guest_built_for_1_0_runs_one_call_per_tick(
    kind: str, engine: WasmEngine, echo_1_0: dict[str, Path]
) -> None:
    if kind == "wasm":
        module: Any = engine.load(echo_1_0["wasm32"])
        assert module.abi_version == (1, 0) and not module.batch
    else:
        target = host_target()
        if target is None:
            pytest.skip("no native target for this machine")
        module = NativeLibrary(echo_1_0[target])
        assert module.abi_version == (1, 0) and module._batch_unchecked is None
    node = module.actor().open_node("n", {})
    assert not node._batching
    inputs = [{"in": M.integer(1)}, {"in": M.string("fail:no")}, {"in": M.bytes(b"abc")}]
    ctxs = [TickCtx(dict(i)) for i in inputs]
    assert node.run_batch(ctxs) == [None] * 3
    assert [outcome(c, None) for c in ctxs] == [
        ("done", [("in", M.integer(1))], []),
        ("failed", "no"),
        ("done", [("in", M.bytes(b"abc"))], []),
    ]
    node.close()


def test_batch_ticks_must_be_positive() -> None:
    with pytest.raises(ValueError, match="batch_ticks must be at least 1"):
        GuestLimits(batch_ticks=0)


def test_batch_ticks_1_turns_batching_off(engine: WasmEngine) -> None:
    actor = engine.load(batch_guest(), name="off.wasm").actor(limits=GuestLimits(batch_ticks=1))
    node = actor.open_node("t", {})
    assert not node._batching
    _, errors = run_values(node, [1, 2])
    assert errors == [None, None]
    node.close()


def test_mistyped_batch_export_is_refused_at_load(engine: WasmEngine) -> None:
    wasm = batch_guest(
        batch=False,
        extra='(func (export "reflow_tick_batch") (param i32) (result i32) (i32.const 0))',
    )
    with pytest.raises(GuestABIError, match=r"reflow_tick_batch \(optional\)"):
        engine.load(wasm, name="mistyped.wasm")


def test_batch_of_a_closed_node_fails_every_tick(engine: WasmEngine) -> None:
    node = engine.load(batch_guest(), name="closed.wasm").actor().open_node("t", {})
    node.close()
    _, errors = run_values(node, [1, 2])
    assert all(e is not None and "is closed" in str(e) for e in errors)
