"""The run index (``reflow.workflow._index.RunIndex``) against real SQLite files in temporary
directories: records from several processes at once, a run attached from another process, a
run whose owner was killed, close-match errors, a damaged file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import pytest

from reflow import ReflowError
from reflow.workflow import Result, Run, RunIndex, RunIndexError, RunNotFoundError, Workflow

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))


def _snap(run_id: str, **kw: Any) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "workflow": kw.pop("workflow", "wf"),
        "run_dir": "/tmp/x",
        "params": {},
        "backend": "local",
        "status": kw.pop("status", "succeeded"),
        "created": kw.pop("created", datetime.now(UTC).isoformat()),
        "updated": datetime.now(UTC).isoformat(),
        "steps": {},
        "failed_instances": {},
        **kw,
    }


def flow() -> Workflow:
    """The workflow the child processes below define too (they import this module)."""
    wf = Workflow("idx")

    @wf.job()
    def items(n: int = 4, sleep: float = 0.0, fail: int = -1) -> list[int]:
        time.sleep(sleep)
        return list(range(n))

    @wf.job(array=True)
    def work(x: Annotated[int, Result(step="items")], fail: int = -1) -> int:
        if x == fail:
            raise RuntimeError(f"element {x} failed")
        return x + 1

    return wf


def _child(code: str, *args: str, wait: bool = True) -> Any:
    script = f"import sys; sys.path.insert(0, {str(HERE)!r})\n" + textwrap.dedent(code)
    env = {**os.environ}
    cmd = [sys.executable, "-c", script, *args]
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


# ---------------------------------------------------------------------- the record


def test_default_file_is_under_the_cache_dir(tmp_path: Path) -> None:
    assert RunIndex().path == tmp_path / "cache" / "workflow-runs.sqlite"


def test_put_get_and_list_filters(tmp_path: Path) -> None:
    idx = RunIndex(tmp_path / "i.sqlite")
    day = datetime(2026, 3, 1, tzinfo=UTC)
    for i in range(6):
        idx.put(
            _snap(
                f"wf-2026030{i + 1}-000{i}",
                workflow="a" if i % 2 else "b",
                status="failed" if i == 3 else "succeeded",
                created=(day + timedelta(days=i)).isoformat(),
            )
        )
    idx.put(_snap("wf-20260306-0005", workflow="b", status="succeeded", note="replaced"))
    assert idx.get("wf-20260306-0005")["note"] == "replaced", "put is an upsert"
    runs = idx.list()
    assert len(runs) == 6
    created = [r["created"] for r in runs]
    assert created == sorted(created, reverse=True), "newest first"
    assert {r["workflow"] for r in idx.list(workflow="a")} == {"a"}
    assert [r["run_id"] for r in idx.list(status="failed")] == ["wf-20260304-0003"]
    since = idx.list(since=day + timedelta(days=2), until=day + timedelta(days=4))
    assert [r["run_id"] for r in since] == ["wf-20260304-0003", "wf-20260303-0002"]
    assert len(idx.list(limit=2)) == 2 and idx.list(limit=0) == []


@pytest.mark.parametrize(
    ("call", "error", "fragment"),
    [
        (lambda i: i.get("wf-20260101-abcx"), RunNotFoundError, "did you mean 'wf-20260101-abcd'"),
        (lambda i: i.get("zzz"), RunNotFoundError, "no run 'zzz'"),
        (lambda i: i.get(42), RunNotFoundError, "a run id is a string"),
        (lambda i: i.list(status="DONE"), RunIndexError, "status must be one of"),
        (lambda i: i.list(limit=-1), RunIndexError, "limit must be an integer >= 0"),
        (lambda i: i.list(since="not a date"), RunIndexError, "ISO-8601"),
        (lambda i: i.list(until=3), RunIndexError, "until must be a datetime"),
        (lambda i: i.put({"status": "running"}), RunIndexError, "string 'run_id'"),
        (lambda i: i.put(_snap("r", status="done")), RunIndexError, "status must be one of"),
        (lambda i: i.put(_snap("r", params={"x": float("nan")})), RunIndexError, "JSON-safe"),
        (lambda i: i.put(_snap("r", params={"x": object()})) or i.get("r"), None, ""),
    ],
)
def test_bad_calls(call: Any, error: type[Exception] | None, fragment: str, tmp_path: Path) -> None:
    idx = RunIndex(tmp_path / "i.sqlite")
    idx.put(_snap("wf-20260101-abcd"))
    if error is None:
        call(idx)  # a value JSON cannot hold is written as its text
        return
    with pytest.raises(error) as info:
        call(idx)
    assert isinstance(info.value, ReflowError)
    assert fragment in str(info.value), str(info.value)


def test_unknown_id_is_a_key_error_listing_close_ids(tmp_path: Path) -> None:
    idx = RunIndex(tmp_path / "i.sqlite")
    for s in ("abcd", "abce", "ffff"):
        idx.put(_snap(f"wf-20261207-{s}"))
    with pytest.raises(KeyError) as info:
        idx.get("wf-20261207-abcf")
    err = info.value
    assert isinstance(err, RunNotFoundError)
    assert err.close[:2] == ["wf-20261207-abcd", "wf-20261207-abce"] or set(err.close) >= {
        "wf-20261207-abcd",
        "wf-20261207-abce",
    }
    assert not str(err).startswith("'"), "not quoted as a bare KeyError would be"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"this is not a database at all" * 100, "cannot be used"),
        (b"SQLite format 3\x00" + b"\xff" * 4000, "cannot be used"),
        (b"", None),  # an empty file is a new index
    ],
)
def test_a_damaged_file_is_a_clear_error(
    content: bytes, fragment: str | None, tmp_path: Path
) -> None:
    path = tmp_path / "i.sqlite"
    path.write_bytes(content)
    idx = RunIndex(path)
    t0 = time.perf_counter()
    if fragment is None:
        idx.put(_snap("a"))
        assert idx.get("a")["run_id"] == "a"
        return
    with pytest.raises(RunIndexError) as info:
        idx.put(_snap("a"))
    assert fragment in str(info.value) and str(path) in str(info.value)
    assert time.perf_counter() - t0 < 5


def test_an_explicit_index_that_cannot_be_used_fails_the_run_before_it_starts(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "i.sqlite"
    bad.write_bytes(b"garbage" * 500)
    with pytest.raises(RunIndexError):
        flow().run_local(tmp_path / "r", store_path=bad)
    assert not (tmp_path / "r").exists()


def test_a_default_index_that_cannot_be_used_does_not_stop_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ro").write_text("a file where the cache dir should be")
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "ro"))
    run = flow().run_local(tmp_path / "r")
    assert run.ok and run["work"] == [1, 2, 3, 4]


# ---------------------------------------------------------------------- processes


WRITER = """
import sys
from reflow.workflow import RunIndex
idx = RunIndex(sys.argv[1])
for i in range(int(sys.argv[3])):
    idx.put({"run_id": f"{sys.argv[2]}-{i}", "workflow": sys.argv[2], "status": "running",
             "steps": {}, "failed_instances": {}})
    idx.put({"run_id": f"{sys.argv[2]}-{i}", "workflow": sys.argv[2], "status": "succeeded",
             "steps": {}, "failed_instances": {}})
    idx.list(limit=5)
print("ok")
"""


def test_two_processes_writing_and_reading_at_once(tmp_path: Path) -> None:
    path = tmp_path / "i.sqlite"
    procs = [_child(WRITER, str(path), name, "150", wait=False) for name in ("p", "q")]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    idx = RunIndex(path)
    assert len(idx.list(workflow="p")) == len(idx.list(workflow="q")) == 150
    assert {r["status"] for r in idx.list()} == {"succeeded"}


ATTACH = """
import json, sys
from test_hpc_index import flow
from reflow.workflow import Run
run = Run.attach(flow(), sys.argv[1], store_path=sys.argv[2])
snap = run.status(as_dict=True)
if sys.argv[3] == "retry":
    run.retry()
    snap = run.status(as_dict=True)
    print(json.dumps({"status": snap["status"], "work": run["work"]}))
else:
    print(json.dumps(snap))
"""


def test_attach_from_another_process_reads_status_and_retries(tmp_path: Path) -> None:
    idx = tmp_path / "i.sqlite"
    run = flow().run_local(tmp_path / "r", fail=2, on_error="continue", store_path=idx)
    snap = json.loads(_child(ATTACH, run.run_id, str(idx), "status"))
    assert snap["status"] == "failed" and snap["failed_instances"] == {"work": [2]}
    assert snap["params"] == {"n": 4, "sleep": 0.0, "fail": 2}
    assert "element 2 failed" in snap["steps"]["work"]["errors"][0]["error"]
    # retried there with the same parameters: it fails the same way, same id, same dir
    again = json.loads(_child(ATTACH, run.run_id, str(idx), "retry").splitlines()[-1])
    assert again == {"status": "failed", "work": [1, 2, None, 4]}
    assert RunIndex(idx).get(run.run_id)["run_dir"] == str(tmp_path / "r")


LONG = """
import sys
from test_hpc_index import flow
print("go", flush=True)
flow().run_local(sys.argv[1], store_path=sys.argv[2], sleep=60.0)
"""


def _start_long(tmp_path: Path) -> tuple[Any, str, Path]:
    idx = tmp_path / "i.sqlite"
    proc = _child(LONG, str(tmp_path / "r"), str(idx), wait=False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if idx.exists():
            runs = RunIndex(idx).list()
            items = runs[0]["steps"].get("items", {}) if runs else {}
            if items.get("state") == "running":  # the job has started (a later write)
                return proc, runs[0]["run_id"], idx
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the child never recorded its run")


def test_a_run_whose_owner_was_killed_reads_as_failed(tmp_path: Path) -> None:
    proc, run_id, idx = _start_long(tmp_path)
    try:
        live = Run.attach(flow(), run_id, store_path=idx)
        assert live.status(as_dict=True)["status"] == "running" and not live.done()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        snap = live.status(as_dict=True)
        assert snap["status"] == "failed"
        assert f"pid {proc.pid}" in snap["note"] and "is gone" in snap["note"]
        assert snap["steps"]["items"]["state"] == "failed"
        assert live.done()
        assert RunIndex(idx).get(run_id)["status"] == "running", "the record is left as found"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_cancel_through_the_index_stops_a_run_of_another_process(tmp_path: Path) -> None:
    proc, run_id, idx = _start_long(tmp_path)
    try:
        Run.attach(flow(), run_id, store_path=idx).cancel()
        # the job sleeps 60 s and a thread cannot be killed: the run ends cancelled when it
        # returns; what is bounded is that it is marked and starts nothing more
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if RunIndex(idx).get(run_id).get("cancel_requested"):
                break
            time.sleep(0.1)
        assert RunIndex(idx).get(run_id)["cancel_requested"] is True
    finally:
        proc.kill()
        proc.wait(10)


def test_attach_in_the_owning_process_gives_the_live_handle(tmp_path: Path) -> None:
    idx = tmp_path / "i.sqlite"
    run = flow().submit(tmp_path / "r", store_path=idx, sleep=0.3)
    assert Run.attach(flow(), run.run_id, store_path=idx) is run
    run.wait(30)
    rec = RunIndex(idx).get(run.run_id)
    assert rec["status"] == "succeeded" and rec["owner"]["pid"] == os.getpid()


def test_attach_to_a_run_of_another_workflow_is_refused(tmp_path: Path) -> None:
    idx = RunIndex(tmp_path / "i.sqlite")
    idx.put(_snap("other-20261207-aaaa", workflow="other"))
    with pytest.raises(ReflowError, match="a run of workflow 'other', not of 'idx'"):
        Run.attach(flow(), "other-20261207-aaaa", store_path=idx.path)


def test_progress_is_recorded_while_a_run_goes(tmp_path: Path) -> None:
    idx = tmp_path / "i.sqlite"
    wf = Workflow("prog")

    @wf.job()
    def items() -> list[int]:
        return list(range(12))

    @wf.job(array=True, array_limit=1)
    def slow(x: Annotated[int, Result(step="items")]) -> int:
        time.sleep(0.1)
        return x

    run = wf.submit(tmp_path / "r", store_path=idx)
    seen: set[int] = set()
    while not run.done():
        rec = RunIndex(idx).get(run.run_id)
        seen.add(rec["steps"].get("slow", {}).get("done", 0))
        time.sleep(0.05)
    run.wait(30)
    assert len(seen - {0, 12}) >= 2, f"intermediate counts were recorded: {sorted(seen)}"
    assert RunIndex(idx).get(run.run_id)["steps"]["slow"]["done"] == 12


def test_the_record_of_a_run_with_many_large_failures_is_bounded(tmp_path: Path) -> None:
    idx = tmp_path / "i.sqlite"
    wf = Workflow("many")

    @wf.job()
    def items() -> list[int]:
        return list(range(2000))

    @wf.job(array=True)
    def bad(x: Annotated[int, Result(step="items")]) -> int:
        raise ValueError("e" * 10_000)

    t0 = time.monotonic()
    run = wf.run_local(tmp_path / "r", on_error="continue", store_path=idx)
    assert time.monotonic() - t0 < 60
    rec = RunIndex(idx).get(run.run_id)
    step = rec["steps"]["bad"]
    assert step["failed"] == 2000 and len(rec["failed_instances"]["bad"]) == 2000
    assert len(step["errors"]) == 100 and step["errors_left_out"] == 1900
    assert all(len(e["error"]) <= 4000 for e in step["errors"])
    assert len(json.dumps(rec)) < 1_000_000
