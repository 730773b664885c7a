"""The GPU layer's exceptions, a subtree under :class:`~reflow.ReflowError`::

    ReflowError
    └── GpuError                  the GPU runtime could not do what a GPU node asked
        ├── NoGpuAdapterError     no WebGPU adapter (or none matching REFLOW_GPU_ADAPTER)
        │   └── GpuUnavailableError wgpu is not installed, or REFLOW_GPU=off
        ├── GpuKernelError        a WGSL kernel that wgpu refuses (.kernel)
        ├── GpuLimitError         a dispatch or buffer past the device's limits
        │                         (.limit, .value, .maximum)
        ├── GpuTimeoutError       a dispatch that did not finish within its time limit (.limit_s)
        └── GpuBufferError        a GpuBuffer handle used after its device was reset or closed

``reflow`` exports them all (lazily). Errors from wgpu are translated here and nowhere else
(see ``_device.translate``).
"""

from __future__ import annotations

from .._errors import ReflowError

__all__ = [
    "GpuBufferError",
    "GpuError",
    "GpuKernelError",
    "GpuLimitError",
    "GpuTimeoutError",
    "GpuUnavailableError",
    "NoGpuAdapterError",
]

#: What to tell a user who has no adapter: the two ways to get one.
HOW_TO_GET_ONE = (
    "install a GPU driver with Vulkan, Metal or D3D12 support, or a software Vulkan driver "
    "(Debian/Ubuntu: apt-get install mesa-vulkan-drivers, which provides llvmpipe); "
    "or give the node fallback='cpu' to run its numpy twin"
)


class GpuError(ReflowError):
    """Anything the GPU runtime raises."""


class NoGpuAdapterError(GpuError):
    """No WebGPU adapter was found (or none matched the requested one)."""

    def __init__(self, message: str, *, wanted: str | None = None) -> None:
        super().__init__(message)
        self.wanted = wanted


class GpuUnavailableError(NoGpuAdapterError):
    """wgpu is not installed, or the GPU is switched off with ``REFLOW_GPU=off``."""


class GpuKernelError(GpuError):
    """A WGSL kernel that wgpu does not accept (parse, validation or pipeline error)."""

    def __init__(self, message: str, *, kernel: str = "") -> None:
        super().__init__(message)
        self.kernel = kernel


class GpuLimitError(GpuError):
    """A dispatch or buffer larger than the device allows."""

    def __init__(self, message: str, *, limit: str, value: int, maximum: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.value = value
        self.maximum = maximum


class GpuTimeoutError(GpuError, TimeoutError):
    """A dispatch that did not finish within its time limit; the device is reset."""

    def __init__(self, message: str, *, limit_s: float) -> None:
        super().__init__(message)
        self.limit_s = limit_s


class GpuBufferError(GpuError):
    """A GpuBuffer handle that can no longer be used (its device was reset or closed)."""
