"""The scheduler's state and the primitives every kind of tick uses.

``SchedulerState`` holds what one network's scheduler knows (nodes, the ready queue, the
completion queue, counters) and does the steps that all tick paths share: delivering packets
onto bounded edges (the hot path), taking a tick's inputs, re-queueing a node, recording a
failed tick, and handing work to the scheduler thread from other threads (``_post``,
``wake``, ``call_soon``). The kinds of tick build on it (``_sched_async``,
``_sched_workers``, ``_sched_wakes``) and ``_scheduler.Scheduler`` joins them with the run
loop. Everything runs on the scheduler thread except the methods said to be thread-safe.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import traceback
from collections import deque
from collections.abc import Iterable
from typing import Any

from .._errors import ActorError, MessageError, TickStateError
from ._actor import ActorContext
from ._events import EventHub, _clock
from ._messages import Message, as_message
from ._nodes import ActorFailure, _Edge, _Node
from ._workers import WorkerPool

__all__ = ["BATCH", "SchedulerState"]

log = logging.getLogger("reflow")

BATCH = 256  # ticks one node runs before the scheduler looks at other nodes
FAILURES_KEPT = 1000


class SchedulerState:
    """One network's scheduler state and shared tick steps (see the module docstring)."""

    def __init__(self, hub: EventHub, workers: int | None = None) -> None:
        self.hub = hub
        self.nodes: dict[str, _Node] = {}
        self.ready: deque[_Node] = deque()
        self.completions: deque[tuple[Any, ...]] = deque()
        self.failures: list[ActorFailure] = []
        self.failure_count = 0
        self.overflowed = 0
        self.dropped = 0
        self.async_inflight = 0
        self.worker_inflight = 0
        self.blocked_senders = 0  # worker ticks waiting in send() for room
        self.blocked_async = 0  # async ticks waiting in asend() for room
        self._workers = workers or max(2, os.cpu_count() or 2)
        self._executor: WorkerPool | None = None
        self._nesting = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_evt: asyncio.Event | None = None
        self._sleeping = False
        #: The driver was woken since it last went to sleep: senders on other threads wake
        #: it once per sleep, not once per packet (each wake is a write to the loop's pipe).
        self._wake_sent = False
        #: Set for ``_relieve`` waiting on a worker: only then is a completion signalled.
        self._completion_evt = threading.Event()
        self._relieving = 0
        self._stopping = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._thread_id = 0
        self._inline_depth = 0  # nested inline batches running (their end flushes events)
        #: ctx.wake_after timers not yet fired (the network is not idle while any is), their
        #: handles on the loop, and the lock a worker thread takes to add one.
        self.wakes_pending = 0
        self._wake_handles: set[asyncio.TimerHandle] = set()
        self._wake_lock = threading.Lock()
        #: Durable runs (``_checkpoint.Durable``): asked once per top-level step whether a
        #: checkpoint is due. While one waits for async and worker ticks in flight to finish
        #: (``durable.holding``), no new async or worker tick starts. None: not durable.
        self.durable: Any = None

    # ------------------------------------------------------------------ delivery (hot path)
    def _deliver(self, node: _Node, pairs: Iterable[tuple[str, Any]]) -> None:
        """Append each (port, message) to the port's edges and mark their consumers ready.
        The one delivery path: done/send pass ``outputs.items()``, worker completions pass
        their recorded pairs."""
        routes = node.routes
        ready = self.ready
        traced = self.hub.wants_sent
        for port, msg in pairs:
            if msg is None:
                continue
            if type(msg) is not Message:
                msg = self._checked(node, port, msg)
            try:
                edges = routes[port]
            except KeyError:
                raise self._undeclared(node, port) from None
            if not edges:
                self.dropped += 1
                continue
            for e in edges:
                q = e.queue
                try:
                    q.append(msg)
                except AttributeError:  # the shared empty queue of an unused edge
                    q = e.queue = deque((msg,))
                if len(q) == e.capacity:
                    node.nfull += 1
                d = e.dst
                if not d.queued:
                    d.queued = True
                    ready.append(d)
            if traced:  # _trace_sent, inlined: this runs once per traced packet
                node.out_count += 1
                hub = self.hub
                pending = hub.pending
                ts = _clock()
                nid = node.id
                for e in edges:
                    pending.append(("MessageSent", ts, nid, port, e.dst.id, e.dst_port, msg))
                if not self._inline_depth:  # inside an inline batch the batch's end flushes
                    hub.flush()

    def _checked(self, node: _Node, port: str, msg: Any) -> Message:
        try:
            return as_message(msg, f"$.{port}")
        except MessageError as exc:
            raise TickStateError(
                f"node {node.id!r} ({node.component}) produced an invalid message on port "
                f"{port!r}: {exc} (at {exc.path})",
                node=node.id,
                component=node.component,
            ) from exc

    def _undeclared(self, node: _Node, port: str) -> TickStateError:
        declared = ", ".join(node.routes) or "none"
        return TickStateError(
            f"node {node.id!r} ({node.component}) sent on undeclared out-port {port!r}; "
            f"declared out-ports: {declared}",
            node=node.id,
            component=node.component,
        )

    def _unfull(self, src: _Node) -> None:
        """An out-edge of ``src`` dropped below capacity."""
        src.nfull -= 1
        if src.nfull == 0:
            if src.parked:
                src.parked = False
                if not src.queued:
                    src.queued = True
                    self.ready.append(src)
            waiter = src.send_waiter
            if waiter is not None:
                src.send_waiter = None
                self.blocked_senders -= 1
                waiter.event.set()
            room = src.room_waiter
            if room is not None:
                src.room_waiter = None
                self.blocked_async -= 1
                if not room.done():
                    room.set_result(None)

    # ------------------------------------------------------------------ taking input
    def _has_input(self, node: _Node) -> bool:
        if node.source_pending:
            return True
        if node.await_all:
            ports = node.await_ports
            return bool(ports) and all(any(e.queue for e in node.port_edges[p]) for p in ports)
        for e in node.in_edges:  # noqa: SIM110 -- not any(): no generator at each batch's end
            if e.queue:
                return True
        return False

    def _pop(self, e: _Edge) -> Message:
        q = e.queue
        msg: Message = q.popleft()
        if len(q) == e.capacity - 1:
            self._unfull(e.src)
        return msg

    def _take(self, node: _Node) -> dict[str, Message] | None:
        """The inputs of the node's next tick, removed from its edges; None if not ready."""
        if node.source_pending:  # a source's first tick, or a ctx.wake_after (a count)
            node.source_pending -= 1
            return {}
        if node.await_all:
            chosen = []
            for port in node.await_ports:
                for e in node.port_edges[port]:
                    if e.queue:
                        chosen.append(e)
                        break
                else:
                    return None
            if not chosen:
                return None
            taken = {e.dst_port: self._pop(e) for e in chosen}
            if node.extra_in:  # packets on undeclared in-ports ride along (as offbit_reflow)
                for e in node.extra_in:
                    if e.queue and e.dst_port not in taken:
                        taken[e.dst_port] = self._pop(e)
            return taken
        edges = node.in_edges
        n = len(edges)
        start = node.rr
        for i in range(n):
            e = edges[(start + i) % n]
            if e.queue:
                node.rr = (start + i + 1) % n
                return {e.dst_port: self._pop(e)}
        return None

    # ------------------------------------------------------------------ after a tick
    def _requeue(self, node: _Node) -> None:
        if self._has_input(node):
            if node.nfull:
                node.parked = True
            elif not node.queued:
                node.queued = True
                self.ready.append(node)

    def _tick_failed(self, node: _Node, exc: BaseException) -> None:
        if isinstance(exc, ActorError) and not exc.node:
            exc.node, exc.component = node.id, node.component
        self._record_failure(
            node,
            f"{type(exc).__name__}: {exc}",
            "".join(traceback.format_exception(exc)),
            exc,
        )

    def _tick_unresolved(self, node: _Node, ctx: ActorContext) -> None:
        ctx._emitted = None
        if ctx._state == 2:
            self._record_failure(node, ctx._error or "failed", "", None)
        else:
            self._record_failure(
                node,
                "run() returned without calling ctx.done() or ctx.fail(); "
                "each tick must end with exactly one of them",
                "",
                None,
            )

    def _record_failure(self, node: _Node, error: str, tb: str, exc: BaseException | None) -> None:
        node.failures += 1
        self.failure_count += 1
        failure = ActorFailure(node.id, node.component, error, tb, exc)
        if len(self.failures) < FAILURES_KEPT:
            self.failures.append(failure)
        log.warning("tick failed: %s", failure)
        if self.hub.active:
            self.hub.publish("ActorFailed", node.id, node.component, error, tb)

    # ------------------------------------------------------------------ from other threads
    def _post(self, item: tuple[Any, ...]) -> None:
        """Hand ``item`` to the scheduler thread (thread-safe). Signals only whoever waits:
        a ``_relieve`` blocked on a worker, or the driver asleep (once per sleep)."""
        self.completions.append(item)
        if self._relieving:
            self._completion_evt.set()
        if self._sleeping and not self._wake_sent:
            self._wake_sent = True
            self.wake()

    def wake(self) -> None:
        """Wake the driver (thread-safe)."""
        loop, evt = self._loop, self._wake_evt
        if loop is None or evt is None:
            return
        try:
            if threading.get_ident() == self._thread_id:
                evt.set()
            else:
                loop.call_soon_threadsafe(evt.set)
        except RuntimeError:  # loop already closed
            pass

    def call_soon(self, fn: Any) -> None:
        """Run ``fn()`` on the scheduler thread (thread-safe)."""
        self._post(("call", fn))
