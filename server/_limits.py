"""What one execution server allows: :class:`ServerLimits`, and the checks that enforce them
on a request before any of it is built or run.

A body is read in chunks and refused (413) the moment it passes its limit, so a client that
sends gigabytes costs the server one chunk; a graph's node and edge counts are checked on the
parsed JSON before a single actor is made.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Any

from starlette.requests import ClientDisconnect, Request

from ._errors import BadRequestError, PayloadTooLargeError, ServerConfigError, UnprocessableError

__all__ = ["ServerLimits", "check_graph_size", "read_body", "ws_protocol"]


@dataclass(frozen=True)
class ServerLimits:
    """Bounds on what clients can make the server do.

    ``max_running``: executions running at once; ``max_queued``: more waiting for a slot
    (one past that is 429). ``max_body_bytes``: an execution request; ``max_pack_bytes``: a
    pack upload. ``max_nodes``/``max_edges``: per graph. ``max_run_seconds``: an execution
    still running after that is cancelled (its reason says so); a request may ask for less.
    ``max_kept``: finished executions remembered (oldest forgotten first).
    ``client_queue``: events buffered per WebSocket client before it loses some (sized
    to hold the burst of a busy run: a 20 000-packet graph publishes ~60 000 events in a
    fifth of a second, faster than any socket carries them; an entry is a reference to the
    execution's one encoded copy, so a client costs 8 bytes per queued event);
    ``history``: events kept per execution for clients that connect late.
    ``body_timeout``: seconds a request body may take to arrive."""

    max_running: int = 8
    max_queued: int = 64
    max_body_bytes: int = 1 << 20
    max_pack_bytes: int = 64 << 20
    max_nodes: int = 1000
    max_edges: int = 5000
    max_run_seconds: float = 300.0
    max_kept: int = 1000
    client_queue: int = 100_000
    history: int = 10_000
    body_timeout: float = 30.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
            if f.type == "int" and not isinstance(value, int):
                ok = False
            if not ok:
                raise ServerConfigError(
                    f"server limit {f.name} must be a positive {f.type}, got {value!r}",
                    option=f.name,
                )


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The request's body, refused with 413 as soon as it passes ``limit`` bytes (a declared
    ``Content-Length`` over the limit is refused before any of it is read) and with 400 when
    it takes longer than ``timeout`` seconds."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequestError(f"Content-Length must be a number of bytes, got {declared!r}")
        if int(declared) > limit:
            raise PayloadTooLargeError(
                f"request body of {int(declared)} bytes is over the limit of {limit} bytes",
                limit=limit,
            )
    chunks: list[bytes] = []
    size = 0
    deadline = time.monotonic() + timeout
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(
                    f"request body is over the limit of {limit} bytes", limit=limit
                )
            if time.monotonic() > deadline:
                raise BadRequestError(f"request body took longer than {timeout} s to arrive")
            chunks.append(chunk)
    except ClientDisconnect:
        raise BadRequestError("the client went away before its request body was complete") from None
    return b"".join(chunks)


def check_graph_size(graph: Any, limits: ServerLimits, path: str = "$") -> None:
    """Refuse (422) a graph with more nodes or connections than the limits allow; counts only,
    the graph reader checks the shapes."""
    if not isinstance(graph, dict):
        return
    processes = graph.get("processes")
    if isinstance(processes, dict) and len(processes) > limits.max_nodes:
        raise UnprocessableError(
            f"graph has {len(processes)} processes; this server runs at most "
            f"{limits.max_nodes} per graph",
            path=f"{path}.processes",
            type_name="GraphTooLarge",
        )
    connections = graph.get("connections")
    if isinstance(connections, list) and len(connections) > limits.max_edges:
        raise UnprocessableError(
            f"graph has {len(connections)} connections; this server runs at most "
            f"{limits.max_edges} per graph",
            path=f"{path}.connections",
            type_name="GraphTooLarge",
        )


def ws_protocol() -> str:
    """uvicorn's WebSocket implementation to use: the sans-I/O one where this uvicorn has it
    (its legacy one is deprecated)."""
    from uvicorn.config import WS_PROTOCOLS

    return "websockets-sansio" if "websockets-sansio" in WS_PROTOCOLS else "websockets"
