"""The records a graph is made of, and how each is written back in the dialect it was read in.

A graph is a handful of record kinds — processes, connections (initial packets included, with
their two ends), exported ports and groups — held by :class:`GraphData` in document order. Each
record remembers the FBP JSON dialect it came from (``shape``: ``"verbose"`` or ``"classic"``),
which optional keys it had (``explicit``) and every key this module does not know (``extra``),
and its ``to_json`` writes exactly that back: this is what makes reading and writing lossless.
The two dialects are described in ``reflow._core._graph_reader``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from ._graph_values import ANY, Shape

__all__ = [
    "CLASSIC_END_KEYS",
    "TOP_KEYS",
    "VERBOSE_EDGE_KEYS",
    "ConnectionRecord",
    "EndRecord",
    "ExportRecord",
    "GraphData",
    "GroupRecord",
    "ProcessRecord",
]

TOP_KEYS = (
    "caseSensitive",
    "properties",
    "processes",
    "connections",
    "inports",
    "outports",
    "groups",
)


@dataclass
class ProcessRecord:
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


VERBOSE_EDGE_KEYS = (
    "nodeId",
    "portId",
    "portName",
    "portType",
    "index",
    "expose",
    "data",
    "metadata",
)
CLASSIC_END_KEYS = ("process", "port", "index", "portType")


@dataclass
class EndRecord:
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
                "portType": copy.deepcopy(self.port_type or ANY),
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
class ConnectionRecord:
    """A connection, or an initial packet when ``src`` is ``None`` (verbose: empty ``from``)."""

    tgt: EndRecord
    shape: Shape
    iip: bool = False
    src: EndRecord | None = None  # for a verbose initial packet: its empty "from" edge, if any
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
            src = self.src or EndRecord(node="", port="")
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
class ExportRecord:
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
                "portType": copy.deepcopy(self.port_type or ANY),
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
class GroupRecord:
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


ConnectionKey = tuple[str, str, str, str]


class GraphData:
    """What a graph holds: its records in document order, and how to compare port names.

    Port names compare without regard to case unless ``case_sensitive``; :meth:`port_key` is
    the form they are compared in. ``_shape`` is the dialect new records are written in.
    """

    def __init__(self, case_sensitive: bool = False) -> None:
        self._case_sensitive = bool(case_sensitive)
        self._nodes: dict[str, ProcessRecord] = {}
        self._connections: list[ConnectionRecord] = []  # edges and initial packets, in order
        self._inports: dict[str, ExportRecord] = {}
        self._outports: dict[str, ExportRecord] = {}
        self._groups: list[GroupRecord] = []
        self._properties: dict[str, Any] = {}
        self._extra: dict[str, Any] = {}
        self._shape: Shape = "verbose"
        # (source node, source port key, target node, target port key) -> the first such
        # connection; built on first use, dropped (None) by every edit but an append
        self._edge_index: dict[ConnectionKey, ConnectionRecord] | None = None

    def port_key(self, port: str) -> str:
        return port if self._case_sensitive else port.lower()

    def _same_port(self, a: str, b: str) -> bool:
        return a == b if self._case_sensitive else a.lower() == b.lower()

    def _find_port(self, table: dict[str, ExportRecord], name: str) -> str | None:
        if name in table:
            return name
        if not self._case_sensitive:
            folded = name.lower()
            for key in table:
                if key.lower() == folded:
                    return key
        return None

    def _edges(self) -> dict[ConnectionKey, ConnectionRecord]:
        """The connection index (initial packets are not in it)."""
        index = self._edge_index
        if index is None:
            index = {}
            fold = self.port_key
            for conn in self._connections:
                if not conn.iip and conn.src is not None:
                    key = (conn.src.node, fold(conn.src.port), conn.tgt.node, fold(conn.tgt.port))
                    index.setdefault(key, conn)
            self._edge_index = index
        return index
