"""A job as the decorator records it: the function, its resources and options, and what each
of its parameters is bound to (a step's result, a run-time parameter, its run directory)."""

from __future__ import annotations

import hashlib
import inspect
import re
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ._backends import parse_memory
from ._errors import WorkflowDefinitionError, shown
from ._types import (
    Param,
    Result,
    RunDir,
    describe_type,
    fits,
    literal_choices,
    markers,
    strip,
    type_hints,
)

__all__ = [
    "JobSpec",
    "ParamInput",
    "ResultInput",
    "RunDirInput",
    "analyse_job",
    "parse_walltime",
]

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


@dataclass(frozen=True)
class ResultInput:
    name: str
    type: Any
    steps: tuple[str, ...]
    concat: bool
    broadcast: bool = False


@dataclass(frozen=True)
class ParamInput:
    name: str
    type: Any
    param: Param
    default: Any
    required: bool
    choices: tuple[Any, ...] | None

    def key(self, job: str) -> str:
        """The key of ``run_local(params=...)``: the name, or ``job.name`` when local."""
        return f"{job}.{self.name}" if self.param.namespace == "local" else self.name


@dataclass(frozen=True)
class RunDirInput:
    name: str


Input = ResultInput | ParamInput | RunDirInput


@dataclass(frozen=True)
class JobSpec:
    name: str
    fn: Callable[..., Any]
    inputs: tuple[Input, ...]
    returns: Any
    array: bool = False
    cache: bool = False
    version: str = ""
    after: tuple[str, ...] = ()
    cpus: float = 1
    mem: str | None = None
    time: str | None = None
    array_limit: int | None = None
    retries: int = 0
    memory: int | None = None  # mem in bytes
    #: the scheduler queue (Slurm's ``--partition``); local runs and Ray record it only
    partition: str | None = None
    #: ``time`` in seconds (``None``: no limit): each call's wall-clock limit
    time_s: float | None = None
    code_hash: str = field(default="", compare=False)
    #: the account billed (Slurm's ``--account``); local runs and Ray record it only
    account: str | None = None
    #: other scheduler options, ``(name, value)`` in the order given (``--name=value``;
    #: ``"true"``: a bare ``--name``), ``mail_user``/``mail_type``/``signal`` among them
    submit_options: tuple[tuple[str, str], ...] = ()
    #: reflow-hpc's ``verify=``: asked, with ``verify=True`` runs, whether a cached result
    #: is still valid
    verify: Callable[[Any], Any] | None = field(default=None, compare=False)
    #: reflow-hpc's backend hint, recorded only
    backend: str | None = None

    def option(self, name: str) -> str | None:
        """The submit option ``name`` (``None``: not given)."""
        return next((v for k, v in self.submit_options if k == name), None)

    @property
    def results(self) -> tuple[ResultInput, ...]:
        return tuple(i for i in self.inputs if isinstance(i, ResultInput))

    @property
    def params(self) -> tuple[ParamInput, ...]:
        return tuple(i for i in self.inputs if isinstance(i, ParamInput))

    def upstream(self) -> tuple[str, ...]:
        """Every step this job waits for: its results' steps, then ``after``, each once."""
        seen: dict[str, None] = {}
        for r in self.results:
            for s in r.steps:
                seen.setdefault(s)
        for s in self.after:
            seen.setdefault(s)
        return tuple(seen)

    def renamed(self, name: str, rename: Callable[[str], str]) -> JobSpec:
        """This job under another name, its step references renamed (``Flow`` prefixes)."""
        inputs = tuple(
            replace(i, steps=tuple(rename(s) for s in i.steps)) if isinstance(i, ResultInput) else i
            for i in self.inputs
        )
        return replace(self, name=name, inputs=inputs, after=tuple(rename(s) for s in self.after))


#: the longest step or workflow name: it becomes part of file names (run dirs, Slurm jobs)
MAX_NAME = 200


def check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name or not set(name) <= _NAME_CHARS:
        raise WorkflowDefinitionError(
            f"{what} {shown(name)} is not a valid step name: use letters, digits, '_', '-', '.'",
            step=name[:MAX_NAME] if isinstance(name, str) else None,
        )
    if len(name) > MAX_NAME:
        raise WorkflowDefinitionError(
            f"{what} {shown(name)} is {len(name)} characters long: a name has at most "
            f"{MAX_NAME} (it becomes part of file names)",
            step=name[:MAX_NAME],
        )
    return name


_WALLTIME = re.compile(r"(?:(\d{1,9})-)?(\d{1,9})(?::(\d{1,2}))?(?::(\d{1,2}))?")
_WALLTIME_FORMATS = (
    "minutes ('30' or 30), 'M:S', 'H:M:S' ('02:00:00'), 'D-H', 'D-H:M' or 'D-H:M:S' "
    "('1-12:00:00'), with seconds and minutes below 60, hours after a day below 24, more than "
    "zero, or 'INFINITE'"
)


def parse_walltime(value: Any, step: str) -> float | None:
    """A job's ``time`` in seconds, read as Slurm reads ``--time`` (``"INFINITE"``: no limit);
    anything else is a :class:`WorkflowDefinitionError` listing the formats accepted."""
    if value is None:
        return None

    def bad(why: str = "") -> WorkflowDefinitionError:
        return WorkflowDefinitionError(
            f"job {step!r}: time must be a Slurm time limit — {_WALLTIME_FORMATS} — got "
            f"{shown(value)}{why}",
            step=step,
        )

    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 < value < 10**9:
            raise bad(" (minutes must be more than zero)")
        return value * 60.0
    if not isinstance(value, str) or len(value) > 32:
        raise bad()
    text = value.strip()
    if text.upper() in ("INFINITE", "UNLIMITED"):
        return None
    m = _WALLTIME.fullmatch(text)
    if not m:
        raise bad()
    days, first, second, third = m.groups()
    if days is not None:  # D-H[:M[:S]]
        h, mi, sec = int(first), int(second or 0), int(third or 0)
        if h >= 24 or mi >= 60 or sec >= 60:
            raise bad(" (hours after a day below 24, minutes and seconds below 60)")
        total = int(days) * 86400 + h * 3600 + mi * 60 + sec
    elif third is not None:  # H:M:S
        if int(second) >= 60 or int(third) >= 60:
            raise bad(" (minutes and seconds below 60)")
        total = int(first) * 3600 + int(second) * 60 + int(third)
    elif second is not None:  # M:S
        if int(second) >= 60:
            raise bad(" (seconds below 60)")
        total = int(first) * 60 + int(second)
    else:  # M
        total = int(first) * 60
    if total <= 0:
        raise bad(" (it must be more than zero)")
    return float(total)


#: scheduler options a job may give as keywords (``@wf.job(qos="high")``), besides
#: ``partition``/``account``; any other goes in ``submit_options={...}``
SCHEDULER_KEYWORDS = (
    "mail_user",
    "mail_type",
    "signal",
    "qos",
    "constraint",
    "exclusive",
    "gres",
    "gpus",
    "reservation",
    "nodes",
    "ntasks",
    "nodelist",
    "exclude",
    "licenses",
    "comment",
    "queue",
)
#: sbatch options reflow sets itself: a job gives them through its own options
_RESERVED = {
    "job-name": "name=",
    "array": "array=",
    "output": "",
    "error": "",
    "chdir": "",
    "cpus-per-task": "cpus=",
    "mem": "mem=",
    "time": "time=",
    "dependency": "after=",
    "parsable": "",
    "wrap": "",
    "no-requeue": "",
    "requeue": "",
}
_OPTION = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


def _option_value(step: str, key: str, value: Any) -> str | None:
    """A scheduler option's value as its flag takes it (``None``: ``False``, left out)."""
    if value is True:
        return "true"
    if value is False or value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, str) and value.strip() and len(value) <= 1000:
        text = value
    else:
        raise WorkflowDefinitionError(
            f"job {step!r}: scheduler option {key!r} must be a non-empty string, a number or "
            f"a boolean, got {shown(value)}",
            step=step,
            param=key,
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise WorkflowDefinitionError(
            f"job {step!r}: scheduler option {key!r} has a control character in {shown(text)}",
            step=step,
            param=key,
        )
    return text


def scheduler_options(
    step: str, partition: Any, account: Any, submit_options: Any
) -> tuple[str | None, str | None, tuple[tuple[str, str], ...]]:
    """A job's ``partition``, ``account`` and other scheduler options, checked: names as
    flags take them, values strings, numbers or booleans, each given once, and none that
    reflow sets itself (``--time`` is ``time=``)."""
    if submit_options is None:
        submit_options = {}
    if not isinstance(submit_options, Mapping):
        raise WorkflowDefinitionError(
            f"job {step!r}: submit_options must be a dict of scheduler options, got "
            f"{shown(submit_options)}",
            step=step,
        )
    given: dict[str, tuple[str, Any]] = {}  # flag -> (name given, value)
    pairs = [("partition", partition), ("account", account), *submit_options.items()]
    for key, value in pairs:
        if value is None and key in ("partition", "account"):
            continue
        if not isinstance(key, str) or not _OPTION.fullmatch(key):
            raise WorkflowDefinitionError(
                f"job {step!r}: scheduler option names are words (letters, digits, '_', "
                f"'-'), got {shown(key)}",
                step=step,
            )
        flag = key.replace("_", "-").lower()
        if flag == "queue":
            flag = "partition"
        if flag in _RESERVED:
            own = _RESERVED[flag]
            use = f"give the job's {own} instead" if own else "reflow sets it itself"
            raise WorkflowDefinitionError(
                f"job {step!r}: scheduler option {key!r} (--{flag}) cannot be given: {use}",
                step=step,
                param=key,
            )
        if flag in given and given[flag][1] != value:
            raise WorkflowDefinitionError(
                f"job {step!r}: scheduler option --{flag} is given twice ({given[flag][0]}="
                f"{shown(given[flag][1])} and {key}={shown(value)})",
                step=step,
                param=key,
            )
        given[flag] = (key, value)
    out: list[tuple[str, str]] = []
    part = acct = None
    for flag, (key, value) in given.items():
        text = _option_value(step, key, value)
        if text is None:
            continue
        if flag in ("partition", "account"):
            if text == "true" or len(text) > 200:
                raise WorkflowDefinitionError(
                    f"job {step!r}: {flag} must be a name (a non-empty string), got {shown(value)}",
                    step=step,
                    param=key,
                )
            if flag == "partition":
                part = text
            else:
                acct = text
            continue
        out.append((flag.replace("-", "_"), text))
    return part, acct, tuple(out)


def code_hash(fn: Callable[..., Any], version: str) -> str:
    """What the cache keys a job's code on: its source (dedented) when Python can find it,
    else its bytecode and constants; plus ``version``, so a bump invalidates old results."""
    h = hashlib.sha256()
    h.update(f"{getattr(fn, '__module__', '')}:{getattr(fn, '__qualname__', '')}\0".encode())
    try:
        h.update(textwrap.dedent(inspect.getsource(fn)).encode())
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        if code is not None:
            h.update(code.co_code)
            h.update(repr(code.co_consts).encode())
        else:
            h.update(repr(fn).encode())
    h.update(b"\0version=" + version.encode())
    return h.hexdigest()


def _check_default(step: str, name: str, t: Any, default: Any, choices: Any) -> None:
    """A parameter's default must be a value the parameter accepts (``None`` always is: it
    reads as "not given")."""
    if default is None:
        return
    if choices:
        try:
            ok = default in choices
        except Exception:
            ok = False
        if not ok:
            raise WorkflowDefinitionError(
                f"job {step!r}: parameter {name!r}: default {shown(default)} is not one of "
                f"{shown(list(choices), 200)}",
                step=step,
                param=name,
            )
        return
    if t is Path and isinstance(default, str):
        return
    try:
        bad = (isinstance(default, bool) and t in (int, float)) or not fits(type(default), t)
    except Exception:  # a type fits() cannot judge: accepted, as a value of it is
        return
    if bad:
        raise WorkflowDefinitionError(
            f"job {step!r}: parameter {name!r}: default {shown(default)} "
            f"({type(default).__name__}) is not {describe_type(t)}",
            step=step,
            param=name,
        )


def analyse_job(
    fn: Callable[..., Any],
    *,
    name: str | None,
    array: bool,
    cache: bool,
    version: str,
    after: Sequence[Any],
    cpus: float,
    mem: str | None,
    time: str | None,
    array_limit: int | None,
    retries: int,
    array_parallelism: int | None = None,
    partition: str | None = None,
    account: str | None = None,
    submit_options: Any = None,
    verify: Any = None,
    backend: Any = None,
) -> JobSpec:
    if not callable(fn):
        raise WorkflowDefinitionError(f"a job must be a function, got {shown(fn)}")
    step = check_name(name if name is not None else getattr(fn, "__name__", ""), "job")
    if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
        raise WorkflowDefinitionError(
            f"job {step!r}: a generator cannot be a job; return a list instead", step=step
        )
    for what, value in (("cpus", cpus), ("retries", retries)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise WorkflowDefinitionError(
                f"job {step!r}: {what} must be a number >= 0, got {value!r}", step=step
            )
    if array_limit is not None and array_parallelism is not None:
        raise WorkflowDefinitionError(
            f"job {step!r}: give array_limit or array_parallelism (reflow-hpc's name for it), "
            f"not both (got array_limit={array_limit!r}, array_parallelism={array_parallelism!r})",
            step=step,
        )
    limit_name = "array_limit" if array_parallelism is None else "array_parallelism"
    if array_limit is None:
        array_limit = array_parallelism
    if array_limit is not None and (
        isinstance(array_limit, bool) or not isinstance(array_limit, int) or array_limit < 1
    ):
        raise WorkflowDefinitionError(
            f"job {step!r}: {limit_name} must be an integer >= 1, got {array_limit!r}", step=step
        )
    if partition is not None and (
        not isinstance(partition, str) or not partition.strip() or len(partition) > 200
    ):
        raise WorkflowDefinitionError(
            f"job {step!r}: partition must be a queue name (a non-empty string), "
            f"got {partition!r:.60}",
            step=step,
        )
    if account is not None and (
        not isinstance(account, str) or not account.strip() or len(account) > 200
    ):
        raise WorkflowDefinitionError(
            f"job {step!r}: account must be an account name (a non-empty string), "
            f"got {shown(account)}",
            step=step,
        )
    time_s = parse_walltime(time, step)
    partition, account, options = scheduler_options(step, partition, account, submit_options)
    if verify is not None and not callable(verify):
        raise WorkflowDefinitionError(
            f"job {step!r}: verify must be a function of the cached result returning True "
            f"(still valid) or False, got {shown(verify)}",
            step=step,
        )
    if backend is not None and (not isinstance(backend, str) or not backend.strip()):
        raise WorkflowDefinitionError(
            f"job {step!r}: backend must be a backend name (a string) or None, got "
            f"{shown(backend)}",
            step=step,
        )
    if not isinstance(version, str):
        raise WorkflowDefinitionError(
            f"job {step!r}: version must be a string, got {version!r}", step=step
        )
    hints = type_hints(fn)
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:  # a builtin without a signature Python can read
        raise WorkflowDefinitionError(
            f"job {step!r}: its signature cannot be read ({exc}); wrap it in a def", step=step
        ) from None
    inputs: list[Input] = []
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise WorkflowDefinitionError(
                f"job {step!r}: parameter {p.name!r}: *args/**kwargs cannot be wired",
                step=step,
                param=p.name,
            )
        if p.kind is p.POSITIONAL_ONLY:
            raise WorkflowDefinitionError(
                f"job {step!r}: parameter {p.name!r} is positional-only ('/' in the "
                "signature): jobs are called with keywords; drop the '/'",
                step=step,
                param=p.name,
            )
        t = hints.get(p.name, p.annotation)
        marks = markers(t)
        results = [m for m in marks if isinstance(m, Result)]
        params = [m for m in marks if isinstance(m, Param)]
        rundirs = [m for m in marks if isinstance(m, RunDir) or m is RunDir]
        if len(results) + len(params) + len(rundirs) > 1:
            raise WorkflowDefinitionError(
                f"job {step!r}: parameter {p.name!r} has more than one of Result/Param/RunDir",
                step=step,
                param=p.name,
            )
        if results:
            if p.default is not p.empty:
                raise WorkflowDefinitionError(
                    f"job {step!r}: parameter {p.name!r} is a Result and cannot have a default",
                    step=step,
                    param=p.name,
                )
            inputs.append(
                ResultInput(
                    p.name, strip(t), results[0].steps, results[0].concat, results[0].broadcast
                )
            )
        elif rundirs or strip(t) is RunDir or (p.name == "run_dir" and not params):
            inputs.append(RunDirInput(p.name))
        else:
            param = params[0] if params else Param()
            literal = literal_choices(t)
            if literal == ():
                raise WorkflowDefinitionError(
                    f"job {step!r}: parameter {p.name!r} is an empty Literal[]: it allows no value",
                    step=step,
                    param=p.name,
                )
            choices = param.choices or literal
            if p.default is not p.empty:
                _check_default(step, p.name, strip(t), p.default, choices)
            inputs.append(
                ParamInput(
                    p.name,
                    strip(t),
                    param,
                    None if p.default is p.empty else p.default,
                    p.default is p.empty,
                    tuple(choices) if choices else None,
                )
            )
    after_names = []
    for a in after:
        a_name = a if isinstance(a, str) else getattr(a, "__reflow_step__", None)
        if not isinstance(a_name, str):
            raise WorkflowDefinitionError(
                f"job {step!r}: after= takes step names or jobs, got {a!r}", step=step
            )
        after_names.append(a_name)
    return JobSpec(
        name=step,
        fn=fn,
        inputs=tuple(inputs),
        returns=strip(hints.get("return", sig.return_annotation)),
        array=bool(array),
        cache=bool(cache),
        version=version,
        after=tuple(after_names),
        cpus=cpus,
        mem=mem,
        time=time if not isinstance(time, int) else str(time),
        array_limit=array_limit,
        retries=int(retries),
        memory=parse_memory(mem, step),
        partition=partition,
        time_s=time_s,
        code_hash=code_hash(fn, version),
        account=account,
        submit_options=options,
        verify=verify,
        backend=backend,
    )
