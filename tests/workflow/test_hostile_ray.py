"""The hostile-values table (``test_hostile_values.py``) on ``backend="ray"``, against a real
local Ray cluster (a head and a worker node, one CPU each): jobs that return what cannot be
pickled, raise what is not an Exception or cannot be printed or pickled, or end their Ray
worker with ``os._exit``. Each row: that element fails naming the step (or, for a value Ray's
cloudpickle can carry, succeeds), the run ends within a bound, nothing but a ReflowError
leaves the call, and the driver runs a healthy workflow on the same cluster afterwards."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _hostile_jobs as jobs
import pytest
from raycluster import cluster_fixture

from reflow import ReflowError
from reflow.workflow import Run, Workflow, WorkflowFailed

pytest.importorskip("ray", reason="Ray is not installed: pip install 'reflow[ray]'")

pytestmark = pytest.mark.slow

#: each run's bound, far above what one takes (a Ray connection and two elements)
BOUND_S = 90.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    yield from cluster_fixture(workers=1)


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))


def _run(wf: Workflow, cluster: str, run_dir: Path, **kw: Any) -> Run:
    """``wf.run`` on the cluster, timed; anything but a ReflowError leaving it fails the row."""
    t0 = time.perf_counter()
    try:
        return wf.run(run_dir, backend="ray", address=cluster, max_workers=2, **kw)
    except ReflowError:
        raise
    except BaseException as exc:
        pytest.fail(f"{type(exc).__name__} left run(): {exc!r}")
    finally:
        assert time.perf_counter() - t0 < BOUND_S


def _healthy(cluster: str, tmp_path: Path) -> None:
    """The driver still runs a workflow on the cluster, to the end, with its results."""
    r = _run(jobs.wf, cluster, tmp_path / "healthy", params={"kind": "ok", "n": 3})
    assert r.ok and r["each"] == [1, 1, 1]


#: (kind, what the failure of each element must say); None: Ray carries the value back
ROWS: list[tuple[str, str | None]] = [
    ("lambda", None),  # cloudpickle carries a lambda
    ("generator", "cannot be pickled to leave its Ray worker"),
    ("file", None),  # cloudpickle carries a text file read-only: as a StringIO of its text
    ("lock", "cannot be pickled to leave its Ray worker"),
    ("str-raises", "StrRaises"),
    ("unpicklable-exc", "Unpicklable"),
    ("KeyboardInterrupt", "KeyboardInterrupt"),
    ("SystemExit", "SystemExit"),
    ("GeneratorExit", "GeneratorExit"),
    ("os._exit", "a Ray worker process of job 'each' died"),
]


@pytest.mark.parametrize(("kind", "fragment"), ROWS, ids=[k for k, _ in ROWS])
def test_a_hostile_element_on_ray_fails_only_itself_naming_the_step(
    kind: str, fragment: str | None, cluster: str, tmp_path: Path
) -> None:
    r = _run(jobs.wf, cluster, tmp_path / "run", params={"kind": kind}, on_error="continue")
    step = r.steps["each"]
    if fragment is None:
        assert step.status == "done", f"{step.status}: {step.failures}"
        values = r["each"]
        if kind == "lambda":
            assert [v() for v in values] == [1, 1]
        else:
            text = Path(jobs.__file__).read_text()
            assert [type(v).__name__ for v in values] == ["StringIO"] * 2
            assert [v.read() for v in values] == [text, text]
    else:
        assert step.status == "failed", f"{step.status}: {step.reason}"
        assert sorted(step.failures) == [0, 1]
        for text in step.failures.values():
            assert fragment in text, text
    _healthy(cluster, tmp_path)


@pytest.mark.parametrize(
    "kind", ["str-raises", "KeyboardInterrupt", "SystemExit", "lock", "os._exit"]
)
def test_a_single_job_failing_oddly_on_ray_stops_the_run_with_workflow_failed(
    kind: str, cluster: str, tmp_path: Path
) -> None:
    with pytest.raises(WorkflowFailed, match="task 'once' failed") as info:
        _run(jobs.single, cluster, tmp_path / "run", params={"kind": kind})
    assert info.value.report.steps["once"].status == "failed"
    assert info.value.report.steps["after"].status == "skipped"
    _healthy(cluster, tmp_path)


@pytest.mark.parametrize("kind", ["recursive", "nan"])
def test_odd_but_picklable_values_on_ray_come_back_and_are_cached(
    kind: str, cluster: str, tmp_path: Path
) -> None:
    first = _run(jobs.wf, cluster, tmp_path / "run", params={"kind": kind})
    again = _run(jobs.wf, cluster, tmp_path / "run", params={"kind": kind})
    assert first.steps["each"].status == "done"
    assert again.steps["each"].status == "cached"
    assert repr(again["each"]) == repr(first["each"])
