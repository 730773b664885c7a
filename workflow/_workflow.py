"""The :class:`Workflow`: a :class:`~._flow.Flow` that runs, here, on a backend, in the
background or from its command line, and finds its recorded runs again.

Its methods check their arguments (``_run_args``) and hand a :class:`~._handle.Run` the plan,
the parameters and the options; the run compiles and runs itself (``_run``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._core._network import Network
from ._batch import check_scheduler
from ._config import Config, expand, read_config
from ._describe import Description, WorkflowDescription, describe_plan
from ._errors import ParamError, shown
from ._executors import Executor, resolve_executor
from ._flow import Flow, Plan
from ._handle import Run, make_run_id
from ._index import RunIndex
from ._params import check_options, resolve_params
from ._run_args import (
    Store,
    check_submit_backend,
    check_timeout,
    configured_plan,
    forced_steps,
    index_path,
    merge_params,
    run_path,
    step_name,
    usable_index,
)
from ._store import SqliteStore

__all__ = ["Workflow"]


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
        """``plan`` with the config's submit options where a job gives none
        (:func:`~._run_args.configured_plan`), for ``backend="slurm"`` only: elsewhere they
        mean nothing (and the config is not read for them)."""
        if backend != "slurm":
            return plan
        return configured_plan(plan, self.config.job_defaults(), address)

    def _store(self, store: Store | None, store_path: str | Path | None) -> str | Path | None:
        """The run index's path: ``store``/``store_path``, else the configured one."""
        given = index_path(store, store_path)
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
        values = resolve_params(plan, merge_params(self.name, plan, params, job_params))
        forced = forced_steps(force, force_tasks)
        check_options(
            plan, max_workers=max_workers, backend=backend, force=forced, on_error=on_error
        )
        check_scheduler(backend, address)  # PBS/LSF/SGE/Flux: their submit command is here
        check_timeout(timeout)
        index = RunIndex(store_path)
        run_id = make_run_id(self.name, index)
        root = self.config.default_run_dir if run_dir is None else None
        path = run_path(run_dir, run_id, root)
        recorded = usable_index(index, default=store_path is None)
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
            index=recorded,
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
        check_submit_backend(backend)
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
        task = step_name(task, task_name)
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
        task = step_name(task, task_name)
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
