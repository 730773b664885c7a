"""reflow._sandbox._wasm_epoch: the epoch ticker stops looping guests with either backend
(the POSIX timer, which needs no GIL, and the Python-thread fallback), closes idempotently,
and the engine's deadlines still hold through it. Real wasmtime, no mocks."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest
import wasmtime

from reflow import GuestLimits, GuestTimeout, Message, SandboxError
from reflow._sandbox import _wasm_epoch
from reflow._sandbox._wasm_engine import WasmEngine

LOOP_WAT = '(module (func (export "spin") (loop $l (br $l))))'

BACKENDS = [
    pytest.param(
        True,
        id="posix-timer",
        marks=pytest.mark.skipif(not _wasm_epoch.NATIVE, reason=_wasm_epoch.NATIVE_REASON),
    ),
    pytest.param(False, id="python-thread"),
]


def _spinner(engine: wasmtime.Engine) -> tuple[wasmtime.Store, wasmtime.Func]:
    store = wasmtime.Store(engine)
    module = wasmtime.Module(engine, wasmtime.wat2wasm(LOOP_WAT))
    func = wasmtime.Instance(store, module, []).exports(store)["spin"]
    assert isinstance(func, wasmtime.Func)
    return store, func


@pytest.mark.parametrize("native", BACKENDS)
@pytest.mark.parametrize("epochs", [4, 20])
def test_ticker_interrupts_a_loop_within_bounds(native: bool, epochs: int) -> None:
    config = wasmtime.Config()
    config.epoch_interruption = True
    engine = wasmtime.Engine(config)
    ticker = _wasm_epoch.EpochTicker(engine, 0.005, native)
    ticker.start()
    try:
        store, spin = _spinner(engine)
        store.set_epoch_deadline(epochs)
        t0 = time.perf_counter()
        with pytest.raises(wasmtime.Trap) as info:
            spin(store)
        took = time.perf_counter() - t0
    finally:
        ticker.close()
    assert info.value.trap_code == wasmtime.TrapCode.INTERRUPT
    assert took >= (epochs - 1) * 0.005 * 0.9  # never early
    assert took < 2.0  # bounded, with room for a loaded machine


@pytest.mark.parametrize("native", BACKENDS)
def test_close_is_idempotent_and_final(native: bool) -> None:
    config = wasmtime.Config()
    config.epoch_interruption = True
    ticker = _wasm_epoch.EpochTicker(wasmtime.Engine(config), 0.005, native)
    ticker.start()
    assert ticker.running
    ticker.close()
    ticker.close()
    ticker.start()  # a closed ticker stays closed
    assert not ticker.running


def test_native_ticker_runs_no_python_thread() -> None:
    if not _wasm_epoch.NATIVE:
        pytest.skip(_wasm_epoch.NATIVE_REASON)
    before = threading.active_count()
    eng = WasmEngine(cache_dir=False, native_ticker=True)
    eng._ensure_ticker()
    assert eng.native_ticker
    assert threading.active_count() == before
    eng.close()


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        pytest.param(
            {"native_ticker": True},
            SandboxError,
            "no native epoch ticker",
            marks=pytest.mark.skipif(_wasm_epoch.NATIVE, reason="native ticker here"),
        ),
    ],
)
def test_native_ticker_refused_where_missing(kwargs: dict, error: type, fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        WasmEngine(cache_dir=False, **kwargs)


LOOP_GUEST = """(module (memory (export "memory") 1)
  (data (i32.const 1024) "{describe}")
  (func (export "reflow_abi_version") (result i32) (i32.const 65536))
  (func (export "reflow_alloc") (param i32) (result i32) (i32.const 4096))
  (func (export "reflow_describe") (result i64) (i64.const {slice}))
  (func (export "reflow_open") (param i32 i32) (result i64) (i64.const 12884904888))
  (func (export "reflow_tick") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0)))"""


def _loop_guest() -> bytes:
    describe = b'{"abi":"1.0","templates":[{"id":"t/loop","inports":["in"],"outports":[]}]}'
    wat = LOOP_GUEST.format(
        describe="".join(f"\\{b:02x}" for b in describe), slice=(len(describe) << 32) | 1024
    )
    return bytes(wasmtime.wat2wasm(wat))


@pytest.mark.parametrize("native", BACKENDS)
def test_engine_tick_limit_holds_with_each_ticker(native: bool) -> None:
    """The hot path re-arms from the clock: ticks in quick succession (the deadline reused)
    and one after a pause (re-armed) are both stopped at their limit."""
    eng = WasmEngine(cache_dir=False, native_ticker=native)
    node = eng.load(_loop_guest()).actor(limits=GuestLimits(tick_ms=60)).open_node("n", {})
    try:
        for pause in (0.0, 0.0, 0.03):
            time.sleep(pause)
            ctx = _Ctx()
            t0 = time.perf_counter()
            with pytest.raises(GuestTimeout, match="time limit of 60 ms"):
                node.run(ctx)
            took = time.perf_counter() - t0
            assert 0.055 <= took < 2.0, took
    finally:
        node.close()
        eng.close()


class _Ctx:
    def __init__(self) -> None:
        self.inputs = {"in": Message.integer(1)}

    def done(self, outputs: object = None) -> None:  # pragma: no cover - the guest loops
        raise AssertionError("a looping guest never ends its tick")


def test_forked_child_keeps_deadlines() -> None:
    """A child inherits no timers: the engine it inherited must tick again there."""
    if not hasattr(__import__("os"), "fork"):
        pytest.skip("no fork here")
    code = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(__file__.rsplit("/", 1)[0])!r})
        from test_wasm_epoch import _loop_guest, _Ctx
        from reflow import GuestLimits, GuestTimeout
        from reflow._sandbox._wasm_engine import WasmEngine
        eng = WasmEngine(cache_dir=False)
        eng._ensure_ticker()
        pid = os.fork()
        if pid == 0:
            actor = eng.load(_loop_guest()).actor(limits=GuestLimits(tick_ms=50))
            node = actor.open_node("n", {{}})
            try:
                node.run(_Ctx())
            except GuestTimeout:
                os._exit(0)
            os._exit(1)
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
    """)
    proc = subprocess.run([sys.executable, "-c", code], timeout=60, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_subprocess_with_preexec_fn_does_not_hang_on_the_ticker() -> None:
    """Between fork and exec nothing may start a thread: with a ticker running, a child made
    with ``preexec_fn`` (which runs the at-fork handlers) still gets to exec."""
    eng = WasmEngine(cache_dir=False)
    eng._ensure_ticker()
    try:
        for _ in range(3):
            proc = subprocess.run(
                [sys.executable, "-c", "print('ok')"],
                preexec_fn=lambda: None,
                timeout=30,
                capture_output=True,
                text=True,
            )
            assert proc.stdout.strip() == "ok"
    finally:
        eng.close()


_DROPPED = textwrap.dedent("""
    import gc, sys, threading, time
    from reflow._sandbox._wasm_engine import WasmEngine
    native = sys.argv[1] == "posix"
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < 3.0:
        eng = WasmEngine(cache_dir=False, native_ticker=native)
        eng._ensure_ticker()
        box = [eng]
        box.append(box)  # a cycle: garbage collection frees engine and ticker in any order
        del eng, box
        n += 1
        if n % 25 == 0:
            gc.collect()
    gc.collect()
    time.sleep(0.1)  # the dropped tickers' threads see their stop within a period
    print(n, threading.active_count())
""")


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend",
    [
        pytest.param(
            "posix",
            marks=pytest.mark.skipif(not _wasm_epoch.NATIVE, reason=_wasm_epoch.NATIVE_REASON),
        ),
        "thread",
    ],
)
def test_engines_dropped_without_close_neither_crash_nor_leak_threads(backend: str) -> None:
    """Regression: the timer's notify thread used the engine pointer of a wasmtime.Engine
    that garbage collection could free first (a segfault within seconds of this loop); a
    thread ticker of an engine dropped without close() ran forever."""
    proc = subprocess.run(
        [sys.executable, "-c", _DROPPED, backend], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    made, threads = map(int, proc.stdout.split())
    assert made > 50, made
    assert threads < 20, f"{threads} threads left after dropping {made} engines"


_DEFAULT = (
    "from reflow._sandbox._wasm_engine import WasmEngine;"
    "print(WasmEngine(cache_dir=False).native_ticker)"
)


@pytest.mark.parametrize(
    ("env", "want"),
    [("", _wasm_epoch.NATIVE), ("thread", False), ("posix", _wasm_epoch.NATIVE)],
)
def test_the_posix_timer_is_the_default_where_it_can_be(env: str, want: bool) -> None:
    import os

    proc = subprocess.run(
        [sys.executable, "-c", _DEFAULT],
        env={**os.environ, "REFLOW_EPOCH_TICKER": env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.stdout.split() == [str(want)], proc.stderr[-2000:]


def test_a_default_timer_that_cannot_start_falls_back_to_the_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """timer_create can fail at run time (a process out of timers): the default ticker then
    runs as a thread and deadlines still hold; a timer asked for by name raises."""
    if not _wasm_epoch.NATIVE:
        pytest.skip(_wasm_epoch.NATIVE_REASON)

    def refuse(self: _wasm_epoch.EpochTicker) -> None:
        raise OSError(11, "timer_create failed: Resource temporarily unavailable")

    monkeypatch.setattr(_wasm_epoch.EpochTicker, "_start_timer", refuse)
    config = wasmtime.Config()
    config.epoch_interruption = True
    engine = wasmtime.Engine(config)
    ticker = _wasm_epoch.EpochTicker(engine, 0.005, None)
    ticker.start()
    try:
        assert ticker.running and not ticker.native
        store, spin = _spinner(engine)
        store.set_epoch_deadline(4)
        t0 = time.perf_counter()
        with pytest.raises(wasmtime.Trap):
            spin(store)
        assert time.perf_counter() - t0 < 2.0
    finally:
        ticker.close()
    named = _wasm_epoch.EpochTicker(engine, 0.005, True)
    with pytest.raises(OSError, match="timer_create failed"):
        named.start()
    named.close()
