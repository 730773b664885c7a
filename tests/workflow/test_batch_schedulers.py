"""PBS, LSF, SGE and Flux executors: their command lines (tables), ``from_environment()``,
dry-run, bad input; and a workflow run end to end through stand-ins of each scheduler's
commands on ``PATH`` (``batch_standins``: real subprocesses, the real output formats — not a
real scheduler): results, a failure with its stderr, ``cancel()``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import pytest
from batch_standins import install

from reflow.workflow import (
    FluxExecutor,
    JobResources,
    LSFExecutor,
    ParamError,
    PBSExecutor,
    Result,
    SGEExecutor,
    UnknownExecutorError,
    Workflow,
    WorkflowError,
)

EXECUTORS = {"pbs": PBSExecutor, "lsf": LSFExecutor, "sge": SGEExecutor, "flux": FluxExecutor}
CMD = ["python", "-m", "w", "a b"]


def _res(**kw: Any) -> JobResources:
    base: dict[str, Any] = {"job_name": "j", "cpus": 2, "time_limit": "01:00:00", "mem": "3G"}
    return JobResources(**{**base, **kw})


@pytest.mark.parametrize(
    ("executor", "resources", "want"),
    [
        (
            PBSExecutor(),
            _res(),
            [
                "qsub",
                "-N",
                "j",
                "-l",
                "ncpus=2",
                "-l",
                "walltime=01:00:00",
                "-l",
                "mem=3G",
                "--",
                *CMD,
            ],
        ),
        (PBSExecutor(), _res(array="0-9"), ["-J", "0-9"]),
        (PBSExecutor(array_flag="-t"), _res(array="0-9"), ["-t", "0-9"]),
        (
            PBSExecutor(),
            _res(submit_options={"partition": "q1", "account": "a1"}),
            ["-q", "q1", "-A", "a1"],
        ),
        (PBSExecutor(), _res(submit_options={"depend": "afterany:1"}), ["-W", "depend=afterany:1"]),
        (
            LSFExecutor(),
            _res(array="1-4"),
            ["bsub", "-J", "j[1-4]", "-n", "2", "-W", "01:00:00", "-M", "3G", "python -m w 'a b'"],
        ),
        (
            LSFExecutor(),
            _res(submit_options={"queue": "q", "account": "g"}),
            ["-q", "q", "-G", "g"],
        ),
        (
            LSFExecutor(),
            _res(submit_options=LSFExecutor().dependency_options(["1", "2"])),
            ["-w", "ended(1) && ended(2)"],
        ),
        (
            SGEExecutor(),
            _res(array="1-3"),
            [
                "qsub",
                "-N",
                "j",
                "-pe",
                "smp",
                "2",
                "-l",
                "h_rt=01:00:00",
                "-l",
                "h_vmem=3G",
                "-cwd",
                "-V",
                "-t",
                "1-3",
                "-b",
                "y",
                "python -m w 'a b'",
            ],
        ),
        (SGEExecutor(), _res(submit_options={"dependency": "afterany:4:5"}), ["-hold_jid", "4,5"]),
        (
            FluxExecutor(),
            _res(array="0-3", submit_options={"partition": "p", "account": "b"}),
            [
                "flux",
                "submit",
                "--job-name",
                "j",
                "--cores",
                "2",
                "-t",
                "01:00:00",
                "--setattr=system.alloc.mem=3G",
                "--cc=0-3",
                "--queue",
                "p",
                "--setattr=system.bank=b",
                *CMD,
            ],
        ),
        (
            FluxExecutor(),
            _res(submit_options={"exclusive": True, "python": "x", "mode": "y"}),
            ["--exclusive"],
        ),
    ],
)
def test_command_lines(executor: Any, resources: JobResources, want: list[str]) -> None:
    argv = executor.argv(resources, CMD)
    if want[0] == argv[0]:
        assert argv == want
    else:  # a fragment, in order
        at = argv.index(want[0])
        assert argv[at : at + len(want)] == want, argv
    assert "--python" not in argv and "--mode" not in argv  # the executor's own keys


@pytest.mark.parametrize("name", sorted(EXECUTORS))
def test_dry_run_and_environment(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cls = EXECUTORS[name]
    monkeypatch.setenv("REFLOW_MODE", "dry-run")
    monkeypatch.setenv("REFLOW_PYTHON", "/opt/py/bin/python3")
    for var in ("REFLOW_QSUB", "REFLOW_BSUB", "REFLOW_FLUX"):
        monkeypatch.setenv(var, "/nonexistent/cmd")
    ex = cls.from_environment()
    assert ex.mode == "dry-run" and ex.python == "/opt/py/bin/python3"
    assert ex.submit(_res(), CMD) == "DRYRUN"
    assert ex.job_state("DRYRUN") is None
    ex.cancel("DRYRUN")
    monkeypatch.setenv("REFLOW_MODE", "sbatch")  # another scheduler's mode: this one's default
    assert cls.from_environment().mode != "dry-run"


@pytest.mark.parametrize(
    ("call", "error", "fragment"),
    [
        (lambda: PBSExecutor(mode="sbatch"), ParamError, "mode must be one of 'qsub'"),
        (lambda: PBSExecutor(array_flag="-x"), ParamError, "array_flag must be '-J'"),
        (lambda: LSFExecutor(bsub=""), ParamError, "bsub must be a non-empty string"),
        (lambda: FluxExecutor().submit(_res(), "echo hi"), ParamError, "command must be a"),
        (lambda: SGEExecutor().submit("cpus=2", CMD), ParamError, "resources must be a"),
        (
            lambda: PBSExecutor(qsub="/nonexistent/qsub").submit(_res(), CMD),
            WorkflowError,
            "cannot run '/nonexistent/qsub'",
        ),
        (
            lambda: LSFExecutor(bsub="true").submit(_res(), CMD),
            WorkflowError,
            "true did not take the job: no job id",
        ),
        (
            lambda: SGEExecutor(qsub="false").submit(_res(), CMD),
            WorkflowError,
            "false did not take the job: exit status 1",
        ),
        (
            lambda: PBSExecutor().submit(_res(submit_options={"a b": 1}), CMD),
            ParamError,
            "is not an option name",
        ),
        (
            lambda: FluxExecutor().argv(_res(submit_options={"x": {"y": 1}}), CMD),
            ParamError,
            "submit option 'x' must be",
        ),
        (lambda: PBSExecutor().job_state(""), ParamError, "job_id must be"),
    ],
)
def test_bad_input(call: Any, error: type, fragment: str) -> None:
    with pytest.raises(error) as info:
        call()
    assert fragment in str(info.value)


def test_state_of_unknown_job_and_missing_command(tmp_path: Path) -> None:
    install(tmp_path / "bin", "pbs")
    ex = PBSExecutor(qstat=str(tmp_path / "bin" / "qstat"))
    assert ex.job_state("999.standin") is None
    assert FluxExecutor(flux="/nonexistent/flux").job_state("ƒ2") is None


def _flow(kind: str) -> Workflow:
    wf = Workflow(f"standin-{kind}")

    @wf.job
    def items() -> list[int]:
        return [1, 2, 3]

    @wf.job(array=True)
    def cube(x: Annotated[int, Result(step="items")]) -> int:
        if kind == "dies" and x == 2:
            print("the node ran out of patience", file=sys.stderr, flush=True)
            os._exit(9)
        if kind == "sleep":
            time.sleep(60)
        return x**3

    return wf


@pytest.fixture(params=sorted(EXECUTORS))
def scheduler(request: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    install(tmp_path / "bin", request.param)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("REFLOW_MODE", raising=False)
    return str(request.param)


@pytest.mark.slow
def test_end_to_end_through_standins(scheduler: str, tmp_path: Path) -> None:
    ex = EXECUTORS[scheduler]()
    run = _flow("ok").run(tmp_path / "r", backend=ex)
    assert run["cube"] == [1, 8, 27]
    # by name: from_environment()
    run = _flow("dies").run(tmp_path / "r2", executor=scheduler, on_error="continue")
    text = run.steps["cube"].failures[1]
    assert f"{type(ex).__name__} job" in text and "ended FAILED" in text, text
    assert "the node ran out of patience" in text
    assert run.steps["cube"].done == 2


@pytest.mark.slow
def test_cancel_through_standins(scheduler: str, tmp_path: Path) -> None:
    run = _flow("sleep").submit(tmp_path / "r", executor=scheduler)
    state = tmp_path / "bin" / "state"
    deadline = time.monotonic() + 60
    while len(list(state.glob("*/pid"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    t0 = time.monotonic()
    run.cancel()
    run.wait(timeout=60)
    assert time.monotonic() - t0 < 20
    assert sorted(run.steps["cube"].skipped) == [0, 1, 2]
    assert len(list(state.glob("*/cancelled"))) == 3
    for pid_file in state.glob("*/pid"):
        deadline = time.monotonic() + 10
        while _alive(int(pid_file.read_text())) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(int(pid_file.read_text()))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_unknown_scheduler_names(tmp_path: Path) -> None:
    with pytest.raises(UnknownExecutorError, match="'pbs', 'lsf', 'sge', 'flux'"):
        _flow("ok").submit(tmp_path / "r", executor="torque")
