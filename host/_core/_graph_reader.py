"""Reading FBP graph JSON, in either of its two dialects, into graph records.

The FBP graph format has ``processes``, ``connections`` (initial packets included),
``inports``, ``outports``, ``groups``, ``properties`` and ``caseSensitive``, written in one of
two dialects (a document may mix them, record by record):

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

:func:`read_graph` validates a document (text or value) and raises
:class:`~reflow.GraphFormatError` whose ``path`` is the JSON path of the first problem
(``$.connections[3].tgt.process``); repeated keys in JSON text are refused too. Each record
keeps its dialect and unknown keys (``reflow._core._graph_records``). Reading takes time linear
in the document: every lookup it makes (processes, exported ports, duplicates) is a dict.
"""

from __future__ import annotations

import copy
import itertools
import reprlib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .._errors import GraphFormatError
from .._jsonread import JSONDepthError, loads
from ._graph_records import (
    CLASSIC_END_KEYS,
    TOP_KEYS,
    VERBOSE_EDGE_KEYS,
    ConnectionRecord,
    EndRecord,
    ExportRecord,
    GraphData,
    GroupRecord,
    ProcessRecord,
)
from ._graph_values import (
    Shape,
    bounded,
    check_iip_data,
    extras,
    index_value,
    key_path,
    metadata_value,
    port_type_value,
    string_field,
    type_name,
)

__all__ = ["read_graph"]

G = TypeVar("G", bound=GraphData)


def read_graph(value: Any, make: Callable[..., G]) -> G:
    """Read FBP graph JSON (a dict, or JSON text as str or bytes) into ``make(case_sensitive=)``.

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
        bounded(value, "$", level=1, what="graph")
    return _GraphReader(value, make).read()


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
            raise GraphFormatError(f"key {key!r} appears more than once", path=key_path(path, key))
        for key, item in value.items():
            _reject_duplicate_keys(item, key_path(path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _reject_duplicate_keys(item, f"{path}[{i}]")


class _GraphReader(Generic[G]):
    """Validates graph JSON and builds a graph from it; every error names its JSON path."""

    def __init__(self, doc: Any, make: Callable[..., G]) -> None:
        if not isinstance(doc, dict):
            raise GraphFormatError(f"a graph must be a JSON object, got {type_name(doc)}", path="$")
        self.doc = doc
        self.classic = False
        self.inport_names: dict[str, str] = {}  # lower-cased exported in-port -> its name
        cs = doc.get("caseSensitive", False)
        if not isinstance(cs, bool):
            raise GraphFormatError(
                f"caseSensitive must be true or false, got {reprlib.repr(cs)}",
                path="$.caseSensitive",
            )
        self.graph = make(case_sensitive=cs)

    def section(self, key: str, kind: type) -> Any:
        value = self.doc.get(key)
        if value is None:
            return kind()
        if not isinstance(value, kind):
            want = "an object" if kind is dict else "an array"
            raise GraphFormatError(f"{key} must be {want}, got {type_name(value)}", path=f"$.{key}")
        return value

    def read(self) -> G:
        g = self.graph
        props = self.section("properties", dict)
        g._properties = copy.deepcopy(props)
        g._extra = extras(self.doc, TOP_KEYS)
        for node_id, raw in self.section("processes", dict).items():
            self.read_node(node_id, raw)
        for direction in ("inport", "outport"):
            table = g._inports if direction == "inport" else g._outports
            folded = self.inport_names if direction == "inport" else {}
            for name, raw in self.section(f"{direction}s", dict).items():
                path = key_path(f"$.{direction}s", name)
                clash = folded.get(name.lower()) if not g._case_sensitive else None
                if clash is not None:
                    raise GraphFormatError(
                        f"{direction} {name!r} clashes with {clash!r}: the graph is not "
                        "case-sensitive (set caseSensitive: true to keep both)",
                        path=path,
                    )
                table[name] = self.read_exported(name, raw, path)
                folded.setdefault(name.lower(), name)
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
            raise GraphFormatError(f"{what} must be an object, got {type_name(raw)}", path=path)
        return raw

    def known_node(self, raw: dict[str, Any], key: str, path: str) -> str:
        node = string_field(raw, key, f"{path}.{key}", "process")
        if node not in self.graph._nodes:
            shown = ", ".join(itertools.islice(self.graph._nodes, 10)) or "none"
            raise GraphFormatError(
                f"unknown process {node!r}; processes: {shown}", path=f"{path}.{key}"
            )
        return node

    def read_node(self, node_id: str, raw: Any) -> None:
        path = key_path("$.processes", node_id)
        if not node_id:
            raise GraphFormatError("a process id must not be empty", path=path)
        raw = self.obj(raw, path, f"process {node_id!r}")
        component = string_field(raw, "component", f"{path}.component", f"component of {node_id!r}")
        if "id" in raw and raw["id"] != node_id:
            raise GraphFormatError(
                f"id {raw['id']!r} does not match the process key {node_id!r}", path=f"{path}.id"
            )
        shape: Shape = "verbose" if "id" in raw else "classic"
        self.classic |= shape == "classic"
        self.graph._nodes[node_id] = ProcessRecord(
            id=node_id,
            component=component,
            metadata=metadata_value(raw.get("metadata"), f"{path}.metadata"),
            shape=shape,
            explicit=frozenset(k for k in ("id", "metadata") if k in raw),
            extra=extras(raw, ("id", "component", "metadata")),
        )

    def read_end(self, raw: Any, path: str, shape: Shape, *, empty_ok: bool = False) -> EndRecord:
        raw = self.obj(raw, path, "a connection end")
        if shape == "classic":
            return EndRecord(
                node=self.known_node(raw, "process", path),
                port=string_field(raw, "port", f"{path}.port", "port"),
                index=index_value(raw.get("index"), f"{path}.index"),
                port_type=port_type_value(raw.get("portType"), f"{path}.portType"),
                explicit=frozenset(k for k in ("index", "portType") if k in raw),
                extra=extras(raw, CLASSIC_END_KEYS),
            )
        if empty_ok:
            node = (
                string_field(raw, "nodeId", f"{path}.nodeId", "nodeId", empty=True)
                if "nodeId" in raw
                else ""
            )
            port = (
                string_field(raw, "portId", f"{path}.portId", "portId", empty=True)
                if "portId" in raw
                else ""
            )
        else:
            node = self.known_node(raw, "nodeId", path)
            port = string_field(raw, "portId", f"{path}.portId", "portId")
        port_name = raw.get("portName", "")
        if port_name is not None and not isinstance(port_name, str):
            raise GraphFormatError("portName must be a string", path=f"{path}.portName")
        expose = raw.get("expose", False)
        if not isinstance(expose, bool):
            raise GraphFormatError("expose must be true or false", path=f"{path}.expose")
        port_type = port_type_value(raw.get("portType"), f"{path}.portType")
        return EndRecord(
            node=node,
            port=port,
            index=index_value(raw.get("index"), f"{path}.index"),
            port_type=port_type,
            port_name=port_name,
            expose=expose,
            data=copy.deepcopy(raw.get("data")),
            metadata=metadata_value(raw.get("metadata"), f"{path}.metadata"),
            extra=extras(raw, VERBOSE_EDGE_KEYS),
        )

    def read_connection(self, raw: Any, path: str) -> ConnectionRecord:
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
        metadata = metadata_value(raw.get("metadata"), f"{path}.metadata")
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
                check_iip_data(raw["data"], f"{path}.data")
            return ConnectionRecord(
                tgt=tgt,
                src=src,
                shape="classic",
                iip=iip,
                data=copy.deepcopy(raw.get("data")),
                metadata=metadata,
                explicit=frozenset(k for k in ("metadata",) if k in raw),
                extra=extras(raw, ("src", "tgt", "data", "metadata")),
            )
        if "to" not in raw:
            raise GraphFormatError("a connection needs a target", path=f"{path}.to")
        raw_from = raw.get("from")
        iip = raw_from is None or (isinstance(raw_from, dict) and not raw_from.get("nodeId"))
        if iip:
            src = (
                None
                if raw_from is None
                else self.read_end(raw_from, f"{path}.from", "verbose", empty_ok=True)
            )
            tgt = self.read_end(raw["to"], f"{path}.to", "verbose")
            self.resolve_via(tgt)
            check_iip_data(raw.get("data"), f"{path}.data")
        else:
            if raw.get("data") is not None:
                raise GraphFormatError(
                    'a connection with a source ("from.nodeId") cannot also carry "data"',
                    path=f"{path}.data",
                )
            src = self.read_end(raw_from, f"{path}.from", "verbose")
            tgt = self.read_end(raw["to"], f"{path}.to", "verbose")
        return ConnectionRecord(
            tgt=tgt,
            src=src,
            shape="verbose",
            iip=iip,
            data=copy.deepcopy(raw.get("data")),
            metadata=metadata,
            extra=extras(raw, ("from", "to", "data", "metadata")),
        )

    def resolve_via(self, tgt: EndRecord) -> None:
        """offbit_reflow writes an initial packet sent through an exported inport with
        ``portId`` = the inport's name and ``portName`` = the node's port."""
        if not tgt.port_name:
            return
        inports = self.graph._inports
        name = tgt.port if tgt.port in inports else None
        if name is None and not self.graph._case_sensitive:
            name = self.inport_names.get(tgt.port.lower())
        if name is None:
            return
        inport = self.graph._inports[name]
        if inport.node == tgt.node and self.graph._same_port(inport.port, tgt.port_name):
            tgt.via, tgt.port, tgt.port_name = tgt.port, tgt.port_name, ""

    def read_exported(self, name: str, raw: Any, path: str) -> ExportRecord:
        if not name:
            raise GraphFormatError("an exported port name must not be empty", path=path)
        raw = self.obj(raw, path, "an exported port")
        metadata = metadata_value(raw.get("metadata"), f"{path}.metadata")
        port_type = port_type_value(raw.get("portType"), f"{path}.portType")
        if "process" in raw or "nodeId" not in raw:
            self.classic = True
            return ExportRecord(
                node=self.known_node(raw, "process", path),
                port=string_field(raw, "port", f"{path}.port", "port"),
                shape="classic",
                port_type=port_type,
                metadata=metadata,
                explicit=frozenset(k for k in ("metadata", "portType") if k in raw),
                extra=extras(raw, ("process", "port", "metadata", "portType")),
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
            port, port_id = string_field(raw, "portId", f"{path}.portId", "portId"), None
        expose = raw.get("expose", False)
        if not isinstance(expose, bool):
            raise GraphFormatError("expose must be true or false", path=f"{path}.expose")
        return ExportRecord(
            node=node,
            port=port,
            shape="verbose",
            port_type=port_type,
            metadata=metadata,
            port_id=port_id,
            port_name_raw=port_name,
            index=index_value(raw.get("index"), f"{path}.index"),
            expose=expose,
            data=copy.deepcopy(raw.get("data")),
            extra=extras(raw, VERBOSE_EDGE_KEYS),
        )

    def read_group(self, raw: Any, path: str) -> GroupRecord:
        raw = self.obj(raw, path, "a group")
        shape: Shape = "verbose" if "id" in raw or "name" not in raw else "classic"
        key = "id" if shape == "verbose" else "name"
        self.classic |= shape == "classic"
        group_id = string_field(raw, key, f"{path}.{key}", "group id")
        nodes = raw.get("nodes", [])
        if not isinstance(nodes, list):
            raise GraphFormatError(
                f"nodes must be an array, got {type_name(nodes)}", path=f"{path}.nodes"
            )
        members: list[str] = []
        listed: set[str] = set()
        for j, node in enumerate(nodes):
            npath = f"{path}.nodes[{j}]"
            if not isinstance(node, str):
                raise GraphFormatError(
                    f"a group member must be a node id, got {node!r}", path=npath
                )
            if node not in self.graph._nodes:
                raise GraphFormatError(
                    f"unknown process {node!r} in group {group_id!r}", path=npath
                )
            if node in listed:
                raise GraphFormatError(
                    f"process {node!r} is listed twice in group {group_id!r}", path=npath
                )
            listed.add(node)
            members.append(node)
        return GroupRecord(
            id=group_id,
            nodes=members,
            shape=shape,
            metadata=metadata_value(raw.get("metadata"), f"{path}.metadata"),
            explicit=frozenset(k for k in ("metadata",) if k in raw),
            extra=extras(raw, (key, "nodes", "metadata")),
        )
