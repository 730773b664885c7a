"""Issue #15: the last reflow-hpc behaviours (state groups and str(), __version__, Result's repr
and steps=+broadcast, SlurmExecutor.from_environment, Run by hand / Run.store, cancel_run over
instances written through a SqliteStore), each a table row; bad input a ReflowError naming it."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Annotated, Any

import pytest

import reflow
from reflow import ReflowError
from reflow.workflow import (
    Config,
    LocalExecutor,
    ParamError,
    Result,
    Run,
    RunState,
    RunStateError,
    SlurmExecutor,
    SqliteStore,
    StepNotFoundError,
    TaskState,
    Workflow,
)
from reflow.workflow import __version__ as wf_version
from reflow.workflow._errors import MarkerError

T = TaskState


@pytest.mark.parametrize(
    ("group", "members"),
    [
        (T.terminal, {T.SUCCESS, T.FAILED, T.CANCELLED}),
        (T.active, {T.PENDING, T.SUBMITTED, T.RUNNING, T.RETRYING}),
        (T.cancellable, {T.PENDING, T.SUBMITTED, T.RUNNING}),
        (T.retriable, {T.FAILED, T.CANCELLED}),
    ],
)
def test_state_groups(group: Any, members: set[TaskState]) -> None:
    got = group()
    assert got == members and isinstance(got, frozenset)


@pytest.mark.parametrize(
    ("state", "as_str", "formatted"),
    [
        (T.PENDING, "TaskState.PENDING", "PENDING"),
        (T.RETRYING, "TaskState.RETRYING", "RETRYING"),
        (RunState.SUCCESS, "RunState.SUCCESS", "SUCCESS"),
    ],
)
def test_state_str_and_format(state: Any, as_str: str, formatted: str) -> None:
    assert str(state) == as_str
    assert f"{state}" == formatted and f"{state:>10}" == formatted.rjust(10)
    assert state == formatted and state.value == formatted


def test_version() -> None:
    assert wf_version == reflow.__version__


@pytest.mark.parametrize(
    ("marker", "text"),
    [
        (Result("foo"), "Result(step='foo')"),
        (Result(step="foo", broadcast=True), "Result(step='foo', broadcast=True)"),
        (Result(steps=["a", "b"]), "Result(steps=['a', 'b'])"),
        (Result(steps=("a", "b"), broadcast=True), "Result(steps=['a', 'b'], broadcast=True)"),
    ],
)
def test_result_repr(marker: Result, text: str) -> None:
    assert repr(marker) == text
    assert eval(text) == marker  # the repr is the call that makes it


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({}, "exactly one of step"),
        ({"step": "a", "steps": ["b"]}, "exactly one of step"),
        ({"steps": []}, "names no step"),
        ({"steps": "ab"}, "list of step names"),
        ({"step": "a", "broadcast": "yes"}, "True or False"),
    ],
)
def test_result_bad(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(MarkerError, match=fragment):
        Result(**kwargs)


def test_concat_broadcast_gives_every_element_the_list(tmp_path: Path) -> None:
    wf = Workflow("cb")

    @wf.job
    def a() -> list[int]:
        return [1, 2]

    @wf.job
    def b() -> int:
        return 3

    @wf.job(array=True)
    def each(
        x: Annotated[int, Result(step="a")],
        whole: Annotated[list[int], Result(steps=["a", "b"], broadcast=True)],
    ) -> int:
        return x * 100 + sum(whole)

    assert wf.tasks["each"].result_deps["whole"] == Result(steps=["a", "b"], broadcast=True)
    assert wf.tasks["each"].result_deps["x"] == Result("a")
    run = wf.run_local(run_dir=tmp_path / "r")
    assert run.result("each") == [106, 206]


@pytest.mark.parametrize(
    ("env", "config", "want"),
    [
        ({}, Config(), ("sbatch", "sbatch", "scancel", "sacct")),
        (
            {"REFLOW_MODE": " Dry-Run ", "REFLOW_SBATCH": "/c/sbatch", "REFLOW_SACCT": "/c/sacct"},
            None,
            ("dry-run", "/c/sbatch", "scancel", "/c/sacct"),
        ),
        (
            {},
            Config({"executor": {"mode": "dry-run", "scancel": "/x/scancel"}}),
            ("dry-run", "sbatch", "/x/scancel", "sacct"),
        ),
        (
            {"REFLOW_MODE": "sbatch"},
            Config({"executor": {"mode": "dry-run"}}),
            ("sbatch", "sbatch", "scancel", "sacct"),
        ),
    ],
)
def test_from_environment(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], config: Any, want: tuple[str, ...]
) -> None:
    for k in list(os.environ):
        if k.startswith("REFLOW_"):
            monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    ex = SlurmExecutor.from_environment(config)
    assert (ex.mode, ex.sbatch, ex.scancel, ex.sacct) == want


@pytest.mark.parametrize(
    ("env", "config", "cls", "fragment"),
    [
        ({"REFLOW_MODE": "qsub-pbs"}, Config(), ParamError, "takes 'sbatch' or 'dry-run'"),
        ({"REFLOW_MODE": "x" * 10_000}, Config(), ParamError, "takes 'sbatch' or 'dry-run'"),
        ({}, Config({"executor": {"mode": "bsub"}}), ParamError, "'bsub'"),
        ({}, {"executor": {}}, ParamError, "takes a Config"),
        ({}, "config.toml", ParamError, "takes a Config"),
    ],
)
def test_from_environment_bad(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], config: Any, cls: type, fragment: str
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(cls, match=fragment) as got:
        SlurmExecutor.from_environment(config)
    assert isinstance(got.value, ReflowError) and len(str(got.value)) < 400


def _wf() -> Workflow:
    wf = Workflow("hand")

    @wf.job
    def step_a() -> str:
        return "ok"

    return wf


def _store(tmp_path: Path) -> SqliteStore:
    st = SqliteStore(tmp_path / "manifest.db")
    st.init()
    return st


def test_run_by_hand_status_and_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    st = _store(tmp_path)
    st.insert_run("r1", "hand", "", {"x": 1})
    iid = st.insert_task_instance("r1", "step_a", None, TaskState.SUBMITTED, {})
    st.update_task_failed(iid, "ValueError: oops\nline two")
    run = Run(_wf(), "r1", tmp_path, st)
    assert run.store is st
    assert run.store.get_run_parameters("r1") == {"x": 1}
    assert repr(run).startswith("Run(workflow='hand', run_id='r1'")
    run.status()
    out = capsys.readouterr().out
    assert "FAILED" in out and "ValueError: oops" in out and "line two" not in out
    run.status(errors=True)
    assert "line two" in capsys.readouterr().out
    info = run.status(as_dict=True)
    assert info is not None and [i["state"] for i in info["failed_instances"]] == ["FAILED"]


def test_run_store_of_a_local_run(tmp_path: Path) -> None:
    wf = _wf()
    run = wf.run_local(run_dir=tmp_path / "r", store=SqliteStore(tmp_path / "idx.sqlite"))
    assert run.store is not None and run.store.get_run(run.run_id)["status"] == "SUCCESS"
    assert "Run(" in repr(run) and run.run_id in repr(run)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"store": "runs.db"}, "must be a SqliteStore or RunIndex"),
        ({"store": 3}, "must be a SqliteStore or RunIndex"),
    ],
)
def test_run_by_hand_bad(tmp_path: Path, kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(RunStateError, match=fragment):
        Run(_wf(), "r1", tmp_path, **kwargs)


def _fake_scancel(tmp_path: Path) -> Path:
    log = tmp_path / "scancel.log"
    exe = tmp_path / "scancel"
    exe.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe


@pytest.mark.parametrize(
    ("task_name", "count", "run_status", "instance_states"),
    [
        (None, 2, "CANCELLED", ["CANCELLED", "CANCELLED", "SUCCESS"]),
        ("step_a", 2, "RUNNING", ["CANCELLED", "CANCELLED", "SUCCESS"]),
        ("step_b", 0, "RUNNING", ["SUBMITTED", "RUNNING", "SUCCESS"]),
    ],
)
def test_cancel_hand_written(
    tmp_path: Path,
    task_name: str | None,
    count: int,
    run_status: str,
    instance_states: list[str],
) -> None:
    wf = Workflow("hand")
    st = _store(tmp_path)
    st.insert_run("r1", "hand", "", {})
    st.insert_task_instance("r1", "step_a", 0, TaskState.PENDING, {})
    st.insert_task_instance("r1", "step_a", 1, TaskState.PENDING, {})
    st.update_task_submitted("r1", "step_a", "4242")
    st.update_task_running(2)
    done = st.insert_task_instance("r1", "step_b", None, TaskState.RUNNING, {})
    st.update_task_success(done, "out")
    ex = SlurmExecutor(scancel=str(_fake_scancel(tmp_path)))
    assert wf.cancel_runs(["r1"], st, task_name=task_name, executor=ex) == count
    assert st.get_run("r1")["status"] == run_status
    assert [i["state"] for i in st.list_task_instances("r1")] == instance_states
    calls = (tmp_path / "scancel.log").read_text().split() if count else []
    assert calls == (["4242"] if count else [])  # one job id, cancelled once


@pytest.mark.parametrize(
    ("kwargs", "cls", "fragment"),
    [
        ({"task_name": "step_x"}, StepNotFoundError, "no task 'step_x'"),
        ({"task_name": "stepa"}, StepNotFoundError, "Did you mean 'step_a'"),
        ({"task_name": 3}, ParamError, "task_name must be a step name"),
        ({"task_name": "a", "task": "b"}, ParamError, "not both"),
        ({"executor": "slurm"}, RunStateError, "must be an Executor"),
        ({"executor": LocalExecutor}, RunStateError, "must be an Executor"),
    ],
)
def test_cancel_bad(tmp_path: Path, kwargs: dict[str, Any], cls: type, fragment: str) -> None:
    st = _store(tmp_path)
    st.insert_run("r1", "hand", "", {})
    st.insert_task_instance("r1", "step_a", None, TaskState.SUBMITTED, {})
    with pytest.raises(cls, match=fragment):
        Workflow("hand").cancel_run("r1", st, **kwargs)
    assert st.get_task_instance("r1", "step_a")["state"] == "SUBMITTED"  # nothing done
