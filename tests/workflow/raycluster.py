"""A real local Ray cluster for the tests: a head and worker nodes started on 127.0.0.1 with
``ray start`` (one process each, one CPU each), and ended by killing only its own processes.

Used by ``test_workflow_ray.py`` and ``test_ray_nodes*.py``; each module starts one cluster
(module-scoped fixture ``cluster``), since a start takes 10-20 s. ``tests/bench/bench_workflow.py``
starts its clusters with ``running_cluster`` too (it puts this folder on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

RAY = str(Path(sys.executable).parent / "ray")
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}

PROBE = """
import sys, ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
print(sum(1 for n in ray.nodes() if n["Alive"]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(*args: str) -> None:
    p = subprocess.run([RAY, "start", *args], env=ENV, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


def cluster_processes(temp: str, *, children: bool) -> list[psutil.Process]:
    """This cluster's processes: those naming its temp dir, and with ``children`` their
    descendants too (Ray's agents and workers rename themselves, ``ray::IDLE``)."""
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(temp in part for part in proc.info["cmdline"] or ()):
                found[proc.pid] = proc
                for child in proc.children(recursive=True) if children else ():
                    found[child.pid] = child
        except psutil.Error:
            continue
    found.pop(os.getpid(), None)
    return list(found.values())


def kill_cluster(temp: str) -> None:
    """Kill -9 the cluster's own processes (head, raylets), as a crash of the machines would;
    the workers notice on their own."""
    for proc in cluster_processes(temp, children=False):
        with contextlib.suppress(psutil.Error):
            proc.kill()


def stop_cluster(temp: str) -> None:
    # `ray stop` would stop every cluster on the machine: end only this one's processes,
    # leaving none of its renamed children behind
    for proc in cluster_processes(temp, children=True):
        with contextlib.suppress(psutil.Error):
            proc.kill()
    shutil.rmtree(temp, ignore_errors=True)


def start_cluster(workers: int) -> tuple[str, str]:
    """Start a head and ``workers`` worker nodes; returns (address, temp dir)."""
    temp = tempfile.mkdtemp(prefix="reflow-ray-")
    port = free_port()
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    _start("--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}", *common)
    for _ in range(workers):
        _start(f"--address=127.0.0.1:{port}", *common)
    return f"127.0.0.1:{port}", temp


def wait_nodes(address: str, n: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        probe = subprocess.run(
            [sys.executable, "-c", PROBE, address], env=ENV, capture_output=True, text=True
        )
        if probe.stdout.strip() == str(n) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert probe.stdout.strip() == str(n), probe.stdout + probe.stderr


@contextlib.contextmanager
def running_cluster(workers: int) -> Iterator[str]:
    """A head and ``workers`` worker nodes, all up, for the ``with`` block: yields the head's
    address; afterwards this process's Ray connection and the cluster's processes end."""
    address, temp = start_cluster(workers)
    try:
        wait_nodes(address, workers + 1)
        yield address
    finally:
        # this process's Ray connection goes with the cluster: the next one's is new
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()
        stop_cluster(temp)


def cluster_fixture(workers: int = 1) -> Iterator[str]:
    """The body of a module-scoped ``cluster`` fixture: yields the head's address."""
    if not Path(RAY).exists():
        pytest.skip(f"no ray command next to {sys.executable}")
    with running_cluster(workers) as address:
        yield address
