"""reflow-hpc's executor objects (``workflow/_executors.py``) and ``SqliteStore``
(``workflow/_store.py``): each executor on its backend (Slurm rows on the real single-node
Slurm of ``slurmcluster``), wrong-typed options, and the store read back."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from slurmcluster import SlurmCluster, slurm_fixture

from reflow import ReflowError
from reflow.workflow import (
    Executor,
    JobResources,
    LocalExecutor,
    ParamError,
    Result,
    RunIndex,
    RunIndexError,
    RunNotFoundError,
    SlurmExecutor,
    SqliteStore,
    TaskState,
    UnknownExecutorError,
    Workflow,
    WorkflowError,
)
from reflow.workflow._executors import parse_slurm_address, slurm_address


def _fan() -> Workflow:
    wf = Workflow("fan")

    @wf.job
    def items(n: int = 4) -> list[int]:
        return list(range(n))

    @wf.job(array=True)
    def square(x: Annotated[int, Result(step="items")]) -> int:
        return x * x

    @wf.job
    def total(xs: Annotated[list[int], Result(step="square")]) -> int:
        return sum(xs)

    return wf


class SiteScheduler(Executor):
    """A user's own scheduler (it runs workflows now: tests/workflow/test_batch_executor.py)."""

    def submit(self, resources: JobResources, command: list[str]) -> str:
        return "1"

    def cancel(self, job_id: str) -> None:
        pass

    def job_state(self, job_id: str) -> str | None:
        return None


# ---------------------------------------------------------------- wrong-typed options

BAD_OPTIONS = [
    (lambda: SlurmExecutor(partition=5), ParamError, "partition must be a Slurm partition"),
    (lambda: SlurmExecutor(partition="a?b"), ParamError, "partition must be a Slurm partition"),
    (lambda: SlurmExecutor(partition=""), ParamError, "partition"),
    (lambda: SlurmExecutor(account=""), ParamError, "account must be a non-empty string"),
    (lambda: SlurmExecutor(account=7), ParamError, "account must be"),
    (lambda: SlurmExecutor(qos=["a"]), ParamError, "qos must be"),
    (lambda: SlurmExecutor(mode="fast"), ParamError, "mode must be 'sbatch' or 'dry-run'"),
    (lambda: SlurmExecutor(sbatch=None), ParamError, "sbatch must be"),
    (lambda: SlurmExecutor(python=3), ParamError, "python must be"),
    (lambda: SlurmExecutor(submit_options="qos=x"), ParamError, "submit_options must be a dict"),
    (lambda: SlurmExecutor(submit_options={"Bad Key": 1}), ParamError, "not an sbatch option"),
    (lambda: SlurmExecutor(submit_options={1: 1}), ParamError, "not an sbatch option"),
    (lambda: SlurmExecutor(submit_options={"mem": "1G"}), ParamError, "set by reflow"),
    (lambda: SlurmExecutor(submit_options={"cpus_per_task": 2}), ParamError, "set by reflow"),
    (lambda: SlurmExecutor(submit_options={"qos": [1]}), ParamError, "must be a string"),
    (lambda: SlurmExecutor(submit_options={"qos": "a\nb"}), ParamError, "must be a string"),
    (lambda: SlurmExecutor(submit_options={"x" * 100: 1}), ParamError, "not an sbatch option"),
    (lambda: LocalExecutor(capture_output="yes"), ParamError, "capture_output must be"),
    (lambda: JobResources(cpus=0), ParamError, "cpus must be an integer >= 1"),
    (lambda: JobResources(cpus=True), ParamError, "cpus must be"),
    (lambda: JobResources(job_name=1), ParamError, "job_name must be a string"),
    (lambda: JobResources(time_limit=""), ParamError, "time_limit must be"),
    (lambda: JobResources(mem=4), ParamError, "mem must be"),
    (lambda: JobResources(output_path=3), ParamError, "output_path must be a path"),
    (lambda: JobResources(submit_options=[1]), ParamError, "submit_options must be a dict"),
    (lambda: SiteScheduler(python=b"py"), ParamError, "python must be"),
]


@pytest.mark.parametrize(("make", "cls", "fragment"), BAD_OPTIONS)
def test_bad_options(make: Any, cls: type[Exception], fragment: str) -> None:
    with pytest.raises(cls, match=re.escape(fragment)) as info:
        make()
    assert isinstance(info.value, ReflowError)


def _submit(executor: object, **kw: Any) -> Any:
    return _fan().submit(executor=executor, **kw)


def _run(backend: object, **kw: Any) -> Any:
    return _fan().run(backend=backend, **kw)


REFUSED = [
    (lambda p: _submit("pbs", run_dir=p), UnknownExecutorError, "Unknown executor 'pbs'"),
    (
        lambda p: _submit(5, run_dir=p),
        UnknownExecutorError,
        "executor must be 'local', 'ray', 'slurm'",
    ),
    (lambda p: _submit(LocalExecutor, run_dir=p), UnknownExecutorError, "not the class"),
    (lambda p: _run(object(), run_dir=p), UnknownExecutorError, "or an Executor object"),
    (
        lambda p: _submit(SlurmExecutor(), run_dir=p, address="debug"),
        ParamError,
        "address= is for a backend named by a string",
    ),
    (
        lambda p: _fan().run(p, backend="ray", executor=LocalExecutor()),
        ParamError,
        "give backend= or executor=, not both",
    ),
]


@pytest.mark.parametrize(("call", "cls", "fragment"), REFUSED)
def test_refused_executors(tmp_path: Path, call: Any, cls: type[Exception], fragment: str) -> None:
    with pytest.raises(cls, match=re.escape(fragment)) as info:
        call(tmp_path / "run")
    assert isinstance(info.value, ReflowError)
    assert not (tmp_path / "run").exists()  # refused before anything ran


# ---------------------------------------------------------------- LocalExecutor on "local"

LOCAL_WAYS = [
    lambda wf, p: wf.submit(p, executor=LocalExecutor()).wait(),
    lambda wf, p: wf.run(p, backend=LocalExecutor()),
    lambda wf, p: wf.run(p, executor=LocalExecutor()),
]


@pytest.mark.parametrize("way", LOCAL_WAYS)
def test_local_executor_runs_as_local(tmp_path: Path, way: Any) -> None:
    wf = _fan()
    run = way(wf, tmp_path / "run")
    assert run["square"] == [0, 1, 4, 9]
    assert run["total"] == 14
    assert wf.run_local(tmp_path / "ref")["total"] == run["total"]


LOCAL_JOBS = [
    ([sys.executable, "-c", "pass"], "COMPLETED"),
    ([sys.executable, "-c", "raise SystemExit(3)"], "FAILED"),
    (["/nonexistent/command"], "FAILED"),
]


@pytest.mark.parametrize(("command", "state"), LOCAL_JOBS)
def test_local_executor_submit(command: list[str], state: str) -> None:
    ex = LocalExecutor(capture_output=True)
    job = ex.submit(JobResources(job_name="j"), command)
    assert ex.job_state(job) == state
    ex.cancel(job)  # it ended: nothing to do
    assert ex.job_state("local-unknown") is None


BAD_SUBMITS = [
    (lambda ex: ex.submit(JobResources(), "echo hi"), "command must be a non-empty list"),
    (lambda ex: ex.submit(JobResources(), []), "command must be a non-empty list"),
    (lambda ex: ex.submit(JobResources(), [b"x"]), "command must be a non-empty list"),
    (lambda ex: ex.submit({"cpus": 1}, ["true"]), "resources must be a JobResources"),
]


@pytest.mark.parametrize(("call", "fragment"), BAD_SUBMITS)
@pytest.mark.parametrize("make", [LocalExecutor, lambda: SlurmExecutor(mode="dry-run")])
def test_bad_submit(make: Any, call: Any, fragment: str) -> None:
    with pytest.raises(ParamError, match=re.escape(fragment)):
        call(make())


# ---------------------------------------------------------------- SlurmExecutor's command lines

SBATCH_LINES = [
    (
        SlurmExecutor(),
        JobResources(job_name="a", cpus=2, time_limit="5", mem="1G"),
        ["--job-name=a", "--cpus-per-task=2", "--time=5", "--mem=1G"],
    ),
    (SlurmExecutor(partition="debug"), JobResources(), ["--partition=debug"]),
    (
        SlurmExecutor(account="proj", qos="high", submit_options={"mail_type": "END"}),
        JobResources(array="0-3%2"),
        ["--array=0-3%2", "--account=proj", "--qos=high", "--mail-type=END"],
    ),
    (
        SlurmExecutor(partition="debug"),
        JobResources(submit_options={"queue": "short", "exclusive": True, "python": "x"}),
        ["--partition=short", "--exclusive"],
    ),
]


@pytest.mark.parametrize(("ex", "res", "flags"), SBATCH_LINES)
def test_sbatch_argv(ex: SlurmExecutor, res: JobResources, flags: list[str]) -> None:
    argv = ex.sbatch_argv(res, ["echo", "a b"])
    assert argv[:2] == ["sbatch", "--parsable"]
    assert argv[-2:] == ["--wrap", "echo 'a b'"]
    for flag in flags:
        assert flag in argv
    assert sum(a.startswith("--partition") for a in argv) <= 1
    assert "--python" not in " ".join(argv)
    assert SlurmExecutor(mode="dry-run").submit(res, ["true"]) == "DRYRUN"


ADDRESSES = [
    (None, {}, None, []),
    ("debug", {}, "debug", []),
    ("debug", {"account": "p 1"}, "debug", ["--account=p 1"]),
    (None, {"qos": "high", "exclusive": True}, None, ["--qos=high", "--exclusive"]),
    ("a,b", {"mail-type": "END,FAIL"}, "a,b", ["--mail-type=END,FAIL"]),
]


@pytest.mark.parametrize(("part", "opts", "want_part", "want_args"), ADDRESSES)
def test_slurm_address_round_trip(
    part: str | None, opts: dict[str, Any], want_part: str | None, want_args: list[str]
) -> None:
    assert parse_slurm_address(slurm_address(part, opts)) == (want_part, want_args)


BAD_ADDRESSES = [
    ("debug?account", "malformed"),
    ("debug?mem=1G", "set by reflow"),
    ("debug?Bad=1", "not an sbatch option"),
    ("debug?account=a&account", "malformed"),
    ("debug?a=b\nc", "must be a string"),
]


@pytest.mark.parametrize(("address", "fragment"), BAD_ADDRESSES)
def test_bad_slurm_address(address: str, fragment: str) -> None:
    with pytest.raises(WorkflowError, match=re.escape(fragment)):
        parse_slurm_address(address)


# ---------------------------------------------------------------- SlurmExecutor on real Slurm


@pytest.fixture(scope="module")
def slurm() -> Iterator[SlurmCluster]:
    yield from slurm_fixture()


def _state(ex: SlurmExecutor, job: str, want: set[str], seconds: float = 60) -> str | None:
    end = time.monotonic() + seconds
    state = None
    while time.monotonic() < end:
        state = ex.job_state(job)
        if state in want:
            return state
        time.sleep(0.25)
    return state


SLURM_RUNS = [
    (lambda wf, p: wf.run(p, backend=SlurmExecutor()), {}),
    (lambda wf, p: wf.submit(p, executor=SlurmExecutor(partition="debug")).wait(), {}),
    (
        lambda wf, p: wf.run(p, executor=SlurmExecutor(partition="debug", account="proj1")),
        {"Account": "proj1", "Partition": "debug"},
    ),
    (
        lambda wf, p: wf.run(
            p, backend=SlurmExecutor(qos="normal", submit_options={"comment": "seed"})
        ),
        {"Comment": "seed"},
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("way", "shown"), SLURM_RUNS)
def test_slurm_executor_runs_on_slurm(
    slurm: SlurmCluster, tmp_path: Path, way: Any, shown: dict[str, str]
) -> None:
    wf = _fan()
    run_dir = tmp_path / f"ex{len(shown)}"
    run = way(wf, run_dir)
    assert run["square"] == [0, 1, 4, 9] and run["total"] == 14
    p = slurm.run("squeue", "--states=all", "-h", "-n", f"{run_dir.name}.square", "-o", "%F")
    ids = sorted(set(p.stdout.split()))
    assert ids, "the array job was not a Slurm job"
    job = dict(
        re.findall(r"(\S+?)=(\S*)", slurm.run("scontrol", "show", "job", "-o", ids[0]).stdout)
    )
    for key, value in shown.items():
        assert job.get(key) == value, (key, job.get(key))


@pytest.mark.slow
def test_slurm_executor_submit_cancel_state(slurm: SlurmCluster, tmp_path: Path) -> None:
    ex = SlurmExecutor(partition="debug")
    done = ex.submit(
        JobResources(job_name="ok", time_limit="1", mem="64M", output_path=tmp_path / "o"),
        [sys.executable, "-c", "print('hi')"],
    )
    assert done.isdigit()
    assert _state(ex, done, {"COMPLETED"}) == "COMPLETED"
    assert (tmp_path / "o").read_text().strip() == "hi"
    slow = ex.submit(JobResources(job_name="slow", time_limit="1", mem="64M"), ["sleep", "60"])
    ex.cancel(slow)
    assert _state(ex, slow, {"CANCELLED"}) == "CANCELLED"
    bad = SlurmExecutor(partition="nosuch")
    with pytest.raises(WorkflowError, match="sbatch did not take the job"):
        bad.submit(JobResources(mem="64M"), ["true"])
    with pytest.raises(WorkflowError, match="no partition"):
        _fan().run(tmp_path / "r", backend=SlurmExecutor(partition="nosuch"))


# ---------------------------------------------------------------- SqliteStore


def test_store_is_the_run_index(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runs.db")
    wf = _fan()
    run = wf.run_local(tmp_path / "r", store=store)
    assert isinstance(store, RunIndex)
    assert [r["run_id"] for r in store.list_runs(graph_name="fan")] == [run.run_id]
    assert RunIndex(tmp_path / "runs.db").get(run.run_id)["status"] == "SUCCESS"
    got = store.get_run(run.run_id)
    assert got is not None and got["status"] == "SUCCESS" and got["parameters"] == {"n": 4}
    assert store.task_state_summary(run.run_id)["square"] == {"SUCCESS": 4}
    assert store.get_array_outputs(run.run_id, "square") == [0, 1, 4, 9]
    assert store.get_singleton_output(run.run_id, "total") == 14
    assert store.dependency_is_satisfied(run.run_id, "total")
    assert wf.run_status(run.run_id, store)["run"]["status"] == "SUCCESS"
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".db"] == ["runs.db"]


def test_store_instances(tmp_path: Path) -> None:
    store = SqliteStore.for_run_dir(tmp_path)
    store.init()
    store.insert_run("r1", "g", "alice", {"x": 1})
    a = store.insert_task_instance("r1", "t", 0, TaskState.PENDING, {"a": 1})
    b = store.insert_task_instance("r1", "t", 1, "pending", {})
    store.update_task_submitted("r1", "t", "4242")
    assert {i["job_id"] for i in store.list_task_instances("r1", "t")} == {"4242"}
    store.update_task_running(a)
    store.update_task_success(a, ["out.nc"], "h1")
    store.update_task_failed(b, "boom")
    store.mark_for_retry(b)
    assert store.get_task_instance("r1", "t", 1)["state"] == "RETRYING"
    assert store.get_array_outputs("r1", "t") == [["out.nc"]]
    assert store.get_output_hash("r1", "t", 0) == "h1"
    assert store.task_state_summary("r1") == {"t": {"SUCCESS": 1, "RETRYING": 1}}
    assert store.list_runs(user_id="alice")[0]["parameters"] == {"x": 1}
    assert store.list_runs(user_id="bob") == []
    assert (tmp_path / "manifest.db").is_file()
    # the workflow's own calls read the instances written through the store
    wf = Workflow("g")

    @wf.job(array=True)
    def t(x: int = 1) -> int:
        return x

    info = wf.run_status("r1", store)
    assert info["summary"] == {"t": {"SUCCESS": 1, "RETRYING": 1}}
    store.update_task_failed(b, "boom again")
    failed = wf.run_status("r1", store)["failed_instances"]
    assert [(i["array_index"], i["error_text"]) for i in failed] == [(1, "boom again")]


BAD_STORE = [
    (lambda s: SqliteStore(5), RunIndexError, "takes the path of its SQLite file"),
    (lambda s: SqliteStore(""), RunIndexError, "takes the path"),
    (lambda s: s.insert_run("r1", "g"), RunIndexError, "already recorded"),
    (lambda s: s.insert_run("", "g"), ParamError, "run_id must be a non-empty string"),
    (lambda s: s.insert_run("r2", "g", 5), ParamError, "user_id must be a string"),
    (lambda s: s.insert_run("r2", "g", "", [1]), ParamError, "parameters must be a dict"),
    (lambda s: s.insert_run("r2", "g", "", {"a": object()}), ParamError, "JSON-safe"),
    (lambda s: s.get_run_parameters("nope"), RunNotFoundError, "Unknown run_id"),
    (lambda s: s.update_run_status("r1", "DONE"), ParamError, "must be one of"),
    (lambda s: s.insert_task_instance("nope", "t", None, "PENDING"), RunNotFoundError, "nope"),
    (lambda s: s.insert_task_instance("r1", "t", -1, "PENDING"), ParamError, "array_index"),
    (lambda s: s.insert_task_instance("r1", "t", None, "WEIRD"), ParamError, "task state"),
    (lambda s: s.update_task_running(999), RunIndexError, "no task instance 999"),
    (lambda s: s.update_task_running("1"), ParamError, "instance_id must be an integer"),
    (lambda s: s.update_task_success(1, {1j}), ParamError, "output must be JSON-safe"),
    (lambda s: s.list_runs(user_id=3), ParamError, "user_id must be a string"),
    (lambda s: s.list_runs(limit=-1), RunIndexError, "limit must be an integer"),
    (lambda s: s.list_runs(since="yesterday"), RunIndexError, "since must be"),
]


@pytest.mark.parametrize(("call", "cls", "fragment"), BAD_STORE)
def test_store_bad_input(tmp_path: Path, call: Any, cls: type[Exception], fragment: str) -> None:
    store = SqliteStore(tmp_path / "s.db")
    store.insert_run("r1", "g")
    store.insert_task_instance("r1", "t", None, "PENDING")
    with pytest.raises(cls, match=re.escape(fragment)) as info:
        call(store)
    assert isinstance(info.value, ReflowError)


def test_store_given_to_workflow_calls(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    wf = _fan()
    run = wf.submit(tmp_path / "r", executor=LocalExecutor(), store=store)
    run.wait()
    assert wf.runs(store=store)[0]["run_id"] == run.run_id
    assert wf.attach(run.run_id, store=store).status(as_dict=True)["status"] == "SUCCESS"
    with pytest.raises(ParamError, match="store must be a RunIndex"):
        wf.run_local(tmp_path / "x", store=3)


@pytest.mark.parametrize(
    "content", [b"not a database at all" * 50, b"SQLite format 3\x00" + b"\xff" * 4000]
)
def test_store_on_a_file_that_is_not_one(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(content)
    store = SqliteStore(path)
    for call in (store.init, lambda: store.list_runs(), lambda: store.insert_run("r", "g")):
        with pytest.raises(RunIndexError, match=r"cannot be used|cannot open"):
            call()
