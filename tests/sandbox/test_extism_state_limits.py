"""The Reflow-SDK state of an extism node (``__set_state``, and the ``state`` a ``process``
result hands back) outlives ticks, so it is held to the pool limits of ``GuestLimits``
(``pool_entries``, ``pool_bytes``, ``pool_key_bytes``, ``pool_value_bytes``) like a wasm
guest's pools (issue #8, row 2). Guests are hand-written WAT against the Extism kernel."""

from __future__ import annotations

import json
from typing import Any

import pytest
import wasmtime
from sandbox_helpers import TickCtx

from reflow import Message
from reflow._errors import GuestLimitError
from reflow._sandbox._extism_engine import ExtismModule
from reflow._sandbox._guest_host import GuestLimits

#: Memory: "1" at 16, 8 hex digits built at 100, a 64-byte JSON string at 200,
#: "0123456789abcdef" at 300.
BIG = '"' + "a" * 62 + '"'
WAT = f"""(module
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (import "extism:host/user" "__set_state" (func $set_state (param i64 i64)))
  (memory (export "memory") 1)
  (data (i32.const 16) "1")
  (data (i32.const 200) {json.dumps(BIG)})
  (data (i32.const 300) "0123456789abcdef")
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
  ;; the 8 hex digits of $x at 100
  (func $hex (param $x i32) (local $i i32)
    (block $d (loop $l
      (br_if $d (i32.ge_u (local.get $i) (i32.const 8)))
      (i32.store8 (i32.add (i32.const 107) (i32.sub (i32.const 0) (local.get $i)))
        (i32.load8_u (i32.add (i32.const 300)
          (i32.and (i32.shr_u (local.get $x) (i32.mul (local.get $i) (i32.const 4)))
                   (i32.const 15)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l))))
  ;; 1000 distinct keys, each set to 1
  (func (export "many_keys") (result i32) (local $i i32)
    (block $d (loop $l
      (br_if $d (i32.ge_u (local.get $i) (i32.const 1000)))
      (call $hex (local.get $i))
      (call $set_state (call $kernel (i32.const 100) (i32.const 8))
                       (call $kernel (i32.const 16) (i32.const 1)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (call $output_set (call $kernel (i32.const 16) (i32.const 1)) (i64.const 1))
    (i32.const 0))
  ;; one key, set over and over to the same value: the state does not grow
  (func (export "same_key") (result i32) (local $i i32)
    (call $hex (i32.const 7))
    (block $d (loop $l
      (br_if $d (i32.ge_u (local.get $i) (i32.const 1000)))
      (call $set_state (call $kernel (i32.const 100) (i32.const 8))
                     (call $kernel (i32.const 200) (i32.const 64)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (call $output_set (call $kernel (i32.const 16) (i32.const 1)) (i64.const 1))
    (i32.const 0))
  (func (export "big_value") (result i32)
    (call $hex (i32.const 1))
    (call $set_state (call $kernel (i32.const 100) (i32.const 8))
                     (call $kernel (i32.const 200) (i32.const 64)))
    (call $output_set (call $kernel (i32.const 16) (i32.const 1)) (i64.const 1))
    (i32.const 0)))"""


@pytest.fixture(scope="module")
def module() -> ExtismModule:
    return ExtismModule(bytes(wasmtime.wat2wasm(WAT)), name="state.wasm")


ROWS: list[tuple[str, str, dict[str, Any], str, int]] = [
    ("entries", "many_keys", {"pool_entries": 50}, "pool_entries", 51),
    ("bytes", "many_keys", {"pool_bytes": 100}, "pool_bytes", 108),  # 9 bytes a key
    ("key size", "many_keys", {"pool_key_bytes": 4}, "pool_key_bytes", 8),
    ("value size", "big_value", {"pool_value_bytes": 32}, "pool_value_bytes", 64),
]


@pytest.mark.parametrize(
    ("export", "limits", "resource", "value"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_state_is_held_to_the_pool_limits(
    module: ExtismModule, export: str, limits: dict[str, Any], resource: str, value: int
) -> None:
    lim = GuestLimits(**limits)
    node = module.function_actor(export, limits=lim).open_node("stateful", {})
    try:
        for _ in range(2):  # the node's state keeps what it had: it fails the same way again
            with pytest.raises(GuestLimitError) as info:
                node.run(TickCtx({"in": Message.string("x")}))
            err = info.value
            assert (err.resource, err.value, err.node) == (resource, value, "stateful"), err
            assert f"GuestLimits.{resource}=" in str(err) and "state" in str(err)
    finally:
        node.close()


def test_rewriting_one_key_does_not_grow_the_state(module: ExtismModule) -> None:
    lim = GuestLimits(pool_entries=1, pool_bytes=8 + 64)
    node = module.function_actor("same_key", limits=lim).open_node("steady", {})
    try:
        for _ in range(3):
            ctx = TickCtx({"in": Message.string("x")})
            node.run(ctx)
            assert ctx.error is None
    finally:
        node.close()


# -- the state a process result hands back ---------------------------------------------------


def _host(**limits: Any) -> Any:
    from reflow._sandbox._extism_host import _ExtismHost
    from reflow._sandbox._guest_describe import GuestTemplate
    from reflow._sandbox._guest_host import GuestGrants

    tmpl = GuestTemplate(id="t/state", inports=("in",), outports=("out",))
    return _ExtismHost("n", tmpl, GuestLimits(**limits), GuestGrants())


def _result_size(state: Any) -> int:
    return len(json.dumps({"outputs": {}, "state": state}))


REPLACED: list[tuple[str, dict[str, Any], Any, str]] = [
    ("too many keys", {"pool_entries": 2}, {"a": 1, "b": 2, "c": 3}, "pool_entries"),
    ("too many bytes", {"pool_bytes": 40}, {"k": "x" * 64}, "pool_bytes"),
]


@pytest.mark.parametrize(
    ("limits", "state", "resource"), [r[1:] for r in REPLACED], ids=[r[0] for r in REPLACED]
)
def test_a_returned_state_is_held_to_the_pool_limits(
    limits: dict[str, Any], state: Any, resource: str
) -> None:
    host = _host(**limits)
    with pytest.raises(GuestLimitError) as info:
        host.replace_state(state, _result_size(state))
    assert info.value.resource == resource and "returned state" in str(info.value)


def test_keys_set_after_a_returned_state_count_what_it_held() -> None:
    """A small result is not measured at once; the first __set_state measures it, so the
    returned keys still count toward the caps."""
    host = _host(pool_entries=3, pool_bytes=1000)
    state = {"a": 1, "b": 2}
    host.replace_state(state, _result_size(state))
    host.put_state("c", 3, 2, "__set_state")  # the third key: allowed
    with pytest.raises(GuestLimitError) as info:
        host.put_state("d", 4, 2, "__set_state")
    assert (info.value.resource, info.value.value) == ("pool_entries", 4)
    host.put_state("a", 9, 2, "__set_state")  # rewriting a returned key: no new entry
    assert host.state == {"a": 9, "b": 2, "c": 3}
