"""reflow-hpc's Python API on ``reflow.workflow`` (issue #15): the ``Run`` handle (status,
wait, cancel, retry, submit), job parameters as keywords, walltimes, and a table of bad input
per entry point — each a clear :class:`ReflowError` naming the thing and what was expected."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest

from reflow import ReflowError
from reflow.workflow import (
    JobTimeoutError,
    ParamError,
    Result,
    Run,
    RunNotFoundError,
    RunStateError,
    StepNotFoundError,
    Workflow,
    WorkflowDefinitionError,
    WorkflowError,
    WorkflowFailed,
)


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))


def _wf(fail: set[int] | None = None, delay: float = 0.0, name: str = "api") -> Workflow:
    wf = Workflow(name)
    failing = fail if fail is not None else set()

    @wf.job()
    def prepare(source: str = "s", n: int = 5) -> list[int]:
        return list(range(n))

    @wf.job(array=True)
    def work(x: Annotated[int, Result(step="prepare")]) -> int:
        time.sleep(delay)
        if x in failing:
            raise RuntimeError(f"element {x} refused")
        return x * 10

    @wf.job()
    def total(v: Annotated[list[int], Result(step="work")]) -> int:
        return sum(v)

    return wf


# ---------------------------------------------------------------------- bad input tables


def _run_local(wf: Workflow, tmp: Path, **kw: Any) -> Any:
    return wf.run_local(tmp / "r", **kw)


def _run(wf: Workflow, tmp: Path, **kw: Any) -> Any:
    return wf.run(tmp / "r", backend="local", **kw)


def _submit(wf: Workflow, tmp: Path, **kw: Any) -> Any:
    return wf.submit(tmp / "r", **kw).wait(30)


ENTRY = pytest.mark.parametrize(
    "entry", [_run_local, _run, _submit], ids=["run_local", "run", "submit"]
)


@ENTRY
@pytest.mark.parametrize(
    ("kwargs", "error", "fragments"),
    [
        (
            {"sorce": "x"},
            ParamError,
            ["'sorce'", "Did you mean 'source'?", "parameters: n, source"],
        ),
        ({"max_worker": 2}, ParamError, ["'max_worker'", "Did you mean 'max_workers'?"]),
        ({"forcetasks": ["work"]}, ParamError, ["Did you mean 'force_tasks'?"]),
        ({"on_eror": "continue"}, ParamError, ["Did you mean 'on_error'?"]),
        ({"zzzz": 1}, ParamError, ["'zzzz' is neither a run option nor a parameter"]),
        ({"n": "five"}, ParamError, ["parameter 'n' must be int", "'five'"]),
        ({"params": {"n": 1}, "n": 2}, ParamError, ["'n' is given twice"]),
        ({"params": [("n", 1)]}, ParamError, ["params must be a mapping"]),
        ({"force_tasks": "work"}, ParamError, ["force_tasks must be a list of step names"]),
        ({"force_tasks": ["wrok"]}, WorkflowError, ["force names steps that do not exist", "wrok"]),
        ({"max_workers": 0}, WorkflowError, ["max_workers must be an integer >= 1"]),
        ({"on_error": "ignore"}, WorkflowError, ["on_error must be 'stop' or 'continue'"]),
        ({"timeout": -1}, ParamError, ["timeout must be a number of seconds > 0"]),
    ],
)
def test_bad_run_arguments(
    entry: Callable[..., Any],
    kwargs: dict[str, Any],
    error: type[Exception],
    fragments: list[str],
    tmp_path: Path,
) -> None:
    t0 = time.perf_counter()
    with pytest.raises(error) as info:
        entry(_wf(), tmp_path, **kwargs)
    assert isinstance(info.value, ReflowError)
    for f in fragments:
        assert f in str(info.value), (f, str(info.value))
    assert time.perf_counter() - t0 < 5
    assert not (tmp_path / "r").exists(), "nothing started"


@pytest.mark.parametrize(
    ("run_dir", "fragment"),
    [(3, "run_dir must be a directory path"), ("", "run_dir must be a directory path")],
)
def test_bad_run_dir(run_dir: Any, fragment: str) -> None:
    with pytest.raises(ParamError, match=fragment):
        _wf().run_local(run_dir)


@pytest.mark.parametrize("executor", ["pbs", "lsf", "sge", "flux", "", "LOCAL", 3, object()])
def test_an_executor_nothing_provides_is_refused_listing_what_is(
    executor: Any, tmp_path: Path
) -> None:
    with pytest.raises(ParamError) as info:
        _wf().submit(tmp_path / "r", executor=executor)
    text = str(info.value)
    assert "Unknown executor" in text and "local" in text and "ray" in text and "slurm" in text
    assert not (tmp_path / "r").exists()


def test_run_backend_outside_the_list_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError, match="backend must be 'local', 'ray', 'slurm', 'pbs'"):
        _wf().run(tmp_path, backend="torque")
    with pytest.raises(WorkflowError, match="'qsub', which is not on PATH"):
        _wf().run(tmp_path, backend="pbs")  # no PBS here: refused before anything starts


BAD_WALLTIMES = [
    "25:99",
    "abc",
    "-1",
    "-00:10:00",
    "0",
    "00:00:00",
    "1-24",
    "1-2:60",
    "10:60:00",
    "1:2:3:4",
    "",
    " ",
    "1h",
    "2 hours",
    "9" * 40,
    "9" * 5000,
    10**5000,
    "1:00\n--wrap=x",
    "1-",
    0,
    -5,
    1.5,
    True,
    [1],
]


@pytest.mark.parametrize("walltime", BAD_WALLTIMES, ids=[str(i) for i in range(len(BAD_WALLTIMES))])
def test_malformed_walltimes_are_refused_at_decoration(walltime: Any) -> None:
    wf = Workflow("wt")
    t0 = time.perf_counter()
    with pytest.raises(WorkflowDefinitionError) as info:

        @wf.job(time=walltime)
        def step() -> int:
            return 1

    assert isinstance(info.value, ValueError)
    text = str(info.value)
    assert "job 'step': time must be a Slurm time limit" in text and "'H:M:S'" in text
    assert "got " in text and len(text) < 400
    assert time.perf_counter() - t0 < 1
    assert "step" not in wf


@pytest.mark.parametrize(
    ("walltime", "seconds"),
    [
        ("30", 1800),
        (30, 1800),
        ("1:30", 90),
        ("02:00:00", 7200),
        ("48:00:00", 172800),
        ("1-12", 129600),
        ("1-0:30", 88200),
        ("0-00:00:05", 5),
        ("INFINITE", None),
    ],
)
def test_walltimes_slurm_takes_are_accepted(walltime: Any, seconds: float | None) -> None:
    wf = Workflow("wt")

    @wf.job(time=walltime)
    def step() -> int:
        return 1

    assert wf.plan().jobs["step"].time_s == seconds


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        ({"array_limit": 2, "array_parallelism": 3}, ["not both", "array_limit=2"]),
        ({"array_parallelism": 0}, ["array_parallelism must be an integer >= 1"]),
        ({"array_parallelism": "10"}, ["array_parallelism must be an integer >= 1"]),
        ({"array_limit": -1}, ["array_limit must be an integer >= 1"]),
        ({"partition": ""}, ["partition must be a queue name"]),
        ({"partition": 5}, ["partition must be a queue name"]),
        ({"partiton": "gpu"}, ["no option 'partiton'", "Did you mean 'partition'?"]),
        ({"array_paralelism": 3}, ["Did you mean 'array_parallelism'?"]),
        ({"acount": "x"}, ["no option 'acount'", "Did you mean 'account'?"]),
    ],
)
def test_bad_job_options(options: dict[str, Any], fragments: list[str]) -> None:
    wf = Workflow("jo")
    with pytest.raises(WorkflowDefinitionError) as info:

        @wf.job(array=True, **options)
        def step(x: Annotated[int, Result(step="other")]) -> int:
            return x

    for f in fragments:
        assert f in str(info.value), (f, str(info.value))


def test_array_limit_and_array_parallelism_mean_the_same() -> None:
    for key in ("array_limit", "array_parallelism"):
        wf = Workflow("al")

        @wf.job()
        def src() -> list[int]:
            return [1]

        @wf.job(array=True, **{key: 3})
        def each(x: Annotated[int, Result(step="src")]) -> int:
            return x

        assert wf.plan().jobs["each"].array_limit == 3
        assert wf.describe()["tasks"][1]["config"]["array_parallelism"] == 3


def test_result_broadcast_flag_is_checked() -> None:
    with pytest.raises(TypeError, match="broadcast"):
        Result(step="a", broadcast="yes")  # type: ignore[arg-type]
    assert Result(steps=["a", "b"], broadcast=True).concat  # the whole list to every element
    wf = Workflow("bc")

    @wf.job()
    def cfg() -> dict:  # type: ignore[type-arg]
        return {}

    @wf.job()
    def items() -> list[int]:
        return [1]

    @wf.job(array=True)
    def use(
        i: Annotated[int, Result(step="items")],
        c: Annotated[int, Result(step="cfg", broadcast=True)],
    ) -> int:
        return i

    with pytest.raises(WorkflowDefinitionError, match=r"broadcast=True.*does not fit"):
        wf.validate()


# ---------------------------------------------------------------------- time limits


def _tl_items() -> list[int]:
    return [0, 1]


def _tl_slow(x: Annotated[int, Result(step="items")], kind: str) -> int:
    """Element 1 runs past any limit: a busy loop, or a sleep (C code, not interruptible)."""
    if x == 1:
        if kind == "spin":
            while True:
                pass
        time.sleep(30)
    return x


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
@pytest.mark.parametrize("kind", ["spin", "sleep"])
def test_a_call_past_its_time_is_stopped_with_a_clear_error(
    processes: bool, kind: str, tmp_path: Path
) -> None:
    wf = Workflow("tl")
    wf.job(name="items")(_tl_items)
    wf.job(name="slow", array=True, time="0:1")(_tl_slow)
    t0 = time.monotonic()
    run = wf.run_local(tmp_path, on_error="continue", processes=processes, kind=kind)
    took = time.monotonic() - t0
    assert took < 15, took  # 1 s limit; a process start under load is not counted in it
    failure = run.steps["slow"].failures[1]
    assert "JobTimeoutError" in failure
    assert "element 1 of array job 'slow'" in failure and "'0:1' (1 s)" in failure
    assert run["slow"] == [0, None]


def test_a_job_past_its_time_fails_the_run_with_on_error_stop(tmp_path: Path) -> None:
    wf = Workflow("tl2")

    @wf.job(time="0:1")
    def hang() -> int:
        time.sleep(30)
        return 1

    t0 = time.monotonic()
    with pytest.raises(WorkflowFailed) as info:
        wf.run_local(tmp_path)
    assert time.monotonic() - t0 < 10
    assert "job 'hang' ran past its time limit '0:1'" in str(info.value)
    assert issubclass(JobTimeoutError, TimeoutError)


# ---------------------------------------------------------------------- the Run handle


def test_run_local_returns_a_finished_run_that_is_a_report(tmp_path: Path) -> None:
    run = _wf().run_local(tmp_path / "r", n=3)
    assert isinstance(run, Run) and run.done()
    assert re.fullmatch(r"api-\d{8}-[0-9a-f]{4}", run.run_id)
    assert run.run_dir == tmp_path / "r" and run.workflow == "api"
    assert run.ok and run["total"] == 30 and run.steps["work"].status == "done"
    assert run.wait() is run
    assert "work" in run.table() and run.failures == []


def test_run_dir_defaults_to_a_fresh_dir_under_the_cache_dir(tmp_path: Path) -> None:
    a = _wf().run_local(n=1)
    b = _wf().run_local(n=1)
    assert a.run_dir == tmp_path / "cache" / "workflow-runs" / a.run_id
    assert a.run_dir != b.run_dir and a.run_dir.is_dir()


def test_status_table_and_dict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wf = _wf(fail={2})
    run = wf.run_local(tmp_path, on_error="continue")
    assert run.status() is None
    out = capsys.readouterr().out
    assert run.run_id in out and "failed" in out and "[2]  RuntimeError: element 2 refused" in out
    assert "Traceback" not in out
    run.status(errors=True)
    assert "Traceback" in capsys.readouterr().out
    snap = run.status(as_dict=True)
    assert snap is not None and json.loads(json.dumps(snap)) == snap
    assert set(snap) >= {
        "run_id", "workflow", "run_dir", "params", "backend", "status",
        "created", "updated", "steps", "failed_indices",
        "run", "summary", "instances", "failed_instances",
    }  # fmt: skip
    assert snap["params"] == {"source": "s", "n": 5} and snap["backend"] == "local"
    assert snap["failed_indices"] == {"work": [2]}
    assert snap["steps"]["work"] == {
        **snap["steps"]["work"],
        "state": "FAILED",
        "total": 5,
        "done": 4,
        "failed": 1,
        "skipped": 0,
        "cached": 0,
        "partition": None,
    }
    assert snap["steps"]["work"]["errors"] == [
        {"index": 2, "error": "RuntimeError: element 2 refused"}
    ]
    full = run.status(as_dict=True, errors=True)
    assert "Traceback" in full["steps"]["work"]["errors"][0]["error"]
    one = run.status(as_dict=True, task="work")
    assert list(one["steps"]) == ["work"]
    with pytest.raises(StepNotFoundError, match="Did you mean 'work'"):
        run.status(task="wrok")


def test_retry_reruns_only_what_failed(tmp_path: Path) -> None:
    calls: list[int] = []
    failing = {1, 3}
    wf = Workflow("retry")

    @wf.job()
    def prepare() -> list[int]:
        calls.append(-1)
        return list(range(5))

    @wf.job(array=True)
    def work(x: Annotated[int, Result(step="prepare")]) -> int:
        calls.append(x)
        if x in failing:
            raise RuntimeError("no")
        return x

    @wf.job()
    def total(v: Annotated[list[int], Result(step="work")]) -> int:
        return sum(v)

    run = wf.run_local(tmp_path, on_error="continue")
    assert sorted(calls) == [-1, 0, 1, 2, 3, 4] and not run.ok
    first_id = run.run_id
    calls.clear()
    failing.clear()
    assert run.retry() == 2  # the two failed elements (reflow-hpc's count)
    assert sorted(calls) == [1, 3], "only the failed elements ran again"
    assert run.run_id == first_id and run.run_dir == tmp_path
    assert run.ok and run["total"] == 10
    assert run.status(as_dict=True)["status"] == "SUCCESS"
    calls.clear()
    assert run.retry() == 0 and calls == [], "a run that succeeded has nothing to retry"


def test_retry_of_one_task_leaves_the_other_failures(tmp_path: Path) -> None:
    calls: list[str] = []
    broken = {"a", "b"}
    wf = Workflow("retry2")

    @wf.job()
    def a() -> int:
        calls.append("a")
        if "a" in broken:
            raise RuntimeError("a broke")
        return 1

    @wf.job()
    def b() -> int:
        calls.append("b")
        if "b" in broken:
            raise RuntimeError("b broke")
        return 2

    run = wf.run_local(tmp_path, on_error="continue")
    calls.clear()
    broken.clear()
    run.retry(task="b")
    assert calls == ["b"]
    snap = run.status(as_dict=True)
    assert snap["steps"]["b"]["state"] == "SUCCESS" and snap["steps"]["a"]["state"] == "FAILED"
    assert "a broke" in snap["steps"]["a"]["errors"][0]["error"]
    calls.clear()
    assert run.retry(task="b") == 0 and calls == []
    with pytest.raises(StepNotFoundError, match="Did you mean 'a'"):
        run.retry(task="aa")
    run.retry(task="a")
    assert run.ok


def test_submit_returns_at_once_and_wait_gives_the_run(tmp_path: Path) -> None:
    wf = _wf(delay=0.2)
    t0 = time.monotonic()
    run = wf.submit(tmp_path, n=6, max_workers=2)
    assert time.monotonic() - t0 < 2
    assert not run.done()
    assert run.status(as_dict=True)["status"] == "RUNNING"
    with pytest.raises(RunStateError, match="still running"):
        run["total"]
    assert run.retry() == 0  # nothing failed yet: nothing to mark, as reflow-hpc answers
    with pytest.raises(RunStateError, match="still running after"):
        run.wait(0.01)
    assert run.wait(30) is run and run.done()
    assert run["total"] == 150 and run.status(as_dict=True)["status"] == "SUCCESS"


def test_a_failed_submit_raises_on_wait_as_run_local_does(tmp_path: Path) -> None:
    run = _wf(fail={0}).submit(tmp_path)
    with pytest.raises(WorkflowFailed, match="element 0 refused"):
        run.wait(30)
    assert run.status(as_dict=True)["status"] == "FAILED"
    assert run.status(as_dict=True)["failed_indices"] == {"work": [0]}


def test_cancel_stops_a_run_and_cancel_of_a_finished_run_does_nothing(tmp_path: Path) -> None:
    wf = _wf(delay=0.2)
    run = wf.submit(tmp_path, n=40, max_workers=2)
    deadline = time.monotonic() + 30
    while run.status(as_dict=True)["steps"]["work"]["done"] < 1:  # some elements finished
        assert time.monotonic() < deadline
        time.sleep(0.02)
    t0 = time.monotonic()
    assert 0 < run.cancel() <= 41, "the instances still to finish (reflow-hpc's count)"
    run.wait(10)
    assert time.monotonic() - t0 < 3, "running calls finish, nothing more starts"
    snap = run.status(as_dict=True)
    assert snap["status"] == "CANCELLED"
    assert snap["steps"]["work"]["state"] == "CANCELLED"
    assert 0 < snap["steps"]["work"]["done"] < 40
    assert snap["steps"]["total"]["state"] == "CANCELLED"
    assert run.cancel() == 0, "an ended run has nothing to cancel (reflow-hpc returns 0)"
    # a cancelled run's elements run again (in the background, as submitted); what finished
    # is reused
    assert run.retry() > 0
    assert run.wait(30) is run
    assert run.ok and run["total"] == sum(x * 10 for x in range(40))


def test_cancel_of_one_task(tmp_path: Path) -> None:
    wf = Workflow("ct")
    gate = threading.Event()

    @wf.job()
    def items() -> list[int]:
        return list(range(30))

    @wf.job(array=True)
    def slow(x: Annotated[int, Result(step="items")]) -> int:
        gate.wait(5)
        time.sleep(0.05)
        return x

    @wf.job()
    def other() -> str:
        return "ok"

    run = wf.submit(tmp_path, max_workers=1, on_error="continue")
    run.cancel(task="slow")
    gate.set()
    run.wait(20)
    snap = run.status(as_dict=True)
    assert (
        snap["steps"]["slow"]["state"] == "CANCELLED"
        and snap["steps"]["other"]["state"] == "SUCCESS"
    )
    with pytest.raises(StepNotFoundError):
        run.cancel(task="nope")


@pytest.mark.parametrize("run_id", ["nope", "api-20260101-zzzz", "", "x" * 10_000])
def test_attach_to_an_unknown_run_id(run_id: str, tmp_path: Path) -> None:
    wf = _wf()
    known = wf.run_local(tmp_path / "r", n=1, store_path=tmp_path / "i.sqlite")
    with pytest.raises(RunNotFoundError) as info:
        Run.attach(wf, run_id, store_path=tmp_path / "i.sqlite")
    assert isinstance(info.value, KeyError) and isinstance(info.value, WorkflowError)
    assert str(info.value).startswith("Unknown run_id ")
    assert len(str(info.value)) < 400
    close = Run.attach
    del close
    with pytest.raises(RunNotFoundError, match=f"did you mean '{known.run_id}'"):
        Run.attach(wf, known.run_id[:-1] + "_", store_path=tmp_path / "i.sqlite")


@pytest.fixture
def two_runs(tmp_path: Path) -> Iterator[tuple[Workflow, Path]]:
    yield _wf(), tmp_path / "idx.sqlite"


def test_runs_and_cancel_runs(two_runs: tuple[Workflow, Path], tmp_path: Path) -> None:
    wf, idx = two_runs
    a = wf.run_local(tmp_path / "a", n=1, store_path=idx)
    slow = _wf(delay=0.3).submit(tmp_path / "b", n=20, max_workers=1, store_path=idx)
    assert [r["run_id"] for r in wf.runs(store_path=idx)][:2] == [slow.run_id, a.run_id]
    n = wf.cancel_runs([a.run_id, slow.run_id], store_path=idx)  # the ended one counts 0
    assert isinstance(n, int) and n > 0
    slow.wait(10)
    assert slow.status(as_dict=True)["status"] == "CANCELLED"
    assert wf.runs(status="succeeded", store_path=idx)[0]["run_id"] == a.run_id


def test_partition_is_recorded_and_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wf = Workflow("part")

    @wf.job(partition="gpu")
    def train() -> int:
        return 1

    run = wf.run_local(tmp_path)  # locally the partition changes nothing
    assert run["train"] == 1
    assert run.status(as_dict=True)["steps"]["train"]["partition"] == "gpu"
    run.status()
    assert "partition=gpu" in capsys.readouterr().out
    assert wf.plan().jobs["train"].partition == "gpu"  # what the Slurm backend reads
    assert "partition gpu" in str(wf.describe())


HUGE = "x" * 1_000_000


@pytest.mark.parametrize(
    ("call", "error", "fragment"),
    [
        (lambda wf, t: wf.run_local(t, **{HUGE: 1}), ParamError, "is neither a run option"),
        (lambda wf, t: wf.run_local(t, params={HUGE: 1}), ParamError, "unknown parameter"),
        (lambda wf, t: wf.run_local(t, params={1: 2}), ParamError, "parameter names are strings"),
        (lambda wf, t: wf.run_local(t, force=5), ParamError, "force must be True, False"),
        (lambda wf, t: wf.run_local(t, force=[HUGE]), ParamError, "do not exist"),
        (lambda wf, t: wf.run_local(t, force=["wrok"]), ParamError, "Did you mean 'work'?"),
        (lambda wf, t: wf.run_local(t, force_tasks=[3]), ParamError, "force_tasks must be"),
        (lambda wf, t: wf.run_local(t).status(task=HUGE), StepNotFoundError, "has no step"),
        (lambda wf, t: wf.run_local(t).wait(timeout="soon"), RunStateError, "timeout must be"),
        (lambda wf, t: wf.cancel_runs("api-20261207-abcd"), ParamError, "list of run ids"),
        (lambda wf, t: wf.run_local(t, store_path="/tmp/a\0b"), ReflowError, "run index"),
        (lambda wf, t: wf.run_local(t, store_path=3), ReflowError, "must be a file path"),
        (lambda wf, t: Result(steps=5), TypeError, "must be a list of step names"),  # type: ignore[arg-type]
        (lambda wf, t: Result(step=HUGE * 0 or 7), TypeError, "must be a step name"),  # type: ignore[arg-type]
    ],
)
def test_hostile_inputs_are_bounded_errors(
    call: Any, error: type[Exception], fragment: str, tmp_path: Path
) -> None:
    t0 = time.perf_counter()
    with pytest.raises(error) as info:
        call(_wf(), tmp_path / "r")
    assert isinstance(info.value, ReflowError)
    assert fragment in str(info.value), str(info.value)[:300]
    assert len(str(info.value)) < 2000
    assert time.perf_counter() - t0 < 5


def test_workflow_failed_carries_the_run_to_retry(tmp_path: Path) -> None:
    failing = {1}
    wf = Workflow("wfr")

    @wf.job()
    def items() -> list[int]:
        return [0, 1, 2]

    @wf.job(array=True)
    def work(x: Annotated[int, Result(step="items")]) -> int:
        if x in failing:
            raise RuntimeError("one")
        return x

    with pytest.raises(WorkflowFailed) as info:
        wf.run_local(tmp_path)
    run = info.value.report
    assert isinstance(run, Run) and run.steps["work"].failures
    failing.clear()
    assert run.retry() == 1 and run.ok and run["work"] == [0, 1, 2]
