"""The registry's HTTP API: a Starlette app of plain async endpoint functions.

``create_app(storage)`` returns the ASGI app; ``registry/API.md`` documents every route and
``GET /openapi.json`` describes them. Every error is JSON, ``{"error": {"code": ...,
"message": ...}}``, with a stable ``code`` a client can branch on.

The endpoints live by area: :mod:`._app_read` (health, search, versions, metadata,
downloads), :mod:`._app_publish` (publish, yank) and :mod:`._app_admin` (namespaces, keys,
tokens), over what they share in :mod:`._app_state` (config, state, helpers). This module
holds the route table, the error handlers and the request-body deadline, wrapped once.

Slow or greedy clients are bounded here too: a request body must keep arriving
(:class:`RegistryConfig` ``body_timeout``, ``min_body_rate``: else ``408 request_timeout``),
at most ``max_uploads`` publishes run at once (else ``503 too_many_uploads`` with
``Retry-After``) and at most ``max_builds`` of them build variants at once. Timeouts on
request heads and the connection cap live in the server (``_serve``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._app_admin import add_key, create_namespace, create_token, namespace_info, remove_key
from ._app_publish import publish, set_yank
from ._app_read import download, health, openapi, pack_versions, search, version_metadata, whoami
from ._app_state import (
    APIError,
    RegistryConfig,
    RegistryState,
    error_response,
)
from ._app_tuf import namespace_metadata, tuf_file, tuf_target
from ._auth import AuthDenied, Authenticator
from ._storage import (
    Storage,
    StorageUnavailable,
)

__all__ = ["APIError", "RegistryConfig", "create_app"]


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    if exc.code == "bad_range" and "size" in exc.extra:
        headers = {"Content-Range": f"bytes */{exc.extra['size']}"}
    if exc.status == 503 and "retry_after" in exc.extra:
        headers = {"Retry-After": str(exc.extra["retry_after"])}
    if exc.status == 408:
        # The rest of a slow body is not worth waiting for: uvicorn closes after this.
        headers = {"Connection": "close"}
    return error_response(exc.status, exc.code, str(exc), headers, **exc.extra)


async def _auth_denied(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthDenied)
    return error_response(
        exc.status,
        exc.code,
        str(exc),
        {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None,
    )


async def _http_exception(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, f"http_{status}")
    return error_response(status, code, str(getattr(exc, "detail", "")) or code)


async def _unavailable(request: Request, exc: Exception) -> Response:
    return error_response(503, "storage_unavailable", str(exc), {"Retry-After": "5"})


async def _internal(request: Request, exc: Exception) -> Response:
    return error_response(500, "internal", f"internal error: {type(exc).__name__}")


class _BodyDeadline:
    """ASGI middleware: a request body must keep arriving. Each ``receive()`` while the body
    is incomplete waits at most ``timeout`` seconds, and never past ``start + timeout +
    received / min_rate`` (``start``: the first ``receive()``); past that the endpoint gets
    ``408 request_timeout`` raised from ``receive()``, so an upload cleans up as for any
    other error. Once the body is complete, ``receive()`` is passed through untimed (a
    download waits on it for the disconnect)."""

    def __init__(self, app: ASGIApp, timeout: float | None, min_rate: int | None) -> None:
        self.app, self.timeout, self.min_rate = app, timeout, min_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.timeout is None and self.min_rate is None):
            await self.app(scope, receive, send)
            return
        timeout, min_rate = self.timeout, self.min_rate
        grace = timeout if timeout is not None else 0.0
        done = False
        got = 0
        start: float | None = None

        async def guarded() -> Message:
            nonlocal done, got, start
            if done:
                return await receive()
            now = time.monotonic()
            if start is None:
                start = now
            deadline = float("inf") if timeout is None else now + timeout
            if min_rate is not None:
                deadline = min(deadline, start + grace + got / min_rate)
            message: Message | None = None
            with anyio.move_on_after(max(0.0, deadline - now)):
                message = await receive()
            if message is None:
                raise APIError(
                    408,
                    "request_timeout",
                    _too_slow(got, time.monotonic() - start, timeout, min_rate),
                )
            if message["type"] == "http.request":
                got += len(message.get("body", b""))
                done = not message.get("more_body", False)
            else:
                done = True
            return message

        await self.app(scope, guarded, send)


def _too_slow(got: int, elapsed: float, timeout: float | None, min_rate: int | None) -> str:
    rules = []
    if timeout is not None:
        rules.append(f"no pause longer than {timeout:g} s")
    if min_rate is not None:
        rules.append(f"at least {min_rate} bytes/s after {timeout or 0:g} s")
    return (
        f"the request body is too slow: {got} bytes in {elapsed:.1f} s; this registry "
        f"needs {' and '.join(rules)}"
    )


# -- the app -----------------------------------------------------------------------------------

_Endpoint = Callable[[Request], Awaitable[Any]]
_P = "/api/v1/packs/{ns}/{name}"
ROUTES: list[tuple[str, _Endpoint, list[str]]] = [
    ("/api/v1/health", health, ["GET"]),
    ("/openapi.json", openapi, ["GET"]),
    ("/api/v1/token", whoami, ["GET"]),
    ("/api/v1/search", search, ["GET"]),
    (_P, pack_versions, ["GET"]),
    (_P + "/{version}", version_metadata, ["GET"]),
    (_P + "/{version}", publish, ["PUT"]),
    (_P + "/{version}/download", download, ["GET", "HEAD"]),
    (_P + "/{version}/yank", set_yank, ["POST", "DELETE"]),
    ("/api/v1/namespaces", create_namespace, ["POST"]),
    ("/api/v1/namespaces/{ns}", namespace_info, ["GET"]),
    ("/api/v1/namespaces/{ns}/keys", add_key, ["POST"]),
    ("/api/v1/namespaces/{ns}/keys/{key_id}", remove_key, ["DELETE"]),
    ("/api/v1/tokens", create_token, ["POST"]),
    ("/api/v1/namespaces/{ns}/metadata", namespace_metadata, ["PUT"]),
    ("/tuf/{file}", tuf_file, ["GET"]),
    ("/tuf/targets/{ns}/{name}/{version}/{file}", tuf_target, ["GET"]),
]


def create_app(
    storage: Storage,
    config: RegistryConfig | None = None,
    *,
    auth: Authenticator | None = None,
    tuf: Any = None,
) -> Starlette:
    """The registry as an ASGI app over ``storage``. ``tuf``: its signed metadata (a
    :class:`~reflow.registry._tuf_repo.TufRepository`; default: the one kept in
    ``storage``, with the online keys under its data directory)."""
    config = config or RegistryConfig()
    app = Starlette(
        routes=[Route(path, endpoint, methods=methods) for path, endpoint, methods in ROUTES],
        middleware=[
            Middleware(_BodyDeadline, timeout=config.body_timeout, min_rate=config.min_body_rate)
        ],
        exception_handlers={
            APIError: _api_error,
            AuthDenied: _auth_denied,
            HTTPException: _http_exception,
            StorageUnavailable: _unavailable,
            Exception: _internal,
        },
    )
    if tuf is None and isinstance(storage.root, Path):
        from ._tuf_repo import ONLINE_DIR, TufRepository

        tuf = TufRepository(storage, storage.root / ONLINE_DIR)
    app.state.registry = RegistryState(
        storage, auth or Authenticator(storage, anonymous_read=config.anonymous_read), config, tuf
    )
    return app
