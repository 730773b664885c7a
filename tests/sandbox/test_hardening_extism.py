"""Issue #8, extism engine: the tick time limit bounds the guest's own time (host calls never
re-arm it; one node's deadline never stops another), memory and trap failures name the node,
the cap and the cause, engines write only under reflow's cache dir, and a bad path or bytes
is a clear error. Hostile guests are hand-written WAT.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from hypothesis import given, settings
from hypothesis import strategies as st
from sandbox_helpers import TickCtx

from reflow import Actor, Message, Network
from reflow._errors import (
    CapabilityError,
    GuestABIError,
    GuestMemoryError,
    GuestOutputError,
    GuestTimeout,
    GuestTrap,
    SandboxError,
)
from reflow._sandbox._extism_engine import ExtismModule
from reflow._sandbox._guest_host import GuestGrants, GuestLimits

M = Message
MIB = 1024 * 1024

_IMPORTS = """
  (import "extism:host/env" "input_length" (func $input_length (result i64)))
  (import "extism:host/env" "input_load_u8" (func $input_load_u8 (param i64) (result i32)))
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "free" (func $free (param i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "length" (func $length (param i64) (result i64)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (import "extism:host/env" "config_get" (func $config_get (param i64) (result i64)))
  (import "extism:host/env" "var_get" (func $var_get (param i64) (result i64)))
  (import "extism:host/env" "log_info" (func $log_info (param i64)))
  (import "extism:host/env" "http_request" (func $http (param i64 i64) (result i64)))
  (import "extism:host/user" "__send_output" (func $send (param i64)))
  (import "extism:host/user" "__get_state" (func $get_state (param i64) (result i64)))
  (import "extism:host/user" "__set_state" (func $set_state (param i64 i64)))
"""

#: Guests for the time, memory and trap rows. Memory: "k" at 0, "{}" at 8, "1" at 16,
#: '{"out":1}' at 24, '{"out":' at 40 (unterminated JSON).
GUEST_WAT = f"""(module
  {_IMPORTS}
  (memory (export "memory") 1)
  (table 2 funcref)
  (type $t (func (result i32)))
  (data (i32.const 0) "k")
  (data (i32.const 8) "{{}}")
  (data (i32.const 16) "1")
  (data (i32.const 24) "{{\\"out\\":1}}")
  (data (i32.const 40) "{{\\"out\\":")
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
  (func (export "noop") (result i32) (i32.const 0))
  ;; loops over one cheap host call, forever
  (func (export "loop_get_state") (result i32)
    (local $k i64) (local.set $k (call $kernel (i32.const 0) (i32.const 1)))
    (loop $l (call $free (call $get_state (local.get $k))) (br $l)) (i32.const 0))
  (func (export "loop_set_state") (result i32)
    (local $k i64) (local $v i64)
    (local.set $k (call $kernel (i32.const 0) (i32.const 1)))
    (local.set $v (call $kernel (i32.const 16) (i32.const 1)))
    (loop $l (call $set_state (local.get $k) (local.get $v)) (br $l)) (i32.const 0))
  (func (export "loop_send_empty") (result i32)
    (local $v i64) (local.set $v (call $kernel (i32.const 8) (i32.const 2)))
    (loop $l (call $send (local.get $v)) (br $l)) (i32.const 0))
  ;; (config_get and var_get free the key they are given)
  (func (export "loop_config") (result i32)
    (loop $l (drop (call $config_get (call $kernel (i32.const 0) (i32.const 1)))) (br $l))
    (i32.const 0))
  (func (export "loop_var") (result i32)
    (loop $l (drop (call $var_get (call $kernel (i32.const 0) (i32.const 1)))) (br $l))
    (i32.const 0))
  (func (export "loop_log") (result i32)
    (local $k i64) (local.set $k (call $kernel (i32.const 0) (i32.const 1)))
    (loop $l (call $log_info (local.get $k)) (br $l)) (i32.const 0))
  (func (export "loop_alloc") (result i32)
    (loop $l (call $free (call $alloc (i64.const 64))) (br $l)) (i32.const 0))
  (func (export "spin") (result i32) (loop $l (br $l)) (i32.const 0))
  ;; a host call that fails (bad JSON), then spins: the failure stops the guest at once
  (func (export "bad_send_then_spin") (result i32)
    (call $send (call $kernel (i32.const 40) (i32.const 7)))
    (loop $l (br $l)) (i32.const 0))
  ;; sends {{"out": 1}} eight times, then returns
  (func (export "send8") (result i32)
    (local $i i32) (local $v i64)
    (local.set $v (call $kernel (i32.const 24) (i32.const 9)))
    (block $d (loop $l
      (br_if $d (i32.ge_u (local.get $i) (i32.const 8)))
      (call $send (local.get $v))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (call $output_set (call $kernel (i32.const 16) (i32.const 1)) (i64.const 1))
    (i32.const 0))
  ;; memory
  (func (export "alloc_3mb") (result i32) (drop (call $alloc (i64.const 3000000))) (i32.const 0))
  (func (export "alloc_loop") (result i32)
    (loop $l (drop (call $alloc (i64.const 65536))) (br $l)) (i32.const 0))
  (func (export "grow_loop") (result i32)
    (loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable)
  (func (export "fetch") (result i32)  ;; the input is an Extism HTTP request
    (local $n i64) (local $h i64) (local $i i64)
    (local.set $n (call $input_length))
    (local.set $h (call $alloc (local.get $n)))
    (block $d (loop $l
      (br_if $d (i64.ge_u (local.get $i) (local.get $n)))
      (call $store_u8 (i64.add (local.get $h) (local.get $i))
                      (call $input_load_u8 (local.get $i)))
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br $l)))
    (drop (call $http (local.get $h) (i64.const 0)))
    (i32.const 0))
  ;; traps
  (func (export "t_unreachable") (result i32) unreachable)
  (func (export "t_div0") (result i32)
    (i32.div_s (i32.const 1) (i32.sub (i32.const 1) (i32.const 1))))
  (func (export "t_oob") (result i32) (i32.load (i32.const 1000000)))
  (func $rec (export "t_stack") (result i32) (i32.add (call $rec) (i32.const 1)))
  (func (export "t_null_call") (result i32) (call_indirect (type $t) (i32.const 1)))
  (func (export "t_conversion") (result i32) (i32.trunc_f64_s (f64.const 1e300)))
)"""


@pytest.fixture(scope="module")
def guest() -> ExtismModule:
    return ExtismModule(bytes(wasmtime.wat2wasm(GUEST_WAT)), name="hostile")


def _node(
    module: ExtismModule,
    export: str,
    limits: GuestLimits,
    grants: GuestGrants | None = None,
    output: str = "string",
) -> Any:
    return module.function_actor(export, limits=limits, grants=grants, output=output).open_node(
        f"n-{export}", {}
    )


# -- row 1: the tick limit bounds the guest's own time ----------------------------------------

HOST_CALL_LOOPS = [
    "loop_get_state",
    "loop_set_state",
    "loop_send_empty",
    "loop_config",
    "loop_var",
    "loop_log",
    "loop_alloc",
    "spin",
]


@pytest.mark.parametrize("export", HOST_CALL_LOOPS)
def test_a_guest_looping_over_cheap_host_calls_is_stopped_at_the_limit(
    guest: ExtismModule, export: str
) -> None:
    limits = GuestLimits(tick_ms=250)
    node = _node(guest, export, limits)
    try:
        t0 = time.monotonic()
        with pytest.raises(GuestTimeout) as info:
            node.run(TickCtx({"in": M.string("x")}))
        elapsed = time.monotonic() - t0
        assert elapsed < 2.0, f"{export}: stopped after {elapsed:.2f} s, limit 250 ms"
        assert "time limit of 250 ms" in str(info.value)
        assert info.value.node == f"n-{export}" and info.value.limit_ms == 250
    finally:
        node.close()
    # only that tick failed: the module's other nodes (and this one's next tick) still run
    other = _node(guest, "noop", limits)
    try:
        other.run(ctx := TickCtx({"in": M.string("x")}))
        assert ctx.error is None and ctx.outputs == [("out", M.string(""))]
    finally:
        other.close()


def test_one_nodes_deadline_does_not_stop_another_node_of_the_same_plugin(
    guest: ExtismModule,
) -> None:
    """Node A spins into its 300 ms deadline while node B of the same template is inside a
    tick (parked in a send, which is not its time). A's cancel must reach only A."""
    limits = GuestLimits(tick_ms=300)
    actor = guest.function_actor("send8", limits=limits, output="string")
    spinner = guest.function_actor("spin", limits=limits).open_node("a", {})
    worker = actor.open_node("b", {})

    class SlowCtx(TickCtx):
        def send(self, messages: dict[str, Message]) -> None:
            time.sleep(0.1)  # backpressure: waiting for room downstream
            super().send(messages)

    errors: list[BaseException] = []

    def spin() -> None:
        try:
            spinner.run(TickCtx({"in": M.string("x")}))
        except BaseException as exc:
            errors.append(exc)

    try:
        t = threading.Thread(target=spin)
        t.start()
        time.sleep(0.05)
        worker.run(ctx := SlowCtx({"in": M.string("x")}))  # ~0.8 s of parked sends
        t.join(5)
        assert len(errors) == 1 and isinstance(errors[0], GuestTimeout)
        assert ctx.error is None, ctx.error
        assert ctx.outputs == [("out", M.string("1"))] and len(ctx.sent) == 8
    finally:
        spinner.close()
        worker.close()


def test_a_failed_host_call_stops_the_guest_at_once(guest: ExtismModule) -> None:
    node = _node(guest, "bad_send_then_spin", GuestLimits(tick_ms=20_000))
    try:
        t0 = time.monotonic()
        with pytest.raises(GuestOutputError, match="not valid UTF-8 JSON"):
            node.run(TickCtx({"in": M.string("x")}))
        assert time.monotonic() - t0 < 2.0  # not the 20 s limit
    finally:
        node.close()


class SlowSink(Actor):
    component = "test/slow-sink"
    inports = ["in"]
    outports: list[str] = []

    def run(self, ctx: Any) -> None:
        time.sleep(0.1)
        ctx.done({})


def test_waiting_for_room_downstream_is_not_the_guests_time(guest: ExtismModule) -> None:
    """Eight sends into a consumer that takes 100 ms each, over an edge of capacity 1: the
    tick takes ~0.8 s of wall time but little of its own, so a 300 ms limit holds."""
    module = ExtismModule(guest.wasm, name="sender")
    module_actor = module.function_actor("send8", limits=GuestLimits(tick_ms=300))
    module_actor.outports = ["out"]
    net = Network()
    net.register_actor("sender", module_actor)
    net.register_actor("test/slow-sink", SlowSink())
    net.add_node("s", "sender")
    net.add_node("sink", "test/slow-sink")
    net.add_connection("s", "out", "sink", "in", capacity=1)
    got = net.collect("s", "out")
    net.add_initial("s", "in", M.string("go"))
    t0 = time.monotonic()
    summary = net.run(timeout=30)
    assert summary.ok, summary.failures
    assert time.monotonic() - t0 > 0.5
    assert len(got) == 9  # eight sends and the result
    net.shutdown()


# -- row 3: memory and traps name the node, the cap and the cause ------------------------------


class _Big(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"x" * (3 * MIB)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def big_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Big)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


CAP = GuestLimits(memory_bytes=2 * MIB, tick_ms=5000)
# id, export, input, fragments
MEMORY_ROWS = [
    (
        "input_past_cap",
        "noop",
        M.bytes(b"x" * (3 * MIB)),
        ["does not fit", "memory cap of 2097152 bytes (32 pages)", "3145728 bytes"],
    ),
    ("one_big_alloc", "alloc_3mb", M.string("x"), ["cap of 2097152 bytes (32 pages)"]),
    ("alloc_loop", "alloc_loop", M.string("x"), ["cap of 2097152 bytes (32 pages)"]),
    ("memory_grow_loop", "grow_loop", M.string("x"), ["cap of 2097152 bytes (32 pages)"]),
]


@pytest.mark.parametrize(
    ("export", "given", "fragments"), [r[1:] for r in MEMORY_ROWS], ids=[r[0] for r in MEMORY_ROWS]
)
def test_memory_past_the_cap_is_a_guest_memory_error(
    guest: ExtismModule, export: str, given: Message, fragments: list[str]
) -> None:
    node = _node(guest, export, CAP, output="bytes")
    try:
        with pytest.raises(GuestMemoryError) as info:
            node.run(TickCtx({"in": given}))
        for fragment in fragments:
            assert fragment in str(info.value)
        assert "failed to allocate extism memory" not in str(info.value).split("(extism:")[0]
        assert info.value.limit == 2 * MIB and info.value.node == f"n-{export}"
    finally:
        node.close()
    survivor = _node(guest, "noop", CAP)  # the module's other nodes are unharmed
    try:
        survivor.run(ctx := TickCtx({"in": M.string("x")}))
        assert ctx.error is None
    finally:
        survivor.close()


def test_a_host_result_past_the_cap_is_a_guest_memory_error(
    guest: ExtismModule, big_server: str
) -> None:
    grants = GuestGrants(http_hosts=(big_server,), http_max_response=8 * MIB)
    node = _node(guest, "fetch", CAP, grants=grants, output="bytes")
    request = json.dumps({"url": f"http://{big_server}/big", "method": "GET"})
    try:
        with pytest.raises(GuestMemoryError) as info:
            node.run(TickCtx({"in": M.string(request)}))
        assert "http_request could not hand 3145728 bytes" in str(info.value)
        assert "2097152 bytes (32 pages)" in str(info.value)
    finally:
        node.close()


# id, export, trap code, fragment
TRAP_ROWS = [
    ("unreachable", "t_unreachable", "UNREACHABLE", "wasm `unreachable` executed"),
    ("divide_by_zero", "t_div0", "INTEGER_DIVISION_BY_ZERO", "integer divide by zero"),
    ("out_of_bounds", "t_oob", "MEMORY_OUT_OF_BOUNDS", "out-of-bounds memory access"),
    ("stack_overflow", "t_stack", "STACK_OVERFLOW", "call stack exhausted"),
    ("null_table_entry", "t_null_call", "BAD_SIGNATURE", "indirect call"),
    (
        "bad_conversion",
        "t_conversion",
        "BAD_CONVERSION_TO_INTEGER",
        "invalid float-to-integer conversion",
    ),
]


@pytest.mark.parametrize(
    ("export", "code", "fragment"), [r[1:] for r in TRAP_ROWS], ids=[r[0] for r in TRAP_ROWS]
)
def test_a_trap_names_its_cause(guest: ExtismModule, export: str, code: str, fragment: str) -> None:
    node = _node(guest, export, GuestLimits(tick_ms=5000))
    try:
        with pytest.raises(GuestTrap) as info:
            node.run(TickCtx({"in": M.string("x")}))
        text = str(info.value)
        assert type(info.value) is GuestTrap and info.value.trap_code == code
        assert fragment in text and f"guest trapped in {export}" in text
        assert f"node 'n-{export}'" in text
        assert not text.rstrip().endswith("wasm backtrace:")
    finally:
        node.close()


# -- row 18: bad paths and bytes -----------------------------------------------------------------

VALID = bytes(
    wasmtime.wat2wasm(
        '(module (memory (export "memory") 1) (func (export "f") (result i32) (i32.const 0)))'
    )
)


def _bad_path(tmp: Path, case: str) -> Any:
    target = tmp / f"{case}.wasm"
    if case == "missing":
        return target
    if case == "directory":
        target.mkdir()
        return target
    data = {
        "empty": b"",
        "text": b"not wasm at all\n",
        "truncated": VALID[: len(VALID) - 5],
        "header_only": VALID[:6],
        "component": b"\0asm\x0d\x00\x01\x00",
        "bad_section": b"\0asm\x01\x00\x00\x00\x63\x01\x00",
    }[case]
    target.write_bytes(data)
    return str(target) if case == "text" else target


BAD_PATHS = [
    ("missing", "does not exist"),
    ("directory", "is not a regular file"),
    ("empty", "is empty"),
    ("text", "is not WebAssembly"),
    ("truncated", "truncated"),
    ("header_only", "truncated"),
    ("component", "is a WebAssembly component"),
    ("bad_section", "unknown section id 99"),
]


@pytest.mark.parametrize(("case", "fragment"), BAD_PATHS, ids=[r[0] for r in BAD_PATHS])
def test_a_bad_path_or_bytes_is_a_clear_error(tmp_path: Path, case: str, fragment: str) -> None:
    path = _bad_path(tmp_path, case)
    with pytest.raises(GuestABIError) as info:
        ExtismModule.load(path)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)
    assert "expected a WebAssembly" in str(info.value)


def test_every_truncation_of_a_module_is_refused_cleanly() -> None:
    """A cut at a section boundary can leave a valid (smaller) module; any other cut is a
    GuestABIError, never another exception."""
    wasm = bytes(wasmtime.wat2wasm(GUEST_WAT))
    refused = 0
    for n in range(len(wasm)):
        try:
            ExtismModule(wasm[:n], name="cut")
        except GuestABIError:
            refused += 1
    assert refused >= len(wasm) - 12


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_after_the_header_are_refused_cleanly(tail: bytes) -> None:
    with contextlib.suppress(SandboxError):
        ExtismModule(b"\0asm\x01\x00\x00\x00" + tail, name="fuzz")


@pytest.mark.parametrize("value", [12, None, ["wasm"]], ids=["int", "none", "list"])
def test_not_bytes_is_a_clear_error(value: Any) -> None:
    with pytest.raises(GuestABIError, match="expected the bytes of a WebAssembly module"):
        ExtismModule(value, name="odd")


# -- row 4: engines write only under reflow's cache dir ---------------------------------------

_CHILD = textwrap.dedent("""
    import os, sys, wasmtime
    from pathlib import Path
    from reflow import load_pack, Message
    from reflow._errors import PackError
    from reflow._loader._trust import TrustStore
    from reflow.abi._bundle import artifact_entry, build_bundle
    from reflow.abi._manifest import PORTABLE_TRIPLE, PackManifest, TemplateSpec
    from reflow.abi._signing import generate_key, sign_manifest, write_keypair
    from reflow.abi._version import pack_abi_version

    work = Path(sys.argv[1])
    wasm = bytes(wasmtime.wat2wasm(sys.argv[2]))
    key = generate_key()
    _, pub, _ = write_keypair(work / "keys" / "publisher", key)
    trust = TrustStore(work / "trust")
    trust.add(pub)
    major, minor = pack_abi_version().split(".")

    def pack(name, inports, key_=key):
        path = "artifacts/" + PORTABLE_TRIPLE + "/fn.wasm"
        art = artifact_entry("fn", PORTABLE_TRIPLE, "extism", path, wasm)
        spec = TemplateSpec(id=name + "/echo", entry="fn", inports=inports, outports=("out",),
                            engine="extism", config_schema={"x-extism": {"export": "echo"}})
        m = PackManifest(name=name, version="1.0.0", abi=f"{major}.{minor}", templates=(spec,),
                         artifacts=(art,))
        mb = m.to_toml()
        out = work / (name.replace("/", "-") + ".rflpack")
        out.write_bytes(build_bundle(mb, {path: wasm}, [sign_manifest(mb, key_)]))
        return out

    good = load_pack(pack("t/good", ("in",)), trust=trust)
    refusals = 0
    for bad in (pack("t/untrusted", ("in",), generate_key()), pack("t/ports", ("a", "b"))):
        try:
            load_pack(bad, trust=trust)
        except PackError as exc:
            refusals += 1
            print("refused:", type(exc).__name__, exc)
    print("refusals", refusals)
""")

ECHO_WAT = f"""(module {_IMPORTS}
  (memory (export "memory") 1)
  (func (export "echo") (result i32) (i32.const 0)))"""


@pytest.mark.slow
def test_loading_extism_packs_writes_only_under_reflows_cache(tmp_path: Path) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REFLOW_", "XDG_", "EXTISM_"))}
    env["HOME"] = str(home)
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(work), ECHO_WAT],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "refusals 2" in proc.stdout, proc.stdout
    assert "UntrustedKeyError" in proc.stdout or "PackSignatureError" in proc.stdout
    cache = home / ".cache" / "reflow"
    # the one file allowed elsewhere: the per-user secret that authenticates the cache's
    # records, created once the good pack was verified in full (a refused one creates nothing)
    secret = home / ".config" / "reflow" / "cache.key"
    outside = [p for p in home.rglob("*") if p.is_file() and cache not in p.parents and p != secret]
    assert outside == [], f"written outside reflow's cache: {outside}"
    assert any((cache / "extism" / "wasmtime").rglob("*")), "the wasmtime cache is reflow's"
    assert not (home / ".cache" / "wasmtime").exists()


def test_the_extism_cache_dir_follows_reflow_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "rc"))
    module = ExtismModule(VALID, name="cache-probe")
    node = module.function_actor("f").open_node("c", {})
    node.close()
    assert os.environ["EXTISM_CACHE_CONFIG"] == str(
        tmp_path / "rc" / "extism" / "wasmtime-cache.toml"
    )
    assert (tmp_path / "rc" / "extism" / "wasmtime").is_dir()


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("which", ["root", "wasmtime", "config"])
def test_an_extism_cache_others_can_write_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, which: str
) -> None:
    """wasmtime loads compiled code from extism's cache as it finds it: a cache directory (or
    its configuration) that others can write is not used; the plugin still compiles and runs."""
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "rc"))
    monkeypatch.setenv("EXTISM_CACHE_CONFIG", "unset")
    root = tmp_path / "rc" / "extism"
    ExtismModule(VALID, name="warm").function_actor("f").open_node("w", {}).close()
    target = {"root": root, "wasmtime": root / "wasmtime", "config": root / "wasmtime-cache.toml"}[
        which
    ]
    target.chmod(target.stat().st_mode | 0o002)
    try:
        with caplog.at_level("WARNING", logger="reflow"):
            node = ExtismModule(VALID, name="shared").function_actor("f").open_node("c", {})
            node.close()
        assert os.environ["EXTISM_CACHE_CONFIG"] == ""
        assert "compiling without a cache" in caplog.text and "writable by others" in caplog.text
    finally:
        target.chmod(target.stat().st_mode & ~0o002)


def test_wasi_without_the_grant_names_the_import() -> None:
    wasm = bytes(
        wasmtime.wat2wasm(
            '(module (import "wasi_snapshot_preview1" "fd_write" '
            '(func (param i32 i32 i32 i32) (result i32))) (memory (export "memory") 1))'
        )
    )
    with pytest.raises(CapabilityError) as info:
        ExtismModule(wasm, name="w")
    assert "wasi_snapshot_preview1.fd_write" in str(info.value)
    assert isinstance(info.value, SandboxError) and info.value.capability == "wasi"
