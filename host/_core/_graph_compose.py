"""Composition: several graphs merged into one, each under its own namespace.

:func:`compose_graphs` is ``offbit_reflow``'s function of that name: the member graphs' records
are copied in with their ids prefixed ``namespace/``, and cross-graph connections join them.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

from .._errors import GraphFormatError
from ._graph import Graph
from ._graph_records import ConnectionRecord, EndRecord, GroupRecord, ProcessRecord
from ._graph_values import bounded, index_value, key_path, metadata_value, string_field, type_name

__all__ = ["compose_graphs"]


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
            f"a composition must be an object, got {type_name(composition)}", path="$"
        )
    for key, value in composition.items():
        if key != "graphs":  # each graph is checked as the document it is
            bounded(value, key_path("$", str(key)), level=2, what="composition")
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
    keys = {c.key() for c in out._connections if not c.iip}
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
            node = string_field(end, "process", f"{path}.{side}.process", "process")
            if node not in out._nodes:
                shown = ", ".join(itertools.islice(out._nodes, 10))
                raise GraphFormatError(
                    f"unknown process {node!r}; composed processes are named "
                    f"'namespace/node': {shown}",
                    path=f"{path}.{side}.process",
                )
            port = string_field(end, "port", f"{path}.{side}.port", "port")
            ends.append(
                EndRecord(
                    node=node,
                    port=port if cs else port.lower(),
                    index=index_value(end.get("index"), f"{path}.{side}.index"),
                )
            )
        conn = ConnectionRecord(
            tgt=ends[1],
            src=ends[0],
            shape="verbose",
            metadata=metadata_value(raw.get("metadata"), f"{path}.metadata"),
        )
        if conn.key() in keys:
            raise GraphFormatError(f"duplicate connection {conn.label()}", path=path)
        keys.add(conn.key())
        out._connections.append(conn)
    return out.to_json()


def _merge_namespaced(out: Graph, g: Graph, ns: str) -> None:
    """Copy ``g`` into ``out`` with every node, group and exported port prefixed ``ns/``,
    converting each record to the verbose shape (its unknown keys are kept)."""

    def q(name: str) -> str:
        return f"{ns}/{name}"

    for node in g._nodes.values():
        out._nodes[q(node.id)] = ProcessRecord(
            id=q(node.id),
            component=node.component,
            metadata=copy.deepcopy(node.metadata),
            shape="verbose",
            extra=copy.deepcopy(node.extra),
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
        out._groups.append(
            GroupRecord(
                id=q(group.id),
                nodes=[q(n) for n in group.nodes],
                shape="verbose",
                metadata=copy.deepcopy(group.metadata),
                extra=copy.deepcopy(group.extra),
            )
        )
