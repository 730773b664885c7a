"""Tests for the graph modules of reflow._core: the FBP graph model (_graph), its JSON dialects
(_graph_reader, _graph_records), composition (_graph_compose) and network spec (_graph_spec)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reflow._core._graph import Graph
from reflow._core._graph_compose import compose_graphs
from reflow._core._graph_spec import (
    ConnectionSpec,
    InitialSpec,
    NodeSpec,
    graph_to_network_spec,
)
from reflow._core._graph_values import is_tagged_message, port_types_compatible
from reflow._errors import (
    DuplicateNodeError,
    GraphError,
    GraphFormatError,
    PortTypeError,
    UnknownNodeError,
)

ANY = {"type": "any"}


def edge(node: str = "", port: str = "", **kw: Any) -> dict[str, Any]:
    """A complete verbose edge, as offbit_reflow writes it."""
    out = {
        "data": None,
        "expose": False,
        "index": None,
        "metadata": None,
        "nodeId": node,
        "portId": port,
        "portName": "",
        "portType": ANY,
    }
    out.update(kw)
    return out


# What offbit_reflow 0.2.9 wrote for a small graph (verbatim from its Graph.to_json).
OFFBIT_DUMP: dict[str, Any] = {
    "caseSensitive": False,
    "connections": [
        {"data": None, "from": edge("a", "out"), "metadata": None, "to": edge("b", "in")},
        {
            "data": {"data": 1, "type": "Integer"},
            "from": edge(),
            "metadata": None,
            "to": edge("a", "in", index=0),
        },
        # an initial packet sent through the exported inport "pub" (offbit's add_graph_initial)
        {
            "data": 9,
            "from": edge(),
            "metadata": {"mm": 2},
            "to": edge("a", "pub", portName="x", index=0),
        },
    ],
    "groups": [{"id": "grp", "metadata": None, "nodes": ["a", "b"]}],
    "inports": {"in": edge("a", "in", portName="in"), "pub": edge("a", "pub", portName="x")},
    "outports": {"out": edge("b", "out", portName="out")},
    "processes": {
        "a": {"component": "tpl_x", "id": "a", "metadata": {"x": 1}},
        "b": {"component": "tpl_y", "id": "b", "metadata": None},
    },
    "properties": {"name": "g"},
}

CLASSIC: dict[str, Any] = {
    "caseSensitive": False,
    "properties": {"name": "classic", "environment": {"type": "noflo-nodejs"}},
    "processes": {
        "read": {"component": "fs/Read", "metadata": {"x": 10, "y": 20}},
        "split": {"component": "text/Split", "metadata": {"config": {"sep": ","}}, "z": 1},
        "show": {"component": "core/Output"},
    },
    "connections": [
        {
            "src": {"process": "read", "port": "out"},
            "tgt": {"process": "split", "port": "in"},
            "metadata": {"route": 3, "capacity": 8},
        },
        {
            "src": {"process": "split", "port": "out", "index": 0},
            "tgt": {"process": "show", "port": "in", "portType": {"type": "string"}},
            "x": [1],
        },
        {"data": "file.txt", "tgt": {"process": "read", "port": "path"}},
        {
            "data": {"type": "Integer", "data": 4},
            "tgt": {"process": "split", "port": "n", "index": 2},
            "metadata": None,
        },
    ],
    "inports": {"path": {"process": "read", "port": "path", "metadata": {"x": 1}}},
    "outports": {"out": {"process": "show", "port": "out"}},
    "groups": [{"name": "io", "nodes": ["read", "show"], "metadata": {"description": "d"}}],
    "x-editor": {"zoom": 2},
}


def small_graph(**kw: Any) -> Graph:
    g = Graph("g", **kw)
    g.add_node("a", "tpl_a", {"config": {"k": 1}})
    g.add_node("b", "tpl_b")
    g.add_node("c", "tpl_c")
    g.add_connection("a", "out", "b", "in")
    g.add_connection("b", "out", "c", "in", {"capacity": 2})
    g.add_initial("a", "in", 5)
    g.add_inport("start", "a", "in")
    g.add_outport("result", "c", "out")
    g.add_group("grp", ["a", "b"], {"color": "red"})
    return g


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("doc", [OFFBIT_DUMP, CLASSIC], ids=["verbose", "classic"])
def test_known_documents_round_trip_exactly(doc: dict[str, Any]) -> None:
    original = copy.deepcopy(doc)
    out = Graph.from_json(doc).to_json()
    assert out == original
    assert doc == original  # the input was not modified
    assert Graph.from_json(json.dumps(doc)).to_json() == original


def test_graph_initial_through_inport_is_understood() -> None:
    g = Graph.from_json(OFFBIT_DUMP)
    inits = g.initializers()
    assert [(i["to"]["nodeId"], i["data"]) for i in inits] == [
        ("a", {"data": 1, "type": "Integer"}),
        ("a", 9),
    ]
    spec = graph_to_network_spec(g)
    assert spec.initials[1] == InitialSpec("a", "x", 9, 0)  # the node port, not the inport name
    g.rename_inport("pub", "pub2")
    assert g.to_json()["connections"][2]["to"]["portId"] == "pub2"
    g.remove_graph_initial("pub2")
    assert [i["data"] for i in g.initializers()] == [{"data": 1, "type": "Integer"}]


def test_sparse_verbose_input_is_completed_and_then_stable() -> None:
    doc = {
        "processes": {"a": {"id": "a", "component": "t"}, "b": {"id": "b", "component": "t"}},
        "connections": [
            {
                "from": {"nodeId": "a", "portId": "out"},
                "to": {"nodeId": "b", "portId": "in", "zz": 1},
            }
        ],
    }
    once = Graph.from_json(doc).to_json()
    assert once["processes"]["a"] == {"id": "a", "component": "t", "metadata": None}
    assert once["connections"][0]["to"] == edge("b", "in", zz=1)
    assert Graph.from_json(once).to_json() == once


def test_api_graph_writes_what_offbit_reads() -> None:
    out = small_graph().to_json()
    assert set(out) == {
        "caseSensitive",
        "properties",
        "processes",
        "connections",
        "inports",
        "outports",
        "groups",
    }
    assert out["processes"]["a"] == {
        "id": "a",
        "component": "tpl_a",
        "metadata": {"config": {"k": 1}},
    }
    assert out["connections"][0] == {
        "from": edge("a", "out"),
        "to": edge("b", "in"),
        "metadata": None,
        "data": None,
    }
    assert out["connections"][2] == {
        "from": edge(),
        "to": edge("a", "in"),
        "metadata": None,
        "data": 5,
    }
    assert out["inports"] == {"start": edge("a", "start", portName="in")}
    assert out["groups"] == [{"id": "grp", "nodes": ["a", "b"], "metadata": {"color": "red"}}]
    assert out["properties"] == {"name": "g"}


def test_elements_added_to_a_classic_graph_are_classic() -> None:
    g = Graph.from_json(CLASSIC)
    g.add_node("n", "t")
    g.add_connection("show", "out", "n", "in")
    out = g.to_json()
    assert out["processes"]["n"] == {"component": "t"}
    assert out["connections"][-1] == {
        "src": {"process": "show", "port": "out"},
        "tgt": {"process": "n", "port": "in"},
    }


def test_to_json_returns_a_copy() -> None:
    g = small_graph()
    out = g.to_json()
    out["processes"]["a"]["metadata"]["config"]["k"] = 99
    out["connections"].clear()
    assert g.get_node("a") == {"id": "a", "component": "tpl_a", "metadata": {"config": {"k": 1}}}
    assert len(g.connections()) == 2


# Random graphs, written in either dialect in the form to_json produces.
NAMES = st.text(alphabet="abcxy_/", min_size=1, max_size=4)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=3))
JSONV = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["k", "v", "w"]), inner, max_size=3),
    ),
    max_leaves=6,
)
META = st.one_of(
    st.none(), st.dictionaries(st.sampled_from(["x", "y", "label"]), JSONV, max_size=2)
)
PTYPE = st.sampled_from(
    [
        None,
        ANY,
        {"type": "integer"},
        {"type": "string"},
        {"type": "array", "value": {"type": "float"}},
        {"type": "object", "value": "User"},
    ]
)
EXTRA = st.dictionaries(st.sampled_from(["x-a", "x-b"]), JSONV, max_size=1)


@st.composite
def graph_docs(draw: st.DrawFn) -> dict[str, Any]:
    classic = draw(st.booleans())
    ids = draw(st.lists(NAMES, min_size=1, max_size=5, unique=True))
    ports = st.sampled_from(["in", "out", "data", "x"])

    def maybe(d: dict[str, Any], key: str, strat: st.SearchStrategy[Any]) -> None:
        if draw(st.booleans()):
            d[key] = draw(strat)

    processes: dict[str, Any] = {}
    for node in ids:
        if classic:
            p: dict[str, Any] = {"component": draw(NAMES)}
            maybe(p, "metadata", META)
        else:
            p = {"id": node, "component": draw(NAMES), "metadata": draw(META)}
        p.update(draw(EXTRA))
        processes[node] = p

    def end(node: str, port: str) -> dict[str, Any]:
        if classic:
            e: dict[str, Any] = {"process": node, "port": port}
            maybe(e, "index", st.one_of(st.none(), st.integers(0, 3)))
            maybe(e, "portType", PTYPE)
        else:
            e = edge(
                node,
                port,
                index=draw(st.one_of(st.none(), st.integers(0, 3))),
                portType=draw(PTYPE) or ANY,
                metadata=draw(META),
                expose=draw(st.booleans()),
            )
        e.update(draw(EXTRA))
        return e

    connections = []
    seen = set()
    for _ in range(draw(st.integers(0, 6))):
        tgt_node, tgt_port = draw(st.sampled_from(ids)), draw(ports)
        iip = draw(st.booleans())
        if iip:
            data = draw(JSONV)
            if classic:
                c: dict[str, Any] = {"data": data, "tgt": end(tgt_node, tgt_port)}
                maybe(c, "metadata", META)
            else:
                c = {
                    "from": edge(),
                    "to": end(tgt_node, tgt_port),
                    "metadata": draw(META),
                    "data": data,
                }
        else:
            src_node, src_port = draw(st.sampled_from(ids)), draw(ports)
            if (src_node, src_port, tgt_node, tgt_port) in seen:
                continue
            seen.add((src_node, src_port, tgt_node, tgt_port))
            src, tgt = end(src_node, src_port), end(tgt_node, tgt_port)
            # a duplicate only differs by index; keep indexes out of the identity here
            if classic:
                src.pop("index", None)
                tgt.pop("index", None)
                c = {"src": src, "tgt": tgt}
                maybe(c, "metadata", META)
            else:
                src["index"] = tgt["index"] = None
                c = {"from": src, "to": tgt, "metadata": draw(META), "data": None}
        c.update(draw(EXTRA))
        connections.append(c)

    def exported() -> dict[str, Any]:
        out = {}
        for name in draw(
            st.lists(st.sampled_from(["in", "out", "go", "n"]), unique=True, max_size=3)
        ):
            node, port = draw(st.sampled_from(ids)), draw(ports)
            if classic:
                e: dict[str, Any] = {"process": node, "port": port}
                maybe(e, "metadata", META)
                maybe(e, "portType", PTYPE)
            else:
                e = edge(
                    node, name, portName=port, portType=draw(PTYPE) or ANY, metadata=draw(META)
                )
            e.update(draw(EXTRA))
            out[name] = e
        return out

    groups = []
    for gid in draw(st.lists(NAMES, unique=True, max_size=2)):
        members = draw(st.lists(st.sampled_from(ids), unique=True, max_size=3))
        if classic:
            grp: dict[str, Any] = {"name": gid, "nodes": members}
            maybe(grp, "metadata", META)
        else:
            grp = {"id": gid, "nodes": members, "metadata": draw(META)}
        grp.update(draw(EXTRA))
        groups.append(grp)
    doc = {
        "caseSensitive": draw(st.booleans()),
        "properties": draw(st.dictionaries(st.sampled_from(["name", "p"]), JSONV, max_size=2)),
        "processes": processes,
        "connections": connections,
        "inports": exported(),
        "outports": exported(),
        "groups": groups,
    }
    doc.update(draw(st.dictionaries(st.sampled_from(["x-top"]), JSONV, max_size=1)))
    return doc


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(graph_docs())
def test_random_graphs_round_trip_exactly(doc: dict[str, Any]) -> None:
    out = Graph.from_json(doc).to_json()
    assert out == doc
    assert list(out["processes"]) == list(doc["processes"])
    assert Graph.from_json(json.dumps(out)).to_json() == out


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(graph_docs(), st.data())
def test_edited_graphs_stay_stable(doc: dict[str, Any], data: st.DataObject) -> None:
    g = Graph.from_json(doc)
    ids = list(doc["processes"])
    victim = data.draw(st.sampled_from(ids))
    if data.draw(st.booleans()):
        g.rename_node(victim, "renamed!")
        victim = "renamed!"
    g.add_node("fresh", "t", {"x": 1})
    g.add_connection(victim, "o", "fresh", "i", {"capacity": 1})
    g.add_initial("fresh", "i", {"type": "String", "data": "s"})
    out = g.to_json()
    assert Graph.from_json(out).to_json() == out
    g.remove_node(victim)
    out = g.to_json()
    assert Graph.from_json(out).to_json() == out
    assert victim not in out["processes"]
    touched = [
        c
        for c in out["connections"]
        for end in (c.get("src") or c.get("from") or {}, c.get("tgt") or c.get("to"))
        if victim in (end.get("process"), end.get("nodeId"))
    ]
    assert touched == []
    for table in (out["inports"], out["outports"]):
        assert all(victim not in (p.get("process"), p.get("nodeId")) for p in table.values())
    assert all(victim not in grp["nodes"] for grp in out["groups"])


# -- validation of JSON -----------------------------------------------------------------------


def doc_with(**parts: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "processes": {"a": {"component": "t"}, "b": {"component": "t"}},
        "connections": [],
    }
    base.update(parts)
    return base


CONN = {"src": {"process": "a", "port": "out"}, "tgt": {"process": "b", "port": "in"}}

BAD_DOCS = [
    ([1, 2], "must be a JSON object", "$"),
    ("{not json", "not valid JSON", "$"),
    (
        '{"processes": {"a": {"component": "t"}, "a": {"component": "u"}}}',
        "more than once",
        "$.processes.a",
    ),
    (doc_with(caseSensitive="yes"), "caseSensitive", "$.caseSensitive"),
    (doc_with(processes=[]), "processes must be an object", "$.processes"),
    (doc_with(processes={"a": 3}), "must be an object", "$.processes.a"),
    (doc_with(processes={"a": {"metadata": {}}}), "component", "$.processes.a.component"),
    (doc_with(processes={"a": {"component": 7}}), "must be a string", "$.processes.a.component"),
    (doc_with(processes={"a": {"component": ""}}), "must not be empty", "$.processes.a.component"),
    (doc_with(processes={"a b": {"component": 1}}), "string", '$.processes["a b"].component'),
    (doc_with(processes={"": {"component": "t"}}), "must not be empty", '$.processes[""]'),
    (
        doc_with(processes={"a": {"id": "b", "component": "t"}}),
        "does not match",
        "$.processes.a.id",
    ),
    (
        doc_with(processes={"a": {"component": "t", "metadata": [1]}}),
        "metadata",
        "$.processes.a.metadata",
    ),
    (doc_with(connections={}), "connections must be an array", "$.connections"),
    (doc_with(connections=[CONN, 5]), "must be an object", "$.connections[1]"),
    (doc_with(connections=[{"metadata": {}}]), "needs", "$.connections[0]"),
    (doc_with(connections=[{"src": CONN["src"], "to": {}}]), "not both", "$.connections[0]"),
    (
        doc_with(connections=[CONN, {"src": CONN["src"], "tgt": {"process": "zz", "port": "in"}}]),
        "unknown process 'zz'",
        "$.connections[1].tgt.process",
    ),
    (
        doc_with(connections=[{"src": {"process": "a"}, "tgt": CONN["tgt"]}]),
        "port",
        "$.connections[0].src.port",
    ),
    (
        doc_with(connections=[{"src": {"process": "a", "port": 3}, "tgt": CONN["tgt"]}]),
        "must be a string",
        "$.connections[0].src.port",
    ),
    (doc_with(connections=[{"src": CONN["src"]}]), "target", "$.connections[0].tgt"),
    (
        doc_with(connections=[{"src": "a.out", "tgt": CONN["tgt"]}]),
        "must be an object",
        "$.connections[0].src",
    ),
    (doc_with(connections=[{**CONN, "data": 1}]), "cannot also carry", "$.connections[0].data"),
    (doc_with(connections=[{"tgt": CONN["tgt"]}]), '"src"', "$.connections[0].src"),
    (
        doc_with(connections=[{"src": {**CONN["src"], "index": -1}, "tgt": CONN["tgt"]}]),
        "non-negative",
        "$.connections[0].src.index",
    ),
    (
        doc_with(connections=[{"src": {**CONN["src"], "index": True}, "tgt": CONN["tgt"]}]),
        "non-negative",
        "$.connections[0].src.index",
    ),
    (doc_with(connections=[{**CONN, "metadata": "x"}]), "metadata", "$.connections[0].metadata"),
    (doc_with(connections=[CONN, {"x": 1}, copy.deepcopy(CONN)]), "needs", "$.connections[1]"),
    (
        doc_with(connections=[CONN, dict(CONN, metadata={"m": 1})]),
        "duplicate connection a.out",
        "$.connections[1]",
    ),
    (
        doc_with(connections=[{"data": {"type": "Nope", "data": 1}, "tgt": CONN["tgt"]}]),
        "unknown message type",
        "$.connections[0].data.type",
    ),
    (
        doc_with(connections=[{"data": {"type": "Integer", "data": "x"}, "tgt": CONN["tgt"]}]),
        "not a valid message",
        "$.connections[0].data.data",
    ),
    (
        doc_with(connections=[{"tgt": {**CONN["tgt"], "portType": {"type": "int"}}, "data": 1}]),
        "unknown port type 'int'",
        "$.connections[0].tgt.portType.type",
    ),
    (
        doc_with(connections=[{"tgt": {**CONN["tgt"], "portType": "integer"}, "data": 1}]),
        "port type must be an object",
        "$.connections[0].tgt.portType",
    ),
    (
        doc_with(connections=[{"tgt": {**CONN["tgt"], "portType": {"type": "array"}}, "data": 1}]),
        "needs a 'value'",
        "$.connections[0].tgt.portType.value",
    ),
    # verbose connections
    (
        doc_with(connections=[{"from": edge("a", "out"), "to": edge("zz", "in")}]),
        "unknown process 'zz'",
        "$.connections[0].to.nodeId",
    ),
    (doc_with(connections=[{"from": edge("a", "out")}]), "target", "$.connections[0].to"),
    (
        doc_with(connections=[{"from": edge("a", ""), "to": edge("b", "in")}]),
        "must not be empty",
        "$.connections[0].from.portId",
    ),
    (
        doc_with(connections=[{"from": edge("a", "out"), "to": edge("b", "in"), "data": 3}]),
        "cannot also carry",
        "$.connections[0].data",
    ),
    (
        doc_with(connections=[{"from": edge("a", "out"), "to": edge("b", "in", expose="no")}]),
        "expose",
        "$.connections[0].to.expose",
    ),
    (
        doc_with(connections=[{"from": edge("a", "out"), "to": edge("b", "in", portName=4)}]),
        "portName",
        "$.connections[0].to.portName",
    ),
    (
        doc_with(
            connections=[
                {"from": edge(), "to": edge("b", "in"), "data": {"type": "Float", "data": "x"}}
            ]
        ),
        "not a valid message",
        "$.connections[0].data.data",
    ),
    # exported ports
    (doc_with(inports=[]), "inports must be an object", "$.inports"),
    (
        doc_with(inports={"in": {"process": "zz", "port": "in"}}),
        "unknown process 'zz'",
        "$.inports.in.process",
    ),
    (doc_with(outports={"out": {"process": "a"}}), "port", "$.outports.out.port"),
    (
        doc_with(inports={"in": edge("zz", "in", portName="in")}),
        "unknown process",
        "$.inports.in.nodeId",
    ),
    (
        doc_with(
            inports={"in": {"process": "a", "port": "x"}, "IN": {"process": "a", "port": "y"}}
        ),
        "clashes with 'in'",
        "$.inports.IN",
    ),
    (
        doc_with(inports={"in": {"process": "a", "port": "x", "portType": {"type": "x"}}}),
        "unknown port type",
        "$.inports.in.portType.type",
    ),
    # groups
    (doc_with(groups={}), "groups must be an array", "$.groups"),
    (doc_with(groups=[{"nodes": ["a"]}]), "group id", "$.groups[0].id"),
    (doc_with(groups=[{"id": "g", "nodes": "a"}]), "nodes must be an array", "$.groups[0].nodes"),
    (
        doc_with(groups=[{"id": "g", "nodes": ["a", "zz"]}]),
        "unknown process 'zz'",
        "$.groups[0].nodes[1]",
    ),
    (doc_with(groups=[{"id": "g", "nodes": ["a", "a"]}]), "listed twice", "$.groups[0].nodes[1]"),
    (
        doc_with(
            groups=[
                {"id": "g", "nodes": []},
                {"name": "h", "nodes": []},
                {"name": "g", "nodes": []},
            ]
        ),
        "duplicate group id 'g'",
        "$.groups[2].name",
    ),
    (doc_with(properties=[]), "properties must be an object", "$.properties"),
]


@pytest.mark.parametrize(("doc", "fragment", "path"), BAD_DOCS)
def test_bad_documents_are_refused_with_their_path(doc: Any, fragment: str, path: str) -> None:
    with pytest.raises(GraphFormatError) as info:
        Graph.from_json(doc)
    assert fragment in str(info.value)
    assert info.value.path == path
    assert str(info.value).startswith(f"{path}: ")


def test_case_sensitive_graph_keeps_both_port_spellings() -> None:
    doc = doc_with(
        caseSensitive=True,
        inports={"in": {"process": "a", "port": "x"}, "IN": {"process": "a", "port": "y"}},
    )
    assert Graph.from_json(doc).to_json()["inports"].keys() == {"in", "IN"}


def test_plain_iip_data_is_allowed() -> None:
    for data in (1, "s", None, [1, 2], {"name": "x"}, {"type": "user", "name": "x"}):
        doc = doc_with(connections=[{"data": data, "tgt": CONN["tgt"]}])
        assert Graph.from_json(doc).initializers()[0]["data"] == data
    assert is_tagged_message({"type": "Integer", "data": 1})
    assert is_tagged_message({"type": "Flow"})
    assert not is_tagged_message({"type": "user", "name": "x"})
    assert not is_tagged_message([{"type": "Integer"}])


def test_import_graph_replaces_state_and_keeps_it_on_error() -> None:
    g = small_graph()
    before = g.to_json()
    with pytest.raises(GraphFormatError):
        g.import_graph({"processes": {"a": {}}})
    assert g.to_json() == before
    g.import_graph(CLASSIC)
    assert g.to_json() == CLASSIC


# -- methods ----------------------------------------------------------------------------------

API_ERRORS = [
    (lambda g: g.add_node("a", "t"), DuplicateNodeError, "'a' is already used"),
    (lambda g: g.add_node("", "t"), GraphFormatError, "non-empty string"),
    (lambda g: g.add_node("n", ""), GraphFormatError, "component"),
    (lambda g: g.add_node("n", "t", [1]), GraphFormatError, "metadata"),
    (lambda g: g.remove_node("zz"), UnknownNodeError, "no node 'zz'"),
    (lambda g: g.rename_node("zz", "y"), UnknownNodeError, "no node 'zz'"),
    (lambda g: g.rename_node("a", "b"), DuplicateNodeError, "'b'"),
    (lambda g: g.set_node_metadata("zz", {}), UnknownNodeError, "zz"),
    (lambda g: g.add_connection("zz", "out", "b", "in"), UnknownNodeError, "source of connection"),
    (lambda g: g.add_connection("a", "out", "zz", "in"), UnknownNodeError, "known nodes: a, b, c"),
    (lambda g: g.add_connection("a", "OUT", "b", "in"), GraphError, "already exists"),
    (lambda g: g.add_connection("a", "", "b", "in"), GraphFormatError, "out_port"),
    (lambda g: g.remove_connection("a", "out", "c", "in"), GraphError, "no connection a.out"),
    (lambda g: g.set_connection_metadata("a", "x", "b", "in", {}), GraphError, "no connection"),
    (lambda g: g.add_initial("zz", "in", 1), UnknownNodeError, "zz"),
    (
        lambda g: g.add_initial("a", "in", {"type": "Integer", "data": "x"}),
        GraphFormatError,
        "not a valid message",
    ),
    (lambda g: g.add_initial_index("a", "in", 1, -2), GraphFormatError, "non-negative"),
    (lambda g: g.remove_initial("b", "in"), GraphError, "no initial packet for b.in"),
    (lambda g: g.add_graph_initial("nope", 1), GraphError, "exported inports: start"),
    (lambda g: g.add_inport("start", "b", "in"), GraphError, "already exists"),
    (lambda g: g.add_inport("START", "b", "in"), GraphError, "already exists"),
    (lambda g: g.add_inport("x", "zz", "in"), UnknownNodeError, "zz"),
    (lambda g: g.add_outport("x", "a", "out", {"type": "nope"}), GraphFormatError, "port type"),
    (lambda g: g.remove_inport("nope"), GraphError, "no exported inport 'nope'"),
    (lambda g: g.remove_outport("start"), GraphError, "no exported outport"),
    (lambda g: g.rename_inport("start", "other") or g.rename_inport("x", "y"), GraphError, "'x'"),
    (
        lambda g: g.add_inport("other", "b", "in") or g.rename_inport("start", "other"),
        GraphError,
        "already exists",
    ),
    (lambda g: g.add_group("grp", []), GraphError, "already exists"),
    (lambda g: g.add_group("g2", ["a", "zz"]), UnknownNodeError, "group 'g2'"),
    (lambda g: g.add_to_group("nope", "a"), GraphError, "no group 'nope'; groups: grp"),
    (lambda g: g.add_to_group("grp", "zz"), UnknownNodeError, "zz"),
    (lambda g: g.remove_group("nope"), GraphError, "no group"),
    (lambda g: g.set_properties([1]), GraphFormatError, "properties"),
    (lambda g: g.port_type("zz", "in", "in"), UnknownNodeError, "zz"),
]


@pytest.mark.parametrize(("call", "error", "fragment"), API_ERRORS)
def test_method_errors(call: Any, error: type[Exception], fragment: str) -> None:
    g = small_graph()
    before = g.to_json()
    with pytest.raises(error) as info:
        call(g)
    assert fragment in str(info.value)
    if error is not GraphError:  # two-step rows change the graph before failing
        assert g.to_json() == before


def test_add_node_and_accessors() -> None:
    g = small_graph()
    assert [n["id"] for n in g.nodes()] == ["a", "b", "c"]
    assert g.get_node("zz") is None
    assert g.get_connection("a", "out", "c", "in") is None
    conn = g.get_connection("b", "out", "c", "in")
    assert conn is not None and conn["metadata"] == {"capacity": 2}
    assert [(i["to"]["nodeId"], i["to"]["portId"], i["data"]) for i in g.initializers()] == [
        ("a", "in", 5)
    ]
    assert g.outports()["result"]["nodeId"] == "c"
    assert g.groups() == [{"id": "grp", "nodes": ["a", "b"], "metadata": {"color": "red"}}]
    assert g.properties() == {"name": "g"}
    assert g.name == "g" and g.case_sensitive is False


def test_rename_node_updates_every_reference() -> None:
    g = small_graph()
    g.add_initial_index("a", "arr", 1, 3)
    g.rename_node("a", "A")
    out = g.to_json()
    assert list(out["processes"]) == ["A", "b", "c"]
    assert out["processes"]["A"]["id"] == "A"
    assert out["connections"][0]["from"]["nodeId"] == "A"
    assert [c["to"]["nodeId"] for c in out["connections"][2:]] == ["A", "A"]
    assert out["connections"][2]["from"]["nodeId"] == ""  # initial packets stay sourceless
    assert out["inports"]["start"]["nodeId"] == "A"
    assert out["groups"][0]["nodes"] == ["A", "b"]
    assert g.get_node("a") is None
    assert Graph.from_json(out).to_json() == out


def test_rename_node_in_classic_graph() -> None:
    g = Graph.from_json(CLASSIC)
    g.rename_node("split", "splitter")
    out = g.to_json()
    assert list(out["processes"]) == ["read", "splitter", "show"]
    assert out["processes"]["splitter"] == CLASSIC["processes"]["split"]
    assert out["connections"][0]["tgt"]["process"] == "splitter"
    assert out["connections"][1]["src"] == {"process": "splitter", "port": "out", "index": 0}
    assert out["connections"][3]["tgt"]["process"] == "splitter"


def test_remove_node_removes_what_touches_it() -> None:
    g = small_graph()
    g.add_group("other", ["a"])
    g.remove_node("a")
    out = g.to_json()
    assert list(out["processes"]) == ["b", "c"]
    assert [(c["from"]["nodeId"], c["to"]["nodeId"]) for c in out["connections"]] == [("b", "c")]
    assert out["inports"] == {}
    assert out["outports"].keys() == {"result"}
    assert [(grp["id"], grp["nodes"]) for grp in out["groups"]] == [("grp", ["b"]), ("other", [])]


def test_remove_connection_and_initials() -> None:
    g = small_graph()
    g.add_initial("a", "in", 6)
    g.remove_connection("a", "out", "b", "in")
    assert [(c["from"]["nodeId"], c["to"]["nodeId"]) for c in g.connections()] == [("b", "c")]
    g.remove_initial("a", "in")
    assert g.initializers() == []


def test_case_insensitive_graph_lower_cases_ports_not_ids() -> None:
    g = Graph("g")
    g.add_node("Alpha", "t")
    g.add_node("Beta", "t")
    g.add_connection("Alpha", "OUT", "Beta", "In")
    g.add_initial("Alpha", "IN", 1)
    g.add_inport("IN", "Alpha", "In")
    g.add_outport("Out", "Beta", "OUT")
    out = g.to_json()
    assert list(out["processes"]) == ["Alpha", "Beta"]
    assert (out["connections"][0]["from"]["portId"], out["connections"][0]["to"]["portId"]) == (
        "out",
        "in",
    )
    assert out["connections"][1]["to"]["portId"] == "in"
    assert out["inports"] == {"in": edge("Alpha", "in", portName="in")}
    assert list(out["outports"]) == ["out"]
    assert g.get_connection("Alpha", "Out", "Beta", "IN") is not None
    g.set_inport_metadata("IN", {"k": 1})
    assert g.inports()["in"]["metadata"] == {"k": 1}


def test_case_sensitive_graph_keeps_case() -> None:
    g = Graph("g", case_sensitive=True)
    g.add_node("A", "t")
    g.add_node("B", "t")
    g.add_connection("A", "OUT", "B", "In")
    g.add_inport("IN", "A", "In")
    out = g.to_json()
    assert out["caseSensitive"] is True
    assert out["connections"][0]["to"]["portId"] == "In"
    assert out["inports"] == {"IN": edge("A", "IN", portName="In")}
    with pytest.raises(GraphError):
        g.remove_inport("in")


def test_metadata_updates_merge_delete_and_clear() -> None:
    g = small_graph()
    g.set_node_metadata("a", {"x": 1, "config": None})
    assert g.get_node("a") == {"id": "a", "component": "tpl_a", "metadata": {"x": 1}}
    g.set_node_metadata("a", {})
    assert g.get_node("a") == {"id": "a", "component": "tpl_a", "metadata": {}}
    g.set_connection_metadata("b", "out", "c", "in", {"route": 1})
    assert g.connections()[1]["metadata"] == {"capacity": 2, "route": 1}
    g.set_group_metadata("grp", {"color": None, "n": 2})
    assert g.groups()[0]["metadata"] == {"n": 2}
    g.set_outport_metadata("result", {"m": 1})
    assert g.outports()["result"]["metadata"] == {"m": 1}
    meta = {"deep": {"v": 1}}
    g.set_node_metadata("b", meta)
    meta["deep"]["v"] = 2  # the graph keeps its own copy
    assert g.get_node("b") == {"id": "b", "component": "tpl_b", "metadata": {"deep": {"v": 1}}}


def test_exported_ports_rename_remove_and_order() -> None:
    g = small_graph()
    g.add_inport("second", "b", "in")
    g.add_graph_initial("start", 7)
    g.add_graph_initial_index("start", 8, 1)
    g.rename_inport("start", "begin")
    assert list(g.inports()) == ["begin", "second"]
    out = g.to_json()
    assert out["inports"]["begin"]["portId"] == "begin"
    assert [c["to"]["portId"] for c in out["connections"][3:]] == ["begin", "begin"]
    assert [c["to"]["index"] for c in out["connections"][3:]] == [None, 1]
    assert Graph.from_json(out).to_json() == out
    g.remove_inport("begin")
    out = g.to_json()
    # the packets stay, now addressed to the node port itself
    assert [(c["to"]["portId"], c["to"]["portName"]) for c in out["connections"][3:]] == [
        ("in", ""),
        ("in", ""),
    ]
    g.rename_outport("result", "res")
    g.remove_outport("res")
    assert g.outports() == {}


def test_groups_membership() -> None:
    g = small_graph()
    g.add_to_group("grp", "c")
    g.add_to_group("grp", "c")
    g.remove_from_group("grp", "a")
    g.remove_from_group("grp", "zz")
    assert g.groups()[0]["nodes"] == ["b", "c"]
    g.remove_group("grp")
    assert g.groups() == []


def test_set_properties_merges() -> None:
    g = Graph()
    assert g.properties() == {}
    g.set_properties({"name": "n", "x": 1})
    g.set_properties({"y": 2})
    assert g.properties() == {"name": "n", "x": 1, "y": 2}
    assert g.to_json()["properties"] == {"name": "n", "x": 1, "y": 2}


# -- port types -------------------------------------------------------------------------------

T = {name: {"type": name} for name in ("any", "integer", "float", "string", "boolean")}


@pytest.mark.parametrize(
    ("out_t", "in_t", "ok"),
    [
        (None, T["string"], True),
        (T["any"], T["integer"], True),
        (T["integer"], T["any"], True),
        (T["integer"], T["integer"], True),
        (T["integer"], T["float"], True),
        (T["float"], T["integer"], False),
        (T["integer"], T["string"], False),
        ({"type": "array", "value": T["integer"]}, {"type": "array", "value": T["float"]}, True),
        ({"type": "array", "value": T["string"]}, {"type": "array", "value": T["boolean"]}, False),
        ({"type": "option", "value": T["string"]}, T["string"], True),
        (T["string"], {"type": "option", "value": T["string"]}, True),
        (T["string"], {"type": "option", "value": T["integer"]}, False),
        ({"type": "object", "value": "User"}, {"type": "object"}, True),
        ({"type": "object", "value": "User"}, {"type": "object", "value": "Order"}, False),
    ],
)
def test_port_types_compatible(out_t: Any, in_t: Any, ok: bool) -> None:
    assert port_types_compatible(out_t, in_t) is ok


def typed_doc(out_type: Any, in_type: Any) -> dict[str, Any]:
    return doc_with(
        connections=[
            {
                "src": {"process": "a", "port": "out", "portType": out_type},
                "tgt": {"process": "b", "port": "in", "portType": in_type},
            }
        ]
    )


def test_type_mismatch_raises_naming_both_ends() -> None:
    g = Graph.from_json(typed_doc(T["integer"], T["string"]))  # loading is lossless
    with pytest.raises(PortTypeError) as info:
        graph_to_network_spec(g)
    assert "a.out (integer)" in str(info.value) and "b.in (string)" in str(info.value)
    assert (info.value.source, info.value.target) == ("a.out", "b.in")


def test_typed_ports_are_reported_in_the_spec() -> None:
    g = Graph.from_json(typed_doc(T["integer"], T["float"]))
    spec = graph_to_network_spec(g)
    assert spec.port_types == {("a", "out", "out"): T["integer"], ("b", "in", "in"): T["float"]}
    assert g.port_type("b", "in", "in") == T["float"]
    assert g.port_type("b", "in", "out") is None
    assert g.port_type("a", "nope", "out") is None


def test_conflicting_declarations_of_one_port_raise() -> None:
    doc = typed_doc(T["integer"], T["integer"])
    doc["inports"] = {"go": {"process": "b", "port": "in", "portType": T["string"]}}
    g = Graph.from_json(doc)
    with pytest.raises(PortTypeError) as info:
        g.port_type("b", "in", "in")
    assert "integer at $.connections[0].tgt.portType" in str(info.value)
    assert "string at $.inports.go.portType" in str(info.value)


def test_exported_port_type_from_api() -> None:
    g = small_graph()
    g.add_outport("n", "b", "count", {"type": "integer"})
    assert g.port_type("b", "count", "out") == {"type": "integer"}
    assert g.outports()["n"]["portType"] == {"type": "integer"}


# -- network spec -----------------------------------------------------------------------------


def test_network_spec_of_a_graph() -> None:
    spec = graph_to_network_spec(small_graph())
    assert spec.nodes == [
        NodeSpec("a", "tpl_a", {"k": 1}, {"config": {"k": 1}}),
        NodeSpec("b", "tpl_b", {}, {}),
        NodeSpec("c", "tpl_c", {}, {}),
    ]
    assert spec.connections == [
        ConnectionSpec("a", "out", "b", "in", None),
        ConnectionSpec("b", "out", "c", "in", 2),
    ]
    assert spec.initials == [InitialSpec("a", "in", 5, None)]
    assert spec.inports == {"start": ("a", "in")}
    assert spec.outports == {"result": ("c", "out")}
    assert spec.case_sensitive is False
    src, sport, tgt, tport, cap = spec.connections[1]
    assert (src, sport, tgt, tport, cap) == ("b", "out", "c", "in", 2)


def test_network_spec_of_classic_document() -> None:
    spec = graph_to_network_spec(Graph.from_json(CLASSIC))
    assert spec.nodes[1].config == {"sep": ","}
    assert spec.connections[0].capacity == 8
    assert spec.initials == [
        InitialSpec("read", "path", "file.txt", None),
        InitialSpec("split", "n", {"type": "Integer", "data": 4}, 2),
    ]
    assert spec.port_types == {("show", "in", "in"): {"type": "string"}}


@pytest.mark.parametrize(
    ("change", "fragment", "path"),
    [
        (
            lambda g: g.set_node_metadata("a", {"config": [1]}),
            "config of node 'a'",
            "$.processes.a.metadata.config",
        ),
        (
            lambda g: g.set_connection_metadata("b", "out", "c", "in", {"capacity": 0}),
            "positive integer",
            "$.connections[1].metadata.capacity",
        ),
        (
            lambda g: g.set_connection_metadata("a", "out", "b", "in", {"capacity": "9"}),
            "b.in must be a positive",
            "$.connections[0].metadata.capacity",
        ),
        (
            lambda g: g.set_connection_metadata("a", "out", "b", "in", {"capacity": True}),
            "positive integer",
            "$.connections[0].metadata.capacity",
        ),
    ],
)
def test_network_spec_errors(change: Any, fragment: str, path: str) -> None:
    g = small_graph()
    change(g)
    with pytest.raises(GraphFormatError) as info:
        graph_to_network_spec(g)
    assert fragment in str(info.value)
    assert info.value.path == path


# -- composition ------------------------------------------------------------------------------


def member(name: str) -> dict[str, Any]:
    g = small_graph()
    g.set_properties({"name": name, "description": "d"})
    return g.to_json()


def composition(**kw: Any) -> dict[str, Any]:
    comp: dict[str, Any] = {
        "graphs": [member("left"), member("right")],
        "connections": [
            {
                "from": {"process": "left/c", "port": "out"},
                "to": {"process": "right/a", "port": "in"},
                "metadata": {"capacity": 4},
            }
        ],
        "shared_resources": [],
        "properties": {"name": "pipeline"},
        "case_sensitive": False,
    }
    comp.update(kw)
    return comp


def test_compose_namespaces_and_connects() -> None:
    out = compose_graphs(composition())
    assert list(out["processes"]) == ["left/a", "left/b", "left/c", "right/a", "right/b", "right/c"]
    assert out["processes"]["left/a"] == {
        "id": "left/a",
        "component": "tpl_a",
        "metadata": {"config": {"k": 1}},
    }
    assert out["properties"] == {"name": "pipeline"}
    assert out["inports"] == {
        "left/start": edge("left/a", "left/start", portName="in"),
        "right/start": edge("right/a", "right/start", portName="in"),
    }
    assert list(out["outports"]) == ["left/result", "right/result"]
    assert [grp["id"] for grp in out["groups"]] == ["left/grp", "right/grp"]
    assert out["groups"][1]["nodes"] == ["right/a", "right/b"]
    spec = graph_to_network_spec(Graph.from_json(out))
    assert ConnectionSpec("left/c", "out", "right/a", "in", 4) in spec.connections
    assert ConnectionSpec("right/b", "out", "right/c", "in", 2) in spec.connections
    assert spec.initials == [
        InitialSpec("left/a", "in", 5, None),
        InitialSpec("right/a", "in", 5, None),
    ]
    assert Graph.from_json(out).to_json() == out


def test_compose_accepts_classic_members_and_graph_objects() -> None:
    classic = copy.deepcopy(CLASSIC)
    out = compose_graphs(
        {"graphs": [classic, Graph.from_json(member("m"))], "shared_resources": ["cache"]}
    )
    assert out["processes"]["classic/split"] == {
        "id": "classic/split",
        "component": "text/Split",
        "metadata": {"config": {"sep": ","}},
        "z": 1,
    }
    first = out["connections"][0]
    assert (first["from"]["nodeId"], first["to"]["nodeId"]) == ("classic/read", "classic/split")
    assert out["inports"]["classic/path"]["nodeId"] == "classic/read"
    assert out["properties"] == {"shared_resources": ["cache"]}
    assert "m/a" in out["processes"]
    assert classic == CLASSIC


def nameless() -> dict[str, Any]:
    g = member("x")
    g["properties"] = {}
    return g


BAD_COMPOSITIONS = [
    ([1], "must be an object", "$"),
    ({"graphs": []}, "non-empty array", "$.graphs"),
    (
        composition(graphs=[member("left"), member("left")]),
        "namespace 'left' is used",
        "$.graphs[1].properties.name",
    ),
    (
        composition(graphs=[member("left"), nameless()]),
        "needs a non-empty properties.name",
        "$.graphs[1].properties.name",
    ),
    (
        composition(graphs=[member("left"), {"processes": {"a": {}}}]),
        "component",
        "$.graphs[1].processes.a.component",
    ),
    (
        composition(
            connections=[
                {
                    "from": {"process": "left/zz", "port": "out"},
                    "to": {"process": "right/a", "port": "in"},
                }
            ]
        ),
        "unknown process 'left/zz'",
        "$.connections[0].from.process",
    ),
    (
        composition(
            connections=[
                {"from": {"process": "left/c", "port": "out"}, "to": {"process": "a", "port": "in"}}
            ]
        ),
        "'namespace/node'",
        "$.connections[0].to.process",
    ),
    (
        composition(
            connections=[
                {"from": {"process": "left/c"}, "to": {"process": "right/a", "port": "in"}}
            ]
        ),
        "port",
        "$.connections[0].from.port",
    ),
    (
        composition(connections=[{"to": {"process": "right/a", "port": "in"}}]),
        '"from" must be an object',
        "$.connections[0].from",
    ),
    (
        composition(
            connections=[
                {
                    "from": {"process": "left/a", "port": "out"},
                    "to": {"process": "left/b", "port": "in"},
                }
            ]
        ),
        "duplicate connection",
        "$.connections[0]",
    ),
    (composition(case_sensitive=1), "case_sensitive", "$.case_sensitive"),
    (composition(shared_resources="x"), "shared_resources", "$.shared_resources"),
]


@pytest.mark.parametrize(("comp", "fragment", "path"), BAD_COMPOSITIONS)
def test_bad_compositions(comp: Any, fragment: str, path: str) -> None:
    with pytest.raises(GraphFormatError) as info:
        compose_graphs(comp)
    assert fragment in str(info.value)
    assert info.value.path == path
