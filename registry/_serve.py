"""How ``reflow-registry serve`` runs the app: uvicorn, with the limits a server facing
untrusted clients needs.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) and bounds the size of a
request head (``h11_max_incomplete_event_size``), but it waits forever for a head that
arrives a byte at a time, and accepts connections without limit. :func:`protocol_class`
adds both bounds to uvicorn's h11 protocol (a subclass; the ``http=`` setting of
``uvicorn.Config`` takes a protocol class):

- a request head must be complete ``header_timeout`` seconds after its first byte arrived
  (or after the connection opened): else ``408 request_timeout`` if part of one came, or a
  silent close if nothing did;
- at most ``max_connections`` connections are open at once: one more is answered ``503
  too_many_connections`` with ``Retry-After`` and closed at once. asyncio accepts up to
  ``backlog`` connections per turn of the event loop before it gets to refuse them, so the
  process holds ``max_connections`` client sockets plus a few ``backlog`` batches at worst,
  however many clients knock.

Request bodies are timed by the app itself (:class:`RegistryConfig` ``body_timeout`` and
``min_body_rate``: 408), and concurrent publishes capped there (``max_uploads``: 503), so
open descriptors and temp files stay bounded whatever clients do.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["ServerLimits", "protocol_class", "serve", "server_config"]


@dataclass(frozen=True)
class ServerLimits:
    """Connection-level limits (see the module docstring). ``keep_alive``: seconds an idle
    connection stays open between requests; ``max_head``: bytes a request head may take;
    ``backlog``: the listen queue (also how many connections asyncio accepts at once)."""

    header_timeout: float = 10.0
    keep_alive: float = 5.0
    max_connections: int = 512
    max_head: int = 16 << 10
    backlog: int = 128

    def __post_init__(self) -> None:
        for name in ("header_timeout", "keep_alive", "max_connections", "max_head", "backlog"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"ServerLimits.{name} must be a positive number, not {value!r}")


class _GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head deadline and a connection cap."""

    limits: ServerLimits = ServerLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._answer(
                503,
                "too_many_connections",
                f"this registry serves at most {self.limits.max_connections} "
                "connections at once; retry shortly",
                ("Retry-After", "1"),
            )
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head():
            self._arm()  # from the first byte of this head; a no-op while armed
        super().data_received(data)
        if not self._awaiting_head():
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start a pipelined request
        if not self._awaiting_head():
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _awaiting_head(self) -> bool:
        # No request is being answered: what arrives now is (part of) the next request head,
        # or the rest of a body whose request was already answered (uvicorn drops it).
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(
                self.limits.header_timeout, self._head_timed_out
            )

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._awaiting_head():
            return
        if self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:
            self._answer(
                408,
                "request_timeout",
                f"the request head did not arrive within {self.limits.header_timeout:g} s",
            )
        else:
            self.transport.close()

    def _answer(self, status: int, code: str, message: str, *headers: tuple[str, str]) -> None:
        """Write a JSON error and close. Written raw: h11 can only send a response to a
        request it has parsed, and here there is none."""
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        lines = [
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            "Connection: close",
            *(f"{k}: {v}" for k, v in headers),
        ]
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body)
        self.transport.close()


def protocol_class(limits: ServerLimits) -> type[H11Protocol]:
    """uvicorn's h11 protocol bound by ``limits``."""
    return type("RegistryH11Protocol", (_GuardedH11Protocol,), {"limits": limits})


def server_config(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8700,
    limits: ServerLimits | None = None,
    log_level: str = "info",
) -> uvicorn.Config:
    """The uvicorn configuration ``reflow-registry serve`` runs ``app`` with."""
    limits = limits or ServerLimits()
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        http=protocol_class(limits),
        ws="none",
        timeout_keep_alive=limits.keep_alive,  # type: ignore[arg-type]  # a float works
        h11_max_incomplete_event_size=limits.max_head,
        backlog=int(limits.backlog),
    )


def serve(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8700,
    limits: ServerLimits | None = None,
    log_level: str = "info",
) -> None:
    """Run ``app`` until interrupted."""
    uvicorn.Server(
        server_config(app, host=host, port=port, limits=limits, log_level=log_level)
    ).run()
