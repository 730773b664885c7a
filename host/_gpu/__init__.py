"""The GPU runtime (WebGPU through ``wgpu``): the process's shared device, compute kernels,
and ``GpuBuffer`` handles that keep data on the device between GPU nodes.

Private: the library's GPU templates (``reflow.library._gpu_*``) use it. ``wgpu`` is imported
only when a device is first made, so importing this package costs nothing without a GPU.
"""

from __future__ import annotations

from ._buffers import CODECS, GpuBuffer, TickTransfers, current_transfers
from ._device import (
    GpuCounters,
    GpuDevice,
    configure_gpu,
    gpu_counters,
    reset_device,
    shared_device,
)
from ._errors import (
    HOW_TO_GET_ONE,
    GpuBufferError,
    GpuError,
    GpuKernelError,
    GpuLimitError,
    GpuTimeoutError,
    GpuUnavailableError,
    NoGpuAdapterError,
)
from ._kernels import DEFAULT_LIMIT_S, ComputeKernel, check_workgroups, dispatch

__all__ = [
    "CODECS",
    "DEFAULT_LIMIT_S",
    "HOW_TO_GET_ONE",
    "ComputeKernel",
    "GpuBuffer",
    "GpuBufferError",
    "GpuCounters",
    "GpuDevice",
    "GpuError",
    "GpuKernelError",
    "GpuLimitError",
    "GpuTimeoutError",
    "GpuUnavailableError",
    "NoGpuAdapterError",
    "TickTransfers",
    "check_workgroups",
    "configure_gpu",
    "current_transfers",
    "dispatch",
    "gpu_counters",
    "reset_device",
    "shared_device",
]
