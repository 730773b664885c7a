"""Trace events: a stream of what the network does, cheap enough to leave on.

The scheduler publishes events only while somebody listens (one attribute check otherwise).
Each subscriber has its own bounded buffer; a subscriber that falls behind loses the oldest
events — counted in ``EventStream.lost`` — and never slows the graph down.

An event is stored as one flat tuple, its *record*: ``(type, t, *fields)``, where ``t`` is
``time.perf_counter()`` seconds and ``fields`` follow ``EVENT_FIELDS[type]``. Making one costs a
tuple and a clock read; the dict form (``{"_type": "ActorCompleted", "timestamp": ms, ...}``)
is built only when a reader asks for dicts. ``recv_records`` hands out the records themselves
(``EventStream.as_dict`` converts one), for readers that keep up with a busy graph: the GIL is
shared, so the reader's cost per event counts against the graph's.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections import deque
from itertools import repeat
from operator import call as _call
from typing import Any

from .._errors import NetworkStateError

__all__ = ["EVENT_FIELDS", "EVENT_TYPES", "EventHub", "EventStream", "check_kinds"]

#: The clock of every record: monotonic, so events are stamped in the order they happen
#: even when the wall clock steps. ``_EPOCH`` turns it into seconds since the epoch.
_clock = time.perf_counter
_EPOCH = time.time() - time.perf_counter()

EVENT_TYPES = (
    "NetworkStarted",
    "ActorStarted",
    "ActorCompleted",
    "ActorFailed",
    "MessageSent",
    "NetworkIdle",
    "NetworkShutdown",
    "GpuTransfer",
    "PolicyRetry",
    "CircuitStateChanged",
    "CacheHit",
    "RateLimited",
    "TickTimedOut",
    "DeadLetter",
    "CheckpointWritten",
    "RunResumed",
)

#: Field names per event type, in the order they follow ``(type, t)`` in a record.
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "NetworkStarted": (),
    "ActorStarted": ("actorId", "component"),
    "ActorCompleted": ("actorId", "component", "duration", "outputSize"),
    "ActorFailed": ("actorId", "component", "error", "traceback"),
    "MessageSent": ("fromActor", "fromPort", "toActor", "toPort", "message"),
    "NetworkIdle": ("ticks",),
    "NetworkShutdown": ("dropped",),
    # host<->GPU copies of one GPU node's tick, or a lazy readback of its output (reflow._gpu)
    "GpuTransfer": ("actorId", "component", "uploads", "readbacks", "bytesUp", "bytesDown"),
    # node policies (``_policies*``): published only while somebody subscribes
    "PolicyRetry": ("actorId", "attempt", "delay", "error"),
    "CircuitStateChanged": ("actorId", "old", "new"),
    "CacheHit": ("actorId",),
    "RateLimited": ("actorId", "waited_s"),
    "TickTimedOut": ("actorId", "limit_s"),
    "DeadLetter": ("actorId", "error"),
    # durable runs (``_checkpoint``): published only while somebody subscribes
    "CheckpointWritten": ("runId", "seq", "ticks", "bytes", "seconds"),
    "RunResumed": ("runId", "seq", "packets"),
}


#: Event types the hot loop produces per tick and per packet; a hub whose subscribers all
#: filter them out lets the scheduler skip making them.
TICK_EVENTS = frozenset({"ActorStarted", "ActorCompleted"})
SENT_EVENTS = frozenset({"MessageSent"})


def _check_timeout(timeout_ms: Any) -> None:
    if type(timeout_ms) not in (int, float) or not 0 <= timeout_ms < math.inf:
        raise NetworkStateError(
            f"timeout_ms={timeout_ms!r}: expected a finite number of milliseconds, 0 or more"
        )


def check_kinds(kinds: Any) -> frozenset[str] | None:
    """Validate an ``events(kinds=...)`` filter: ``None`` (every type) or event type names."""
    if kinds is None:
        return None
    if isinstance(kinds, str):
        kinds = (kinds,)
    try:
        chosen = frozenset(kinds)
    except TypeError:
        chosen = None
    if chosen is None or not chosen or not all(isinstance(k, str) for k in chosen):
        raise NetworkStateError(
            f"events(kinds=...) expects event type names, got {kinds!r}; "
            f"types: {', '.join(EVENT_TYPES)}"
        )
    unknown = sorted(chosen - set(EVENT_TYPES))
    if unknown:
        raise NetworkStateError(
            f"events(kinds=...): unknown event type {', '.join(map(repr, unknown))}; "
            f"types: {', '.join(EVENT_TYPES)}"
        )
    return chosen


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

    def __init__(self, hub: EventHub, maxlen: int, kinds: frozenset[str] | None = None) -> None:
        self._hub = hub
        #: The event types this subscriber receives (``None``: all).
        self.kinds = kinds
        self._skipped = 0  # events of other types, never buffered
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
        return self._hub.seq - self._start - self._skipped - self._taken - len(self._buf)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _close(self) -> None:
        self.closed = True
        with self._cond:
            self._cond.notify_all()

    def _wait(self, timeout_ms: float) -> None:
        """Block until an event is buffered, the stream closes or ``timeout_ms`` passes."""
        buf = self._buf
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

    def recv(self, timeout_ms: int = 0) -> dict[str, Any] | None:
        """Wait up to ``timeout_ms`` for the next event; ``None`` on timeout."""
        if timeout_ms.__class__ is not int or timeout_ms < 0:  # one check on the hot path
            _check_timeout(timeout_ms)
        buf = self._buf
        if not buf and timeout_ms > 0 and not self.closed:
            self._wait(timeout_ms)
        try:
            ev = buf.popleft()
        except IndexError:
            return None
        self._taken += 1
        return _as_dict(ev)

    def recv_batch(self, max_events: int = 1024, timeout_ms: int = 0) -> list[dict[str, Any]]:
        """Wait up to ``timeout_ms`` for events; return every buffered one, oldest first, up
        to ``max_events`` (``[]`` on timeout). A reader that keeps up with a busy graph pays
        one wake-up per batch instead of one per event."""
        convert = _CONVERT
        return [convert[r[0]](r) for r in self._take(max_events, timeout_ms)]

    def recv_records(self, max_events: int = 1024, timeout_ms: int = 0) -> list[tuple[Any, ...]]:
        """``recv_batch`` without the dicts: the events as records ``(type, t, *fields)``
        (see the module docstring; ``EventStream.as_dict(record)`` gives the dict form).
        The cheapest way to read every event of a busy graph."""
        return self._take(max_events, timeout_ms)

    def _take(self, max_events: int, timeout_ms: float) -> list[tuple[Any, ...]]:
        """Wait up to ``timeout_ms`` for a record; then up to ``max_events`` buffered records,
        oldest first, removed from the buffer.

        The pops run in C, one call for the whole batch (the reader shares the GIL with the
        graph, so its cost per event counts). Only the writer appends, and a full buffer
        drops from the left without getting shorter, so ``len`` records are there to take,
        unless another thread reads the same stream at once: then ``extend`` keeps what was
        popped before the buffer ran dry."""
        if type(max_events) is not int or max_events < 0:
            raise NetworkStateError(
                f"max_events={max_events!r}: expected a whole number of events, 0 or more"
            )
        _check_timeout(timeout_ms)
        buf = self._buf
        if not buf and timeout_ms > 0 and not self.closed:
            self._wait(timeout_ms)
        out: list[tuple[Any, ...]] = []
        with contextlib.suppress(IndexError):
            out.extend(map(_call, repeat(buf.popleft, min(max_events, len(buf)))))
        self._taken += len(out)
        return out

    @staticmethod
    def as_dict(record: tuple[Any, ...]) -> dict[str, Any]:
        """The dict form of one record from :meth:`recv_records`."""
        return _as_dict(record)

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


def _ms(t: float) -> int:
    return int((t + _EPOCH) * 1000)


def _started(r: tuple[Any, ...]) -> dict[str, Any]:
    _, t, actor, component = r
    return {
        "_type": "ActorStarted",
        "timestamp": int((t + _EPOCH) * 1000),  # _ms, inlined: once per event read as a dict
        "actorId": actor,
        "component": component,
    }


def _completed(r: tuple[Any, ...]) -> dict[str, Any]:
    _, t, actor, component, duration, size = r
    return {
        "_type": "ActorCompleted",
        "timestamp": int((t + _EPOCH) * 1000),
        "actorId": actor,
        "component": component,
        "duration": duration,
        "outputSize": size,
    }


def _sent(r: tuple[Any, ...]) -> dict[str, Any]:
    _, t, src, src_port, dst, dst_port, msg = r
    data = msg.get("data") if isinstance(msg, dict) else msg
    if isinstance(data, (bytes, bytearray, str)):  # message_size, inlined
        size = len(data)
    elif isinstance(data, (list, dict)):
        size = len(repr(data))
    else:
        size = 8
    return {
        "_type": "MessageSent",
        "timestamp": int((t + _EPOCH) * 1000),
        "fromActor": src,
        "fromPort": src_port,
        "toActor": dst,
        "toPort": dst_port,
        "message": data,
        "size": size,
    }


def _generic(kind: str) -> Any:
    keys = EVENT_FIELDS[kind]

    def convert(r: tuple[Any, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {"_type": kind, "timestamp": _ms(r[1])}
        out.update(zip(keys, r[2:], strict=False))
        return out

    return convert


# one converter per event type: dict literals for the three the hot loop makes (the reader's
# cost per event counts against the graph: both share the GIL)
_CONVERT = {kind: _generic(kind) for kind in EVENT_TYPES}
_CONVERT.update(ActorStarted=_started, ActorCompleted=_completed, MessageSent=_sent)


def _as_dict(record: tuple[Any, ...]) -> dict[str, Any]:
    return _CONVERT[record[0]](record)  # type: ignore[no-any-return,unused-ignore]


class EventHub:
    """Fans events out to subscribers. ``active`` is the cheap check the hot loop makes."""

    def __init__(self) -> None:
        self._subs: list[EventStream] = []
        self.active = False
        #: Somebody wants ActorStarted/ActorCompleted (resp. MessageSent): the scheduler
        #: checks these before making per-tick (per-packet) events.
        self.wants_ticks = False
        self.wants_sent = False
        self.seq = 0  # events handed to subscribers so far
        #: Events the scheduler's hot loop appended and not yet handed out; the scheduler
        #: flushes once per batch of ticks (and ``publish`` at once), so a subscriber pays
        #: one deque ``extend`` and at most one wake-up per batch, not per event.
        self.pending: list[tuple[Any, ...]] = []

    def subscribe(self, maxlen: int = 65536, kinds: Any = None) -> EventStream:
        stream = EventStream(self, maxlen, check_kinds(kinds))
        self.flush()  # what was published before subscribing is not this stream's
        stream._start = self.seq
        self._subs = [*self._subs, stream]
        self._update()
        return stream

    def unsubscribe(self, stream: EventStream) -> None:
        self.flush()
        self._subs = [s for s in self._subs if s is not stream]
        self._update()

    def _update(self) -> None:
        subs = self._subs
        self.active = bool(subs)
        self.wants_ticks = any(s.kinds is None or s.kinds & TICK_EVENTS for s in subs)
        self.wants_sent = any(s.kinds is None or s.kinds & SENT_EVENTS for s in subs)

    def publish(self, kind: str, *fields: Any) -> None:
        """Publish one event now (after any pending ones, keeping their order)."""
        self.pending.append((kind, _clock(), *fields))
        self.flush()

    def flush(self) -> None:
        """Hand pending events to every subscriber, waking those that wait."""
        evs = self.pending
        if not evs:
            return
        self.pending = []
        self.seq += len(evs)
        for sub in self._subs:
            kinds = sub.kinds
            if kinds is None:
                sub._buf.extend(evs)
            else:
                kept = [ev for ev in evs if ev[0] in kinds]
                sub._skipped += len(evs) - len(kept)
                if not kept:
                    continue
                sub._buf.extend(kept)
            if sub._waiting:
                sub._wake()

    def close(self) -> None:
        self.flush()
        for sub in self._subs:
            sub._close()
