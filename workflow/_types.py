"""What a job's signature says: the markers (``Result``, ``Param``, ``RunDir``) and the type
rules that decide how an upstream result reaches a downstream parameter.

A parameter is one of three things:

- ``Annotated[T, Result(step="load")]`` — data from another step (``steps=[...]`` concatenates
  several);
- ``Annotated[Path, RunDir()]`` (or annotated ``RunDir``, or a parameter named ``run_dir``) —
  the run's shared working directory;
- anything else is a ``Param``: a value given to ``run_local(params=...)`` or on the command
  line; ``Annotated[T, Param(help=..., short="-s", namespace="local")]`` documents it.

Types are compared structurally: ``Any`` (or no annotation) fits everything, a class fits its
bases, ``int`` fits ``float``, ``list[X]``/``tuple[X, ...]``/``Sequence[X]`` fit each other
when their elements do, a member fits its ``Optional``/``Union``, and ``Literal`` values fit
their type.
"""

from __future__ import annotations

import collections.abc as cabc
import inspect
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from ._errors import MarkerError, shown

__all__ = ["Param", "Result", "RunDir", "describe_type", "element_type", "fits"]


@dataclass(frozen=True, init=False)
class Result:
    """Marks a parameter as the result of another step: ``Result(step="load")``, or
    ``Result(steps=["a", "b"])`` to concatenate the results of several steps into a list;
    ``broadcast=True`` gives every element of an array job the whole value (with ``steps=``:
    the whole concatenated list) instead of fanning it out, whatever the types say.
    ``steps`` is a tuple of the names (the marker is frozen: hashable, and not changed after
    a flow is checked)."""

    steps: tuple[str, ...]
    concat: bool
    broadcast: bool

    def __init__(
        self,
        step: str | None = None,
        *,
        steps: cabc.Sequence[str] | None = None,
        broadcast: bool = False,
    ):
        if (step is None) == (steps is None):
            raise MarkerError("Result() takes exactly one of step='name' or steps=[...]")
        if step is not None:
            if not isinstance(step, str) or not step:
                raise MarkerError(f"Result(step=...) must be a step name, got {shown(step)}")
            names: tuple[str, ...] = (step,)
        else:
            assert steps is not None
            if not isinstance(steps, (list, tuple)) or not all(
                isinstance(s, str) and s for s in steps
            ):
                raise MarkerError(
                    f"Result(steps=...) must be a list of step names, got {shown(steps)}"
                )
            if not steps:
                raise MarkerError("Result(steps=[]) names no step")
            names = tuple(steps)
        object.__setattr__(self, "steps", names)
        if not isinstance(broadcast, bool):
            raise MarkerError(
                f"Result(broadcast=...) must be True or False, got {shown(broadcast)}"
            )
        object.__setattr__(self, "concat", steps is not None)
        object.__setattr__(self, "broadcast", broadcast)

    def __repr__(self) -> str:
        """The call that makes it (reflow-hpc's): ``Result(step='a')``,
        ``Result(steps=['a', 'b'], broadcast=True)``."""
        which = f"steps={list(self.steps)!r}" if self.concat else f"step={self.steps[0]!r}"
        return f"Result({which}{', broadcast=True' if self.broadcast else ''})"


@dataclass(frozen=True)
class Param:
    """Documents a parameter given at run time (``run_local(params=...)`` or a CLI flag).

    ``help`` is the CLI help text, ``short`` a one-letter flag (``"-s"``), ``namespace="local"``
    makes the parameter the job's own (flag ``--<job>-<name>``, key ``"<job>.<name>"``) instead
    of one shared by every job that names it; ``choices`` restricts the values (a ``Literal``
    annotation does the same)."""

    help: str = ""
    short: str | None = None
    namespace: str | None = None
    choices: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.help, str):
            raise MarkerError(f"Param(help=...) must be a string, got {shown(self.help)}")
        if self.choices is not None:
            if isinstance(self.choices, (str, bytes)) or not isinstance(
                self.choices, (list, tuple, set, frozenset)
            ):
                raise MarkerError(
                    f"Param(choices=...) must be a list of values, got {shown(self.choices)}"
                )
            if not self.choices:
                raise MarkerError("Param(choices=[]) allows no value: give at least one choice")
        if self.namespace not in (None, "global", "local"):
            raise MarkerError(
                f"Param(namespace=...) must be 'global' or 'local', got {self.namespace!r}"
            )
        if self.short is not None and (
            not isinstance(self.short, str)
            or len(self.short) != 2
            or self.short[0] != "-"
            or not self.short[1].isalpha()
        ):
            raise MarkerError(f"Param(short=...) must look like '-s', got {shown(self.short)}")


class RunDir(type(Path())):  # type: ignore[misc]
    """The run's working directory (a ``Path``), created before the call: one directory
    shared by every job and every element of an array job (reflow-hpc's contract; elements
    should name their files by element). Use it as the annotation (``out: RunDir``), as a
    marker (``Annotated[Path, RunDir()]``), or name the parameter ``run_dir``."""

    def __new__(cls, *args: Any) -> RunDir:
        return super().__new__(cls, *(args or (".",)))


_NONE = type(None)


def _strip(t: Any) -> Any:
    """The type without ``Annotated`` metadata; a missing annotation is ``Any``."""
    if t is inspect.Parameter.empty or t is inspect.Signature.empty:
        return Any
    while get_origin(t) is Annotated:
        t = get_args(t)[0]
    return t


_SEQUENCES = (list, tuple, cabc.Sequence, cabc.Iterable, cabc.Collection, cabc.MutableSequence)


def element_type(t: Any) -> Any | None:
    """``X`` for ``list[X]``, ``tuple[X, ...]``, ``Sequence[X]`` (``Any`` for a bare ``list``);
    ``None`` for a type that is not a homogeneous sequence."""
    t = _strip(t)
    if t in (list, tuple) or t in _SEQUENCES:
        return Any
    origin = get_origin(t)
    if origin not in _SEQUENCES:
        return None
    args = get_args(t)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
        if args and all(a == args[0] for a in args):
            return args[0]
        return None
    return args[0] if args else Any


def _union_members(t: Any) -> tuple[Any, ...] | None:
    origin = get_origin(t)
    if origin is Union or (hasattr(types, "UnionType") and isinstance(t, types.UnionType)):
        return get_args(t)
    return None


def fits(src: Any, dst: Any) -> bool:
    """Whether a value of type ``src`` can be passed where ``dst`` is declared."""
    src, dst = _strip(src), _strip(dst)
    if src is Any or dst is Any or src == dst or dst is object:
        return True
    members = _union_members(src)
    if members is not None:
        return all(fits(m, dst) for m in members)
    members = _union_members(dst)
    if members is not None:
        return any(fits(src, m) for m in members)
    if get_origin(src) is Literal:
        return all(fits(type(v), dst) for v in get_args(src))
    if get_origin(dst) is Literal:
        return False
    src_elem, dst_elem = element_type(src), element_type(dst)
    if dst_elem is not None:
        return src_elem is not None and fits(src_elem, dst_elem)
    if src_elem is not None:
        return dst in (object,) or (isinstance(dst, type) and dst in (list, tuple))
    s_origin, d_origin = get_origin(src) or src, get_origin(dst) or dst
    if d_origin in (dict, cabc.Mapping) and s_origin in (dict, cabc.Mapping):
        sa, da = get_args(src), get_args(dst)
        return not sa or not da or (fits(sa[0], da[0]) and fits(sa[1], da[1]))
    if isinstance(s_origin, type) and isinstance(d_origin, type):
        if d_origin is float and s_origin is int and src is not bool:
            return True
        if d_origin is complex and s_origin in (int, float):
            return True
        try:
            return issubclass(s_origin, d_origin)
        except TypeError:
            return False
    return False


def describe_type(t: Any) -> str:
    """A short readable name for a type (``list[int]``, ``str``, ``Any``)."""
    t = _strip(t)
    if t is Any:
        return "Any"
    if isinstance(t, type) and not get_args(t):
        return t.__name__
    text = repr(t).replace("typing.", "")
    return text.replace("collections.abc.", "")


#: the names whose presence in an annotation that cannot be evaluated means a wire is lost
_MARKER_WORDS = ("Result", "Param", "RunDir")


def type_hints(fn: Any) -> dict[str, Any]:
    """The function's annotations with ``Annotated`` kept, forward references resolved
    where they can be: each one on its own, so one unresolvable annotation reads as ``Any``
    without hiding the others' markers. One that cannot be evaluated and names a marker
    (``Result``, ``Param``, ``RunDir``) is a :class:`MarkerError`: reading it as ``Any``
    would turn a wire into a parameter."""
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:
        pass
    raw = getattr(fn, "__annotations__", None)
    if not isinstance(raw, dict):
        return {}
    hints: dict[str, Any] = {}
    for name, ann in raw.items():
        probe = _Probe(fn, name, ann)
        try:
            hints[name] = typing.get_type_hints(probe, include_extras=True)[name]
        except Exception as exc:
            text = ann if isinstance(ann, str) else shown(ann)
            if isinstance(text, str) and any(w in text for w in _MARKER_WORDS):
                raise MarkerError(
                    f"function {getattr(fn, '__name__', '?')!r}: the annotation of "
                    f"{name!r} ({shown(text, 120)}) cannot be evaluated "
                    f"({type(exc).__name__}: {shown(str(exc), 120)}); define the names it "
                    "uses at module level, or drop `from __future__ import annotations`"
                ) from None
            hints[name] = Any
    return hints


class _Probe:
    """One annotation of a function, with the function's globals, for ``get_type_hints``."""

    def __init__(self, fn: Any, name: str, ann: Any) -> None:
        self.__annotations__ = {name: ann}
        self.__globals__ = getattr(fn, "__globals__", {})


def markers(t: Any) -> tuple[Any, ...]:
    """The ``Annotated`` metadata of a type (empty for a plain type)."""
    found: list[Any] = []
    while get_origin(t) is Annotated:
        found.extend(t.__metadata__)
        t = get_args(t)[0]
    return tuple(found)


def literal_choices(t: Any) -> tuple[Any, ...] | None:
    t = _strip(t)
    if get_origin(t) is Literal:
        return get_args(t)
    members = _union_members(t)
    if members is not None:
        lits = [m for m in members if get_origin(m) is Literal]
        if lits and all(m is _NONE or get_origin(m) is Literal for m in members):
            return tuple(v for m in lits for v in get_args(m))
    return None


def strip(t: Any) -> Any:
    return _strip(t)
