"""The arguments of ``Workflow.run_local``/``run``/``submit`` (and the calls that find a
recorded run) checked and resolved, before a :class:`~._handle.Run` is made of them.

Each function takes what the user gave and returns what the run needs, or raises a
:class:`~._errors.ParamError` naming the argument and what was expected: the run index's path
(``store=`` or ``store_path=``), the job parameters given as keywords, ``force`` with
``force_tasks``, ``timeout``, the run directory, the index itself, and the config's submit
options filled into the plan.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from ._config import expand
from ._errors import ParamError, UnknownExecutorError, WorkflowError, shown
from ._flow import Plan
from ._index import RunIndex, default_index_path
from ._job import scheduler_options
from ._params import BACKENDS

__all__ = [
    "RUN_OPTIONS",
    "Store",
    "check_submit_backend",
    "check_timeout",
    "configured_plan",
    "default_run_dir",
    "forced_steps",
    "index_path",
    "merge_params",
    "run_path",
    "step_name",
    "usable_index",
]

Store = RunIndex | str | os.PathLike[str]

#: the run options of ``run_local``/``run``/``submit`` (anything else given by keyword must be
#: a job parameter)
RUN_OPTIONS = (
    "run_dir",
    "params",
    "backend",
    "executor",
    "address",
    "max_workers",
    "processes",
    "force",
    "force_tasks",
    "verify",
    "on_error",
    "timeout",
    "on_network",
    "store_path",
    "store",
)


def index_path(store: Store | None, store_path: str | Path | None) -> str | Path | None:
    """``store=`` (reflow-hpc's: a :class:`RunIndex` or the index file's path) or
    ``store_path=``, as the index file's path (``None``: the default index)."""
    if store is None:
        return store_path
    if store_path is not None:
        raise ParamError("give store= or store_path=, not both", param="store")
    if isinstance(store, RunIndex):
        return store.path
    if isinstance(store, (str, os.PathLike)) and str(store):
        return Path(store)
    raise ParamError(
        f"store must be a RunIndex or the path of a run index file, got {shown(store)}",
        param="store",
    )


def step_name(task: object, task_name: object) -> str | None:
    """``task=`` or reflow-hpc's ``task_name=`` (one of them, or the same twice)."""
    if task is not None and task_name is not None and task != task_name:
        raise ParamError(
            f"give task= or task_name=, not both ({shown(task)} and {shown(task_name)})",
            param="task_name",
        )
    name = task if task is not None else task_name
    if name is not None and not isinstance(name, str):
        raise ParamError(f"task_name must be a step name, got {shown(name)}", param="task_name")
    return name


def default_run_dir(run_id: str) -> Path:
    """Where a run given no ``run_dir`` works: ``<cache dir>/workflow-runs/<run id>`` (the
    cache dir being ``$REFLOW_CACHE_DIR`` or ``~/.cache/reflow``)."""
    return default_index_path().parent / "workflow-runs" / run_id


def _available_backends() -> list[str]:
    import importlib.util
    import shutil

    out = ["local"]
    out.append("ray" if importlib.util.find_spec("ray") else "ray (not installed)")
    out.append("slurm" if shutil.which("sbatch") else "slurm (no sbatch on PATH)")
    return out


def check_submit_backend(backend: str) -> None:
    """``submit``'s executor, once resolved, is one this reflow runs workflows on."""
    if backend not in BACKENDS:
        raise UnknownExecutorError(
            f"Unknown executor {backend!r:.60}: this reflow runs workflows on "
            f"{', '.join(_available_backends())}, 'pbs', 'lsf', 'sge', 'flux', or an "
            "executor object (LocalExecutor(), SlurmExecutor(partition=...), PBSExecutor(), "
            "an Executor subclass of your own)",
            param="executor",
        )


def configured_plan(plan: Plan, defaults: dict[str, Any], address: str | None = None) -> Plan:
    """``plan`` with the config's submit options (``defaults``) filled in where a job gives
    none (for ``backend="slurm"``: elsewhere they mean nothing). What the run's address
    names (its partition, a ``SlurmExecutor``'s options) wins over the config."""
    if isinstance(address, str):
        named, _, query = address.partition("?")
        given = {k.replace("-", "_") for k, _ in parse_qsl(query, keep_blank_values=True)}
        for key in given | ({"partition"} if named else set()):
            defaults.pop(key, None)
    if not defaults:
        return plan
    jobs = {}
    for name, spec in plan.jobs.items():
        own = dict(spec.submit_options)
        if spec.partition is not None:
            own["partition"] = spec.partition
        if spec.account is not None:
            own["account"] = spec.account
        merged = {**defaults, **own}
        part, acct, options = scheduler_options(
            name, merged.pop("partition", None), merged.pop("account", None), merged
        )
        jobs[name] = dataclasses.replace(spec, partition=part, account=acct, submit_options=options)
    return dataclasses.replace(plan, jobs=jobs)


def merge_params(
    workflow: str, plan: Plan, params: Mapping[str, Any] | None, job_params: dict[str, Any]
) -> dict[str, Any]:
    """``params=`` and the parameters given as keywords, one mapping; a keyword that is
    neither a run option nor a parameter is an error naming the closest."""
    if params is not None and not isinstance(params, Mapping):
        raise ParamError(
            f"params must be a mapping of parameter names to values, got {type(params).__name__}",
            param="params",
        )
    merged = dict(params or {})
    # a local parameter "job.name" is the keyword job_name (reflow-hpc's spelling)
    aliases = {k.replace(".", "_").replace("-", "_"): k for k in plan.params if "." in k}
    for key, value in job_params.items():
        target = key if key in plan.params else aliases.get(key)
        if target is None:
            names = sorted({*plan.params, *aliases, *RUN_OPTIONS})
            close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
            hint = f". Did you mean {close[0]!r}?" if close else ""
            known = ", ".join(sorted(plan.params)) or "none"
            raise ParamError(
                f"{shown(key)} is neither a run option nor a parameter of workflow "
                f"{workflow!r}{hint} (parameters: {known}; run options: "
                f"{', '.join(RUN_OPTIONS)})",
                param=key,
            )
        if target in merged:
            raise ParamError(
                f"parameter {target!r} is given twice (in params= and as {key}=)",
                param=target,
            )
        merged[target] = value
    return merged


def forced_steps(force: bool | Sequence[str], force_tasks: Sequence[str]) -> bool | Sequence[str]:
    """``force`` and ``force_tasks`` as one ``force``: ``True``, or the steps to recompute."""
    if isinstance(force_tasks, str) or not all(isinstance(t, str) for t in force_tasks or ()):
        raise ParamError(
            f"force_tasks must be a list of step names, got {shown(force_tasks)}",
            param="force_tasks",
        )
    if force is True or not force_tasks:
        return force
    base = [] if not force else ([force] if isinstance(force, str) else list(force))
    return [*base, *force_tasks]


def check_timeout(timeout: float | None) -> None:
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0
    ):
        raise ParamError(
            f"timeout must be a number of seconds > 0, got {timeout!r}", param="timeout"
        )


def run_path(run_dir: str | Path | None, run_id: str, root: str | None) -> Path:
    """The run's directory: ``run_dir`` made absolute, else ``<root>/<run id>`` (``root``:
    the config's ``default_run_dir``), else :func:`default_run_dir`."""
    if run_dir is None:
        return expand(root).resolve() / run_id if root else default_run_dir(run_id)
    if isinstance(run_dir, (str, os.PathLike)) and str(run_dir):
        try:  # absolute, as reflow-hpc resolves it: the record is read from anywhere
            return Path(run_dir).expanduser().resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # a loop, a NUL, no home
            raise ParamError(
                f"run_dir {shown(run_dir)} cannot be resolved: {exc}", param="run_dir"
            ) from None
    raise ParamError(f"run_dir must be a directory path, got {shown(run_dir)}", param="run_dir")


def usable_index(index: RunIndex, *, default: bool) -> RunIndex | None:
    """``index``, opened once to see that it can be used. The default one (``default``) that
    cannot be is ``None`` with a warning: a run still runs when it cannot be recorded (a
    read-only home); an explicit one that cannot be used is an error, now."""
    if default:
        try:
            with index._db():
                pass
        except WorkflowError as exc:
            logging.getLogger("reflow.workflow").warning("runs are not recorded: %s", exc)
            return None
    else:
        with index._db():
            pass
    return index
