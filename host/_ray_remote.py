"""What runs inside the Ray actor of a placed node (see ``_ray_nodes``).

:class:`NodeHost` is the Ray actor's class. It builds the node's actor once — unpickled from
what the host sent, taken from the catalog, or from a pack whose bytes the host sent and this
process verifies itself — and runs its ticks one at a time, in the order the host numbered
them, on one thread of its own.

The host hands over up to ``max_inflight`` ticks at once with ``start(seq, [inputs, ...])``,
which answers with their events in order: ``("end", state, pairs, error, traceback)`` for each
tick that ended, up to the first ``("send", messages)`` (a tick that called ``ctx.send``, and
now waits). After a ``send`` the host calls ``call(seq)`` once it has delivered those packets
into its bounded edges, which lets the tick go on and answers with its next event; the first
event of a later tick of the same ``start`` is fetched with ``call(seq, ack=False)``. So a
remote tick never has more than one ``send`` the host has not accepted: backpressure holds
across the process boundary.

Imports only the runtime's plain modules at import time (no Ray): this module is imported in
Ray worker processes, which have ``reflow`` installed like the host.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import queue
import tempfile
import threading
import traceback
from pathlib import Path
from typing import Any

from ._core._actor import NodePools

__all__ = ["NodeHost", "RemoteContext"]

log = logging.getLogger("reflow.ray")

_OPEN, _DONE, _FAILED = 0, 1, 2


class _Tick:
    __slots__ = ("ack", "events", "inputs", "refusal")

    def __init__(self, inputs: dict[str, Any]) -> None:
        self.inputs = inputs
        self.events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.ack = threading.Semaphore(0)
        self.refusal: str | None = None  # why the host could not take the last send


class _NodeView:
    """What actors read of ``ctx._node`` (its id, routes, pools), for library actors."""

    def __init__(self, node_id: str, component: str, config: dict[str, Any], actor: Any):
        self.id = node_id
        self.component = component
        self.config = config
        self.actor = actor
        self.routes: dict[str, list[Any]] = {p: [] for p in actor.outports}
        self.pools: dict[str, dict[str, Any]] = {}
        self.nfull = 0
        self.blocked_s = 0.0
        self.log = logging.LoggerAdapter(
            logging.getLogger(f"reflow.actor.{component}"), {"node": node_id}
        )


class RemoteContext(NodePools):
    """The ``ctx`` a placed node's tick gets in the Ray actor: the same calls as on the host.
    Pools live in the Ray actor (a new actor after a crash starts with empty pools)."""

    def __init__(self, view: _NodeView, tick: _Tick) -> None:
        self._node = view
        self._tick = tick
        self.inputs = tick.inputs
        self._state = _OPEN
        self._pairs: list[tuple[str, Any]] = []
        self._error: str | None = None

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

    def _misuse(self, what: str) -> None:
        from ._errors import TickStateError

        ended = "done()" if self._state == _DONE else "fail()"
        raise TickStateError(
            f"ctx.{what}() called after the tick of node {self._node.id!r} was already "
            f"ended by {ended}: call exactly one of done/fail per tick",
            node=self._node.id,
            component=self._node.component,
        )

    def done(self, outputs: dict[str, Any] | None = None) -> None:
        if self._state:
            self._misuse("done")
        if outputs and not isinstance(outputs, dict):
            from ._errors import TickStateError

            raise TickStateError(
                f"ctx.done(outputs) expects a dict keyed by output port, "
                f"got {type(outputs).__name__}",
                node=self._node.id,
                component=self._node.component,
            )
        self._state = _DONE
        if outputs:
            self._pairs.extend((p, m) for p, m in outputs.items() if m is not None)

    def fail(self, message: Any = "failed") -> None:
        if self._state:
            self._misuse("fail")
        self._state = _FAILED
        self._pairs = []
        self._error = str(message)

    def emit(self, port: str, message: Any) -> None:
        if self._state:
            self._misuse("emit")
        self._pairs.append((port, message))

    def send(self, messages: dict[str, Any]) -> None:
        """Hand the packets to the host and wait until it has put them on its edges."""
        if self._state:
            self._misuse("send")
        tick = self._tick
        tick.events.put(("send", dict(messages)))
        tick.ack.acquire()
        if tick.refusal is not None:
            from ._errors import TickStateError

            why, tick.refusal = tick.refusal, None
            raise TickStateError(why, node=self._node.id, component=self._node.component)

    async def asend(self, messages: dict[str, Any]) -> None:
        await asyncio.to_thread(self.send, messages)

    def wake_after(self, seconds: float) -> None:
        from ._errors import TickStateError

        raise TickStateError(
            f"ctx.wake_after in node {self._node.id!r}: not supported on a node placed on a "
            f"Ray actor; put the timer on a host node",
            node=self._node.id,
            component=self._node.component,
        )


def _build(payload: tuple[Any, ...]) -> Any:
    """The template actor the host described: ``("python", pickled)``, ``("catalog", id)``
    or ``("pack", template_id, pack_bytes, public_key_pem | None)``."""
    kind = payload[0]
    if kind == "python":
        from ray import cloudpickle

        return cloudpickle.loads(payload[1])
    from ._core._catalog import lookup_template

    if kind == "catalog":
        found = lookup_template(payload[1])
        if found is None:
            raise LookupError(f"no template {payload[1]!r} in this process's catalog")
        return found
    _, template_id, data, pem = payload
    from ._loader._packs import load_pack
    from ._loader._trust import TrustStore

    root = Path(tempfile.mkdtemp(prefix="reflow-ray-pack-"))
    store = TrustStore(root / "trust")
    if pem is not None:
        # the key the host trusted this pack under, and only it: verified again here
        store.add(pem, any_name=True)
    load_pack(data, trust=store, allow_unsigned=pem is None, cache_dir=root / "cache")
    found = lookup_template(template_id)
    if found is None:
        raise LookupError(f"the pack did not provide template {template_id!r}")
    return found


class NodeHost:
    """The Ray actor of one placed node (see the module docstring)."""

    def __init__(
        self, node_id: str, component: str, config: dict[str, Any], payload: tuple[Any, ...]
    ) -> None:
        template = _build(payload)
        self._actor = template.open_node(node_id, dict(config))
        self._view = _NodeView(node_id, component, config, self._actor)
        self._async = inspect.iscoroutinefunction(self._actor.run)
        self._ticks: dict[int, _Tick] = {}
        self._next = 0
        self._cond = threading.Condition()
        self._runner = threading.Thread(target=self._run_ticks, name="reflow-ray-node", daemon=True)
        self._runner.start()

    def ready(self) -> dict[str, Any]:
        node = ""
        try:
            import ray

            node = ray.get_runtime_context().get_node_id()
        except Exception:  # outside Ray (tests of this class): no node id
            pass
        return {
            "pid": os.getpid(),
            "node": node,
            "inports": list(self._actor.inports),
            "outports": list(self._actor.outports),
        }

    def start(self, seq: int, inputs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        """Queue ticks ``seq, seq + 1, ...`` with these inputs; return their events in order,
        up to the first that is not an end (a tick that sent: it waits for ``call``)."""
        with self._cond:
            ticks = [_Tick(i) for i in inputs]
            for n, tick in enumerate(ticks):
                self._ticks[seq + n] = tick
            self._cond.notify_all()
        events = []
        for n, tick in enumerate(ticks):
            event = self._next_event(seq + n, tick)
            events.append(event)
            if event[0] != "end":
                break
        return events

    def call(self, seq: int, ack: bool = True, refusal: str | None = None) -> tuple[Any, ...]:
        """The next event of tick ``seq``: with ``ack``, after letting it go on from the send
        the host has now delivered (``refusal``: why the host could not)."""
        with self._cond:
            tick = self._ticks[seq]
        if ack:
            tick.refusal = refusal
            tick.ack.release()
        return self._next_event(seq, tick)

    def _next_event(self, seq: int, tick: _Tick) -> tuple[Any, ...]:
        event = tick.events.get()
        if event[0] == "end":
            with self._cond:
                self._ticks.pop(seq, None)
        return event

    def _run_ticks(self) -> None:
        loop = asyncio.new_event_loop() if self._async else None
        while True:
            with self._cond:
                while self._next not in self._ticks:
                    self._cond.wait()
                tick = self._ticks[self._next]
                self._next += 1
            tick.events.put(self._one(tick, loop))

    def _one(self, tick: _Tick, loop: asyncio.AbstractEventLoop | None) -> tuple[Any, ...]:
        ctx = RemoteContext(self._view, tick)
        try:
            if loop is not None:
                loop.run_until_complete(self._actor.run(ctx))
            else:
                self._actor.run(ctx)
        except Exception as exc:
            pairs = ctx._pairs if ctx._state == _DONE else []
            return ("end", -1, pairs, f"{type(exc).__name__}: {exc}", traceback.format_exc())
        return ("end", ctx._state, ctx._pairs, ctx._error, "")

    def close(self) -> None:
        self._actor.close()
