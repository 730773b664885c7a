"""What a run's record holds and how it reads: the JSON-safe snapshot a running
:class:`~reflow.workflow.Run` writes to the run index (``steps_record`` builds its ``steps`` and
``failed_indices`` from the live step reports), the record as read back (``settled``: a
``RUNNING`` run whose process is gone reads as ``FAILED``; ``record_view``: cut to one step,
errors to their first line), reflow-hpc's ``status(as_dict=True)`` keys (``seed_view``) and
the table ``status()`` prints (``status_table``).

Plain functions of plain data: nothing here holds a run, a thread or the index."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import WorkflowError
from ._index import owner_alive
from ._report import StepReport, not_cached_text
from ._states import RunState, TaskState, task_state

if TYPE_CHECKING:
    from ._flow import Plan

__all__ = [
    "ACTIVE",
    "TERMINAL",
    "active_count",
    "json_safe",
    "now",
    "record_view",
    "seed_view",
    "settled",
    "status_table",
    "step_state",
    "steps_record",
]

#: a step's errors kept in the record (the rest counted), and each error's length there
MAX_ERRORS = 100
MAX_ERROR_CHARS = 4000
TERMINAL = (RunState.SUCCESS.value, RunState.FAILED.value, RunState.CANCELLED.value)
#: an instance still to finish (what cancel() counts)
ACTIVE = (TaskState.PENDING.value, TaskState.SUBMITTED.value, TaskState.RUNNING.value)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def json_safe(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in value]
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def step_state(rep: StepReport, run_cancelled: bool) -> str:
    if rep.status in ("done", "cached"):
        return TaskState.SUCCESS.value
    if rep.status in ("pending", "running"):
        return rep.status.upper()
    if rep.status == "skipped" or (rep.reason.startswith("cancelled") and not rep.failures):
        return TaskState.CANCELLED.value
    if run_cancelled and rep.skipped and not rep.failures:
        return TaskState.CANCELLED.value
    return TaskState.FAILED.value


def steps_record(
    steps: Mapping[str, StepReport],
    plan: Plan | None,
    *,
    cancelled: bool,
    errors: bool,
    task: str | None,
) -> tuple[dict[str, Any], dict[str, list[int | None]]]:
    """A live run's ``steps`` and ``failed_indices`` entries (of ``task`` only, when given);
    ``errors=False`` keeps each failure's first line."""
    out: dict[str, Any] = {}
    failed: dict[str, list[int | None]] = {}
    for name, rep in list(steps.items()):
        if task is not None and name != task:
            continue
        spec = plan.jobs[name] if plan is not None else None
        failures = dict(rep.failures)  # one C-level copy: the run may be adding to it
        idx: list[int | None] = [*sorted(failures)] if rep.array else [None] * bool(failures)
        errs = []
        for i in idx[:MAX_ERRORS]:
            text = failures[0 if i is None else i]
            text = text if errors else (text.splitlines() or [""])[0]
            errs.append({"index": i, "error": text[:MAX_ERROR_CHARS]})
        total = rep.elements if rep.array else 1
        out[name] = {
            "state": step_state(rep, cancelled),
            "array": rep.array,
            "total": total,
            "done": rep.done,
            "failed": len(failures),
            "skipped": len(rep.skipped) if rep.array else int(rep.status == "skipped"),
            "skipped_indices": list(rep.skipped) if rep.array else [],
            "cached": rep.cached,
            "uncached": rep.uncached,
            "not_cached": rep.not_cached,
            "partition": spec.partition if spec is not None else None,
            "reason": rep.reason,
            # element index -> Slurm job id (JSON keys are strings)
            "job_ids": {str(i): j for i, j in dict(rep.job_ids).items()},
            "errors": errs,
            "errors_left_out": max(0, len(idx) - MAX_ERRORS),
        }
        if idx:
            failed[name] = idx
    return out, failed


def settled(record: dict[str, Any]) -> dict[str, Any]:
    """A copy of a record read from the index; a ``RUNNING`` one whose owner is gone is
    ``FAILED``, with a note saying so."""
    snap = dict(record)
    if snap.get("status") == RunState.RUNNING.value:
        owner = snap.get("owner") or {}
        alive = owner_alive(owner.get("host"), owner.get("pid"), owner.get("start"))
        if alive is False:
            snap["status"] = RunState.FAILED.value
            snap["note"] = (
                f"the process that ran it (pid {owner.get('pid')} on {owner.get('host')}) "
                "is gone: it ended without finishing the run (killed or crashed)"
            )
            for step in snap.get("steps", {}).values():
                state = str(step.get("state", "")).upper()
                if state in ACTIVE:
                    step["state"] = (
                        TaskState.FAILED.value
                        if state == TaskState.RUNNING.value
                        else TaskState.CANCELLED.value
                    )
        elif alive is None:
            snap["note"] = f"run by host {owner.get('host')!r}: its owner cannot be checked"
    return snap


def record_view(snap: dict[str, Any], *, errors: bool, task: str | None) -> dict[str, Any]:
    """A record as read back, cut to ``task``'s step (when given), each error to its first
    line unless ``errors``."""
    if task is not None:
        snap["steps"] = {k: v for k, v in snap.get("steps", {}).items() if k == task}
        snap["failed_indices"] = {
            k: v for k, v in snap.get("failed_indices", {}).items() if k == task
        }
    if not errors:
        for step in snap.get("steps", {}).values():
            for e in step.get("errors", []):
                e["error"] = (str(e.get("error", "")).splitlines() or [""])[0]
    return snap


def seed_view(snap: dict[str, Any]) -> dict[str, Any]:
    """reflow-hpc's ``status(as_dict=True)`` keys for a record: ``run``, ``summary`` (per
    task, instances per state), ``instances`` and ``failed_instances`` (dicts with
    ``task_name``, ``array_index``, ``state``, ``job_id``, ``error_text``)."""
    instances: list[dict[str, Any]] = []
    summary: dict[str, dict[str, int]] = {}
    failed_idx = snap.get("failed_indices") or {}
    for name, st in (snap.get("steps") or {}).items():
        try:
            state = task_state(st.get("state")).value
        except WorkflowError:
            state = TaskState.FAILED.value
        errors = {e.get("index"): str(e.get("error", "")) for e in st.get("errors", [])}
        job_ids = st.get("job_ids") if isinstance(st.get("job_ids"), dict) else {}
        counts: dict[str, int] = {}
        if st.get("array"):
            failed = {i for i in (failed_idx.get(name) or []) if isinstance(i, int)}
            skipped = {i for i in (st.get("skipped_indices") or []) if isinstance(i, int)}
            successes = int(st.get("done", 0))
            rest = TaskState.CANCELLED.value if state in TERMINAL else state
            for i in range(int(st.get("total", 0))):
                if i in failed:
                    s_i = TaskState.FAILED.value
                elif i in skipped:
                    s_i = TaskState.CANCELLED.value
                elif successes > 0:
                    s_i, successes = TaskState.SUCCESS.value, successes - 1
                else:
                    s_i = rest
                instances.append(_instance(snap, name, i, s_i, errors.get(i), job_ids.get(str(i))))
                counts[s_i] = counts.get(s_i, 0) + 1
        else:
            instances.append(_instance(snap, name, None, state, errors.get(None), job_ids.get("0")))
            counts[state] = 1
        summary[name] = counts
    status = str(snap.get("status", RunState.FAILED.value))
    run = {
        "run_id": snap.get("run_id"),
        "graph_name": snap.get("workflow"),
        "user_id": snap.get("user_id"),
        "created_at": snap.get("created"),
        "status": status,
        "parameters": snap.get("params") or {},
        "run_dir": snap.get("run_dir"),
    }
    return {
        "run": run,
        "summary": summary,
        "instances": instances,
        "failed_instances": [i for i in instances if i["state"] == TaskState.FAILED.value],
    }


def _instance(
    snap: dict[str, Any],
    task: str,
    index: int | None,
    state: str,
    error: str | None,
    job_id: Any = None,
) -> dict[str, Any]:
    return {
        "run_id": snap.get("run_id"),
        "task_name": task,
        "array_index": index,
        "state": state,
        "job_id": job_id if isinstance(job_id, str) else None,
        "error_text": error if state == TaskState.FAILED.value else None,
    }


def status_table(snap: dict[str, Any], *, errors: bool) -> str:
    lines = [
        f"Run       {snap['run_id']}",
        f"Workflow  {snap['workflow']}",
        f"Status    {snap['status']}",
        f"Backend   {snap['backend']}",
        f"Run dir   {snap['run_dir']}",
        f"Created   {snap['created']}",
    ]
    if snap.get("note"):
        lines.append(f"Note      {snap['note']}")
    steps = snap.get("steps", {})
    width = max((len(n) for n in steps), default=4)
    lines.append("")
    for name, st in steps.items():
        counts = f"{st['done']}/{st['total']} done"
        for k in ("failed", "skipped", "cached"):
            if st.get(k):
                counts += f", {st[k]} {k}"
        if st.get("uncached"):
            counts += f", {not_cached_text(int(st['uncached']), str(st.get('not_cached', '')))}"
        part = f"  partition={st['partition']}" if st.get("partition") else ""
        why = f"  ({st['reason']})" if st.get("reason") else ""
        lines.append(f"  {name:<{width}}  {st['state']:<9}  {counts}{part}{why}")
        for e in st.get("errors", []):
            where = "" if e["index"] is None else f"[{e['index']}]"
            text = e["error"] if errors else (str(e["error"]).splitlines() or [""])[0]
            body = text.rstrip().replace("\n", "\n      ")
            lines.append(f"    {where or '-'}  {body}")
        if st.get("errors_left_out"):
            lines.append(f"    ... {st['errors_left_out']} more failures")
    return "\n".join(lines)


def active_count(snap: dict[str, Any], task: str | None) -> int:
    """How many instances (of ``task``) are still to finish in a record."""
    view = seed_view(snap)
    return sum(
        1
        for i in view["instances"]
        if i["state"] in ACTIVE and (task is None or i["task_name"] == task)
    )
