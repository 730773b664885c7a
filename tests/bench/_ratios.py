"""What every benchmark here ends with: its ratios, one per line, in one format.

A benchmark measures its baselines in the same run and prints, last, a block

    ratios (each against a baseline measured in this run):
      <what is compared>                                    1.23x

``tests/test_bench_smoke.py`` runs every ``bench_*.py`` with ``--smoke`` (tiny sizes) and reads
this block, so a benchmark that stops running or stops printing its ratios fails the suite.
"""

from __future__ import annotations

import math

HEADER = "ratios (each against a baseline measured in this run):"


def print_ratios(rows: list[tuple[str, float]]) -> None:
    print(HEADER)
    for name, ratio in rows:
        if not math.isfinite(ratio) or ratio <= 0:
            raise AssertionError(f"ratio {name!r} is {ratio!r}: a baseline or a case is broken")
        print(f"  {name:52s} {ratio:8.2f}x")
