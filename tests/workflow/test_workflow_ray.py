"""reflow.workflow on a real Ray cluster: a head and a worker node started on 127.0.0.1 with
``ray start`` (two processes, one CPU each), driven with ``backend="ray"``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import pytest
from raycluster import (
    ENV,
    cluster_fixture,
    free_port,
    kill_cluster,
    start_cluster,
    stop_cluster,
)

from reflow.workflow import Result, Workflow, WorkflowError, WorkflowFailed

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'reflow[ray]'")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    yield from cluster_fixture(workers=1)


def _work_flow() -> Workflow:
    wf = Workflow("ray")

    @wf.job
    def items(n: int = 24) -> list[int]:
        return list(range(n))

    @wf.job(array=True, cpus=1, mem="64M", cache=True)
    def burn(x: Annotated[int, Result(step="items")]) -> tuple[int, int, str]:
        s = 0
        for i in range(300_000):
            s += i
        import ray as _ray

        return x * x, os.getpid(), _ray.get_runtime_context().get_node_id()

    @wf.job
    def total(rows: Annotated[list[tuple[int, int, str]], Result(step="burn")]) -> int:
        return sum(r[0] for r in rows)

    return wf


def test_array_elements_run_as_ray_tasks_on_the_cluster(cluster: str, tmp_path: Path) -> None:
    r = _work_flow().run(tmp_path, backend="ray", address=cluster)
    assert r["total"] == sum(x * x for x in range(24))
    rows = r["burn"]
    assert [row[0] for row in rows] == [x * x for x in range(24)], "element order is kept"
    assert os.getpid() not in {row[1] for row in rows}, "the calls ran in Ray workers"
    assert r.steps["burn"].status == "done" and r.steps["burn"].elements == 24
    again = _work_flow().run(tmp_path, backend="ray", address=cluster)
    assert again.steps["burn"].status == "cached" and again["total"] == r["total"]


def test_a_failing_element_is_reported_as_on_one_machine(cluster: str, tmp_path: Path) -> None:
    wf = Workflow("rayfail")

    @wf.job
    def items() -> list[int]:
        return [1, 2, 0, 4]

    @wf.job(array=True)
    def inv(x: Annotated[int, Result(step="items")]) -> float:
        return 1 / x

    r = wf.run(tmp_path, backend="ray", address=cluster, on_error="continue")
    assert r.steps["inv"].status == "partial"
    assert list(r.steps["inv"].failures) == [2]
    assert "ZeroDivisionError: division by zero" in r.steps["inv"].failures[2]
    assert r["inv"] == [1.0, 0.5, None, 0.25]
    with pytest.raises(WorkflowFailed, match="ZeroDivisionError"):
        wf.run(tmp_path / "stop", backend="ray", address=cluster)


@pytest.mark.parametrize(
    ("resources", "fragment"),
    [
        ({"cpus": 4}, "asks for cpus=4 but the largest node of the Ray cluster has 1"),
        ({"mem": "64T"}, "bytes of memory but the largest node"),
    ],
)
def test_resources_no_node_has_are_refused_not_waited_for(
    cluster: str, tmp_path: Path, resources: dict[str, object], fragment: str
) -> None:
    wf = Workflow("big")

    @wf.job(**resources)  # type: ignore[arg-type]
    def huge() -> int:
        return 1

    t0 = time.perf_counter()
    with pytest.raises(WorkflowFailed) as info:
        wf.run(tmp_path, backend="ray", address=cluster)
    assert fragment in str(info.value)
    assert time.perf_counter() - t0 < 60


def test_an_unreachable_cluster_is_a_clear_error(tmp_path: Path) -> None:
    wf = Workflow("nowhere")
    wf.job(lambda: 1, name="one")
    port = free_port()
    code = (
        "import sys\n"
        "from reflow.workflow import Workflow, WorkflowError\n"
        "wf = Workflow('nowhere')\n"
        "wf.job(lambda: 1, name='one')\n"
        "try:\n"
        f"    wf.run({str(tmp_path)!r}, backend='ray', address='127.0.0.1:{port}')\n"
        "except WorkflowError as e:\n"
        "    print('ERROR', e)\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=180
    )
    assert f"ERROR cannot connect to the Ray cluster at 127.0.0.1:{port}" in p.stdout, (
        p.stdout + p.stderr
    )


GONE = """
import sys, time
from typing import Annotated
from reflow.workflow import Workflow, Result, WorkflowFailed
wf = Workflow("gone")

@wf.job
def items() -> list[int]:
    return list(range(8))

@wf.job(array=True, array_limit=1)
def nap(x: Annotated[int, Result(step="items")]) -> int:
    time.sleep(1.0)
    return x

print("STARTED", flush=True)
t0 = time.time()
try:
    wf.run(sys.argv[2], backend="ray", address=sys.argv[1])
    print("FINISHED")
except WorkflowFailed as e:
    print("FAILED", e, flush=True)
print("SECONDS", time.time() - t0, flush=True)
"""


def test_a_cluster_that_goes_away_mid_run_fails_the_run_clearly(tmp_path: Path) -> None:
    address, temp = start_cluster(workers=0)
    try:
        env = {**ENV, "REFLOW_RAY_LOST_AFTER_S": "3"}
        proc = subprocess.Popen(
            [sys.executable, "-c", GONE, address, str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("STARTED")
        time.sleep(6)  # ray.init and a few elements
        kill_cluster(temp)
        out, err = proc.communicate(timeout=120)
    finally:
        stop_cluster(temp)
    assert "FAILED" in out, out + err
    assert f"the Ray cluster at {address} went away while job 'nap' was running" in out
    assert proc.returncode == 0, err


def test_bad_backend_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        WorkflowError, match=r"backend must be 'local', 'ray', 'slurm', .*got 'kubernetes'"
    ):
        _work_flow().run(tmp_path, backend="kubernetes")
