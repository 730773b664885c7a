"""``Flow`` (a reusable set of jobs) and the plan a workflow compiles to: every step in an order
that respects its dependencies, and for every ``Result`` parameter the wire mode its types
imply.

Wire modes, decided from the upstream step's return type (its element type for an array job)
and the parameter's type:

====================  =======================  ============================================
downstream            upstream                 mode
====================  =======================  ============================================
job                   job returning ``T``      **direct**: the value
job                   array job of ``T``       **gather**: ``list[T]`` in element order
array job             job returning ``list[T]``  **fan-out**: one element per item
array job             array job of ``T``       **chain**: element *i* gets upstream element *i*
array job             job returning ``T``      **broadcast**: every element gets the value
array job             array job of ``T``,      **gather** (broadcast): every element gets the
                      parameter ``list[T]``    whole ``list[T]``
either                ``Result(steps=[…])``    **concat**: the steps' results (lists, arrays or
                                               single values) joined in order
====================  =======================  ============================================

An array job iterates over its fan-out, chain and concat inputs (they must have the same
length) and repeats its broadcast inputs; ``Result(steps=[…], broadcast=True)`` gives each
element the whole concatenated list.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._errors import (
    StepNotFoundError,
    WireTypeError,
    WorkflowCycleError,
    WorkflowDefinitionError,
    shown,
)
from ._job import (
    SCHEDULER_KEYWORDS,
    JobSpec,
    ParamInput,
    ResultInput,
    analyse_job,
    check_name,
)
from ._specs import TaskMap
from ._types import describe_type, element_type, fits, strip

__all__ = ["JOB_OPTIONS", "Flow", "Plan", "Wire"]

#: what ``@flow.job(...)`` takes
JOB_OPTIONS = (
    "name",
    "array",
    "cache",
    "version",
    "after",
    "cpus",
    "mem",
    "time",
    "array_limit",
    "array_parallelism",
    "retries",
    "partition",
    "account",
    "submit_options",
    "extra",
    "verify",
    "backend",
)


@dataclass(frozen=True)
class Wire:
    """How one ``Result`` parameter is fed. ``parts`` has one ``(step, how)`` per source, how
    being ``"value"`` (a job's result), ``"list"`` (a job's list result, spread) or
    ``"array"`` (an array job's elements)."""

    param: str
    mode: str  # direct | gather | fanout | chain | broadcast | concat
    parts: tuple[tuple[str, str], ...]

    @property
    def iterates(self) -> bool:
        return self.mode in ("fanout", "chain", "concat-iterate")


@dataclass(frozen=True)
class Plan:
    order: tuple[str, ...]
    jobs: dict[str, JobSpec]
    wires: dict[str, tuple[Wire, ...]]
    params: dict[str, tuple[ParamInput, tuple[str, ...]]]  # key -> (input, jobs using it)

    def downstream(self, step: str) -> list[str]:
        return [n for n in self.order if step in self.jobs[n].upstream()]


class Flow:
    """A named set of jobs. ``@flow.job(...)`` adds one; ``flow.include(other, prefix="x")``
    adds another flow's jobs as ``x.<job>``. A :class:`~reflow.workflow.Workflow` is a flow
    that runs."""

    def __init__(self, name: str = "flow") -> None:
        self.name = check_name(name, "flow")
        self._jobs: dict[str, JobSpec] = {}

    def job(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        array: bool = False,
        cache: bool = True,
        version: str = "",
        after: Sequence[Any] = (),
        cpus: float = 1,
        mem: str | None = None,
        time: str | None = None,
        array_limit: int | None = None,
        retries: int = 0,
        array_parallelism: int | None = None,
        partition: str | None = None,
        account: str | None = None,
        submit_options: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
        verify: Callable[[Any], Any] | None = None,
        backend: str | None = None,
        **unknown: Any,
    ) -> Any:
        """Decorate a function as a job (``@wf.job`` or ``@wf.job(array=True, cache=True)``).

        ``array``: run once per element of its iterated inputs; ``array_limit``: at most that
        many elements at once (``array_parallelism``: the same, reflow-hpc's name; give one);
        ``cache`` (on by default, as in reflow-hpc; ``cache=False`` always runs it): reuse
        results whose Merkle key (code, version, inputs, parameters) is unchanged;
        ``version``: bump to invalidate; ``after``: steps that must finish first without
        passing data; ``cpus``/``mem``: resources (Ray's and Slurm's; recorded
        locally); ``time``: each call's walltime in Slurm's formats (``"30"``, ``"02:00:00"``,
        ``"1-12"``), enforced locally and on Ray too (a call past it fails with
        :class:`JobTimeoutError`); ``partition``: the scheduler queue (Slurm; recorded and
        shown, ignored locally and on Ray); ``retries``: calls retried after an exception.

        reflow-hpc's scheduler options: ``account`` (Slurm's ``--account``), the keywords
        of ``SCHEDULER_KEYWORDS`` (``qos=``, ``mail_user=``, ``signal=``...) and any other
        in ``submit_options={...}`` (``extra=``: the same), each passed to ``sbatch`` as
        ``--name=value`` and recorded elsewhere; ``verify``: a function of a cached result
        that says whether it is still valid (asked by ``verify=True`` runs); ``backend``:
        a hint, recorded."""

        if isinstance(fn, str):  # reflow-hpc's @wf.job("name"): the name comes first there
            if name is not None:
                raise WorkflowDefinitionError(
                    f"{self.name}: job() got the name twice ({fn!r} and name={name!r})",
                    step=fn,
                )
            fn, name = None, fn
        scheduler = _scheduler_keywords(self.name, name, unknown)
        merged: dict[str, Any] = {}
        for what, opts in (("submit_options", submit_options), ("extra", extra)):
            if opts is None:
                continue
            if not isinstance(opts, Mapping):
                raise WorkflowDefinitionError(
                    f"{self.name}: job() {what} must be a dict of scheduler options, got "
                    f"{shown(opts)}",
                    step=name,
                )
            if len(opts) > 100:
                raise WorkflowDefinitionError(
                    f"{self.name}: job() {what} has {len(opts)} options; at most 100",
                    step=name,
                )
            merged = _merge_options(self.name, name, merged, opts, what)
        merged = _merge_options(self.name, name, merged, scheduler, "keywords")

        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            spec = analyse_job(
                f,
                name=name,
                array=array,
                cache=cache,
                version=version,
                after=after,
                cpus=cpus,
                mem=mem,
                time=time,
                array_limit=array_limit,
                retries=retries,
                array_parallelism=array_parallelism,
                partition=partition,
                account=account,
                submit_options=merged,
                verify=verify,
                backend=backend,
            )
            self._add(spec)
            with contextlib.suppress(AttributeError, TypeError):
                f.__reflow_step__ = spec.name  # type: ignore[attr-defined]
            return f

        return register(fn) if fn is not None else register

    def array_job(self, fn: Callable[..., Any] | None = None, **options: Any) -> Any:
        """``@flow.array_job(...)``: :meth:`job` with ``array=True`` (reflow-hpc's spelling)."""
        if "array" in options:
            raise WorkflowDefinitionError(
                f"{self.name}: array_job() is always an array job; it takes no array= option"
            )
        return self.job(fn, array=True, **options)

    def _add(self, spec: JobSpec) -> None:
        if spec.name in self._jobs:
            raise WorkflowDefinitionError(
                f"{self.name}: a step named {spec.name!r} is already registered (it already "
                "exists)",
                step=spec.name,
            )
        self._jobs[spec.name] = spec

    def include(self, flow: Flow, prefix: str | None = None) -> None:
        """Add ``flow``'s jobs: under their own names, or named ``<prefix>_<job>`` when a
        ``prefix`` is given (reflow-hpc's rule). References between the included jobs follow
        the rename; references to steps the flow does not define are left as they are (they
        name this flow's steps). A name already taken is a :class:`WorkflowDefinitionError`
        (a ``ValueError``) saying it already exists."""
        if not isinstance(flow, Flow):
            raise WorkflowDefinitionError(f"include() takes a Flow, got {shown(flow)}")
        if prefix is not None:
            prefix = check_name(prefix, "prefix")
        inner = set(flow._jobs)

        def rename(s: str) -> str:
            return f"{prefix}_{s}" if prefix is not None and s in inner else s

        for spec in flow._jobs.values():
            new = rename(spec.name)
            if new in self._jobs:
                raise WorkflowDefinitionError(
                    f"cannot include flow {flow.name!r}: step {new!r} already exists in "
                    f"{self.name!r} (give include() a prefix)",
                    step=new,
                )
        for spec in flow._jobs.values():
            self._add(spec.renamed(rename(spec.name), rename))

    @property
    def steps(self) -> list[str]:
        return list(self._jobs)

    @property
    def tasks(self) -> TaskMap:
        """reflow-hpc's ``flow.tasks``: step name -> :class:`~reflow.workflow.TaskSpec`."""
        return TaskMap(lambda: self._jobs)

    def __contains__(self, name: object) -> bool:
        return name in self._jobs

    def __iter__(self) -> Iterator[JobSpec]:
        return iter(self._jobs.values())

    # ------------------------------------------------------------------ planning

    def plan(self) -> Plan:
        """Check the whole flow and return its plan; every definition error is raised here,
        before anything runs."""
        jobs = dict(self._jobs)
        if not jobs:
            raise WorkflowDefinitionError(f"{self.name}: the workflow has no jobs")
        for spec in jobs.values():
            for s in spec.upstream():
                if s not in jobs:
                    close = difflib.get_close_matches(s, list(jobs), n=1, cutoff=0.6)
                    hint = f". Did you mean {close[0]!r}?" if close else ""
                    where = next(
                        (f" (parameter {r.name!r})" for r in spec.results if s in r.steps),
                        " (after=)",
                    )
                    raise StepNotFoundError(
                        f"job {spec.name!r}{where} references unknown task {s!r} (no step "
                        f"of that name){hint}",
                        name=s,
                        suggestion=close[0] if close else None,
                        step=spec.name,
                    )
                if s == spec.name:
                    raise WorkflowCycleError(f"job {s!r} depends on itself (a cycle)", cycle=[s, s])
        order = _topological(jobs)
        wires = {name: tuple(_wires(jobs, jobs[name])) for name in order}
        params = _params(jobs, order)
        return Plan(order=tuple(order), jobs=jobs, wires=wires, params=params)


def _merge_options(
    flow: str, step: str | None, into: dict[str, Any], more: Mapping[str, Any], what: str
) -> dict[str, Any]:
    """``into`` with ``more``'s options; one given twice with two values is an error."""
    out = dict(into)
    for key, value in more.items():
        if key in out and out[key] != value:
            raise WorkflowDefinitionError(
                f"{flow}: job() scheduler option {shown(key)} is given twice "
                f"({shown(out[key])} and {shown(value)} in {what})",
                step=step,
            )
        out[key] = value
    return out


def _scheduler_keywords(flow: str, step: str | None, given: dict[str, Any]) -> dict[str, Any]:
    """The scheduler options given as keywords; any other keyword is an error naming the
    closest option."""
    for key in sorted(given):
        if key in SCHEDULER_KEYWORDS:
            continue
        known = (*JOB_OPTIONS, *SCHEDULER_KEYWORDS)
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f". Did you mean {close[0]!r}?" if close else ""
        raise WorkflowDefinitionError(
            f"{flow}: job() has no option {key!r}{hint} (options: {', '.join(JOB_OPTIONS)}; "
            f"scheduler options: {', '.join(SCHEDULER_KEYWORDS)}; any other scheduler option "
            f"goes in submit_options={{{key!r}: ...}})",
            step=step,
        )
    return dict(given)


def _topological(jobs: dict[str, JobSpec]) -> list[str]:
    """Definition order where it allows, every step after what it depends on; a cycle is an
    error naming it."""
    state: dict[str, int] = {}
    order: list[str] = []
    for root in jobs:
        if root in state:
            continue
        stack: list[tuple[str, Iterator[str]]] = [(root, iter(jobs[root].upstream()))]
        state[root] = 1
        path = [root]
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                path.pop()
                state[node] = 2
                order.append(node)
                continue
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                cycle.reverse()
                raise WorkflowCycleError(
                    "the steps form a cycle (each depends on the next): " + " → ".join(cycle),
                    cycle=cycle,
                )
            if nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(jobs[nxt].upstream())))
    return order


def _returns(spec: JobSpec) -> str:
    what = describe_type(spec.returns)
    return (
        f"array job {spec.name!r} (elements {what})"
        if spec.array
        else (f"job {spec.name!r} (returns {what})")
    )


def _wires(jobs: dict[str, JobSpec], spec: JobSpec) -> Iterator[Wire]:
    iterating = 0
    for r in spec.results:
        wire = _concat(jobs, spec, r) if r.concat else _single(jobs, spec, r)
        iterating += wire.iterates
        yield wire
    if spec.array and not iterating:
        raise WireTypeError(
            f"array job {spec.name!r} has nothing to iterate over: bind a parameter to a "
            "job returning a list (fan-out) or to an array job (chain)",
            step=spec.name,
        )


def _single(jobs: dict[str, JobSpec], spec: JobSpec, r: ResultInput) -> Wire:
    up = jobs[r.steps[0]]
    u_t, p_t = up.returns, r.type
    u_elem, p_elem = element_type(u_t), element_type(p_t)
    if u_elem is None and strip(u_t) is Any:
        u_elem = Any  # an untyped result may be a list: an array job iterates over it
    target = f"parameter {r.name!r} of {'array job' if spec.array else 'job'} {spec.name!r}"
    if r.broadcast and spec.array:  # the whole value to every element, as the flag says
        if up.array and (p_elem is None or not fits(u_t, p_elem)) and strip(p_t) is not Any:
            raise WireTypeError(
                f"{target} is Result(broadcast=True) of {_returns(up)}: declare it "
                f"list[{describe_type(u_t)}] to give every element all of them",
                step=spec.name,
                param=r.name,
            )
        if not up.array and not fits(u_t, p_t):
            raise WireTypeError(
                f"{target} ({describe_type(p_t)}) is Result(broadcast=True), but "
                f"{_returns(up)} does not fit it",
                step=spec.name,
                param=r.name,
            )
        return Wire(
            r.name,
            "gather" if up.array else "broadcast",
            ((up.name, "array" if up.array else "value"),),
        )
    if spec.array:
        if up.array:
            if fits(u_t, p_t):
                return Wire(r.name, "chain", ((up.name, "array"),))
            if p_elem is not None and fits(u_t, p_elem):
                return Wire(r.name, "gather", ((up.name, "array"),))
        else:
            if u_elem is not None and fits(u_elem, p_t):
                return Wire(r.name, "fanout", ((up.name, "list"),))
            if fits(u_t, p_t):
                return Wire(r.name, "broadcast", ((up.name, "value"),))
    else:
        if up.array:
            if p_elem is not None and fits(u_t, p_elem):
                return Wire(r.name, "gather", ((up.name, "array"),))
            if fits(u_t, p_t):
                raise WireTypeError(
                    f"{target} ({describe_type(p_t)}) takes one value but {_returns(up)} "
                    f"makes many: declare it list[{describe_type(u_t)}] to gather them, or "
                    f"make {spec.name!r} an array job to chain",
                    step=spec.name,
                    param=r.name,
                )
        elif fits(u_t, p_t):
            return Wire(r.name, "direct", ((up.name, "value"),))
    raise WireTypeError(
        f"{target} is {describe_type(p_t)}, but {_returns(up)} fits no wire mode "
        "(direct, gather, fan-out, chain, broadcast)",
        step=spec.name,
        param=r.name,
    )


def _concat(jobs: dict[str, JobSpec], spec: JobSpec, r: ResultInput) -> Wire:
    iterate = spec.array and not r.broadcast  # broadcast: every element gets the whole list
    elem = r.type if iterate else element_type(r.type)
    target = f"parameter {r.name!r} of job {spec.name!r}"
    if elem is None:
        raise WireTypeError(
            f"{target} concatenates steps {list(r.steps)} and must be a list, got "
            f"{describe_type(r.type)}",
            step=spec.name,
            param=r.name,
        )
    parts: list[tuple[str, str]] = []
    for s in r.steps:
        up = jobs[s]
        u_elem = element_type(up.returns)
        if up.array and fits(up.returns, elem):
            parts.append((s, "array"))
        elif not up.array and u_elem is not None and fits(u_elem, elem):
            parts.append((s, "list"))
        elif not up.array and fits(up.returns, elem):
            parts.append((s, "value"))
        else:
            raise WireTypeError(
                f"{target} concatenates items of {describe_type(elem)}, but {_returns(up)} "
                "gives neither such items nor a list of them",
                step=spec.name,
                param=r.name,
            )
    return Wire(r.name, "concat-iterate" if iterate else "concat", tuple(parts))


def _params(
    jobs: dict[str, JobSpec], order: list[str]
) -> dict[str, tuple[ParamInput, tuple[str, ...]]]:
    found: dict[str, tuple[ParamInput, tuple[str, ...]]] = {}
    for name in order:
        for p in jobs[name].params:
            key = p.key(name)
            if key in found:
                first, users = found[key]
                if first.type != p.type or first.choices != p.choices:
                    raise WorkflowDefinitionError(
                        f"parameter {key!r} is {describe_type(first.type)} in job {users[0]!r} "
                        f"but {describe_type(p.type)} in job {name!r}: rename one or make it "
                        "Param(namespace='local')",
                        step=name,
                        param=p.name,
                    )
                if first.default != p.default or first.required != p.required:
                    raise WorkflowDefinitionError(
                        f"parameter {key!r} has different defaults in jobs {users[0]!r} and "
                        f"{name!r}",
                        step=name,
                        param=p.name,
                    )
                found[key] = (first, (*users, name))
            else:
                found[key] = (p, (name,))
    return found
