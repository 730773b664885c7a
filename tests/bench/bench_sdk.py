"""The same program on this runtime and on offbit_reflow: a chain of the built-in
``tpl_passthrough`` template fed by initial packets, drained by one Python sink (issue #10).

Run: ``python tests/bench/bench_sdk.py`` — with ``--sdk PYTHON`` (or ``$REFLOW_SDK_PYTHON``)
naming an interpreter where ``import offbit_reflow`` works (a side virtualenv:
``pip install offbit-reflow==0.2.9``; never a dependency of this project), the same program
runs there too, in the same run, and its ratio is printed. ``--smoke`` runs a tiny chain here
only. Each side runs in its own process and is timed from ``start()`` to the sink's last
packet, as a user of either would see it. offbit_reflow hangs once ~52 packets wait for one
Python node; the sink here keeps up, so the chain stays below that.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from _ratios import print_ratios

#: The program, run by each interpreter with the module to import as argv[1].
PROGRAM = r"""
import importlib, json, sys, threading, time
r = importlib.import_module(sys.argv[1])
n, k = int(sys.argv[2]), int(sys.argv[3])
done = threading.Event()
count = [0]

class Sink(r.Actor):
    component = "bench_sink"
    inports = ["in"]
    outports = []

    def run(self, ctx):
        count[0] += 1
        if count[0] >= n:
            done.set()
        ctx.done()

net = r.Network()
net.register_actor("bench_sink", Sink())
net.register_actor("tpl_passthrough", r.template_actor("tpl_passthrough"))
for i in range(k):
    net.add_node(f"p{i}", "tpl_passthrough")
    if i:
        net.add_connection(f"p{i - 1}", "output", f"p{i}", "input")
net.add_node("s", "bench_sink")
net.add_connection(f"p{k - 1}", "output", "s", "in")
for i in range(n):
    net.add_initial("p0", "input", {"type": "Integer", "data": i})
t0 = time.perf_counter()
net.start()
ok = done.wait(120)
dt = time.perf_counter() - t0
net.shutdown()
print(json.dumps({"ok": ok, "received": count[0], "seconds": dt}))
"""


def run_chain(python: str, module: str, n: int, k: int) -> float:
    """Hop messages/s (n packets x k passthrough nodes) of the program under ``python``."""
    proc = subprocess.run(
        [python, "-c", PROGRAM, module, str(n), str(k)], capture_output=True, text=True, timeout=300
    )
    if proc.returncode != 0:
        raise SystemExit(f"{module} under {python} failed:\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if not result["ok"]:
        raise SystemExit(f"{module}: only {result['received']} of {n} packets arrived")
    return n * k / result["seconds"]


def bare_loop(n: int, k: int) -> float:
    """Calls/s of a bare loop doing what the chain does per packet: k + 1 Python calls."""

    def step(x: object) -> object:
        return x

    t0 = time.perf_counter()
    for i in range(n):
        x: object = i
        for _ in range(k + 1):
            x = step(x)
    return n * k / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="a tiny chain here only")
    ap.add_argument("--n", type=int, default=5000, help="initial packets (default 5000)")
    ap.add_argument("--k", type=int, default=3, help="passthrough nodes (default 3)")
    ap.add_argument(
        "--sdk",
        default=os.environ.get("REFLOW_SDK_PYTHON"),
        help="a python with offbit_reflow importable",
    )
    args = ap.parse_args(argv)
    n, k = (200, 3) if args.smoke else (args.n, args.k)
    ours = max(run_chain(sys.executable, "reflow", n, k) for _ in range(1 if args.smoke else 3))
    base = max(bare_loop(n, k) for _ in range(3))
    print(f"passthrough chain, {k} nodes, {n} packets: {ours:12,.0f} hop messages/s here")
    # time per hop, not throughput: the chain is ~100x the bare calls, and a throughput ratio
    # of ~0.005 would print as 0.00x
    rows = [("time per hop: passthrough chain / bare loop of the same calls", base / ours)]
    if args.sdk and not args.smoke:
        theirs = max(run_chain(args.sdk, "offbit_reflow", n, k) for _ in range(3))
        print(f"the same on offbit_reflow             : {theirs:12,.0f} hop messages/s")
        rows.append(("passthrough chain here / on offbit_reflow", ours / theirs))
    elif not args.smoke:
        print("offbit_reflow not measured: pass --sdk PYTHON or set REFLOW_SDK_PYTHON")
    print_ratios(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
