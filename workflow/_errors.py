"""The errors of ``reflow.workflow``: all of them are :class:`reflow.ReflowError` subclasses.

::

    WorkflowError                 defining or running a workflow went wrong (.step)
    ├── WorkflowDefinitionError   a job, parameter or wire that cannot work (.step, .param)
    │   ├── StepNotFoundError     a Result/after names a missing step (.name, .suggestion)
    │   ├── WireTypeError         upstream and downstream types no wire mode explains
    │   └── WorkflowCycleError    the steps depend on each other in a circle (.cycle)
    ├── ParamError                a parameter value that is missing or of the wrong type (.param)
    ├── CacheError                the result cache cannot be read or written (.path)
    └── WorkflowFailed            one or more jobs failed (.report)
"""

from __future__ import annotations

from typing import Any

from .._errors import ReflowError

__all__ = [
    "CacheError",
    "ParamError",
    "StepNotFoundError",
    "WireTypeError",
    "WorkflowCycleError",
    "WorkflowDefinitionError",
    "WorkflowError",
    "WorkflowFailed",
]


class WorkflowError(ReflowError):
    def __init__(self, message: str, *, step: str | None = None) -> None:
        super().__init__(message)
        self.step = step


class WorkflowDefinitionError(WorkflowError):
    def __init__(self, message: str, *, step: str | None = None, param: str | None = None) -> None:
        super().__init__(message, step=step)
        self.param = param


class StepNotFoundError(WorkflowDefinitionError, LookupError):
    def __init__(
        self, message: str, *, name: str, suggestion: str | None, step: str | None = None
    ) -> None:
        super().__init__(message, step=step)
        self.name = name
        self.suggestion = suggestion


class WireTypeError(WorkflowDefinitionError, TypeError):
    pass


class WorkflowCycleError(WorkflowDefinitionError):
    def __init__(self, message: str, *, cycle: list[str]) -> None:
        super().__init__(message, step=cycle[0] if cycle else None)
        self.cycle = cycle


class ParamError(WorkflowError, ValueError):
    def __init__(self, message: str, *, param: str) -> None:
        super().__init__(message)
        self.param = param


class CacheError(WorkflowError):
    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class WorkflowFailed(WorkflowError):
    def __init__(self, message: str, *, report: Any) -> None:
        super().__init__(message)
        self.report = report
