"""OpenTelemetry traces of network runs, made from their event stream.

One trace per run: a root span for the run; under it a span per node that ticked, from the
start of its first tick to the end of its last, with the attributes ``reflow.node.id``,
``reflow.node.template``, ``reflow.node.ticks``, ``reflow.node.failures`` and
``reflow.node.bytes_out``; and, in mode ``"ticks"``, a span per tick under its node's span.
A failed tick sets its span, its node's span and the run's span to status ERROR with the
error's text, secrets redacted (:func:`redact`).

Spans are made from event records after the fact, stamped with the events' own times, by
whoever reads the stream (the server's runner thread, or :func:`trace_network`'s reader): the
scheduler does no tracing work at all. With tracing off nothing subscribes and nothing of
OpenTelemetry is imported, so it costs nothing.

Export (:func:`otlp_tracer_provider`): the SDK's batch processor and OTLP/HTTP exporter,
configured by the standard ``OTEL_*`` variables, behind :class:`BoundedSpanProcessor`: at most
``max_queue_size`` ended spans wait for the exporter; a span that finds the queue full is
dropped and counted, and the first drop is logged once. A receiver that is slow or down only
fills that queue: the run never waits for it, and :func:`close_provider` waits a bounded time.
The exporter's own log line per retry is replaced by one warning naming the endpoint, and one
export with its retries takes at most 5 s unless ``OTEL_EXPORTER_OTLP_TIMEOUT`` says
otherwise (:class:`~._otlp_quiet.QuietExporter`, ``_otlp_quiet``).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._core._events import _EPOCH, message_size
from ._errors import ReflowError
from ._otlp_quiet import QuietExporter, export_timeout

if TYPE_CHECKING:
    from ._core._network import Network

__all__ = [
    "TRACE_MODES",
    "BoundedSpanProcessor",
    "NetworkTrace",
    "QuietExporter",
    "RunTracer",
    "TraceConfigError",
    "check_mode",
    "close_provider",
    "otlp_tracer_provider",
    "redact",
    "trace_network",
    "traces_endpoint",
]

log = logging.getLogger("reflow.tracing")

TRACE_MODES = ("off", "nodes", "ticks")
_EPOCH_NS = int(_EPOCH * 1e9)
_ERROR_CHARS = 1000  # of an error's text carried by a span


class TraceConfigError(ReflowError):
    """Tracing cannot be set up as asked: a bad mode or endpoint, or OpenTelemetry missing."""


def check_mode(mode: Any) -> str:
    """``mode`` if it is one of :data:`TRACE_MODES`, else a TraceConfigError naming them."""
    if not isinstance(mode, str) or mode not in TRACE_MODES:
        raise TraceConfigError(
            f"trace mode {mode!r} is not one of {', '.join(map(repr, TRACE_MODES))}"
        )
    return mode


def _otel() -> Any:
    try:
        from opentelemetry import trace
    except ImportError as exc:
        raise TraceConfigError(
            "tracing needs OpenTelemetry: pip install 'reflow[otel]' "
            f"(opentelemetry-sdk and its OTLP/HTTP exporter); {exc}"
        ) from None
    return trace


# ---------------------------------------------------------------------------------- redaction

_SECRET_ENV = re.compile(r"REFLOW_SECRET_|.*(TOKEN|SECRET|PASSWORD|API_?KEY)\Z", re.IGNORECASE)
_SECRET_TEXT = [
    (re.compile(r"(?i)\b(bearer|basic|token)(\s+)[A-Za-z0-9._~+/=-]{8,}"), r"\1\2[redacted]"),
    (
        re.compile(
            r"(?i)\b((?:x-)?api[_-]?key|access[_-]?token|refresh[_-]?token|client[_-]?secret"
            r"|authorization|password|passwd|secret|token|apikey|signature)"
            r"""(["']?\s*[:=]\s*["']?)((?:bearer|basic|token)\s+)?([^\s"'&,;}]+)"""
        ),
        r"\1\2\3[redacted]",
    ),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]*:[^/\s@]*@"), r"\1[redacted]@"),
]


def redact(text: str, limit: int = _ERROR_CHARS) -> str:
    """``text`` cut to ``limit`` characters with what could be a secret replaced by
    ``[redacted]``: the value of every secret-named environment variable (the http-api
    engine's ``REFLOW_SECRET_*`` ones included), credentials after ``Bearer``/``Basic``,
    ``key=value`` pairs whose key names a credential, and a URL's user:password."""
    out = text[: limit * 2]
    for name, value in os.environ.items():
        if len(value) >= 6 and _SECRET_ENV.match(name) and value in out:
            out = out.replace(value, "[redacted]")
    for pattern, repl in _SECRET_TEXT:
        out = pattern.sub(repl, out)
    return out[:limit]


# ---------------------------------------------------------------------------------- export


def traces_endpoint(url: str) -> str:
    """The OTLP/HTTP traces URL for ``url`` (a base such as ``http://collector:4318`` gets
    ``/v1/traces``; a URL already ending so is kept). A TraceConfigError for anything that is
    not an http(s) URL with a host."""
    if not isinstance(url, str) or not url.strip():
        raise TraceConfigError(f"OTLP endpoint {url!r}: expected an http(s) URL")
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise TraceConfigError(f"OTLP endpoint {url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TraceConfigError(
            f"OTLP endpoint {url!r}: expected http://host:port or https://host:port "
            "(OTLP over HTTP/protobuf, usually port 4318)"
        )
    base = url.strip()
    return base if parts.path.endswith("/v1/traces") else base.rstrip("/") + "/v1/traces"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) <= 0:
        raise TraceConfigError(f"${name}={raw!r}: expected a positive whole number")
    return int(raw)


class _CountingExporter:
    """Passes batches to the real exporter, telling the processor how many left its queue."""

    def __init__(self, inner: Any, owner: BoundedSpanProcessor) -> None:
        self._inner = inner
        self._owner = owner

    def export(self, spans: Sequence[Any]) -> Any:
        self._owner._taken(len(spans))
        return self._inner.export(spans)

    def shutdown(self, timeout_millis: float = 30_000) -> None:
        try:
            self._inner.shutdown(timeout_millis=timeout_millis)
        except TypeError:
            self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return bool(self._inner.force_flush(timeout_millis))


class BoundedSpanProcessor:
    """The SDK's ``BatchSpanProcessor`` with a queue that is never over ``max_queue_size``:
    a span ended while that many wait is dropped here, counted in :attr:`dropped`, and the
    first drop is logged (a warning, once), instead of a log line per span."""

    def __init__(
        self,
        exporter: Any,
        *,
        max_queue_size: int = 2048,
        max_export_batch_size: int = 512,
        schedule_delay_millis: float = 500,
    ) -> None:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.max_queue_size = max_queue_size
        self.dropped = 0
        self._waiting = 0
        self._lock = threading.Lock()
        self._inner = BatchSpanProcessor(
            _CountingExporter(exporter, self),  # type: ignore[arg-type]
            max_queue_size=max_queue_size,
            max_export_batch_size=min(max_export_batch_size, max_queue_size),
            schedule_delay_millis=schedule_delay_millis,
        )

    def _taken(self, n: int) -> None:
        with self._lock:
            self._waiting = max(0, self._waiting - n)

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def _on_ending(self, span: Any) -> None:
        pass

    @property
    def full(self) -> bool:
        """The queue is full: a span ended now would be dropped (a tracer may skip making
        per-tick spans while this holds, and :meth:`drop` them instead)."""
        return self._waiting >= self.max_queue_size

    def drop(self, n: int = 1) -> None:
        """Count ``n`` spans dropped; the first drop ever is logged."""
        with self._lock:
            first = self.dropped == 0
            self.dropped += n
        if first:
            log.warning(
                "trace spans are being dropped: %d wait for the OTLP exporter already "
                "(the receiver is slow or down); later drops are counted, not logged",
                self.max_queue_size,
            )

    def on_end(self, span: Any) -> None:
        with self._lock:
            full = self._waiting >= self.max_queue_size
            if not full:
                self._waiting += 1
        if full:
            self.drop()
            return
        self._inner.on_end(span)

    def shutdown(self) -> None:
        self._inner.shutdown()
        if self.dropped:
            log.warning("%d trace span(s) were dropped in all", self.dropped)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return bool(self._inner.force_flush(timeout_millis))


def otlp_tracer_provider(
    endpoint: str | None = None,
    *,
    service_name: str | None = None,
    headers: Mapping[str, str] | None = None,
    max_queue_size: int | None = None,
) -> Any:
    """An SDK ``TracerProvider`` exporting over OTLP/HTTP through a
    :class:`BoundedSpanProcessor`.

    ``endpoint``: a collector's base URL or full ``/v1/traces`` URL; ``None`` lets the
    exporter read ``$OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``$OTEL_EXPORTER_OTLP_ENDPOINT``
    (default ``http://localhost:4318``). Headers, timeout and compression come from the
    standard ``OTEL_EXPORTER_OTLP_*`` variables unless ``headers`` is given; the service
    name is ``service_name``, else ``$OTEL_SERVICE_NAME``, else ``reflow``; the queue bound is
    ``max_queue_size``, else ``$OTEL_BSP_MAX_QUEUE_SIZE``, else 2048."""
    _otel()
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    ).strip()
    if protocol not in ("", "http/protobuf"):
        raise TraceConfigError(
            f"OTLP protocol {protocol!r} is not supported: reflow exports OTLP over "
            "http/protobuf (set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf, usually port 4318)"
        )
    url = traces_endpoint(endpoint) if endpoint is not None else None
    for var in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        if url is None and os.environ.get(var, "").strip():
            traces_endpoint(os.environ[var])  # refused here, not by the exporter's thread
            break
    queue = max_queue_size if max_queue_size is not None else None
    if queue is None:
        queue = _env_int("OTEL_BSP_MAX_QUEUE_SIZE", 2048)
    if isinstance(queue, bool) or not isinstance(queue, int) or queue <= 0:
        raise TraceConfigError(f"max_queue_size={queue!r}: expected a positive whole number")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    attrs = {"service.name": service_name} if service_name else {}
    resource = Resource.create(attrs)
    if not service_name and not os.environ.get("OTEL_SERVICE_NAME"):
        resource = resource.merge(Resource({"service.name": "reflow"}))
    otlp = OTLPSpanExporter(
        endpoint=url, headers=dict(headers) if headers else None, timeout=export_timeout()
    )
    shown = str(getattr(otlp, "_endpoint", None) or url or "http://localhost:4318/v1/traces")
    provider = TracerProvider(resource=resource)
    processor = BoundedSpanProcessor(QuietExporter(otlp, redact(shown)), max_queue_size=queue)
    provider.add_span_processor(processor)  # type: ignore[arg-type]
    provider.reflow_processor = processor  # type: ignore[attr-defined]  # RunTracer's gate
    return provider


def close_provider(provider: Any, timeout: float = 5.0) -> bool:
    """Flush and shut ``provider`` down, waiting at most ``timeout`` s (an exporter stuck on
    a dead receiver is left to its daemon thread). True if it finished in time."""
    shutdown = getattr(provider, "shutdown", None)
    if shutdown is None:
        return True
    worker = threading.Thread(target=shutdown, name="reflow-trace-close", daemon=True)
    worker.start()
    worker.join(timeout)
    return not worker.is_alive()


# ---------------------------------------------------------------------------------- spans


def _ns(t: float) -> int:
    return _EPOCH_NS + int(t * 1e9)


class _NodeSpan:
    __slots__ = ("ctx", "end", "error", "failures", "span", "ticks")

    def __init__(self, span: Any, ctx: Any) -> None:
        self.span = span
        self.ctx = ctx
        self.ticks = 0
        self.failures = 0
        self.end = 0
        self.error: str | None = None


class RunTracer:
    """The spans of one run, made from its event records (:meth:`feed`), in the thread that
    reads them. :meth:`begin` opens the run's span, :meth:`finish` ends every span (the node
    spans at their last tick's end)."""

    def __init__(
        self,
        tracer: Any,
        mode: str = "nodes",
        name: str = "reflow.run",
        attributes: Mapping[str, Any] | None = None,
        gate: BoundedSpanProcessor | None = None,
    ) -> None:
        self.mode = check_mode(mode)
        #: While ``gate`` is full, tick spans are counted as dropped instead of made (making
        #: one costs ~15 us in the SDK, only for the queue to refuse it).
        self._gate = gate
        self.ticks = mode == "ticks"
        self._trace = _otel()
        self._tracer = tracer
        self._name = name
        self._attributes = dict(attributes or {})
        self._root: Any = None
        self._root_ctx: Any = None
        self._nodes: dict[str, _NodeSpan] = {}
        self._started: dict[str, float] = {}
        self._bytes: dict[str, int] = {}
        self.lost = 0
        self.finished = False

    @property
    def trace_id(self) -> str | None:
        """The run's trace id as 32 hex digits (``None`` before :meth:`begin`)."""
        if self._root is None:
            return None
        return format(self._root.get_span_context().trace_id, "032x")

    def begin(self, t: float | None = None) -> None:
        """Open the run's span (at ``t``, a ``time.perf_counter()`` reading; default now)."""
        if self._root is not None:
            return
        start = _ns(t) if t is not None else None
        self._root = self._tracer.start_span(
            self._name, context=None, attributes=self._attributes, start_time=start
        )
        self._root_ctx = self._trace.set_span_in_context(self._root)

    def _node(self, nid: str, comp: str, start: int) -> _NodeSpan:
        span = self._tracer.start_span(
            f"node {nid}",
            context=self._root_ctx,
            attributes={"reflow.node.id": nid, "reflow.node.template": comp},
            start_time=start,
        )
        node = _NodeSpan(span, self._trace.set_span_in_context(span))
        self._nodes[nid] = node
        return node

    def feed(self, records: Sequence[tuple[Any, ...]], lost: int = 0) -> None:
        """Turn a batch of event records (``EventStream.recv_records``) into spans;
        ``lost``: how many the stream dropped before them (counted on the run's span)."""
        if self._root is None:
            self.begin(records[0][1] if records else None)
        self.lost += lost
        nodes, started, sent = self._nodes, self._started, self._bytes
        ticks = self.ticks
        for r in records:
            kind = r[0]
            if kind == "MessageSent":
                src = r[2]
                sent[src] = sent.get(src, 0) + message_size(r[6])
            elif kind == "ActorStarted":
                started[r[2]] = r[1]
            elif kind == "ActorCompleted":
                nid = r[2]
                end = _ns(r[1])
                start = end - int(r[4] * 1e9)
                node = nodes.get(nid) or self._node(nid, r[3], start)
                node.ticks += 1
                node.end = end
                if ticks:
                    gate = self._gate
                    if gate is not None and gate.full:
                        gate.drop()
                        continue
                    self._tracer.start_span(
                        f"tick {nid}",
                        context=node.ctx,
                        attributes={"reflow.tick.outputs": r[5]},
                        start_time=start,
                    ).end(end_time=end)
            elif kind == "ActorFailed":
                self._failed(r)

    def _failed(self, r: tuple[Any, ...]) -> None:
        trace = self._trace
        nid = r[2]
        end = _ns(r[1])
        start = _ns(self._started.get(nid, r[1]))
        start = min(start, end)
        node = self._nodes.get(nid) or self._node(nid, r[3], start)
        node.failures += 1
        node.end = end
        error = redact(str(r[4]))
        if node.error is None:
            node.error = error
        if self.ticks:  # never gated: a failed tick's span is worth its cost
            span = self._tracer.start_span(
                f"tick {nid}", context=node.ctx, start_time=start, attributes={}
            )
            span.set_status(trace.Status(trace.StatusCode.ERROR, error))
            span.add_event("exception", {"exception.message": error}, timestamp=end)
            span.end(end_time=end)

    def finish(self, state: str | None = None, reason: str | None = None) -> None:
        """End the node spans and the run's span. ``state``: ``completed``, ``failed`` or
        ``cancelled`` (default: ``failed`` if a tick failed, else ``completed``); a failed
        run's span has status ERROR with ``reason`` (redacted)."""
        if self.finished:
            return
        self.finished = True
        if self._root is None:
            self.begin()
        trace = self._trace
        failures = ticks = 0
        last = 0
        first_error: str | None = None
        for nid, node in self._nodes.items():
            span = node.span
            span.set_attribute("reflow.node.ticks", node.ticks + node.failures)
            span.set_attribute("reflow.node.failures", node.failures)
            span.set_attribute("reflow.node.bytes_out", self._bytes.get(nid, 0))
            if node.error is not None:
                span.set_status(trace.Status(trace.StatusCode.ERROR, node.error))
                first_error = first_error or f"{nid}: {node.error}"
            span.end(end_time=node.end)
            failures += node.failures
            ticks += node.ticks + node.failures
            last = max(last, node.end)
        if state is None:
            state = "failed" if failures else "completed"
        root = self._root
        root.set_attribute("reflow.state", state)
        root.set_attribute("reflow.ticks", ticks)
        root.set_attribute("reflow.failures", failures)
        root.set_attribute("reflow.nodes", len(self._nodes))
        if self.lost:
            root.set_attribute("reflow.events_lost", self.lost)
        if state == "failed":
            text = redact(reason) if reason else (first_error or "the run failed")
            root.set_status(trace.Status(trace.StatusCode.ERROR, text))
        elif reason:
            root.set_attribute("reflow.reason", redact(reason))
        root.end()


# ---------------------------------------------------------------------------------- helper


class NetworkTrace:
    """A tracer attached to one :class:`~reflow.Network` through its event stream (see
    :func:`trace_network`): a reader thread feeds a :class:`RunTracer`; :meth:`close` reads
    the rest and ends the trace."""

    def __init__(self, net: Network, tracer: RunTracer, provider: Any, owned: bool) -> None:
        self.tracer = tracer
        self._provider = provider
        self._owned = owned
        self._stream = net.events(maxlen=1 << 17)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        tracer.begin()
        self._thread = threading.Thread(target=self._read, name="reflow-trace", daemon=True)
        self._thread.start()

    @property
    def trace_id(self) -> str | None:
        return self.tracer.trace_id

    def _pump(self, timeout_ms: int) -> int:
        stream = self._stream
        with self._lock:
            before = stream.lost
            records = stream.recv_records(4096, timeout_ms)
            lost = stream.lost - before
            if records or lost:
                self.tracer.feed(records, lost)
        return len(records)

    def _read(self) -> None:
        while not self._stop.is_set() and not self._stream.closed:
            self._pump(50)

    def close(self, state: str | None = None, reason: str | None = None) -> None:
        """Read what is left, end the trace (idempotent). With a provider this trace made
        itself, shut it down too, waiting at most 5 s for the exporter."""
        if self.tracer.finished:
            return
        self._stop.set()
        self._thread.join(5)
        while self._pump(0):
            pass
        self._stream.close()
        self.tracer.finish(state, reason)
        if self._owned:
            close_provider(self._provider)

    def __enter__(self) -> NetworkTrace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def trace_network(
    net: Network,
    *,
    mode: str = "nodes",
    provider: Any = None,
    name: str = "reflow.run",
    attributes: Mapping[str, Any] | None = None,
) -> NetworkTrace:
    """Trace ``net``'s run as one OpenTelemetry trace; call before ``net.start()``/``run()``
    so no event is missed, and close (or leave the ``with`` block) after the run::

        with trace_network(net, mode="ticks") as trace:
            net.run(timeout=30)
        print(trace.trace_id)

    ``provider``: a ``TracerProvider`` (default: :func:`otlp_tracer_provider` from the
    ``OTEL_*`` variables, shut down on close); ``mode``: ``"nodes"`` or ``"ticks"``."""
    if check_mode(mode) == "off":
        raise TraceConfigError("trace_network(mode='off') traces nothing; do not call it")
    owned = provider is None
    if owned:
        provider = otlp_tracer_provider()
    gate = getattr(provider, "reflow_processor", None)
    tracer = RunTracer(provider.get_tracer("reflow"), mode, name, attributes, gate)
    return NetworkTrace(net, tracer, provider, owned)
