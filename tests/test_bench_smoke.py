"""Every benchmark in tests/bench/ still runs and still prints its ratios (issue 8, row 19).

Each ``bench_*.py`` is run as a user runs it, ``python tests/bench/<name>.py``, with
``--smoke`` (tiny sizes); its last block must be the ratios block of ``tests/bench/_ratios.py``
with exactly the rows listed here. A new benchmark fails ``test_every_benchmark_is_listed``
until it is added to ``RATIOS``. Nothing about the numbers is asserted beyond "finite and
positive" (``print_ratios`` refuses anything else): smoke sizes measure nothing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "tests" / "bench"
HEADER = "ratios (each against a baseline measured in this run):"
_ROW = re.compile(r"^  (\S.*?)\s+(\d+\.\d\d)x$")

#: benchmark -> the ratio rows its smoke run must print, in order
RATIOS: dict[str, list[str]] = {
    "bench_core": [
        "chain, capacity 64 / bare loop",
        "chain, capacity 1 / bare loop",
        "chain, events subscribed / bare loop",
        "fan-out/fan-in / bare loop",
        "async chain / bare async loop",
        "chain, a thread reading every event / bare loop",
        "chain, a thread reading every event as dicts / bare",
        "chain, a thread reading tick results / bare loop",
        "build time per node, 10,000 / 1,000 nodes",
        "build from graph JSON per node, 10,000 / 1,000 nodes",
    ],
    "bench_durable": [
        "checkpoint every 1,000 ticks / no checkpoint",
        "checkpoint every 10,000 ticks / no checkpoint",
    ],
    "bench_gpu": [
        "4K RGBA gaussian blur: numpy / GPU",
        "3-node image chain: numpy / GPU",
        "3-node chain: sum of kernels' device time / chain wall time",
        "16 M-value elementwise: numpy / GPU",
        "16 M-value sum reduction: numpy / GPU",
        "GPU node tick on 1 KiB / numpy node tick",
    ],
    "bench_openapi": [
        "generate + sign all / parse the same files",
        "tomllib largest manifest / json.loads same data",
    ],
    "bench_httpapi": [
        "template sequential / bare httpx loop (req/s)",
        "50 nodes / bare httpx gather of 50 (req/s)",
        "memory per in-flight request / bare httpx",
        "load_pack warm 1,123 ops / read+sha256 of the pack",
        "load_pack warm generated pack, same process / read+sha256",
        "load_pack warm generated pack, fresh process / read+sha256",
    ],
    "bench_packs": [
        "stripped size / full size",
        "build / read+sha256 of the pack",
        "strip / read+sha256 of the pack",
        "load_pack native cold / read+sha256",
        "load_pack native warm / read+sha256",
        "load_pack wasm cold / read+sha256",
        "load_pack wasm warm / read+sha256",
    ],
    "bench_policies": [
        "chain, no policies / bare loop",
        "chain, policies={} on 2 nodes / no policies",
        "chain, no-op retry on 2 nodes / no policies",
    ],
    "bench_registry": [
        "registry download / uvicorn StaticFiles",
        "registry download / python -m http.server",
    ],
    "bench_server": [
        "run time with one watcher / without (bridging)",
        "run time traced per node / untraced",
        "run time traced per tick / untraced",
        "concurrent wall / (executions x one execution)",
    ],
    "bench_sdk": [
        "time per hop: passthrough chain / bare loop of the same calls",
    ],
    "bench_wasm": [
        "wasm doubler single / raw passthrough",
        "wasm doubler batched / raw passthrough",
        "wasm doubler single / raw same guest",
        "wasm doubler batched / raw same batched",
        "wasm echo single / raw passthrough",
        "wasm echo batched / raw passthrough",
        "wasm echo single / raw same guest",
        "wasm echo batched / raw same batched",
        "native echo single / bare ctypes",
        "native echo batched / bare ctypes",
        "2 nodes / 1 node throughput",
    ],
    "bench_workflow": [
        "workflow array job / bare executor map, per element",
        "3-node chain msg/s, all local / middle on Ray",
        "3-node chain msg/s, all local / Ray max_inflight 8",
    ],
}
#: benchmarks that compile guests (ziglang; a cold zig cache makes them slow)
NEEDS_ZIG = {"bench_packs", "bench_wasm"}


def _run(args: list[str], tmp: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "REFLOW_CACHE_DIR": str(tmp / "cache"),
        "REFLOW_TRUST_DIR": str(tmp / "trust"),
    }
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def ratio_rows(stdout: str) -> list[tuple[str, float]]:
    """The rows of the ratios block that ends a benchmark's output."""
    lines = stdout.splitlines()
    assert HEADER in lines, f"no ratios block in:\n{stdout[-2000:]}"
    rows = []
    for line in lines[lines.index(HEADER) + 1 :]:
        match = _ROW.match(line)
        assert match, f"not a ratio row after {HEADER!r}: {line!r}"
        rows.append((match.group(1), float(match.group(2))))
    return rows


def test_every_benchmark_is_listed() -> None:
    found = sorted(p.stem for p in BENCH.glob("bench_*.py"))
    assert found == sorted(RATIOS), "add the new benchmark's ratio rows to RATIOS"


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in NEEDS_ZIG else n for n in sorted(RATIOS)],
)
def test_benchmark_smoke_run_prints_its_ratios(name: str, tmp_path: Path) -> None:
    if name in NEEDS_ZIG:
        pytest.importorskip("ziglang")
    proc = _run([f"tests/bench/{name}.py", "--smoke"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = ratio_rows(proc.stdout)
    assert [n for n, _ in rows] == RATIOS[name]
    assert all(r > 0 for _, r in rows), rows


def test_run_all_runs_the_named_benchmarks_and_reports_each(tmp_path: Path) -> None:
    proc = _run(["tests/bench/run_all.py", "--smoke", "core"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("== bench_core.py\n")
    assert re.search(r"^== bench_core\.py: ok in \d+\.\d s$", proc.stdout, re.M)
    assert [n for n, _ in ratio_rows(proc.stdout.split("== bench_core.py: ok")[0])] == RATIOS[
        "bench_core"
    ]


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["tests/bench/run_all.py", "nope"], 2, "no benchmark named nope; have: bench_core"),
        (["tests/bench/run_all.py", "--bogus"], 2, "unrecognized arguments: --bogus"),
        (["tests/bench/bench_core.py", "--n", "x"], 2, "invalid int value"),
        (["tests/bench/bench_wasm.py", "--fast"], 2, "unknown: --fast"),
    ],
)
def test_bad_benchmark_arguments_exit_2(
    args: list[str], code: int, fragment: str, tmp_path: Path
) -> None:
    proc = _run(args, tmp_path, timeout=60)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert fragment in proc.stderr
    assert "Traceback" not in proc.stderr


def test_readme_names_the_one_command_that_runs_them_all() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "python tests/bench/run_all.py" in readme
    for name in RATIOS:
        assert f"tests/bench/{name}.py" in readme, f"README does not describe {name}"


def test_workflow_benchmark_ray_array_rows_smoke(tmp_path: Path) -> None:
    """``bench_workflow --smoke --ray``: the Ray array rows (per-task overhead, the CPU-bound
    speed-up and bare Ray's own speed-up beside it) run tiny on a real local cluster."""
    pytest.importorskip("ray")
    proc = _run(["tests/bench/bench_workflow.py", "--smoke", "--ray"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = ratio_rows(proc.stdout)
    assert [n for n, _ in rows] == [
        RATIOS["bench_workflow"][0],
        "ray workflow / bare ray.remote, per element",
        "ray CPU-bound array, 1 worker / 2 workers (speed-up)",
        "bare ray.remote CPU-bound, 1 / 2 in flight (speed-up)",
        "ray CPU-bound array speed-up by worker CPU time",
        *RATIOS["bench_workflow"][1:],
    ]
    assert all(r > 0 for _, r in rows), rows
