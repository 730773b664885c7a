"""reflow._gpu._kernels.observe_dispatches: the profiling hook the GPU bench's chain row uses
(kernel time from GPU timestamps where the device has them, else a blocking wait)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from reflow._gpu import ComputeKernel, GpuBuffer, dispatch
from reflow._gpu._kernels import observe_dispatches

_SPIN = (
    "@group(0) @binding(0) var<storage, read_write> dst: array<f32>;\n"
    "@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {\n"
    "    var v = f32(g.x);\n"
    "    for (var i = 0; i < 200; i++) { v = v * 1.0001 + 0.5; }\n"
    "    dst[g.x] = v;\n"
    "}\n"
)


@pytest.fixture
def seen() -> Iterator[list[tuple[str, float, str]]]:
    calls: list[tuple[str, float, str]] = []
    previous = observe_dispatches(lambda name, s, how: calls.append((name, s, how)))
    try:
        yield calls
    finally:
        observe_dispatches(previous)


@pytest.mark.parametrize("timestamps", [True, False])
def test_each_dispatch_is_reported(
    device: Any, seen: list[tuple[str, float, str]], timestamps: bool, monkeypatch: Any
) -> None:
    if timestamps and not device.timestamps:
        pytest.skip(f"{device.name} has no timestamp-query")
    monkeypatch.setattr(device, "timestamps", timestamps)
    out = GpuBuffer.empty(device, (64 * 64,), "float32")
    kernel = ComputeKernel(_SPIN, name="spin")
    for _ in range(3):
        dispatch(device, kernel, [("write", out.buffer)], (64,))
    how = "timestamp-query" if timestamps else "blocking wait"
    assert [(name, method) for name, _, method in seen] == [("spin", how)] * 3
    assert all(0 < s < 10 for _, s, _ in seen), seen
    assert out.to_numpy()[1] > 1  # the kernel ran, timed or not


def test_removing_the_observer_stops_reports(device: Any) -> None:
    calls: list[tuple[Any, ...]] = []

    def observer(*args: Any) -> None:
        calls.append(args)

    previous = observe_dispatches(observer)
    try:
        assert observe_dispatches(None) is observer  # returns the one it replaces
        out = GpuBuffer.empty(device, (64,), "float32")
        dispatch(device, ComputeKernel(_SPIN, name="spin"), [("write", out.buffer)], (1,))
    finally:
        observe_dispatches(previous)
    assert calls == []
