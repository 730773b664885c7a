"""The ``wgsl`` engine: a pack's WGSL compute kernel in, one template actor per manifest
template out (PACK_FORMAT.md §3.1).

Registered like the other engines, through ``reflow_pack_engine("wgsl")``
(``reflow._loader._plugins.WgslEnginePlugin``). ``load_artifact`` gets the verified bytes of
the kernel, reads its declarations and checks them against each template's
``[templates.wgsl]`` table — no GPU is needed to load a pack. wgpu compiles and validates the
kernel on the first tick that has a device (cached per device); a kernel wgpu refuses fails
that tick with ``GpuKernelError``.

Node config: ``fallback`` — ``"none"`` (default: without a GPU adapter the tick fails with
``NoGpuAdapterError``, saying how to get one) or ``"cpu"`` (the template named by the kernel's
``fallback`` runs the tick instead, with one warning per node); ``gpuTimeout``,
``gpuMaxWorkgroups``, ``gpuMaxBufferBytes`` (see :mod:`._wgsl_run`).
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._core._actor import Actor, ActorContext
from .._errors import ActorError, PackFormatError
from ..abi._manifest_wgsl import WgslKernelSpec
from ._buffers import TickTransfers
from ._device import shared_device
from ._errors import NoGpuAdapterError
from ._wgsl_run import KernelSource, run_kernel
from ._wgsl_source import check_against_manifest, decode_source, read_shader

if TYPE_CHECKING:
    from ..abi._manifest import Artifact, PackManifest, TemplateSpec

__all__ = ["WgslEngine", "WgslTemplate"]

log = logging.getLogger("reflow.gpu.wgsl")
_FALLBACKS = ("none", "cpu")
#: Config every kernel template reads besides its own (documented in describe()).
GPU_CONFIG: dict[str, dict[str, Any]] = {
    "fallback": {"type": "string", "enum": list(_FALLBACKS), "default": "none"},
    "gpuTimeout": {"type": "number", "default": 10.0},
    "gpuMaxWorkgroups": {"type": "integer", "default": 65536},
    "gpuMaxBufferBytes": {"type": "integer", "default": 256 << 20},
}


class WgslTemplate(Actor):
    """One manifest template run by a WGSL kernel (and, from ``open_node``, one node of it)."""

    execution = "worker"

    def __init__(self, spec: TemplateSpec, kernel: WgslKernelSpec, source: KernelSource) -> None:
        self.component = spec.id
        self.inports = list(spec.inports)
        self.outports = list(spec.outports)
        self.await_all_inports = spec.await_all_inports
        self.spec = spec
        self.kernel = kernel
        self.source = source
        self._fallbacks: dict[str, Actor] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<WgslTemplate {self.component!r} of {self.source.pack!r}>"

    def open_node(self, node_id: str, config: dict[str, Any]) -> Actor:
        """Each node gets its own actor: its CPU fallback (opened on first use) and its
        one-time warning belong to that node alone."""
        return WgslTemplate(self.spec, self.kernel, self.source)

    def describe(self) -> dict[str, Any]:
        """Ports, config and the kernel's bindings (``describe_template`` shows this)."""
        return {
            "id": self.spec.id,
            "description": self.spec.description,
            "engine": "wgsl",
            "pack": self.source.pack,
            "kernel": self.source.path,
            "sha256": self.source.sha256,
            "inports": list(self.inports),
            "outports": list(self.outports),
            "await_all_inports": self.await_all_inports,
            "config_schema": dict(self.spec.config_schema),
            "gpu_config": {k: dict(v) for k, v in GPU_CONFIG.items()},
            "wgsl": self.kernel.describe(),
        }

    def run(self, ctx: ActorContext) -> None:
        fallback = (ctx.config or {}).get("fallback", "none")
        if fallback not in _FALLBACKS:
            raise ActorError(
                f"node {ctx.node!r} ({ctx.component}): config 'fallback' must be one of "
                f"{', '.join(map(repr, _FALLBACKS))}, got {fallback!r}",
                node=ctx.node,
                component=ctx.component,
            )
        try:
            device = shared_device()
        except NoGpuAdapterError as exc:
            if fallback != "cpu":
                raise type(exc)(
                    f"node {ctx.node!r} ({ctx.component}, fallback='none'): {exc}",
                    wanted=exc.wanted,
                ) from exc
            self._run_fallback(ctx, exc)
            return
        with TickTransfers() as moved:
            outputs = run_kernel(ctx, device, self.source, self.kernel, self.spec.config_schema)
        hub = ctx._hub
        for msg in outputs.values():
            if msg["type"] == "Gpu":
                msg["data"].origin = (hub, ctx.node, ctx.component)
        if moved.any and hub.active:
            hub.publish(
                "GpuTransfer",
                ctx.node,
                ctx.component,
                moved.uploads,
                moved.readbacks,
                moved.bytes_up,
                moved.bytes_down,
            )
        ctx.done(outputs)

    def _run_fallback(self, ctx: ActorContext, exc: NoGpuAdapterError) -> None:
        target = self.kernel.fallback
        if not target:
            raise type(exc)(
                f"node {ctx.node!r} ({ctx.component}, fallback='cpu'): {exc}; and the kernel "
                "declares no CPU template to fall back to (templates.wgsl.fallback)",
                wanted=exc.wanted,
            ) from exc
        with self._lock:
            actor = self._fallbacks.get(ctx.node)
            first = ctx.node not in self._warned
            self._warned.add(ctx.node)
        if actor is None:
            from .._core._catalog import lookup_template

            template = lookup_template(target)
            if template is None:
                raise ActorError(
                    f"node {ctx.node!r} ({ctx.component}): no GPU adapter, and its CPU "
                    f"fallback template {target!r} is not in the catalog (load the pack or "
                    "plugin that provides it)",
                    node=ctx.node,
                    component=ctx.component,
                ) from exc
            if inspect.iscoroutinefunction(template.run):
                raise ActorError(
                    f"node {ctx.node!r} ({ctx.component}): CPU fallback {target!r} is an "
                    "async actor; a kernel's fallback must run synchronously",
                    node=ctx.node,
                    component=ctx.component,
                )
            actor = template.open_node(ctx.node, dict(ctx.config or {}))
            with self._lock:
                actor = self._fallbacks.setdefault(ctx.node, actor)
        if first:
            log.warning(
                "node %r (%s): no GPU, running CPU template %s instead: %s",
                ctx.node,
                ctx.component,
                target,
                exc,
            )
        actor.run(ctx)

    def close(self) -> None:
        with self._lock:
            actors, self._fallbacks = list(self._fallbacks.values()), {}
        for actor in actors:
            actor.close()


class WgslEngine:
    """The engine for artifacts of ``kind = "wgsl"``: WGSL compute kernels."""

    kind = "wgsl"

    def load_artifact(
        self,
        path: Path,
        *,
        artifact: Artifact,
        templates: Sequence[TemplateSpec],
        manifest: PackManifest,
        grants: Any,
        data: bytes | None = None,
    ) -> Mapping[str, Actor]:
        what = f"pack {manifest.name!r} kernel {artifact.path}"
        if data is None:
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise PackFormatError(
                    f"{what}: cannot read {path}: {exc.strerror}",
                    pack=manifest.name,
                    member=artifact.path,
                ) from exc
        raw = data
        text = decode_source(raw, what)
        info = read_shader(text, what)
        sha = hashlib.sha256(raw).hexdigest()
        out: dict[str, Actor] = {}
        for spec in templates:
            if spec.wgsl is None:  # the manifest check refuses this; an engine makes sure
                raise PackFormatError(
                    f"pack {manifest.name!r}: template {spec.id!r} has no [templates.wgsl] table",
                    pack=manifest.name,
                    member=artifact.path,
                )
            source = KernelSource(text, sha, manifest.name, artifact.path, spec.id)
            check_against_manifest(info, spec.wgsl, source.what)
            out[spec.id] = WgslTemplate(spec, spec.wgsl, source)
        return out
