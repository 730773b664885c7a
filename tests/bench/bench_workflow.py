"""Workflow overhead (issue #15): an array job of a trivial function over N elements, run by
``reflow.workflow`` (compiled onto the runtime: a fan-out job, the array job, a gather), against
a bare ``concurrent.futures.ThreadPoolExecutor.map`` making the same calls with the same number
of workers, in the same run. Target: the workflow's time per element ≤ 3x the bare map's.

With ``--ray`` it also starts a Ray cluster on 127.0.0.1 (a head and a worker node, one CPU
each; ``ray`` must be installed: ``pip install 'reflow[ray]'``) and measures, in the same run,
``backend="ray"`` against bare ``ray.remote`` calls of the same trivial function (target: ≤ 1.5x
per task), and a CPU-bound array job on one worker against two (target: ≥ 1.7x faster).

Run: ``python tests/bench/bench_workflow.py [--n 10000] [--workers 2] [--repeat 3] [--ray]``;
``--smoke`` runs a tiny size (without Ray).
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


def burn(x: int) -> int:
    s = 0
    for i in range(2_000_000):
        s += i ^ x
    return s


def _ray_rows(n: int, cpu_n: int) -> list[tuple[str, float]]:
    import os
    import shutil
    import socket
    import subprocess

    import ray

    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    exe = str(Path(sys.executable).parent / "ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="reflow-bench-ray-")
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    try:
        subprocess.run(
            [
                exe,
                "start",
                "--head",
                f"--port={port}",
                "--include-dashboard=false",
                f"--temp-dir={temp}",
                *common,
            ],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [exe, "start", f"--address=127.0.0.1:{port}", *common],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        address = f"127.0.0.1:{port}"
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        while sum(1 for nd in ray.nodes() if nd["Alive"]) < 2:
            time.sleep(0.5)
        f = ray.remote(work)
        ray.get([f.remote(x) for x in range(50)])  # warm the workers
        t0 = time.perf_counter()
        ray.get([f.remote(x) for x in range(n)])
        bare_s = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            wf = build(n)
            t0 = time.perf_counter()
            wf.run(tmp, backend="ray", address=address)
            wf_s = time.perf_counter() - t0
        times = {}
        for workers in (1, 2):
            wf2 = Workflow("burn")

            @wf2.job
            def items() -> list[int]:
                return list(range(cpu_n))

            @wf2.job(array=True, array_limit=workers)
            def heavy(x: Annotated[int, Result(step="items")]) -> int:
                return burn(x)

            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                wf2.run(tmp, backend="ray", address=address, max_workers=workers)
                times[workers] = time.perf_counter() - t0
        print(
            f"ray: {n} trivial tasks bare {bare_s * 1e6 / n:.1f} us/task, "
            f"workflow {wf_s * 1e6 / n:.1f} us/element; {cpu_n} CPU-bound elements "
            f"1 worker {times[1]:.2f} s, 2 workers {times[2]:.2f} s"
        )
        return [
            ("ray workflow / bare ray.remote, per element", wf_s / bare_s),
            ("ray CPU-bound array, 1 worker / 2 workers (speed-up)", times[1] / times[2]),
        ]
    finally:
        ray.shutdown()
        subprocess.run(["pkill", "-9", "-f", temp], check=False)
        shutil.rmtree(temp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--ray", action="store_true", help="also measure on a local Ray cluster")
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
    rows = [("workflow array job / bare executor map, per element", w_best / b_best)]
    if args.ray and not args.smoke:
        rows += _ray_rows(min(n, 2000), 16)
    print_ratios(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
