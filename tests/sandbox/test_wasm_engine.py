"""reflow._sandbox._wasm_engine: the example guests run through the Actor contract (open_node + run
with a real tick context), on the fast path and the public-API fallback, and in a Network."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from sandbox_helpers import TickCtx

from reflow._core._messages import Message
from reflow._errors import GuestABIError, SandboxError
from reflow._sandbox._guest_host import GuestLimits
from reflow._sandbox._wasm_engine import WasmEngine, WasmNodeActor

M = Message


@pytest.fixture(
    params=[(True, 256 << 20), (False, 256 << 20), (True, None)],
    ids=["fast", "public", "fast-movable-memory"],
)
def any_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    # Without a fixed reservation the memory may move: no view over it, base re-read per tick.
    fast, reservation = request.param
    eng = WasmEngine(cache_dir=tmp_path / "cache", fast_path=fast, memory_reservation=reservation)
    yield eng
    eng.close()


def test_doubler_ticks(any_engine: WasmEngine, guest_wasm: dict[str, Path]) -> None:
    module = any_engine.load(guest_wasm["doubler"])
    actor = module.actor()
    assert actor.component == "example/doubler"
    assert actor.inports == ["in"] and actor.outports == ["out"]
    assert actor.execution == "worker"
    node = actor.open_node("d1", {})
    try:
        for value in (0, 21, -5, 2**40):
            ctx = TickCtx({"in": M.integer(value)})
            node.run(ctx)
            assert ctx.outputs == [("out", M.integer(value * 2))]
        ctx = TickCtx({"in": M.float(1.25)})
        node.run(ctx)
        assert ctx.outputs == [("out", M.float(2.5))]
    finally:
        node.close()


def test_config_reaches_the_guest(engine: WasmEngine, guest_wasm: dict[str, Path]) -> None:
    node = engine.load(guest_wasm["doubler"]).actor().open_node("d1", {"factor": 7})
    ctx = TickCtx({"in": M.integer(3)})
    node.run(ctx)
    assert ctx.outputs == [("out", M.integer(21))]
    node.close()


def test_guest_fail_becomes_ctx_fail(engine: WasmEngine, guest_wasm: dict[str, Path]) -> None:
    node = engine.load(guest_wasm["doubler"]).actor().open_node("d1", {})
    ctx = TickCtx({"in": M.string("nope")})
    node.run(ctx)
    assert ctx.outputs is None
    assert ctx.error is not None and "expected an Integer or Float" in ctx.error
    ctx = TickCtx({"in": M.integer(1)})  # and the node keeps working
    node.run(ctx)
    assert ctx.outputs == [("out", M.integer(2))]
    node.close()


def test_counter_keeps_state_in_pools_and_node_state(
    any_engine: WasmEngine, guest_wasm: dict[str, Path]
) -> None:
    actor = any_engine.load(guest_wasm["counter"]).actor()
    a, b = actor.open_node("a", {}), actor.open_node("b", {})
    pools_a: dict[str, dict[str, Any]] = {}
    pools_b: dict[str, dict[str, Any]] = {}
    for i in range(1, 4):
        ctx = TickCtx({"in": M.flow()}, pools=pools_a)
        a.run(ctx)
        assert ctx.outputs == [("count", M.integer(i)), ("ticks", M.integer(i))]
    assert pools_a["state"]["count"] == M.integer(3)
    ctx = TickCtx({"in": M.flow()}, pools=pools_b)  # node b has its own state
    b.run(ctx)
    assert ctx.outputs == [("count", M.integer(1)), ("ticks", M.integer(1))]
    ctx = TickCtx({"reset": M.flow()}, pools=pools_a)
    a.run(ctx)
    assert ctx.outputs == [("count", M.integer(0))]
    assert "count" not in pools_a["state"]
    a.close()
    b.close()


def test_stream_emits_mid_tick(any_engine: WasmEngine, guest_wasm: dict[str, Path]) -> None:
    node = any_engine.load(guest_wasm["stream"]).actor().open_node("s", {})
    ctx = TickCtx({"in": M.integer(50)})
    node.run(ctx)
    assert ctx.sent == [("out", M.integer(i)) for i in range(50)]
    assert ctx.outputs == [("done", M.integer(50))]
    node.close()


def test_await_all_template(engine: WasmEngine, guest_wasm: dict[str, Path]) -> None:
    actor = engine.load(guest_wasm["await_all"]).actor()
    assert actor.await_all_inports is True
    assert actor.inports == ["a", "b"]
    node = actor.open_node("add", {})
    ctx = TickCtx({"a": M.integer(2), "b": M.integer(40)})
    node.run(ctx)
    assert ctx.outputs == [("sum", M.integer(42))]
    ctx = TickCtx({"a": M.integer(2), "b": M.float(0.5)})
    node.run(ctx)
    assert ctx.outputs == [("sum", M.float(2.5))]
    node.close()


def test_echo_carries_every_kind(engine: WasmEngine, guest_wasm: dict[str, Path]) -> None:
    node = engine.load(guest_wasm["echo"]).actor().open_node("e", {})
    msgs = [
        M.null(),
        M.flow(),
        M.boolean(True),
        M.integer(-7),
        M.float(3.5),
        M.string("héllo"),
        M.bytes(bytes(range(256)) * 8),
        M.error("bad"),
        M.object({"a": [1, {"b": None}]}),
        M.array([1, "x"]),
        M.event({"e": 1}),
        M.optional(None),
        M.any(5),
    ]
    for m in msgs:
        ctx = TickCtx({"in": m})
        node.run(ctx)
        assert ctx.outputs == [("in", m)], m
    node.close()


def test_module_cache_deserializes_and_rejects_tampering(
    tmp_path: Path, guest_wasm: dict[str, Path]
) -> None:
    cache = tmp_path / "cache"
    first = WasmEngine(cache_dir=cache)
    first.load(guest_wasm["doubler"])
    assert first.stats["compiled"] == 1
    again = first.load(guest_wasm["doubler"])
    assert first.stats["memory_hits"] == 1
    assert again is first.load(guest_wasm["doubler"])
    entries = list(cache.glob("*.cwasm"))
    assert len(entries) == 1
    second = WasmEngine(cache_dir=cache)
    second.load(guest_wasm["doubler"])
    assert second.stats == {"compiled": 0, "deserialized": 1, "memory_hits": 0}
    data = bytearray(entries[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    entries[0].write_bytes(bytes(data))
    third = WasmEngine(cache_dir=cache)
    node = third.load(guest_wasm["doubler"]).actor().open_node("d", {})
    assert third.stats["compiled"] == 1 and third.stats["deserialized"] == 0
    ctx = TickCtx({"in": M.integer(4)})
    node.run(ctx)
    assert ctx.outputs == [("out", M.integer(8))]
    node.close()
    for e in (first, second, third):
        e.close()


def test_cache_key_depends_on_config(tmp_path: Path, guest_wasm: dict[str, Path]) -> None:
    a = WasmEngine(cache_dir=tmp_path, max_wasm_stack=256 * 1024)
    b = WasmEngine(cache_dir=tmp_path, max_wasm_stack=384 * 1024)
    a.load(guest_wasm["doubler"])
    b.load(guest_wasm["doubler"])
    assert b.stats["compiled"] == 1
    assert len(list(tmp_path.glob("*.cwasm"))) == 2


def test_close_is_idempotent_and_run_after_close_raises(
    engine: WasmEngine, guest_wasm: dict[str, Path]
) -> None:
    node = engine.load(guest_wasm["doubler"]).actor().open_node("d", {})
    node.close()
    node.close()
    with pytest.raises(SandboxError, match="is closed"):
        node.run(TickCtx({"in": M.integer(1)}))


def test_template_actor_itself_does_not_run(
    engine: WasmEngine, guest_wasm: dict[str, Path]
) -> None:
    actor = engine.load(guest_wasm["doubler"]).actor()
    with pytest.raises(SandboxError, match="open_node"):
        actor.run(TickCtx())


def test_unknown_template(engine: WasmEngine, guest_wasm: dict[str, Path]) -> None:
    with pytest.raises(GuestABIError, match="no template 'nope'"):
        engine.load(guest_wasm["doubler"]).actor("nope")


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"memory_bytes": 100}, "memory_bytes"),
        ({"tick_ms": 0}, "tick_ms"),
        ({"output_bytes": 0}, "output_bytes"),
    ],
)
def test_limits_validate(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        GuestLimits(**kwargs)


def test_each_node_has_its_own_store(engine: WasmEngine, guest_wasm: dict[str, Path]) -> None:
    actor = engine.load(guest_wasm["doubler"]).actor()
    a, b = actor.open_node("a", {}), actor.open_node("b", {})
    assert isinstance(a, WasmNodeActor) and a is not b
    assert a._inst is not None and b._inst is not None
    assert a._inst.store is not b._inst.store
    a.close()
    b.close()


# -- the compiled-module cache is authenticated (HMAC keyed outside the cache) ---------------

_WHO = '(module (func (export "who") (result i32) i32.const {}))'


def _who(eng: WasmEngine, module: Any) -> int:
    import wasmtime

    store = wasmtime.Store(eng.engine)
    store.set_epoch_deadline(1 << 30)
    inst = wasmtime.Instance(store, module, [])
    who: Any = inst.exports(store)["who"]
    return int(who(store))


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "config"
    monkeypatch.setenv("REFLOW_CONFIG_DIR", str(d))
    return d


def test_forged_cache_entry_is_recompiled_from_the_verified_wasm(
    tmp_path: Path, config_dir: Path
) -> None:
    """poc6: someone who can write the cache replaces the compiled code of a verified module
    (with a matching .sha256 sidecar, as the old format trusted); it must never run."""
    import hashlib

    import wasmtime

    good = wasmtime.wat2wasm(_WHO.format(1))
    evil = wasmtime.wat2wasm(_WHO.format(666))
    cache = tmp_path / "cache"
    first = WasmEngine(cache_dir=cache)
    first.compile(good)
    (entry,) = cache.glob(hashlib.sha256(good).hexdigest() + "-*.cwasm")
    forged = bytes(wasmtime.Module(first.engine, bytes(evil)).serialize())
    for data in (forged, entry.read_bytes()[:40] + forged):  # raw, and behind our header
        entry.write_bytes(data)
        entry.with_suffix(".sha256").write_text(hashlib.sha256(data).hexdigest())
        eng = WasmEngine(cache_dir=cache)
        assert _who(eng, eng.compile(good)) == 1
        assert eng.stats["compiled"] == 1 and eng.stats["deserialized"] == 0
        eng.close()
    assert not entry.with_suffix(".sha256").exists()
    again = WasmEngine(cache_dir=cache)  # the entry was overwritten with an authentic one
    assert _who(again, again.compile(good)) == 1 and again.stats["deserialized"] == 1
    # an entry is bound to its wasm: the authentic entry of `evil` under good's name fails
    again.compile(evil)
    (evil_entry,) = cache.glob(hashlib.sha256(evil).hexdigest() + "-*.cwasm")
    entry.write_bytes(evil_entry.read_bytes())
    last = WasmEngine(cache_dir=cache)
    assert _who(last, last.compile(good)) == 1 and last.stats["compiled"] == 1
    for e in (first, again, last):
        e.close()


def test_cache_key_is_private_and_outside_the_cache(tmp_path: Path, config_dir: Path) -> None:
    import stat

    import wasmtime

    wasm = wasmtime.wat2wasm(_WHO.format(7))
    cache = tmp_path / "cache"
    eng = WasmEngine(cache_dir=cache)
    assert eng.cache_key_file == config_dir / "cache.key"
    assert not eng.cache_key_file.exists()  # created on first use of the disk cache
    eng.compile(wasm)
    key = eng.cache_key_file
    assert os.name != "posix" or stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(bytes.fromhex(key.read_text().strip())) == 32
    same = WasmEngine(cache_dir=cache)
    same.compile(wasm)
    assert same.stats["deserialized"] == 1 and key.read_text() == eng.cache_key_file.read_text()
    # another key (the constructor's) does not trust these entries
    other = WasmEngine(cache_dir=cache, cache_key_file=tmp_path / "elsewhere" / "k")
    assert _who(other, other.compile(wasm)) == 7 and other.stats["compiled"] == 1
    assert (tmp_path / "elsewhere" / "k").is_file()
    for e in (eng, same, other):
        e.close()


def test_unusable_cache_key_disables_the_disk_cache(
    tmp_path: Path, config_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import wasmtime

    wasm = wasmtime.wat2wasm(_WHO.format(3))
    config_dir.mkdir()
    key = config_dir / "cache.key"
    key.write_text("ab" * 32)
    if os.name == "posix":
        key.chmod(0o644)  # readable by others: anyone could forge entries
        bad = "private"
    else:  # pragma: no cover
        key.write_text("not hex")
        bad = "hex"
    cache = tmp_path / "cache"
    eng = WasmEngine(cache_dir=cache)
    with caplog.at_level("WARNING", logger="reflow.wasm"):
        assert _who(eng, eng.compile(wasm)) == 3
        eng.compile(wasm)
    assert eng.stats["compiled"] == 2 and not list(cache.glob("*.cwasm"))
    assert "disk cache disabled" in caplog.text and bad in caplog.text
    eng.close()
