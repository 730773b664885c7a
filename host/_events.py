"""Trace events: a stream of what the network does, cheap enough to leave on.

The scheduler publishes events only while somebody listens (one attribute check otherwise).
Each subscriber has its own bounded buffer; a subscriber that falls behind loses the oldest
events — counted in ``EventStream.lost`` — and never slows the graph down. Events are stored
as tuples and turned into dicts (``{"_type": "ActorCompleted", ...}``) only when read.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from typing import Any

__all__ = ["EVENT_TYPES", "EventHub", "EventStream"]

_now = time.time

EVENT_TYPES = (
    "NetworkStarted",
    "ActorStarted",
    "ActorCompleted",
    "ActorFailed",
    "MessageSent",
    "NetworkIdle",
    "NetworkShutdown",
)

# field names per event type, in the order the scheduler publishes them
_FIELDS: dict[str, tuple[str, ...]] = {
    "NetworkStarted": (),
    "ActorStarted": ("actorId", "component"),
    "ActorCompleted": ("actorId", "component", "duration", "outputSize"),
    "ActorFailed": ("actorId", "component", "error", "traceback"),
    "MessageSent": ("fromActor", "fromPort", "toActor", "toPort", "message"),
    "NetworkIdle": ("ticks",),
    "NetworkShutdown": ("dropped",),
}


def message_size(message: Any) -> int:
    """An estimate of a message's payload size in bytes (exact for Bytes and String)."""
    data = message.get("data") if isinstance(message, dict) else message
    if isinstance(data, (bytes, bytearray, str)):
        return len(data)
    if isinstance(data, (list, dict)):
        return len(repr(data))
    return 8


class EventStream:
    """One subscriber's view of the event stream. ``recv(timeout_ms)`` returns the next
    event dict, or ``None`` when none arrived in time (or the network was shut down and
    everything was read)."""

    def __init__(self, hub: EventHub, maxlen: int) -> None:
        self._hub = hub
        # a full deque drops its oldest entry by itself; ``lost`` is derived from counts
        self._buf: deque[tuple[Any, ...]] = deque(maxlen=maxlen)
        self._cond = threading.Condition(threading.Lock())
        self._waiting = False
        self._start = hub.seq
        self._taken = 0
        self.closed = False

    @property
    def lost(self) -> int:
        """Events dropped because this subscriber fell behind."""
        return self._hub.seq - self._start - self._taken - len(self._buf)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _close(self) -> None:
        self.closed = True
        with self._cond:
            self._cond.notify_all()

    def recv(self, timeout_ms: int = 0) -> dict[str, Any] | None:
        """Wait up to ``timeout_ms`` for the next event; ``None`` on timeout."""
        buf = self._buf
        if not buf and timeout_ms > 0 and not self.closed:
            deadline = time.monotonic() + timeout_ms / 1000
            with self._cond:
                self._waiting = True
                try:
                    while not buf and not self.closed:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                finally:
                    self._waiting = False
        try:
            ev = buf.popleft()
        except IndexError:
            return None
        self._taken += 1
        return _as_dict(ev)

    async def arecv(self, timeout_ms: int = 0) -> dict[str, Any] | None:
        """``recv`` for async code: polls without blocking the event loop."""
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            ev = self.recv(0)
            if ev is not None or self.closed or time.monotonic() >= deadline:
                return ev
            await asyncio.sleep(0.005)

    def drain(self) -> list[dict[str, Any]]:
        """Every event buffered right now, oldest first."""
        out: list[dict[str, Any]] = []
        while True:
            try:
                ev = self._buf.popleft()
            except IndexError:
                return out
            self._taken += 1
            out.append(_as_dict(ev))

    def close(self) -> None:
        """Stop receiving events (idempotent)."""
        self._hub.unsubscribe(self)
        self._close()

    def __iter__(self) -> Any:
        while True:
            ev = self.recv(100)
            if ev is None:
                if self.closed and not self._buf:
                    return
                continue
            yield ev


def _as_dict(ev: tuple[Any, ...]) -> dict[str, Any]:
    kind, ts, fields = ev
    out: dict[str, Any] = {"_type": kind, "timestamp": int(ts * 1000)}
    for name, value in zip(_FIELDS[kind], fields, strict=False):
        out[name] = value
    if kind == "MessageSent":
        msg = out["message"]
        out["size"] = message_size(msg)
        out["message"] = msg.get("data") if isinstance(msg, dict) else msg
    return out


class EventHub:
    """Fans events out to subscribers. ``active`` is the cheap check the hot loop makes."""

    def __init__(self) -> None:
        self._subs: list[EventStream] = []
        self.active = False
        self.seq = 0  # events published so far

    def subscribe(self, maxlen: int = 65536) -> EventStream:
        stream = EventStream(self, maxlen)
        self._subs = [*self._subs, stream]
        self.active = True
        return stream

    def unsubscribe(self, stream: EventStream) -> None:
        self._subs = [s for s in self._subs if s is not stream]
        self.active = bool(self._subs)

    def publish(self, kind: str, *fields: Any) -> None:
        ev = (kind, _now(), fields)
        self.seq += 1
        for sub in self._subs:
            sub._buf.append(ev)
            if sub._waiting:
                sub._wake()

    def close(self) -> None:
        for sub in self._subs:
            sub._close()
