"""The registry client's network transport: every socket read and write within a deadline
and above a minimum transfer rate.

httpx bounds each socket operation (a read timeout restarts with every byte), so a server
that drips one byte a second — into the status line, the headers or the body — holds a
request forever. :class:`PacedTransport` is an httpx transport over an httpcore connection
pool whose network streams ask one :class:`Pace` before and after each read and write:

- the operation in progress (one public call of the client: ``install``, ``search``, ...)
  has a deadline; no socket operation waits past it, and the first one to notice that it
  has passed raises :class:`DeadlineExceeded` (never retried);
- while bytes flow in one direction, fewer than ``min_rate * window`` bytes in any
  ``window`` seconds raises :class:`TransferStalled` (a timeout: retried like one). Waiting
  for the first byte of an answer (the server thinking, e.g. verifying an upload) is not
  flowing: it is bounded by the client's read timeout and the deadline.

Both are ``httpx.TimeoutException`` subclasses raised below httpx, so they reach the client
unchanged through ``httpx.Client.send`` and iteration of a streamed body. Writes go out in
pieces smaller than ``min_rate * window`` so that one piece not accepted within a window is
itself a rate below the minimum.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import httpx

__all__ = ["DeadlineExceeded", "Pace", "PacedTransport", "TransferStalled"]

_READ, _WRITE = "read", "write"


class DeadlineExceeded(httpx.TimeoutException):
    """The operation ran past its deadline. Not retried: the time is gone."""


class TransferStalled(httpx.ReadTimeout):
    """Bytes moved slower than the minimum rate. Retried like any timeout."""


class Pace:
    """The deadline of the operation in progress on this thread, and the rate window of the
    exchange in progress. ``deadline``, ``min_rate`` (bytes/s) and ``window`` (s) are the
    client's settings."""

    def __init__(self, deadline: float, min_rate: float, window: float) -> None:
        self.deadline = deadline
        self.min_rate = min_rate
        self.window = window
        self._state = threading.local()

    # -- the operation ------------------------------------------------------------------------

    @contextlib.contextmanager
    def operation(self) -> Iterator[None]:
        """Start the deadline, unless an outer operation already runs (``install`` calls
        ``resolve``: one deadline for both)."""
        st = self._state
        if getattr(st, "end", None) is not None:
            yield
            return
        st.end = time.monotonic() + self.deadline
        try:
            yield
        finally:
            st.end = None

    def left(self) -> float | None:
        """Seconds until the deadline (negative once past), None outside an operation."""
        end = getattr(self._state, "end", None)
        return None if end is None else end - time.monotonic()

    def check_deadline(self) -> None:
        left = self.left()
        if left is not None and left <= 0:
            raise DeadlineExceeded(
                f"the operation did not finish within its {self.deadline:g} s deadline "
                "(RegistryClient(deadline=...))"
            )

    # -- one exchange (request + answer) ------------------------------------------------------

    def new_exchange(self) -> None:
        """A request starts: nothing is flowing yet."""
        st = self._state
        st.direction, st.since, st.moved = None, 0.0, 0

    def _flowing(self, direction: str) -> bool:
        return getattr(self._state, "direction", None) == direction

    def io_timeout(self, requested: float | None, direction: str) -> tuple[float | None, bool]:
        """The timeout for one socket operation, and whether the rate window shortened it."""
        t = requested
        left = self.left()
        if left is not None:
            t = max(left, 0.001) if t is None else max(min(t, left), 0.001)
        if self._flowing(direction) and (t is None or t > self.window):
            return self.window, True
        return t, False

    def starting(self, direction: str) -> None:
        """Bytes are about to move in ``direction`` (a write starts the window at once)."""
        st = self._state
        if not self._flowing(direction) and direction == _WRITE:
            st.direction, st.since, st.moved = _WRITE, time.monotonic(), 0

    def moved(self, n: int, direction: str) -> None:
        """``n`` bytes moved: check the deadline and the rate."""
        self.check_deadline()
        st = self._state
        now = time.monotonic()
        if not self._flowing(direction):  # the first bytes of an answer start its window
            st.direction, st.since, st.moved = direction, now, 0
        st.moved += n
        if now - st.since >= self.window:
            if st.moved < self.min_rate * self.window:
                raise self._stalled(direction, st.moved, now - st.since)
            st.since, st.moved = now, 0

    def timed_out(self, direction: str, shortened: bool) -> None:
        """A socket operation timed out: say why, if the deadline or the rate made it so
        (otherwise the caller re-raises the plain timeout)."""
        self.check_deadline()
        if shortened:
            st = self._state
            raise self._stalled(direction, st.moved, max(time.monotonic() - st.since, self.window))

    def piece(self) -> int:
        """The largest write that must complete within one window at the minimum rate."""
        return max(512, min(64 << 10, int(self.min_rate * self.window) // 2))

    def _stalled(self, direction: str, moved: int, seconds: float) -> TransferStalled:
        verb = "sent" if direction == _READ else "accepted"
        return TransferStalled(
            f"the registry {verb} {moved} bytes in {seconds:.1f} s, below the minimum of "
            f"{self.min_rate:g} bytes/s (RegistryClient(min_rate=..., rate_window=...))"
        )


class _PacedStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, pace: Pace) -> None:
        self._inner = inner
        self._pace = pace

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        t, shortened = self._pace.io_timeout(timeout, _READ)
        try:
            data = self._inner.read(max_bytes, t)
        except httpcore.ReadTimeout:
            self._pace.timed_out(_READ, shortened)
            raise
        self._pace.moved(len(data), _READ)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        view = memoryview(buffer)
        step = self._pace.piece()
        for at in range(0, len(view), step):
            piece = view[at : at + step]
            self._pace.starting(_WRITE)
            t, shortened = self._pace.io_timeout(timeout, _WRITE)
            try:
                self._inner.write(bytes(piece), t)
            except httpcore.WriteTimeout:
                self._pace.timed_out(_WRITE, shortened)
                raise
            self._pace.moved(len(piece), _WRITE)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        t, _ = self._pace.io_timeout(timeout, "tls")
        try:
            inner = self._inner.start_tls(ssl_context, server_hostname, t)
        except httpcore.ConnectTimeout:
            self._pace.check_deadline()
            raise
        return _PacedStream(inner, self._pace)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _PacedBackend(httpcore.NetworkBackend):
    def __init__(self, pace: Pace) -> None:
        self._inner = httpcore.SyncBackend()
        self._pace = pace

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        t, _ = self._pace.io_timeout(timeout, "connect")
        try:
            stream = self._inner.connect_tcp(host, port, t, local_address, socket_options)
        except httpcore.ConnectTimeout:
            self._pace.check_deadline()
            raise
        return _PacedStream(stream, self._pace)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        t, _ = self._pace.io_timeout(timeout, "connect")
        return _PacedStream(self._inner.connect_unix_socket(path, t, socket_options), self._pace)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


@contextlib.contextmanager
def _httpx_errors(request: httpx.Request) -> Iterator[None]:
    """httpcore's exceptions as httpx's (same names), like httpx's own transport does."""
    try:
        yield
    except httpcore.TimeoutException as exc:
        cls = getattr(httpx, type(exc).__name__, httpx.TimeoutException)
        raise cls(str(exc), request=request) from exc
    except (
        httpcore.NetworkError,
        httpcore.ProtocolError,
        httpcore.ProxyError,
        httpcore.UnsupportedProtocol,
    ) as exc:
        cls = getattr(httpx, type(exc).__name__, httpx.TransportError)
        if not (isinstance(cls, type) and issubclass(cls, httpx.TransportError)):
            cls = httpx.TransportError
        raise cls(str(exc), request=request) from exc


class _Body(httpx.SyncByteStream):
    def __init__(self, resp: httpcore.Response, request: httpx.Request) -> None:
        self._resp = resp
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        with _httpx_errors(self._request):
            yield from self._resp.iter_stream()

    def close(self) -> None:
        self._resp.close()


class PacedTransport(httpx.BaseTransport):
    """HTTP/1.1 over TCP (TLS for https), every socket operation paced by ``pace``."""

    def __init__(self, pace: Pace, *, verify: Any = True) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify),
            network_backend=_PacedBackend(pace),
            max_connections=10,
            max_keepalive_connections=10,
            keepalive_expiry=5.0,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        req = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors(request):
            resp = self._pool.handle_request(req)
        return httpx.Response(
            resp.status,
            headers=resp.headers,
            stream=_Body(resp, request),
            extensions=resp.extensions,
        )

    def close(self) -> None:
        self._pool.close()
