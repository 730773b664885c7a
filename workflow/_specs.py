"""reflow-hpc's job descriptions, :class:`JobConfig` and :class:`TaskSpec`, as views of ours.

``wf.tasks["name"]`` is a :class:`TaskSpec` whose ``config`` is a :class:`JobConfig`; both
read the job's one record (``_job.JobSpec``, frozen), so nothing is copied that could drift
from what runs. ``JobConfig(cpus=2, submit_options={...})`` built by hand checks its values
as ``@wf.job(...)`` does (a bad one is a :class:`WorkflowDefinitionError`).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator, Mapping
from functools import cached_property
from typing import Any

from ._errors import StepNotFoundError, WorkflowDefinitionError, shown
from ._job import JobSpec, analyse_job
from ._types import Result

__all__ = ["JobConfig", "TaskMap", "TaskSpec", "UnknownTaskError"]


class UnknownTaskError(StepNotFoundError, KeyError):
    """``wf.tasks[name]`` of a name no job has (a ``KeyError`` too, as a mapping's)."""

    def __str__(self) -> str:
        return str(self.args[0])


def _placeholder() -> None:
    """The function of a :class:`JobConfig` built by hand (it describes no job)."""


class JobConfig:
    """A job's resources and options under reflow-hpc's names (``cpus``, ``time``, ``mem``,
    ``array``, ``after``, ``array_parallelism``, ``submit_options``/``extra``, ``version``,
    ``cache``, ``backend``, ``partition``, ``account``, ``mail_user``, ``mail_type``,
    ``signal``), read-only."""

    __slots__ = ("__dict__", "_job")

    def __init__(
        self,
        cpus: float = 1,
        time: str | None = None,
        mem: str | None = None,
        array: bool = False,
        after: list[str] | None = None,
        array_parallelism: int | None = None,
        submit_options: Mapping[str, Any] | None = None,
        version: str = "",
        cache: bool = True,
        backend: str | None = None,
        extra: Mapping[str, Any] | None = None,
        **scheduler_options: Any,
    ) -> None:
        options: dict[str, Any] = {}
        for what, opts in (("submit_options", submit_options), ("extra", extra)):
            if opts is not None and not isinstance(opts, Mapping):
                raise WorkflowDefinitionError(
                    f"JobConfig: {what} must be a dict of scheduler options, got {shown(opts)}"
                )
            options.update(opts or {})
        options.update(scheduler_options)
        self._job = analyse_job(
            _placeholder,
            name="job",
            array=array,
            cache=cache,
            version=version,
            after=list(after or ()),
            cpus=cpus,
            mem=mem,
            time=time,
            array_limit=None,
            retries=0,
            array_parallelism=array_parallelism,
            submit_options=options,
            backend=backend,
        )

    @classmethod
    def of(cls, job: JobSpec) -> JobConfig:
        """The view of ``job``'s record."""
        view = cls.__new__(cls)
        view._job = job
        return view

    def __repr__(self) -> str:
        j = self._job
        return (
            f"JobConfig(cpus={j.cpus!r}, time={j.time!r}, mem={j.mem!r}, array={j.array!r}, "
            f"cache={j.cache!r}, submit_options={self.submit_options!r})"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JobConfig) and self._job == other._job

    __hash__ = None  # type: ignore[assignment]

    cpus = property(lambda self: self._job.cpus)
    time = property(lambda self: self._job.time)
    mem = property(lambda self: self._job.mem)
    array = property(lambda self: self._job.array)
    version = property(lambda self: self._job.version)
    cache = property(lambda self: self._job.cache)
    backend = property(lambda self: self._job.backend)
    retries = property(lambda self: self._job.retries)
    partition = property(lambda self: self._job.partition)
    account = property(lambda self: self._job.account)
    array_parallelism = property(lambda self: self._job.array_limit)

    @property
    def after(self) -> list[str]:
        return list(self._job.after)

    @cached_property
    def submit_options(self) -> dict[str, str]:
        """Every scheduler option (``partition`` and ``account`` too), by reflow-hpc's names;
        a copy: the job's record does not change."""
        out: dict[str, str] = {}
        if self._job.partition is not None:
            out["partition"] = self._job.partition
        if self._job.account is not None:
            out["account"] = self._job.account
        out.update(self._job.submit_options)
        return out

    @property
    def extra(self) -> dict[str, str]:
        """reflow-hpc's older name for :attr:`submit_options`."""
        return self.submit_options

    @property
    def mail_user(self) -> str | None:
        return self._job.option("mail_user")

    @property
    def mail_type(self) -> str | None:
        return self._job.option("mail_type")

    @property
    def signal(self) -> str | None:
        return self._job.option("signal")


class TaskSpec:
    """One job as reflow-hpc describes it: ``name``, ``func``, ``config`` (a
    :class:`JobConfig`), ``signature``, ``result_deps`` (parameter -> :class:`Result`),
    ``return_type`` and ``verify``; read-only, read from the job's record."""

    __slots__ = ("__dict__", "_job")

    def __init__(self, job: JobSpec) -> None:
        if not isinstance(job, JobSpec):
            raise WorkflowDefinitionError(
                f"TaskSpec describes a job of a workflow (wf.tasks['name']), got {shown(job)}"
            )
        self._job = job

    def __repr__(self) -> str:
        return f"TaskSpec(name={self.name!r}, config={self.config!r})"

    name = property(lambda self: self._job.name)
    func = property(lambda self: self._job.fn)
    return_type = property(lambda self: self._job.returns)
    verify = property(lambda self: self._job.verify)

    @cached_property
    def config(self) -> JobConfig:
        return JobConfig.of(self._job)

    @cached_property
    def signature(self) -> inspect.Signature:
        return inspect.signature(self._job.fn)

    @cached_property
    def result_deps(self) -> dict[str, Result]:
        return {
            r.name: Result(steps=list(r.steps), broadcast=r.broadcast)
            if r.concat
            else Result(r.steps[0], broadcast=r.broadcast)
            for r in self._job.results
        }


class TaskMap(Mapping[str, TaskSpec]):
    """``wf.tasks``: step name -> :class:`TaskSpec`, in definition order, live (a job added
    later is in it)."""

    def __init__(self, jobs: Callable[[], Mapping[str, JobSpec]]) -> None:
        self._jobs = jobs

    def __getitem__(self, name: str) -> TaskSpec:
        jobs = self._jobs()
        if name not in jobs:
            close = difflib.get_close_matches(str(name), list(jobs), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnknownTaskError(
                f"no task named {shown(name)}{hint} (tasks: {', '.join(jobs) or 'none'})",
                name=str(name),
                suggestion=close[0] if close else None,
            )
        return TaskSpec(jobs[name])

    def __contains__(self, name: object) -> bool:
        return name in self._jobs()

    def __iter__(self) -> Iterator[str]:
        return iter(self._jobs())

    def __len__(self) -> int:
        return len(self._jobs())

    def __repr__(self) -> str:
        return f"TaskMap({list(self._jobs())!r})"
