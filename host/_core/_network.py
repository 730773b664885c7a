"""Network: the public object that holds a graph of actors and runs it.

It mirrors ``offbit_reflow.Network`` (``register_actor``, ``add_node``, ``add_connection``,
``add_initial``, ``start``, ``shutdown``, ``events``, ``from_graph``) and adds what that SDK
lacks: ``run(timeout=)`` and ``await arun()`` that return when the graph is idle with a
:class:`RunSummary`, and :meth:`Network.collect` to capture what reaches a port.

Building the graph is :class:`~reflow._core._wiring.Wiring`'s part; this module runs it: the
scheduler's thread or event loop, waiting for idle, shutting down, the network's events.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .._errors import CheckpointConfigError, GraphError, NetworkStateError, RunTimeout
from ._actor import threads_under_start
from ._events import EventHub, EventStream, _clock
from ._gcdefer import built
from ._loop_close import aclose_loop_resources, borrowed_run, owned
from ._messages import Message
from ._nodes import ActorFailure, _Node
from ._results import Collector, RunSummary
from ._scheduler import Scheduler
from ._wiring import CONFIG_CHECKS, DEFAULT_CAPACITY, Wiring, int_option

if TYPE_CHECKING:
    from ._graph import Graph

__all__ = ["Collector", "Network", "RunSummary", "set_network_observer"]

log = logging.getLogger("reflow")

#: Most worker threads ``start()`` adds for a program's blocking Python actors.
_START_THREADS = 32

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


class Network(Wiring):
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
        config_check: str | None = None,
    ) -> None:
        config = dict(config or {})
        unknown = set(config) - {"capacity", "workers", "event_buffer", "config_check"}
        if unknown:
            raise GraphError(
                f"unknown network config key(s) {', '.join(sorted(unknown))}; "
                f"expected capacity, workers, event_buffer, config_check"
            )
        check = config_check if config_check is not None else config.get("config_check", "typos")
        if check not in CONFIG_CHECKS:
            raise GraphError(
                f"network config_check must be one of {', '.join(map(repr, CONFIG_CHECKS))}, "
                f"got {check!r}"
            )
        cap = int_option(
            capacity if capacity is not None else config.get("capacity", DEFAULT_CAPACITY),
            "capacity",
        )
        w = workers if workers is not None else config.get("workers")
        self._event_buffer = int_option(config.get("event_buffer", 65536), "event_buffer")
        self._hub = EventHub()
        super().__init__(
            Scheduler(self._hub, int_option(w, "workers") if w is not None else None), cap
        )
        self.config_check = check
        self._armed: set[str] = set()
        self._announced = False
        self._base = (0, 0)  # overflowed, dropped at the start of the current run
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop_flag = False
        self._idle = threading.Condition()
        self._busy = False
        self._thread_error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._durable: Any = None  # the durable run (``_checkpoint.Durable``), once asked for
        self._resumed = False  # a checkpoint was applied: its sources' ticks due are restored

    # ------------------------------------------------------------------ initial packets
    def _deliver_initial(self, node: _Node, port: str, msg: Message) -> None:
        if self._thread is not None and self._thread.is_alive():
            # under the idle lock, so the scheduler cannot report idle in between
            with self._idle:
                self._busy = True
                self._sched.call_soon(lambda: self._queue_initial(node, port, msg))
        else:
            self._queue_initial(node, port, msg)

    # ------------------------------------------------------------------ running
    def events(self, maxlen: int | None = None, kinds: Any = None) -> EventStream:
        """Subscribe to trace events (subscribe before ``start()`` to miss none).

        ``kinds``: event type names to receive (e.g. ``["ActorFailed"]``); ``None`` = all.
        Per-tick and per-packet events are not even made while no subscriber wants them."""
        self._check_open()
        if maxlen is not None and (
            isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 0
        ):
            raise NetworkStateError(
                f"events(maxlen={maxlen!r}): expected None or a whole number of events, 0 or "
                "more (0 and None: the network's default buffer)"
            )
        return self._hub.subscribe(maxlen or self._event_buffer, kinds)

    def _arm_sources(self) -> None:
        if not self._announced:
            self._announced = True
            if _network_observer is not None:
                _network_observer(self.events)
            hub = self._hub
            if hub.active:
                hub.publish("NetworkStarted")
            if hub.wants_ticks:  # as offbit_reflow: each node's actor starts with the network
                hub.pending.extend(
                    ("ActorStarted", _clock(), node.id, node.component)
                    for node in self._sched.nodes.values()
                )
                hub.flush()
        self._arm_sources_now()

    def _arm_sources_now(self) -> None:
        """Nodes that declare no in-ports (sources) run one tick, with empty inputs, on the
        network's first run."""
        feeding_async: set[str] | None = None  # worked out once, when first needed
        resumed, self._resumed = self._resumed, False
        for node in self._sched.nodes.values():
            if node.id in self._armed:
                continue
            self._armed.add(node.id)
            if not node.in_edges and not node.actor.inports:
                if not resumed:
                    node.source_pending = True
                if node.mode == "inline" and feeding_async is None:
                    feeding_async = _upstream_of_async(self._sched.nodes.values())
                if node.mode == "inline" and node.id in (feeding_async or ()):
                    # Its send() must be able to wait for async consumers, which need the
                    # scheduler's loop: run this source's tick on a worker thread instead.
                    node.mode = "worker"
                if node.source_pending and not node.queued:
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

    def _durable_run(self, run_id: str | None, checkpoint: Any, resume: Any, every: Any) -> None:
        """Set up (or go on with) the durable run that ``run``/``start`` were asked for;
        resuming applies the run's last checkpoint before anything runs."""
        if checkpoint is None:
            if run_id is not None or resume is not False or every is not None:
                raise CheckpointConfigError(
                    "run_id, resume and checkpoint_every need checkpoint= (a CheckpointStore "
                    "or a store URL such as 'sqlite:///tmp/run.db')"
                )
            return
        from ._checkpoint import Durable, Every
        from ._checkpoint_open import open_store
        from ._checkpoint_store import check_run_id

        run_id = check_run_id(run_id)
        if not (resume is True or resume is False or resume == "if-exists"):
            raise CheckpointConfigError(
                f"resume={resume!r:.60}: expected False, True or 'if-exists'", run_id=run_id
            )
        if every is None:
            every = Every()
        elif not isinstance(every, Every):
            raise CheckpointConfigError(
                f"checkpoint_every={every!r:.60}: expected Every(ticks=..., seconds=...)",
                run_id=run_id,
            )
        if self._durable is not None:
            if self._durable.run_id != run_id or resume is not False:
                raise CheckpointConfigError(
                    f"this network already runs durably as run {self._durable.run_id!r}; a "
                    f"network is one run: build a new one to resume or to start run {run_id!r}",
                    run_id=run_id,
                )
            self._durable.every = every
            return
        store, owned = open_store(checkpoint)
        durable = Durable(self, store, owned, run_id, every)
        try:
            if resume is not False:
                if self._announced or any(n.ticks for n in self._sched.nodes.values()):
                    raise CheckpointConfigError(
                        f"resume of run {run_id!r} on a network that has run already; "
                        f"resume into a newly built network",
                        run_id=run_id,
                    )
                plan = durable.load(required=resume is True)
                if plan is not None:
                    plan.apply(self)
            else:
                store.delete(run_id)  # resume=False starts the run over
        except BaseException:
            durable.close()
            raise
        durable.arm()
        self._durable = durable

    def _begin(self) -> tuple[float, dict[str, int], int]:
        """Mark the start of a run: the baselines its summary is measured against."""
        built()  # the graph is built: full collections of the collector may run again
        sched = self._sched
        self._base = (sched.overflowed, sched.dropped)
        sched.failures.clear()
        self._arm_sources()
        durable = self._durable
        if durable is not None:
            from ._checkpoint import install_sequence

            for node in sched.nodes.values():
                install_sequence(node)
            durable.refresh()
            if durable.seq == 0:
                durable.write()  # where a run that crashes before its first step resumes
        else:
            for node in sched.nodes.values():
                if node.actor.sequenced:
                    from ._checkpoint import install_sequence

                    install_sequence(node)
        return (
            time.perf_counter(),
            {n.id: n.ticks for n in sched.nodes.values()},
            sched.failure_count,
        )

    @staticmethod
    def _check_seconds(name: str, value: Any) -> None:
        """Refuse a wait that is not ``None`` or a finite number of seconds, 0 or more,
        before anything runs (``asyncio.wait_for`` would take ``-1`` as "already late")."""
        if value is None:
            return
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not 0 <= value < math.inf
        ):
            raise NetworkStateError(
                f"{name}={value!r}: expected None or a finite number of seconds, 0 or more"
            )

    def _timed_out(self, timeout: float | None) -> RunTimeout:
        pending = self._sched.pending()
        return RunTimeout(
            f"the graph was not idle after {timeout} s; packets still waiting per node: {pending}",
            pending=pending,
        )

    def run(
        self,
        timeout: float | None = None,
        *,
        run_id: str | None = None,
        checkpoint: Any = None,
        resume: bool | str = False,
        checkpoint_every: Any = None,
    ) -> RunSummary:
        """Run until the graph is idle — nothing queued, nothing running — and return a
        :class:`RunSummary`. Raises :class:`~reflow.RunTimeout` if ``timeout`` seconds pass
        first; the network keeps its state and a later ``run()`` goes on from there.

        A durable run (README "Durable runs"): ``checkpoint`` (a
        :class:`~reflow.CheckpointStore` or a URL: ``sqlite:///path``, ``postgresql://...``,
        ``redis://...``) keeps checkpoints of run ``run_id`` at tick boundaries, as often as
        ``checkpoint_every`` (:class:`~reflow.Every`; default every 1,000 ticks).
        ``resume=True`` first restores the run's last checkpoint — in a newly built network of
        the same graph, typically in a new process after a crash; ``"if-exists"`` restores it
        if there is one and starts afresh otherwise; ``False`` starts the run over."""
        self._check_open()
        self._check_seconds("timeout", timeout)
        if self._thread is not None:
            return self._wait_idle(timeout)
        self._materialize()
        self._enter_run()
        try:
            self._durable_run(run_id, checkpoint, resume, checkpoint_every)
            t0, ticks0, fails0 = self._begin()
            if self._loop is None or self._loop.is_closed():
                self._loop = asyncio.new_event_loop()
                owned(self._loop)  # its resources close at shutdown, not after each run
            coro = self._sched.drive(until_idle=True, on_idle=self._publish_idle)
            try:
                self._loop.run_until_complete(asyncio.wait_for(coro, timeout))
            except TimeoutError:
                raise self._timed_out(timeout) from None
        finally:
            self._running = False
        return self._summary(t0, ticks0, fails0)

    async def arun(
        self,
        timeout: float | None = None,
        *,
        run_id: str | None = None,
        checkpoint: Any = None,
        resume: bool | str = False,
        checkpoint_every: Any = None,
    ) -> RunSummary:
        """``run()`` for async code: drives the graph on the running event loop."""
        self._check_open()
        self._check_seconds("timeout", timeout)
        if self._thread is not None:
            return await asyncio.get_running_loop().run_in_executor(None, self._wait_idle, timeout)
        self._materialize()
        self._enter_run()
        try:
            self._durable_run(run_id, checkpoint, resume, checkpoint_every)
            t0, ticks0, fails0 = self._begin()
            try:
                async with borrowed_run():  # the user's loop: clients opened here close after
                    await asyncio.wait_for(
                        self._sched.drive(until_idle=True, on_idle=self._publish_idle), timeout
                    )
            except TimeoutError:
                raise self._timed_out(timeout) from None
        finally:
            self._running = False
        return self._summary(t0, ticks0, fails0)

    def start(
        self,
        *,
        run_id: str | None = None,
        checkpoint: Any = None,
        resume: bool | str = False,
        checkpoint_every: Any = None,
    ) -> None:
        """Start running in a background thread and return at once (SDK-compatible).
        Use :meth:`run` to wait for idle, :meth:`shutdown` to stop. The keywords make it a
        durable run, as for :meth:`run`."""
        self._materialize()
        self._thread_python_actors()
        self._enter_run()
        try:
            self._durable_run(run_id, checkpoint, resume, checkpoint_every)
        except BaseException:
            self._running = False
            raise
        self._busy = True
        self._t0, self._ticks0, self._fails0 = self._begin()
        self._thread = threading.Thread(
            target=self._thread_main, name="reflow-scheduler", daemon=True
        )
        self._thread.start()

    def _thread_python_actors(self) -> None:
        """Under ``start()``, a program's own sync actors run their ticks on worker threads,
        as offbit_reflow runs each Python actor's tick on a thread: ticks that block (an
        HTTP call, a model's token stream) overlap instead of taking turns. An actor that
        sets ``execution`` itself keeps it; ``run()`` keeps every sync actor inline."""
        sched = self._sched
        threaded = 0
        for node in sched.nodes.values():
            if node.mode == "inline" and not node.busy and threads_under_start(node.actor):
                node.mode = "worker"
                threaded += 1
        if threaded and sched._executor is None:
            sched._workers = max(sched._workers, min(threaded, _START_THREADS))

    async def _drive_in_thread(self) -> None:
        owned(asyncio.get_running_loop())
        try:
            await self._sched.drive(
                until_idle=False, on_idle=self._on_idle, stop=lambda: self._stop_flag
            )
        finally:
            await aclose_loop_resources()

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._drive_in_thread())
        except BaseException as exc:  # surfaced by run()/shutdown()
            self._thread_error = exc
        finally:
            with self._idle:
                self._busy = False
                self._idle.notify_all()

    def _on_idle(self) -> None:
        with self._idle:
            if self._busy and not self._sched.completions:
                if self._durable is not None:
                    self._durable.at_idle()
                self._busy = False
                if self._hub.active:
                    self._hub.publish(
                        "NetworkIdle", sum(n.ticks for n in self._sched.nodes.values())
                    )
                self._idle.notify_all()

    def _publish_idle(self) -> None:
        if self._durable is not None:
            self._durable.at_idle()
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
        self._check_seconds("wait", wait)
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
            self._loop.run_until_complete(aclose_loop_resources())
            self._loop.close()
        if self._policy_host is not None:
            self._policy_host.close()
        if self._durable is not None:
            self._durable.close()
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

    def dead_letters(self) -> list[Any]:
        """The packets whose ticks failed for good on nodes with a ``retry`` or
        ``dead_letter`` policy (the first 10,000): ``DeadLetter(node, inputs, error,
        attempts)``, oldest first."""
        host = self._policy_host
        return [] if host is None else list(host.dead_letters)

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


def _upstream_of_async(nodes: Iterable[_Node]) -> set[str]:
    """The ids of the nodes an async node is downstream of: one walk up the edges from every
    async node, so finding which sources feed one costs time linear in the graph."""
    todo = [n for n in nodes if n.mode == "async"]
    seen: set[str] = set()
    while todo:
        node = todo.pop()
        for e in node.in_edges:
            src = e.src
            if src is not None and src.id not in seen:
                seen.add(src.id)
                todo.append(src)
    return seen
