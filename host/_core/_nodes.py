"""The records the scheduler works on: nodes, edges, failed ticks.

Plain slotted objects, no behaviour beyond construction: the scheduler (``_scheduler``) and
the network that builds graphs (``_network``) both read and write their fields directly on
the hot path. Kept apart so either can be read without the other.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from ._actor import Actor, ActorContext

__all__ = ["_NEVER", "_NO_QUEUE", "ActorFailure", "_Edge", "_Node", "_SendRequest", "_Sink"]

_NEVER = -1  # capacity of an unbounded edge (initial packets, collectors)


@dataclass
class ActorFailure:
    """One failed tick: which node, which component, what went wrong."""

    node: str
    component: str
    error: str
    traceback: str = ""
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        return f"node {self.node!r} ({self.component}): {self.error}"


#: The queue of an edge that never held a packet: empty, falsy, len 0 like a deque, and
#: shared. An empty deque costs 760 bytes; a graph of 100 k idle edges should not.
#: Writers (delivery, initial packets) swap in a real deque on the first packet.
_NO_QUEUE: Any = ()


class _Edge:
    __slots__ = ("capacity", "dst", "dst_port", "queue", "src", "src_port")

    def __init__(self, src: Any, src_port: str, dst: Any, dst_port: str, capacity: int) -> None:
        self.src = src
        self.src_port = src_port
        self.dst = dst
        self.dst_port = dst_port
        self.capacity = capacity
        self.queue: Any = _NO_QUEUE


class _Sink:
    """Stands where a node would for a collector edge: always 'queued', never scheduled."""

    __slots__ = ("id", "queued")

    def __init__(self, name: str) -> None:
        self.id = name
        self.queued = True


class _Node:
    __slots__ = (
        "_log",
        "actor",
        "await_all",
        "await_ports",
        "blocked_s",
        "busy",
        "component",
        "config",
        "ctx",
        "extra_in",
        "failures",
        "id",
        "in_edges",
        "mode",
        "nfull",
        "out_count",
        "parked",
        "pools",
        "port_edges",
        "posted",
        "queued",
        "room_waiter",
        "routed",
        "routes",
        "rr",
        "run",
        "run_batch",
        "send_waiter",
        "send_window",
        "source_pending",
        "ticks",
    )

    def __init__(
        self,
        node_id: str,
        component: str,
        actor: Actor,
        config: dict[str, Any],
        mode: str | None = None,
    ):
        # mode: actor._execution(), when the caller knows it already (it costs a microsecond)
        self.id = node_id
        self.component = component
        self.actor = actor
        self.run = actor.run
        self.run_batch = getattr(actor, "run_batch", None)
        self.mode = actor._execution() if mode is None else mode
        self.config = config
        self._log: logging.LoggerAdapter[logging.Logger] | None = None
        self.await_all = bool(actor.await_all_inports)
        self.await_ports: list[str] = []
        self.in_edges: list[_Edge] = []
        self.port_edges: dict[str, list[_Edge]] = {}
        #: edges into in-ports the actor does not declare (Python actors only; see
        #: Actor.accept_undeclared_inports): an await-all tick takes them along
        self.extra_in: tuple[_Edge, ...] = ()
        # an out-port with no edge yet shares the empty tuple; the network swaps in a list
        self.routes: dict[str, list[_Edge]] = dict.fromkeys(actor.outports, _NO_QUEUE)
        self.nfull = 0
        self.queued = False
        self.busy = False
        #: Seconds this node's ticks spent waiting for room on a full out-edge (running
        #: downstream nodes from ctx.send, or a worker waiting for the scheduler): the
        #: host's time, which sandboxed ticks get back on their time limit.
        self.blocked_s = 0.0
        self.parked = False
        self.pools: dict[str, dict[str, Any]] = {}
        self.ticks = 0
        self.failures = 0
        self.out_count = 0
        self.rr = 0
        self.source_pending = 0  # ticks due with empty inputs: a source's first, each wake_after
        self.send_waiter: _SendRequest | None = None
        self.send_window = 0  # computed on the first worker send
        self.posted = 0
        self.routed = 0
        self.room_waiter: asyncio.Future[bool | None] | None = None
        self.ctx: ActorContext | None = None

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """The node's logger, made on first use (most nodes never log; a graph of 100 k
        idle nodes should not hold 100 k adapters)."""
        log = self._log
        if log is None:
            log = self._log = logging.LoggerAdapter(
                logging.getLogger(f"reflow.actor.{self.component}"), {"node": self.id}
            )
        return log


class _SendRequest:
    __slots__ = ("error", "event")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.error: BaseException | None = None
