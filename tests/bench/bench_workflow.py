"""Workflow overhead (issue #15): an array job of a trivial function over N elements, run by
``reflow.workflow`` (compiled onto the runtime: a fan-out job, the array job, a gather), against
a bare ``concurrent.futures.ThreadPoolExecutor.map`` making the same calls with the same number
of workers, in the same run. Target: the workflow's time per element ≤ 3x the bare map's.

Run: ``python tests/bench/bench_workflow.py [--n 10000] [--workers 2] [--repeat 3]``;
``--smoke`` runs a tiny size.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

from _ratios import print_ratios

from reflow.workflow import Result, Workflow


def work(x: int) -> int:
    return x * 2 + 1


def build(n: int) -> Workflow:
    wf = Workflow("bench")

    @wf.job
    def items() -> list[int]:
        return list(range(n))

    @wf.job(array=True)
    def each(x: Annotated[int, Result(step="items")]) -> int:
        return work(x)

    @wf.job
    def total(xs: Annotated[list[int], Result(step="each")]) -> int:
        return sum(xs)

    return wf


def bare(n: int, workers: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(max_workers=workers) as pool:
        total = sum(pool.map(work, range(n)))
    return time.perf_counter() - t0, total


def workflow(n: int, workers: int, run_dir: Path) -> tuple[float, int]:
    wf = build(n)
    t0 = time.perf_counter()
    report = wf.run_local(run_dir, max_workers=workers)
    dt = time.perf_counter() - t0
    return dt, report["total"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    if args.n < 1 or args.workers < 1 or args.repeat < 1:
        print("error: --n, --workers and --repeat must be >= 1", file=sys.stderr)
        return 2
    n, repeat = (200, 1) if args.smoke else (args.n, args.repeat)
    want = sum(work(x) for x in range(n))
    b_best = w_best = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeat):
            b, bt = bare(n, args.workers)
            w, wt = workflow(n, args.workers, Path(tmp) / str(r))
            if bt != want or wt != want:
                print(f"error: wrong totals {bt} {wt}, want {want}", file=sys.stderr)
                return 1
            b_best, w_best = min(b_best, b), min(w_best, w)
    print(f"{n} elements, {args.workers} workers")
    print(f"  bare ThreadPoolExecutor.map   {b_best * 1e6 / n:8.2f} us/element")
    print(f"  workflow array job            {w_best * 1e6 / n:8.2f} us/element")
    print_ratios([("workflow array job / bare executor map, per element", w_best / b_best)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
