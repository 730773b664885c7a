"""The GPU runtime: adapter choice and its errors, kernel compile errors, dispatch bounds,
the per-dispatch time limit, the fallback policy."""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
import pytest

from reflow import template_actor
from reflow._gpu import (
    ComputeKernel,
    GpuBuffer,
    GpuBufferError,
    GpuError,
    GpuKernelError,
    GpuLimitError,
    GpuTimeoutError,
    GpuUnavailableError,
    NoGpuAdapterError,
    configure_gpu,
    dispatch,
    reset_device,
    shared_device,
)
from reflow.library import decode_image, encode_image
from reflow.library._gpu_base import params, uniform
from reflow.testing import run_tick

IMG = encode_image(np.arange(6 * 5 * 3, dtype=np.uint8).reshape(6, 5, 3))


@pytest.fixture
def fresh() -> Any:
    """Drop the shared device before and after, so settings take effect."""
    reset_device()
    yield
    reset_device()


# -- adapter choice -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "error", "fragment"),
    [
        ({"REFLOW_GPU": "off"}, GpuUnavailableError, "switched off"),
        ({"REFLOW_GPU": "OFF"}, GpuUnavailableError, "no GPU adapter is used"),
        ({"REFLOW_GPU": "0"}, GpuUnavailableError, "fallback='cpu'"),
        ({"REFLOW_GPU_ADAPTER": "no-such-gpu-9000"}, NoGpuAdapterError, "adapters found:"),
        ({"REFLOW_GPU_ADAPTER": "\u00e9\u00e9\u00e9"}, NoGpuAdapterError, "no GPU adapter matches"),
    ],
)
def test_adapter_choice_errors(
    fresh: Any, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], error: type, fragment: str
) -> None:
    if "REFLOW_GPU_ADAPTER" in env:
        pytest.importorskip("wgpu")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(error, match=fragment) as info:
        shared_device()
    assert isinstance(info.value, GpuError)


@pytest.mark.parametrize("wanted", ["llvmpipe", "LLVMPIPE", "high-performance", "low-power"])
def test_adapter_by_name_or_power(fresh: Any, device: Any, wanted: str) -> None:
    if "llvmpipe" in wanted.lower() and "llvmpipe" not in device.name:
        pytest.skip(f"the adapter here is {device.name}")
    reset_device()
    configure_gpu(adapter=wanted)
    assert shared_device().name == device.name or wanted in ("high-performance", "low-power")


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"adapter": ""}, "non-empty string"),
        ({"adapter": 3}, "non-empty string"),
        ({"enabled": "yes"}, "True or False"),
    ],
)
def test_configure_gpu_refuses(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(GpuError, match=fragment):
        configure_gpu(**kwargs)


def test_one_device_per_process(device: Any) -> None:
    assert shared_device() is device is shared_device()


# -- fallback policy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("how", "config", "error", "fragment"),
    [
        ("no-wgpu", {}, "GpuUnavailableError", "apt-get install mesa-vulkan-drivers"),
        ("no-wgpu", {}, "GpuUnavailableError", "wgpu is not installed"),
        ("off", {}, "GpuUnavailableError", "unset REFLOW_GPU"),
        ("off", {"fallback": "none"}, "GpuUnavailableError", "fallback='cpu'"),
        ("name", {}, "NoGpuAdapterError", "no GPU adapter matches"),
        ("off", {"fallback": "gpu"}, "ActorError", "config 'fallback' must be one of"),
        ("off", {"gpuTimeout": 0}, "ActorError", "config 'gpuTimeout' must be > 0"),
        ("off", {"gpuTimeout": "1"}, "ActorError", "config 'gpuTimeout' must be a number"),
    ],
)
def test_without_gpu_the_tick_fails(
    fresh: Any,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
    config: dict[str, Any],
    error: str,
    fragment: str,
) -> None:
    if how == "off":
        configure_gpu(enabled=False)
    elif how == "no-wgpu":
        monkeypatch.setitem(sys.modules, "wgpu", None)  # import wgpu raises ImportError
    else:
        pytest.importorskip("wgpu")
        configure_gpu(adapter="no-such-gpu-9000")
    result = run_tick(template_actor("tpl_gpu_image_blur"), {"in": IMG}, config)
    assert len(result.failures) == 1
    assert error in result.failures[0].error and fragment in result.failures[0].error


def test_fallback_cpu_runs_the_numpy_twin_and_warns_once(
    fresh: Any, caplog: pytest.LogCaptureFixture
) -> None:
    configure_gpu(enabled=False)
    actor = template_actor("tpl_gpu_image_blur")
    config = {"fallback": "cpu", "sigma": 1.5}
    result = run_tick(actor, {"in": IMG}, config)
    result.raise_for_failures()
    cpu = run_tick(template_actor("tpl_image_blur"), {"in": IMG}, config)
    assert result.outputs["out"][0] == cpu.outputs["out"][0]
    run_tick(actor, {"in": IMG}, config)  # same node id: no second warning
    warnings = [r for r in caplog.records if "running the numpy template" in r.getMessage()]
    assert len(warnings) == 1


# -- kernels -----------------------------------------------------------------------------------

_OUT = "@group(0) @binding(0) var<storage, read_write> dst: array<f32>;\n"


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("", "must be non-empty"),
        ("this is not wgsl", "refused by wgpu"),
        (_OUT + "@compute @workgroup_size(64) fn main() { dst[0] = undefined_name; }", "refused"),
        (_OUT + "@compute @workgroup_size(2000) fn main() { dst[0] = 1.0; }", "refused"),
        (_OUT + "@compute @workgroup_size(1) fn other() { dst[0] = 1.0; }", "refused"),
        (_OUT + "fn main() { dst[0] = 1.0; }", "refused"),
        (
            "@group(0) @binding(0) var<storage, read_write> dst: array<i32>;\n"
            "@compute @workgroup_size(1) fn main() { dst[0] = 1.5; }",
            "refused",
        ),
    ],
)
def test_bad_kernels_are_refused(device: Any, source: str, fragment: str) -> None:
    out = GpuBuffer.empty(device, (4,), "float32")
    t0 = time.perf_counter()
    with pytest.raises(GpuKernelError, match=fragment):
        dispatch(device, ComputeKernel(source, name="bad"), [("write", out.buffer)], (1,))
    assert time.perf_counter() - t0 < 10
    # the device still works afterwards
    good = ComputeKernel(
        _OUT + "@compute @workgroup_size(1) fn main() { dst[0] = 2.0; }", name="good"
    )
    dispatch(device, good, [("write", out.buffer)], (1,))
    assert out.to_numpy()[0] == 2.0


@pytest.mark.parametrize(
    ("groups", "fragment"),
    [
        ((0,), "0 workgroups along x is outside 1..65535"),
        ((65536,), "65536 workgroups along x"),
        ((1, 70000), "along y"),
        ((1, 1, 2**31), "along z"),
        ((1, 1, 1, 1), "at most 3 workgroup counts"),
        ((-5,), "-5 workgroups"),
    ],
)
def test_dispatch_size_is_bounded(device: Any, groups: tuple[int, ...], fragment: str) -> None:
    if device.limits["max-compute-workgroups-per-dimension"] != 65535:
        fragment = fragment.split(" is outside")[0]
    kernel = ComputeKernel(
        _OUT + "@compute @workgroup_size(1) fn main() { dst[0] = 1.0; }", name="tiny"
    )
    out = GpuBuffer.empty(device, (4,), "float32")
    with pytest.raises(GpuLimitError, match=fragment) as info:
        dispatch(device, kernel, [("write", out.buffer)], groups)
    assert info.value.limit in ("max-compute-workgroups-per-dimension", "dimensions")


def test_buffer_over_the_binding_limit_is_refused(device: Any) -> None:
    limit = device.limits["max-storage-buffer-binding-size"]
    with pytest.raises(GpuLimitError, match="max-storage-buffer-binding-size"):
        GpuBuffer.empty(device, (limit // 4 + 1,), "float32")


_SPIN = """
@group(0) @binding(0) var<storage, read_write> dst: array<f32>;
@group(0) @binding(1) var<uniform> n: vec4<u32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    var acc = f32(gid.x);
    for (var i = 0u; i < n.x; i++) { acc = sin(acc + f32(i)); }
    dst[gid.x] = acc;
}
"""


@pytest.mark.slow
def test_a_dispatch_past_its_time_limit_fails_and_the_device_is_reset(
    fresh: Any, device: Any
) -> None:
    # llvmpipe caps one invocation's loops at 65535 iterations, so the work is spread over
    # many invocations: about 2-3 s here, against a 250 ms limit
    out = GpuBuffer.empty(device, (64 * 300,), "float32")
    block = uniform(device, params(60000, 0, 0, 0))
    t0 = time.perf_counter()
    with pytest.raises(GpuTimeoutError, match=r"time limit of 0\.25 s") as info:
        dispatch(
            device,
            ComputeKernel(_SPIN, name="spin"),
            [("write", out.buffer), ("uniform", block)],
            (300,),
            limit_s=0.25,
        )
    assert time.perf_counter() - t0 < 2.0
    assert info.value.limit_s == 0.25
    with pytest.raises(GpuBufferError, match="was reset"):
        out.to_numpy()
    fresh_device = shared_device()
    assert fresh_device is not device
    result = run_tick(template_actor("tpl_gpu_image_grayscale"), {"in": IMG})
    result.raise_for_failures()
    assert decode_image(result.outputs["out"][0]).shape == (6, 5, 1)


def test_gpu_timeout_config_fails_the_tick(fresh: Any, device: Any) -> None:
    big = encode_image(np.zeros((1200, 1200, 4), dtype=np.uint8))
    result = run_tick(
        template_actor("tpl_gpu_image_blur"), {"in": big}, {"sigma": 20, "gpuTimeout": 0.001}
    )
    assert len(result.failures) == 1
    assert "GpuTimeoutError" in result.failures[0].error
