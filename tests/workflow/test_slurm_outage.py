"""``backend="slurm"`` when the controller goes away mid-run: the run fails with an error that
names the controller and the job, in bounded time, instead of waiting for it. Its own cluster
(module fixture), since the test kills ``slurmctld``."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from slurmcluster import SlurmCluster, slurm_fixture

import reflow.workflow._slurm as slurm_backend
from reflow.workflow import Workflow, WorkflowFailed

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slurm() -> Iterator[SlurmCluster]:
    yield from slurm_fixture()


def test_controller_killed_mid_run_fails_in_bounded_time(
    slurm: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slurm_backend, "LOST_AFTER_S", 3.0)
    wf = Workflow("outage")

    @wf.job
    def long() -> int:
        time.sleep(300)
        return 1

    killed_at: list[float] = []

    def kill_when_running() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            p = slurm.run("squeue", "-h", "-n", "outrun.long", "-t", "RUNNING", "-o", "%A")
            if p.stdout.strip():
                slurm.kill("slurmctld")
                killed_at.append(time.monotonic())
                return
            time.sleep(0.5)

    killer = threading.Thread(target=kill_when_running, daemon=True)
    killer.start()
    with pytest.raises(WorkflowFailed) as err:
        wf.run(tmp_path / "outrun", backend="slurm")
    done = time.monotonic()
    killer.join(5)
    assert killed_at, "the job never ran"
    # LOST_AFTER_S plus squeue's own ~10 s of retries against a dead controller, and the
    # scancel at close that cannot reach it either
    assert done - killed_at[0] < 90
    text = err.value.report.steps["long"].failures[0]
    assert "the Slurm controller (SLURM_CONF=" in text
    assert "was unreachable for 3 s while job 'long' ran as Slurm job" in text
    assert "Unable to contact slurm controller" in text
