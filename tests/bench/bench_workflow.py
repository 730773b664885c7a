"""Workflow overhead (issue #15): an array job of a trivial function over N elements, run by
``reflow.workflow`` (compiled onto the runtime: a fan-out job, the array job, a gather), against
a bare ``concurrent.futures.ThreadPoolExecutor.map`` making the same calls with the same number
of workers, in the same run. Target: the workflow's time per element ≤ 3x the bare map's.

With ``--ray`` it also starts a Ray cluster on 127.0.0.1 (a head and a worker node, one CPU
each; ``ray`` must be installed: ``pip install 'reflow[ray]'``) and measures, in the same run,
``backend="ray"`` against bare ``ray.remote`` calls of the same trivial function (target: ≤ 1.5x
per task), and a CPU-bound array job on one worker against two (target: ≥ 1.7x faster), by wall
time (best of ``--repeat`` runs each) and by the CPU seconds each worker spent (the busiest
worker's CPU time is what the wall time comes to on a machine with a free core per worker; a
loaded machine shows a lower wall ratio, the CPU ratio stays). Bare ``ray.remote`` calls of the
same CPU-bound function, one and two in flight, print their own speed-up beside it: what this
machine allows, Ray's daemons sharing the workers' cores on a small one.

Always (``--smoke`` too; needs ``ray``): messages per second through a 3-node chain, all local
against the middle node placed on a Ray actor (on the same local cluster), max_inflight 1 and 8.

Run: ``python tests/bench/bench_workflow.py [--n 10000] [--workers 2] [--repeat 3] [--ray]``;
``--smoke`` runs tiny sizes (``--smoke --ray`` the Ray array rows too, tiny).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from _ratios import print_ratios

from reflow import Actor, Message, Network
from reflow.workflow import Result, Workflow

# the Ray cluster helper of the workflow tests (tests/workflow/raycluster.py)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))


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


def burn(x: int, iters: int = 2_000_000) -> int:
    s = 0
    for i in range(iters):
        s += i ^ x
    return s


@contextlib.contextmanager
def _ray_cluster(workers: int) -> Iterator[str]:
    """A head and ``workers`` worker nodes on 127.0.0.1 (one CPU each), this process
    connected to it; everything is ended afterwards (``tests/workflow/raycluster.py``, the
    tests' own cluster, which kills only this cluster's processes, never ``ray stop``)."""
    import ray
    from raycluster import running_cluster

    with running_cluster(workers) as address:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        yield address


def heavy_timed(x: int, iters: int) -> tuple[int, int, float]:
    """``burn`` with the worker's pid and the CPU seconds the call took there."""
    import os

    c0 = time.process_time()
    v = burn(x, iters)
    return v, os.getpid(), time.process_time() - c0


def _bare_limited(f: Any, xs: list[int], iters: int, inflight: int) -> list[Any]:
    """Bare Ray at most ``inflight`` tasks at once (what ``array_limit`` does for a workflow):
    the machine's own ceiling for the workflow's speed-up, measured the same way."""
    import ray

    it = iter(xs)
    pending = [f.remote(x, iters) for x in (next(it) for _ in range(min(inflight, len(xs))))]
    out: list[Any] = []
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        out += ray.get(done)
        x = next(it, None)
        if x is not None:
            pending.append(f.remote(x, iters))
    return out


def _heavy_workflow(cpu_n: int, iters: int, workers: int) -> Workflow:
    wf = Workflow("burn")

    @wf.job
    def items() -> list[int]:
        return list(range(cpu_n))

    @wf.job(array=True, array_limit=workers)
    def heavy(x: Annotated[int, Result(step="items")]) -> tuple[int, int, float]:
        return heavy_timed(x, iters)

    return wf


def _ray_rows(address: str, n: int, cpu_n: int, iters: int, repeat: int) -> list[tuple[str, float]]:
    """Per-task overhead against bare ``ray.remote``, and the CPU-bound array's speed-up from
    one worker to two, each side the best of ``repeat`` runs, with bare Ray's own speed-up at
    the same limits beside it (on a small machine Ray's daemons share the workers' cores)."""
    import ray

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
    g = ray.remote(heavy_timed)
    _bare_limited(g, list(range(4)), iters, 2)  # both workers warm
    times = {1: float("inf"), 2: float("inf")}
    bare_times = dict(times)
    cpu: dict[int, dict[int, float]] = {}
    for _ in range(repeat):
        for workers in (1, 2):
            t0 = time.perf_counter()
            _bare_limited(g, list(range(cpu_n)), iters, workers)
            bare_times[workers] = min(bare_times[workers], time.perf_counter() - t0)
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                report = _heavy_workflow(cpu_n, iters, workers).run(
                    tmp, backend="ray", address=address, max_workers=workers
                )
                dt = time.perf_counter() - t0
            if len(report["heavy"]) != cpu_n:
                raise SystemExit(f"error: {len(report['heavy'])} of {cpu_n} CPU-bound results")
            if dt < times[workers]:
                times[workers] = dt
                per: dict[int, float] = {}
                for _, pid, seconds in report["heavy"]:
                    per[pid] = per.get(pid, 0.0) + seconds
                cpu[workers] = per
    # On a machine with a free core per worker, the wall time of a run is the CPU time of its
    # busiest worker: the CPU-time ratio is what a quiet machine's wall ratio comes to; on a
    # loaded one the wall ratio is lower, the CPU ratio stays.
    cpu_1 = sum(cpu[1].values())
    cpu_2 = max(cpu[2].values())
    print(
        f"ray: {n} trivial tasks bare {bare_s * 1e6 / n:.1f} us/task, "
        f"workflow {wf_s * 1e6 / n:.1f} us/element; {cpu_n} CPU-bound elements, best of "
        f"{repeat}: 1 worker {times[1]:.2f} s wall / {cpu_1:.2f} s CPU (bare Ray "
        f"{bare_times[1]:.2f} s), 2 workers {times[2]:.2f} s wall / "
        f"{sum(cpu[2].values()):.2f} s CPU on {len(cpu[2])} workers (busiest {cpu_2:.2f} s; "
        f"bare Ray {bare_times[2]:.2f} s); this machine: {_cores()} cores, load {_load()}"
    )
    return [
        ("ray workflow / bare ray.remote, per element", wf_s / bare_s),
        ("ray CPU-bound array, 1 worker / 2 workers (speed-up)", times[1] / times[2]),
        ("bare ray.remote CPU-bound, 1 / 2 in flight (speed-up)", bare_times[1] / bare_times[2]),
        ("ray CPU-bound array speed-up by worker CPU time", cpu_1 / cpu_2),
    ]


def _cores() -> int:
    import os

    return os.cpu_count() or 1


def _load() -> str:
    import os

    return " ".join(f"{v:.1f}" for v in os.getloadavg())


class _Count(Actor):
    """A source of ``n`` packets, streamed with ctx.send."""

    component = "bench_count"
    inports: list[str] = []
    outports = ["out"]

    def __init__(self, n: int) -> None:
        self.n = n

    def run(self, ctx: Any) -> None:
        for i in range(self.n):
            ctx.send({"out": Message.integer(i)})
        ctx.done()


class _Pass(Actor):
    component = "bench_pass"
    inports = ["in"]
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        ctx.done({"out": ctx.inputs["in"]})


class _Sink(Actor):
    component = "bench_sink"
    inports = ["in"]
    outports: list[str] = []

    def __init__(self) -> None:
        self.seen = 0

    def run(self, ctx: Any) -> None:
        self.seen += 1
        ctx.done()


def chain_rate(n: int, placement: Any) -> float:
    """Messages per second through source -> pass -> sink, ``pass`` placed as given."""
    sink = _Sink()
    net = Network()
    net.register_actor("count", _Count(n))
    net.register_actor("pass", _Pass())
    net.register_actor("sink", sink)
    net.add_node("c", "count")
    net.add_node("p", "pass", placement=placement)
    net.add_node("s", "sink")
    net.add_connection("c", "out", "p", "in")
    net.add_connection("p", "out", "s", "in")
    t0 = time.perf_counter()
    summary = net.run(timeout=600)
    dt = time.perf_counter() - t0
    net.shutdown()
    if not summary.ok or sink.seen != n:
        raise SystemExit(f"error: chain lost packets ({sink.seen} of {n}): {summary.failures}")
    return n / dt


def _node_rows(address: str, n: int) -> list[tuple[str, float]]:
    """A 3-node chain with its middle node on a Ray actor, against the same chain all local,
    in the same run (the Ray actor on a head node of this machine: a process hop per tick)."""
    from reflow import Ray

    local = max(chain_rate(n, None) for _ in range(3))
    chain_rate(min(n, 200), Ray(address=address))  # start-up and warm-up
    remote_1 = chain_rate(n, Ray(address=address))
    remote_8 = chain_rate(n, Ray(address=address, max_inflight=8))
    print(
        f"3-node chain, {n} messages: all local {local:,.0f} msg/s; middle on a Ray actor "
        f"{remote_1:,.0f} msg/s (max_inflight 1), {remote_8:,.0f} msg/s (max_inflight 8)"
    )
    return [
        ("3-node chain msg/s, all local / middle on Ray", local / remote_1),
        ("3-node chain msg/s, all local / Ray max_inflight 8", local / remote_8),
    ]


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
    # one cluster for every Ray row: a head, and a worker node when the array rows run
    with _ray_cluster(workers=1 if args.ray else 0) as address:
        if args.ray:
            rows += (
                _ray_rows(address, 50, 4, 20_000, 1)
                if args.smoke
                else _ray_rows(address, min(n, 2000), 32, 2_000_000, repeat)
            )
        rows += _node_rows(address, 200 if args.smoke else min(n, 3000))
    print_ratios(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
