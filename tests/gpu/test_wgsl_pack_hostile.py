"""Hostile and broken kernels, written by hand, fail only their own tick: a healthy GPU node
in the same graph still computes the right values. Out-of-bounds accesses stay inside the
kernel's own buffers; huge dispatches and buffers are refused before anything runs; a long
kernel is stopped at its time limit; an endless loop ends within it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _wgsl_pack_support import DOUBLE, DOUBLE_WGSL, Keys, make_keys, pack_bytes, template

from reflow import Message, Network, template_actor
from reflow._errors import ActorError
from reflow._gpu import GpuError, GpuKernelError, GpuLimitError, GpuTimeoutError, reset_device
from reflow._loader._packs import list_packs, load_pack, unload_pack

X = np.arange(100, dtype=np.float32)


def f32(values: Any) -> Message:
    return Message.bytes(np.asarray(values, dtype="<f4").tobytes())


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("wgsl-keys"))


@pytest.fixture(autouse=True)
def _packs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keys: Keys) -> Iterator[None]:
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))
    load_pack(pack_bytes(DOUBLE, key=keys.key), trust=keys.store)  # the healthy "t/k"
    yield
    for p in list_packs():
        unload_pack(p.name)


def _body(code: bytes) -> bytes:
    return DOUBLE.replace(b"out[i] = x[i] * 2.0 + add;", code)


def _wgsl(**changes: Any) -> dict[str, Any]:
    return {**DOUBLE_WGSL, **changes}


def _with_output(size: Any) -> dict[str, Any]:
    bindings = [dict(b) for b in DOUBLE_WGSL["bindings"]]
    bindings[1]["size"] = size
    return _wgsl(bindings=bindings)


def run_beside_healthy(
    keys: Keys,
    kernel: bytes,
    wgsl: dict[str, Any],
    inputs: dict[str, Any],
    config: dict[str, Any],
) -> tuple[list[Any], list[Any], list[Any]]:
    """The hostile template ``h/k`` and the healthy ``t/k`` as two nodes of one graph;
    returns (hostile outputs, hostile failures, healthy outputs)."""
    load_pack(
        pack_bytes(kernel, [template(wgsl, tid="h/k")], key=keys.key, name="h"), trust=keys.store
    )
    net = Network()
    net.register_actor("hostile", template_actor("h/k"))
    net.register_actor("healthy", template_actor("t/k"))
    net.add_node("bad", "hostile", config)
    net.add_node("good", "healthy", {"add": 1.0})
    bad, good = net.collect("bad", "out"), net.collect("good", "out")
    for port, msg in inputs.items():
        net.add_initial("bad", port, msg)
    net.add_initial("good", "x", f32(X))
    result = net.run(timeout=60)
    net.shutdown()
    return list(bad.messages), [f for f in result.failures if f.node == "bad"], list(good.messages)


def _healthy_ok(good: list[Any]) -> None:
    assert len(good) == 1
    np.testing.assert_array_equal(good[0]["data"].to_numpy(), X * 2 + 1)


_STRUCT_UNIFORM = DOUBLE.replace(
    b"@group(0) @binding(2) var<uniform> add: f32;",
    b"struct P { a: f32, b: array<vec4<f32>, 64> }\n@group(0) @binding(2) var<uniform> add: P;",
).replace(b"+ add;", b"+ add.b[3].x;")

HOSTILE_TICKS = [
    # kernels wgpu refuses: named, with wgpu's own message
    (_body(b"let v: u32 = 1.0; out[i] = x[i];"), {}, {}, GpuKernelError, "refused by wgpu"),
    (_body(b"x[i] = 1.0;"), {}, {}, GpuKernelError, "refused by wgpu"),
    (_body(b"out[i] = undeclared;"), {}, {}, GpuKernelError, "undeclared"),
    (_body(b"out[i] = x[i]"), {}, {}, GpuKernelError, "pack 'h' kernel"),
    # a uniform the shader reads as more than the manifest's value gives
    (_STRUCT_UNIFORM, {}, {}, GpuError, "bound with size 16"),
    # dispatch size: refused before anything runs
    (DOUBLE, {"dispatch": [(1 << 31) - 1]}, {}, GpuLimitError, "gpuMaxWorkgroups"),
    (DOUBLE, {"dispatch": ["config:n"]}, {"n": 10**12}, GpuLimitError, "gpuMaxWorkgroups"),
    (
        DOUBLE,
        {"dispatch": [(1 << 31) - 1]},
        {"gpuMaxWorkgroups": 10**15},
        GpuLimitError,
        "max-compute-workgroups-per-dimension",
    ),
    (DOUBLE, {"dispatch": ["config:n"]}, {"n": -1}, ActorError, "integer >= 0"),
    (DOUBLE, {"dispatch": ["config:n"]}, {}, ActorError, "config 'n'"),
    # buffer sizes: refused before anything is allocated
    (DOUBLE, _with_output("config:n"), {"n": 1 << 40}, GpuLimitError, "gpuMaxBufferBytes"),
    (DOUBLE, {}, {"gpuMaxBufferBytes": 16}, GpuLimitError, "400 bytes is over"),
    # config and input mistakes
    (DOUBLE, {}, {"gpuTimeout": -1}, ActorError, "'gpuTimeout' must be a positive"),
    (DOUBLE, {}, {"gpuMaxWorkgroups": 1.5}, ActorError, "positive integer"),
    (DOUBLE, {}, {"add": "one"}, ActorError, "config 'add'"),
    (DOUBLE, {}, {"add": 1e300}, ActorError, "does not fit f32"),
]


@pytest.mark.parametrize(
    ("kernel", "wgsl", "config", "error", "fragment"),
    HOSTILE_TICKS,
    ids=[f"{i}-{row[3].__name__}" for i, row in enumerate(HOSTILE_TICKS)],
)
def test_a_hostile_kernel_fails_only_its_own_tick(
    device: Any,
    keys: Keys,
    kernel: bytes,
    wgsl: dict[str, Any],
    config: dict[str, Any],
    error: type[Exception],
    fragment: str,
) -> None:
    start = time.perf_counter()
    out, failures, good = run_beside_healthy(keys, kernel, _wgsl(**wgsl), {"x": f32(X)}, config)
    assert time.perf_counter() - start < 30
    assert out == []
    (failure,) = failures
    assert isinstance(failure.exception, error), failure.error
    assert fragment in failure.error
    _healthy_ok(good)


BAD_INPUTS = [
    (Message.bytes(b"\x00" * 7), "7 bytes is not a whole number of f32"),
    (Message.string("1,2,3"), "expected Bytes, an Array of numbers or a Gpu message"),
    (Message.array([Message.integer(1), Message.string("two")]), "an Array of numbers"),
]


@pytest.mark.parametrize(("msg", "fragment"), BAD_INPUTS)
def test_bad_inputs_fail_the_tick_naming_the_port(
    device: Any, keys: Keys, msg: Any, fragment: str
) -> None:
    out, failures, good = run_beside_healthy(keys, DOUBLE, _wgsl(), {"x": msg}, {})
    assert out == [] and len(failures) == 1
    assert isinstance(failures[0].exception, ActorError)
    assert "in-port 'x'" in failures[0].error and fragment in failures[0].error
    _healthy_ok(good)


def test_a_missing_in_port_fails_naming_it(device: Any, keys: Keys) -> None:
    kernel = DOUBLE.replace(
        b"@group(0) @binding(2) var<uniform> add: f32;",
        b"@group(0) @binding(2) var<uniform> add: f32;\n"
        b"@group(1) @binding(0) var<storage, read> y: array<f32>;",
    )
    wgsl = _wgsl(
        bindings=[
            *DOUBLE_WGSL["bindings"],
            {
                "group": 1,
                "binding": 0,
                "type": "storage",
                "access": "read",
                "element": "f32",
                "inport": "y",
            },
        ]
    )
    load_pack(
        pack_bytes(kernel, [template(wgsl, inports=["x", "y"], tid="h/k")], key=keys.key, name="h"),
        trust=keys.store,
    )
    net = Network()
    net.register_actor("h", template_actor("h/k"))
    net.add_node("bad", "h")
    net.add_initial("bad", "x", f32(X))
    result = net.run(timeout=30)
    net.shutdown()
    (failure,) = result.failures
    assert "in-port 'y' has no packet this tick" in failure.error


def test_out_of_bounds_accesses_stay_in_the_kernels_own_buffers(keys: Keys, device: Any) -> None:
    """WebGPU's robust buffer access: an out-of-range write is dropped or lands inside the
    same buffer, an out-of-range read gives a value from it or zero; nothing else changes."""
    kernel = _body(
        b"out[i + 1000000u] = 7.0;\n"
        b"    out[i - 4000000000u] = 9.0;\n"
        b"    out[i] = x[i + 99999u] + x[(i + 1u) * 4294967295u];"
    )
    out, failures, good = run_beside_healthy(keys, kernel, _wgsl(), {"x": f32(X)}, {})
    assert failures == []
    values = out[0]["data"].to_numpy()
    assert values.shape == X.shape and np.isfinite(values).all()
    assert set(np.unique(values)) <= {*X.tolist(), *(2 * X).tolist(), 0.0, 7.0, 9.0}
    _healthy_ok(good)  # its buffers, made alongside, hold exactly what it computed


def test_an_endless_loop_ends_within_its_time_limit(keys: Keys, device: Any) -> None:
    """A software driver (llvmpipe) cuts every loop short; a real GPU's watchdog resets the
    device. Either way the tick ends within the time limit and the graph goes on."""
    kernel = _body(b"loop { out[i] = out[i] + 1.0; }")
    start = time.perf_counter()
    out, failures, good = run_beside_healthy(
        keys, kernel, _wgsl(), {"x": f32(X)}, {"gpuTimeout": 2.0}
    )
    assert time.perf_counter() - start < 20
    assert len(out) + len(failures) == 1
    if failures:
        assert isinstance(failures[0].exception, GpuTimeoutError | GpuError)
    _healthy_ok(good)


LONG = b"""
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<atomic<u32>>;
@group(0) @binding(2) var<uniform> add: f32;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    for (var j = 0u; j < 60000u; j++) {
        atomicAdd(&out[gid.x % 4u], j);
    }
}
"""


@pytest.mark.slow
def test_a_long_kernel_is_stopped_at_its_time_limit(keys: Keys, device: Any) -> None:
    """256 workgroups of 60 000 atomic adds each take a few seconds on llvmpipe: past the
    0.5 s limit the tick fails with GpuTimeoutError, the device is reset, and GPU nodes run
    on a fresh one."""
    bindings = [dict(b) for b in DOUBLE_WGSL["bindings"]]
    bindings[1]["element"] = "u32"
    wgsl = _wgsl(dispatch=[256 * 64], bindings=bindings)
    start = time.perf_counter()
    _, failures, _ = run_beside_healthy(keys, LONG, wgsl, {"x": f32(X)}, {"gpuTimeout": 0.5})
    elapsed = time.perf_counter() - start
    (failure,) = failures
    assert isinstance(failure.exception, GpuTimeoutError), failure.error
    assert "within its time limit of 0.5 s" in failure.error
    assert elapsed < 30
    reset_device()
    # the next graph's GPU nodes work on a fresh device
    net = Network()
    net.register_actor("healthy", template_actor("t/k"))
    net.add_node("good", "healthy", {"add": 1.0})
    coll = net.collect("good", "out")
    net.add_initial("good", "x", f32(X))
    net.run(timeout=60).raise_for_failures()
    net.shutdown()
    _healthy_ok(coll.messages)
