"""reflow-hpc's executor objects: ``executor=LocalExecutor()`` / ``SlurmExecutor(partition=...)``
in place of the strings ``"local"`` / ``"slurm"``.

An :class:`Executor` names where a workflow runs and can itself submit one command as a job
(``submit(resources, command) -> job id``, ``cancel``, ``job_state``), as reflow-hpc's do.
Given to ``Workflow.submit(executor=...)``, ``run(backend=...)`` or ``run(executor=...)``:

* :class:`LocalExecutor` runs the workflow on this machine (``backend="local"``); its own
  ``submit`` runs the command as a subprocess and waits for it;
* :class:`SlurmExecutor` runs it on Slurm (``backend="slurm"``, see ``_slurm``): its
  ``partition`` is the backend's ``address``, and ``account``, ``qos`` and ``submit_options``
  (``{"reservation": "r1", "exclusive": True}``: sbatch's long options, snake or kebab case)
  are added to every ``sbatch`` of the run. They travel as the run's address,
  ``PARTITION?account=A&qos=Q`` (:func:`slurm_address`, read back by
  :func:`parse_slurm_address`), so the run's record holds them and ``retry()`` from another
  process submits the same way. Its own ``submit`` is ``sbatch --parsable ... --wrap``.

Any other :class:`Executor` — PBS, LSF, SGE, Flux (``_batch_executors``) or a user's own
subclass — runs the workflow on the generic batch backend (``_batch``): one job per chunk
through its ``submit``, watched through its ``job_state``, stopped through its ``cancel``.
The object travels as the run's address ``executor:<n>`` (this process only).
"""

from __future__ import annotations

import abc
import itertools
import os
import re
import shlex
import subprocess
import sys
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode

from ._errors import ParamError, UnknownExecutorError, WorkflowError, shown

__all__ = [
    "Executor",
    "JobResources",
    "LocalExecutor",
    "SlurmExecutor",
    "parse_slurm_address",
    "resolve_executor",
    "slurm_address",
]

#: an sbatch long option, as a key of ``submit_options`` (``mail_user`` or ``mail-user``)
_OPTION = re.compile(r"[a-z][a-z0-9]*(?:[_-][a-z0-9]+)*")
#: sbatch options the backend sets itself, from the job's decorator and the run
_OWN = frozenset(
    {"array", "cpus-per-task", "mem", "time", "job-name", "output", "error", "parsable", "wrap"}
)
#: what a Slurm partition name may hold (and never the address's ``?``/``&``/``=``)
_PARTITION = re.compile(r"[A-Za-z0-9_.\-]+(?:,[A-Za-z0-9_.\-]+)*")
_CMD_TIMEOUT_S = 30.0

Scalar = str | int | float | bool


def _name(value: object, what: str, *, allow_none: bool = True) -> str | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise ParamError(f"{what} must be a non-empty string, got {shown(value)}", param=what)
    return value


def _options(value: object, what: str = "submit_options") -> dict[str, Scalar]:
    """``submit_options`` as sbatch long options (kebab case) -> values; else a ParamError."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ParamError(f"{what} must be a dict of sbatch options, got {shown(value)}", param=what)
    out: dict[str, Scalar] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not _OPTION.fullmatch(key) or len(key) > 60:
            raise ParamError(
                f"{what}: {shown(key)} is not an sbatch option name (lowercase words joined by "
                "'_' or '-', as 'mail_user')",
                param=what,
            )
        flag = key.replace("_", "-")
        if flag in _OWN:
            raise ParamError(
                f"{what}: {key!r} is set by reflow from the job's decorator (cpus, mem, time, "
                "array) and the run; it cannot be given here",
                param=what,
            )
        if item is None or item is False:
            continue
        if not isinstance(item, (str, int, float)) or (
            isinstance(item, str) and (not item or len(item) > 1000 or "\n" in item)
        ):
            raise ParamError(
                f"{what}[{key!r}] must be a string, a number or True, got {shown(item)}",
                param=what,
            )
        out[flag] = item
    return out


class JobResources:
    """What one submission asks of the scheduler (reflow-hpc's ``JobResources``)."""

    def __init__(
        self,
        job_name: str = "",
        cpus: int = 1,
        time_limit: str = "00:30:00",
        mem: str = "4G",
        array: str | None = None,
        output_path: str | os.PathLike[str] | None = None,
        error_path: str | os.PathLike[str] | None = None,
        submit_options: Mapping[str, Any] | None = None,
        backend: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(job_name, str):
            raise ParamError(f"job_name must be a string, got {shown(job_name)}", param="job_name")
        if isinstance(cpus, bool) or not isinstance(cpus, int) or cpus < 1:
            raise ParamError(f"cpus must be an integer >= 1, got {shown(cpus)}", param="cpus")
        _name(time_limit, "time_limit", allow_none=False)
        _name(mem, "mem", allow_none=False)
        _name(array, "array")
        for what, path in (("output_path", output_path), ("error_path", error_path)):
            if path is not None and not isinstance(path, (str, os.PathLike)):
                raise ParamError(f"{what} must be a path, got {shown(path)}", param=what)
        for what, opts in (("submit_options", submit_options), ("extra", extra)):
            if opts is not None and not isinstance(opts, Mapping):
                raise ParamError(f"{what} must be a dict, got {shown(opts)}", param=what)
        self.job_name = job_name
        self.cpus = cpus
        self.time_limit = time_limit
        self.mem = mem
        self.array = array
        self.output_path = None if output_path is None else Path(output_path)
        self.error_path = None if error_path is None else Path(error_path)
        self.submit_options: dict[str, Any] = {**(submit_options or {}), **(extra or {})}
        self.backend = backend

    def __repr__(self) -> str:
        return (
            f"JobResources(job_name={self.job_name!r}, cpus={self.cpus}, "
            f"time_limit={self.time_limit!r}, mem={self.mem!r}, array={self.array!r})"
        )

    @property
    def extra(self) -> dict[str, Any]:
        return self.submit_options

    @property
    def partition(self) -> str | None:
        return self.submit_options.get("partition")

    @property
    def account(self) -> str | None:
        return self.submit_options.get("account")

    @property
    def mail_user(self) -> str | None:
        return self.submit_options.get("mail_user")

    @property
    def mail_type(self) -> str | None:
        return self.submit_options.get("mail_type")

    @property
    def signal(self) -> str | None:
        return self.submit_options.get("signal")


class Executor(abc.ABC):
    """A workload manager that takes commands as jobs. ``backend`` is the ``reflow.workflow``
    backend a workflow given this executor runs on (``None``: not one it runs on)."""

    backend: ClassVar[str | None] = None
    #: the environment variable holding an array element's index inside a job
    array_index_env_var: ClassVar[str] = "SLURM_ARRAY_TASK_ID"

    def __init__(self, python: str = "") -> None:
        _name(python or None, "python")
        self.python = python or sys.executable

    @abc.abstractmethod
    def submit(self, resources: JobResources, command: list[str]) -> str:
        """Submit ``command`` as a job; its id."""

    @abc.abstractmethod
    def cancel(self, job_id: str) -> None:
        """Cancel a job (one that ended: nothing happens)."""

    @abc.abstractmethod
    def job_state(self, job_id: str) -> str | None:
        """The scheduler's word for the job's state (``None``: not known)."""

    def dependency_options(self, job_ids: list[str]) -> dict[str, str]:
        """The submit options making a job wait for ``job_ids`` to end."""
        return {"dependency": "afterany:" + ":".join(str(j) for j in job_ids)}

    def address(self) -> str | None:
        """The backend's ``address`` for a run on this executor."""
        return None


def _check_command(command: object) -> list[str]:
    if (
        isinstance(command, (str, bytes))
        or not isinstance(command, (list, tuple))
        or not command
        or not all(isinstance(c, str) for c in command)
    ):
        raise ParamError(
            f"command must be a non-empty list of strings (an argv), got {shown(command)}",
            param="command",
        )
    return list(command)


def _check_resources(resources: object) -> JobResources:
    if not isinstance(resources, JobResources):
        raise ParamError(
            f"resources must be a JobResources, got {shown(resources)}", param="resources"
        )
    return resources


class LocalExecutor(Executor):
    """This machine: a workflow given it runs as with ``"local"``; ``submit`` runs the command
    as a subprocess, to its end."""

    backend = "local"
    array_index_env_var = "REFLOW_LOCAL_ARRAY_INDEX"

    def __init__(self, capture_output: bool = False) -> None:
        super().__init__()
        if not isinstance(capture_output, bool):
            raise ParamError(
                f"capture_output must be True or False, got {shown(capture_output)}",
                param="capture_output",
            )
        self.capture_output = capture_output
        self._codes: dict[str, int | None] = {}

    def __repr__(self) -> str:
        return "LocalExecutor()"

    def submit(self, resources: JobResources, command: list[str]) -> str:
        _check_resources(resources)
        argv = _check_command(command)
        job_id = f"local-{uuid.uuid4().hex[:8]}"
        try:
            proc = subprocess.run(argv, capture_output=self.capture_output, check=False)
            self._codes[job_id] = proc.returncode
        except OSError:
            self._codes[job_id] = None  # it could not start: FAILED
        return job_id

    def cancel(self, job_id: str) -> None:
        """Nothing to cancel: ``submit`` ran the command to its end."""

    def job_state(self, job_id: str) -> str | None:
        if job_id not in self._codes:
            return None
        return "COMPLETED" if self._codes[job_id] == 0 else "FAILED"


class SlurmExecutor(Executor):
    """Slurm: a workflow given it runs with ``backend="slurm"`` on ``partition`` (``None``:
    the cluster's default), every sbatch with ``--account``/``--qos`` and ``submit_options``
    added; ``submit`` is ``sbatch --parsable ... --wrap``. ``mode="dry-run"``: ``submit``
    submits nothing and returns ``"DRYRUN"``. ``sbatch``/``scancel``/``sacct``/``squeue``:
    the commands ``submit``, ``cancel`` and ``job_state`` run."""

    backend = "slurm"
    array_index_env_var = "SLURM_ARRAY_TASK_ID"

    def __init__(
        self,
        mode: str = "sbatch",
        sbatch: str = "sbatch",
        scancel: str = "scancel",
        sacct: str = "sacct",
        python: str = "",
        *,
        partition: str | None = None,
        account: str | None = None,
        qos: str | None = None,
        submit_options: Mapping[str, Any] | None = None,
        squeue: str = "squeue",
    ) -> None:
        super().__init__(python=python)
        if mode not in ("sbatch", "dry-run"):
            raise ParamError(f"mode must be 'sbatch' or 'dry-run', got {shown(mode)}", param="mode")
        for what, cmd in (("sbatch", sbatch), ("scancel", scancel), ("sacct", sacct)):
            _name(cmd, what, allow_none=False)
        _name(squeue, "squeue", allow_none=False)
        if partition is not None and (
            not isinstance(partition, str) or not _PARTITION.fullmatch(partition)
        ):
            raise ParamError(
                f"partition must be a Slurm partition name (or 'a,b'), got {shown(partition)}",
                param="partition",
            )
        self.mode = mode
        self.sbatch, self.scancel, self.sacct, self.squeue = sbatch, scancel, sacct, squeue
        self.partition = partition
        self.account = _name(account, "account")
        self.qos = _name(qos, "qos")
        self.submit_options = _options(submit_options)

    @classmethod
    def from_environment(cls, config: object | None = None) -> SlurmExecutor:
        """reflow-hpc's: the executor the environment and ``config`` (a
        :class:`~reflow.workflow.Config`; ``None``: :func:`~reflow.workflow.load_config`'s)
        describe. ``REFLOW_MODE``/``[executor] mode`` (``sbatch`` or ``dry-run``, any case),
        ``REFLOW_PYTHON``/``python`` and the commands ``REFLOW_SBATCH``/``sbatch``,
        ``REFLOW_SCANCEL``/``scancel``, ``REFLOW_SACCT``/``sacct``: the variable wins; unset,
        ``sbatch``, this Python and the bare command names. Another scheduler's mode
        (``qsub-pbs``, ...) is a :class:`ParamError` naming the two a Slurm executor takes."""
        from ._config import Config, load_config

        if config is None:
            config = load_config()
        if not isinstance(config, Config):
            raise ParamError(
                f"SlurmExecutor.from_environment(config=...) takes a Config, got {shown(config)}",
                param="config",
            )
        given = os.environ.get("REFLOW_MODE")
        mode = (given if given and given.strip() else None) or config.executor_mode or "sbatch"
        mode = mode.strip().lower()
        if mode not in ("sbatch", "dry-run"):
            raise ParamError(
                f"SlurmExecutor.from_environment: the mode (REFLOW_MODE or [executor] mode) is "
                f"{shown(mode)}; a SlurmExecutor takes 'sbatch' or 'dry-run'",
                param="mode",
            )
        return cls(
            mode=mode,
            sbatch=config.executor_sbatch or "sbatch",
            scancel=config.executor_scancel or "scancel",
            sacct=config.executor_sacct or "sacct",
            python=config.executor_python or "",
        )

    def __repr__(self) -> str:
        bits = [
            f"{k}={v!r}"
            for k, v in (("partition", self.partition), ("account", self.account))
            if v is not None
        ]
        return f"SlurmExecutor({', '.join(bits)})"

    def sbatch_options(self) -> dict[str, Scalar]:
        """The sbatch options this executor adds to every job (kebab-case names)."""
        out: dict[str, Scalar] = dict(self.submit_options)
        if self.account is not None:
            out["account"] = self.account
        if self.qos is not None:
            out["qos"] = self.qos
        return out

    def address(self) -> str | None:
        return slurm_address(self.partition, self.sbatch_options())

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                argv, capture_output=True, text=True, errors="replace", timeout=_CMD_TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            raise WorkflowError(f"{argv[0]}: no answer in {_CMD_TIMEOUT_S:g} s") from None
        except OSError as exc:
            raise WorkflowError(f"cannot run {argv[0]!r}: {exc.strerror or exc}") from None

    def sbatch_argv(self, resources: JobResources, command: list[str]) -> list[str]:
        """The sbatch command line ``submit`` runs."""
        res = _check_resources(resources)
        argv = [
            self.sbatch,
            "--parsable",
            f"--job-name={res.job_name or 'reflow'}",
            f"--cpus-per-task={res.cpus}",
            f"--time={res.time_limit}",
            f"--mem={res.mem}",
        ]
        if res.array:
            argv.append(f"--array={res.array}")
        if res.output_path is not None:
            argv.append(f"--output={res.output_path}")
        if res.error_path is not None:
            argv.append(f"--error={res.error_path}")
        opts = self.sbatch_options()
        given = {k: v for k, v in res.submit_options.items() if k not in ("python", "mode")}
        if "queue" in given and "partition" not in given:
            given["partition"] = given.pop("queue")  # PBS/LSF users' word
        opts.update(_options(given, "resources.submit_options"))
        if self.partition is not None and "partition" not in opts:
            opts["partition"] = self.partition
        argv += sbatch_flags(opts)
        return [*argv, "--wrap", shlex.join(_check_command(command))]

    def submit(self, resources: JobResources, command: list[str]) -> str:
        argv = self.sbatch_argv(resources, command)
        if self.mode == "dry-run":
            return "DRYRUN"
        p = self._run(argv)
        job_id = p.stdout.strip().split(";")[0]
        if p.returncode != 0 or not job_id:
            text = " ".join(p.stderr.strip().splitlines()[-2:]) or f"exit status {p.returncode}"
            raise WorkflowError(f"sbatch did not take the job: {text}")
        return job_id

    def cancel(self, job_id: str) -> None:
        _name(job_id, "job_id", allow_none=False)
        if job_id == "DRYRUN":
            return
        p = self._run([self.scancel, job_id])
        if p.returncode != 0:
            text = " ".join(p.stderr.strip().splitlines()[-2:]) or f"exit status {p.returncode}"
            raise WorkflowError(f"scancel {job_id} failed: {text}")

    def job_state(self, job_id: str) -> str | None:
        """sacct's state of the job, else (no accounting) squeue's while Slurm keeps it."""
        _name(job_id, "job_id", allow_none=False)
        if job_id == "DRYRUN":
            return None
        for argv in (
            [self.sacct, "-j", job_id, "--noheader", "--parsable2", "--format=State"],
            [self.squeue, "-h", "-j", job_id, "--states=all", "-o", "%T"],
        ):
            try:
                p = self._run(argv)
            except WorkflowError:
                continue
            lines = [ln.strip() for ln in p.stdout.splitlines() if ln.strip()]
            if p.returncode == 0 and lines:
                return lines[0].split()[0]
        return None


def sbatch_flags(options: Mapping[str, Scalar]) -> list[str]:
    """sbatch long options (kebab-case name -> value; ``True``: a bare flag) as arguments."""
    return [f"--{k}" if v is True else f"--{k}={v}" for k, v in options.items()]


def slurm_address(partition: str | None, options: Mapping[str, Scalar]) -> str | None:
    """The Slurm backend's address: ``PARTITION`` and ``?name=value&...`` for the options."""
    if not options:
        return partition
    return (partition or "") + "?" + urlencode([(k, str(v)) for k, v in options.items()])


def parse_slurm_address(address: str | None) -> tuple[str | None, list[str]]:
    """The partition and the extra sbatch arguments an address (:func:`slurm_address`'s)
    names; a malformed one is a :class:`WorkflowError`."""
    if address is None:
        return None, []
    if not isinstance(address, str):
        raise WorkflowError(f"the Slurm partition must be a name, got {shown(address)}")
    part, sep, query = address.partition("?")  # the partition: checked by the backend (sinfo)
    if not sep:
        return part or None, []
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise WorkflowError(
            f"the Slurm address {shown(address)} has a malformed '?...' part"
        ) from None
    opts: dict[str, Scalar] = {}
    for k, v in pairs:
        opts[k] = True if v == "True" else v
    try:
        checked = _options(opts, "the Slurm address")
    except ParamError as exc:
        raise WorkflowError(str(exc)) from None
    return part or None, sbatch_flags(checked)


#: the backends that drive an :class:`Executor` object (``_batch``); the names are strings
#: ``executor=`` takes too (``from_environment()``)
BATCH_NAMES = ("pbs", "lsf", "sge", "flux")
_NAMES = (
    "'local', 'ray', 'slurm', 'pbs', 'lsf', 'sge', 'flux', or an Executor object "
    "(LocalExecutor(), SlurmExecutor(partition=...), PBSExecutor(), a subclass of your own)"
)


_REGISTRY: dict[str, Executor] = {}
_REGISTRY_LOCK = threading.Lock()
_TOKENS = itertools.count(1)


def register_executor(executor: Executor) -> str:
    """The address a run on ``executor`` records: ``executor:<n>``, found again in this
    process by :func:`registered_executor`."""
    with _REGISTRY_LOCK:
        for token, known in _REGISTRY.items():
            if known is executor:
                return token
        token = f"executor:{next(_TOKENS)}"
        _REGISTRY[token] = executor
        return token


def registered_executor(address: str) -> Executor | None:
    with _REGISTRY_LOCK:
        return _REGISTRY.get(address)


def resolve_executor(executor: object, address: str | None) -> tuple[str, str | None]:
    """``executor=``/``backend=`` (a backend name or an :class:`Executor`) and ``address`` as
    the backend name and address a run uses."""
    if isinstance(executor, str):
        return executor, address
    if isinstance(executor, Executor) and type(executor) in (LocalExecutor, SlurmExecutor):
        if address is not None:
            raise ParamError(
                f"address= is for a backend named by a string; {executor!r} carries its own "
                "(give SlurmExecutor(partition=...))",
                param="address",
            )
        assert executor.backend is not None
        return executor.backend, executor.address()
    if isinstance(executor, Executor):
        if address is not None:
            raise ParamError(
                f"address= is for a backend named by a string; {executor!r} carries its own",
                param="address",
            )

        # PBS/LSF/SGE/Flux or a user's own: the generic batch backend, driving the object
        name = executor.backend if executor.backend in BATCH_NAMES else "executor"
        return name, register_executor(executor)
    if isinstance(executor, type) and issubclass(executor, Executor):
        raise UnknownExecutorError(
            f"Unknown executor: executor= takes an executor object, {executor.__name__}(...), "
            "not the class",
            param="executor",
        )
    raise UnknownExecutorError(
        f"Unknown executor {shown(executor)}: executor must be {_NAMES}", param="executor"
    )
