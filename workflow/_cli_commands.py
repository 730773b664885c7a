"""What the command line's subcommands do (``submit``/``run``, ``status``, ``runs``, ``retry``,
``cancel``, ``dag``, ``describe``), on parsed arguments: ``_cli`` builds the parsers and
dispatches here (see its module doc for the commands, their output and exit statuses).

A handler returns the exit status; bad input is a :class:`UsageError` (one line, exit 2)."""

from __future__ import annotations

import argparse
import difflib
import itertools
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from ._errors import WorkflowError, WorkflowFailed
from ._report import not_cached_text
from ._signals import interrupt_all
from ._states import RunState, TaskState

if TYPE_CHECKING:
    from . import Workflow

__all__ = ["CANCEL_WAIT_S", "ERROR_LINES", "HANDLERS", "UsageError", "cmd_run", "parsed_params"]

#: how long a cancelled ``submit`` waits for its running calls before it exits
CANCEL_WAIT_S = 60.0
#: ``status --errors`` shows the end of each error
ERROR_LINES = 15


class UsageError(Exception):
    """Bad input on the command line: printed as one line, exit status 2."""


def parsed_params(wf: Workflow, args: argparse.Namespace, dests: dict[str, str]) -> dict[str, Any]:
    """The parameters given on the command line (``dests``: argparse dest -> key); an
    optional one left out keeps its default."""
    params = {key: getattr(args, dest) for dest, key in dests.items()}
    plan = wf.plan()
    return {k: v for k, v in params.items() if v is not None or not plan.params[k][0].required}


class _Terminated(KeyboardInterrupt):
    """SIGTERM, as ``_interruptible`` raises it."""


@contextmanager
def _interruptible() -> Iterator[None]:
    """SIGTERM is Ctrl-C while a run goes (so the run is cancelled, not the process killed)."""

    def on_term(signum: int, frame: FrameType | None) -> None:
        interrupt_all(signum)  # the running calls see TaskInterrupted (reflow-hpc's)
        raise _Terminated

    try:
        old = signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _store(args: argparse.Namespace) -> str | None:
    return getattr(args, "store_path", None) or os.environ.get("REFLOW_STORE_PATH") or None


def _finish(run: Any) -> int:
    """Wait for a started run; print its report; the exit status."""
    try:
        with _interruptible():
            try:
                report = run.wait()
            except KeyboardInterrupt as exc:
                if not isinstance(exc, _Terminated):  # Ctrl-C
                    interrupt_all(signal.SIGINT)
                sys.stderr.write(f"cancelling run {run.run_id}\n")
                with suppress(WorkflowError):  # it may have ended meanwhile
                    run.cancel()
                try:
                    report = run.wait(timeout=CANCEL_WAIT_S)
                except WorkflowFailed as exc:
                    report = exc.report
                except WorkflowError as exc:  # still winding down: its calls end on their own
                    sys.stderr.write(f"error: {' '.join(str(exc).split())[:300]}\n")
                    return 1
    except WorkflowFailed as exc:
        report = exc.report
    print(report.table())
    state = _snap(run).get("status", RunState.SUCCESS if report.ok else RunState.FAILED)
    print(f"run {run.run_id}: {state}")
    if state == RunState.CANCELLED:
        sys.stderr.write(f"run {run.run_id} was cancelled\n")
        return 1
    if not report.ok:
        # each failed element was one warning line above (RunReport.log_failures)
        failures = report.failures
        where = ", ".join(f"{n}[{i}]" for n, i, _ in failures[:3])
        more = f" and {len(failures) - 3} more" if len(failures) > 3 else ""
        what = (
            f": {len(failures)} failed ({where}{more}); 'status {run.run_id} --errors' shows "
            "the tracebacks"
            if failures
            else ""
        )
        sys.stderr.write(f"error: run {run.run_id} failed{what}\n")
        return 1
    return 0


def _snap(run: Any) -> dict[str, Any]:
    snap = run.status(as_dict=True)
    return snap if isinstance(snap, dict) else {}


def cmd_run(wf: Workflow, args: argparse.Namespace, dests: dict[str, str]) -> int:
    for task in args.force_tasks or ():
        _check_task(wf, task)
    if getattr(args, "address", None) is not None and args.executor == "local":
        raise UsageError("--address is for --executor ray (the cluster) or slurm (the partition)")
    params = parsed_params(wf, args, dests)
    given = args.run_dir
    if given is None and not wf.config.default_run_dir:
        given = Path("runs") / wf.name
    # status/retry from elsewhere find it; None: the config's run dir, made by submit
    run_dir = Path(given).expanduser().absolute() if given is not None else None
    try:
        if run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            if not os.access(run_dir, os.W_OK | os.X_OK):
                raise PermissionError(13, "not writable", str(run_dir))
        run = wf.submit(
            run_dir,
            executor=getattr(args, "executor", "local"),
            address=getattr(args, "address", None),
            params=params,
            max_workers=args.max_workers,
            processes=args.processes,
            force=args.force,
            force_tasks=tuple(args.force_tasks or ()),
            verify=args.verify,
            on_error=args.on_error,
            store_path=_store(args),
        )
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(run_dir) else ""
        raise UsageError(
            f"cannot use the run dir '{run_dir}': {exc.strerror or exc}{where}"
        ) from None
    print(f"Created run {run.run_id} in {run.run_dir}", flush=True)
    return _finish(run)


def _attach(wf: Workflow, run_id: str, args: argparse.Namespace) -> Any:
    from ._handle import Run

    return Run.attach(wf, run_id, store_path=wf._store(None, _store(args)))


def _check_task(wf: Workflow, task: str | None) -> None:
    steps = list(wf.plan().order)
    if task is not None and task not in steps:
        close = difflib.get_close_matches(task, steps, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(
            f"no task {task[:40]!r} in workflow {wf.name!r}{hint}; tasks: {', '.join(steps)}"
        )


def _cmd_status(wf: Workflow, args: argparse.Namespace) -> int:
    _check_task(wf, args.task)
    run = _attach(wf, args.run_id, args)
    snap = run.status(as_dict=True, errors=args.errors or args.json, task=args.task)
    if args.json:
        print(json.dumps(snap, indent=2, default=str))
        return 0
    print(f"Run       {snap.get('run_id')}")
    print(f"Workflow  {snap.get('workflow')}")
    print(f"Status    {snap.get('status')}")
    print(f"Run dir   {snap.get('run_dir')}")
    print(f"Created   {snap.get('created')}")
    if snap.get("note"):
        print(f"Note      {snap['note']}")
    print()
    failed = snap.get("failed_indices") or {}
    for name, step in (snap.get("steps") or {}).items():
        if args.task is not None and name != args.task:
            continue
        counts = [f"{step.get('done', 0)}/{step.get('total', 0)} done"]
        counts += [f"{step[k]} {k}" for k in ("failed", "skipped", "cached") if step.get(k)]
        if step.get("uncached"):
            counts.append(not_cached_text(int(step["uncached"]), str(step.get("not_cached", ""))))
        print(f"  {name:20s}  {step.get('state', '?'):10s}  {', '.join(counts)}")
        errors = {e.get("index"): e.get("error", "") for e in step.get("errors") or ()}
        for index in failed.get(name) or ([None] if step.get("state") == TaskState.FAILED else []):
            label = f"[{index}]" if index is not None else "   "
            print(f"    {label:8s} FAILED")
            if args.errors and errors.get(index):
                lines = str(errors[index]).rstrip().splitlines()
                if len(lines) > ERROR_LINES:
                    print(f"             ... {len(lines) - ERROR_LINES} lines before")
                for line in lines[-ERROR_LINES:]:
                    print(f"             {line}")
    return 0


def _cmd_runs(wf: Workflow, args: argparse.Namespace) -> int:
    from ._index import RunIndex

    if args.since and args.until and args.since >= args.until:
        raise UsageError(f"--since {args.since} is not before --until {args.until}")
    limit = None if args.all else args.last
    rows = RunIndex(wf._store(None, _store(args))).list(
        workflow=wf.name, status=args.status, since=args.since, until=args.until, limit=limit
    )
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        print("No runs found.")
        return 0
    for row in rows:
        print(f"  {row.get('run_id')}  {row.get('status', '?'):10s}  {row.get('created')}")
    if limit is not None and len(rows) == limit:
        print(f"  (the last {limit}; --all shows every run)")
    return 0


def _cmd_retry(wf: Workflow, args: argparse.Namespace) -> int:
    _check_task(wf, args.task)
    run = _attach(wf, args.run_id, args)
    snap = _snap(run)
    if snap.get("status") == RunState.SUCCESS:
        print(f"run {run.run_id} succeeded: nothing to retry")
        return 0
    print(f"Retrying run {run.run_id} in {run.run_dir}", flush=True)
    if run.retry(task=args.task) == 0 and run.done():
        return 0
    return _finish(run)


def _cmd_cancel(wf: Workflow, args: argparse.Namespace) -> int:
    _check_task(wf, args.task)
    ids = list(dict.fromkeys(args.run_ids))
    runs = [_attach(wf, run_id, args) for run_id in ids]  # every id known before any cancel
    if len(runs) > 1 and not args.yes:
        if not sys.stdin or not sys.stdin.isatty():
            raise UsageError(f"cancel of {len(runs)} runs: pass --yes (no terminal to ask)")
        print(f"About to cancel {len(runs)} runs: {', '.join(ids)}")
        try:
            answer = input("Proceed? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            sys.stderr.write("error: not cancelled (answer y, or pass --yes)\n")
            return 1
    for run in runs:
        state = _snap(run).get("status")
        if state not in (RunState.RUNNING, "PENDING"):
            print(f"run {run.run_id} is {state}: nothing to cancel")
            continue
        if args.task is not None:
            # the index carries a whole-run cancel request only (h/hpc-api's Run.cancel)
            raise UsageError(
                f"cancel --task {args.task}: run {run.run_id} runs in another process, and only "
                "the whole run can be cancelled from here (leave out --task)"
            )
        run.cancel()
        print(f"cancelled run {run.run_id}")
    return 0


def _cmd_dag(wf: Workflow, args: argparse.Namespace) -> int:
    plan = wf.plan()
    order = list(plan.order)
    ups = {
        name: sorted(
            {s for w in plan.wires[name] for s, _ in w.parts} | set(plan.jobs[name].after),
            key=order.index,
        )
        for name in order
    }
    chain = all(ups[b] == [a] for a, b in itertools.pairwise(order)) and not ups[order[0]]
    if chain and all(len(plan.downstream(n)) <= 1 for n in order):
        print(" -> ".join(order))
        return 0
    for name in order:
        tag = " [array]" if plan.jobs[name].array else ""
        print(f"{name}{tag}" + (f" <- {', '.join(ups[name])}" if ups[name] else ""))
    return 0


def _cmd_describe(wf: Workflow, args: argparse.Namespace) -> int:
    print(json.dumps(dict(wf.describe()), indent=2, default=str))
    return 0


#: the subcommands other than ``submit``/``run`` (which take the parameter map too)
HANDLERS: dict[str, Callable[[Workflow, argparse.Namespace], int]] = {
    "status": _cmd_status,
    "runs": _cmd_runs,
    "retry": _cmd_retry,
    "cancel": _cmd_cancel,
    "dag": _cmd_dag,
    "describe": _cmd_describe,
}
