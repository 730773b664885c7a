"""Guest resource limits (issue 8, row 2): every resource a guest controls has a GuestLimits
field, and passing it is a GuestLimitError naming the node (or module), the resource, the
value and the limit, within bounded time and host memory.

The guests are written by hand as WAT (``wasmtime.wat2wasm``) and frames as bytes; memory
bounds are measured with psutil in a child process (peak RSS growth < 2x the configured
limit + 150 MiB)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from sandbox_helpers import TickCtx

from reflow import (
    GuestGrants,
    GuestLimitError,
    GuestLimits,
    InvalidLimitsError,
    Message,
    ReflowError,
)
from reflow._errors import GuestABIError
from reflow._sandbox._guest_host import GuestNodeHost, GuestTemplate, parse_describe
from reflow._sandbox._wasm_engine import WasmEngine

MIB = 1024 * 1024
HERE = Path(__file__).parent
DESCRIBE = b'{"abi":"1.0","templates":[{"id":"limits/x","inports":["in"],"outports":["out"]}]}'
DONE_EMPTY = f"(i64.const {(3 << 32) | 3000})"  # a 3-byte done frame at 3000
POOL_AT = 65536


def _esc(raw: bytes) -> str:
    return "".join(f"\\{b:02x}" for b in raw)


def _slice(ptr: int, n: int) -> str:
    return f"(i64.const {(n << 32) | ptr})"


def wat_guest(
    tick: str = DONE_EMPTY,
    *,
    imports: str = "",
    extra: str = "",
    memory: int = 1,
    data: tuple[tuple[int, bytes], ...] = (),
    describe: bytes = DESCRIBE,
    describe_body: str | None = None,
) -> bytes:
    """A hand-written guest that follows guest ABI 1.0, with ``tick`` as reflow_tick's body.
    The describe document lies in pages of its own after the ``memory`` pages asked for."""
    segments = "\n".join(f'(data (i32.const {at}) "{_esc(raw)}")' for at, raw in data)
    desc_at = memory * 65536
    return wasmtime.wat2wasm(f"""(module
      {imports}
      (memory (export "memory") {memory + _pages(len(describe))})
      (data (i32.const {desc_at}) "{_esc(describe)}")
      (data (i32.const 3000) "\\00\\00\\00")
      {segments}
      {extra}
      (func (export "reflow_abi_version") (result i32) (i32.const 0x10000))
      (func (export "reflow_alloc") (param i32) (result i32) (i32.const 4096))
      (func (export "reflow_describe") (result i64)
        {describe_body or _slice(desc_at, len(describe))})
      (func (export "reflow_open") (param i32 i32) (result i64) {DONE_EMPTY})
      (func (export "reflow_tick") (param i32 i32) (result i64) {tick}))""")


def _pages(n: int) -> int:
    return n // 65536 + 1


# -- pools ------------------------------------------------------------------------------------

UPSERT = '(import "reflow" "pool_upsert" (func $up (param i32 i32 i32 i32 i32 i32) (result i32)))'
# A counter written into the first 3 bytes of the id, 7 bits a byte (so it stays UTF-8).
KEY_COUNTER = """
  (global $c (mut i32) (i32.const 0))
  (func $key (param $at i32)
    (i32.store (local.get $at)
      (i32.or (i32.or
        (i32.and (global.get $c) (i32.const 0x7f))
        (i32.shl (i32.and (i32.shr_u (global.get $c) (i32.const 7)) (i32.const 0x7f))
                 (i32.const 8)))
        (i32.shl (i32.and (i32.shr_u (global.get $c) (i32.const 14)) (i32.const 0x7f))
                 (i32.const 16))))
    (global.set $c (i32.add (global.get $c) (i32.const 1))))
"""


def pool_guest(pool_len: int, key_len: int, value: bytes, value_len: int, per_tick: int) -> bytes:
    """Each tick upserts ``per_tick`` entries under new ids of ``key_len`` bytes into a pool
    named by ``pool_len`` NUL bytes; the value is ``value`` followed by zeros up to
    ``value_len`` bytes."""
    key_at = POOL_AT + pool_len + 16
    val_at = key_at + key_len + 16
    tick = f"""(local $i i32)
      (loop $l
        (call $key (i32.const {key_at}))
        (drop (call $up (i32.const {POOL_AT}) (i32.const {pool_len}) (i32.const {key_at})
                        (i32.const {key_len}) (i32.const {val_at}) (i32.const {value_len})))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (i32.const {per_tick}))))
      {DONE_EMPTY}"""
    return wat_guest(
        tick,
        imports=UPSERT,
        extra=KEY_COUNTER,
        memory=_pages(val_at + value_len),
        data=((val_at, value),),
    )


def _bytes_value(n: int) -> tuple[bytes, int]:
    """A Bytes message of ``n`` payload bytes: its header (the payload is zeros)."""
    return b"\x06" + struct.pack("<I", n), 5 + n


def _json_value(kind: int, text: bytes) -> tuple[bytes, int]:
    raw = bytes([kind]) + struct.pack("<I", len(text)) + text
    return raw, len(raw)


DICTS = b"[" + b",".join([b"{}"] * 100_000) + b"]"  # 300 KB of text, ~7 MB once parsed

# id, (pool_len, key_len, value, per_tick), limits, failing tick, resource, value, fragment
POOL_ROWS: list[
    tuple[str, tuple[int, int, tuple[bytes, int], int], dict[str, Any], int, str, int | None, str]
] = [
    (
        "key_of_1_mib",
        (1, MIB, _bytes_value(8), 1),
        {},
        0,
        "pool_key_bytes",
        MIB,
        "bytes in the pool id: 1048576 exceeds the limit GuestLimits.pool_key_bytes=1024",
    ),
    (
        "key_just_over",
        (1, 65, _bytes_value(8), 1),
        {"pool_key_bytes": 64},
        0,
        "pool_key_bytes",
        65,
        "pool_key_bytes=64",
    ),
    (
        "pool_name_over",
        (5000, 4, _bytes_value(8), 1),
        {},
        0,
        "pool_key_bytes",
        5000,
        "bytes in the pool name: 5000",
    ),
    (
        "value_over",
        (1, 4, _bytes_value(2 * MIB), 1),
        {},
        0,
        "pool_value_bytes",
        2 * MIB + 5,
        "GuestLimits.pool_value_bytes=1048576",
    ),
    (
        "entries_over",
        (1, 8, _bytes_value(8), 100),
        {"pool_entries": 250},
        2,
        "pool_entries",
        251,
        "entries in the node's pools: 251 exceeds the limit GuestLimits.pool_entries=250",
    ),
    (
        "bytes_over",
        (1, 8, _bytes_value(64 * 1024), 8),
        {"pool_bytes": MIB},
        1,
        "pool_bytes",
        None,
        "bytes in the node's pools",
    ),
    (
        "json_is_charged_parsed",
        (1, 8, _json_value(9, DICTS), 1),
        {"pool_bytes": 4 * MIB},
        0,
        "pool_bytes",
        None,
        "GuestLimits.pool_bytes=4194304",
    ),
    (
        "non_ascii_string_is_charged_wide",
        (1, 8, _json_value(5, "\u00e9".encode() * 200_000), 3),
        {"pool_bytes": 4 * MIB},
        0,
        "pool_bytes",
        None,
        "GuestLimits.pool_bytes=4194304",
    ),
]


@pytest.fixture(scope="module")
def eng() -> Any:
    engine = WasmEngine(cache_dir=False)
    yield engine
    engine.close()


@pytest.mark.parametrize(
    ("shape", "limits", "failing", "resource", "value", "fragment"),
    [r[1:] for r in POOL_ROWS],
    ids=[r[0] for r in POOL_ROWS],
)
def test_pool_caps_refuse_the_write_and_fail_only_that_tick(
    eng: WasmEngine,
    shape: Any,
    limits: dict[str, Any],
    failing: int,
    resource: str,
    value: int | None,
    fragment: str,
) -> None:
    pool_len, key_len, (head, value_len), per_tick = shape
    lim = GuestLimits(**limits)
    node = (
        eng.load(pool_guest(pool_len, key_len, head, value_len, per_tick))
        .actor(limits=lim)
        .open_node("pooler", {})
    )
    pools: dict[str, dict[str, Any]] = {}
    for tick in range(failing):
        ctx = TickCtx({"in": Message.integer(tick)}, pools=pools, node="pooler")
        node.run(ctx)
        assert ctx.error is None
    before = {p: dict(v) for p, v in pools.items()}
    started = time.monotonic()
    with pytest.raises(GuestLimitError) as info:
        node.run(TickCtx({"in": Message.integer(0)}, pools=pools, node="pooler"))
    assert time.monotonic() - started < 5
    err = info.value
    assert fragment in str(err), str(err)
    assert (err.resource, err.node, err.component) == (resource, "pooler", "limits/x")
    assert err.limit == getattr(lim, resource)
    if value is not None:
        assert err.value == value
    assert err.value is not None and err.value > err.limit
    assert "'pooler'" in str(err) and f"GuestLimits.{resource}" in str(err)
    # The refused write is not stored; what earlier writes of that tick stored stays.
    for p, entries in before.items():
        assert set(entries) <= set(pools[p])
    count = sum(len(v) for v in pools.values())
    assert count <= lim.pool_entries
    host = node._inst.host  # type: ignore[attr-defined]
    assert host._pool_size <= lim.pool_bytes and host._pool_entries == count
    node.close()


def test_pool_room_comes_back_after_remove_and_clear() -> None:
    """The accounting follows pool_remove/pool_clear, and charges entries a pool already
    held (filled before the node ran) once it is touched."""
    host = GuestNodeHost(
        "n",
        GuestTemplate(id="t", inports=(), outports=()),
        GuestLimits(pool_entries=3),
        GuestGrants(),
    )
    value = b"\x03" + struct.pack("<q", 7)
    ctx = TickCtx(pools={"p": {"old": Message.integer(1)}})
    host.begin(ctx)
    host.host_pool_upsert(b"p", b"a", value)
    host.host_pool_upsert(b"p", b"a", value)  # an update is not a new entry
    host.host_pool_upsert(b"p", b"b", value)
    with pytest.raises(GuestLimitError, match="pool_entries=3"):
        host.host_pool_upsert(b"p", b"c", value)
    assert sorted(ctx.pools["p"]) == ["a", "b", "old"]
    assert host.host_pool_remove(b"p", b"a") == 1
    host.host_pool_upsert(b"q", b"c", value)
    host.host_pool_clear(b"p")
    for k in (b"x", b"y"):
        host.host_pool_upsert(b"p", k, value)
    assert host._pool_entries == 3
    host.end()


def test_cycling_pool_names_is_bounded() -> None:
    """Upsert + remove under ever new pool names (1 KiB each): an emptied pool stays (as in
    any ctx) and keeps its name charged until pool_clear, so the names are bounded by
    pool_bytes; a refused write to a new name leaves no accounting behind."""
    limit = 64 * 1024
    host = GuestNodeHost(
        "n",
        GuestTemplate(id="t", inports=(), outports=()),
        GuestLimits(pool_bytes=limit),
        GuestGrants(),
    )
    ctx = TickCtx()
    host.begin(ctx)
    refused = 0
    for i in range(2000):
        name = str(i).encode().rjust(1024, b"p")
        try:
            host.host_pool_upsert(name, b"k", b"\x00")
        except GuestLimitError as exc:
            assert exc.resource == "pool_bytes" and exc.limit == limit
            refused += 1
            continue
        assert host.host_pool_remove(name, b"k") == 1
    assert refused > 1900
    assert len(ctx.pools) == len(host._pools) < limit // 1024
    assert host._pool_entries == 0 and host._pool_size <= limit
    for name in list(ctx.pools):  # pool_clear gives the room back
        host.host_pool_clear(name.encode())
    assert host._pool_size == 0 and not host._pools
    host.host_pool_upsert(b"p" * 1024, b"k", b"\x00")
    host.end()


# -- packets per tick -------------------------------------------------------------------------

EMIT = '(import "reflow" "emit" (func $emit (param i32 i32) (result i32)))'
ONE_PACKET = b"\x01\x00" + b"\x03out" + b"\x03" + struct.pack("<q", 1)  # entries: out=1
EMIT_AT = 8192


def _emit_loop(times: int) -> str:
    return f"""(local $i i32)
      (loop $l
        (drop (call $emit (i32.const {EMIT_AT}) (i32.const {len(ONE_PACKET)})))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $i) (i32.const {times}))))
      {DONE_EMPTY}"""


def _many_outputs(n: int) -> bytes:
    return b"\x00" + struct.pack("<H", n) + b"\x03out\x00" * n  # done, n x out=Null


#: A done result frame of one Integer output: what the hot path decodes in place.
ONE_INTEGER = b"\x00" + struct.pack("<H", 1) + b"\x03out\x03" + struct.pack("<q", 7)


PACKET_ROWS = [
    (
        "emitted_mid_tick",
        {"tick": _emit_loop(50), "imports": EMIT, "data": ((EMIT_AT, ONE_PACKET),)},
        20,
        21,
    ),
    # emits exactly the cap, then returns one more packet through the hot single-output path
    (
        "emitted_then_returned",
        {
            "tick": _emit_loop(20).replace(DONE_EMPTY, _slice(EMIT_AT + 512, len(ONE_INTEGER))),
            "imports": EMIT,
            "data": ((EMIT_AT, ONE_PACKET), (EMIT_AT + 512, ONE_INTEGER)),
        },
        20,
        21,
    ),
    (
        "result_frame",
        {"tick": _slice(EMIT_AT, len(_many_outputs(30))), "data": ((EMIT_AT, _many_outputs(30)),)},
        20,
        30,
    ),
    (
        "result_frame_of_max_entries",
        {
            "tick": _slice(EMIT_AT, len(_many_outputs(65535))),
            "memory": 8,
            "data": ((EMIT_AT, _many_outputs(65535)),),
        },
        10_000,
        65535,
    ),
]


@pytest.mark.parametrize(
    ("kwargs", "limit", "value"), [r[1:] for r in PACKET_ROWS], ids=[r[0] for r in PACKET_ROWS]
)
def test_packets_per_tick_are_capped(
    eng: WasmEngine, kwargs: dict[str, Any], limit: int, value: int
) -> None:
    lim = GuestLimits(output_packets=limit)
    node = eng.load(wat_guest(**kwargs)).actor(limits=lim).open_node("chatty", {})
    for _ in range(2):  # fails its own tick, every time, with a fresh count
        ctx = TickCtx({"in": Message.integer(1)}, node="chatty")
        with pytest.raises(GuestLimitError) as info:
            node.run(ctx)
        err = info.value
        assert (err.resource, err.value, err.limit, err.node) == (
            "output_packets",
            value,
            limit,
            "chatty",
        )
        assert f"GuestLimits.output_packets={limit}" in str(err)
        assert len(ctx.sent) <= limit
    node.close()


def test_packets_under_the_cap_are_delivered(eng: WasmEngine) -> None:
    module = eng.load(wat_guest(_emit_loop(20), imports=EMIT, data=((EMIT_AT, ONE_PACKET),)))
    node = module.actor(limits=GuestLimits(output_packets=20)).open_node("ok", {})
    for _ in range(3):  # the count is per tick
        ctx = TickCtx({"in": Message.integer(1)})
        node.run(ctx)
        assert len(ctx.sent) == 20 and ctx.error is None
    node.close()


# -- store contents: tables, instances, memories -----------------------------------------------

TABLE_GROW = (
    """(local $n i32)
  (block $full
    (loop $l
      (br_if $full (i32.eq (table.grow $t (ref.null func) (i32.const 4096)) (i32.const -1)))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $n) (i32.const 100000)))))
  (if (i32.gt_u (table.size $t) (i32.const LIMIT)) (then unreachable))
  """
    + DONE_EMPTY
)


def test_table_grow_stops_at_table_elements(eng: WasmEngine) -> None:
    """table.grow past the cap returns -1 to the guest (WebAssembly's answer, as for
    memory.grow): the table never holds more than ``table_elements``."""
    wasm = wat_guest(TABLE_GROW.replace("LIMIT", "10000"), extra="(table $t 1 funcref)")
    node = eng.load(wasm).actor(limits=GuestLimits(table_elements=10_000)).open_node("t", {})
    for _ in range(2):
        ctx = TickCtx({"in": Message.integer(1)})
        node.run(ctx)  # unreachable would mean the table passed 10 000 elements
        assert ctx.error is None
    node.close()


STORE_ROWS = [
    (
        "table_minimum",
        "(table 100000 funcref)",
        {"table_elements": 1000},
        "table_elements",
        100000,
        "needs 100000 table elements but GuestLimits.table_elements=1000",
    ),
    (
        "too_many_tables",
        "(table 1 funcref) (table 1 funcref)",
        {"tables": 1},
        "tables",
        2,
        "needs 2 tables but GuestLimits.tables=1",
    ),
    (
        "second_memory",
        "(memory 1)",
        {},
        "memories",
        2,
        "needs 2 memories but GuestLimits.memories=1",
    ),
    (
        "default_table_cap",
        "(table 1000000 funcref)",
        {},
        "table_elements",
        1000000,
        "GuestLimits.table_elements=65536",
    ),
]


@pytest.mark.parametrize(
    ("extra", "limits", "resource", "value", "fragment"),
    [r[1:] for r in STORE_ROWS],
    ids=[r[0] for r in STORE_ROWS],
)
@pytest.mark.parametrize("stage", ["load", "open"])
def test_store_limits_refuse_instantiation(
    eng: WasmEngine,
    extra: str,
    limits: dict[str, Any],
    resource: str,
    value: int,
    fragment: str,
    stage: str,
) -> None:
    wasm = wat_guest(extra=extra)
    lim = GuestLimits(**limits)
    if stage == "load":
        with pytest.raises(GuestLimitError) as info:
            eng.load(wasm, limits=lim)
    else:
        loose = GuestLimits(table_elements=2_000_000, tables=4, memories=2)
        actor = eng.load(wasm, limits=loose).actor(limits=lim)
        with pytest.raises(GuestLimitError) as info:
            actor.open_node("store", {})
        assert info.value.node == "store" and "'store'" in str(info.value)
    err = info.value
    assert (err.resource, err.value, err.limit) == (resource, value, getattr(lim, resource))
    assert fragment in str(err), str(err)


# -- module size and compile cost --------------------------------------------------------------


def nested_blocks(depth: int) -> bytes:
    """The compile bomb: ``depth`` nested blocks that each yield an i32 (117 KB at 40 000;
    3.1 GB and 9 s to compile in process)."""
    body = "(block (result i32) " * depth + "(i32.const 1)" + ")" * depth + " drop"
    return wasmtime.wat2wasm(f'(module (func (export "f") {body}))')


def nested_ifs(depth: int) -> bytes:
    """A compile that is slow rather than big (10 s at 40 000, ~280 MB)."""
    step = "(local.get 0) (if (then (local.set 0 (i32.add (local.get 0) (i32.const 1))) "
    body = step * depth + "))" * depth
    return wasmtime.wat2wasm(f'(module (func (export "f") (param i32) {body}))')


COMPILE_ROWS = [
    (
        "nested_blocks",
        "blocks",
        40_000,
        {"compile_memory_bytes": 128 * MIB},
        "compile_memory_bytes",
        "GuestLimits.compile_memory_bytes=134217728",
    ),
    (
        "slow_nested_ifs",
        "ifs",
        40_000,
        {"compile_ms": 300},
        "compile_ms",
        "past GuestLimits.compile_ms=300",
    ),
]


@pytest.mark.parametrize(
    ("shape", "depth", "limits", "resource", "fragment"),
    [r[1:] for r in COMPILE_ROWS],
    ids=[r[0] for r in COMPILE_ROWS],
)
def test_compile_bombs_stop_at_their_limit(
    shape: str,
    depth: int,
    limits: dict[str, Any],
    resource: str,
    fragment: str,
    guest_wasm: dict[str, Path],
) -> None:
    eng = WasmEngine(cache_dir=False)
    wasm = nested_blocks(depth) if shape == "blocks" else nested_ifs(depth)
    started = time.monotonic()
    with pytest.raises(GuestLimitError) as info:
        eng.load(wasm, name="bomb.wasm", limits=GuestLimits(**limits))
    assert time.monotonic() - started < 30
    err = info.value
    assert err.resource == resource and err.component == "bomb.wasm"
    assert fragment in str(err) and "'bomb.wasm'" in str(err), str(err)
    # The engine compiles the next module as usual (a fresh compiler process).
    node = eng.load(guest_wasm["doubler"]).actor().open_node("d", {})
    ctx = TickCtx({"in": Message.integer(4)})
    node.run(ctx)
    assert ctx.outputs == [("out", Message.integer(8))]
    node.close()
    eng.close()


def test_module_size_is_checked_before_compiling(eng: WasmEngine, tmp_path: Path) -> None:
    wasm = wat_guest(data=((8192, bytes(4000)),))
    path = tmp_path / "big.wasm"
    path.write_bytes(wasm)
    for source in (wasm, path):
        with pytest.raises(GuestLimitError) as info:
            eng.load(source, name="big.wasm", limits=GuestLimits(module_bytes=2000))
        err = info.value
        assert (err.resource, err.value, err.limit) == ("module_bytes", len(wasm), 2000)
        assert f"module 'big.wasm' is {len(wasm)} bytes" in str(err)


def test_an_invalid_module_is_still_an_abi_error(eng: WasmEngine) -> None:
    with pytest.raises(GuestABIError, match="not a valid WebAssembly module"):
        eng.load(b"\0asm\1\0\0\0\x01\xff", limits=GuestLimits())


# -- describe document -------------------------------------------------------------------------


def describe_doc(n: int, extra: str = "") -> bytes:
    items = ",".join(f'{{"id":"t{i}"{extra}}}' for i in range(n))
    return f'{{"abi":"1.0","templates":[{items}]}}'.encode()


# kwargs of wat_guest; "templates": n stands for a describe document listing n templates.
DESCRIBE_ROWS = [
    pytest.param(
        {"templates": 800_000},
        {},
        "describe_bytes",
        "more than GuestLimits.describe_bytes=1048576",
        id="800k_templates",
        marks=pytest.mark.slow,
    ),  # 36 MB of WAT text to assemble
    pytest.param(
        {"describe_body": _slice(0, 60 * MIB), "memory": 1000},
        {},
        "describe_bytes",
        "document of 62914560 bytes",
        id="claims_60_mib",
    ),
    pytest.param(
        {"templates": 2000},
        {},
        "describe_templates",
        "lists 2000 templates, more than GuestLimits.describe_templates=1024",
        id="2000_templates",
    ),
    pytest.param(
        {"templates": 3},
        {"describe_templates": 2},
        "describe_templates",
        "GuestLimits.describe_templates=2",
        id="templates_over_custom",
    ),
    pytest.param(
        {"templates": 3},
        {"describe_bytes": 40},
        "describe_bytes",
        "GuestLimits.describe_bytes=40",
        id="bytes_over_custom",
    ),
]


@pytest.mark.parametrize(("kwargs", "limits", "resource", "fragment"), DESCRIBE_ROWS)
def test_describe_document_is_bounded(
    eng: WasmEngine,
    kwargs: dict[str, Any],
    limits: dict[str, Any],
    resource: str,
    fragment: str,
) -> None:
    if "templates" in kwargs:
        kwargs = {"describe": describe_doc(kwargs["templates"])}
    wasm = wat_guest(**kwargs)
    started = time.monotonic()
    with pytest.raises(GuestLimitError) as info:
        eng.load(wasm, name="doc.wasm", limits=GuestLimits(**limits))
    assert time.monotonic() - started < 10
    err = info.value
    assert err.resource == resource and err.component == "doc.wasm"
    assert err.value is not None and err.value > err.limit
    assert fragment in str(err), str(err)


@pytest.mark.parametrize(
    ("raw", "limits", "resource"),
    [
        (describe_doc(2000), {}, "describe_templates"),
        (describe_doc(10, ',"description":"' + "x" * 200_000 + '"'), {}, "describe_bytes"),
        (describe_doc(1), {"describe_bytes": 10}, "describe_bytes"),
    ],
    ids=["templates", "bytes", "custom_bytes"],
)
def test_parse_describe_applies_the_limits(
    raw: bytes, limits: dict[str, Any], resource: str
) -> None:
    """The native and extism engines hand their documents to parse_describe too."""
    with pytest.raises(GuestLimitError) as info:
        parse_describe(raw, (1, 0), GuestLimits(**limits))
    assert info.value.resource == resource


# -- GuestLimits itself ------------------------------------------------------------------------

LIMITS_ROWS = [
    ({"memory_bytes": 100}, "memory_bytes", "at least 65536"),
    ({"tick_ms": 0}, "tick_ms", "positive"),
    ({"tick_ms": float("nan")}, "tick_ms", "positive and finite"),
    ({"output_bytes": 0}, "output_bytes", "at least 1"),
    ({"batch_ticks": 0}, "batch_ticks", "batch_ticks must be at least 1"),
    ({"output_packets": 0}, "output_packets", "at least 1"),
    ({"pool_bytes": -1}, "pool_bytes", "at least 1"),
    ({"pool_entries": 1.5}, "pool_entries", "must be an integer"),
    ({"pool_key_bytes": "1k"}, "pool_key_bytes", "must be an integer, not '1k'"),
    ({"pool_value_bytes": True}, "pool_value_bytes", "must be an integer"),
    ({"table_elements": -1}, "table_elements", "at least 0"),
    ({"instances": 0}, "instances", "at least 1"),
    ({"memories": 0}, "memories", "at least 1"),
    ({"module_bytes": 0}, "module_bytes", "at least 8"),
    ({"compile_memory_bytes": 1000}, "compile_memory_bytes", "at least 16777216"),
    ({"compile_ms": float("inf")}, "compile_ms", "positive and finite"),
    ({"describe_bytes": None}, "describe_bytes", "must be an integer"),
    ({"describe_templates": 0}, "describe_templates", "at least 1"),
]


@pytest.mark.parametrize(
    ("kwargs", "field", "fragment"),
    LIMITS_ROWS,
    ids=[r[1] + "-" + repr(next(iter(r[0].values()))) for r in LIMITS_ROWS],
)
def test_guest_limits_validate(kwargs: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(InvalidLimitsError) as info:
        GuestLimits(**kwargs)
    assert isinstance(info.value, ValueError) and isinstance(info.value, ReflowError)
    assert info.value.field == field
    assert f"GuestLimits.{field}" in str(info.value) and fragment in str(info.value)


# -- host memory stays bounded (measured in a child process) -----------------------------------

CHILD = textwrap.dedent("""
    import json, resource, sys
    import psutil
    sys.path.insert(0, sys.argv[1])
    from sandbox_helpers import TickCtx
    from reflow import GuestLimits, Message, ReflowError
    from reflow._sandbox._wasm_engine import WasmEngine
    spec = json.loads(sys.argv[2])
    wasm = open(spec["wasm"], "rb").read()
    eng = WasmEngine(cache_dir=False)
    good = eng.load(open(spec["warm"], "rb").read()).actor().open_node("warm", {})
    good.run(TickCtx({"in": Message.integer(1)}))
    proc = psutil.Process()
    def hwm():
        # The peak RSS of this process image (ru_maxrss would carry the parent's over exec).
        with open("/proc/self/status") as fh:
            return next(int(ln.split()[1]) * 1024 for ln in fh if ln.startswith("VmHWM:"))
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM to the current RSS
    base = proc.memory_info().rss
    limits = GuestLimits(**spec["limits"])
    errors = []
    try:
        node = eng.load(wasm, name="m.wasm", limits=limits).actor(limits=limits).open_node(
            "hog", {})
        pools = {}
        for i in range(spec["ticks"]):
            try:
                node.run(TickCtx({"in": Message.integer(i)}, pools=pools, node="hog"))
            except ReflowError as exc:
                errors.append(getattr(exc, "resource", type(exc).__name__))
    except ReflowError as exc:
        errors.append(getattr(exc, "resource", type(exc).__name__))
    peak = hwm()
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(json.dumps({"growth": max(peak, proc.memory_info().rss) - base, "children": kids,
                      "errors": errors}))
""")


def _measure(
    tmp_path: Path, wasm: bytes, limits: dict[str, Any], ticks: int, warm: Path
) -> dict[str, Any]:
    path = tmp_path / "m.wasm"
    path.write_bytes(wasm)
    spec = {"wasm": str(path), "limits": limits, "ticks": ticks, "warm": str(warm)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(HERE), json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


MEMORY_ROWS = [
    # 1 MiB ids and values, 100 upserts a tick for 8 ticks: 1.6 GB unbounded.
    (
        "pool_huge_keys",
        lambda: pool_guest(1, MIB, *_bytes_value(MIB - 16), 100),
        {"pool_key_bytes": 2 * MIB, "pool_bytes": 64 * MIB},
        8,
        "pool_bytes",
        64 * MIB,
    ),
    (
        "pool_huge_keys_default_limits",
        lambda: pool_guest(1, MIB, *_bytes_value(16), 100),
        {},
        8,
        "pool_key_bytes",
        16 * MIB,
    ),
    (
        "pool_json_values",
        lambda: pool_guest(1, 8, *_json_value(9, DICTS), 50),
        {"pool_bytes": 32 * MIB},
        8,
        "pool_bytes",
        32 * MIB,
    ),
    (
        "table_grow",
        lambda: wat_guest(TABLE_GROW.replace("LIMIT", "65536"), extra="(table $t 1 funcref)"),
        {},
        4,
        None,
        16 * 65536,
    ),
    (
        "describe_800k_templates",
        lambda: wat_guest(describe=describe_doc(800_000)),
        {},
        0,
        "describe_bytes",
        MIB,
    ),
    (
        "compile_nested_blocks",
        lambda: nested_blocks(40_000),
        {"compile_memory_bytes": 256 * MIB},
        0,
        "compile_memory_bytes",
        256 * MIB,
    ),
]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize(
    ("make", "limits", "ticks", "resource", "bound"),
    [r[1:] for r in MEMORY_ROWS],
    ids=[r[0] for r in MEMORY_ROWS],
)
def test_host_memory_stays_bounded(
    tmp_path: Path,
    guest_wasm: dict[str, Path],
    make: Any,
    limits: dict[str, Any],
    ticks: int,
    resource: str | None,
    bound: int,
) -> None:
    got = _measure(tmp_path, make(), limits, ticks, guest_wasm["doubler"])
    if resource is None:
        assert got["errors"] == []
    else:
        assert got["errors"] and set(got["errors"]) == {resource}, got
    allowed = 2 * bound + 150 * MIB
    assert got["growth"] < allowed, got
    if resource and resource.startswith("compile"):
        assert got["children"] < allowed, got  # the compiler process, at its peak
