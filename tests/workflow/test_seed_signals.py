"""``TaskInterrupted`` (reflow-hpc's graceful shutdown): a real SIGTERM/SIGINT sent to a real
process running a workflow raises ``TaskInterrupted`` inside the running job, which can clean
up; the element is reported failed with that reason, nothing more is started, and the process
ends within a bounded time with a one-line error, not a bare traceback."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Annotated, Any

import pytest

from reflow.workflow import Result, TaskInterrupted, Workflow, WorkflowError
from reflow.workflow._signals import graceful_shutdown

#: from the signal to the process's end (generous: a loaded 2-core box)
END_S = 20.0
#: from the start to the job writing its "started" file
START_S = 60.0

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from typing import Annotated
    from reflow.workflow import Result, TaskInterrupted, Workflow, WorkflowFailed

    MARK = Path(sys.argv[2])
    MODE = sys.argv[1]
    BACKEND = "slurm" if MODE == "slurm" else "local"
    wf = Workflow("sig")

    @wf.job
    def items() -> list[int]:
        return [0, 1, 2, 3, 4, 5]

    # "-timed": a time limit (each call alone: its own thread, or process with processes=True)
    @wf.job(array=True, cache=False, time="10" if MODE.endswith("-timed") else None)
    def slow(i: Annotated[int, Result(step="items")]) -> int:
        (MARK / f"started-{i}").write_text("x")
        try:
            for _ in range(2400):  # two minutes, in steps a thread can be interrupted between
                time.sleep(0.05)
        except TaskInterrupted as exc:
            (MARK / f"cleaned-{i}").write_text(exc.signal_name)
            raise
        return i

    @wf.job
    def total(xs: Annotated[list[int], Result(step="slow")]) -> int:
        (MARK / "total").write_text("ran")
        return sum(xs)

    if __name__ == "__main__":
        mode = MODE
        run_dir = MARK / "run"
        if mode != "cli":
            try:
                wf.run(run_dir, max_workers=2, processes=mode.startswith("processes"),
                       backend=BACKEND)
            except WorkflowFailed as exc:
                print("FAILED:", exc.report.failure_message().splitlines()[0])
                sys.exit(1)
            sys.exit(0)
        sys.exit(wf.cli(["run", "--run-dir", str(run_dir), "--max-workers", "2"]))
    """
)


def _wait_for(path: Path, proc: subprocess.Popen[str], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"ended before {path.name}: {out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {path.name} after {seconds} s")
        time.sleep(0.05)


def _run_and_signal(tmp_path: Path, mode: str, signum: int, end_s: float) -> tuple[str, str]:
    script = tmp_path / "sig.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "REFLOW_CACHE_DIR": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(script), mode, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    _wait_for(tmp_path / "started-0", proc, START_S)
    _wait_for(tmp_path / "started-1", proc, START_S)
    t0 = time.monotonic()
    proc.send_signal(signum)
    try:
        out, err = proc.communicate(timeout=end_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"still running {end_s} s after the signal: {out}\n{err}") from None
    assert time.monotonic() - t0 < end_s
    assert proc.returncode == 1, (proc.returncode, out, err)
    return out, err


@pytest.mark.parametrize(
    ("mode", "signum"),
    [
        ("local", signal.SIGTERM),
        ("local", signal.SIGINT),
        ("processes", signal.SIGTERM),
        ("processes", signal.SIGINT),
        ("processes-timed", signal.SIGTERM),
        ("local-timed", signal.SIGTERM),
        ("cli", signal.SIGTERM),
        ("cli", signal.SIGINT),
    ],
    ids=[
        "run_local-TERM",
        "run_local-INT",
        "processes-TERM",
        "processes-INT",
        "processes-timed-TERM",
        "threads-timed-TERM",
        "cli-TERM",
        "cli-INT",
    ],
)
def test_signal_interrupts_the_running_job(tmp_path: Path, mode: str, signum: int) -> None:
    out, err = _run_and_signal(tmp_path, mode, signum, END_S)
    name = signal.Signals(signum).name
    # both running elements saw TaskInterrupted and cleaned up; nothing else started
    for i in (0, 1):
        assert (tmp_path / f"cleaned-{i}").read_text() == name
    assert not (tmp_path / "started-2").exists() and not (tmp_path / "total").exists()
    text = out + err
    assert "TaskInterrupted" in text and name in text, text
    assert "Traceback (most recent call last)" not in err, err


def test_task_interrupted_itself() -> None:
    exc = TaskInterrupted(signal.SIGINT)
    assert (exc.signal_number, exc.signal_name) == (signal.SIGINT, "SIGINT")
    assert str(exc) == "Task interrupted by SIGINT (signal 2)"
    assert isinstance(exc, WorkflowError)
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is TaskInterrupted and back.signal_number == signal.SIGINT
    assert TaskInterrupted().signal_name == "SIGTERM"
    assert "signal 999" in TaskInterrupted(999).signal_name


def test_graceful_shutdown_in_this_process() -> None:
    before = signal.getsignal(signal.SIGTERM)
    cleaned = []
    with pytest.raises(TaskInterrupted) as info, graceful_shutdown():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # interrupted at once: the main thread's sleep
        finally:
            cleaned.append(True)
    assert info.value.signal_name == "SIGTERM" and cleaned == [True]
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.fixture(scope="module")
def slurm() -> Any:
    from slurmcluster import slurm_fixture

    yield from slurm_fixture()


@pytest.mark.slow
def test_slurm_task_sees_task_interrupted(slurm: Any, tmp_path: Path) -> None:
    """Slurm's warning before the time limit (``--signal``), sent here at once with ``scancel
    --batch --signal=TERM``: the task's job sees TaskInterrupted, cleans up, and its element
    fails with that reason while the others finish."""
    mark = tmp_path / "marks"
    mark.mkdir()
    wf = Workflow("slsig")

    @wf.job
    def items() -> list[int]:
        return [0, 1]

    @wf.job(array=True, signal="B:TERM@30", time="5")
    def slow(i: Annotated[int, Result(step="items")]) -> int:
        if i == 0:
            return 0
        (mark / "started").write_text("x")
        try:
            time.sleep(120)
        except TaskInterrupted as exc:
            (mark / "cleaned").write_text(exc.signal_name)
            raise
        return i

    run = wf.submit(tmp_path / "slsig", executor="slurm", on_error="continue")
    deadline = time.monotonic() + START_S
    while not (mark / "started").exists():
        assert time.monotonic() < deadline, "the task did not start"
        time.sleep(0.1)
    ids = {
        (i["task_name"], i["array_index"]): i["job_id"]
        for i in run.status(as_dict=True)["instances"]
    }
    job = ids[("slow", 1)]
    assert job and "_" in job
    p = slurm.run("scancel", "--batch", "--signal=TERM", job)
    assert p.returncode == 0, p.stderr
    report = run.wait(timeout=60)
    assert (mark / "cleaned").read_text() == "SIGTERM"
    assert report["slow"][0] == 0
    err = report.steps["slow"].failures[1]
    assert err.startswith(f"Slurm job {job}: TaskInterrupted: Task interrupted by SIGTERM"), err


@pytest.mark.slow
def test_slurm_driver_signal_cancels_its_jobs(slurm: Any, tmp_path: Path) -> None:
    """SIGTERM to a process running ``wf.run(backend="slurm")``: its Slurm jobs are
    ``scancel``ed (their tasks see TaskInterrupted) and it ends within bounds, none left."""
    _run_and_signal(tmp_path, "slurm", signal.SIGTERM, 60.0)
    for i in (0, 1):
        assert (tmp_path / f"cleaned-{i}").read_text() == "SIGTERM"
    assert not (tmp_path / "total").exists()
    deadline = time.monotonic() + 20
    while True:
        p = slurm.run("squeue", "-h", "-o", "%j|%T")
        live = [ln for ln in p.stdout.split() if ln.startswith("run.")]
        if not live:
            break
        assert time.monotonic() < deadline, live
        time.sleep(0.5)


def test_a_chunk_stops_at_the_interrupted_call() -> None:
    """A real SIGTERM to this process while a pool thread runs a chunk of calls: the running
    call sees TaskInterrupted, the calls after it in the chunk are not started."""
    import threading

    from reflow.workflow._backends import run_chunk
    from reflow.workflow._signals import interrupts

    started = threading.Event()
    ran: list[int] = []

    def job(i: int) -> int:
        ran.append(i)
        started.set()
        for _ in range(400):
            time.sleep(0.01)
        return i

    out: list[object] = []
    with interrupts() as state:
        t = threading.Thread(
            target=lambda: out.extend(run_chunk(job, [(k, {"i": k}) for k in range(5)], 2))
        )
        t.start()
        assert started.wait(10)
        os.kill(os.getpid(), signal.SIGTERM)
        t.join(10)
    assert not t.is_alive() and state.signal_name == "SIGTERM"
    assert ran == [0]  # not retried (retries=2), nothing after it started
    first = out[0]
    assert isinstance(first, tuple) and first[1] is False
    assert str(first[2]).startswith("TaskInterrupted: Task interrupted by SIGTERM")
    assert [r[2] for r in out[1:]] == ["not run: the task was interrupted by SIGTERM"] * 4  # type: ignore[index]
