"""README walk, second pass: a failing job is one line per failed element on stderr.

A job that raised printed the scheduler's "tick failed" line and, inside the run's error,
the job's whole traceback. Now each failed element is one warning (step, index, exception
type and message); the traceback only with ``REFLOW_DEBUG=1``, and always in
``status --errors``. Each row runs a small workflow in a child process, as a user would,
from the command line or from Python, and reads its stderr.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import sys
from typing import Annotated
from reflow.workflow import Result, Workflow, WorkflowFailed

BAD = {bad}
wf = Workflow("walk2fail")

@wf.job
def nums() -> list[int]:
    return list(range({n}))

@wf.job(array=True, cache=False)
def inc(x: Annotated[int, Result(step="nums")]) -> int:
    if x in BAD:
        raise ValueError(f"bad value {{x}}")
    return x + 1

if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "cli":
        raise SystemExit(wf.cli(["run", "--run-dir", sys.argv[2], "--on-error", "continue"]))
    try:
        run = wf.run_local(run_dir=sys.argv[2], on_error=mode)
        print("ok" if run.ok else "not ok")
    except WorkflowFailed as exc:
        print("raised:", exc)
"""


def _run(tmp_path: Path, mode: str, bad: list[int], n: int, debug: bool) -> tuple[str, str]:
    script = tmp_path / "flow.py"
    script.write_text(SCRIPT.format(bad=set(bad) or "set()", n=n))
    env = {k: v for k, v in os.environ.items() if k != "REFLOW_DEBUG"}
    env["REFLOW_CACHE_DIR"] = str(tmp_path / "cache")
    if debug:
        env["REFLOW_DEBUG"] = "1"
    proc = subprocess.run(
        [sys.executable, str(script), mode, str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    return proc.stdout, proc.stderr


@pytest.mark.parametrize(
    ("mode", "bad", "n", "debug"),
    [
        ("cli", [3], 5, False),
        ("cli", [1, 3, 4], 6, False),
        ("stop", [3], 5, False),
        ("continue", [0, 2], 4, False),
        ("continue", [2], 4, True),  # REFLOW_DEBUG: the traceback, still once
    ],
)
def test_one_line_per_failed_element_and_no_traceback_unless_asked(
    tmp_path: Path, mode: str, bad: list[int], n: int, debug: bool
) -> None:
    stdout, stderr = _run(tmp_path, mode, bad, n, debug)
    assert "tick failed" not in stderr
    for i in bad:
        lines = [ln for ln in stderr.splitlines() if f"bad value {i}" in ln]
        named = [ln for ln in lines if f"'inc'[{i}] failed: ValueError: bad value {i}" in ln]
        assert len(named) == 1, stderr
        if not debug:
            assert len(lines) == 1, stderr  # named once, not again by a summary
    assert ("Traceback (most recent call last)" in stderr) is debug, stderr
    if debug:
        assert stderr.count("Traceback (most recent call last)") == len(bad)
    if mode == "cli":
        last = stderr.strip().splitlines()[-1]
        assert last.startswith("error: run walk2fail-") and f"{len(bad)} failed" in last
        assert re.search(r"--errors' shows the tracebacks$", last), last
    if mode == "stop":
        assert "raised: task 'inc' failed" in stdout and "Traceback" not in stdout


def test_many_failures_are_capped_in_one_more_line(tmp_path: Path) -> None:
    bad = list(range(30))
    _stdout, stderr = _run(tmp_path, "continue", bad, 30, False)
    failed = [ln for ln in stderr.splitlines() if "failed: ValueError" in ln]
    assert len(failed) == 20
    assert "and 10 more failed elements" in stderr


def test_status_errors_still_has_the_traceback(tmp_path: Path) -> None:
    _run(tmp_path, "cli", [3], 5, False)
    script = tmp_path / "flow.py"
    env = {**os.environ, "REFLOW_CACHE_DIR": str(tmp_path / "cache")}
    runs = subprocess.run(
        [sys.executable, str(script), "cli", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    run_id = re.search(r"walk2fail-\d{8}-[0-9a-f]{4}", runs.stdout + runs.stderr)
    assert run_id, runs.stdout + runs.stderr
    status = subprocess.run(
        [
            sys.executable,
            "-c",
            "import runpy, sys; sys.argv = ['flow.py']; "
            f"g = runpy.run_path({str(script)!r}); "
            f"raise SystemExit(g['wf'].cli(['status', {run_id.group(0)!r}, '--errors']))",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert "Traceback (most recent call last)" in status.stdout
    assert "ValueError: bad value 3" in status.stdout
