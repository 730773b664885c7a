"""WGSL compute kernels: compiled once per device (cached by the source's sha256), bound to
buffers, dispatched within the device's limits and a time limit.

A kernel's bindings are all in group 0, numbered in the order the dispatch lists them; each
is ``"read"`` (read-only storage), ``"write"`` (read-write storage) or ``"uniform"``. The
bind-group layout is built from that list, not inferred, so a kernel that leaves a binding
unused still binds.

Bounds: every workgroup count must be 1..``max-compute-workgroups-per-dimension`` (an error
names the limit and the value); a dispatch's submit and its wait for completion run on the
device's waiter thread with a deadline (``limit_s``), past which the tick fails with
GpuTimeoutError and the device is reset (WebGPU cannot cancel work it was given).

Profiling: :func:`observe_dispatches` installs a callback told each dispatch's kernel name and
time (GPU timestamps around the pass where the device has ``timestamp-query``, else submit to
completion on the host). With none installed, the one cost is a check for it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from typing import Any

from ._device import GpuDevice, gpu_counters, translate
from ._errors import GpuKernelError, GpuLimitError

__all__ = ["DEFAULT_LIMIT_S", "ComputeKernel", "DispatchObserver", "dispatch", "observe_dispatches"]

#: Default time limit of one dispatch, in seconds (a node's ``gpuTimeout`` config overrides).
DEFAULT_LIMIT_S = 10.0
_KINDS = ("read", "write", "uniform")

#: ``observer(kernel name, seconds, how)``: ``how`` is ``"timestamp-query"`` (the GPU's
#: timestamps at the start and end of the compute pass) or ``"blocking wait"`` (host time from
#: submit until the queue has finished it).
DispatchObserver = Callable[[str, float, str], None]
_observer: DispatchObserver | None = None


def observe_dispatches(observer: DispatchObserver | None) -> DispatchObserver | None:
    """Install ``observer`` (None: remove it) for every later dispatch in the process; returns
    the one it replaces. For benchmarks and profiling: timestamps add a query set and a
    16-byte readback to each dispatch while an observer is installed."""
    global _observer
    previous, _observer = _observer, observer
    return previous


class ComputeKernel:
    """One WGSL compute entry point. ``name`` is what errors call it."""

    __slots__ = ("entry", "name", "sha256", "source")

    def __init__(self, source: str, *, name: str, entry: str = "main") -> None:
        if not isinstance(source, str) or not source.strip():
            raise GpuKernelError(
                f"kernel {name!r}: WGSL source must be non-empty text", kernel=name
            )
        self.source = source
        self.name = name
        self.entry = entry
        self.sha256 = hashlib.sha256(source.encode()).hexdigest()

    def __repr__(self) -> str:
        return f"<ComputeKernel {self.name!r} {self.sha256[:12]}>"


def _pipeline(device: GpuDevice, kernel: ComputeKernel, kinds: tuple[str, ...]) -> Any:
    key = (kernel.sha256, kernel.entry + "|" + ",".join(kinds))
    cached = device.pipelines.get(key)
    if cached is not None:
        return cached
    wgpu = device.wgpu
    types = {
        "read": {"type": wgpu.BufferBindingType.read_only_storage},
        "write": {"type": wgpu.BufferBindingType.storage},
        "uniform": {"type": wgpu.BufferBindingType.uniform},
    }
    try:
        module = device.device.create_shader_module(code=kernel.source, label=kernel.name)
        layout = device.device.create_bind_group_layout(
            entries=[
                {"binding": i, "visibility": wgpu.ShaderStage.COMPUTE, "buffer": types[k]}
                for i, k in enumerate(kinds)
            ]
        )
        pipeline = device.device.create_compute_pipeline(
            layout=device.device.create_pipeline_layout(bind_group_layouts=[layout]),
            compute={"module": module, "entry_point": kernel.entry},
        )
    except Exception as exc:  # naga / validation errors: the kernel's fault, named
        raise GpuKernelError(
            f"kernel {kernel.name!r} (sha256 {kernel.sha256[:12]}) was refused by wgpu: "
            f"{str(exc).strip()[:2000]}",
            kernel=kernel.name,
        ) from exc
    device.pipelines[key] = (pipeline, layout)
    return pipeline, layout


def check_workgroups(device: GpuDevice, workgroups: Sequence[int], what: str) -> tuple[int, ...]:
    """``workgroups`` as (x, y, z), refusing counts outside 1..the device's limit."""
    limit = device.limits["max-compute-workgroups-per-dimension"]
    counts = tuple(int(n) for n in workgroups) + (1,) * (3 - len(workgroups))
    if len(counts) != 3:
        raise GpuLimitError(
            f"{what}: a dispatch has at most 3 workgroup counts, got {len(counts)}",
            limit="dimensions",
            value=len(counts),
            maximum=3,
        )
    for axis, n in zip("xyz", counts, strict=True):
        if not 1 <= n <= limit:
            raise GpuLimitError(
                f"{what}: {n} workgroups along {axis} is outside 1..{limit} "
                f"(the device's max-compute-workgroups-per-dimension); use a smaller input",
                limit="max-compute-workgroups-per-dimension",
                value=n,
                maximum=limit,
            )
    return counts


def dispatch(
    device: GpuDevice,
    kernel: ComputeKernel,
    bindings: Sequence[tuple[str, Any]],
    workgroups: Sequence[int],
    *,
    limit_s: float = DEFAULT_LIMIT_S,
) -> None:
    """Run ``kernel`` once over ``workgroups`` with ``bindings`` (``(kind, wgpu buffer)`` in
    binding order), and wait until it has finished (within ``limit_s`` seconds)."""
    kinds = tuple(k for k, _ in bindings)
    bad = [k for k in kinds if k not in _KINDS]
    if bad:
        raise GpuKernelError(
            f"kernel {kernel.name!r}: binding kind {bad[0]!r} is not one of {', '.join(_KINDS)}",
            kernel=kernel.name,
        )
    with device.lock:
        device.check_open()
        counts = check_workgroups(device, workgroups, f"kernel {kernel.name!r}")
        pipeline, layout = _pipeline(device, kernel, kinds)
        try:
            group = device.device.create_bind_group(
                layout=layout,
                entries=[
                    {"binding": i, "resource": {"buffer": buf, "offset": 0, "size": buf.size}}
                    for i, (_, buf) in enumerate(bindings)
                ],
            )
            observer = _observer
            stamps = _timestamps(device) if observer is not None and device.timestamps else None
            encoder = device.device.create_command_encoder()
            if stamps is None:
                cpass = encoder.begin_compute_pass()
            else:
                cpass = encoder.begin_compute_pass(
                    timestamp_writes={
                        "query_set": stamps[0],
                        "beginning_of_pass_write_index": 0,
                        "end_of_pass_write_index": 1,
                    }
                )
            cpass.set_pipeline(pipeline)
            cpass.set_bind_group(0, group)
            cpass.dispatch_workgroups(*counts)
            cpass.end()
            if stamps is not None:
                encoder.resolve_query_set(stamps[0], 0, 2, stamps[1], 0)
            commands = encoder.finish()
        except Exception as exc:
            raise translate(exc, f"kernel {kernel.name!r}") from exc

        def run() -> float:
            t0 = time.perf_counter()
            device.queue.submit([commands])
            device.settle()
            if stamps is not None:
                start, end = memoryview(device.queue.read_buffer(stamps[1])).cast("Q")[:2]
                # Raw ticks: wgpu-py 0.32 exposes no timestamp period; Vulkan counts 1 ns a
                # tick on llvmpipe and NVIDIA (checked against wall time on llvmpipe).
                return (end - start) * 1e-9
            return time.perf_counter() - t0

        seconds = device.wait(
            run, limit_s, f"kernel {kernel.name!r} ({'x'.join(map(str, counts))} groups)"
        )
        gpu_counters().dispatches += 1
        if observer is not None:
            observer(kernel.name, seconds, "blocking wait" if stamps is None else "timestamp-query")


def _timestamps(device: GpuDevice) -> tuple[Any, Any]:
    """A two-entry timestamp query set and the buffer it resolves into."""
    usage = device.wgpu.BufferUsage
    query_set = device.device.create_query_set(type="timestamp", count=2)
    resolved = device.device.create_buffer(size=16, usage=usage.QUERY_RESOLVE | usage.COPY_SRC)
    return query_set, resolved
