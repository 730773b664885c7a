"""Wiring: how a network's nodes and edges are made, checked and looked up — nothing that runs.

:class:`Wiring` is the building half of :class:`~reflow.Network` (which adds running it):
``register_actor``, ``add_node``, ``add_connection``, initial packets, exported ports,
``collect`` and loading a graph spec. Every call checks its arguments at once and raises a
:class:`~reflow.GraphError` naming the node, port or component at fault, and none costs more
as the graph grows: each lookup is a dict or a node's own short edge list, so building takes
time linear in nodes and edges. While a graph is being built the collector's full collections
wait (``_gcdefer``).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .._errors import (
    DuplicateNodeError,
    GraphError,
    MessageError,
    NetworkStateError,
    PortTypeError,
    UnknownComponentError,
    UnknownNodeError,
    UnknownPortError,
)
from ._actor import Actor, ActorContext, accepts_undeclared
from ._gcdefer import building, bulk
from ._messages import Message, as_message
from ._nodes import _NEVER, _Edge, _Node, _Sink
from ._results import Collector
from ._scheduler import Scheduler

__all__ = ["DEFAULT_CAPACITY", "Wiring", "int_option"]

DEFAULT_CAPACITY = 64
_WIDE_ROUTE = 8  # a route with this many edges keeps a set of its targets (see _connected)


#: What ``add_node`` may do with a config key a built-in template never reads (see
#: ``reflow.library._config_keys``): refuse likely typos and warn about the rest, refuse
#: all, or keep all silently.
CONFIG_CHECKS = ("typos", "strict", "off")


def int_option(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GraphError(f"{name} must be a positive integer, got {value!r}")
    return value


class Wiring:
    """The nodes and edges of a network, as the scheduler ``sched`` will run them."""

    def __init__(self, sched: Scheduler, capacity: int) -> None:
        self.capacity = capacity
        self._sched = sched
        self._templates: dict[str, Actor] = {}
        self._modes: dict[str, tuple[Actor, str, Any, str]] = {}  # see _shared_mode
        self._iips: dict[tuple[str, str], _Edge] = {}
        # (node, out-port) -> the (node, in-port) pairs it feeds, only for routes too wide
        # to search for a duplicate (the rest are searched: most have one or two edges)
        self._wide_routes: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self._taps: dict[tuple[str, str], list[Collector]] = {}
        self._aliases_in: dict[tuple[str, str], tuple[str, str]] = {}
        self._aliases_out: dict[tuple[str, str], tuple[str, str]] = {}
        self._exported_in: dict[str, tuple[str, str]] = {}
        self._exported_out: dict[str, tuple[str, str]] = {}
        self._subgraph_nodes: set[str] = set()
        self._pending_spec: Any = None  # a graph spec applied on first need (from_graph)
        self._policy_host: Any = None  # made with the first node that declares policies
        self._running = False
        self._closed = False
        self.config_check = "typos"  # what add_node does with a config key a template never reads

    def register_actor(self, template_id: str, actor: Any) -> None:
        """Make ``actor`` (an :class:`Actor` instance) available as ``template_id``."""
        self._check_open()
        if isinstance(actor, type) and issubclass(actor, Actor):
            actor = actor()
        if not isinstance(actor, Actor):
            raise GraphError(
                f"register_actor({template_id!r}, ...) expects an Actor instance, "
                f"got {type(actor).__name__}"
            )
        if not isinstance(template_id, str) or not template_id:
            raise GraphError(f"template id must be a non-empty string, got {template_id!r}")
        self._templates[template_id] = actor

    def _template(self, template_id: str) -> Actor:
        actor = self._templates.get(template_id)
        if actor is not None:
            return actor
        from ._catalog import lookup_template, template_list

        found = lookup_template(template_id)
        if found is None:
            raise UnknownComponentError(template_id, [*self._templates, *template_list()])
        return found

    def add_node(
        self,
        id: str,
        template_id: str,
        config: dict[str, Any] | None = None,
        policies: dict[str, Any] | None = None,
        placement: Any = None,
    ) -> None:
        """Add node ``id`` running the actor registered as ``template_id``.

        ``policies``: retry, timeout, circuit breaker, rate limit, cache and dead letters for
        this node's ticks (see ``reflow._core._policies``); a bad one raises PolicyError.
        ``placement``: ``reflow.Ray(...)`` (or ``{"ray": {...}}``) runs the node's actor in a
        Ray actor in another process or machine (see ``reflow._ray_nodes``); a bad one, or a
        cluster that cannot be reached, raises PlacementError."""
        if self._running or self._closed:
            self._check_mutable()
        building()
        if not isinstance(id, str) or not id:
            raise GraphError(f"node id must be a non-empty string, got {id!r}")
        nodes = self._sched.nodes
        if id in nodes or id in self._subgraph_nodes:
            raise DuplicateNodeError(id)
        if config is not None and not isinstance(config, dict):
            raise GraphError(f"config of node {id!r} must be a dict, got {type(config).__name__}")
        template = self._templates.get(template_id) or self._template(template_id)
        if template._expands:  # a subgraph: its inner nodes join this network
            if placement is not None:
                from .._errors import PlacementError

                raise PlacementError(
                    f"node {id!r}: a subgraph node cannot be placed; place its inner nodes",
                    node=id,
                )
            if policies:
                from .._errors import PolicyError

                raise PolicyError(
                    f"policy 'policies' of node {id!r}: a subgraph node cannot have policies; "
                    f"declare them on its inner nodes",
                    node=id,
                    key="policies",
                )
            self._subgraph_nodes.add(id)
            template.expand_into(self, id, dict(config or {}))
            return
        check = getattr(template, "check_config_keys", None)
        if config and callable(check):  # a built-in template names the keys it reads
            check(id, config, self.config_check)
        actor: Actor
        if placement is not None:
            from .._ray_nodes import placed_actor

            actor = placed_actor(
                id,
                template_id,
                template,
                dict(config or {}),
                placement,
                registered=template_id in self._templates,
            )
        else:
            actor = template.open_node(id, dict(config) if config else {})
        if actor is template:  # one actor shared by all its nodes: its mode is known
            node = _Node(
                id,
                template.component,
                actor,
                dict(config) if config else {},
                self._shared_mode(template_id, template),
            )
        else:
            node = _Node(id, actor.component, actor, dict(config) if config else {})
        node.ctx = ActorContext(self._sched, node)
        if placement is not None:
            node.send_window = -1  # each remote send waits until its packets are on the edges
        if policies is not None:  # checked before the node joins: a bad policy adds nothing
            from ._policies_runner import attach_policies

            try:
                attach_policies(self, node, policies)
            except BaseException:
                if actor is not template:  # what open_node acquired for this node
                    actor.close()
                raise
        nodes[id] = node

    def _shared_mode(self, template_id: str, template: Actor) -> str:
        """``template._execution()``, worked out once per template while what it depends on
        (the template itself, its ``execution`` and ``run``) stays the same."""
        run = template.run
        seen = self._modes.get(template_id)
        if (
            seen is not None
            and seen[0] is template
            and seen[2] == run
            and seen[1] == template.execution
        ):
            return seen[3]
        mode = template._execution()
        self._modes[template_id] = (template, template.execution, run, mode)
        return mode

    def _resolve(self, node: str, port: str, *, out: bool) -> tuple[str, str]:
        """Map a subgraph node's exported port to the inner node and port it stands for."""
        if node not in self._subgraph_nodes:
            return node, port
        aliases = self._aliases_out if out else self._aliases_in
        target = aliases.get((node, port))
        if target is None:
            direction = "out" if out else "in"
            exported = [p for (n, p) in aliases if n == node]
            raise UnknownPortError(node, port, f"exported {direction}", exported)
        return target

    def _node(self, node_id: str, context: str) -> _Node:
        node = self._sched.nodes.get(node_id)
        if node is None:
            raise UnknownNodeError(node_id, context, list(self._sched.nodes))
        return node

    def add_connection(
        self,
        from_actor: str,
        from_port: str,
        to_actor: str,
        to_port: str,
        capacity: int | None = None,
    ) -> None:
        """Connect ``from_actor.from_port`` to ``to_actor.to_port``."""
        if self._running or self._closed:
            self._check_mutable()
        building()
        if self._pending_spec is not None:
            self._materialize()
        if self._subgraph_nodes:
            from_actor, from_port = self._resolve(from_actor, from_port, out=True)
            to_actor, to_port = self._resolve(to_actor, to_port, out=False)
        nodes = self._sched.nodes
        src = nodes.get(from_actor)
        dst = nodes.get(to_actor)
        if src is None or dst is None:
            label = f"connection {from_actor}.{from_port} -> {to_actor}.{to_port}"
            self._node(from_actor, f"source of {label}")
            self._node(to_actor, f"target of {label}")
        assert src is not None and dst is not None
        route = src.routes.get(from_port) if isinstance(from_port, str) else None
        if route is None:
            raise UnknownPortError(from_actor, from_port, "out", list(src.routes))
        if to_port not in dst.actor.inports and not accepts_undeclared(dst.actor):
            raise UnknownPortError(to_actor, to_port, "in", list(dst.actor.inports))
        if src.actor.outport_types or dst.actor.inport_types:
            self._check_types(src, from_port, dst, to_port)
        if route and self._connected(route, from_actor, from_port, to_actor, to_port):
            raise GraphError(
                f"connection {from_actor}.{from_port} -> {to_actor}.{to_port} already exists"
            )
        cap = int_option(capacity, "capacity") if capacity is not None else self.capacity
        edge = _Edge(src, from_port, dst, to_port, cap)
        if route.__class__ is list:
            route.append(edge)
        else:
            route = src.routes[from_port] = [edge]
        self._attach_in(dst, edge)
        if self._taps:
            for coll in self._taps.get((to_actor, to_port), ()):
                route.append(self._collector_edge(coll))

    @staticmethod
    def _add_route(node: _Node, port: str, edge: _Edge) -> None:
        """Add ``edge`` to ``node.port``'s out-edges. A route with no edge yet is a shared
        empty tuple (see ``_Node``): it is replaced, never appended to."""
        route = node.routes[port]
        if route.__class__ is list:
            route.append(edge)
        else:
            node.routes[port] = [edge]

    def _connected(
        self, route: list[_Edge], from_actor: str, from_port: str, to_actor: str, to_port: str
    ) -> bool:
        """Whether ``route`` (the edges of ``from_actor.from_port``) reaches ``to_actor.to_port``
        already. Called before each new edge is added, so a wide route's set stays complete."""
        if len(route) < _WIDE_ROUTE:
            for e in route:
                if e.dst_port == to_port and e.dst.id == to_actor and e.dst.__class__ is _Node:
                    return True
            return False
        targets = self._wide_routes.get((from_actor, from_port))
        if targets is None:
            targets = self._wide_routes[(from_actor, from_port)] = {
                (e.dst.id, e.dst_port) for e in route if e.dst.__class__ is _Node
            }
        if (to_actor, to_port) in targets:
            return True
        targets.add((to_actor, to_port))  # the edge is added next
        return False

    @property
    def _connections(self) -> set[tuple[str, str, str, str]]:
        """Every connection as ``(from node, out-port, to node, in-port)``."""
        return {
            (node.id, port, e.dst.id, e.dst_port)
            for node in self._sched.nodes.values()
            for port, edges in node.routes.items()
            for e in edges
            if e.dst.__class__ is _Node
        }

    @staticmethod
    def _check_types(src: _Node, from_port: str, dst: _Node, to_port: str) -> None:
        out_t = src.actor.outport_types.get(from_port, "Any")
        in_t = dst.actor.inport_types.get(to_port, "Any")
        if (
            out_t != in_t
            and "Any" not in (out_t, in_t)
            and not (out_t == "Integer" and in_t == "Float")
        ):
            label = f"connection {src.id}.{from_port} -> {dst.id}.{to_port}"
            raise PortTypeError(
                f"{label}: out-port {src.id}.{from_port} sends {out_t} but in-port "
                f"{dst.id}.{to_port} accepts {in_t}",
                source=f"{src.id}.{from_port}",
                target=f"{dst.id}.{to_port}",
            )

    def _attach_in(self, dst: _Node, edge: _Edge) -> None:
        port = edge.dst_port
        edges = dst.port_edges.get(port)
        if edges is None:
            declared = dst.actor.inports
            if not dst.in_edges and len(declared) == 1 and port == declared[0]:
                # one in-port: its edges are all the node's in-edges, so one list is both
                dst.in_edges = dst.port_edges[port] = [edge]
            else:
                if port not in declared:  # an undeclared in-port (accept_undeclared_inports)
                    if any(lst is dst.in_edges for lst in dst.port_edges.values()):
                        dst.in_edges = list(dst.in_edges)  # no longer one port's list
                    dst.extra_in = (*dst.extra_in, edge)
                dst.in_edges.append(edge)
                dst.port_edges[port] = [edge]
            # the in-ports that have an edge, in declaration order: changes only here
            if len(dst.port_edges) == 1:
                dst.await_ports = [port] if port in declared else []
            else:
                dst.await_ports = [p for p in declared if p in dst.port_edges]
        else:
            edges.append(edge)
            if edges is not dst.in_edges:
                dst.in_edges.append(edge)
            if dst.extra_in and port not in dst.actor.inports:
                dst.extra_in = (*dst.extra_in, edge)
        if edge.queue and not dst.queued:
            dst.queued = True
            self._sched.ready.append(dst)

    def add_initial(self, actor: str, port: str, message: Any) -> None:
        """Queue ``message`` (a Message or its JSON form) on ``actor.port``.

        Allowed at any time, also while the network runs (thread-safe)."""
        self._check_open()
        if self._pending_spec is not None:
            self._materialize()
        actor, port = self._resolve(actor, port, out=False)
        node = self._node(actor, f"initial packet for {actor}.{port}")
        if port not in node.actor.inports and not accepts_undeclared(node.actor):
            raise UnknownPortError(actor, port, "in", list(node.actor.inports))
        try:
            msg = as_message(message)
        except MessageError as exc:
            raise MessageError(
                f"initial packet for {actor}.{port} is not a valid message: {exc}",
                path=exc.path,
            ) from exc
        self._deliver_initial(node, port, msg)

    def _deliver_initial(self, node: _Node, port: str, msg: Message) -> None:
        """Queue a checked initial packet; a running network hands it to its scheduler."""
        self._queue_initial(node, port, msg)

    def _queue_initial(self, node: _Node, port: str, msg: Message) -> None:
        key = (node.id, port)
        edge = self._iips.get(key)
        if edge is None:
            edge = _Edge(None, "", node, port, _NEVER)
            self._iips[key] = edge
            edge.queue = deque()
            self._attach_in(node, edge)
        edge.queue.append(msg)
        for coll in self._taps.get(key, ()):
            coll.messages.append(msg)
        if not node.queued:
            node.queued = True
            self._sched.ready.append(node)

    def export_inport(self, name: str, node: str, port: str) -> None:
        """Name ``node.port`` as the graph's in-port ``name`` (for ``add_initial(name, ...)``
        on subgraphs and :meth:`send_inport`)."""
        self._exported_in[name] = (node, port)

    def export_outport(self, name: str, node: str, port: str) -> None:
        """Name ``node.port`` as the graph's out-port ``name`` (see :meth:`collect`)."""
        self._exported_out[name] = (node, port)

    # ------------------------------------------------------------------ collecting
    def _collector_edge(self, coll: Collector) -> _Edge:
        edge = _Edge(None, "", _Sink(coll.label), "", _NEVER)
        edge.queue = coll.messages
        return edge

    def collect(self, node: str, port: str | None = None) -> Collector:
        """Capture every message that reaches ``node.port``.

        ``port`` may be an out-port of ``node`` (what it emits, connected or not) or an
        in-port (what arrives there; call after wiring it). With ``port=None``, ``node`` names
        an exported out-port of the graph (``Network.from_graph``)."""
        self._check_mutable()
        self._materialize()
        if port is None:
            if node not in self._exported_out:
                known = ", ".join(sorted(self._exported_out)) or "none"
                raise UnknownPortError("<graph>", node, "exported out", known.split(", "))
            node, port = self._exported_out[node]
        if node in self._subgraph_nodes:
            outs = [p for (n, p) in self._aliases_out if n == node]
            node, port = self._resolve(node, port, out=port in outs)
        target = self._node(node, f"collect({node!r}, {port!r})")
        coll = Collector(f"{node}.{port}")
        if port in target.routes:
            self._add_route(target, port, self._collector_edge(coll))
        elif port in target.actor.inports or port in target.port_edges:
            # (an undeclared in-port counts once something is connected to it)
            self._taps.setdefault((node, port), []).append(coll)
            for edge in target.port_edges.get(port, ()):
                if edge.src is not None:
                    self._add_route(edge.src, edge.src_port, self._collector_edge(coll))
        else:
            raise UnknownPortError(node, port, "in or out", [*target.actor.inports, *target.routes])
        return coll

    # ------------------------------------------------------------------ state checks
    def _check_open(self) -> None:
        if self._closed:
            raise NetworkStateError("this network was shut down; build a new Network")

    def _check_mutable(self) -> None:
        self._check_open()
        if self._running:
            raise NetworkStateError(
                "the graph cannot be changed while the network runs; add nodes and "
                "connections before start()/run(), or after run() returned"
            )

    def nodes(self) -> list[str]:
        """The node ids, in the order they were added (a graph given to ``from_graph`` is
        applied first)."""
        self._materialize()
        return list(self._sched.nodes)

    # ------------------------------------------------------------------ graphs
    def _materialize(self) -> None:
        spec, self._pending_spec = self._pending_spec, None
        if spec is not None:
            self.load_spec(spec)

    def _port_name(self, node_id: str, port: str, out: bool) -> str:
        """The actor's own spelling of ``port`` (graphs that are not case-sensitive store
        port names lower-cased)."""
        if (node_id, port) in (self._aliases_out if out else self._aliases_in):
            return port
        node = self._sched.nodes.get(node_id)
        if node is None:
            return port
        names = list(node.routes) if out else list(node.actor.inports)
        if port in names:
            return port
        folded = [n for n in names if n.lower() == port.lower()]
        return folded[0] if len(folded) == 1 else port

    def load_spec(
        self,
        spec: Any,
        *,
        prefix: str = "",
        components: dict[str, str] | None = None,
        configs: dict[str, dict[str, Any]] | None = None,
        as_node: str | None = None,
    ) -> None:
        """Add the nodes, connections, initial packets and exports of a graph spec
        (``reflow._core._graph.GraphSpec``). With ``as_node``, the graph is inlined as that node:
        inner ids get ``prefix`` and its exported ports become the node's ports."""
        with bulk():
            self._load_spec(spec, prefix, components or {}, configs or {}, as_node)

    def _load_spec(
        self,
        spec: Any,
        prefix: str,
        components: dict[str, str],
        configs: dict[str, dict[str, Any]],
        as_node: str | None,
    ) -> None:
        from ._graph_values import is_tagged_message

        fold = not getattr(spec, "case_sensitive", True)

        def port(node_id: str, name: str, out: bool) -> str:
            return self._port_name(node_id, name, out) if fold else name

        for node_id, component, config, meta in spec.nodes:
            merged = {**config, **configs.get(node_id, {})}
            self.add_node(
                prefix + node_id,
                components.get(component, component),
                merged,
                meta.get("policies") if meta else None,
                meta.get("placement") if meta else None,
            )
        for src, sport, dst, dport, cap in spec.connections:
            src, dst = prefix + src, prefix + dst
            self.add_connection(
                src, port(src, sport, True), dst, port(dst, dport, False), capacity=cap
            )
        for node_id, name, data, _index in spec.initials:
            # FBP graphs often carry bare JSON values as initial data
            msg = data if is_tagged_message(data) else Message.from_value(data)
            node_id = prefix + node_id
            self.add_initial(node_id, port(node_id, name, False), msg)
        for name, (node_id, pname) in spec.inports.items():
            node_id = prefix + node_id
            target = (node_id, port(node_id, pname, False))
            if as_node is None:
                self._exported_in[name] = target
            else:
                self._aliases_in[(as_node, name)] = target
        for name, (node_id, pname) in spec.outports.items():
            node_id = prefix + node_id
            target = (node_id, port(node_id, pname, True))
            if as_node is None:
                self._exported_out[name] = target
            else:
                self._aliases_out[(as_node, name)] = target
