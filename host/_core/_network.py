"""Network: the public object that holds a graph of actors and runs it.

It mirrors ``offbit_reflow.Network`` (``register_actor``, ``add_node``, ``add_connection``,
``add_initial``, ``start``, ``shutdown``, ``events``, ``from_graph``) and adds what that SDK
lacks: ``run(timeout=)`` and ``await arun()`` that return when the graph is idle with a
:class:`RunSummary`, and :meth:`Network.collect` to capture what reaches a port.

Every call that builds the graph checks its arguments at once and raises a
:class:`~reflow.GraphError` naming the node, port or component at fault.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._errors import (
    DuplicateNodeError,
    GraphError,
    MessageError,
    NetworkStateError,
    PortTypeError,
    RunTimeout,
    UnknownComponentError,
    UnknownNodeError,
    UnknownPortError,
)
from ._actor import Actor, ActorContext
from ._events import EventHub, EventStream
from ._gcdefer import building, built, bulk
from ._messages import Message, as_message
from ._nodes import _NEVER, ActorFailure, _Edge, _Node, _Sink
from ._scheduler import Scheduler

if TYPE_CHECKING:
    from ._graph import Graph

__all__ = ["Collector", "Network", "RunSummary"]

log = logging.getLogger("reflow")

DEFAULT_CAPACITY = 64
_WIDE_ROUTE = 8  # a route with this many edges keeps a set of its targets (see _connected)

# Set by the package (``reflow/__init__``): called once per network, on its first run, with
# the network's ``events`` method, to hand its events to whoever observes networks (plugins'
# ``reflow_network_event`` hooks). A hook rather than an import: plugins live in the loader,
# a layer above the core, and pluggy is loaded only when a network first runs.
_network_observer: Callable[[Callable[[], EventStream]], object] | None = None


def set_network_observer(observer: Callable[[Callable[[], EventStream]], object] | None) -> None:
    """Install the function that may subscribe to every network's events when it first runs
    (it is given ``net.events``; ``None`` removes it)."""
    global _network_observer
    _network_observer = observer


@dataclass
class RunSummary:
    """What one ``run()`` did. ``ok`` is False when any tick failed."""

    ticks: int
    node_ticks: dict[str, int]
    failures: list[ActorFailure]
    failure_count: int
    overflowed: int
    dropped: int
    elapsed: float
    pending: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.failure_count == 0

    def raise_for_failures(self) -> None:
        """Raise :class:`~reflow.ActorError` for the first failure, if any."""
        if self.failures:
            from .._errors import ActorError

            first = self.failures[0]
            more = f" (and {self.failure_count - 1} more)" if self.failure_count > 1 else ""
            raise ActorError(f"{first}{more}", node=first.node, component=first.component)


class Collector:
    """The messages that reached a port, in arrival order. Unbounded: meant for results
    and tests, not for a firehose (use an actor for that)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.messages: list[Message] = []

    def values(self) -> list[Any]:
        """The payloads (``message["data"]``) of the collected messages."""
        return [m.get("data") for m in self.messages]

    def clear(self) -> None:
        self.messages.clear()

    def __len__(self) -> int:
        return len(self.messages)

    def __iter__(self) -> Iterator[Message]:
        return iter(self.messages)

    def __getitem__(self, i: int) -> Message:
        return self.messages[i]

    def __repr__(self) -> str:
        return f"<Collector {self.label}: {len(self.messages)} messages>"


def _int_option(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GraphError(f"{name} must be a positive integer, got {value!r}")
    return value


class Network:
    """A graph of actor nodes and the scheduler that runs it.

    ``capacity`` bounds every edge (packets waiting between two nodes) unless a connection
    sets its own; ``workers`` sizes the thread pool for worker (sandboxed/native) actors.
    ``config`` may carry the same keys as a dict (the SDK's constructor signature).
    """

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        *,
        capacity: int | None = None,
        workers: int | None = None,
    ) -> None:
        config = dict(config or {})
        unknown = set(config) - {"capacity", "workers", "event_buffer"}
        if unknown:
            raise GraphError(
                f"unknown network config key(s) {', '.join(sorted(unknown))}; "
                f"expected capacity, workers, event_buffer"
            )
        self.capacity = _int_option(
            capacity if capacity is not None else config.get("capacity", DEFAULT_CAPACITY),
            "capacity",
        )
        w = workers if workers is not None else config.get("workers")
        self._event_buffer = _int_option(config.get("event_buffer", 65536), "event_buffer")
        self._hub = EventHub()
        self._sched = Scheduler(self._hub, _int_option(w, "workers") if w is not None else None)
        self._templates: dict[str, Actor] = {}
        self._modes: dict[str, tuple[Actor, str, Any, str]] = {}  # see _shared_mode
        self._iips: dict[tuple[str, str], _Edge] = {}
        # (node, out-port) -> the (node, in-port) pairs it feeds, only for routes too wide
        # to search for a duplicate (the rest are searched: most have one or two edges)
        self._wide_routes: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self._taps: dict[tuple[str, str], list[Collector]] = {}
        self._aliases_in: dict[tuple[str, str], tuple[str, str]] = {}
        self._aliases_out: dict[tuple[str, str], tuple[str, str]] = {}
        self._exported_in: dict[str, tuple[str, str]] = {}
        self._exported_out: dict[str, tuple[str, str]] = {}
        self._armed: set[str] = set()
        self._announced = False
        self._subgraph_nodes: set[str] = set()
        self._base = (0, 0)  # overflowed, dropped at the start of the current run
        self._lock = threading.Lock()
        self._running = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._stop_flag = False
        self._idle = threading.Condition()
        self._busy = False
        self._thread_error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending_spec: Any = None

    # ------------------------------------------------------------------ building
    def register_actor(self, template_id: str, actor: Any) -> None:
        """Make ``actor`` (an :class:`Actor` instance) available as ``template_id``."""
        self._check_open()
        if isinstance(actor, type) and issubclass(actor, Actor):
            actor = actor()
        if not isinstance(actor, Actor):
            raise GraphError(
                f"register_actor({template_id!r}, ...) expects an Actor instance, "
                f"got {type(actor).__name__}"
            )
        if not isinstance(template_id, str) or not template_id:
            raise GraphError(f"template id must be a non-empty string, got {template_id!r}")
        self._templates[template_id] = actor

    def _template(self, template_id: str) -> Actor:
        actor = self._templates.get(template_id)
        if actor is not None:
            return actor
        from ._catalog import lookup_template, template_list

        found = lookup_template(template_id)
        if found is None:
            raise UnknownComponentError(template_id, [*self._templates, *template_list()])
        return found

    def add_node(
        self, id: str, template_id: str, config: dict[str, Any] | None = None
    ) -> None:
        """Add node ``id`` running the actor registered as ``template_id``."""
        if self._running or self._closed:
            self._check_mutable()
        building()
        if not isinstance(id, str) or not id:
            raise GraphError(f"node id must be a non-empty string, got {id!r}")
        nodes = self._sched.nodes
        if id in nodes or id in self._subgraph_nodes:
            raise DuplicateNodeError(id)
        if config is not None and not isinstance(config, dict):
            raise GraphError(f"config of node {id!r} must be a dict, got {type(config).__name__}")
        template = self._templates.get(template_id) or self._template(template_id)
        if template._expands:  # a subgraph: its inner nodes join this network
            self._subgraph_nodes.add(id)
            template.expand_into(self, id, dict(config or {}))
            return
        actor = template.open_node(id, dict(config) if config else {})
        if actor is template:  # one actor shared by all its nodes: its mode is known
            node = _Node(id, template.component, actor, dict(config) if config else {},
                         self._shared_mode(template_id, template))
        else:
            node = _Node(id, actor.component, actor, dict(config) if config else {})
        node.ctx = ActorContext(self._sched, node)
        nodes[id] = node

    def _shared_mode(self, template_id: str, template: Actor) -> str:
        """``template._execution()``, worked out once per template while what it depends on
        (the template itself, its ``execution`` and ``run``) stays the same."""
        run = template.run
        seen = self._modes.get(template_id)
        if seen is not None and seen[0] is template and seen[2] == run \
                and seen[1] == template.execution:
            return seen[3]
        mode = template._execution()
        self._modes[template_id] = (template, template.execution, run, mode)
        return mode

    def _resolve(self, node: str, port: str, *, out: bool) -> tuple[str, str]:
        """Map a subgraph node's exported port to the inner node and port it stands for."""
        if node not in self._subgraph_nodes:
            return node, port
        aliases = self._aliases_out if out else self._aliases_in
        target = aliases.get((node, port))
        if target is None:
            direction = "out" if out else "in"
            exported = [p for (n, p) in aliases if n == node]
            raise UnknownPortError(node, port, f"exported {direction}", exported)
        return target

    def _node(self, node_id: str, context: str) -> _Node:
        node = self._sched.nodes.get(node_id)
        if node is None:
            raise UnknownNodeError(node_id, context, list(self._sched.nodes))
        return node

    def add_connection(
        self,
        from_actor: str,
        from_port: str,
        to_actor: str,
        to_port: str,
        capacity: int | None = None,
    ) -> None:
        """Connect ``from_actor.from_port`` to ``to_actor.to_port``."""
        if self._running or self._closed:
            self._check_mutable()
        building()
        if self._pending_spec is not None:
            self._materialize()
        if self._subgraph_nodes:
            from_actor, from_port = self._resolve(from_actor, from_port, out=True)
            to_actor, to_port = self._resolve(to_actor, to_port, out=False)
        nodes = self._sched.nodes
        src = nodes.get(from_actor)
        dst = nodes.get(to_actor)
        if src is None or dst is None:
            label = f"connection {from_actor}.{from_port} -> {to_actor}.{to_port}"
            self._node(from_actor, f"source of {label}")
            self._node(to_actor, f"target of {label}")
        assert src is not None and dst is not None
        route = src.routes.get(from_port) if isinstance(from_port, str) else None
        if route is None:
            raise UnknownPortError(from_actor, from_port, "out", list(src.routes))
        if to_port not in dst.actor.inports:
            raise UnknownPortError(to_actor, to_port, "in", list(dst.actor.inports))
        if src.actor.outport_types or dst.actor.inport_types:
            self._check_types(src, from_port, dst, to_port)
        if route and self._connected(route, from_actor, from_port, to_actor, to_port):
            raise GraphError(
                f"connection {from_actor}.{from_port} -> {to_actor}.{to_port} already exists"
            )
        cap = _int_option(capacity, "capacity") if capacity is not None else self.capacity
        edge = _Edge(src, from_port, dst, to_port, cap)
        if route.__class__ is list:
            route.append(edge)
        else:
            route = src.routes[from_port] = [edge]
        self._attach_in(dst, edge)
        if self._taps:
            for coll in self._taps.get((to_actor, to_port), ()):
                route.append(self._collector_edge(coll))

    @staticmethod
    def _add_route(node: _Node, port: str, edge: _Edge) -> None:
        """Add ``edge`` to ``node.port``'s out-edges. A route with no edge yet is a shared
        empty tuple (see ``_Node``): it is replaced, never appended to."""
        route = node.routes[port]
        if route.__class__ is list:
            route.append(edge)
        else:
            node.routes[port] = [edge]

    def _connected(self, route: list[_Edge], from_actor: str, from_port: str, to_actor: str,
                   to_port: str) -> bool:
        """Whether ``route`` (the edges of ``from_actor.from_port``) reaches ``to_actor.to_port``
        already. Called before each new edge is added, so a wide route's set stays complete."""
        if len(route) < _WIDE_ROUTE:
            for e in route:
                if e.dst_port == to_port and e.dst.id == to_actor and e.dst.__class__ is _Node:
                    return True
            return False
        targets = self._wide_routes.get((from_actor, from_port))
        if targets is None:
            targets = self._wide_routes[(from_actor, from_port)] = {
                (e.dst.id, e.dst_port) for e in route if e.dst.__class__ is _Node
            }
        if (to_actor, to_port) in targets:
            return True
        targets.add((to_actor, to_port))  # the edge is added next
        return False

    @property
    def _connections(self) -> set[tuple[str, str, str, str]]:
        """Every connection as ``(from node, out-port, to node, in-port)``."""
        return {
            (node.id, port, e.dst.id, e.dst_port)
            for node in self._sched.nodes.values()
            for port, edges in node.routes.items()
            for e in edges
            if e.dst.__class__ is _Node
        }

    @staticmethod
    def _check_types(src: _Node, from_port: str, dst: _Node, to_port: str) -> None:
        out_t = src.actor.outport_types.get(from_port, "Any")
        in_t = dst.actor.inport_types.get(to_port, "Any")
        if out_t != in_t and "Any" not in (out_t, in_t) and not (
            out_t == "Integer" and in_t == "Float"
        ):
            label = f"connection {src.id}.{from_port} -> {dst.id}.{to_port}"
            raise PortTypeError(
                f"{label}: out-port {src.id}.{from_port} sends {out_t} but in-port "
                f"{dst.id}.{to_port} accepts {in_t}",
                source=f"{src.id}.{from_port}",
                target=f"{dst.id}.{to_port}",
            )

    def _attach_in(self, dst: _Node, edge: _Edge) -> None:
        port = edge.dst_port
        edges = dst.port_edges.get(port)
        if edges is None:
            if not dst.in_edges and len(dst.actor.inports) == 1:
                # one in-port: its edges are all the node's in-edges, so one list is both
                dst.in_edges = dst.port_edges[port] = [edge]
            else:
                dst.in_edges.append(edge)
                dst.port_edges[port] = [edge]
            # the in-ports that have an edge, in declaration order: changes only here
            if len(dst.port_edges) == 1:
                dst.await_ports = [port]
            else:
                dst.await_ports = [p for p in dst.actor.inports if p in dst.port_edges]
        else:
            edges.append(edge)
            if edges is not dst.in_edges:
                dst.in_edges.append(edge)
        if edge.queue and not dst.queued:
            dst.queued = True
            self._sched.ready.append(dst)

    def add_initial(self, actor: str, port: str, message: Any) -> None:
        """Queue ``message`` (a Message or its JSON form) on ``actor.port``.

        Allowed at any time, also while the network runs (thread-safe)."""
        self._check_open()
        if self._pending_spec is not None:
            self._materialize()
        actor, port = self._resolve(actor, port, out=False)
        node = self._node(actor, f"initial packet for {actor}.{port}")
        if port not in node.actor.inports:
            raise UnknownPortError(actor, port, "in", list(node.actor.inports))
        try:
            msg = as_message(message)
        except MessageError as exc:
            raise MessageError(
                f"initial packet for {actor}.{port} is not a valid message: {exc}",
                path=exc.path,
            ) from exc
        if self._thread is not None and self._thread.is_alive():
            # under the idle lock, so the scheduler cannot report idle in between
            with self._idle:
                self._busy = True
                self._sched.call_soon(lambda: self._queue_initial(node, port, msg))
        else:
            self._queue_initial(node, port, msg)

    def _queue_initial(self, node: _Node, port: str, msg: Message) -> None:
        key = (node.id, port)
        edge = self._iips.get(key)
        if edge is None:
            edge = _Edge(None, "", node, port, _NEVER)
            self._iips[key] = edge
            edge.queue = deque()
            self._attach_in(node, edge)
        edge.queue.append(msg)
        for coll in self._taps.get(key, ()):
            coll.messages.append(msg)
        if not node.queued:
            node.queued = True
            self._sched.ready.append(node)

    def export_inport(self, name: str, node: str, port: str) -> None:
        """Name ``node.port`` as the graph's in-port ``name`` (for ``add_initial(name, ...)``
        on subgraphs and :meth:`send_inport`)."""
        self._exported_in[name] = (node, port)

    def export_outport(self, name: str, node: str, port: str) -> None:
        """Name ``node.port`` as the graph's out-port ``name`` (see :meth:`collect`)."""
        self._exported_out[name] = (node, port)

    # ------------------------------------------------------------------ collecting
    def _collector_edge(self, coll: Collector) -> _Edge:
        edge = _Edge(None, "", _Sink(coll.label), "", _NEVER)
        edge.queue = coll.messages
        return edge

    def collect(self, node: str, port: str | None = None) -> Collector:
        """Capture every message that reaches ``node.port``.

        ``port`` may be an out-port of ``node`` (what it emits, connected or not) or an
        in-port (what arrives there; call after wiring it). With ``port=None``, ``node`` names
        an exported out-port of the graph (``Network.from_graph``)."""
        self._check_mutable()
        self._materialize()
        if port is None:
            if node not in self._exported_out:
                known = ", ".join(sorted(self._exported_out)) or "none"
                raise UnknownPortError("<graph>", node, "exported out", known.split(", "))
            node, port = self._exported_out[node]
        if node in self._subgraph_nodes:
            outs = [p for (n, p) in self._aliases_out if n == node]
            node, port = self._resolve(node, port, out=port in outs)
        target = self._node(node, f"collect({node!r}, {port!r})")
        coll = Collector(f"{node}.{port}")
        if port in target.routes:
            self._add_route(target, port, self._collector_edge(coll))
        elif port in target.actor.inports:
            self._taps.setdefault((node, port), []).append(coll)
            for edge in target.port_edges.get(port, ()):
                if edge.src is not None:
                    self._add_route(edge.src, edge.src_port, self._collector_edge(coll))
        else:
            raise UnknownPortError(
                node, port, "in or out", [*target.actor.inports, *target.routes]
            )
        return coll

    # ------------------------------------------------------------------ running
    def events(self, maxlen: int | None = None, kinds: Any = None) -> EventStream:
        """Subscribe to trace events (subscribe before ``start()`` to miss none).

        ``kinds``: event type names to receive (e.g. ``["ActorFailed"]``); ``None`` = all.
        Per-tick and per-packet events are not even made while no subscriber wants them."""
        self._check_open()
        return self._hub.subscribe(maxlen or self._event_buffer, kinds)

    def _arm_sources(self) -> None:
        if not self._announced:
            self._announced = True
            if _network_observer is not None:
                _network_observer(self.events)
            if self._hub.active:
                self._hub.publish("NetworkStarted")
        self._arm_sources_now()

    def _arm_sources_now(self) -> None:
        """Nodes that declare no in-ports (sources) run one tick, with empty inputs, on the
        network's first run."""
        for node in self._sched.nodes.values():
            if node.id in self._armed:
                continue
            self._armed.add(node.id)
            if not node.in_edges and not node.actor.inports:
                node.source_pending = True
                if node.mode == "inline" and _feeds_async(node):
                    # Its send() must be able to wait for async consumers, which need the
                    # scheduler's loop: run this source's tick on a worker thread instead.
                    node.mode = "worker"
                if not node.queued:
                    node.queued = True
                    self._sched.ready.append(node)

    def _summary(self, t0: float, ticks0: dict[str, int], fails0: int) -> RunSummary:
        sched = self._sched
        node_ticks = {n.id: n.ticks - ticks0.get(n.id, 0) for n in sched.nodes.values()}
        return RunSummary(
            ticks=sum(node_ticks.values()),
            node_ticks=node_ticks,
            failures=list(sched.failures),
            failure_count=sched.failure_count - fails0,
            overflowed=sched.overflowed - self._base[0],
            dropped=sched.dropped - self._base[1],
            elapsed=time.perf_counter() - t0,
            pending=sched.pending(),
        )

    def _enter_run(self) -> None:
        self._check_open()
        with self._lock:
            if self._running:
                raise NetworkStateError(
                    "run() is already running on this network; wait for it to return "
                    "(run() must not be called from inside an actor)"
                )
            self._running = True

    def _begin(self) -> tuple[float, dict[str, int], int]:
        """Mark the start of a run: the baselines its summary is measured against."""
        built()  # the graph is built: full collections of the collector may run again
        sched = self._sched
        self._base = (sched.overflowed, sched.dropped)
        sched.failures.clear()
        self._arm_sources()
        return (time.perf_counter(), {n.id: n.ticks for n in sched.nodes.values()},
                sched.failure_count)

    def _timed_out(self, timeout: float | None) -> RunTimeout:
        pending = self._sched.pending()
        return RunTimeout(
            f"the graph was not idle after {timeout} s; packets still waiting per node: "
            f"{pending}",
            pending=pending,
        )

    def run(self, timeout: float | None = None) -> RunSummary:
        """Run until the graph is idle — nothing queued, nothing running — and return a
        :class:`RunSummary`. Raises :class:`~reflow.RunTimeout` if ``timeout`` seconds pass
        first; the network keeps its state and a later ``run()`` goes on from there."""
        self._check_open()
        if self._thread is not None:
            return self._wait_idle(timeout)
        self._materialize()
        self._enter_run()
        try:
            t0, ticks0, fails0 = self._begin()
            if self._loop is None or self._loop.is_closed():
                self._loop = asyncio.new_event_loop()
            coro = self._sched.drive(until_idle=True, on_idle=self._publish_idle)
            try:
                self._loop.run_until_complete(asyncio.wait_for(coro, timeout))
            except TimeoutError:
                raise self._timed_out(timeout) from None
        finally:
            self._running = False
        return self._summary(t0, ticks0, fails0)

    async def arun(self, timeout: float | None = None) -> RunSummary:
        """``run()`` for async code: drives the graph on the running event loop."""
        self._check_open()
        if self._thread is not None:
            return await asyncio.get_running_loop().run_in_executor(
                None, self._wait_idle, timeout
            )
        self._materialize()
        self._enter_run()
        try:
            t0, ticks0, fails0 = self._begin()
            try:
                await asyncio.wait_for(
                    self._sched.drive(until_idle=True, on_idle=self._publish_idle), timeout
                )
            except TimeoutError:
                raise self._timed_out(timeout) from None
        finally:
            self._running = False
        return self._summary(t0, ticks0, fails0)

    def start(self) -> None:
        """Start running in a background thread and return at once (SDK-compatible).
        Use :meth:`run` to wait for idle, :meth:`shutdown` to stop."""
        self._materialize()
        self._enter_run()
        self._busy = True
        self._t0, self._ticks0, self._fails0 = self._begin()
        self._thread = threading.Thread(target=self._thread_main, name="reflow-scheduler",
                                        daemon=True)
        self._thread.start()

    def _thread_main(self) -> None:
        try:
            asyncio.run(
                self._sched.drive(until_idle=False, on_idle=self._on_idle,
                                  stop=lambda: self._stop_flag)
            )
        except BaseException as exc:  # surfaced by run()/shutdown()
            self._thread_error = exc
        finally:
            with self._idle:
                self._busy = False
                self._idle.notify_all()

    def _on_idle(self) -> None:
        with self._idle:
            if self._busy and not self._sched.completions:
                self._busy = False
                if self._hub.active:
                    self._hub.publish("NetworkIdle", sum(n.ticks for n in
                                                        self._sched.nodes.values()))
                self._idle.notify_all()

    def _publish_idle(self) -> None:
        if self._hub.active:
            self._hub.publish("NetworkIdle", sum(n.ticks for n in self._sched.nodes.values()))

    def _wait_idle(self, timeout: float | None) -> RunSummary:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._busy:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise RunTimeout(
                        f"the graph was not idle after {timeout} s",
                        pending=self._sched.pending(),
                    )
                self._idle.wait(left)
        if self._thread_error is not None:
            raise NetworkStateError("the scheduler thread died") from self._thread_error
        return self._summary(self._t0, self._ticks0, self._fails0)

    def shutdown(self, wait: float | None = 5.0) -> None:
        """Stop the network and release every actor's resources. Idempotent.

        After ``start()``, the graph first gets up to ``wait`` seconds to go idle, so the
        packets already in flight are delivered (``None``: as long as it takes; ``0``: stop
        at once). Packets still queued after that are counted in the ``NetworkShutdown``
        event and logged."""
        if self._closed:
            return
        built()
        if self._thread is not None and self._thread.is_alive() and wait != 0:
            try:
                self._wait_idle(wait)
            except RunTimeout:
                pass  # stop anyway; what is left is reported below
            except NetworkStateError:
                pass  # the scheduler thread died: raised again below
        self._closed = True
        self._stop_flag = True
        if self._thread is not None:
            self._sched.wake()
            self._thread.join()
        left = self._sched.stop()
        if left:
            log.warning("network shut down with %d packets undelivered", left)
        if self._loop is not None and not self._loop.is_closed():
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()
        for node in self._sched.nodes.values():
            try:
                node.actor.close()
            except Exception as exc:  # one actor's close must not stop the others
                self._sched._record_failure(node, f"close() failed: {exc}", "", exc)
        if self._hub.active:
            self._hub.publish("NetworkShutdown", left)
        self._hub.close()
        self._running = False
        if self._thread_error is not None:
            raise NetworkStateError("the scheduler thread died") from self._thread_error

    close = shutdown

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # ------------------------------------------------------------------ state checks
    def _check_open(self) -> None:
        if self._closed:
            raise NetworkStateError("this network was shut down; build a new Network")

    def _check_mutable(self) -> None:
        self._check_open()
        if self._running:
            raise NetworkStateError(
                "the graph cannot be changed while the network runs; add nodes and "
                "connections before start()/run(), or after run() returned"
            )

    # ------------------------------------------------------------------ introspection
    def nodes(self) -> list[str]:
        return list(self._sched.nodes)

    @property
    def failures(self) -> list[ActorFailure]:
        """Failed ticks of the last run (the first 1000)."""
        return list(self._sched.failures)

    # ------------------------------------------------------------------ graphs
    @staticmethod
    def from_graph(graph: Graph | dict[str, Any], **kwargs: Any) -> Network:
        """Build a network from a :class:`~reflow.Graph` (or its JSON). Templates are looked up
        when nodes are added: register yours with :meth:`register_actor` first by passing
        ``templates={"tpl_x": actor}``, or load them into the catalog."""
        from ._graph import Graph
        from ._graph_spec import graph_to_network_spec

        templates = kwargs.pop("templates", None) or {}
        net = Network(**kwargs)
        for tid, actor in templates.items():
            net.register_actor(tid, actor)
        if not isinstance(graph, Graph):
            graph = Graph.from_json(graph)
        # Templates may be registered after from_graph (the SDK's order), so the graph is
        # applied on the first call that needs its nodes; errors surface there.
        net._pending_spec = graph_to_network_spec(graph)
        return net

    def _materialize(self) -> None:
        spec, self._pending_spec = self._pending_spec, None
        if spec is not None:
            self.load_spec(spec)

    def _port_name(self, node_id: str, port: str, out: bool) -> str:
        """The actor's own spelling of ``port`` (graphs that are not case-sensitive store
        port names lower-cased)."""
        if (node_id, port) in (self._aliases_out if out else self._aliases_in):
            return port
        node = self._sched.nodes.get(node_id)
        if node is None:
            return port
        names = list(node.routes) if out else list(node.actor.inports)
        if port in names:
            return port
        folded = [n for n in names if n.lower() == port.lower()]
        return folded[0] if len(folded) == 1 else port

    def load_spec(
        self,
        spec: Any,
        *,
        prefix: str = "",
        components: dict[str, str] | None = None,
        configs: dict[str, dict[str, Any]] | None = None,
        as_node: str | None = None,
    ) -> None:
        """Add the nodes, connections, initial packets and exports of a graph spec
        (``reflow._core._graph.GraphSpec``). With ``as_node``, the graph is inlined as that node:
        inner ids get ``prefix`` and its exported ports become the node's ports."""
        with bulk():
            self._load_spec(spec, prefix, components or {}, configs or {}, as_node)

    def _load_spec(self, spec: Any, prefix: str, components: dict[str, str],
                   configs: dict[str, dict[str, Any]], as_node: str | None) -> None:
        from ._graph_values import is_tagged_message

        fold = not getattr(spec, "case_sensitive", True)

        def port(node_id: str, name: str, out: bool) -> str:
            return self._port_name(node_id, name, out) if fold else name

        for node_id, component, config, _meta in spec.nodes:
            merged = {**config, **configs.get(node_id, {})}
            self.add_node(prefix + node_id, components.get(component, component), merged)
        for src, sport, dst, dport, cap in spec.connections:
            src, dst = prefix + src, prefix + dst
            self.add_connection(src, port(src, sport, True), dst, port(dst, dport, False),
                                capacity=cap)
        for node_id, name, data, _index in spec.initials:
            # FBP graphs often carry bare JSON values as initial data
            msg = data if is_tagged_message(data) else Message.from_value(data)
            node_id = prefix + node_id
            self.add_initial(node_id, port(node_id, name, False), msg)
        for name, (node_id, pname) in spec.inports.items():
            node_id = prefix + node_id
            target = (node_id, port(node_id, pname, False))
            if as_node is None:
                self._exported_in[name] = target
            else:
                self._aliases_in[(as_node, name)] = target
        for name, (node_id, pname) in spec.outports.items():
            node_id = prefix + node_id
            target = (node_id, port(node_id, pname, True))
            if as_node is None:
                self._exported_out[name] = target
            else:
                self._aliases_out[(as_node, name)] = target


def _feeds_async(source: _Node) -> bool:
    """Whether an async node is downstream of ``source``."""
    seen = {source.id}
    todo = [source]
    while todo:
        node = todo.pop()
        for edges in node.routes.values():
            for e in edges:
                dst = e.dst
                if not isinstance(dst, _Node) or dst.id in seen:
                    continue
                if dst.mode == "async":
                    return True
                seen.add(dst.id)
                todo.append(dst)
    return False
