"""The Merkle result cache's store (``workflow/_cache.py``): one SQLite database per run
directory, batched per chunk; damaged or foreign stores are a clear error or a miss, never a
crash or a wrong result."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Annotated

import pytest

from reflow.workflow import CacheError, Result, Workflow
from reflow.workflow._cache import MISS, ResultCache


def _array(n: int, calls: list[int]) -> Workflow:
    wf = Workflow("many")

    @wf.job
    def items() -> list[int]:
        return list(range(n))

    @wf.job(array=True)
    def each(x: Annotated[int, Result(step="items")]) -> int:
        calls.append(x)
        return x * 3

    return wf


def test_an_array_job_is_one_database_not_a_file_per_result(tmp_path: Path) -> None:
    calls: list[int] = []
    assert _array(2000, calls).run_local(tmp_path, max_workers=2)["each"][-1] == 5997
    files = [p for p in (tmp_path / ".reflow-cache").rglob("*") if p.is_file()]
    assert {p.name for p in files} <= {"results.sqlite", "results.sqlite-wal", "results.sqlite-shm"}
    db = sqlite3.connect(tmp_path / ".reflow-cache" / "results.sqlite")
    assert db.execute("SELECT count(*) FROM results").fetchone() == (2000 + 1,)
    db.close()
    calls.clear()
    again = _array(2000, calls).run_local(tmp_path, max_workers=2)
    assert again["each"][-1] == 5997 and calls == []  # every element from the cache


def test_many_threads_share_one_cache(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "c")
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(50):
                assert cache.put_many([(f"{t}-{i}-{j}", (t, i, j)) for j in range(10)]) == 10
                assert cache.get_many([f"{t}-{i}-0", "absent"]) == [(t, i, 0), MISS]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors, errors
    assert len(cache.get_many([f"3-49-{j}" for j in range(10)])) == 10
    cache.close()


def test_batches_longer_than_sqlite_variable_limit(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "c")
    keys = [f"k{i}" for i in range(ResultCache.BATCH * 3 + 7)]
    assert cache.put_many((k, k.upper()) for k in keys) == len(keys)
    assert cache.get_many(keys) == [k.upper() for k in keys]


def test_an_unpicklable_result_is_left_out_of_its_batch(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "c")
    assert cache.put_many([("a", 1), ("lock", threading.Lock()), ("b", 2)]) == 2
    assert cache.get_many(["a", "lock", "b"]) == [1, MISS, 2]


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (b"this is not an SQLite database, just text" * 100, "cannot open the result cache"),
        (b"SQLite format 3\0" + b"\xff" * 4000, "cannot open the result cache"),
    ],
)
def test_a_foreign_cache_file_is_a_clear_error(
    tmp_path: Path, damage: bytes, fragment: str
) -> None:
    root = tmp_path / ".reflow-cache"
    root.mkdir()
    (root / "results.sqlite").write_bytes(damage)
    with pytest.raises(CacheError, match=fragment) as err:
        _array(3, []).run_local(tmp_path)
    assert "results.sqlite" in str(err.value) and "delete the file" in str(err.value)


def test_a_cache_dir_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / ".reflow-cache").write_text("not a directory")
    with pytest.raises(CacheError, match="cannot create the result cache"):
        _array(3, []).run_local(tmp_path)


def test_the_run_watcher_does_not_spin_while_chunks_keep_it_busy(tmp_path: Path) -> None:
    # every chunk marks the run record dirty; the watcher thread that writes it (at most 4
    # times a second) once looped on that flag and burnt a core for the whole run
    import time

    import psutil

    seen: dict[str, float | None] = {}
    wf = Workflow("calm")

    @wf.job
    def items() -> list[int]:
        return list(range(40))

    @wf.job(array=True, array_limit=1)
    def nap(x: Annotated[int, Result(step="items")]) -> int:
        time.sleep(0.02)
        if x == 39:
            watcher = next(t for t in threading.enumerate() if t.name.startswith("reflow-run-"))
            cpu = {t.id: t.user_time + t.system_time for t in psutil.Process().threads()}
            seen["cpu"] = cpu.get(watcher.native_id or -1)
        return x

    run = wf.run_local(tmp_path / "r", store_path=tmp_path / "runs.sqlite", max_workers=1)
    assert run.ok and seen.get("cpu") is not None
    # 40 chunks of 20 ms: a spinning watcher takes most of that ~0.8 s; a waiting one, ~0
    assert seen["cpu"] < 0.25, seen
