"""The registry app's read endpoints: health, OpenAPI, whoami, search, versions, metadata, and
downloads (the slim variant for a triple, with ETag, ``If-Range`` and ``Range``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from email.utils import formatdate

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from ..abi._manifest import PORTABLE_TRIPLE
from ..abi._version import ABI_VERSION
from ._app_state import (
    PACK_MEDIA_TYPE,
    APIError,
    base_url,
    iso_time,
    names_of,
    registry_of,
    require,
    version_doc,
    version_or_404,
)
from ._auth import AuthDenied
from ._openapi import openapi_document
from ._storage import (
    Storage,
    VariantRecord,
    VersionRecord,
)


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok", "abi": f"{ABI_VERSION[0]}.{ABI_VERSION[1]}"})


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document(registry_of(request).config.max_upload))


async def whoami(request: Request) -> Response:
    """The caller's token: its namespace and scope (so a client can tell where a pack named
    without a namespace goes)."""
    token = registry_of(request).auth.authenticate(request.headers.get("authorization"))
    if token is None:
        raise AuthDenied(
            401, "unauthorized", "this needs a token; pass 'Authorization: Bearer <token>'"
        )
    return JSONResponse(
        {
            "token_id": token.token_id,
            "namespace": token.namespace,
            "scope": token.scope,
            "label": token.label,
            "expires_at": iso_time(token.expires_at) if token.expires_at else None,
        }
    )


async def search(request: Request) -> Response:
    reg = registry_of(request)
    token = reg.auth.require(request.headers.get("authorization"), "read", None)
    q = request.query_params.get("q", "")
    try:
        limit = int(request.query_params.get("limit", "20"))
        offset = int(request.query_params.get("offset", "0"))
    except ValueError as exc:
        raise APIError(400, "bad_request", "limit and offset must be integers") from exc
    if not 1 <= limit <= 100 or offset < 0 or len(q) > 200:
        raise APIError(400, "bad_request", "limit must be 1..100, offset >= 0, q <= 200 chars")
    found = reg.storage.search(q, limit, offset)
    if token is not None and token.namespace != "*" and not reg.config.anonymous_read:
        # A private registry shows a namespaced token only its own namespace.
        found = [r for r in found if r.namespace == token.namespace]
    return JSONResponse(
        {
            "query": q,
            "results": [
                {
                    "full_name": r.full_name,
                    "namespace": r.namespace,
                    "name": r.name,
                    "version": r.version,
                    "description": r.description,
                    "templates": list(r.templates),
                    "triples": list(r.triples),
                    "url": f"{base_url(request)}/api/v1/packs/{r.namespace}/{r.name}",
                }
                for r in found
            ],
        }
    )


async def pack_versions(request: Request) -> Response:
    ns, name, _ = names_of(request)
    require(request, "read", ns)
    rows = registry_of(request).storage.list_versions(ns, name)
    if not rows:
        raise APIError(404, "pack_not_found", f"no pack {ns}/{name}")
    return JSONResponse(
        {
            "full_name": f"{ns}/{name}",
            "namespace": ns,
            "name": name,
            "versions": [
                {
                    "version": r.version,
                    "yanked": r.yanked,
                    "yank_reason": r.yank_reason,
                    "published_at": iso_time(r.published_at),
                    "sha256": r.sha256,
                    "size": r.size,
                    "triples": list(r.triples),
                }
                for r in rows
            ],
        }
    )


async def version_metadata(request: Request) -> Response:
    ns, name, ver = names_of(request, version=True)
    require(request, "read", ns)
    rec = version_or_404(registry_of(request), ns, name, ver)
    return JSONResponse(
        version_doc(request, rec), headers={"ETag": f'"{hashlib.sha256(rec.manifest).hexdigest()}"'}
    )


def _pick_variant(rec: VersionRecord, triple: str | None) -> VariantRecord:
    full = VariantRecord("full", rec.sha256, rec.size)
    if triple is None or triple == "full":
        return full
    by = {v.triple: v for v in rec.variants}
    if triple in by:
        return by[triple]
    natives = [t for t in rec.triples if t != PORTABLE_TRIPLE]
    if PORTABLE_TRIPLE in rec.triples:
        # No artifact for this triple: the portable WebAssembly is what it will run.
        return by.get(PORTABLE_TRIPLE, full) if natives else full
    raise APIError(
        404,
        "no_variant",
        f"{rec.full_name} {rec.version} has nothing for {triple!r}; it carries "
        f"{', '.join(rec.triples)}",
        available=list(rec.triples),
    )


#: One byte range. ASCII digits only (``str.isdigit`` also takes "²", which ``int`` refuses),
#: at most 19 of them (``int`` refuses more than 4300, and no file is that large anyway).
_RANGE = re.compile(r"bytes=([0-9]{0,19})-([0-9]{0,19})")


def _parse_range(header: str, size: int) -> tuple[int, int]:
    """``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` -> [start, end). Anything else is 416."""

    def bad(why: str) -> APIError:
        return APIError(416, "bad_range", f"Range {header[:80]!r}: {why}", size=size)

    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec:
        raise bad("only 'bytes=' ranges are supported")
    if "," in spec:
        raise bad("only a single range is supported")
    m = _RANGE.fullmatch(f"bytes={spec.strip()}")
    if m is None:
        raise bad("malformed range")
    first, last = m[1], m[2]
    if first == "":
        if last == "" or int(last) == 0:
            raise bad("malformed suffix range")
        return max(0, size - int(last)), size
    start = int(first)
    end = size if last == "" else min(int(last) + 1, size)
    if last != "" and int(last) < start:
        raise bad("the range ends before it starts")
    if start >= size:
        raise bad(f"starts at {start}, past the end ({size} bytes)")
    return start, end


class _BlobResponse:
    """Bytes ``[start, end)`` of a blob, streamed in chunks from the blob store (HEAD:
    headers only)."""

    def __init__(
        self,
        storage: Storage,
        sha256: str,
        start: int,
        end: int,
        status: int,
        headers: dict[str, str],
    ) -> None:
        self.storage, self.sha256 = storage, sha256
        self.start, self.end, self.status = start, end, status
        self.headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
        ]
        self.headers.append((b"content-length", str(end - start).encode("ascii")))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "HEAD" or self.start == self.end:
            await send(
                {"type": "http.response.start", "status": self.status, "headers": self.headers}
            )
            await send({"type": "http.response.body", "body": b""})
            return
        # Opened before the status line: a blob store that is gone is still a 503 answer.
        if self.storage.local_reads:
            chunks = self.storage.read_blob(self.sha256, self.start, self.end)
        else:
            chunks = await anyio.to_thread.run_sync(
                self.storage.read_blob, self.sha256, self.start, self.end
            )
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        # uvicorn drops writes to a client that went away without telling the app: watch
        # for the disconnect so an abandoned download stops reading its blob.
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            await self._body(send, chunks)
            tg.cancel_scope.cancel()

    async def _body(self, send: Send, chunks: Iterator[bytes]) -> None:
        # Local blobs are immutable files, usually in the page cache: reading a chunk inline
        # costs less than a hop to a worker thread per chunk. A remote store's reads block
        # on the network: they run in a worker thread.
        inline = self.storage.local_reads
        try:
            left = self.end - self.start
            while left > 0:
                chunk = (
                    next(chunks, b"")
                    if inline
                    else await anyio.to_thread.run_sync(next, chunks, b"")
                )
                if not chunk:
                    raise RuntimeError(f"blob {self.sha256} is shorter than recorded")
                left -= len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": left > 0})
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()


async def download(request: Request) -> Response | _BlobResponse:
    ns, name, ver = names_of(request, version=True)
    require(request, "read", ns)
    reg = registry_of(request)
    rec = version_or_404(reg, ns, name, ver)
    variant = _pick_variant(rec, request.query_params.get("triple"))
    etag = f'"{variant.sha256}"'
    stem = f"{ns}-{name}-{ver}" + ("" if variant.triple == "full" else f"-{variant.triple}")
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Cache-Control": "public, max-age=31536000, immutable",
        "Content-Type": PACK_MEDIA_TYPE,
        "Content-Disposition": f'attachment; filename="{stem}.rflpack"',
        "Last-Modified": formatdate(rec.published_at, usegmt=True),
        "X-Reflow-Variant": variant.triple,
        "X-Reflow-Sha256": variant.sha256,
    }
    inm = request.headers.get("if-none-match")
    if inm is not None and (inm.strip() == "*" or etag in [t.strip() for t in inm.split(",")]):
        return Response(
            status_code=304,
            headers={k: v for k, v in headers.items() if k in ("ETag", "Cache-Control")},
        )
    rng = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if rng is not None and (if_range is None or if_range.strip() == etag):
        start, end = _parse_range(rng, variant.size)
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{variant.size}"
        return _BlobResponse(reg.storage, variant.sha256, start, end, 206, headers)
    return _BlobResponse(reg.storage, variant.sha256, 0, variant.size, 200, headers)
