"""``backend="slurm"``: a workflow's calls as Slurm batch jobs, the graph itself driven here.

``wf.run(run_dir, backend="slurm", address=PARTITION)`` submits with the ``sbatch`` found on
``PATH`` to the cluster that ``SLURM_CONF`` (or Slurm's default config) names; ``address`` is
the partition (``None``: the cluster's default one). Results come back to this process, so the
Merkle cache, the events and the report work as with the local backend. This module drives the
jobs; the command lines it runs and the reading of their output are ``_slurm_cmd``'s.

Submission. All chunks of one array job (see ``_run``) become ONE ``sbatch --array=0-K%L``
job, ``L`` being the job's ``array_limit``, else the run's ``max_workers`` (no ``%L``
without either); a plain job is one plain
``sbatch`` job. ``K`` above the cluster's ``MaxArraySize`` splits the chunks over several array
jobs, each after the previous one (``--dependency=afterany``) when there is a limit, so ``L``
still bounds what runs at once. The decorator's resources map to ``--cpus-per-task`` (``cpus``
rounded up, at least 1), ``--mem`` (``mem``, in MiB), ``--time`` (``time``, Slurm's own
formats: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``) and ``--partition``
(``"a,b"``: any of them); the job name is ``<run dir name>.<step>``.

Files. Each submission has a directory ``<run_dir>/.reflow-slurm/<step>-<n>/`` (the run dir
must be on a file system the nodes share): ``in/<task>.pkl`` holds ``(fn, calls, retries)``,
pickled with cloudpickle (``pip install 'reflow[slurm]'``; functions of modules that are not
installed travel by value, as with Ray), or with plain pickle when cloudpickle is absent, in
which case job functions must be importable module-level functions; the worker
(``python -m reflow.workflow._slurm_worker``, this interpreter, ``PYTHONPATH`` set to this
process's ``sys.path``) writes ``out/<task>.pkl`` atomically; Slurm writes ``<task>.out`` and
``<task>.err``. A submission that succeeded entirely is removed; a failed one is kept.
Writing and reading these files is ``_slurm_files``'s.

Watching. One poller reads the result files and ``squeue --states=all`` (one element per
line), every 0.25 s growing to ``POLL_MAX_S``. A task that ends ``FAILED``, ``TIMEOUT``,
``OUT_OF_MEMORY``, ``CANCELLED``, ``NODE_FAIL`` (any end but ``COMPLETED``) without a result
file fails its elements with an error naming the Slurm job id, the state and the tail of its
stderr file; a task pending for a reason that never clears (``PartitionTimeLimit``...) is
cancelled and fails the same way. A job killed for its memory says so (``OUT_OF_MEMORY`` where
cgroups enforce ``--mem``; ``FAILED`` plus slurmstepd's "exceeded memory limit" on stderr where
``jobacct_gather``'s ``OverMemoryKill`` does, as on a cluster without cgroups). A controller
that stays unreachable for ``LOST_AFTER_S`` fails every element still out, naming it; a job
Slurm no longer knows fails after ``GONE_AFTER_S``.

Stopping. With ``on_error="stop"`` the first failure — an element's, seen here, or one the run
saw (``stop()``, called by the run) — stops the run: the poller ``scancel``s every job of this
run still pending or running, of every step, takes the results that landed meanwhile, and
resolves every other task as cancelled (:data:`~._backends.CANCELLED` and the first failure,
named), which the run reports as skipped elements; nothing more is submitted (a job whose
``sbatch`` was under way is cancelled at once). ``cancel(step)`` (``Run.cancel()``, from any
thread) does the same for one step's jobs or the run's. Only job ids this backend submitted
are ever cancelled, so a second run at once is not touched.

Up front. ``sbatch`` missing or the controller unreachable at the start is a
:class:`WorkflowError` within ``CMD_TIMEOUT_S``; a bad partition or ``time``, or a ``time``
above the partition's ``MaxTime``, too, before anything is submitted; ``check`` refuses a job
asking for more CPUs or memory than any node of its partition has (``sinfo``), which would
pend forever. Ending the run (done, Ctrl-C, its
``timeout``) ``scancel``s its jobs still pending or running.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._backends import CANCELLED, Backend, Calls, Results
from ._errors import WorkflowError
from ._executors import parse_slurm_address
from ._slurm_cmd import (
    DONE_STATES,
    LIMITS_FORMAT,
    NEVER_CLEARS,
    NODES_FORMAT,
    RUNNING_STATES,
    SQUEUE_FORMAT,
    SlurmNode,
    check_time,
    last_error,
    minutes,
    parse_job_id,
    parse_max_array,
    parse_nodes,
    parse_squeue,
    parse_time_limits,
    sbatch_args,
    show,
)
from ._slurm_files import read_results, stderr_tail, write_inputs

__all__ = ["SlurmBackend"]

#: what a failure raised by ``TaskInterrupted`` in the task says
_INTERRUPTED = "TaskInterrupted: Task interrupted by"
POLL_MIN_S = 0.25
POLL_MAX_S = 2.0
#: how long one Slurm command may take (sinfo/squeue retry an unreachable controller ~10 s)
CMD_TIMEOUT_S = 30.0
#: how long the controller may be unreachable while jobs are out before they fail
LOST_AFTER_S = float(os.environ.get("REFLOW_SLURM_LOST_AFTER_S", "30"))
#: how long a task may stay ended (or unknown to Slurm) without its result file
GONE_AFTER_S = 10.0
#: how much of the first failure's first line a stop's reason quotes
_CAUSE_CHARS = 300


@dataclass
class _Task:
    calls: Calls
    future: asyncio.Future[Results]
    ended: float | None = None  # when first seen ended (or unknown) without a result


@dataclass
class _Submission:
    step: str
    job_id: str
    dir: Path
    tasks: dict[int, _Task]
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


class SlurmBackend(Backend):
    name = "slurm"
    #: the run hands this backend all of an array job's chunks at once (one sbatch --array)
    whole_arrays = True
    #: told each submission's element -> Slurm job id (``<job>_<task>``), for ``status()``
    on_job_ids: Callable[[str, dict[int, str]], None] | None = None

    def __init__(
        self,
        partition: str | None,
        *,
        run_dir: Path,
        jobs: Iterable[Any] = (),
        workers: int | None = None,
    ) -> None:
        self._bin: dict[str, str] = {}
        for cmd in ("sbatch", "squeue", "scancel", "sinfo", "scontrol"):
            found = shutil.which(cmd)
            if found is None:
                raise WorkflowError(
                    f"backend='slurm' needs Slurm's {cmd} on PATH and found none "
                    "(install the Slurm client tools, e.g. Debian's slurm-client)"
                )
            self._bin[cmd] = found
        self._run_dir = run_dir
        self._job_prefix = run_dir.resolve().name or "reflow"
        self._base = run_dir / ".reflow-slurm"
        self._nodes, self._default = self._read_nodes()
        if partition is not None and (not isinstance(partition, str) or not partition):
            raise WorkflowError(f"the Slurm partition must be a name, got {show(partition)}")
        # a SlurmExecutor's address: PARTITION?account=...&qos=... (sbatch options for every job)
        partition, self._extra = parse_slurm_address(partition)
        self.partition = partition
        self._partition_of: dict[str, str | None] = {}
        limits = self._read_limits()
        for spec in jobs:
            tlimit = check_time(getattr(spec, "time", None), spec.name)
            part = getattr(spec, "partition", None) or partition
            self._partition(part, spec.name)
            self._partition_of[spec.name] = part
            # the longest MaxTime of the partitions named (one without a limit: none)
            caps = [limits.get(n) for n in (part or self._default or "").split(",")]
            most = None if None in caps else max(caps, key=lambda c: c[0] if c else 0)
            want = minutes(tlimit) if tlimit is not None else None
            if most is not None and want is not None and want > most[0]:
                raise WorkflowError(
                    f"job {spec.name!r} asks for time={tlimit} but Slurm partition "
                    f"{part or self._default!r} allows at most {most[1]}",
                    step=spec.name,
                )
        total = sum(n.cpus for n in self._partition(partition, None))
        self.slots = max(1, min(workers, total) if workers else total)
        self._workers = workers
        self._max_array = self._read_max_array()
        self._batches: dict[tuple[Any, ...], list[tuple[Calls, asyncio.Future[Results]]]] = {}
        self._launching: set[asyncio.Task[None]] = set()
        self._subs: list[_Submission] = []
        self._poller: asyncio.Task[None] | None = None
        self._count = 0
        self._closed = False
        self._finished: list[Path] = []
        self._lock = threading.Lock()
        self._out: dict[str, str] = {}  # job id -> step, submitted and not yet finished
        #: why the run stopped (on_error="stop": its first failure), once it has
        self._stop_cause: str | None = None
        #: steps cancel() stopped (None: the whole run)
        self._cancels: set[str | None] = set()
        self.submitted = 0  # sbatch calls that made a job

    # ------------------------------------------------------------------ slurm commands

    def _cmd(self, *args: str, timeout: float = CMD_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        argv = [self._bin.get(args[0], args[0]), *args[1:]]
        try:
            return subprocess.run(
                argv,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
                env=self._env(),
            )
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(
                argv, 124, "", f"{args[0]}: no answer in {timeout:g} s"
            )
        except OSError as exc:
            return subprocess.CompletedProcess(argv, 127, "", f"{args[0]}: {exc}")

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        paths = [p for p in sys.path if p and os.path.isdir(p)]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        return env

    def _where(self) -> str:
        return (
            f"SLURM_CONF={os.environ['SLURM_CONF']}"
            if "SLURM_CONF" in os.environ
            else "the default config"
        )

    def _read_nodes(self) -> tuple[dict[str, list[SlurmNode]], str | None]:
        p = self._cmd("sinfo", "-h", "-N", "-o", NODES_FORMAT)
        if p.returncode != 0:
            first = last_error(p.stderr, p.returncode)
            raise WorkflowError(
                f"cannot reach the Slurm controller ({self._where()}): sinfo: {first}"
            )
        return parse_nodes(p.stdout)

    def _read_limits(self) -> dict[str, tuple[float, str]]:
        """Each partition's MaxTime in minutes (and as sinfo prints it); none: no limit."""
        return parse_time_limits(self._cmd("sinfo", "-h", "-o", LIMITS_FORMAT).stdout)

    def _read_max_array(self) -> int:
        return parse_max_array(self._cmd("scontrol", "show", "config").stdout)

    def _partition(self, part: str | None, step: str | None) -> list[SlurmNode]:
        """The nodes of ``part`` (``"a,b"``: any of them, as sbatch takes it)."""
        names = (part or self._default or "").split(",")
        nodes: list[SlurmNode] = []
        for name in names:
            if name not in self._nodes:
                known = ", ".join(sorted(self._nodes)) or "none"
                what = f"partition {show(name if part else None)}" if part else "default partition"
                who = f"job {step!r}: " if step else ""
                raise WorkflowError(
                    f"{who}the Slurm cluster has no {what} (partitions: {known})", step=step
                )
            nodes.extend(self._nodes[name])
        return nodes

    # ------------------------------------------------------------------ backend protocol

    def check(self, step: str, cpus: float, memory: int | None) -> None:
        """A job needing more CPUs or memory than the largest node of its partition has
        would pend forever: refuse it."""
        part = self._partition_of.get(step, self.partition)
        nodes = self._partition(part, step)
        where = f"partition {part or self._default!r}"
        most_cpu = max((n.cpus for n in nodes), default=0)
        most_mem = max((n.mem_mb for n in nodes), default=0)
        need = max(1, math.ceil(cpus))
        if need > most_cpu:
            raise WorkflowError(
                f"job {step!r} asks for cpus={cpus:g} but the largest node of Slurm {where} "
                f"has {most_cpu}",
                step=step,
            )
        if memory and math.ceil(memory / 2**20) > most_mem:
            raise WorkflowError(
                f"job {step!r} asks for {math.ceil(memory / 2**20)} MiB of memory but the "
                f"largest node of Slurm {where} has {most_mem} MiB",
                step=step,
            )

    def submit(
        self, step: str, fn: Callable[..., Any], calls: Calls, **opts: Any
    ) -> Awaitable[Results]:
        tlimit = check_time(opts.get("time"), step)
        part = opts.get("partition") or self._partition_of.get(step, self.partition)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Results] = loop.create_future()
        with self._lock:
            why = self._halted(step)
        if why is not None:  # the run stopped or was cancelled: this is not submitted
            fut.set_result(_cancelled(calls, f"job {step!r} was not submitted: {why}"))
            return fut
        key = (
            step,
            id(fn),
            part,
            opts.get("cpus", 1),
            opts.get("memory"),
            tlimit,
            opts.get("retries", 0),
            opts.get("array_limit"),
            opts.get("on_error"),
            bool(opts.get("array")),
            opts.get("account"),
            tuple(opts.get("submit_options") or ()),
        )
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = []
            # every chunk of the array is handed over in one go (the run does not await in
            # between): gather them into one sbatch on the next turn of the loop
            loop.call_soon(self._flush, key, fn)
        batch.append((calls, fut))
        return fut

    def _flush(self, key: tuple[Any, ...], fn: Callable[..., Any]) -> None:
        batch = self._batches.pop(key)
        task = asyncio.ensure_future(self._launch(key, fn, batch))
        self._launching.add(task)
        task.add_done_callback(self._launching.discard)

    async def _launch(
        self,
        key: tuple[Any, ...],
        fn: Callable[..., Any],
        batch: list[tuple[Calls, asyncio.Future[Results]]],
    ) -> None:
        step, _, part, cpus, memory, tlimit, retries, limit, on_error, array, account, options = key
        limit = limit or self._workers  # max_workers bounds what runs at once, as locally
        groups = [batch[i : i + self._max_array] for i in range(0, len(batch), self._max_array)]
        after: str | None = None
        for group in groups:
            with self._lock:
                why = self._halted(step)
            if why is not None:
                for calls, fut in group:
                    _set(fut, _cancelled(calls, f"job {step!r} was not submitted: {why}"))
                continue
            self._count += 1
            d = self._base / f"{step}-{self._count}"
            many = array or len(group) > 1
            argv = sbatch_args(
                name=f"{self._job_prefix}.{step}",
                cpus=cpus,
                chdir=os.getcwd(),
                files=str(d),
                tasks=len(group),
                array=many,
                limit=limit,
                memory=memory,
                time=tlimit,
                partition=part,
                after=after,
                account=account,
                options=options,
            )
            try:
                job_id = await asyncio.to_thread(
                    self._sbatch, step, d, argv, fn, [c for c, _ in group], retries
                )
            except _Halted as exc:
                for calls, fut in group:
                    _set(fut, _cancelled(calls, str(exc)))
                continue
            except WorkflowError as exc:
                for calls, fut in group:
                    if not fut.done():
                        fut.set_result([(i, False, str(exc)) for i, _ in calls])
                continue
            self.submitted += 1
            after = job_id
            tasks = {k: _Task(calls, fut) for k, (calls, fut) in enumerate(group)}
            sub = _Submission(step, job_id, d, tasks, many, on_error == "stop", tlimit, memory)
            self._subs.append(sub)
            if self.on_job_ids is not None:
                ids = {i: sub.label(k) for k, t in tasks.items() for i, _ in t.calls}
                self.on_job_ids(step, ids)
            if self._poller is None or self._poller.done():
                self._poller = asyncio.ensure_future(self._poll())

    def _sbatch(
        self,
        step: str,
        d: Path,
        argv: list[str],
        fn: Callable[..., Any],
        chunks: list[Calls],
        retries: int,
    ) -> str:
        script = write_inputs(step, d, fn, chunks, retries)
        p = self._cmd("sbatch", "--parsable", *self._extra, *argv, str(script))
        job_id = parse_job_id(p.stdout)
        if p.returncode != 0 or not job_id.isdigit():
            text = " ".join(p.stderr.strip().splitlines()[-2:]) or f"exit status {p.returncode}"
            raise WorkflowError(
                f"job {step!r}: sbatch did not take it ({self._where()}): {text}", step=step
            )
        # known to close(), stop and cancel() from now on, even before the loop registers it
        with self._lock:
            why = self._halted(step)
            if not self._closed and why is None:
                self._out[job_id] = step
                return job_id
        # the run ended, stopped or was cancelled while sbatch ran: nobody waits for this job
        self._cmd("scancel", job_id, timeout=10)
        if why is not None:
            raise _Halted(f"Slurm job {job_id} of job {step!r} was cancelled at once: {why}")
        raise WorkflowError(f"job {step!r}: the run ended while it was submitted", step=step)

    # ------------------------------------------------------------------ watching

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
                    with self._lock:
                        self._out.pop(sub.job_id, None)
                if not sub.failed:
                    self._finished.append(sub.dir)  # removed at close
            interval = POLL_MIN_S if progress else min(POLL_MAX_S, interval * 1.5)

    def _halted(self, step: str) -> str | None:
        """Why nothing more of ``step`` may run, or ``None`` (the caller holds the lock)."""
        if self._stop_cause is not None:
            return self._stop_cause
        if None in self._cancels:
            return "the run was cancelled"
        if step in self._cancels:
            return f"job {step!r} was cancelled"
        return None

    async def _halt(self) -> bool:
        """Carry out a stop (every job of the run) or a ``cancel()`` (the jobs of the steps it
        named): ``scancel`` them, pending or running, collect the results that landed, and
        resolve every other task as cancelled, saying why. ``False``: nothing to do."""
        with self._lock:
            whys = {s.job_id: self._halted(s.step) for s in self._subs if s.tasks}
        hit = [s for s in self._subs if s.tasks and whys.get(s.job_id)]
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
                self._resolve(sub, k, _cancelled(sub.tasks[k].calls, text + str(whys[sub.job_id])))
        return True

    def _collect(self, sub: _Submission) -> bool:
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

    def _resolve(self, sub: _Submission, k: int, results: Results) -> None:
        task = sub.tasks.pop(k)
        fut = task.future
        if not fut.done():
            fut.get_loop().call_soon_threadsafe(_set, fut, results)
        if not sub.stop_on_error:
            return
        for i, ok, value in results:
            text = str(value)
            if not ok and not text.startswith(CANCELLED):
                # the run's first failure: the poller stops every job of the run (_halt)
                what = f"element {i} of {sub.step!r}" if sub.array else repr(sub.step)
                first = (text.strip().splitlines() or [""])[0][:_CAUSE_CHARS]
                self.stop(f"the run stopped after {what} failed: {first}")
                return

    async def _watch(self, sub: _Submission) -> bool:
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
            if now - sub.lost_since < LOST_AFTER_S:
                return False
            first = last_error(p.stderr, p.returncode)
            text = (
                f"the Slurm controller ({self._where()}) was unreachable for {LOST_AFTER_S:g} s "
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
    def _held(sub: _Submission) -> set[int]:
        """The tasks still waited for whose result file is there (held back for their end
        state, or landed since the last look)."""
        try:
            names = set(os.listdir(sub.dir / "out"))
        except OSError:
            return set()
        return {k for k in sub.tasks if f"{k}.pkl" in names}

    def _interrupted(self, sub: _Submission, k: int, results: Results) -> Results:
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

    def _fail_task(self, sub: _Submission, k: int, why: str) -> None:
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

    def _fail_all(self, sub: _Submission, text: str) -> None:
        sub.failed = sub.abandoned = True
        for k in list(sub.tasks):
            calls = sub.tasks[k].calls
            self._resolve(sub, k, [(i, False, text) for i, _ in calls])

    def stop(self, why: str) -> None:
        """``on_error="stop"`` and a failure (seen here or by the run): every job of this run
        still pending or running is cancelled by the poller, nothing more is submitted."""
        with self._lock:
            if self._stop_cause is None:
                self._stop_cause = why

    def cancel(self, step: str | None) -> None:
        """``Run.cancel()`` (from any thread): nothing more of ``step`` (``None``: of the
        run) is submitted, and its jobs still out are ``scancel``ed now; the poller reports
        their elements as cancelled."""
        with self._lock:
            self._cancels.add(step)
            ids = sorted((j for j, s in self._out.items() if step in (None, s)), key=int)
        if ids:
            self._cmd("scancel", *ids, timeout=10)

    def close(self) -> None:
        """Cancel this run's jobs still out (Ctrl-C, a timeout, a stop after a failure)."""
        with self._lock:
            self._closed = True
            ids = sorted(self._out, key=int)
            self._out.clear()
        if self._poller is not None:
            with contextlib.suppress(RuntimeError):  # its loop may be closed already
                self._poller.cancel()
        self._subs.clear()
        if ids:
            self._cmd("scancel", *ids, timeout=10)
        for d in self._finished:
            shutil.rmtree(d, ignore_errors=True)
        self._finished.clear()


class _Halted(Exception):
    """A job submitted as the run stopped or was cancelled: cancelled at once."""


def _cancelled(calls: Calls, why: str) -> Results:
    return [(i, False, f"{CANCELLED}{why}") for i, _ in calls]


def _set(fut: asyncio.Future[Results], results: Results) -> None:
    if not fut.done():
        fut.set_result(results)
