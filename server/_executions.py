"""Executions: one graph run each, in its own :class:`reflow.Network`, and the registry that
creates, lists, cancels and forgets them.

An execution is built completely while its request is answered — packs loaded, graph read,
every node made, initial packets queued — so a request with an error is refused (422, with the
JSON path at fault) and never becomes an execution. It is then ``queued`` until one of the
server's ``max_running`` slots is free, ``running`` while its network runs, and ends
``completed`` (idle, no failed tick), ``failed`` (idle with failed ticks, or the scheduler
died) or ``cancelled`` (``DELETE``, the run-time limit, or the server stopping; ``reason``
says which). A runner thread per execution starts the network, feeds its events to the
:class:`~._events_ws.EventBridge` and watches for idle, cancel and the deadline, so a
cancel takes effect within one poll (25 ms) plus the tick that is running.

``await_watcher`` (seconds) keeps a queued execution from starting until its first WebSocket
client is attached, so that client sees every event. When the server exports traces, the
runner also feeds the events to the execution's :class:`~reflow._tracing.RunTracer`
(``trace``: ``nodes``, the default, ``ticks`` or ``off``); its root span opens when the
execution is created, so the 201 answer carries the ``trace_id``.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from reflow import (
    DuplicateNodeError,
    Graph,
    GraphFormatError,
    Message,
    MessageError,
    Network,
    NetworkStateError,
    PackError,
    PortTypeError,
    ReflowError,
    RunSummary,
    RunTimeout,
    UnknownComponentError,
    UnknownNodeError,
    UnknownPortError,
)
from reflow._tracing import TRACE_MODES, RunTracer

from ._errors import BadRequestError, NotFoundError, ServerBusyError, UnprocessableError
from ._events_ws import EventBridge
from ._limits import ServerLimits, check_graph_size
from ._tracing import ServerTracing

__all__ = ["STATES", "Execution", "ExecutionRegistry"]

STATES = ("queued", "running", "completed", "failed", "cancelled")
_POLL_MS = 25
_BODY_KEYS = {"graph", "initial", "packs", "timeout", "trace", "await_watcher"}
_MAX_AWAIT_WATCHER = 60.0
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _key(base: str, key: str) -> str:
    return f"{base}.{key}" if _PLAIN_KEY.match(key) else f"{base}[{json.dumps(key)}]"


def summary_json(summary: RunSummary) -> dict[str, Any]:
    return {
        "ok": summary.ok,
        "ticks": summary.ticks,
        "node_ticks": dict(summary.node_ticks),
        "failure_count": summary.failure_count,
        "failures": [
            {"node": f.node, "component": f.component, "error": f.error}
            for f in summary.failures[:100]
        ],
        "overflowed": summary.overflowed,
        "dropped": summary.dropped,
        "elapsed": summary.elapsed,
        "pending": dict(summary.pending),
    }


class Execution:
    """One graph run. Its fields are read by request handlers while the runner writes them;
    each is replaced whole, never mutated in place."""

    def __init__(
        self,
        net: Network,
        timeout: float,
        limits: ServerLimits,
        tracing: ServerTracing | None = None,
        trace: str = "nodes",
        await_watcher: float = 0.0,
    ) -> None:
        self.id = secrets.token_hex(8)
        self.net = net
        self.timeout = timeout
        self.created = time.time()
        self.started: float | None = None
        self.finished: float | None = None
        self.state = "queued"
        self.reason: str | None = None
        self.summary: dict[str, Any] | None = None
        self.nodes = net.nodes()
        self.bridge = EventBridge(limits.history, limits.client_queue)
        self._stream = net.events(maxlen=1 << 17)
        self._cancel = threading.Event()
        self._cancel_reason = ""
        self.thread: threading.Thread | None = None
        self.await_watcher = await_watcher
        self.tracer: RunTracer | None = None
        if tracing is not None and trace != "off":
            self.tracer = tracing.run_tracer(trace, self.id, len(self.nodes))
            self.tracer.begin()  # its trace id is in the 201 answer; the queued time is in it

    @property
    def done(self) -> bool:
        return self.state in ("completed", "failed", "cancelled")

    def cancel(self, reason: str) -> None:
        if not self._cancel.is_set():
            self._cancel_reason = reason
            self._cancel.set()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "reason": self.reason,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "timeout": self.timeout,
            "nodes": list(self.nodes),
            "summary": self.summary,
            "counts": self.bridge.snapshot(),
            "trace_id": self.tracer.trace_id if self.tracer is not None else None,
        }

    # ------------------------------------------------------------------ the runner thread
    def run(self, slots: threading.Semaphore) -> None:
        while not slots.acquire(timeout=_POLL_MS / 1000):
            if self._cancel.is_set():
                self._end("cancelled", self._cancel_reason, None, 0.0)
                return
        try:
            if self.await_watcher and not self._await_watcher():
                return
            self._run()
        finally:
            slots.release()

    def _await_watcher(self) -> bool:
        """Hold the run until a WebSocket client watches (or ``await_watcher`` s pass), so a
        client that connects right after creating it sees every event. False if cancelled."""
        deadline = time.monotonic() + self.await_watcher
        while not self.bridge.watched and time.monotonic() < deadline:
            if self._cancel.wait(_POLL_MS / 1000):
                self._end("cancelled", self._cancel_reason, None, 0.0)
                return False
        return True

    def _pump(self, timeout_ms: int) -> None:
        stream = self._stream
        lost = stream.lost
        records = stream.recv_records(4096, timeout_ms)
        lost = stream.lost - lost
        if records or lost:
            self.bridge.publish(records, lost)
            if self.tracer is not None:
                self.tracer.feed(records, lost)

    def _run(self) -> None:
        self.started = time.time()
        self.state = "running"
        t0 = time.perf_counter()
        deadline = time.monotonic() + self.timeout
        summary: RunSummary | None = None
        reason = ""
        state = "completed"
        net = self.net
        try:
            net.start()
            while True:
                self._pump(_POLL_MS)
                if self._cancel.is_set():
                    state, reason = "cancelled", self._cancel_reason
                    break
                if time.monotonic() >= deadline:
                    state, reason = "cancelled", f"run time limit of {self.timeout} s reached"
                    break
                try:
                    summary = net.run(timeout=0)
                    break
                except RunTimeout:
                    continue
        except ReflowError as exc:
            state, reason = "failed", f"{type(exc).__name__}: {exc}"
        failures = net.failures
        try:
            net.shutdown(wait=0)
        except NetworkStateError as exc:
            cause = exc.__cause__
            state, reason = "failed", f"{exc}: {cause!r}" if cause else str(exc)
        while True:  # what the network said while it shut down
            before = self.bridge.published
            self._pump(0)
            if self.bridge.published == before:
                break
        elapsed = time.perf_counter() - t0
        if summary is not None:
            result = summary_json(summary)
            if not summary.ok:
                state = "failed"
                reason = f"{summary.failure_count} tick(s) failed; first: {summary.failures[0]}"
        else:
            result = self._partial_summary(failures, elapsed)
        self._end(state, reason or None, result, elapsed)

    def _partial_summary(self, failures: list[Any], elapsed: float) -> dict[str, Any]:
        """What a run that did not reach idle did, from the events the bridge counted."""
        b = self.bridge
        fails = sum(b.node_failures.values())
        return {
            "ok": fails == 0,
            "ticks": sum(b.node_ticks.values()) + fails,
            "node_ticks": {
                n: b.node_ticks.get(n, 0) + b.node_failures.get(n, 0) for n in self.nodes
            },
            "failure_count": fails,
            "failures": [
                {"node": f.node, "component": f.component, "error": f.error} for f in failures[:100]
            ],
            "overflowed": 0,
            "dropped": 0,
            "elapsed": elapsed,
            "pending": {},
        }

    def _end(
        self, state: str, reason: str | None, summary: dict[str, Any] | None, elapsed: float
    ) -> None:
        self.summary = summary
        self.reason = reason
        self.finished = time.time()
        self.state = state
        if self.tracer is not None:
            self.tracer.finish(state, reason)
        self.bridge.finish(
            {
                "_type": {"completed": "Completed", "failed": "Failed"}.get(state, "Cancelled"),
                "timestamp": int(self.finished * 1000),
                "state": state,
                "reason": reason,
                "ticks": summary["ticks"] if summary else 0,
                "failures": summary["failure_count"] if summary else 0,
                "elapsed": elapsed,
            }
        )
        if state == "queued":  # cancelled before it ran: its network was never started
            self.net.shutdown(wait=0)


class ExecutionRegistry:
    """The server's executions, newest last; creating one starts its runner thread."""

    def __init__(
        self,
        limits: ServerLimits,
        load_pack: Callable[[str], object] | None = None,
        tracing: ServerTracing | None = None,
    ) -> None:
        self.limits = limits
        self._load_pack = load_pack
        self._tracing = tracing
        self._lock = threading.Lock()
        self._items: dict[str, Execution] = {}
        self._slots = threading.Semaphore(limits.max_running)
        self._reserved = 0
        self._closed = False

    # ------------------------------------------------------------------ creating
    def _active(self) -> int:
        return sum(1 for e in self._items.values() if not e.done)

    def create(self, body: Any) -> Execution:
        """Validate ``body``, build its network and start it. Raises a RequestError."""
        with self._lock:
            if self._closed:
                raise ServerBusyError("the server is shutting down")
            limit = self.limits.max_running + self.limits.max_queued
            if self._active() + self._reserved >= limit:
                raise ServerBusyError(
                    f"the server runs {self.limits.max_running} and queues "
                    f"{self.limits.max_queued} executions at most; try again later"
                )
            self._reserved += 1
        try:
            execution = self._build(body)
        finally:
            with self._lock:
                self._reserved -= 1
        with self._lock:
            self._items[execution.id] = execution
            self._forget_old()
            execution.thread = threading.Thread(
                target=execution.run,
                args=(self._slots,),
                name=f"reflow-exec-{execution.id}",
                daemon=True,
            )
            execution.thread.start()
        return execution

    def _forget_old(self) -> None:
        extra = len(self._items) - self.limits.max_kept
        if extra <= 0:
            return
        for eid in [e.id for e in self._items.values() if e.done][:extra]:
            del self._items[eid]

    def _build(self, body: Any) -> Execution:
        if not isinstance(body, dict):
            raise UnprocessableError(
                f"the request body must be a JSON object, got {_kind(body)}", path="$"
            )
        unknown = sorted(set(body) - _BODY_KEYS)
        if unknown:
            raise UnprocessableError(
                f"unknown key {unknown[0]!r}; expected graph, initial, packs, timeout, "
                "trace, await_watcher",
                path=_key("$", unknown[0]),
            )
        if "graph" not in body:
            raise UnprocessableError("the request has no 'graph' (an FBP JSON graph)", path="$")
        timeout = body.get("timeout", self.limits.max_run_seconds)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise UnprocessableError(
                f"timeout must be a positive number of seconds, got {timeout!r}", path="$.timeout"
            )
        if timeout > self.limits.max_run_seconds:
            raise UnprocessableError(
                f"timeout {timeout} s is over this server's limit of "
                f"{self.limits.max_run_seconds} s",
                path="$.timeout",
            )
        trace = body.get("trace", "nodes")
        if not isinstance(trace, str) or trace not in TRACE_MODES:
            raise UnprocessableError(
                f"trace must be one of {', '.join(map(repr, TRACE_MODES))}, got {trace!r}",
                path="$.trace",
            )
        wait = body.get("await_watcher", 0)
        if (
            isinstance(wait, bool)
            or not isinstance(wait, (int, float))
            or not 0 <= wait <= _MAX_AWAIT_WATCHER
        ):
            raise UnprocessableError(
                "await_watcher must be a number of seconds from 0 to "
                f"{_MAX_AWAIT_WATCHER:g}, got {wait!r}",
                path="$.await_watcher",
            )
        self._load_packs(body.get("packs", []))
        graph_doc = body["graph"]
        check_graph_size(graph_doc, self.limits)
        initial = body.get("initial", [])
        if not isinstance(initial, list):
            raise UnprocessableError(
                f"initial must be an array of {{node, port, data}}, got {_kind(initial)}",
                path="$.initial",
            )
        try:
            graph = Graph.from_json(graph_doc)
            net = Network.from_graph(graph)
            net.nodes()  # builds every node: a bad graph is refused here, not when it runs
        except ReflowError as exc:
            raise _graph_error(exc, graph_doc) from exc
        except Exception as exc:  # an actor's constructor refusing its config, say
            raise UnprocessableError(
                f"building the graph failed: {type(exc).__name__}: {exc}", path="$.processes"
            ) from exc
        try:
            for i, item in enumerate(initial):
                _add_initial(net, item, f"$.initial[{i}]")
            return Execution(net, float(timeout), self.limits, self._tracing, trace, float(wait))
        except BaseException:
            net.shutdown(wait=0)
            raise

    def _load_packs(self, packs: Any) -> None:
        if not isinstance(packs, list):
            raise UnprocessableError(
                f"packs must be an array of pack names, got {_kind(packs)}", path="$.packs"
            )
        for i, name in enumerate(packs):
            path = f"$.packs[{i}]"
            if not isinstance(name, str) or not name:
                raise UnprocessableError(f"a pack name must be a string, got {name!r}", path=path)
            if self._load_pack is None:
                raise UnprocessableError("this server loads no packs by name", path=path)
            try:
                self._load_pack(name)
            except ReflowError as exc:
                raise UnprocessableError(str(exc), path=path, type_name=type(exc).__name__) from exc

    # ------------------------------------------------------------------ reading
    def get_or_none(self, eid: str) -> Execution | None:
        return self._items.get(eid)

    def get(self, eid: str) -> Execution:
        execution = self._items.get(eid)
        if execution is None:
            raise NotFoundError(f"no execution {eid!r}", path="$.path.id")
        return execution

    def page(self, limit: int, cursor: str | None) -> tuple[list[Execution], str | None]:
        """Up to ``limit`` executions, newest first, after the one named by ``cursor``."""
        with self._lock:
            ids = list(self._items)
        ids.reverse()
        start = 0
        if cursor is not None:
            try:
                start = ids.index(cursor) + 1
            except ValueError:
                raise BadRequestError(
                    f"cursor {cursor!r} names no execution (it may have been forgotten)",
                    path="$.query.cursor",
                ) from None
        chosen = ids[start : start + limit]
        items = [e for e in (self._items.get(i) for i in chosen) if e is not None]
        more = start + limit < len(ids)
        return items, (chosen[-1] if more and chosen else None)

    def __iter__(self) -> Iterator[Execution]:
        return iter(list(self._items.values()))

    def close(self, wait: float = 5.0) -> None:
        """Cancel every execution and wait (up to ``wait`` s in all) for their runners."""
        with self._lock:
            self._closed = True
            items = list(self._items.values())
        for e in items:
            e.cancel("the server is shutting down")
        deadline = time.monotonic() + wait
        for e in items:
            if e.thread is not None:
                e.thread.join(max(0.0, deadline - time.monotonic()))


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )


def _add_initial(net: Network, item: Any, path: str) -> None:
    if not isinstance(item, dict) or not {"node", "port"} <= set(item):
        raise UnprocessableError(
            "an initial packet must be an object {node, port, data}", path=path
        )
    node, port = item["node"], item["port"]
    if not isinstance(node, str) or not isinstance(port, str):
        raise UnprocessableError("node and port must be strings", path=path)
    data = item.get("data")
    try:
        tagged = isinstance(data, dict) and set(data) == {"type", "data"}
        net.add_initial(node, port, data if tagged else Message.from_value(data))
    except UnknownNodeError as exc:
        raise UnprocessableError(
            str(exc), path=f"{path}.node", type_name=type(exc).__name__
        ) from exc
    except UnknownPortError as exc:
        raise UnprocessableError(
            str(exc), path=f"{path}.port", type_name=type(exc).__name__
        ) from exc
    except ReflowError as exc:
        raise UnprocessableError(
            str(exc), path=f"{path}.data", type_name=type(exc).__name__
        ) from exc
    except (TypeError, ValueError) as exc:
        raise UnprocessableError(f"{exc}", path=f"{path}.data", type_name="MessageError") from exc


def _connection_index(doc: Any, match: Callable[[dict[str, Any]], str | None]) -> str | None:
    conns = doc.get("connections") if isinstance(doc, dict) else None
    for i, c in enumerate(conns if isinstance(conns, list) else []):
        where = match(c) if isinstance(c, dict) else None
        if where is not None:
            return f"$.connections[{i}]{where}"
    return None


def _end_of(c: dict[str, Any], side: str) -> tuple[Any, Any]:
    end = c.get(side)
    return (end.get("process"), end.get("port")) if isinstance(end, dict) else (None, None)


def _graph_error(exc: ReflowError, doc: Any) -> UnprocessableError:
    """The 422 for an error building the graph, with the JSON path in the graph at fault."""
    path: str | None = "$"
    if isinstance(exc, GraphFormatError):
        return UnprocessableError(exc.reason, path=exc.path, type_name=type(exc).__name__)
    processes = doc.get("processes") if isinstance(doc, dict) else None
    processes = processes if isinstance(processes, dict) else {}
    if isinstance(exc, UnknownComponentError):
        ids = [
            k
            for k, v in processes.items()
            if isinstance(v, dict) and v.get("component") == exc.component
        ]
        path = _key("$.processes", ids[0]) + ".component" if ids else "$.processes"
    elif isinstance(exc, DuplicateNodeError):
        path = _key("$.processes", exc.node)
    elif isinstance(exc, UnknownPortError):
        side, key = ("src", ".src.port") if exc.direction == "out" else ("tgt", ".tgt.port")
        port = exc.port.lower()
        path = _connection_index(
            doc,
            lambda c: (
                key
                if _end_of(c, side)[0] == exc.node and str(_end_of(c, side)[1]).lower() == port
                else None
            ),
        )
    elif isinstance(exc, UnknownNodeError):
        path = _connection_index(
            doc,
            lambda c: (
                ".src.process"
                if _end_of(c, "src")[0] == exc.node
                else (".tgt.process" if _end_of(c, "tgt")[0] == exc.node else None)
            ),
        )
    elif isinstance(exc, PortTypeError):
        src_node, _, src_port = exc.source.partition(".")
        path = _connection_index(
            doc, lambda c: "" if _end_of(c, "src") == (src_node, src_port) else None
        )
    elif isinstance(exc, (MessageError, PackError)):
        path = "$.connections"
    return UnprocessableError(str(exc), path=path or "$", type_name=type(exc).__name__)
