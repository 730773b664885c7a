"""What a job's calls get: its parameters' values and its wired upstream results, each with
the Merkle key that names it.

A plain job is one call (:func:`single_call`); an array job is one call per element of the
wires it iterates over (:func:`array_calls`), the other wires' values given whole to every
element. A call's key is the job's code hash, its parameters' digests and its inputs' keys,
so a cached result is reused exactly when all of them are unchanged (see ``_cache``). An
element whose iterated input failed upstream is not called: it is skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._cache import merkle, value_digest
from ._errors import WorkflowError
from ._flow import Wire
from ._job import JobSpec, RunDirInput
from ._run_hooks import FAILED
from ._types import strip

__all__ = ["ArrayCalls", "StepState", "array_calls", "single_call"]

Calls = list[tuple[int, dict[str, Any]]]


class StepState:
    """A step's results as the run holds them, with their Merkle keys."""

    __slots__ = ("elements", "key", "keys", "value")

    def __init__(self) -> None:
        self.value: Any = None  # a job's result
        self.elements: list[Any] = []  # an array job's results (FAILED where none)
        self.key = ""  # the Merkle key of the whole result
        self.keys: list[str] = []  # per element


@dataclass
class ArrayCalls:
    """An array job's elements: ``keys`` (one per element), ``todo`` (the calls to make,
    by element index), ``skipped`` (elements with a failed input) and ``rundirs`` (the
    parameters that get the run directory)."""

    keys: list[str]
    todo: Calls
    skipped: list[int]
    rundirs: list[str]


def _param_kwargs(spec: JobSpec, params: dict[str, Any]) -> tuple[dict[str, Any], str]:
    kwargs: dict[str, Any] = {}
    digests: list[str] = []
    for p in spec.params:
        v = params[p.key(spec.name)]
        if strip(p.type) is Path and isinstance(v, str):
            v = Path(v)
        kwargs[p.name] = v
        digests.append(f"{p.name}={value_digest(v)}")
    return kwargs, merkle(*digests)


def _whole(state: dict[str, StepState], wire: Wire) -> tuple[Any, str]:
    """The value and key of a non-iterating wire (direct, broadcast, gather, concat)."""
    parts: list[Any] = []
    keys: list[str] = []
    for step, how in wire.parts:
        st = state[step]
        if how == "array":
            parts.extend(st.elements)
            keys.append(st.key)
        elif how == "list":
            parts.extend(as_list(step, st.value))
            keys.append(st.key)
        else:
            parts.append(st.value)
            keys.append(st.key)
    if wire.mode in ("direct", "broadcast"):
        return parts[0], keys[0]
    return parts, merkle(wire.mode, *keys)


def _iterated(
    state: dict[str, StepState], spec: JobSpec, wire: Wire
) -> tuple[list[Any], list[str]]:
    """The elements and element keys of an iterating wire (fan-out, chain, concat)."""
    if wire.mode == "chain":
        st = state[wire.parts[0][0]]
        return st.elements, st.keys
    values: list[Any] = []
    whole: list[str] = []
    for step, how in wire.parts:
        st = state[step]
        if how == "array":
            values.extend(st.elements)
        elif how == "list":
            values.extend(as_list(step, st.value, spec.name))
        else:
            values.append(st.value)
        whole.append(st.key)
    base = merkle(wire.mode, *whole)
    return values, [merkle(base, str(i)) for i in range(len(values))]


def single_call(
    spec: JobSpec, wires: Sequence[Wire], state: dict[str, StepState], params: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """A plain job's keyword arguments (its run directory aside) and its call's key."""
    kwargs, pkey = _param_kwargs(spec, params)
    keys = [spec.code_hash, pkey]
    for wire in wires:
        kwargs[wire.param], k = _whole(state, wire)
        keys.append(f"{wire.param}:{k}")
    return kwargs, merkle(*keys)


def array_calls(
    spec: JobSpec,
    wires: Sequence[Wire],
    state: dict[str, StepState],
    params: dict[str, Any],
    run_dir: Path,
) -> ArrayCalls:
    """An array job's element calls; a :class:`WorkflowError` where the wires it iterates
    over are of different lengths."""
    base, pkey = _param_kwargs(spec, params)
    fixed_keys = [spec.code_hash, pkey]
    iterated: list[tuple[str, list[Any], list[str]]] = []
    lengths: dict[str, int] = {}
    for wire in wires:
        if wire.iterates:
            values, keys = _iterated(state, spec, wire)
            iterated.append((wire.param, values, keys))
            lengths[f"{wire.param} (from {', '.join(s for s, _ in wire.parts)})"] = len(values)
        else:
            base[wire.param], k = _whole(state, wire)
            fixed_keys.append(f"{wire.param}:{k}")
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k}: {v}" for k, v in lengths.items())
        raise WorkflowError(
            f"array job {spec.name!r} iterates over inputs of different lengths ({detail})",
            step=spec.name,
        )
    n = next(iter(lengths.values()))
    fixed = merkle(*fixed_keys)
    out = ArrayCalls([""] * n, [], [], [i.name for i in spec.inputs if isinstance(i, RunDirInput)])
    for i in range(n):
        ekeys = [fixed]
        kwargs = dict(base)
        bad = False
        for name, values, keys in iterated:
            v = values[i]
            if v is FAILED:
                bad = True
            kwargs[name] = v
            ekeys.append(f"{name}:{keys[i]}")
        out.keys[i] = merkle(*ekeys)
        if bad:
            out.skipped.append(i)
            continue
        for r in out.rundirs:
            kwargs[r] = run_dir
        out.todo.append((i, kwargs))
    return out


def as_list(step: str, value: Any, consumer: str | None = None) -> list[Any]:
    """A step's result as the list a gather or fan-out takes; a :class:`WorkflowError` for
    anything that is not one (a string, bytes or dict included)."""
    if isinstance(value, (list, tuple)):
        return list(value)
    try:
        if isinstance(value, (str, bytes, dict)):
            raise TypeError
        return list(value)
    except TypeError:
        to = f" to fan out into {consumer!r}" if consumer else ""
        raise WorkflowError(
            f"step {step!r} returned {type(value).__name__}, not a list{to}", step=step
        ) from None
