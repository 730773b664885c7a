"""The plugin manager: pluggy wiring for the hooks in :mod:`reflow.hookspecs`.

One process-wide :class:`pluggy.PluginManager`, created on first use. It registers the host's
own engines as plugins (``reflow.engine.wasm``, ``reflow.engine.native`` — thin adapters that
import their engine lazily, so importing reflow never needs wasmtime), then third-party plugins
from the ``reflow.plugins`` entry point group. Templates from ``reflow.templates`` entry points
and from ``reflow_templates`` hooks are put in the catalog by :func:`load_plugin_templates`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from .. import hookspecs
from .._core import _catalog
from .._core._actor import Actor
from .._core._catalog import register_template
from .._core._events import EventStream
from .._errors import PackError, TemplateConflictError
from ..hookspecs import ArtifactEngine, hookimpl

if TYPE_CHECKING:
    from ..abi._manifest import Artifact, PackManifest, TemplateSpec

__all__ = [
    "EngineForKind",
    "ExtismEnginePlugin",
    "HttpApiEnginePlugin",
    "NativeEnginePlugin",
    "WasmEnginePlugin",
    "WgslEnginePlugin",
    "engine_for",
    "forward_network_events",
    "load_plugin_templates",
    "observes_network_events",
    "plugin_manager",
    "register_plugin",
    "reset_plugin_manager",
    "template_owner",
    "unregister_plugin",
]

log = logging.getLogger("reflow.plugins")

PLUGINS_GROUP = "reflow.plugins"
TEMPLATES_GROUP = "reflow.templates"

_lock = threading.RLock()
_pm: pluggy.PluginManager | None = None


class EngineForKind:
    """Base of engine plugins: answers ``reflow_pack_engine`` for its own ``kind``."""

    kind = ""

    @hookimpl
    def reflow_pack_engine(self, kind: str) -> ArtifactEngine | None:
        return self if kind == self.kind else None  # type: ignore[return-value]


class WasmEnginePlugin(EngineForKind):
    """Built-in engine for ``kind = "wasm"``: the wasmtime sandbox
    (reflow._sandbox._wasm_engine)."""

    kind = "wasm"

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
        """``data``: the artifact's verified bytes (the pack loader passes them; the file at
        ``path`` is not read again then)."""
        from .._sandbox._wasm_engine import default_engine

        wasm = data if data is not None else path
        module = default_engine().load(wasm, name=f"{manifest.name}:{artifact.entry}")
        return {t.id: module.actor(t.id, grants=grants) for t in templates}


class NativeEnginePlugin(EngineForKind):
    """Built-in engine for ``kind = "native"``: shared libraries via ctypes. NOT sandboxed;
    the pack loader only hands it artifacts of verified, trusted packs."""

    kind = "native"

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
        """``data``: the artifact's verified bytes; the library is loaded from a private
        copy of them, never from ``path`` (which may change after it was verified)."""
        from .._sandbox._native_engine import NativeLibrary

        lib = NativeLibrary(path, data=data)
        return {t.id: lib.actor(t.id, grants=grants) for t in templates}


class ExtismEnginePlugin(EngineForKind):
    """Built-in engine for ``kind = "extism"``: Extism plugins, sandboxed
    (reflow._sandbox._extism_engine.load_extism_artifact says how templates map to exports)."""

    kind = "extism"

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
        from .._sandbox._extism_engine import load_extism_artifact

        return load_extism_artifact(
            path,
            artifact=artifact,
            templates=templates,
            manifest=manifest,
            grants=grants,
            data=data,
        )


class HttpApiEnginePlugin(EngineForKind):
    """Built-in engine for ``kind = "http-api"``: operation tables of API-service packs
    (reflow._services; abi/HTTP_API.md)."""

    kind = "http-api"

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
        from .._services import HttpApiEngine
        from .._services._auth import set_secret_hook

        set_secret_hook(_ask_secret_hooks)
        return HttpApiEngine().load_artifact(
            path,
            artifact=artifact,
            templates=templates,
            manifest=manifest,
            grants=grants,
            data=data,
        )


class WgslEnginePlugin(EngineForKind):
    """Built-in engine for ``kind = "wgsl"``: WGSL compute kernels run on the GPU
    (reflow._gpu._wgsl_engine; PACK_FORMAT.md §3.1). Loading needs no GPU; a tick does."""

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
        from .._gpu._wgsl_engine import WgslEngine

        return WgslEngine().load_artifact(
            path,
            artifact=artifact,
            templates=templates,
            manifest=manifest,
            grants=grants,
            data=data,
        )


def _ask_secret_hooks(pack: str, scheme: str) -> str | None:
    value = plugin_manager().hook.reflow_secret(pack=pack, scheme=scheme)
    return value if isinstance(value, str) else None


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager (built-in engines and entry-point plugins loaded)."""
    global _pm
    with _lock:
        if _pm is None:
            pm = pluggy.PluginManager(hookspecs.PROJECT)
            pm.add_hookspecs(hookspecs)
            pm.register(WasmEnginePlugin(), name="reflow.engine.wasm")
            pm.register(NativeEnginePlugin(), name="reflow.engine.native")
            pm.register(ExtismEnginePlugin(), name="reflow.engine.extism")
            pm.register(HttpApiEnginePlugin(), name="reflow.engine.http-api")
            pm.register(WgslEnginePlugin(), name="reflow.engine.wgsl")
            from ._sdk_ids import SdkAliasPlugin  # offbit_reflow's api_* ids

            pm.register(SdkAliasPlugin(), name="reflow.compat.sdk-api-ids")
            from ..library import BuiltinLibraryPlugin  # numpy/httpx load on first use

            pm.register(BuiltinLibraryPlugin(), name="reflow.library")
            try:
                pm.load_setuptools_entrypoints(PLUGINS_GROUP)
            except Exception as exc:  # a broken third-party plugin must not break reflow
                log.warning("could not load a %s entry point: %s", PLUGINS_GROUP, exc)
            _pm = pm
        return _pm


def reset_plugin_manager() -> None:
    """Forget the plugin manager (tests); the next use builds a fresh one."""
    global _pm
    with _lock:
        _pm = None


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register ``plugin`` (a module or object with ``@hookimpl`` methods); return its name."""
    registered = plugin_manager().register(plugin, name=name)
    if registered is None:
        raise PackError(f"plugin {name or plugin!r} is blocked or already registered")
    return registered


def unregister_plugin(plugin: object | str) -> None:
    pm = plugin_manager()
    if isinstance(plugin, str):
        pm.unregister(name=plugin)
    else:
        pm.unregister(plugin)


def engine_for(kind: str) -> ArtifactEngine:
    """The engine a plugin contributes for artifacts of ``kind``; PackError if none does."""
    engine = plugin_manager().hook.reflow_pack_engine(kind=kind)
    if engine is None:
        known = sorted(
            {
                k
                for impl in plugin_manager().hook.reflow_pack_engine.get_hookimpls()
                for k in [getattr(impl.plugin, "kind", None)]
                if isinstance(k, str)
            }
        )
        raise PackError(
            f"no engine for artifacts of kind {kind!r}; engines: {', '.join(known) or 'none'} "
            "(install the plugin that provides it)"
        )
    return engine


def template_owner(template_id: str) -> str | None:
    """Who provides ``template_id`` in the catalog (a pack name, ``plugin:...``), if anyone."""
    return _catalog.template_owner(template_id)


def before_pack_load(manifest: PackManifest, source: str, signer: str | None) -> None:
    """Ask every ``reflow_before_pack_load`` hook; the first veto raises PackVetoError."""
    from .._errors import PackVetoError

    caller = plugin_manager().hook.reflow_before_pack_load
    # Called one by one (newest first, as pluggy would) so the veto can name its plugin.
    for impl in reversed(caller.get_hookimpls()):
        reason = impl.function(manifest=manifest, source=source, signer=signer)
        if reason is not None:
            raise PackVetoError(
                f"plugin {impl.plugin_name!r} refused to load pack {manifest.name!r} "
                f"{manifest.version}: {reason}",
                pack=manifest.name,
                plugin=impl.plugin_name,
                reason=str(reason),
            )


def _entry_point_templates() -> list[tuple[str, Mapping[str, Actor]]]:
    out = []
    for ep in entry_points(group=TEMPLATES_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:
            log.warning("cannot load %s entry point %r: %s", TEMPLATES_GROUP, ep.name, exc)
            continue
        if hasattr(obj, "reflow_templates"):
            pm = plugin_manager()
            if pm.get_plugin(f"{TEMPLATES_GROUP}:{ep.name}") is None:
                pm.register(obj, name=f"{TEMPLATES_GROUP}:{ep.name}")
            continue
        value = obj() if callable(obj) and not isinstance(obj, Mapping) else obj
        if isinstance(value, Mapping):
            out.append((f"{TEMPLATES_GROUP}:{ep.name}", value))
        else:
            log.warning(
                "%s entry point %r gave %s, not a mapping of actors",
                TEMPLATES_GROUP,
                ep.name,
                type(value).__name__,
            )
    return out


def load_plugin_templates() -> list[str]:
    """Put every plugin-contributed template in the catalog; return their ids.

    Idempotent. A template id that another owner (a pack, another plugin) already provides
    raises TemplateConflictError naming both.
    """
    pm = plugin_manager()
    sources = _entry_point_templates()
    for impl in pm.hook.reflow_templates.get_hookimpls():
        value = impl.function()
        if isinstance(value, Mapping) and value:
            sources.append((f"plugin:{impl.plugin_name}", value))
    added = []
    for owner, templates in sources:
        for tid, actor in templates.items():
            if not isinstance(actor, Actor):
                raise PackError(
                    f"{owner}: template {tid!r} is a {type(actor).__name__}, not an Actor"
                )
            prev = template_owner(tid)
            if prev is not None and prev != owner:
                raise TemplateConflictError(
                    f"template id {tid!r} from {owner} is already provided by {prev}",
                    template=tid,
                    owner=prev,
                )
            register_template(tid, actor, owner=owner)
            added.append(tid)
    return sorted(added)


def observes_network_events() -> bool:
    """True when some plugin implements ``reflow_network_event``."""
    return bool(plugin_manager().hook.reflow_network_event.get_hookimpls())


def forward_network_events(stream: EventStream) -> threading.Thread | None:
    """Forward a network's events (``net.events()``) to ``reflow_network_event`` hooks on a
    daemon thread until the stream closes. Returns ``None`` (and closes the stream) when no
    plugin observes events, so the network pays nothing."""
    caller = plugin_manager().hook.reflow_network_event
    if not caller.get_hookimpls():
        stream.close()
        return None

    def pump() -> None:
        for event in stream:
            try:
                caller(event=event)
            except Exception as exc:  # an observer must never break the network
                log.warning("reflow_network_event hook failed: %s", exc)

    thread = threading.Thread(target=pump, name="reflow-event-hooks", daemon=True)
    thread.start()
    return thread
