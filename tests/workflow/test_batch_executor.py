"""A user's own :class:`Executor` runs a workflow (``_batch``): a subclass written as a user
would, launching each job as a real subprocess (``Popen`` of the command, its state from
``poll()``). Results come back; a failing element, a job that dies without a result, a
job past its ``time``, ``cancel()``, ``on_error="stop"`` and a run ``timeout`` are each
reported with the job id, its state and its stderr; a broken executor is a clear error.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import pytest

from reflow.workflow import (
    Executor,
    JobResources,
    Result,
    UnknownExecutorError,
    Workflow,
    WorkflowError,
    WorkflowFailed,
    _batch,
)


class PopenExecutor(Executor):
    """What a user writes: every job a subprocess of this process."""

    def __init__(self) -> None:
        super().__init__()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.cancelled: list[str] = []
        self.resources: list[JobResources] = []
        self._n = 0

    def submit(self, resources: JobResources, command: list[str]) -> str:
        self._n += 1
        self.resources.append(resources)
        job_id = f"popen-{self._n}"
        self.procs[job_id] = subprocess.Popen(command, start_new_session=True)
        return job_id

    def cancel(self, job_id: str) -> None:
        proc = self.procs[job_id]
        if proc.poll() is None:
            self.cancelled.append(job_id)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def job_state(self, job_id: str) -> str | None:
        proc = self.procs.get(job_id)
        if proc is None:
            return None
        code = proc.poll()
        if code is None:
            return "RUNNING"
        return "COMPLETED" if code == 0 else ("CANCELLED" if code < 0 else "FAILED")

    def alive(self, within: float = 0.0) -> list[str]:
        """The jobs still running after ``within`` seconds (a job whose result is written may
        take a moment to exit)."""
        deadline = time.monotonic() + within
        while True:
            left = [j for j, p in self.procs.items() if p.poll() is None]
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.05)


def _flow(kind: str) -> Workflow:
    wf = Workflow(f"batch-{kind}")

    @wf.job
    def items() -> list[int]:
        return [1, 2, 3, 4]

    @wf.job(array=True, time="00:00:02" if kind == "slow" else None)
    def square(x: Annotated[int, Result(step="items")]) -> int:
        if kind == "raises" and x == 3:
            raise RuntimeError(f"element {x} is bad")
        if kind == "dies" and x == 3:
            print("dying loudly", file=sys.stderr, flush=True)
            os._exit(7)
        if kind == "exit0" and x == 3:
            os._exit(0)
        if kind in ("slow", "sleep"):
            time.sleep(60)
        return x * x

    @wf.job
    def total(xs: Annotated[list[int], Result(step="square")]) -> int:
        return sum(xs)

    return wf


def test_results_come_back(tmp_path: Path) -> None:
    ex = PopenExecutor()
    run = _flow("ok").run(tmp_path / "r", backend=ex)
    assert run["total"] == 1 + 4 + 9 + 16
    assert len(ex.procs) >= 3 and not ex.alive(10)
    res = ex.resources[0]
    assert res.job_name.endswith(".items") and res.cpus == 1
    assert res.error_path is not None and res.error_path.name == "0.err"
    assert not (tmp_path / "r" / ".reflow-batch").exists()  # succeeded: removed


def test_submit_in_background(tmp_path: Path) -> None:
    ex = PopenExecutor()
    run = _flow("ok").submit(tmp_path / "r", executor=ex)
    run.wait(timeout=120)
    assert run["total"] == 30


@pytest.mark.parametrize(
    ("kind", "fragments"),
    [
        ("raises", ["RuntimeError: element 3 is bad", "PopenExecutor job popen-"]),
        ("dies", ["ended FAILED", "dying loudly", "PopenExecutor job popen-"]),
        ("exit0", ["ended COMPLETED without writing its result", "its stderr is empty"]),
        ("slow", ["JobTimeoutError", "ran past its time limit '00:00:02'"]),
    ],
)
def test_failures_name_job_state_and_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, fragments: list[str]
) -> None:
    monkeypatch.setattr(_batch, "LAG_S", 0.5)
    ex = PopenExecutor()
    t0 = time.monotonic()
    run = _flow(kind).run(tmp_path / "r", backend=ex, on_error="continue")
    assert time.monotonic() - t0 < 30  # bounded: a 2 s limit stops the element within ~s
    rep = run.steps["square"]
    text = rep.failures[2]
    for fragment in fragments:
        assert fragment in text, text
    assert rep.done == (0 if kind == "slow" else 3)
    assert not ex.alive(10)


def test_cancel_kills_the_jobs(tmp_path: Path) -> None:
    ex = PopenExecutor()
    run = _flow("sleep").submit(tmp_path / "r", executor=ex)
    deadline = time.monotonic() + 60
    while len(ex.procs) < 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    assert len(ex.alive()) >= 4  # the four elements (``items`` may still be exiting)
    t0 = time.monotonic()
    run.cancel()
    run.wait(timeout=60)
    assert sorted(run.steps["square"].skipped) == [0, 1, 2, 3]
    assert time.monotonic() - t0 < 15
    assert not ex.alive(10) and len(ex.cancelled) == 4


def test_stop_cancels_the_others(tmp_path: Path) -> None:
    wf = Workflow("batch-stop")

    @wf.job
    def items() -> list[int]:
        return [0, 1, 2]

    @wf.job(array=True)
    def a(x: Annotated[int, Result(step="items")]) -> int:
        if x == 0:
            time.sleep(1)
            raise ValueError("first failure")
        time.sleep(60)
        return x

    ex = PopenExecutor()
    t0 = time.monotonic()
    with pytest.raises(WorkflowFailed) as info:
        wf.run(tmp_path / "r", backend=ex, on_error="stop")
    assert time.monotonic() - t0 < 30
    rep = info.value.report.steps["a"]
    assert "ValueError: first failure" in rep.failures[0]
    assert sorted(rep.skipped) == [1, 2]
    assert not ex.alive(10) and len(ex.cancelled) == 2


def test_run_timeout_cancels_the_jobs(tmp_path: Path) -> None:
    ex = PopenExecutor()
    t0 = time.monotonic()
    with pytest.raises(Exception, match="after 3 s"):
        _flow("sleep").run(tmp_path / "r", backend=ex, timeout=3)
    assert time.monotonic() - t0 < 30
    assert not ex.alive(10) and ex.cancelled


class _Broken(PopenExecutor):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how

    def submit(self, resources: JobResources, command: list[str]) -> Any:
        if self.how == "submit raises":
            raise OSError("the scheduler is down")
        if self.how == "bad id":
            return 42
        return super().submit(resources, command)

    def job_state(self, job_id: str) -> str | None:
        if self.how == "state raises":
            raise RuntimeError("no answer")
        if self.how == "unknown":
            return None
        return super().job_state(job_id)


@pytest.mark.parametrize(
    ("how", "fragment"),
    [
        ("submit raises", "_Broken.submit failed: OSError: the scheduler is down"),
        ("bad id", "_Broken.submit must return a job id"),
        ("state raises", "_Broken.job_state failed: RuntimeError: no answer"),
        ("unknown", "_Broken no longer knows it"),
    ],
)
def test_broken_executor_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str, fragment: str
) -> None:
    monkeypatch.setattr(_batch, "GONE_AFTER_S", 0.5)
    wf = Workflow("batch-broken")

    @wf.job
    def one() -> int:
        time.sleep(1.5)  # still running when the state is asked
        return 1

    ex = _Broken(how)
    with pytest.raises(WorkflowFailed) as info:
        wf.run(tmp_path / "r", backend=ex)
    assert fragment in info.value.report.steps["one"].failures[0]
    for proc in ex.procs.values():
        proc.wait(timeout=30)


@pytest.mark.parametrize(
    ("backend", "error", "fragment"),
    [
        (PopenExecutor, UnknownExecutorError, "not the class"),
        ("qsub", UnknownExecutorError, "'pbs'"),
        (object(), UnknownExecutorError, "Executor object"),
    ],
)
def test_bad_executor_refused(tmp_path: Path, backend: Any, error: type, fragment: str) -> None:
    with pytest.raises(error, match=None) as info:
        _flow("ok").submit(tmp_path / "r", executor=backend)
    assert fragment in str(info.value)


def test_worker_refuses_bad_arguments(tmp_path: Path) -> None:
    for args in (["--task"], [str(tmp_path), "--task", "x"], [str(tmp_path), "--bogus", "1"]):
        p = subprocess.run(
            [sys.executable, "-m", "reflow.workflow._slurm_worker", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 2, p.stderr
        assert "usage" in p.stderr or "must be a number" in p.stderr


def test_executor_object_of_another_process(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError, match="process that started it"):
        _batch.executor_for("executor", "executor:999999")
    assert threading.active_count() >= 1
