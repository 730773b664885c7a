"""What a workflow run returns: per step its status, element counts, failures and results."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from ._errors import WorkflowError, WorkflowFailed

__all__ = ["RunReport", "StepReport", "failure_headline", "not_cached_text"]

log = logging.getLogger("reflow.workflow")
#: failures logged one line each at the end of a run; the rest are counted in one more line
FAILURES_LOGGED = 20
_TRACEBACK = "Traceback (most recent call last):"


def failure_headline(text: str) -> str:
    """A failure's text without its traceback, on one line (``ValueError: bad value 3``)."""
    head = str(text).split(_TRACEBACK, 1)[0]
    return " ".join(head.split())[:500] or " ".join(str(text).split())[-500:]


def debug_wanted() -> bool:
    """``$REFLOW_DEBUG`` asks for each failure's traceback where a failure is reported."""
    return os.environ.get("REFLOW_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def not_cached_text(count: int, why: str) -> str:
    """``"2 not cached: a result of type function cannot be pickled"``: a step's results the
    cache refused, the first one's reason (``""`` when none was refused)."""
    return f"{count} not cached: {why}" if count else ""


#: done: ran (or came from the cache) completely; partial: an array job with failed or skipped
#: elements (``on_error="continue"``); failed; skipped: never ran because something it needs
#: failed or the run stopped; cached: every result came from the cache.
STATUSES = ("done", "cached", "partial", "failed", "skipped", "pending", "running")


@dataclass
class StepReport:
    name: str
    array: bool
    status: str = "pending"
    elements: int = 0
    cached: int = 0
    ran: int = 0
    failures: dict[int, str] = field(default_factory=dict)  # element index (0 for a job) -> error
    skipped: list[int] = field(default_factory=list)
    reason: str = ""
    elapsed: float = 0.0
    #: array jobs: chunks of elements finished, each a packet on the node's "elements" port
    chunks: int = 0
    #: elements with a result so far (ran or cached); counts up while the step runs
    done: int = 0
    #: each element's batch-system job id (Slurm's ``<job>_<task>``), where one ran it
    job_ids: dict[int, str] = field(default_factory=dict)
    #: results the cache could not store (``cache=True``: they will be computed again), and
    #: why the first of them could not (its type and pickle's error)
    uncached: int = 0
    not_cached: str = ""

    def refused_by_cache(self, reasons: list[str]) -> None:
        """Count results the cache did not store; the first reason is the one shown."""
        if reasons:
            self.uncached += len(reasons)
            self.not_cached = self.not_cached or reasons[0]

    def describe(self) -> str:
        parts = [self.status]
        if self.array:
            parts.append(f"{self.elements} elements")
        if self.cached:
            parts.append(f"{self.cached} cached")
        if self.failures:
            parts.append(f"{len(self.failures)} failed")
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped")
        if self.uncached:
            parts.append(not_cached_text(self.uncached, self.not_cached))
        if self.reason:
            parts.append(self.reason)
        return ", ".join(parts)


class RunReport:
    def __init__(self, steps: dict[str, StepReport], results: dict[str, Any], elapsed: float):
        self.steps = steps
        self._results = results
        self.elapsed = elapsed

    @property
    def ok(self) -> bool:
        return all(s.status in ("done", "cached") for s in self.steps.values())

    @property
    def failures(self) -> list[tuple[str, int, str]]:
        return [(name, i, err) for name, s in self.steps.items() for i, err in s.failures.items()]

    def result(self, step: str) -> Any:
        """A step's result: its return value, or the list of an array job's element results
        (``None`` where an element failed or was skipped)."""
        if step not in self.steps:
            raise WorkflowError(f"no step named {step!r} in this run", step=step)
        s = self.steps[step]
        if s.status not in ("done", "cached", "partial"):
            raise WorkflowError(
                f"step {step!r} has no result: it is {s.status}"
                + (f" ({s.reason})" if s.reason else ""),
                step=step,
            )
        return self._results[step]

    def __getitem__(self, step: str) -> Any:
        return self.result(step)

    def raise_for_failures(self) -> None:
        if not self.ok:
            raise WorkflowFailed(self.failure_message(), report=self)

    def summary_line(self) -> str:
        bad = [
            f"{n}: {s.describe()}"
            for n, s in self.steps.items()
            if s.status not in ("done", "cached")
        ]
        if not bad:
            return f"all {len(self.steps)} steps done"
        first = next(iter(self.failures), None)
        cause = (
            f"; first failure: {first[0]}[{first[1]}]: {failure_headline(first[2])}"
            if first
            else ""
        )
        return "; ".join(bad) + cause

    def log_failures(self) -> None:
        """One warning per failed element, ``job 'x'[3] failed: ValueError: ...``, without
        the traceback (``$REFLOW_DEBUG`` adds it; the report and ``status(errors=True)``
        keep it)."""
        failures = self.failures
        debug = debug_wanted()
        for name, i, err in failures[:FAILURES_LOGGED]:
            log.warning("job %r[%d] failed: %s", name, i, err if debug else failure_headline(err))
        if len(failures) > FAILURES_LOGGED:
            log.warning(
                "... and %d more failed elements (status(errors=True) lists them all)",
                len(failures) - FAILURES_LOGGED,
            )

    def failure_message(self) -> str:
        """``task 'x' failed: <summary>`` (reflow-hpc's words, then the summary line)."""
        bad = [n for n, s in self.steps.items() if s.failures] or [
            n for n, s in self.steps.items() if s.status not in ("done", "cached")
        ]
        head = f"task {bad[0]!r} failed: " if bad else ""
        return head + self.summary_line()

    def table(self) -> str:
        width = max(len(n) for n in self.steps) if self.steps else 4
        return "\n".join(f"{n:<{width}}  {s.describe()}" for n, s in self.steps.items())

    def __repr__(self) -> str:
        return f"<RunReport ok={self.ok} steps={len(self.steps)} elapsed={self.elapsed:.3f}s>"
