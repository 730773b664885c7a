"""Reflow for Python: a flow-based actor runtime.

Write actors (``class Doubler(Actor)``), wire them into a :class:`Network` and ``run()`` it.
The public names below mirror the ``offbit_reflow`` SDK; everything in ``reflow._*`` modules
is private and may change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._core import _catalog, _network, _policies
from ._core._actor import Actor, ActorCallContext, ActorContext
from ._core._catalog import register_template, template_actor, template_list
from ._core._checkpoint import Every
from ._core._checkpoint_remote import PostgresCheckpointStore, RedisCheckpointStore
from ._core._checkpoint_store import CheckpointStore, SqliteCheckpointStore
from ._core._events import EventStream
from ._core._graph import Graph
from ._core._graph_compose import compose_graphs
from ._core._messages import Message
from ._core._network import Collector, Network, RunSummary
from ._core._nodes import ActorFailure
from ._core._streams import Stream, StreamReader
from ._core._subgraph import SubgraphActor, SubgraphBuilder
from ._errors import (
    ABIVersionError,
    ActorError,
    CapabilityError,
    CheckpointConfigError,
    CheckpointCorruptError,
    CheckpointError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    CheckpointStateError,
    CheckpointStoreError,
    CheckpointVersionError,
    CircuitOpenError,
    ConfigKeyWarning,
    DuplicateNodeError,
    GraphError,
    GraphFormatError,
    GuestABIError,
    GuestBuildError,
    GuestLimitError,
    GuestMemoryError,
    GuestOutputError,
    GuestTimeout,
    GuestTrap,
    HttpApiError,
    InvalidLimitsError,
    MessageError,
    NetworkError,
    NetworkStateError,
    OpenApiError,
    OutputLimitError,
    PackError,
    PackFormatError,
    PackIntegrityError,
    PackNotFoundError,
    PackSignatureError,
    PackVetoError,
    PlacementError,
    PlatformError,
    PolicyError,
    PortTypeError,
    ReflowError,
    RegistryAuthError,
    RegistryError,
    RegistryHTTPError,
    RegistryIntegrityError,
    RegistryNotFoundError,
    RegistrySignatureError,
    RegistryUnavailableError,
    RemoteTickError,
    RunTimeout,
    SandboxError,
    StreamError,
    TemplateConflictError,
    TickStateError,
    TickTimeoutError,
    UnknownComponentError,
    UnknownNodeError,
    UnknownPortError,
    UnsafeArchiveError,
    UntrustedKeyError,
    WorkerLostError,
)
from ._ray_placement import Ray

if TYPE_CHECKING:
    from collections.abc import Callable

__version__ = "0.1.0"

__all__ = [
    "ABIVersionError",
    "Actor",
    "ActorCallContext",
    "ActorContext",
    "ActorError",
    "ActorFailure",
    "CapabilityError",
    "CheckpointConfigError",
    "CheckpointCorruptError",
    "CheckpointError",
    "CheckpointMismatchError",
    "CheckpointNotFoundError",
    "CheckpointStateError",
    "CheckpointStore",
    "CheckpointStoreError",
    "CheckpointVersionError",
    "CircuitOpenError",
    "Collector",
    "ConfigKeyWarning",
    "DuplicateNodeError",
    "EventStream",
    "Every",
    "ExtismActor",
    "ExtismModule",
    "GpuBufferError",
    "GpuError",
    "GpuKernelError",
    "GpuLimitError",
    "GpuTimeoutError",
    "GpuUnavailableError",
    "Graph",
    "GraphError",
    "GraphFormatError",
    "GuestABIError",
    "GuestBuildError",
    "GuestGrants",
    "GuestLimitError",
    "GuestLimits",
    "GuestMemoryError",
    "GuestOutputError",
    "GuestTimeout",
    "GuestTrap",
    "HttpApiError",
    "HttpApiGrants",
    "InvalidLimitsError",
    "LoadedPack",
    "Message",
    "MessageError",
    "NativeActor",
    "NativeLibrary",
    "Network",
    "NetworkError",
    "NetworkStateError",
    "NoGpuAdapterError",
    "OpenApiError",
    "OutputLimitError",
    "PackError",
    "PackFormatError",
    "PackInspection",
    "PackIntegrityError",
    "PackNotFoundError",
    "PackSignatureError",
    "PackVetoError",
    "PlacementError",
    "PlatformError",
    "PolicyError",
    "PortTypeError",
    "PostgresCheckpointStore",
    "Ray",
    "RedisCheckpointStore",
    "ReflowError",
    "RegistryAuthError",
    "RegistryError",
    "RegistryHTTPError",
    "RegistryIntegrityError",
    "RegistryNotFoundError",
    "RegistrySignatureError",
    "RegistryUnavailableError",
    "RemoteTickError",
    "RunSummary",
    "RunTimeout",
    "SandboxError",
    "SqliteCheckpointStore",
    "Stream",
    "StreamError",
    "StreamReader",
    "SubgraphActor",
    "SubgraphBuilder",
    "TemplateConflictError",
    "TickStateError",
    "TickTimeoutError",
    "TrustStore",
    "UnknownComponentError",
    "UnknownNodeError",
    "UnknownPortError",
    "UnsafeArchiveError",
    "UntrustedKeyError",
    "WasmActor",
    "WasmEngine",
    "WasmModule",
    "WorkerLostError",
    "__version__",
    "compose_graphs",
    "default_engine",
    "inspect_pack",
    "installed_packs",
    "list_packs",
    "load_pack",
    "pack_abi_version",
    "register_template",
    "template_actor",
    "template_list",
    "unload_pack",
]

# Engines and pack loading import wasmtime, zstandard, cryptography; the GPU errors' package
# numpy (wgpu only when a device is made), HttpApiGrants httpx: load them on first use so
# ``import reflow`` stays light.
_LAZY = {
    "ExtismActor": "._sandbox._extism_engine",
    "ExtismModule": "._sandbox._extism_engine",
    "GuestGrants": "._sandbox._guest_host",
    "GuestLimits": "._sandbox._guest_host",
    "GpuBufferError": "._gpu._errors",
    "GpuError": "._gpu._errors",
    "GpuKernelError": "._gpu._errors",
    "GpuLimitError": "._gpu._errors",
    "GpuTimeoutError": "._gpu._errors",
    "GpuUnavailableError": "._gpu._errors",
    "HttpApiGrants": "._services._engine",
    "LoadedPack": "._loader._packs",
    "NativeActor": "._sandbox._native_engine",
    "NativeLibrary": "._sandbox._native_engine",
    "NoGpuAdapterError": "._gpu._errors",
    "PackInspection": "._loader._packs",
    "TrustStore": "._loader._trust",
    "WasmActor": "._sandbox._wasm_engine",
    "WasmEngine": "._sandbox._wasm_engine",
    "WasmModule": "._sandbox._wasm_engine",
    "default_engine": "._sandbox._wasm_engine",
    "inspect_pack": "._loader._packs",
    "installed_packs": "._loader._packs",
    "list_packs": "._loader._packs",
    "load_pack": "._loader._packs",
    "pack_abi_version": ".abi._version",
    "unload_pack": "._loader._packs",
}


def _load_plugin_templates() -> object:
    from ._loader._plugins import load_plugin_templates  # pluggy and entry points: on first use

    return load_plugin_templates()


def _observe_network(subscribe: Callable[[], EventStream]) -> None:
    """Forward a network's events to plugins' ``reflow_network_event`` hooks, if any plugin
    implements one (``subscribe`` is the network's ``events``)."""
    from ._loader._plugins import forward_network_events, observes_network_events

    if observes_network_events():
        forward_network_events(subscribe())


_catalog.set_plugin_loader(_load_plugin_templates)
_network.set_network_observer(_observe_network)


def _plugin_policy(name: str, config: object) -> object:
    """A plugin's policy object for an unknown node-policy key (``reflow_policy`` hook)."""
    from ._loader._plugins import plugin_manager

    return plugin_manager().hook.reflow_policy(name=name, config=config)


_policies.set_policy_plugins(_plugin_policy)


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'reflow' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
