"""A config key a built-in template never reads: a likely typo is refused with the key meant,
any other is kept with one warning (offbit_reflow 0.2.9 keeps every key silently, typos too),
``config_check="strict"`` refuses all and ``"off"`` keeps all silently."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

import reflow
from reflow.library._config_keys import edit_distance, likely_typo_of

REFUSED, WARNED, KEPT = "refused", "warned", "kept"

_CASES = [
    # (template, config, config_check, outcome, fragment of the error or warning)
    ("tpl_flow_counter", {"strat": 1}, "typos", REFUSED, "did you mean 'start'?"),
    ("tpl_flow_counter", {"Start": 1}, "typos", REFUSED, "did you mean 'start'?"),
    ("tpl_flow_counter", {"stpe": 1}, "typos", REFUSED, "did you mean 'step'?"),
    ("tpl_image_blur", {"radious": 2}, "typos", REFUSED, "did you mean 'radius'?"),
    ("tpl_text_template", {"tempalte": "x"}, "typos", REFUSED, "did you mean 'template'?"),
    ("tpl_text_template", {"templte": "x"}, "typos", REFUSED, "did you mean 'template'?"),
    ("tpl_flow_counter", {"ui_color": "red"}, "typos", WARNED, "has no config key 'ui_color'"),
    ("tpl_flow_counter", {"description": "x"}, "typos", WARNED, "'tpl_flow_counter'"),
    ("tpl_flow_passthrough", {"label": "x"}, "typos", WARNED, "reads no config 'label'"),
    ("tpl_vec3_add", {"x": 1}, "typos", WARNED, "node 'n': template 'tpl_vec3_add'"),
    ("tpl_math_compare", {"zzzz": 1}, "typos", WARNED, "config_check='strict'"),
    ("tpl_flow_counter", {"ui_color": "red"}, "strict", REFUSED, "it reads 'start', 'step'"),
    ("tpl_flow_passthrough", {"label": "x"}, "strict", REFUSED, "reads no config 'label'"),
    ("tpl_flow_counter", {"strat": 1}, "strict", REFUSED, "did you mean 'start'?"),
    ("tpl_flow_counter", {"strat": 1, "ui_color": "red"}, "off", KEPT, ""),
    ("tpl_flow_counter", {"start": 1, "step": 2}, "strict", KEPT, ""),
    ("tpl_shape_2d", {"anything": 1}, "strict", KEPT, ""),  # reads its config whole
]


def _outcome(add: Any) -> tuple[str, str]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            add()
        except reflow.GraphError as exc:
            return REFUSED, str(exc)
    mine = [w for w in seen if issubclass(w.category, reflow.ConfigKeyWarning)]
    return (WARNED, str(mine[0].message)) if mine else (KEPT, "")


@pytest.mark.parametrize(("template_id", "config", "mode", "outcome", "fragment"), _CASES)
def test_add_node_treats_an_unknown_key_by_the_network_config_check(
    template_id: str, config: dict[str, Any], mode: str, outcome: str, fragment: str
) -> None:
    net = reflow.Network(config_check=mode)
    got, text = _outcome(lambda: net.add_node("n", template_id, config))
    assert got == outcome, text
    assert fragment in text
    assert (outcome == REFUSED) == ("n" not in net.nodes())


@pytest.mark.parametrize(("template_id", "config", "mode", "outcome", "fragment"), _CASES)
def test_a_graph_from_fbp_json_treats_an_unknown_key_alike(
    template_id: str, config: dict[str, Any], mode: str, outcome: str, fragment: str
) -> None:
    graph = {
        "processes": {"n": {"component": template_id, "metadata": {"config": config}}},
        "connections": [],
    }
    net = reflow.Network.from_graph(graph, config={"config_check": mode})
    got, text = _outcome(net.nodes)  # the graph is applied on first need
    assert got == outcome, text
    assert fragment in text


def test_a_node_with_a_kept_key_runs_on_the_keys_it_reads() -> None:
    with reflow.Network() as net:
        with pytest.warns(reflow.ConfigKeyWarning, match="'ui_color'"):
            net.add_node("c", "tpl_flow_counter", {"start": 5, "ui_color": "red"})
        out = net.collect("c", "count")
        net.add_initial("c", "in", reflow.Message.integer(1))
        net.run(timeout=30)
        assert [m.data() for m in out.messages] == [6]


def test_the_warning_is_shown_once_per_call_site_and_points_at_it() -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        for _ in range(3):  # the same graph built three times: one warning
            reflow.Network().add_node("c", "tpl_flow_counter", {"ui_color": "red"})
    mine = [w for w in seen if issubclass(w.category, reflow.ConfigKeyWarning)]
    assert len(mine) == 1
    assert mine[0].filename == __file__


def test_a_huge_unknown_key_is_named_briefly() -> None:
    net = reflow.Network(config_check="strict")
    with pytest.raises(reflow.GraphError) as info:
        net.add_node("c", "tpl_flow_counter", {"k" * 1_000_000: 1})
    assert "(1000000 characters)" in str(info.value)
    assert len(str(info.value)) < 300


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"config_check": "lenient"}, "config_check must be one of 'typos', 'strict', 'off'"),
        ({"config_check": 1}, "got 1"),
        ({"config": {"config_check": None}}, "got None"),
        ({"config": {"configcheck": "off"}}, "expected capacity, workers, event_buffer, config"),
    ],
)
def test_a_bad_config_check_is_refused_naming_it(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(reflow.GraphError) as info:
        reflow.Network(**kwargs)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("", "", 0),
        ("start", "start", 0),
        ("strat", "start", 1),  # a swap of neighbours counts one
        ("radious", "radius", 1),
        ("", "abc", 3),
        ("kitten", "sitting", 3),
        ("ab", "ba", 1),
    ],
)
def test_edit_distance(a: str, b: str, distance: int) -> None:
    assert edit_distance(a, b) == distance
    assert edit_distance(b, a) == distance


@pytest.mark.parametrize(
    ("key", "known", "typo"),
    [
        ("strat", ["start", "step"], "start"),
        ("max-size", ["max_size"], "max_size"),  # separators and case only
        ("MaxSize", ["max_size"], "max_size"),
        ("y", ["x"], None),  # short keys: only by case or separators
        ("X", ["x"], "x"),
        ("colour", ["color"], "color"),
        ("label", ["level"], None),  # two edits on a short key: not a typo
        ("thresold", ["threshold", "mode"], "threshold"),
        ("ui_color", ["start", "step"], None),
        ("k" * 201, ["k" * 200], None),
    ],
)
def test_likely_typo_of(key: str, known: list[str], typo: str | None) -> None:
    assert likely_typo_of(key, known) == typo
