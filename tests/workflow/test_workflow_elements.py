"""Array elements on the runtime (issue #15, "array elements packets"): every finished chunk of
an array job is a packet on its node's ``elements`` port, seen as a ``MessageSent`` event while
the job runs, and its results are in the cache as soon as the chunk is done, so a process that
dies mid-job resumes from the chunks it finished."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Annotated, Any

import pytest

from reflow.workflow import Result, Workflow


def _flow(n: int) -> Workflow:
    wf = Workflow("elements")

    @wf.job
    def items() -> list[int]:
        return list(range(n))

    @wf.job(array=True)
    def inv(x: Annotated[int, Result(step="items")]) -> float:
        return 1 / (x % 97)

    return wf


@pytest.mark.parametrize(("n", "workers"), [(1, 1), (50, 2), (1000, 2), (3000, 1)])
def test_each_finished_chunk_is_a_packet_and_an_event(tmp_path: Path, n: int, workers: int) -> None:
    streams: list[Any] = []
    report = _flow(n).run_local(
        tmp_path,
        max_workers=workers,
        on_error="continue",
        on_network=lambda net: streams.append(net.events(kinds=["MessageSent"])),
    )
    sent = [e for e in streams[0].drain() if e["fromActor"] == "inv"]
    chunks = [e["message"] for e in sent if e["fromPort"] == "elements"]
    rep = report.steps["inv"]
    assert rep.chunks == len(chunks) >= 1
    assert n < 16 or len(chunks) > 1, "elements are reported while the job runs, not once"
    assert sorted(i for c in chunks for i in c["indices"]) == list(range(n))
    assert sorted(i for c in chunks for i in c["failed"]) == sorted(rep.failures)
    assert sorted(rep.failures) == [i for i in range(n) if i % 97 == 0]
    assert {c["step"] for c in chunks} == {"inv"}


SCRIPT = """
import os, signal, sys, time
from typing import Annotated
from reflow.workflow import Result, Workflow

wf = Workflow("resume")

@wf.job
def items() -> list[int]:
    return list(range(1000))

@wf.job(array=True, cache=True)
def slow(x: Annotated[int, Result(step="items")]) -> int:
    if x == 600 and os.environ.get("CRASH"):
        # the whole process dies mid-job, as a killed run would (os._exit in a job's thread
        # only fails its element: _exit_guard)
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.0005)
    return x * x

r = wf.run_local(sys.argv[1], max_workers=1)
print("CACHED", r.steps["slow"].cached, "TOTAL", sum(r["slow"]))
"""


@pytest.mark.slow
def test_a_run_killed_mid_job_resumes_from_the_finished_chunks(tmp_path: Path) -> None:
    script = tmp_path / "pipeline.py"
    script.write_text(textwrap.dedent(SCRIPT))
    run_dir = tmp_path / "run"
    crashed = subprocess.run(
        [sys.executable, str(script), str(run_dir)],
        env={**os.environ, "CRASH": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
    again = subprocess.run(
        [sys.executable, str(script), str(run_dir)], capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stdout + again.stderr
    cached = int(again.stdout.split("CACHED")[1].split()[0])
    total = int(again.stdout.split("TOTAL")[1].split()[0])
    assert total == sum(x * x for x in range(1000))
    # chunks of 125 on one worker: 600 is in the fifth, so at least the first three were stored
    assert 375 <= cached < 1000, again.stdout
