"""The FBP graph model: build a graph in code or read it from JSON, edit it, write it back.

:class:`Graph` mirrors ``offbit_reflow.Graph`` name for name. Its JSON form is the FBP graph
format in either of its two dialects (``reflow._core._graph_reader`` describes them and reads
them; ``reflow._core._graph_records`` writes each record back). Composition lives in
``_graph_compose``, the flat view a network is built from in ``_graph_spec``.

What the module promises:

* **Lossless.** Every record (process, connection, initial packet, exported port, group) is
  written back in the dialect it was read in, with every key it had — unknown keys included —
  and in its original order. Verbose records are written complete (a missing optional key comes
  back with its default, e.g. ``"portType": {"type": "any"}``); classic records are written with
  exactly the optional keys they had. Records added through the API use the graph's dialect:
  classic if anything in the document was classic, verbose otherwise (and for ``Graph()``).
  ``Graph.from_json(g.to_json()).to_json() == g.to_json()`` always holds.
* **Validated.** :meth:`Graph.from_json` raises :class:`~reflow.GraphFormatError` whose ``path``
  is the JSON path of the first problem (``$.connections[3].tgt.process``). Nothing nests
  deeper than the JSON depth limit (``reflow._jsonread.MAX_DEPTH``, 200 levels): not a
  document, not a composition, not a value handed to a method (metadata, initial data,
  properties, port types, counted where they sit in the document). Methods raise
  :class:`~reflow.DuplicateNodeError` / :class:`~reflow.UnknownNodeError` for node ids, and
  :class:`~reflow.GraphError` for other missing or duplicate items, where ``offbit_reflow``
  silently ignores the call.
* **Case.** When ``case_sensitive`` is false, the methods lower-case every port name they are
  given — exported names and node ports alike — as ``offbit_reflow`` does; node ids are kept
  as given. JSON is read as written (never re-cased), and exported names are looked up without
  regard to case.
* **Linear.** Adding a node, a connection or an initial packet takes the same time in a graph of
  ten nodes as in one of a million (connections are found through an index), so building or
  reading a graph takes time linear in its size.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from .._errors import (
    DuplicateNodeError,
    GraphError,
    GraphFormatError,
    PortTypeError,
    UnknownNodeError,
)
from ._gcdefer import building, bulk
from ._graph_reader import read_graph
from ._graph_records import (
    ConnectionRecord,
    EndRecord,
    ExportRecord,
    GraphData,
    GroupRecord,
    ProcessRecord,
)
from ._graph_values import (
    Direction,
    bounded,
    check_iip_data,
    index_value,
    key_path,
    merge_metadata,
    metadata_value,
    port_type_value,
    type_label,
)

__all__ = ["Graph"]


class Graph(GraphData):
    """An FBP graph: nodes (processes), connections, initial packets, exported ports, groups.

    Mirrors ``offbit_reflow.Graph``. Accessors return fresh dicts in the verbose shape;
    :meth:`to_json` is the lossless form (see the module docstring).
    """

    def __init__(self, name: str = "", case_sensitive: bool = False) -> None:
        if not isinstance(name, str):
            raise GraphFormatError("a graph name must be a string", path="$.properties.name")
        super().__init__(case_sensitive)
        if name:
            self._properties["name"] = name

    # -- small properties ----------------------------------------------------------------
    @property
    def case_sensitive(self) -> bool:
        return self._case_sensitive

    @property
    def name(self) -> str:
        name = self._properties.get("name", "")
        return name if isinstance(name, str) else ""

    def __repr__(self) -> str:
        return (
            f"<Graph {self.name!r}: {len(self._nodes)} nodes, "
            f"{sum(not c.iip for c in self._connections)} connections>"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        return self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    # -- helpers ----------------------------------------------------------------------------
    def _port(self, port: str, what: str = "port") -> str:
        if not isinstance(port, str) or not port:
            raise GraphFormatError(f"{what} must be a non-empty string, got {port!r}")
        return port if self._case_sensitive else port.lower()

    def _need_node(self, node: str, context: str) -> ProcessRecord:
        found = self._nodes.get(node)
        if found is None:
            raise UnknownNodeError(node, context, list(self._nodes))
        return found

    def _need_port(self, table: dict[str, ExportRecord], name: str, direction: str) -> str:
        key = self._find_port(table, name) if isinstance(name, str) else None
        if key is None:
            shown = ", ".join(table) or "none"
            raise GraphError(f"no exported {direction} {name!r}; exported {direction}s: {shown}")
        return key

    def _need_group(self, group_id: str) -> GroupRecord:
        for group in self._groups:
            if group.id == group_id:
                return group
        shown = ", ".join(g.id for g in self._groups) or "none"
        raise GraphError(f"no group {group_id!r}; groups: {shown}")

    def _new_metadata(self, metadata: Any, path: str) -> dict[str, Any] | None:
        """Metadata handed to a method (not read from a document, which is checked whole)."""
        bounded(metadata, path, what="metadata")
        return metadata_value(metadata, path)

    # -- nodes ------------------------------------------------------------------------------
    def add_node(self, id: str, component: str, metadata: dict[str, Any] | None = None) -> None:
        """Add a node running ``component``. Raises DuplicateNodeError if ``id`` is taken."""
        building()
        if not isinstance(id, str) or not id:
            raise GraphFormatError(
                f"a node id must be a non-empty string, got {id!r}", path="$.processes"
            )
        path = key_path("$.processes", id)
        if id in self._nodes:
            raise DuplicateNodeError(id)
        if not isinstance(component, str) or not component:
            raise GraphFormatError(
                f"component must be a non-empty string, got {component!r}",
                path=f"{path}.component",
            )
        self._nodes[id] = ProcessRecord(
            id=id,
            component=component,
            metadata=self._new_metadata(metadata, f"{path}.metadata"),
            shape=self._shape,
        )

    def remove_node(self, id: str) -> None:
        """Remove a node with its connections, initial packets, exported ports and group
        memberships (groups themselves stay, even when left empty)."""
        self._need_node(id, "remove_node")
        del self._nodes[id]
        self._connections = [
            c
            for c in self._connections
            if c.tgt.node != id and (c.iip or c.src is None or c.src.node != id)
        ]
        for table in (self._inports, self._outports):
            for name in [n for n, p in table.items() if p.node == id]:
                self._drop_exported(table, name)
        for group in self._groups:
            group.nodes = [n for n in group.nodes if n != id]
        self._edge_index = None

    def rename_node(self, old_id: str, new_id: str) -> None:
        """Rename a node everywhere it is referenced; its position in the order is kept."""
        node = self._need_node(old_id, "rename_node")
        if new_id == old_id:
            return
        if not isinstance(new_id, str) or not new_id:
            raise GraphFormatError(
                f"a node id must be a non-empty string, got {new_id!r}", path="$.processes"
            )
        if new_id in self._nodes:
            raise DuplicateNodeError(new_id)
        node.id = new_id
        self._nodes = {(new_id if k == old_id else k): v for k, v in self._nodes.items()}
        for conn in self._connections:
            for end in (conn.src, conn.tgt):
                if end is not None and end.node == old_id:
                    end.node = new_id
        for table in (self._inports, self._outports):
            for port in table.values():
                if port.node == old_id:
                    port.node = new_id
        for group in self._groups:
            group.nodes = [new_id if n == old_id else n for n in group.nodes]
        self._edge_index = None

    def get_node(self, id: str) -> dict[str, Any] | None:
        """``{"id", "component", "metadata"}`` of a node, or None if there is none."""
        node = self._nodes.get(id)
        if node is None:
            return None
        return {
            "id": node.id,
            "component": node.component,
            "metadata": copy.deepcopy(node.metadata),
        }

    def set_node_metadata(self, id: str, metadata: dict[str, Any]) -> None:
        """Merge ``metadata`` into the node's (a None value deletes a key; ``{}`` clears)."""
        node = self._need_node(id, "set_node_metadata")
        update = self._new_metadata(metadata, f"{key_path('$.processes', id)}.metadata")
        node.metadata = merge_metadata(node.metadata, update)

    def nodes(self) -> list[dict[str, Any]]:
        """Every node as ``{"id", "component", "metadata"}``, in order."""
        return [d for d in (self.get_node(n) for n in self._nodes) if d is not None]

    # -- connections ------------------------------------------------------------------------
    def _find_connection(
        self, out_node: str, out_port: str, in_node: str, in_port: str
    ) -> ConnectionRecord | None:
        if not (isinstance(out_port, str) and isinstance(in_port, str)):
            return None
        fold = self.port_key
        return self._edges().get((out_node, fold(out_port), in_node, fold(in_port)))

    def _need_connection(
        self, out_node: str, out_port: str, in_node: str, in_port: str
    ) -> ConnectionRecord:
        conn = self._find_connection(out_node, out_port, in_node, in_port)
        if conn is None:
            raise GraphError(f"no connection {out_node}.{out_port} -> {in_node}.{in_port}")
        return conn

    def add_connection(
        self,
        out_node: str,
        out_port: str,
        in_node: str,
        in_port: str,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Connect ``out_node.out_port`` to ``in_node.in_port``.

        Raises UnknownNodeError for a missing node and GraphError if the same connection exists.
        """
        self._need_node(out_node, f"source of connection to {in_node}.{in_port}")
        self._need_node(in_node, f"target of connection from {out_node}.{out_port}")
        src = EndRecord(node=out_node, port=self._port(out_port, "out_port"))
        tgt = EndRecord(node=in_node, port=self._port(in_port, "in_port"))
        if self._find_connection(out_node, src.port, in_node, tgt.port) is not None:
            raise GraphError(
                f"connection {out_node}.{src.port} -> {in_node}.{tgt.port} already exists"
            )
        path = f"$.connections[{len(self._connections)}].metadata"
        conn = ConnectionRecord(
            tgt=tgt, src=src, shape=self._shape, metadata=self._new_metadata(metadata, path)
        )
        self._connections.append(conn)
        self._edges()[(out_node, src.port, in_node, tgt.port)] = conn

    def remove_connection(self, out_node: str, out_port: str, in_node: str, in_port: str) -> None:
        """Remove a connection. Raises GraphError if there is none."""
        conn = self._need_connection(out_node, out_port, in_node, in_port)
        self._connections = [c for c in self._connections if c is not conn]
        self._edge_index = None

    def get_connection(
        self, out_node: str, out_port: str, in_node: str, in_port: str
    ) -> dict[str, Any] | None:
        """The connection in the verbose shape, or None if there is none."""
        conn = self._find_connection(out_node, out_port, in_node, in_port)
        return None if conn is None else self._connection_view(conn)

    def set_connection_metadata(
        self, out_node: str, out_port: str, in_node: str, in_port: str, metadata: dict[str, Any]
    ) -> None:
        """Merge ``metadata`` into the connection's (a None value deletes; ``{}`` clears)."""
        conn = self._need_connection(out_node, out_port, in_node, in_port)
        conn.metadata = merge_metadata(conn.metadata, self._new_metadata(metadata, "$.metadata"))

    @staticmethod
    def _connection_view(conn: ConnectionRecord) -> dict[str, Any]:
        verbose = copy.copy(conn)
        verbose.shape = "verbose"
        verbose.extra = {}
        return verbose.to_json()

    def connections(self) -> list[dict[str, Any]]:
        """Every connection (initial packets excluded) in the verbose shape, in order."""
        return [self._connection_view(c) for c in self._connections if not c.iip]

    # -- initial packets --------------------------------------------------------------------
    def _add_iip(
        self,
        node: str,
        port: str,
        data: Any,
        index: int | None,
        metadata: dict[str, Any] | None,
        via: str | None = None,
    ) -> None:
        path = f"$.connections[{len(self._connections)}]"
        bounded(data, f"{path}.data", what="initial packet")
        check_iip_data(data, f"{path}.data")
        tgt = EndRecord(node=node, port=port, index=index_value(index, f"{path}.to.index"), via=via)
        self._connections.append(
            ConnectionRecord(
                tgt=tgt,
                shape=self._shape,
                iip=True,
                data=copy.deepcopy(data),
                metadata=self._new_metadata(metadata, f"{path}.metadata"),
            )
        )

    def add_initial(
        self, node: str, port: str, data: Any, metadata: dict[str, Any] | None = None
    ) -> None:
        """Send ``data`` to ``node.port`` when the network starts. ``data`` is a tagged message
        (``{"type": "Integer", "data": 1}``, validated now) or plain JSON (wrapped later)."""
        self._need_node(node, f"initial packet for port {port!r}")
        self._add_iip(node, self._port(port), data, None, metadata)

    def add_initial_index(
        self, node: str, port: str, data: Any, index: int, metadata: dict[str, Any] | None = None
    ) -> None:
        """Like :meth:`add_initial`, to slot ``index`` of an array port."""
        self._need_node(node, f"initial packet for port {port!r}")
        self._add_iip(node, self._port(port), data, index, metadata)

    def remove_initial(self, node: str, port: str) -> None:
        """Remove every initial packet sent to ``node.port``. Raises GraphError if none."""
        self._need_node(node, "remove_initial")
        keep = [
            c
            for c in self._connections
            if not (c.iip and c.tgt.node == node and self._same_port(c.tgt.port, port))
        ]
        if len(keep) == len(self._connections):
            raise GraphError(f"no initial packet for {node}.{port}")
        self._connections = keep

    def add_graph_initial(
        self, inport: str, data: Any, metadata: dict[str, Any] | None = None
    ) -> None:
        """Send ``data`` into the graph through its exported in-port ``inport``."""
        name = self._need_port(self._inports, inport, "inport")
        port = self._inports[name]
        self._add_iip(port.node, port.port, data, None, metadata, via=name)

    def add_graph_initial_index(
        self, inport: str, data: Any, index: int, metadata: dict[str, Any] | None = None
    ) -> None:
        """Like :meth:`add_graph_initial`, to slot ``index``."""
        name = self._need_port(self._inports, inport, "inport")
        port = self._inports[name]
        self._add_iip(port.node, port.port, data, index, metadata, via=name)

    def remove_graph_initial(self, inport: str) -> None:
        """Remove the initial packets sent to the node port behind ``inport``."""
        port = self._inports[self._need_port(self._inports, inport, "inport")]
        self.remove_initial(port.node, port.port)

    def initializers(self) -> list[dict[str, Any]]:
        """Every initial packet as ``{"data", "metadata", "to"}``, in order."""
        out = []
        for conn in self._connections:
            if conn.iip:
                out.append(
                    {
                        "data": copy.deepcopy(conn.data),
                        "metadata": copy.deepcopy(conn.metadata),
                        "to": {
                            k: v
                            for k, v in conn.tgt.to_json("verbose").items()
                            if k not in conn.tgt.extra
                        },
                    }
                )
        return out

    # -- exported ports ---------------------------------------------------------------------
    def _add_exported(
        self,
        table: dict[str, ExportRecord],
        direction: str,
        port_id: str,
        node_id: str,
        port_key: str,
        port_type: dict[str, Any] | None,
        metadata: dict[str, Any] | None,
    ) -> None:
        name = self._port(port_id, f"{direction} name")
        self._need_node(node_id, f"exported {direction} {name!r}")
        if self._find_port(table, name) is not None:
            raise GraphError(f"exported {direction} {name!r} already exists; remove it first")
        path = key_path(f"$.{direction}s", name)
        bounded(port_type, f"{path}.portType", what="port type")
        table[name] = ExportRecord(
            node=node_id,
            port=self._port(port_key, "port_key"),
            shape=self._shape,
            port_type=port_type_value(port_type, f"{path}.portType"),
            metadata=self._new_metadata(metadata, f"{path}.metadata"),
            port_id=name,
        )

    def _drop_exported(self, table: dict[str, ExportRecord], name: str) -> None:
        del table[name]
        if table is self._inports:
            for conn in self._connections:
                if conn.iip and conn.tgt.via == name:
                    conn.tgt.via = None

    def _rename_exported(
        self, table: dict[str, ExportRecord], direction: str, old: str, new: str
    ) -> None:
        key = self._need_port(table, old, direction)
        new = self._port(new, f"new {direction} name")
        clash = self._find_port(table, new)
        if clash is not None and clash != key:
            raise GraphError(f"exported {direction} {new!r} already exists")
        port = table[key]
        if port.port_id == key:
            port.port_id = new
        items = [((new, p) if k == key else (k, p)) for k, p in table.items()]
        table.clear()
        table.update(items)
        if table is self._inports:
            for conn in self._connections:
                if conn.iip and conn.tgt.via == key:
                    conn.tgt.via = new

    @staticmethod
    def _exported_view(port: ExportRecord, name: str) -> dict[str, Any]:
        verbose = copy.copy(port)
        verbose.shape = "verbose"
        verbose.extra = {}
        if port.shape != "verbose":
            verbose.port_id = name
        return verbose.to_json()

    def add_inport(
        self,
        port_id: str,
        node_id: str,
        port_key: str,
        port_type: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Export ``node_id.port_key`` as the graph's in-port ``port_id``."""
        self._add_exported(self._inports, "inport", port_id, node_id, port_key, port_type, metadata)

    def add_outport(
        self,
        port_id: str,
        node_id: str,
        port_key: str,
        port_type: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Export ``node_id.port_key`` as the graph's out-port ``port_id``."""
        self._add_exported(
            self._outports, "outport", port_id, node_id, port_key, port_type, metadata
        )

    def remove_inport(self, port_id: str) -> None:
        self._drop_exported(self._inports, self._need_port(self._inports, port_id, "inport"))

    def remove_outport(self, port_id: str) -> None:
        self._drop_exported(self._outports, self._need_port(self._outports, port_id, "outport"))

    def rename_inport(self, old_port: str, new_port: str) -> None:
        self._rename_exported(self._inports, "inport", old_port, new_port)

    def rename_outport(self, old_port: str, new_port: str) -> None:
        self._rename_exported(self._outports, "outport", old_port, new_port)

    def set_inport_metadata(self, port_id: str, metadata: dict[str, Any]) -> None:
        port = self._inports[self._need_port(self._inports, port_id, "inport")]
        port.metadata = merge_metadata(port.metadata, self._new_metadata(metadata, "$.metadata"))

    def set_outport_metadata(self, port_id: str, metadata: dict[str, Any]) -> None:
        port = self._outports[self._need_port(self._outports, port_id, "outport")]
        port.metadata = merge_metadata(port.metadata, self._new_metadata(metadata, "$.metadata"))

    def inports(self) -> dict[str, dict[str, Any]]:
        """Exported in-ports: public name -> edge (``nodeId``, ``portName`` = node port, ...)."""
        return {name: self._exported_view(p, name) for name, p in self._inports.items()}

    def outports(self) -> dict[str, dict[str, Any]]:
        """Exported out-ports: public name -> edge (``nodeId``, ``portName`` = node port, ...)."""
        return {name: self._exported_view(p, name) for name, p in self._outports.items()}

    # -- groups -----------------------------------------------------------------------------
    def add_group(
        self, group_id: str, nodes: list[str], metadata: dict[str, Any] | None = None
    ) -> None:
        """Add a group of existing nodes. Raises GraphError if ``group_id`` is taken."""
        if not isinstance(group_id, str) or not group_id:
            raise GraphFormatError(
                f"a group id must be a non-empty string, got {group_id!r}", path="$.groups"
            )
        if any(g.id == group_id for g in self._groups):
            raise GraphError(f"group {group_id!r} already exists")
        for node in nodes:
            self._need_node(node, f"member of group {group_id!r}")
        members = list(dict.fromkeys(nodes))  # each node once, in the order given
        path = f"$.groups[{len(self._groups)}].metadata"
        self._groups.append(
            GroupRecord(
                id=group_id,
                nodes=members,
                shape=self._shape,
                metadata=self._new_metadata(metadata, path),
            )
        )

    def remove_group(self, group_id: str) -> None:
        self._groups.remove(self._need_group(group_id))

    def add_to_group(self, group_id: str, node_id: str) -> None:
        """Add a node to a group (no-op if it is already a member)."""
        group = self._need_group(group_id)
        self._need_node(node_id, f"add_to_group {group_id!r}")
        if node_id not in group.nodes:
            group.nodes.append(node_id)

    def remove_from_group(self, group_id: str, node_id: str) -> None:
        """Remove a node from a group (no-op if it is not a member); the group stays."""
        group = self._need_group(group_id)
        group.nodes = [n for n in group.nodes if n != node_id]

    def set_group_metadata(self, group_id: str, metadata: dict[str, Any]) -> None:
        group = self._need_group(group_id)
        group.metadata = merge_metadata(group.metadata, self._new_metadata(metadata, "$.metadata"))

    def groups(self) -> list[dict[str, Any]]:
        """Every group as ``{"id", "nodes", "metadata"}``, in order."""
        return [
            {"id": g.id, "nodes": list(g.nodes), "metadata": copy.deepcopy(g.metadata)}
            for g in self._groups
        ]

    # -- properties -------------------------------------------------------------------------
    def set_properties(self, properties: dict[str, Any]) -> None:
        """Merge ``properties`` into the graph's properties (``name`` included)."""
        if not isinstance(properties, dict):
            raise GraphFormatError("properties must be an object", path="$.properties")
        bounded(properties, "$.properties", level=2, what="properties")
        self._properties.update(copy.deepcopy(properties))

    def properties(self) -> dict[str, Any]:
        return copy.deepcopy(self._properties)

    # -- types ------------------------------------------------------------------------------
    def port_type(self, node: str, port: str, direction: Direction) -> dict[str, Any] | None:
        """The port type the graph declares for ``node``'s ``direction`` port ``port``.

        Types come from connection ends and exported ports; ``None`` when untyped (``any``).
        Raises PortTypeError if two places give the port different types.
        """
        self._need_node(node, "port_type")
        declared = self._declared_types(node, port, direction)
        return self._agreed_type(node, port, direction, declared)

    @staticmethod
    def _agreed_type(
        node: str,
        port: str,
        direction: Direction,
        declared: Iterable[tuple[str, dict[str, Any] | None]],
    ) -> dict[str, Any] | None:
        """The one type the ``(label, type)`` declarations of a port agree on (a copy)."""
        found: dict[str, Any] | None = None
        where = ""
        for label, port_type in declared:
            if port_type is None or port_type.get("type") == "any":
                continue
            if found is None:
                found, where = port_type, label
            elif port_type != found:
                raise PortTypeError(
                    f"{direction}-port {node}.{port} is typed {type_label(found)} at {where} "
                    f"but {type_label(port_type)} at {label}",
                    source=where,
                    target=label,
                )
        return copy.deepcopy(found)

    def _declared_types(
        self, node: str, port: str, direction: Direction
    ) -> Iterable[tuple[str, dict[str, Any] | None]]:
        key = self.port_key(port)
        for i, conn in enumerate(self._connections):
            end = conn.tgt if direction == "in" else (None if conn.iip else conn.src)
            if end is not None and end.node == node and self.port_key(end.port) == key:
                yield self._end_label(i, conn, direction), end.port_type
        table = self._inports if direction == "in" else self._outports
        for name, exported in table.items():
            if exported.node == node and self.port_key(exported.port) == key:
                yield f"{key_path(f'$.{direction}ports', name)}.portType", exported.port_type

    @staticmethod
    def _end_label(i: int, conn: ConnectionRecord, direction: Direction) -> str:
        verbose = conn.shape == "verbose"
        side = ("to" if verbose else "tgt") if direction == "in" else ("from" if verbose else "src")
        return f"$.connections[{i}].{side}.portType"

    def _typed_ports(self) -> dict[tuple[str, Direction, str], list[tuple[str, Any]]]:
        """Every typed declaration of every port, in one pass: ``(node, direction, port key)``
        to the ``(label, type)`` pairs :meth:`_declared_types` yields for it, in its order.
        Untyped ends are left out (they never decide a type)."""
        found: dict[tuple[str, Direction, str], list[tuple[str, Any]]] = {}
        fold = self.port_key
        for i, conn in enumerate(self._connections):
            ends: tuple[tuple[EndRecord, Direction], ...] = (
                ((conn.tgt, "in"),)
                if conn.iip or conn.src is None
                else ((conn.tgt, "in"), (conn.src, "out"))
            )
            for end, direction in ends:
                if end.port_type is not None:
                    found.setdefault((end.node, direction, fold(end.port)), []).append(
                        (self._end_label(i, conn, direction), end.port_type)
                    )
        tables: tuple[tuple[dict[str, ExportRecord], Direction], ...] = (
            (self._inports, "in"),
            (self._outports, "out"),
        )
        for table, direction in tables:
            for name, exported in table.items():
                if exported.port_type is not None:
                    found.setdefault((exported.node, direction, fold(exported.port)), []).append(
                        (f"{key_path(f'$.{direction}ports', name)}.portType", exported.port_type)
                    )
        return found

    # -- JSON -------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The graph as FBP graph JSON (a fresh dict; see the module docstring)."""
        out: dict[str, Any] = {
            "caseSensitive": self._case_sensitive,
            "properties": copy.deepcopy(self._properties),
            "processes": {k: n.to_json() for k, n in self._nodes.items()},
            "connections": [c.to_json() for c in self._connections],
            "inports": {k: p.to_json() for k, p in self._inports.items()},
            "outports": {k: p.to_json() for k, p in self._outports.items()},
            "groups": [g.to_json() for g in self._groups],
        }
        out.update(copy.deepcopy(self._extra))
        return out

    def import_graph(self, export: dict[str, Any] | str) -> None:
        """Replace this graph's whole state with the graph JSON ``export`` (validated first,
        so a bad ``export`` leaves this graph untouched)."""
        other = Graph.from_json(export)
        self.__dict__.update(other.__dict__)

    @staticmethod
    def from_json(value: dict[str, Any] | str | bytes) -> Graph:
        """Read FBP graph JSON (a dict or a JSON string) in either dialect.

        Raises GraphFormatError with the JSON path of the first problem found.
        """
        with bulk():
            return read_graph(value, Graph)
