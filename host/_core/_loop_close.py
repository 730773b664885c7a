"""Async resources that live as long as the event loop that made them.

A resource made per loop (the API services' HTTP client and its pooled sockets) registers
its ``aclose`` here; whoever owns the loop awaits :func:`aclose_loop_resources` on it before
closing it (``Network.run``'s loop on shutdown, the background thread's loop when it ends).
Without that, a loop closed under an open client leaves its sockets open for the life of
the process: asyncio cannot run their close once the loop is gone.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable

__all__ = ["aclose_loop_resources", "close_with_loop"]

log = logging.getLogger("reflow")

_closers: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, list[Callable[[], Awaitable[object]]]
] = weakref.WeakKeyDictionary()


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
