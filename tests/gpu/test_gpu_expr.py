"""Array expressions compiled to WGSL and reductions on the device, against their numpy twins;
unsupported constructs refused when the node is made; one kernel per expression text.

Tolerance: expressions 1e-6 relative (+1e-6 absolute) where the numpy result is finite;
min and max exact; sum within 1e-6 * sum(|x|) of numpy's float64 (the mean: / n).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from reflow import ActorError, Network, template_actor
from reflow._core._messages import Message
from reflow._gpu import configure_gpu, gpu_counters, reset_device
from reflow.library._gpu_array import expression_kernel
from reflow.library._gpu_exprlang import compile_expression
from reflow.testing import run_tick

_RNG = np.random.default_rng(1604)
_N = 5000
_A = (_RNG.random(_N, dtype=np.float32) * 20 - 10).astype(np.float32)
_B = (_RNG.random(_N, dtype=np.float32) * 3 + 0.5).astype(np.float32)
_C = _RNG.integers(-3, 4, _N).astype(np.float32)
_D = (_RNG.standard_normal(_N) * 1e3).astype(np.float32)


def _arr(values: np.ndarray) -> Message:
    return Message.bytes(np.ascontiguousarray(values, dtype="<f4").tobytes())


def _values(msg: Any) -> np.ndarray:
    if msg["type"] == "Gpu":
        msg = msg["data"].to_message()
    return np.frombuffer(msg["data"], dtype="<f4")


_INPUTS = {"a": _arr(_A), "b": _arr(_B), "c": _arr(_C), "d": _arr(_D)}


@pytest.fixture
def gpu_off() -> Iterator[None]:
    reset_device()
    configure_gpu(enabled=False)
    yield
    configure_gpu()
    reset_device()


_EXPRESSIONS = [
    "$.a",
    "$.a + $.b * 2 - 0.5",
    "$.a / $.b",
    "$.a % $.b",
    "-$.a % 3 + $.d % -7.5",
    "$.a * $.k + $.off",
    "abs($.a) - abs($.c)",
    "min($.a, $.b) + max($.a, $.b, $.c, 0)",
    "min($.a)",
    "round($.a) + int($.a) * 10",
    "float($.c) * 2",
    "($.a > 0) + ($.a >= $.c) * 2 + ($.c == 1) * 4 + ($.c != 0) * 8",
    "($.a < $.b) * 16 + ($.a <= 0) * 32",
    "($.a > 0 and $.c > 0) + ($.a > 0 or $.c > 0) * 2 + (not $.c) * 4",
    "true + false * 3 + $.c",
    "$.d * $.d / ($.b + 1e3) - 12.5e-2",
    "((($.a + 1) * ($.b - 1)) / (($.c * $.c) + 1)) - $.a",
]


@pytest.mark.parametrize("expression", _EXPRESSIONS)
def test_expression_matches_numpy(device: Any, expression: str) -> None:
    config = {"expression": expression, "constants": {"k": 2.5, "off": -1}}
    gpu = run_tick(template_actor("tpl_gpu_array_expression"), _INPUTS, config)
    cpu = run_tick(template_actor("tpl_array_expression"), _INPUTS, config)
    gpu.raise_for_failures()
    cpu.raise_for_failures()
    assert gpu.outputs["out"][0]["type"] == "Gpu"
    got, want = _values(gpu.outputs["out"][0]), _values(cpu.outputs["out"][0])
    assert got.shape == want.shape == (_N,)
    assert np.isfinite(want).all()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def _scalar_reference(expression: str, row: dict[str, float]) -> float:
    """The same text through the scalar language (:class:`Expression`) on one element:
    the array language is a subset with the same meaning (comparisons give 0/1)."""
    from reflow.library import Expression

    value = Expression(expression).evaluate(row)
    return float(value)


@pytest.mark.parametrize(
    "expression",
    ["$.a + $.b * 2 - 0.5", "$.a % $.b", "min($.a, $.b) - max($.c, 0)", "abs($.a) / $.b"],
)
def test_numpy_twin_agrees_with_the_scalar_language(expression: str) -> None:
    result = run_tick(template_actor("tpl_array_expression"), _INPUTS, {"expression": expression})
    got = _values(result.outputs["out"][0])
    for i in range(0, _N, 500):
        row = {"a": float(_A[i]), "b": float(_B[i]), "c": float(_C[i])}
        assert got[i] == pytest.approx(_scalar_reference(expression, row), rel=1e-5, abs=1e-5)


def test_one_kernel_per_expression_text(device: Any) -> None:
    program = compile_expression("$.a * $.k")
    assert compile_expression("$.a * $.k") is program
    assert expression_kernel(program) is expression_kernel(compile_expression("$.a * $.k"))
    before = len(device.pipelines)
    for k in (1, 2, 3):  # other constants: the same kernel, bound to other values
        result = run_tick(
            template_actor("tpl_gpu_array_expression"),
            {"a": _INPUTS["a"]},
            {"expression": "$.a * $.k", "constants": {"k": k}},
        )
        assert np.allclose(_values(result.outputs["out"][0]), _A * k)
    assert len(device.pipelines) == before + 1
    assert "consts" in program.wgsl and "2.5" not in program.wgsl


def test_a_long_expression_compiles_flat_and_fast(device: Any) -> None:
    """A 1,999-character sum is one `let` per term (no deep nesting for naga, no Python
    recursion): it compiles and runs in bounded time."""
    expression = "+".join(["$.a"] * 500)[:1999].rstrip("+$.a") or "$.a"
    t0 = time.perf_counter()
    result = run_tick(
        template_actor("tpl_gpu_array_expression"), {"a": _INPUTS["a"]}, {"expression": expression}
    )
    result.raise_for_failures()
    terms = expression.count("$.a")
    np.testing.assert_allclose(_values(result.outputs["out"][0]), _A * terms, rtol=1e-4)
    assert time.perf_counter() - t0 < 30


_UNSUPPORTED = [
    ('$.a + "x"', "the string literal 'x' is not supported in an array expression"),
    ("$.a + null", "null is not supported"),
    ("$ + 1", "'$' on its own"),
    ("$.a.b + 1", "indexing or a nested field"),
    ("$.a[0]", "indexing or a nested field"),
    ("[$.a, 1]", "an array literal"),
    ('{"x": $.a}', "an object literal"),
    ("$.a in [1, 2]", "the operator 'in'"),
    ("$.a in $.b", "the operator 'in'"),
    ("exists($.a)", "exists()"),
    ("len($.a)", "the function len()"),
    ("lower($.a)", "the function lower()"),
    ("str($.a)", "the function str()"),
    ("round($.a, 2)", "round() with 2 arguments"),
    ("sqrt($.a)", "unknown name 'sqrt'"),
    ("$.a +", "unexpected end of expression"),
    ("$.a $.b", "unexpected"),
    ("1 + 2", "reads no in-port"),
    ("$.a * $.missing", "names $.missing, which is neither an in-port"),
    ("$.a + 1e39", "the number 1e+39 does not fit float32"),
    ("(" * 201 + "$.a" + ")" * 201, "nesting deeper than 200 levels"),
    (
        "+".join("-" * 199 + f"$.{p}" for p in "abcd") + "".join(f"+{i}" for i in range(1, 150)),
        "needs more than 1024 operations",
    ),
    ("-" * 1500 + "$.a", "nests too deeply"),
    ("$.a" + " " * 2001, "longer than 2000 characters"),
]


@pytest.mark.parametrize(("expression", "fragment"), _UNSUPPORTED)
@pytest.mark.parametrize("side", ["tpl_gpu_array_expression", "tpl_array_expression"])
def test_unsupported_construct_fails_when_the_node_is_made(
    side: str, expression: str, fragment: str
) -> None:
    net = Network()
    net.register_actor("x", template_actor(side))
    t0 = time.perf_counter()
    with pytest.raises(ActorError) as info:
        net.add_node("expr", "x", {"expression": expression})
    assert time.perf_counter() - t0 < 2
    message = str(info.value)
    assert fragment in message and "node 'expr'" in message and "config 'expression'" in message
    net.shutdown()


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({}, "config 'expression' is required"),
        ({"expression": 3}, "config 'expression' must be a string"),
        ({"expression": ["$.a"]}, "config 'expression' must be a string"),
        ({"expression": {"x": 1}}, "config 'expression' must be a string"),
        ({"expression": "$.a * $.k", "constants": [1]}, "config 'constants' must be an object"),
        ({"expression": "$.a * $.k", "constants": {"k": "2"}}, "'k' must be a number"),
        ({"expression": "$.a * $.k", "constants": {"k": True}}, "'k' must be a number"),
        ({"expression": "$.a * $.k", "constants": {"k": 1e40}}, "does not fit float32"),
        ({"expression": "$.a * $.k", "constants": {"k": float("nan")}}, "does not fit float32"),
    ],
)
def test_bad_config_fails_when_the_node_is_made(config: dict, fragment: str) -> None:
    for tid in ("tpl_gpu_array_expression", "tpl_array_expression"):
        net = Network()
        net.register_actor("x", template_actor(tid))
        with pytest.raises(ActorError, match=fragment.replace("(", r"\(").replace("$", r"\$")):
            net.add_node("expr", "x", config)
        net.shutdown()


@pytest.mark.parametrize(
    ("inputs", "fragment"),
    [
        (
            {"a": _arr(_A), "b": _arr(_B[:-1])},
            "in-ports 'a' (5000 values) and 'b' (4999 values) differ in length",
        ),
        ({"a": Message.bytes(b"12345")}, "in-port 'a': 5 bytes is not a whole number of float32"),
        ({"a": Message.string("1,2")}, "in-port 'a': expected Bytes of float32 values, got String"),
        ({"b": _arr(_B)}, "in-port 'a': no array arrived"),
    ],
)
@pytest.mark.parametrize("side", ["tpl_gpu_array_expression", "tpl_array_expression"])
def test_bad_input_fails_the_tick_naming_the_ports(
    device: Any, side: str, inputs: dict, fragment: str
) -> None:
    result = run_tick(template_actor(side), inputs, {"expression": "$.a + $.b"})
    assert len(result.failures) == 1
    assert fragment in result.failures[0].error.splitlines()[0]


_ARRAYS = {
    "uniform": _RNG.random(300_000, dtype=np.float32),
    "signed": _D,
    "one": np.array([-2.5], dtype=np.float32),
    "odd": _RNG.random(257, dtype=np.float32) - 0.5,
    "inf": np.array([1.0, np.inf, -3.0], dtype=np.float32),
    "nan": np.array([1.0, np.nan, -3.0], dtype=np.float32),
}


@pytest.mark.parametrize("op", ["sum", "min", "max", "mean"])
@pytest.mark.parametrize("name", sorted(_ARRAYS))
def test_reduction_matches_numpy(device: Any, name: str, op: str) -> None:
    msg = {"in": _arr(_ARRAYS[name])}
    gpu = run_tick(template_actor("tpl_gpu_array_reduce"), msg, {"op": op})
    cpu = run_tick(template_actor("tpl_array_reduce"), msg, {"op": op})
    gpu.raise_for_failures()
    got, want = gpu.outputs["out"][0]["data"], cpu.outputs["out"][0]["data"]
    if np.isnan(want):
        assert np.isnan(got)
    elif op in ("min", "max") or not np.isfinite(want):
        assert got == want
    else:  # the stated bound: 1e-6 * sum(|x|) (/ n for the mean)
        scale = float(np.abs(_ARRAYS[name].astype(np.float64)).sum())
        bound = 1e-6 * (scale if op == "sum" else scale / _ARRAYS[name].size)
        assert abs(got - want) <= bound


@pytest.mark.parametrize(
    ("op", "fragment"),
    [("min", "the min of an empty array is not defined"), ("mean", "mean of an empty array")],
)
def test_empty_reductions(device: Any, op: str, fragment: str) -> None:
    for tid in ("tpl_gpu_array_reduce", "tpl_array_reduce"):
        empty = run_tick(template_actor(tid), {"in": Message.bytes(b"")}, {"op": op})
        assert fragment in empty.failures[0].error
        total = run_tick(template_actor(tid), {"in": Message.bytes(b"")}, {"op": "sum"})
        assert total.outputs["out"][0]["data"] == 0.0
    bad = run_tick(template_actor("tpl_gpu_array_reduce"), {"in": _arr(_A)}, {"op": "median"})
    assert (
        "config 'op' must be one of 'sum', 'min', 'max', 'mean', got 'median'"
        in bad.failures[0].error
    )


def test_one_gpu_array_on_two_ports(device: Any) -> None:
    """A fan-out of one device array into ports a and b binds the same buffer twice."""
    net = Network()
    for tid in ("tpl_gpu_array_expression", "tpl_array_reduce"):
        net.register_actor(tid, template_actor(tid))
    net.add_node("square", "tpl_gpu_array_expression", {"expression": "$.a * 2"})
    net.add_node("mul", "tpl_gpu_array_expression", {"expression": "$.a * $.b - $.a"})
    net.add_node("sum", "tpl_array_reduce")
    net.add_connection("square", "out", "mul", "a")
    net.add_connection("square", "out", "mul", "b")
    net.add_connection("mul", "out", "sum", "in")
    out = net.collect("sum", "out")
    net.add_initial("square", "a", _arr(_B))
    net.run(timeout=60).raise_for_failures()
    net.shutdown()
    twice = (_B * 2).astype(np.float64)
    assert out.messages[0]["data"] == pytest.approx(float((twice * twice - twice).sum()), rel=1e-5)
    assert (gpu_counters().uploads, gpu_counters().readbacks) == (1, 1)


def test_expression_into_reduction_stays_on_the_device(device: Any) -> None:
    """a, b uploaded once each; the expression's output is reduced where it is; only the
    reduction's partials come back."""
    net = Network()
    for tid in ("tpl_gpu_array_expression", "tpl_gpu_array_reduce"):
        net.register_actor(tid, template_actor(tid))
    net.add_node("expr", "tpl_gpu_array_expression", {"expression": "$.a * $.b"})
    net.add_node("sum", "tpl_gpu_array_reduce", {"op": "mean"})
    net.add_connection("expr", "out", "sum", "in")
    out = net.collect("sum", "out")
    net.add_initial("expr", "a", _arr(_A))
    net.add_initial("expr", "b", _arr(_B))
    net.run(timeout=60).raise_for_failures()
    net.shutdown()
    counters = gpu_counters()
    assert (counters.uploads, counters.readbacks) == (2, 1)
    assert counters.bytes_down < _A.nbytes
    want = float((_A * _B).astype(np.float64).mean())
    assert out.messages[0]["data"] == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize(
    ("tid", "inputs", "config", "cpu"),
    [
        (
            "tpl_gpu_array_expression",
            _INPUTS,
            {"expression": "$.a * 2 + $.c"},
            "tpl_array_expression",
        ),
        ("tpl_gpu_array_reduce", {"in": _INPUTS["d"]}, {"op": "max"}, "tpl_array_reduce"),
    ],
)
def test_fallback_cpu_runs_the_twin(
    gpu_off: None, tid: str, inputs: dict, config: dict, cpu: str
) -> None:
    gpu = run_tick(template_actor(tid), inputs, {**config, "fallback": "cpu"})
    want = run_tick(template_actor(cpu), inputs, config)
    gpu.raise_for_failures()
    assert gpu.outputs["out"][0]["data"] == want.outputs["out"][0]["data"]
