"""The execution server's traces: whether it exports them, and the tracer each execution uses.

Tracing is on when the server is given an OTLP endpoint (``reflow-server --otlp URL``,
:attr:`ServerConfig.otlp`), a ``TracerProvider`` of its own (``ServerConfig.tracer_provider``,
for embedding), or the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` variables — unless ``OTEL_SDK_DISABLED=true`` or
``OTEL_TRACES_EXPORTER=none``. Off, nothing of OpenTelemetry is imported and executions read
their events exactly as before. On, each execution whose request does not say
``"trace": "off"`` becomes one trace (``reflow._tracing``), its id in the execution's JSON.
"""

from __future__ import annotations

import os
from typing import Any

from reflow._tracing import RunTracer, TraceConfigError, close_provider, otlp_tracer_provider

from ._errors import ServerConfigError

__all__ = ["ServerTracing", "server_tracing"]

_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


class ServerTracing:
    """The server's tracer provider; :meth:`run_tracer` makes one execution's tracer."""

    def __init__(self, provider: Any, owned: bool) -> None:
        self.provider = provider
        self._owned = owned
        self._tracer = provider.get_tracer("reflow.server")
        self._gate = getattr(provider, "reflow_processor", None)

    def run_tracer(self, mode: str, execution_id: str, nodes: int) -> RunTracer:
        return RunTracer(
            self._tracer,
            mode,
            name="reflow.execution",
            attributes={
                "reflow.execution.id": execution_id,
                "reflow.trace.mode": mode,
                "reflow.graph.nodes": nodes,
            },
            gate=self._gate,
        )

    def close(self, timeout: float = 5.0) -> None:
        """Flush what is queued, waiting at most ``timeout`` s (a provider the embedder
        passed in is theirs to shut down)."""
        if self._owned:
            close_provider(self.provider, timeout)
        else:
            flush = getattr(self.provider, "force_flush", None)
            if flush is not None:
                flush(int(timeout * 1000))


def _env_off() -> bool:
    disabled = os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    return disabled or os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none"


def server_tracing(otlp: str | None, provider: Any = None) -> ServerTracing | None:
    """The server's tracing, or ``None`` when it exports no traces (see the module doc).
    Raises ServerConfigError (option ``otlp``) for a bad endpoint or a missing extra."""
    if provider is not None:
        return ServerTracing(provider, owned=False)
    if otlp is None and (
        _env_off() or not any(os.environ.get(v, "").strip() for v in _ENDPOINT_VARS)
    ):
        return None
    try:
        return ServerTracing(otlp_tracer_provider(otlp, service_name=_service_name()), owned=True)
    except TraceConfigError as exc:
        raise ServerConfigError(str(exc), option="otlp") from exc


def _service_name() -> str | None:
    return None if os.environ.get("OTEL_SERVICE_NAME") else "reflow-server"
