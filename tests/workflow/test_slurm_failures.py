"""How jobs that Slurm ends badly fail on ``backend="slurm"``: one run (``on_error="continue"``)
of independent jobs that each end one way — a Python exception, an exit without a result, over
``time`` (TIMEOUT), over ``mem`` (OUT_OF_MEMORY, enforced here by ``jobacct_gather/linux``'s
``OverMemoryKill``), ``scancel`` from outside — and a table of what each step's error says.

The run takes about 60-90 s: Slurm's smallest time limit is one minute, checked every ~30 s.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from slurmcluster import SlurmCluster, slurm_fixture

from reflow.workflow import Result, RunReport, Workflow

pytestmark = pytest.mark.slow


def _failing_flow() -> Workflow:
    wf = Workflow("fails")

    @wf.job
    def boom() -> int:
        raise ValueError("boom-7")

    @wf.job
    def die() -> int:
        sys.stderr.write("dying-now\n")
        sys.stderr.flush()
        os._exit(3)

    @wf.job
    def exits() -> int:
        sys.exit(4)

    @wf.job
    def unpicklable() -> object:
        return threading.Lock()

    @wf.job(time="1")
    def slow() -> int:
        time.sleep(300)
        return 1

    @wf.job(mem="64M")
    def hog() -> int:
        block = b"x" * (600 << 20)
        time.sleep(30)
        return len(block)

    @wf.job
    def killed() -> int:
        time.sleep(300)
        return 1

    @wf.job
    def items() -> list[int]:
        return [0, 1, 2, 3]

    @wf.job(array=True)
    def third_fails(x: Annotated[int, Result(step="items")]) -> int:
        if x == 2:
            raise RuntimeError(f"element {x} is bad")
        return x

    return wf


def _cancel_from_outside(slurm: SlurmCluster, name: str, stop: threading.Event) -> None:
    while not stop.is_set():
        p = slurm.run("squeue", "-h", "-n", name, "-t", "RUNNING", "-o", "%A")
        if p.stdout.strip():
            slurm.run("scancel", p.stdout.split()[0])
            return
        time.sleep(0.5)


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunReport, float, Any]]:
    for slurm in slurm_fixture():
        run_dir = tmp_path_factory.mktemp("x") / "failrun"
        stop = threading.Event()
        canceller = threading.Thread(
            target=_cancel_from_outside, args=(slurm, "failrun.killed", stop), daemon=True
        )
        canceller.start()
        t0 = time.monotonic()
        try:
            report = _failing_flow().run(run_dir, backend="slurm", on_error="continue")
        finally:
            stop.set()
        elapsed = time.monotonic() - t0
        ids = {
            line.split("|")[0]: line.split("|")[1]
            for line in slurm.run("squeue", "--states=all", "-h", "-o", "%j|%F").stdout.split()
        }
        yield report, elapsed, ids


@pytest.mark.parametrize(
    ("step", "fragments"),
    [
        ("boom", ["Slurm job {id}: ValueError: boom-7", "Traceback"]),
        ("exits", ["Slurm job {id}: SystemExit: 4"]),
        ("unpicklable", ["Slurm job {id}: the result of element 0 does not pickle: TypeError"]),
        ("die", ["Slurm job {id} of job 'die' ended FAILED", "dying-now"]),
        (
            "slow",
            ["Slurm job {id} of job 'slow' ended TIMEOUT (its time limit: 1)", "DUE TO TIME LIMIT"],
        ),
        # FAILED, not OUT_OF_MEMORY: without cgroups, slurmstepd's memory poll kills the job
        (
            "hog",
            [
                "Slurm job {id} of job 'hog' ended ",
                "(over its memory limit: 64 MiB)",
                "exceeded memory limit",
            ],
        ),
        ("killed", ["Slurm job {id} of job 'killed' ended CANCELLED", "CANCELLED AT"]),
    ],
)
def test_job_failures_name_the_slurm_job(
    outcome: tuple[RunReport, float, dict[str, str]], step: str, fragments: list[str]
) -> None:
    report, _, ids = outcome
    rep = report.steps[step]
    assert rep.status == "failed"
    text = rep.failures[0]
    for fragment in fragments:
        assert fragment.format(id=ids[f"failrun.{step}"]) in text, text


def test_failing_element_fails_alone(outcome: tuple[RunReport, float, dict[str, str]]) -> None:
    report, _, ids = outcome
    rep = report.steps["third_fails"]
    assert rep.status == "partial"
    assert list(rep.failures) == [2]
    jid = ids["failrun.third_fails"]
    assert rep.failures[2].startswith(f"Slurm job {jid}_2: RuntimeError: element 2 is bad")
    assert [v for i, v in enumerate(report["third_fails"]) if i != 2] == [0, 1, 3]


def test_the_run_is_bounded(outcome: tuple[RunReport, float, dict[str, str]]) -> None:
    # one minute of time limit, Slurm's ~30 s check, and the polling: far below the 300 s
    # the sleeping jobs asked for
    _, elapsed, _ = outcome
    assert elapsed < 200
