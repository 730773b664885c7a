"""The template catalog: actors available by template id without ``register_actor``.

``template_actor(id)`` and ``template_list()`` (the SDK's names) look here. Templates come from
the built-in library, from loaded packs and from Python plugins; each source registers its
templates with :func:`register_template`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .._errors import GraphError, UnknownComponentError
from ._actor import Actor

__all__ = [
    "lookup_template",
    "register_template",
    "template_actor",
    "template_list",
    "template_owner",
    "unregister_template",
]

_lock = threading.Lock()
_templates: dict[str, Actor] = {}
_owners: dict[str, str] = {}
_plugins_loaded = False
# Set by the package (``reflow/__init__``): a call that puts plugin-contributed templates in
# the catalog. A hook rather than an import: the plugin layer registers templates here, so
# this module must not import it.
_plugin_loader: Callable[[], object] | None = None


def set_plugin_loader(loader: Callable[[], object]) -> None:
    """Install the function that pulls in plugin templates on the catalog's first use."""
    global _plugin_loader
    _plugin_loader = loader


def _load_plugins() -> None:
    """Pull in templates contributed by plugins (hook ``reflow_templates`` and the
    ``reflow.templates`` entry-point group), once, the first time the catalog is asked."""
    global _plugins_loaded
    if _plugins_loaded or _plugin_loader is None:
        return
    _plugins_loaded = True
    _plugin_loader()


def register_template(template_id: str, actor: Actor, *, owner: str = "python") -> None:
    """Add ``actor`` to the catalog as ``template_id``. Two owners may not share an id."""
    if not isinstance(actor, Actor):
        raise GraphError(f"template {template_id!r} must be an Actor, got {type(actor).__name__}")
    with _lock:
        prev = _owners.get(template_id)
        if prev is not None and prev != owner:
            raise GraphError(
                f"template id {template_id!r} is already provided by {prev}; "
                f"{owner} cannot provide it too"
            )
        _templates[template_id] = actor
        _owners[template_id] = owner


def unregister_template(template_id: str) -> None:
    with _lock:
        _templates.pop(template_id, None)
        _owners.pop(template_id, None)


def lookup_template(template_id: str) -> Actor | None:
    actor = _templates.get(template_id)
    if actor is None and not _plugins_loaded:
        _load_plugins()
        actor = _templates.get(template_id)
    return actor


def template_owner(template_id: str) -> str | None:
    """Who provides ``template_id``: a pack name, ``plugin:<name>``, ``python``; or None."""
    return _owners.get(template_id)


def template_actor(template_id: str) -> Actor:
    """The catalog's actor for ``template_id``; raises UnknownComponentError naming it."""
    actor = lookup_template(template_id)
    if actor is None:
        raise UnknownComponentError(template_id, list(_templates))
    return actor


def template_list() -> list[str]:
    """Every template id in the catalog, sorted."""
    _load_plugins()
    return sorted(_templates)
