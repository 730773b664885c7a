"""Worker ticks: sandboxed and native actors run on a thread pool, off the scheduler thread.

A node's ticks go to a worker thread in batches; the thread hands its results back through
the completion queue (``_post``), which the scheduler thread drains. ``ctx.send`` from a
worker posts its packets the same way and waits for room only once an out-edge is full.
"""

from __future__ import annotations

import contextlib
import time

from .._errors import NetworkStateError, TickStateError
from ._actor import BufferedContext
from ._messages import Message
from ._nodes import _Node, _SendRequest
from ._sched_state import BATCH, SchedulerState
from ._workers import WorkerPool

__all__ = ["WORKER_BATCH", "WorkerTicks"]

WORKER_BATCH = 32  # ticks of one worker node handed to a thread at once


class WorkerTicks(SchedulerState):
    """The scheduler's worker tick path and the completion queue it answers through."""

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

    def _workers_stuck(self) -> bool:
        """No worker tick can finish on its own: each waits for room in send(), or every
        pool thread is taken by such a tick, so the queued batches cannot start."""
        return self.worker_inflight == self.blocked_senders or self.blocked_senders >= self._workers
