"""The extism engine: Reflow-SDK plugins (get_metadata + process, JSON context) and plain
Extism functions as actors, in a real Network next to Python actors; hostile guests fail their
own tick with the right error and the graph keeps running; grants decide HTTP and WASI.

Guests are written here: a Reflow-SDK plugin in C (built with the ziglang toolchain, declaring
the Extism kernel imports itself) and plain Extism functions as inline WAT.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import extism
import pytest
import wasmtime
from sandbox_helpers import TickCtx

from reflow import Actor, Message, Network
from reflow._errors import (
    CapabilityError,
    GuestABIError,
    GuestMemoryError,
    GuestOutputError,
    GuestTimeout,
    GuestTrap,
    OutputLimitError,
    SandboxError,
)
from reflow._loader._plugins import (
    ExtismEnginePlugin,
    engine_for,
    register_plugin,
    unregister_plugin,
)
from reflow._sandbox._extism_engine import (
    ExtismActor,
    ExtismModule,
    _GuestReported,
    _translate,
    parse_metadata,
)
from reflow._sandbox._guest_host import GuestGrants, GuestLimits, GuestNodeHost, GuestTemplate
from reflow.abi._manifest import TemplateSpec

M = Message
MIB = 1024 * 1024
LIMITS = GuestLimits(tick_ms=200, memory_bytes=4 * MIB)

# -- guests ----------------------------------------------------------------------------------

#: A plugin speaking the original Reflow WASM SDK protocol: out = in * config.factor, count =
#: ticks so far (kept in the JSON state). Negative inputs select a misbehaviour.
SDK_GUEST_C = r"""
typedef unsigned long long u64;
typedef long long i64;
typedef unsigned int u32;
typedef unsigned char u8;
#define IMPORT(mod, n) __attribute__((import_module(mod), import_name(n)))
#define EXPORT(n) __attribute__((export_name(n)))

IMPORT("extism:host/env", "input_length") u64 x_input_length(void);
IMPORT("extism:host/env", "input_load_u8") u32 x_input_load_u8(u64);
IMPORT("extism:host/env", "alloc") u64 x_alloc(u64);
IMPORT("extism:host/env", "store_u8") void x_store_u8(u64, u32);
IMPORT("extism:host/env", "load_u8") u32 x_load_u8(u64);
IMPORT("extism:host/env", "length") u64 x_length(u64);
IMPORT("extism:host/env", "output_set") void x_output_set(u64, u64);
IMPORT("extism:host/env", "error_set") void x_error_set(u64);
IMPORT("extism:host/env", "http_request") u64 x_http_request(u64, u64);
IMPORT("extism:host/user", "__send_output") void x_send_output(u64);
IMPORT("extism:host/user", "__get_state") u64 x_get_state(u64);
IMPORT("extism:host/user", "__set_state") void x_set_state(u64, u64);

static u8 in_buf[65536];
static u8 out_buf[4096];
static u32 in_len, out_len;

static u32 slen(const char *s) { u32 n = 0; while (s[n]) n++; return n; }
static u64 to_kernel(const u8 *p, u32 n) {
    u64 h = x_alloc(n);
    for (u32 i = 0; i < n; i++) x_store_u8(h + i, p[i]);
    return h;
}
static u64 str_kernel(const char *s) { return to_kernel((const u8 *)s, slen(s)); }
static int finish(void) { x_output_set(to_kernel(out_buf, out_len), out_len); return 0; }
static void put(const char *s) {
    u32 n = slen(s);
    for (u32 i = 0; i < n; i++) out_buf[out_len++] = (u8)s[i];
}
static void put_int(i64 v) {
    char tmp[24]; int n = 0; u64 u;
    if (v < 0) { out_buf[out_len++] = '-'; u = (u64)(-v); } else u = (u64)v;
    do { tmp[n++] = (char)('0' + u % 10); u /= 10; } while (u);
    while (n) out_buf[out_len++] = (u8)tmp[--n];
}
static int find(const char *needle, int from) {
    u32 m = slen(needle);
    if (from < 0) return -1;
    for (u32 i = (u32)from; i + m <= in_len; i++) {
        u32 j = 0;
        while (j < m && in_buf[i + j] == (u8)needle[j]) j++;
        if (j == m) return (int)(i + m);
    }
    return -1;
}
static i64 number_at(int pos, i64 dflt) {
    if (pos < 0) return dflt;
    int neg = 0; i64 v = 0; u32 i = (u32)pos;
    if (in_buf[i] == '-') { neg = 1; i++; }
    if (in_buf[i] < '0' || in_buf[i] > '9') return dflt;
    while (i < in_len && in_buf[i] >= '0' && in_buf[i] <= '9') v = v * 10 + (in_buf[i++] - '0');
    return neg ? -v : v;
}

EXPORT("get_metadata") int get_metadata(void) {
    out_len = 0;
    put("{\"component\":\"sdk/scale\",\"description\":\"multiplies by config.factor\","
        "\"inports\":[{\"name\":\"in\",\"description\":\"a number\",\"port_type\":\"Integer\","
        "\"required\":true}],"
        "\"outports\":[{\"name\":\"out\",\"description\":\"scaled\",\"port_type\":\"Integer\","
        "\"required\":false},{\"name\":\"count\",\"description\":\"ticks so far\","
        "\"port_type\":\"Integer\",\"required\":false}],"
        "\"config_schema\":{\"type\":\"object\"}}");
    return finish();
}

EXPORT("process") int process(void) {
    u64 n = x_input_length();
    if (n > sizeof in_buf) n = sizeof in_buf;
    for (u64 i = 0; i < n; i++) in_buf[i] = (u8)x_input_load_u8(i);
    in_len = (u32)n;
    out_len = 0;
    i64 x = number_at(find("\"data\":", find("\"payload\":", 0)), 0);
    i64 factor = number_at(find("\"factor\":", find("\"config\":", 0)), 1);
    i64 count = number_at(find("\"count\":", find("\"state\":", 0)), 0) + 1;
    switch (x) {
    case -1: __builtin_trap();
    case -2: for (volatile int spin = 1; spin;) {} return 0;
    case -3: for (;;) if (__builtin_wasm_memory_grow(0, 16) == (unsigned long)-1) __builtin_trap();
    case -4: put("{\"outputs\": not json"); return finish();
    case -5: put("{\"outputs\":{\"nope\":{\"type\":\"Integer\",\"data\":1}}}"); return finish();
    case -6:
        x_http_request(str_kernel("{\"url\":\"http://example.com/\",\"method\":\"GET\"}"), 0);
        put("{\"outputs\":{}}"); return finish();
    case -7: x_error_set(str_kernel("negative input is not allowed")); return 1;
    case -8:
        put("{\"outputs\":{\"out\":{\"type\":\"Integer\",\"data\":\"text\"}}}");
        return finish();
    case -9: {
        x_send_output(str_kernel("{\"out\":41}"));
        x_set_state(str_kernel("k"), str_kernel("{\"v\":7}"));
        u64 got = x_get_state(str_kernel("k"));
        u64 len = x_length(got);
        put("{\"outputs\":{\"out\":{\"type\":\"String\",\"data\":\"");
        for (u64 i = 0; i < len && i < 64; i++) {
            u8 c = (u8)x_load_u8(got + i);
            out_buf[out_len++] = c == '"' ? '\'' : c;
        }
        put("\"}}}");
        return finish();
    }
    case -10:
        put("{\"outputs\":{\"out\":{\"type\":\"Stream\",\"data\":[104,105]}}}");
        return finish();
    }
    put("{\"outputs\":{\"out\":{\"type\":\"Integer\",\"data\":"); put_int(x * factor);
    put("},\"count\":{\"type\":\"Integer\",\"data\":"); put_int(count);
    put("}},\"state\":{\"count\":"); put_int(count); put("}}");
    return finish();
}
"""

_KERNEL_IMPORTS = """
  (import "extism:host/env" "input_length" (func $input_length (result i64)))
  (import "extism:host/env" "input_load_u8" (func $input_load_u8 (param i64) (result i32)))
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "length" (func $length (param i64) (result i64)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (import "extism:host/env" "error_set" (func $error_set (param i64)))
  (import "extism:host/env" "config_get" (func $config_get (param i64) (result i64)))
  (import "extism:host/env" "http_request" (func $http (param i64 i64) (result i64)))
  (import "extism:host/env" "http_status_code" (func $status (result i32)))
"""

#: Plain Extism functions (no reflow protocol at all).
FUNCTIONS_WAT = f"""
(module
  {_KERNEL_IMPORTS}
  (memory (export "memory") 1)
  (data (i32.const 0) "greeting")
  (data (i32.const 16) "upper refuses an empty input")
  (data (i32.const 64) "\\ff\\fe")
  ;; copy [p, p+n) of this module's memory into a new kernel block
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
  ;; the input, with a..z made upper case, as the output (upper) or unchanged (echo)
  (func $map (param $upper i32) (result i32)
    (local $n i64) (local $i i64) (local $out i64) (local $c i32)
    (local.set $n (call $input_length))
    (if (i32.and (local.get $upper) (i64.eqz (local.get $n))) (then
      (call $error_set (call $kernel (i32.const 16) (i32.const 28)))
      (return (i32.const 1))))
    (local.set $out (call $alloc (local.get $n)))
    (block $d (loop $l
      (br_if $d (i64.ge_u (local.get $i) (local.get $n)))
      (local.set $c (call $input_load_u8 (local.get $i)))
      (if (i32.and (local.get $upper)
                   (i32.and (i32.ge_u (local.get $c) (i32.const 97))
                            (i32.le_u (local.get $c) (i32.const 122))))
        (then (local.set $c (i32.sub (local.get $c) (i32.const 32)))))
      (call $store_u8 (i64.add (local.get $out) (local.get $i)) (local.get $c))
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br $l)))
    (call $output_set (local.get $out) (local.get $n))
    (i32.const 0))
  (func (export "upper") (result i32) (call $map (i32.const 1)))
  (func (export "echo") (result i32) (call $map (i32.const 0)))
  ;; the Extism config value "greeting"
  (func (export "cfg") (result i32)
    (local $v i64)
    (local.set $v (call $config_get (call $kernel (i32.const 0) (i32.const 8))))
    (call $output_set (local.get $v) (call $length (local.get $v)))
    (i32.const 0))
  ;; the input is an Extism HTTP request: the response body, or its status (u32 LE)
  (func $request (result i64)
    (local $n i64) (local $i i64) (local $h i64)
    (local.set $n (call $input_length))
    (local.set $h (call $alloc (local.get $n)))
    (block $d (loop $l
      (br_if $d (i64.ge_u (local.get $i) (local.get $n)))
      (call $store_u8 (i64.add (local.get $h) (local.get $i))
                      (call $input_load_u8 (local.get $i)))
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br $l)))
    (call $http (local.get $h) (i64.const 0)))
  (func (export "fetch") (result i32)
    (local $r i64)
    (local.set $r (call $request))
    (call $output_set (local.get $r) (call $length (local.get $r)))
    (i32.const 0))
  (func (export "fetch_status") (result i32)
    (local $h i64) (local $s i32)
    (drop (call $request))
    (local.set $s (call $status))
    (local.set $h (call $alloc (i64.const 2)))
    (call $store_u8 (local.get $h) (i32.and (local.get $s) (i32.const 255)))
    (call $store_u8 (i64.add (local.get $h) (i64.const 1)) (i32.shr_u (local.get $s) (i32.const 8)))
    (call $output_set (local.get $h) (i64.const 2))
    (i32.const 0))
  (func (export "trap") (result i32) unreachable)
  (func (export "spin") (result i32) (loop $l (br $l)) (i32.const 0))
  (func (export "hog") (result i32)
    (loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    unreachable)
  (func (export "badutf8") (result i32)
    (call $output_set (call $kernel (i32.const 64) (i32.const 2)) (i64.const 2))
    (i32.const 0))
  (func (export "big") (result i32)
    (call $output_set (call $alloc (i64.const 200000)) (i64.const 200000))
    (i32.const 0))
)
"""


def _wat(text: str) -> bytes:
    return bytes(wasmtime.wat2wasm(text))


@pytest.fixture(scope="session")
def sdk_wasm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("extism")
    src = out / "sdk_guest.c"
    src.write_text(SDK_GUEST_C)
    wasm = out / "sdk_guest.wasm"
    cmd = [
        sys.executable,
        "-m",
        "ziglang",
        "cc",
        "--target=wasm32-freestanding",
        "-O2",
        "-nostdlib",
        "-Wl,--no-entry",
        "-o",
        str(wasm),
        str(src),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return wasm


@pytest.fixture(scope="session")
def sdk_module(sdk_wasm: Path) -> ExtismModule:
    return ExtismModule.load(sdk_wasm)


@pytest.fixture(scope="session")
def fn_module() -> ExtismModule:
    return ExtismModule(_wat(FUNCTIONS_WAT), name="functions")


class PyInc(Actor):
    component = "py/inc"
    inports = ["in"]
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        ctx.done({"out": M.integer(ctx.inputs["in"]["data"] + 1)})


class PyText(Actor):
    component = "py/text"
    inports = ["in"]
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        ctx.done({"out": M.string(f"item {ctx.inputs['in']['data']}")})


# -- Reflow-SDK plugins ----------------------------------------------------------------------


def test_get_metadata_becomes_the_template(sdk_module: ExtismModule) -> None:
    t = sdk_module.templates["sdk/scale"]
    assert (t.inports, t.outports) == (("in",), ("out", "count"))
    assert t.description == "multiplies by config.factor"
    assert t.config_schema == {"type": "object"}
    actor = sdk_module.actor()
    assert isinstance(actor, ExtismActor)
    assert (actor.component, actor.inports, actor.outports) == (
        "sdk/scale",
        ["in"],
        ["out", "count"],
    )
    assert actor.execution == "worker" and not actor.await_all_inports


def test_sdk_plugin_in_a_network_next_to_python_actors(sdk_module: ExtismModule) -> None:
    net = Network()
    net.register_actor("py/inc", PyInc())
    net.register_actor("sdk/scale", sdk_module.actor(limits=LIMITS))
    net.add_node("inc", "py/inc")
    net.add_node("scale", "sdk/scale", {"factor": 3})
    net.add_node("inc2", "py/inc")
    net.add_connection("inc", "out", "scale", "in")
    net.add_connection("scale", "out", "inc2", "in")
    out = net.collect("inc2", "out")
    counts = net.collect("scale", "count")
    for i in range(20):
        net.add_initial("inc", "in", M.integer(i))
    summary = net.run(timeout=30)
    assert summary.ok, summary.failures
    assert sorted(m["data"] for m in out) == sorted((i + 1) * 3 + 1 for i in range(20))
    # The JSON state the plugin returns comes back on the next tick.
    assert sorted(m["data"] for m in counts) == list(range(1, 21))
    net.shutdown()


def test_each_node_has_its_own_instance_and_state(sdk_module: ExtismModule) -> None:
    actor = sdk_module.actor(limits=LIMITS)
    a, b = actor.open_node("a", {"factor": 2}), actor.open_node("b", {"factor": 5})
    try:
        for _ in range(3):
            a.run(ctx := TickCtx({"in": M.integer(1)}))
        assert ctx.outputs == [("out", M.integer(2)), ("count", M.integer(3))]
        b.run(ctx := TickCtx({"in": M.integer(1)}))
        assert ctx.outputs == [("out", M.integer(5)), ("count", M.integer(1))]
    finally:
        a.close()
        b.close()


def test_host_functions_send_output_and_state(sdk_module: ExtismModule) -> None:
    node = sdk_module.actor(limits=LIMITS).open_node("n1", {})
    try:
        node.run(ctx := TickCtx({"in": M.integer(-9)}))
        assert ctx.sent == [("out", M.integer(41))]  # __send_output, delivered mid-tick
        assert ctx.outputs == [("out", M.string("{'v': 7}"))]  # __set_state then __get_state
        node.run(ctx := TickCtx({"in": M.integer(-10)}))
        assert ctx.outputs == [("out", M.bytes(b"hi"))]  # the SDK's Stream of bytes
    finally:
        node.close()


def test_guest_reported_error_fails_the_tick(sdk_module: ExtismModule) -> None:
    node = sdk_module.actor(limits=LIMITS).open_node("n1", {})
    try:
        node.run(ctx := TickCtx({"in": M.integer(-7)}))
        assert ctx.error is not None and "negative input is not allowed" in ctx.error
        node.run(ctx := TickCtx({"in": M.integer(4)}))
        assert ctx.outputs is not None and ctx.outputs[0] == ("out", M.integer(4))
    finally:
        node.close()


# id, input, error class, message fragment
SDK_HOSTILE = [
    ("trap", -1, GuestTrap, "guest trapped in process"),
    ("infinite_loop", -2, GuestTimeout, "time limit of 200 ms"),
    ("memory_past_cap", -3, GuestMemoryError, f"cap of {4 * MIB} bytes"),
    ("invalid_json", -4, GuestOutputError, "not valid UTF-8 JSON"),
    ("http_without_grant", -6, CapabilityError, "not granted the 'http' capability"),
    ("invalid_message", -8, GuestOutputError, "invalid message at $.outputs.out.data"),
]


@pytest.mark.parametrize(
    ("value", "error", "fragment"), [r[1:] for r in SDK_HOSTILE], ids=[r[0] for r in SDK_HOSTILE]
)
def test_hostile_sdk_tick_fails_and_the_node_keeps_working(
    sdk_module: ExtismModule, value: int, error: type[SandboxError], fragment: str
) -> None:
    node = sdk_module.actor(limits=LIMITS).open_node("n1", {"factor": 2})
    try:
        with pytest.raises(error, match=None) as info:
            node.run(TickCtx({"in": M.integer(value)}))
        assert fragment in str(info.value)
        assert (info.value.node, info.value.component) == ("n1", "sdk/scale")
        node.run(ctx := TickCtx({"in": M.integer(21)}))
        assert ctx.outputs is not None and ctx.outputs[0] == ("out", M.integer(42))
    finally:
        node.close()


def test_hostile_ticks_do_not_stop_the_network(sdk_module: ExtismModule) -> None:
    net = Network()
    net.register_actor("sdk/scale", sdk_module.actor(limits=LIMITS))
    net.register_actor("py/inc", PyInc())
    net.add_node("scale", "sdk/scale", {"factor": 10})
    net.add_node("py", "py/inc")
    out = net.collect("scale", "out")
    py_out = net.collect("py", "out")
    bad = [r[1] for r in SDK_HOSTILE] + [-7]
    for v in [1, *bad, 2]:
        net.add_initial("scale", "in", M.integer(v))
    for i in range(5):
        net.add_initial("py", "in", M.integer(i))
    summary = net.run(timeout=30)
    assert [m["data"] for m in out] == [10, 20]
    assert [m["data"] for m in py_out] == [1, 2, 3, 4, 5]
    assert summary.failure_count == len(bad)
    assert any("time limit" in str(f) for f in summary.failures)
    net.shutdown()


# -- plain Extism functions ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("export", "output", "given", "expected"),
    [
        ("upper", "string", M.string("hello"), M.string("HELLO")),
        ("upper", "bytes", M.bytes(b"a\x00b"), M.bytes(b"A\x00B")),
        ("echo", "json", M.object({"a": [1, 2]}), M.any({"a": [1, 2]})),
        ("echo", "message", M.string('{"type":"Integer","data":7}'), M.integer(7)),
        ("echo", "string", M.integer(12), M.string("12")),
    ],
)
def test_function_actor_modes(
    fn_module: ExtismModule, export: str, output: str, given: Message, expected: Message
) -> None:
    node = fn_module.function_actor(export, output=output, limits=LIMITS).open_node("f", {})
    try:
        node.run(ctx := TickCtx({"in": given}))
        assert ctx.error is None
        assert ctx.outputs == [("out", expected)]
    finally:
        node.close()


def test_function_actor_in_a_network(fn_module: ExtismModule) -> None:
    net = Network()
    net.register_actor("py/text", PyText())
    net.register_actor(
        "text/upper", fn_module.function_actor("upper", component="text/upper", limits=LIMITS)
    )
    net.add_node("src", "py/text")
    net.add_node("up", "text/upper")
    net.add_connection("src", "out", "up", "in")
    out = net.collect("up", "out")
    for i in range(10):
        net.add_initial("src", "in", M.integer(i))
    summary = net.run(timeout=30)
    assert summary.ok, summary.failures
    assert sorted(m["data"] for m in out) == sorted(f"ITEM {i}" for i in range(10))
    net.shutdown()


def test_node_config_is_the_extism_config(fn_module: ExtismModule) -> None:
    node = fn_module.function_actor("cfg", limits=LIMITS).open_node("f", {"greeting": "hi"})
    try:
        node.run(ctx := TickCtx({"in": M.flow()}))
        assert ctx.outputs == [("out", M.string("hi"))]
    finally:
        node.close()


# id, export, output mode, limits, error class, message fragment
FN_HOSTILE: list[tuple[str, str, str, GuestLimits, type[SandboxError], str]] = [
    ("trap", "trap", "string", LIMITS, GuestTrap, "guest trapped in trap"),
    (
        "infinite_loop",
        "spin",
        "string",
        GuestLimits(tick_ms=100),
        GuestTimeout,
        "time limit of 100 ms",
    ),
    (
        "memory_past_cap",
        "hog",
        "string",
        GuestLimits(memory_bytes=2 * MIB),
        GuestMemoryError,
        "ran out of memory",
    ),
    ("not_utf8", "badutf8", "string", LIMITS, GuestOutputError, "not UTF-8 text"),
    ("not_json", "upper", "json", LIMITS, GuestOutputError, "not valid UTF-8 JSON"),
    ("not_a_message", "echo", "message", LIMITS, GuestOutputError, "unknown message type"),
    (
        "output_past_cap",
        "big",
        "bytes",
        GuestLimits(output_bytes=100_000),
        OutputLimitError,
        "the limit is 100000",
    ),
]


@pytest.mark.parametrize(
    ("export", "output", "limits", "error", "fragment"),
    [r[1:] for r in FN_HOSTILE],
    ids=[r[0] for r in FN_HOSTILE],
)
def test_hostile_function_tick_fails_and_the_node_keeps_working(
    fn_module: ExtismModule,
    export: str,
    output: str,
    limits: GuestLimits,
    error: type[SandboxError],
    fragment: str,
) -> None:
    given = M.string('{"type":"Nope"}') if export == "echo" else M.string("x")
    node = fn_module.function_actor(export, output=output, limits=limits).open_node("f", {})
    try:
        with pytest.raises(error) as info:
            node.run(TickCtx({"in": given}))
        assert fragment in str(info.value)
        assert info.value.node == "f"
    finally:
        node.close()
    survivor = fn_module.function_actor("upper", limits=limits).open_node("g", {})
    try:
        survivor.run(ctx := TickCtx({"in": M.string("ok")}))
        assert ctx.outputs == [("out", M.string("OK"))]
    finally:
        survivor.close()


def test_function_guest_error_fails_the_tick(fn_module: ExtismModule) -> None:
    node = fn_module.function_actor("upper", limits=LIMITS).open_node("f", {})
    try:
        node.run(ctx := TickCtx({"in": M.string("")}))
        assert ctx.error is not None and "upper refuses an empty input" in ctx.error
    finally:
        node.close()


def test_close_is_idempotent_and_use_after_close_raises(fn_module: ExtismModule) -> None:
    node = fn_module.function_actor("upper").open_node("f", {})
    node.close()
    node.close()
    with pytest.raises(SandboxError, match="is closed"):
        node.run(TickCtx({"in": M.string("x")}))


# -- HTTP through grants --------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"x" * 5000 if self.path == "/big" else f"pong {self.path}".encode()
        self.send_response(404 if self.path == "/missing" else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _get(hostport: str, path: str) -> Message:
    return M.string(json.dumps({"url": f"http://{hostport}{path}", "method": "GET"}))


def test_http_to_a_granted_host(fn_module: ExtismModule, http_server: str) -> None:
    grants = GuestGrants(http_hosts=(http_server,))
    fetch = fn_module.function_actor("fetch", grants=grants).open_node("h", {})
    status = fn_module.function_actor("fetch_status", output="bytes", grants=grants).open_node(
        "s", {}
    )
    try:
        fetch.run(ctx := TickCtx({"in": _get(http_server, "/ping")}))
        assert ctx.outputs == [("out", M.string("pong /ping"))]
        for path, code in (("/ping", 200), ("/missing", 404)):
            status.run(ctx := TickCtx({"in": _get(http_server, path)}))
            assert ctx.outputs is not None
            assert int.from_bytes(ctx.outputs[0][1]["data"], "little") == code
    finally:
        fetch.close()
        status.close()


@pytest.mark.parametrize(
    ("grants", "path", "fragment"),
    [
        (GuestGrants(), "/ping", "not granted the 'http' capability"),
        (GuestGrants(http_hosts=("api.example.com",)), "/ping", "may not reach host '127.0.0.1:"),
        ("server", "/big", "larger than the granted 1000 bytes"),
    ],
    ids=["no_grant", "other_host", "response_past_cap"],
)
def test_http_outside_the_grant(
    fn_module: ExtismModule, http_server: str, grants: Any, path: str, fragment: str
) -> None:
    if grants == "server":
        grants = GuestGrants(http_hosts=(http_server,), http_max_response=1000)
    node = fn_module.function_actor("fetch", grants=grants).open_node("h", {})
    try:
        with pytest.raises(CapabilityError) as info:
            node.run(TickCtx({"in": _get(http_server, path)}))
        assert fragment in str(info.value)
        assert info.value.capability == "http"
    finally:
        node.close()


# -- loading, grants -------------------------------------------------------------------------

WASI_WAT = """(module
  (import "wasi_snapshot_preview1" "random_get" (func $r (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "f") (result i32) (drop (call $r (i32.const 0) (i32.const 4))) (i32.const 0)))"""
UNKNOWN_IMPORT_WAT = """(module
  (import "somewhere" "else" (func $x))
  (memory (export "memory") 1)
  (func (export "f") (result i32) (i32.const 0)))"""
BAD_METADATA_WAT = f"""(module
  {_KERNEL_IMPORTS}
  (memory (export "memory") 1)
  (data (i32.const 0) "[1, 2]")
  (func (export "get_metadata") (result i32)
    (local $h i64)
    (local.set $h (call $alloc (i64.const 6)))
    (call $store_u8 (local.get $h) (i32.const 123))
    (call $output_set (local.get $h) (i64.const 1))
    (i32.const 0))
  (func (export "process") (result i32) (i32.const 0)))"""


@pytest.mark.parametrize(
    ("wasm", "error", "fragment"),
    [
        (b"\x00asm\x01\x00\x00\x00garbage", GuestABIError, "not a valid WebAssembly module"),
        (_wat(UNKNOWN_IMPORT_WAT), GuestABIError, "somewhere"),
        (_wat(WASI_WAT), CapabilityError, "'wasi' capability"),
        (_wat(BAD_METADATA_WAT), GuestABIError, "get_metadata did not return UTF-8 JSON"),
    ],
    ids=["not_wasm", "unknown_import", "wasi_without_grant", "bad_metadata"],
)
def test_bad_plugins_are_refused_at_load(wasm: bytes, error: type, fragment: str) -> None:
    with pytest.raises(error) as info:
        ExtismModule(wasm, name="bad")
    assert fragment in str(info.value)


def test_wasi_only_with_the_grant() -> None:
    module = ExtismModule(_wat(WASI_WAT), name="wasi", grants=GuestGrants(wasi=True))
    node = module.function_actor("f", output="bytes", grants=GuestGrants(wasi=True)).open_node(
        "w", {}
    )
    try:
        node.run(ctx := TickCtx({"in": M.flow()}))
        assert ctx.outputs == [("out", M.bytes(b""))]
    finally:
        node.close()
    with pytest.raises(CapabilityError, match="'wasi'"):
        module.function_actor("f").open_node("w2", {})


def test_wrong_exports_are_clear_errors(fn_module: ExtismModule, sdk_module: ExtismModule) -> None:
    with pytest.raises(GuestABIError, match="no export 'missing'"):
        fn_module.function_actor("missing")
    with pytest.raises(GuestABIError, match="does not export get_metadata and process"):
        fn_module.actor()
    with pytest.raises(GuestABIError, match="no template 'other'"):
        sdk_module.actor("other")
    with pytest.raises(ValueError, match="output must be one of"):
        fn_module.function_actor("upper", output="xml")


def test_allowed_hosts_come_only_from_grants(fn_module: ExtismModule) -> None:
    none = fn_module._manifest(LIMITS, GuestGrants())
    assert none["allowed_hosts"] == [] and none["allowed_paths"] == {}
    granted = fn_module._manifest(LIMITS, GuestGrants(http_hosts=("api.example.com",)))
    assert granted["allowed_hosts"] == ["api.example.com"]
    # The tick deadline is reflow's watchdog, not extism's wall-clock timeout_ms.
    assert none["memory"]["max_pages"] == 64 and "timeout_ms" not in none


def test_parse_metadata_accepts_names_and_port_objects() -> None:
    t = parse_metadata(
        b'{"component": "c", "inports": ["a", {"name": "b"}], '
        b'"outports": [], "await_all_inports": true}'
    )
    assert (t.id, t.inports, t.await_all_inports) == ("c", ("a", "b"), True)
    with pytest.raises(GuestABIError, match="lists a port twice"):
        parse_metadata(b'{"component": "c", "inports": ["a", "a"]}')
    with pytest.raises(GuestABIError, match='non-empty string "component"'):
        parse_metadata(b'{"inports": []}')


# -- the one boundary: every extism failure maps to our tree ----------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("timeout", GuestTimeout),
        ("oom", GuestMemoryError),
        ("Function not found: nope", GuestABIError),
        ("error while executing at wasm backtrace:\n    0: 0x1 - <unknown>!f", GuestTrap),
        (
            "Unable to create Extism plugin: unknown import: `a::b` has not been defined",
            GuestABIError,
        ),
        (
            "Unable to create Extism plugin: unknown import: `wasi_snapshot_preview1::x`",
            CapabilityError,
        ),
        ("Unable to compile Extism plugin: unexpected end-of-file", GuestABIError),
        ("whatever the guest said", _GuestReported),
        ("Error code: 3", _GuestReported),
    ],
)
def test_translate(text: str, expected: type) -> None:
    host = GuestNodeHost(
        "n", GuestTemplate(id="t", inports=(), outports=()), GuestLimits(), GuestGrants()
    )
    got = _translate(extism.Error(text), "f", host, "m")
    assert type(got) is expected
    if isinstance(got, SandboxError):
        assert (got.node, got.component) == ("n", "t")


# -- the pack engine plugin ------------------------------------------------------------------


def test_engine_plugin_builds_actors_for_both_kinds(
    sdk_wasm: Path, fn_module: ExtismModule, tmp_path: Path
) -> None:
    engine = ExtismEnginePlugin()
    assert engine.reflow_pack_engine(kind="extism") is engine
    assert engine.reflow_pack_engine(kind="wasm") is None
    manifest = SimpleNamespace(name="pk")
    sdk = engine.load_artifact(
        sdk_wasm,
        artifact=SimpleNamespace(entry="scale"),
        manifest=manifest,
        templates=[TemplateSpec(id="sdk/scale", entry="scale", engine="extism")],
        grants=None,
    )
    assert isinstance(sdk["sdk/scale"], ExtismActor) and sdk["sdk/scale"].export is None
    fn_path = tmp_path / "fn.wasm"
    fn_path.write_bytes(fn_module.wasm)
    spec = TemplateSpec(
        id="text/shout",
        entry="fn",
        inports=("text",),
        outports=("loud",),
        config_schema={"x-extism": {"export": "upper", "output": "string"}},
    )
    fns = engine.load_artifact(
        fn_path,
        artifact=SimpleNamespace(entry="fn"),
        manifest=manifest,
        templates=[spec],
        grants=GuestGrants(),
    )
    node = fns["text/shout"].open_node("s", {})
    try:
        node.run(ctx := TickCtx({"text": M.string("hey")}))
        assert ctx.outputs == [("loud", M.string("HEY"))]
    finally:
        node.close()


def test_engine_plugin_through_the_plugin_manager() -> None:
    plugin = ExtismEnginePlugin()
    name = register_plugin(plugin, name="test.extism")
    try:
        assert engine_for("extism") is plugin
    finally:
        unregister_plugin(name)


def test_importing_the_engine_does_not_load_extism() -> None:
    code = (
        "import sys, reflow._sandbox._extism_engine, reflow._loader._plugins as p; "
        "p.ExtismEnginePlugin(); "
        "assert 'extism' not in sys.modules and 'extism_sys' not in sys.modules"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
