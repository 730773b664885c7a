"""``backend="slurm"`` with arrays larger than the cluster's ``MaxArraySize`` (4 here): the
chunks are split over several array jobs, chained with ``afterany`` under an ``array_limit`` so
the limit still holds across them; and Ctrl-C on a driver ``scancel``s its jobs."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import pytest
from slurmcluster import SlurmCluster, slurm_fixture
from test_slurm_run import _overlap, job_ids, show_job

from reflow.workflow import Result, Workflow

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slurm() -> Iterator[SlurmCluster]:
    yield from slurm_fixture("MaxArraySize=4\n")


def test_array_over_max_array_size_is_split_and_limited(
    slurm: SlurmCluster, tmp_path: Path
) -> None:
    wf = Workflow("big")

    @wf.job
    def items() -> list[int]:
        return list(range(10))

    @wf.job(array=True, array_limit=2)
    def hold(x: Annotated[int, Result(step="items")]) -> tuple[int, float, float]:
        t0 = time.time()
        time.sleep(0.5)
        return x, t0, time.time()

    rep = wf.run(tmp_path / "bigrun", backend="slurm")
    assert [v[0] for v in rep["hold"]] == list(range(10))
    assert _overlap([(a, b) for _, a, b in rep["hold"]]) <= 2
    assert len(job_ids(slurm, "bigrun.hold")) == 3  # 4 + 4 + 2 tasks
    # each array job started after the one before it ended (afterany)
    groups = [rep["hold"][0:4], rep["hold"][4:8], rep["hold"][8:10]]
    for before, after in itertools.pairwise(groups):
        assert min(a for _, a, _ in after) >= max(b for _, _, b in before)


DRIVER = """
import sys, time
from reflow.workflow import Workflow

wf = Workflow("intr")

@wf.job
def sleepy() -> int:
    time.sleep(300)
    return 1

wf.run(sys.argv[1], backend="slurm")
"""


def test_ctrl_c_cancels_the_runs_jobs(slurm: SlurmCluster, tmp_path: Path) -> None:
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(DRIVER))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "intrrun")],
        env=slurm.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not job_ids(slurm, "intrrun.sleepy") and time.monotonic() < deadline:
            time.sleep(0.3)
        (jid,) = job_ids(slurm, "intrrun.sleepy")
        while show_job(slurm, jid).get("JobState") != "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        out, _ = proc.communicate(timeout=30)
        assert time.monotonic() - t0 < 25
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, out
    deadline = time.monotonic() + 20
    while show_job(slurm, jid).get("JobState") != "CANCELLED" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert show_job(slurm, jid).get("JobState") == "CANCELLED", (show_job(slurm, jid), out)
    assert "the run was interrupted by SIGINT" in out  # not a bare KeyboardInterrupt
