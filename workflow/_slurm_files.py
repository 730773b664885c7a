"""A Slurm submission's directory, ``<run_dir>/.reflow-slurm/<step>-<n>/`` (see ``_slurm``'s
"Files"): writing its inputs (``in/<task>.pkl``, ``(fn, calls, retries)`` pickled with
cloudpickle where installed, else plain pickle) and its job script, and reading back what a
task left (``out/<task>.pkl``, written by ``_slurm_worker``; the tail of ``<task>.err``).

Blocking file I/O only: ``_slurm`` calls these off the event loop. Every failure is a
:class:`WorkflowError` naming the job, or a failed result naming the Slurm task."""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._backends import Calls, Results
from ._errors import WorkflowError
from ._slurm_cmd import job_script

__all__ = ["TAIL_CHARS", "read_results", "stderr_tail", "write_inputs"]

#: how much of a task's stderr a failure quotes
TAIL_CHARS = 2000


def write_inputs(
    step: str, d: Path, fn: Callable[..., Any], chunks: list[Calls], retries: int
) -> Path:
    """Write a submission's inputs, one file per task, and its job script (returned)."""
    dumps = _pickler(fn)
    try:
        (d / "in").mkdir(parents=True, exist_ok=True)
        (d / "out").mkdir(exist_ok=True)
        for k, calls in enumerate(chunks):
            try:
                data = dumps((fn, calls, retries))
            except Exception as exc:
                hint = (
                    ""
                    if _cloudpickle() is not None
                    else " (install cloudpickle, pip install 'reflow[slurm]', or define "
                    "the job at module level)"
                )
                raise WorkflowError(
                    f"job {step!r}: its function or inputs do not pickle for Slurm: "
                    f"{type(exc).__name__}: {exc}{hint}",
                    step=step,
                ) from None
            (d / "in" / f"{k}.pkl").write_bytes(data)
        script = d / "job.sh"
        worker = [sys.executable, "-m", "reflow.workflow._slurm_worker", str(d)]
        script.write_text(job_script(worker))
    except OSError as exc:
        raise WorkflowError(
            f"job {step!r}: cannot write its Slurm job files under {d}: {exc.strerror or exc}",
            step=step,
        ) from None
    return script


def read_results(
    d: Path, k: int, calls: Calls, label: str, step: str, kind: str = "Slurm job"
) -> Results:
    """Task ``k``'s results (its file is there); one that cannot be read, or that is not
    for the calls submitted, fails each of them saying so. A failed element's error names
    the task: ``kind`` and ``label`` (``"Slurm job"``, ``"12_3"``)."""
    try:
        results = pickle.loads((d / "out" / f"{k}.pkl").read_bytes())
        got = {i for i, _, _ in results}
        if got != {i for i, _ in calls}:
            raise ValueError("its indices are not those submitted")
    except Exception as exc:
        text = f"{kind} {label} ({step!r}) wrote an unreadable result: {type(exc).__name__}: {exc}"
        results = [(i, False, text) for i, _ in calls]
    if any(not ok for _, ok, _ in results):
        where = f"{kind} {label}: "
        results = [
            (i, ok, v if ok or str(v).startswith(kind) else where + str(v)) for i, ok, v in results
        ]
    return list(results)


def stderr_tail(path: Path) -> str:
    """The last :data:`TAIL_CHARS` of a task's stderr file (``""``: none, or unreadable)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - TAIL_CHARS))
            return f.read().decode(errors="replace").strip()
    except OSError:
        return ""


def _cloudpickle() -> Any:
    try:
        import cloudpickle

        return cloudpickle
    except ImportError:
        return None


def _pickler(fn: Callable[..., Any]) -> Callable[[Any], bytes]:
    cp = _cloudpickle()
    if cp is None:
        return lambda obj: pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    name = getattr(fn, "__module__", None)
    mod = sys.modules.get(name or "")
    path = getattr(mod, "__file__", None) or ""
    installed = (
        "site-packages" in path
        or "dist-packages" in path
        or path.startswith(sys.base_prefix + os.sep + "lib")
    )
    if mod is not None and not installed and name not in ("__main__", None):
        cp.register_pickle_by_value(mod)
    return lambda obj: cp.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
