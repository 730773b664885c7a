"""Sending prepared requests: one shared async client per event loop, retries, rate limits,
pagination and reading responses by media type.

Everything here is ``async`` on the scheduler's event loop, so a request in flight costs a
coroutine and a socket, never a thread. The client (:func:`shared_client`) is one
``httpx.AsyncClient`` per loop with no overall connection cap, behind
:class:`CredentialTransport`, over small connection pools made as concurrency grows (see
:mod:`._pool`: one big httpcore pool slows down quadratically past a few hundred connections);
a service granted ``max_connections`` has at most that many requests in flight per loop.

Retries: a 429, 502, 503 or 504 answer (and 500 for idempotent methods), a timeout or a failed
connection is tried again up to ``_http.retries`` times (default 2), waiting what
``Retry-After`` says (seconds or an HTTP date) or else a jittered exponential backoff
(``0.25 s * 2^n``, full jitter, at most :data:`MAX_BACKOFF_S`); an answer asking to wait more
than :data:`MAX_RETRY_AFTER_S` is returned instead of waited for. httpx errors are translated
here, at this boundary, into :class:`~reflow.HttpApiError` naming the operation (never the
URL's query, which may hold a key).
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from .._core._loop_close import close_with_loop
from .._core._streams import Stream
from .._errors import HttpApiError, StreamError
from .._jsonread import loads
from ._auth import AUTH_EXTENSION, AuthPlan, CredentialTransport, TokenCache, plan_auth
from ._pool import CONNECTIONS_EXTENSION, ConnectionLimit, ShardedTransport
from ._request import PreparedRequest
from ._table import ApiTable, Operation, host_allowed

__all__ = [
    "MAX_BACKOFF_S",
    "MAX_RETRY_AFTER_S",
    "STREAM_THRESHOLD",
    "ApiResult",
    "RateLimiter",
    "retry_after_seconds",
    "send_operation",
    "shared_client",
]

MAX_BACKOFF_S = 10.0
MAX_RETRY_AFTER_S = 60.0
BACKOFF_BASE_S = 0.25
#: A body larger than this (or of unknown size that grows past it) is sent on as a Stream.
STREAM_THRESHOLD = 4 << 20
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_RETRIES = 2
_RETRY_STATUS = frozenset({429, 502, 503, 504})
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)
_tokens: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TokenCache] = (
    weakref.WeakKeyDictionary()
)


def shared_client() -> httpx.AsyncClient:
    """The running loop's client (created on first use, closed before its loop is: see
    ``reflow._core._loop_close``)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        transport = CredentialTransport(ShardedTransport())
        client = httpx.AsyncClient(transport=transport, follow_redirects=False, timeout=None)
        _clients[loop] = client
        close_with_loop(client.aclose)  # its pooled sockets go when the loop's owner ends it
        _tokens[loop] = TokenCache()
    return client


def _token_cache() -> TokenCache:
    loop = asyncio.get_running_loop()
    cache = _tokens.get(loop)
    if cache is None:
        cache = _tokens[loop] = TokenCache()
    return cache


class RateLimiter:
    """A token bucket: ``rate`` requests per second, bursts of up to ``burst``."""

    def __init__(self, rate: float, burst: int = 1) -> None:
        if not rate > 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = float(rate)
        self.burst = int(burst)
        self._tokens = float(burst)
        self._stamp = time.monotonic()

    async def acquire(self) -> None:
        while True:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= 1:
                self._tokens -= 1
                return
            await asyncio.sleep((1 - self._tokens) / self.rate)


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _backoff(attempt: int) -> float:
    return random.uniform(0, min(MAX_BACKOFF_S, BACKOFF_BASE_S * (2**attempt)))


@dataclass
class ApiResult:
    """One answer: status, lower-cased headers and the body (parsed, or a Stream)."""

    status: int
    headers: dict[str, str]
    body: Any
    stream: Stream | None = None
    #: Feeds ``stream`` from the response; the tick awaits it after sending the stream on.
    pump: Any = None

    def as_object(self) -> dict[str, Any]:
        return {"status": self.status, "headers": self.headers, "body": self.body}


def _setting(http: dict[str, Any], key: str, default: float, op: Operation) -> float:
    value = http.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise HttpApiError(
            f"{op.template_id}: '_http.{key}' must be a number >= 0, got {value!r}",
            operation=op.template_id,
            key="_http",
        )
    return float(value)


def _what(op: Operation) -> str:
    return f"{op.template_id} ({op.method} {op.path})"


def _host(url: str) -> str:
    """``host[:port]`` of ``url`` (never its path or query, which may hold a key)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        return "its host"
    return f"{parsed.host}:{parsed.port}" if parsed.port else parsed.host


async def _send_once(
    client: httpx.AsyncClient,
    req: PreparedRequest,
    url: str,
    plan: AuthPlan,
    timeout: float,
    connections: ConnectionLimit | None,
) -> httpx.Response:
    headers = dict(req.headers)
    if req.cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in req.cookies)
    request = client.build_request(
        req.method, url, headers=headers, content=req.content, timeout=timeout or None
    )
    request.extensions[AUTH_EXTENSION] = plan
    if connections is not None:
        request.extensions[CONNECTIONS_EXTENSION] = connections
    return await client.send(request, stream=True)


async def send_operation(
    table: ApiTable,
    op: Operation,
    req: PreparedRequest,
    http: dict[str, Any],
    *,
    limiter: RateLimiter | None = None,
    connections: ConnectionLimit | None = None,
    url: str | None = None,
    allowed_hosts: tuple[str, ...] = (),
) -> httpx.Response:
    """Send ``req`` (or ``url`` instead of its own, for a next page) with retries; returns the
    response, its body not read yet (the caller reads or streams it). ``connections``: the
    service's cap on requests in flight, held until the response is closed."""
    client = shared_client()
    tokens = _token_cache()
    timeout = _setting(http, "timeout_s", DEFAULT_TIMEOUT_S, op)
    retries = int(_setting(http, "retries", DEFAULT_RETRIES, op))
    target = url or req.full_url()
    if url is not None and not host_allowed(httpx.URL(url), allowed_hosts):
        raise HttpApiError(
            f"{_what(op)}: the next page is on host {httpx.URL(url).host!r}, which is not "
            "granted to this pack",
            operation=op.template_id,
        )
    refreshed = False
    attempt = 0
    while True:
        plan = await plan_auth(table, op, req.security, client, tokens, req.url)
        if limiter is not None:
            await limiter.acquire()
        last = attempt >= retries
        try:
            resp = await _send_once(client, req, target, plan, timeout, connections)
        except httpx.TimeoutException:
            if not last:
                await asyncio.sleep(_backoff(attempt))
                attempt += 1
                continue
            # ``from None`` here and below: httpx's exception holds the credentialed request.
            raise HttpApiError(
                f"{_what(op)} on {_host(target)} timed out after {timeout:g} s "
                f"('_http.timeout_s'), {attempt + 1} attempt(s)",
                operation=op.template_id,
            ) from None
        except httpx.TransportError as exc:
            if not last:
                await asyncio.sleep(_backoff(attempt))
                attempt += 1
                continue
            raise HttpApiError(
                f"{_what(op)}: connection to {_host(target)} failed after {attempt + 1} "
                f"attempt(s): {type(exc).__name__}",
                operation=op.template_id,
            ) from None
        status = resp.status_code
        if status == 401 and plan.oauth and not refreshed:
            await resp.aclose()
            for name in plan.oauth:
                tokens.forget(table.pack, name)
            refreshed = True
            continue
        retryable = status in _RETRY_STATUS or (status == 500 and op.method in _IDEMPOTENT)
        if retryable and not last:
            wait = retry_after_seconds(resp.headers.get("retry-after"))
            if wait is not None and wait > MAX_RETRY_AFTER_S:
                return resp
            await resp.aclose()
            await asyncio.sleep(wait if wait is not None else _backoff(attempt))
            attempt += 1
            continue
        return resp


def _media(resp: httpx.Response) -> str:
    return resp.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_result(resp: httpx.Response, op: Operation, node: str) -> ApiResult:
    """Read the body by media type; SSE and large bodies become a Stream fed by a task."""
    headers = {k.lower(): v for k, v in resp.headers.items()}
    media = _media(resp)
    length = resp.headers.get("content-length")
    big = length is not None and length.isdigit() and int(length) > STREAM_THRESHOLD
    if media == "text/event-stream" or big:
        return _streamed(resp, headers, media, op, node, b"")
    chunks = bytearray()
    iterator = resp.aiter_bytes()
    try:
        async for chunk in iterator:
            chunks += chunk
            if len(chunks) > STREAM_THRESHOLD:
                return _streamed(resp, headers, media, op, node, bytes(chunks), iterator)
    except httpx.HTTPError:
        await resp.aclose()
        raise HttpApiError(
            f"{_what(op)}: the response body could not be read", operation=op.template_id
        ) from None
    await resp.aclose()
    raw = bytes(chunks)
    body = _parse(raw, media, resp.encoding)
    if isinstance(body, bytes):
        # A message cannot hold bytes inside an object: binary answers go on as a Stream.
        return _streamed(resp, headers, media, op, node, raw, _nothing())
    return ApiResult(resp.status_code, headers, body)


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""


def _parse(raw: bytes, media: str, encoding: str | None) -> Any:
    if not raw and media != "application/octet-stream":
        return None
    if media == "application/json" or media.endswith("+json"):
        try:
            return loads(raw)
        except ValueError:
            return raw.decode(encoding or "utf-8", "replace")
    if media.startswith("text/") or media in (
        "application/xml",
        "application/x-www-form-urlencoded",
    ):
        return raw.decode(encoding or "utf-8", "replace")
    return raw


def _streamed(
    resp: httpx.Response,
    headers: dict[str, str],
    media: str,
    op: Operation,
    node: str,
    head: bytes,
    iterator: AsyncIterator[bytes] | None = None,
) -> ApiResult:
    stream = Stream.create(64, node, "response", media or None)
    stream.send_begin(media or None, metadata={"status": resp.status_code, "headers": headers})

    async def pump() -> None:
        try:
            if head and not await _push(stream, head):
                return
            async for chunk in iterator or resp.aiter_bytes():
                if not await _push(stream, chunk):
                    break
            stream.end()
        except httpx.HTTPError:
            stream.error(f"{op.template_id}: the response body broke off")
        except StreamError:
            pass  # the stream was closed: nobody wants the rest
        finally:
            await resp.aclose()

    return ApiResult(resp.status_code, headers, None, stream, pump)


async def _push(stream: Stream, chunk: bytes) -> bool:
    """Queue ``chunk`` without blocking the loop; False once nobody reads the stream."""
    while True:
        try:
            stream.send_bytes_nowait(chunk)
            return True
        except StreamError as exc:
            if "is full" not in str(exc):
                return False
        await asyncio.sleep(0.002)
