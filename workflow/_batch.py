"""A workflow run by any :class:`~._executors.Executor` object: PBS, LSF, SGE, Flux, or a
user's own subclass (``submit(executor=MyExecutor())``, ``run(backend=MyExecutor())``).

One job per chunk. Its inputs are written with the Slurm backend's layout (``_slurm_files``)
under ``<run_dir>/.reflow-batch/<step>-<n>/``; the job is ``executor.submit(JobResources(...),
command)``, ``command`` running ``python -m reflow.workflow._slurm_worker DIR --task 0
--stderr DIR/0.err`` (the task named in the command, so no scheduler variable is needed; the
worker sends its own stderr to that file, so the tail is there whatever the executor does with
``error_path``). The job's resources: ``cpus`` (rounded up), ``mem`` (MiB), ``time``, and
``partition``/``account``/``submit_options`` as ``submit_options``.

Watching. Each job is polled on its own: the result file first, then
``executor.job_state(job_id)``, every ``POLL_MIN_S`` growing to ``POLL_MAX_S``. A state in
:data:`WAITING` (or ``None`` for up to ``GONE_AFTER_S``) keeps waiting; any other ends it, and a
job that ended without a result file fails its elements naming the job id, the state and the
tail of its stderr. A job past its ``time`` (counted from when it was first seen running) is
cancelled and fails as a :class:`JobTimeoutError`. Every call into the executor runs in a thread
and is bounded by ``CALL_TIMEOUT_S``; one that raises fails the chunk with its message.

Stopping. ``cancel(step)``, a stop (``on_error="stop"``'s first failure) or the end of the run
(done, a ``timeout``, Ctrl-C) calls ``executor.cancel(job_id)`` for the jobs still out; their
elements are reported as cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ._backends import CANCELLED, Backend, Calls, Results
from ._batch_executors import (
    FluxExecutor,
    LSFExecutor,
    PBSExecutor,
    SGEExecutor,
    _CommandExecutor,
)
from ._errors import JobTimeoutError, UnknownExecutorError, WorkflowError
from ._executors import Executor, JobResources, registered_executor
from ._slurm_files import read_results, stderr_tail, write_inputs

__all__ = ["WAITING", "BatchBackend", "check_scheduler", "executor_for"]

POLL_MIN_S = 0.1
POLL_MAX_S = 2.0
#: how long a job the executor does not know (``job_state`` -> None) is waited for
GONE_AFTER_S = 10.0
#: how long a job that ended COMPLETED is given for its result file to appear (a shared file
#: system's lag)
LAG_S = 5.0
#: the longest one call into the executor (submit, job_state, cancel) may take
CALL_TIMEOUT_S = 60.0
#: how many jobs are out at once by default (``max_workers`` overrides)
DEFAULT_SLOTS = 64
#: states a job is still on its way in (any other word: it ended)
WAITING = frozenset(
    {
        "PENDING",
        "QUEUED",
        "RUNNING",
        "SUSPENDED",
        "CONFIGURING",
        "COMPLETING",
        "REQUEUED",
        "RESIZING",
        "HELD",
        "WAITING",
        "STARTING",
        "SUBMITTED",
    }
)
_NOT_RUNNING = frozenset({"PENDING", "QUEUED", "HELD", "WAITING", "SUBMITTED", "CONFIGURING"})


def executor_for(backend: str, address: str | None) -> Executor:
    """The executor a run on ``backend`` (``"pbs"``... or ``"executor"``) uses: the object
    its address names, else (a name) the scheduler's ``from_environment()``."""
    if address is not None:
        found = registered_executor(address)
        if found is not None:
            return found
        raise WorkflowError(
            f"the run's executor ({address!r}) was an object of the process that started it; "
            "run it again with the executor object (run(backend=MyExecutor()))"
        )
    named: dict[str, Any] = {
        "pbs": PBSExecutor,
        "lsf": LSFExecutor,
        "sge": SGEExecutor,
        "flux": FluxExecutor,
    }
    if backend not in named:
        raise WorkflowError(f"backend {backend!r} needs an executor object (executor=...)")
    executor: Executor = named[backend].from_environment()
    return executor


def check_scheduler(backend: str, address: str | None) -> None:
    """Refuse, before anything starts, a run on a PBS/LSF/SGE/Flux executor (or its name)
    whose submit command is not found (``dry-run`` needs none); a user's own executor is
    not checked."""
    if backend not in ("pbs", "lsf", "sge", "flux", "executor"):
        return
    ex = executor_for(backend, address)
    executor: Executor | str = backend if address is None else ex
    if not isinstance(ex, _CommandExecutor) or ex.mode == "dry-run":
        return
    cmd = next(iter(ex.env_commands))  # the submit command: qsub, bsub, flux
    found = shutil.which(getattr(ex, cmd))
    if found is None:
        shown_as = repr(executor) if isinstance(executor, str) else type(ex).__name__
        raise UnknownExecutorError(
            f"Unknown executor {shown_as} here: {type(ex).__name__} submits with "
            f"{getattr(ex, cmd)!r}, which is not on PATH (install the scheduler's client "
            f"commands, or set {ex.env_commands[cmd]}); this reflow runs workflows on local, "
            "ray, slurm, pbs, lsf, sge, flux or an Executor object of your own",
            param="executor",
        )


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


class BatchBackend(Backend):
    name = "batch"

    def __init__(self, executor: Executor, *, run_dir: Path, workers: int | None = None) -> None:
        self.executor = executor
        self.what = type(executor).__name__
        self.slots = workers or DEFAULT_SLOTS
        self._base = run_dir / ".reflow-batch"
        self._prefix = run_dir.resolve().name or "reflow"
        self._count = 0
        self._lock = threading.Lock()
        self._out: dict[str, str] = {}  # job id -> step, submitted and not yet ended
        self._stop_cause: str | None = None
        self._cancels: set[str | None] = set()
        self._closed = False
        self._finished: list[Path] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self.submitted = 0

    # ------------------------------------------------------------------ the executor

    async def _call(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn, *args), CALL_TIMEOUT_S)
        except TimeoutError:
            raise WorkflowError(
                f"{self.what}.{what} gave no answer in {CALL_TIMEOUT_S:g} s"
            ) from None
        except WorkflowError:
            raise
        except Exception as exc:
            raise WorkflowError(f"{self.what}.{what} failed: {_short(exc)}") from None

    def _halted(self, step: str) -> str | None:
        with self._lock:
            if self._stop_cause is not None:
                return self._stop_cause
            if None in self._cancels:
                return "the run was cancelled"
            if step in self._cancels:
                return f"job {step!r} was cancelled"
            return "the run ended" if self._closed else None

    def _poke(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # its loop closed: nobody waits
                loop.call_soon_threadsafe(wake.set)

    # ------------------------------------------------------------------ one chunk

    def submit(
        self, step: str, fn: Callable[..., Any], calls: Calls, **opts: Any
    ) -> Awaitable[Results]:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._wake = asyncio.Event()
        return self._job(step, fn, calls, opts)

    def _resources(self, step: str, d: Path, opts: dict[str, Any]) -> JobResources:
        extra: dict[str, Any] = dict(opts.get("submit_options") or {})
        if opts.get("partition"):
            extra["partition"] = opts["partition"]
        if opts.get("account"):
            extra["account"] = opts["account"]
        memory = opts.get("memory")
        kwargs: dict[str, Any] = {}
        if opts.get("time"):
            kwargs["time_limit"] = str(opts["time"])
        if memory:
            kwargs["mem"] = f"{max(1, math.ceil(memory / 2**20))}M"
        return JobResources(
            job_name=f"{self._prefix}.{step}",
            cpus=max(1, math.ceil(opts.get("cpus") or 1)),
            output_path=d / "0.out",
            error_path=d / "0.err",
            submit_options=extra,
            backend=self.executor.backend,
            **kwargs,
        )

    def _command(self, d: Path) -> list[str]:
        paths = [p for p in sys.path if p and os.path.isdir(p)]
        return [
            self.executor.python,
            "-m",
            "reflow.workflow._slurm_worker",
            str(d),
            "--task",
            "0",
            "--stderr",
            str(d / "0.err"),
            "--sys-path",
            os.pathsep.join(dict.fromkeys(paths)),
        ]

    async def _job(
        self, step: str, fn: Callable[..., Any], calls: Calls, opts: dict[str, Any]
    ) -> Results:
        why = self._halted(step)
        if why is not None:
            return _cancelled(calls, f"job {step!r} was not submitted: {why}")
        self._count += 1
        d = self._base / f"{step}-{self._count}"
        retries = opts.get("retries", 0)
        try:
            await asyncio.to_thread(write_inputs, step, d, fn, [calls], retries)
            resources = self._resources(step, d, opts)
            job_id = await self._call("submit", self.executor.submit, resources, self._command(d))
            if not isinstance(job_id, str) or not job_id.strip() or len(job_id) > 200:
                raise WorkflowError(
                    f"{self.what}.submit must return a job id (a non-empty string), "
                    f"got {job_id!r:.80}"
                )
        except WorkflowError as exc:
            return [(i, False, f"job {step!r}: {exc}") for i, _ in calls]
        self.submitted += 1
        with self._lock:
            self._out[job_id] = step
        # a watcher cancelled with the run (its timeout, Ctrl-C) leaves the job in ``_out``:
        # close() cancels it
        results = await self._watch(step, job_id, d, calls, opts)
        with self._lock:
            self._out.pop(job_id, None)
        if all(ok for _, ok, _ in results):
            self._finished.append(d)  # removed at close; a failed one is kept
        elif opts.get("on_error") == "stop":
            for i, ok, value in results:
                if not ok and not str(value).startswith(CANCELLED):
                    what = f"element {i} of {step!r}" if opts.get("array") else repr(step)
                    first = (str(value).strip().splitlines() or [""])[0][:300]
                    self.stop(f"the run stopped after {what} failed: {first}")
                    break
        return results

    def _label(self, job_id: str, step: str) -> str:
        return f"{self.what} job {job_id} of job {step!r}"

    async def _watch(
        self, step: str, job_id: str, d: Path, calls: Calls, opts: dict[str, Any]
    ) -> Results:
        label = self._label(job_id, step)
        limit = opts.get("time_s")
        started: float | None = None
        unknown_since: float | None = None
        ended_at: float | None = None
        interval = POLL_MIN_S
        result = d / "out" / "0.pkl"
        while True:
            if result.exists():
                return read_results(d, 0, calls, job_id, step, f"{self.what} job")
            why = self._halted(step)
            if why is not None:
                return await self._cancel(step, job_id, d, calls, f"{label} was cancelled: {why}")
            now = time.monotonic()
            try:
                state = await self._call("job_state", self.executor.job_state, job_id)
            except WorkflowError as exc:
                state, err = None, str(exc)
            else:
                err = ""
            word = state.strip().upper() if isinstance(state, str) and state.strip() else None
            if word is None:
                unknown_since = unknown_since or now
                if now - unknown_since >= GONE_AFTER_S:
                    cause = err or f"{self.what} no longer knows it"
                    return self._failed(d, calls, f"{label} wrote no result and {cause}")
            elif word in WAITING:
                unknown_since = None
                if started is None and word not in _NOT_RUNNING:
                    started = now
                if limit and started is not None and now - started > limit:
                    await self._cancel_quietly(job_id)
                    text = (
                        f"{JobTimeoutError.__name__}: {label} ran past its time limit "
                        f"{opts.get('time')!r} ({limit:g} s) and was cancelled"
                    )
                    return self._failed(d, calls, text)
            else:
                if result.exists():
                    continue
                ended_at = ended_at or now
                if word != "COMPLETED" or now - ended_at >= LAG_S:
                    what = (
                        "ended COMPLETED without writing its result"
                        if word == "COMPLETED"
                        else f"ended {word[:60]}"
                    )
                    return self._failed(d, calls, f"{label} {what}")
            await self._sleep(interval)
            interval = min(POLL_MAX_S, interval * 1.5)

    async def _sleep(self, seconds: float) -> None:
        assert self._wake is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def _failed(self, d: Path, calls: Calls, text: str) -> Results:
        tail = stderr_tail(d / "0.err")
        text += (
            f"; the end of its stderr ({d / '0.err'}):\n{tail}" if tail else "; its stderr is empty"
        )
        return [(i, False, text) for i, _ in calls]

    async def _cancel_quietly(self, job_id: str) -> str:
        try:
            await self._call("cancel", self.executor.cancel, job_id)
        except WorkflowError as exc:
            return str(exc)
        return ""

    async def _cancel(self, step: str, job_id: str, d: Path, calls: Calls, text: str) -> Results:
        err = await self._cancel_quietly(job_id)
        if (d / "out" / "0.pkl").exists():  # it finished as it was cancelled
            return read_results(d, 0, calls, job_id, step, f"{self.what} job")
        return _cancelled(calls, text + (f" ({err})" if err else ""))

    # ------------------------------------------------------------------ the run's calls

    def stop(self, why: str) -> None:
        """A stop: nothing more is submitted, every job still out is cancelled."""
        with self._lock:
            if self._stop_cause is None:
                self._stop_cause = why
        self._poke()

    def cancel(self, step: str | None) -> None:
        """``Run.cancel()`` (from any thread): nothing more of ``step`` (``None``: of the
        run) is submitted; its jobs still out are cancelled by their watchers."""
        with self._lock:
            self._cancels.add(step)
        self._poke()

    def close(self) -> None:
        """Cancel the jobs still out (a timeout, Ctrl-C, a stop) and remove the files of the
        jobs that succeeded."""
        with self._lock:
            self._closed = True
            ids = list(self._out)
            self._out.clear()
        if ids:  # bounded: an executor's cancel that hangs does not hold the run's end
            t = threading.Thread(target=self._cancel_all, args=(ids,), daemon=True)
            t.start()
            t.join(CALL_TIMEOUT_S)
        for d in self._finished:
            shutil.rmtree(d, ignore_errors=True)
        self._finished.clear()
        with contextlib.suppress(OSError):
            self._base.rmdir()  # only when empty

    def _cancel_all(self, ids: list[str]) -> None:
        for job_id in ids:
            with contextlib.suppress(Exception):
                self.executor.cancel(job_id)


def _cancelled(calls: Calls, why: str) -> Results:
    return [(i, False, f"{CANCELLED}{why}") for i, _ in calls]
