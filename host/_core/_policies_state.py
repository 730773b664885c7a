"""The state node policies keep between ticks: breakers, token buckets, cache stores.

Each is a small object with its clock injected (``time.monotonic`` by default; the cache uses
``time.time`` so entries written by one process expire on time in the next), and each can be
read and written back whole with ``snapshot()`` / ``restore()`` — plain JSON-able values
(bytes for cache entries) — so a checkpoint can take a node's policy state with its pools.
All of it is touched only from the scheduler thread, except the SQLite store, which locks.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from .._errors import PolicyError
from ._messages import Message

__all__ = ["CircuitBreaker", "MemoryCache", "SQLiteCache", "TokenBucket", "cache_key"]

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    """closed -> open after ``failures`` failed ticks within ``window_s``; open fails ticks
    fast for ``cooldown_s``; then half_open lets one probe tick through: its success closes
    the breaker, its failure opens it again. ``on_change(old, new)`` hears each change."""

    def __init__(
        self,
        failures: int,
        window_s: float,
        cooldown_s: float,
        clock: Callable[[], float] | None = None,
        on_change: Callable[[str, str], None] | None = None,
    ) -> None:
        self.threshold = failures
        self.window_s = window_s
        self.cooldown_s = cooldown_s
        self.clock = clock or time.monotonic
        self.on_change = on_change
        self.state = CLOSED
        self.failed_at: deque[float] = deque(maxlen=failures)
        self.opened_at = 0.0
        self.probing = False

    def _move(self, new: str) -> None:
        old, self.state = self.state, new
        if self.on_change is not None and old != new:
            self.on_change(old, new)

    def admit(self) -> float:
        """0.0 if a tick may run now; else the seconds until the breaker lets a probe in."""
        if self.state == CLOSED:
            return 0.0
        if self.state == OPEN:
            left = self.opened_at + self.cooldown_s - self.clock()
            if left > 0:
                return left
            self._move(HALF_OPEN)
        if self.probing:  # one probe at a time; the others fail fast
            return max(self.cooldown_s, 1e-3)
        self.probing = True
        return 0.0

    def succeeded(self) -> None:
        self.probing = False
        if self.state != CLOSED:
            self.failed_at.clear()
            self._move(CLOSED)

    def failed(self) -> None:
        now = self.clock()
        self.probing = False
        if self.state == HALF_OPEN:
            self.opened_at = now
            self._move(OPEN)
            return
        if self.state == OPEN:
            return
        failed_at = self.failed_at
        failed_at.append(now)
        while failed_at and now - failed_at[0] > self.window_s:
            failed_at.popleft()
        if len(failed_at) >= self.threshold:
            failed_at.clear()
            self.opened_at = now
            self._move(OPEN)

    def snapshot(self) -> dict[str, Any]:
        return {"state": self.state, "failed_at": list(self.failed_at), "opened_at": self.opened_at}

    def restore(self, state: dict[str, Any]) -> None:
        self.state = state["state"]
        self.failed_at = deque(state["failed_at"], maxlen=self.threshold)
        self.opened_at = float(state["opened_at"])
        self.probing = False


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up. ``reserve()`` takes a token and
    says how long to wait for it: tokens may be owed, so waiters are served in the order they
    asked, and a wait is never longer than the tokens owed ahead of it."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] | None = None):
        self.rate = rate
        self.burst = burst
        self.clock = clock or time.monotonic
        self.tokens = burst
        self.stamp = self.clock()

    def reserve(self) -> float:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def snapshot(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "stamp": self.stamp}

    def restore(self, state: dict[str, Any]) -> None:
        self.tokens = float(state["tokens"])
        self.stamp = float(state["stamp"])


# -- the cache ---------------------------------------------------------------------------------


class _Uncacheable(Exception):
    """A value with no canonical form (a stream, a numpy array, ...): that tick is not cached."""


def _canon(value: Any) -> Any:
    raise _Uncacheable(type(value).__name__)


def _message_bytes(msg: Any) -> bytes:
    if not isinstance(msg, dict):
        raise _Uncacheable(type(msg).__name__)
    kind = msg.get("type")
    if kind == "Stream":
        raise _Uncacheable("Stream")
    data = msg.get("data")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return b"B" + str(kind).encode() + b"\x00" + hashlib.sha256(data).digest()
    return (
        b"J"
        + json.dumps(
            {"type": kind, "data": data}, sort_keys=True, separators=(",", ":"), default=_canon
        ).encode()
    )


def cache_key(version: str, config: dict[str, Any], inputs: dict[str, Any]) -> str | None:
    """sha256 of (version, config, inputs) in a canonical form; ``None`` when one of them has
    none (the tick then runs uncached)."""
    h = hashlib.sha256()
    try:
        h.update(version.encode())
        h.update(b"\x00")
        h.update(json.dumps(config, sort_keys=True, separators=(",", ":"), default=_canon).encode())
        for port in sorted(inputs):
            h.update(b"\x00" + port.encode() + b"\x00")
            h.update(_message_bytes(inputs[port]))
    except (_Uncacheable, TypeError, ValueError, RecursionError):
        return None
    return h.hexdigest()


def cacheable_outputs(pairs: list[tuple[str, Message]]) -> bool:
    return all(isinstance(m, dict) and m.get("type") != "Stream" for _, m in pairs)


class MemoryCache:
    """Cached outputs in memory, least recently used dropped past ``max_entries``."""

    def __init__(self, ttl_s: float | None, max_entries: int, clock: Callable[[], float] | None):
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock or time.time
        self.entries: OrderedDict[str, tuple[float, list[tuple[str, Message]]]] = OrderedDict()

    def get(self, key: str) -> list[tuple[str, Message]] | None:
        hit = self.entries.get(key)
        if hit is None:
            return None
        if hit[0] <= self.clock():
            del self.entries[key]
            return None
        self.entries.move_to_end(key)
        return hit[1]

    def put(self, key: str, pairs: list[tuple[str, Message]]) -> None:
        expires = float("inf") if self.ttl_s is None else self.clock() + self.ttl_s
        self.entries[key] = (expires, pairs)
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)

    def snapshot(self) -> dict[str, Any]:
        from ..abi._codec import encode_outputs

        out = {}
        for key, (expires, pairs) in self.entries.items():
            try:
                out[key] = (expires, encode_outputs(pairs))
            except Exception:  # a value the codec cannot carry is not kept
                continue
        return {"entries": out}

    def restore(self, state: dict[str, Any]) -> None:
        from ..abi._codec import decode_outputs

        self.entries = OrderedDict(
            (k, (e, decode_outputs(v))) for k, (e, v) in state["entries"].items()
        )

    def close(self) -> None:
        self.entries.clear()


class SQLiteCache:
    """Cached outputs in a SQLite file, so they outlive the process. Values are stored in the
    ABI's message codec; a row that does not decode is dropped and counts as a miss."""

    def __init__(
        self, path: str, ttl_s: float | None, max_entries: int, clock: Callable[[], float] | None
    ) -> None:
        self.path = path
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock or time.time
        self._lock = threading.Lock()
        try:
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent):
                raise OSError(f"directory {parent} does not exist")
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS reflow_cache "
                "(key TEXT PRIMARY KEY, expires REAL NOT NULL, value BLOB NOT NULL)"
            )
        except (OSError, sqlite3.Error) as exc:
            raise PolicyError(
                f"policy 'cache.path': cannot open the cache file {path!r} as SQLite: {exc}",
                key="cache.path",
            ) from exc

    def get(self, key: str) -> list[tuple[str, Message]] | None:
        from ..abi._codec import decode_outputs

        with self._lock:
            try:
                row = self._db.execute(
                    "SELECT expires, value FROM reflow_cache WHERE key = ?", (key,)
                ).fetchone()
                if row is None:
                    return None
                if row[0] <= self.clock():
                    self._db.execute("DELETE FROM reflow_cache WHERE key = ?", (key,))
                    return None
                return decode_outputs(bytes(row[1]))
            except sqlite3.Error:
                return None  # a broken store is a cache that misses, never a failed tick
            except Exception:  # a corrupt row: forget it
                self._db.execute("DELETE FROM reflow_cache WHERE key = ?", (key,))
                return None

    def put(self, key: str, pairs: list[tuple[str, Message]]) -> None:
        from ..abi._codec import encode_outputs

        try:
            value = encode_outputs(pairs)
        except Exception:  # outputs the codec cannot carry are not stored
            return
        expires = float("inf") if self.ttl_s is None else self.clock() + self.ttl_s
        with self._lock:
            try:
                db = self._db
                db.execute(
                    "INSERT OR REPLACE INTO reflow_cache (key, expires, value) VALUES (?, ?, ?)",
                    (key, expires, value),
                )
                (count,) = db.execute("SELECT COUNT(*) FROM reflow_cache").fetchone()
                if count > self.max_entries:  # drop the entries closest to expiry first
                    db.execute(
                        "DELETE FROM reflow_cache WHERE key IN (SELECT key FROM reflow_cache "
                        "ORDER BY expires LIMIT ?)",
                        (count - self.max_entries,),
                    )
            except sqlite3.Error:
                return

    def snapshot(self) -> dict[str, Any]:
        return {"path": self.path}  # the file is its own checkpoint

    def restore(self, state: dict[str, Any]) -> None:
        return None

    def close(self) -> None:
        with self._lock:
            self._db.close()
