"""A real local Ray cluster for the tests: a head and worker nodes started on 127.0.0.1 with
``ray start`` (one process each, one CPU each), and ended by killing only its own processes.

Used by ``test_workflow_ray.py`` and ``test_ray_nodes*.py``; each module starts one cluster
(module-scoped fixture ``cluster``), since a start takes 10-20 s.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

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


def stop_cluster(temp: str) -> None:
    # `ray stop` would stop every cluster on the machine: end only this one's processes
    subprocess.run(["pkill", "-9", "-f", temp], check=False)
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


def cluster_fixture(workers: int = 1) -> Iterator[str]:
    """The body of a module-scoped ``cluster`` fixture: yields the head's address."""
    if not Path(RAY).exists():
        pytest.skip(f"no ray command next to {sys.executable}")
    address, temp = start_cluster(workers)
    try:
        wait_nodes(address, workers + 1)
        yield address
    finally:
        stop_cluster(temp)
