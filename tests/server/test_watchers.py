"""Watchers that must see every event: ``await_watcher`` holds a run until its first WebSocket
client is attached (the race the benchmark's watchers lost: a run of a busy graph is over
before a client's handshake is), and ``?batch=N`` frames carry up to N events each."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from exectest import TOKEN, RunningServer, check_schema, counter_graph, running, wait_done


@pytest.fixture(scope="module")
def srv() -> Iterator[RunningServer]:
    with running(history=50) as s:  # a small history: a late client would see a gap at once
        yield s


def create(srv: RunningServer, **body: Any) -> str:
    with srv.client() as c:
        r = c.post("/api/v1/executions", json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])


def url(srv: RunningServer, eid: str, query: str = "") -> str:
    return f"{srv.ws_url}/api/v1/executions/{eid}/events?access_token={TOKEN}{query}"


async def frames(address: str) -> list[Any]:
    async with websockets.connect(address, max_queue=None) as ws:
        return [json.loads(f) async for f in ws]


def test_await_watcher_holds_the_run_until_a_client_watches(srv: RunningServer) -> None:
    eid = create(srv, graph=counter_graph(3000), await_watcher=30)
    time.sleep(0.5)
    with srv.client() as c:
        body = c.get(f"/api/v1/executions/{eid}").json()
    assert body["state"] == "queued" and body["counts"]["events"] == 0
    events = asyncio.run(frames(url(srv, eid)))
    kinds = [e["_type"] for e in events]
    assert "EventsDropped" not in kinds and kinds[-1] == "Completed"
    assert events[-1]["events"] == len(events) - 1 > 3000  # every event, the first one too
    assert kinds[0] == "NetworkStarted"
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)


def test_await_watcher_starts_anyway_when_nobody_comes(srv: RunningServer) -> None:
    t0 = time.perf_counter()
    eid = create(srv, graph=counter_graph(5), await_watcher=0.5)
    with srv.client() as c:
        done = wait_done(c, eid)
    assert done["state"] == "completed"
    assert 0.4 < time.perf_counter() - t0 < 10


def test_cancel_while_awaiting_a_watcher(srv: RunningServer) -> None:
    eid = create(srv, graph=counter_graph(5), await_watcher=60)
    with srv.client() as c:
        t0 = time.perf_counter()
        r = c.delete(f"/api/v1/executions/{eid}")
        assert r.status_code == 200
        done = wait_done(c, eid)
        assert time.perf_counter() - t0 < 5
    assert done["state"] == "cancelled" and "DELETE" in (done["reason"] or "")


@pytest.mark.parametrize("batch", [1, 7, 500, 1000])
def test_batched_frames_carry_the_same_events_in_order(srv: RunningServer, batch: int) -> None:
    eid = create(srv, graph=counter_graph(300), await_watcher=30)
    got = asyncio.run(frames(url(srv, eid, f"&batch={batch}")))
    if batch == 1:
        events = got
    else:
        assert all(isinstance(f, list) and 1 <= len(f) <= batch for f in got)
        events = [e for f in got for e in f]
    for ev in events[:50]:
        check_schema(ev, "Event")
    assert events[-1]["_type"] == "Completed"
    assert events[-1]["events"] == len(events) - 1
    assert "EventsDropped" not in [e["_type"] for e in events]
    sent = [e for e in events if e["_type"] == "MessageSent"]
    assert len(sent) == 301 and [e["message"] for e in sent[1:]] == list(range(300))


@pytest.mark.parametrize("batch", ["0", "1001", "-1", "x", "", "1e3", "99999999999999999999"])
def test_a_bad_batch_closes_the_socket(srv: RunningServer, batch: str) -> None:
    eid = create(srv, graph=counter_graph(1))

    async def attempt() -> int:
        try:
            async with websockets.connect(url(srv, eid, f"&batch={batch}")) as ws:
                await ws.recv()
        except websockets.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else -1
        except websockets.InvalidStatus as exc:
            return exc.response.status_code
        return 0

    assert asyncio.run(attempt()) in (4400, 403)


def test_a_watcher_that_keeps_up_loses_nothing_with_the_default_queue() -> None:
    """A 20 000-packet run publishes ~60 000 events in well under a second; a client reading
    batched frames gets all of them with the server's default per-client queue."""
    with running() as s:
        eid = create(s, graph=counter_graph(20_000), await_watcher=30)
        events = [e for f in asyncio.run(frames(url(s, eid, "&batch=500"))) for e in f]
    assert "EventsDropped" not in [e["_type"] for e in events]
    assert events[-1]["_type"] == "Completed" and events[-1]["events"] == len(events) - 1
