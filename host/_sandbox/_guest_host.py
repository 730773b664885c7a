"""The host side of guest ABI v1, shared by the wasmtime, extism and native engines.

What a guest may ask of the host — log, emit mid-tick, pools, HTTP — implemented once against
the tick's ``ctx``, with capability checks, output accounting and the output-port check. The
engines translate raw memory to bytes and call into a :class:`GuestNodeHost`; whatever it
raises is kept in ``pending`` and re-raised on the Python side after the guest returns (an
exception never crosses into guest code).

The actors the engines build on (:class:`~._guest_actor.GuestActor`,
:class:`~._guest_actor.GuestNodeActor`: a node's ports, tick codec, batches and close) are in
:mod:`._guest_actor`. What is decided before a tick runs lives beside it: :mod:`._guest_limits`
(GuestLimits, GuestGrants), :mod:`._guest_describe` (describe documents, templates, module
files) and :mod:`._guest_http` (the request ``http_request`` makes once its grant is checked);
their names stay importable from here.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from .._core._messages import Message, as_message
from .._errors import (
    CapabilityError,
    GuestLimitError,
    GuestOutputError,
    MessageError,
    OutputLimitError,
    SandboxError,
)
from .._jsonread import loads
from ..abi._codec import (
    decode_message,
    decode_outputs,
    encode_message,
)
from ._guest_describe import GuestTemplate, parse_describe, pick_template, read_module_file
from ._guest_http import http_fetch
from ._guest_limits import GuestGrants, GuestLimits

__all__ = [
    "GuestGrants",
    "GuestLimits",
    "GuestNodeHost",
    "GuestTemplate",
    "parse_describe",
    "pick_template",
    "read_module_file",
]

_ABSENT = object()  # pool_get's default when "no entry" must differ from a stored None
_LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)
_MAX_LOG = 64 * 1024


class GuestNodeHost:
    """Host functions for one node. ``ctx`` is set for the duration of each tick."""

    __slots__ = (
        "_batch",
        "_batch_at",
        "_batch_errors",
        "_batch_out",
        "_packets",
        "_packets_ctx",
        "_pool_entries",
        "_pool_size",
        "_pools",
        "_progress",
        "capabilities",
        "component",
        "ctx",
        "grants",
        "http_waited",
        "limits",
        "log",
        "node",
        "on_resume",
        "out_bytes",
        "outports",
        "pending",
        "result",
    )

    def __init__(
        self,
        node: str,
        template: GuestTemplate,
        limits: GuestLimits,
        grants: GuestGrants,
    ) -> None:
        self.node = node
        self.component = template.id
        self.outports = frozenset(template.outports)
        self.capabilities = frozenset(template.capabilities)
        self.limits = limits
        self.grants = grants
        self.ctx: Any = None
        self.out_bytes = 0
        self.result = b""
        self.pending: BaseException | None = None
        #: ``on_resume(seconds)``: a host call kept the guest waiting that long (for room on
        #: a full edge, for an HTTP server); the engine moves the tick's deadline by as much.
        self.on_resume: Any = None
        self.http_waited = 0.0  # HTTP wait given back this tick (at most grants.http_timeout)
        self.log = logging.getLogger(f"reflow.guest.{template.id}")
        # While a batch runs (begin_batch .. end_batch): its ctxs, a reader of the guest's
        # progress counter (= index of the tick it is running), the tick the host functions
        # last acted for, and per tick the bytes emitted and the first host-function error.
        self._batch: list[Any] | None = None
        self._progress: Callable[[], int] = _no_progress
        self._batch_at = -1
        self._batch_out: dict[int, int] = {}
        self._batch_errors: dict[int, BaseException] = {}
        # Packets sent by the tick of ``_packets_ctx`` (held, so its id cannot be reused).
        self._packets_ctx: Any = None
        self._packets = 0
        # What this node's pools are charged against GuestLimits: pool -> id -> bytes, and
        # the totals. Mirrors the ctx's pools (which outlive ticks) for this node's writes.
        self._pools: dict[str, dict[str, int]] = {}
        self._pool_size = 0
        self._pool_entries = 0

    # -- bookkeeping used by the engines ------------------------------------------------------
    def begin(self, ctx: Any) -> None:
        self.ctx = ctx
        self.out_bytes = 0
        self.pending = None
        self.http_waited = 0.0

    def end(self) -> None:
        self.ctx = None
        self.result = b""

    def set_pending(self, exc: BaseException) -> None:
        """Remember a host function's error for the Python side (the first one per tick)."""
        if self._batch is not None:
            self._follow()
            self._batch_errors.setdefault(self._batch_at, exc)
        elif self.pending is None:
            self.pending = exc

    def begin_batch(self, ctxs: list[Any], progress: Callable[[], int]) -> None:
        """Host functions called from now on act for ``ctxs[progress()]``: the guest's
        progress counter says which tick of the batch is running."""
        self._batch = ctxs
        self._progress = progress
        self._batch_at = -1
        self._batch_out = {}
        self._batch_errors = {}
        self.ctx = None
        self.out_bytes = 0
        self.pending = None
        self.http_waited = 0.0

    def end_batch(self) -> tuple[dict[int, int], dict[int, BaseException]]:
        """End batch mode; returns (bytes emitted, first host-function error) by tick index."""
        if self._batch_at >= 0:
            self._batch_out[self._batch_at] = self.out_bytes
        self._batch = None
        self._progress = _no_progress
        self.ctx = None
        self.out_bytes = 0
        return self._batch_out, self._batch_errors

    def _follow(self) -> None:
        """In a batch: point ``ctx`` and ``out_bytes`` at the tick the guest is running."""
        batch = self._batch
        if batch is None:
            return
        try:
            i = int(self._progress())
        except (struct.error, ValueError, TypeError):
            i = -1
        if i == self._batch_at:
            return
        if self._batch_at >= 0:
            self._batch_out[self._batch_at] = self.out_bytes
        self._batch_at = i
        self.out_bytes = self._batch_out.get(i, 0)
        self.ctx = batch[i] if 0 <= i < len(batch) else None

    def tag(self, exc: SandboxError) -> SandboxError:
        if not exc.node:
            exc.node = self.node
        if not exc.component:
            exc.component = self.component
        return exc

    def count_output(self, size: int) -> None:
        self.out_bytes += size
        if self.out_bytes > self.limits.output_bytes:
            raise self.tag(
                OutputLimitError(
                    f"node {self.node!r} produced {self.out_bytes} output bytes in one tick; "
                    f"the limit is {self.limits.output_bytes}",
                    size=self.out_bytes,
                    limit=self.limits.output_bytes,
                )
            )

    def check_ports(self, outputs: list[tuple[str, Message]], ctx: Any = None) -> None:
        """Refuse outputs on undeclared ports, and count them toward the packets of the tick
        of ``ctx`` (default: the current one)."""
        ports = self.outports
        for port, _ in outputs:
            if port not in ports:
                shown = ", ".join(sorted(ports)) or "none"
                raise self.tag(
                    GuestOutputError(
                        f"guest output names undeclared out-port {port!r}; "
                        f"declared out-ports: {shown}"
                    )
                )
        self.count_packets(len(outputs), self.ctx if ctx is None else ctx)

    def count_packets(self, n: int, ctx: Any) -> None:
        """Count ``n`` packets toward ``GuestLimits.output_packets`` for the tick of ``ctx``."""
        if ctx is not self._packets_ctx:
            self._packets_ctx = ctx
            self._packets = 0
        self._packets += n
        limit = self.limits.output_packets
        if self._packets > limit:
            raise self._limit("output_packets", self._packets, limit, "packets sent in one tick")

    def _limit(self, resource: str, value: int, limit: int, what: str) -> GuestLimitError:
        return GuestLimitError(
            f"node {self.node!r} ({self.component}): {what}: {value} exceeds the limit "
            f"GuestLimits.{resource}={limit}",
            resource=resource,
            value=value,
            limit=limit,
            node=self.node,
            component=self.component,
        )

    def _need_ctx(self, what: str) -> Any:
        if self._batch is not None:
            self._follow()
        if self.ctx is None:
            raise self.tag(SandboxError(f"guest called {what} outside a tick"))
        return self.ctx

    # -- the imports ------------------------------------------------------------------------
    def host_log(self, level: int, text: bytes) -> None:
        lvl = _LEVELS[level] if 0 <= level < 4 else logging.INFO
        msg = text[:_MAX_LOG].decode("utf-8", "replace")
        self._follow()
        ctx = self.ctx
        if ctx is not None:
            ctx.log.log(lvl, "%s", msg)
        else:
            self.log.log(lvl, "[%s] %s", self.node, msg)

    def host_stdio(self, stream: str, data: bytes) -> None:
        """WASI stdout/stderr of a guest granted ``wasi``: one log record per write."""
        text = data[:_MAX_LOG].decode("utf-8", "replace").rstrip("\n")
        if text:
            level = logging.WARNING if stream == "stderr" else logging.INFO
            self._follow()
            ctx = self.ctx
            if ctx is not None:
                ctx.log.log(level, "[%s] %s", stream, text)
            else:
                self.log.log(level, "[%s %s] %s", self.node, stream, text)

    def host_emit(self, frame: bytes) -> int:
        ctx = self._need_ctx("emit")
        self.count_output(len(frame))
        outputs = decode_outputs(frame)
        self.check_ports(outputs)
        # Only the time ctx.send spends waiting for room downstream is the host's; encoding
        # and delivering count against the guest's tick like its own instructions do.
        node = getattr(ctx, "_node", None)
        before = getattr(node, "blocked_s", 0.0)
        for port, msg in outputs:
            ctx.send({port: msg})
        if self.on_resume is not None:
            waited = getattr(node, "blocked_s", 0.0) - before
            if waited > 0:
                self.on_resume(waited)
        return 0

    def host_pool_upsert(self, pool: bytes, key: bytes, msg: bytes) -> int:
        """Store a value, or refuse it (GuestLimitError, the pool unchanged) when the id, the
        value or the node's pools would pass their limits. Sizes are checked before the value
        is decoded, so a refused write costs the host nothing that outlives the call."""
        ctx = self._need_ctx("pool_upsert")
        lim = self.limits
        for part, raw in (("pool name", pool), ("pool id", key)):
            if len(raw) > lim.pool_key_bytes:
                raise self._limit(
                    "pool_key_bytes",
                    len(raw),
                    lim.pool_key_bytes,
                    f"pool_upsert: bytes in the {part}",
                )
        if len(msg) > lim.pool_value_bytes:
            raise self._limit(
                "pool_value_bytes",
                len(msg),
                lim.pool_value_bytes,
                "pool_upsert: bytes in the encoded value",
            )
        p, k = _text(pool), _text(key)
        value = decode_message(msg)
        sizes = self._pool_sizes(ctx, p)
        old = sizes.get(k)
        cost = _ENTRY_COST + len(pool) + len(key) + _value_cost(msg)
        # A pool costs its name until pool_clear, even once emptied (it stays in the ctx).
        new_pool = 0 if p in self._pools else _POOL_COST + len(pool)
        entries = self._pool_entries + (old is None)
        if entries > lim.pool_entries:
            raise self._limit(
                "pool_entries",
                entries,
                lim.pool_entries,
                f"pool_upsert({_short(p)}, {_short(k)}): entries in the node's pools",
            )
        size = self._pool_size - (old or 0) + cost + new_pool
        if size > lim.pool_bytes:
            raise self._limit(
                "pool_bytes",
                size,
                lim.pool_bytes,
                f"pool_upsert({_short(p)}, {_short(k)}): bytes in the node's pools",
            )
        ctx.pool_upsert(p, k, value)
        sizes[k] = cost
        self._pools[p] = sizes  # only now: a refused write to a new pool leaves no trace
        self._pool_entries, self._pool_size = entries, size
        return 0

    def _pool_sizes(self, ctx: Any, pool: str) -> dict[str, int]:
        """The charges of ``pool``; a pool that already holds entries this host did not write
        (filled before the node ran, e.g. by a test harness) is charged for them first."""
        sizes = self._pools.get(pool)
        if sizes is None:
            sizes = {}
            if ctx.pool_count(pool):
                for k, v in ctx.pool(pool).items():
                    sizes[k] = _ENTRY_COST + len(pool) + len(k) + _stored_cost(v)
                self._pools[pool] = sizes
                self._pool_entries += len(sizes)
                self._pool_size += sum(sizes.values()) + _POOL_COST + len(pool.encode())
        return sizes

    def _forget(self, pool: str, key: str | None = None) -> None:
        sizes = self._pools.get(pool)
        if sizes is None:
            return
        if key is None:
            self._pools.pop(pool)
            self._pool_entries -= len(sizes)
            self._pool_size -= sum(sizes.values()) + _POOL_COST + len(pool.encode())
            return
        if key in sizes:  # the emptied pool stays (as in the ctx) and keeps its charge
            self._pool_entries -= 1
            self._pool_size -= sizes.pop(key)

    def host_pool_get(self, pool: bytes, key: bytes) -> int:
        ctx = self._need_ctx("pool_get")
        value = ctx.pool_get(_text(pool), _text(key))
        if value is None:
            self.result = b""
            return -1
        self.result = encode_message(as_message(value))
        return len(self.result)

    def host_pool_remove(self, pool: bytes, key: bytes) -> int:
        ctx = self._need_ctx("pool_remove")
        p, k = _text(pool), _text(key)
        present = ctx.pool_get(p, k, _ABSENT) is not _ABSENT
        ctx.pool_remove(p, k)
        self._forget(p, k)
        return 1 if present else 0

    def host_pool_count(self, pool: bytes) -> int:
        return int(self._need_ctx("pool_count").pool_count(_text(pool)))

    def host_pool_clear(self, pool: bytes) -> int:
        p = _text(pool)
        self._need_ctx("pool_clear").pool_clear(p)
        self._forget(p)
        return 0

    def host_result_read(self, cap: int) -> bytes:
        return self.result[: max(cap, 0)]

    def host_http_request(self, request: bytes) -> int:
        self._need_ctx("http_request")
        if "http" not in self.capabilities:
            raise self.tag(
                CapabilityError(
                    f"node {self.node!r} ({self.component}) called http_request but its "
                    f"template does not declare the 'http' capability in its describe document",
                    capability="http",
                )
            )
        if not self.grants.allows_http():
            raise self.tag(
                CapabilityError(
                    f"node {self.node!r} ({self.component}) called http_request but was not "
                    f"granted the 'http' capability; grant it with the hosts it may reach",
                    capability="http",
                )
            )
        try:
            req = loads(request.decode("utf-8"))  # bounded depth (a ValueError)
            method = str(req.get("method", "GET")).upper()
            url = str(req["url"])
            headers = {str(k): str(v) for k, v in dict(req.get("headers") or {}).items()}
            body = req.get("body")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise self.tag(
                GuestOutputError(f"http_request: request is not valid JSON with a url: {exc}")
            ) from exc
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        allowed = {h.lower() for h in self.grants.http_hosts}
        hostport = f"{host}:{parts.port}" if parts.port else host
        if parts.scheme not in ("http", "https") or not host:
            raise self.tag(
                CapabilityError(f"http_request: {url!r} is not an http(s) URL", capability="http")
            )
        if "*" not in allowed and host not in allowed and hostport not in allowed:
            raise self.tag(
                CapabilityError(
                    f"node {self.node!r} may not reach host {hostport!r} over HTTP; allowed "
                    f"hosts: {', '.join(sorted(allowed))}",
                    capability="http",
                )
            )
        t0 = time.monotonic()
        try:
            self.result = http_fetch(method, url, headers, body, self.grants)
        finally:
            # waiting on the server is given back, up to http_timeout per tick in all, so a
            # guest calling a slow server in a loop still ends within a bounded time
            waited = min(time.monotonic() - t0, self.grants.http_timeout - self.http_waited)
            if waited > 0 and self.on_resume is not None:
                self.http_waited += waited
                self.on_resume(waited)
        return len(self.result)


def _no_progress() -> int:
    return -1


#: Charged per pool entry on top of its bytes: the id's str object, the dict slot and the
#: decoded Message dict cost about this much host memory in CPython.
_ENTRY_COST = 320
#: Charged per pool on top of its name: its dict in the ctx and in the host's accounting.
_POOL_COST = 512
_JSON_KINDS = frozenset(range(8, 13))  # Object, Array, Event, Optional, Any (ABI.md §3)
_TEXT_KINDS = frozenset((5, 7, *_JSON_KINDS))


def _value_cost(msg: bytes) -> int:
    """Host memory an encoded message takes once decoded, estimated from its bytes in C-speed
    passes, erring high: text that is not ASCII may decode to 4 bytes a character, and JSON
    text parses to objects (a container costs ~80 bytes, each element or member ~40) that
    can be 25x the text (``[{},{},...]``)."""
    n = len(msg)
    kind = msg[0] if msg else 0
    if kind in _TEXT_KINDS and not msg.isascii():
        n *= 4
    if kind in _JSON_KINDS:
        n += 80 * (msg.count(b"{") + msg.count(b"[")) + 40 * (msg.count(b",") + msg.count(b":"))
    return n


def _stored_cost(value: Any) -> int:
    try:
        return _value_cost(encode_message(as_message(value)))
    except (MessageError, TypeError, ValueError):
        return len(repr(value))


def _short(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GuestOutputError(f"pool name or id is not valid UTF-8: {exc}") from exc
