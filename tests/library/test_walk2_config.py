"""README walk, second pass: every built-in template reports the config keys it reads.

``describe_template(id)["config"]`` used to be ``{}`` for the templates that kept their keys
in the docstring. The keys now come from a scan of the code; these tests check that scan
against a second, cruder reading of each template's own source text (regular expressions
over ``inspect.getsource``), against offbit-reflow's catalog where it has the same id, and
that a key no template reads is refused when the node is added.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest

import reflow
from reflow.library import _template_classes, describe_template

CATALOG = Path(__file__).resolve().parents[3] / "shared" / "anchor-catalog" / "catalog.json"
CLASSES = _template_classes()

#: literal config reads, as a reader of the source would spot them
_READS = (
    re.compile(r"config_(?:value|number|int|str|bool|choice)\(\s*ctx,\s*[\"'](\w+)[\"']"),
    re.compile(r"\.config\.get\(\s*[\"'](\w+)[\"']"),
    re.compile(r"\.config\[\s*[\"'](\w+)[\"']\s*\]"),
    re.compile(r"[\"'](\w+)[\"']\s+in\s+ctx\.config\b"),
)


def _source_keys(cls: type) -> set[str]:
    keys: set[str] = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("reflow.library.") or klass.__name__ == "LibraryActor":
            continue
        try:
            text = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for pattern in _READS:
            keys.update(pattern.findall(text))
    return keys


@pytest.mark.parametrize("template_id", sorted(CLASSES))
def test_reported_keys_cover_the_keys_its_source_reads(template_id: str) -> None:
    reported = describe_template(template_id)["config"]
    missing = _source_keys(CLASSES[template_id]) - set(reported)
    assert not missing, f"{template_id} reads config {sorted(missing)} but does not report it"
    for key, entry in reported.items():
        assert isinstance(key, str) and isinstance(entry, dict) and "default" in entry, key
        json.dumps(entry)  # a catalog entry is JSON


def _catalog() -> dict[str, set[str]]:
    if not CATALOG.is_file():
        return {}
    entries = json.loads(CATALOG.read_text())
    return {e["id"]: {c["name"] for c in e.get("config") or []} for e in entries}


def test_reported_keys_cover_offbit_catalog_keys_for_the_same_templates() -> None:
    catalog = _catalog()
    if not catalog:
        pytest.skip(f"{CATALOG} is not here")
    shared = sorted(set(catalog) & set(CLASSES))
    assert len(shared) > 100
    missing = {
        tid: sorted(catalog[tid] - set(describe_template(tid)["config"]))
        for tid in shared
        if catalog[tid] - set(describe_template(tid)["config"])
    }
    assert not missing


@pytest.mark.parametrize(
    ("template_id", "key"),
    [
        ("tpl_flow_counter", "start"),
        ("tpl_timer_delay", "delay_ms"),
        ("tpl_image_blur", "radius"),
        ("tpl_vec3", "x"),
        ("tpl_audio_gain", "gain_db"),  # read by the RFLA form it delegates to
        ("tpl_image_from_raw", "channels"),  # read in a loop over literal keys
    ],
)
def test_keys_once_only_in_prose_are_reported(template_id: str, key: str) -> None:
    assert key in describe_template(template_id)["config"]


def test_a_reported_default_is_the_one_the_code_applies() -> None:
    config = describe_template("tpl_flow_counter")["config"]
    assert config["step"] == {"type": "number", "default": 1}
    assert describe_template("tpl_image_blur")["config"]["method"]["default"] == "gaussian"


@pytest.mark.parametrize(
    ("template_id", "config", "fragment"),
    [
        ("tpl_flow_counter", {"strat": 1}, "has no config key 'strat'; did you mean 'start'?"),
        ("tpl_image_blur", {"radious": 2}, "did you mean 'radius'?"),
        ("tpl_text_template", {"tempalte": "x"}, "did you mean 'template'?"),
        ("tpl_flow_passthrough", {"anything": 1}, "reads no config 'anything'"),
        ("tpl_vec3_add", {"x": 1}, "'tpl_vec3_add' reads no config 'x'"),
        ("tpl_math_compare", {"zzzz": 1}, "it reads"),
    ],
)
def test_an_unknown_config_key_is_refused_naming_it(
    template_id: str, config: dict[str, Any], fragment: str
) -> None:
    net = reflow.Network(config_check="strict")  # default: only the likely typos (see
    with pytest.raises(reflow.GraphError) as info:  # tests/library/test_config_keys.py)
        net.add_node("n", template_id, config)
    assert fragment in str(info.value)
    assert "'n'" in str(info.value)


@pytest.mark.parametrize(
    ("template_id", "config"),
    [
        ("tpl_flow_counter", {"start": 5, "step": 2}),
        ("tpl_shape_2d", {"anything": 1}),  # copies its whole config: keys cannot be refused
        ("tpl_timer_delay", {}),
    ],
)
def test_known_keys_and_open_templates_are_accepted(
    template_id: str, config: dict[str, Any]
) -> None:
    net = reflow.Network()
    net.add_node("n", template_id, config)


class _Spy(dict[str, Any]):
    """A node's config that records every key the template's code asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.read: set[str] = set()

    def get(self, key: Any, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: Any) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)


_SAMPLES = [
    reflow.Message.integer(3),
    reflow.Message.from_value({"x": 1, "y": 2, "z": 3}),
    reflow.Message.string("a b"),
    reflow.Message.from_value([1, 2, 3]),
]


@pytest.mark.slow
def test_every_key_a_tick_reads_is_reported() -> None:
    """Each template runs a tick per sample message on every in-port, its config a spy; a
    key it reads that describe() does not report is a miss (its tick may fail: the keys it
    read until then still count)."""
    missed: dict[str, set[str]] = {}
    for tid in sorted(CLASSES):
        reported = set(describe_template(tid)["config"])
        for sample in _SAMPLES:
            actor = reflow.template_actor(tid)
            net = reflow.Network()
            net.register_actor("t", actor)
            try:
                net.add_node("n", "t", {})
            except reflow.ReflowError:
                break  # a template that checks its config when the node is made
            spy = _Spy()
            net._sched.nodes["n"].config = spy
            for port in actor.inports:
                net.add_initial("n", port, sample)
            try:
                net.run(timeout=1)
            except reflow.ReflowError:
                pass
            finally:
                net.shutdown(wait=0)
            if spy.read - reported:
                missed.setdefault(tid, set()).update(spy.read - reported)
    assert not missed
