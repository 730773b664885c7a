"""Actors and the per-tick context they are given.

An :class:`Actor` declares its ports and implements ``run(self, ctx)`` (plain or ``async def``).
One *tick* is one call of ``run`` with the packets that woke the node in ``ctx.inputs``; it
ends with exactly one of ``ctx.done()`` or ``ctx.fail()`` — an exception raised by ``run``
counts as ``fail``, and returning without either is reported as a failure of that tick.

``execution`` says where ticks run: ``"inline"`` on the scheduler thread (plain ``run``),
``"async"`` on the scheduler's event loop (chosen automatically for ``async def run``) or
``"worker"`` on a worker thread (for code that releases the GIL: sandboxed and native actors,
numpy). A node never runs two ticks at once, whatever its execution.
"""

from __future__ import annotations

import inspect
import logging
from collections import deque
from typing import Any, Protocol

from .._errors import ActorError, GraphError, TickStateError
from ._messages import Message, as_message

__all__ = ["Actor", "ActorCallContext", "ActorContext"]

EXECUTIONS = ("inline", "async", "worker")


class _Node(Protocol):
    """What a context reads of the node it serves; the scheduler's node record is one.
    (A protocol, so this module does not import the scheduler that imports it.)"""

    id: str
    component: str
    config: dict[str, Any]
    nfull: int
    pools: dict[str, dict[str, Any]]
    routes: dict[str, list[Any]]

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]: ...


class Actor:
    """Base class for actors written in Python.

    Subclass it, declare ports as class attributes and override :meth:`run`::

        class Doubler(Actor):
            component = "doubler"
            inports = ["in"]
            outports = ["out"]

            def run(self, ctx):
                ctx.done({"out": Message.integer(ctx.inputs["in"]["data"] * 2)})

    Register an instance with ``Network.register_actor(template_id, instance)``; every node of
    that template shares the instance (per-node state belongs in ``ctx.pool_*``), unless
    :meth:`open_node` returns a fresh actor per node.
    """

    component: str = "anonymous"
    inports: list[str] = []
    outports: list[str] = []
    await_all_inports: bool = False
    #: Optional port typing, e.g. ``{"in": "Integer"}``; checked when ports are connected.
    inport_types: dict[str, str] = {}
    outport_types: dict[str, str] = {}
    #: Where ticks run: "inline", "async" (implied by ``async def run``) or "worker".
    execution: str = "inline"
    #: Whether a connection or initial packet may target an in-port this actor does not
    #: declare (delivered in ``ctx.inputs`` under that name, as offbit_reflow does). ``None``:
    #: yes for actors written outside reflow, no for reflow's own templates and engines.
    accept_undeclared_inports: bool | None = None
    #: True: each tick gets ``ctx.seq``, the node's tick sequence number (0, 1, 2, ...), kept
    #: in a durable run's checkpoints, so a tick run again after a resume has the number it
    #: had before the crash (the way to deduplicate effects; see README "Durable runs").
    sequenced: bool = False
    #: True for composite actors (subgraphs): a network adds their inner nodes with
    #: ``expand_into(net, node_id, config)`` instead of one node running ``run``.
    _expands: bool = False

    def expand_into(self, net: Any, node_id: str, config: dict[str, Any]) -> None:
        """Composite actors only (see ``_expands``)."""
        raise GraphError(f"{type(self).__name__} is not a composite actor")

    def run(self, ctx: ActorContext) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.run() is not implemented")

    def open_node(self, node_id: str, config: dict[str, Any]) -> Actor:
        """Called once for each node built from this template; returns the actor that node
        runs. The default shares this instance; engines return one instance per node."""
        return self

    def close(self) -> None:
        """Release what :meth:`open_node` acquired. Called at network shutdown; idempotent."""

    def _build(self) -> Actor:
        """This actor, ready to register: offbit_reflow programs call ``Actor()._build()``
        before ``register_actor``; here an Actor is registered as it is."""
        return self

    def _execution(self) -> str:
        mode = self.execution
        if inspect.iscoroutinefunction(self.run):
            return "async"
        if mode not in EXECUTIONS:
            raise ActorError(
                f"actor {type(self).__name__} declares execution={mode!r}; "
                f"expected one of {', '.join(EXECUTIONS)}",
                component=self.component,
            )
        return mode


def user_actor(actor: Actor) -> bool:
    """Whether ``actor``'s class was written outside reflow (a program's own Python actor)."""
    mod = type(actor).__module__ or ""
    return mod != "reflow" and not mod.startswith("reflow.")


def accepts_undeclared(actor: Actor) -> bool:
    """Whether ``actor`` takes packets on in-ports it does not declare (see
    ``Actor.accept_undeclared_inports``)."""
    flag = getattr(actor, "accept_undeclared_inports", None)
    return user_actor(actor) if flag is None else bool(flag)


def threads_under_start(actor: Actor) -> bool:
    """Whether ``Network.start()`` runs ``actor``'s ticks on worker threads: a program's own
    sync actor that does not choose its ``execution`` (offbit_reflow runs every Python
    actor's tick on a thread of its own, so blocking ticks overlap)."""
    if not user_actor(actor) or inspect.iscoroutinefunction(actor.run):
        return False
    for cls in type(actor).__mro__:
        if cls is Actor:
            return "execution" not in getattr(actor, "__dict__", {})
        if "execution" in vars(cls):
            return False
    return False


_OPEN, _DONE, _FAILED = 0, 1, 2


class NodePools:
    """``ctx.pool_*``: per-node ``{id: value}`` maps that outlive ticks, kept in
    ``self._node.pools`` (the scheduler's node, or a Ray actor's copy of it)."""

    _node: Any

    def pool_upsert(self, pool_name: str, id: str, value: Any) -> None:
        self._node.pools.setdefault(pool_name, {})[id] = value

    def pool_remove(self, pool_name: str, id: str) -> None:
        pool = self._node.pools.get(pool_name)
        if pool is not None:
            pool.pop(id, None)

    def pool(self, pool_name: str) -> dict[str, Any]:
        return dict(self._node.pools.get(pool_name, ()))

    def pool_get(self, pool_name: str, id: str, default: Any = None) -> Any:
        """One entry of a pool (``default`` if absent), without copying the pool."""
        pool = self._node.pools.get(pool_name)
        return default if pool is None else pool.get(id, default)

    def pool_count(self, pool_name: str) -> int:
        return len(self._node.pools.get(pool_name, ()))

    def pool_clear(self, pool_name: str) -> None:
        self._node.pools.pop(pool_name, None)


class ActorContext(NodePools):
    """What ``run(ctx)`` receives. Also exported as ``ActorCallContext`` (the SDK's name).

    ``inputs`` maps in-port names to messages; ``config`` is the node's configuration.
    ``done(outputs)`` ends the tick and delivers ``outputs`` (and any ``emit``-ed packets);
    ``fail(message)`` ends it as failed; ``send(...)`` delivers packets at once, mid-tick.
    """

    __slots__ = ("_emitted", "_error", "_hub", "_node", "_sched", "_seq", "_state", "inputs")
    _seq: int  # set only by a sequenced node's wrapper (``_checkpoint``), else unset

    def __init__(self, sched: Any, node: _Node) -> None:
        self._sched = sched
        self._hub = sched.hub
        self._node = node
        self.inputs: dict[str, Message] = {}
        self._state = _OPEN
        self._emitted: list[tuple[str, Message]] | None = None
        self._error: str | None = None

    # -- identity -------------------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        return self._node.config

    @property
    def node(self) -> str:
        return self._node.id

    @property
    def component(self) -> str:
        return self._node.component

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        return self._node.log

    logger = log

    @property
    def seq(self) -> int:
        """This tick's sequence number in its node (0 for the first tick), for actors that
        declare ``sequenced = True``. After a durable run resumes, the ticks after its last
        checkpoint run again with the numbers they had: effects keyed by ``seq`` are not
        done twice."""
        # ``_seq`` is set by the sequencing wrapper only (unset costs no store per tick)
        seq = getattr(self, "_seq", -1)
        if seq < 0:
            raise TickStateError(
                f"ctx.seq in node {self._node.id!r} ({self._node.component}): its actor does "
                f"not declare sequenced = True",
                node=self._node.id,
                component=self._node.component,
            )
        return seq

    # -- ending the tick ------------------------------------------------------------------
    def done(self, outputs: dict[str, Any] | None = None) -> None:
        """End the tick; deliver ``emit``-ed packets, then ``outputs`` (port -> message)."""
        if self._state:
            self._misuse("done")
        self._state = _DONE
        if self._emitted:
            emitted, self._emitted = self._emitted, None
            self._sched._deliver(self._node, emitted)
        if outputs:
            if type(outputs) is not dict and not isinstance(outputs, dict):
                raise TickStateError(
                    f"ctx.done(outputs) expects a dict keyed by output port, "
                    f"got {type(outputs).__name__}",
                    node=self._node.id,
                    component=self._node.component,
                )
            if self._hub.wants_sent:
                self._sched._deliver(self._node, outputs.items())
                return
            # Scheduler._deliver without its tracing, inlined: this runs once per tick and a
            # call costs as much as the rest of it. Keep the two in step.
            node = self._node
            routes = node.routes
            for port in outputs:  # keys, then a lookup: cheaper than items() for one or two
                msg = outputs[port]
                if msg is None:
                    continue
                if type(msg) is not Message:
                    msg = self._sched._checked(node, port, msg)
                try:
                    edges = routes[port]
                except KeyError:
                    raise self._sched._undeclared(node, port) from None
                if not edges:
                    self._sched.dropped += 1
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
                        self._sched.ready.append(d)

    def fail(self, message: Any = "failed") -> None:
        """End the tick as failed; packets queued with ``emit`` are discarded."""
        if self._state:
            self._misuse("fail")
        self._state = _FAILED
        self._emitted = None
        self._error = str(message)

    def _misuse(self, what: str) -> None:
        ended = "done()" if self._state == _DONE else "fail()"
        raise TickStateError(
            f"ctx.{what}() called after the tick of node {self._node.id!r} was already "
            f"ended by {ended}: call exactly one of done/fail per tick",
            node=self._node.id,
            component=self._node.component,
        )

    # -- output ---------------------------------------------------------------------------
    def emit(self, port: str, message: Any) -> None:
        """Queue one packet on ``port``; queued packets are delivered, in order, by done()."""
        if self._state:
            self._misuse("emit")
        if self._emitted is None:
            self._emitted = []
        self._emitted.append((port, message))

    def send(self, messages: dict[str, Any]) -> None:
        """Deliver packets now, before the tick ends (streaming actors).

        If a receiving edge is full, the scheduler first runs downstream nodes to make room,
        so one tick may stream any number of packets in bounded memory.
        """
        if self._state:
            self._misuse("send")
        sched = self._sched
        node = self._node
        if self._hub.wants_sent or type(messages) is not dict:
            sched._deliver(node, messages.items())
        else:
            # Scheduler._deliver without its tracing, inlined as in done(): a streaming
            # source sends once per packet, and the call and items() cost a third of a send.
            routes = node.routes
            for port in messages:
                msg = messages[port]
                if msg is None:
                    continue
                if type(msg) is not Message:
                    msg = sched._checked(node, port, msg)
                try:
                    edges = routes[port]
                except KeyError:
                    raise sched._undeclared(node, port) from None
                if not edges:
                    sched.dropped += 1
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
                        sched.ready.append(d)
        if node.nfull:
            sched._relieve(node)
        elif sched._sleeping:  # an async tick sending while the driver waits for it
            sched.wake()

    async def asend(self, messages: dict[str, Any]) -> None:
        """``send`` for ``async def run``: delivers now, then waits (without blocking the
        event loop) until the receiving edges have room again. The way for an async actor
        to stream with backpressure."""
        if self._state:
            self._misuse("send")
        sched = self._sched
        sched._deliver(self._node, messages.items())
        if self._node.nfull:
            await sched._room(self._node)
        elif sched._sleeping:
            sched.wake()

    # -- waking later ---------------------------------------------------------------------
    def wake_after(self, seconds: float) -> None:
        """Give this node a tick of its own ``seconds`` from now, with empty ``inputs`` (as a
        source's first tick has): timers, delays, debounce and throttle without a packet to
        wake them. May be called from any tick, any number of times: each call is one tick
        (wakes that come due together run one after another). While a wake is
        pending the network is not idle (``run()`` waits for it); ``shutdown()`` cancels
        every pending wake. ``seconds``: a finite number, 0 to one day."""
        self._sched.wake_after(self._node, seconds)


ActorCallContext = ActorContext


class BufferedContext(ActorContext):
    """Context for ticks on worker threads: done() records outputs, the scheduler thread
    delivers them when the tick comes back; send() hands packets to the scheduler thread
    and waits while the receiving edge is full."""

    __slots__ = ("_outputs",)

    def __init__(self, sched: Any, node: _Node) -> None:
        # flat on purpose: one of these is built per worker tick on the scheduler thread
        self._sched = sched
        self._hub = sched.hub
        self._node = node
        self.inputs = {}
        self._state = _OPEN
        self._emitted = None
        self._error = None
        self._outputs: Any = ()

    def done(self, outputs: dict[str, Any] | None = None) -> None:
        if self._state:
            self._misuse("done")
        self._state = _DONE
        if self._emitted is None:
            if type(outputs) is dict:  # the common case: keep the dict as it is
                self._outputs = outputs
                return
            if outputs is None:
                return
        pairs = list(self._emitted or ())
        self._emitted = None
        if outputs:
            if not isinstance(outputs, dict):
                raise TickStateError(
                    f"ctx.done(outputs) expects a dict keyed by output port, "
                    f"got {type(outputs).__name__}",
                    node=self._node.id,
                    component=self._node.component,
                )
            pairs.extend(outputs.items())
        self._outputs = pairs

    def output_pairs(self) -> Any:
        """The tick's packets as (port, message) pairs, in order."""
        out = self._outputs
        return out.items() if type(out) is dict else out

    def send(self, messages: dict[str, Any]) -> None:
        if self._state:
            self._misuse("send")
        checked = [
            (port, as_message(m, f"$.{port}")) for port, m in messages.items() if m is not None
        ]
        self._sched._send_from_worker(self._node, checked)
