"""Nodes placed on Ray actors: the host's half (``_ray_remote`` is the other).

``Network.add_node(id, template, placement=Ray(...))`` makes the node's actor a
:class:`RayNodeActor`: a stand-in with the template's ports that runs as a "worker" actor on
the host's scheduler, so the host keeps the node's edges, their capacities and the scheduler's
rules (a node is not ticked while an out-edge is full; one batch of ticks at a time per node).
Each tick's inputs go to a Ray actor that holds the real actor, built there once; its
``done``/``emit`` packets, ``fail`` text or exception (type, text, remote traceback) come back
and are delivered, recorded and evented as any tick's. Up to ``max_inflight`` ticks go in one
Ray call (never more are in the Ray actor at once), numbered so it runs them in order. A
remote ``ctx.send`` waits until the host has put its packets on the bounded edge (a placed
node's sends never take the worker's send window), so a remote producer holds at most
capacity + ``max_inflight`` packets in flight.

Ray is imported only here and only when a node is placed: ``import reflow`` does not import it.
The actor travels as: a Python ``Actor`` registered on the network, pickled with cloudpickle
(its module by value unless it is part of reflow); a template of a loaded pack, as the pack's
bytes and the public key this host trusted them under, verified again in the Ray actor; any
other catalog template (the built-in library, plugins), by its id.

A Ray actor that dies fails the tick it was running (and the ticks queued behind it) with
:class:`WorkerLostError`; the node's next tick starts a new Ray actor. A cluster unreachable
for ``REFLOW_RAY_LOST_AFTER_S`` seconds fails the running ticks and every later tick of nodes
placed on it at once, so the run ends with those failures instead of hanging.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ._core._actor import Actor
from ._errors import (
    PlacementError,
    RemoteTickError,
    StreamError,
    TickStateError,
    WorkerLostError,
)
from ._ray_placement import Ray

__all__ = ["RayNodeActor", "placed_actor"]

log = logging.getLogger("reflow.ray")

#: how long an address is tried before ray.init is called at all
CONNECT_S = float(os.environ.get("REFLOW_RAY_CONNECT_S", "5"))
#: how often a wait on a Ray actor checks that the cluster is still there, and for how long
#: the cluster may be unreachable before the ticks fail
WATCH_S = 0.5
LOST_AFTER_S = float(os.environ.get("REFLOW_RAY_LOST_AFTER_S", "10"))
#: how long a new Ray actor may take to start (a worker process, the template built there)
READY_S = float(os.environ.get("REFLOW_RAY_READY_S", "120"))


# ---------------------------------------------------------------------------- the cluster
class _Cluster:
    """This process's connection to one Ray cluster, and whether it is still there."""

    def __init__(self, ray: Any, gcs: tuple[str, int] | None) -> None:
        self.ray = ray
        self.gcs = gcs
        self.where = f"{gcs[0]}:{gcs[1]}" if gcs else "the local Ray cluster"
        self.dead = False
        self._lost_since: float | None = None
        self._node_host: Any = None

    def node_host(self) -> Any:
        if self._node_host is None:
            from ._ray_remote import NodeHost

            self._node_host = self.ray.remote(NodeHost)
        return self._node_host

    def still_there(self) -> bool:
        """False once the cluster's GCS has not answered for ``LOST_AFTER_S`` seconds."""
        if self.dead:
            return False
        if self.gcs is None or _answers(self.gcs, 0.5):
            self._lost_since = None
            return True
        now = time.monotonic()
        self._lost_since = self._lost_since or now
        if now - self._lost_since >= LOST_AFTER_S:
            self.dead = True
        return not self.dead

    def lost(self, node: str, component: str) -> WorkerLostError:
        return WorkerLostError(
            f"node {node!r}: the Ray cluster at {self.where} went away (unreachable for "
            f"{LOST_AFTER_S:g} s); the node's Ray actor is lost",
            node=node,
            component=component,
            cause="cluster lost",
        )


_clusters: dict[Any, _Cluster] = {}
_connect_lock = threading.Lock()


def _connect(address: str | None, node: str) -> _Cluster:
    try:
        import ray
    except ImportError as exc:
        raise PlacementError(
            f"node {node!r} is placed on Ray, which is not installed: pip install 'reflow[ray]'",
            node=node,
        ) from exc
    with _connect_lock:
        asked = _host_port(address)
        if ray.is_initialized():
            current = _host_port(ray.get_runtime_context().gcs_address)
            if asked is not None and current is not None and not _same(asked, current):
                raise PlacementError(
                    f"node {node!r} is placed on the Ray cluster at {address}, but this process "
                    f"is connected to the one at {current[0]}:{current[1]}; a process talks to "
                    f"one Ray cluster",
                    node=node,
                    key="address",
                )
        else:
            if asked is not None and not _wait_answers(asked, CONNECT_S):
                raise PlacementError(
                    f"node {node!r}: cannot connect to the Ray cluster at {address}: nothing "
                    f"answers there (tried for {CONNECT_S:g} s); start one with "
                    f"`ray start --head`",
                    node=node,
                    key="address",
                )
            # Ray ends a driver whose cluster stays unreachable for a minute (an os-level exit,
            # nothing to catch); the ticks watch the cluster themselves and fail instead
            os.environ.setdefault("RAY_gcs_rpc_server_reconnect_timeout_s", "3600")
            try:
                ray.init(
                    address=address,
                    ignore_reinit_error=True,
                    log_to_driver=False,
                    include_dashboard=False,
                    logging_level=logging.ERROR,
                )
            except Exception as exc:
                where = address or "a new local cluster"
                raise PlacementError(
                    f"node {node!r}: cannot connect to the Ray cluster at {where}: "
                    f"{type(exc).__name__}: {_first_line(exc)}",
                    node=node,
                    key="address",
                ) from exc
        gcs = _host_port(ray.get_runtime_context().gcs_address)
        cluster = _clusters.get(gcs)
        if cluster is None or cluster.ray is not ray:
            # watched at the address the user gave when there is one: the GCS may report an
            # address of the machine that this process does not reach it by
            cluster = _clusters[gcs] = _Cluster(ray, asked or gcs)
        if cluster.dead:
            raise PlacementError(
                f"node {node!r}: the Ray cluster at {cluster.where} went away earlier in this "
                f"process",
                node=node,
                key="address",
            )
        return cluster


def _check_resources(cluster: _Cluster, p: Ray, node: str) -> None:
    """Refuse what no node of the cluster has: Ray would wait for it forever."""
    alive = [n.get("Resources", {}) for n in cluster.ray.nodes() if n.get("Alive")]
    wants: dict[str, float] = {"CPU": float(p.num_cpus)}
    if p.memory_bytes:
        wants["memory"] = float(p.memory_bytes)
    wants.update({k: float(v) for k, v in (p.resources or {}).items()})
    for name, amount in wants.items():
        if amount <= 0:
            continue
        most = max((r.get(name, 0.0) for r in alive), default=0.0)
        if amount > most:
            key = {"CPU": "num_cpus", "memory": "memory"}.get(name, f"resources[{name!r}]")
            has = f"{most:g}" if most else "none"
            raise PlacementError(
                f"node {node!r} asks for {key}={amount:g} but the largest node of the Ray "
                f"cluster at {cluster.where} has {has}",
                node=node,
                key=key.split("[")[0],
            )


# ---------------------------------------------------------------------------- the payload
def _payload(template_id: str, template: Actor, registered: bool, node: str) -> tuple[Any, ...]:
    """How the template travels to the Ray actor (see the module docstring)."""
    if not registered:
        from ._loader._plugins import template_owner

        owner = template_owner(template_id)
        pack = _loaded_pack(owner) if owner else None
        if pack is not None:
            return _pack_payload(template_id, pack, node)
        return ("catalog", template_id)
    from ray import cloudpickle

    mod_name = type(template).__module__
    if mod_name != "__main__" and not (mod_name == "reflow" or mod_name.startswith("reflow.")):
        mod = sys.modules.get(mod_name)
        if mod is not None:
            cloudpickle.register_pickle_by_value(mod)
    try:
        data = cloudpickle.dumps(template)
    except Exception as exc:
        raise PlacementError(
            f"node {node!r}: the actor of template {template_id!r} "
            f"({type(template).__name__}) cannot be sent to a Ray actor: "
            f"{type(exc).__name__}: {_first_line(exc)} (it must pickle with cloudpickle)",
            node=node,
        ) from exc
    return ("python", data)


def _loaded_pack(name: str) -> Any:
    from ._loader._packs import list_packs

    for pack in list_packs():
        if pack.name == name:
            return pack
    return None


def _pack_payload(template_id: str, pack: Any, node: str) -> tuple[Any, ...]:
    source = Path(pack.source)
    if not source.is_file():
        raise PlacementError(
            f"node {node!r}: template {template_id!r} comes from pack {pack.name!r}, loaded "
            f"from {pack.source}; a placed node needs the pack's .rflpack file (load it from "
            f"its file)",
            node=node,
        )
    data = source.read_bytes()
    pem: bytes | None = None
    if pack.signer is not None:
        from ._loader._trust import TrustStore

        for key in TrustStore():
            if key.key_id == pack.signer:
                pem = key.path.read_bytes()
                break
        else:
            raise PlacementError(
                f"node {node!r}: pack {pack.name!r} is signed by key {pack.signer}, which is "
                f"not in the trust store {TrustStore().path}; the Ray actor verifies the pack "
                f"against the key this host trusts",
                node=node,
            )
    return ("pack", template_id, data, pem)


# ---------------------------------------------------------------------------- the stand-in
def placed_actor(
    node_id: str,
    template_id: str,
    template: Actor,
    config: dict[str, Any],
    placement: Any,
    *,
    registered: bool,
) -> RayNodeActor:
    """The actor of node ``node_id`` placed as ``placement`` says (its Ray actor started)."""
    p = _placement(placement, node_id)
    streams = [
        f"{d}-port {port!r}"
        for d, types in (("in", template.inport_types), ("out", template.outport_types))
        for port, t in types.items()
        if t == "Stream"
    ]
    if streams:
        raise PlacementError(
            f"node {node_id!r} ({template.component}) cannot be placed on a Ray actor: its "
            f"{', '.join(streams)} carries Streams, which do not cross processes; keep stream "
            f"stages on the host",
            node=node_id,
        )
    cluster = _connect(p.address, node_id)
    payload = _payload(template_id, template, registered, node_id)
    _check_resources(cluster, p, node_id)
    actor = RayNodeActor(node_id, template, config, p, cluster, payload)
    actor._start()
    return actor


def _placement(value: Any, node: str) -> Ray:
    from ._ray_placement import parse_placement

    return parse_placement(value, node)


class RayNodeActor(Actor):
    """A placed node's actor on the host: its ticks run in a Ray actor (module docstring)."""

    execution = "worker"

    def __init__(
        self,
        node_id: str,
        template: Actor,
        config: dict[str, Any],
        placement: Ray,
        cluster: _Cluster,
        payload: tuple[Any, ...],
    ) -> None:
        self.component = template.component
        self.inports = list(template.inports)
        self.outports = list(template.outports)
        self.await_all_inports = template.await_all_inports
        self.inport_types = dict(template.inport_types)
        self.outport_types = dict(template.outport_types)
        self.placement = placement
        self._node_id = node_id
        self._config = config
        self._cluster = cluster
        self._payload = payload
        self._handle: Any = None
        self._seq = 0
        #: the Ray actor's process id and Ray node id (for tests and logs)
        self.pid = 0
        self.ray_node = ""
        self.restarts = -1
        self._closed = False
        self._lock = threading.Lock()

    # -- the Ray actor ----------------------------------------------------------------------
    def _start(self) -> None:
        """Start the Ray actor and wait until the template is built there."""
        p = self.placement
        opts: dict[str, Any] = {
            "num_cpus": p.num_cpus,
            "max_restarts": 0,
            "max_task_retries": 0,
            # the tick runner is a thread of its own; calls only queue ticks and wait
            "max_concurrency": p.max_inflight + 2,
        }
        if p.resources:
            opts["resources"] = dict(p.resources)
        if p.memory_bytes:
            opts["memory"] = p.memory_bytes
        node = self._node_id
        handle = (
            self._cluster.node_host()
            .options(**opts)
            .remote(node, self.component, self._config, self._payload)
        )
        deadline = time.monotonic() + READY_S
        try:
            info = self._get(handle.ready.remote(), deadline=deadline, starting=True)
        except BaseException:
            self._kill(handle)
            raise
        self._handle, self._seq = handle, 0
        self.pid, self.ray_node = int(info["pid"]), str(info["node"])
        self.restarts += 1
        if info["inports"] != self.inports or info["outports"] != self.outports:
            self._kill(handle)
            self._handle = None
            raise PlacementError(
                f"node {node!r}: the actor built in the Ray actor has ports in "
                f"{info['inports']} out {info['outports']}, the host's template in "
                f"{self.inports} out {self.outports}; install the same version there",
                node=node,
            )

    def _kill(self, handle: Any) -> None:
        ray = self._cluster.ray

        def kill() -> None:
            with contextlib.suppress(Exception):  # gone already
                ray.kill(handle, no_restart=True)

        if self._cluster.dead:  # against a dead cluster this can block: not on our time
            threading.Thread(target=kill, daemon=True).start()
        else:
            kill()

    def _get(self, ref: Any, *, deadline: float | None = None, starting: bool = False) -> Any:
        """``ray.get(ref)``, watching the cluster; Ray's failures as reflow's errors."""
        ray = self._cluster.ray
        node, comp = self._node_id, self.component
        while True:
            if self._cluster.dead:
                raise self._cluster.lost(node, comp)
            done, _ = ray.wait([ref], timeout=WATCH_S)
            if done:
                break
            if not self._cluster.still_there():
                raise self._cluster.lost(node, comp)
            if deadline is not None and time.monotonic() > deadline:
                raise PlacementError(
                    f"node {node!r}: Ray did not start its actor within {READY_S:g} s "
                    f"(num_cpus={self.placement.num_cpus:g}, resources="
                    f"{dict(self.placement.resources or {})}); is the cluster busy?",
                    node=node,
                )
        try:
            return ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            cause = _cause(exc)
            if starting:
                raise PlacementError(
                    f"node {node!r}: its Ray actor could not be started: {cause}", node=node
                ) from None
            where = f" (pid {self.pid} on Ray node {self.ray_node[:12]})" if self.pid else ""
            raise WorkerLostError(
                f"node {node!r}: the Ray actor running its tick died{where}: {cause}",
                node=node,
                component=comp,
                cause=cause,
            ) from None
        except ray.exceptions.RayError as exc:
            raise WorkerLostError(
                f"node {node!r}: Ray failed while running its tick: {type(exc).__name__}: "
                f"{_cause(exc)}",
                node=node,
                component=comp,
                cause=type(exc).__name__,
            ) from None

    # -- ticks ------------------------------------------------------------------------------
    def run(self, ctx: Any) -> None:
        error = self._ticks([ctx])[0]
        if error is not None:
            raise error

    def run_batch(self, ctxs: list[Any]) -> list[BaseException | None]:
        return self._ticks(ctxs)

    def _ticks(self, ctxs: list[Any]) -> list[BaseException | None]:
        """Run ``ctxs`` in the Ray actor, in order, ``max_inflight`` of them per Ray call."""
        with self._lock:
            errors: list[BaseException | None] = [None] * len(ctxs)
            k = self.placement.max_inflight
            i = 0
            while i < len(ctxs):
                group: list[int] = []
                while i < len(ctxs) and len(group) < k:
                    try:
                        self._check_tick(ctxs[i])
                        group.append(i)
                    except Exception as exc:
                        errors[i] = exc
                    i += 1
                if group:
                    self._run_group(ctxs, group, errors)
            return errors

    def _check_tick(self, ctx: Any) -> None:
        if self._closed:
            raise TickStateError(
                f"node {self._node_id!r}: its Ray actor was closed",
                node=self._node_id,
                component=self.component,
            )
        _no_streams(ctx.inputs.items(), self._node_id, "input on in-port")

    def _run_group(
        self, ctxs: list[Any], group: list[int], errors: list[BaseException | None]
    ) -> None:
        """One Ray call for the ticks ``group`` (more only for ticks that send mid-tick)."""
        try:
            if self._handle is None:
                if self._cluster.dead:
                    raise self._cluster.lost(self._node_id, self.component)
                self._start()  # the first tick after a lost actor: a new one
            seq0 = self._seq
            self._seq += len(group)
            ref = self._handle.start.remote(seq0, [dict(ctxs[i].inputs) for i in group])
            events = self._get(ref)
        except Exception as exc:
            for i in group:
                errors[i] = exc
            if isinstance(exc, WorkerLostError):
                self._lost()
            return
        for n, i in enumerate(group):
            try:
                if n < len(events):
                    event = events[n]
                else:  # a tick queued behind one that sent: its first event now
                    event = self._get(self._handle.call.remote(seq0 + n, False))
                self._follow(ctxs[i], seq0 + n, event)
            except WorkerLostError as exc:
                errors[i] = exc
                self._lost()
                for j in group[n + 1 :]:  # they were in the dead actor too
                    errors[j] = WorkerLostError(
                        f"{exc} (a later tick, queued there)",
                        node=exc.node,
                        component=exc.component,
                        cause=exc.cause,
                    )
                return
            except Exception as exc:
                errors[i] = exc

    def _follow(self, ctx: Any, seq: int, event: tuple[Any, ...]) -> None:
        """Relay one remote tick's events to ``ctx`` until it ends."""
        while event[0] == "send":
            refusal = None
            try:
                _no_streams(event[1].items(), self._node_id, "packet sent on out-port")
                ctx.send(event[1])  # returns once the packets are on the edges
            except Exception as exc:
                refusal = f"{type(exc).__name__}: {exc}"
            event = self._get(self._handle.call.remote(seq, True, refusal))
        _, state, pairs, error, tb = event
        if state == -1:
            kind = error.split(":", 1)[0]
            raise RemoteTickError(
                error, node=self._node_id, component=self.component,
                remote_type=kind, remote_traceback=tb,
            )  # fmt: skip
        if state == 2:
            ctx.fail(error)
        elif state == 1:
            _no_streams(pairs, self._node_id, "output on out-port")
            # delivered now, as sends, not when the batch ends: a later tick of the batch may
            # send mid-tick, and its packets must not pass this tick's
            for port, msg in pairs:
                ctx.send({port: msg})
            ctx.done()

    def _lost(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            self._kill(handle)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._lost()


def _no_streams(pairs: Any, node: str, what: str) -> None:
    for port, msg in pairs:
        if isinstance(msg, dict) and msg.get("type") == "Stream":
            raise StreamError(
                f"node {node!r} is placed on a Ray actor: a Stream {what} {port!r} cannot "
                f"cross processes; keep stream stages on the host"
            )


# ---------------------------------------------------------------------------- helpers
def _cause(exc: BaseException) -> str:
    """The line of a Ray error that says what happened (its text is pages long)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in reversed(lines):  # the remote exception's own line, when there is one
        head = ln.split(":", 1)[0]
        if head.endswith(("Error", "Exception")) and " " not in head and head != "RayTaskError":
            return ln[:500]
    for ln in lines:
        if "died" in ln or "killed" in ln or "exited" in ln or "lost" in ln:
            return ln[:500]
    return (lines[0] if lines else type(exc).__name__)[:500]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else ""


def _host_port(address: Any) -> tuple[str, int] | None:
    text = str(address or "")
    if text.startswith("ray://") or text == "auto":
        return None
    host, _, port = text.rpartition(":")
    return (host, int(port)) if host and port.isdigit() else None


def _same(a: tuple[str, int], b: tuple[str, int]) -> bool:
    """Whether two GCS addresses can be the same cluster: the same port, and the same host
    or one of them this machine's loopback (a GCS reports the machine's own address)."""
    if a[1] != b[1]:
        return False
    try:
        ha, hb = socket.gethostbyname(a[0]), socket.gethostbyname(b[0])
    except OSError:
        ha, hb = a[0], b[0]
    return ha == hb or ha.startswith("127.") or hb.startswith("127.")


def _answers(target: tuple[str, int], timeout: float) -> bool:
    try:
        with socket.create_connection(target, timeout=timeout):
            return True
    except OSError:
        return False


def _wait_answers(target: tuple[str, int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not _answers(target, 1.0):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.25)
    return True
