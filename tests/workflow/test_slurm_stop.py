"""``backend="slurm"``'s stop policy on a real single-node Slurm (``slurmcluster``, 2 CPUs here):
under ``on_error="stop"`` the first failure ``scancel``s every job of the run still pending or
running, of every step, and their elements are reported skipped with a reason naming that
failure; under ``"continue"`` the independent steps finish; ``Run.cancel()`` of one of two
runs going at once cancels that run's jobs and no others; and bad input is refused before
anything is submitted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from slurmcluster import SlurmCluster, slurm_fixture
from test_slurm_run import job_ids

from reflow.workflow import (
    Result,
    RunStateError,
    StepNotFoundError,
    Workflow,
    WorkflowError,
    WorkflowFailed,
)

pytestmark = pytest.mark.slow

#: how long the run's jobs may still be pending or running after it raised (scancel, then
#: slurmstepd's SIGTERM and KillWait=2 before SIGKILL)
GONE_S = 20.0
#: how long a stopped run may take from its start: submission, the failing element, the poll
STOP_S = 60.0
#: a partition whose cores up to 4 jobs share: on 2 CPUs the failing element, the other
#: array's task and the plain job all run at once (the order Slurm starts them in does not
#: decide what the test sees)
WIDE = "wide"


@pytest.fixture(scope="module")
def slurm() -> Iterator[SlurmCluster]:
    yield from slurm_fixture(
        f"PartitionName={WIDE} Nodes=localhost OverSubscribe=FORCE:4 State=UP\n"
    )


def _live(slurm: SlurmCluster, prefix: str) -> list[str]:
    """The run's jobs Slurm still holds pending or running (squeue's default states)."""
    p = slurm.run("squeue", "-h", "-r", "-o", "%j|%i|%T")
    return [line for line in p.stdout.split() if line.startswith(prefix + ".")]


def _wait_gone(slurm: SlurmCluster, prefix: str) -> list[str]:
    deadline = time.monotonic() + GONE_S
    while (left := _live(slurm, prefix)) and time.monotonic() < deadline:
        time.sleep(0.25)
    return left


def _flow(how: str, sleep: float) -> Workflow:
    """``a`` fails (``how``: an element raises, an element's worker dies, a plain job raises, or
    the run finds ``a``'s input is not a list) while ``b`` (an independent array) and ``c`` (an
    independent plain job) sleep ``sleep`` seconds each; ``after_b`` needs all of ``b``."""
    wf = Workflow("stopper")

    @wf.job
    def items() -> list[int]:
        return [0, 1, 2]

    if how in ("raises", "dies"):

        @wf.job(array=True, array_limit=1)
        def a(x: Annotated[int, Result(step="items")]) -> int:
            time.sleep(1)  # b's sbatch, in flight with a's, is done by then
            if x == 0 and how == "raises":
                raise ValueError(f"a-bad-{x}")
            if x == 0:
                os._exit(3)
            time.sleep(sleep)
            return x

    elif how == "plain":

        @wf.job
        def a(xs: Annotated[list[int], Result(step="items")]) -> int:
            time.sleep(1)
            raise ValueError("a-bad")

    else:

        @wf.job
        def notalist() -> Any:  # wired as a list, found not to be one at run time
            time.sleep(4)  # b and c are out by then
            return 3

        @wf.job(array=True)
        def a(x: Annotated[int, Result(step="notalist")]) -> int:
            return x

    @wf.job(array=True, array_limit=1)
    def b(x: Annotated[int, Result(step="items")]) -> int:
        time.sleep(sleep)
        return x * 10

    @wf.job
    def c() -> str:
        time.sleep(sleep)
        return "c"

    @wf.job
    def after_b(xs: Annotated[list[int], Result(step="b")]) -> int:
        return sum(xs)

    return wf


@pytest.mark.parametrize(
    ("how", "cause", "a_skipped"),
    [
        ("raises", "element 0 of 'a' failed: Slurm job {a}_0: ValueError: a-bad-0", [1, 2]),
        ("dies", "element 0 of 'a' failed: Slurm job {a}_0 of job 'a' ended FAILED", [1, 2]),
        ("plain", "'a' failed: Slurm job {a}: ValueError: a-bad", []),
        # found by the run, not by Slurm: the run tells the backend to stop
        ("not_a_list", "'a' failed: step 'notalist' returned int, not a list", []),
    ],
)
def test_stop_cancels_every_job_of_the_run(
    slurm: SlurmCluster, tmp_path: Path, how: str, cause: str, a_skipped: list[int]
) -> None:
    wf = _flow(how, sleep=120)
    name = f"stop{how.replace('_', '')}"
    t0 = time.monotonic()
    with pytest.raises(WorkflowFailed) as err:
        wf.run(tmp_path / name, backend="slurm", address=WIDE, store_path=tmp_path / "r.sqlite")
    elapsed = time.monotonic() - t0
    assert elapsed < STOP_S, f"the stopped run took {elapsed:.1f} s"
    assert _wait_gone(slurm, name) == [], "the run's jobs are still pending or running"
    ids = {s: (job_ids(slurm, f"{name}.{s}") or ["-"])[0] for s in ("a", "b", "c")}
    why = "the run stopped after " + cause.format(**ids)
    assert "first failure: a[0]: " + cause.split(" failed: ")[1].format(**ids) in str(err.value)
    steps = err.value.report.steps
    assert list(steps["a"].failures) == [0]
    assert sorted(steps["a"].skipped) == a_skipped
    # the other array: none of it failed, all of it was stopped, and the report says why
    assert steps["b"].failures == {}
    assert sorted(steps["b"].skipped) == [0, 1, 2]
    assert steps["b"].reason.startswith(f"3 elements not run: {why}"), steps["b"].reason
    assert steps["c"].status == "skipped"
    assert steps["c"].reason.startswith(why), steps["c"].reason
    assert steps["after_b"].status == "skipped"
    # Slurm cancelled them: b's running task and its pending rest, c
    for step in ("b", "c"):
        p = slurm.run("squeue", "--states=all", "-r", "-h", "-j", ids[step], "-o", "%T")
        assert p.stdout.split() and set(p.stdout.split()) == {"CANCELLED"}, (step, p.stdout)
    # the run's record says the same
    snap = err.value.report.status(as_dict=True)  # type: ignore[attr-defined]
    assert snap["status"] == "FAILED"
    assert snap["steps"]["b"]["skipped"] == 3 and snap["steps"]["b"]["failed"] == 0
    assert snap["steps"]["c"]["state"] == "CANCELLED"


def test_continue_lets_the_independent_steps_finish(slurm: SlurmCluster, tmp_path: Path) -> None:
    wf = _flow("raises", sleep=0.5)
    run = wf.run(
        tmp_path / "goon",
        backend="slurm",
        address=WIDE,
        on_error="continue",
        store_path=tmp_path / "runs.sqlite",
    )
    assert run.steps["a"].status == "partial" and list(run.steps["a"].failures) == [0]
    assert run["a"] == [None, 1, 2]
    assert (run.steps["b"].status, run["b"]) == ("done", [0, 10, 20])
    assert (run.steps["c"].status, run["c"]) == ("done", "c")
    assert run["after_b"] == 30
    for step in ("b", "c"):
        (jid,) = job_ids(slurm, f"goon.{step}")
        states = slurm.run("squeue", "--states=all", "-r", "-h", "-j", jid, "-o", "%T")
        assert set(states.stdout.split()) == {"COMPLETED"}, states.stdout


def _sleepy(seconds: float) -> Workflow:
    wf = Workflow("sleeper")

    @wf.job
    def items() -> list[int]:
        return [0, 1]

    @wf.job(array=True)
    def nap(x: Annotated[int, Result(step="items")]) -> int:
        time.sleep(seconds)
        return x + 1

    return wf


def test_cancel_one_of_two_runs(slurm: SlurmCluster, tmp_path: Path) -> None:
    store = tmp_path / "runs.sqlite"
    doomed = _sleepy(120).submit(
        tmp_path / "doomed", executor="slurm", address=WIDE, store_path=store
    )
    kept = _sleepy(3).submit(tmp_path / "kept", executor="slurm", address=WIDE, store_path=store)
    deadline = time.monotonic() + 60
    while not (job_ids(slurm, "doomed.nap") and job_ids(slurm, "kept.nap")):
        assert time.monotonic() < deadline, "the runs' array jobs were never submitted"
        time.sleep(0.25)
    t0 = time.monotonic()
    doomed.cancel()
    doomed.wait(timeout=30)
    assert time.monotonic() - t0 < 30
    assert _wait_gone(slurm, "doomed") == []
    snap = doomed.status(as_dict=True)
    assert snap is not None and snap["status"] == "CANCELLED"
    assert snap["steps"]["nap"]["state"] == "CANCELLED"
    assert snap["steps"]["nap"]["skipped"] == 2 and snap["steps"]["nap"]["failed"] == 0
    # the other run was not touched: it finishes, every task of it COMPLETED
    kept.wait(timeout=90)
    assert kept.ok and kept["nap"] == [1, 2]
    (kid,) = job_ids(slurm, "kept.nap")
    states = slurm.run("squeue", "--states=all", "-r", "-h", "-j", kid, "-o", "%T").stdout
    assert set(states.split()) == {"COMPLETED"}, states


def _bad_on_error(wf: Workflow, d: Path) -> Any:
    return wf.run(d / "bad1", backend="slurm", on_error="halt", store_path=d / "r.sqlite")


def _bad_submit_on_error(wf: Workflow, d: Path) -> Any:
    return wf.submit(d / "bad2", executor="slurm", on_error=None, store_path=d / "r.sqlite")


def _cancel_unknown_step(wf: Workflow, d: Path) -> Any:
    run = wf.submit(d / "bad3", executor="slurm", address=WIDE, store_path=d / "r.sqlite")
    try:
        run.cancel(task="napp")
    finally:
        run.cancel()
        run.wait(timeout=30)


def _wait_bad_timeout(wf: Workflow, d: Path) -> Any:
    run = wf.submit(d / "bad5", executor="slurm", address=WIDE, store_path=d / "r.sqlite")
    try:
        run.wait(timeout=-1)
    finally:
        run.cancel()
        run.wait(timeout=30)


@pytest.mark.parametrize(
    ("call", "error", "fragment", "submits"),
    [
        (_bad_on_error, WorkflowError, "on_error must be 'stop' or 'continue', got 'halt'", False),
        (_bad_submit_on_error, WorkflowError, "on_error must be 'stop' or 'continue'", False),
        (_cancel_unknown_step, StepNotFoundError, "has no step 'napp'. Did you mean 'nap'?", True),
        (_wait_bad_timeout, RunStateError, "timeout must be a number of seconds >= 0", True),
    ],
)
def test_bad_input(
    slurm: SlurmCluster,
    tmp_path: Path,
    call: Callable[[Workflow, Path], Any],
    error: type[Exception],
    fragment: str,
    submits: bool,
) -> None:
    t0 = time.monotonic()
    with pytest.raises(error) as err:
        call(_sleepy(120), tmp_path)
    assert fragment in str(err.value)
    assert time.monotonic() - t0 < 30
    # nothing of these runs is left pending or running
    for d in ("bad1", "bad2", "bad3", "bad4", "bad5"):
        assert _wait_gone(slurm, d) == []
    if not submits:
        assert not job_ids(slurm, "bad1.items") and not job_ids(slurm, "bad2.items")


def test_cancel_of_one_step_leaves_the_others(slurm: SlurmCluster, tmp_path: Path) -> None:
    wf = _flow("raises", sleep=120)  # a fails at once, but under "continue"; b, c sleep
    run = wf.submit(
        tmp_path / "onestep",
        executor="slurm",
        address=WIDE,
        on_error="continue",
        store_path=tmp_path / "r.sqlite",
    )
    deadline = time.monotonic() + 60
    while not job_ids(slurm, "onestep.b"):
        assert time.monotonic() < deadline, "b was never submitted"
        time.sleep(0.25)
    run.cancel(task="b")
    deadline = time.monotonic() + GONE_S
    while [j for j in _live(slurm, "onestep") if j.startswith("onestep.b|")]:
        assert time.monotonic() < deadline, _live(slurm, "onestep")
        time.sleep(0.25)
    # c (another step of the same run) still runs: cancel() named b only
    assert [j for j in _live(slurm, "onestep") if j.startswith("onestep.c|")]
    run.cancel()
    run.wait(timeout=30)
    assert _wait_gone(slurm, "onestep") == []
    snap = run.status(as_dict=True)
    assert snap is not None and snap["status"] == "CANCELLED"
    assert snap["steps"]["b"]["state"] == "CANCELLED" and snap["steps"]["b"]["skipped"] == 3


DRIVER = """
import sys, time
from typing import Annotated
from reflow.workflow import Result, Workflow

wf = Workflow("intr")
SLEEP = float(sys.argv[2])  # read here: the job runs in a worker with argv of its own

@wf.job
def items() -> list[int]:
    return [0, 1]

@wf.job(array=True)
def nap(x: Annotated[int, Result(step="items")]) -> int:
    time.sleep(SLEEP)
    return x

print(wf.run(sys.argv[1], backend="slurm", address="wide", store_path=sys.argv[3])["nap"])
"""


def test_ctrl_c_on_one_of_two_drivers(slurm: SlurmCluster, tmp_path: Path) -> None:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    store = str(tmp_path / "r.sqlite")

    def start(name: str, sleep: float) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / name), str(sleep), store],
            env=slurm.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    doomed, kept = start("intrdoomed", 120), start("intrkept", 4)
    try:
        deadline = time.monotonic() + 60
        while not (job_ids(slurm, "intrdoomed.nap") and job_ids(slurm, "intrkept.nap")):
            assert time.monotonic() < deadline, "the drivers' array jobs were never submitted"
            time.sleep(0.25)
        doomed.send_signal(signal.SIGINT)
        out, _ = doomed.communicate(timeout=30)
        # Ctrl-C: the run stops (TaskInterrupted in its calls, reflow-hpc's) and says why
        assert doomed.returncode != 0 and "the run was interrupted by SIGINT" in out, out
        assert _wait_gone(slurm, "intrdoomed") == []
        kept_out, _ = kept.communicate(timeout=90)
        assert kept.returncode == 0 and "[0, 1]" in kept_out, kept_out
    finally:
        for proc in (doomed, kept):
            if proc.poll() is None:
                proc.kill()
    (kid,) = job_ids(slurm, "intrkept.nap")
    states = slurm.run("squeue", "--states=all", "-r", "-h", "-j", kid, "-o", "%T").stdout
    assert set(states.split()) == {"COMPLETED"}, states


def test_cancel_of_an_ended_run_cancels_nothing(slurm: SlurmCluster, tmp_path: Path) -> None:
    # reflow-hpc's answer: 0 instances cancelled, no error
    run = _sleepy(120).submit(
        tmp_path / "bad4", executor="slurm", address=WIDE, store_path=tmp_path / "r.sqlite"
    )
    run.cancel()
    run.wait(timeout=30)
    assert run.done() and run.cancel() == 0
    assert _wait_gone(slurm, "bad4") == []
