"""reflow.server's event WebSocket: events in order for a client that keeps up, history for a
late one, and a client that never reads: the graph's run time stays bounded and the client is
told how many events it lost."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from exectest import TOKEN, RunningServer, check_schema, counter_graph, failing_graph, running

from reflow.server._events_ws import EventBridge


@pytest.fixture(scope="module")
def srv() -> Iterator[RunningServer]:
    with running(client_queue=1000, history=200) as s:
        yield s


def start(srv: RunningServer, graph: dict[str, Any]) -> str:
    with srv.client() as c:
        r = c.post("/api/v1/executions", json={"graph": graph})
        assert r.status_code == 201, r.text
        return str(r.json()["id"])


async def read_all(url: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    out = []
    async with websockets.connect(url, additional_headers=headers or {}) as ws:
        async for frame in ws:
            out.append(json.loads(frame))
    return out


def events_url(srv: RunningServer, eid: str, query: str = "") -> str:
    return f"{srv.ws_url}/api/v1/executions/{eid}/events{query}"


def test_events_in_order_then_the_terminal_event(srv: RunningServer) -> None:
    eid = start(srv, counter_graph(5))
    events = asyncio.run(read_all(events_url(srv, eid), {"Authorization": f"Bearer {TOKEN}"}))
    for ev in events:
        check_schema(ev, "Event")
    kinds = [e["_type"] for e in events]
    assert kinds[0] == "NetworkStarted" and kinds[-1] == "Completed"
    assert "EventsDropped" not in kinds
    done = events[-1]
    assert done["events"] == len(events) - 1 and done["ticks"] == 7 and done["failures"] == 0
    sent = [e for e in events if e["_type"] == "MessageSent"]
    assert len(sent) == 6 and all(e["size"] > 0 for e in sent)
    completed = [e for e in events if e["_type"] == "ActorCompleted"]
    assert all(e["duration"] >= 0 and e["outputSize"] >= 0 for e in completed)
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)


def test_a_failure_reaches_the_client(srv: RunningServer) -> None:
    eid = start(srv, failing_graph())
    events = asyncio.run(read_all(events_url(srv, eid, f"?access_token={TOKEN}")))
    failed = [e for e in events if e["_type"] == "ActorFailed"]
    assert failed and "division by zero" in failed[0]["error"] and "traceback" not in failed[0]
    assert events[-1]["_type"] == "Failed" and events[-1]["failures"] == 1


def test_a_late_client_gets_history_then_what_it_missed(srv: RunningServer) -> None:
    eid = start(srv, counter_graph(200))  # ~800 events, 200 kept
    time.sleep(1.0)
    events = asyncio.run(read_all(events_url(srv, eid, f"?access_token={TOKEN}")))
    assert events[-1]["_type"] == "Completed"
    dropped = [e for e in events if e["_type"] == "EventsDropped"]
    assert len(dropped) == 1 and events[200] == dropped[0]
    real = len(events) - 2
    assert real + dropped[0]["count"] == events[-1]["events"]


@pytest.mark.parametrize(
    ("query", "headers", "code"),
    [
        pytest.param("", {}, 4401, id="no token"),
        pytest.param("?access_token=nope", {}, 4401, id="wrong token in query"),
        pytest.param("", {"Authorization": "Bearer nope"}, 4401, id="wrong token in header"),
    ],
)
def test_bad_token_closes_the_socket(
    srv: RunningServer, query: str, headers: dict[str, str], code: int
) -> None:
    eid = start(srv, counter_graph(1))

    async def attempt() -> int:
        try:
            async with websockets.connect(
                events_url(srv, eid, query), additional_headers=headers
            ) as ws:
                await ws.recv()
        except websockets.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else -1
        except websockets.InvalidStatus as exc:
            return exc.response.status_code
        return 0

    assert asyncio.run(attempt()) in (code, 403)


def test_unknown_execution_closes_with_4404(srv: RunningServer) -> None:
    async def attempt() -> int:
        try:
            async with websockets.connect(events_url(srv, "nope", f"?access_token={TOKEN}")) as ws:
                await ws.recv()
        except websockets.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else -1
        except websockets.InvalidStatus as exc:
            return exc.response.status_code
        return 0

    assert asyncio.run(attempt()) in (4404, 403)


@pytest.mark.slow
def test_a_client_that_never_reads_does_not_stall_the_graph() -> None:
    """100 k messages; the client reads nothing until the run is over. The run takes about as
    long as without the client, the server's queue for it stays bounded, and the client is
    told how many events it lost."""
    n = 100_000
    with running(client_queue=2000, history=100) as s:

        def run_alone() -> float:
            with s.client() as c:
                eid = c.post("/api/v1/executions", json={"graph": counter_graph(n)}).json()["id"]
                t0 = time.perf_counter()
                while c.get(f"/api/v1/executions/{eid}").json()["state"] == "running":
                    time.sleep(0.05)
                body = c.get(f"/api/v1/executions/{eid}").json()
                assert body["state"] == "completed"
                return float(body["summary"]["elapsed"]) + 0 * t0

        alone = run_alone()

        async def stalled() -> tuple[list[dict[str, Any]], float]:
            with s.client() as c:
                eid = c.post("/api/v1/executions", json={"graph": counter_graph(n)}).json()["id"]
                async with websockets.connect(
                    events_url(s, eid, f"?access_token={TOKEN}"), max_queue=1
                ) as ws:
                    # never read while it runs
                    while c.get(f"/api/v1/executions/{eid}").json()["state"] == "running":
                        await asyncio.sleep(0.05)
                    body = c.get(f"/api/v1/executions/{eid}").json()
                    out = [json.loads(f) async for f in ws]
                return out, float(body["summary"]["elapsed"])

        events, watched = asyncio.run(stalled())
    assert events[-1]["_type"] == "Completed"
    lost = sum(e["count"] for e in events if e["_type"] == "EventsDropped")
    real = sum(1 for e in events if e["_type"] != "EventsDropped") - 1
    assert lost > 0 and real + lost == events[-1]["events"]
    # what got through: the bounded queue, the history, and what socket buffers held
    assert real < events[-1]["events"] // 2
    print(
        f"alone {alone:.2f} s, with a stalled client {watched:.2f} s, lost {lost} of "
        f"{events[-1]['events']}"
    )
    assert watched < max(3 * alone, alone + 5), (alone, watched)


# -- the bridge below the socket -----------------------------------------------------------------


def test_bridge_queue_is_bounded_and_marks_the_gap() -> None:
    async def body() -> None:
        bridge = EventBridge(history=0, client_queue=3)
        client = bridge.attach(asyncio.get_running_loop())
        records = [("NetworkIdle", 0.0, i) for i in range(10)]
        bridge.publish(records[:5])
        bridge.publish(records[5:])
        bridge.finish({"_type": "Completed"})
        items = bridge.take(client)
        texts = [i if isinstance(i, str) else {"dropped": i[0]} for i in items]
        assert len(texts) == 5
        assert texts[3] == {"dropped": 7}
        assert json.loads(texts[4])["events"] == 10  # type: ignore[arg-type]

    asyncio.run(body())
