"""Differential tests: the same template, config and packets through offbit_reflow 0.2.9 (in
a subprocess of the Python named by ``REFLOW_SDK_PYTHON``) and through reflow; the packets
on each out-port must match. Skipped unless ``REFLOW_SDK_PYTHON`` imports ``offbit_reflow``.

Inputs stay small (the SDK hangs once ~52 packets wait for one Python node). Only cases
where the SDK works are here; where it is broken the README's "Differences from
offbit_reflow" table says what reflow does instead, and test_sdk_catalog.py tests that.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from typing import Any

import pytest

from reflow import Message
from reflow.library import builtin_templates
from reflow.testing import run_ticks

SDK_PYTHON = os.environ.get("REFLOW_SDK_PYTHON")
pytestmark = [
    pytest.mark.skipif(not SDK_PYTHON, reason="REFLOW_SDK_PYTHON is not set"),
    pytest.mark.slow,
]

_PROBE = textwrap.dedent("""
    import json, sys, threading, time
    import offbit_reflow as r
    from offbit_reflow import Actor, Network
    results = []
    for case in json.loads(sys.stdin.read()):
        got, lock = {}, threading.Lock()
        class Sink(Actor):
            component = "sink"
            inports = ["in"]
            outports = []
            def __init__(self, port):
                super().__init__()
                self.port = port
            def run(self, ctx):
                with lock:
                    got.setdefault(self.port, []).append(ctx.inputs["in"])
                ctx.done()
        net = Network()
        net.register_actor("t", r.template_actor(case["tid"]))
        net.add_node("n", "t", config=case["config"])
        for port in case["outs"]:
            net.register_actor("sink_" + port, Sink(port)._build())
            net.add_node("s_" + port, "sink_" + port)
            net.add_connection("n", port, "s_" + port, "in")
        for port, msg in case["ins"]:
            net.add_initial("n", port, msg)
        net.start()
        time.sleep(0.3)
        net.shutdown()
        results.append(got)
    print(json.dumps(results))
""")

ISSUE = {"labels": ["bug"], "age_days": 4, "has_assignee": False}
# (template, config, [(in-port, message JSON)], out-ports to compare)
CASES: list[tuple[str, dict[str, Any], list[tuple[str, dict[str, Any]]], list[str]]] = [
    ("tpl_passthrough", {}, [("input", {"type": "String", "data": "x"})], ["output"]),
    (
        "tpl_collect",
        {"count": 2},
        [("input", {"type": "Integer", "data": 1}), ("input", {"type": "String", "data": "a"})],
        ["output", "count"],
    ),
    (
        "tpl_filter",
        {"condition": "greater_than", "value": 1, "field": "p"},
        [("input", {"type": "Array", "data": [{"p": 0}, {"p": 2}, 5]})],
        ["output", "rejected"],
    ),
    (
        "tpl_map",
        {"operation": "extract_field", "field": "a"},
        [("input", {"type": "Array", "data": [{"a": 1}, {"b": 2}]})],
        ["output"],
    ),
    (
        "tpl_reduce",
        {"operation": "sum"},
        [("input", {"type": "Array", "data": [1, 2.5]})],
        ["output"],
    ),
    (
        "tpl_reduce",
        {"operation": "count"},
        [("input", {"type": "Array", "data": [1, "a"]})],
        ["output"],
    ),
    ("tpl_merge", {"mode": "object"}, [("a", {"type": "Integer", "data": 1})], ["output"]),
    (
        "tpl_split",
        {},
        [("input", {"type": "Array", "data": [{"h": 1}, 2]})],
        ["head", "tail", "count"],
    ),
    (
        "tpl_switch",
        {"switch_field": "k", "case2_value": "b"},
        [("data", {"type": "Object", "data": {"k": "b"}})],
        ["case1", "case2", "default"],
    ),
    (
        "tpl_if_branch",
        {"condition_field": "k", "condition_value": 1},
        [("data", {"type": "Object", "data": {"k": 1}})],
        ["true-out", "false-out"],
    ),
    (
        "tpl_rules_engine",
        {
            "rules": {
                "groups": [
                    {"rules": [{"field": "age_days", "operator": "greater_equal", "value": 3}]}
                ],
                "actions": {"setProperty": [{"key": "branch", "value": "x"}]},
            }
        },
        [("data", {"type": "Object", "data": ISSUE})],
        ["matched", "unmatched", "output"],
    ),
    (
        "tpl_signal",
        {"event": "E", "data": {"a": 1}},
        [("trigger", {"type": "Object", "data": {"b": 2}})],
        ["signal"],
    ),
    (
        "tpl_subscriber",
        {"event": "E"},
        [("signal", {"type": "Object", "data": {"id": "E", "data": {"v": 1}}})],
        ["data", "trigger"],
    ),
    (
        "tpl_math_add",
        {"precision": 2},
        [("a", {"type": "Float", "data": 0.125}), ("b", {"type": "Integer", "data": 2})],
        ["result"],
    ),
    (
        "tpl_math_modulo",
        {},
        [("a", {"type": "Integer", "data": -7}), ("b", {"type": "Integer", "data": 3})],
        ["result"],
    ),
    (
        "tpl_math_power",
        {},
        [("base", {"type": "Integer", "data": 2}), ("exponent", {"type": "Integer", "data": 10})],
        ["result"],
    ),
    ("tpl_math_round", {"mode": "floor"}, [("input", {"type": "Float", "data": -2.5})], ["result"]),
    (
        "tpl_math_min_max",
        {},
        [("a", {"type": "Integer", "data": 3}), ("b", {"type": "Float", "data": 1.5})],
        ["min", "max"],
    ),
    (
        "tpl_math_expression",
        {"expression": "($x + 1) * 2 ^ 2"},
        [("input", {"type": "Integer", "data": 2})],
        ["result"],
    ),
    ("tpl_data_emit", {"data": {"k": [1]}}, [("trigger", {"type": "Flow"})], ["output"]),
    (
        "tpl_data_transformer",
        {"transform_type": "set_field", "field": "b", "value": 2},
        [("input", {"type": "Object", "data": {"a": 1}})],
        ["output"],
    ),
    (
        "tpl_json_parser",
        {"path": "a.b"},
        [("input", {"type": "String", "data": '{"a": {"b": {"c": 1}}}'})],
        ["output"],
    ),
    (
        "tpl_server_response",
        {"statusCode": 201},
        [("body", {"type": "Object", "data": {"ok": True}})],
        ["response"],
    ),
]


def _sdk_results() -> list[dict[str, list[Any]]]:
    spec = [{"tid": t, "config": c, "ins": i, "outs": o} for t, c, i, o in CASES]
    assert SDK_PYTHON
    proc = subprocess.run(
        [SDK_PYTHON, "-c", _PROBE],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def sdk() -> list[dict[str, list[Any]]]:
    return _sdk_results()


def _ours(
    tid: str, config: dict[str, Any], ins: list[tuple[str, dict[str, Any]]], outs: list[str]
) -> dict[str, list[Any]]:
    r = run_ticks(
        builtin_templates()[tid],
        [{p: Message.from_json(m)} for p, m in ins]
        if tid not in ("tpl_math_add", "tpl_math_modulo", "tpl_math_power", "tpl_math_min_max")
        else [{p: Message.from_json(m) for p, m in ins}],
        config,
    )
    assert r.ok, r.failures
    return {p: [m.as_json() for m in r.outputs[p]] for p in outs if p in r.outputs}


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c[0] for c in CASES])
def test_same_packets_as_the_sdk(sdk: list[dict[str, list[Any]]], index: int) -> None:
    tid, config, ins, outs = CASES[index]
    assert _ours(tid, config, ins, outs) == sdk[index], tid
