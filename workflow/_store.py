"""``SqliteStore``: reflow-hpc's store object, on the run index (one SQLite file, not two).

A :class:`SqliteStore` *is* a :class:`~reflow.workflow.RunIndex`, so ``store=SqliteStore(path)``
given to ``run_local``/``submit``/``run_status``/``runs`` records and reads runs in that file.
On top it answers reflow-hpc's store calls:

* runs: ``insert_run``, ``get_run``, ``get_run_parameters``, ``update_run_status``,
  ``list_runs`` (``graph_name``, ``user_id``, ``limit``, ``since``, ``until``, ``status``);
  a run is the run index's record, read in reflow-hpc's shape (``run_id``, ``graph_name``,
  ``user_id``, ``created_at``, ``status``, ``parameters``);
* task instances: ``insert_task_instance`` and the ``update_task_*`` / ``mark_for_retry``
  state changes, ``get_task_instance``, ``list_task_instances``, ``count_task_instances``,
  ``task_state_summary``, ``dependency_is_satisfied``, ``get_singleton_output``,
  ``get_array_outputs``, ``get_output_hash``. Instances written through these calls live in a
  ``task_instances`` table of the same file; a run that ``reflow.workflow`` ran itself has its
  instances in its record, and the reads give those (state, error) where the table has none;
* ``init`` (make the tables), ``close`` (nothing to release: every call opens its own
  connection), ``for_run_dir`` (``<run_dir>/manifest.db``), ``default``/``default_path`` (the
  default run index).

Bad input (an unknown run or instance, a state that is not a :class:`TaskState`, an output
that is not JSON-safe) is a :class:`~reflow.workflow.WorkflowError` naming it.
"""

from __future__ import annotations

import difflib
import json
import os
import weakref
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ._errors import ParamError, RunIndexError, StepNotFoundError, WorkflowError, shown
from ._executors import Executor, SlurmExecutor
from ._index import RunIndex, default_index_path
from ._snapshot import seed_view
from ._states import RunState, TaskState, run_state, task_state

__all__ = ["SqliteStore"]

#: run id -> the live ``Run`` of a run this process runs (``_handle`` registers them)
_LIVE: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()

_INSTANCES = """
CREATE TABLE IF NOT EXISTS task_instances (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    task_name TEXT NOT NULL,
    array_index INTEGER,
    state TEXT NOT NULL,
    job_id TEXT,
    input TEXT NOT NULL DEFAULT '{}',
    output TEXT,
    error_text TEXT,
    identity TEXT NOT NULL DEFAULT '',
    input_hash TEXT NOT NULL DEFAULT '',
    output_hash TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS task_instances_run ON task_instances (run_id, task_name);
"""
_COLUMNS = (
    "id, run_id, task_name, array_index, state, job_id, input, output, error_text, identity, "
    "input_hash, output_hash, created_at, updated_at"
)
#: the states ``mark_for_retry`` moves from (an instance that ended without success)
_RETRIABLE = (TaskState.FAILED.value, TaskState.CANCELLED.value)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 1000:
        raise ParamError(f"{what} must be a non-empty string, got {shown(value)}", param=what)
    return value


def _index(value: object) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise ParamError(
        f"array_index must be None (a job) or an integer >= 0, got {shown(value)}",
        param="array_index",
    )


def _dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(value, allow_nan=False, default=_path_or_fail)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ParamError(f"{what} must be JSON-safe: {exc}", param=what) from None


def _path_or_fail(value: object) -> str:
    if isinstance(value, os.PathLike):
        return str(os.fspath(value))
    raise TypeError(f"{type(value).__name__} is not JSON-safe")


class SqliteStore(RunIndex):
    """reflow-hpc's ``SqliteStore(path)``: the run index at ``path`` with reflow-hpc's store
    calls (see the module doc)."""

    def __init__(self, path: str | os.PathLike[str] | None = None, readonly: bool = False) -> None:
        if path is not None and not (isinstance(path, (str, os.PathLike)) and str(path)):
            raise RunIndexError(
                f"SqliteStore() takes the path of its SQLite file, got {shown(path)}", path=""
            )
        super().__init__(None if path is None else Path(path))
        self.readonly = bool(readonly)
        self._instances_ready = False
        self._lastrowid: int | None = None

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    @classmethod
    def for_run_dir(cls, run_dir: str | os.PathLike[str], readonly: bool = False) -> SqliteStore:
        """The store ``<run_dir>/manifest.db``."""
        if not (isinstance(run_dir, (str, os.PathLike)) and str(run_dir)):
            raise RunIndexError(f"run_dir must be a directory, got {shown(run_dir)}", path="")
        return cls(Path(run_dir).expanduser() / "manifest.db", readonly=readonly)

    @classmethod
    def default_path(cls) -> Path:
        """The default run index file (``<cache dir>/workflow-runs.sqlite``)."""
        return default_index_path()

    @classmethod
    def default(cls, readonly: bool = False) -> SqliteStore:
        return cls(None, readonly=readonly)

    def init(self) -> None:
        """Make the file and its tables (the calls make them too when needed)."""
        self._query("SELECT 1", ())

    def close(self) -> None:
        """Nothing to release (each call opens and closes its own connection)."""

    def _query(self, sql: str, args: Iterable[Any]) -> list[tuple[Any, ...]]:
        with self._db() as con:
            if not self._instances_ready:
                con.executescript(_INSTANCES)
                self._instances_ready = True
            cur = con.execute(sql, tuple(args))
            rows = cur.fetchall()
            self._lastrowid = cur.lastrowid
        return rows

    # ------------------------------------------------------------------ runs

    def insert_run(
        self,
        run_id: str,
        graph_name: str,
        user_id: str = "",
        parameters: dict[str, Any] | None = None,
    ) -> None:
        """Record a new run, ``RUNNING``; a run id already recorded is a
        :class:`RunIndexError`."""
        _text(run_id, "run_id")
        _text(graph_name, "graph_name")
        if not isinstance(user_id, str):
            raise ParamError(f"user_id must be a string, got {shown(user_id)}", param="user_id")
        if parameters is not None and not isinstance(parameters, dict):
            raise ParamError(
                f"parameters must be a dict, got {shown(parameters)}", param="parameters"
            )
        _dumps(parameters or {}, "parameters")
        if self.has(run_id):
            raise RunIndexError(
                f"run {run_id!r} is already recorded in {str(self.path)!r}", path=str(self.path)
            )
        self.put(
            {
                "run_id": run_id,
                "workflow": graph_name,
                "user_id": user_id,
                "params": dict(parameters or {}),
                "status": RunState.RUNNING.value,
                "created": _now(),
                "steps": {},
            }
        )

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        """The run in reflow-hpc's shape, or ``None`` for an unknown id."""
        if not isinstance(run_id, str) or not self.has(run_id):
            return None
        return _run_view(self.get(run_id))

    def get_run_parameters(self, run_id: str) -> dict[str, Any]:
        """The run's parameters; an unknown id is a :class:`RunNotFoundError` (a
        ``KeyError``)."""
        return dict(self.get(run_id).get("params") or {})

    def update_run_status(self, run_id: str, status: RunState | str) -> None:
        snap = self.get(run_id)
        snap["status"] = run_state(status).value
        snap.pop("cancel_requested", None)
        self.put(snap)

    def list_runs(
        self,
        graph_name: str | None = None,
        user_id: str | None = None,
        *,
        limit: int | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        status: str | None = None,
    ) -> list[dict[str, Any]]:
        """Runs newest first, in reflow-hpc's shape (see :meth:`RunIndex.list`)."""
        if user_id is not None and not isinstance(user_id, str):
            raise ParamError(f"user_id must be a string, got {shown(user_id)}", param="user_id")
        snaps = self.list(
            workflow=graph_name,
            status=status,
            since=since,  # type: ignore[arg-type]  # RunIndex reads ISO strings too
            until=until,  # type: ignore[arg-type]
            limit=None if user_id is not None else limit,
        )
        runs = [_run_view(s) for s in snaps]
        if user_id is not None:
            runs = [r for r in runs if r["user_id"] == user_id][:limit]
        return runs

    # ------------------------------------------------------------------ task instances

    def insert_task_instance(
        self,
        run_id: str,
        task_name: str,
        array_index: int | None,
        state: TaskState | str,
        input_payload: dict[str, Any] | None = None,
        identity: str = "",
        input_hash: str = "",
    ) -> int:
        """Record a task instance of a recorded run; its id."""
        self.get(run_id)  # an unknown run is a RunNotFoundError
        _text(task_name, "task_name")
        now = _now()
        self._query(
            "INSERT INTO task_instances (run_id, task_name, array_index, state, input, "
            "identity, input_hash, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                task_name,
                _index(array_index),
                task_state(state).value,
                _dumps(input_payload or {}, "input_payload"),
                str(identity),
                str(input_hash),
                now,
                now,
            ),
        )
        return int(self._lastrowid or 0)

    def _set(
        self,
        instance_id: int,
        sql: str,
        args: tuple[Any, ...],
        where: str = "",
        where_args: tuple[Any, ...] = (),
    ) -> None:
        if isinstance(instance_id, bool) or not isinstance(instance_id, int):
            raise ParamError(
                f"instance_id must be an integer, got {shown(instance_id)}", param="instance_id"
            )
        if not self._query("SELECT 1 FROM task_instances WHERE id = ?", (instance_id,)):
            raise RunIndexError(
                f"no task instance {instance_id} in {str(self.path)!r}", path=str(self.path)
            )
        self._query(
            f"UPDATE task_instances SET {sql}, updated_at = ? WHERE id = ?{where}",
            (*args, _now(), instance_id, *where_args),
        )

    def update_task_submitted(self, run_id: str, task_name: str, job_id: str) -> None:
        """``SUBMITTED`` as scheduler job ``job_id``: the task's instances still to start
        (``PENDING``, ``RETRYING``)."""
        self.get(run_id)
        _text(task_name, "task_name")
        _text(job_id, "job_id")
        self._query(
            "UPDATE task_instances SET state = ?, job_id = ?, updated_at = ? WHERE run_id = ? "
            "AND task_name = ? AND state IN (?, ?)",
            (
                TaskState.SUBMITTED.value,
                job_id,
                _now(),
                run_id,
                task_name,
                TaskState.PENDING.value,
                TaskState.RETRYING.value,
            ),
        )

    def update_task_running(self, instance_id: int) -> None:
        self._set(instance_id, "state = ?", (TaskState.RUNNING.value,))

    def update_task_success(self, instance_id: int, output: Any, output_hash: str = "") -> None:
        self._set(
            instance_id,
            "state = ?, output = ?, output_hash = ?, error_text = NULL",
            (TaskState.SUCCESS.value, _dumps(output, "output"), str(output_hash)),
        )

    def update_task_failed(self, instance_id: int, error_text: str) -> None:
        self._set(
            instance_id, "state = ?, error_text = ?", (TaskState.FAILED.value, str(error_text))
        )

    def update_task_cancelled(self, instance_id: int) -> None:
        self._set(instance_id, "state = ?", (TaskState.CANCELLED.value,))

    def mark_for_retry(self, instance_id: int) -> None:
        """``RETRYING``, for an instance that ended without success (else unchanged)."""
        self._set(
            instance_id,
            "state = ?",
            (TaskState.RETRYING.value,),
            where=" AND state IN (?, ?)",
            where_args=_RETRIABLE,
        )

    def list_task_instances(
        self,
        run_id: str,
        task_name: str | None = None,
        states: Iterable[TaskState | str] | None = None,
    ) -> list[dict[str, Any]]:
        """The run's instances (of ``task_name``, in ``states``), by task then index."""
        wanted = None if states is None else {task_state(s).value for s in states}
        rows = self._query(
            f"SELECT {_COLUMNS} FROM task_instances WHERE run_id = ? "
            "ORDER BY task_name, array_index, id",
            (run_id,),
        )
        if rows:
            out = [_instance_view(r) for r in rows]
        else:  # a run reflow.workflow ran: its record's instances
            out = [
                {**i, "run_id": run_id, "input": {}, "output": _live_output(run_id, i)}
                for i in seed_view(self.get(run_id))["instances"]
            ]
        return [
            i
            for i in out
            if (task_name is None or i["task_name"] == task_name)
            and (wanted is None or i["state"] in wanted)
        ]

    def get_task_instance(
        self, run_id: str, task_name: str, array_index: int | None = None
    ) -> dict[str, Any] | None:
        index = _index(array_index)
        for i in self.list_task_instances(run_id, task_name):
            if i["array_index"] == index:
                return i
        return None

    def count_task_instances(self, run_id: str, task_name: str) -> int:
        return len(self.list_task_instances(run_id, task_name))

    def task_state_summary(self, run_id: str) -> dict[str, dict[str, int]]:
        """Per task, how many of its instances are in each state."""
        out: dict[str, dict[str, int]] = {}
        for i in self.list_task_instances(run_id):
            counts = out.setdefault(i["task_name"], {})
            counts[i["state"]] = counts.get(i["state"], 0) + 1
        return out

    def dependency_is_satisfied(self, run_id: str, task_name: str) -> bool:
        """Whether ``task_name`` has instances and all of them succeeded."""
        got = self.list_task_instances(run_id, task_name)
        return bool(got) and all(i["state"] == TaskState.SUCCESS.value for i in got)

    def instance_view(self, run_id: str) -> dict[str, Any] | None:
        """``summary``, ``instances`` and ``failed_instances`` of the instances written
        through this store for ``run_id`` (``None``: none were), which the run's status
        reads instead of its record's."""
        if not self._query("SELECT 1 FROM task_instances WHERE run_id = ? LIMIT 1", (run_id,)):
            return None
        instances = self.list_task_instances(run_id)
        return {
            "summary": self.task_state_summary(run_id),
            "instances": instances,
            "failed_instances": [i for i in instances if i["state"] == TaskState.FAILED.value],
        }

    def _successes(self, run_id: str, task_name: str) -> list[dict[str, Any]]:
        return self.list_task_instances(run_id, task_name, [TaskState.SUCCESS])

    def get_singleton_output(self, run_id: str, task_name: str) -> Any:
        """The output of the job ``task_name`` (``None`` until it succeeded)."""
        done = [i for i in self._successes(run_id, task_name) if i["array_index"] is None]
        return done[0]["output"] if done else None

    def get_array_outputs(self, run_id: str, task_name: str) -> list[Any]:
        """The outputs of the array job's successful elements, by index."""
        done = self._successes(run_id, task_name)
        return [i["output"] for i in done if i["array_index"] is not None]

    def get_output_hash(self, run_id: str, task_name: str, array_index: int | None = None) -> str:
        i = self.get_task_instance(run_id, task_name, array_index)
        return str(i.get("output_hash") or "") if i and i["state"] == "SUCCESS" else ""

    def get_all_output_hashes(self, run_id: str, task_name: str) -> list[str]:
        return [str(i.get("output_hash") or "") for i in self._successes(run_id, task_name)]


def _live_output(run_id: str, instance: dict[str, Any]) -> Any:
    """A successful instance's output, from the run when this process ran it (a run's results
    stay in the process that ran it); else ``None``."""
    run = _LIVE.get(run_id)
    if run is None or instance["state"] != TaskState.SUCCESS.value or not run.done():
        return None
    try:
        value = run.result(instance["task_name"])
    except WorkflowError:
        return None
    index = instance["array_index"]
    if index is None:
        return value
    return value[index] if isinstance(value, list) and index < len(value) else None


def _run_view(snap: dict[str, Any]) -> dict[str, Any]:
    run = seed_view(snap)["run"]
    return {
        "run_id": run["run_id"],
        "graph_name": run["graph_name"],
        "user_id": run["user_id"] or "",
        "created_at": run["created_at"],
        "status": run["status"],
        "parameters": run["parameters"],
    }


def _instance_view(row: tuple[Any, ...]) -> dict[str, Any]:
    out = dict(zip([c.strip() for c in _COLUMNS.split(",")], row, strict=True))
    for key in ("input", "output"):
        text = out[key]
        try:
            out[key] = None if text is None else json.loads(text)
        except (ValueError, RecursionError):
            out[key] = None
    return out


def instances_table(instances: list[dict[str, Any]], *, task: str | None, errors: bool) -> str:
    """The task instances written through a store's calls, one line each."""
    lines = ["Instances (written through the store):"]
    for i in instances:
        if task is not None and i["task_name"] != task:
            continue
        where = i["task_name"] + ("" if i["array_index"] is None else f"[{i['array_index']}]")
        text = str(i.get("error_text") or "")
        text = text if errors else (text.splitlines() or [""])[0]
        job = f" job {i['job_id']}" if i.get("job_id") else ""
        lines.append(f"  {where:<30} {i['state']:<10}{job}" + (f"  {text}" if text else ""))
    return "\n".join(lines)


def cancel_instances(
    store: SqliteStore, run_id: str, task: str | None, executor: Executor | None
) -> int:
    """reflow-hpc's cancel over instances written by hand: each cancellable one (of ``task``)
    ``CANCELLED``, each job id cancelled once, the run ``CANCELLED`` when no task is named;
    the count."""
    if task is not None and not any(
        i["task_name"] == task for i in store.list_task_instances(run_id)
    ):
        names = sorted({i["task_name"] for i in store.list_task_instances(run_id)})
        close = difflib.get_close_matches(str(task), names, n=1, cutoff=0.6)
        raise StepNotFoundError(
            f"run {run_id!r} has no task {shown(task)}"
            + (f". Did you mean {close[0]!r}?" if close else "")
            + f" (tasks: {', '.join(names)})",
            name=str(task),
            suggestion=close[0] if close else None,
        )
    todo = store.list_task_instances(run_id, task, TaskState.cancellable())
    jobs = list(dict.fromkeys(str(i["job_id"]) for i in todo if i.get("job_id")))
    if jobs and executor is None:
        executor = SlurmExecutor.from_environment()
    for job in jobs:
        assert executor is not None
        executor.cancel(job)
    for i in todo:
        store.update_task_cancelled(int(i["id"]))
    if task is None:
        store.update_run_status(run_id, RunState.CANCELLED)
    return len(todo)
