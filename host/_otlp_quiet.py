"""The OTLP/HTTP span exporter made quiet and bounded, for :func:`~._tracing.otlp_tracer_provider`.

The OpenTelemetry exporter logs a line per retry and per failed batch; against a collector
that is down that is a stream of lines per run. :class:`QuietExporter` swallows those records
(only while one of its own exports runs on that thread, so another exporter's lines pass) and
says one warning naming the endpoint when exports start failing, and one info line when they
work again. :func:`export_timeout` bounds one export with its retries to 5 s unless the
standard ``OTEL_EXPORTER_OTLP_TIMEOUT`` variables say otherwise, since a dead collector holds
the export thread that long.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["QuietExporter", "export_timeout"]

log = logging.getLogger("reflow.tracing")

#: seconds one export (with its retries) may take unless OTEL_EXPORTER_OTLP_*TIMEOUT says
_EXPORT_TIMEOUT_S = 5.0

_EXPORTER_LOGGER = "opentelemetry.exporter.otlp.proto.http.trace_exporter"
_exporting = threading.local()


class _InsideExportFilter(logging.Filter):
    """Drops the OTLP exporter's own log records while one of our exporters runs its export
    on this thread (a "Transient error ... retrying" line per retry, then a "Failed to
    export" line per batch): :class:`QuietExporter` says it once instead. Records of an
    exporter that is not ours pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        sink = getattr(_exporting, "sink", None)
        if sink is None:
            return True
        sink.append(record.getMessage())
        return False


_FILTER = _InsideExportFilter()


class QuietExporter:
    """The OTLP/HTTP exporter, with its per-retry log lines replaced by one warning of ours
    naming the endpoint when exports start failing (and an info line when they work again)."""

    def __init__(self, inner: Any, endpoint: str) -> None:
        self._inner = inner
        self.endpoint = endpoint
        self.failing = False
        exporter_log = logging.getLogger(_EXPORTER_LOGGER)
        if _FILTER not in exporter_log.filters:
            exporter_log.addFilter(_FILTER)

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        said: list[str] = []
        _exporting.sink = said
        try:
            result = self._inner.export(spans)
        finally:
            _exporting.sink = None
        if result == SpanExportResult.SUCCESS:
            if self.failing:
                self.failing = False
                log.info("the OTLP collector at %s accepts spans again", self.endpoint)
        elif not self.failing:
            self.failing = True
            why = _export_reason(said)
            log.warning(
                "cannot export trace spans to the OTLP collector at %s%s; the run goes on, "
                "its spans are dropped while the collector is down (said once)",
                self.endpoint,
                f" ({why})" if why else "",
            )
        return result

    def shutdown(self, timeout_millis: float = 30_000) -> None:
        _exporting.sink = []  # "already shutdown" / "aborting retry" lines are not news
        try:
            try:
                self._inner.shutdown(timeout_millis=timeout_millis)
            except TypeError:
                self._inner.shutdown()
        finally:
            _exporting.sink = None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return bool(self._inner.force_flush(timeout_millis))


def _export_reason(lines: list[str]) -> str:
    """The cause in the exporter's first line ("Transient error Connection refused ...")."""
    if not lines:
        return ""
    first = lines[0]
    found = re.match(r"Transient error (.*?) encountered while exporting", first)
    text = found.group(1) if found else first
    errno = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)  # "Connection refused"
    return (errno.group(1) if errno else text)[:200]


def export_timeout() -> float | None:
    """The exporter's timeout: ``None`` (the exporter reads the ``OTEL_*`` variable) where one
    is set, else :data:`_EXPORT_TIMEOUT_S`."""
    if any(
        os.environ.get(v, "").strip()
        for v in ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
    ):
        return None
    return _EXPORT_TIMEOUT_S
