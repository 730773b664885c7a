"""GPU suite set-up: skip with a clear reason where wgpu or an adapter is missing, and give
every test the process's shared device back in its default configuration."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

# Mesa warns on every device when XDG_RUNTIME_DIR is unset; a throwaway one silences it.
os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="reflow-test-xdg-"))


def _adapter_or_reason() -> str | None:
    try:
        import wgpu
    except ImportError:
        return "wgpu is not installed (pip install 'reflow[gpu]')"
    try:
        adapter = wgpu.gpu.request_adapter_sync(power_preference="high-performance")
    except Exception as exc:
        return f"no WebGPU adapter ({exc}); apt-get install mesa-vulkan-drivers gives llvmpipe"
    if adapter is None:
        return "no WebGPU adapter; apt-get install mesa-vulkan-drivers gives llvmpipe"
    return None


_REASON = _adapter_or_reason()


@pytest.fixture
def device() -> object:
    """The shared GPU device; the test is skipped, with the reason, where there is none."""
    if _REASON is not None:
        pytest.skip(_REASON)
    from reflow._gpu import shared_device

    return shared_device()


@pytest.fixture(autouse=True)
def _default_gpu(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from reflow._gpu import configure_gpu, gpu_counters

    monkeypatch.delenv("REFLOW_GPU", raising=False)
    monkeypatch.delenv("REFLOW_GPU_ADAPTER", raising=False)
    configure_gpu()
    gpu_counters().reset()
    yield
    configure_gpu()
