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
``_run_inline_traced`` run sync batches; ``ActorContext.done`` and ``.send`` inline
``_deliver`` (``_sched_state``) while nobody traces packets. ``tests/test_sched_hotpath.py``
runs each against its general path.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from .._errors import NetworkStateError
from ._events import _clock
from ._nodes import ActorFailure, _Node
from ._sched_async import AsyncTicks
from ._sched_state import BATCH
from ._sched_wakes import WakeTimers
from ._sched_workers import WorkerTicks
from ._streams import set_wait_hook

__all__ = ["ActorFailure", "Scheduler"]

SLICE = 64  # node batches between two yields to the event loop
MAX_NESTING = 48  # depth of nested draining from ctx.send inside a sync tick


class Scheduler(AsyncTicks, WorkerTicks, WakeTimers):
    """Runs one network's nodes. Everything here runs on the scheduler thread, except the
    methods documented as thread-safe (``call_soon``, ``_send_from_worker``, ``wake``).

    The state and the steps every tick shares are in ``SchedulerState`` (``_sched_state``);
    async ticks, worker ticks and ``ctx.wake_after`` timers in the three classes it builds on.
    Here: the sync (inline) tick paths, nested draining, deadlock breaking and the run loop."""

    # ------------------------------------------------------------------ running ticks
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
