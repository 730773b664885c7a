"""A run releases everything it holds before ``run_local`` (or ``wait()``) returns: no
connection to the run index or the result cache stays open, no thread of the run is left, so
the caller may lock, move or rewrite the files at once (a DROP TABLE on the index right after
a run once hit "disk I/O error": the run's watcher still had its connection open)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Annotated

import psutil
import pytest

from reflow.workflow import Result, Workflow


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))


def _wf() -> Workflow:
    wf = Workflow("release")

    @wf.job
    def a(n: int = 3) -> list[int]:
        return list(range(n))

    @wf.job(array=True)
    def b(x: Annotated[int, Result(step="a")]) -> int:
        return x * 2

    return wf


def _held(paths: list[Path]) -> list[str]:
    """This process's open files among ``paths`` (and their -wal/-shm side files)."""
    names = {str(p) for p in paths} | {f"{p}-wal" for p in paths} | {f"{p}-shm" for p in paths}
    return sorted(f.path for f in psutil.Process().open_files() if f.path in names)


def _run_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("reflow-run-")]


def _lock_exclusively(path: Path) -> None:
    con = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        con.execute("BEGIN EXCLUSIVE")  # fails at once ("locked") if anyone holds the file
        con.execute("ROLLBACK")
    finally:
        con.close()


@pytest.mark.parametrize("submit", [False, True], ids=["run_local", "submit+wait"])
def test_nothing_of_a_run_is_held_once_it_returns(submit: bool, tmp_path: Path) -> None:
    store = tmp_path / "runs.sqlite"
    wf = _wf()
    for n in range(25):
        run_dir = tmp_path / f"r{n % 3}"
        r = wf.submit(run_dir, store=store).wait() if submit else wf.run_local(run_dir, store=store)
        assert r["b"] == [0, 2, 4]
        cache = run_dir / ".reflow-cache" / "results.sqlite"
        assert _run_threads() == [], f"run {n}: its watcher is still running"
        assert _held([store, cache]) == [], f"run {n}: files still open"
        _lock_exclusively(store)
        _lock_exclusively(cache)


def test_the_index_can_be_rewritten_right_after_a_run(tmp_path: Path) -> None:
    store = tmp_path / "runs.sqlite"
    for n in range(25):
        _wf().run_local(tmp_path / f"r{n}", store=store)
        for side in tmp_path.glob("runs.sqlite-*"):
            side.unlink(missing_ok=True)
        con = sqlite3.connect(store, timeout=0)
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for name in names:
            con.execute(f"DROP TABLE {name}")
        con.commit()
        con.close()
