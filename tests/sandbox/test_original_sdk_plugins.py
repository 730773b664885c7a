"""Plugins built with the original Reflow (offbit-ai/reflow) SDKs run as their authors' host
runs them.

No Go or Rust toolchain reaches this machine, so the plugins are hand-written WAT that
reproduce what those SDKs produce:

* **Go SDK** (``crates/reflow_wasm_go/sdk``, as in its ``examples/counter_with_state``
  build, extism go-pdk 1.x, TinyGo ``wasip1``): the imports of that build, in its order —
  WASI ``fd_write``/``proc_exit``/``clock_time_get``/``args_*``/``random_get``, the Extism
  kernel in ``extism:host/env``, and ``extism:host/user`` ``__send_output(i64)``,
  ``__get_state(i64) -> i64``, ``__set_state(i64, i64)`` with no results; exports
  ``memory``, ``_start``, ``get_metadata``, ``process``. Its counter sends
  ``{"status", "count"}`` through ``__send_output`` on ports its metadata does not declare.
* **Rust SDK, earlier host-function signatures** (``crates/reflow_wasm``, as in
  ``examples/wasm_actor/build/wasm_actor.wasm``, extism-pdk ``#[host_fn]`` giving every
  import an i64 result): ``__send_output(i64) -> i64``, ``__get_state(i64) -> i64``,
  ``__set_state(i64, i64) -> i64``, WASI ``fd_write``/``random_get``/``environ_*``/
  ``proc_exit``; exports ``memory``, ``get_metadata``, ``process`` (``actor_plugin!``).

The original host (``crates/reflow_script/src/extism.rs``) hands ``__send_output``'s map to
the actor's out-channel, where a port nothing is connected to goes nowhere; the tick's
other outputs are kept.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import wasmtime
from sandbox_helpers import TickCtx

from reflow import Actor, Message, Network
from reflow._errors import GuestABIError, GuestOutputError
from reflow._sandbox._extism_engine import ExtismModule, bind_imports, read_wasm
from reflow._sandbox._guest_host import GuestGrants, GuestLimits, GuestNodeHost, GuestTemplate

M = Message
WASI = GuestGrants(wasi=True)
LIMITS = GuestLimits(tick_ms=2000, memory_bytes=8 * 1024 * 1024)

_GO_IMPORTS = """
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func (param i32 i32) (result i32)))
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u64" (func $store_u64 (param i64 i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "load_u8" (func $load_u8 (param i64) (result i32)))
  (import "extism:host/env" "load_u64" (func $load_u64 (param i64) (result i64)))
  (import "extism:host/env" "free" (func $free (param i64)))
  (import "extism:host/env" "input_load_u8" (func $input_load_u8 (param i64) (result i32)))
  (import "extism:host/env" "input_length" (func $input_length (result i64)))
  (import "extism:host/env" "input_load_u64" (func $input_load_u64 (param i64) (result i64)))
  (import "extism:host/env" "length" (func $length (param i64) (result i64)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (import "extism:host/env" "error_set" (func $error_set (param i64)))
  (import "extism:host/user" "__send_output" (func $send_output (param i64)))
  (import "extism:host/user" "__get_state" (func $get_state (param i64) (result i64)))
  (import "extism:host/user" "__set_state" (func $set_state (param i64 i64)))
  (import "wasi_snapshot_preview1" "random_get" (func (param i32 i32) (result i32)))
"""

_RUST_EARLY_IMPORTS = """
  (import "extism:host/env" "input_length" (func $input_length (result i64)))
  (import "extism:host/env" "input_load_u64" (func $input_load_u64 (param i64) (result i64)))
  (import "extism:host/env" "input_load_u8" (func $input_load_u8 (param i64) (result i32)))
  (import "extism:host/env" "store_u64" (func $store_u64 (param i64 i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "load_u64" (func $load_u64 (param i64) (result i64)))
  (import "extism:host/env" "load_u8" (func $load_u8 (param i64) (result i32)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (import "extism:host/env" "length" (func $length (param i64) (result i64)))
  (import "extism:host/env" "free" (func $free (param i64)))
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/user" "__send_output" (func $send_output_r (param i64) (result i64)))
  (import "extism:host/user" "__get_state" (func $get_state (param i64) (result i64)))
  (import "extism:host/user" "__set_state" (func $set_state_r (param i64 i64) (result i64)))
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func (param i32 i32) (result i32)))
  (import "extism:host/env" "error_set" (func $error_set (param i64)))
  (import "wasi_snapshot_preview1" "environ_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
  (func $send_output (param i64) (drop (call $send_output_r (local.get 0))))
  (func $set_state (param i64 i64) (drop (call $set_state_r (local.get 0) (local.get 1))))
"""


def _layout(strings: dict[str, str], base: int = 0) -> tuple[str, dict[str, tuple[int, int]]]:
    """Data segments for ``strings``; each name's (offset, length)."""
    segs, where, at = [], {}, base
    for key, text in strings.items():
        raw = text.encode()
        esc = "".join(f"\\{b:02x}" for b in raw)
        segs.append(f'  (data (i32.const {at}) "{esc}")')
        where[key] = (at, len(raw))
        at += len(raw) + 8
    return "\n".join(segs), where


def counter_wat(imports: str, component: str, *, base64_result: bool = False) -> str:
    """A counter in the style of the Go SDK's ``counter_with_state`` example: each tick
    reads "count" through ``__get_state``, adds one, stores it with ``__set_state``, sends
    ``{"status": ..., "count": n}`` through ``__send_output`` (ports the metadata does not
    declare) and returns ``value`` and ``operation`` with the new state."""
    meta = json.dumps(
        {
            "component": component,
            "description": "Stateful counter (original Reflow SDK)",
            "inports": [
                {
                    "name": "operation",
                    "description": "operation",
                    "port_type": "String",
                    "required": False,
                }
            ],
            "outports": [
                {"name": n, "description": n, "port_type": t, "required": False}
                for n, t in (
                    ("value", "Integer"),
                    ("operation", "String"),
                    ("count_changed", "Event"),
                )
            ],
            "config_schema": None,
        },
        separators=(",", ":"),
    )
    data, at = _layout(
        {
            "key": "count",
            "meta": meta,
            "async_a": '{"status":"Processing complete","count":',
            "async_b": "}",
            "res_a": '{"outputs":{"value":{"type":"Integer","data":',
            "res_b": '},"operation":{"type":"String","data":"increment"}},"state":{"count":',
            "res_c": "}}",
        },
        base=0,
    )

    def put(key: str) -> str:
        off, n = at[key]
        return f"(call $put (i32.const {off}) (i32.const {n}))"

    finish = "(call $finish)" if not base64_result else "(call $finish_b64)"
    return f"""(module
{imports}
  (memory (export "memory") 2)
{data}
  (global $out (mut i32) (i32.const 0))
  ;; the output buffer lives at 32768
  (func $put (param $p i32) (param $n i32)
    (memory.copy (i32.add (i32.const 32768) (global.get $out)) (local.get $p) (local.get $n))
    (global.set $out (i32.add (global.get $out) (local.get $n))))
  (func $put_int (param $v i64)
    (local $tmp i32) (local $n i32)
    (local.set $tmp (i32.const 30000))
    (loop $l
      (i32.store8 (i32.add (local.get $tmp) (local.get $n))
                  (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $v) (i64.const 10)))))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (local.set $v (i64.div_u (local.get $v) (i64.const 10)))
      (br_if $l (i64.ne (local.get $v) (i64.const 0))))
    (loop $r
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (i32.store8 (i32.add (i32.const 32768) (global.get $out))
                  (i32.load8_u (i32.add (local.get $tmp) (local.get $n))))
      (global.set $out (i32.add (global.get $out) (i32.const 1)))
      (br_if $r (i32.ne (local.get $n) (i32.const 0)))))
  ;; [p, p+n) of this memory as a new kernel block
  (func $kernel (param $p i32) (param $n i32) (result i64)
    (local $h i64) (local $i i32)
    (local.set $h (call $alloc (i64.extend_i32_u (local.get $n))))
    (block $d (loop $l
      (br_if $d (i32.ge_u (local.get $i) (local.get $n)))
      (call $store_u8 (i64.add (local.get $h) (i64.extend_i32_u (local.get $i)))
                      (i32.load8_u (i32.add (local.get $p) (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (local.get $h))
  (func $take (result i64)  ;; the output buffer as a kernel block; empties the buffer
    (local $h i64)
    (local.set $h (call $kernel (i32.const 32768) (global.get $out)))
    (global.set $out (i32.const 0))
    (local.get $h))
  (func $finish (result i32)
    (local $n i64) (local $h i64)
    (local.set $n (i64.extend_i32_u (global.get $out)))
    (local.set $h (call $take))
    (call $output_set (local.get $h) (local.get $n))
    (i32.const 0))
  ;; the buffer as a JSON string of its base64 (Go's json.Marshal of a []byte)
  (func $finish_b64 (result i32)
    (local $i i32) (local $n i32) (local $o i32) (local $v i32) (local $h i64)
    (local.set $n (global.get $out))
    (local.set $o (i32.const 49152))
    (i32.store8 (local.get $o) (i32.const 34))
    (local.set $o (i32.add (local.get $o) (i32.const 1)))
    (block $d (loop $l
      (br_if $d (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $v (i32.shl (i32.load8_u (i32.add (i32.const 32768) (local.get $i)))
                             (i32.const 16)))
      (if (i32.lt_u (i32.add (local.get $i) (i32.const 1)) (local.get $n)) (then
        (local.set $v (i32.or (local.get $v) (i32.shl (i32.load8_u
          (i32.add (i32.const 32769) (local.get $i))) (i32.const 8))))))
      (if (i32.lt_u (i32.add (local.get $i) (i32.const 2)) (local.get $n)) (then
        (local.set $v (i32.or (local.get $v) (i32.load8_u
          (i32.add (i32.const 32770) (local.get $i)))))))
      (i32.store8 (local.get $o) (call $b64 (i32.shr_u (local.get $v) (i32.const 18))))
      (i32.store8 (i32.add (local.get $o) (i32.const 1))
                  (call $b64 (i32.and (i32.shr_u (local.get $v) (i32.const 12)) (i32.const 63))))
      (i32.store8 (i32.add (local.get $o) (i32.const 2))
        (if (result i32) (i32.lt_u (i32.add (local.get $i) (i32.const 1)) (local.get $n))
          (then (call $b64 (i32.and (i32.shr_u (local.get $v) (i32.const 6)) (i32.const 63))))
          (else (i32.const 61))))
      (i32.store8 (i32.add (local.get $o) (i32.const 3))
        (if (result i32) (i32.lt_u (i32.add (local.get $i) (i32.const 2)) (local.get $n))
          (then (call $b64 (i32.and (local.get $v) (i32.const 63))))
          (else (i32.const 61))))
      (local.set $o (i32.add (local.get $o) (i32.const 4)))
      (local.set $i (i32.add (local.get $i) (i32.const 3)))
      (br $l)))
    (i32.store8 (local.get $o) (i32.const 34))
    (local.set $o (i32.add (local.get $o) (i32.const 1)))
    (local.set $h (call $kernel (i32.const 49152) (i32.sub (local.get $o) (i32.const 49152))))
    (call $output_set (local.get $h) (call $length (local.get $h)))
    (global.set $out (i32.const 0))
    (i32.const 0))
  (func $b64 (param $x i32) (result i32)
    (if (result i32) (i32.lt_u (local.get $x) (i32.const 26))
      (then (i32.add (local.get $x) (i32.const 65)))
      (else (if (result i32) (i32.lt_u (local.get $x) (i32.const 52))
        (then (i32.add (local.get $x) (i32.const 71)))
        (else (if (result i32) (i32.lt_u (local.get $x) (i32.const 62))
          (then (i32.sub (local.get $x) (i32.const 4)))
          (else (if (result i32) (i32.eq (local.get $x) (i32.const 62))
            (then (i32.const 43)) (else (i32.const 47))))))))))
  (func (export "_start"))
  (func (export "get_metadata") (result i32)
    {put("meta")}
    (call $finish))
  (func (export "process") (result i32)
    (local $h i64) (local $len i64) (local $i i64) (local $c i32) (local $count i64)
    ;; count = __get_state("count") (JSON: a number, or null) + 1
    (local.set $h (call $get_state (call $kernel (i32.const {at["key"][0]}) (i32.const 5))))
    (local.set $len (call $length (local.get $h)))
    (block $d (loop $l
      (br_if $d (i64.ge_u (local.get $i) (local.get $len)))
      (local.set $c (call $load_u8 (i64.add (local.get $h) (local.get $i))))
      (if (i32.and (i32.ge_u (local.get $c) (i32.const 48))
                   (i32.le_u (local.get $c) (i32.const 57)))
        (then (local.set $count
          (i64.add (i64.mul (local.get $count) (i64.const 10))
                   (i64.extend_i32_u (i32.sub (local.get $c) (i32.const 48)))))))
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br $l)))
    (local.set $count (i64.add (local.get $count) (i64.const 1)))
    ;; __set_state("count", count)
    (call $put_int (local.get $count))
    (call $set_state (call $kernel (i32.const {at["key"][0]}) (i32.const 5)) (call $take))
    ;; __send_output({{"status": "Processing complete", "count": count}})
    {put("async_a")} (call $put_int (local.get $count)) {put("async_b")}
    (call $send_output (call $take))
    {put("res_a")} (call $put_int (local.get $count)) {put("res_b")}
    (call $put_int (local.get $count)) {put("res_c")}
    {finish})
)"""


def _wat(text: str) -> bytes:
    return bytes(wasmtime.wat2wasm(text))


GO_COUNTER = _wat(counter_wat(_GO_IMPORTS, "GoCounterWithState"))
RUST_EARLY_COUNTER = _wat(counter_wat(_RUST_EARLY_IMPORTS, "RustCounter"))
GO_BASE64_COUNTER = _wat(counter_wat(_GO_IMPORTS, "GoBase64Counter", base64_result=True))


class Sink(Actor):
    component = "test/sink"
    inports = ["in"]
    outports: list[str] = []

    def run(self, ctx: Any) -> None:
        ctx.done({})


@pytest.mark.parametrize(
    ("wasm", "component"),
    [
        (GO_COUNTER, "GoCounterWithState"),
        (RUST_EARLY_COUNTER, "RustCounter"),
        (GO_BASE64_COUNTER, "GoBase64Counter"),
    ],
    ids=["go_sdk", "rust_sdk_early_signatures", "go_sdk_base64_result"],
)
def test_original_sdk_counter_runs_every_tick(wasm: bytes, component: str) -> None:
    module = ExtismModule(wasm, name=component, grants=WASI)
    t = module.templates[component]
    assert t.outports == ("value", "operation", "count_changed")
    node = module.actor(limits=LIMITS, grants=WASI).open_node("counter", {})
    try:
        for n in (1, 2, 3):
            node.run(ctx := TickCtx({"operation": M.string("increment")}))
            assert ctx.error is None
            # status/count went to undeclared ports: passed through, not a failure, and the
            # tick's declared outputs are all there
            assert sorted(ctx.outputs or []) == sorted(
                [("value", M.integer(n)), ("operation", M.string("increment"))]
            )
            assert ctx.sent == []
        assert node._inst is not None
        assert node._inst.host.passed_through == {"status": 3, "count": 3}
    finally:
        node.close()


def test_original_sdk_counter_in_a_network() -> None:
    module = ExtismModule(GO_COUNTER, name="go", grants=WASI)
    net = Network()
    net.register_actor("go/counter", module.actor(limits=LIMITS, grants=WASI))
    net.register_actor("test/sink", Sink())
    net.add_node("counter", "go/counter")
    net.add_node("sink", "test/sink")
    net.add_connection("counter", "value", "sink", "in")
    values = net.collect("counter", "value")
    for _ in range(4):
        net.add_initial("counter", "operation", M.string("increment"))
    summary = net.run(timeout=60)
    assert summary.ok, summary.failures
    assert [m["data"] for m in values] == [1, 2, 3, 4]
    net.shutdown()


def test_reflow_abi_guests_keep_the_strict_port_check() -> None:
    host = GuestNodeHost(
        "n", GuestTemplate(id="t", inports=(), outports=("out",)), GuestLimits(), GuestGrants()
    )
    with pytest.raises(GuestOutputError, match="undeclared out-port 'count'"):
        host.check_ports([("out", M.integer(1)), ("count", M.integer(2))])


# -- imports: name the one at fault ----------------------------------------------------------

_KERNEL = """
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
"""


def _module_with(imp: str) -> bytes:
    return _wat(f"""(module {_KERNEL} {imp}
      (memory (export "memory") 1)
      (func (export "f") (result i32) (i32.const 0)))""")


# id, import declaration, message fragments
BAD_IMPORTS = [
    (
        "send_output_i32",
        '(import "extism:host/user" "__send_output" (func (param i32)))',
        [
            "extism:host/user.__send_output",
            "signature (i32) -> ()",
            "expected (i64) -> () or (i64) -> (i64)",
        ],
    ),
    (
        "set_state_one_param",
        '(import "extism:host/user" "__set_state" (func (param i64) (result i64)))',
        ["extism:host/user.__set_state", "(i64) -> (i64)", "(i64, i64) -> ()"],
    ),
    (
        "get_state_no_result",
        '(import "extism:host/user" "__get_state" (func (param i64)))',
        ["extism:host/user.__get_state", "(i64) -> ()", "expected (i64) -> (i64)"],
    ),
    (
        "unknown_user_function",
        '(import "extism:host/user" "__emit" (func (param i64)))',
        ["extism:host/user.__emit", "does not provide", "extism:host/user.__send_output"],
    ),
    (
        "sdk_function_in_env",
        '(import "env" "__send_output" (func (param i64)))',
        ["env.__send_output", "are in extism:host/user"],
    ),
    (
        "pre_1_0_kernel",
        '(import "env" "extism_alloc" (func (param i64) (result i64)))',
        ["env.extism_alloc", "before 1.0"],
    ),
    (
        "unknown_namespace",
        '(import "reflow" "emit" (func (param i32 i32) (result i32)))',
        ["reflow.emit", "does not provide"],
    ),
    (
        "memory_import",
        '(import "extism:host/user" "mem" (memory 1))',
        ["the memory extism:host/user.mem", "only functions"],
    ),
    (
        "kernel_http_mistyped",
        '(import "extism:host/env" "http_request" (func (param i64)))',
        ["extism:host/env.http_request", "(i64) -> ()", "expected (i64, i64) -> (i64)"],
    ),
]


@pytest.mark.parametrize(
    ("decl", "fragments"), [r[1:] for r in BAD_IMPORTS], ids=[r[0] for r in BAD_IMPORTS]
)
def test_a_missing_or_mistyped_import_is_named(decl: str, fragments: list[str]) -> None:
    with pytest.raises(GuestABIError) as info:
        ExtismModule(_module_with(decl), name="bad-imports")
    for fragment in fragments:
        assert fragment in str(info.value)
    assert "plugin 'bad-imports'" in str(info.value)
    assert "not a valid Extism plugin" not in str(info.value)


@pytest.mark.parametrize(
    ("decl", "sig"),
    [
        ('(import "extism:host/user" "__send_output" (func (param i64)))', ((("i64",), ()))),
        (
            '(import "extism:host/user" "__send_output" (func (param i64) (result i64)))',
            (("i64",), ("i64",)),
        ),
        ('(import "extism:host/user" "__set_state" (func (param i64 i64)))', (("i64", "i64"), ())),
        (
            '(import "extism:host/user" "__set_state" (func (param i64 i64) (result i64)))',
            (("i64", "i64"), ("i64",)),
        ),
    ],
    ids=["send_go", "send_rust_early", "set_go", "set_rust_early"],
)
def test_the_host_function_is_bound_with_the_imported_signature(decl: str, sig: Any) -> None:
    wasm = _module_with(decl)
    bound = {(ns, n): s for ns, n, s in bind_imports(read_wasm(wasm, "m"), "m")}
    name = decl.split('"')[3]
    assert bound[("extism:host/user", name)] == sig
    ExtismModule(wasm, name="ok")  # links and instantiates
