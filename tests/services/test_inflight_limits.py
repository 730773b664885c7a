"""Many http-api calls in flight at once: real uvicorn on 127.0.0.1, real httpx, real graphs.

1,000 calls held open together all complete, quickly (the shared client's pools are sharded,
reflow._services._pool: one httpcore pool's bookkeeping grows with idle x connections); a granted
``max_connections`` is never exceeded and is reached; a server slower than ``_http.timeout_s``
gives an HttpApiError naming the operation and the host, in bounded time; bad grants are
refused when the pack loads."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from svctest import HttpApiGrants, Packs, op, param, run_node, table

from reflow import Message, Network, PackFormatError
from reflow._core._catalog import template_actor
from reflow._services._pool import SHARD_SIZE
from reflow.testing import spec_server


def _table(url: str) -> dict[str, Any]:
    path = [param("id", "path", {"type": "string"})]
    return table(
        {"show": op("GET", "/items/{id}", path), "slow": op("GET", "/slow/{id}", path)},
        servers=[{"url": url}],
    )


class _Counting:
    """An ASGI app that answers after ``delay_s`` and records the most requests it was
    handling at once."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.delay_s = 0.05
        self.lock = threading.Lock()

        async def item(request: Request) -> JSONResponse:
            with self.lock:
                self.now += 1
                self.peak = max(self.peak, self.now)
            try:
                await asyncio.sleep(self.delay_s)
            finally:
                with self.lock:
                    self.now -= 1
            return JSONResponse({"id": request.path_params["id"]})

        async def slow(request: Request) -> JSONResponse:
            await asyncio.sleep(5)
            return JSONResponse({})

        self.app = Starlette(
            routes=[Route("/items/{id}", item), Route("/slow/{id}", slow)],
        )


@contextmanager
def _serve(app: Any) -> Iterator[str]:
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=0.2,  # the slow route's abandoned calls: don't wait them out
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _graph(nodes: int, template: str, config: dict[str, Any], timeout: float) -> list[Any]:
    """``nodes`` nodes of ``template``, one call each, all at once; the failures."""
    net = Network()
    net.register_actor("t", template_actor(template))
    responses = []
    for i in range(nodes):
        net.add_node(f"n{i}", "t", {"id": str(i), **config})
        responses.append(net.collect(f"n{i}", "response"))
        net.add_initial(f"n{i}", "trigger", Message.flow())
    try:
        summary = net.run(timeout=timeout)
    finally:
        net.shutdown()
    assert sum(len(c.messages) for c in responses) == nodes - len(summary.failures)
    return list(summary.failures)


@pytest.mark.slow
@pytest.mark.parametrize("inflight", [SHARD_SIZE + 1, 1000])
def test_many_calls_in_flight_at_once_complete(packs: Packs, inflight: int) -> None:
    """The server answers none until ``inflight`` requests are open at once, so every call
    is in flight together; all complete, well within the default 30 s timeout."""
    t = table({"show": op("GET", "/items/{id}", [param("id", "path", {"type": "string"})])})
    with spec_server(t, pack="acme/svc") as srv:
        packs.load(_table(srv.url), srv.url)
        srv.hold_until(inflight)
        t0 = time.perf_counter()
        failures = _graph(inflight, "acme/svc/show", {}, timeout=120)
        elapsed = time.perf_counter() - t0
        assert not failures, failures[:3]
        assert srv.total == inflight
    assert elapsed < 60, f"{inflight} calls in flight took {elapsed:.1f} s"


@pytest.mark.parametrize(("limit", "calls"), [(1, 6), (4, 24), (SHARD_SIZE + 3, 80)])
def test_max_connections_is_honoured(packs: Packs, limit: int, calls: int) -> None:
    """A service granted max_connections=N never has more than N requests at the server at
    once, and does reach N (the others queue, and all complete)."""
    app = _Counting()
    with _serve(app.app) as url:
        packs.load(_table(url), url, grants=HttpApiGrants(max_connections=limit))
        failures = _graph(calls, "acme/svc/show", {}, timeout=60)
    assert not failures, failures[:3]
    assert app.peak == limit


def test_without_a_cap_calls_run_concurrently(packs: Packs) -> None:
    app = _Counting()
    app.delay_s = 0.3
    with _serve(app.app) as url:
        packs.load(_table(url), url)
        failures = _graph(3 * SHARD_SIZE, "acme/svc/show", {}, timeout=60)
    assert not failures, failures[:3]
    assert app.peak > SHARD_SIZE  # more than one pool's worth at once


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"_http": {"timeout_s": 0.3, "retries": 0}}, "timed out after 0.3 s"),
        ({"_http": {"timeout_s": 0.2, "retries": 1}}, "2 attempt(s)"),
    ],
)
def test_a_slow_server_times_out_naming_operation_and_host(
    packs: Packs, config: dict[str, Any], fragment: str
) -> None:
    app = _Counting()
    with _serve(app.app) as url:
        packs.load(_table(url), url, grants=HttpApiGrants(max_connections=2))
        host = url.split("://", 1)[1]
        t0 = time.perf_counter()
        _out, failures = run_node("acme/svc/slow", {"id": "x", **config}, wire_error=False)
        elapsed = time.perf_counter() - t0
        assert len(failures) == 1
        error = failures[0].error
        assert "HttpApiError" in error and "acme/svc/slow (GET /slow/{id})" in error, error
        assert f"on {host} timed out" in error and fragment in error, error
        assert elapsed < 4  # the server would answer after 5 s
        # the timed-out calls gave their slots back: two more calls at the cap still run
        assert not _graph(2, "acme/svc/show", {}, timeout=30)


@pytest.mark.parametrize("value", [0, -1, 1.5, "5", True, 10**7, [2]])
def test_bad_max_connections_is_refused_at_load(packs: Packs, value: Any) -> None:
    with pytest.raises(PackFormatError, match="grants max_connections must be an int from 1"):
        packs.load(
            _table("http://127.0.0.1:9"), "http://127.0.0.1:9", grants={"max_connections": value}
        )


def test_a_refused_connection_names_the_host(packs: Packs) -> None:
    url = "http://127.0.0.1:9"  # discard: nothing listens
    packs.load(_table(url), url)
    _out, failures = run_node(
        "acme/svc/show", {"id": "x", "_http": {"retries": 0}}, wire_error=False
    )
    assert len(failures) == 1
    assert "connection to 127.0.0.1:9 failed after 1 attempt(s)" in failures[0].error
