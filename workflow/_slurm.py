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

Watching is ``_slurm_poll``'s: one poller over the run's submissions, every 0.25 s growing to
2 s, failing a task that ends without its result (naming the Slurm job id, its state and the
tail of its stderr), one pending for a reason that never clears, and every element still out
when the controller stays unreachable for ``LOST_AFTER_S``. Stopping (``on_error="stop"``,
``stop()``) and ``cancel()`` are decided by ``_slurm_stop``'s :class:`~._slurm_stop.SlurmStops`
and carried out by the poller: only job ids this backend submitted are ever cancelled.

Up front. ``sbatch`` missing or the controller unreachable at the start is a
:class:`WorkflowError` within ``CMD_TIMEOUT_S``; a bad partition or ``time``, or a ``time``
above the partition's ``MaxTime``, too, before anything is submitted; ``check`` refuses a job
asking for more CPUs or memory than any node of its partition has (``sinfo``), which would
pend forever. Ending the run (done, Ctrl-C, its
``timeout``) ``scancel``s its jobs still pending or running.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from ._backends import Backend, Calls, Results
from ._errors import WorkflowError
from ._executors import parse_slurm_address
from ._slurm_cmd import (
    LIMITS_FORMAT,
    NODES_FORMAT,
    SlurmNode,
    check_time,
    last_error,
    minutes,
    parse_job_id,
    parse_max_array,
    parse_nodes,
    parse_time_limits,
    sbatch_args,
    show,
)
from ._slurm_files import write_inputs
from ._slurm_poll import SlurmPoller, SlurmTask, Submission, settle
from ._slurm_stop import SlurmStops, cancelled

__all__ = ["SlurmBackend"]

#: how long one Slurm command may take (sinfo/squeue retry an unreachable controller ~10 s)
CMD_TIMEOUT_S = 30.0
#: how long the controller may be unreachable while jobs are out before they fail
LOST_AFTER_S = float(os.environ.get("REFLOW_SLURM_LOST_AFTER_S", "30"))


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
        self._count = 0
        self._stops = SlurmStops()
        self._poller = SlurmPoller(self._cmd, self._where, self._stops, lost_after_s=LOST_AFTER_S)
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
        why = self._stops.halted(step)
        if why is not None:  # the run stopped or was cancelled: this is not submitted
            fut.set_result(cancelled(calls, f"job {step!r} was not submitted: {why}"))
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
            why = self._stops.halted(step)
            if why is not None:
                for calls, fut in group:
                    settle(fut, cancelled(calls, f"job {step!r} was not submitted: {why}"))
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
                    settle(fut, cancelled(calls, str(exc)))
                continue
            except WorkflowError as exc:
                for calls, fut in group:
                    if not fut.done():
                        fut.set_result([(i, False, str(exc)) for i, _ in calls])
                continue
            self.submitted += 1
            after = job_id
            tasks = {k: SlurmTask(calls, fut) for k, (calls, fut) in enumerate(group)}
            sub = Submission(step, job_id, d, tasks, many, on_error == "stop", tlimit, memory)
            if self.on_job_ids is not None:
                ids = {i: sub.label(k) for k, t in tasks.items() for i, _ in t.calls}
                self.on_job_ids(step, ids)
            self._poller.add(sub)

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
        admitted, why = self._stops.admit(job_id, step)
        if admitted:
            return job_id
        # the run ended, stopped or was cancelled while sbatch ran: nobody waits for this job
        self._cmd("scancel", job_id, timeout=10)
        if why is not None:
            raise _Halted(f"Slurm job {job_id} of job {step!r} was cancelled at once: {why}")
        raise WorkflowError(f"job {step!r}: the run ended while it was submitted", step=step)

    def stop(self, why: str) -> None:
        """``on_error="stop"`` and a failure (seen here or by the run): every job of this run
        still pending or running is cancelled by the poller, nothing more is submitted."""
        self._stops.stop(why)

    def cancel(self, step: str | None) -> None:
        """``Run.cancel()`` (from any thread): nothing more of ``step`` (``None``: of the
        run) is submitted, and its jobs still out are ``scancel``ed now; the poller reports
        their elements as cancelled."""
        ids = self._stops.cancel(step)
        if ids:
            self._cmd("scancel", *ids, timeout=10)

    def close(self) -> None:
        """Cancel this run's jobs still out (Ctrl-C, a timeout, a stop after a failure)."""
        ids = self._stops.close()
        self._poller.close()
        if ids:
            self._cmd("scancel", *ids, timeout=10)


class _Halted(Exception):
    """A job submitted as the run stopped or was cancelled: cancelled at once."""
