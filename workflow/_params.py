"""A run's parameters and options, checked before anything starts: ``resolve_params`` (every
parameter known, present where required, of its declared type and among its choices; defaults
filled in) and ``check_options`` (``on_error``, ``max_workers``, ``backend``, ``force``)."""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._errors import MissingParamError, ParamError, WorkflowError, shown
from ._flow import Plan
from ._job import ParamInput
from ._types import describe_type, fits, strip

__all__ = ["BACKENDS", "check_options", "forced_steps", "resolve_params"]


def resolve_params(plan: Plan, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check ``given`` against the plan's parameters: every key known, every required one
    present, every value of the declared type and among its choices; defaults filled in."""
    given = dict(given or {})

    for key in given:
        if not isinstance(key, str):
            raise ParamError(f"parameter names are strings, got {shown(key)}", param=shown(key))
        if key not in plan.params:
            close = difflib.get_close_matches(key, list(plan.params), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = ", ".join(sorted(plan.params)) or "none"
            raise ParamError(
                f"unknown parameter {shown(key)}{hint} (parameters: {known})", param=str(key)
            )
    values: dict[str, Any] = {}
    for key, (p, users) in plan.params.items():
        if key in given:
            v = given[key]
        elif p.required:
            shown_users = ", ".join(repr(u) for u in users[:5])
            if len(users) > 5:
                shown_users += f" and {len(users) - 5} more jobs"
            raise MissingParamError(
                f"missing required parameter {key!r} ({describe_type(p.type)}): it is required "
                f"by {shown_users} and was not given",
                param=key,
            )
        else:
            v = _fresh(p.default)
        if key in given:
            _check_value(key, p, v)
        values[key] = v
    return values


def _fresh(default: Any) -> Any:
    """A run's own copy of a mutable default: a job that changes its ``[]`` default must not
    change the next run's value (nor its cache key)."""
    if default is None or isinstance(default, (str, bytes, int, float, bool, tuple, Path)):
        return default
    try:
        return copy.deepcopy(default)
    except Exception:  # an object that refuses copying is used as it is
        return default


def _check_value(key: str, p: ParamInput, v: Any) -> None:
    t = strip(p.type)
    if p.choices is not None:
        if v not in p.choices:
            raise ParamError(
                f"parameter {key!r} must be one of {list(p.choices)}, got {v!r}", param=key
            )
        return
    if t is Path and isinstance(v, str):
        return
    if v is None and not p.required and p.default is None:
        return
    if (isinstance(v, bool) and t in (int, float)) or not fits(type(v), t):
        raise ParamError(
            f"parameter {key!r} must be {describe_type(t)}, got {type(v).__name__} {v!r}",
            param=key,
        )


#: the backends ``run()`` accepts
BACKENDS = ("local", "ray", "slurm", "pbs", "lsf", "sge", "flux", "executor")


def check_options(
    plan: Plan,
    *,
    max_workers: int | None,
    backend: str,
    force: bool | Sequence[str] | None,
    on_error: str,
) -> None:
    """The run options' errors, raised before anything starts."""
    if on_error not in ("stop", "continue"):
        raise WorkflowError(f"on_error must be 'stop' or 'continue', got {on_error!r}")
    if max_workers is not None and (
        isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1
    ):
        raise WorkflowError(f"max_workers must be an integer >= 1, got {max_workers!r}")
    if backend not in BACKENDS:
        raise WorkflowError(
            "backend must be 'local', 'ray', 'slurm', 'pbs', 'lsf', 'sge', 'flux' or an "
            f"Executor object, got {backend!r:.80}"
        )
    forced_steps(plan, force)


def forced_steps(plan: Plan, force: bool | Sequence[str] | None) -> set[str]:
    if force is True:
        return set(plan.order)
    if force is False or force is None:
        return set()
    if isinstance(force, str):
        forced = {force}
    elif isinstance(force, (list, tuple, set, frozenset)) and all(
        isinstance(f, str) for f in force
    ):
        forced = set(force)
    else:
        raise ParamError(
            f"force must be True, False or a list of step names, got {shown(force)}",
            param="force",
        )
    unknown = sorted(forced - set(plan.order))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(plan.order), n=1, cutoff=0.6)
        hint = f". Did you mean {close[0]!r}?" if close else ""
        raise ParamError(
            f"force names steps that do not exist: {shown(unknown, 200)}{hint}", param="force"
        )
    return forced
