"""The public names of ``reflow``: the flat namespace users import from.

STYLE.md: everything else lives in private ``reflow._*`` modules and is free to change; this
test pins the public surface so that adding or removing a name is a deliberate change.
"""

from __future__ import annotations

import importlib

import pytest

import reflow

EXPECTED = [
    "ABIVersionError",
    "Actor",
    "ActorCallContext",
    "ActorContext",
    "ActorError",
    "ActorFailure",
    "CapabilityError",
    "CircuitOpenError",
    "Collector",
    "ConfigKeyWarning",
    "DuplicateNodeError",
    "EventStream",
    "ExtismActor",
    "ExtismModule",
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
    "InvalidLimitsError",
    "LoadedPack",
    "Message",
    "MessageError",
    "NativeActor",
    "NativeLibrary",
    "Network",
    "NetworkError",
    "NetworkStateError",
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
    "Ray",
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
# durable runs (issue 14): the checkpoint stores, Every, the CheckpointError family
EXPECTED = sorted(
    [
        *EXPECTED,
        *("CheckpointStore", "SqliteCheckpointStore", "PostgresCheckpointStore"),
        *("RedisCheckpointStore", "Every", "CheckpointError", "CheckpointConfigError"),
        *("CheckpointStoreError", "CheckpointNotFoundError", "CheckpointMismatchError"),
        *("CheckpointVersionError", "CheckpointCorruptError", "CheckpointStateError"),
    ]
)
# the GPU errors and the http-api grants, exported lazily (review fixes, 2026-12-07)
GPU_ERRORS = ["GpuBufferError", "GpuError", "GpuKernelError", "GpuLimitError", "GpuTimeoutError"]
GPU_ERRORS += ["GpuUnavailableError", "NoGpuAdapterError"]
EXPECTED = sorted([*EXPECTED, *GPU_ERRORS, "HttpApiGrants"])


def test_all_is_pinned() -> None:
    assert reflow.__all__ == EXPECTED


def test_all_is_sorted_and_unique() -> None:
    assert reflow.__all__ == sorted(reflow.__all__)
    assert len(set(reflow.__all__)) == len(reflow.__all__)


@pytest.mark.parametrize("name", EXPECTED)
def test_every_name_resolves(name: str) -> None:
    assert getattr(reflow, name) is not None


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from reflow import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(EXPECTED)


def test_public_classes_live_in_private_modules() -> None:
    for name in EXPECTED:
        obj = getattr(reflow, name)
        module = getattr(obj, "__module__", None)
        if isinstance(obj, type) and module is not None:
            assert module.startswith("reflow._"), (name, module)


def test_errors_share_one_root() -> None:
    for name in EXPECTED:
        obj = getattr(reflow, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, reflow.ReflowError), name


def test_version() -> None:
    assert isinstance(reflow.__version__, str)
    assert reflow.__version__.count(".") >= 1


@pytest.mark.parametrize("module", ["reflow", "reflow.abi", "reflow.registry", "reflow.tools"])
def test_packages_import(module: str) -> None:
    importlib.import_module(module)


def test_import_reflow_stays_light() -> None:
    """Engines and pack loading are exported lazily: importing reflow loads no wasmtime."""
    import subprocess
    import sys

    code = "import sys, reflow; print('wasmtime' in sys.modules, 'zstandard' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_import_reflow_loads_no_gpu_numpy_or_httpx() -> None:
    """The GPU errors and HttpApiGrants are lazy: ``import reflow`` loads neither their
    packages nor numpy, httpx or wgpu."""
    import subprocess
    import sys

    heavy = ["reflow._gpu", "reflow._services", "numpy", "httpx", "wgpu"]
    code = f"import sys, reflow; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_gpu_errors_import_without_wgpu() -> None:
    """With wgpu missing (an import of it fails), every GPU error still resolves from
    ``reflow``, is a ReflowError, and wgpu was never imported."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['wgpu'] = None\n"
        "import reflow\n"
        f"for name in {GPU_ERRORS!r}:\n"
        "    assert issubclass(getattr(reflow, name), reflow.GpuError), name\n"
        "assert issubclass(reflow.GpuUnavailableError, reflow.NoGpuAdapterError)\n"
        "assert issubclass(reflow.GpuError, reflow.ReflowError)\n"
        "assert sys.modules['wgpu'] is None\n"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_http_api_grants_is_the_engine_class() -> None:
    from reflow._services._engine import HttpApiGrants

    assert reflow.HttpApiGrants is HttpApiGrants


@pytest.mark.parametrize("name", GPU_ERRORS)
def test_the_error_tree_docstring_lists_the_gpu_errors(name: str) -> None:
    import reflow._errors

    assert f"── {name} " in (reflow._errors.__doc__ or "")
