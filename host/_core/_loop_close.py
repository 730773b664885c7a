"""Async resources that live as long as the event loop that made them.

A resource made per loop (the API services' HTTP client and its pooled sockets) registers
its ``aclose`` here; whoever owns the loop awaits :func:`aclose_loop_resources` on it before
closing it (``Network.run``'s loop on shutdown, the background thread's loop when it ends:
each marks its loop :func:`owned`). Without that, a loop closed under an open client leaves
its sockets open for the life of the process: asyncio cannot run their close once the loop
is gone.

A loop reflow does not own — the user's, under ``await net.arun()`` — gives no such moment,
so there the runs themselves close what was opened on it: each ``arun`` is a
:func:`borrowed_run`, and the last one running on that loop awaits
:func:`aclose_loop_resources` as it ends (runs that overlap share the client until then; the
next run opens a new one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable

__all__ = ["aclose_loop_resources", "borrowed_run", "close_with_loop", "owned"]

log = logging.getLogger("reflow")

_closers: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, list[Callable[[], Awaitable[object]]]
] = weakref.WeakKeyDictionary()
#: loops whose owner (a Network) closes their resources itself
_owned: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
#: runs going now on each loop reflow does not own
_borrowed: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, int] = weakref.WeakKeyDictionary()


def owned(loop: asyncio.AbstractEventLoop) -> None:
    """Mark ``loop`` as one whose owner awaits :func:`aclose_loop_resources` before closing
    it: runs on it (:func:`borrowed_run`) leave its resources alone."""
    _owned.add(loop)


@contextlib.asynccontextmanager
async def borrowed_run() -> AsyncIterator[None]:
    """A run on the running loop, perhaps the user's: on a loop not :func:`owned`, the last
    run going on it closes the loop's resources as it ends (however it ends)."""
    loop = asyncio.get_running_loop()
    if loop in _owned:
        yield
        return
    _borrowed[loop] = _borrowed.get(loop, 0) + 1
    try:
        yield
    finally:
        left = _borrowed.get(loop, 1) - 1
        if left:
            _borrowed[loop] = left
        else:
            _borrowed.pop(loop, None)
            # shielded: a run cancelled by its caller still gives its sockets back
            await asyncio.shield(aclose_loop_resources())


def close_with_loop(aclose: Callable[[], Awaitable[object]]) -> None:
    """Await ``aclose()`` when the running loop's owner closes it."""
    _closers.setdefault(asyncio.get_running_loop(), []).append(aclose)


async def aclose_loop_resources() -> None:
    """Close what was registered on the running loop, newest first; a failure is logged."""
    closers = _closers.pop(asyncio.get_running_loop(), [])
    for aclose in reversed(closers):
        try:
            await aclose()
        except Exception as exc:  # one resource's close must not keep the others open
            log.warning("closing a resource of the event loop failed: %s", exc)
