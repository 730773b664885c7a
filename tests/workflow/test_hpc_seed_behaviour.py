"""What a reflow-hpc user relies on after switching ``from reflow import`` to
``from reflow.workflow import`` (issue #15): each row is one behaviour of the seed
(reflow-hpc 2604.4.0, read from its source and tests) and what it must give here. The rows that
run a workflow run locally and on a real Ray cluster (``raycluster.py``; those are slow)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import _hpc_support as hpc
import pytest
from _hpc_support import BACKENDS

from reflow import ReflowError
from reflow.workflow import (
    Flow,
    MissingParamError,
    Param,
    ParamError,
    Result,
    Run,
    RunDir,
    RunIndex,
    RunIndexError,
    RunNotFoundError,
    RunState,
    RunStateError,
    StepNotFoundError,
    TaskState,
    UnknownExecutorError,
    WireTypeError,
    Workflow,
    WorkflowCycleError,
    WorkflowDefinitionError,
    WorkflowDescription,
    WorkflowFailed,
)

INSTANCE_KEYS = {"task_name", "array_index", "state", "job_id", "error_text"}


_cache_dir = hpc.cache_dir
ray_cluster = hpc.ray_cluster
go = hpc.go


# ---------------------------------------------------------------------- workflows of the rows


def _greet() -> Workflow:
    wf = Workflow("greet")

    @wf.job()
    def greet(name: Annotated[str, Param(help="who")]) -> str:
        return f"Hello {name}"

    return wf


def _array(fail: int | None = None) -> Workflow:
    wf = Workflow("arr")

    @wf.job()
    def gen() -> list[int]:
        return [0, 1, 2]

    @wf.array_job()
    def up(x: Annotated[int, Result(step="gen")]) -> int:
        if x == fail:
            raise ValueError(f"element {x} refused")
        return x * 10

    @wf.job()
    def join(v: Annotated[list[int], Result(step="up")]) -> int:
        return sum(v)

    return wf


def _dirs() -> Workflow:
    wf = Workflow("dirs")

    @wf.job()
    def marked(out: RunDir) -> str:
        return str(out)

    @wf.job()
    def named(run_dir) -> str:  # type: ignore[no-untyped-def]  # no annotation: by its name
        return str(run_dir)

    @wf.job()
    def items() -> list[int]:
        return [1, 2]

    @wf.array_job()
    def elem(i: Annotated[int, Result(step="items")], d: RunDir) -> str:
        return str(d)

    return wf


def _ingest() -> Flow:
    flow = Flow("ingest")

    @flow.job()
    def download() -> list[str]:
        return ["a", "b"]

    @flow.array_job()
    def validate(item: Annotated[str, Result(step="download")]) -> str:
        return item + "!"

    return flow


def _check_shape(info: dict[str, Any]) -> None:
    assert json.loads(json.dumps(info)) == info, "JSON-safe"
    assert {"run", "summary", "instances", "failed_instances"} <= set(info)
    assert {"run_id", "graph_name", "status", "created_at", "parameters"} <= set(info["run"])
    for inst in info["instances"] + info["failed_instances"]:
        assert set(inst) >= INSTANCE_KEYS
        assert inst["state"] in {s.value for s in TaskState}


# ---------------------------------------------------------------------- runs (local and Ray)


def _row_success(go: Callable[..., Run], tmp: Path) -> None:
    run = go(_greet(), name="World")
    info = run.status(as_dict=True)
    assert info is not None
    _check_shape(info)
    assert info["run"]["status"] == RunState.SUCCESS == "SUCCESS"
    assert info["run"]["graph_name"] == "greet" and info["run"]["parameters"] == {"name": "World"}
    assert info["summary"] == {"greet": {"SUCCESS": 1}}
    assert info["failed_instances"] == []
    assert [(i["task_name"], i["array_index"]) for i in info["instances"]] == [("greet", None)]
    assert info["status"] == "SUCCESS" and info["steps"]["greet"]["state"] == "SUCCESS"


def _row_array_summary(go: Callable[..., Run], tmp: Path) -> None:
    info = go(_array()).status(as_dict=True)
    assert info is not None
    _check_shape(info)
    assert info["summary"] == {"gen": {"SUCCESS": 1}, "up": {"SUCCESS": 3}, "join": {"SUCCESS": 1}}
    ups = [i["array_index"] for i in info["instances"] if i["task_name"] == "up"]
    assert ups == [0, 1, 2]


def _row_continue(go: Callable[..., Run], tmp: Path) -> None:
    info = go(_array(fail=1), on_error="continue").status(as_dict=True)
    assert info is not None
    _check_shape(info)
    assert info["run"]["status"] == "FAILED"
    [bad] = info["failed_instances"]
    assert (bad["task_name"], bad["array_index"], bad["state"]) == ("up", 1, "FAILED")
    assert "element 1 refused" in bad["error_text"]
    assert info["summary"]["up"] == {"SUCCESS": 2, "FAILED": 1}
    assert info["summary"]["join"] == {"CANCELLED": 1}, "downstream of a failure: not run"


def _row_stop(go: Callable[..., Run], tmp: Path) -> None:
    with pytest.raises(RuntimeError, match=r"task 'up' failed") as info:
        go(_array(fail=0))
    assert isinstance(info.value, WorkflowFailed) and isinstance(info.value, ReflowError)


def _row_rundir(go: Callable[..., Run], tmp: Path) -> None:
    run = go(_dirs())
    shared = str((tmp / "run").resolve())
    assert run["marked"] == run["named"] == shared
    assert run["elem"] == [shared, shared], "array elements get the shared directory too"


def _row_include(go: Callable[..., Run], tmp: Path) -> None:
    wf = Workflow("inc")
    wf.include(_ingest())
    wf.include(_ingest(), prefix="raw")
    assert wf.steps == ["download", "validate", "raw_download", "raw_validate"]
    run = go(wf)
    assert run["validate"] == run["raw_validate"] == ["a!", "b!"]
    info = run.status(as_dict=True)
    assert info is not None and set(info["summary"]) == set(wf.steps)


def _row_cache_default(go: Callable[..., Run], tmp: Path) -> None:
    first = go(_array())
    assert first.steps["up"].cached == 0
    again = go(_array())  # the same run directory: every job is cached by default
    assert again.steps["up"].cached == 3 and again.steps["gen"].status == "cached"
    assert again["join"] == 30


def _row_retry_count(go: Callable[..., Run], tmp: Path) -> None:
    flag = tmp / "flag"
    wf = Workflow("retry")

    @wf.job()
    def gen() -> list[int]:
        return [0, 1, 2, 3]

    @wf.array_job()
    def work(x: Annotated[int, Result(step="gen")]) -> int:
        if x % 2 and not flag.exists():
            raise ValueError("not yet")
        return x

    run = go(wf, on_error="continue")
    flag.touch()
    assert run.retry() == 2
    assert run.ok and run["work"] == [0, 1, 2, 3]
    assert run.retry() == 0, "nothing left to retry"
    assert run.cancel() == 0, "an ended run has nothing to cancel"


RUN_ROWS = {
    "status(as_dict) has the seed's shape, UPPERCASE": _row_success,
    "summary counts instances per state, array elements indexed": _row_array_summary,
    "on_error=continue: FAILED run, failed_instances, downstream CANCELLED": _row_continue,
    "on_error=stop raises a RuntimeError 'task ... failed'": _row_stop,
    "RunDir and a parameter named run_dir are the shared run dir": _row_rundir,
    "include keeps names; prefix gives prefix_task": _row_include,
    "cache=True is the default": _row_cache_default,
    "retry() and cancel() return counts": _row_retry_count,
}


@pytest.mark.parametrize("go", BACKENDS, indirect=True)
@pytest.mark.parametrize("row", list(RUN_ROWS))
def test_seed_run_behaviour(row: str, go: Callable[..., Run], tmp_path: Path) -> None:
    RUN_ROWS[row](go, tmp_path)


def test_retry_and_cancel_print_the_seed_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _array(fail=2).run_local(tmp_path, on_error="continue")
    capsys.readouterr()
    assert run.cancel() == 0
    assert run.retry() == 1  # it fails the same way: same count, the line printed first
    out = capsys.readouterr().out
    assert "Cancelled 0 task instance(s)." in out and "Marked 1 task instance(s) for retry." in out


# ---------------------------------------------------------------------- definition errors


def _fanout_of_str() -> None:
    wf = Workflow("w")

    @wf.job()
    def prepare() -> str:
        return "x"

    @wf.array_job()
    def convert(item: Annotated[str, Result(step="prepare")]) -> str:
        return item

    wf.validate()


def _cycle() -> None:
    wf = Workflow("w")
    wf.job(lambda: None, name="a", after=["b"])
    wf.job(lambda: None, name="b", after=["a"])
    wf.validate()


def _typo() -> None:
    wf = Workflow("w")
    wf.job(lambda: [1], name="prepare")

    @wf.array_job()
    def process(item: Annotated[int, Result(step="preprae")]) -> int:
        return item

    wf.validate()


def _duplicate() -> None:
    flow = Flow("f")
    flow.job(lambda: 1, name="a")
    flow.job(lambda: 2, name="a")


def _include_twice() -> None:
    wf = Workflow("w")
    wf.include(_ingest())
    wf.include(_ingest())


def _missing(tmp: Path) -> None:
    _greet().run_local(tmp / "r")


def _executor(tmp: Path) -> None:
    _greet().submit(tmp / "r", name="x", executor="pbs")


def _run_id(tmp: Path) -> None:
    _greet().run_status("greet-20260101-zzzz", store=tmp / "i.sqlite")


def _array_job_array() -> None:
    Workflow("w").array_job(array=False)(lambda: 1)


ERROR_ROWS: list[tuple[str, Callable[..., None], tuple[type[BaseException], ...], str]] = [
    ("fan-out of a str", _fanout_of_str, (TypeError, WireTypeError), "fan-out"),
    ("a cycle", _cycle, (ValueError, WorkflowCycleError), "cycle"),
    ("a typo", _typo, (ValueError, StepNotFoundError), "unknown task 'preprae'"),
    ("a typo suggests", _typo, (ValueError,), "Did you mean 'prepare'"),
    ("a duplicate job", _duplicate, (ValueError, WorkflowDefinitionError), "already registered"),
    ("include twice", _include_twice, (ValueError,), "already exists"),
    ("missing parameter", _missing, (TypeError, ValueError, MissingParamError), "missing required"),
    ("unknown executor", _executor, (ValueError, UnknownExecutorError), "Unknown executor 'pbs'"),
    ("unknown run id", _run_id, (KeyError, RunNotFoundError), "Unknown run_id 'greet-2026"),
    ("array_job(array=)", _array_job_array, (WorkflowDefinitionError,), "always an array job"),
]


@pytest.mark.parametrize(
    ("fn", "classes", "fragment"),
    [pytest.param(fn, classes, frag, id=name) for name, fn, classes, frag in ERROR_ROWS],
)
def test_seed_error_classes(
    fn: Callable[..., None],
    classes: tuple[type[BaseException], ...],
    fragment: str,
    tmp_path: Path,
) -> None:
    args = (tmp_path,) if fn.__code__.co_argcount else ()
    with pytest.raises(ReflowError) as info:
        fn(*args)
    for cls in classes:
        assert isinstance(info.value, cls), (type(info.value).__mro__, cls)
    text = str(info.value)
    assert fragment in text and len(text) < 600
    assert not text.startswith(("'", '"')), "a KeyError's message is not quoted"


# ---------------------------------------------------------------------- states, store=, hostile


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("SUCCESS", "SUCCESS"),
        ("success", "SUCCESS"),
        ("succeeded", "SUCCESS"),
        ("Failed", "FAILED"),
        ("canceled", "CANCELLED"),
        (RunState.CANCELLED, "CANCELLED"),
        (" running ", "RUNNING"),
    ],
)
def test_runs_status_filter_takes_any_case(given: Any, expected: str, tmp_path: Path) -> None:
    idx = tmp_path / "i.sqlite"
    ok = _greet().run_local(tmp_path / "a", name="x", store=idx)
    bad = _array(fail=0).run_local(tmp_path / "b", on_error="continue", store=RunIndex(idx))
    want = {"SUCCESS": [ok.run_id], "FAILED": [bad.run_id]}.get(expected, [])
    assert [r["run_id"] for r in RunIndex(idx).list(status=given)] == want
    assert all(r["status"] == expected for r in RunIndex(idx).list(status=given))
    assert _greet().runs(status=given, store=idx) == RunIndex(idx).list(
        workflow="greet", status=given
    )


HUGE = "S" * 1_000_000


@pytest.mark.parametrize(
    "given",
    ["DONE", "", "SUCCESS!", HUGE, 3, 2.5, b"SUCCESS", ["SUCCESS"], object(), "succes\x00s"],
    ids=["word", "empty", "punct", "huge", "int", "float", "bytes", "list", "object", "nul"],
)
def test_a_bad_status_filter_is_refused_naming_the_states(given: Any, tmp_path: Path) -> None:
    t0 = time.monotonic()
    with pytest.raises(RunIndexError, match="status must be one of RUNNING, SUCCESS") as info:
        RunIndex(tmp_path / "i.sqlite").list(status=given)
    assert len(str(info.value)) < 400 and time.monotonic() - t0 < 2


@pytest.mark.parametrize(
    ("call", "error", "fragment"),
    [
        (lambda wf, t: wf.run_local(t / "r", name="x", store=3), ParamError, "store must be"),
        (lambda wf, t: wf.run_local(t / "r", name="x", store=""), ParamError, "store must be"),
        (lambda wf, t: wf.submit(t / "r", name="x", store=object()), ParamError, "store must"),
        (
            lambda wf, t: wf.run_local(t / "r", name="x", store=t / "a", store_path=t / "b"),
            ParamError,
            "not both",
        ),
        (lambda wf, t: wf.cancel_runs("greet-20260101-aaaa"), ParamError, "list of run ids"),
        (lambda wf, t: wf.cancel_runs([1, 2]), ParamError, "list of run ids"),
        (lambda wf, t: wf.cancel_runs(["nope"], t / "i.sqlite"), RunNotFoundError, "Unknown"),
        (lambda wf, t: wf.run_status(3, store=t / "i.sqlite"), RunNotFoundError, "a run id"),
        (
            lambda wf, t: wf.run_local(t / "r", name="x").retry(verify="yes"),
            RunStateError,
            "verify",
        ),
    ],
)
def test_bad_store_and_run_calls(
    call: Callable[[Workflow, Path], Any], error: type[Exception], fragment: str, tmp_path: Path
) -> None:
    with pytest.raises(error) as info:
        call(_greet(), tmp_path)
    assert fragment in str(info.value) and isinstance(info.value, ReflowError)


def test_store_as_index_or_path_and_run_status(tmp_path: Path) -> None:
    idx = RunIndex(tmp_path / "i.sqlite")
    wf = _greet()
    a = wf.run_local(tmp_path / "a", name="x", store=idx)
    b = wf.submit(tmp_path / "b", name="y", store=tmp_path / "i.sqlite")
    b.wait(30)
    info = wf.run_status(a.run_id, idx)
    assert info["run"]["run_id"] == a.run_id and info["summary"] == {"greet": {"SUCCESS": 1}}
    assert wf.run_status(b.run_id, store=str(tmp_path / "i.sqlite"))["run"]["status"] == "SUCCESS"
    assert wf.cancel_runs([a.run_id, b.run_id], idx) == 0, "both ended"
    assert wf.cancel_run(a.run_id, idx) == 0


def test_states_are_str_enums() -> None:
    assert [s.value for s in RunState] == ["RUNNING", "SUCCESS", "FAILED", "CANCELLED"]
    assert [s.value for s in TaskState] == [
        "PENDING", "SUBMITTED", "RUNNING", "SUCCESS", "FAILED", "CANCELLED", "RETRYING",
    ]  # fmt: skip
    assert isinstance(TaskState.SUCCESS, str) and f"{TaskState.FAILED}" == "FAILED"
    assert json.dumps({"s": RunState.SUCCESS}) == '{"s": "SUCCESS"}'


def test_describe_and_describe_typed() -> None:
    wf = Workflow("d")

    @wf.job()
    def a(x: Annotated[str, Param(help="X")], run_dir: RunDir) -> str:
        return x

    d = wf.describe()
    assert d["name"] == "d" and [t["name"] for t in d["tasks"]] == ["a"]
    assert [p["name"] for p in d["cli_params"]] == ["x"], "the run dir is not a parameter"
    typed = wf.describe_typed()
    assert isinstance(typed, WorkflowDescription) and typed.name == "d"
    assert typed.to_dict() == {k: d[k] for k in typed.to_dict()}


@pytest.mark.slow
def test_status_of_a_large_array_is_bounded(tmp_path: Path) -> None:
    wf = Workflow("big")

    @wf.job()
    def gen() -> list[int]:
        return list(range(20_000))

    @wf.array_job(cache=False)
    def work(x: Annotated[int, Result(step="gen")]) -> int:
        if x % 1000 == 7:
            raise ValueError("e" * 5000)
        return x

    run = wf.run_local(tmp_path, on_error="continue")
    t0 = time.monotonic()
    info = run.status(as_dict=True)
    assert info is not None and time.monotonic() - t0 < 10
    assert info["summary"]["work"] == {"SUCCESS": 19_980, "FAILED": 20}
    assert len(info["failed_instances"]) == 20
    assert len(json.dumps(info)) < 40_000_000


def test_run_dir_is_expanded_and_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    wf = _greet()
    assert wf.run_local("~/r", name="x").run_dir == (tmp_path / "home" / "r").resolve()
    assert wf.run_local(tmp_path / "link" / "." / "r", name="x").run_dir == tmp_path / "real" / "r"


@pytest.mark.parametrize(
    ("run_dir", "fragment"),
    [("a\x00b", "cannot be resolved"), ("~no-such-user-x/r", "cannot be resolved"), ("", "path")],
    ids=["nul", "unknown-user", "empty"],
)
def test_a_bad_run_dir_is_refused(run_dir: str, fragment: str, tmp_path: Path) -> None:
    with pytest.raises(ParamError, match=fragment):
        _greet().run_local(run_dir, name="x")
