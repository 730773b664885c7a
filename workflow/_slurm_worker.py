"""One Slurm array task of ``backend="slurm"``: ``python -m reflow.workflow._slurm_worker DIR``.

It reads ``DIR/in/<task>.pkl`` — ``(fn, calls, retries)``, written by ``_slurm_files`` with
cloudpickle — runs the chunk with :func:`~reflow.workflow._backends.run_chunk`, and writes
``[(index, ok, value)]`` to ``DIR/out/<task>.pkl`` atomically (a temporary file, then
``os.replace``), so the driver never reads half a file. ``<task>`` is ``SLURM_ARRAY_TASK_ID``
(``0`` for a plain job). A value that does not pickle, or a ``SystemExit`` from the job, fails
its element with a message instead of losing the chunk. Anything else that goes wrong exits
non-zero with a message on stderr, which the driver quotes with the job's Slurm state. A
SIGTERM/SIGINT (Slurm's time limit, ``scancel``, a job's ``signal=``) raises
:class:`~reflow.workflow.TaskInterrupted` in the call running; the calls after it fail as not
run, and the results are written before the task ends.
"""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path
from typing import Any

from ._backends import Results, run_chunk
from ._signals import interrupts

__all__ = ["main"]


def _picklable(results: Results) -> Results:
    out: Results = []
    for i, ok, value in results:
        try:
            pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            out.append((i, ok, value))
        except Exception as exc:
            text = f"the result of element {i} does not pickle: {type(exc).__name__}: {exc}"
            out.append((i, False, text))
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m reflow.workflow._slurm_worker DIR", file=sys.stderr)
        return 2
    base = Path(args[0])
    task = os.environ.get("SLURM_ARRAY_TASK_ID", "0")
    try:
        with open(base / "in" / f"{task}.pkl", "rb") as f:
            fn, calls, retries = pickle.load(f)
    except Exception as exc:
        print(
            f"reflow: cannot read the input of task {task}: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 3
    results: Results = []
    # SIGTERM (the time limit, scancel) or the signal of ``signal=``: TaskInterrupted in the
    # call running, the calls after it not started, and the results written all the same
    with interrupts() as stop:
        for call in calls:
            if stop.signal_number is not None:
                text = f"not run: the task was interrupted by {stop.signal_name}"
                results.append((call[0], False, text))
                continue
            try:
                results.extend(run_chunk(fn, [call], retries))
            except BaseException as exc:  # SystemExit, KeyboardInterrupt: fail the element
                results.append((call[0], False, f"{type(exc).__name__}: {exc}"))
    results = _picklable(results)
    out = base / "out" / f"{task}.pkl"
    tmp = out.with_name(f".{task}.{os.getpid()}.tmp")
    data: Any = pickle.dumps(results, protocol=pickle.HIGHEST_PROTOCOL)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
