"""The state vocabulary of runs and their task instances: reflow-hpc's, UPPERCASE ``str`` enums.

A run is ``RUNNING``, then ``SUCCESS``, ``FAILED`` or ``CANCELLED``; a task instance (a job, or
one element of an array job) is ``PENDING``, ``RUNNING``, then ``SUCCESS``, ``FAILED`` or
``CANCELLED`` (``SUBMITTED`` and ``RETRYING`` are reflow-hpc's too: a scheduler's queue, a retry
asked for). The values compare equal to their names as strings (``RunState.SUCCESS ==
"SUCCESS"``), so records written as JSON read back the same. Input is accepted in any case and
in this package's earlier words (``succeeded``, ``canceled``): :func:`run_state`,
:func:`task_state`.

As reflow-hpc's, ``str()`` of a state names its class (``str(TaskState.PENDING) ==
"TaskState.PENDING"``, the way Python shows an enum member), while formatting, JSON and SQLite
give the bare value (``f"{TaskState.PENDING}" == "PENDING"``). The groups reflow-hpc's code
asks about are class methods returning frozensets: :meth:`TaskState.terminal` (will not change
by itself: ``SUCCESS``, ``FAILED``, ``CANCELLED``), :meth:`TaskState.active` (work still to end:
``PENDING``, ``SUBMITTED``, ``RUNNING``, ``RETRYING``), :meth:`TaskState.cancellable`
(``PENDING``, ``SUBMITTED``, ``RUNNING``) and :meth:`TaskState.retriable` (``FAILED``,
``CANCELLED``).
"""

from __future__ import annotations

import enum

from ._errors import ParamError, shown

__all__ = ["RunState", "TaskState", "run_state", "task_state"]


class _State(enum.StrEnum):
    """A state: ``str()`` is ``Class.NAME`` (reflow-hpc's), ``format()`` the value."""

    def __str__(self) -> str:
        return f"{type(self).__name__}.{self.name}"

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class TaskState(_State):
    """The state of one task instance (a job, or one element of an array job)."""

    PENDING = "PENDING"
    SUBMITTED = "SUBMITTED"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    RETRYING = "RETRYING"

    @classmethod
    def terminal(cls) -> frozenset[TaskState]:
        """The states an instance stays in until someone retries it."""
        return frozenset({cls.SUCCESS, cls.FAILED, cls.CANCELLED})

    @classmethod
    def active(cls) -> frozenset[TaskState]:
        """The states of an instance whose work has not ended."""
        return frozenset({cls.PENDING, cls.SUBMITTED, cls.RUNNING, cls.RETRYING})

    @classmethod
    def cancellable(cls) -> frozenset[TaskState]:
        """The states a cancel stops (a ``RETRYING`` instance is not started yet by the
        retry, so there is nothing of it to stop)."""
        return frozenset({cls.PENDING, cls.SUBMITTED, cls.RUNNING})

    @classmethod
    def retriable(cls) -> frozenset[TaskState]:
        """The states a retry runs again."""
        return frozenset({cls.FAILED, cls.CANCELLED})


class RunState(_State):
    """The state of a whole run."""

    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


#: the words accepted besides the names themselves (any case)
_ALIASES = {
    "SUCCEEDED": "SUCCESS",
    "SUCCESSFUL": "SUCCESS",
    "CANCELED": "CANCELLED",
    "PENDING": "PENDING",
}

TERMINAL_RUN = frozenset({RunState.SUCCESS, RunState.FAILED, RunState.CANCELLED})


def _parse(value: object, enum_cls: type[enum.Enum], what: str) -> enum.Enum:
    if isinstance(value, enum_cls):
        return value
    if isinstance(value, str) and len(value) <= 40:
        word = value.strip().upper()
        word = _ALIASES.get(word, word)
        if enum_cls is RunState and word == "PENDING":
            word = "RUNNING"  # a run about to start is running, as reflow-hpc records it
        try:
            return enum_cls(word)
        except ValueError:
            pass
    names = ", ".join(str(m.value) for m in enum_cls)
    raise ParamError(
        f"{what[2:]} must be one of {names} (any case; 'succeeded' reads as SUCCESS), got "
        f"{shown(value)}",
        param="status" if enum_cls is RunState else "state",
    )


def run_state(value: object) -> RunState:
    """``value`` as a :class:`RunState` (any case, or an earlier word); else a
    :class:`~reflow.workflow.ParamError` naming the states."""
    out = _parse(value, RunState, "a run status")
    assert isinstance(out, RunState)
    return out


def task_state(value: object) -> TaskState:
    """``value`` as a :class:`TaskState` (any case, or an earlier word); else a
    :class:`~reflow.workflow.ParamError` naming the states."""
    out = _parse(value, TaskState, "a task state")
    assert isinstance(out, TaskState)
    return out
