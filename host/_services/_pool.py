"""The connection pools under the shared client: small pools made as concurrency grows, and
per-service caps on requests in flight.

Why not one pool: httpcore's pool (1.0.x) rescans all its connections for each idle one
whenever a request starts or ends, O(idle x connections) per event (encode/httpcore#1035).
Measured here, 1,000 calls held open together and then answered took 2.6 s to hand the
answers back through one pool keeping 256 idle connections (25-30 s when keep-alive is
unlimited), 0.6 s sharded; 3,000: 6.3 s against 2.0 s. Here each pool holds at most
:data:`SHARD_SIZE` connections and is given at most that many requests at once, so none ever
queues and its scans stay short; a request goes to the first pool with room (keeping
keep-alive reuse in the first pools), and a new pool is made when all are full. There is
still no overall cap, and a sequential caller sees no difference (936 against 937 us a
request).

A service's cap (``HttpApiGrants(max_connections=N)``) travels with each request as the
``reflow.connections`` extension: a :class:`ConnectionLimit`, acquired before the request is
handed to a pool and released when its response is closed, so at most N of that service's
requests hold a connection at once; the others wait in line (FIFO), and their
``_http.timeout_s`` starts when they are sent.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable

import httpx

__all__ = ["CONNECTIONS_EXTENSION", "SHARD_SIZE", "ConnectionLimit", "ShardedTransport"]

#: Most connections (and requests in flight) of one pool.
SHARD_SIZE = 32
#: The request extension carrying a :class:`ConnectionLimit`.
CONNECTIONS_EXTENSION = "reflow.connections"


class ConnectionLimit:
    """At most ``n`` requests in flight at once among those carrying this limit, per event
    loop (a network runs its async ticks on one loop)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._semaphores: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, asyncio.Semaphore
        ] = weakref.WeakKeyDictionary()

    def semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        sem = self._semaphores.get(loop)
        if sem is None:
            sem = self._semaphores[loop] = asyncio.Semaphore(self.n)
        return sem


#: Pools that keep idle connections open for reuse; the rest close each one after its
#: answer. Without this a burst of 1,000 calls left 1,000 idle sockets open for good (the
#: pools are never dropped), and every later burst to a new host added its own.
KEEPALIVE_SHARDS = 4


class _Shard:
    __slots__ = ("busy", "transport")

    def __init__(self, keepalive: bool = True) -> None:
        keep = SHARD_SIZE if keepalive else 0
        limits = httpx.Limits(max_connections=SHARD_SIZE, max_keepalive_connections=keep)
        self.transport = httpx.AsyncHTTPTransport(limits=limits)
        self.busy = 0


class _ReleasingStream(httpx.AsyncByteStream):
    """A response body that gives back its pool slot (and service slot) once closed."""

    def __init__(self, inner: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._inner = inner
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


class ShardedTransport(httpx.AsyncBaseTransport):
    """Pools of at most :data:`SHARD_SIZE` connections, made as needed (see the module)."""

    def __init__(self) -> None:
        self._shards: list[_Shard] = []

    @property
    def pools(self) -> int:
        return len(self._shards)

    def _pick(self) -> _Shard:
        for shard in self._shards:
            if shard.busy < SHARD_SIZE:
                return shard
        shard = _Shard(keepalive=len(self._shards) < KEEPALIVE_SHARDS)
        self._shards.append(shard)
        return shard

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        limit = request.extensions.get(CONNECTIONS_EXTENSION)
        sem = limit.semaphore() if isinstance(limit, ConnectionLimit) else None
        if sem is not None:
            await sem.acquire()
        shard = self._pick()
        shard.busy += 1

        def release() -> None:
            shard.busy -= 1
            if sem is not None:
                sem.release()

        try:
            response = await shard.transport.handle_async_request(request)
        except BaseException:
            release()
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_ReleasingStream(response.stream, release),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        shards, self._shards = self._shards, []
        for shard in shards:
            await shard.transport.aclose()
