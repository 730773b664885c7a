"""reflow.library: the built-in template table, its plugin, its documentation and the catalog.

Every template must be an Actor, be named ``tpl_<family>_...``, declare its ports, name every
port in its docstring (the catalog shows the docstring) and type only ports it declares.
"""

from __future__ import annotations

import pytest

import reflow
from reflow import Actor, Message
from reflow._core._catalog import template_owner
from reflow._loader._plugins import load_plugin_templates, plugin_manager, register_plugin
from reflow.library import BuiltinLibraryPlugin, builtin_templates, describe_template
from reflow.testing import run_tick

FAMILIES = (
    "flow",
    "math",
    "json",
    "object",
    "array",
    "text",
    "regex",
    "timer",
    "http",
    "stream",
    "image",
    "audio",
)
TEMPLATES = builtin_templates()
VALID_TYPES = {
    "Flow",
    "Event",
    "Boolean",
    "Integer",
    "Float",
    "String",
    "Object",
    "Array",
    "Bytes",
    "Stream",
    "Optional",
    "Any",
    "Error",
    "Null",
}


def test_library_size_and_families() -> None:
    # the tpl_<family>_… templates plus offbit-reflow's catalog ids (tests/library/test_sdk_*)
    assert 40 <= len(TEMPLATES) <= 300
    families = {tid.split("_")[1] for tid in TEMPLATES}
    assert set(FAMILIES) <= families


@pytest.mark.parametrize("tid", sorted(TEMPLATES))
def test_template_declares_and_documents_its_ports(tid: str) -> None:
    actor = TEMPLATES[tid]
    assert isinstance(actor, Actor)
    assert actor.component == tid
    assert tid.startswith("tpl_")
    assert actor.outports, tid
    info = describe_template(tid)
    doc = info["doc"]
    assert "Ports:" in doc and "Config:" in doc, tid
    for port in [*actor.inports, *actor.outports]:
        assert f"``{port}``" in doc, f"{tid}: port {port!r} is not documented"
    assert set(actor.inport_types) <= set(actor.inports), tid
    assert set(actor.outport_types) <= set(actor.outports), tid
    assert set(actor.inport_types.values()) | set(actor.outport_types.values()) <= VALID_TYPES
    assert actor._execution() in ("inline", "async", "worker")


def test_builtin_templates_returns_fresh_instances() -> None:
    again = builtin_templates()
    assert again.keys() == TEMPLATES.keys()
    assert all(again[t] is not TEMPLATES[t] for t in TEMPLATES)


def test_describe_unknown_template_raises_key_error() -> None:
    with pytest.raises(KeyError):
        describe_template("tpl_nope")


def test_plugin_hook_returns_the_library() -> None:
    assert BuiltinLibraryPlugin().reflow_templates().keys() == TEMPLATES.keys()


def _ensure_registered() -> None:
    # The host registers the plugin itself; register it here too when running against a host
    # that does not (yet), so the catalog test checks the hook path either way.
    pm = plugin_manager()
    if not any(isinstance(p, BuiltinLibraryPlugin) for p in pm.get_plugins()):
        register_plugin(BuiltinLibraryPlugin(), name="reflow.library")
    load_plugin_templates()


def test_catalog_serves_the_library_through_the_plugin_hook() -> None:
    _ensure_registered()
    listed = reflow.template_list()
    assert set(TEMPLATES) <= set(listed)
    adder = reflow.template_actor("tpl_math_add")
    assert adder.component == "tpl_math_add"
    r = run_tick(adder, {"a": Message.integer(40), "b": Message.integer(2)})
    assert r.values("out") == [42]
    assert (template_owner("tpl_math_add") or "").startswith("plugin:")


def test_a_graph_of_library_templates_runs() -> None:
    _ensure_registered()
    net = reflow.Network()
    for tid in ("tpl_flow_split", "tpl_flow_filter", "tpl_flow_map", "tpl_flow_collect"):
        net.register_actor(tid, reflow.template_actor(tid))
    net.add_node("split", "tpl_flow_split")
    net.add_node("odd", "tpl_flow_filter", {"where": "$ % 2 == 1"})
    net.add_node("sq", "tpl_flow_map", {"expr": "$ * $"})
    net.add_node("all", "tpl_flow_collect", {"count": 3})
    net.add_connection("split", "out", "odd", "in")
    net.add_connection("odd", "out", "sq", "in")
    net.add_connection("sq", "out", "all", "in")
    out = net.collect("all", "out")
    net.add_initial("split", "in", Message.array([1, 2, 3, 4, 5, 6]))
    net.run(timeout=10).raise_for_failures()
    net.shutdown()
    assert out.values() == [[1, 9, 25]]


@pytest.mark.parametrize("tid", sorted(TEMPLATES))
def test_described_config_has_one_shape(tid: str) -> None:
    """Every template describes its config keys alike: ``{key: {"type"?, "default"}}``."""
    config = describe_template(tid).get("config", {})
    for key, entry in config.items():
        assert isinstance(entry, dict) and "default" in entry, (tid, key, entry)
        assert set(entry) <= {"type", "default"}, (tid, key, entry)
