"""A running run's watcher thread (``workflow/_handle.py``) writes the record and polls the run
index for another process's cancel through ONE SQLite connection kept for the run, not one per
poll: the connections a run opens are a small constant, whatever its length. A cancel asked
from another process (a real subprocess calling ``Run.attach(...).cancel()``) still stops the
run within a bounded time, and the watcher's connection is closed when the run ends."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest

from reflow import ReflowError
from reflow.workflow import Result, RunIndex, RunIndexError, Workflow
from reflow.workflow._index import IndexConnection

#: what a run opens on the index at most, however long it runs: the start (the id check,
#: clearing an old cancel, the first write), the watcher's own one, and slack for the end
MAX_CONNECTIONS = 8


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))


class _Tracked(sqlite3.Connection):
    closed = False

    def close(self) -> None:
        self.closed = True
        super().close()


class Opened:
    """Counts (and keeps) the connections opened on one file, through the real
    ``sqlite3.connect`` (with a connection class that notes its ``close()``)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.cons: list[_Tracked] = []

    def wrap(self, real: Callable[..., sqlite3.Connection]) -> Callable[..., sqlite3.Connection]:
        def connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
            if str(database) != self.path:
                return real(database, *args, **kwargs)
            con = real(database, *args, factory=_Tracked, **kwargs)
            assert isinstance(con, _Tracked)
            self.cons.append(con)
            return con

        return connect

    def all_closed(self) -> bool:
        return all(con.closed for con in self.cons)


@pytest.fixture
def opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Opened]:
    counter = Opened(tmp_path / "runs.sqlite")
    monkeypatch.setattr(sqlite3, "connect", counter.wrap(sqlite3.connect))
    yield counter


def flow() -> Workflow:
    wf = Workflow("poll")

    @wf.job()
    def items(n: int = 8) -> list[int]:
        return list(range(n))

    @wf.job(array=True, cache=False)
    def work(x: Annotated[int, Result(step="items")], nap: float = 0.05) -> int:
        time.sleep(nap)
        return x

    return wf


def _wait_closed(opened: Opened, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not opened.all_closed():
        assert time.monotonic() < deadline, "the watcher's connection was left open"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("elements", "nap"),
    [
        (10, 0.05),  # ~0.5 s: a handful of polls
        (40, 0.05),  # ~2 s: 8-16 polls and ~8 writes (a connection each, before)
    ],
)
def test_connections_a_run_opens_do_not_grow_with_its_length(
    tmp_path: Path, opened: Opened, elements: int, nap: float
) -> None:
    t0 = time.monotonic()
    run = flow().run_local(
        tmp_path / "r",
        store_path=opened.path,
        max_workers=1,
        params={"n": elements, "nap": nap},
    )
    took = time.monotonic() - t0
    assert run.ok and run["work"] == list(range(elements))
    assert took >= elements * nap * 0.9
    assert len(opened.cons) <= MAX_CONNECTIONS, (len(opened.cons), took)
    _wait_closed(opened)
    record = RunIndex(opened.path).get(run.run_id)
    assert record["status"] == "SUCCESS" and record["steps"]["work"]["done"] == elements


CANCEL = """
import sys
from reflow.workflow import Run, Workflow
Run.attach(Workflow("poll"), sys.argv[1], store_path=sys.argv[2]).cancel()
"""


@pytest.mark.slow
def test_a_cancel_from_another_process_stops_the_run_in_bounded_time(
    tmp_path: Path, opened: Opened
) -> None:
    # 400 elements of 0.05 s on one worker: 20 s if nothing stopped it
    run = flow().submit(
        tmp_path / "r",
        store_path=opened.path,
        max_workers=1,
        params={"n": 400, "nap": 0.05},
    )
    try:
        deadline = time.monotonic() + 30
        while run.status(as_dict=True)["steps"]["work"]["done"] < 2:
            assert time.monotonic() < deadline, run.status(as_dict=True)
            time.sleep(0.05)
        child = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(CANCEL), run.run_id, opened.path],
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert child.returncode == 0, child.stdout + child.stderr
        assert "Cancelled" in child.stdout
        asked = time.monotonic()
        run.wait(timeout=15)  # a cancelled run ends CANCELLED, not raising
        stopped = time.monotonic() - asked
    finally:
        if not run.done():
            run.cancel()
            with contextlib.suppress(ReflowError):
                run.wait(timeout=60)
    # one chunk in flight (25 elements of 0.05 s) plus a poll: well under the 20 s it had left
    assert stopped < 10, stopped
    snap = run.status(as_dict=True)
    assert snap["status"] == "CANCELLED" and snap["note"] == "cancelled through the run index"
    assert snap["steps"]["work"]["done"] < 400
    assert len(opened.cons) <= MAX_CONNECTIONS + 2  # + the child's reads are its own process
    _wait_closed(opened)


@pytest.mark.parametrize(
    ("closed", "act", "error", "fragment"),
    [
        (True, lambda c: c.put({"run_id": "x", "status": "RUNNING"}), RunIndexError, "is closed"),
        (True, lambda c: c.cancel_requested("x"), RunIndexError, "is closed"),
        (False, lambda c: c.put("not a dict"), RunIndexError, "must be a dict"),
        (False, lambda c: c.put({"run_id": 7}), RunIndexError, "string 'run_id'"),
        (False, lambda c: c.put({"run_id": "x", "status": "DONE?"}), RunIndexError, "DONE"),
        (
            False,
            lambda c: c.put({"run_id": "x", "status": "RUNNING", "v": float("nan")}),
            RunIndexError,
            "not JSON-safe",
        ),
    ],
)
def test_a_kept_connection_refuses_what_the_index_refuses(
    tmp_path: Path,
    closed: bool,
    act: Callable[[IndexConnection], Any],
    error: type,
    fragment: str,
) -> None:
    conn = RunIndex(tmp_path / "i.sqlite").connect()
    if closed:
        conn.close()
        conn.close()  # idempotent
    try:
        with pytest.raises(error, match=fragment):
            act(conn)
    finally:
        conn.close()


def test_a_kept_connection_reads_and_writes_what_the_index_does(tmp_path: Path) -> None:
    index = RunIndex(tmp_path / "i.sqlite")
    with index.connect() as conn:
        conn.put({"run_id": "wf-1", "workflow": "wf", "status": "RUNNING", "steps": {}})
        assert conn.cancel_requested("wf-1") is False
        index.request_cancel("wf-1")  # another connection, as another process's
        assert conn.cancel_requested("wf-1") is True
        assert conn.cancel_requested("unknown") is False
    assert index.get("wf-1")["status"] == "RUNNING"
    assert "closed" in repr(conn)


def test_a_damaged_index_is_an_error_through_a_kept_connection_too(tmp_path: Path) -> None:
    path = tmp_path / "i.sqlite"
    path.write_bytes(b"not a database at all " * 100)
    with pytest.raises(RunIndexError, match="cannot be used"):
        RunIndex(path).connect()
