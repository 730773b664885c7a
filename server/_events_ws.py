"""The event bridge: one execution's event stream, fanned out to WebSocket clients as JSON.

The execution's runner thread hands each batch of event records to :meth:`EventBridge.publish`,
which encodes every event once (shared by all clients) and appends it to each client's bounded
queue. A client whose queue is full loses the newest events instead: a marker takes their
place and reaches the client as ``{"_type": "EventsDropped", "count": n}`` where the gap is,
so what it receives stays in order and it knows how much it missed. Publishing never waits for
a client; the graph is never slowed by a slow reader beyond the encoding it shares.

A client reads one event per text frame, or with ``?batch=N`` a JSON array of up to N per
frame: the encoded texts joined, so a busy graph costs the event loop one send per batch
instead of one per event (the benchmark's watchers deliver about twice the events per second
that way). A client that must see the very first events has its execution created with
``await_watcher``: the run waits for the first :meth:`EventBridge.attach`.

The first ``history`` events are kept, so a client that connects late (or after the run)
still sees the start, then an ``EventsDropped`` for what it missed, then the live events.
The terminal event (``Completed``, ``Failed`` or ``Cancelled``, with totals) is never dropped.

Event objects: ``ActorStarted`` (actorId, component), ``ActorCompleted`` (+ duration in
seconds, outputSize in packets), ``ActorFailed`` (+ error), ``MessageSent`` (fromActor,
fromPort, toActor, toPort, size; ``message`` too when it is at most 256 bytes),
``NetworkStarted``, ``NetworkIdle`` (ticks), ``NetworkShutdown`` (dropped), each with its
``timestamp`` (ms since the epoch).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from reflow import EventStream

__all__ = ["TERMINAL_TYPES", "EventBridge", "events_endpoint"]

TERMINAL_TYPES = ("Completed", "Failed", "Cancelled")
_PAYLOAD_LIMIT = 256  # bytes of a MessageSent payload carried in the event
_as_dict = EventStream.as_dict


def _fallback(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    tolist = getattr(value, "tolist", None)  # numpy values
    if callable(tolist):
        return f"<{type(value).__name__}>"
    return repr(value)[:200]


_encode = json.JSONEncoder(default=_fallback, ensure_ascii=False, separators=(",", ":")).encode


def encode_record(record: tuple[Any, ...]) -> str:
    """One host event record as the JSON text clients receive."""
    ev = _as_dict(record)
    kind = ev["_type"]
    if kind == "MessageSent":
        if ev["size"] > _PAYLOAD_LIMIT:
            del ev["message"]
            ev["truncated"] = True
    elif kind == "ActorFailed":
        ev.pop("traceback", None)  # server paths and code are not the client's business
    return _encode(ev)


class _Client:
    """One WebSocket's queue: event texts and ``[n]`` markers for ``n`` dropped events."""

    def __init__(self, loop: asyncio.AbstractEventLoop, cap: int) -> None:
        self.loop = loop
        self.cap = cap
        self.items: deque[str | list[int]] = deque()
        self.size = 0  # texts in ``items`` (markers do not count)
        self.dropped = 0
        self.waiting = False
        self.wake = asyncio.Event()
        self.done = False

    def _drop(self, n: int) -> None:
        self.dropped += n
        last = self.items[-1] if self.items else None
        if isinstance(last, list):
            last[0] += n
        else:
            self.items.append([n])

    def add(self, texts: list[str], force_last: bool = False) -> None:
        room = self.cap - self.size
        if room >= len(texts):
            self.items.extend(texts)
            self.size += len(texts)
        else:
            keep = max(room, 0)
            if keep:
                self.items.extend(texts[:keep])
                self.size += keep
            lost = len(texts) - keep - (1 if force_last else 0)
            if lost > 0:
                self._drop(lost)
            if force_last:
                self.items.append(texts[-1])
                self.size += 1

    def notify(self) -> None:
        if self.waiting:
            self.waiting = False
            self.loop.call_soon_threadsafe(self.wake.set)


class EventBridge:
    """Fans one execution's events out to its clients; keeps counts for snapshots."""

    def __init__(self, history: int, client_queue: int) -> None:
        self._lock = threading.Lock()
        self._history_cap = history
        self._client_cap = client_queue
        self.history: list[str] = []
        self.published = 0  # events handed out (markers for lost events count what they mark)
        self.lost = 0  # events the host stream dropped before the bridge read them
        self._clients: list[_Client] = []
        self.finished = False
        self.watched = False  # a client has attached (``await_watcher`` runs wait for it)
        self.terminal = ""
        #: per node: ticks completed, ticks failed, the last error; per edge: packets sent
        self.node_ticks: dict[str, int] = {}
        self.node_failures: dict[str, int] = {}
        self.node_errors: dict[str, str] = {}
        self.edge_counts: dict[str, int] = {}

    # ------------------------------------------------------------------ writer side
    def _count(self, records: list[tuple[Any, ...]]) -> None:
        ticks, fails, edges = self.node_ticks, self.node_failures, self.edge_counts
        for r in records:
            kind = r[0]
            if kind == "MessageSent":
                key = f"{r[2]}.{r[3]}>{r[4]}.{r[5]}"
                edges[key] = edges.get(key, 0) + 1
            elif kind == "ActorCompleted":
                ticks[r[2]] = ticks.get(r[2], 0) + 1
            elif kind == "ActorFailed":
                fails[r[2]] = fails.get(r[2], 0) + 1
                self.node_errors[r[2]] = str(r[4])[:500]

    def publish(self, records: list[tuple[Any, ...]], lost: int = 0) -> None:
        """Hand out a batch of host event records (``lost``: how many the host stream dropped
        just before them)."""
        self._count(records)
        with self._lock:
            clients = self._clients
            need = len(self.history) < self._history_cap
            texts = [encode_record(r) for r in records] if (clients or need) else []
            if lost:
                self.lost += lost
                self.published += lost
                for c in clients:
                    c._drop(lost)
            if need:
                self.history.extend(texts[: self._history_cap - len(self.history)])
            self.published += len(records)
            for c in clients:
                c.add(texts)
                c.notify()

    def finish(self, terminal: dict[str, Any]) -> None:
        """Send the terminal event (never dropped) and end every client's stream."""
        terminal = {**terminal, "events": self.published}
        text = _encode(terminal)
        with self._lock:
            self.finished = True
            self.terminal = text
            for c in self._clients:
                c.add([text], force_last=True)
                c.done = True
                c.notify()

    # ------------------------------------------------------------------ reader side
    def attach(self, loop: asyncio.AbstractEventLoop) -> _Client:
        """A new client: the kept history, a marker for what it missed since, then live."""
        client = _Client(loop, self._client_cap)
        with self._lock:
            self.watched = True
            client.add(self.history)
            missed = self.published - len(self.history)
            if missed > 0:
                client._drop(missed)
            if self.finished:
                client.add([self.terminal], force_last=True)
                client.done = True
            else:
                self._clients = [*self._clients, client]
        return client

    def detach(self, client: _Client) -> None:
        with self._lock:
            self._clients = [c for c in self._clients if c is not client]

    def take(self, client: _Client, max_items: int = 512) -> list[str | list[int]]:
        """Up to ``max_items`` queued items; arms the client's wake-up when there are none."""
        with self._lock:
            items = client.items
            out: list[str | list[int]] = []
            while items and len(out) < max_items:
                item = items.popleft()
                if isinstance(item, str):
                    client.size -= 1
                out.append(item)
            if not out and not client.done:
                client.wake.clear()
                client.waiting = True
            return out

    def snapshot(self) -> dict[str, Any]:
        """Per-node and per-edge counts so far (for the REST view of an execution)."""
        return {
            "events": self.published,
            "lost": self.lost,
            "nodes": {
                n: {
                    "ticks": self.node_ticks.get(n, 0),
                    "failures": self.node_failures.get(n, 0),
                    "error": self.node_errors.get(n),
                }
                for n in {*self.node_ticks, *self.node_failures}
            },
            "edges": dict(self.edge_counts),
        }


def _dropped_text(n: int) -> str:
    return _encode({"_type": "EventsDropped", "count": n})


_MAX_BATCH = 1000


def _frames(items: list[str | list[int]], batch: int) -> list[str]:
    """The text frames for ``items``: one event each, or with ``batch`` > 1 JSON arrays of up
    to ``batch`` events (already-encoded texts joined, never re-encoded)."""
    texts = [item if isinstance(item, str) else _dropped_text(item[0]) for item in items]
    if batch == 1:
        return texts
    return ["[" + ",".join(texts[i : i + batch]) + "]" for i in range(0, len(texts), batch)]


def _batch_size(websocket: WebSocket) -> int | None:
    raw = websocket.query_params.get("batch", "1")
    if not raw.isdigit() or not 1 <= int(raw) <= _MAX_BATCH:
        return None
    return int(raw)


async def events_endpoint(websocket: WebSocket) -> None:
    """``WS /api/v1/executions/{id}/events``: the execution's events, one JSON object per
    text frame (``?batch=N``: a JSON array of up to N events per frame, for clients that
    read busy graphs), closed (1000) after the terminal event; 4404 for an unknown
    execution, 4400 for a bad ``batch``."""
    executions = websocket.app.state.executions
    execution = executions.get_or_none(websocket.path_params["id"])
    if execution is None:
        await websocket.close(code=4404, reason="no such execution")
        return
    batch = _batch_size(websocket)
    if batch is None:
        await websocket.close(code=4400, reason=f"batch must be 1 to {_MAX_BATCH} events")
        return
    await websocket.accept()
    bridge: EventBridge = execution.bridge
    client = bridge.attach(asyncio.get_running_loop())
    receiver = asyncio.ensure_future(_watch_close(websocket))
    take = max(512, batch)
    try:
        while True:
            items = bridge.take(client, take)
            if not items:
                if client.done:
                    break
                waiter = asyncio.ensure_future(client.wake.wait())
                await asyncio.wait({waiter, receiver}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if receiver.done():
                    return
                continue
            for frame in _frames(items, batch):
                await websocket.send_text(frame)
        await websocket.close(code=1000)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the client went away: nothing to tell it
    finally:
        receiver.cancel()
        bridge.detach(client)


async def _watch_close(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends, until it closes."""
    try:
        while True:
            msg = await websocket.receive()
            if msg["type"] == "websocket.disconnect":
                return
    except (WebSocketDisconnect, RuntimeError):
        return
