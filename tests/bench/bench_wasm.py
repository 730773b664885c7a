"""Benchmarks of the sandboxed (wasmtime) and native (ctypes) engines.

Run: ``python tests/bench/bench_wasm.py``. Every number is printed as a ratio against a
baseline measured in the same run; nothing here asserts an absolute time.

1. WASM tick (doubler; 1 KiB passthrough) vs a raw wasmtime call + copy of the same bytes:
   the raw baseline calls a hand-written passthrough export with the C API's unchecked call
   (the fastest way wasmtime can be called from Python) and copies the bytes in and out
   through a memoryview over linear memory;
   the public ``Func.__call__`` + ``Memory.write/read`` is shown for reference.
   Target: tick <= 2x raw.
2. Native tick (1 KiB passthrough) vs a bare ctypes call of the same entry point with the same
   pre-encoded frame. Target: <= 3x.
3. Two CPU-bound WASM nodes in parallel vs one, in a real Network (worker pool).
   Target: >= 1.7x throughput.
"""

from __future__ import annotations

import ctypes
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import wasmtime
from reflow import Message, Network
from reflow import _wasm_fastcall as fastcall
from reflow._native_engine import NativeLibrary
from reflow._wasm_engine import WasmEngine
from reflow.abi import encode_tick_input
from reflow.tools._guest_build import SDK_DIR, build_guest, host_target

M = Message
KIB = bytes(range(256)) * 4


class _Ctx:
    """The cheapest ctx that satisfies the contract, so the tick itself is measured."""

    __slots__ = ("config", "inputs", "log", "node", "out")

    def __init__(self, inputs: dict[str, Message]) -> None:
        self.inputs = inputs
        self.config: dict[str, Any] = {}
        self.node = "bench"
        self.log = logging.getLogger("bench")
        self.out: Any = None

    def done(self, outputs: Any = None) -> None:
        self.out = outputs

    def fail(self, message: str) -> None:
        raise AssertionError(message)

    def emit(self, port: str, msg: Message) -> None:
        pass


def per_call(fn: Callable[[], Any], n: int, repeats: int = 7) -> float:
    """Median seconds per call over ``repeats`` runs of ``n`` calls."""
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t0) / n)
    return statistics.median(samples)


PASSTHROUGH_WAT = """(module (memory (export "memory") 1)
  (func (export "pass") (param i32 i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get 1)) (i64.const 32))
            (i64.extend_i32_u (local.get 0)))))"""


def raw_baselines(payload: bytes, n: int) -> tuple[float, float]:
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    module = wasmtime.Module(engine, wasmtime.wat2wasm(PASSTHROUGH_WAT))
    inst = wasmtime.Instance(store, module, [])
    ex = inst.exports(store)
    func, mem = ex["pass"], ex["memory"]
    assert isinstance(func, wasmtime.Func) and isinstance(mem, wasmtime.Memory)
    size = len(payload)

    fp = fastcall.FastPath(store)
    fp.bind_memory(mem)
    call = fp.make_caller(func, 2)
    base, msize = fp.memory_data()
    view = memoryview((ctypes.c_ubyte * msize).from_address(base)).cast("B")

    def fast() -> bytes:
        # the fastest raw round trip: memoryview copy in, unchecked call, memoryview copy out
        view[1024 : 1024 + size] = payload
        raw, _ = call(1024, size)
        ptr = raw & 0xFFFFFFFF
        return view[ptr : ptr + (raw >> 32)].tobytes()

    def public() -> bytes:
        mem.write(store, payload, 1024)
        raw = func(store, 1024, size)
        return bytes(mem.read(store, raw & 0xFFFFFFFF, (raw & 0xFFFFFFFF) + (raw >> 32)))

    assert fast() == payload and public() == payload
    result = per_call(fast, n), per_call(public, max(n // 10, 100))
    view.release()
    return result


def bench_wasm_ticks(guests: dict[str, Path], n: int) -> list[tuple[str, float]]:
    rows = []
    eng = WasmEngine(cache_dir=False)
    dbl = eng.load(guests["doubler"]).actor().open_node("d", {})
    echo = eng.load(guests["echo"]).actor().open_node("e", {})
    ctx_int = _Ctx({"in": M.integer(21)})
    ctx_kib = _Ctx({"in": M.bytes(KIB)})
    frame_int = encode_tick_input(ctx_int.inputs)
    frame_kib = encode_tick_input(ctx_kib.inputs)
    t_dbl = per_call(lambda: dbl.run(ctx_int), n)
    t_echo = per_call(lambda: echo.run(ctx_kib), n)
    raw_int, pub_int = raw_baselines(frame_int, n)
    raw_kib, pub_kib = raw_baselines(frame_kib, n)
    print("WASM tick vs raw wasmtime call + copy of the same bytes (same run):")
    print(f"  raw unchecked call + copy, {len(frame_int)} B : {raw_int * 1e6:7.2f} us")
    print(f"  raw public Func call + copy, {len(frame_int)} B: {pub_int * 1e6:7.2f} us")
    print(f"  doubler tick (Integer)         : {t_dbl * 1e6:7.2f} us   "
          f"ratio {t_dbl / raw_int:5.2f}x raw unchecked, {t_dbl / pub_int:5.2f}x raw public")
    print(f"  raw unchecked call + copy, 1 KiB: {raw_kib * 1e6:7.2f} us")
    print(f"  raw public Func call + copy, 1 KiB: {pub_kib * 1e6:7.2f} us")
    print(f"  1 KiB passthrough tick (echo)  : {t_echo * 1e6:7.2f} us   "
          f"ratio {t_echo / raw_kib:5.2f}x raw unchecked, {t_echo / pub_kib:5.2f}x raw public"
          f"   (target <= 2x)")
    rows += [("wasm doubler / raw", t_dbl / raw_int), ("wasm 1KiB / raw", t_echo / raw_kib)]
    dbl.close()
    echo.close()
    eng.close()
    return rows


def bench_native(native: dict[str, Path], n: int) -> list[tuple[str, float]]:
    lib = NativeLibrary(native["echo"])
    node = lib.actor().open_node("e", {})
    ctx = _Ctx({"in": M.bytes(KIB)})
    frame = encode_tick_input(ctx.inputs)
    handle = node._handle
    out_len = ctypes.c_uint32()
    ref = ctypes.byref(out_len)
    tick = lib._lib.reflow_tick

    def bare() -> bytes:
        ptr = tick(handle, frame, len(frame), ref)
        return ctypes.string_at(ptr, out_len.value)

    bare()
    t_bare = per_call(bare, n)
    t_tick = per_call(lambda: node.run(ctx), n)
    print("Native tick vs a bare ctypes call with the same data (same run):")
    print(f"  bare ctypes reflow_tick + copy, 1 KiB: {t_bare * 1e6:7.2f} us")
    print(f"  native engine tick, 1 KiB           : {t_tick * 1e6:7.2f} us   "
          f"ratio {t_tick / t_bare:5.2f}x   (target <= 3x)")
    node.close()
    return [("native 1KiB / bare ctypes", t_tick / t_bare)]


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
    return wasmtime.wat2wasm(wat)


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


def bench_parallel(ticks: int, iterations: int) -> list[tuple[str, float]]:
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
    one = statistics.median(run(1) for _ in range(3))
    two = statistics.median(run(2) for _ in range(3))
    control = _control_speedup()
    print("2 CPU-bound WASM nodes in parallel vs 1 (Network, worker pool):")
    print(f"  1 node : {one:8.1f} ticks/s")
    print(f"  2 nodes: {two:8.1f} ticks/s   speed-up {two / one:4.2f}x   (target >= 1.7x)")
    print(f"  control: 2 threads of GIL-free sha256 vs 1 on this machine now: {control:4.2f}x "
          f"(if this is low, other processes are using the cores)")
    eng.close()
    return [("2 nodes / 1 node throughput", two / one)]


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    n = 2000 if quick else 20000
    with tempfile.TemporaryDirectory() as tmp:
        guests = {
            name: build_guest([SDK_DIR / "examples" / f"{name}.c"], tmp, name=name)["wasm32"]
            for name in ("doubler", "echo")
        }
        print(f"wasmtime-py fast path: {fastcall.REASON}")
        rows = bench_wasm_ticks(guests, n)
        target = host_target()
        if target is not None:
            native = {
                "echo": build_guest(
                    [SDK_DIR / "examples" / "echo.c"], tmp, name="echo", targets=[target]
                )[target]
            }
            rows += bench_native(native, n)
        rows += bench_parallel(
            ticks=10 if quick else 40, iterations=2_000_000 if quick else 10_000_000
        )
    print("summary:")
    for name, ratio in rows:
        print(f"  {name:32s} {ratio:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
