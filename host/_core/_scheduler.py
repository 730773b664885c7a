"""The scheduler: moves packets along bounded edges and runs ticks.

Invariants, in plain words:

* Every edge is a FIFO with a capacity. A node whose out-edge is full is *parked*: it is not
  given another tick until a consumer takes a packet from that edge. Only that node waits;
  the scheduler goes on with every other node.
* A node runs at most one tick at a time. Sync (inline) actors run on the scheduler thread in
  batches of up to ``BATCH`` ticks, with one reused context and no task or future per packet;
  ``async def`` actors run as tasks on the scheduler's event loop; "worker" actors run on a
  thread pool and hand their outputs back through a thread-safe completion queue.
* ``ctx.send`` into a full edge from a sync tick runs downstream nodes (nested, up to
  ``MAX_NESTING`` deep) until there is room, so one tick can stream without bound in bounded
  memory. A worker tick's ``send`` blocks its worker thread instead.
* When nothing can run, nothing is in flight and some parked node still has input, the graph
  would deadlock (a full cycle, or a join waiting on a parked producer). The scheduler then
  lets one parked node run one tick past its edge's capacity and counts it in ``overflowed``.
  So no graph can deadlock, and capacity is exceeded only where the graph leaves no choice.
* The network is idle when no node is ready, no tick is in flight and no completion is
  waiting. ``drive(until_idle=True)`` returns then.

Hot paths (each mirrors a general one and must stay in step with it): ``_run_inline_fast``
(one in-edge), ``_run_inline_rr`` (several, round robin as ``_take``) and
``_run_inline_traced`` run sync batches; ``ActorContext.done`` inlines ``_deliver`` while
nobody traces packets. ``tests/test_sched_hotpath.py`` runs each against its general path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterable
from typing import Any

from .._errors import ActorError, MessageError, NetworkStateError, TickStateError
from ._actor import ActorContext, BufferedContext
from ._events import EventHub, _clock
from ._messages import Message, as_message
from ._nodes import ActorFailure, _Edge, _Node, _SendRequest
from ._streams import set_wait_hook
from ._workers import WorkerPool

__all__ = ["ActorFailure", "Scheduler"]

log = logging.getLogger("reflow")

BATCH = 256  # ticks one node runs before the scheduler looks at other nodes
SLICE = 64  # node batches between two yields to the event loop
WORKER_BATCH = 32  # ticks of one worker node handed to a thread at once
MAX_NESTING = 48  # depth of nested draining from ctx.send inside a sync tick
ASYNC_WAIT_S = 0.001  # longest the output of a running async tick waits for the driver
FAILURES_KEPT = 1000


class Scheduler:
    """Runs one network's nodes. Everything here runs on the scheduler thread, except the
    methods documented as thread-safe (``call_soon``, ``_send_from_worker``, ``wake``)."""

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

    #: Pending ctx.wake_after timers per node id (a checkpoint turns them into ticks due),
    #: made on the first wake. Class-level, not one more instance attribute: with three more
    #: in the instance's dict the hot path's ``self.`` lookups cost 1.3% more instructions
    #: per item (``bench_core.py --callgrind``); with ``durable`` alone, nothing measurable.
    wakes_by_node: dict[str, int] | None = None

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

    # ------------------------------------------------------------------ running ticks
    def _requeue(self, node: _Node) -> None:
        if self._has_input(node):
            if node.nfull:
                node.parked = True
            elif not node.queued:
                node.queued = True
                self.ready.append(node)

    def _run(self, node: _Node, force: bool = False) -> bool:
        """Give ``node`` its next tick(s). Returns True if anything started."""
        if node.busy:
            return False
        if node.nfull and not force:
            if self._has_input(node):
                node.parked = True
            return False
        mode = node.mode
        if mode == "inline":
            if force or node.await_all or node.source_pending:
                return self._run_inline(node, force)
            if len(node.in_edges) == 1:
                if self.hub.wants_ticks:
                    return self._run_inline_traced(node)
                return self._run_inline_fast(node)
            if self.hub.wants_ticks:
                return self._run_inline(node, force)
            return self._run_inline_rr(node)
        if mode == "async":
            return self._start_async(node)
        return self._start_worker(node)

    def _run_inline_fast(self, node: _Node) -> bool:
        """Single in-edge, sync actor, no tracing: the hot loop."""
        e = node.in_edges[0]
        q = e.queue
        if not q:
            return False
        pop = q.popleft
        below = e.capacity - 1
        src = e.src
        port = e.dst_port
        ctx = node.ctx
        assert ctx is not None
        run = node.run
        n = 0
        node.busy = True
        try:
            while q and not node.nfull and n < BATCH:
                msg = pop()
                if len(q) == below:
                    self._unfull(src)
                ctx.inputs = {port: msg}
                ctx._state = 0
                n += 1
                try:
                    run(ctx)
                except Exception as exc:
                    ctx._emitted = None
                    self._tick_failed(node, exc)
                    continue
                if ctx._state != 1:
                    self._tick_unresolved(node, ctx)
        finally:
            node.busy = False
            node.ticks += n
        if q:  # _requeue, inlined for the one in-edge
            if node.nfull:
                node.parked = True
            elif not node.queued:
                node.queued = True
                self.ready.append(node)
        return True

    def _run_inline_rr(self, node: _Node) -> bool:
        """Several in-edges, sync actor, no tracing: as ``_run_inline_fast``, each tick taking
        the next packet round robin over the in-edges (as ``_take`` does)."""
        edges = node.in_edges
        k = len(edges)
        ctx = node.ctx
        assert ctx is not None
        run = node.run
        i = node.rr % k
        n = 0
        node.busy = True
        try:
            while n < BATCH and not node.nfull:
                e = edges[i]  # the edge whose turn it is; the others only if it is empty
                q = e.queue
                if not q:
                    for j in range(1, k):
                        e = edges[(i + j) % k]
                        q = e.queue
                        if q:
                            i = (i + j) % k
                            break
                    else:
                        break
                i += 1
                if i == k:
                    i = 0
                msg = q.popleft()
                if len(q) == e.capacity - 1:
                    self._unfull(e.src)
                ctx.inputs = {e.dst_port: msg}
                ctx._state = 0
                n += 1
                try:
                    run(ctx)
                except Exception as exc:
                    ctx._emitted = None
                    self._tick_failed(node, exc)
                    continue
                if ctx._state != 1:
                    self._tick_unresolved(node, ctx)
        finally:
            node.rr = i
            node.busy = False
            node.ticks += n
        self._requeue(node)
        return n > 0

    def _run_inline_traced(self, node: _Node) -> bool:
        """The hot loop while someone listens: as ``_run_inline_fast``, with each tick's
        events appended to the hub's pending list and handed out once per batch."""
        e = node.in_edges[0]
        q = e.queue
        if not q:
            return False
        hub = self.hub
        pop = q.popleft
        below = e.capacity - 1
        src = e.src
        port = e.dst_port
        ctx = node.ctx
        assert ctx is not None
        run = node.run
        nid, comp = node.id, node.component
        clock = _clock
        n = 0
        node.busy = True
        self._inline_depth += 1
        try:
            while q and not node.nfull and n < BATCH:
                msg = pop()
                if len(q) == below:
                    self._unfull(src)
                ctx.inputs = {port: msg}
                ctx._state = 0
                n += 1
                node.out_count = 0
                t0 = clock()  # the Started stamp, and the start of the tick's duration
                hub.pending.append(("ActorStarted", t0, nid, comp))
                try:
                    run(ctx)
                except Exception as exc:
                    ctx._emitted = None
                    self._tick_failed(node, exc)
                    continue
                if ctx._state != 1:
                    self._tick_unresolved(node, ctx)
                else:
                    t1 = clock()  # monotonic: wall-clock steps never show here
                    hub.pending.append(("ActorCompleted", t1, nid, comp, t1 - t0, node.out_count))
        finally:
            node.busy = False
            node.ticks += n
            self._inline_depth -= 1
            hub.flush()
        self._requeue(node)
        return True

    def _run_inline(self, node: _Node, force: bool) -> bool:
        """General sync path: joins, several in-edges, sources, forced ticks, tracing."""
        ctx = node.ctx
        assert ctx is not None
        run = node.run
        hub = self.hub
        n = 0
        node.busy = True
        self._inline_depth += 1
        try:
            while n < BATCH and (force or not node.nfull):
                inputs = self._take(node)
                if inputs is None:
                    break
                force = False
                ctx.inputs = inputs
                ctx._state = 0
                n += 1
                traced = hub.wants_ticks
                if traced:
                    hub.publish("ActorStarted", node.id, node.component)
                    node.out_count = 0
                    t0 = time.perf_counter()
                try:
                    run(ctx)
                except Exception as exc:
                    ctx._emitted = None
                    self._tick_failed(node, exc)
                    continue
                if ctx._state != 1:
                    self._tick_unresolved(node, ctx)
                elif traced:
                    hub.publish(
                        "ActorCompleted",
                        node.id,
                        node.component,
                        time.perf_counter() - t0,
                        node.out_count,
                    )
        finally:
            node.busy = False
            node.ticks += n
            self._inline_depth -= 1
            hub.flush()
        self._requeue(node)
        return n > 0

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

    # -- async ticks ------------------------------------------------------------------------
    def _start_async(self, node: _Node) -> bool:
        durable = self.durable
        if durable is not None and durable.holding:
            return durable.hold(node)
        inputs = self._take(node)
        if inputs is None:
            return False
        assert self._loop is not None
        node.busy = True
        self.async_inflight += 1
        task = self._loop.create_task(self._async_ticks(node, inputs))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _async_ticks(self, node: _Node, inputs: dict[str, Message]) -> None:
        """One task runs an async node's ticks one after another while it has input and
        room, up to ``BATCH`` (a task per tick would cost more than most ticks do). The node
        stays busy and in flight for the whole run, as for a single tick."""
        hub = self.hub
        loop = self._loop
        assert loop is not None
        n = 0
        durable = self.durable
        try:
            while True:
                ctx = ActorContext(self, node)
                ctx.inputs = inputs
                n += 1
                if hub.wants_ticks:
                    hub.publish("ActorStarted", node.id, node.component)
                t0 = time.perf_counter()
                try:
                    await node.run(ctx)
                except asyncio.CancelledError:
                    self._record_failure(node, "tick cancelled by network shutdown", "", None)
                    raise
                except Exception as exc:
                    self._tick_failed(node, exc)
                else:
                    if ctx._state != 1:
                        self._tick_unresolved(node, ctx)
                    elif hub.wants_ticks:
                        hub.publish(
                            "ActorCompleted",
                            node.id,
                            node.component,
                            time.perf_counter() - t0,
                            node.out_count,
                        )
                if self._sleeping and not self._wake_sent and self.ready:
                    # this tick gave the sleeping driver work: have it come soon, not at
                    # once, so that it takes the output of several ticks in one pass
                    self._wake_sent = True
                    loop.call_later(ASYNC_WAIT_S, self.wake)
                if node.nfull or n >= BATCH or self._stopping:
                    break
                if durable is not None and durable.holding:  # a checkpoint waits for this
                    break
                next_inputs = self._take(node)
                if next_inputs is None:
                    break
                inputs = next_inputs
        finally:
            node.busy = False
            node.ticks += n
            self.async_inflight -= 1
            self._requeue(node)
            self.wake()

    # -- worker ticks ---------------------------------------------------------------------
    def _pool(self) -> WorkerPool:
        if self._executor is None:
            self._executor = WorkerPool(self._workers)
        return self._executor

    def _start_worker(self, node: _Node) -> bool:
        """Hand a batch of ``node``'s ticks to a worker thread: as many as have input, up
        to WORKER_BATCH and to the room left on its out-edges (one at a time when traced)."""
        durable = self.durable
        if durable is not None and durable.holding:
            return durable.hold(node)
        limit = 1
        if not self.hub.wants_ticks:
            limit = WORKER_BATCH
            for edges in node.routes.values():
                for e in edges:
                    if e.capacity > 0:
                        limit = min(limit, e.capacity - len(e.queue))
            limit = max(limit, 1)
        batch: list[BufferedContext] = []
        while len(batch) < limit:
            inputs = self._take(node)
            if inputs is None:
                break
            ctx = BufferedContext(self, node)
            ctx.inputs = inputs
            batch.append(ctx)
        if not batch:
            return False
        node.busy = True
        self.worker_inflight += 1
        if self.hub.wants_ticks:
            self.hub.publish("ActorStarted", node.id, node.component)
        self._pool().submit(lambda: self._worker_ticks(node, batch))
        return True

    def _worker_ticks(self, node: _Node, batch: list[BufferedContext]) -> None:
        """Runs on a worker thread: the batch's ticks in order, then one completion.

        An actor with ``run_batch(ctxs) -> list[exception | None]`` gets the whole batch in
        one call (engines amortise their per-call cost that way); it must leave every
        context resolved or report its tick's exception."""
        run_batch = node.run_batch
        if run_batch is not None and len(batch) > 1:
            t0 = time.perf_counter()
            try:
                errors = run_batch(batch)
            except Exception as e:  # the whole batch failed the same way
                errors = [e] * len(batch)
            dur = (time.perf_counter() - t0) / len(batch)
            self._post(("ticks", node, [(c, x, dur) for c, x in zip(batch, errors, strict=True)]))
            return
        results = []
        run = node.run
        for ctx in batch:
            t0 = time.perf_counter()
            exc: BaseException | None = None
            try:
                run(ctx)
            except Exception as e:
                exc = e
            results.append((ctx, exc, time.perf_counter() - t0))
        self._post(("ticks", node, results))

    def _send_from_worker(self, node: _Node, pairs: list[tuple[str, Message]]) -> None:
        """ctx.send from a worker thread: deliver on the scheduler thread, wait for room.

        While no out-edge is full, up to ``send_window`` sends (the smallest out-edge
        capacity) are posted without waiting, so a streaming worker does not pay a thread
        round trip per packet; an edge can then hold at most about twice its capacity."""
        routes = node.routes
        for port, _msg in pairs:
            if port not in routes:
                raise self._undeclared(node, port)
        if node.send_window == 0:
            caps = [e.capacity for edges in routes.values() for e in edges if e.capacity > 0]
            node.send_window = min(caps, default=BATCH)
        # posted is written only by this worker thread, routed only by the scheduler thread
        if not node.nfull and node.posted - node.routed < node.send_window:
            node.posted += 1
            self._post(("send", node, pairs, None))
            return
        req = _SendRequest()
        self._post(("send", node, pairs, req))
        t0 = time.perf_counter()
        try:
            self._wait_sent(req)
        finally:
            node.blocked_s += time.perf_counter() - t0  # only this worker writes it now
        if req.error is not None:
            raise req.error

    def _wait_sent(self, req: _SendRequest) -> None:
        while not req.event.wait(0.5):
            if self._stopping:
                raise NetworkStateError("network shut down while a worker tick was sending")

    async def _room(self, node: _Node) -> None:
        """Wait until ``node`` has no full out-edge (for ``ctx.asend``)."""
        assert self._loop is not None
        self.wake()  # the driver may be asleep: it has to run the consumer to make room
        while node.nfull:
            fut: asyncio.Future[bool | None] = self._loop.create_future()
            node.room_waiter = fut
            self.blocked_async += 1
            try:
                await fut
            finally:
                if node.room_waiter is fut:
                    node.room_waiter = None
                    self.blocked_async -= 1
            if fut.result() is not None:  # released by the deadlock breaker
                return

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

    def _drain_completions(self) -> bool:
        comps = self.completions
        if not comps:
            return False
        while comps:
            item = comps.popleft()
            if item[0] == "ticks":
                _, node, results = item
                self.worker_inflight -= 1
                node.busy = False
                node.ticks += len(results)
                for ctx, exc, dur in results:
                    self._worker_done(node, ctx, exc, dur)
                self._requeue(node)
            elif item[0] == "send":
                _, node, pairs, req = item
                if req is None:  # posted without waiting (see _send_from_worker)
                    node.routed += 1
                    try:
                        self._deliver(node, pairs)
                    except TickStateError as err:
                        self._tick_failed(node, err)
                    continue
                try:
                    self._deliver(node, pairs)
                except TickStateError as err:
                    req.error = err
                if node.nfull and req.error is None:
                    node.send_waiter = req
                    self.blocked_senders += 1
                else:
                    req.event.set()
            elif item[0] == "call":
                item[1]()
        return True

    def _worker_done(
        self, node: _Node, ctx: BufferedContext, exc: BaseException | None, dur: float
    ) -> None:
        if exc is not None:
            if ctx._state == 1:  # done() came first: its packets go out, as inline ticks do
                with contextlib.suppress(TickStateError):  # reported as failed below anyway
                    self._deliver(node, ctx.output_pairs())
            self._tick_failed(node, exc)
        elif ctx._state != 1:
            self._tick_unresolved(node, ctx)
        else:
            pairs = ctx.output_pairs()
            try:
                self._deliver(node, pairs)
            except TickStateError as err:
                self._tick_failed(node, err)
            else:
                if self.hub.wants_ticks:
                    self.hub.publish("ActorCompleted", node.id, node.component, dur, len(pairs))

    # ------------------------------------------------------------------ nested draining
    def _relieve(self, node: _Node) -> None:
        """A sync tick of ``node`` filled an out-edge mid-tick: make room before it goes on."""
        if self._nesting >= MAX_NESTING:
            self.overflowed += 1
            return
        self._nesting += 1
        t0 = time.perf_counter()
        try:
            while node.nfull:
                if self._step():
                    continue
                if not self._workers_stuck():
                    self._await_completion()
                    continue
                self.overflowed += 1  # nothing else can make room: let this edge grow
                return
        finally:
            self._nesting -= 1
            node.blocked_s += time.perf_counter() - t0

    def _await_completion(self) -> None:
        """Block (at most 50 ms) until a worker posts a completion. ``_relieving`` is raised
        before the queue is looked at, so a post either is seen here or sets the event."""
        self._relieving += 1
        try:
            self._completion_evt.clear()
            if not self.completions:
                self._completion_evt.wait(0.05)
        finally:
            self._relieving -= 1

    def _help(self) -> bool:
        """Wait hook for blocking calls made inside a sync tick (Stream send/recv): run one
        step of other work, unless nested too deep. True if anything happened."""
        if self._nesting >= MAX_NESTING:
            return False
        self._nesting += 1
        try:
            return self._step()
        finally:
            self._nesting -= 1

    def _step(self) -> bool:
        """Run one ready node's batch (or handle completions). False if nothing could run."""
        progressed = self._drain_completions() if self.completions else False
        ready = self.ready
        while ready:
            node = ready.popleft()
            node.queued = False
            if self._run(node):
                return True
        return progressed

    # ------------------------------------------------------------------ deadlock breaking
    def _break_deadlock(self) -> bool:
        for node in self.nodes.values():
            if node.parked and not node.busy and self._has_input(node):
                self.overflowed += 1
                node.parked = False
                if node.mode == "inline":
                    self._run_inline(node, force=True)
                elif node.mode == "async":
                    self._start_async(node)
                else:
                    self._start_worker(node)
                return True
        for node in self.nodes.values():
            if node.send_waiter is not None:
                self.overflowed += 1
                waiter, node.send_waiter = node.send_waiter, None
                self.blocked_senders -= 1
                waiter.event.set()
                return True
            room = node.room_waiter
            if room is not None:
                self.overflowed += 1
                node.room_waiter = None
                self.blocked_async -= 1
                if not room.done():
                    room.set_result(True)
                return True
        return False

    def _workers_stuck(self) -> bool:
        """No worker tick can finish on its own: each waits for room in send(), or every
        pool thread is taken by such a tick, so the queued batches cannot start."""
        return self.worker_inflight == self.blocked_senders or self.blocked_senders >= self._workers

    def _stuck(self) -> bool:
        """Nothing in flight can finish on its own: every in-flight tick waits for room."""
        return self.async_inflight == self.blocked_async and self._workers_stuck()

    # ------------------------------------------------------------------ the run loop
    @property
    def inflight(self) -> int:
        return self.async_inflight + self.worker_inflight

    async def drive(self, until_idle: bool, on_idle: Any = None, stop: Any = None) -> None:
        """The run loop. Runs ready nodes in slices, lets async ticks and worker
        completions in between, and sleeps when there is nothing to do.

        Returns at idle when ``until_idle``; otherwise when ``stop()`` is true.
        """
        self._loop = asyncio.get_running_loop()
        self._thread_id = threading.get_ident()
        self._wake_evt = asyncio.Event()
        set_wait_hook(self._help)
        try:
            await self._drive(until_idle, on_idle, stop)
        finally:
            set_wait_hook(None)

    # The run loop, one pass per iteration:
    #   1. completions posted by worker threads are handled first (they free nodes, add input);
    #   2. up to SLICE ready nodes get a batch each, then the event loop runs once, so async
    #      ticks and thread-safe calls interleave with sync batches — unless the slice left
    #      nothing ready while async ticks run: then straight on to 3 and 4, so that the
    #      output of async ticks is taken in batches, not one packet per loop iteration;
    #   3. with nothing ready: if every in-flight tick waits for room, one parked node is let
    #      past its capacity (the only place capacity is exceeded); with nothing in flight the
    #      network is idle;
    #   4. otherwise sleep until a completion, an injected packet or a finished async tick
    #      wakes the loop (``_sleeping`` tells senders on other threads to wake it). An async
    #      tick's done() adds work without a wake of its own: the tick's task then wakes the
    #      loop ASYNC_WAIT_S later, so that work waits no longer than that.
    # Invariants at the top of each pass: a node is in ``ready`` at most once (``queued``); a
    # node with a full out-edge is never in ``ready`` on its own account (it is ``parked``);
    # ``busy`` nodes are skipped by ``_run`` and re-queued by whoever ends their tick.
    async def _drive(self, until_idle: bool, on_idle: Any, stop: Any) -> None:
        assert self._wake_evt is not None and self._loop is not None
        ready = self.ready
        while True:
            if stop is not None and stop():
                return
            self._drain_completions()
            if ready:
                durable = self.durable
                for _ in range(SLICE):
                    if not ready:
                        break
                    node = ready.popleft()
                    node.queued = False
                    self._run(node)
                    if durable is not None:  # the one check per step a durable run costs
                        durable.step()
                if ready or not self.async_inflight:
                    await asyncio.sleep(0)
                    continue
            if self.durable is not None and self.durable.holding and self.durable.settle():
                continue  # the checkpoint that waited was written, or gave up: nodes released
            if not self.completions and self._stuck():
                if self._break_deadlock():
                    continue
                if self.inflight == 0 and not self.wakes_pending:
                    if on_idle is not None:
                        on_idle()
                    if until_idle:
                        return
            # nothing runnable now: sleep until a tick completes or work is injected
            self._wake_evt.clear()
            self._wake_sent = False
            self._sleeping = True
            try:
                if self.completions or ready or (stop is not None and stop()):
                    await asyncio.sleep(0)
                    continue
                if self.inflight == 0 and until_idle and not self.wakes_pending:
                    continue
                await self._wake_evt.wait()
            finally:
                self._sleeping = False

    def call_soon(self, fn: Any) -> None:
        """Run ``fn()`` on the scheduler thread (thread-safe)."""
        self._post(("call", fn))

    # ------------------------------------------------------------------ waking later
    def wake_after(self, node: _Node, seconds: Any) -> None:
        """``ctx.wake_after``: give ``node`` a tick with empty inputs in ``seconds``
        (thread-safe; counted in ``wakes_pending`` at once, so the network cannot go idle
        between the call and the timer's start)."""
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not 0 <= seconds <= 86_400
        ):
            raise TickStateError(
                f"ctx.wake_after({seconds!r}) in node {node.id!r}: expected a number of "
                f"seconds from 0 to 86400",
                node=node.id,
                component=node.component,
            )
        if self._stopping:
            raise NetworkStateError(
                f"ctx.wake_after in node {node.id!r}: the network is shutting down"
            )
        with self._wake_lock:
            self.wakes_pending += 1
            wakes = self.wakes_by_node
            if wakes is None:
                wakes = self.wakes_by_node = {}
            wakes[node.id] = wakes.get(node.id, 0) + 1
        if self._loop is not None and threading.get_ident() == self._thread_id:
            self._arm_wake(node, float(seconds))
        else:
            self._post(("call", lambda: self._arm_wake(node, float(seconds))))

    def _arm_wake(self, node: _Node, seconds: float) -> None:
        assert self._loop is not None
        box: list[asyncio.TimerHandle] = []
        handle = self._loop.call_later(seconds, self._woken, node, box)
        box.append(handle)
        self._wake_handles.add(handle)

    def _woken(self, node: _Node, box: list[asyncio.TimerHandle]) -> None:
        self._wake_handles.discard(box[0])
        with self._wake_lock:
            self.wakes_pending -= 1
            wakes = self.wakes_by_node
            if wakes is not None:
                left = wakes.get(node.id, 1) - 1
                if left:
                    wakes[node.id] = left
                else:
                    wakes.pop(node.id, None)
        if self._stopping:
            return
        node.source_pending += 1  # one more tick with empty inputs (as a source's first)
        if not node.busy and not node.queued:
            node.queued = True
            self.ready.append(node)
        self.wake()

    # ------------------------------------------------------------------ shutdown
    def stop(self) -> int:
        """Stop workers and release blocked senders. Returns the packets left undelivered."""
        self._stopping = True
        for node in self.nodes.values():
            if node.send_waiter is not None:
                node.send_waiter.error = NetworkStateError("network shut down")
                node.send_waiter.event.set()
                node.send_waiter = None
        for task in list(self._tasks):
            task.cancel()
        for handle in list(self._wake_handles):  # pending ctx.wake_after timers
            handle.cancel()
        self._wake_handles.clear()
        self.wakes_pending = 0
        self.wakes_by_node = None
        if self._executor is not None:
            self._executor.close()
            self._executor = None
        left = 0
        for node in self.nodes.values():
            for e in node.in_edges:
                left += len(e.queue)
        return left

    def pending(self) -> dict[str, int]:
        """Packets waiting per node, for timeouts and summaries."""
        out = {}
        for node in self.nodes.values():
            n = sum(len(e.queue) for e in node.in_edges)
            if n or node.busy:
                out[node.id] = n
        return out
