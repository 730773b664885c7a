"""Helpers for the signed-metadata (TUF) tests: a registry with signed metadata served by a
real uvicorn on 127.0.0.1 (in a thread), and a malicious proxy in front of it that rewrites,
replays, withholds, drips or floods what the registry answers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from regtest import Registry, free_port, setup_registry

from reflow.registry._app import RegistryConfig, create_app
from reflow.registry._client import RegistryClient
from reflow.registry._tuf_repo import ONLINE_DIR, TufPolicy, TufRepository

#: A proxy rule: (path, upstream status, headers, body) -> what to answer instead, or None.
Rule = Callable[[str, int, dict[str, str], bytes], Awaitable[Any] | Any]


class Uvicorn:
    """An ASGI app served by uvicorn on 127.0.0.1 in a thread."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Uvicorn:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.server.force_exit = True  # a dripping answer must not hold the shutdown
        self.thread.join(10)


@dataclass
class Proxy:
    """An ASGI app forwarding to ``upstream``; ``rules`` may rewrite each answer."""

    upstream: str
    rules: list[Rule] = field(default_factory=list)
    hits: list[str] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        path = scope["path"]
        query = scope.get("query_string", b"").decode()
        self.hits.append(path)
        headers = {
            k.decode(): v.decode()
            for k, v in scope["headers"]
            if k.lower() not in (b"host", b"content-length")
        }
        async with httpx.AsyncClient(base_url=self.upstream) as client:
            resp = await client.request(
                scope["method"],
                path + (f"?{query}" if query else ""),
                headers=headers,
                content=body,
            )
        status, out_headers, out = resp.status_code, dict(resp.headers), resp.content
        for rule in self.rules:
            got = rule(path, status, out_headers, out)
            if asyncio.iscoroutine(got):
                got = await got
            if callable(got):  # a streaming behaviour: it answers itself
                await got(send)
                return
            if got is not None:
                status, out = got
                break
        out_headers.pop("content-length", None)
        out_headers.pop("transfer-encoding", None)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in out_headers.items() if k != "etag"]
                + [(b"content-length", str(len(out)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": out})


@dataclass
class SignedRegistry:
    reg: Registry
    repo: TufRepository
    keys: Path
    root: bytes
    app: Any


def signed_registry(tmp: Path, policy: TufPolicy | None = None) -> SignedRegistry:
    reg = setup_registry(tmp / "data")
    repo = TufRepository(reg.storage, reg.storage.root / ONLINE_DIR, policy)
    keys = tmp / "offline-keys"
    root = repo.init(keys)
    app = create_app(reg.storage, RegistryConfig(), auth=reg.auth, tuf=repo)
    return SignedRegistry(reg, repo, keys, root, app)


def client(url: str, tmp: Path, root: bytes | None, **kw: Any) -> RegistryClient:
    c = RegistryClient(url, cache_dir=tmp / "cache", notify=None, retries=0, **kw)
    if root is not None:
        c.pin_root(root)
    return c


def flood(send_total: int, chunk: bytes = b"{" + b" " * (64 << 10)) -> Any:
    """A proxy answer (see :class:`Proxy`) that streams ``chunk`` until ``send_total`` bytes
    have gone (or the client hangs up): endless data."""

    async def go(send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        sent = 0
        try:
            while sent < send_total:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                sent += len(chunk)
            await send({"type": "http.response.body", "body": b""})
        except Exception:
            return

    return go


def drip(byte: bytes = b" ", seconds: int = 600) -> Any:
    """A proxy answer that sends one ``byte`` a second: slow retrieval."""

    async def go(send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            for _ in range(seconds):
                await send({"type": "http.response.body", "body": byte, "more_body": True})
                await asyncio.sleep(1)
        except Exception:
            return

    return go


def json_api_agrees_with(evil: bytes, pack: str = "acme/tools", version: str = "0.3.0") -> Rule:
    """A proxy rule serving ``evil`` as the download of ``pack`` ``version``, with the JSON
    API's sizes and hashes rewritten to match it (only signed metadata can still tell)."""

    def rule(p: str, s: int, h: dict[str, str], b: bytes) -> Any:
        if p.endswith("/download"):
            return 200, evil
        if p == f"/api/v1/packs/{pack}/{version}":
            doc = json.loads(b)
            for v in doc["variants"].values():
                v["sha256"], v["size"] = hashlib.sha256(evil).hexdigest(), len(evil)
            return 200, json.dumps(doc).encode()
        return None

    return rule
