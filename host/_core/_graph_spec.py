"""The flat view of a graph that a network is built from: :class:`GraphSpec`.

:func:`graph_to_network_spec` checks what only matters to a running network (node config,
edge capacity, typed ports agreeing along each connection) and lists nodes, connections,
initial packets and exports in the graph's order, in time linear in the graph's size.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, NamedTuple

from .._errors import GraphFormatError, PortTypeError
from ._gcdefer import bulk
from ._graph import Graph
from ._graph_values import Direction, key_path, port_types_compatible, type_label, type_name

__all__ = ["ConnectionSpec", "GraphSpec", "InitialSpec", "NodeSpec", "graph_to_network_spec"]


class NodeSpec(NamedTuple):
    id: str
    component: str
    config: dict[str, Any]
    metadata: dict[str, Any]


class ConnectionSpec(NamedTuple):
    src_node: str
    src_port: str
    tgt_node: str
    tgt_port: str
    capacity: int | None


class InitialSpec(NamedTuple):
    node: str
    port: str
    data: Any
    index: int | None  # type: ignore[assignment]  # shadows tuple.index on purpose


@dataclass(frozen=True)
class GraphSpec:
    """What a network is built from; every list is in the graph's order.

    ``port_types`` maps ``(node, "in" | "out", port)`` to the port type the graph declares
    (typed ports only). When ``case_sensitive`` is false, port names were lower-cased when the
    graph was built through its methods, so match them against actor ports without regard to
    case.
    """

    nodes: list[NodeSpec]
    connections: list[ConnectionSpec]
    initials: list[InitialSpec]
    inports: dict[str, tuple[str, str]]
    outports: dict[str, tuple[str, str]]
    port_types: dict[tuple[str, str, str], dict[str, Any]]
    case_sensitive: bool


def graph_to_network_spec(graph: Graph) -> GraphSpec:
    """Flatten ``graph`` into a :class:`GraphSpec` for ``Network.from_graph``.

    * A node's **config** is its ``metadata["config"]`` when that is an object, ``{}`` when the
      node has no ``config``; any other ``config`` value raises GraphFormatError.
    * A connection's **capacity** is its ``metadata["capacity"]`` (a positive integer) or
      ``None`` (the network's default); anything else raises GraphFormatError.
    * Initial packet data is passed as written: a tagged message (already validated) or plain
      JSON for the network to wrap (see :func:`is_tagged_message`).
    * Typed ports are checked here: a connection whose ends, or a port whose declarations,
      disagree raises PortTypeError naming both ends.
    """
    with bulk():  # a bulk build: the collector's full collections wait (see _gcdefer)
        return _flatten(graph)


def _flatten(graph: Graph) -> GraphSpec:
    nodes = []
    for node in graph._nodes.values():
        metadata = copy.deepcopy(node.metadata) or {}
        config = metadata.get("config", {})
        if not isinstance(config, dict):
            raise GraphFormatError(
                f"config of node {node.id!r} must be an object, got {type_name(config)}",
                path=f"{key_path('$.processes', node.id)}.metadata.config",
            )
        nodes.append(NodeSpec(node.id, node.component, config, metadata))
    port_types: dict[tuple[str, str, str], dict[str, Any]] = {}
    typed_ports = graph._typed_ports()  # one pass, not one per port asked about
    agreed: dict[tuple[str, Direction, str], dict[str, Any] | None] = {}

    def typed(node: str, port: str, direction: Direction) -> dict[str, Any] | None:
        key = (node, direction, graph.port_key(port))
        if key not in agreed:
            agreed[key] = graph._agreed_type(node, port, direction, typed_ports.get(key, ()))
        declared = agreed[key]
        if declared is not None:
            port_types[(node, direction, port)] = copy.deepcopy(declared)
        return declared

    connections = []
    initials = []
    for i, conn in enumerate(graph._connections):
        path = f"$.connections[{i}]"
        if conn.iip or conn.src is None:
            typed(conn.tgt.node, conn.tgt.port, "in")
            initials.append(
                InitialSpec(conn.tgt.node, conn.tgt.port, copy.deepcopy(conn.data), conn.tgt.index)
            )
            continue
        capacity = (conn.metadata or {}).get("capacity")
        if capacity is not None and (
            isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1
        ):
            raise GraphFormatError(
                f"capacity of {conn.label()} must be a positive integer, got {capacity!r}",
                path=f"{path}.metadata.capacity",
            )
        out_t = typed(conn.src.node, conn.src.port, "out")
        in_t = typed(conn.tgt.node, conn.tgt.port, "in")
        if not port_types_compatible(out_t, in_t):
            source = f"{conn.src.node}.{conn.src.port}"
            target = f"{conn.tgt.node}.{conn.tgt.port}"
            raise PortTypeError(
                f"cannot connect {source} ({type_label(out_t)}) to {target} ({type_label(in_t)})",
                source=source,
                target=target,
            )
        connections.append(
            ConnectionSpec(conn.src.node, conn.src.port, conn.tgt.node, conn.tgt.port, capacity)
        )
    inports = {name: (p.node, p.port) for name, p in graph._inports.items()}
    outports = {name: (p.node, p.port) for name, p in graph._outports.items()}
    for p in graph._inports.values():
        typed(p.node, p.port, "in")
    for p in graph._outports.values():
        typed(p.node, p.port, "out")
    return GraphSpec(
        nodes, connections, initials, inports, outports, port_types, graph.case_sensitive
    )
