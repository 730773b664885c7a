"""Running a workflow's plan on the reflow runtime, on this machine.

Each job becomes one node of a :class:`~reflow.Network` (component ``workflow:<step>``), with
one in-port per step it waits for and an ``out`` port; a node's tick runs when every upstream
step has finished (``await_all_inports``), so the network's events, failures and summaries are
those of the workflow. A packet between two nodes is a small ``Object`` naming the step whose
results are ready — the values themselves stay in the run (they need not be JSON).

An array job's elements run on a backend (``_backends``: threads by default, processes with
``processes=True``, or Ray tasks with ``backend="ray"``; ``_slurm``: one Slurm array job with
``backend="slurm"``, which takes all of a job's chunks at once), at most ``max_workers`` (Ray: the
cluster's CPUs) at a time and at most the job's ``array_limit``; elements go to the backend in
chunks so that ten thousand trivial elements do not cost ten thousand wake-ups or tasks.
Each finished chunk is a packet on the array node's ``elements`` out-port (an ``Object``:
``{"step", "indices", "failed"}``, the element indices it finished and those of them that
failed), so a subscriber sees a ``MessageSent`` per chunk while the job runs, and
``RunReport.steps[step].chunks`` counts them. Every element and every job result has a Merkle
key (see ``_cache``); with ``cache=True`` a job reuses stored results whose key is unchanged,
and an array job stores each chunk's results as the chunk finishes, so a run that is killed
resumes from the chunks it finished, not from the job's start.

``on_error="stop"`` (the default) stops at the first failure — elements not yet started are
not started, steps not yet run are skipped — and ``run_local`` raises
:class:`WorkflowFailed` with the report. ``on_error="continue"`` keeps going: an array job's
failed element fails only the elements chained to it, a step that needs a failed result is
skipped, and the report says what happened.

The parameters and options are checked before this runs (``_params``); what a job's calls
get, and their Merkle keys, is ``_inputs``'s; what a run reuses, a retried attempt's results
and the result cache, is looked up through ``_reuse``; the hooks a ``Run`` handle gives it are
``_run_hooks``'s.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .._core._actor import Actor
from .._core._messages import Message
from .._core._network import Network
from ._backends import CANCELLED, Backend, LocalBackend, RayBackend, exc_text
from ._batch import BatchBackend, executor_for
from ._cache import MISS, ResultCache, merkle
from ._errors import ParamError, WorkflowError, WorkflowFailed, shown
from ._flow import Plan
from ._inputs import StepState, array_calls, single_call
from ._job import JobSpec, RunDirInput
from ._params import BACKENDS, check_options, forced_steps, resolve_params
from ._report import RunReport, StepReport
from ._reuse import Reuse
from ._run_hooks import FAILED, Hooks, PriorFailure
from ._signals import interrupts, running
from ._slurm import SlurmBackend

#: the backends of ``_batch`` (an Executor object drives the jobs)
BATCH_BACKENDS = ("pbs", "lsf", "sge", "flux", "executor")


class _JobTickFailures(logging.Filter):
    """Drops the scheduler's "tick failed" line of a job's node: the run reports each failed
    element itself, once, with its index (``RunReport.log_failures``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != "tick failed: %s" or not isinstance(record.args, tuple):
            return True
        failure = record.args[0] if record.args else None
        return not str(getattr(failure, "component", "")).startswith("workflow:")


logging.getLogger("reflow").addFilter(_JobTickFailures())

# BACKENDS, check_options and resolve_params moved to ``_params``; the package imports them
# from here
__all__ = ["BACKENDS", "check_options", "resolve_params", "run_plan"]


class _Run:
    def __init__(
        self,
        plan: Plan,
        params: dict[str, Any],
        run_dir: Path,
        *,
        backend: Backend,
        cache: ResultCache | None,
        force: set[str],
        on_error: str,
        hooks: Hooks | None = None,
        verify: bool = False,
    ) -> None:
        self.hooks = hooks or Hooks()
        self.reuse = Reuse(
            prior=self.hooks.prior or {},
            retry_steps=self.hooks.retry_steps,
            cache=cache,
            force=force,
            verify=verify,
        )
        self.interrupted: str | None = None  # the signal that stopped the run (``_signals``)
        self.loop: asyncio.AbstractEventLoop | None = None  # the network's, once it ticks
        self.cancelled = False
        self.cancelled_steps: set[str] = set()
        self.plan = plan
        self.params = params
        self.run_dir = run_dir
        self.backend = backend
        self.on_error = on_error
        self.stopped = False
        self.state = {n: StepState() for n in plan.order}
        self.report = {n: StepReport(n, plan.jobs[n].array) for n in plan.order}

    # ------------------------------------------------------------------ ticks

    def _needs_bad(self, spec: JobSpec) -> str:
        """Why this step cannot run (an upstream step that failed, was skipped, or is partial
        where all of it is needed), or ``""``."""
        iter_steps = {w.parts[0][0] for w in self.plan.wires[spec.name] if w.mode == "chain"}
        for up in spec.upstream():
            r = self.report[up]
            if r.status in ("failed", "skipped"):
                return f"step {up!r} {r.status}"
            if r.status == "partial" and up not in iter_steps:
                return f"step {up!r} has failed elements"
        if self.cancelled:
            return "the run was cancelled"
        if spec.name in self.cancelled_steps:
            return "the step was cancelled"
        if self.stopped:
            return self.stop_reason()
        return ""

    def stop_reason(self) -> str:
        """Why the run stopped: its first failure (in step order), named."""
        if self.interrupted:
            return f"the run was interrupted by {self.interrupted}"
        for name, r in self.report.items():
            for i, err in r.failures.items():
                where = f"element {i} of {name!r}" if r.array and r.elements else repr(name)
                first = (err.splitlines() or [""])[0][:300]
                return f"the run stopped after {where} failed: {first}"
        return "the run stopped after a failure"

    def interrupt(self, signum: int) -> None:
        """A SIGTERM/SIGINT reached the process: the running calls see ``TaskInterrupted``
        (``_signals``), nothing more starts. Called from a signal handler: it sets flags."""
        self.interrupted = signal.Signals(signum).name
        self.stopped = True
        stop = getattr(self.backend, "stop", None)  # a batch system: cancel its jobs
        if stop is not None and self.loop is not None:
            # not from the handler itself: the backend's lock may be held by this thread
            self.loop.call_soon_threadsafe(stop, self.stop_reason())

    def cancel(self, step: str | None = None) -> None:
        """Start nothing more (of ``step``, or of the run); what runs finishes or is stopped
        by the backend (Ray tasks are cancelled)."""
        if step is None:
            self.cancelled = self.stopped = True
        else:
            self.cancelled_steps.add(step)
        self.backend.cancel(step)

    async def tick(self, step: str, ctx: Any) -> None:
        self.loop = asyncio.get_running_loop()
        spec = self.plan.jobs[step]
        rep = self.report[step]
        why = self._needs_bad(spec)
        if why:
            rep.status, rep.reason = "skipped", why
            self.hooks.progress()
            ctx.done()
            return
        rep.status = "running"
        self.hooks.progress()
        t0 = time.perf_counter()
        try:
            self.backend.check(step, spec.cpus, spec.memory)
            if spec.array:
                await self._array(spec, rep, ctx)
            else:
                await self._single(spec, rep)
        except WorkflowError as exc:
            rep.status, rep.failures[0] = "failed", str(exc)
        except Exception as exc:  # a backend's own failure: this step's, never 'not reached'
            rep.status = "failed"
            rep.failures.setdefault(0, f"job {step!r} could not run: {exc_text(exc)}")
        rep.elapsed = time.perf_counter() - t0
        if rep.status == "running":  # cancelled before it could finish
            rep.status = "skipped"
        cancelled = spec.name in self.cancelled_steps or self.cancelled
        if cancelled:
            rep.reason = rep.reason or "cancelled"
        self.hooks.progress()
        if rep.status == "failed" and cancelled and not rep.failures:
            ctx.done({"out": Message.object({"step": step, "status": "cancelled"})})
            return
        if rep.status == "failed":
            if self.on_error == "stop":
                self.stopped = True
                stop = getattr(self.backend, "stop", None)  # a batch system: cancel its jobs
                if stop is not None:
                    stop(self.stop_reason())
            first = next(iter(rep.failures.values()), "failed")
            ctx.fail(f"job {step!r} failed: {first.splitlines()[0] if first else ''}")
            return
        ctx.done({"out": Message.object({"step": step, "status": rep.status})})

    def _opts(self, spec: JobSpec) -> dict[str, Any]:
        return {
            "retries": spec.retries,
            "cpus": spec.cpus,
            "memory": spec.memory,
            # what a batch system needs besides (backend="slurm")
            "time": spec.time,
            "time_s": spec.time_s,
            "array": spec.array,
            "array_limit": spec.array_limit,
            "partition": getattr(spec, "partition", None),
            "account": spec.account,
            "submit_options": spec.submit_options,
            "on_error": self.on_error,
        }

    def _rundir(self, spec: JobSpec, index: int | None) -> Path:
        # reflow-hpc's contract: every job, and every element of an array job, gets the one
        # shared run directory (``index`` is kept for the callers)
        del spec, index
        self.run_dir.mkdir(parents=True, exist_ok=True)
        return self.run_dir

    async def _single(self, spec: JobSpec, rep: StepReport) -> None:
        kwargs, key = single_call(spec, self.plan.wires[spec.name], self.state, self.params)
        st = self.state[spec.name]
        st.key = key
        rep.elements = 1
        loop = asyncio.get_running_loop()
        use = self.reuse.wanted(spec)
        hit = await loop.run_in_executor(None, self.reuse.lookup, spec, key) if use else MISS
        if isinstance(hit, PriorFailure):
            rep.status, rep.failures[0] = "failed", hit.error
            return
        if hit is not MISS:
            st.value, rep.cached, rep.status, rep.done = hit, 1, "cached", 1
            return
        for i in spec.inputs:
            if isinstance(i, RunDirInput):
                kwargs[i.name] = self._rundir(spec, None)
        try:
            [(_, ok, value)] = await self.backend.submit(
                spec.name, spec.fn, [(0, kwargs)], **self._opts(spec)
            )
        except Exception as exc:  # as an array chunk's (see _dispatch)
            ok, value = False, f"job {spec.name!r} could not run: {exc_text(exc)}"
        rep.ran = 1
        if not ok and self.stopped and not self.cancelled and str(value).startswith(CANCELLED):
            rep.status, rep.reason = "skipped", self.stop_reason()  # stopped by the backend
            return
        if not ok:
            rep.status, rep.failures[0] = "failed", value
            return
        st.value, rep.status, rep.done = value, "done", 1
        if spec.cache:
            rep.refused_by_cache(
                await loop.run_in_executor(None, self.reuse.store, spec, key, value)
            )

    async def _array(self, spec: JobSpec, rep: StepReport, ctx: Any) -> None:
        calls = array_calls(spec, self.plan.wires[spec.name], self.state, self.params, self.run_dir)
        n = len(calls.keys)
        st = self.state[spec.name]
        st.elements = [FAILED] * n
        st.keys = calls.keys
        rep.elements = n
        rep.skipped.extend(calls.skipped)
        rundirs, todo = calls.rundirs, calls.todo
        st.key = merkle("array", *st.keys)
        loop = asyncio.get_running_loop()
        if self.reuse.wanted(spec):
            wanted = [st.keys[i] for i, _ in todo]
            hits = await loop.run_in_executor(None, self.reuse.lookup_many, spec, wanted)
            rest = []
            for (i, kwargs), hit in zip(todo, hits, strict=True):
                if hit is MISS:
                    rest.append((i, kwargs))
                elif isinstance(hit, PriorFailure):
                    rep.failures[i] = hit.error
                    if self.on_error == "stop":
                        self.stopped = True
                else:
                    st.elements[i] = hit
            rep.cached = len(todo) - len(rest) - len(rep.failures)
            rep.done += rep.cached
            todo = rest
        if rundirs and todo:
            await loop.run_in_executor(None, _make_dirs, [kw[rundirs[0]] for _, kw in todo])
        await self._dispatch(spec, rep, todo, ctx)
        rep.ran = len(todo)
        if rep.failures or rep.skipped:
            done = n - len(rep.failures) - len(rep.skipped)
            rep.status = "partial" if done and self.on_error == "continue" else "failed"
            if self.cancelled or spec.name in self.cancelled_steps:
                rep.reason = f"cancelled: {len(rep.skipped)} elements not run"
            elif self.stopped and not rep.failures:
                rep.reason = f"{len(rep.skipped)} elements not run: {self.stop_reason()}"
            elif not rep.failures:
                rep.reason = f"{len(rep.skipped)} elements had failed inputs"
        else:
            rep.status = "cached" if n and rep.cached == n else "done"

    async def _dispatch(
        self, spec: JobSpec, rep: StepReport, todo: list[tuple[int, dict[str, Any]]], ctx: Any
    ) -> None:
        if not todo:
            return
        loop = asyncio.get_running_loop()
        st = self.state[spec.name]
        slots = self.backend.slots
        limit = min(spec.array_limit or slots, slots)
        # one element per task under an explicit limit (it bounds what runs at once), else
        # chunks: a few tasks per worker, so trivial elements cost few event-loop wake-ups
        # (and one per task under a time limit, the limit being each call's; a batch system
        # applies ``time`` to its own tasks)
        whole = getattr(self.backend, "whole_arrays", False)
        timed = spec.time_s is not None and not whole
        chunk = (
            1
            if spec.array_limit is not None or timed
            else max(1, min(256, len(todo) // (limit * 8)))
        )
        chunks = [todo[i : i + chunk] for i in range(0, len(todo), chunk)]
        if whole:
            limit = len(chunks)  # all in one batch job; the backend applies array_limit
        it = iter(chunks)
        pending: set[asyncio.Future[Any]] = set()
        stores: list[asyncio.Future[Any]] = []
        cache = self.reuse.store_for(spec)
        parts: dict[asyncio.Future[Any], list[tuple[int, dict[str, Any]]]] = {}

        def outcome(fut: asyncio.Future[Any]) -> Any:
            # a backend that raises instead of failing the elements fails this chunk's
            # elements, named, so none of them reads 'not reached'
            part = parts.pop(fut)
            try:
                return fut.result()
            except Exception as exc:
                text = f"job {spec.name!r} could not run this element: {exc_text(exc)}"
                return [(i, False, text) for i, _ in part]

        def submit() -> bool:
            if self.stopped or spec.name in self.cancelled_steps:
                return False
            part = next(it, None)
            if part is None:
                return False
            fut = asyncio.ensure_future(
                self.backend.submit(spec.name, spec.fn, part, **self._opts(spec))
            )
            parts[fut] = part
            pending.add(fut)
            return True

        while len(pending) < limit and submit():
            pass
        while pending:
            finished, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for fut in finished:
                pending.discard(fut)
                to_store: list[tuple[str, Any]] = []
                indices: list[int] = []
                failed: list[int] = []
                for i, ok, value in outcome(fut):
                    indices.append(i)
                    if ok:
                        st.elements[i] = value
                        rep.done += 1
                        if cache is not None:
                            to_store.append((st.keys[i], value))
                    elif (
                        isinstance(value, str)
                        and value.startswith(CANCELLED)
                        and (self.cancelled or self.stopped or spec.name in self.cancelled_steps)
                    ):
                        rep.skipped.append(i)  # stopped by cancel() or the stop, not a failure
                    else:
                        failed.append(i)
                        rep.failures[i] = value
                        if self.on_error == "stop":
                            self.stopped = True
                if to_store and cache is not None:
                    stores.append(loop.run_in_executor(None, self.reuse.store_many, spec, to_store))
                rep.chunks += 1
                self.hooks.progress()
                chunk_packet = {"step": spec.name, "indices": indices, "failed": failed}
                await ctx.asend({"elements": Message.object(chunk_packet)})
            while len(pending) < limit and submit():
                pass
        if self.stopped or spec.name in self.cancelled_steps:
            started = {i for i in rep.failures} | {
                i for i in range(len(st.elements)) if st.elements[i] is not FAILED
            }
            started |= set(rep.skipped)
            rep.skipped.extend(i for i, _ in todo if i not in started)
        if stores:
            for refused in await asyncio.gather(*stores):
                rep.refused_by_cache(refused)

    # ------------------------------------------------------------------ results

    def results(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.plan.order:
            st = self.state[name]
            if self.plan.jobs[name].array:
                out[name] = [None if v is FAILED else v for v in st.elements]
            else:
                out[name] = st.value
        return out


def _make_dirs(paths: list[Path]) -> None:
    for p in paths:
        p.mkdir(parents=True, exist_ok=True)


class _JobActor(Actor):
    def __init__(self, run: _Run, step: str, upstream: Sequence[str], array: bool) -> None:
        self.component = f"workflow:{step}"
        self.inports = [f"after_{i}" for i in range(len(upstream))]
        self.outports = ["out", "elements"] if array else ["out"]
        self.await_all_inports = True
        self._wf_run = run
        self._step = step

    async def run(self, ctx: Any) -> None:
        await self._wf_run.tick(self._step, ctx)


def run_plan(
    plan: Plan,
    params: dict[str, Any],
    run_dir: Path,
    *,
    max_workers: int | None,
    processes: bool,
    backend: str = "local",
    address: str | None = None,
    force: bool | Sequence[str],
    verify: bool,
    on_error: str,
    timeout: float | None,
    on_network: Callable[[Network], None] | None = None,
    hooks: Hooks | None = None,
) -> RunReport:
    check_options(plan, max_workers=max_workers, backend=backend, force=force, on_error=on_error)
    forced = forced_steps(plan, force)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in the way, no permission, a name too long
        raise ParamError(
            f"run_dir {shown(str(run_dir), 120)} cannot be made a directory: "
            f"{exc.strerror or exc} (expected a directory path this process can write)",
            param="run_dir",
        ) from None
    uses_cache = any(plan.jobs[n].cache for n in plan.order)
    cache = ResultCache(run_dir / ".reflow-cache", verify=verify) if uses_cache else None
    pool: Backend
    if backend == "slurm":  # address: the partition
        pool = SlurmBackend(address, run_dir=run_dir, jobs=plan.jobs.values(), workers=max_workers)
    elif backend in BATCH_BACKENDS:  # an Executor object, or PBS/LSF/SGE/Flux by name
        executor = executor_for(backend, address)
        pool = BatchBackend(executor, run_dir=run_dir, workers=max_workers)
    elif backend == "ray":
        pool = RayBackend(address, workers=max_workers)
    else:
        pool = LocalBackend(max_workers or os.cpu_count() or 1, processes=processes)
    t0 = time.perf_counter()
    run = _Run(
        plan,
        params,
        run_dir,
        backend=pool,
        cache=cache,
        force=forced,
        on_error=on_error,
        hooks=hooks,
        verify=verify,
    )
    run.hooks.started(run)
    # a SIGTERM/SIGINT: TaskInterrupted in the running calls; the handlers are installed where
    # this runs in the main thread (else the command line's own handler calls interrupt_all)
    children = pool.worker_pids if isinstance(pool, LocalBackend) else None
    if isinstance(pool, SlurmBackend):  # each element's Slurm job id, for status()
        pool.on_job_ids = lambda step, ids: run.report[step].job_ids.update(ids)
    with running(run.interrupt, children=children), interrupts():
        return _execute(plan, run, pool, t0, timeout=timeout, on_network=on_network)


def _execute(
    plan: Plan,
    run: _Run,
    pool: Backend,
    t0: float,
    *,
    timeout: float | None,
    on_network: Callable[[Network], None] | None,
) -> RunReport:
    on_error = run.on_error
    net = Network()
    try:
        for name in plan.order:
            ups = plan.jobs[name].upstream()
            array = plan.jobs[name].array
            net.register_actor(f"workflow:{name}", _JobActor(run, name, ups, array))
            net.add_node(name, f"workflow:{name}")
            if array:
                net.collect(name, "elements")  # the chunk packets' consumer (see above)
        for name in plan.order:
            for i, up in enumerate(plan.jobs[name].upstream()):
                net.add_connection(up, "out", name, f"after_{i}")
        if on_network is not None:
            on_network(net)
        net.run(timeout=timeout)
    finally:
        net.shutdown(wait=0)
        pool.close()
        if run.reuse.cache is not None:  # released before the run returns, not at GC
            run.reuse.cache.close()
    for name in plan.order:
        rep = run.report[name]
        if rep.status in ("pending", "running"):
            spec = plan.jobs[name]
            rep.status = "skipped"
            rep.reason = run._needs_bad(spec) or "not reached"
    report = RunReport(run.report, run.results(), time.perf_counter() - t0)
    report.log_failures()
    if on_error == "stop" and not report.ok:
        raise WorkflowFailed(report.failure_message(), report=report)
    return report
