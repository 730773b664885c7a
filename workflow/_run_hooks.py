"""What a :class:`~reflow.workflow.Run` handle plugs into a running plan: the :class:`Hooks`
it is told through, the :class:`PriorFailure` a retried run carries over, and the
:data:`FAILED` marker an array job's element slots hold where no result came.

``_run`` calls these and ``_handle`` implements them; this module imports neither."""

from __future__ import annotations

from typing import Any

__all__ = ["FAILED", "Hooks", "PriorFailure"]

#: an element slot whose call failed or was skipped
FAILED = object()


class PriorFailure:
    """A failure carried over from the run being retried (``Run.retry(task=...)`` re-runs only
    the named step's failures; the others stay failed without running again)."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


class Hooks:
    """What a :class:`~reflow.workflow.Run` handle gives a run: ``started`` gets the live
    ``_Run`` (its ``report`` dict is the steps' state), ``progress`` is called after every
    chunk and step (from the event loop: it must be cheap); ``prior`` maps Merkle keys to the
    previous attempt's values (or :class:`PriorFailure`) and ``retry_steps`` names the steps
    whose prior failures run again (``None``: all of them)."""

    prior: dict[str, Any] | None = None
    retry_steps: set[str] | None = None

    def started(self, run: Any) -> None:  # the live ``_run._Run`` (imports run one way)
        pass

    def progress(self) -> None:
        pass
