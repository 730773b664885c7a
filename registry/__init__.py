"""reflow.registry — a private pack registry: the server (an ASGI app over an SQLite index
and a content-addressed blob store) and its client.

Run a registry with ``reflow-registry serve``; publish, search, install and yank with
``reflow-pack``; in Python, :class:`RegistryClient` or :func:`load_from_registry`. The HTTP
API is described in ``API.md`` next to this file and served at ``/openapi.json``.

Names load on first use, so the client never imports the server's dependencies (starlette).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._app import RegistryConfig, create_app
    from ._auth import SCOPES, Authenticator
    from ._client import (
        InstalledPack,
        RegistryClient,
        default_cache_dir,
        install_pack,
    )
    from ._resolver import RegistryResolver
    from ._semver import Version, VersionRange, parse_spec
    from ._storage import Storage
    from ._storage_sqlite import LocalStorage

__all__ = [
    "SCOPES",
    "Authenticator",
    "InstalledPack",
    "LocalStorage",
    "RegistryClient",
    "RegistryConfig",
    "RegistryResolver",
    "Storage",
    "Version",
    "VersionRange",
    "create_app",
    "default_cache_dir",
    "install_pack",
    "load_from_registry",
    "parse_spec",
]

_LAZY = {
    "SCOPES": "._auth",
    "Authenticator": "._auth",
    "InstalledPack": "._client",
    "LocalStorage": "._storage_sqlite",
    "RegistryClient": "._client",
    "RegistryConfig": "._app",
    "RegistryResolver": "._resolver",
    "Storage": "._storage",
    "Version": "._semver",
    "VersionRange": "._semver",
    "create_app": "._app",
    "default_cache_dir": "._client",
    "install_pack": "._client",
    "parse_spec": "._semver",
}


def load_from_registry(
    spec: str,
    registry: str,
    *,
    trust: Any = None,
    client_options: dict[str, Any] | None = None,
    **load_options: Any,
) -> Any:
    """``load_pack("ns/name@range", registry=...)``: install (or take from the cache) the
    variant for this host, then load it with :func:`reflow.load_pack` (which verifies it once
    more against the same trust store). Returns the ``LoadedPack``.

    Defined here, where the client and pack loading meet: ``reflow._loader._packs`` uses the client
    for ``load_pack(..., registry=)``, so the client module must not import pack loading."""
    from .._loader._packs import load_pack
    from .._loader._trust import TrustStore
    from ._client import install_pack

    store = trust if isinstance(trust, TrustStore) else TrustStore(trust)
    installed = install_pack(spec, registry, trust=store, **(client_options or {}))
    return load_pack(installed.path, trust=store, **load_options)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
