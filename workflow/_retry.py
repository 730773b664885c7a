"""What ``Run.retry()`` does with a run: which instances it re-runs, what it reuses, and what
it takes over from the record of a run another process made.

A retry re-runs the failed instances (of a cancelled run, or one a timeout or backend failure
stopped with none failed, the cancelled ones too) and reuses everything else by Merkle key:
every element's value, or the failure it carries over where its step is not retried.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._run_hooks import FAILED, PriorFailure
from ._snapshot import now, seed_view
from ._states import RunState, TaskState

if TYPE_CHECKING:
    from ._run import _Run

__all__ = ["adopted_options", "failed_so_far", "prior_results", "retry_count"]

#: the options a retry here takes over from a foreign run's record
_ADOPTED = ("max_workers", "processes", "address", "verify", "on_error", "background")


def failed_so_far(snap: dict[str, Any], task: str | None) -> int:
    """How many instances of a run still going (of ``task`` only) have failed."""
    return sum(
        1 for i in seed_view(snap)["failed_instances"] if task is None or i["task_name"] == task
    )


def retry_count(snap: dict[str, Any], task: str | None) -> int | None:
    """How many instances (of ``task`` only) a retry of the ended run ``snap`` re-runs;
    ``None``: nothing to retry."""
    view = seed_view(snap)

    # what failed; for a run that was cancelled, what the cancel stopped too (the
    # instances skipped because something they need failed are re-run, not counted)
    def count(states: set[str]) -> int:
        return sum(
            1
            for i in view["instances"]
            if i["state"] in states and (task is None or i["task_name"] == task)
        )

    n = count({TaskState.FAILED.value})
    if snap.get("status") == RunState.CANCELLED.value or (
        n == 0 and snap.get("status") == RunState.FAILED.value
    ):  # what a cancel, a timeout or a backend failure stopped
        n = count({TaskState.FAILED.value, TaskState.CANCELLED.value})
    if n == 0 and (task is not None or snap.get("status") != RunState.CANCELLED.value):
        return None
    return n


def prior_results(live: _Run) -> dict[str, Any]:
    """What a retry reuses: every element's value, or its failure, by Merkle key."""
    prior: dict[str, Any] = {}
    for name, st in live.state.items():
        rep = live.report[name]
        if live.plan.jobs[name].array:
            for i, key in enumerate(st.keys):
                if i in rep.failures:
                    prior[key] = PriorFailure(rep.failures[i])
                elif i < len(st.elements) and st.elements[i] is not FAILED:
                    prior[key] = st.elements[i]
        elif st.key:
            if 0 in rep.failures:
                prior[st.key] = PriorFailure(rep.failures[0])
            elif rep.status in ("done", "cached"):
                prior[st.key] = st.value
    return prior


def adopted_options(snap: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    """A foreign run's backend, options and creation time, as a retry here runs it."""
    opts = dict(snap.get("options") or {})
    options = {k: opts[k] for k in _ADOPTED if k in opts}
    return str(snap.get("backend", "local")), options, str(snap.get("created") or now())
