"""Pack benchmarks: build, strip, and load_pack cold (first extract) vs warm (cached, re-hashed)
for a 10-template pack.

Run: ``python tests/bench/bench_packs.py`` (``--repeat 5`` for a quicker run; ``--smoke`` builds
for the portable module and this host's triple only and times everything once, only to show it
all still works).

Baseline, measured in the same run: reading the pack file and sha256-ing its bytes — the least
any verified load must do. Targets (issue 4): warm load <= 20 ms; a stripped pack <= 1/3 of the
full pack's size when the full one carries >= 4 native triples.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _ratios import print_ratios

from reflow._loader._packs import load_pack, unload_pack
from reflow._loader._trust import TrustStore
from reflow.abi._bundle import strip_bundle
from reflow.abi._manifest import KNOWN_TRIPLES, PORTABLE_TRIPLE, host_triples
from reflow.abi._signing import generate_key
from reflow.tools._pack_build import build_pack

N_TEMPLATES = 10


def make_project(root: Path, triples: tuple[str, ...] = KNOWN_TRIPLES) -> Path:
    src = ['#include "reflow.h"\n']
    table = []
    for i in range(N_TEMPLATES):
        src.append(
            f"static int t{i}(reflow_ctx *ctx) {{ reflow_msg m;\n"
            f'  if (!reflow_input(ctx, "in", &m) || m.kind != REFLOW_INTEGER)\n'
            f'    return reflow_fail(ctx, "t{i}: expected an Integer");\n'
            f'  reflow_output(ctx, "out", reflow_integer(m.i + {i}));\n'
            f"  return reflow_done(ctx); }}\n"
        )
        # a template id is the pack name or starts with it (PACK_FORMAT.md)
        table.append(
            f'{{.id = "bench/ten/t{i}", .inports = "in", .outports = "out", .tick = t{i}}}'
        )
    src.append("REFLOW_TEMPLATES(" + ",\n".join(table) + ",)\n")
    (root / "src").mkdir(parents=True)
    (root / "src" / "bench.c").write_text("".join(src))
    targets = ", ".join(f'"{t}"' for t in triples)
    (root / "pack.toml").write_text(
        f'[pack]\nname = "bench/ten"\nversion = "1.0.0"\ntargets = [{targets}]\n\n'
        '[[modules]]\nname = "bench"\nsources = ["src/bench.c"]\n'
    )
    return root


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="portable + host triple only, one repeat: checks it runs, measures nothing",
    )
    args = ap.parse_args(argv)
    r = 1 if args.smoke else args.repeat
    host = host_triples()[0] if host_triples() else PORTABLE_TRIPLE
    triples = tuple(dict.fromkeys((PORTABLE_TRIPLE, host))) if args.smoke else KNOWN_TRIPLES
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        os.environ["REFLOW_CACHE_DIR"] = str(base / "engine-cache")  # keep ~/.cache clean
        project = make_project(base / "project", triples)
        key = generate_key()
        trust = TrustStore(base / "trust")
        trust.add(key.public_key(), ["bench/*"])

        t0 = time.perf_counter()
        full = build_pack(project, out_dir=base / "dist", key=key)
        first_build = (time.perf_counter() - t0) * 1000
        build_ms = median_ms(
            lambda: build_pack(project, out_dir=base / "dist", key=key),
            1 if args.smoke else max(3, r // 5),
        )
        strip_ms = median_ms(lambda: strip_bundle(full, host), r)
        slim = base / "slim.rflpack"
        slim.write_bytes(strip_bundle(full, host))
        raw = full.read_bytes()
        baseline = median_ms(lambda: hashlib.sha256(full.read_bytes()).hexdigest(), r)

        print(f"pack: {N_TEMPLATES} templates, {len(triples) - 1} native triple(s) + wasm")
        print(
            f"  size full {len(raw)} B, stripped to {host}: {slim.stat().st_size} B "
            f"(ratio {slim.stat().st_size / len(raw):.2f}; target <= 0.33)"
        )
        print(f"  baseline: read + sha256 of the full pack file: {baseline:.3f} ms")
        print(f"  build (first run in process, zig cache as found): {first_build:.0f} ms")
        print(f"  build (median): {build_ms:.0f} ms  = {build_ms / baseline:.0f}x baseline")
        print(f"  strip (median): {strip_ms:.2f} ms  = {strip_ms / baseline:.1f}x baseline")
        rows += [
            ("stripped size / full size", slim.stat().st_size / len(raw)),
            ("build / read+sha256 of the pack", build_ms / baseline),
            ("strip / read+sha256 of the pack", strip_ms / baseline),
        ]

        for prefer in ("native", "wasm"):
            counter = iter(range(10**6))
            first = None

            def cold() -> None:
                nonlocal first
                pack = load_pack(
                    full,
                    trust=trust,
                    prefer=prefer,  # noqa: B023
                    cache_dir=base / f"cold-{prefer}-{next(counter)}",  # noqa: B023
                )
                unload_pack(pack.name)

            t0 = time.perf_counter()
            cold()
            first = (time.perf_counter() - t0) * 1000
            cold_ms = median_ms(cold, r)
            warm_dir = base / f"warm-{prefer}"
            load_pack(full, trust=trust, prefer=prefer, cache_dir=warm_dir)
            unload_pack("bench/ten")

            def warm() -> None:
                pack = load_pack(
                    full,
                    trust=trust,
                    prefer=prefer,  # noqa: B023
                    cache_dir=warm_dir,  # noqa: B023
                )
                unload_pack(pack.name)

            warm_ms = median_ms(warm, r)
            print(f"load_pack prefer={prefer}:")
            print(f"  first ever (includes engine compile): {first:.1f} ms")
            print(
                f"  cold (extract + re-hash + load): {cold_ms:.2f} ms = "
                f"{cold_ms / baseline:.1f}x baseline"
            )
            print(
                f"  warm (cached, re-hashed): {warm_ms:.2f} ms = {warm_ms / baseline:.1f}x "
                f"baseline; cold/warm = {cold_ms / warm_ms:.1f}x; target <= 20 ms: "
                f"{'met' if warm_ms <= 20 else 'MISSED'}"
            )
            rows += [
                (f"load_pack {prefer} cold / read+sha256", cold_ms / baseline),
                (f"load_pack {prefer} warm / read+sha256", warm_ms / baseline),
            ]
    print_ratios(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
