"""A workflow for the concurrency cases, run as ``python _hostile_conc.py MODE RUN_DIR [ID]``
by real subprocesses: ``run`` runs it, ``retry`` attaches to run ``ID`` and retries it. An
element fails while the file ``<RUN_DIR>/fail-<x>`` exists (so a retry can succeed)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

from reflow.workflow import Result, Run, RunDir, Workflow, WorkflowError

wf = Workflow("conc")


@wf.job
def items(n: int = 60) -> list[int]:
    return list(range(n))


@wf.job(array=True)
def square(x: Annotated[int, Result(step="items")], out: RunDir) -> int:
    time.sleep(0.005)
    if (Path(out) / f"fail-{x}").exists():
        raise ValueError(f"element {x} told to fail")
    return x * x


@wf.job
def total(xs: Annotated[list[int], Result(step="square")]) -> int:
    return sum(xs)


def main(argv: list[str]) -> int:
    mode, run_dir = argv[0], argv[1]
    if mode == "run":
        r = wf.run_local(run_dir, max_workers=3, on_error="continue")
    else:
        run = Run.attach(wf, argv[2])
        run.retry()
        r = run.wait(120)
    try:
        total_ = r["total"]
    except WorkflowError:  # failed, or a run another process ran: its values are there
        total_ = None
    steps = {name: s.status for name, s in r.steps.items()}
    print(json.dumps({"run_id": r.run_id, "ok": r.ok, "total": total_, "steps": steps}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
