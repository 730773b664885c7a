"""While a graph is being built, the cyclic collector's full collections wait.

Building a network allocates a few container objects per node (the node, its context, its
edges and their lists), all kept as long as the network. CPython's collector counts them as
they come, and each time its oldest generation has grown by a quarter it walks *every* tracked
object of the process: during a 100,000-node build those walks took most of the time, and they
made the time per node grow with the graph. So while a build goes on, the oldest generation's
threshold is raised out of reach; young collections go on as usual, so short-lived cyclic
garbage — the caller's included — is still freed at the usual rate, and only garbage that has
already grown old waits.

A build is under way from a call to :func:`building` (each ``Network.add_node`` /
``add_connection`` / ``Graph.add_node`` makes one) until :func:`built` (a network runs or is
shut down), or until no build call came for :data:`IDLE_S` seconds — seen by a collector
callback at young collections, so a build that is left unfinished holds nothing back for
long; and no hold lasts past :data:`MAX_HOLD_S` without letting one full collection through.
:func:`bulk` holds it around one bulk build (reading a graph, loading a spec). The threshold
is put back only if nobody changed it meanwhile. Several builds at once share one hold; when
one ends early, the others only lose the speed-up, never correctness.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["IDLE_S", "MAX_HOLD_S", "building", "built", "bulk", "holding"]

#: Seconds without a build call after which full collections resume on their own.
IDLE_S = 0.5
#: The longest one hold lasts: then one full collection is let through before the next hold,
#: so a process that never stops building (a call every few tenths of a second, forever)
#: still has its old garbage collected.
MAX_HOLD_S = 5.0
_RAISED = 1 << 30  # the oldest generation's threshold while a build holds it

_lock = threading.Lock()
_held = False
_saved = 10  # the threshold to put back (read from gc when the hold starts)
_calls = 0  # build calls so far: a counter, cheaper than reading the clock on each
_seen = (0, 0.0)  # the count the callback last saw, and when it saw it change
_since = 0.0  # when the current hold began
_let_one_through = False  # a hold ran MAX_HOLD_S: no new hold until a full collection ran
_monotonic = time.monotonic


def building() -> None:
    """A build call: start holding full collections back, or keep holding them."""
    global _calls
    _calls += 1
    if not _held and not _let_one_through:
        _hold()


def built() -> None:
    """The build is over: full collections resume (the next one runs when the collector
    next finds the oldest generation grown, as it always does)."""
    global _let_one_through
    if _held:
        with _lock:
            _release()
    _let_one_through = False  # what follows a build (running it) lets collections through
    _unwatch()


def holding() -> bool:
    """Whether full collections are held back now (for tests and benchmarks)."""
    return _held


@contextlib.contextmanager
def bulk() -> Iterator[None]:
    """Hold full collections back for the duration of one bulk build; a hold that was
    already there (an outer build) is left as it was."""
    outer = _held
    building()
    try:
        yield
    finally:
        if not outer:
            built()


def _hold() -> None:
    global _held, _saved, _seen, _since
    with _lock:
        if _held or _let_one_through:
            return
        t0, t1, t2 = gc.get_threshold()
        if t2 == _RAISED:  # left raised by a hold that could not put it back: keep it sane
            t2 = 10
        _saved = t2
        gc.set_threshold(t0, t1, _RAISED)
        _seen = (_calls, _monotonic())
        _since = _seen[1]
        _held = True
        if _watch not in gc.callbacks:
            gc.callbacks.append(_watch)


def _release() -> None:
    """Put the threshold back (caller holds ``_lock``)."""
    global _held
    if not _held:
        return
    _held = False
    t0, t1, t2 = gc.get_threshold()
    if t2 == _RAISED:  # changed by someone else meanwhile: theirs stays
        gc.set_threshold(t0, t1, _saved)


def _unwatch() -> None:
    # Never from inside the callback: the collector is walking the callback list then.
    if not _held and _watch in gc.callbacks:
        with contextlib.suppress(ValueError):  # removed by another thread just now
            gc.callbacks.remove(_watch)


def _watch(phase: str, info: dict[str, Any]) -> None:
    """Collector callback: end a hold whose build has gone quiet. Never blocks (it may run
    in the middle of any allocation, ours included): if the lock is busy, the next
    collection looks again."""
    global _seen, _let_one_through
    if phase != "stop":
        return
    if not _held:
        if _let_one_through and info.get("generation") == 2:
            _let_one_through = False
        return
    now = _monotonic()
    too_long = now - _since >= MAX_HOLD_S
    if not too_long:
        if _seen[0] != _calls:
            _seen = (_calls, now)
            return
        if now - _seen[1] < IDLE_S:
            return
    if _lock.acquire(blocking=False):
        try:
            _release()
            _let_one_through = too_long
        finally:
            _lock.release()
