"""``Run``: the handle ``run_local``, ``run`` and ``submit`` return (reflow-hpc's ``Run``).

A run has an id, ``<workflow>-<yyyymmdd>-<4 hex>``, and a record in the run index
(:class:`~reflow.workflow._index.RunIndex`): written when it starts, at most four times a second
while its steps and elements finish, and when it ends. ``status()`` prints the steps' states
(``status(as_dict=True)`` returns the record), ``wait()`` blocks until the run ends and returns
it, ``cancel()`` starts nothing more and stops what the backend can stop, ``retry()`` runs the
failed and cancelled elements again under the same id, in the same run directory, with the same
parameters — what succeeded is reused, not recomputed.

A finished ``Run`` is a :class:`~reflow.workflow.RunReport` as well (``run.ok``,
``run["step"]``, ``run.steps``, ``run.failures``, ``run.table()``), so code written against the
report keeps working. ``Run.attach(wf, run_id)`` gives the handle of a run recorded by another
process (or an earlier one): its status comes from the index; a run left ``RUNNING`` by a
process that no longer exists reads as ``FAILED``, with a note saying so; its results stay in
the process that computed them (``retry()`` of such a run runs it again, the Merkle cache
sparing the ``cache=True`` steps).
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import RunStateError, StepNotFoundError, WorkflowError, WorkflowFailed, shown
from ._executors import Executor
from ._index import IndexConnection, RunIndex, owner
from ._params import resolve_params
from ._recorded import cancel_recorded, record_steps, wait_recorded
from ._report import RunReport, StepReport
from ._retry import adopted_options, failed_so_far, prior_results, retry_count
from ._run import _Run, run_plan
from ._run_hooks import Hooks
from ._snapshot import (
    TERMINAL,
    active_count,
    json_safe,
    now,
    record_view,
    seed_view,
    settled,
    status_table,
    steps_record,
)
from ._states import RunState
from ._store import _LIVE, SqliteStore, cancel_instances, instances_table

if TYPE_CHECKING:
    from . import Workflow
    from ._flow import Plan

__all__ = ["Run", "make_run_id"]

log = logging.getLogger("reflow.workflow")

#: at most this many index writes a second while a run goes (the first and last always)
WRITES_PER_S = 4.0
#: how long ``retry()`` right after ``cancel()`` waits for the cancelled calls to end
RETRY_AFTER_CANCEL_S = 60.0
#: how often a running run looks for a cancel asked by another process
POLL_S = 0.25


def make_run_id(workflow: str, index: RunIndex | None = None) -> str:
    """``<workflow>-<yyyymmdd>-<4 hex>`` (UTC date), not one the index already holds."""
    day = datetime.now(UTC).strftime("%Y%m%d")
    for _ in range(32):
        run_id = f"{workflow}-{day}-{uuid.uuid4().hex[:4]}"
        if run_id in _LIVE:
            continue
        if index is None:
            return run_id
        try:
            if not index.has(run_id):
                return run_id
        except WorkflowError:  # an index that cannot be used does not stop the run
            return run_id
    return f"{workflow}-{day}-{uuid.uuid4().hex[:8]}"


def _user() -> str | None:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no login name (a container's bare uid)
        return None


class _Recorder(Hooks):
    """The run's hooks: the live ``_Run``, throttled index writes, cancels from elsewhere."""

    def __init__(self, handle: Run) -> None:
        self.handle = handle
        self.live: _Run | None = None
        self.dirty = threading.Event()
        #: set when the run has ended: the watcher closes its connection and returns, and the
        #: run is not finished (``_finished``) until it has (nothing holds the index then)
        self.ended = threading.Event()
        self.watcher: threading.Thread | None = None

    def started(self, run: _Run) -> None:
        self.live = run
        self.handle._live_started(run)

    def progress(self) -> None:
        self.dirty.set()


class Run(RunReport):
    """The handle of one workflow run (see the module doc)."""

    def __init__(
        self,
        workflow: Workflow | None,
        run_id: str,
        run_dir: Path,
        index: RunIndex | None = None,
        *,
        store: RunIndex | None = None,
        plan: Plan | None = None,
        params: dict[str, Any] | None = None,
        backend: str = "local",
        options: dict[str, Any] | None = None,
    ) -> None:
        if store is not None:  # reflow-hpc's name for the run's index
            if index is not None and index is not store:
                raise RunStateError("Run() takes the run index as index= or store=, not both")
            index = store
        if index is not None and not isinstance(index, RunIndex):
            raise RunStateError(
                f"Run(store=...) must be a SqliteStore or RunIndex, got {shown(index)}"
            )
        wf = workflow
        names = list(plan.order) if plan is not None else []
        steps = {n: StepReport(n, plan.jobs[n].array) for n in names} if plan else {}
        super().__init__(steps, {}, 0.0)
        self.workflow = wf.name if wf is not None else ""
        self.run_id = run_id
        self.run_dir = Path(run_dir)
        self._wf = wf
        self._plan = plan
        self._params = dict(params or {})
        self.backend = backend
        self._options = dict(options or {})
        self._index = index
        self._conn: IndexConnection | None = None  # the watcher's, while a run goes
        self._index_ok = index is not None
        self._created = now()
        self._owner = owner()
        self._state = RunState.RUNNING.value
        self._user = _user()
        self._note: str | None = None
        self._error: BaseException | None = None
        self._live: _Run | None = None
        self._finished = threading.Event()
        self._lock = threading.Lock()
        self._last_write = 0.0
        self._cancel_asked = False
        self._step_cancels: set[str] = set()
        self._foreign: dict[str, Any] | None = None  # the record of a run of another process
        self._prior: dict[str, Any] = {}
        _LIVE[run_id] = self
        if plan is None and index is not None and Path(index.path).is_file():
            # made by hand (reflow-hpc's Run(wf, run_id, run_dir, store)): a recorded run
            with contextlib.suppress(WorkflowError):
                if index.has(run_id):
                    self._load(index.get(run_id))

    def __repr__(self) -> str:
        return (
            f"Run(workflow={self.workflow!r}, run_id={self.run_id!r}, "
            f"status={self._current_state()!r}, run_dir={str(self.run_dir)!r})"
        )

    @property
    def store(self) -> SqliteStore | None:
        """The run's index (reflow-hpc's ``run.store``), as a :class:`SqliteStore` on its file
        (so reflow-hpc's store calls read it: ``run.store.get_run_parameters(run.run_id)``);
        ``None`` for a run recorded nowhere."""
        if self._index is None or isinstance(self._index, SqliteStore):
            return self._index
        return SqliteStore(self._index.path)

    def _hand_written(self) -> SqliteStore | None:
        """The store holding task instances written through reflow-hpc's store calls for this
        run (``None``: it has none; its record is all there is)."""
        st = self._index
        if isinstance(st, SqliteStore):
            with contextlib.suppress(WorkflowError):  # a read-only index has none
                if st.instance_view(self.run_id) is not None:
                    return st
        return None

    # ------------------------------------------------------------------ running

    def _start(self, *, background: bool, retry_steps: set[str] | None = None) -> None:
        """Run the plan, here (``background=False``: returns when it ends, raising
        :class:`WorkflowFailed` as ``run_local`` does) or in a thread."""
        assert self._plan is not None
        self._finished.clear()
        self._error = None
        self._state = RunState.RUNNING.value
        self._cancel_asked = False
        self._step_cancels = set()
        rec = _Recorder(self)
        rec.prior = self._prior or None
        rec.retry_steps = retry_steps
        if self._index is not None and self._index_ok:
            with contextlib.suppress(WorkflowError):
                self._index.clear_cancel(self.run_id)
        self._write(force=True)
        watcher = threading.Thread(
            target=self._watch, args=(rec,), name=f"reflow-run-{self.run_id}", daemon=True
        )
        rec.watcher = watcher
        watcher.start()
        if background:
            threading.Thread(
                target=self._body, args=(rec,), name=f"reflow-submit-{self.run_id}", daemon=True
            ).start()
            return
        self._body(rec)
        if self._error is not None:
            raise self._error

    def _body(self, rec: _Recorder) -> None:
        assert self._plan is not None
        o = self._options
        report: RunReport | None = None
        try:
            report = run_plan(
                self._plan,
                self._params,
                self.run_dir,
                max_workers=o.get("max_workers"),
                processes=bool(o.get("processes", False)),
                backend=self.backend,
                address=o.get("address"),
                force=o.get("force", False),
                verify=bool(o.get("verify", False)),
                on_error=o.get("on_error", "stop"),
                timeout=o.get("timeout"),
                on_network=o.get("on_network"),
                hooks=rec,
            )
        except WorkflowFailed as exc:
            report = exc.report
            exc.report = self  # the same report API, and retry() from the exception
            if not self._cancel_asked:
                self._error = exc
        except BaseException as exc:  # a backend that cannot start, a timeout, Ctrl-C
            self._error = exc
            self._note = f"{type(exc).__name__}: {exc}"
        finally:
            self._end(report, rec)

    def _live_started(self, run: _Run) -> None:
        self._live = run
        self.steps = run.report
        for step in self._step_cancels:
            run.cancel(step)
        if self._cancel_asked:
            run.cancel()

    def _end(self, report: RunReport | None, rec: _Recorder) -> None:
        if report is not None:
            self.steps = report.steps
            self._results = report._results
            self.elapsed = report.elapsed
        live = self._live
        if live is not None:
            self._prior = prior_results(live)
        if self._cancel_asked:
            self._state = RunState.CANCELLED.value
        elif report is not None and report.ok and self._error is None:
            self._state = RunState.SUCCESS.value
        else:
            self._state = RunState.FAILED.value
        self._live = None
        self._write(force=True)
        rec.ended.set()
        rec.dirty.set()
        if rec.watcher is not None and rec.watcher is not threading.current_thread():
            rec.watcher.join()  # its connection closed: the caller may lock or move the index
        self._finished.set()

    def _watch(self, rec: _Recorder) -> None:
        """While the run goes: write the record when something changed (throttled) and look
        for a cancel asked through the index (another process's: this one's cancel() acts at
        once), both through one connection kept open until the run ends."""
        conn = self._connect()
        try:
            self._watch_loop(rec)
        finally:
            with self._lock:
                if self._conn is conn:
                    self._conn = None
            if conn is not None:
                conn.close()

    def _connect(self) -> IndexConnection | None:
        """The watcher's connection, also the one :meth:`_write` uses while it is open
        (``None``: the index cannot be used; each write and poll opens its own, as before)."""
        if self._index is None or not self._index_ok:
            return None
        try:
            conn = self._index.connect()
        except WorkflowError:
            return None
        with self._lock:
            self._conn = conn
        return conn

    def _watch_loop(self, rec: _Recorder) -> None:
        while not rec.ended.is_set():
            rec.dirty.wait(POLL_S)
            if rec.ended.is_set():
                return
            if rec.dirty.is_set():
                left = 1 / WRITES_PER_S - (time.monotonic() - self._last_write)
                # throttled: wait the window out; looping on the flag that stays set spun a
                # core while every chunk set it (a CPU-bound array on Ray scaled 1.1x, not 1.8x)
                if left > 0 and rec.ended.wait(left):
                    return
                rec.dirty.clear()
                self._write()
            if self._index is not None and self._index_ok and not self._cancel_asked:
                try:
                    with self._lock:
                        asked = (self._conn or self._index).cancel_requested(self.run_id)
                except WorkflowError:
                    asked = False
                if asked:
                    self._note = "cancelled through the run index"
                    self.cancel()
            else:
                time.sleep(POLL_S / 2)

    def _write(self, *, force: bool = False) -> None:
        if self._index is None or not self._index_ok:
            return
        with self._lock:
            if not force and time.monotonic() - self._last_write < 1 / WRITES_PER_S:
                return
            self._last_write = time.monotonic()
            try:
                (self._conn or self._index).put(self._snapshot(errors=True))
            except Exception as exc:  # a record that cannot be written never fails the run
                self._index_ok = False
                log.warning("run %s is not recorded any more: %s", self.run_id, exc)

    # ------------------------------------------------------------------ state

    def _current_state(self) -> str:
        if self._foreign is not None:
            return str(self._refresh().get("status", RunState.FAILED.value))
        return self._state

    def _refresh(self) -> dict[str, Any]:
        """A foreign run's record, re-read; a ``RUNNING`` one whose owner is gone is failed."""
        assert self._foreign is not None and self._index is not None
        with contextlib.suppress(WorkflowError):
            self._foreign = self._index.get(self.run_id)
        return settled(self._foreign)

    def _snapshot(self, *, errors: bool = False, task: str | None = None) -> dict[str, Any]:
        if self._foreign is not None:
            return record_view(self._refresh(), errors=errors, task=task)
        steps, failed = steps_record(
            self.steps, self._plan, cancelled=self._cancel_asked, errors=errors, task=task
        )
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "run_dir": str(self.run_dir),
            "params": json_safe(self._params),
            "backend": self.backend,
            "status": self._state,
            "created": self._created,
            "updated": now(),
            "steps": steps,
            "failed_indices": failed,
            "user_id": self._user,
            "options": json_safe(
                {k: v for k, v in self._options.items() if k not in ("on_network",)}
            ),
            "owner": self._owner,
            "note": self._note,
            "elapsed": round(self.elapsed, 6),
        }

    # ------------------------------------------------------------------ API

    def status(
        self, task: str | None = None, as_dict: bool = False, errors: bool = False
    ) -> dict[str, Any] | None:
        """The run's record, else a table printed to stdout. ``as_dict=True`` returns it as a
        JSON-safe dict: reflow-hpc's keys — ``run`` (``run_id``, ``graph_name``, ``status``,
        ``created_at``, ``parameters``), ``summary`` (per task, its instances per
        :class:`TaskState`), ``instances`` and ``failed_instances`` (lists of dicts with
        ``task_name``, ``array_index``, ``state``, ``job_id``, ``error_text``) — and this
        package's (``status``, ``steps``, ``failed_indices``, ``run_dir``, ``backend``, ...).
        States are UPPERCASE (:class:`RunState`, :class:`TaskState`). ``errors=True`` gives
        each failure's whole message (else its first line); ``task`` keeps one step."""
        if task is not None:
            self._check_step(task)
        snap = self._snapshot(errors=errors, task=task)
        hand = self._hand_written()
        view = hand.instance_view(self.run_id) if hand is not None else None
        if as_dict:
            return {**snap, **seed_view(snap), **(view or {})}
        for key, value in (  # a run recorded through a store's calls has none of these
            ("workflow", self.workflow),
            ("backend", self.backend),
            ("run_dir", str(self.run_dir)),
            ("created", self._created),
        ):
            snap.setdefault(key, value)
        print(status_table(snap, errors=errors))
        if view is not None:
            print(instances_table(view["instances"], task=task, errors=errors))
        return None

    def _check_step(self, task: str) -> None:
        names = list(self.steps) or list(
            (self._foreign or {}).get("steps", {}) if self._foreign else []
        )
        if task not in names:
            close = difflib.get_close_matches(str(task), names, n=1, cutoff=0.6)
            hint = f". Did you mean {close[0]!r}?" if close else ""
            raise StepNotFoundError(
                f"run {self.run_id!r} has no step {shown(task)}{hint} (steps: {', '.join(names)})",
                name=str(task),
                suggestion=close[0] if close else None,
            )

    def done(self) -> bool:
        """Whether the run has ended (succeeded, failed or cancelled)."""
        if self._foreign is not None:
            return self._current_state() in TERMINAL
        return self._finished.is_set()

    def wait(self, timeout: float | None = None) -> RunReport:
        """Block until the run ends (at most ``timeout`` seconds: then a
        :class:`RunStateError`); returns this run as its report. A run with
        ``on_error="stop"`` that failed raises :class:`WorkflowFailed`, as ``run_local``
        does."""
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0
        ):
            raise RunStateError(f"timeout must be a number of seconds >= 0, got {timeout!r}")
        if self._foreign is not None:
            wait_recorded(self.done, self.run_id, timeout)
            if self._foreign is not None:
                self.steps = record_steps(self._foreign)
            return self
        if not self._finished.wait(timeout):
            raise RunStateError(f"run {self.run_id!r} is still running after {timeout:g} s")
        if self._error is not None:
            raise self._error
        return self

    def cancel(self, task: str | None = None, executor: Executor | None = None) -> int:
        """Stop the run (or one step, ``task``): nothing more starts, running Ray tasks are
        cancelled, this run's Slurm jobs are ``scancel``led, running local calls finish; the
        state becomes ``CANCELLED``. Returns how many task instances were still to finish (0
        for a run that has ended: nothing to do), and prints ``Cancelled N task
        instance(s).``, as reflow-hpc does. ``executor`` (reflow-hpc's): the scheduler that
        cancels the jobs of task instances written through a :class:`SqliteStore`'s calls
        (``None``: :meth:`SlurmExecutor.from_environment`, asked only where one has a job
        id)."""
        if executor is not None and not isinstance(executor, Executor):
            raise RunStateError(
                f"cancel(executor=...) must be an Executor (LocalExecutor(), "
                f"SlurmExecutor(...)), got {shown(executor)}"
            )
        hand = self._hand_written()
        if hand is not None:
            n = cancel_instances(hand, self.run_id, task, executor)
            print(f"Cancelled {n} task instance(s).")
            return n
        if task is not None:
            self._check_step(task)
        n = 0
        if self._foreign is not None:
            assert self._index is not None
            n = cancel_recorded(self._index, self.run_id, self._refresh(), task)
        elif not self._finished.is_set():
            n = active_count(self._snapshot(), task)
            live = self._live
            if task is None:
                self._cancel_asked = True
                if live is not None:
                    live.cancel()
            else:
                self._step_cancels.add(task)
                if live is not None:
                    live.cancel(task)
            self._write(force=True)
        print(f"Cancelled {n} task instance(s).")
        return n

    def retry(self, task: str | None = None, *, verify: bool = False) -> int:
        """Run the failed and cancelled instances again (of ``task`` only: the other steps'
        failures stay), same id, run directory and parameters; what succeeded is reused.
        Runs as the run did (``submit``: in the background; else here, returning when it
        ends). Returns how many failed instances it re-runs (of a cancelled run: the
        cancelled ones too; 0, doing nothing, for a run with nothing to retry) and prints
        ``Marked N task instance(s) for retry.``, as reflow-hpc does; ``verify=True``
        re-hashes the cached results it reuses. Right after :meth:`cancel` it waits for the run
        to end first; a run still going returns 0 while nothing of it failed, and is a
        :class:`RunStateError` once something did."""
        if not isinstance(verify, bool):
            raise RunStateError(f"retry(verify=) takes True or False, got {shown(verify)}")
        if task is not None:
            self._check_step(task)
        if not self.done() and (self._cancel_asked or self._step_cancels):
            # retry straight after cancel(), as reflow-hpc allows: let the run end first
            with contextlib.suppress(WorkflowError):
                self.wait(timeout=RETRY_AFTER_CANCEL_S)
        if not self.done():
            failed = failed_so_far(self._snapshot(), task)
            if failed == 0:  # nothing to mark yet, as reflow-hpc answers for an active run
                print("Marked 0 task instance(s) for retry.")
                return 0
            raise RunStateError(
                f"run {self.run_id!r} is still running ({failed} failed instance(s) so far): "
                "wait() or cancel() first"
            )
        snap = self._snapshot()
        n = retry_count(snap, task)
        if n is None:
            print("Marked 0 task instance(s) for retry.")
            return 0
        if self._foreign is not None:
            self._adopt(snap)
        self._cancel_asked = False
        self._note = None
        if verify:
            self._options["verify"] = True
        print(f"Marked {n} task instance(s) for retry.")
        self._start(
            background=bool(self._options.get("background")),
            retry_steps=None if task is None else {task},
        )
        return n

    def _adopt(self, snap: dict[str, Any]) -> None:
        """Take over a foreign run to retry it here."""
        if self._wf is None:
            raise RunStateError(f"run {self.run_id!r}: retry() needs its workflow")
        self._plan = self._wf.plan()
        self._params = resolve_params(self._plan, snap.get("params") or {})
        self.backend, self._options, self._created = adopted_options(snap)
        self.steps = {n: StepReport(n, self._plan.jobs[n].array) for n in self._plan.order}
        self._foreign = None

    # ------------------------------------------------------------------ report API

    def result(self, step: str) -> Any:
        if not self.done():
            raise RunStateError(f"run {self.run_id!r} is still running: wait() for its results")
        if self._foreign is not None:
            raise RunStateError(
                f"the results of run {self.run_id!r} are in the process that ran it; "
                "retry() it here (the cache spares cache=True steps) to have them"
            )
        return super().result(step)

    @classmethod
    def attach(cls, wf: Workflow, run_id: str, *, store_path: str | Path | None = None) -> Run:
        """The handle of a recorded run: the live one when this process runs it, else one
        reading its record from the index (``store_path``: the index file)."""
        live = _LIVE.get(run_id) if isinstance(run_id, str) else None
        if live is not None and (
            store_path is None
            or (live._index is not None and live._index.path == Path(store_path).expanduser())
        ):
            return live
        index = SqliteStore(store_path)  # the run index, with reflow-hpc's store calls
        snap = index.get(run_id)
        if wf is not None and snap.get("workflow") not in (None, "", getattr(wf, "name", None)):
            raise RunStateError(
                f"run {run_id!r} is a run of workflow {snap.get('workflow')!r}, not of "
                f"{getattr(wf, 'name', wf)!r}"
            )
        run = cls(wf, run_id, Path(snap.get("run_dir", ".")), index=index)
        run._load(snap)
        return run

    def _load(self, snap: dict[str, Any]) -> None:
        """Read a recorded run (another process's, or an earlier one's) into this handle."""
        self.backend = str(snap.get("backend", "local"))
        self._foreign = snap
        self._created = str(snap.get("created", ""))
        self._finished.set()
        self.steps = record_steps(snap)
