"""Durable runs: checkpoints of a running network at tick boundaries, and resuming from one.

What a checkpoint holds (``capture``): per node its tick count (the ``ctx.seq`` of its next
tick), failures, round-robin position, pools, ticks due with empty inputs (a source's first
tick not yet run, pending ``ctx.wake_after`` timers), its actor's ``checkpoint_state(node_id)``
if the actor has one, and its policy state (breaker, tokens, in-memory cache); every packet
queued on every edge, initial packets included; the run's counters.

When (``step``): the scheduler asks once per top-level step — between two node batches, when
no sync tick is running — whether ``Every(ticks=, seconds=)`` has come round. The checkpoint
is taken when no tick at all is in flight, so every node's state is whole: if async or worker
ticks are running, it *holds* — no new async or worker tick starts (sync nodes go on) — until
they have finished (``settle``). If the graph cannot finish them while holding (ticks that
wait for room from held nodes), the hold is lifted and the checkpoint tried again later. A
checkpoint that would
have to hold a live Stream or a GPU buffer is put off until none is in transit (streams are
never checkpointed mid-stream); a tick that streams packets through ``ctx.send`` is never cut
in the middle, so a source that emits everything from one tick is checkpointed only after
it. Resumable sources emit a chunk per tick (``ctx.wake_after(0)`` for the next one) and
keep their position in a pool or in ``checkpoint_state``.

Resuming (``load`` then ``apply``): the checkpoint is decoded and checked against the rebuilt
graph completely — digest, format version, graph shape, every message — before anything of
the network is changed, so a refused checkpoint leaves the network as it was built.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from .._errors import (
    CheckpointConfigError,
    CheckpointCorruptError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    CheckpointStateError,
)
from ._checkpoint_format import (
    Unstorable,
    decode,
    describe,
    differences,
    encode,
    message_in,
    message_out,
    shown,
    value_in,
    value_out,
)
from ._checkpoint_store import CheckpointStore
from ._messages import Message
from ._nodes import _NEVER, _NO_QUEUE, _Edge, _Node

__all__ = ["Durable", "Every", "install_sequence"]

_POSTPONE_STEPS = 64  # steps before trying again a checkpoint a stream in transit put off


@dataclass(frozen=True)
class Every:
    """How often a durable run writes a checkpoint: after every ``ticks`` ticks (all nodes
    together) and/or every ``seconds`` seconds, whichever comes first; ``None`` turns one
    off. A checkpoint is also written when the run starts and each time it goes idle."""

    ticks: int | None = 1000
    seconds: float | None = None

    def __post_init__(self) -> None:
        t, s = self.ticks, self.seconds
        if t is not None and (isinstance(t, bool) or not isinstance(t, int) or not t >= 1):
            raise CheckpointConfigError(
                f"checkpoint_every ticks={t!r}: expected a positive integer or None"
            )
        if s is not None and (
            isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 < s <= 86_400
        ):
            raise CheckpointConfigError(
                f"checkpoint_every seconds={s!r}: expected a number of seconds in (0, 86400] "
                f"or None"
            )
        if t is None and s is None:
            raise CheckpointConfigError(
                "checkpoint_every: ticks and seconds are both None; expected at least one"
            )


# -- ctx.seq -----------------------------------------------------------------------------------
class _Sequenced:
    """A sequenced node's ``run``: numbers each tick (``ctx.seq``) before the actor runs it."""

    __slots__ = ("inner", "n")

    def __init__(self, inner: Any, n: int) -> None:
        self.inner = inner
        self.n = n

    def __call__(self, ctx: Any) -> Any:
        ctx._seq = self.n
        self.n += 1
        return self.inner(ctx)


class _AsyncSequenced(_Sequenced):
    __slots__ = ()

    async def __call__(self, ctx: Any) -> Any:
        ctx._seq = self.n
        self.n += 1
        return await self.inner(ctx)


class _BatchSequenced:
    """``run_batch`` of a sequenced node: numbers from the same count as its ``run``."""

    __slots__ = ("inner", "owner")

    def __init__(self, inner: Any, owner: _Sequenced) -> None:
        self.inner = inner
        self.owner = owner

    def __call__(self, ctxs: Any) -> Any:
        owner = self.owner
        for ctx in ctxs:
            ctx._seq = owner.n
            owner.n += 1
        return self.inner(ctxs)


def install_sequence(node: _Node) -> None:
    """Number the ticks of a node whose actor declares ``sequenced = True`` (idempotent;
    the count starts at the node's ticks, which a resume restored)."""
    if not getattr(node.actor, "sequenced", False) or isinstance(node.run, _Sequenced):
        return
    cls = _AsyncSequenced if node.mode == "async" else _Sequenced
    wrapper = cls(node.run, node.ticks)
    node.run = wrapper
    if node.run_batch is not None:
        node.run_batch = _BatchSequenced(node.run_batch, wrapper)


def _set_sequence(node: _Node, n: int) -> None:
    if isinstance(node.run, _Sequenced):
        node.run.n = n


# -- the checkpointer --------------------------------------------------------------------------
class Durable:
    """One network's durable run: its store, run id, checkpoint sequence and schedule."""

    def __init__(
        self, net: Any, store: CheckpointStore, owned: bool, run_id: str, every: Every
    ) -> None:
        self.net = net
        self.sched = net._sched
        self.store = store
        self.owned = owned
        self.run_id = run_id
        self.every = every
        self.seq = 0
        self.bytes = 0  # size of the last checkpoint written
        self._at_ticks = 0
        self._at_time = time.monotonic()
        self._wait_steps = 0
        self._nodes: list[_Node] = []
        self._graph: dict[str, Any] = {}
        #: A checkpoint is due and waits for async/worker ticks in flight; ``_held``: the
        #: nodes not started meanwhile, queued again when it is written or given up.
        self.holding = False
        self._held: list[_Node] = []

    # -- when ------------------------------------------------------------------------------
    def arm(self) -> None:
        """Be asked at every step from now on (before the run's first step)."""
        self.sched.durable = self
        self.refresh()

    def refresh(self) -> None:
        """The graph may have grown between two runs: what a checkpoint describes."""
        sched = self.sched
        self._nodes = list(sched.nodes.values())
        self._graph = describe(sched.nodes)

    def _ticks(self) -> int:
        t = 0
        for n in self._nodes:
            t += n.ticks
        return t

    def step(self) -> None:
        """Called by the scheduler between two top-level node batches."""
        if self.holding:
            if self.sched.inflight == 0:
                self.write()
            return
        if self._wait_steps:
            self._wait_steps -= 1
            return
        every = self.every
        ticks, seconds = every.ticks, every.seconds
        if (ticks is not None and self._ticks() - self._at_ticks >= ticks) or (
            seconds is not None and time.monotonic() - self._at_time >= seconds
        ):
            if self.sched.inflight == 0:
                self.write()
            else:
                self.holding = True

    def hold(self, node: _Node) -> bool:
        """The scheduler would start an async or worker tick of ``node`` while holding."""
        if not node.queued:
            node.queued = True  # deliveries do not queue it again meanwhile
            self._held.append(node)
        return False

    def release(self) -> None:
        self.holding = False
        sched = self.sched
        held, self._held = self._held, []
        for node in held:
            node.queued = False
            sched._requeue(node)

    def settle(self) -> bool:
        """Nothing can run but ticks in flight while holding: write the checkpoint if none
        is left, give up if they cannot finish. True if the hold ended."""
        sched = self.sched
        if sched.completions:
            return False
        if sched.inflight == 0:
            self.write()
            return True
        if sched._stuck():
            self.release()
            self._wait_steps = _POSTPONE_STEPS
            return True
        return False

    def at_idle(self) -> None:
        """The run went idle: record where it stands, if anything ran since the last one."""
        if self._ticks() != self._at_ticks or self.seq == 0:
            self.write()

    # -- writing ---------------------------------------------------------------------------
    def write(self) -> bool:
        """Take and store a checkpoint now (no tick may be in flight); False if a stream in
        transit put it off. Ends a hold either way."""
        t0 = time.perf_counter()
        self.sched._drain_completions()
        try:
            try:
                body, ticks = self.capture()
            finally:
                if self.holding:
                    self.release()
        except Unstorable:
            self._wait_steps = _POSTPONE_STEPS
            return False
        seq = self.seq + 1
        body["seq"] = seq
        data = encode(self.run_id, seq, body)
        self.store.put(self.run_id, seq, data)
        self.seq = seq
        self.bytes = len(data)
        self._at_ticks = ticks
        self._at_time = time.monotonic()
        hub = self.sched.hub
        if hub.active:
            hub.publish(
                "CheckpointWritten", self.run_id, seq, ticks, len(data), time.perf_counter() - t0
            )
        return True

    def capture(self) -> tuple[dict[str, Any], int]:
        """The body of a checkpoint of the network as it stands, and its tick count."""
        sched = self.sched
        net = self.net
        runners = net._policy_host.runners if net._policy_host is not None else {}
        wakes = sched.wakes_by_node or {}
        nodes: dict[str, Any] = {}
        queues: list[Any] = []
        total = 0
        for node in sched.nodes.values():
            nid = node.id
            ticks = node.ticks
            total += ticks
            entry: dict[str, Any] = {
                "ticks": ticks,
                "failures": node.failures,
                "rr": node.rr,
                "due": int(node.source_pending) + wakes.get(nid, 0),
            }
            if node.pools:
                entry["pools"] = value_out(node.pools, f"node {nid!r}: pools")
            state_of = getattr(node.actor, "checkpoint_state", None)
            if state_of is not None:
                try:
                    state = state_of(nid)
                except Exception as exc:
                    raise CheckpointStateError(
                        f"run {self.run_id!r}: node {nid!r} ({node.component}): "
                        f"checkpoint_state() raised {type(exc).__name__}: {exc}",
                        run_id=self.run_id,
                    ) from exc
                entry["state"] = value_out(state, f"node {nid!r}: checkpoint_state()")
            runner = runners.get(nid)
            if runner is not None:
                entry["policy"] = value_out(runner.snapshot(), f"node {nid!r}: policy state")
            nodes[nid] = entry
            for e in node.in_edges:
                q = e.queue
                if q:
                    src = e.src
                    queues.append(
                        [
                            "" if src is None else src.id,
                            e.src_port,
                            nid,
                            e.dst_port,
                            [message_out(m) for m in q],
                        ]
                    )
        body = {
            "run_id": self.run_id,
            "graph": self._graph,
            "counters": {
                "overflowed": sched.overflowed,
                "dropped": sched.dropped,
                "failure_count": sched.failure_count,
            },
            "nodes": nodes,
            "queues": queues,
            "written": time.time(),
        }
        return body, total

    # -- resuming --------------------------------------------------------------------------
    def load(self, required: bool) -> _Plan | None:
        """Read and check the run's latest checkpoint against the network; None if there is
        none and ``required`` is false. Changes nothing."""
        found = self.store.latest(self.run_id)
        if found is None:
            if not required:
                return None
            raise CheckpointNotFoundError(
                f"resume=True, but checkpoint store {self.store.name} holds no checkpoint for "
                f"run {self.run_id!r}; start it with resume=False, or pass "
                f"resume='if-exists' to start afresh when there is none",
                run_id=self.run_id,
            )
        body = decode(self.run_id, found.seq, found.data)
        return _Plan.read(self, found.seq, body)

    def close(self) -> None:
        sched = self.sched
        if sched.durable is self:
            sched.durable = None
        if self.owned:
            self.store.close()


def _bad(durable: Durable, seq: int, why: str) -> CheckpointCorruptError:
    return CheckpointCorruptError(
        f"checkpoint {seq} of run {durable.run_id!r} is corrupt: {why}; it was not applied",
        run_id=durable.run_id,
    )


def _count(value: Any, durable: Durable, seq: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 63:
        raise _bad(durable, seq, f"{what} is {value!r:.40}, expected a count")
    return value


class _Plan:
    """A checked checkpoint, every value parsed, ready to apply without failing."""

    def __init__(self, durable: Durable, seq: int) -> None:
        self.durable = durable
        self.seq = seq
        self.nodes: dict[_Node, dict[str, Any]] = {}
        self.queues: list[tuple[_Edge | tuple[_Node, str], list[Message]]] = []
        self.counters: dict[str, int] = {}
        self.packets = 0

    @classmethod
    def read(cls, durable: Durable, seq: int, body: dict[str, Any]) -> _Plan:
        try:
            return cls._read(durable, seq, body)
        except CheckpointCorruptError as exc:
            if exc.run_id:
                raise
            raise _bad(durable, seq, str(exc)) from exc  # a value's own check: name the run
        except RecursionError:
            raise _bad(durable, seq, "a value nests too deep") from None

    @classmethod
    def _read(cls, durable: Durable, seq: int, body: dict[str, Any]) -> _Plan:
        plan = cls(durable, seq)
        run_id = durable.run_id
        sched = durable.sched
        diffs = differences(body.get("graph"), describe(sched.nodes))
        if diffs:
            raise CheckpointMismatchError(
                f"checkpoint {seq} of run {run_id!r} was written by another graph, so the run "
                f"cannot resume in this one: {shown(diffs)}",
                run_id=run_id,
                differences=diffs,
            )
        counters = body.get("counters")
        nodes = body.get("nodes")
        queues = body.get("queues")
        if not isinstance(counters, dict) or not isinstance(nodes, dict):
            raise _bad(durable, seq, "counters, nodes or queues is missing")
        if not isinstance(queues, list):
            raise _bad(durable, seq, "counters, nodes or queues is missing")
        for key in ("overflowed", "dropped", "failure_count"):
            plan.counters[key] = _count(counters.get(key), durable, seq, f"counter {key}")
        for nid, node in sched.nodes.items():
            entry = nodes.get(nid)
            if not isinstance(entry, dict):
                raise _bad(durable, seq, f"node {nid!r} has no entry")
            where = f"node {nid!r}"
            parsed: dict[str, Any] = {
                k: _count(entry.get(k), durable, seq, f"{where} {k}")
                for k in ("ticks", "failures", "rr", "due")
            }
            pools = value_in(entry.get("pools", {}), where)
            if not isinstance(pools, dict) or not all(isinstance(p, dict) for p in pools.values()):
                raise _bad(durable, seq, f"{where} pools are not maps of maps")
            parsed["pools"] = pools
            for k in ("state", "policy"):
                if k in entry:
                    parsed[k] = value_in(entry[k], f"{where} {k}")
            plan.nodes[node] = parsed
        for row in queues:
            if not (isinstance(row, list) and len(row) == 5 and isinstance(row[4], list)):
                raise _bad(durable, seq, "a queue row is not [src, port, dst, port, packets]")
            src_id, src_port, dst_id, dst_port, packets = row
            target = _edge(sched.nodes, src_id, src_port, dst_id, dst_port)
            if target is None:
                raise _bad(durable, seq, f"queue {src_id}.{src_port}->{dst_id}.{dst_port}")
            where = f"queue {src_id or '<initial>'}.{src_port}->{dst_id}.{dst_port}"
            msgs = [message_in(m, where) for m in packets]
            plan.queues.append((target, msgs))
            plan.packets += len(msgs)
        return plan

    def apply(self, net: Any) -> None:
        """Put the network in the checkpoint's state (its graph built, never run)."""
        durable = self.durable
        sched = net._sched
        runners = net._policy_host.runners if net._policy_host is not None else {}
        # First what runs policy or actor code, the only steps that can fail: if one does,
        # the states taken before are put back, so the refusal leaves the network as built.
        undo: list[Any] = []
        for node, parsed in self.nodes.items():
            runner = runners.get(node.id)
            restore = getattr(node.actor, "restore_state", None)
            save = getattr(node.actor, "checkpoint_state", None)
            try:
                if "policy" in parsed and runner is not None:
                    undo.append((runner.restore, runner.snapshot()))
                    runner.restore(parsed["policy"])
                if "state" in parsed and restore is not None:
                    if save is not None:
                        undo.append((lambda st, f=restore, i=node.id: f(i, st), save(node.id)))
                    restore(node.id, parsed["state"])
            except Exception as exc:
                for put_back, state in reversed(undo):
                    put_back(state)
                raise CheckpointCorruptError(
                    f"checkpoint {self.seq} of run {durable.run_id!r} could not be applied: "
                    f"restoring node {node.id!r} ({node.component}) failed: "
                    f"{type(exc).__name__}: {exc}; nothing of it was applied",
                    run_id=durable.run_id,
                ) from exc
        for node in sched.nodes.values():
            for e in node.in_edges:
                if e.queue:
                    e.queue = deque() if e.src is None else _NO_QUEUE
        for target, msgs in self.queues:
            if isinstance(target, tuple):  # an initial-packet edge this build has not made
                node, port = target
                for m in msgs:
                    net._queue_initial(node, port, m)
                continue
            target.queue = deque(msgs)
        for node, parsed in self.nodes.items():
            node.ticks = parsed["ticks"]
            node.failures = parsed["failures"]
            node.rr = parsed["rr"]
            node.source_pending = parsed["due"]
            node.pools = parsed["pools"]
            _set_sequence(node, node.ticks)
        sched.overflowed = self.counters["overflowed"]
        sched.dropped = self.counters["dropped"]
        sched.failure_count = self.counters["failure_count"]
        net._resumed = True  # sources go on from their restored ticks due, not afresh
        sched.ready.clear()
        for node in sched.nodes.values():
            node.queued = node.parked = False
            node.nfull = sum(
                1
                for route in node.routes.values()
                for e in route
                if e.capacity != _NEVER and len(e.queue) >= e.capacity
            )
        for node in sched.nodes.values():
            if sched._has_input(node):
                if node.nfull:
                    node.parked = True
                else:
                    node.queued = True
                    sched.ready.append(node)
        durable.seq = self.seq
        durable._at_ticks = sum(n.ticks for n in sched.nodes.values())
        hub = sched.hub
        if hub.active:
            hub.publish("RunResumed", durable.run_id, self.seq, self.packets)


def _edge(
    nodes: dict[str, _Node], src_id: Any, src_port: Any, dst_id: Any, dst_port: Any
) -> _Edge | tuple[_Node, str] | None:
    if not all(isinstance(x, str) for x in (src_id, src_port, dst_id, dst_port)):
        return None
    dst = nodes.get(dst_id)
    if dst is None:
        return None
    for e in dst.port_edges.get(dst_port, ()):
        src = e.src
        if (src is None and src_id == "") or (
            src is not None and src.id == src_id and e.src_port == src_port
        ):
            return e
    if src_id == "" and dst_port in dst.actor.inports:
        return (dst, dst_port)
    return None
