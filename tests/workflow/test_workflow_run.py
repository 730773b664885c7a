"""reflow.workflow runs: the Merkle cache, failures (stop / continue), processes, events,
array limits, retries and the command line."""

from __future__ import annotations

import contextlib
import os
import pickle
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest

from reflow.workflow import (
    Param,
    Result,
    Workflow,
    WorkflowError,
    WorkflowFailed,
)

HERE = Path(__file__).parent
ROOT = HERE.parents[1]


def _pipeline(calls: dict[str, int], *, version: str = "1", double_code: int = 2) -> Workflow:
    """load → count (array, cached) → scale (array, cached, version) → total (cached)."""
    wf = Workflow("cached")

    def bump(name: str, k: int = 1) -> None:
        calls[name] = calls.get(name, 0) + k

    @wf.job(cache=True)
    def load(n: int = 4) -> list[str]:
        bump("load")
        return ["x" * i for i in range(n)]

    @wf.job(array=True, cache=True)
    def count(s: Annotated[str, Result(step="load")]) -> int:
        bump("count")
        return len(s)

    if double_code == 2:

        @wf.job(array=True, cache=True, version=version)
        def scale(c: Annotated[int, Result(step="count")]) -> int:
            bump("scale")
            return c * 2

    else:

        @wf.job(array=True, cache=True, version=version)
        def scale(c: Annotated[int, Result(step="count")]) -> int:
            bump("scale")
            return c * 3

    @wf.job(cache=True)
    def total(xs: Annotated[list[int], Result(step="scale")]) -> int:
        bump("total")
        return sum(xs)

    return wf


def test_second_run_comes_from_the_cache(tmp_path: Path) -> None:
    calls: dict[str, int] = {}
    r1 = _pipeline(calls).run_local(tmp_path)
    assert r1["total"] == 12 and calls == {"load": 1, "count": 4, "scale": 4, "total": 1}
    r2 = _pipeline(calls).run_local(tmp_path)
    assert r2["total"] == 12
    assert calls == {"load": 1, "count": 4, "scale": 4, "total": 1}, "nothing ran again"
    assert {n: s.status for n, s in r2.steps.items()} == dict.fromkeys(r2.steps, "cached")
    assert r2.steps["count"].cached == 4


def test_a_version_bump_reruns_that_job_and_what_follows_only(tmp_path: Path) -> None:
    calls: dict[str, int] = {}
    _pipeline(calls).run_local(tmp_path)
    calls.clear()
    r = _pipeline(calls, version="2").run_local(tmp_path)
    assert calls == {"scale": 4, "total": 1}
    assert r.steps["count"].status == "cached" and r.steps["scale"].status == "done"


def test_a_code_change_reruns_that_job_and_what_follows(tmp_path: Path) -> None:
    calls: dict[str, int] = {}
    _pipeline(calls).run_local(tmp_path)
    calls.clear()
    r = _pipeline(calls, double_code=3).run_local(tmp_path)
    assert calls == {"scale": 4, "total": 1} and r["total"] == 18


def test_a_parameter_change_reruns_what_depends_on_it(tmp_path: Path) -> None:
    calls: dict[str, int] = {}
    _pipeline(calls).run_local(tmp_path)
    calls.clear()
    r = _pipeline(calls).run_local(tmp_path, params={"n": 5})
    # load reruns; the four old lines keep their element keys? no: a fan-out element's key
    # derives from its upstream result's key, so every element reruns
    assert calls == {"load": 1, "count": 5, "scale": 5, "total": 1}
    assert r["total"] == 20


@pytest.mark.parametrize(
    ("force", "expected"),
    [
        (True, {"load": 1, "count": 4, "scale": 4, "total": 1}),
        (["scale"], {"scale": 4}),
        ("total", {"total": 1}),
    ],
)
def test_force_recomputes(tmp_path: Path, force: Any, expected: dict[str, int]) -> None:
    calls: dict[str, int] = {}
    _pipeline(calls).run_local(tmp_path)
    calls.clear()
    r = _pipeline(calls).run_local(tmp_path, force=force)
    assert calls == expected and r["total"] == 12


def test_force_naming_a_missing_step_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError, match="do not exist: \\['nope'\\]"):
        _pipeline({}).run_local(tmp_path, force=["nope"])


@contextlib.contextmanager
def _results_db(run_dir: Path) -> Iterator[sqlite3.Connection]:
    """The run directory's result cache, opened as a user (or an attacker) could."""
    db = sqlite3.connect(run_dir / ".reflow-cache" / "results.sqlite", isolation_level=None)
    try:
        yield db
    finally:
        db.close()


def test_verify_recomputes_a_tampered_result_and_counts_it(tmp_path: Path) -> None:
    calls: dict[str, int] = {}
    _pipeline(calls).run_local(tmp_path)
    with _results_db(tmp_path) as db:
        rows = db.execute("SELECT key, data FROM results").fetchall()
        assert len(rows) == 1 + 4 + 4 + 1
        for key, data in rows:  # make every cached total wrong, keeping it valid pickle
            if pickle.loads(data) == 12:
                db.execute("UPDATE results SET data = ? WHERE key = ?", (pickle.dumps(999), key))
    calls.clear()
    unverified = _pipeline(calls).run_local(tmp_path)
    assert unverified["total"] == 999, "without verify the store is trusted"
    calls.clear()
    verified = _pipeline(calls).run_local(tmp_path, verify=True)
    assert verified["total"] == 12 and calls == {"total": 1}


def test_a_damaged_cache_entry_is_a_miss_not_a_crash(tmp_path: Path) -> None:
    calls: dict[str, int] = {}
    _pipeline(calls).run_local(tmp_path)
    with _results_db(tmp_path) as db:
        db.execute("UPDATE results SET data = ?", (b"\x80\x05garbage",))
    calls.clear()
    r = _pipeline(calls).run_local(tmp_path)
    assert r["total"] == 12 and calls == {"load": 1, "count": 4, "scale": 4, "total": 1}


def test_an_unpicklable_result_is_not_cached_and_the_run_still_works(tmp_path: Path) -> None:
    wf = Workflow("lock")

    @wf.job(cache=True)
    def make() -> Any:
        return threading.Lock()

    @wf.job(cache=False)  # cache=True is the default: this one's result would be cached
    def use(x: Annotated[Any, Result(step="make")]) -> str:
        return type(x).__name__

    r = wf.run_local(tmp_path)
    assert r["use"] == "lock"
    with _results_db(tmp_path) as db:
        assert db.execute("SELECT count(*) FROM results").fetchone() == (0,)


def _failing(on: set[int]) -> Workflow:
    wf = Workflow("fail")

    @wf.job
    def items() -> list[int]:
        return list(range(6))

    @wf.job(array=True)
    def risky(x: Annotated[int, Result(step="items")]) -> int:
        if x in on:
            raise ValueError(f"bad item {x}")
        return x * 10

    @wf.job(array=True)
    def after_risky(y: Annotated[int, Result(step="risky")]) -> int:
        return y + 1

    @wf.job
    def gather(ys: Annotated[list[int], Result(step="after_risky")]) -> int:
        return sum(ys)

    @wf.job
    def independent() -> str:
        return "fine"

    return wf


def test_on_error_stop_raises_with_the_report(tmp_path: Path) -> None:
    with pytest.raises(WorkflowFailed) as info:
        _failing({2}).run_local(tmp_path, max_workers=1)
    report = info.value.report
    assert "bad item 2" in str(info.value)
    assert report.steps["risky"].status == "failed"
    assert 2 in report.steps["risky"].failures
    assert report.steps["after_risky"].status == "skipped"
    assert report.steps["gather"].status == "skipped"
    assert not report.ok


def test_on_error_continue_fails_only_what_depends_on_the_failure(tmp_path: Path) -> None:
    r = _failing({1, 4}).run_local(tmp_path, on_error="continue")
    assert not r.ok
    assert r.steps["risky"].status == "partial"
    assert sorted(r.steps["risky"].failures) == [1, 4]
    assert "ValueError: bad item 4" in r.steps["risky"].failures[4]
    assert r["risky"] == [0, None, 20, 30, None, 50]
    assert r.steps["after_risky"].skipped == [1, 4]
    assert r["after_risky"] == [1, None, 21, 31, None, 51]
    assert r.steps["gather"].status == "skipped"
    assert "after_risky" in r.steps["gather"].reason
    assert r["independent"] == "fine"
    with pytest.raises(WorkflowError, match="'gather' has no result: it is skipped"):
        r["gather"]
    with pytest.raises(WorkflowFailed):
        r.raise_for_failures()


def test_a_failing_job_is_an_actor_failed_event(tmp_path: Path) -> None:
    wf = Workflow("ev")

    @wf.job
    def boom() -> int:
        raise RuntimeError("kaboom")

    @wf.job
    def after(x: Annotated[int, Result(step="boom")]) -> int:
        return x

    seen: list[Any] = []
    with pytest.raises(WorkflowFailed) as info:
        wf.run_local(tmp_path, on_network=lambda net: seen.append(net.events()))
    events = seen[0].drain()
    failed = [e for e in events if e["_type"] == "ActorFailed"]
    assert [e["actorId"] for e in failed] == ["boom"]
    assert "kaboom" in str(failed[0])
    assert info.value.report.steps["after"].reason == "step 'boom' failed"


def test_retries_call_again_after_an_exception(tmp_path: Path) -> None:
    attempts = {"n": 0}
    wf = Workflow("retry")

    @wf.job(retries=2)
    def flaky() -> str:
        attempts["n"] += 1
        if attempts["n"] < 3:
            raise ConnectionError("try again")
        return "ok"

    assert wf.run_local(tmp_path)["flaky"] == "ok" and attempts["n"] == 3


@pytest.mark.parametrize("limit", [1, 3])
def test_array_limit_bounds_how_many_elements_run_at_once(tmp_path: Path, limit: int) -> None:
    lock = threading.Lock()
    now = {"in": 0, "peak": 0}
    wf = Workflow("limit")

    @wf.job
    def items() -> list[int]:
        return list(range(12))

    @wf.job(array=True, array_limit=limit)
    def slow(x: Annotated[int, Result(step="items")]) -> int:
        with lock:
            now["in"] += 1
            now["peak"] = max(now["peak"], now["in"])
        time.sleep(0.01)
        with lock:
            now["in"] -= 1
        return x

    r = wf.run_local(tmp_path, max_workers=6)
    assert r["slow"] == list(range(12))
    assert now["peak"] <= limit
    assert now["peak"] == limit, "the limit is also reached (the elements do run in parallel)"


def test_max_workers_threads_run_elements_in_parallel(tmp_path: Path) -> None:
    wf = Workflow("par")

    @wf.job
    def items() -> list[int]:
        return list(range(8))

    @wf.job(array=True, array_limit=8)
    def nap(x: Annotated[int, Result(step="items")]) -> int:
        time.sleep(0.2)
        return x

    t0 = time.perf_counter()
    wf.run_local(tmp_path, max_workers=8)
    assert time.perf_counter() - t0 < 8 * 0.2 * 0.75, "8 sleeps of 0.2 s overlapped"


def test_processes_run_elements_in_other_processes(tmp_path: Path) -> None:
    sys.path.insert(0, str(HERE))
    try:
        import wfjobs
    finally:
        sys.path.remove(str(HERE))
    r = wfjobs.wf.run_local(tmp_path, processes=True, max_workers=2)
    assert r["collect"] == [x * x for x in range(8)]
    pids = {pid for _, pid in r["square"]}
    assert os.getpid() not in pids


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"on_error": "ignore"}, "on_error must be"),
        ({"max_workers": 0}, "max_workers must be"),
        ({"max_workers": True}, "max_workers must be"),
    ],
)
def test_bad_run_options(tmp_path: Path, kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(WorkflowError, match=fragment):
        _pipeline({}).run_local(tmp_path, **kwargs)


# ---------------------------------------------------------------------- the command line

SCRIPT = """
import sys
from typing import Annotated, Literal
from reflow.workflow import Workflow, Result, Param

wf = Workflow("script", description="count words of a file")

@wf.job
def read(source: Annotated[str, Param(help="a text file", short="-s")]) -> list[str]:
    return open(source).read().split()

@wf.job(array=True, cache=True)
def norm(word: Annotated[str, Result(step="read")],
         case: Literal["lower", "upper"] = "lower") -> str:
    return word.lower() if case == "lower" else word.upper()

@wf.job
def count(words: Annotated[list[str], Result(step="norm")],
          unique: bool = False,
          top: Annotated[int, Param(namespace="local", help="how many to show")] = 2) -> str:
    ws = sorted(set(words)) if unique else words
    print("RESULT", len(ws), ws[:top])
    return str(len(ws))

if __name__ == "__main__":
    raise SystemExit(wf.cli())
"""


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "pipeline.py"
    script.write_text(SCRIPT)
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )


def test_cli_runs_from_parameters(tmp_path: Path) -> None:
    data = tmp_path / "data.txt"
    data.write_text("B a b A c")
    p = _cli(tmp_path, "--source", str(data), "--unique", "--count-top", "3", "--case", "upper")
    assert p.returncode == 0, p.stderr
    assert "RESULT 3 ['A', 'B', 'C']" in p.stdout
    assert "norm" in p.stdout and "5 elements" in p.stdout
    p2 = _cli(tmp_path, "-s", str(data), "--unique", "--case", "upper")
    assert p2.returncode == 0 and "5 cached" in p2.stdout, p2.stdout


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        ((), 2, "the following arguments are required: -s/--source"),
        (("-s", "x", "--case", "title"), 2, "invalid choice: 'title'"),
        (("-s", "x", "--count-top", "many"), 2, "invalid int value"),
        (("-s", "/no/such/file.txt"), 1, "FileNotFoundError"),
    ],
)
def test_cli_bad_input(tmp_path: Path, args: tuple[str, ...], code: int, fragment: str) -> None:
    p = _cli(tmp_path, *args)
    assert p.returncode == code, (p.stdout, p.stderr)
    assert fragment in p.stderr + p.stdout


def test_cli_help_and_list(tmp_path: Path) -> None:
    h = _cli(tmp_path, "--help")
    assert h.returncode == 0
    for f in (
        "count words of a file",
        "-s SOURCE, --source SOURCE",
        "a text file",
        "--unique, --no-unique",
        "{lower,upper}",
        "--count-top",
        "how many to show",
        "--run-dir",
        "--force",
    ):
        assert f in h.stdout, f
    lst = _cli(tmp_path, "-s", "x", "--list")
    assert lst.returncode == 0
    assert "norm [array job]: word <- fanout read" in lst.stdout
    assert "count [job]: words <- gather norm" in lst.stdout


def test_cli_literal_param_type_is_enforced_from_python_too(tmp_path: Path) -> None:
    wf = Workflow("lit")

    @wf.job
    def pick(mode: Literal["a", "b"] = "a") -> str:
        return mode

    assert wf.cli(["--run-dir", str(tmp_path), "--mode", "b"]) == 0
    with pytest.raises(SystemExit) as info:
        wf.cli(["--run-dir", str(tmp_path), "--mode", "c"])
    assert info.value.code == 2
    assert Param(help="x").namespace is None
