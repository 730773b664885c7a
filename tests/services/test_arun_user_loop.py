"""``await net.arun()`` on the user's own event loop: the API services' HTTP client that a
run opened on that loop is closed when the last run using it there finishes, so the user's
loop never ends (or goes on) holding its pooled sockets (``reflow._core._loop_close``).

Each row makes 200 ``arun()`` calls of a network of 8 API-service calls against a real spec
server on 127.0.0.1, and counts the process's open descriptors (psutil) before and after
(two warm-up calls first; a small slack for the interpreter's own files)."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import psutil
import pytest
from svctest import Packs, op, param, table
from test_inflight_limits import _table

from reflow import Message, Network, unload_pack
from reflow._core._catalog import template_actor
from reflow._services._client import _clients
from reflow.testing import spec_server

SLACK = 8
CALLS = 200
_SHOW = table({"show": op("GET", "/items/{id}", [param("id", "path", {"type": "string"})])})


def _fds(flat_at: int | None = None) -> int:
    """The open descriptors; with ``flat_at``, waited for (a few seconds at most) to come
    within the slack of it: the spec server runs in this process, and closes its side of a
    connection in its own thread once it sees the client's close."""
    deadline = time.monotonic() + 5
    while True:
        gc.collect()
        n = psutil.Process().num_fds()
        if flat_at is None or n - flat_at <= SLACK or time.monotonic() > deadline:
            return n
        time.sleep(0.05)


def _client_open() -> bool:
    client = _clients.get(asyncio.get_running_loop())
    return client is not None and not client.is_closed


async def _arun(nodes: int = 8) -> None:
    net = Network()
    net.register_actor("t", template_actor("acme/svc/show"))
    got = []
    for i in range(nodes):
        net.add_node(f"n{i}", "t", {"id": str(i)})
        got.append(net.collect(f"n{i}", "response"))
        net.add_initial(f"n{i}", "trigger", Message.flow())
    try:
        summary = await net.arun(timeout=60)
    finally:
        net.shutdown()
    assert not summary.failures and sum(len(c.messages) for c in got) == nodes


async def _one_loop_in_turn() -> tuple[int, int, bool]:
    await _arun()
    await _arun()
    before = _fds()
    for _ in range(CALLS):
        await _arun()
    return before, _fds(before), _client_open()


async def _one_loop_at_once() -> tuple[int, int, bool]:
    """Runs overlapping on the loop: the client stays while one of them uses it."""
    await asyncio.gather(_arun(), _arun())
    before = _fds()
    for _ in range(CALLS // 4):
        await asyncio.gather(*(_arun() for _ in range(4)))
    return before, _fds(before), _client_open()


def _loop_each() -> tuple[int, int, bool]:
    """A new user loop per run (``asyncio.run``), as a script calling it in a loop does."""
    asyncio.run(_arun())
    asyncio.run(_arun())
    before = _fds()
    for _ in range(CALLS):
        asyncio.run(_arun())
    return before, _fds(before), False


ROWS: list[tuple[str, Any]] = [
    ("200 runs in turn on one user loop", lambda: asyncio.run(_one_loop_in_turn())),
    ("200 runs, 4 at once, on one user loop", lambda: asyncio.run(_one_loop_at_once())),
    ("200 runs, a user loop each", _loop_each),
]


@pytest.mark.slow
@pytest.mark.parametrize("make", [r[1] for r in ROWS], ids=[r[0] for r in ROWS])
def test_arun_on_a_user_loop_leaves_no_client_open(packs: Packs, make: Any) -> None:
    with spec_server(_SHOW, pack="acme/svc") as srv:
        packs.load(_table(srv.url), srv.url)
        try:
            before, after, kept = make()
        finally:
            unload_pack("acme/svc")
    assert after - before <= SLACK, f"{before} -> {after} descriptors"
    assert not kept, "the loop still holds its client after the last run on it ended"
