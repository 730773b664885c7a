"""``backend="slurm"``'s watching: one poller over the run's submissions, resolving their tasks.

One poller reads the result files and ``squeue --states=all`` (one element per line), every
0.25 s growing to ``POLL_MAX_S``. A task that ends ``FAILED``, ``TIMEOUT``, ``OUT_OF_MEMORY``,
``CANCELLED``, ``NODE_FAIL`` (any end but ``COMPLETED``) without a result file fails its
elements with an error naming the Slurm job id, the state and the tail of its stderr file; a
task pending for a reason that never clears (``PartitionTimeLimit``...) is cancelled and fails
the same way. A job killed for its memory says so (``OUT_OF_MEMORY`` where cgroups enforce
``--mem``; ``FAILED`` plus slurmstepd's "exceeded memory limit" on stderr where
``jobacct_gather``'s ``OverMemoryKill`` does, as on a cluster without cgroups). A controller
that stays unreachable for the backend's ``lost_after_s`` fails every element still out,
naming it; a job Slurm no longer knows fails after ``GONE_AFTER_S``.

The poller owns the submissions it watches (:meth:`SlurmPoller.add`); what it shares with the
submitting side and ``cancel()`` goes through :class:`~._slurm_stop.SlurmStops`: it asks which
steps are halted and carries the halt out, it stops the run at an ``on_error="stop"`` failure,
and it says which jobs finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ._backends import CANCELLED, Calls, Results
from ._slurm_cmd import (
    DONE_STATES,
    NEVER_CLEARS,
    RUNNING_STATES,
    SQUEUE_FORMAT,
    last_error,
    parse_squeue,
)
from ._slurm_files import read_results, stderr_tail
from ._slurm_stop import SlurmStops, cancelled

__all__ = ["SlurmPoller", "SlurmTask", "Submission", "settle"]

#: what a failure raised by ``TaskInterrupted`` in the task says
_INTERRUPTED = "TaskInterrupted: Task interrupted by"
POLL_MIN_S = 0.25
POLL_MAX_S = 2.0
#: how long a task may stay ended (or unknown to Slurm) without its result file
GONE_AFTER_S = 10.0
#: how much of the first failure's first line a stop's reason quotes
_CAUSE_CHARS = 300

#: runs one Slurm command (``("squeue", ...)``, a timeout) and never raises
SlurmCommand = Callable[..., subprocess.CompletedProcess[str]]


@dataclass
class SlurmTask:
    calls: Calls
    future: asyncio.Future[Results]
    ended: float | None = None  # when first seen ended (or unknown) without a result


@dataclass
class Submission:
    step: str
    job_id: str
    dir: Path
    tasks: dict[int, SlurmTask]
    array: bool
    stop_on_error: bool
    time: str | None
    mem: int | None
    failed: bool = False
    lost_since: float | None = None
    abandoned: bool = False  # its tasks were failed without Slurm saying they ended
    #: how squeue says a task ended ("": not known to it), once it has
    ended_state: dict[int, str] = field(default_factory=dict)

    def label(self, task: int) -> str:
        return f"{self.job_id}_{task}" if self.array else self.job_id


class SlurmPoller:
    """Watches the submissions handed to :meth:`add` until each task is resolved."""

    def __init__(
        self,
        cmd: SlurmCommand,
        where: Callable[[], str],
        stops: SlurmStops,
        *,
        lost_after_s: float,
    ) -> None:
        self._cmd = cmd
        self._where = where  # which controller, for errors
        self._stops = stops
        self._lost_after_s = lost_after_s
        self._subs: list[Submission] = []
        self._task: asyncio.Task[None] | None = None
        self._finished: list[Path] = []  # succeeded submissions' directories, removed at close

    def add(self, sub: Submission) -> None:
        """Watch ``sub`` (on the run's loop), starting the poller if it is not running."""
        self._subs.append(sub)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._poll())

    def close(self) -> None:
        """Stop watching; remove the directories of the submissions that succeeded."""
        if self._task is not None:
            with contextlib.suppress(RuntimeError):  # its loop may be closed already
                self._task.cancel()
        self._subs.clear()
        for d in self._finished:
            shutil.rmtree(d, ignore_errors=True)
        self._finished.clear()

    async def _poll(self) -> None:
        try:
            await self._poll_loop()
        except Exception as exc:
            # a poller that died would leave the run waiting forever: fail what is out
            text = f"watching the Slurm jobs failed: {type(exc).__name__}: {exc}"
            for sub in self._subs:
                self._fail_all(sub, text)

    async def _poll_loop(self) -> None:
        interval = POLL_MIN_S
        while any(s.tasks for s in self._subs):
            await asyncio.sleep(interval)
            progress = await self._halt()
            for sub in list(self._subs):
                if sub.tasks:
                    progress |= await asyncio.to_thread(self._collect, sub)
                if sub.tasks:
                    progress |= await self._watch(sub)
                # a failure just seen under on_error="stop" stops every job, not only this one
                progress |= await self._halt()
            for sub in [s for s in self._subs if not s.tasks]:
                self._subs.remove(sub)
                if not sub.abandoned:  # an abandoned one may still run: close cancels it
                    self._stops.finished(sub.job_id)
                if not sub.failed:
                    self._finished.append(sub.dir)  # removed at close
            interval = POLL_MIN_S if progress else min(POLL_MAX_S, interval * 1.5)

    async def _halt(self) -> bool:
        """Carry out a stop (every job of the run) or a ``cancel()`` (the jobs of the steps it
        named): ``scancel`` them, pending or running, collect the results that landed, and
        resolve every other task as cancelled, saying why. ``False``: nothing to do."""
        whys = self._stops.halted_steps({s.step for s in self._subs if s.tasks})
        hit = [s for s in self._subs if s.tasks and s.step in whys]
        if not hit:
            return False
        ids = sorted({s.job_id for s in hit}, key=int)
        p = await asyncio.to_thread(self._cmd, "scancel", *ids, timeout=10)
        for sub in hit:
            if p.returncode != 0:
                sub.abandoned = True  # still out as far as we know: close() tries again
            await asyncio.to_thread(self._collect, sub)
            sub.failed = True  # kept: its files say what ran
            for k in list(sub.tasks):
                text = f"Slurm job {sub.label(k)} of job {sub.step!r} was cancelled: "
                self._resolve(sub, k, cancelled(sub.tasks[k].calls, text + whys[sub.step]))
        return True

    def _collect(self, sub: Submission) -> bool:
        """Resolve the tasks whose result file is there."""
        try:
            names = set(os.listdir(sub.dir / "out"))
        except OSError:
            return False
        found = False
        for k in [k for k in sub.tasks if f"{k}.pkl" in names]:
            results = read_results(sub.dir, k, sub.tasks[k].calls, sub.label(k), sub.step)
            if any(not ok and _INTERRUPTED in str(v) for _, ok, v in results):
                # a task stopped by a signal (its time limit, scancel): say how it ended
                if k not in sub.ended_state:
                    continue  # squeue says it on the next look
                results = self._interrupted(sub, k, results)
            if any(not ok for _, ok, _ in results):
                sub.failed = True
            self._resolve(sub, k, results)
            found = True
        return found

    def _resolve(self, sub: Submission, k: int, results: Results) -> None:
        task = sub.tasks.pop(k)
        fut = task.future
        if not fut.done():
            fut.get_loop().call_soon_threadsafe(settle, fut, results)
        if not sub.stop_on_error:
            return
        for i, ok, value in results:
            text = str(value)
            if not ok and not text.startswith(CANCELLED):
                # the run's first failure: the poller stops every job of the run (_halt)
                what = f"element {i} of {sub.step!r}" if sub.array else repr(sub.step)
                first = (text.strip().splitlines() or [""])[0][:_CAUSE_CHARS]
                self._stops.stop(f"the run stopped after {what} failed: {first}")
                return

    async def _watch(self, sub: Submission) -> bool:
        p = await asyncio.to_thread(
            self._cmd,
            "squeue",
            "--states=all",
            "--array",
            "-h",
            "-j",
            sub.job_id,
            "-o",
            SQUEUE_FORMAT,
        )
        now = time.monotonic()
        if p.returncode != 0 and "Invalid job id" not in p.stderr:
            sub.lost_since = sub.lost_since or now
            if now - sub.lost_since < self._lost_after_s:
                return False
            first = last_error(p.stderr, p.returncode)
            text = (
                f"the Slurm controller ({self._where()}) was unreachable for "
                f"{self._lost_after_s:g} s "
                f"while job {sub.step!r} ran as Slurm job {sub.job_id}: squeue: {first}"
            )
            self._fail_all(sub, text)
            return True
        sub.lost_since = None
        states, rest = parse_squeue(p.stdout, sub.job_id, sub.array)
        changed = False
        for k in list(sub.tasks):
            if k not in sub.tasks:  # resolved by a collect above
                continue
            state, reason = states.get(k, rest)
            task = sub.tasks[k]
            if state not in RUNNING_STATES:
                sub.ended_state[k] = state
                if k in self._held(sub) and await asyncio.to_thread(self._collect, sub):
                    changed = True
                    continue
            if state in RUNNING_STATES:
                if state == "PENDING" and reason in NEVER_CLEARS:
                    await asyncio.to_thread(self._cmd, "scancel", sub.job_id, timeout=10)
                    for other in list(sub.tasks):
                        self._fail_task(
                            sub,
                            other,
                            f"was pending for a reason that never clears "
                            f"({reason}) and was cancelled",
                        )
                    return True
                continue
            if state and state not in DONE_STATES:
                # the result file may have landed between the listing and squeue
                if await asyncio.to_thread(self._collect, sub) and k not in sub.tasks:
                    changed = True
                    continue
                self._fail_task(sub, k, f"ended {state}")
                changed = True
                continue
            # COMPLETED without a result yet (a shared file system's lag), or unknown to Slurm
            task.ended = task.ended or now
            if now - task.ended >= GONE_AFTER_S:
                why = (
                    "ended COMPLETED without writing its result"
                    if state
                    else ("is no longer known to Slurm and wrote no result")
                )
                self._fail_task(sub, k, why)
                changed = True
        return changed

    @staticmethod
    def _held(sub: Submission) -> set[int]:
        """The tasks still waited for whose result file is there (held back for their end
        state, or landed since the last look)."""
        try:
            names = set(os.listdir(sub.dir / "out"))
        except OSError:
            return set()
        return {k for k in sub.tasks if f"{k}.pkl" in names}

    def _interrupted(self, sub: Submission, k: int, results: Results) -> Results:
        """A signalled task's failures, led by how Slurm says it ended (``TIMEOUT`` and the
        limit: the time limit's SIGTERM) when that is not ``COMPLETED``."""
        state = sub.ended_state.get(k, "")
        if not state or state in DONE_STATES:
            return results
        extra = f" (its time limit: {sub.time})" if "TIMEOUT" in state and sub.time else ""
        lead = f"Slurm job {sub.label(k)} of job {sub.step!r} ended {state}{extra}: "
        own = f"Slurm job {sub.label(k)}: "
        tail = stderr_tail(sub.dir / f"{k}.err")
        end = f"\nthe end of its stderr ({sub.dir / f'{k}.err'}):\n{tail}" if tail else ""
        out: Results = []
        for i, ok, v in results:
            if not ok:
                text = str(v)
                v = lead + (text[len(own) :] if text.startswith(own) else text) + end
            out.append((i, ok, v))
        return out

    def _fail_task(self, sub: Submission, k: int, why: str) -> None:
        extra = ""
        tail = stderr_tail(sub.dir / f"{k}.err")
        if "TIMEOUT" in why and sub.time:
            extra = f" (its time limit: {sub.time})"
        elif sub.mem and ("OUT_OF_MEMORY" in why or "exceeded memory limit" in tail.lower()):
            # OUT_OF_MEMORY where a cgroup enforces --mem; FAILED, with slurmstepd saying so
            # on stderr, where jobacct_gather's OverMemoryKill does
            extra = f" (over its memory limit: {math.ceil(sub.mem / 2**20)} MiB)"
        text = f"Slurm job {sub.label(k)} of job {sub.step!r} {why}{extra}"
        text += (
            f"; the end of its stderr ({sub.dir / f'{k}.err'}):\n{tail}"
            if tail
            else ("; its stderr is empty")
        )
        sub.failed = True
        self._resolve(sub, k, [(i, False, text) for i, _ in sub.tasks[k].calls])

    def _fail_all(self, sub: Submission, text: str) -> None:
        sub.failed = sub.abandoned = True
        for k in list(sub.tasks):
            calls = sub.tasks[k].calls
            self._resolve(sub, k, [(i, False, text) for i, _ in calls])


def settle(fut: asyncio.Future[Results], results: Results) -> None:
    """Set ``fut``'s results unless it is done already."""
    if not fut.done():
        fut.set_result(results)
