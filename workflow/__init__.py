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

from reflow import __version__ as __version__

from ._batch_executors import FluxExecutor, LSFExecutor, PBSExecutor, SGEExecutor
from ._config import (
    Config,
    config_path,
    ensure_config_exists,
    load_config,
    write_example_config,
)
from ._describe import Description, WorkflowDescription
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
)
from ._executors import Executor, JobResources, LocalExecutor, SlurmExecutor
from ._flow import Flow
from ._handle import Run
from ._index import RunIndex
from ._manifest import ManifestCodec
from ._report import RunReport, StepReport
from ._run_args import RUN_OPTIONS as RUN_OPTIONS
from ._run_args import Store as Store
from ._run_args import default_run_dir as default_run_dir
from ._signals import TaskInterrupted
from ._specs import JobConfig, TaskSpec
from ._states import RunState, TaskState
from ._store import SqliteStore
from ._types import Param, Result, RunDir
from ._workflow import Workflow

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
