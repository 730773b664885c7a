"""The pluggy hook specifications of reflow — every hook a plugin may implement.

Implement a hook with ``@reflow.hookspecs.hookimpl`` on a module or object and register it
(``reflow._loader._plugins.register_plugin(obj)``) or expose it through the ``reflow.plugins`` entry
point group. Pure-Python actor libraries may instead expose an object through the
``reflow.templates`` entry point group: a plugin implementing :func:`reflow_templates`, a
mapping ``{template_id: Actor}``, or a callable returning one.

The host's own engines (``wasm`` via wasmtime, ``native`` via ctypes) are registered as
plugins through :func:`reflow_pack_engine`, exactly as a third-party engine would be.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import pluggy

if TYPE_CHECKING:
    from ._core._actor import Actor
    from ._core._policies_base import Policy
    from .abi._manifest import Artifact, PackManifest, TemplateSpec

__all__ = [
    "PROJECT",
    "ArtifactEngine",
    "hookimpl",
    "hookspec",
    "reflow_after_pack_load",
    "reflow_before_pack_load",
    "reflow_network_event",
    "reflow_pack_engine",
    "reflow_policy",
    "reflow_resolve_pack",
    "reflow_secret",
    "reflow_templates",
]

PROJECT = "reflow"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@runtime_checkable
class ArtifactEngine(Protocol):
    """What :func:`reflow_pack_engine` returns: turns one verified artifact file into actors.

    ``load_artifact`` gets the artifact's path in the pack cache (already re-hashed), the
    manifest's templates implemented by it and the capabilities the user granted; it returns
    ``{template_id: Actor}`` with one actor per template (template actors: the network calls
    ``open_node`` on them per node). An engine that also accepts ``data: bytes | None = None``
    is given the verified bytes and should load those, never re-reading ``path`` (which
    someone with write access to the cache could swap after it was hashed); the built-in
    engines do.
    """

    kind: str

    def load_artifact(
        self,
        path: Path,
        *,
        artifact: Artifact,
        templates: Sequence[TemplateSpec],
        manifest: PackManifest,
        grants: Any,
    ) -> Mapping[str, Actor]: ...


@hookspec(firstresult=True)
def reflow_pack_engine(kind: str) -> ArtifactEngine | None:
    """Return an engine for artifacts of ``kind`` (``"wasm"``, ``"native"``, or a new kind
    such as ``"extism"``), or ``None``. The most recently registered plugin is asked first,
    so a plugin can replace a built-in engine."""


@hookspec(firstresult=True)
def reflow_resolve_pack(name: str, version: str | None) -> Path | None:
    """``load_pack(name)`` or ``load_pack("name@range")`` found no installed pack: return the
    path of a ``.rflpack`` to load (a registry client downloads it here), or ``None``. The
    file is verified like any other."""


@hookspec(firstresult=True)
def reflow_secret(pack: str, scheme: str) -> str | None:
    """Return the secret of security scheme ``scheme`` for API-service pack ``pack`` (an API
    key, a token, ``user:password`` for basic, ``client_id:client_secret`` for OAuth2 client
    credentials), or ``None`` to let the next provider answer (at last the environment
    variable ``REFLOW_SECRET_<PACK>_<SCHEME>``). The value never reaches pack code, messages,
    events or logs."""


@hookspec
def reflow_before_pack_load(manifest: PackManifest, source: str, signer: str | None) -> str | None:
    """Called after a pack verified and before any of its code is loaded. Return a reason
    (a string) to veto the load; ``None`` to allow it. ``signer`` is the trusted key id, or
    ``None`` for a pack loaded with ``allow_unsigned=True``."""


@hookspec
def reflow_after_pack_load(pack: Any) -> None:
    """Called once a pack's templates are in the catalog (``pack`` is a ``LoadedPack``)."""


@hookspec
def reflow_templates() -> Mapping[str, Actor] | None:
    """Contribute Python actors to the catalog: ``{template_id: Actor}``."""


@hookspec
def reflow_network_event(event: dict[str, Any]) -> None:
    """Observe one network trace event (``{"_type": "ActorCompleted", ...}``). Called from a
    forwarding thread, never from the scheduler: a slow observer loses events, it does not
    slow the graph."""


@hookspec(firstresult=True)
def reflow_policy(name: str, config: Any) -> Policy | None:
    """Return a policy object (a ``reflow._core._policies_base.Policy``) for a node policy
    key reflow does not know, ``name``, declared with ``config`` (the key's value), or
    ``None`` if ``name`` is not yours. Raise ``PolicyError`` for a config you cannot use. Its
    ``around(call, proceed)`` wraps each tick of the node, inside the cache, outside retries."""
