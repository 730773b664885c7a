"""The errors of ``reflow.workflow``: all of them are :class:`reflow.ReflowError` subclasses.

::

    WorkflowError                 defining or running a workflow went wrong (.step)
    ├── WorkflowDefinitionError   a job, parameter or wire that cannot work (.step, .param);
    │   │                         also a ValueError, as reflow-hpc raises for these
    │   ├── StepNotFoundError     a Result/after names a missing step (.name, .suggestion)
    │   ├── MarkerError           a Result/Param marker built wrong; a TypeError too
    │   ├── WireTypeError         upstream and downstream types no wire mode explains
    │   └── WorkflowCycleError    the steps depend on each other in a circle (.cycle)
    ├── ParamError                a parameter value or run option that is missing, unknown or
    │   │                         of the wrong type (.param); a ValueError
    │   └── MissingParamError     a required parameter not given; a TypeError too (reflow-hpc)
    ├── CacheError                the result cache cannot be read or written (.path)
    ├── ConfigError               the user's config.toml is wrong (.path, .key); a ValueError
    ├── RunIndexError             the run index (SQLite) cannot be read or written (.path)
    ├── RunNotFoundError          no run with that id in the index (.run_id, .close); a KeyError
    ├── UnknownExecutorError      submit(executor=) names no executor; a ParamError (ValueError)
    ├── RunStateError             a Run handle asked for what its state does not allow
    ├── JobTimeoutError           a call ran past its job's ``time`` (.limit); a TimeoutError
    └── WorkflowFailed            one or more jobs failed (.report); a RuntimeError, whose
                                  message starts "task 'x' failed" as reflow-hpc's does
"""

from __future__ import annotations

from typing import Any

from .._errors import ReflowError

__all__ = [
    "CacheError",
    "ConfigError",
    "JobTimeoutError",
    "MarkerError",
    "MissingParamError",
    "ParamError",
    "RunIndexError",
    "RunNotFoundError",
    "RunStateError",
    "StepNotFoundError",
    "UnknownExecutorError",
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


class WorkflowDefinitionError(WorkflowError, ValueError):
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


class MarkerError(WorkflowDefinitionError, TypeError):
    pass


def shown(value: Any, limit: int = 60) -> str:
    """``repr`` for a message, bounded: a hostile value may be huge or refuse ``repr``."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"<an int of {value.bit_length()} bits>"
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class WorkflowCycleError(WorkflowDefinitionError):
    def __init__(self, message: str, *, cycle: list[str]) -> None:
        super().__init__(message, step=cycle[0] if cycle else None)
        self.cycle = cycle


class ParamError(WorkflowError, ValueError):
    def __init__(self, message: str, *, param: str) -> None:
        super().__init__(message)
        self.param = param


class MissingParamError(ParamError, TypeError):
    pass


class UnknownExecutorError(ParamError):
    pass


class CacheError(WorkflowError):
    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class ConfigError(WorkflowError, ValueError):
    def __init__(self, message: str, *, path: str, key: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.key = key


class RunIndexError(WorkflowError):
    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class RunNotFoundError(WorkflowError, KeyError):
    def __init__(self, message: str, *, run_id: str, close: list[str]) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.close = close

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return str(self.args[0])


class RunStateError(WorkflowError):
    pass


class JobTimeoutError(WorkflowError, TimeoutError):
    def __init__(
        self, message: str, *, step: str, index: int | None = None, limit: float = 0.0
    ) -> None:
        super().__init__(message, step=step)
        self.index = index
        self.limit = limit


class WorkflowFailed(WorkflowError, RuntimeError):
    def __init__(self, message: str, *, report: Any) -> None:
        super().__init__(message)
        self.report = report
