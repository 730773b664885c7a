"""Node policies: what a policy costs a tick, and that a node without one pays nothing.

Run: ``python tests/bench/bench_policies.py`` (``--n 200000`` for a quicker run; ``--smoke``
only shows every case still runs).

The chain of ``bench_core`` (source -> inc -> inc -> sink) three ways, in one process: no
policies; ``policies={}`` on both inc nodes (declares nothing, so they are plain nodes); and a
no-op retry (``{"retry": {"attempts": 1}}``) on both, which runs them through the policy runner
as async nodes. Ratios: the plain chain against a bare loop of the same ``run`` calls, and each
policy variant against the plain chain.
"""

from __future__ import annotations

import argparse
from typing import Any

from _ratios import print_ratios
from bench_core import Inc, Sink, Source, bare_chain, best

from reflow import Network


def chain(n: int, policies: Any = None) -> float:
    import time

    net = Network()
    sink = Sink()
    net.register_actor("src", Source(n))
    net.register_actor("inc", Inc())
    net.register_actor("sink", sink)
    net.add_node("s", "src")
    net.add_node("a", "inc", policies=policies)
    net.add_node("b", "inc", policies=policies)
    net.add_node("c", "sink")
    net.add_connection("s", "out", "a", "in")
    net.add_connection("a", "out", "b", "in")
    net.add_connection("b", "out", "c", "in")
    t0 = time.perf_counter()
    summary = net.run()
    dt = time.perf_counter() - t0
    net.shutdown()
    assert sink.count == n and sink.last == n + 1, (sink.count, sink.last)
    assert summary.ok
    return n / dt


NOOP_RETRY = {"retry": {"attempts": 1}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000, help="packets per case")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: runs, measures nothing")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.repeat = 2000, 1
    n = args.n
    base = best(bare_chain, n, repeat=args.repeat)
    plain = best(chain, n, repeat=args.repeat)
    empty = best(chain, n, {}, repeat=args.repeat)
    m = max(n // 10, 1000)  # a policy tick costs an event-loop task step: fewer items
    retry = best(chain, m, NOOP_RETRY, repeat=args.repeat)
    print(f"bare loop, 3 run() calls/item      : {base:12,.0f} items/s")
    print(f"chain, no policies                 : {plain:12,.0f} items/s")
    print(f"chain, policies={{}} on 2 nodes      : {empty:12,.0f} items/s")
    print(f"chain, no-op retry on 2 nodes      : {retry:12,.0f} items/s")
    print_ratios(
        [
            ("chain, no policies / bare loop", plain / base),
            ("chain, policies={} on 2 nodes / no policies", empty / plain),
            ("chain, no-op retry on 2 nodes / no policies", retry / plain),
        ]
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
