"""reflow.workflow: wire modes inferred from types, and the definition errors, in tables."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import pytest

from reflow import ReflowError
from reflow.workflow import (
    Flow,
    Param,
    ParamError,
    Result,
    RunDir,
    StepNotFoundError,
    WireTypeError,
    Workflow,
    WorkflowCycleError,
    WorkflowDefinitionError,
    WorkflowError,
)


def _modes(wf: Workflow) -> dict[str, list[str]]:
    plan = wf.plan()
    return {n: [w.mode for w in plan.wires[n]] for n in plan.order}


def test_every_wire_mode_and_its_result(tmp_path: Path) -> None:
    wf = Workflow("modes")

    @wf.job
    def seed() -> int:
        return 10

    @wf.job
    def words() -> list[str]:
        return ["a", "bb", "ccc"]

    @wf.job
    def plus(x: Annotated[int, Result(step="seed")]) -> int:  # direct
        return x + 1

    @wf.job(array=True)
    def length(
        w: Annotated[str, Result(step="words")], k: Annotated[int, Result(step="seed")]
    ) -> int:
        return len(w) * k  # fan-out + broadcast

    @wf.job(array=True)
    def neg(n: Annotated[int, Result(step="length")]) -> int:  # chain
        return -n

    @wf.job
    def total(ns: Annotated[list[int], Result(step="neg")]) -> int:  # gather
        return sum(ns)

    @wf.job(array=True)
    def share(
        n: Annotated[int, Result(step="length")], every: Annotated[list[int], Result(step="neg")]
    ) -> float:  # chain + gather broadcast to every element
        return n / -sum(every)

    @wf.job
    def joined(
        xs: Annotated[list[int], Result(steps=["length", "seed", "neg"])],
    ) -> list[int]:  # concat of an array, a value and an array
        return xs

    @wf.job(array=True)
    def each_of_both(x: Annotated[int, Result(steps=["length", "joined"])]) -> int:
        return x  # concat, iterated

    assert _modes(wf) == {
        "seed": [],
        "words": [],
        "plus": ["direct"],
        "length": ["fanout", "broadcast"],
        "neg": ["chain"],
        "total": ["gather"],
        "share": ["chain", "gather"],
        "joined": ["concat"],
        "each_of_both": ["concat-iterate"],
    }
    r = wf.run_local(tmp_path)
    assert r.ok, r.table()
    assert r["plus"] == 11
    assert r["length"] == [10, 20, 30]
    assert r["neg"] == [-10, -20, -30]
    assert r["total"] == -60
    assert r["share"] == pytest.approx([10 / 60, 20 / 60, 30 / 60])
    assert r["joined"] == [10, 20, 30, 10, -10, -20, -30]
    assert r["each_of_both"] == [10, 20, 30, 10, 20, 30, 10, -10, -20, -30]
    assert r.steps["length"].elements == 3


@pytest.mark.parametrize(
    ("up_ret", "down_type", "down_array", "mode"),
    [
        (int, int, False, "direct"),
        (int, float, False, "direct"),  # int fits float
        (bool, int, False, "direct"),
        (int | None, int | None, False, "direct"),
        (int, Optional[int], False, "direct"),  # noqa: UP045 - typing.Optional too
        (Literal["a", "b"], str, False, "direct"),
        (list[int], Sequence[float], False, "direct"),
        (tuple[int, ...], list[int], False, "direct"),
        (list[int], int, True, "fanout"),
        (list[int], Any, True, "fanout"),  # an untyped element prefers iterating
        (list[int], list[int], True, "broadcast"),  # a list-typed element takes it whole
        (dict[str, int], dict[str, float], False, "direct"),
        (int, Any, False, "direct"),
    ],
)
def test_type_rules(up_ret: Any, down_type: Any, down_array: bool, mode: str) -> None:
    wf = Workflow("t")

    def up() -> Any: ...

    up.__annotations__["return"] = up_ret
    wf.job(up)

    def down(x: Any) -> None: ...

    down.__annotations__["x"] = Annotated[down_type, Result(step="up")]
    extra = {}
    if down_array and mode == "broadcast":
        # broadcast alone cannot define an array: iterate over another list too

        def more() -> list[int]: ...

        wf.job(more)

        def down2(x: Any, i: Annotated[int, Result(step="more")]) -> None: ...

        down2.__annotations__["x"] = Annotated[down_type, Result(step="up")]
        wf.job(down2, name="down", array=True)
        extra = {"down": [mode, "fanout"]}
    else:
        wf.job(down, array=down_array)
    assert _modes(wf)["down"] == (extra["down"] if extra else [mode])


def _wf_missing() -> Workflow:
    wf = Workflow("w")

    @wf.job
    def load() -> list[str]: ...

    @wf.job
    def use(x: Annotated[list[str], Result(step="lod")]) -> None: ...

    return wf


def _wf_after_missing() -> Workflow:
    wf = Workflow("w")

    @wf.job(after=["prepare"])
    def go() -> None: ...

    @wf.job
    def prepair() -> None: ...

    return wf


def _wf_mismatch() -> Workflow:
    wf = Workflow("w")

    @wf.job
    def load() -> str: ...

    @wf.job
    def use(x: Annotated[int, Result(step="load")]) -> None: ...

    return wf


def _wf_one_of_many() -> Workflow:
    wf = Workflow("w")

    @wf.job
    def load() -> list[int]: ...

    @wf.job(array=True)
    def each(x: Annotated[int, Result(step="load")]) -> int: ...

    @wf.job
    def use(x: Annotated[int, Result(step="each")]) -> None: ...

    return wf


def _wf_cycle() -> Workflow:
    wf = Workflow("w")

    @wf.job
    def a(x: Annotated[int, Result(step="c")]) -> int: ...

    @wf.job
    def b(x: Annotated[int, Result(step="a")]) -> int: ...

    @wf.job
    def c(x: Annotated[int, Result(step="b")]) -> int: ...

    return wf


def _wf_self() -> Workflow:
    wf = Workflow("w")

    @wf.job(after=["a"])
    def a() -> None: ...

    return wf


def _wf_nothing_to_iterate() -> Workflow:
    wf = Workflow("w")

    @wf.job
    def n() -> int: ...

    @wf.job(array=True)
    def each(x: Annotated[int, Result(step="n")]) -> int: ...

    return wf


def _wf_no_iter_param_only() -> Workflow:
    wf = Workflow("w")

    @wf.job(array=True)
    def each(x: int) -> int: ...

    return wf


def _wf_concat_not_list() -> Workflow:
    wf = Workflow("w")

    @wf.job
    def a() -> int: ...

    @wf.job
    def use(x: Annotated[int, Result(steps=["a"])]) -> None: ...

    return wf


def _wf_concat_bad_part() -> Workflow:
    wf = Workflow("w")

    @wf.job
    def a() -> list[int]: ...

    @wf.job
    def b() -> str: ...

    @wf.job
    def use(x: Annotated[list[int], Result(steps=["a", "b"])]) -> None: ...

    return wf


def _wf_param_conflict() -> Workflow:
    wf = Workflow("w")

    @wf.job
    def a(size: int = 1) -> None: ...

    @wf.job
    def b(size: str = "x") -> None: ...

    return wf


def _wf_empty() -> Workflow:
    return Workflow("w")


@pytest.mark.parametrize(
    ("make", "error", "fragments"),
    [
        (_wf_missing, StepNotFoundError, ["'use'", "'lod'", "Did you mean 'load'"]),
        (_wf_after_missing, StepNotFoundError, ["'prepare'", "Did you mean 'prepair'"]),
        (_wf_mismatch, WireTypeError, ["'x'", "'use'", "int", "'load'", "str"]),
        (_wf_one_of_many, WireTypeError, ["list[int]", "gather", "array job 'each'"]),
        (_wf_cycle, WorkflowCycleError, ["a → b → c → a"]),
        (_wf_self, WorkflowCycleError, ["'a' depends on itself"]),
        (_wf_nothing_to_iterate, WireTypeError, ["array job 'each'", "nothing to iterate"]),
        (_wf_no_iter_param_only, WireTypeError, ["nothing to iterate"]),
        (_wf_concat_not_list, WireTypeError, ["must be a list", "int"]),
        (_wf_concat_bad_part, WireTypeError, ["'b'", "str"]),
        (_wf_param_conflict, WorkflowDefinitionError, ["'size'", "int", "str", "local"]),
        (_wf_empty, WorkflowDefinitionError, ["no jobs"]),
    ],
)
def test_definition_errors(make: Any, error: type[Exception], fragments: list[str]) -> None:
    t0 = time.perf_counter()
    with pytest.raises(error) as info:
        make().plan()
    assert isinstance(info.value, ReflowError)
    for f in fragments:
        assert f in str(info.value), (f, str(info.value))
    assert time.perf_counter() - t0 < 5


def test_cycle_error_names_the_cycle_as_a_list() -> None:
    with pytest.raises(WorkflowCycleError) as info:
        _wf_cycle().plan()
    assert info.value.cycle == ["a", "b", "c", "a"]


def test_step_not_found_carries_the_suggestion() -> None:
    with pytest.raises(StepNotFoundError) as info:
        _wf_missing().plan()
    assert (info.value.name, info.value.suggestion, info.value.step) == ("lod", "load", "use")


def _decorate(wf: Workflow, fn: Any, **kw: Any) -> None:
    wf.job(fn, **kw)


def _f_args(*xs: int) -> None: ...


def _f_result_default(x: Annotated[int, Result(step="a")] = 1) -> None: ...


def _f_two_markers(x: Annotated[int, Result(step="a"), Param()]) -> None: ...


def _f_gen() -> Any:
    yield 1


@pytest.mark.parametrize(
    ("fn", "kw", "fragment"),
    [
        (_f_args, {}, "*args/**kwargs"),
        (_f_result_default, {}, "cannot have a default"),
        (_f_two_markers, {}, "more than one of Result/Param/RunDir"),
        (_f_gen, {}, "generator"),
        (42, {}, "must be a function"),
        (lambda: None, {"name": "bad name!"}, "not a valid step name"),
        (lambda: None, {"name": "x", "cpus": -1}, "cpus must be a number"),
        (lambda: None, {"name": "x", "array_limit": 0}, "array_limit"),
        (lambda: None, {"name": "x", "version": 2}, "version must be a string"),
        (lambda: None, {"name": "x", "after": [3]}, "after= takes step names"),
    ],
)
def test_job_decorator_refuses(fn: Any, kw: dict[str, Any], fragment: str) -> None:
    wf = Workflow("w")
    with pytest.raises(WorkflowDefinitionError, match=None) as info:
        _decorate(wf, fn, **kw)
    assert fragment in str(info.value)


def test_duplicate_step_is_refused() -> None:
    wf = Workflow("w")
    wf.job(lambda: 1, name="a")
    with pytest.raises(WorkflowDefinitionError, match="'a' already exists"):
        wf.job(lambda: 2, name="a")


@pytest.mark.parametrize(
    ("marker_args", "kwargs", "fragment"),
    [
        ((), {}, "exactly one of"),
        (("a",), {"steps": ["b"]}, "exactly one of"),
        (("",), {}, "must be a step name"),
        ((), {"steps": []}, "names no step"),
        ((), {"steps": "ab"}, "must be a list"),
    ],
)
def test_result_marker_refuses(
    marker_args: tuple[Any, ...], kwargs: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(TypeError, match=fragment):
        Result(*marker_args, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [({"namespace": "team"}, "namespace"), ({"short": "s"}, "short"), ({"short": "-1"}, "short")],
)
def test_param_marker_refuses(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(TypeError, match=fragment):
        Param(**kwargs)


def _params_wf() -> Workflow:
    wf = Workflow("p")

    @wf.job
    def a(
        source: Annotated[str, Param(help="input")],
        mode: Literal["fast", "slow"] = "fast",
        count: int = 3,
        scale: float = 1.0,
    ) -> str:
        return f"{source}:{mode}:{count}:{scale}"

    @wf.job
    def b(
        x: Annotated[str, Result(step="a")],
        limit: Annotated[int, Param(namespace="local")] = 5,
        path: Path = Path("."),
    ) -> str:
        return f"{x}|{limit}|{path.name}"

    return wf


@pytest.mark.parametrize(
    ("params", "fragments"),
    [
        ({}, ["'source'", "required", "'a'"]),
        ({"source": "s", "sorce": 1}, ["unknown parameter 'sorce'", "did you mean 'source'"]),
        ({"source": "s", "limit": 1}, ["unknown parameter 'limit'", "'b.limit'"]),
        ({"source": 3}, ["'source'", "must be str", "int 3"]),
        ({"source": "s", "mode": "medium"}, ["'mode'", "one of ['fast', 'slow']"]),
        ({"source": "s", "count": "3"}, ["'count'", "must be int"]),
        ({"source": "s", "count": True}, ["'count'", "must be int"]),
        ({"source": "s", "b.limit": 1.5}, ["'b.limit'", "must be int"]),
    ],
)
def test_parameter_errors(tmp_path: Path, params: dict[str, Any], fragments: list[str]) -> None:
    with pytest.raises(ParamError) as info:
        _params_wf().run_local(tmp_path, params=params)
    for f in fragments:
        assert f in str(info.value), (f, str(info.value))
    assert not any(tmp_path.iterdir()), "nothing runs or is written when a parameter is bad"


def test_parameters_defaults_ints_as_floats_paths_and_local_names(tmp_path: Path) -> None:
    r = _params_wf().run_local(
        tmp_path, params={"source": "in", "scale": 2, "b.limit": 9, "path": "/x/data.csv"}
    )
    assert r["a"] == "in:fast:3:2"
    assert r["b"] == "in:fast:3:2|9|data.csv"


def test_flow_include_renames_its_steps_and_local_params(tmp_path: Path) -> None:
    qc = Flow("qc")

    @qc.job
    def measure(
        data: Annotated[list[int], Result(step="data")],
        factor: Annotated[int, Param(namespace="local")] = 1,
    ) -> int:
        return sum(data) * factor

    @qc.job
    def report(m: Annotated[int, Result(step="measure")]) -> str:
        return f"m={m}"

    wf = Workflow("main")

    @wf.job
    def data() -> list[int]:
        return [1, 2, 3]

    wf.include(qc, prefix="left")
    wf.include(qc, prefix="right")
    assert wf.steps == ["data", "left.measure", "left.report", "right.measure", "right.report"]
    r = wf.run_local(tmp_path, params={"right.measure.factor": 10})
    assert r["left.report"] == "m=6"
    assert r["right.report"] == "m=60"
    with pytest.raises(WorkflowDefinitionError, match="already exists"):
        wf.include(qc, prefix="left")


def test_rundir_is_made_per_job_and_per_element(tmp_path: Path) -> None:
    wf = Workflow("dirs")

    @wf.job
    def names(out: RunDir) -> list[str]:
        (out / "names.txt").write_text("a b")
        return ["a", "b"]

    @wf.job(array=True)
    def write(name: Annotated[str, Result(step="names")], here: Annotated[Path, RunDir()]) -> str:
        (here / "out.txt").write_text(name)
        return str(here)

    r = wf.run_local(tmp_path)
    assert (tmp_path / "names" / "names.txt").read_text() == "a b"
    assert r["write"] == [str(tmp_path / "write" / "0"), str(tmp_path / "write" / "1")]
    assert (tmp_path / "write" / "1" / "out.txt").read_text() == "b"


def test_arrays_of_different_lengths_fail_naming_both(tmp_path: Path) -> None:
    wf = Workflow("len")

    @wf.job
    def a() -> list[int]:
        return [1, 2, 3]

    @wf.job
    def b() -> list[int]:
        return [1, 2]

    @wf.job(array=True)
    def zip_(x: Annotated[int, Result(step="a")], y: Annotated[int, Result(step="b")]) -> int:
        return x + y

    with pytest.raises(WorkflowError) as info:
        wf.run_local(tmp_path)
    text = str(info.value)
    assert "different lengths" in text and "from a): 3" in text and "from b): 2" in text


def test_fanning_out_a_non_list_fails_the_job_with_a_clear_error(tmp_path: Path) -> None:
    wf = Workflow("nl")

    @wf.job
    def a() -> Any:
        return 5

    @wf.job(array=True)
    def each(x: Annotated[int, Result(step="a")]) -> int:
        return x

    assert _modes(wf)["each"] == ["fanout"]  # types say nothing (Any): the run finds out
    with pytest.raises(WorkflowError, match="returned int, not a list"):
        wf.run_local(tmp_path)
