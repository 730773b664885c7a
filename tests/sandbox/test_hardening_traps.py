"""Issue #8, rows 3 and 18: traps and exits keep their cause; bad paths are ReflowErrors.

Every trap, WASI ``proc_exit`` and GC-heap exhaustion fails its tick with a ``SandboxError``
whose message names the cause (never ending at "wasm backtrace:", never carrying the
backtrace), and the node's next tick works. Every engine's ``load`` of a missing, unreadable,
non-module path raises a ``ReflowError`` naming the path and what was expected. Guests are
written by hand as WAT."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime
from sandbox_helpers import TickCtx

from reflow import Message
from reflow._errors import (
    GuestABIError,
    GuestMemoryError,
    GuestTrap,
    ReflowError,
    SandboxError,
)
from reflow._sandbox._guest_host import GuestGrants
from reflow._sandbox._native_engine import NativeLibrary
from reflow._sandbox._wasm_engine import WasmEngine, default_engine

M = Message
DESCRIBE = b'{"abi":"1.0","templates":[{"id":"trap/x","inports":["in"],"outports":["out"]}]}'
DONE_EMPTY = f"(i64.const {(3 << 32) | 3000})"
EXIT_IMPORT = '(import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))'


def _hex(raw: bytes) -> str:
    return "".join(f"\\{b:02x}" for b in raw)


def guest(bad: str, *, imports: str = "", extra: str = "", open_body: str = DONE_EMPTY) -> bytes:
    """reflow_tick misbehaves (``bad``) when the input Integer is 1, else returns done."""
    return bytes(
        wasmtime.wat2wasm(f"""(module {imports}
  (memory (export "memory") 1)
  (table 2 funcref)
  (data (i32.const 1024) "{_hex(DESCRIBE)}")
  (data (i32.const 3000) "\\00\\00\\00")
  {extra}
  (func $nothing)
  (func $deep (param i32) (result i32) (call $deep (i32.add (local.get 0) (i32.const 1))))
  (elem (i32.const 0) $nothing)
  (func (export "reflow_abi_version") (result i32) (i32.const 0x10000))
  (func (export "reflow_alloc") (param i32) (result i32) (i32.const 4096))
  (func (export "reflow_describe") (result i64) (i64.const {(len(DESCRIBE) << 32) | 1024}))
  (func (export "reflow_open") (param i32 i32) (result i64) {open_body})
  (func (export "reflow_tick") (param i32 i32) (result i64)
    (if (i64.eq (i64.load offset=6 (local.get 0)) (i64.const 1)) (then {bad}))
    {DONE_EMPTY}))""")
    )


GC_TYPES = (
    "(type $bytes (array (mut i8))) (type $refs (array (mut anyref))) "
    "(type $box (struct (field i32))) (global $keep (mut anyref) (ref.null any))"
)

# id, misbehaviour (WAT), extra, imports, error class, cause fragment
TRAPS = [
    ("unreachable", "unreachable", "", "", GuestTrap, "unreachable"),
    (
        "divide-by-zero",
        "(drop (i32.div_u (i32.const 1) (i32.const 0)))",
        "",
        "",
        GuestTrap,
        "divide by zero",
    ),
    (
        "integer-overflow",
        "(drop (i32.div_s (i32.const 0x80000000) (i32.const -1)))",
        "",
        "",
        GuestTrap,
        "overflow",
    ),
    ("bad-conversion", "(drop (i32.trunc_f32_s (f32.const nan)))", "", "", GuestTrap, "conversion"),
    (
        "memory-out-of-bounds",
        "(drop (i32.load (i32.const 0x7ffffff0)))",
        "",
        "",
        GuestTrap,
        "out of bounds memory access",
    ),
    (
        "table-out-of-bounds",
        "(call_indirect (i32.const 7))",
        "",
        "",
        GuestTrap,
        "undefined element",
    ),
    ("null-indirect", "(call_indirect (i32.const 1))", "", "", GuestTrap, "uninitialized element"),
    (
        "bad-signature",
        "(drop (call_indirect (result i32) (i32.const 0)))",
        "",
        "",
        GuestTrap,
        "indirect call type mismatch",
    ),
    ("stack-overflow", "(drop (call $deep (i32.const 0)))", "", "", GuestTrap, "stack overflow"),
    (
        "null-reference",
        "(drop (ref.as_non_null (ref.null $box)))",
        GC_TYPES,
        "",
        GuestTrap,
        "null reference",
    ),
    (
        "array-out-of-bounds",
        "(drop (array.get_u $bytes (array.new_default $bytes (i32.const 4)) (i32.const 9)))",
        GC_TYPES,
        "",
        GuestTrap,
        "out of bounds array access",
    ),
    (
        "bad-cast",
        "(drop (ref.cast (ref $bytes) (struct.new $box (i32.const 1))))",
        GC_TYPES,
        "",
        GuestTrap,
        "cast failure",
    ),
    (
        "gc-heap-one-huge",
        "(drop (array.new_default $bytes (i32.const 0x7fffffff)))",
        GC_TYPES,
        "",
        GuestMemoryError,
        "GC heap out of memory",
    ),
    (
        "gc-heap-chain",
        "(loop $l (global.set $keep (array.new $refs (global.get $keep) (i32.const 1000000))) "
        "(br $l))",
        GC_TYPES,
        "",
        GuestMemoryError,
        "GC heap out of memory",
    ),
    (
        "proc-exit-3",
        "(call $exit (i32.const 3))",
        "",
        EXIT_IMPORT,
        GuestTrap,
        "proc_exit with status 3",
    ),
    (
        "proc-exit-0",
        "(call $exit (i32.const 0))",
        "",
        EXIT_IMPORT,
        GuestTrap,
        "proc_exit with status 0",
    ),
]


@pytest.fixture(scope="module")
def trap_engine() -> Iterator[WasmEngine]:
    eng = WasmEngine(cache_dir=False)
    yield eng
    eng.close()


def _check_message(exc: BaseException, fragment: str) -> None:
    text = str(exc)
    assert fragment in text, text
    assert "backtrace" not in text, text
    assert "<wasm function" not in text, text
    assert not text.rstrip().endswith(":"), text
    assert "node 'x'" in text


@pytest.mark.parametrize(
    ("bad", "extra", "imports", "cls", "fragment"),
    [row[1:] for row in TRAPS],
    ids=[row[0] for row in TRAPS],
)
def test_a_trap_keeps_its_cause_and_fails_only_its_tick(
    trap_engine: WasmEngine, bad: str, extra: str, imports: str, cls: type, fragment: str
) -> None:
    actor = trap_engine.load(guest(bad, imports=imports, extra=extra)).actor(
        grants=GuestGrants(wasi=True)
    )
    node = actor.open_node("x", {})
    for _ in range(2):  # the same node fails the same way again, then still works
        with pytest.raises(cls) as info:
            node.run(TickCtx({"in": M.integer(1)}))
        assert isinstance(info.value, SandboxError)
        _check_message(info.value, fragment)
        ctx = TickCtx({"in": M.integer(2)})
        node.run(ctx)
        assert ctx.outputs == [] and ctx.error is None
    node.close()


def test_proc_exit_during_open_names_the_status(trap_engine: WasmEngine) -> None:
    wasm = guest(
        "unreachable", imports=EXIT_IMPORT, open_body=f"(call $exit (i32.const 42)) {DONE_EMPTY}"
    )
    actor = trap_engine.load(wasm).actor(grants=GuestGrants(wasi=True))
    with pytest.raises(GuestTrap) as info:
        actor.open_node("x", {})
    assert info.value.trap_code == "PROC_EXIT"
    _check_message(info.value, "proc_exit with status 42 in reflow_open")


def test_the_public_api_fallback_keeps_the_cause_too() -> None:
    eng = WasmEngine(cache_dir=False, fast_path=False)
    try:
        for _, bad, extra, imports, cls, fragment in TRAPS[::3]:
            node = (
                eng.load(guest(bad, imports=imports, extra=extra))
                .actor(grants=GuestGrants(wasi=True))
                .open_node("x", {})
            )
            with pytest.raises(cls) as info:
                node.run(TickCtx({"in": M.integer(1)}))
            _check_message(info.value, fragment)
            node.close()
    finally:
        eng.close()


# -- row 18: loading a bad path --------------------------------------------------------------


def _bad_paths(tmp: Path) -> dict[str, tuple[Path | str, str]]:
    text = tmp / "notes.wasm"
    text.write_text("this is not a module\n")
    empty = tmp / "empty.so"
    empty.write_bytes(b"")
    truncated = tmp / "truncated.wasm"
    truncated.write_bytes(guest("unreachable")[:20])
    wasm_as_lib = tmp / "module.so"
    wasm_as_lib.write_bytes(guest("unreachable"))
    folder = tmp / "folder.wasm"
    folder.mkdir()
    return {
        "missing": (tmp / "nope.wasm", "No such file"),
        "relative-missing": ("nope.wasm", "No such file"),
        "directory": (folder, "directory"),
        "text": (text, "expected"),
        "empty": (empty, "expected"),
        "truncated": (truncated, "expected"),
        "wasm-as-library": (wasm_as_lib, "expected"),
        "nul-in-name": (str(tmp / "bad\0name.wasm"), "expected"),
    }


ROW_IDS = [
    "missing",
    "relative-missing",
    "directory",
    "text",
    "empty",
    "truncated",
    "wasm-as-library",
    "nul-in-name",
]


@pytest.mark.parametrize("row", ROW_IDS)
def test_default_engine_load_of_a_bad_path(tmp_path: Path, row: str) -> None:
    path, fragment = _bad_paths(tmp_path)[row]
    if row == "wasm-as-library":
        pytest.skip("a wasm module is a valid thing for the wasm engine to load")
    with pytest.raises(GuestABIError) as info:
        default_engine().load(path)
    text = str(info.value)
    assert fragment.lower() in text.lower(), text
    assert "expected a WebAssembly module" in text, text
    assert repr(str(path)) in text, text  # named, control characters escaped


@pytest.mark.parametrize("row", ROW_IDS)
def test_native_library_of_a_bad_path(tmp_path: Path, row: str) -> None:
    path, _fragment = _bad_paths(tmp_path)[row]
    with pytest.raises(GuestABIError) as info:
        NativeLibrary(path)
    text = str(info.value)
    assert "expected a shared library" in text, text
    assert Path(str(path).replace("\0", "")).name.replace("\0", "") in text.replace("\0", "")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.wasm"
    path.write_bytes(guest("unreachable"))
    path.chmod(0)
    try:
        with pytest.raises(GuestABIError, match="Permission denied") as info:
            default_engine().load(path)
        assert str(path) in str(info.value)
        with pytest.raises(GuestABIError, match="expected a shared library"):
            NativeLibrary(path)
    finally:
        path.chmod(0o600)


def test_extism_load_of_a_missing_path(tmp_path: Path) -> None:
    pytest.importorskip("extism")
    from reflow._sandbox._extism_engine import ExtismModule

    with pytest.raises(ReflowError, match="expected a WebAssembly module") as info:
        ExtismModule.load(tmp_path / "nope.wasm")
    assert "nope.wasm" in str(info.value)
