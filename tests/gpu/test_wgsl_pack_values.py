"""What a pack kernel computes, per element type and binding layout: f32 and vec4<f32> stay
on the device, u32/i32 are read back exact; Array and Gpu inputs; several bind groups; fixed
and config-sized outputs; an empty input; two pack kernels chained upload once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _wgsl_pack_support import DOUBLE, DOUBLE_WGSL, Keys, make_keys, pack_bytes, run_node, template

from reflow import Message, Network, template_actor
from reflow._gpu import gpu_counters, reset_device
from reflow._loader._packs import list_packs, load_pack, unload_pack


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("wgsl-keys"))


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))
    yield
    for p in list_packs():
        unload_pack(p.name)


def _binding(g: int, n: int, kind: str, element: str, **src: Any) -> dict[str, Any]:
    b: dict[str, Any] = {"group": g, "binding": n, "type": "storage" if kind != "uniform" else kind}
    if kind != "uniform":
        b["access"] = kind
    return {**b, "element": element, **src}


#: u32 in two bind groups: out = x * k + y (wrapping), k a uniform in group 1.
U32 = b"""
@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;
@group(1) @binding(0) var<uniform> k: u32;
@group(2) @binding(5) var<storage, read> y: array<u32>;

@compute @workgroup_size(8, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= arrayLength(&out)) { return; }
    out[i] = x[i] * k + y[i];
}
"""
U32_WGSL = {
    "workgroup_size": [8, 1, 1],
    "dispatch": ["in:x"],
    "bindings": [
        _binding(0, 0, "read", "u32", inport="x"),
        _binding(0, 3, "read_write", "u32", outport="out", size="in:x"),
        _binding(1, 0, "uniform", "u32", config="k"),
        _binding(2, 5, "read", "u32", inport="y"),
    ],
}

#: i32 with a fixed-size output: out[j] = sum of x[j], x[j+4], ... (4 lanes).
I32 = b"""
@group(0) @binding(0) var<storage, read> x: array<i32>;
@group(0) @binding(1) var<storage, read_write> out: array<i32>;

@compute @workgroup_size(4)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    var acc = 0i;
    for (var j = gid.x; j < arrayLength(&x); j += 4u) { acc += x[j]; }
    out[gid.x] = acc;
}
"""
I32_WGSL = {
    "workgroup_size": [4],
    "dispatch": [4],
    "bindings": [
        _binding(0, 0, "read", "i32", inport="x"),
        _binding(0, 1, "read_write", "i32", outport="out", size=4),
    ],
}

#: vec4<f32> arrays, output sized by config: out[i] = x[i].wzyx for i < n.
VEC4 = b"""
@group(0) @binding(0) var<storage, read> x: array<vec4f>;
@group(0) @binding(1) var<storage, read_write> out: array<vec4f>;

@compute @workgroup_size(16)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= arrayLength(&out)) { return; }
    out[i] = x[i].wzyx;
}
"""
VEC4_WGSL = {
    "workgroup_size": [16],
    "dispatch": ["config:n"],
    "bindings": [
        _binding(0, 0, "read", "vec4<f32>", inport="x"),
        _binding(0, 1, "read_write", "vec4<f32>", outport="out", size="config:n"),
    ],
}


def _load(keys: Keys, kernel: bytes, wgsl: dict[str, Any], inports: list[str]) -> None:
    t = template(wgsl, inports=inports, await_all_inports=len(inports) > 1)
    load_pack(pack_bytes(kernel, [t], key=keys.key), trust=keys.store)


def test_u32_in_several_bind_groups_reads_back_exact(device: Any, keys: Keys) -> None:
    _load(keys, U32, U32_WGSL, ["x", "y"])
    x = np.array([1, 2, 3, 0xFFFFFFFF, 7] * 5, dtype="<u4")
    y = np.arange(25, dtype="<u4")
    msgs, failures = run_node(
        "t/k", {"x": Message.bytes(x.tobytes()), "y": Message.bytes(y.tobytes())}, {"k": 3}
    )
    assert failures == []
    assert msgs[0]["type"] == "Bytes"  # integers are read back within the tick
    got = np.frombuffer(msgs[0]["data"], "<u4")
    np.testing.assert_array_equal(got, (x.astype(np.uint64) * 3 + y).astype(np.uint32))
    assert gpu_counters().readbacks == 1


def test_i32_from_an_array_message_into_a_fixed_output(device: Any, keys: Keys) -> None:
    _load(keys, I32, I32_WGSL, ["x"])
    values = [-5, 7, 1, 2, 100, -200, 3, 4, 1]
    msgs, failures = run_node("t/k", {"x": Message.array([Message.integer(v) for v in values])})
    assert failures == []
    got = np.frombuffer(msgs[0]["data"], "<i4").tolist()
    assert got == [sum(values[j::4]) for j in range(4)]


@pytest.mark.parametrize("n", [3, 1, 0])
def test_vec4_output_sized_from_config(device: Any, keys: Keys, n: int) -> None:
    _load(keys, VEC4, VEC4_WGSL, ["x"])
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    msgs, failures = run_node("t/k", {"x": Message.bytes(x.astype("<f4").tobytes())}, {"n": n})
    assert failures == []
    got = msgs[0]["data"].to_numpy().reshape(-1, 4)
    np.testing.assert_array_equal(got, x[:n, ::-1])


def test_an_empty_input_gives_an_empty_output_without_a_dispatch(device: Any, keys: Keys) -> None:
    _load(keys, DOUBLE, DOUBLE_WGSL, ["x"])
    msgs, failures = run_node("t/k", {"x": Message.bytes(b"")})
    assert failures == []
    assert msgs[0]["data"].to_numpy().shape == (0,)
    assert gpu_counters().dispatches == 0


def test_two_pack_kernels_chained_upload_once(device: Any, keys: Keys) -> None:
    _load(keys, DOUBLE, DOUBLE_WGSL, ["x"])
    net = Network()
    net.register_actor("k", template_actor("t/k"))
    for node in ("a", "b", "c"):
        net.add_node(node, "k", {"add": 1.0})
    net.add_connection("a", "out", "b", "x")
    net.add_connection("b", "out", "c", "x")
    coll = net.collect("c", "out")
    net.add_initial("a", "x", Message.bytes(np.arange(50, dtype="<f4").tobytes()))
    net.run(timeout=60).raise_for_failures()
    net.shutdown()
    got = coll.messages[0]["data"].to_numpy()
    np.testing.assert_array_equal(got, ((np.arange(50) * 2 + 1) * 2 + 1) * 2 + 1)
    counters = gpu_counters()
    assert (counters.uploads, counters.readbacks, counters.dispatches) == (1, 1, 3)


def test_a_handle_from_a_reset_device_is_bound_from_its_host_copy(device: Any, keys: Keys) -> None:
    _load(keys, DOUBLE, DOUBLE_WGSL, ["x"])
    first, _ = run_node("t/k", {"x": Message.bytes(np.ones(8, "<f4").tobytes())})
    handle = first[0]["data"]
    handle.to_numpy()  # read back (and cached) before the device goes
    reset_device()
    again, failures = run_node("t/k", {"x": first[0]})
    assert failures == []
    np.testing.assert_array_equal(again[0]["data"].to_numpy(), np.full(8, 4.0))
