"""The private wasmtime fast path (reflow._sandbox._wasm_fastcall).

These tests fail LOUDLY when the private path breaks with the pinned wasmtime: the engine
would silently fall back to the public API and every sandboxed tick would become ~6x
slower. If this fails after a wasmtime upgrade, re-check the private names used in
host/_sandbox/_wasm_fastcall.py against the new wasmtime-py, then add its major to SUPPORTED.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import wasmtime
from sandbox_helpers import TickCtx

from reflow._core._messages import Message
from reflow._sandbox import _wasm_fastcall as fastcall
from reflow._sandbox._wasm_engine import WasmEngine


def test_fast_path_is_available_with_the_pinned_wasmtime() -> None:
    assert fastcall.AVAILABLE, (
        f"PRIVATE WASMTIME FAST PATH BROKEN — {fastcall.REASON}. Sandboxed ticks now use the "
        f"slow public API; fix host/_sandbox/_wasm_fastcall.py for this wasmtime-py version."
    )


def test_default_engine_uses_the_fast_path() -> None:
    eng = WasmEngine(cache_dir=False)
    assert eng.fast_path is True
    eng.close()


def test_unchecked_call_and_memory_access_round_trip() -> None:
    wat = """(module (memory (export "memory") 1)
      (func (export "add") (param i32 i32) (result i64)
        (i64.extend_i32_u (i32.add (local.get 0) (local.get 1))))
      (func (export "store") (param i32 i32) (result i64)
        (i32.store8 (local.get 0) (local.get 1)) (i64.const 0)))"""
    store = wasmtime.Store(wasmtime.Engine())
    inst = wasmtime.Instance(store, wasmtime.Module(store.engine, wasmtime.wat2wasm(wat)), [])
    exports = inst.exports(store)
    fp = fastcall.FastPath(store)
    mem = exports["memory"]
    assert isinstance(mem, wasmtime.Memory)
    fp.bind_memory(mem)
    add = fp.make_caller(exports["add"], 2)  # type: ignore[arg-type]
    assert add(40, 2) == (42, None)
    put = fp.make_caller(exports["store"], 2)  # type: ignore[arg-type]
    assert put(100, 7)[1] is None
    base, size = fp.memory_data()
    assert size == 65536 and base != 0
    assert mem.read(store, 100, 101) == b"\x07"


def test_fast_path_trap_comes_back_as_a_trap() -> None:
    wat = '(module (func (export "f") (param i32 i32) (result i64) unreachable))'
    store = wasmtime.Store(wasmtime.Engine())
    inst = wasmtime.Instance(store, wasmtime.Module(store.engine, wasmtime.wat2wasm(wat)), [])
    fp = fastcall.FastPath(store)
    f = fp.make_caller(inst.exports(store)["f"], 2)  # type: ignore[arg-type]
    _value, err = f(1, 2)
    assert isinstance(err, wasmtime.Trap)
    assert err.trap_code == wasmtime.TrapCode.UNREACHABLE


def test_bound_call_returns_results_and_recovers_from_a_trap() -> None:
    # The engine's per-tick call: arguments in args[0], args[2]; result in args[0].
    wat = """(module (func (export "div") (param i32 i32) (result i64)
        (i64.extend_i32_u (i32.div_u (local.get 0) (local.get 1)))))"""
    store = wasmtime.Store(wasmtime.Engine())
    inst = wasmtime.Instance(store, wasmtime.Module(store.engine, wasmtime.wat2wasm(wat)), [])
    bound = fastcall.FastPath(store).bind(inst.exports(store)["div"], 2)  # type: ignore[arg-type]
    for a, b, want in ((84, 2, 42), (1, 0, None), (9, 3, 3)):
        bound.args[0], bound.args[2] = a, b
        err = bound.call()
        if want is None:
            assert bound.trap.value
            trap = bound.failure(err)
            assert isinstance(trap, wasmtime.Trap)
            assert trap.trap_code == wasmtime.TrapCode.INTEGER_DIVISION_BY_ZERO
            assert not bound.trap.value
        else:
            assert not err and not bound.trap.value
            assert bound.args[0] == want


@pytest.mark.parametrize("fast", [True, False])
def test_both_paths_give_the_same_results(
    tmp_path: Path, guest_wasm: dict[str, Path], fast: bool
) -> None:
    eng = WasmEngine(cache_dir=False, fast_path=fast)
    node = eng.load(guest_wasm["echo"]).actor().open_node("e", {})
    m = Message.bytes(bytes(range(256)) * 4)
    ctx = TickCtx({"in": m})
    node.run(ctx)
    assert ctx.outputs == [("in", m)]
    node.close()
    eng.close()
