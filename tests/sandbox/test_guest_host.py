"""reflow._sandbox._guest_host: the describe-document checks, host functions (log, pools) seen
from a guest, output accounting across emit + result, and concurrent ticks of different nodes."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from sandbox_helpers import TickCtx

from reflow._core._messages import Message
from reflow._errors import GuestABIError, OutputLimitError
from reflow._sandbox._guest_actor import GuestActor, GuestNodeActor
from reflow._sandbox._guest_host import GuestGrants, GuestLimits, GuestTemplate, parse_describe
from reflow._sandbox._native_engine import NativeLibrary
from reflow._sandbox._wasm_engine import WasmEngine
from reflow.abi import encode_outputs

M = Message


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        (b"\xff", "not valid UTF-8 JSON"),
        (b"[]", 'must be an object with a "templates" list'),
        (b'{"abi":"1.1","templates":[]}', "says abi '1.1'"),
        (b'{"abi":"1.0","templates":[]}', "lists no templates"),
        (b'{"abi":"1.0","templates":[{"id":""}]}', "non-empty string id"),
        (b'{"abi":"1.0","templates":[{"id":"a"},{"id":"a"}]}', "appears twice"),
        (b'{"abi":"1.0","templates":[{"id":"a","inports":"in"}]}', "must be a list of names"),
        (b'{"abi":"1.0","templates":[{"id":"a","outports":["x","x"]}]}', "lists a name twice"),
    ],
)
def test_describe_document_is_checked(doc: bytes, fragment: str) -> None:
    with pytest.raises(GuestABIError, match="describe document") as info:
        parse_describe(doc, (1, 0))
    assert fragment in str(info.value)


def _logging_guest() -> bytes:
    describe = b'{"abi":"1.0","templates":[{"id":"t/log","inports":["in"],"outports":["out"]}]}'
    emit = encode_outputs([("out", M.bytes(b"y" * 600))])
    esc = "".join(f"\\{b:02x}" for b in describe)
    eesc = "".join(f"\\{b:02x}" for b in emit)
    # result frame at 3000: done with one 600-byte Bytes output on "out"
    result = b"\x00\x01\x00\x03out\x06" + (600).to_bytes(4, "little") + b"z" * 600
    resc = "".join(f"\\{b:02x}" for b in result)
    return wasmtime.wat2wasm(f"""(module
      (import "reflow" "log" (func $log (param i32 i32 i32)))
      (import "reflow" "emit" (func $emit (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 1024) "{esc}")
      (data (i32.const 2000) "hello from the guest")
      (data (i32.const 3000) "{resc}")
      (data (i32.const 5000) "{eesc}")
      (data (i32.const 7000) "\\00\\00\\00")
      (func (export "reflow_abi_version") (result i32) (i32.const 65536))
      (func (export "reflow_alloc") (param i32) (result i32) (i32.const 8192))
      (func (export "reflow_describe") (result i64) (i64.const {(len(describe) << 32) | 1024}))
      (func (export "reflow_open") (param i32 i32) (result i64) (i64.const {(3 << 32) | 7000}))
      (func (export "reflow_tick") (param i32 i32) (result i64)
        (call $log (i32.const 2) (i32.const 2000) (i32.const 20))
        (drop (call $emit (i32.const 5000) (i32.const {len(emit)})))
        (i64.const {(len(result) << 32) | 3000})))""")


def test_log_reaches_the_node_logger(engine: WasmEngine, caplog: pytest.LogCaptureFixture) -> None:
    node = engine.load(_logging_guest()).actor().open_node("l", {})
    ctx = TickCtx({"in": M.flow()})
    with caplog.at_level(logging.DEBUG, logger="reflow.test.tick"):
        node.run(ctx)
    assert any(
        r.levelno == logging.WARNING and "hello from the guest" in r.getMessage()
        for r in caplog.records
    )
    assert ctx.sent == [("out", M.bytes(b"y" * 600))]
    assert ctx.outputs == [("out", M.bytes(b"z" * 600))]
    node.close()


def test_output_cap_counts_emitted_and_returned_bytes(engine: WasmEngine) -> None:
    # each part alone is under 1000 bytes; together they are over
    node = (
        engine.load(_logging_guest())
        .actor(limits=GuestLimits(output_bytes=1000))
        .open_node("l", {})
    )
    with pytest.raises(OutputLimitError, match="the limit is 1000") as info:
        node.run(TickCtx({"in": M.flow()}))
    assert info.value.limit == 1000 and info.value.size > 1000
    node.close()


def _hammer(node: Any, tag: int, errors: list[str]) -> None:
    for i in range(300):
        payload = bytes([tag]) * (i % 50 + 1)
        ctx = TickCtx({"in": M.bytes(payload)})
        node.run(ctx)
        if ctx.outputs != [("in", M.bytes(payload))]:
            errors.append(f"node {tag} tick {i}: {ctx.outputs!r}")


def test_nodes_tick_concurrently_without_mixing_data(
    engine: WasmEngine, guest_wasm: dict[str, Path], guest_native: dict[str, Path]
) -> None:
    wasm_actor = engine.load(guest_wasm["echo"]).actor()
    native_actor = NativeLibrary(guest_native["echo"]).actor()
    nodes = [wasm_actor.open_node(f"w{i}", {}) for i in range(3)]
    nodes += [native_actor.open_node(f"n{i}", {}) for i in range(3)]
    errors: list[str] = []
    threads = [
        threading.Thread(target=_hammer, args=(node, i + 1, errors)) for i, node in enumerate(nodes)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for node in nodes:
        node.close()


def _wasi_guest() -> bytes:
    describe = b'{"abi":"1.0","templates":[{"id":"t/wasi","inports":["in"],"outports":["out"]}]}'
    esc = "".join(f"\\{b:02x}" for b in describe)
    # tick: random_get 8 bytes at 4000, write "hi from wasi\n" to stdout, return done(out=Bytes8)
    head = b"\x00\x01\x00\x03out\x06" + (8).to_bytes(4, "little")
    hesc = "".join(f"\\{b:02x}" for b in head)
    return wasmtime.wat2wasm(f"""(module
      (import "wasi_snapshot_preview1" "random_get" (func $rand (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write"
        (func $write (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 1024) "{esc}")
      (data (i32.const 2000) "hi from wasi\\n")
      (data (i32.const 2100) "\\d0\\07\\00\\00\\0d\\00\\00\\00")
      (data (i32.const 3988) "{hesc}")
      (data (i32.const 7000) "\\00\\00\\00")
      (func (export "reflow_abi_version") (result i32) (i32.const 65536))
      (func (export "reflow_alloc") (param i32) (result i32) (i32.const 8192))
      (func (export "reflow_describe") (result i64) (i64.const {(len(describe) << 32) | 1024}))
      (func (export "reflow_open") (param i32 i32) (result i64) (i64.const {(3 << 32) | 7000}))
      (func (export "reflow_tick") (param i32 i32) (result i64)
        (drop (call $rand (i32.const 4000) (i32.const 8)))
        (drop (call $write (i32.const 1) (i32.const 2100) (i32.const 1) (i32.const 2200)))
        (i64.const {((len(head) + 8) << 32) | 3988})))""")


def test_wasi_granted_gives_an_empty_context_with_stdout_logged(
    engine: WasmEngine, caplog: pytest.LogCaptureFixture
) -> None:
    from reflow._errors import CapabilityError
    from reflow._sandbox._guest_host import GuestGrants

    module = engine.load(_wasi_guest())
    with pytest.raises(CapabilityError, match="'wasi' capability"):
        module.actor().open_node("w", {})
    node = module.actor(grants=GuestGrants(wasi=True)).open_node("w", {})
    ctx = TickCtx({"in": M.flow()})
    with caplog.at_level(logging.INFO, logger="reflow.test.tick"):
        node.run(ctx)
    assert ctx.outputs is not None
    ((port, msg),) = ctx.outputs
    assert port == "out" and msg.kind == "Bytes" and len(msg["data"]) == 8
    assert any("hi from wasi" in r.getMessage() for r in caplog.records)
    node.close()


class _BlockingNode(GuestNodeActor):
    """A node whose tick blocks until told to go on; records what it released."""

    def __init__(self, owner: GuestActor, node_id: str, config: dict[str, Any]) -> None:
        super().__init__(owner, node_id, config)
        self._owned.append("guest-side node")
        self.released: list[str] = []
        self.started = threading.Event()
        self.go_on = threading.Event()

    def run(self, ctx: Any) -> None:
        self._running = True
        try:
            if self._closing:
                raise self._closed_error()
            self.started.set()
            self.go_on.wait(5)
        finally:
            self._running = False
            if self._closing:
                self._release_once()

    def _release(self, owned: Any) -> None:
        self.released.append(owned)


class _BlockingActor(GuestActor):
    node_type = _BlockingNode


def test_guest_node_close_waits_for_a_running_tick_without_a_lock() -> None:
    template = GuestTemplate(id="t/block", inports=("in",), outports=("out",))
    node = _BlockingActor(template, GuestLimits(), GuestGrants()).open_node("b", {})
    assert isinstance(node, _BlockingNode)
    t = threading.Thread(target=node.run, args=(TickCtx(),))
    t.start()
    assert node.started.wait(5)
    node.close()
    assert node.released == []  # the tick is still using it
    node.go_on.set()
    t.join()
    assert node.released == ["guest-side node"]
    node.close()
    assert node.released == ["guest-side node"]  # exactly once
    with pytest.raises(Exception, match="is closed"):
        node.run(TickCtx())
