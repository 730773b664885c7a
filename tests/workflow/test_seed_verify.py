"""A job's ``verify=`` (reflow-hpc's cache docs): with ``verify=True`` a cached result is reused
only while ``verify(value)`` says it is still valid — by default, for a ``Path`` or
``list[Path]`` result, while the files exist — else the job runs again; a ``verify`` that
raises fails the job with an error naming it. Without ``verify=True`` the cache is trusted,
as in reflow-hpc."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pytest

from reflow.workflow import Result, RunDir, Workflow, WorkflowFailed


def _file_wf(calls: list[str], verify: Any = None) -> Workflow:
    wf = Workflow("verify")

    @wf.job(verify=verify)
    def make(run_dir: RunDir) -> Path:
        calls.append("make")
        out = Path(run_dir) / "out.txt"
        out.write_text("data")
        return out

    return wf


def test_a_path_result_that_is_gone_runs_again(tmp_path: Path) -> None:
    calls: list[str] = []
    wf = _file_wf(calls)
    first = wf.run_local(tmp_path)
    assert calls == ["make"]
    first.result("make").unlink()
    trusted = wf.run_local(tmp_path)  # no verify=True: the cache is trusted
    assert calls == ["make"] and trusted.steps["make"].status == "cached"
    checked = wf.run_local(tmp_path, verify=True)
    assert calls == ["make", "make"] and checked.steps["make"].status == "done"
    assert checked.result("make").is_file()
    again = wf.run_local(tmp_path, verify=True)  # the file is there: reused
    assert calls == ["make", "make"] and again.steps["make"].status == "cached"


@pytest.mark.parametrize(
    ("verify", "reruns"),
    [
        (lambda value: False, True),
        (lambda value: True, False),
        (lambda value: 0, True),  # falsy is invalid, as bool(verify(value)) in reflow-hpc
        (lambda value: Path(value).stat().st_size > 100, True),
        (lambda value: Path(value).read_text() == "data", False),
    ],
    ids=["false", "true", "falsy", "too-small", "content-ok"],
)
def test_verify_decides(tmp_path: Path, verify: Any, reruns: bool) -> None:
    calls: list[str] = []
    wf = _file_wf(calls, verify)
    wf.run_local(tmp_path)
    run = wf.run_local(tmp_path, verify=True)
    assert len(calls) == (2 if reruns else 1)
    assert run.steps["make"].status == ("done" if reruns else "cached")


class Broken:
    def __bool__(self) -> bool:
        raise RuntimeError("no truth value")


@pytest.mark.parametrize(
    ("verify", "fragments"),
    [
        (lambda value: 1 / 0, ["job 'make'", "verify", "ZeroDivisionError"]),
        (lambda: True, ["job 'make'", "verify", "TypeError"]),
        (lambda value: Broken(), ["job 'make'", "verify", "no truth value"]),
        (lambda value: (_ for _ in ()).throw(KeyError("k")), ["job 'make'", "KeyError"]),
    ],
    ids=["raises", "wrong-arity", "bad-bool", "keyerror"],
)
def test_verify_that_raises_fails_the_job(
    tmp_path: Path, verify: Any, fragments: list[str]
) -> None:
    calls: list[str] = []
    wf = _file_wf(calls, verify)
    wf.run_local(tmp_path)
    with pytest.raises(WorkflowFailed) as info:
        wf.run_local(tmp_path, verify=True)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    assert calls == ["make"]


def test_array_elements_are_verified_one_by_one(tmp_path: Path) -> None:
    ran: list[int] = []
    wf = Workflow("verify-array")

    @wf.job
    def items() -> list[int]:
        return [1, 2, 3, 4]

    @wf.job(array=True, verify=lambda value: value != 20)
    def times_ten(x: Annotated[int, Result(step="items")]) -> int:
        ran.append(x)
        return x * 10

    wf.run_local(tmp_path)
    assert sorted(ran) == [1, 2, 3, 4]
    ran.clear()
    run = wf.run_local(tmp_path, verify=True)
    assert ran == [2]
    assert run.result("times_ten") == [10, 20, 30, 40]
    rep = run.steps["times_ten"]
    assert (rep.cached, rep.ran) == (3, 1)


def test_list_of_paths_checks_every_file(tmp_path: Path) -> None:
    ran: list[str] = []
    wf = Workflow("verify-list")

    @wf.job
    def files(run_dir: RunDir) -> list[Path]:
        ran.append("files")
        out = []
        for name in ("a", "b"):
            p = Path(run_dir) / name
            p.write_text(name)
            out.append(p)
        return out

    wf.run_local(tmp_path)
    wf.run_local(tmp_path, verify=True)
    assert ran == ["files"]
    (tmp_path / "b").unlink()
    wf.run_local(tmp_path, verify=True)
    assert ran == ["files", "files"] and (tmp_path / "b").is_file()


def test_non_path_results_are_trusted(tmp_path: Path) -> None:
    ran: list[str] = []
    wf = Workflow("verify-plain")

    @wf.job
    def number() -> int:
        ran.append("n")
        return 3

    wf.run_local(tmp_path)
    assert wf.run_local(tmp_path, verify=True).steps["number"].status == "cached"
    assert ran == ["n"]
