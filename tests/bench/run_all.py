"""Run every benchmark in this folder, one after another, each in its own process.

Run: ``python tests/bench/run_all.py`` (minutes), or ``python tests/bench/run_all.py --smoke``
(seconds: tiny sizes, only shows every benchmark still runs). Each ``bench_*.py`` prints its
ratios against baselines it measured in the same run; this prints them under one header per
benchmark and exits non-zero if any benchmark failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def benchmarks() -> list[Path]:
    """Every benchmark script here, in name order."""
    return sorted(HERE.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks each one runs")
    ap.add_argument("only", nargs="*", help="benchmark names to run (default: all), e.g. core")
    args = ap.parse_args(argv)
    chosen = [
        p
        for p in benchmarks()
        if not args.only or p.stem.removeprefix("bench_") in args.only or p.stem in args.only
    ]
    if not chosen:
        print(
            f"no benchmark named {', '.join(args.only)}; have: "
            f"{', '.join(p.stem for p in benchmarks())}",
            file=sys.stderr,
        )
        return 2
    failed = []
    for path in chosen:
        print(f"== {path.name}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(path), *(["--smoke"] if args.smoke else [])])
        print(
            f"== {path.name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in "
            f"{time.perf_counter() - t0:.1f} s\n",
            flush=True,
        )
        if rc:
            failed.append(path.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
