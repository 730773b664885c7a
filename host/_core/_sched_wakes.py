"""``ctx.wake_after``: timers on the scheduler's loop that give a node a tick later.

A pending timer keeps the network from going idle (``wakes_pending``); a checkpoint reads
``wakes_by_node`` to turn the pending ones into ticks due after a resume.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from .._errors import NetworkStateError, TickStateError
from ._nodes import _Node
from ._sched_state import SchedulerState

__all__ = ["WakeTimers"]


class WakeTimers(SchedulerState):
    """The scheduler's ctx.wake_after timers."""

    #: Pending ctx.wake_after timers per node id (a checkpoint turns them into ticks due),
    #: made on the first wake. Class-level, not one more instance attribute: with three more
    #: in the instance's dict the hot path's ``self.`` lookups cost 1.3% more instructions
    #: per item (``bench_core.py --callgrind``); with ``durable`` alone, nothing measurable.
    wakes_by_node: dict[str, int] | None = None

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
