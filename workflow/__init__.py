"""``reflow.workflow``: Python functions as jobs, wired by their types, run on the reflow runtime.

::

    from typing import Annotated
    from reflow.workflow import Workflow, Result, Param

    wf = Workflow("wordcount")

    @wf.job
    def lines(source: Annotated[str, Param(help="a text file", short="-s")]) -> list[str]:
        return open(source).read().splitlines()

    @wf.job(array=True, cache=True)
    def count(line: Annotated[str, Result(step="lines")]) -> int:   # fan-out: one per line
        return len(line.split())

    @wf.job
    def total(counts: Annotated[list[int], Result(step="count")]) -> int:  # gather
        return sum(counts)

    if __name__ == "__main__":
        raise SystemExit(wf.cli())      # python wordcount.py --source book.txt

How a result reaches a parameter (direct, gather, fan-out, chain, broadcast, concat) is read
from the types; see ``reflow.workflow._flow``. ``wf.run_local(run_dir, source="book.txt")``
runs it here and returns the finished :class:`Run` (a :class:`RunReport` too);
``wf.submit(run_dir, executor="ray")`` returns it at once while it runs (``_handle``). Every
run is recorded in the run index (``_index``). Each job is a node of a
:class:`reflow.Network`, so the network's events and failure reporting apply.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from reflow import __version__ as __version__

from .._core._network import Network
from ._batch import check_scheduler
from ._batch_executors import FluxExecutor, LSFExecutor, PBSExecutor, SGEExecutor
from ._config import (
    Config,
    config_path,
    ensure_config_exists,
    expand,
    load_config,
    read_config,
    write_example_config,
)
from ._describe import Description, WorkflowDescription, describe_plan
from ._errors import (
    CacheError,
    ConfigError,
    JobTimeoutError,
    MissingParamError,
    ParamError,
    RunIndexError,
    RunNotFoundError,
    RunStateError,
    StepNotFoundError,
    UnknownExecutorError,
    WireTypeError,
    WorkflowCycleError,
    WorkflowDefinitionError,
    WorkflowError,
    WorkflowFailed,
    shown,
)
from ._executors import Executor, JobResources, LocalExecutor, SlurmExecutor, resolve_executor
from ._flow import Flow, Plan
from ._handle import Run, make_run_id
from ._index import RunIndex, default_index_path
from ._job import scheduler_options
from ._manifest import ManifestCodec
from ._report import RunReport, StepReport
from ._run import BACKENDS, check_options, resolve_params
from ._signals import TaskInterrupted
from ._specs import JobConfig, TaskSpec
from ._states import RunState, TaskState
from ._store import SqliteStore
from ._types import Param, Result, RunDir

__all__ = [
    "CacheError",
    "Config",
    "ConfigError",
    "Description",
    "Executor",
    "Flow",
    "FluxExecutor",
    "JobConfig",
    "JobResources",
    "JobTimeoutError",
    "LSFExecutor",
    "LocalExecutor",
    "ManifestCodec",
    "MissingParamError",
    "PBSExecutor",
    "Param",
    "ParamError",
    "Result",
    "Run",
    "RunDir",
    "RunIndex",
    "RunIndexError",
    "RunNotFoundError",
    "RunReport",
    "RunState",
    "RunStateError",
    "SGEExecutor",
    "SlurmExecutor",
    "SqliteStore",
    "StepNotFoundError",
    "StepReport",
    "TaskInterrupted",
    "TaskSpec",
    "TaskState",
    "UnknownExecutorError",
    "WireTypeError",
    "Workflow",
    "WorkflowCycleError",
    "WorkflowDefinitionError",
    "WorkflowDescription",
    "WorkflowError",
    "WorkflowFailed",
    "config_path",
    "ensure_config_exists",
    "load_config",
    "write_example_config",
]


Store = RunIndex | str | os.PathLike[str]


def _store_path(store: Store | None, store_path: str | Path | None) -> str | Path | None:
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


class Workflow(Flow):
    """A flow that runs: ``run_local``/``run`` here or on Ray or Slurm, ``submit`` in the
    background, ``cli`` from the command line."""

    def __init__(
        self, name: str = "workflow", *, description: str = "", config: Config | None = None
    ) -> None:
        super().__init__(name)
        self.description = description
        if config is not None and not isinstance(config, Config):
            raise ParamError(
                f"config must be a reflow.workflow.Config (load_config()), got {shown(config)}",
                param="config",
            )
        self._config = config

    @property
    def config(self) -> Config:
        """The user configuration this workflow applies (reflow-hpc's ``wf.config``): the one
        given, else the config file's (read when first needed; no file: nothing
        configured)."""
        if self._config is None:
            self._config = read_config()
        return self._config

    def _configured(self, plan: Plan, backend: str, address: str | None = None) -> Plan:
        """``plan`` with the config's submit options filled in where a job gives none
        (``backend="slurm"`` only: elsewhere they mean nothing). What the run's address names
        (its partition, a ``SlurmExecutor``'s options) wins over the config."""
        if backend != "slurm":
            return plan
        defaults = self.config.job_defaults()
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
            jobs[name] = dataclasses.replace(
                spec, partition=part, account=acct, submit_options=options
            )
        return dataclasses.replace(plan, jobs=jobs)

    def _store(self, store: Store | None, store_path: str | Path | None) -> str | Path | None:
        """The run index's path: ``store``/``store_path``, else the configured one."""
        given = _store_path(store, store_path)
        if given is not None:
            return given
        configured = self.config.configured_store_path
        return None if configured is None else expand(configured)

    def validate(self) -> None:
        r"""Check the whole definition (missing steps, cycles, types no wire explains, clashing
        parameters); the errors are :class:`WorkflowDefinitionError`\ s, ``ValueError``\ s
        too, as reflow-hpc raises."""
        self.plan()

    def describe(self) -> Description:
        """The workflow as a JSON-safe dict (reflow-hpc's shape: ``name``, ``tasks`` in run
        order, each with ``config``, ``dependencies``, ``result_deps`` and its wire modes,
        ``cli_params``); its ``str()`` is the steps in run order, each with its wires and
        parameters (what ``--list`` prints)."""
        return describe_plan(self.plan(), self.name, self.description)

    def describe_typed(self) -> WorkflowDescription:
        """:meth:`describe` as a :class:`WorkflowDescription` (reflow-hpc's typed form)."""
        d = self.describe()
        return WorkflowDescription(
            name=d["name"],
            description=d["description"],
            tasks=tuple(d["tasks"]),
            cli_params=tuple(d["cli_params"]),
            schema_version=d["schema_version"],
        )

    def _job_params(
        self, plan: Plan, params: Mapping[str, Any] | None, job_params: dict[str, Any]
    ) -> dict[str, Any]:
        """``params=`` and the parameters given as keywords, one mapping; a keyword that is
        neither a run option nor a parameter is an error naming the closest."""
        if params is not None and not isinstance(params, Mapping):
            raise ParamError(
                f"params must be a mapping of parameter names to values, got "
                f"{type(params).__name__}",
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
                    f"{self.name!r}{hint} (parameters: {known}; run options: "
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

    def _new_run(
        self,
        run_dir: str | Path | None,
        *,
        backend: str,
        address: str | None,
        params: Mapping[str, Any] | None,
        max_workers: int | None,
        processes: bool,
        force: bool | Sequence[str],
        force_tasks: Sequence[str],
        verify: bool,
        on_error: str,
        timeout: float | None,
        on_network: Callable[[Network], None] | None,
        store_path: str | Path | None,
        background: bool,
        job_params: dict[str, Any],
    ) -> Run:
        plan = self._configured(self.plan(), backend, address)
        values = resolve_params(plan, self._job_params(plan, params, job_params))
        if isinstance(force_tasks, str) or not all(isinstance(t, str) for t in force_tasks or ()):
            raise ParamError(
                f"force_tasks must be a list of step names, got {shown(force_tasks)}",
                param="force_tasks",
            )
        if force is True or not force_tasks:
            forced: bool | Sequence[str] = force
        else:
            base = [] if not force else ([force] if isinstance(force, str) else list(force))
            forced = [*base, *force_tasks]
        check_options(
            plan, max_workers=max_workers, backend=backend, force=forced, on_error=on_error
        )
        check_scheduler(backend, address)  # PBS/LSF/SGE/Flux: their submit command is here
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0
        ):
            raise ParamError(
                f"timeout must be a number of seconds > 0, got {timeout!r}", param="timeout"
            )
        index: RunIndex | None = RunIndex(store_path)
        run_id = make_run_id(self.name, index)
        if run_dir is None:
            root = self.config.default_run_dir
            path = expand(root).resolve() / run_id if root else default_run_dir(run_id)
        elif isinstance(run_dir, (str, os.PathLike)) and str(run_dir):
            try:  # absolute, as reflow-hpc resolves it: the record is read from anywhere
                path = Path(run_dir).expanduser().resolve()
            except (OSError, RuntimeError, ValueError) as exc:  # a loop, a NUL, no home
                raise ParamError(
                    f"run_dir {shown(run_dir)} cannot be resolved: {exc}", param="run_dir"
                ) from None
        else:
            raise ParamError(
                f"run_dir must be a directory path, got {shown(run_dir)}", param="run_dir"
            )
        if store_path is None:
            # the default index: a run still runs when it cannot be recorded (a read-only home)
            try:
                assert index is not None
                with index._db():
                    pass
            except WorkflowError as exc:
                logging.getLogger("reflow.workflow").warning("runs are not recorded: %s", exc)
                index = None
        else:
            assert index is not None
            with index._db():  # an explicit index that cannot be used is an error, now
                pass
        options = {
            "max_workers": max_workers,
            "processes": processes,
            "address": address,
            "force": forced,
            "verify": verify,
            "on_error": on_error,
            "timeout": timeout,
            "on_network": on_network,
            "background": background,
        }
        run = Run(
            self,
            run_id,
            path,
            index=index,
            plan=plan,
            params=values,
            backend=backend,
            options=options,
        )
        run._start(background=background)
        return run

    def run_local(
        self,
        run_dir: str | Path | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        max_workers: int | None = None,
        processes: bool = False,
        force: bool | Sequence[str] = False,
        force_tasks: Sequence[str] = (),
        verify: bool = False,
        on_error: str = "stop",
        timeout: float | None = None,
        on_network: Callable[[Network], None] | None = None,
        store_path: str | Path | None = None,
        store: Store | None = None,
        **job_params: Any,
    ) -> Run:
        """Run every job on this machine; returns the finished :class:`Run` (a
        :class:`RunReport` too).

        ``run_dir`` holds the jobs' ``RunDir``s and the result cache (default: a fresh
        ``<cache dir>/workflow-runs/<run id>``); the parameters come as ``params={...}``
        (``{"source": "data.csv", "count.min": 2}``) or as keywords (``source="data.csv"``,
        ``count_min=2``); ``max_workers`` how many calls run at once (default: the CPU count);
        ``processes=True`` runs them in worker processes (jobs and their values must pickle);
        ``force`` recomputes everything (``True``) or the named steps instead of using cached
        results, ``force_tasks`` names more steps to recompute; ``verify`` re-hashes cached
        results before use; ``on_error`` is ``"stop"`` (raise :class:`WorkflowFailed` at the
        first failure) or ``"continue"`` (run what does not depend on a failure and return
        the run); ``on_network`` is called with the compiled :class:`Network` before it runs
        (to subscribe to its events); ``store_path`` the run index file (default
        ``<cache dir>/workflow-runs.sqlite``). A job parameter named like one of
        :meth:`run`'s options (``backend``, ``address``) is a keyword here too."""
        return self._new_run(
            run_dir,
            backend="local",
            address=None,
            params=params,
            max_workers=max_workers,
            processes=processes,
            force=force,
            force_tasks=force_tasks,
            verify=verify,
            on_error=on_error,
            timeout=timeout,
            on_network=on_network,
            store_path=self._store(store, store_path),
            background=False,
            job_params=job_params,
        )

    def run(
        self,
        run_dir: str | Path | None = None,
        *,
        backend: str | Executor = "local",
        executor: str | Executor | None = None,
        address: str | None = None,
        params: Mapping[str, Any] | None = None,
        max_workers: int | None = None,
        processes: bool = False,
        force: bool | Sequence[str] = False,
        force_tasks: Sequence[str] = (),
        verify: bool = False,
        on_error: str = "stop",
        timeout: float | None = None,
        on_network: Callable[[Network], None] | None = None,
        store_path: str | Path | None = None,
        store: Store | None = None,
        **job_params: Any,
    ) -> Run:
        """Run on a backend and return the finished :class:`Run`: ``"local"`` (as
        :meth:`run_local`), ``"ray"`` — every call a Ray task with the job's ``cpus``/``mem``
        as its resources, on the cluster at ``address`` (``"auto"``, ``"ray://host:10001"``,
        ``"127.0.0.1:6379"``; ``None`` starts a local one unless Ray is already initialised)
        — or ``"slurm"`` (``address``: the partition). The graph itself runs here; results
        come back to this process, so the cache and the report work as locally.
        ``backend`` (or ``executor``, reflow-hpc's name) may be an executor object instead:
        ``LocalExecutor()``, ``SlurmExecutor(partition=..., account=...)``."""
        if executor is not None:
            if backend != "local":
                raise ParamError("give backend= or executor=, not both", param="executor")
            backend = executor
        backend, address = resolve_executor(backend, address)
        return self._new_run(
            run_dir,
            backend=backend,
            address=address,
            params=params,
            max_workers=max_workers,
            processes=processes,
            force=force,
            force_tasks=force_tasks,
            verify=verify,
            on_error=on_error,
            timeout=timeout,
            on_network=on_network,
            store_path=self._store(store, store_path),
            background=False,
            job_params=job_params,
        )

    def submit(
        self,
        run_dir: str | Path | None = None,
        *,
        executor: str | Executor | None = "local",
        address: str | None = None,
        params: Mapping[str, Any] | None = None,
        max_workers: int | None = None,
        processes: bool = False,
        force: bool | Sequence[str] = False,
        force_tasks: Sequence[str] = (),
        verify: bool = False,
        on_error: str = "stop",
        timeout: float | None = None,
        on_network: Callable[[Network], None] | None = None,
        store_path: str | Path | None = None,
        store: Store | None = None,
        **job_params: Any,
    ) -> Run:
        """Start a run in the background and return its :class:`Run` at once (``status()``,
        ``wait()``, ``cancel()``). ``executor`` is a backend :meth:`run` takes (``"local"``,
        ``"ray"``, ``"slurm"``, or an executor object: ``LocalExecutor()``,
        ``SlurmExecutor(partition=..., account=...)``); the options and parameters are
        :meth:`run`'s. Definition and parameter errors are raised here, before anything starts;
        a failure while it runs is in its status, and ``wait()`` raises it as :meth:`run`
        would."""
        if executor is None:
            executor = "local"
        backend, address = resolve_executor(executor, address)
        if backend not in BACKENDS:
            raise UnknownExecutorError(
                f"Unknown executor {backend!r:.60}: this reflow runs workflows on "
                f"{', '.join(_available_backends())}, 'pbs', 'lsf', 'sge', 'flux', or an "
                "executor object (LocalExecutor(), SlurmExecutor(partition=...), PBSExecutor(), "
                "an Executor subclass of your own)",
                param="executor",
            )
        return self._new_run(
            run_dir,
            backend=backend,
            address=address,
            params=params,
            max_workers=max_workers,
            processes=processes,
            force=force,
            force_tasks=force_tasks,
            verify=verify,
            on_error=on_error,
            timeout=timeout,
            on_network=on_network,
            store_path=self._store(store, store_path),
            background=True,
            job_params=job_params,
        )

    def attach(
        self, run_id: str, *, store_path: str | Path | None = None, store: Store | None = None
    ) -> Run:
        """The :class:`Run` of a recorded run of this workflow (see :meth:`Run.attach`)."""
        return Run.attach(self, run_id, store_path=self._store(store, store_path))

    def run_status(
        self, run_id: str, store: Store | None = None, *, store_path: str | Path | None = None
    ) -> dict[str, Any]:
        """The status dict of a recorded run (reflow-hpc's ``run_status``): what
        ``attach(run_id).status(as_dict=True)`` returns. An unknown id is a
        :class:`RunNotFoundError` (a ``KeyError``: "Unknown run_id")."""
        snap = self.attach(run_id, store=store, store_path=store_path).status(as_dict=True)
        assert snap is not None
        if isinstance(store, SqliteStore):  # instances written through reflow-hpc's store calls
            snap.update(store.instance_view(run_id) or {})
        return snap

    def runs(
        self,
        *,
        status: str | None = None,
        limit: int | None = None,
        store_path: str | Path | None = None,
        store: Store | None = None,
    ) -> list[dict[str, Any]]:
        """This workflow's recorded runs, newest first (their records); ``status`` is a
        :class:`RunState` in any case (``"SUCCESS"``, ``"failed"``)."""
        path = self._store(store, store_path)
        return RunIndex(path).list(workflow=self.name, status=status, limit=limit)

    def cancel_run(
        self,
        run_id: str,
        store: Store | None = None,
        task_name: str | None = None,
        executor: Executor | None = None,
        *,
        task: str | None = None,
        store_path: str | Path | None = None,
    ) -> int:
        """Cancel one run (reflow-hpc's ``cancel_run``): :meth:`Run.cancel`'s count.
        ``task_name`` (or ``task``) cancels one step only, the run going on; ``executor``
        cancels the scheduler jobs of instances written through a :class:`SqliteStore`."""
        task = _task_name(task, task_name)
        return self.attach(run_id, store=store, store_path=store_path).cancel(task, executor)

    def cancel_runs(
        self,
        run_ids: Sequence[str],
        store: Store | None = None,
        task_name: str | None = None,
        executor: Executor | None = None,
        *,
        task: str | None = None,
        store_path: str | Path | None = None,
    ) -> int:
        """Cancel several runs (reflow-hpc's ``cancel_runs``): the task instances cancelled,
        all runs together; ended ones count 0, an unknown id is a :class:`RunNotFoundError`
        (checked for every id before any is cancelled); ``task_name``/``executor`` as
        :meth:`cancel_run`'s, for every run."""
        if isinstance(run_ids, str) or not all(isinstance(r, str) for r in run_ids):
            raise ParamError(
                f"cancel_runs() takes a list of run ids, got {shown(run_ids)}", param="run_ids"
            )
        task = _task_name(task, task_name)
        path = self._store(store, store_path)
        runs = [Run.attach(self, run_id, store_path=path) for run_id in run_ids]
        return sum(run.cancel(task, executor) for run in runs)

    def cli(self, argv: Sequence[str] | None = None) -> int:
        """Parse the command line (``sys.argv`` by default) into parameters and run options,
        run, print the report; the exit status (0 ok, 1 a job failed or the run was cancelled,
        2 bad input). Called bare (``argv`` None: the real command line) it exits the process
        with that status, so ``wf.cli()`` as a script's last line is enough; given a list it
        returns the status. See :mod:`reflow.workflow._cli` for the subcommands."""
        from ._cli import main

        code = main(self, argv)
        if argv is None:
            raise SystemExit(code)
        return code


def _task_name(task: object, task_name: object) -> str | None:
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
