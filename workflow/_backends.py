"""Where a workflow's calls run: this machine's threads or processes, or a Ray cluster.

A backend takes one *chunk* — a job's function and a list of ``(index, kwargs)`` calls — and
returns an awaitable of ``[(index, ok, value)]``. The run (``_run``) decides chunk sizes and how
many chunks are in flight (``slots``); the backend only carries them out.

Ray (``pip install 'reflow[ray]'``): every chunk is one Ray task whose resources are the job's
``cpus`` and ``mem``, so Ray places it on a node with room. Job functions travel by value
(cloudpickle) unless their module is importable on the workers. A cluster that fails while a
chunk runs (a node dies, the head goes away) fails that chunk's elements with an error that
says so; it never hangs the run.

A job's ``time`` is each call's wall-clock limit (one call per task then, so the limit is the
call's): a call past it fails with a :class:`JobTimeoutError` message naming the step, the
element and the limit. Ray cancels the task (its worker is killed); in worker processes
(``processes=True``) each such call runs in a process of its own, killed at the limit; in
threads the call is interrupted at its next Python instruction (a thread cannot be killed, so a
call blocked inside C code — a long ``time.sleep``, a socket — finishes in the background, its
result dropped).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import ctypes
import logging
import multiprocessing
import os
import pickle
import re
import socket
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from . import _exit_guard
from ._errors import JobTimeoutError, WorkflowDefinitionError, WorkflowError
from ._signals import TaskInterrupted, interrupts, job_call

__all__ = [
    "CANCELLED",
    "Backend",
    "LocalBackend",
    "RayBackend",
    "exc_text",
    "parse_memory",
    "run_chunk",
    "run_chunk_on_ray",
    "run_chunk_pickled",
]

Calls = list[tuple[int, dict[str, Any]]]
#: how often a backend waiting on Ray checks that the cluster is still there, and for how long
#: it may be unreachable before the run fails
WATCH_S = 1.0
LOST_AFTER_S = float(os.environ.get("REFLOW_RAY_LOST_AFTER_S", "10"))
#: how long an address is tried before ray.init is called at all
CONNECT_S = 5.0
Results = list[tuple[int, bool, Any]]
#: how the failure of a call stopped by ``cancel()`` begins
CANCELLED = "cancelled: "


def _call(fn: Callable[..., Any], kwargs: dict[str, Any], retries: int) -> Any:
    for attempt in range(retries + 1):
        try:
            return fn(**kwargs)
        except TaskInterrupted:
            raise  # not retried: the process is being stopped
        except Exception:
            if attempt == retries:
                raise
    raise AssertionError("unreachable")


def exc_text(exc: BaseException) -> str:
    """``"Type: message"`` of any exception, even one whose ``__str__`` raises or is huge."""
    try:
        msg = str(exc)
    except BaseException:  # a hostile __str__ must not turn a failure into a lost element
        msg = "<its str() raised>"
    if len(msg) > 20_000:
        msg = msg[:20_000] + f"... ({len(msg)} characters)"
    return f"{type(exc).__name__}: {msg}"


def _traceback(exc: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(exc))
    except BaseException:
        return ""


def run_chunk(fn: Callable[..., Any], calls: Calls, retries: int) -> Results:
    """Run several elements in one task; each result is ``(index, ok, value)``, the value of a
    failure being its formatted exception (tracebacks do not pickle). The chunk is a job call
    (``_signals``): a SIGTERM/SIGINT raises ``TaskInterrupted`` in the call running, and the
    calls after it fail as not run. What a job raises that is not an ``Exception``
    (``KeyboardInterrupt``, ``SystemExit``, ``GeneratorExit``) is that element's failure too:
    it must not end the worker nor leave the run."""
    out: Results = []
    with job_call():
        for n, (i, kwargs) in enumerate(calls):
            try:
                out.append((i, True, _call(fn, kwargs, retries)))
            except TaskInterrupted as exc:
                out.append((i, False, f"{exc_text(exc)}\n{_traceback(exc)}"))
                why = f"not run: the task was interrupted by {exc.signal_name}"
                out.extend((j, False, why) for j, _ in calls[n + 1 :])
                break
            except BaseException as exc:
                out.append((i, False, f"{exc_text(exc)}\n{_traceback(exc)}"))
    return out


def _dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=5)


def run_chunk_pickled(
    fn: Callable[..., Any],
    calls: Calls,
    retries: int,
    *,
    where: str = "worker process",
    dumps: Callable[[Any], bytes] = _dumps,
) -> bytes:
    """:func:`run_chunk` in a worker process (or a Ray worker: ``where``, with ``dumps`` Ray's
    cloudpickle), its results pickled here: a result that cannot be pickled fails its own
    element, naming why, instead of the whole chunk coming back as the pool's pickling error
    (or as a worker that died)."""
    out = run_chunk(fn, calls, retries)
    try:
        return dumps(out)
    except Exception:
        pass
    safe: Results = []
    for i, ok, value in out:
        try:
            dumps(value)
        except Exception as exc:
            what = f"a result of type {type(value).__name__}"
            safe.append(
                (i, False, f"{what} cannot be pickled to leave its {where}: {exc_text(exc)}")
            )
        else:
            safe.append((i, ok, value))
    return dumps(safe)


def run_chunk_on_ray(fn: Callable[..., Any], calls: Calls, retries: int) -> bytes:
    """:func:`run_chunk_pickled` in a Ray worker, with Ray's cloudpickle (a lambda travels):
    Ray would otherwise fail the whole task on one value it cannot serialize."""
    from ray import cloudpickle

    return run_chunk_pickled(fn, calls, retries, where="Ray worker", dumps=cloudpickle.dumps)


def timeout_text(step: str, index: int, opts: dict[str, Any]) -> str:
    """A call's failure when it ran past its job's ``time``: what the report shows."""
    limit = opts.get("time_s") or 0.0
    what = f"element {index} of array job {step!r}" if opts.get("array") else f"job {step!r}"
    return (
        f"{JobTimeoutError.__name__}: {what} ran past its time limit "
        f"{opts.get('time')!r} ({limit:g} s) and was stopped"
    )


def _interrupt(ident: int | None) -> None:
    """Raise TimeoutError in a pool thread at its next Python instruction (best effort)."""
    if ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(ident), ctypes.py_object(TimeoutError)
        )


#: how long a process started for a time-limited call may take to start (not counted in the
#: call's limit)
START_S = 120.0


def _killable_call(conn: Any, fn: Callable[..., Any], calls: Calls, retries: int) -> None:
    conn.send("started")
    with interrupts():  # a SIGTERM forwarded by the run: TaskInterrupted in the call
        conn.send_bytes(run_chunk_pickled(fn, calls, retries))
    conn.close()


#: the processes started for time-limited calls (``_run_in_process``), to forward signals to
_SPAWNED: set[int] = set()


def _run_in_process(fn: Callable[..., Any], calls: Calls, retries: int, limit: float) -> Any:
    """One call in a process of its own, killed ``limit`` seconds after it started: ``None``
    then."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_killable_call, args=(child, fn, calls, retries), daemon=True)
    proc.start()
    if proc.pid is not None:
        _SPAWNED.add(proc.pid)
    child.close()

    def ended() -> Results:
        proc.join(5)
        code = proc.exitcode
        return [(i, False, f"the worker process ended with exit code {code}") for i, _ in calls]

    try:
        try:
            if not parent.poll(START_S) or parent.recv() != "started":
                return ended()
            if parent.poll(limit):
                return pickle.loads(parent.recv_bytes())
        except (EOFError, OSError):
            return ended()
        return None
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        parent.close()
        _SPAWNED.discard(proc.pid or 0)


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_memory(text: str | None, step: str) -> int | None:
    """``"512M"``, ``"4GB"``, ``"1.5g"`` → bytes (binary units); ``None`` stays ``None``."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*", str(text), re.IGNORECASE)
    if not m:
        raise WorkflowDefinitionError(
            f"job {step!r}: mem must look like '512M' or '4GB', got {text!r}", step=step
        )
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


class Backend:
    name = "backend"
    #: how many chunks may be in flight at once
    slots: int = 1

    def submit(
        self, step: str, fn: Callable[..., Any], calls: Calls, **opts: Any
    ) -> Awaitable[Results]:
        raise NotImplementedError

    def check(self, step: str, cpus: float, memory: int | None) -> None:
        """Raise :class:`WorkflowError` when no worker could ever run a call needing this."""

    def cancel(self, step: str | None) -> None:
        """Stop what runs of ``step`` (``None``: of the run) where the backend can."""

    def close(self) -> None:
        pass


class LocalBackend(Backend):
    def __init__(self, workers: int, *, processes: bool) -> None:
        self.name = "processes" if processes else "threads"
        self.processes = processes
        self.slots = workers
        self._abandoned = False
        self._lock = threading.Lock()
        self._pool: cf.Executor = (
            cf.ProcessPoolExecutor(max_workers=workers)
            if processes
            else cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reflow-wf")
        )
        self._guarded = not processes  # os._exit in a job thread fails its element
        if self._guarded:
            _exit_guard.install()

    def submit(
        self, step: str, fn: Callable[..., Any], calls: Calls, **opts: Any
    ) -> Awaitable[Results]:
        loop = asyncio.get_running_loop()
        limit = opts.get("time_s")
        if limit is None:
            if self.processes:
                return self._in_process(step, fn, calls, opts.get("retries", 0))
            return loop.run_in_executor(
                self._pool,
                _exit_guard.job_thread,
                step,
                run_chunk,
                fn,
                calls,
                opts.get("retries", 0),
            )
        return self._limited(step, fn, calls, float(limit), opts)

    async def _in_process(
        self, step: str, fn: Callable[..., Any], calls: Calls, retries: int
    ) -> Results:
        """A chunk in the process pool. A worker that dies (``os._exit``, a crash, the OOM
        killer) breaks the pool: the chunk's elements fail naming that, and a new pool is made
        for what follows, as a job that cannot travel to a process fails only itself."""
        loop = asyncio.get_running_loop()
        pool = self._pool
        try:
            data = await loop.run_in_executor(pool, run_chunk_pickled, fn, calls, retries)
            return list(pickle.loads(data))
        except cf.BrokenExecutor:
            with self._lock:
                if self._pool is pool:
                    pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = cf.ProcessPoolExecutor(max_workers=self.slots)
            text = (
                f"a worker process of job {step!r} ended abruptly (os._exit(), a crash or the "
                "out-of-memory killer) while running this element or one beside it"
            )
        except Exception as exc:  # the job or its arguments cannot travel to the process
            text = f"job {step!r} could not run in a worker process: {exc_text(exc)}"
        return [(i, False, text) for i, _ in calls]

    async def _limited(
        self, step: str, fn: Callable[..., Any], calls: Calls, limit: float, opts: dict[str, Any]
    ) -> Results:
        loop = asyncio.get_running_loop()
        retries = opts.get("retries", 0)
        if self.processes:
            out = await asyncio.to_thread(_run_in_process, fn, calls, retries, limit)
            if out is None:
                return [(i, False, timeout_text(step, i, opts)) for i, _ in calls]
            return list(out)
        ident: list[int] = []

        def call() -> Results:
            ident.append(threading.get_ident())
            return _exit_guard.job_thread(step, run_chunk, fn, calls, retries)

        # a thread of its own: a call that cannot be interrupted does not hold a pool slot
        fut: cf.Future[Results] = cf.Future()

        def body() -> None:
            try:
                fut.set_result(call())
            except BaseException as exc:  # the interrupt may land outside run_chunk's try
                if not fut.done():
                    fut.set_exception(exc)

        threading.Thread(target=body, name=f"reflow-wf-{step}", daemon=True).start()
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut, loop=loop), limit)
        except TimeoutError:
            _interrupt(ident[0] if ident else None)
            self._abandoned = True
            return [(i, False, timeout_text(step, i, opts)) for i, _ in calls]
        except BaseException as exc:
            return [(i, False, exc_text(exc)) for i, _ in calls]

    def worker_pids(self) -> list[int]:
        """The worker processes' pids (``processes=True``), to forward a signal to."""
        procs = getattr(self._pool, "_processes", None) or {}
        return [p.pid for p in list(procs.values()) if p.pid is not None] + list(_SPAWNED)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._guarded:
            self._guarded = False
            _exit_guard.release()


class RayBackend(Backend):
    name = "ray"

    def __init__(self, address: str | None, *, workers: int | None = None) -> None:
        try:
            import ray
        except ImportError as exc:
            raise WorkflowError("backend='ray' needs Ray: pip install 'reflow[ray]'") from exc
        self._ray = ray
        self._owned = False
        if not ray.is_initialized():
            target = _host_port(address) if address and "://" not in address else None
            if target is not None and not _wait_reachable(target, CONNECT_S):
                raise WorkflowError(
                    f"cannot connect to the Ray cluster at {address}: nothing answers there "
                    f"(tried for {CONNECT_S:g} s); start one with `ray start --head`"
                )
            # Ray ends a driver whose cluster stays unreachable for a minute (os-level exit, no
            # exception to catch); this backend watches the cluster itself and fails the run
            # with an error instead, so it asks Ray to wait longer than that
            os.environ.setdefault("RAY_gcs_rpc_server_reconnect_timeout_s", "3600")
            try:
                ray.init(
                    address=address,
                    ignore_reinit_error=True,
                    log_to_driver=False,
                    include_dashboard=False,
                    logging_level=logging.ERROR,
                )
            except Exception as exc:
                where = address or "a new local cluster"
                raise WorkflowError(
                    f"cannot connect to the Ray cluster at {where}: {type(exc).__name__}: {exc}"
                ) from exc
            self._owned = True
        self.address = address
        given = _host_port(address) if address and "://" not in address else None
        self._gcs = given or _host_port(ray.get_runtime_context().gcs_address)
        self._lost_since: float | None = None
        self.dead = False
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.slots = max(1, min(workers, cpus) if workers else cpus)
        self._remote = ray.remote(run_chunk_on_ray)
        self._by_value: set[str] = set()
        self._refs: dict[str, set[Any]] = {}
        self._cancelled: set[str | None] = set()

    def check(self, step: str, cpus: float, memory: int | None) -> None:
        """A call needing more CPUs or memory than the largest node has would wait forever
        for a node that never comes: refuse it."""
        nodes = [n.get("Resources", {}) for n in self._ray.nodes() if n.get("Alive")]
        most_cpu = max((r.get("CPU", 0) for r in nodes), default=0)
        most_mem = max((r.get("memory", 0) for r in nodes), default=0)
        if cpus > most_cpu:
            raise WorkflowError(
                f"job {step!r} asks for cpus={cpus:g} but the largest node of the Ray cluster "
                f"has {most_cpu:g}",
                step=step,
            )
        if memory and memory > most_mem:
            raise WorkflowError(
                f"job {step!r} asks for {memory} bytes of memory but the largest node of the "
                f"Ray cluster has {int(most_mem)}",
                step=step,
            )

    def _ship(self, fn: Callable[..., Any]) -> None:
        """Send a job's module by value unless it is importable everywhere (installed)."""
        name = getattr(fn, "__module__", None)
        if not name or name in self._by_value:
            return
        mod = sys.modules.get(name)
        path = getattr(mod, "__file__", None) or ""
        installed = (
            "site-packages" in path
            or "dist-packages" in path
            or path.startswith(sys.base_prefix + os.sep + "lib")
        )
        if mod is not None and not installed and name != "__main__":
            from ray import cloudpickle

            cloudpickle.register_pickle_by_value(mod)
        self._by_value.add(name)

    def submit(
        self, step: str, fn: Callable[..., Any], calls: Calls, **opts: Any
    ) -> Awaitable[Results]:
        self._ship(fn)
        options: dict[str, Any] = {"num_cpus": opts.get("cpus", 1), "max_retries": 0}
        mem = opts.get("memory")
        if mem:
            options["memory"] = mem
        ref = self._remote.options(**options).remote(fn, calls, opts.get("retries", 0))
        return self._await(step, ref, calls, opts)

    def cancel(self, step: str | None) -> None:
        self._cancelled.add(step)
        refs = [r for s, rs in self._refs.items() if step is None or s == step for r in rs]
        for ref in refs:
            with contextlib.suppress(Exception):
                self._ray.cancel(ref, force=True)

    def _reachable(self) -> bool:
        if self._gcs is None:
            return True
        try:
            with socket.create_connection(self._gcs, timeout=0.5):
                return True
        except OSError:
            return False

    async def _await(
        self, step: str, ref: Any, calls: Calls, opts: dict[str, Any] | None = None
    ) -> Results:
        ray = self._ray
        opts = opts or {}
        fut = asyncio.wrap_future(ref.future())
        limit = opts.get("time_s")
        deadline = None if limit is None else time.monotonic() + float(limit)
        self._refs.setdefault(step, set()).add(ref)
        try:
            while True:
                wait = WATCH_S if deadline is None else min(WATCH_S, deadline - time.monotonic())
                done, _ = await asyncio.wait({fut}, timeout=max(0.0, wait))
                if done:
                    return _loaded(step, fut.result(), calls)
                if deadline is not None and time.monotonic() >= deadline:
                    with contextlib.suppress(Exception):
                        ray.cancel(ref, force=True)
                    return [(i, False, timeout_text(step, i, opts)) for i, _ in calls]
                if self.dead:
                    break
                if await asyncio.to_thread(self._reachable):
                    self._lost_since = None
                    continue
                now = time.monotonic()
                self._lost_since = self._lost_since or now
                if now - self._lost_since >= LOST_AFTER_S:
                    self.dead = True
                    break
            where = f"{self._gcs[0]}:{self._gcs[1]}" if self._gcs else "?"
            text = (
                f"the Ray cluster at {where} went away while job {step!r} was running "
                f"(unreachable for {LOST_AFTER_S:g} s)"
            )
            return [(i, False, text) for i, _ in calls]
        except ray.exceptions.RayError as exc:
            if step in self._cancelled or None in self._cancelled:
                return [(i, False, f"{CANCELLED}job {step!r}") for i, _ in calls]
            if isinstance(exc, ray.exceptions.WorkerCrashedError):
                text = (
                    f"a Ray worker process of job {step!r} died (os._exit(), a crash or the "
                    "out-of-memory killer) while running this element or one beside it"
                )
                return [(i, False, text) for i, _ in calls]
            lines = _ANSI.sub("", str(exc)).strip().splitlines()
            first = lines[0] if lines else ""
            text = (
                f"the Ray cluster failed while running job {step!r}: {type(exc).__name__}: {first}"
            )
            return [(i, False, text) for i, _ in calls]
        finally:
            self._refs.get(step, set()).discard(ref)

    def close(self) -> None:
        if not self._owned:
            return
        if self.dead:
            # shutting down against a dead cluster can block: do it in the background
            threading.Thread(target=self._ray.shutdown, daemon=True).start()
            return
        self._ray.shutdown()


#: the colour codes Ray puts in its errors' first line (``ray::run_chunk()``)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _loaded(step: str, data: Any, calls: Calls) -> Results:
    """A chunk's results as :func:`run_chunk_on_ray` pickled them; one that cannot be read
    back in this process (its class importable only on the workers) fails the chunk, named."""
    try:
        return list(pickle.loads(data))
    except Exception as exc:
        text = f"the results of job {step!r} cannot be read back from Ray: {exc_text(exc)}"
        return [(i, False, text) for i, _ in calls]


def _wait_reachable(target: tuple[str, int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection(target, timeout=1.0):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.25)


def _host_port(address: Any) -> tuple[str, int] | None:
    host, _, port = str(address or "").rpartition(":")
    return (host, int(port)) if host and port.isdigit() else None
