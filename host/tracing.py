"""OpenTelemetry traces of network runs (needs the ``otel`` extra: ``pip install
'reflow[otel]'``)::

    from reflow.tracing import trace_network

    with trace_network(net, mode="ticks") as trace:  # OTEL_EXPORTER_OTLP_ENDPOINT etc.
        net.run(timeout=30)
    print(trace.trace_id)

One trace per run: a span for the run, a span per node (its first tick's start to its last
tick's end; ticks, failures, bytes out), a span per tick in mode ``"ticks"``; failures set
status ERROR with the error's text, secrets redacted. Spans are made from the network's
event stream by a reader thread, and exported through a bounded queue, so a slow or dead
receiver never slows or fails the run. See ``reflow._tracing`` for the parts.
"""

from __future__ import annotations

from ._tracing import (
    TRACE_MODES,
    BoundedSpanProcessor,
    NetworkTrace,
    RunTracer,
    TraceConfigError,
    close_provider,
    otlp_tracer_provider,
    redact,
    trace_network,
)

__all__ = [
    "TRACE_MODES",
    "BoundedSpanProcessor",
    "NetworkTrace",
    "RunTracer",
    "TraceConfigError",
    "close_provider",
    "otlp_tracer_provider",
    "redact",
    "trace_network",
]
