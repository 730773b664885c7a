"""``os._exit()`` in a job on the thread backend (``_exit_guard``): that element's failure,
naming the job, while every other caller of ``os._exit`` still ends its process. Each row runs
in a subprocess of its own (if the guard failed, it would end pytest): the script, the exit
status it must end with, and what its output must say."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HEAD = """
import os, posix, sys, threading, time, multiprocessing
from typing import Annotated
from reflow.workflow import Result, Workflow, WorkflowFailed
run_dir = sys.argv[1]
wf = Workflow("exits")

@wf.job(cache=False)
def kinds(n: int = 2) -> list[int]:
    return list(range(n))

@wf.job(array=True, cache=False)
def each(k: Annotated[int, Result(step="kinds")]) -> int:
    if k == 1:
        try:
            os._exit(3)
        except Exception:
            return -1  # an `except Exception` must not swallow it
    return k

@wf.job(cache=False)
def ok() -> int:
    return 7
"""

ARRAY = """
r = wf.run_local(run_dir, on_error="continue", max_workers=2)
step = r.steps["each"]
print(step.status, sorted(step.failures), r["each"])
print(step.failures[1].splitlines()[0])
again = wf.run_local(run_dir + "-2", params={"n": 1})
print("AGAIN", again.ok, again["each"], "RESTORED", os._exit is posix._exit)
"""

SINGLE = """
single = Workflow("exit-single")

@single.job(time="00:01:00")  # the time-limited path: a thread of its own
def once() -> int:
    os._exit(4)

@single.job
def after(x: Annotated[int, Result(step="once")]) -> int:
    return x

try:
    single.run_local(run_dir)
except WorkflowFailed as e:
    print("FAILED", e.report.steps["once"].status, e.report.steps["after"].status)
    print(e.report.steps["once"].failures[0].splitlines()[0])
print("RESTORED", os._exit is posix._exit)
"""

OTHER_THREAD = """
slow = Workflow("exit-other")

@slow.job
def nap() -> int:
    time.sleep(30)
    return 1

threading.Timer(0.5, os._exit, (5,)).start()  # not a job's thread: the process ends
slow.run_local(run_dir)
print("NOT ENDED")
"""

FORKED = """
def child():
    os._exit(7)

forks = Workflow("exit-fork")

@forks.job(cache=False)
def spawn() -> int:
    p = multiprocessing.get_context("fork").Process(target=child)
    p.start()
    p.join(30)
    return p.exitcode

r = forks.run_local(run_dir)
print("CHILD", r["spawn"], "PID", os.getpid())
"""

ROWS = [
    (
        "array element",
        ARRAY,
        0,
        [
            "partial [1] [0, None]",  # element 0 done, element 1 failed
            "JobExited: os._exit(3) called by job 'each' in a thread: the thread backend fails",
            "AGAIN True [0] RESTORED True",
        ],
    ),
    (
        "single job, time-limited",
        SINGLE,
        0,
        [
            "FAILED failed skipped",
            "JobExited: os._exit(4) called by job 'once' in a thread",
            "RESTORED True",
        ],
    ),
    ("another thread's os._exit still ends the process", OTHER_THREAD, 5, []),
    ("a job's forked child ends with its os._exit", FORKED, 0, ["CHILD 7 PID"]),
]


@pytest.mark.parametrize(
    ("script", "status", "says"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_os_exit_in_a_thread_backend_job(
    script: str, status: int, says: list[str], tmp_path: Path
) -> None:
    code = textwrap.dedent(HEAD) + textwrap.dedent(script)
    env = dict(os.environ, REFLOW_CACHE_DIR=str(tmp_path / "cache"))
    p = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "run")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert p.returncode == status, p.stdout + p.stderr[-3000:]
    for fragment in says:
        assert fragment in p.stdout, p.stdout + p.stderr[-3000:]
    assert "NOT ENDED" not in p.stdout
    assert p.stdout.count("CHILD") <= 1, "the forked child went on running the job"
