"""Async ticks: ``async def`` actors run as tasks on the scheduler's event loop.

One task runs a node's ticks one after another while it has input and room; ``ctx.asend``
into a full edge waits in ``_room`` until the consumer makes room (or the deadlock breaker
lets it past).
"""

from __future__ import annotations

import asyncio
import time

from ._actor import ActorContext
from ._messages import Message
from ._nodes import _Node
from ._sched_state import BATCH, SchedulerState

__all__ = ["AsyncTicks"]

ASYNC_WAIT_S = 0.001  # longest the output of a running async tick waits for the driver


class AsyncTicks(SchedulerState):
    """The scheduler's async tick path."""

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
