"""The FBP graph: build it in code or read it from JSON, edit it, write it back without loss.

:class:`Graph` mirrors ``offbit_reflow.Graph`` name for name. Its JSON form is the FBP graph
format (``processes``, ``connections`` — initial packets included —, ``inports``, ``outports``,
``groups``, ``properties``, ``caseSensitive``) in either of its two dialects:

* **verbose** — what ``offbit_reflow`` writes: connections as ``{"from": edge, "to": edge,
  "metadata", "data"}`` where an edge is ``{"nodeId", "portId", "portName", "portType", "index",
  "expose", "data", "metadata"}``; an initial packet is a connection whose ``from.nodeId`` is
  empty and whose ``data`` holds the packet; exported ports are edges keyed by their public name
  (``portId`` = public name, ``portName`` = the node's port); groups are ``{"id", "nodes",
  "metadata"}``.
* **classic** — the noflo shape: ``{"src": {"process", "port", "index"}, "tgt": {...},
  "metadata"}``, initial packets ``{"data": 42, "tgt": {...}}``, exported ports ``{"process",
  "port", "metadata"}``, groups ``{"name", "nodes", "metadata"}``. A ``portType`` key on an end
  or an exported port is understood here too, so classic graphs can be typed.

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

:func:`compose_graphs` merges graphs under namespaces; :func:`graph_to_network_spec` is the
tiny, flat view of a graph the network is built from.
"""

from __future__ import annotations

import copy
import json
import re
import reprlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from .._errors import (
    DuplicateNodeError,
    GraphError,
    GraphFormatError,
    MessageError,
    PortTypeError,
    UnknownNodeError,
)
from .._jsonread import JSONDepthError, check_depth, loads

__all__ = [
    "PORT_TYPES",
    "ConnectionSpec",
    "Graph",
    "GraphSpec",
    "InitialSpec",
    "NodeSpec",
    "compose_graphs",
    "graph_to_network_spec",
    "is_tagged_message",
    "port_types_compatible",
]

Shape = Literal["verbose", "classic"]
Direction = Literal["in", "out"]

#: Port type names (``{"type": name}``); ``object`` may carry ``"value"`` (a type name),
#: ``array`` and ``option`` carry ``"value"``: the element's port type.
PORT_TYPES = (
    "any",
    "flow",
    "event",
    "boolean",
    "integer",
    "float",
    "string",
    "object",
    "array",
    "encoded",
    "bytes",
    "stream",
    "option",
)
_ANY: dict[str, Any] = {"type": "any"}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


# -- small helpers ---------------------------------------------------------------------------


def _key_path(base: str, key: str) -> str:
    return f"{base}.{key}" if _IDENT.match(key) else f"{base}[{json.dumps(key)}]"


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


#: The deepest a value handed to a Graph method sits in the graph's JSON (the document is
#: level 1; a verbose edge's metadata is ``$.connections[i].from.metadata``, level 5). Values
#: are checked at this level, so every graph reads back from its own ``to_json()``.
_VALUE_LEVEL = 5


def _bounded(value: Any, path: str, level: int = _VALUE_LEVEL, what: str = "value") -> None:
    """Refuse ``value`` (sitting at ``level`` of the graph JSON, at ``path``) with a
    GraphFormatError if it nests deeper than the JSON depth limit."""
    try:
        check_depth(value, level=level, path=path, what=what)
    except JSONDepthError as exc:
        raise GraphFormatError(exc.detail, path=exc.path) from None


def is_tagged_message(value: Any) -> bool:
    """True when ``value`` is meant as a tagged message: a dict with a ``"type"`` key and no
    keys other than ``"type"`` and ``"data"``. Any other value is plain JSON data, which an
    initial packet may carry as is (the network wraps it)."""
    return isinstance(value, dict) and "type" in value and set(value) <= {"type", "data"}


def _check_iip_data(data: Any, path: str) -> None:
    if not is_tagged_message(data):
        return
    from ._messages import Message  # imported late: messages import nothing from here

    try:
        Message.from_json(data, _path=path)
    except MessageError as exc:
        raise GraphFormatError(
            f"initial packet is not a valid message: {exc}", path=exc.path
        ) from exc


def _metadata(value: Any, path: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise GraphFormatError(
            f"metadata must be an object or null, got {_type_name(value)}", path=path
        )
    return copy.deepcopy(value)


def _string(obj: dict[str, Any], key: str, path: str, what: str, *, empty: bool = False) -> str:
    if key not in obj:
        raise GraphFormatError(f"{what} is missing (expected key {key!r})", path=path)
    value = obj[key]
    if not isinstance(value, str):
        raise GraphFormatError(f"{what} must be a string, got {_type_name(value)}", path=path)
    if not value and not empty:
        raise GraphFormatError(f"{what} must not be empty", path=path)
    return value


def _index(value: Any, path: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise GraphFormatError(
            f"index must be a non-negative integer or null, got {reprlib.repr(value)}", path=path
        )
    return value


def _port_type(value: Any, path: str) -> dict[str, Any] | None:
    """Validate a port type; ``None`` means untyped (``any``). Kept verbatim when valid."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise GraphFormatError(
            f'a port type must be an object like {{"type": "integer"}}, got {_type_name(value)}',
            path=path,
        )
    kind = value.get("type")
    if kind not in PORT_TYPES:
        raise GraphFormatError(
            f"unknown port type {kind!r}; expected one of {', '.join(PORT_TYPES)}",
            path=f"{path}.type",
        )
    if kind in ("array", "option"):
        if "value" not in value:
            raise GraphFormatError(
                f"a {kind} port type needs a 'value' (the element's port type)",
                path=f"{path}.value",
            )
        _port_type(value["value"], f"{path}.value")
    elif kind == "object" and not isinstance(value.get("value", ""), str):
        raise GraphFormatError(
            "an object port type's 'value' must be a string", path=f"{path}.value"
        )
    return copy.deepcopy(value)


def _type_label(port_type: dict[str, Any] | None) -> str:
    if port_type is None:
        return "any"
    kind = port_type["type"]
    if kind in ("array", "option"):
        return f"{kind}<{_type_label(port_type['value'])}>"
    if kind == "object" and port_type.get("value"):
        return f"object<{port_type['value']}>"
    return str(kind)


def port_types_compatible(out_type: dict[str, Any] | None, in_type: dict[str, Any] | None) -> bool:
    """Whether a packet from an out-port of ``out_type`` may enter an in-port of ``in_type``.

    ``None`` and ``any`` match everything; otherwise types must be equal, except that an
    ``integer`` may feed a ``float``, ``option<T>`` matches ``T`` on either side, ``array``
    compares its elements, and an ``object`` without a ``value`` matches every object.
    """
    a = out_type or _ANY
    b = in_type or _ANY
    ka, kb = a["type"], b["type"]
    if ka == "any" or kb == "any":
        return True
    if ka == "option":
        return port_types_compatible(a["value"], b["value"] if kb == "option" else b)
    if kb == "option":
        return port_types_compatible(a, b["value"])
    if ka == "array" and kb == "array":
        return port_types_compatible(a["value"], b["value"])
    if ka == "object" and kb == "object":
        va, vb = a.get("value") or "", b.get("value") or ""
        return not va or not vb or va == vb
    return bool(ka == kb or (ka == "integer" and kb == "float"))


def _merge_metadata(
    current: dict[str, Any] | None, update: dict[str, Any] | None
) -> dict[str, Any] | None:
    """noflo's rule: keys are merged in, a ``None`` value deletes its key; ``{}`` (or ``None``)
    clears the metadata, as ``offbit_reflow`` does."""
    if not update:
        return {} if update is not None else None
    merged = dict(current or {})
    for key, value in copy.deepcopy(update).items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _extras(obj: dict[str, Any], known: Iterable[str]) -> dict[str, Any]:
    skip = set(known)
    return {k: copy.deepcopy(v) for k, v in obj.items() if k not in skip}


# -- records ---------------------------------------------------------------------------------


@dataclass
class _Node:
    id: str
    component: str
    metadata: dict[str, Any] | None
    shape: Shape
    explicit: frozenset[str] = frozenset()  # classic optional keys present in the input
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        if self.shape == "verbose":
            out: dict[str, Any] = {"id": self.id, "component": self.component}
            out["metadata"] = copy.deepcopy(self.metadata)
        else:
            out = {"component": self.component}
            if "id" in self.explicit:
                out["id"] = self.id
            if self.metadata is not None or "metadata" in self.explicit:
                out["metadata"] = copy.deepcopy(self.metadata)
        out.update(copy.deepcopy(self.extra))
        return out


_VERBOSE_EDGE_KEYS = ("nodeId", "portId", "portName", "portType", "index", "expose", "data",
                      "metadata")
_CLASSIC_END_KEYS = ("process", "port", "index", "portType")


@dataclass
class _End:
    """One end of a connection (or the target of an initial packet)."""

    node: str
    port: str
    index: int | None = None
    port_type: dict[str, Any] | None = None
    # verbose-only fields, kept so they round-trip
    port_name: str | None = ""
    expose: bool = False
    data: Any = None
    metadata: dict[str, Any] | None = None
    via: str | None = None  # verbose initial packet sent through this exported inport
    explicit: frozenset[str] = frozenset()
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self, shape: Shape) -> dict[str, Any]:
        if shape == "verbose":
            out: dict[str, Any] = {
                "nodeId": self.node,
                "portId": self.via if self.via is not None else self.port,
                "portName": self.port if self.via is not None else self.port_name,
                "portType": copy.deepcopy(self.port_type or _ANY),
                "index": self.index,
                "expose": self.expose,
                "data": copy.deepcopy(self.data),
                "metadata": copy.deepcopy(self.metadata),
            }
        else:
            out = {"process": self.node, "port": self.port}
            if self.index is not None or "index" in self.explicit:
                out["index"] = self.index
            if self.port_type is not None or "portType" in self.explicit:
                out["portType"] = copy.deepcopy(self.port_type)
        out.update(copy.deepcopy(self.extra))
        return out


@dataclass
class _Connection:
    """A connection, or an initial packet when ``src`` is ``None`` (verbose: empty ``from``)."""

    tgt: _End
    shape: Shape
    iip: bool = False
    src: _End | None = None  # for a verbose initial packet: its empty "from" edge, if any
    data: Any = None
    metadata: dict[str, Any] | None = None
    explicit: frozenset[str] = frozenset()
    extra: dict[str, Any] = field(default_factory=dict)

    def key(self) -> tuple[Any, ...]:
        src = self.src if not self.iip else None
        return (
            (src.node, src.port, src.index) if src else None,
            (self.tgt.node, self.tgt.port, self.tgt.index),
        )

    def label(self) -> str:
        target = f"{self.tgt.node}.{self.tgt.port}"
        if self.iip or self.src is None:
            return f"initial packet -> {target}"
        return f"{self.src.node}.{self.src.port} -> {target}"

    def to_json(self) -> dict[str, Any]:
        if self.shape == "verbose":
            src = self.src or _End(node="", port="")
            out: dict[str, Any] = {
                "from": src.to_json("verbose"),
                "to": self.tgt.to_json("verbose"),
                "metadata": copy.deepcopy(self.metadata),
                "data": copy.deepcopy(self.data) if self.iip else None,
            }
        else:
            if self.iip:
                out = {"data": copy.deepcopy(self.data), "tgt": self.tgt.to_json("classic")}
            else:
                assert self.src is not None
                out = {"src": self.src.to_json("classic"), "tgt": self.tgt.to_json("classic")}
            if self.metadata is not None or "metadata" in self.explicit:
                out["metadata"] = copy.deepcopy(self.metadata)
        out.update(copy.deepcopy(self.extra))
        return out


@dataclass
class _Exported:
    node: str
    port: str
    shape: Shape
    port_type: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    # verbose: the "portId" to write; None when the input named the node port in "portId"
    # and left "portName" empty
    port_id: str | None = None
    port_name_raw: str | None = ""
    index: int | None = None
    expose: bool = False
    data: Any = None
    explicit: frozenset[str] = frozenset()
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        if self.shape == "verbose":
            out: dict[str, Any] = {
                "nodeId": self.node,
                "portId": self.port_id if self.port_id is not None else self.port,
                "portName": self.port if self.port_id is not None else self.port_name_raw,
                "portType": copy.deepcopy(self.port_type or _ANY),
                "index": self.index,
                "expose": self.expose,
                "data": copy.deepcopy(self.data),
                "metadata": copy.deepcopy(self.metadata),
            }
        else:
            out = {"process": self.node, "port": self.port}
            if self.metadata is not None or "metadata" in self.explicit:
                out["metadata"] = copy.deepcopy(self.metadata)
            if self.port_type is not None or "portType" in self.explicit:
                out["portType"] = copy.deepcopy(self.port_type)
        out.update(copy.deepcopy(self.extra))
        return out


@dataclass
class _Group:
    id: str
    nodes: list[str]
    shape: Shape
    metadata: dict[str, Any] | None = None
    explicit: frozenset[str] = frozenset()
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any]
        if self.shape == "verbose":
            out = {"id": self.id, "nodes": list(self.nodes)}
            out["metadata"] = copy.deepcopy(self.metadata)
        else:
            out = {"name": self.id, "nodes": list(self.nodes)}
            if self.metadata is not None or "metadata" in self.explicit:
                out["metadata"] = copy.deepcopy(self.metadata)
        out.update(copy.deepcopy(self.extra))
        return out


_TOP_KEYS = ("caseSensitive", "properties", "processes", "connections", "inports", "outports",
             "groups")


class _DuplicateKeys(dict[str, Any]):
    """A JSON object that had repeated keys (only built when it did)."""

    duplicates: list[str]


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    dups = []
    for key, value in pairs:
        if key in seen:
            dups.append(key)
        seen[key] = value
    if not dups:
        return seen
    marked = _DuplicateKeys(seen)
    marked.duplicates = dups
    return marked


def _reject_duplicate_keys(value: Any, path: str) -> None:
    if isinstance(value, dict):
        if isinstance(value, _DuplicateKeys):
            key = value.duplicates[0]
            raise GraphFormatError(f"key {key!r} appears more than once", path=_key_path(path, key))
        for key, item in value.items():
            _reject_duplicate_keys(item, _key_path(path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _reject_duplicate_keys(item, f"{path}[{i}]")


# -- the graph -------------------------------------------------------------------------------


class Graph:
    """An FBP graph: nodes (processes), connections, initial packets, exported ports, groups.

    Mirrors ``offbit_reflow.Graph``. Accessors return fresh dicts in the verbose shape;
    :meth:`to_json` is the lossless form (see the module docstring).
    """

    def __init__(self, name: str = "", case_sensitive: bool = False) -> None:
        if not isinstance(name, str):
            raise GraphFormatError("a graph name must be a string", path="$.properties.name")
        self._case_sensitive = bool(case_sensitive)
        self._nodes: dict[str, _Node] = {}
        self._connections: list[_Connection] = []  # edges and initial packets, in order
        self._inports: dict[str, _Exported] = {}
        self._outports: dict[str, _Exported] = {}
        self._groups: list[_Group] = []
        self._properties: dict[str, Any] = {"name": name} if name else {}
        self._extra: dict[str, Any] = {}
        self._shape: Shape = "verbose"

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

    def _same_port(self, a: str, b: str) -> bool:
        return a == b if self._case_sensitive else a.lower() == b.lower()

    def _need_node(self, node: str, context: str) -> _Node:
        found = self._nodes.get(node)
        if found is None:
            raise UnknownNodeError(node, context, list(self._nodes))
        return found

    def _find_port(self, table: dict[str, _Exported], name: str) -> str | None:
        if name in table:
            return name
        if not self._case_sensitive:
            for key in table:
                if key.lower() == name.lower():
                    return key
        return None

    def _need_port(self, table: dict[str, _Exported], name: str, direction: str) -> str:
        key = self._find_port(table, name) if isinstance(name, str) else None
        if key is None:
            shown = ", ".join(table) or "none"
            raise GraphError(f"no exported {direction} {name!r}; exported {direction}s: {shown}")
        return key

    def _need_group(self, group_id: str) -> _Group:
        for group in self._groups:
            if group.id == group_id:
                return group
        shown = ", ".join(g.id for g in self._groups) or "none"
        raise GraphError(f"no group {group_id!r}; groups: {shown}")

    def _new_metadata(self, metadata: Any, path: str) -> dict[str, Any] | None:
        """Metadata handed to a method (not read from a document, which is checked whole)."""
        _bounded(metadata, path, what="metadata")
        return _metadata(metadata, path)

    # -- nodes ------------------------------------------------------------------------------
    def add_node(self, id: str, component: str, metadata: dict[str, Any] | None = None) -> None:
        """Add a node running ``component``. Raises DuplicateNodeError if ``id`` is taken."""
        if not isinstance(id, str) or not id:
            raise GraphFormatError(f"a node id must be a non-empty string, got {id!r}",
                                   path="$.processes")
        path = _key_path("$.processes", id)
        if id in self._nodes:
            raise DuplicateNodeError(id)
        if not isinstance(component, str) or not component:
            raise GraphFormatError(
                f"component must be a non-empty string, got {component!r}",
                path=f"{path}.component",
            )
        self._nodes[id] = _Node(
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

    def rename_node(self, old_id: str, new_id: str) -> None:
        """Rename a node everywhere it is referenced; its position in the order is kept."""
        node = self._need_node(old_id, "rename_node")
        if new_id == old_id:
            return
        if not isinstance(new_id, str) or not new_id:
            raise GraphFormatError(f"a node id must be a non-empty string, got {new_id!r}",
                                   path="$.processes")
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

    def get_node(self, id: str) -> dict[str, Any] | None:
        """``{"id", "component", "metadata"}`` of a node, or None if there is none."""
        node = self._nodes.get(id)
        if node is None:
            return None
        return {"id": node.id, "component": node.component,
                "metadata": copy.deepcopy(node.metadata)}

    def set_node_metadata(self, id: str, metadata: dict[str, Any]) -> None:
        """Merge ``metadata`` into the node's (a None value deletes a key; ``{}`` clears)."""
        node = self._need_node(id, "set_node_metadata")
        update = self._new_metadata(metadata, f"{_key_path('$.processes', id)}.metadata")
        node.metadata = _merge_metadata(node.metadata, update)

    def nodes(self) -> list[dict[str, Any]]:
        """Every node as ``{"id", "component", "metadata"}``, in order."""
        return [d for d in (self.get_node(n) for n in self._nodes) if d is not None]

    # -- connections ------------------------------------------------------------------------
    def _find_connection(self, out_node: str, out_port: str, in_node: str,
                         in_port: str) -> _Connection | None:
        for conn in self._connections:
            if conn.iip or conn.src is None:
                continue
            if (conn.src.node == out_node and conn.tgt.node == in_node
                    and self._same_port(conn.src.port, out_port)
                    and self._same_port(conn.tgt.port, in_port)):
                return conn
        return None

    def _need_connection(self, out_node: str, out_port: str, in_node: str,
                         in_port: str) -> _Connection:
        conn = self._find_connection(out_node, out_port, in_node, in_port)
        if conn is None:
            raise GraphError(f"no connection {out_node}.{out_port} -> {in_node}.{in_port}")
        return conn

    def add_connection(self, out_node: str, out_port: str, in_node: str, in_port: str,
                       metadata: dict[str, Any] | None = None) -> None:
        """Connect ``out_node.out_port`` to ``in_node.in_port``.

        Raises UnknownNodeError for a missing node and GraphError if the same connection exists.
        """
        self._need_node(out_node, f"source of connection to {in_node}.{in_port}")
        self._need_node(in_node, f"target of connection from {out_node}.{out_port}")
        src = _End(node=out_node, port=self._port(out_port, "out_port"))
        tgt = _End(node=in_node, port=self._port(in_port, "in_port"))
        if self._find_connection(out_node, src.port, in_node, tgt.port) is not None:
            raise GraphError(
                f"connection {out_node}.{src.port} -> {in_node}.{tgt.port} already exists"
            )
        path = f"$.connections[{len(self._connections)}].metadata"
        self._connections.append(_Connection(
            tgt=tgt, src=src, shape=self._shape, metadata=self._new_metadata(metadata, path)
        ))

    def remove_connection(self, out_node: str, out_port: str, in_node: str, in_port: str) -> None:
        """Remove a connection. Raises GraphError if there is none."""
        conn = self._need_connection(out_node, out_port, in_node, in_port)
        self._connections.remove(conn)

    def get_connection(self, out_node: str, out_port: str, in_node: str,
                       in_port: str) -> dict[str, Any] | None:
        """The connection in the verbose shape, or None if there is none."""
        conn = self._find_connection(out_node, out_port, in_node, in_port)
        return None if conn is None else self._connection_view(conn)

    def set_connection_metadata(self, out_node: str, out_port: str, in_node: str, in_port: str,
                                metadata: dict[str, Any]) -> None:
        """Merge ``metadata`` into the connection's (a None value deletes; ``{}`` clears)."""
        conn = self._need_connection(out_node, out_port, in_node, in_port)
        conn.metadata = _merge_metadata(conn.metadata, self._new_metadata(metadata, "$.metadata"))

    @staticmethod
    def _connection_view(conn: _Connection) -> dict[str, Any]:
        verbose = copy.copy(conn)
        verbose.shape = "verbose"
        verbose.extra = {}
        return verbose.to_json()

    def connections(self) -> list[dict[str, Any]]:
        """Every connection (initial packets excluded) in the verbose shape, in order."""
        return [self._connection_view(c) for c in self._connections if not c.iip]

    # -- initial packets --------------------------------------------------------------------
    def _add_iip(self, node: str, port: str, data: Any, index: int | None,
                 metadata: dict[str, Any] | None, via: str | None = None) -> None:
        path = f"$.connections[{len(self._connections)}]"
        _bounded(data, f"{path}.data", what="initial packet")
        _check_iip_data(data, f"{path}.data")
        tgt = _End(node=node, port=port, index=_index(index, f"{path}.to.index"), via=via)
        self._connections.append(_Connection(
            tgt=tgt, shape=self._shape, iip=True, data=copy.deepcopy(data),
            metadata=self._new_metadata(metadata, f"{path}.metadata"),
        ))

    def add_initial(self, node: str, port: str, data: Any,
                    metadata: dict[str, Any] | None = None) -> None:
        """Send ``data`` to ``node.port`` when the network starts. ``data`` is a tagged message
        (``{"type": "Integer", "data": 1}``, validated now) or plain JSON (wrapped later)."""
        self._need_node(node, f"initial packet for port {port!r}")
        self._add_iip(node, self._port(port), data, None, metadata)

    def add_initial_index(self, node: str, port: str, data: Any, index: int,
                          metadata: dict[str, Any] | None = None) -> None:
        """Like :meth:`add_initial`, to slot ``index`` of an array port."""
        self._need_node(node, f"initial packet for port {port!r}")
        self._add_iip(node, self._port(port), data, index, metadata)

    def remove_initial(self, node: str, port: str) -> None:
        """Remove every initial packet sent to ``node.port``. Raises GraphError if none."""
        self._need_node(node, "remove_initial")
        keep = [
            c for c in self._connections
            if not (c.iip and c.tgt.node == node and self._same_port(c.tgt.port, port))
        ]
        if len(keep) == len(self._connections):
            raise GraphError(f"no initial packet for {node}.{port}")
        self._connections = keep

    def add_graph_initial(self, inport: str, data: Any,
                          metadata: dict[str, Any] | None = None) -> None:
        """Send ``data`` into the graph through its exported in-port ``inport``."""
        name = self._need_port(self._inports, inport, "inport")
        port = self._inports[name]
        self._add_iip(port.node, port.port, data, None, metadata, via=name)

    def add_graph_initial_index(self, inport: str, data: Any, index: int,
                                metadata: dict[str, Any] | None = None) -> None:
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
                out.append({
                    "data": copy.deepcopy(conn.data),
                    "metadata": copy.deepcopy(conn.metadata),
                    "to": {k: v for k, v in conn.tgt.to_json("verbose").items()
                           if k not in conn.tgt.extra},
                })
        return out

    # -- exported ports ---------------------------------------------------------------------
    def _add_exported(self, table: dict[str, _Exported], direction: str, port_id: str,
                      node_id: str, port_key: str, port_type: dict[str, Any] | None,
                      metadata: dict[str, Any] | None) -> None:
        name = self._port(port_id, f"{direction} name")
        self._need_node(node_id, f"exported {direction} {name!r}")
        if self._find_port(table, name) is not None:
            raise GraphError(f"exported {direction} {name!r} already exists; remove it first")
        path = _key_path(f"$.{direction}s", name)
        _bounded(port_type, f"{path}.portType", what="port type")
        table[name] = _Exported(
            node=node_id,
            port=self._port(port_key, "port_key"),
            shape=self._shape,
            port_type=_port_type(port_type, f"{path}.portType"),
            metadata=self._new_metadata(metadata, f"{path}.metadata"),
            port_id=name,
        )

    def _drop_exported(self, table: dict[str, _Exported], name: str) -> None:
        del table[name]
        if table is self._inports:
            for conn in self._connections:
                if conn.iip and conn.tgt.via == name:
                    conn.tgt.via = None

    def _rename_exported(self, table: dict[str, _Exported], direction: str, old: str,
                         new: str) -> None:
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
    def _exported_view(port: _Exported, name: str) -> dict[str, Any]:
        verbose = copy.copy(port)
        verbose.shape = "verbose"
        verbose.extra = {}
        if port.shape != "verbose":
            verbose.port_id = name
        return verbose.to_json()

    def add_inport(self, port_id: str, node_id: str, port_key: str,
                   port_type: dict[str, Any] | None = None,
                   metadata: dict[str, Any] | None = None) -> None:
        """Export ``node_id.port_key`` as the graph's in-port ``port_id``."""
        self._add_exported(self._inports, "inport", port_id, node_id, port_key, port_type,
                           metadata)

    def add_outport(self, port_id: str, node_id: str, port_key: str,
                    port_type: dict[str, Any] | None = None,
                    metadata: dict[str, Any] | None = None) -> None:
        """Export ``node_id.port_key`` as the graph's out-port ``port_id``."""
        self._add_exported(self._outports, "outport", port_id, node_id, port_key, port_type,
                           metadata)

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
        port.metadata = _merge_metadata(port.metadata, self._new_metadata(metadata, "$.metadata"))

    def set_outport_metadata(self, port_id: str, metadata: dict[str, Any]) -> None:
        port = self._outports[self._need_port(self._outports, port_id, "outport")]
        port.metadata = _merge_metadata(port.metadata, self._new_metadata(metadata, "$.metadata"))

    def inports(self) -> dict[str, dict[str, Any]]:
        """Exported in-ports: public name -> edge (``nodeId``, ``portName`` = node port, ...)."""
        return {name: self._exported_view(p, name) for name, p in self._inports.items()}

    def outports(self) -> dict[str, dict[str, Any]]:
        """Exported out-ports: public name -> edge (``nodeId``, ``portName`` = node port, ...)."""
        return {name: self._exported_view(p, name) for name, p in self._outports.items()}

    # -- groups -----------------------------------------------------------------------------
    def add_group(self, group_id: str, nodes: list[str],
                  metadata: dict[str, Any] | None = None) -> None:
        """Add a group of existing nodes. Raises GraphError if ``group_id`` is taken."""
        if not isinstance(group_id, str) or not group_id:
            raise GraphFormatError(f"a group id must be a non-empty string, got {group_id!r}",
                                   path="$.groups")
        if any(g.id == group_id for g in self._groups):
            raise GraphError(f"group {group_id!r} already exists")
        members: list[str] = []
        for node in nodes:
            self._need_node(node, f"member of group {group_id!r}")
            if node not in members:
                members.append(node)
        path = f"$.groups[{len(self._groups)}].metadata"
        self._groups.append(_Group(id=group_id, nodes=members, shape=self._shape,
                                   metadata=self._new_metadata(metadata, path)))

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
        group.metadata = _merge_metadata(group.metadata, self._new_metadata(metadata, "$.metadata"))

    def groups(self) -> list[dict[str, Any]]:
        """Every group as ``{"id", "nodes", "metadata"}``, in order."""
        return [{"id": g.id, "nodes": list(g.nodes), "metadata": copy.deepcopy(g.metadata)}
                for g in self._groups]

    # -- properties -------------------------------------------------------------------------
    def set_properties(self, properties: dict[str, Any]) -> None:
        """Merge ``properties`` into the graph's properties (``name`` included)."""
        if not isinstance(properties, dict):
            raise GraphFormatError("properties must be an object", path="$.properties")
        _bounded(properties, "$.properties", level=2, what="properties")
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
        found: dict[str, Any] | None = None
        where = ""
        for label, declared in self._declared_types(node, port, direction):
            if declared is None or declared.get("type") == "any":
                continue
            if found is None:
                found, where = declared, label
            elif declared != found:
                raise PortTypeError(
                    f"{direction}-port {node}.{port} is typed {_type_label(found)} at {where} "
                    f"but {_type_label(declared)} at {label}",
                    source=where, target=label,
                )
        return copy.deepcopy(found)

    def _declared_types(self, node: str, port: str,
                        direction: Direction) -> Iterable[tuple[str, dict[str, Any] | None]]:
        for i, conn in enumerate(self._connections):
            end = conn.tgt if direction == "in" else (None if conn.iip else conn.src)
            if end is not None and end.node == node and self._same_port(end.port, port):
                side = ("to" if conn.shape == "verbose" else "tgt") if direction == "in" else (
                    "from" if conn.shape == "verbose" else "src")
                yield f"$.connections[{i}].{side}.portType", end.port_type
        table = self._inports if direction == "in" else self._outports
        for name, exported in table.items():
            if exported.node == node and self._same_port(exported.port, port):
                yield f"{_key_path(f'$.{direction}ports', name)}.portType", exported.port_type

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
        if isinstance(value, (str, bytes, bytearray)):
            try:
                value = loads(value, what="graph JSON", object_pairs_hook=_pairs_hook)
            except JSONDepthError as exc:
                raise GraphFormatError(exc.detail, path=exc.path) from None
            except ValueError as exc:
                raise GraphFormatError(f"not valid JSON: {exc}", path="$") from exc
            _reject_duplicate_keys(value, "$")
        else:
            _bounded(value, "$", level=1, what="graph")
        return _GraphReader(value).read()


# -- reading ---------------------------------------------------------------------------------


class _GraphReader:
    """Validates graph JSON and builds a Graph from it; every error names its JSON path."""

    def __init__(self, doc: Any) -> None:
        if not isinstance(doc, dict):
            raise GraphFormatError(
                f"a graph must be a JSON object, got {_type_name(doc)}", path="$"
            )
        self.doc = doc
        self.classic = False
        cs = doc.get("caseSensitive", False)
        if not isinstance(cs, bool):
            raise GraphFormatError(
                f"caseSensitive must be true or false, got {reprlib.repr(cs)}",
                path="$.caseSensitive",
            )
        self.graph = Graph(case_sensitive=cs)

    def section(self, key: str, kind: type) -> Any:
        value = self.doc.get(key)
        if value is None:
            return kind()
        if not isinstance(value, kind):
            want = "an object" if kind is dict else "an array"
            raise GraphFormatError(f"{key} must be {want}, got {_type_name(value)}",
                                   path=f"$.{key}")
        return value

    def read(self) -> Graph:
        g = self.graph
        props = self.section("properties", dict)
        g._properties = copy.deepcopy(props)
        g._extra = _extras(self.doc, _TOP_KEYS)
        for node_id, raw in self.section("processes", dict).items():
            self.read_node(node_id, raw)
        for direction in ("inport", "outport"):
            table = g._inports if direction == "inport" else g._outports
            for name, raw in self.section(f"{direction}s", dict).items():
                path = _key_path(f"$.{direction}s", name)
                clash = g._find_port(table, name) if not g._case_sensitive else None
                if clash is not None:
                    raise GraphFormatError(
                        f"{direction} {name!r} clashes with {clash!r}: the graph is not "
                        "case-sensitive (set caseSensitive: true to keep both)",
                        path=path,
                    )
                table[name] = self.read_exported(name, raw, path)
        seen: dict[tuple[Any, ...], int] = {}
        for i, raw in enumerate(self.section("connections", list)):
            conn = self.read_connection(raw, f"$.connections[{i}]")
            key = (conn.iip, *conn.key())
            if not conn.iip:
                if key in seen:
                    raise GraphFormatError(
                        f"duplicate connection {conn.label()} (first at "
                        f"$.connections[{seen[key]}])",
                        path=f"$.connections[{i}]",
                    )
                seen[key] = i
            g._connections.append(conn)
        group_ids: dict[str, int] = {}
        for i, raw in enumerate(self.section("groups", list)):
            group = self.read_group(raw, f"$.groups[{i}]")
            if group.id in group_ids:
                raise GraphFormatError(
                    f"duplicate group id {group.id!r} (first at $.groups[{group_ids[group.id]}])",
                    path=f"$.groups[{i}].{'id' if group.shape == 'verbose' else 'name'}",
                )
            group_ids[group.id] = i
            g._groups.append(group)
        g._shape = "classic" if self.classic else "verbose"
        return g

    def obj(self, raw: Any, path: str, what: str) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise GraphFormatError(f"{what} must be an object, got {_type_name(raw)}", path=path)
        return raw

    def known_node(self, raw: dict[str, Any], key: str, path: str) -> str:
        node = _string(raw, key, f"{path}.{key}", "process")
        if node not in self.graph._nodes:
            shown = ", ".join(list(self.graph._nodes)[:10]) or "none"
            raise GraphFormatError(
                f"unknown process {node!r}; processes: {shown}", path=f"{path}.{key}"
            )
        return node

    def read_node(self, node_id: str, raw: Any) -> None:
        path = _key_path("$.processes", node_id)
        if not node_id:
            raise GraphFormatError("a process id must not be empty", path=path)
        raw = self.obj(raw, path, f"process {node_id!r}")
        component = _string(raw, "component", f"{path}.component", f"component of {node_id!r}")
        if "id" in raw and raw["id"] != node_id:
            raise GraphFormatError(
                f"id {raw['id']!r} does not match the process key {node_id!r}", path=f"{path}.id"
            )
        shape: Shape = "verbose" if "id" in raw else "classic"
        self.classic |= shape == "classic"
        self.graph._nodes[node_id] = _Node(
            id=node_id,
            component=component,
            metadata=_metadata(raw.get("metadata"), f"{path}.metadata"),
            shape=shape,
            explicit=frozenset(k for k in ("id", "metadata") if k in raw),
            extra=_extras(raw, ("id", "component", "metadata")),
        )

    def read_end(self, raw: Any, path: str, shape: Shape, *, empty_ok: bool = False) -> _End:
        raw = self.obj(raw, path, "a connection end")
        if shape == "classic":
            return _End(
                node=self.known_node(raw, "process", path),
                port=_string(raw, "port", f"{path}.port", "port"),
                index=_index(raw.get("index"), f"{path}.index"),
                port_type=_port_type(raw.get("portType"), f"{path}.portType"),
                explicit=frozenset(k for k in ("index", "portType") if k in raw),
                extra=_extras(raw, _CLASSIC_END_KEYS),
            )
        if empty_ok:
            node = _string(raw, "nodeId", f"{path}.nodeId", "nodeId", empty=True) \
                if "nodeId" in raw else ""
            port = _string(raw, "portId", f"{path}.portId", "portId", empty=True) \
                if "portId" in raw else ""
        else:
            node = self.known_node(raw, "nodeId", path)
            port = _string(raw, "portId", f"{path}.portId", "portId")
        port_name = raw.get("portName", "")
        if port_name is not None and not isinstance(port_name, str):
            raise GraphFormatError("portName must be a string", path=f"{path}.portName")
        expose = raw.get("expose", False)
        if not isinstance(expose, bool):
            raise GraphFormatError("expose must be true or false", path=f"{path}.expose")
        port_type = _port_type(raw.get("portType"), f"{path}.portType")
        return _End(
            node=node,
            port=port,
            index=_index(raw.get("index"), f"{path}.index"),
            port_type=port_type,
            port_name=port_name,
            expose=expose,
            data=copy.deepcopy(raw.get("data")),
            metadata=_metadata(raw.get("metadata"), f"{path}.metadata"),
            extra=_extras(raw, _VERBOSE_EDGE_KEYS),
        )

    def read_connection(self, raw: Any, path: str) -> _Connection:
        raw = self.obj(raw, path, "a connection")
        classic = "src" in raw or "tgt" in raw
        verbose = "from" in raw or "to" in raw
        if classic and verbose:
            raise GraphFormatError(
                "a connection uses either src/tgt (classic) or from/to (verbose), not both",
                path=path,
            )
        if not classic and not verbose:
            raise GraphFormatError(
                'a connection needs "src" and "tgt" (or "from" and "to"); an initial packet '
                'needs "data" and "tgt"',
                path=path,
            )
        metadata = _metadata(raw.get("metadata"), f"{path}.metadata")
        if classic:
            self.classic = True
            if "tgt" not in raw:
                raise GraphFormatError("a connection needs a target", path=f"{path}.tgt")
            iip = "src" not in raw
            if iip and "data" not in raw:
                raise GraphFormatError(
                    'a connection needs a "src" (or "data" for an initial packet)',
                    path=f"{path}.src",
                )
            if not iip and "data" in raw:
                raise GraphFormatError(
                    'a connection with a "src" cannot also carry "data"', path=f"{path}.data"
                )
            tgt = self.read_end(raw["tgt"], f"{path}.tgt", "classic")
            src = None if iip else self.read_end(raw["src"], f"{path}.src", "classic")
            if iip:
                _check_iip_data(raw["data"], f"{path}.data")
            return _Connection(
                tgt=tgt, src=src, shape="classic", iip=iip,
                data=copy.deepcopy(raw.get("data")), metadata=metadata,
                explicit=frozenset(k for k in ("metadata",) if k in raw),
                extra=_extras(raw, ("src", "tgt", "data", "metadata")),
            )
        if "to" not in raw:
            raise GraphFormatError("a connection needs a target", path=f"{path}.to")
        raw_from = raw.get("from")
        iip = (
            raw_from is None
            or (isinstance(raw_from, dict) and not raw_from.get("nodeId"))
        )
        if iip:
            src = None if raw_from is None else self.read_end(
                raw_from, f"{path}.from", "verbose", empty_ok=True)
            tgt = self.read_end(raw["to"], f"{path}.to", "verbose")
            self.resolve_via(tgt)
            _check_iip_data(raw.get("data"), f"{path}.data")
        else:
            if raw.get("data") is not None:
                raise GraphFormatError(
                    'a connection with a source ("from.nodeId") cannot also carry "data"',
                    path=f"{path}.data",
                )
            src = self.read_end(raw_from, f"{path}.from", "verbose")
            tgt = self.read_end(raw["to"], f"{path}.to", "verbose")
        return _Connection(
            tgt=tgt, src=src, shape="verbose", iip=iip, data=copy.deepcopy(raw.get("data")),
            metadata=metadata, extra=_extras(raw, ("from", "to", "data", "metadata")),
        )

    def resolve_via(self, tgt: _End) -> None:
        """offbit_reflow writes an initial packet sent through an exported inport with
        ``portId`` = the inport's name and ``portName`` = the node's port."""
        if not tgt.port_name:
            return
        name = self.graph._find_port(self.graph._inports, tgt.port)
        if name is None:
            return
        inport = self.graph._inports[name]
        if inport.node == tgt.node and self.graph._same_port(inport.port, tgt.port_name):
            tgt.via, tgt.port, tgt.port_name = tgt.port, tgt.port_name, ""

    def read_exported(self, name: str, raw: Any, path: str) -> _Exported:
        if not name:
            raise GraphFormatError("an exported port name must not be empty", path=path)
        raw = self.obj(raw, path, "an exported port")
        metadata = _metadata(raw.get("metadata"), f"{path}.metadata")
        port_type = _port_type(raw.get("portType"), f"{path}.portType")
        if "process" in raw or "nodeId" not in raw:
            self.classic = True
            return _Exported(
                node=self.known_node(raw, "process", path),
                port=_string(raw, "port", f"{path}.port", "port"),
                shape="classic", port_type=port_type, metadata=metadata,
                explicit=frozenset(k for k in ("metadata", "portType") if k in raw),
                extra=_extras(raw, ("process", "port", "metadata", "portType")),
            )
        node = self.known_node(raw, "nodeId", path)
        port_name = raw.get("portName", "")
        if port_name is not None and not isinstance(port_name, str):
            raise GraphFormatError("portName must be a string", path=f"{path}.portName")
        if port_name:
            port, port_id = port_name, raw.get("portId", name)
            if not isinstance(port_id, str):
                raise GraphFormatError("portId must be a string", path=f"{path}.portId")
        else:
            port, port_id = _string(raw, "portId", f"{path}.portId", "portId"), None
        expose = raw.get("expose", False)
        if not isinstance(expose, bool):
            raise GraphFormatError("expose must be true or false", path=f"{path}.expose")
        return _Exported(
            node=node, port=port, shape="verbose", port_type=port_type, metadata=metadata,
            port_id=port_id, port_name_raw=port_name,
            index=_index(raw.get("index"), f"{path}.index"), expose=expose,
            data=copy.deepcopy(raw.get("data")), extra=_extras(raw, _VERBOSE_EDGE_KEYS),
        )

    def read_group(self, raw: Any, path: str) -> _Group:
        raw = self.obj(raw, path, "a group")
        shape: Shape = "verbose" if "id" in raw or "name" not in raw else "classic"
        key = "id" if shape == "verbose" else "name"
        self.classic |= shape == "classic"
        group_id = _string(raw, key, f"{path}.{key}", "group id")
        nodes = raw.get("nodes", [])
        if not isinstance(nodes, list):
            raise GraphFormatError(f"nodes must be an array, got {_type_name(nodes)}",
                                   path=f"{path}.nodes")
        members: list[str] = []
        for j, node in enumerate(nodes):
            npath = f"{path}.nodes[{j}]"
            if not isinstance(node, str):
                raise GraphFormatError(f"a group member must be a node id, got {node!r}",
                                       path=npath)
            if node not in self.graph._nodes:
                raise GraphFormatError(f"unknown process {node!r} in group {group_id!r}",
                                       path=npath)
            if node in members:
                raise GraphFormatError(f"process {node!r} is listed twice in group "
                                       f"{group_id!r}", path=npath)
            members.append(node)
        return _Group(
            id=group_id, nodes=members, shape=shape,
            metadata=_metadata(raw.get("metadata"), f"{path}.metadata"),
            explicit=frozenset(k for k in ("metadata",) if k in raw),
            extra=_extras(raw, (key, "nodes", "metadata")),
        )


# -- composition -----------------------------------------------------------------------------


def compose_graphs(composition: dict[str, Any]) -> dict[str, Any]:
    """Merge several graphs into one graph JSON (verbose shape), as ``offbit_reflow`` does.

    ``composition`` is ``{"graphs": [graph JSON, ...], "connections": [...],
    "shared_resources": [...], "properties": {...}, "case_sensitive": bool}``. Each graph is
    namespaced by its ``properties["name"]``: its process ``src`` becomes ``left/src``, and so do
    its groups and exported ports (``left/in``). ``connections`` join namespaced processes:
    ``{"from": {"process": "left/src", "port": "out"}, "to": {"process": "right/sink",
    "port": "in"}, "metadata": {...}}`` (``index`` optional on either end). A non-empty
    ``shared_resources`` list is kept as ``properties["shared_resources"]``; the members' own
    properties are not carried over. A graph without a name, two graphs with the same name and
    a connection naming an unknown process raise GraphFormatError with the path in
    ``composition``.
    """
    if not isinstance(composition, dict):
        raise GraphFormatError(
            f"a composition must be an object, got {_type_name(composition)}", path="$"
        )
    for key, value in composition.items():
        if key != "graphs":  # each graph is checked as the document it is
            _bounded(value, _key_path("$", str(key)), level=2, what="composition")
    graphs = composition.get("graphs")
    if not isinstance(graphs, list) or not graphs:
        raise GraphFormatError("graphs must be a non-empty array of graphs", path="$.graphs")
    cs = composition.get("case_sensitive", False)
    if not isinstance(cs, bool):
        raise GraphFormatError("case_sensitive must be true or false", path="$.case_sensitive")
    props = composition.get("properties") or {}
    if not isinstance(props, dict):
        raise GraphFormatError("properties must be an object", path="$.properties")
    shared = composition.get("shared_resources") or []
    if not isinstance(shared, list):
        raise GraphFormatError("shared_resources must be an array", path="$.shared_resources")

    out = Graph(case_sensitive=cs)
    out._properties = copy.deepcopy(props)
    if shared:
        out._properties["shared_resources"] = copy.deepcopy(shared)
    spaces: dict[str, int] = {}
    for i, member in enumerate(graphs):
        path = f"$.graphs[{i}]"
        if isinstance(member, Graph):
            g = Graph.from_json(member.to_json())
        else:
            try:
                g = Graph.from_json(member)
            except GraphFormatError as exc:
                raise GraphFormatError(exc.reason, path=path + exc.path[1:]) from exc
        ns = g._properties.get("name")
        if not isinstance(ns, str) or not ns:
            raise GraphFormatError(
                "every composed graph needs a non-empty properties.name (its namespace)",
                path=f"{path}.properties.name",
            )
        if ns in spaces:
            raise GraphFormatError(
                f"namespace {ns!r} is used by $.graphs[{spaces[ns]}] already; give each "
                "graph a distinct properties.name",
                path=f"{path}.properties.name",
            )
        spaces[ns] = i
        _merge_namespaced(out, g, ns)
    cross = composition.get("connections") or []
    if not isinstance(cross, list):
        raise GraphFormatError("connections must be an array", path="$.connections")
    for i, raw in enumerate(cross):
        path = f"$.connections[{i}]"
        if not isinstance(raw, dict):
            raise GraphFormatError("a connection must be an object", path=path)
        ends = []
        for side in ("from", "to"):
            end = raw.get(side)
            if not isinstance(end, dict):
                raise GraphFormatError(
                    f'"{side}" must be an object like {{"process": "ns/node", "port": "out"}}',
                    path=f"{path}.{side}",
                )
            node = _string(end, "process", f"{path}.{side}.process", "process")
            if node not in out._nodes:
                shown = ", ".join(list(out._nodes)[:10])
                raise GraphFormatError(
                    f"unknown process {node!r}; composed processes are named "
                    f"'namespace/node': {shown}",
                    path=f"{path}.{side}.process",
                )
            port = _string(end, "port", f"{path}.{side}.port", "port")
            ends.append(_End(node=node, port=port if cs else port.lower(),
                             index=_index(end.get("index"), f"{path}.{side}.index")))
        conn = _Connection(
            tgt=ends[1], src=ends[0], shape="verbose",
            metadata=_metadata(raw.get("metadata"), f"{path}.metadata"),
        )
        if any(not c.iip and c.key() == conn.key() for c in out._connections):
            raise GraphFormatError(f"duplicate connection {conn.label()}", path=path)
        out._connections.append(conn)
    return out.to_json()


def _merge_namespaced(out: Graph, g: Graph, ns: str) -> None:
    """Copy ``g`` into ``out`` with every node, group and exported port prefixed ``ns/``,
    converting each record to the verbose shape (its unknown keys are kept)."""

    def q(name: str) -> str:
        return f"{ns}/{name}"

    for node in g._nodes.values():
        out._nodes[q(node.id)] = _Node(
            id=q(node.id), component=node.component, metadata=copy.deepcopy(node.metadata),
            shape="verbose", extra=copy.deepcopy(node.extra),
        )
    for conn in g._connections:
        conn = copy.deepcopy(conn)
        conn.shape = "verbose"
        for end in (conn.src, conn.tgt):
            if end is not None and end.node:
                end.node = q(end.node)
        if conn.tgt.via is not None:
            conn.tgt.via = q(conn.tgt.via)
        out._connections.append(conn)
    for src, dst in ((g._inports, out._inports), (g._outports, out._outports)):
        for name, port in src.items():
            port = copy.deepcopy(port)
            if port.shape != "verbose" or port.port_id == name:
                port.port_id = q(name)
            port.shape = "verbose"
            port.node = q(port.node)
            dst[q(name)] = port
    for group in g._groups:
        out._groups.append(_Group(
            id=q(group.id), nodes=[q(n) for n in group.nodes], shape="verbose",
            metadata=copy.deepcopy(group.metadata), extra=copy.deepcopy(group.extra),
        ))


# -- network spec ----------------------------------------------------------------------------


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
    nodes = []
    for node in graph._nodes.values():
        metadata = copy.deepcopy(node.metadata) or {}
        config = metadata.get("config", {})
        if not isinstance(config, dict):
            raise GraphFormatError(
                f"config of node {node.id!r} must be an object, got {_type_name(config)}",
                path=f"{_key_path('$.processes', node.id)}.metadata.config",
            )
        nodes.append(NodeSpec(node.id, node.component, config, metadata))
    port_types: dict[tuple[str, str, str], dict[str, Any]] = {}

    def typed(node: str, port: str, direction: Direction) -> dict[str, Any] | None:
        declared = graph.port_type(node, port, direction)
        if declared is not None:
            port_types[(node, direction, port)] = declared
        return declared

    connections = []
    initials = []
    for i, conn in enumerate(graph._connections):
        path = f"$.connections[{i}]"
        if conn.iip or conn.src is None:
            typed(conn.tgt.node, conn.tgt.port, "in")
            initials.append(InitialSpec(conn.tgt.node, conn.tgt.port, copy.deepcopy(conn.data),
                                        conn.tgt.index))
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
                f"cannot connect {source} ({_type_label(out_t)}) to {target} "
                f"({_type_label(in_t)})",
                source=source, target=target,
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
    return GraphSpec(nodes, connections, initials, inports, outports, port_types,
                     graph.case_sensitive)
