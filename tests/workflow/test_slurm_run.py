"""``backend="slurm"`` on a real single-node Slurm (``slurmcluster``): results as local, the
decorator's resources in the jobs Slurm holds, the array limit, the cache, and bad input."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import pytest
from slurmcluster import SlurmCluster, slurm_fixture

from reflow.workflow import Result, Workflow, WorkflowError, WorkflowFailed

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slurm() -> Iterator[SlurmCluster]:
    yield from slurm_fixture()


def job_ids(slurm: SlurmCluster, name: str) -> list[str]:
    p = slurm.run("squeue", "--states=all", "-h", "-n", name, "-o", "%F")
    return sorted(set(p.stdout.split()))


def show_job(slurm: SlurmCluster, job_id: str) -> dict[str, str]:
    p = slurm.run("scontrol", "show", "job", "-o", job_id)
    return dict(re.findall(r"(\S+?)=(\S*)", p.stdout))


def _fan_flow(cache: bool = False) -> Workflow:
    wf = Workflow("fan")

    @wf.job(cache=cache)
    def items(n: int = 9) -> list[int]:
        return list(range(n))

    @wf.job(array=True, cache=cache)
    def square(x: Annotated[int, Result(step="items")]) -> int:
        return x * x

    @wf.job(cache=cache)
    def total(xs: Annotated[list[int], Result(step="square")]) -> dict[str, int]:
        return {"sum": sum(xs), "n": len(xs)}

    return wf


def test_fan_out_gather_same_as_local(slurm: SlurmCluster, tmp_path: Path) -> None:
    wf = _fan_flow()
    local = wf.run_local(tmp_path / "local")
    on_slurm = wf.run(tmp_path / "fanrun", backend="slurm")
    for step in ("items", "square", "total"):
        assert on_slurm[step] == local[step]
        assert on_slurm.steps[step].status == "done"
    assert on_slurm["total"] == {"sum": 204, "n": 9}
    # the array job was one sbatch --array job, the two others plain ones
    (array_id,) = job_ids(slurm, "fanrun.square")
    assert show_job(slurm, f"{array_id}_0").get("ArrayJobId") == array_id
    assert len(job_ids(slurm, "fanrun.items")) == 1
    assert not (tmp_path / "fanrun" / ".reflow-slurm").exists() or not any(
        (tmp_path / "fanrun" / ".reflow-slurm").iterdir()
    )


def test_resources_reach_sbatch(slurm: SlurmCluster, tmp_path: Path) -> None:
    cpus = min(2, slurm.cpus)
    wf = Workflow("res")

    @wf.job(cpus=cpus, mem="300M", time="3")
    def one() -> list[int]:
        return [int(os.environ["SLURM_CPUS_PER_TASK"])] * 2

    @wf.job(array=True, cpus=1, mem="1.5G", time="0-1:30")
    def many(i: Annotated[int, Result(step="one")]) -> str:
        return os.environ["SLURM_ARRAY_JOB_ID"]

    rep = wf.run(tmp_path / "resrun", backend="slurm", address="debug")
    assert rep["one"] == [cpus, cpus]
    assert rep["many"][0] == rep["many"][1]
    (one_id,) = job_ids(slurm, "resrun.one")
    fields = show_job(slurm, one_id)
    assert fields["Partition"] == "debug"
    assert fields["TimeLimit"] == "00:03:00"
    assert fields["MinMemoryNode"] == "300M"
    assert fields["NumCPUs"] == str(cpus)
    assert fields["JobName"] == "resrun.one"
    (many_id,) = job_ids(slurm, "resrun.many")
    fields = show_job(slurm, f"{many_id}_0")
    assert (fields["TimeLimit"], fields["MinMemoryNode"]) == ("01:30:00", "1.50G")


def _overlap(spans: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    now = most = 0
    for _, d in events:
        now += d
        most = max(most, now)
    return most


def _timed_flow(limit: int | None) -> Workflow:
    wf = Workflow("lim")

    @wf.job
    def items(n: int = 4) -> list[int]:
        return list(range(n))

    @wf.job(array=True, array_limit=limit)
    def hold(x: Annotated[int, Result(step="items")]) -> tuple[float, float]:
        t0 = time.time()
        time.sleep(1.5)
        return t0, time.time()

    return wf


@pytest.mark.parametrize(
    ("limit", "workers", "throttle"),
    [(1, None, "1"), (None, 1, "1"), (None, None, None)],
    ids=["array_limit", "max_workers", "none"],
)
def test_array_limit_honoured(
    slurm: SlurmCluster, tmp_path: Path, limit: int | None, workers: int | None, throttle: str
) -> None:
    if throttle is None and slurm.cpus < 2:
        pytest.skip("one CPU: nothing to compare the limit with")
    name = f"lim{limit}{workers}"
    rep = _timed_flow(limit).run(tmp_path / name, backend="slurm", max_workers=workers)
    most = _overlap(rep["hold"])
    (jid,) = job_ids(slurm, f"{name}.hold")
    task = show_job(slurm, f"{jid}_0")
    if throttle is None:
        assert most >= 2, rep["hold"]
        assert task.get("ArrayTaskThrottle", "0") == "0"
    else:
        assert most == 1, rep["hold"]
        assert task.get("ArrayTaskThrottle") == throttle


def test_cached_second_run_submits_nothing(slurm: SlurmCluster, tmp_path: Path) -> None:
    wf = _fan_flow(cache=True)
    first = wf.run(tmp_path / "cacherun", backend="slurm")
    before = job_ids(slurm, "cacherun.square") + job_ids(slurm, "cacherun.total")
    second = wf.run(tmp_path / "cacherun", backend="slurm")
    after = job_ids(slurm, "cacherun.square") + job_ids(slurm, "cacherun.total")
    assert before == after and len(before) == 2
    assert [second.steps[s].status for s in ("items", "square", "total")] == ["cached"] * 3
    assert second["total"] == first["total"]


def test_stop_cancels_the_arrays_pending_tasks(slurm: SlurmCluster, tmp_path: Path) -> None:
    wf = Workflow("stop")

    @wf.job
    def items() -> list[int]:
        return list(range(6))

    @wf.job(array=True, array_limit=1)
    def first_fails(x: Annotated[int, Result(step="items")]) -> int:
        if x == 0:
            raise ValueError("element zero fails")
        return x

    with pytest.raises(WorkflowFailed) as err:
        wf.run(tmp_path / "stoprun", backend="slurm")
    rep = err.value.report.steps["first_fails"]
    (jid,) = job_ids(slurm, "stoprun.first_fails")
    assert f"Slurm job {jid}_0: ValueError: element zero fails" in rep.failures[0]
    assert len(rep.skipped) >= 4  # at most one more task had started
    states = slurm.run("squeue", "--states=all", "-r", "-h", "-j", jid, "-o", "%T").stdout
    # the cancelled pending tasks are one record; at most one task ran after the failure
    assert "CANCELLED" in states.split()
    assert len([s for s in states.split() if s != "CANCELLED"]) <= 2, states


def test_run_timeout_cancels_its_jobs(slurm: SlurmCluster, tmp_path: Path) -> None:
    wf = Workflow("tmo")

    @wf.job
    def sleepy() -> int:
        time.sleep(300)
        return 1

    t0 = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - the network's timeout error
        wf.run(tmp_path / "tmorun", backend="slurm", timeout=4)
    assert time.monotonic() - t0 < 30
    (jid,) = job_ids(slurm, "tmorun.sleepy")
    deadline = time.monotonic() + 20
    while show_job(slurm, jid).get("JobState") != "CANCELLED" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert show_job(slurm, jid).get("JobState") == "CANCELLED"


# ---------------------------------------------------------------------- bad input


def _bad_flow(**job: object) -> Workflow:
    wf = Workflow("bad")

    @wf.job(**job)  # type: ignore[call-overload]
    def only() -> int:
        return 1

    return wf


BAD_CONF = """ClusterName=nowhere
SlurmctldHost=localhost
SlurmctldPort={port}
AuthType=auth/munge
AuthInfo=socket={root}/none.socket
NodeName=localhost CPUs=1
PartitionName=debug Nodes=localhost Default=YES
"""


@pytest.mark.parametrize(
    ("job", "address", "env", "error", "fragment"),
    [
        ({}, "nosuch", None, WorkflowError, "no partition 'nosuch' (partitions: debug, short)"),
        ({}, 7, None, WorkflowError, "the Slurm partition must be a name, got 7"),
        ({}, "debug,nosuch", None, WorkflowError, "has no partition 'nosuch'"),
        ({}, "debug,", None, WorkflowError, "has no partition ''"),
        ({"time": "5"}, "short", None, WorkflowError, "partition 'short' allows at most 1:00"),
        ({"time": "1-0"}, "short", None, WorkflowError, "asks for time=1-0 but Slurm partition"),
        ({"time": True}, None, None, WorkflowError, "time must be a Slurm time limit"),
        ({"time": "1:00\n--wrap=x"}, None, None, WorkflowError, "got '1:00\\n--wrap=x'"),
        ({"time": "9" * 5000}, None, None, WorkflowError, "time must be a Slurm time limit"),
        ({"time": "99999999"}, "short", None, WorkflowError, "allows at most 1:00"),
        ({"time": 10**5000}, None, None, WorkflowError, "time must be a Slurm time limit"),
        ({"time": [1]}, None, None, WorkflowError, "got [1]"),
        ({}, "p" * 100_000, None, WorkflowError, "has no partition 'ppppp"),
        ({}, "", None, WorkflowError, "the Slurm partition must be a name"),
        ({"time": "1h"}, None, None, WorkflowError, "time must be a Slurm time limit"),
        ({"time": "1:2:3:4"}, None, None, WorkflowError, "got '1:2:3:4'"),
        ({"time": "-5"}, None, None, WorkflowError, "time must be a Slurm time limit"),
        ({"time": "1-"}, None, None, WorkflowError, "'D-H:M:S'"),
        ({"cpus": 64}, None, None, WorkflowFailed, "asks for cpus=64 but the largest node"),
        ({"mem": "4T"}, None, None, WorkflowFailed, "MiB of memory but the largest node"),
        ({}, None, "nopath", WorkflowError, "needs Slurm's sbatch on PATH"),
        ({}, None, "noctld", WorkflowError, "cannot reach the Slurm controller"),
    ],
)
def test_bad_input(
    slurm: SlurmCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    job: dict[str, object],
    address: object,
    env: str | None,
    error: type[Exception],
    fragment: str,
) -> None:
    if env == "nopath":
        monkeypatch.setenv("PATH", str(tmp_path))
    elif env == "noctld":
        conf = tmp_path / "slurm.conf"
        conf.write_text(BAD_CONF.format(port=1, root=tmp_path))
        monkeypatch.setenv("SLURM_CONF", str(conf))
    before = slurm.run("squeue", "--states=all", "-h", "-o", "%A").stdout.split()
    t0 = time.monotonic()
    with pytest.raises(error) as err:
        _bad_flow(**job).run(tmp_path / "badrun", backend="slurm", address=address)  # type: ignore[arg-type]
    assert time.monotonic() - t0 < 40
    text = str(err.value)
    assert len(text) < 2000  # bounded, whatever the input's size
    if isinstance(err.value, WorkflowFailed):
        text = "\n".join(f for _, _, f in err.value.report.failures)
    assert fragment in text
    # nothing was submitted
    assert slurm.run("squeue", "--states=all", "-h", "-o", "%A").stdout.split() == before
