"""README walk, second pass: product objects opened and closed many times leave the process's
file descriptors flat.

The API services' HTTP client is made per event loop; a network's loop was closed under it,
so every run that called a service left its pooled sockets open for good (a burst of 200
calls: +200 descriptors a run, never given back, not even by the garbage collector). Each
row opens and closes one product object many times against real servers on 127.0.0.1 and
counts ``/proc/self/fd`` before and after (two warm-up cycles first; a small slack for
the interpreter's own files).
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from svctest import Packs, op, param, table
from test_inflight_limits import _graph, _table

from reflow import unload_pack
from reflow._services._pool import KEEPALIVE_SHARDS, SHARD_SIZE
from reflow.testing import spec_server

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")

_TESTS = Path(__file__).resolve().parents[1]
SLACK = 8


def _fds() -> int:
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


def _flat(cycle: Callable[[], None], times: int) -> tuple[int, int]:
    cycle()
    cycle()
    before = _fds()
    for _ in range(times):
        cycle()
    return before, _fds()


@contextmanager
def _on_loopback(app: Any) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


_SHOW = table({"show": op("GET", "/items/{id}", [param("id", "path", {"type": "string"})])})


def _service_runs(packs: Packs) -> tuple[Callable[[], None], Callable[[], None]]:
    """A network run of 8 API-service calls at once; the spec server stays up."""
    ctx = spec_server(_SHOW, pack="acme/svc")
    srv = ctx.__enter__()
    packs.load(_table(srv.url), srv.url)

    def cycle() -> None:
        assert not _graph(8, "acme/svc/show", {}, timeout=60)

    def done() -> None:
        unload_pack("acme/svc")
        ctx.__exit__(None, None, None)

    return cycle, done


def _registry_clients(_packs: Packs) -> tuple[Callable[[], None], Callable[[], None]]:
    """RegistryClient opened, one search, closed; the registry app on uvicorn."""
    sys.path.insert(0, str(_TESTS / "registry"))
    from regtest import setup_registry

    from reflow.registry import RegistryClient

    reg = setup_registry(Path(tempfile.mkdtemp(prefix="reflow-walk2-reg-")))
    ctx = _on_loopback(reg.app)
    url = ctx.__enter__()
    cache = Path(tempfile.mkdtemp(prefix="reflow-walk2-cache-"))

    def cycle() -> None:
        with RegistryClient(url, cache_dir=cache, notify=None) as client:
            client.search("")

    def done() -> None:
        ctx.__exit__(None, None, None)
        reg.storage.close()

    return cycle, done


def _execution_servers(_packs: Packs) -> tuple[Callable[[], None], Callable[[], None]]:
    """The execution server started, asked for its templates, stopped."""
    sys.path.insert(0, str(_TESTS / "server"))
    from exectest import TOKEN, RunningServer

    from reflow.server import ServerConfig, ServerLimits

    def cycle() -> None:
        srv = RunningServer(ServerConfig(token=TOKEN, limits=ServerLimits())).start()
        try:
            with srv.client() as c:
                assert c.get("/api/v1/templates").status_code == 200
        finally:
            srv.stop()

    return cycle, lambda: None


@pytest.mark.slow
@pytest.mark.parametrize(
    ("what", "make", "times"),
    [
        ("an API-service network run", _service_runs, 200),
        ("a registry client", _registry_clients, 200),
        ("an execution server", _execution_servers, 50),  # 0.2 s a start: 50 is enough
    ],
)
def test_opened_and_closed_many_times_the_fd_count_stays_flat(
    packs: Packs, what: str, make: Any, times: int
) -> None:
    cycle, done = make(packs)
    try:
        before, after = _flat(cycle, times)
    finally:
        done()
    assert after - before <= SLACK, f"{what} x{times}: {before} -> {after} descriptors"


@pytest.mark.slow
def test_bursts_of_held_open_calls_give_their_sockets_back(packs: Packs) -> None:
    """Rounds of 200 calls in flight at once, each round against a new spec server."""
    counts = []
    for _ in range(4):
        with spec_server(_SHOW, pack="acme/svc") as srv:
            packs.load(_table(srv.url), srv.url)
            srv.hold_until(200)
            assert not _graph(200, "acme/svc/show", {}, timeout=120)
        unload_pack("acme/svc")
        counts.append(_fds())
    assert max(counts) - min(counts) <= SLACK, counts  # was +200 a round


def test_only_the_first_pools_keep_idle_connections() -> None:
    from reflow._services._pool import ShardedTransport

    transport = ShardedTransport()
    for _ in range(KEEPALIVE_SHARDS + 3):  # every pool busy: the next request makes one
        shard = transport._pick()
        shard.busy = SHARD_SIZE
    kept = [s.transport._pool._max_keepalive_connections for s in transport._shards]
    assert kept == [SHARD_SIZE] * KEEPALIVE_SHARDS + [0] * 3
