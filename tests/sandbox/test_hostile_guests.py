"""Hostile guests: each row is a small module written inline as WAT that misbehaves in one
way. The row asserts the error class and a fragment of its message, that the failure happens
at the right stage (load, open or tick), that the same node fails the same way again without
taking the host down, and that a well-behaved node on the same engine keeps working."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from sandbox_helpers import TickCtx

from reflow import Message, Network
from reflow._errors import (
    ABIVersionError,
    CapabilityError,
    GuestABIError,
    GuestMemoryError,
    GuestOutputError,
    GuestTimeout,
    GuestTrap,
    OutputLimitError,
    ReflowError,
    SandboxError,
)
from reflow._sandbox._guest_host import GuestGrants, GuestLimits
from reflow._sandbox._wasm_engine import WasmEngine
from reflow.abi import encode_outputs, encode_result_done

M = Message
DESCRIBE = (
    b'{"abi":"1.0","templates":[{"id":"hostile/x","inports":["in"],"outports":["out"],'
    b'"capabilities":["http"]}]}'
)
UNDECLARED_HTTP = b'{"abi":"1.0","templates":[{"id":"hostile/x","inports":["in"],"outports":[]}]}'
DATA = 8192  # where a row's extra bytes are placed
HTTP_REQ = b'{"method":"GET","url":"http://127.0.0.1:9/x"}'


def _wat_bytes(raw: bytes) -> str:
    return "".join(f"\\{b:02x}" for b in raw)


def _slice(ptr: int, n: int) -> str:
    return f"(i64.const {(n << 32) | ptr})"


DONE_EMPTY = _slice(3000, 3)


def guest(
    tick: str = DONE_EMPTY,
    *,
    abi: int = 0x10000,
    imports: str = "",
    extra: str = "",
    memory: str = "1",
    data: bytes = b"",
    describe: bytes = DESCRIBE,
    describe_body: str | None = None,
    alloc_body: str = "(i32.const 4096)",
    open_body: str = DONE_EMPTY,
    omit: tuple[str, ...] = (),
) -> bytes:
    """A module that implements the ABI correctly except where a row says otherwise."""
    funcs = {
        "reflow_abi_version": f'(func (export "reflow_abi_version") (result i32) '
        f"(i32.const {abi}))",
        "reflow_alloc": f'(func (export "reflow_alloc") (param i32) (result i32) {alloc_body})',
        "reflow_describe": '(func (export "reflow_describe") (result i64) '
        f"{describe_body or _slice(1024, len(describe))})",
        "reflow_open": f'(func (export "reflow_open") (param i32 i32) (result i64) {open_body})',
        "reflow_tick": f'(func (export "reflow_tick") (param i32 i32) (result i64) {tick})',
    }
    body = "\n".join(f for name, f in funcs.items() if name not in omit)
    wat = f"""(module
      {imports}
      (memory (export "memory") {memory})
      (data (i32.const 1024) "{_wat_bytes(describe)}")
      (data (i32.const 3000) "\\00\\00\\00")
      (data (i32.const {DATA}) "{_wat_bytes(data)}")
      {extra}
      {body})"""
    return wasmtime.wat2wasm(wat)


HTTP_IMPORT = '(import "reflow" "http_request" (func $http (param i32 i32) (result i32)))'
CALL_HTTP = f"(drop (call $http (i32.const {DATA}) (i32.const {len(HTTP_REQ)}))) {DONE_EMPTY}"
NOPE = encode_result_done([("nope", M.integer(1))])
EMIT_NOPE = encode_outputs([("nope", M.integer(1))])
MIB = 1024 * 1024

# id, guest kwargs, limits, grants, stage, error class, message fragment
ROWS: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any], str, type, str]] = [
    (
        "infinite_loop",
        {"tick": "(loop $l (br $l)) (i64.const 0)"},
        {"tick_ms": 50},
        {},
        "tick",
        GuestTimeout,
        "time limit of 50 ms",
    ),
    (
        "memory_growth_past_cap",
        {
            "tick": "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))) "
            "unreachable"
        },
        {"memory_bytes": 2 * MIB},
        {},
        "tick",
        GuestMemoryError,
        "ran out of memory",
    ),
    ("trap_unreachable", {"tick": "unreachable"}, {}, {}, "tick", GuestTrap, "unreachable"),
    (
        "trap_divide_by_zero",
        {
            "tick": "(i64.extend_i32_u (i32.div_u (i32.const 1) "
            "(i32.sub (local.get 1) (local.get 1))))"
        },
        {},
        {},
        "tick",
        GuestTrap,
        "divide by zero",
    ),
    (
        "stack_overflow",
        {
            "extra": "(func $r (param i32) (result i32) "
            "(i32.add (call $r (local.get 0)) (i32.const 1)))",
            "tick": "(i64.extend_i32_u (call $r (i32.const 0)))",
        },
        {},
        {},
        "tick",
        GuestTrap,
        "stack overflow",
    ),
    (
        "missing_export",
        {"omit": ("reflow_tick",)},
        {},
        {},
        "load",
        GuestABIError,
        "reflow_tick (a function)",
    ),
    ("missing_memory_export", {"memory": "1", "extra": "", "omit": ()}, {}, {}, "ok", object, ""),
    (
        "wrong_abi_major",
        {"abi": 0x20000},
        {},
        {},
        "load",
        ABIVersionError,
        "built for guest ABI 2.0 but this host speaks ABI 1.1",
    ),
    (
        "newer_abi_minor",
        {"abi": 0x10002},
        {},
        {},
        "load",
        ABIVersionError,
        "guest ABI 1.2, newer than this host's ABI 1.1",
    ),
    (
        "invalid_output_encoding",
        {"data": b"\x07", "tick": _slice(DATA, 1)},
        {},
        {},
        "tick",
        GuestOutputError,
        "status byte must be 0 (done) or 1 (fail), got 7",
    ),
    (
        "truncated_output",
        {"data": NOPE[:-3], "tick": _slice(DATA, len(NOPE) - 3)},
        {},
        {},
        "tick",
        GuestOutputError,
        "invalid output encoding",
    ),
    (
        "undeclared_port",
        {"data": NOPE, "tick": _slice(DATA, len(NOPE))},
        {},
        {},
        "tick",
        GuestOutputError,
        "undeclared out-port 'nope'",
    ),
    (
        "emit_undeclared_port",
        {
            "imports": '(import "reflow" "emit" (func $emit (param i32 i32) (result i32)))',
            "data": EMIT_NOPE,
            "tick": f"(drop (call $emit (i32.const {DATA}) (i32.const {len(EMIT_NOPE)}))) "
            f"{DONE_EMPTY}",
        },
        {},
        {},
        "tick",
        GuestOutputError,
        "undeclared out-port 'nope'",
    ),
    (
        "output_over_size_cap",
        {"memory": "64", "tick": _slice(0, 3 * MIB)},
        {"output_bytes": MIB},
        {},
        "tick",
        OutputLimitError,
        "the limit is 1048576",
    ),
    (
        "http_without_capability",
        {"imports": HTTP_IMPORT, "data": HTTP_REQ, "tick": CALL_HTTP},
        {},
        {},
        "tick",
        CapabilityError,
        "not granted the 'http' capability",
    ),
    (
        "http_host_not_allowed",
        {"imports": HTTP_IMPORT, "data": HTTP_REQ, "tick": CALL_HTTP},
        {},
        {"http_hosts": ("allowed.example",)},
        "tick",
        CapabilityError,
        "may not reach host '127.0.0.1:9'",
    ),
    (
        "http_not_declared_by_template",
        {"imports": HTTP_IMPORT, "data": HTTP_REQ, "tick": CALL_HTTP, "describe": UNDECLARED_HTTP},
        {},
        {"http_hosts": ("*",)},
        "tick",
        CapabilityError,
        "template does not declare the 'http' capability",
    ),
    (
        "length_with_the_high_bit_set",
        {"tick": _slice(3000, 0xFFFFFFF0)},
        {},
        {},
        "tick",
        OutputLimitError,
        "4294967280 output bytes",
    ),
    (
        "pointer_outside_memory",
        {"tick": _slice(0xFFFF0000, 16)},
        {},
        {},
        "tick",
        GuestOutputError,
        "outside the guest's linear memory",
    ),
    (
        "import_pointer_outside_memory",
        {
            "imports": '(import "reflow" "log" (func $log (param i32 i32 i32)))',
            "tick": "(call $log (i32.const 1) (i32.const 2147483392) (i32.const 100)) "
            + DONE_EMPTY,
        },
        {},
        {},
        "tick",
        GuestOutputError,
        "outside its linear memory",
    ),
    (
        "wasi_without_grant",
        {
            "imports": '(import "wasi_snapshot_preview1" "fd_write" '
            "(func (param i32 i32 i32 i32) (result i32)))"
        },
        {},
        {},
        "open",
        CapabilityError,
        "not granted the 'wasi' capability",
    ),
    (
        "other_wasi_module",
        {
            "imports": '(import "wasi_unstable" "fd_write" '
            "(func (param i32 i32 i32 i32) (result i32)))"
        },
        {},
        {},
        "load",
        GuestABIError,
        "imports wasi_unstable.fd_write",
    ),
    (
        "unknown_reflow_import",
        {"imports": '(import "reflow" "spawn_process" (func (param i32)))'},
        {},
        {},
        "load",
        GuestABIError,
        "imports reflow.spawn_process",
    ),
    (
        "mistyped_import",
        {"imports": '(import "reflow" "emit" (func (param i64) (result i32)))'},
        {},
        {},
        "load",
        GuestABIError,
        "reflow.emit with the wrong type",
    ),
    (
        "describe_not_json",
        {"describe": b"not json"},
        {},
        {},
        "load",
        GuestABIError,
        "describe document is not valid",
    ),
    (
        "describe_loops",
        {"describe_body": "(loop $l (br $l)) (i64.const 0)"},
        {},
        {},
        "load",
        GuestTimeout,
        "time limit",
    ),
    (
        "alloc_returns_zero",
        {"alloc_body": "(i32.const 0)"},
        {},
        {},
        "open",
        GuestMemoryError,
        "reflow_alloc(",
    ),
    (
        "alloc_outside_memory",
        {"alloc_body": "(i32.const -16)"},
        {},
        {},
        "open",
        GuestOutputError,
        "outside the guest's linear memory",
    ),
    (
        "memory_minimum_over_cap",
        {"memory": "2000"},
        {},
        {},
        "load",
        GuestMemoryError,
        "more linear memory than the cap",
    ),
    ("trap_in_open", {"open_body": "unreachable"}, {}, {}, "open", GuestTrap, "unreachable"),
]
ROWS = [r for r in ROWS if r[4] != "ok"]


@pytest.fixture(scope="module")
def hostile_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WasmEngine]:
    eng = WasmEngine(cache_dir=False)
    yield eng
    eng.close()


def _check_good_node_still_works(engine: WasmEngine, doubler: Path) -> None:
    node = engine.load(doubler).actor().open_node("good", {})
    ctx = TickCtx({"in": M.integer(5)})
    node.run(ctx)
    assert ctx.outputs == [("out", M.integer(10))]
    node.close()


@pytest.mark.parametrize(
    ("kwargs", "limits", "grants", "stage", "error", "fragment"),
    [r[1:] for r in ROWS],
    ids=[r[0] for r in ROWS],
)
def test_hostile_guest(
    hostile_engine: WasmEngine,
    guest_wasm: dict[str, Path],
    kwargs: dict[str, Any],
    limits: dict[str, Any],
    grants: dict[str, Any],
    stage: str,
    error: type[SandboxError],
    fragment: str,
) -> None:
    wasm = guest(**kwargs)
    if stage == "load":
        with pytest.raises(error) as info:
            hostile_engine.load(wasm)
    else:
        actor = hostile_engine.load(wasm).actor(
            limits=GuestLimits(**limits), grants=GuestGrants(**grants)
        )
        if stage == "open":
            with pytest.raises(error) as info:
                actor.open_node("bad", {})
        else:
            node = actor.open_node("bad", {})
            for _ in range(2):  # the same node fails the same way again: nothing poisoned
                with pytest.raises(error) as info:
                    node.run(TickCtx({"in": M.integer(1)}, node="bad"))
                assert fragment in str(info.value)
                assert info.value.node == "bad"
                assert info.value.component == "hostile/x"
            node.close()
    assert fragment in str(info.value), str(info.value)
    assert isinstance(info.value, ReflowError)
    _check_good_node_still_works(hostile_engine, guest_wasm["doubler"])


def test_garbage_bytes_are_not_a_module(hostile_engine: WasmEngine) -> None:
    with pytest.raises(GuestABIError, match="not a valid WebAssembly module"):
        hostile_engine.load(b"\x00asm\x01\x00\x00\x00garbage")


def test_timeout_is_a_trap_with_its_limit(hostile_engine: WasmEngine) -> None:
    actor = hostile_engine.load(guest(tick="(loop $l (br $l)) (i64.const 0)")).actor(
        limits=GuestLimits(tick_ms=20)
    )
    node = actor.open_node("spin", {})
    with pytest.raises(GuestTimeout) as info:
        node.run(TickCtx({"in": M.integer(1)}))
    assert isinstance(info.value, GuestTrap)
    assert info.value.limit_ms == 20
    assert info.value.trap_code == "INTERRUPT"
    node.close()


def test_a_tick_over_the_output_cap_does_not_count_against_the_next(
    hostile_engine: WasmEngine,
) -> None:
    # Big input -> a result slice over the cap; small input -> an empty done frame.
    tick = (
        f"(if (result i64) (i32.gt_u (local.get 1) (i32.const 100)) "
        f"(then {_slice(0, 2 * MIB)}) (else {DONE_EMPTY}))"
    )
    actor = hostile_engine.load(guest(tick=tick, memory="64")).actor(
        limits=GuestLimits(output_bytes=MIB)
    )
    node = actor.open_node("cap", {})
    for _ in range(2):
        with pytest.raises(OutputLimitError, match="produced 2097152 output bytes"):
            node.run(TickCtx({"in": M.bytes(bytes(200))}))
        ctx = TickCtx({"in": M.integer(1)})
        node.run(ctx)
        assert ctx.outputs == [] and ctx.error is None
    node.close()


def test_close_during_a_tick_frees_the_store_after_the_tick(
    hostile_engine: WasmEngine,
) -> None:
    # run() takes no lock; a close() from another thread while a tick runs must not free the
    # store under the guest: the tick frees it on its way out, and later ticks raise.
    actor = hostile_engine.load(guest(tick="(loop $l (br $l)) (i64.const 0)")).actor(
        limits=GuestLimits(tick_ms=200)
    )
    node = actor.open_node("spin", {})
    errors: list[BaseException] = []

    def tick() -> None:
        try:
            node.run(TickCtx({"in": M.integer(1)}))
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=tick)
    t.start()
    while not node._running:  # type: ignore[attr-defined]
        pass
    node.close()
    assert node._inst is not None  # type: ignore[attr-defined]  # still in use by the tick
    t.join()
    assert len(errors) == 1 and isinstance(errors[0], GuestTimeout)
    assert node._inst is None  # type: ignore[attr-defined]
    with pytest.raises(SandboxError, match="is closed"):
        node.run(TickCtx({"in": M.integer(1)}))
    node.close()


def test_hostile_nodes_fail_alone_in_a_network(
    hostile_engine: WasmEngine, guest_wasm: dict[str, Path]
) -> None:
    net = Network()
    net.register_actor(
        "hostile/loop",
        hostile_engine.load(guest(tick="(loop $l (br $l)) (i64.const 0)")).actor(
            limits=GuestLimits(tick_ms=50)
        ),
    )
    net.register_actor("hostile/trap", hostile_engine.load(guest(tick="unreachable")).actor())
    net.register_actor("example/doubler", hostile_engine.load(guest_wasm["doubler"]).actor())
    net.add_node("loop", "hostile/loop")
    net.add_node("trap", "hostile/trap")
    net.add_node("good", "example/doubler")
    out = net.collect("good", "out")
    net.add_initial("loop", "in", M.integer(1))
    net.add_initial("trap", "in", M.integer(1))
    for i in range(10):
        net.add_initial("good", "in", M.integer(i))
    summary = net.run(timeout=30)
    assert sorted(m["data"] for m in out) == [2 * i for i in range(10)]
    kinds = {f.node: type(f.exception) for f in summary.failures}
    assert kinds == {"loop": GuestTimeout, "trap": GuestTrap}
    net.shutdown()


# -- HTTP capability against a real server on loopback ---------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        _Handler.hits.append(self.path)
        body = f"hello from {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    _Handler.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("grants", "error", "fragment"),
    [
        ({}, CapabilityError, "not granted the 'http' capability"),
        ({"http_hosts": ("other.example",)}, CapabilityError, "may not reach host"),
        ({"http_hosts": ("127.0.0.2",)}, CapabilityError, "may not reach host"),
    ],
)
def test_http_refused_never_reaches_the_server(
    engine: WasmEngine,
    guest_wasm: dict[str, Path],
    http_server: str,
    grants: dict[str, Any],
    error: type[Exception],
    fragment: str,
) -> None:
    node = engine.load(guest_wasm["http"]).actor(grants=GuestGrants(**grants)).open_node("h", {})
    with pytest.raises(error, match=fragment) as info:
        node.run(TickCtx({"url": M.string(f"http://{http_server}/secret")}))
    assert info.value.capability == "http"  # type: ignore[attr-defined]
    assert _Handler.hits == []
    node.close()


@pytest.mark.parametrize("allowed", ["127.0.0.1", "port"])
def test_http_granted_host_works(
    engine: WasmEngine, guest_wasm: dict[str, Path], http_server: str, allowed: str
) -> None:
    hosts = (http_server,) if allowed == "port" else ("127.0.0.1",)
    actor = engine.load(guest_wasm["http"]).actor(grants=GuestGrants(http_hosts=hosts))
    assert actor.template.capabilities == ("http",)
    node = actor.open_node("h", {})
    ctx = TickCtx({"url": M.string(f"http://{http_server}/hello")})
    node.run(ctx)
    assert ctx.error is None
    assert ctx.outputs == [("status", M.integer(200)), ("body", M.any("hello from /hello"))]
    assert _Handler.hits == ["/hello"]
    node.close()


def test_http_transport_error_is_reported_to_the_guest(
    engine: WasmEngine, guest_wasm: dict[str, Path]
) -> None:
    actor = engine.load(guest_wasm["http"]).actor(
        grants=GuestGrants(http_hosts=("127.0.0.1",), http_timeout=2.0)
    )
    node = actor.open_node("h", {})
    ctx = TickCtx({"url": M.string("http://127.0.0.1:9/closed")})  # discard port: refused
    node.run(ctx)
    assert ctx.error is not None and "transport error" in ctx.error
    node.close()
