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
from the types; see ``reflow.workflow._flow``. ``wf.run_local(run_dir, params=...)`` runs it
here and returns a :class:`RunReport`. Each job is a node of a :class:`reflow.Network`, so the
network's events and failure reporting apply.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._core._network import Network
from ._errors import (
    CacheError,
    ParamError,
    StepNotFoundError,
    WireTypeError,
    WorkflowCycleError,
    WorkflowDefinitionError,
    WorkflowError,
    WorkflowFailed,
)
from ._flow import Flow, Plan
from ._report import RunReport, StepReport
from ._run import resolve_params, run_plan
from ._types import Param, Result, RunDir, describe_type

__all__ = [
    "CacheError",
    "Flow",
    "Param",
    "ParamError",
    "Result",
    "RunDir",
    "RunReport",
    "StepNotFoundError",
    "StepReport",
    "WireTypeError",
    "Workflow",
    "WorkflowCycleError",
    "WorkflowDefinitionError",
    "WorkflowError",
    "WorkflowFailed",
]


class Workflow(Flow):
    """A flow that runs: ``run_local`` here, ``cli`` from the command line."""

    def __init__(self, name: str = "workflow", *, description: str = "") -> None:
        super().__init__(name)
        self.description = description

    def describe(self) -> str:
        """The steps in run order, each with its wires and parameters."""
        plan = self.plan()
        lines = []
        for name in plan.order:
            spec = plan.jobs[name]
            kind = "array job" if spec.array else "job"
            bits = [
                f"{w.param} <- {w.mode} " + "+".join(s for s, _ in w.parts)
                for w in plan.wires[name]
            ]
            bits += [
                f"{p.name}: {describe_type(p.type)} (param {p.key(name)})" for p in spec.params
            ]
            if spec.after:
                bits.append("after " + ", ".join(spec.after))
            lines.append(f"{name} [{kind}]" + (": " + "; ".join(bits) if bits else ""))
        return "\n".join(lines)

    def run_local(
        self,
        run_dir: str | Path,
        *,
        params: Mapping[str, Any] | None = None,
        max_workers: int | None = None,
        processes: bool = False,
        force: bool | Sequence[str] = False,
        verify: bool = False,
        on_error: str = "stop",
        timeout: float | None = None,
        on_network: Callable[[Network], None] | None = None,
    ) -> RunReport:
        """Run every job on this machine.

        ``run_dir`` holds the jobs' ``RunDir``s and the result cache; ``params`` the parameter
        values (``{"source": "data.csv", "count.min": 2}``); ``max_workers`` how many calls
        run at once (default: the CPU count); ``processes=True`` runs them in worker
        processes (jobs and their values must pickle); ``force`` recomputes everything
        (``True``) or the named steps instead of using cached results; ``verify`` re-hashes
        cached results before use; ``on_error`` is ``"stop"`` (raise :class:`WorkflowFailed`
        at the first failure) or ``"continue"`` (run what does not depend on a failure and
        return the report); ``on_network`` is called with the compiled :class:`Network`
        before it runs (to subscribe to its events)."""
        return self.run(
            run_dir,
            backend="local",
            params=params,
            max_workers=max_workers,
            processes=processes,
            force=force,
            verify=verify,
            on_error=on_error,
            timeout=timeout,
            on_network=on_network,
        )

    def run(
        self,
        run_dir: str | Path,
        *,
        backend: str = "local",
        address: str | None = None,
        params: Mapping[str, Any] | None = None,
        max_workers: int | None = None,
        processes: bool = False,
        force: bool | Sequence[str] = False,
        verify: bool = False,
        on_error: str = "stop",
        timeout: float | None = None,
        on_network: Callable[[Network], None] | None = None,
    ) -> RunReport:
        """Run on a backend: ``"local"`` (as :meth:`run_local`) or ``"ray"`` — every call a
        Ray task with the job's ``cpus``/``mem`` as its resources, on the cluster at
        ``address`` (``"auto"``, ``"ray://host:10001"``, ``"127.0.0.1:6379"``; ``None`` starts
        a local one unless Ray is already initialised). The graph itself runs here; results
        come back to this process, so the cache and the report work as locally."""
        plan: Plan = self.plan()
        values = resolve_params(plan, params)
        return run_plan(
            plan,
            values,
            Path(run_dir),
            max_workers=max_workers,
            processes=processes,
            backend=backend,
            address=address,
            force=force,
            verify=verify,
            on_error=on_error,
            timeout=timeout,
            on_network=on_network,
        )

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
