"""Subgraphs: a whole graph used as one actor.

``SubgraphBuilder(export)`` takes a graph (its JSON export or a :class:`~reflow.Graph`), the
actors its components need, and ``build()`` returns a :class:`SubgraphActor`. Registering that
actor and adding a node of it *inlines* the subgraph into the network: its nodes become
``<node>/<inner id>`` and its exported ports stand for the node's ports. So a subgraph costs
nothing at run time — there is one scheduler, and backpressure crosses its border unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._errors import GraphError, UnknownComponentError
from ._actor import Actor

if TYPE_CHECKING:
    from ._graph import Graph
    from ._network import Network

__all__ = ["SubgraphActor", "SubgraphBuilder"]


class SubgraphActor(Actor):
    """A graph packaged as an actor; see :class:`SubgraphBuilder`. Its in-ports and out-ports
    are the graph's exported ports."""

    def __init__(self, spec: Any, templates: dict[str, Actor], name: str) -> None:
        self._spec = spec
        self._templates = templates
        self.component = name
        self.inports = list(spec.inports)
        self.outports = list(spec.outports)

    _expands = True

    def run(self, ctx: Any) -> None:  # pragma: no cover - never called: the graph is inlined
        raise GraphError("a subgraph runs as the nodes it expands into, not as one actor")

    def expand_into(self, net: Network, node_id: str, config: dict[str, Any]) -> None:
        """Add this subgraph's nodes to ``net`` as ``node_id/<inner id>``. ``config`` may
        hold per-inner-node config overrides: ``{"inner_id": {...}}``."""
        prefix = f"{node_id}/"
        local: dict[str, str] = {}
        for tid, actor in self._templates.items():
            scoped = f"{prefix}{tid}"
            net.register_actor(scoped, actor)
            local[tid] = scoped
        net.load_spec(self._spec, prefix=prefix, components=local, configs=config, as_node=node_id)


class SubgraphBuilder:
    """Turns a graph into an actor: ``SubgraphBuilder(export).register_actor(...).build()``."""

    def __init__(self, export: Graph | dict[str, Any] | str) -> None:
        from ._graph import Graph

        self._graph = export if isinstance(export, Graph) else Graph.from_json(export)
        self._templates: dict[str, Actor] = {}

    def register_actor(self, component: str, actor: Any) -> None:
        """Provide the actor for ``component`` used inside the subgraph."""
        if isinstance(actor, type) and issubclass(actor, Actor):
            actor = actor()
        if not isinstance(actor, Actor):
            raise GraphError(
                f"register_actor({component!r}, ...) expects an Actor instance, "
                f"got {type(actor).__name__}"
            )
        self._templates[component] = actor

    def fill_from_catalog(self) -> None:
        """Take every component not registered yet from the template catalog."""
        from ._catalog import lookup_template

        for _inner, component, _config, _meta in self._spec().nodes:
            if component not in self._templates:
                found = lookup_template(component)
                if found is not None:
                    self._templates[component] = found

    def _spec(self) -> Any:
        from ._graph_spec import graph_to_network_spec

        return graph_to_network_spec(self._graph)

    def build(self) -> SubgraphActor:
        """The subgraph as an actor. Every component must be known by now."""
        from ._catalog import lookup_template

        spec = self._spec()
        for inner, component, _config, _meta in spec.nodes:
            if component not in self._templates and lookup_template(component) is None:
                err = UnknownComponentError(component, list(self._templates))
                raise UnknownComponentError(component, list(self._templates)) from GraphError(
                    f"subgraph node {inner!r}: {err}"
                )
        name = self._graph.properties().get("name") or "subgraph"
        return SubgraphActor(spec, dict(self._templates), str(name))
