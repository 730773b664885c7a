"""Jobs that misbehave on purpose, at module level so worker processes (``processes=True``)
and Ray workers can import them; ``kind`` picks the misbehaviour."""

from __future__ import annotations

import math
import os
import threading
from typing import Annotated, Any

from reflow.workflow import Result, Workflow


class StrRaises(Exception):
    """An exception whose ``str()`` itself raises."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ refuses")


class Unpicklable(Exception):
    """An exception that cannot travel between processes (a lock attribute, a 2-arg init)."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"unpicklable {a} {b}")
        self.lock = threading.Lock()


def misbehave(kind: str) -> Any:
    if kind == "ok":
        return 1
    if kind == "lambda":
        return lambda: 1
    if kind == "generator":
        return (i for i in range(3))
    if kind == "file":
        return open(__file__)
    if kind == "lock":
        return threading.Lock()
    if kind == "recursive":
        loop: list[Any] = []
        loop.append(loop)
        return loop
    if kind == "nan":
        return [math.nan, math.inf, -math.inf]
    if kind == "str-raises":
        raise StrRaises()
    if kind == "unpicklable-exc":
        raise Unpicklable(1, 2)
    if kind == "KeyboardInterrupt":
        raise KeyboardInterrupt
    if kind == "SystemExit":
        raise SystemExit(3)
    if kind == "GeneratorExit":
        raise GeneratorExit
    if kind == "os._exit":
        os._exit(1)
    if kind.startswith("big:"):
        return b"x" * int(kind[4:])
    raise AssertionError(kind)


wf = Workflow("hostile-values")


@wf.job(cache=False)
def kinds(kind: str = "ok", n: int = 2) -> list[str]:
    return [kind] * n


@wf.job(array=True)
def each(k: Annotated[str, Result(step="kinds")]) -> Any:
    return misbehave(k)


single = Workflow("hostile-single")


@single.job
def once(kind: str = "ok") -> Any:
    return misbehave(kind)


@single.job(cache=False)
def after(x: Annotated[Any, Result(step="once")]) -> str:
    return type(x).__name__
