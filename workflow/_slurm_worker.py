"""One Slurm array task of ``backend="slurm"``: ``python -m reflow.workflow._slurm_worker DIR``.

It reads ``DIR/in/<task>.pkl`` — ``(fn, calls, retries)``, written by ``_slurm_files`` with
cloudpickle — runs the chunk with :func:`~reflow.workflow._backends.run_chunk`, and writes
``[(index, ok, value)]`` to ``DIR/out/<task>.pkl`` atomically (a temporary file, then
``os.replace``), so the driver never reads half a file. ``<task>`` is ``SLURM_ARRAY_TASK_ID``
(``0`` for a plain job), or what the options name for other schedulers (``_batch``):
``--task K``, or ``--task-env VAR`` (the variable holding an array element's index, as
``PBS_ARRAY_INDEX``); ``--stderr FILE`` sends the worker's own stderr there (appended), and
``--sys-path A:B`` puts those directories on ``sys.path``, as ``PYTHONPATH`` would.
A value that does not pickle, or a ``SystemExit`` from the job, fails its element with a message
instead of losing the chunk. Anything else that goes wrong exits non-zero with a message on
stderr, which the driver quotes with the job's Slurm state. A SIGTERM/SIGINT (Slurm's time
limit, ``scancel``, a job's ``signal=``) raises :class:`~reflow.workflow.TaskInterrupted` in the
call running; the calls after it fail as not run, and the results are written before the task
ends.
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


_USAGE = (
    "usage: python -m reflow.workflow._slurm_worker DIR [--task K | --task-env VAR] "
    "[--stderr FILE] [--sys-path PATHS]"
)


def _options(args: list[str]) -> dict[str, str] | None:
    """``--name value`` pairs after DIR (``None``: not that shape)."""
    if len(args) % 2:
        return None
    opts = dict(zip(args[0::2], args[1::2], strict=True))
    if not set(opts) <= {"--task", "--task-env", "--stderr", "--sys-path"} or len(opts) * 2 != len(
        args
    ):
        return None
    return opts


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    opts = _options(args[1:]) if args and not args[0].startswith("-") else None
    if opts is None:
        print(_USAGE, file=sys.stderr)
        return 2
    base = Path(args[0])
    if "--stderr" in opts:  # what goes wrong from here is in the file the driver quotes
        try:
            fd = os.open(opts["--stderr"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 2)
            os.close(fd)
        except OSError as exc:
            print(f"reflow: cannot open {opts['--stderr']}: {exc}", file=sys.stderr)
    if "--sys-path" in opts:
        own = set(sys.path)
        sys.path[1:1] = [p for p in opts["--sys-path"].split(os.pathsep) if p and p not in own]
    env = opts.get("--task-env", "SLURM_ARRAY_TASK_ID")
    task = opts.get("--task") or os.environ.get(env, "0")
    if not task.isdigit() or len(task) > 9:
        print(f"reflow: the task index must be a number, got {task[:40]!r}", file=sys.stderr)
        return 2
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
