"""Benchmarks of the sandboxed (wasmtime) and native (ctypes) engines.

Run: ``python tests/bench/bench_wasm.py [--quick | --smoke]`` (``--smoke``: a few hundred ticks,
one sample each, only to show every case still works). Every number is printed as a ratio against
a baseline measured in the same run; nothing here asserts an absolute time.

What is measured as "engine tick" is the real per-tick path of a node in a ``Network``, with
real ``BufferedContext`` objects built as ``Scheduler._start_worker`` builds them, a batch of
``WORKER_BATCH`` at a time (building them is the scheduler thread's work and is not timed),
two ways:

* "single-tick path": ``node.run(ctx)`` for each ctx — one guest call per tick, what a guest
  built for ABI 1.0 (no ``reflow_tick_batch``) or a node with ``batch_ticks=1`` gets;
* "batched (ABI 1.1)": ``node.run_batch(batch)``, exactly what ``Scheduler._worker_ticks``
  calls on a worker thread for these nodes — one ``reflow_tick_batch`` guest call for the
  batch; the number printed is the batch's time divided by its ticks.

Both are compared with the same per-call raw baselines below. A tick and its baselines are
sampled in turns (``paired``), so load from other processes lands on both sides of a ratio.

1. WASM tick (doubler; 1 KiB passthrough) vs raw wasmtime calls + copy of the same bytes in and
   out through a memoryview over linear memory, with the same unchecked-call primitive the
   engine uses (``_wasm_fastcall.BoundCall``, the cheapest way to call wasmtime from Python):
   * "raw passthrough": a hand-written WAT export that returns its input (the target's
     baseline: the engine must pay for everything, the guest's own work included);
   * "raw same guest": the very ``reflow_tick`` export of the guest with the same input frame
     (so the ratio is the host's overhead alone);
   * "raw same guest, batched": one raw ``reflow_tick_batch`` call with the batch frame of
     ``WORKER_BATCH`` such inputs + copy of the results out, per tick (the host's overhead alone
     for the batched path).
   The public ``Func.__call__`` + ``Memory.write/read`` is shown for reference.
   Targets (issue #9): single-tick path <= 2x raw passthrough; batched <= 3x raw same guest
   batched. The first line printed says which tick codec ran (``REFLOW_CCODEC``: 0 the
   pure-Python one, 1 the compiled one, built first if need be).
2. Native tick (1 KiB passthrough) vs a bare ctypes call of the same entry point with the same
   pre-encoded frame, with the cheapest primitives (no argtypes, prebuilt arguments, copy out
   through the same memoryview the engine uses). Target: single-tick path <= 2x.
3. Two CPU-bound WASM nodes in parallel vs one, in a real Network (worker pool).
   Target: >= 1.7x throughput.
"""

from __future__ import annotations

import ctypes
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import wasmtime
from _ratios import print_ratios

from reflow import Message, Network
from reflow._core._actor import Actor, BufferedContext
from reflow._core._sched_workers import WORKER_BATCH
from reflow._sandbox import _wasm_fastcall as fastcall
from reflow._sandbox._native_engine import _PROCESS_MEMORY, NativeLibrary
from reflow._sandbox._wasm_engine import WasmEngine
from reflow.abi import encode_tick_input
from reflow.abi._codec import TickResult, decode_batch_results, encode_batch
from reflow.tools._guest_build import SDK_DIR, build_guest, host_target

M = Message
KIB = bytes(range(256)) * 4


Sampler = Callable[[], float]  # one sample: seconds per operation over a run of them


def calls(fn: Callable[[], Any], n: int) -> Sampler:
    """A sampler timing ``n`` back-to-back calls of ``fn``."""
    clock = time.perf_counter

    def sample() -> float:
        t0 = clock()
        for _ in range(n):
            fn()
        return (clock() - t0) / n

    return sample


def ticks(net: Network, node_id: str, inputs: dict[str, Message], n: int) -> Sampler:
    """A sampler timing ``n`` ticks of a node of ``net`` run the way a worker runs them:
    ``node.run(ctx)`` over batches of real BufferedContexts (built untimed, as the scheduler
    thread builds them in ``Scheduler._start_worker``)."""
    node = net._sched.nodes[node_id]  # the scheduler's record of the node, as a worker sees it
    run, sched = node.run, net._sched
    clock = time.perf_counter
    batches = max(n // WORKER_BATCH, 1)

    def sample() -> float:
        total = 0.0
        for _ in range(batches):
            batch = []
            for _ in range(WORKER_BATCH):
                ctx = BufferedContext(sched, node)
                ctx.inputs = dict(inputs)
                batch.append(ctx)
            t0 = clock()
            for ctx in batch:
                run(ctx)
            total += clock() - t0
            if batch[-1]._state != 1:
                raise AssertionError(f"tick did not end with done(): {batch[-1]._error}")
        return total / (batches * WORKER_BATCH)

    return sample


def batched_ticks(net: Network, node_id: str, inputs: dict[str, Message], n: int) -> Sampler:
    """Like :func:`ticks`, but each batch goes through ``node.run_batch(batch)`` — the call
    ``Scheduler._worker_ticks`` makes for an actor that has it."""
    node = net._sched.nodes[node_id]
    run_batch, sched = node.run_batch, net._sched
    assert run_batch is not None
    clock = time.perf_counter
    batches = max(n // WORKER_BATCH, 1)

    def sample() -> float:
        total = 0.0
        for _ in range(batches):
            batch = []
            for _ in range(WORKER_BATCH):
                ctx = BufferedContext(sched, node)
                ctx.inputs = dict(inputs)
                batch.append(ctx)
            t0 = clock()
            errors = run_batch(batch)
            total += clock() - t0
            if errors[-1] is not None or batch[-1]._state != 1:
                raise AssertionError(f"tick did not end with done(): {errors[-1]}")
        return total / (batches * WORKER_BATCH)

    return sample


def network_node(template: Actor) -> Network:
    net = Network()
    net.register_actor("bench/node", template)
    net.add_node("n", "bench/node")
    return net


REPEATS = 9  # samples per sampler in paired(); --smoke takes 1


def paired(samplers: dict[str, Sampler], repeats: int | None = None) -> dict[str, float]:
    """Median seconds per operation of each sampler. The samplers take turns within every
    repeat, so a burst of load from other processes hits a tick and its baseline alike."""
    samples: dict[str, list[float]] = {name: [] for name in samplers}
    for fn in samplers.values():
        fn()  # warm up
    for _ in range(REPEATS if repeats is None else repeats):
        for name, fn in samplers.items():
            samples[name].append(fn())
    return {name: statistics.median(v) for name, v in samples.items()}


PASSTHROUGH_WAT = """(module (memory (export "memory") 1)
  (func (export "pass") (param i32 i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get 1)) (i64.const 32))
            (i64.extend_i32_u (local.get 0)))))"""


def raw_round_trip(
    store: wasmtime.Store, func: wasmtime.Func, mem: wasmtime.Memory, frame: bytes, at: int
) -> Callable[[], bytes]:
    """Copy ``frame`` into linear memory at ``at``, call ``func(at, len)`` unchecked, copy the
    returned slice out: the fastest raw round trip."""
    fp = fastcall.FastPath(store)
    fp.bind_memory(mem)
    bound = fp.bind(func, 2)
    args, call, trap = bound.args, bound.call, bound.trap
    base, msize = fp.memory_data()
    view = memoryview((ctypes.c_ubyte * msize).from_address(base)).cast("B")
    size = len(frame)

    def fast() -> bytes:
        view[at : at + size] = frame
        args[0] = at
        args[2] = size
        if call() or trap.value:
            raise AssertionError("raw call failed")
        raw = args[0]
        ptr = raw & 0xFFFFFFFF
        return view[ptr : ptr + (raw >> 32)].tobytes()

    return fast


def passthrough(frame: bytes) -> tuple[Callable[[], bytes], Callable[[], bytes]]:
    """(unchecked, public API) raw round trips through a passthrough export."""
    store = wasmtime.Store(wasmtime.Engine())
    module = wasmtime.Module(store.engine, bytes(wasmtime.wat2wasm(PASSTHROUGH_WAT)))
    ex = wasmtime.Instance(store, module, []).exports(store)
    func, mem = ex["pass"], ex["memory"]
    assert isinstance(func, wasmtime.Func) and isinstance(mem, wasmtime.Memory)
    size = len(frame)

    def public() -> bytes:
        mem.write(store, frame, 1024)
        raw = func(store, 1024, size)
        return bytes(mem.read(store, raw & 0xFFFFFFFF, (raw & 0xFFFFFFFF) + (raw >> 32)))

    fast = raw_round_trip(store, func, mem, frame, 1024)
    assert fast() == frame and public() == frame
    return fast, public


def same_guest_batched(node: Any, frame: bytes) -> Callable[[], bytes]:
    """One raw reflow_tick_batch call with WORKER_BATCH copies of ``frame`` through an open
    node's own export, results copied out (no engine around it); divide its time by
    WORKER_BATCH for a per-tick figure."""
    inst = node._inst
    batch = encode_batch([frame] * WORKER_BATCH)
    inst.write_input(batch)
    inst.set_deadline(1 << 40)
    func = inst.batch_bound.func
    raw_round_trip(inst.store, func, inst.memory, batch, inst.in_ptr)()  # grows the arena
    call = raw_round_trip(inst.store, func, inst.memory, batch, inst.in_ptr)  # full view
    results = decode_batch_results(call(), WORKER_BATCH)
    assert all(isinstance(r, TickResult) and r.ok for r in results), results[:1]
    return call


def same_guest(node: Any, frame: bytes) -> Callable[[], bytes]:
    """A raw round trip through an open node's own reflow_tick export (no engine around it)."""
    inst = node._inst
    inst.write_input(frame)  # into the guest's own input buffer, from reflow_alloc
    inst.set_deadline(1 << 40)  # epoch interruption is on: a raw caller sets no deadlines
    return raw_round_trip(inst.store, inst.tick_bound.func, inst.memory, frame, inst.in_ptr)


def bench_wasm_ticks(guests: dict[str, Path], n: int) -> list[tuple[str, float]]:
    rows = []
    eng = WasmEngine(cache_dir=False)
    print("WASM tick vs raw wasmtime call + copy of the same bytes (same run):")
    for label, name, inputs in (
        ("doubler tick (Integer)", "doubler", {"in": M.integer(21)}),
        ("1 KiB passthrough tick (echo)", "echo", {"in": M.bytes(KIB)}),
    ):
        frame = encode_tick_input(inputs)
        actor = eng.load(guests[name]).actor()
        net = network_node(actor)
        raw_node = actor.open_node("raw", {})
        raw_batch_node = actor.open_node("raw-batch", {})
        fast, public = passthrough(frame)
        per_tick = 1 / WORKER_BATCH
        t = paired(
            {
                "tick": ticks(net, "n", inputs, n),
                "batched": batched_ticks(net, "n", inputs, n),
                "raw": calls(fast, n),
                "same": calls(same_guest(raw_node, frame), n),
                "same_batched": calls(
                    same_guest_batched(raw_batch_node, frame), max(n // WORKER_BATCH, 1)
                ),
                "public": calls(public, max(n // 20, 50)),
            }
        )
        tick, batched, raw, same = t["tick"], t["batched"], t["raw"], t["same"]
        same_b = t["same_batched"] * per_tick
        print(f"  {len(frame)} B input frame:")
        print(f"    raw passthrough, unchecked call + copy : {raw * 1e6:6.2f} us")
        print(f"    raw same guest, unchecked call + copy  : {same * 1e6:6.2f} us")
        print(
            f"    raw same guest, 1 batch call of {WORKER_BATCH}     : {same_b * 1e6:6.2f} us "
            f"per tick"
        )
        print(f"    raw passthrough, public Func call      : {t['public'] * 1e6:6.2f} us")
        print(f"    {label}:")
        print(
            f"      single-tick path (ABI 1.0 guest)     : {tick * 1e6:6.2f} us   ratio "
            f"{tick / raw:4.2f}x raw passthrough (target <= 2x), {tick / same:4.2f}x raw "
            f"same guest, {tick / t['public']:4.2f}x public"
        )
        print(
            f"      batched, run_batch of {WORKER_BATCH} (ABI 1.1)   : {batched * 1e6:6.2f} us   "
            f"ratio {batched / raw:4.2f}x raw passthrough, "
            f"{batched / same_b:4.2f}x raw same guest batched (target <= 3x)"
        )
        rows += [
            (f"wasm {name} single / raw passthrough", tick / raw),
            (f"wasm {name} batched / raw passthrough", batched / raw),
            (f"wasm {name} single / raw same guest", tick / same),
            (f"wasm {name} batched / raw same batched", batched / same_b),
        ]
        raw_node.close()
        raw_batch_node.close()
        net.shutdown()
    eng.close()
    return rows


def bench_native(native: dict[str, Path], n: int) -> list[tuple[str, float]]:
    lib = NativeLibrary(native["echo"])
    node = lib.actor().open_node("raw", {})
    inputs = {"in": M.bytes(KIB)}
    frame = encode_tick_input(inputs)
    handle = node._handle
    out_len = ctypes.c_uint32()
    ref = ctypes.byref(out_len)
    tick = lib._tick_unchecked  # reflow_tick without argtypes: the cheapest ctypes call
    memory = _PROCESS_MEMORY

    def bare() -> bytes:
        ptr = tick(handle, frame, len(frame), ref)
        return memory[ptr : ptr + out_len.value].tobytes()

    assert bare()[-len(KIB) :] == KIB
    batch_frame = (ctypes.c_ubyte * (24 + WORKER_BATCH * (4 + len(frame))))()
    batch_frame[:] = encode_batch([frame] * WORKER_BATCH)
    tick_batch = lib._batch_unchecked  # reflow_tick_batch, called like reflow_tick

    def bare_batch() -> bytes:
        ptr = tick_batch(handle, batch_frame, len(batch_frame), ref)
        return memory[ptr : ptr + out_len.value].tobytes()

    assert len(decode_batch_results(bare_batch(), WORKER_BATCH)) == WORKER_BATCH
    net = network_node(lib.actor())
    t = paired(
        {
            "tick": ticks(net, "n", inputs, n),
            "batched": batched_ticks(net, "n", inputs, n),
            "bare": calls(bare, n),
            "bare_batch": calls(bare_batch, max(n // WORKER_BATCH, 1)),
        }
    )
    net.shutdown()
    node.close()
    tick, batched, bare_t = t["tick"], t["batched"], t["bare"]
    bare_b = t["bare_batch"] / WORKER_BATCH
    print("Native tick vs a bare ctypes call with the same data (same run):")
    print(f"  bare ctypes reflow_tick + copy, 1 KiB           : {bare_t * 1e6:6.2f} us")
    print(
        f"  bare ctypes reflow_tick_batch of {WORKER_BATCH} + copy      : {bare_b * 1e6:6.2f} us "
        f"per tick"
    )
    print(
        f"  native engine, single-tick path (ABI 1.0 guest) : {tick * 1e6:6.2f} us   "
        f"ratio {tick / bare_t:4.2f}x bare call   (target <= 2x)"
    )
    print(
        f"  native engine, batched run_batch of {WORKER_BATCH} (ABI 1.1): "
        f"{batched * 1e6:6.2f} us   ratio {batched / bare_t:4.2f}x bare call   (target <= 3x), "
        f"{batched / bare_b:4.2f}x bare batch call"
    )
    return [
        ("native echo single / bare ctypes", tick / bare_t),
        ("native echo batched / bare ctypes", batched / bare_t),
    ]


BUSY_WAT = """(module (memory (export "memory") 1)
  (data (i32.const 1024) "{describe}")
  (data (i32.const 3000) "\\00\\00\\00")
  (func (export "reflow_abi_version") (result i32) (i32.const 65536))
  (func (export "reflow_alloc") (param i32) (result i32) (i32.const 4096))
  (func (export "reflow_describe") (result i64) (i64.const {describe_slice}))
  (func (export "reflow_open") (param i32 i32) (result i64) (i64.const 12884904888))
  (func (export "reflow_tick") (param i32 i32) (result i64) (local $i i32) (local $x i32)
    (local.set $i (i32.const {iterations}))
    (loop $l
      (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 1664525)) (i32.const 1013904223)))
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (br_if $l (local.get $i)))
    (i32.store (i32.const 0) (local.get $x))
    (i64.const 12884904888)))"""


def busy_module(iterations: int) -> bytes:
    describe = b'{"abi":"1.0","templates":[{"id":"bench/busy","inports":["in"],"outports":[]}]}'
    wat = BUSY_WAT.format(
        describe="".join(f"\\{b:02x}" for b in describe),
        describe_slice=(len(describe) << 32) | 1024,
        iterations=iterations,
    )
    return bytes(wasmtime.wat2wasm(wat))


def _control_speedup() -> float:
    import hashlib
    import threading

    data = b"x" * (16 << 20)

    def work() -> None:
        for _ in range(4):
            hashlib.sha256(data).digest()

    t0 = time.perf_counter()
    work()
    one = 1 / (time.perf_counter() - t0)
    threads = [threading.Thread(target=work) for _ in range(2)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return (2 / (time.perf_counter() - t0)) / one


def bench_parallel(ticks: int, iterations: int, samples: int = 3) -> list[tuple[str, float]]:
    eng = WasmEngine(cache_dir=False)
    actor = eng.load(busy_module(iterations)).actor()

    def run(nodes: int) -> float:
        net = Network()
        net.register_actor("bench/busy", actor)
        for i in range(nodes):
            net.add_node(f"busy{i}", "bench/busy")
            for _ in range(ticks):
                net.add_initial(f"busy{i}", "in", M.flow())
        t0 = time.perf_counter()
        summary = net.run(timeout=300)
        elapsed = time.perf_counter() - t0
        net.shutdown()
        assert summary.ok, summary.failures
        return nodes * ticks / elapsed

    run(1)  # warm up the worker pool and the code
    one = statistics.median(run(1) for _ in range(samples))
    two = statistics.median(run(2) for _ in range(samples))
    control = _control_speedup()
    print("2 CPU-bound WASM nodes in parallel vs 1 (Network, worker pool):")
    print(f"  1 node : {one:8.1f} ticks/s")
    print(f"  2 nodes: {two:8.1f} ticks/s   speed-up {two / one:4.2f}x   (target >= 1.7x)")
    print(
        f"  control: 2 threads of GIL-free sha256 vs 1 on this machine now: {control:4.2f}x "
        f"(if this is low, other processes are using the cores)"
    )
    eng.close()
    return [("2 nodes / 1 node throughput", two / one)]


def _codec_kind() -> str:
    from reflow.abi import _ccodec
    from reflow.abi._codec import tick_codec

    if os.environ.get("REFLOW_CCODEC", "").strip() != "0":
        _ccodec.require() if os.environ.get("REFLOW_CCODEC") == "1" else _ccodec.get()
        deadline = time.monotonic() + _ccodec.BUILD_TIMEOUT_S
        while _ccodec.get() is None and _ccodec._state == "building":
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)  # a first run builds it: measure what a node then gets
    codec = tick_codec(["in"], ["out"])
    return "compiled (abi/_ccodec)" if type(codec).__name__.startswith("_Compiled") else "Python"


def main(argv: list[str] | None = None) -> int:
    global REPEATS
    args = sys.argv[1:] if argv is None else argv
    unknown = set(args) - {"--quick", "--smoke"}
    if unknown:
        print(
            f"usage: bench_wasm.py [--quick | --smoke]; unknown: {' '.join(sorted(unknown))}",
            file=sys.stderr,
        )
        return 2
    smoke = "--smoke" in args
    quick = "--quick" in args
    n = 200 if smoke else 2000 if quick else 20000
    if smoke:
        REPEATS = 1
    with tempfile.TemporaryDirectory() as tmp:
        guests = {
            name: build_guest([SDK_DIR / "examples" / f"{name}.c"], tmp, name=name)["wasm32"]
            for name in ("doubler", "echo")
        }
        print(f"wasmtime-py fast path: {fastcall.REASON}")
        print(f"tick codec: {_codec_kind()} (REFLOW_CCODEC=0 for the Python one, 1 to require C)")
        rows = bench_wasm_ticks(guests, n)
        target = host_target()
        if target is not None:
            native = {
                "echo": build_guest(
                    [SDK_DIR / "examples" / "echo.c"], tmp, name="echo", targets=[target]
                )[target]
            }
            rows += bench_native(native, n)
        if smoke:
            rows += bench_parallel(ticks=2, iterations=200_000, samples=1)
        else:
            rows += bench_parallel(
                ticks=10 if quick else 40, iterations=2_000_000 if quick else 10_000_000
            )
    print_ratios(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
