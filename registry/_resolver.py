"""A pluggy plugin that lets ``load_pack("namespace/name@range")`` fetch from a registry.

``load_pack`` asks the ``reflow_resolve_pack`` hook when a name is not installed (a range
never matches an installed directory literally, so ranges always reach it). The resolver
installs the pack through :class:`~reflow.registry.RegistryClient` — verified, cached, with
the cache answering when the registry is unreachable — and hands back the file, which
``load_pack`` then verifies once more against its own trust store::

    from reflow._loader._plugins import register_plugin
    register_plugin(RegistryResolver("http://127.0.0.1:8700"))
    reflow.load_pack("acme/tools@^1.2")

Names without a namespace are not registry names: the resolver answers None for them, and
for packs the registry does not have, so ``load_pack`` reports its usual PackNotFoundError.
Signature, integrity and connection failures are raised, never turned into "not found".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._errors import RegistryNotFoundError
from ..hookspecs import hookimpl
from ._client import RegistryClient

__all__ = ["RegistryResolver"]


class RegistryResolver:
    """Resolve pack names through the registry at ``url``; ``client_options`` go to
    :class:`RegistryClient` (``token``, ``trust``, ``cache_dir``, ``offline``, ``insecure``,
    ``deadline``, ``notify``, ...). Each resolve is one client operation: bounded by its
    deadline, answered from the cache (and said so) when the registry cannot answer."""

    def __init__(self, url: str, **client_options: Any) -> None:
        self.url = url
        self.client_options = client_options

    def __repr__(self) -> str:
        return f"RegistryResolver({self.url!r})"

    @hookimpl
    def reflow_resolve_pack(self, name: str, version: str | None) -> Path | None:
        if "/" not in name:
            return None
        spec = f"{name}@{version}" if version else name
        with RegistryClient(self.url, **self.client_options) as client:
            try:
                return client.install(spec).path
            except RegistryNotFoundError:
                return None
