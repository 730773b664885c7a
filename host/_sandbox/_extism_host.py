"""The host functions an Extism plugin may call, per node.

:class:`_ExtismHost` is the node's :class:`~reflow._sandbox._guest_host.GuestNodeHost` with
the Reflow SDK's protocol on top: ``__send_output``, ``__get_state`` / ``__set_state`` (the
state held to the pool limits) and the kernel's ``http_request``, replaced by one that checks
the HTTP grant and fetches through httpx within the tick's time and the grant's response cap.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .._core._messages import Message
from .._errors import (
    CapabilityError,
    GuestOutputError,
    GuestTimeout,
    SandboxError,
)
from .._jsonread import loads
from ._extism_protocol import _loads, _plain_message, _text
from ._extism_watchdog import _Call, _watchdog
from ._guest_host import (
    GuestGrants,
    GuestLimits,
    GuestNodeHost,
    GuestTemplate,
)

if TYPE_CHECKING:
    import extism


# -- host functions --------------------------------------------------------------------------


class _ExtismHost(GuestNodeHost):
    """What a node's host functions act on: the tick's ctx (from GuestNodeHost), the node's
    Reflow-SDK state and the status and headers of its last HTTP response."""

    __slots__ = (
        "call",
        "http_headers",
        "http_status",
        "passed_through",
        "state",
        "state_bytes",
        "state_sizes",
    )

    def __init__(
        self, node: str, template: GuestTemplate, limits: GuestLimits, grants: GuestGrants
    ) -> None:
        super().__init__(node, template, limits, grants)
        self.state: Any = {}
        #: Bytes of each state key (its UTF-8 and its JSON value): the state outlives ticks,
        #: so it is held to the pool limits (GuestLimits.pool_*), like a wasm guest's pools.
        self.state_sizes: dict[str, int] | None = {}
        self.state_bytes = 0
        self.http_status = 0
        self.http_headers: dict[str, str] = {}
        self.call: _Call | None = None
        #: Messages on out-ports the plugin's metadata does not declare, by port.
        self.passed_through: dict[str, int] = {}

    def put_state(self, key: str, value: Any, size: int, what: str) -> None:
        """Set one state key, held to GuestLimits.pool_entries and pool_bytes."""
        lim = self.limits
        if self.state_sizes is None:  # after a replace_state: measured on first use
            self.state_sizes, self.state_bytes = _state_sizes(self.state)
        sizes = self.state_sizes
        old = sizes.get(key)
        if old is None and len(sizes) + 1 > lim.pool_entries:
            raise self._limit(
                "pool_entries",
                len(sizes) + 1,
                lim.pool_entries,
                f"{what}: keys in the node's state",
            )
        total = self.state_bytes - (old or 0) + size
        if total > lim.pool_bytes:
            raise self._limit(
                "pool_bytes", total, lim.pool_bytes, f"{what}: bytes in the node's state"
            )
        sizes[key] = size
        self.state_bytes = total
        self.state[key] = value

    def replace_state(self, state: Any, result_bytes: int) -> None:
        """The state a process result of ``result_bytes`` hands back (already bounded by
        output_bytes), held to the same limits as state set key by key. Its JSON is part of
        the result, so a result within pool_bytes needs no measuring: the per-key sizes are
        then measured only if __set_state comes (every tick re-encodes the state anyway)."""
        lim = self.limits
        keys = len(state) if isinstance(state, dict) else 0
        if keys > lim.pool_entries:
            raise self._limit(
                "pool_entries", keys, lim.pool_entries, "process: keys in the returned state"
            )
        sizes: dict[str, int] | None = None
        total = 0
        if result_bytes > lim.pool_bytes:
            sizes, total = _state_sizes(state)
            if total > lim.pool_bytes:
                raise self._limit(
                    "pool_bytes", total, lim.pool_bytes, "process: bytes in the returned state"
                )
        self.state, self.state_sizes, self.state_bytes = state, sizes, total

    def declared(self, outputs: list[tuple[str, Message]]) -> list[tuple[str, Message]]:
        """The outputs on declared out-ports. The original Reflow host passes every port a
        plugin names through to the network, where a port nothing is connected to goes
        nowhere; undeclared ports cannot be connected here, so their messages are counted
        (``passed_through``) and dropped instead of failing the tick and losing the rest."""
        ports = self.outports
        kept = [(p, m) for p, m in outputs if p in ports]
        if len(kept) != len(outputs):
            for port, _ in outputs:
                if port not in ports:
                    if port not in self.passed_through:
                        self.log.debug(
                            "node %r sent on undeclared out-port %r (not connected; "
                            "dropped, as the original Reflow host does)",
                            self.node,
                            port,
                        )
                    self.passed_through[port] = self.passed_through.get(port, 0) + 1
        return kept

    def send_parked(self, ctx: Any, port: str, msg: Message) -> None:
        """``ctx.send`` with the tick's deadline paused: waiting for room downstream is not
        the guest's time."""
        call = self.call
        if call is None:
            ctx.send({port: msg})
            return
        _watchdog.pause(call)
        try:
            ctx.send({port: msg})
        finally:
            _watchdog.resume(call)

    def dispatch(
        self, name: str, plugin: extism.CurrentPlugin, args: list[int]
    ) -> bytes | int | None:
        """Run host function ``name``: bytes go back as a new block of plugin memory, an int
        as the plain result."""

        def read(offset: int) -> bytes:
            if offset == 0:
                return b""
            return bytes(plugin.memory(plugin.memory_at_offset(offset)))

        if name == "__send_output":
            ctx = self._need_ctx(name)
            raw = read(args[0])
            self.count_output(len(raw))
            outputs = _loads(raw, name)
            if not isinstance(outputs, dict):
                raise self.tag(GuestOutputError(f"{name} expects a JSON object of port: value"))
            messages = [(str(p), _plain_message(v, f"{name}.{p}")) for p, v in outputs.items()]
            for port, msg in self.declared(messages):
                self.send_parked(ctx, port, msg)
            return None
        if name == "__get_state":
            key = _text(read(args[0]), name)
            state = self.state if isinstance(self.state, dict) else {}
            return json.dumps(state.get(key)).encode("utf-8")
        if name == "__set_state":
            raw_key, raw_value = read(args[0]), read(args[1])
            lim = self.limits
            if len(raw_key) > lim.pool_key_bytes:
                raise self._limit(
                    "pool_key_bytes", len(raw_key), lim.pool_key_bytes, f"{name}: bytes in the key"
                )
            if len(raw_value) > lim.pool_value_bytes:
                raise self._limit(
                    "pool_value_bytes",
                    len(raw_value),
                    lim.pool_value_bytes,
                    f"{name}: bytes in the value",
                )
            key = _text(raw_key, name)
            value = _loads(raw_value, name)
            if not isinstance(self.state, dict):
                self.state, self.state_sizes, self.state_bytes = {}, {}, 0
            self.put_state(key, value, len(raw_key) + len(raw_value), name)
            return None
        if name == "http_request":
            return self.http_request(read(args[0]), read(args[1]) if args[1] else None)
        if name == "http_status_code":
            return self.http_status
        if name == "http_headers":
            return json.dumps(self.http_headers).encode("utf-8")
        raise self.tag(SandboxError(f"no host function {name!r}"))  # pragma: no cover

    def http_request(self, request: bytes, body: bytes | None) -> bytes:
        """The kernel's ``http_request``, through the node's grants: a request the grant does
        not cover raises CapabilityError naming the host (extism itself would only trap)."""
        self._need_ctx("http_request")
        try:
            req = loads(request.decode("utf-8"))  # bounded depth (a ValueError)
            url = str(req["url"])
            method = str(req.get("method") or "GET").upper()
            headers = {str(k): str(v) for k, v in dict(req.get("headers") or {}).items()}
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise self.tag(
                GuestOutputError(f"http_request: the request is not JSON with a url: {exc}")
            ) from exc
        who = f"node {self.node!r} ({self.component})"
        if not self.grants.allows_http():
            raise self.tag(
                CapabilityError(
                    f"{who} made an HTTP request to {url!r} but was not granted the 'http' "
                    "capability; grant it with the hosts it may reach",
                    capability="http",
                )
            )
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        hostport = f"{host}:{parts.port}" if parts.port else host
        allowed = {h.lower() for h in self.grants.http_hosts}
        if parts.scheme not in ("http", "https") or not host:
            raise self.tag(
                CapabilityError(f"{who}: {url!r} is not an http(s) URL", capability="http")
            )
        if "*" not in allowed and host not in allowed and hostport not in allowed:
            raise self.tag(
                CapabilityError(
                    f"{who} may not reach host {hostport!r} over HTTP; allowed hosts: "
                    f"{', '.join(sorted(allowed))}",
                    capability="http",
                )
            )
        left = self.call.remaining() if self.call is not None else self.limits.tick_ms / 1000.0
        if left <= 0:
            raise self.tag(
                GuestTimeout(
                    f"{who}: http_request to {url!r} came after the tick's time limit of "
                    f"{self.limits.tick_ms:g} ms",
                    limit_ms=self.limits.tick_ms,
                )
            )
        timeout = min(self.grants.http_timeout, left)
        self.http_status, self.http_headers, data = _fetch(
            method, url, headers, body, timeout, self.grants.http_max_response, who
        )
        return data


def _fetch(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes | None,
    timeout: float,
    limit: int,
    who: str,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request through httpx: status, headers, body (at most ``limit`` bytes)."""
    import httpx

    try:
        with (
            httpx.Client(timeout=timeout, follow_redirects=False) as client,
            client.stream(method, url, headers=headers, content=body) as resp,
        ):
            chunks: list[bytes] = []
            size = 0
            for chunk in resp.iter_bytes():
                size += len(chunk)
                if size > limit:
                    raise CapabilityError(
                        f"{who}: the response from {url!r} is larger than the granted "
                        f"{limit} bytes",
                        capability="http",
                    )
                chunks.append(chunk)
            return resp.status_code, dict(resp.headers), b"".join(chunks)
    except httpx.HTTPError as exc:
        raise SandboxError(
            f"{who}: HTTP request to {url!r} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _state_sizes(state: Any) -> tuple[dict[str, int], int]:
    """Bytes of each key of a state (its UTF-8 and its JSON value), and their total."""
    sizes: dict[str, int] = {}
    if isinstance(state, dict):
        for k, v in state.items():
            sizes[str(k)] = len(str(k).encode("utf-8", "surrogatepass")) + len(
                json.dumps(v, separators=(",", ":"))
            )
        return sizes, sum(sizes.values())
    return sizes, len(json.dumps(state))
