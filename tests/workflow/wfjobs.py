"""Jobs defined at module level, so worker processes can import them (processes=True)."""

from __future__ import annotations

import os
from typing import Annotated

from reflow.workflow import Result, Workflow

wf = Workflow("procs")


@wf.job
def numbers(n: int = 8) -> list[int]:
    return list(range(n))


@wf.job(array=True)
def square(x: Annotated[int, Result(step="numbers")]) -> tuple[int, int]:
    return x * x, os.getpid()


@wf.job
def collect(pairs: Annotated[list[tuple[int, int]], Result(step="square")]) -> list[int]:
    return [p[0] for p in pairs]
