"""The registry's HTTP API: a Starlette app of plain async endpoint functions.

``create_app(storage)`` returns the ASGI app; ``registry/API.md`` documents every route and
``GET /openapi.json`` describes them. Every error is JSON, ``{"error": {"code": ...,
"message": ...}}``, with a stable ``code`` a client can branch on.

Publishing streams the body into a temp blob (counting bytes against the upload limit: 413
``too_large``), then, in a worker thread, verifies the pack exactly as ``load_pack`` would —
container and member hashes, manifest name and version against the URL, ABI version, the
signature against the namespace's registered keys — builds the slim per-triple variants,
commits every blob (fsync, rename) and only then commits the index row. Checking and
re-packing stream from the temp file (``scan_bundle``, ``stream_bundle``), so a publish holds
about one zstd context and a few chunks in memory whatever the pack's size.

Slow or greedy clients are bounded here too: a request body must keep arriving
(:class:`RegistryConfig` ``body_timeout``, ``min_body_rate``: else ``408 request_timeout``),
at most ``max_uploads`` publishes run at once (else ``503 too_many_uploads`` with
``Retry-After``) and at most ``max_builds`` of them build variants at once. Timeouts on
request heads and the connection cap live in the server (``_serve``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._errors import (
    ABIVersionError,
    PackFormatError,
    PackIntegrityError,
    PackSignatureError,
    UntrustedKeyError,
)
from ..abi._bundle import BundleScan, scan_bundle, stream_bundle
from ..abi._manifest import PORTABLE_TRIPLE
from ..abi._signing import key_id as key_id_of
from ..abi._signing import load_public_key, public_key_pem, verify_manifest
from ..abi._version import ABI_VERSION, check_abi_compatible
from ._auth import AuthDenied, Authenticator
from ._names import is_valid_name
from ._openapi import openapi_document
from ._semver import Version, precedence
from ._storage import (
    BlobUpload,
    Storage,
    StorageConflict,
    StorageFull,
    VariantRecord,
    VersionConflict,
    VersionRecord,
)

__all__ = ["APIError", "RegistryConfig", "create_app"]

#: Content type of a pack download.
PACK_MEDIA_TYPE = "application/vnd.reflow.rflpack"
_CHUNK = 1 << 20
#: After a 413 the server still reads (and drops) up to this many bytes, so an HTTP/1.1
#: client that sends its whole body before reading gets the 413 instead of a reset socket.
_DRAIN_LIMIT = 64 << 20


class APIError(Exception):
    """An error response: HTTP ``status``, machine-readable ``code``, human ``message``."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.extra = extra


@dataclass(frozen=True)
class RegistryConfig:
    """Server settings.

    ``max_upload``: largest accepted pack in bytes. ``max_uploads``: publishes that may
    receive or process a body at once (more: 503 with ``Retry-After: retry_after``).
    ``max_builds``: publishes that may build slim variants at once (each holds a zstd
    context of about 64 MiB; the others wait). ``body_timeout``: longest wait in seconds for
    the next piece of any request body; ``min_body_rate``: bytes per second a body must
    average once ``body_timeout`` seconds of grace are used up (each byte buys
    ``1 / min_body_rate`` seconds). A body that falls behind is ``408 request_timeout``.
    ``None`` turns a bound off.
    """

    max_upload: int = 256 << 20
    anonymous_read: bool = True
    max_uploads: int = 16
    max_builds: int = 2
    body_timeout: float | None = 30.0
    min_body_rate: int | None = 16 << 10
    retry_after: int = 5

    def __post_init__(self) -> None:
        for name in ("max_upload", "max_uploads", "max_builds", "retry_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RegistryConfig.{name} must be a positive integer, not "
                                 f"{value!r}")
        for name in ("body_timeout", "min_body_rate"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not value > 0):
                raise ValueError(f"RegistryConfig.{name} must be positive or None, not "
                                 f"{value!r}")


@dataclass
class _Registry:
    storage: Storage
    auth: Authenticator
    config: RegistryConfig
    #: Held from the "not published elsewhere" check to the index commit (publishes run in
    #: worker threads), so two namespaces cannot both take the same un-namespaced manifest.
    publish_lock: threading.Lock = field(default_factory=threading.Lock)
    #: Publishes receiving or processing a body now (only the event loop thread counts).
    uploads: int = 0
    builds: threading.BoundedSemaphore = field(init=False)

    def __post_init__(self) -> None:
        self.builds = threading.BoundedSemaphore(self.config.max_builds)


def _reg(request: Request) -> _Registry:
    reg: _Registry = request.app.state.registry
    return reg


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None,
           **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **extra}},
                        status_code=status, headers=headers)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    if exc.code == "bad_range" and "size" in exc.extra:
        headers = {"Content-Range": f"bytes */{exc.extra['size']}"}
    if exc.status == 503 and "retry_after" in exc.extra:
        headers = {"Retry-After": str(exc.extra["retry_after"])}
    if exc.status == 408:
        # The rest of a slow body is not worth waiting for: uvicorn closes after this.
        headers = {"Connection": "close"}
    return _error(exc.status, exc.code, str(exc), headers, **exc.extra)


async def _auth_denied(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthDenied)
    return _error(exc.status, exc.code, str(exc),
                  {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None)


async def _http_exception(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, f"http_{status}")
    return _error(status, code, str(getattr(exc, "detail", "")) or code)


async def _internal(request: Request, exc: Exception) -> Response:
    return _error(500, "internal", f"internal error: {type(exc).__name__}")


class _BodyDeadline:
    """ASGI middleware: a request body must keep arriving. Each ``receive()`` while the body
    is incomplete waits at most ``timeout`` seconds, and never past ``start + timeout +
    received / min_rate`` (``start``: the first ``receive()``); past that the endpoint gets
    ``408 request_timeout`` raised from ``receive()``, so an upload cleans up as for any
    other error. Once the body is complete, ``receive()`` is passed through untimed (a
    download waits on it for the disconnect)."""

    def __init__(self, app: ASGIApp, timeout: float | None, min_rate: int | None) -> None:
        self.app, self.timeout, self.min_rate = app, timeout, min_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.timeout is None and self.min_rate is None):
            await self.app(scope, receive, send)
            return
        timeout, min_rate = self.timeout, self.min_rate
        grace = timeout if timeout is not None else 0.0
        done = False
        got = 0
        start: float | None = None

        async def guarded() -> Message:
            nonlocal done, got, start
            if done:
                return await receive()
            now = time.monotonic()
            if start is None:
                start = now
            deadline = float("inf") if timeout is None else now + timeout
            if min_rate is not None:
                deadline = min(deadline, start + grace + got / min_rate)
            message: Message | None = None
            with anyio.move_on_after(max(0.0, deadline - now)):
                message = await receive()
            if message is None:
                raise APIError(408, "request_timeout", _too_slow(got, time.monotonic() - start,
                                                                  timeout, min_rate))
            if message["type"] == "http.request":
                got += len(message.get("body", b""))
                done = not message.get("more_body", False)
            else:
                done = True
            return message

        await self.app(scope, guarded, send)


def _too_slow(got: int, elapsed: float, timeout: float | None, min_rate: int | None) -> str:
    rules = []
    if timeout is not None:
        rules.append(f"no pause longer than {timeout:g} s")
    if min_rate is not None:
        rules.append(f"at least {min_rate} bytes/s after {timeout or 0:g} s")
    return (f"the request body is too slow: {got} bytes in {elapsed:.1f} s; this registry "
            f"needs {' and '.join(rules)}")


# -- helpers -----------------------------------------------------------------------------------


def _names(request: Request, *, version: bool = False) -> tuple[str, str, str]:
    p = request.path_params
    ns, name, ver = p.get("ns", ""), p.get("name", ""), p.get("version", "")
    for key, label, value in (("ns", "namespace", ns), ("name", "pack name", name)):
        if key in p and not is_valid_name(value):
            raise APIError(400, "invalid_name",
                           f"{value!r} is not a valid {label} (lowercase letters, digits, "
                           "._-, starting with a letter or digit, at most 64 characters)")
    if version and not Version.is_valid(ver):
        raise APIError(400, "invalid_version", f"{ver!r} is not a semantic version")
    return ns, name, ver


def _require(request: Request, scope: str, namespace: str | None = "*") -> str:
    """Check the token; return who is acting (token id, or "anonymous")."""
    token = _reg(request).auth.require(request.headers.get("authorization"), scope, namespace)
    return token.token_id if token else "anonymous"


def _version_or_404(reg: _Registry, ns: str, name: str, ver: str) -> VersionRecord:
    rec = reg.storage.get_version(ns, name, ver)
    if rec is None:
        if not reg.storage.list_versions(ns, name):
            raise APIError(404, "pack_not_found", f"no pack {ns}/{name}")
        raise APIError(404, "version_not_found", f"{ns}/{name} has no version {ver}")
    return rec


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _version_doc(request: Request, r: VersionRecord) -> dict[str, Any]:
    url = f"{_base(request)}/api/v1/packs/{r.namespace}/{r.name}/{r.version}/download"
    variants = {"full": {"sha256": r.sha256, "size": r.size, "url": url}}
    for v in r.variants:
        variants[v.triple] = {"sha256": v.sha256, "size": v.size,
                              "url": f"{url}?triple={v.triple}"}
    return {
        "namespace": r.namespace,
        "name": r.name,
        "full_name": r.full_name,
        "version": r.version,
        "abi": r.abi,
        "description": r.description,
        "templates": list(r.templates),
        "triples": list(r.triples),
        "key_id": r.key_id,
        "sha256": r.sha256,
        "size": r.size,
        "manifest_b64": base64.b64encode(r.manifest).decode("ascii"),
        "signature_b64": base64.b64encode(r.signature).decode("ascii"),
        "manifest_sha256": hashlib.sha256(r.manifest).hexdigest(),
        "published_at": _iso(r.published_at),
        "yanked": r.yanked,
        "yank_reason": r.yank_reason,
        "variants": variants,
    }


async def _json_body(request: Request, limit: int = 64 << 10) -> dict[str, Any]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise APIError(413, "too_large", f"a JSON body is limited to {limit} bytes")
    if not body:
        return {}
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise APIError(400, "bad_json", f"the body is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise APIError(400, "bad_json", "the body must be a JSON object")
    return doc


# -- read endpoints ----------------------------------------------------------------------------


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok", "abi": f"{ABI_VERSION[0]}.{ABI_VERSION[1]}"})


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document(_reg(request).config.max_upload))


async def whoami(request: Request) -> Response:
    """The caller's token: its namespace and scope (so a client can tell where a pack named
    without a namespace goes)."""
    token = _reg(request).auth.authenticate(request.headers.get("authorization"))
    if token is None:
        raise AuthDenied(401, "unauthorized", "this needs a token; pass 'Authorization: "
                                              "Bearer <token>'")
    return JSONResponse({"token_id": token.token_id, "namespace": token.namespace,
                         "scope": token.scope, "label": token.label,
                         "expires_at": _iso(token.expires_at) if token.expires_at else None})


async def search(request: Request) -> Response:
    reg = _reg(request)
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
    return JSONResponse({"query": q, "results": [
        {"full_name": r.full_name, "namespace": r.namespace, "name": r.name,
         "version": r.version, "description": r.description, "templates": list(r.templates),
         "triples": list(r.triples),
         "url": f"{_base(request)}/api/v1/packs/{r.namespace}/{r.name}"}
        for r in found
    ]})


async def pack_versions(request: Request) -> Response:
    ns, name, _ = _names(request)
    _require(request, "read", ns)
    rows = _reg(request).storage.list_versions(ns, name)
    if not rows:
        raise APIError(404, "pack_not_found", f"no pack {ns}/{name}")
    return JSONResponse({
        "full_name": f"{ns}/{name}", "namespace": ns, "name": name,
        "versions": [{"version": r.version, "yanked": r.yanked, "yank_reason": r.yank_reason,
                      "published_at": _iso(r.published_at), "sha256": r.sha256,
                      "size": r.size, "triples": list(r.triples)} for r in rows],
    })


async def version_metadata(request: Request) -> Response:
    ns, name, ver = _names(request, version=True)
    _require(request, "read", ns)
    rec = _version_or_404(_reg(request), ns, name, ver)
    return JSONResponse(_version_doc(request, rec),
                        headers={"ETag": f'"{hashlib.sha256(rec.manifest).hexdigest()}"'})


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
    raise APIError(404, "no_variant",
                   f"{rec.full_name} {rec.version} has nothing for {triple!r}; it carries "
                   f"{', '.join(rec.triples)}", available=list(rec.triples))


#: One byte range. ASCII digits only (``str.isdigit`` also takes "²", which ``int`` refuses),
#: at most 19 of them (``int`` refuses more than 4300, and no file is that large anyway).
_RANGE = re.compile(r"bytes=([0-9]{0,19})-([0-9]{0,19})")
_CONTENT_LENGTH = re.compile(r"[0-9]{1,19}")


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
    """Bytes ``[start, end)`` of a local blob file, streamed in chunks (HEAD: headers only)."""

    def __init__(self, path: Path, start: int, end: int, status: int,
                 headers: dict[str, str]) -> None:
        self.path, self.start, self.end, self.status = path, start, end, status
        self.headers = [(k.lower().encode("latin-1"), v.encode("latin-1"))
                        for k, v in headers.items()]
        self.headers.append((b"content-length", str(end - start).encode("ascii")))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status,
                    "headers": self.headers})
        if scope["method"] == "HEAD" or self.start == self.end:
            await send({"type": "http.response.body", "body": b""})
            return
        # uvicorn drops writes to a client that went away without telling the app: watch
        # for the disconnect so an abandoned download stops reading its file.
        async with anyio.create_task_group() as tg:
            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            await self._body(send)
            tg.cancel_scope.cancel()

    async def _body(self, send: Send) -> None:
        # Blobs are immutable local files, usually in the page cache: reading a chunk
        # inline costs less than a hop to a worker thread per chunk.
        with open(self.path, "rb") as fh:
            fh.seek(self.start)
            left = self.end - self.start
            while left > 0:
                chunk = fh.read(min(_CHUNK, left))
                if not chunk:
                    raise RuntimeError(f"blob {self.path.name} is shorter than recorded")
                left -= len(chunk)
                await send({"type": "http.response.body", "body": chunk,
                            "more_body": left > 0})


async def download(request: Request) -> Response | _BlobResponse:
    ns, name, ver = _names(request, version=True)
    _require(request, "read", ns)
    reg = _reg(request)
    rec = _version_or_404(reg, ns, name, ver)
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
        return Response(status_code=304, headers={k: v for k, v in headers.items()
                                                  if k in ("ETag", "Cache-Control")})
    path = reg.storage.blob_path(variant.sha256)
    rng = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if rng is not None and (if_range is None or if_range.strip() == etag):
        start, end = _parse_range(rng, variant.size)
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{variant.size}"
        return _BlobResponse(path, start, end, 206, headers)
    return _BlobResponse(path, 0, variant.size, 200, headers)


# -- publishing --------------------------------------------------------------------------------


async def publish(request: Request) -> Response:
    ns, name, ver = _names(request, version=True)
    reg = _reg(request)
    who = _require(request, "publish", ns)
    if reg.storage.get_namespace(ns) is None:
        raise APIError(404, "namespace_not_found", f"no namespace {ns!r}")
    existing = reg.storage.get_version(ns, name, ver)
    if existing is None:
        _refuse_same_precedence(reg, ns, name, ver)
    limit = reg.config.max_upload
    declared = _declared_length(request)
    if existing is not None and declared is not None and declared != existing.size:
        raise _version_exists(ns, name, ver)  # cannot be the same file: no need to read it
    if declared is not None and declared > limit:
        await _drain(request, declared)
        raise APIError(413, "too_large", f"the pack is {declared} bytes; this registry "
                                         f"accepts at most {limit}", limit=limit)
    if reg.uploads >= reg.config.max_uploads:
        raise APIError(503, "too_many_uploads",
                       f"this registry takes {reg.config.max_uploads} uploads at once and is "
                       f"busy; retry in {reg.config.retry_after} s",
                       retry_after=reg.config.retry_after)
    reg.uploads += 1
    try:
        if existing is not None:
            return await _republish(request, reg, existing)
        return await _publish_new(request, reg, ns, name, ver, who)
    finally:
        reg.uploads -= 1


def _declared_length(request: Request) -> int | None:
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    if _CONTENT_LENGTH.fullmatch(declared.strip()) is None:
        raise APIError(400, "bad_request", "Content-Length is not a number")
    return int(declared.strip())


def _version_exists(ns: str, name: str, ver: str) -> APIError:
    return APIError(409, "version_exists",
                    f"{ns}/{name} {ver} is already published with different bytes; versions "
                    "are immutable, publish a new version")


def _no_room(ns: str, name: str, ver: str, exc: StorageFull) -> APIError:
    return APIError(507, "insufficient_storage",
                    f"the registry has no room to store {ns}/{name} {ver} ({exc}); nothing "
                    "was published, try again once its disk has space")


async def _receive(request: Request, limit: int, write: Callable[[bytes], None],
                   drop: Callable[[], None], label: tuple[str, str, str]) -> int:
    """Feed the body to ``write``; the byte count. Over ``limit`` (413) or no room (507):
    ``drop`` what was kept, read what the client still sends (bounded), then raise."""
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                drop()
                await _drain(request, None)
                raise APIError(413, "too_large", f"the upload is over this registry's limit "
                                                 f"of {limit} bytes", limit=limit)
            try:
                write(chunk)
            except StorageFull as exc:
                drop()
                await _drain(request, None)
                raise _no_room(*label, exc) from exc
    except ClientDisconnect as exc:
        raise APIError(400, "incomplete_upload", "the client went away mid-upload") from exc
    if size == 0:
        raise APIError(400, "empty_body", "the body must be the .rflpack file")
    return size


async def _republish(request: Request, reg: _Registry, existing: VersionRecord) -> Response:
    """The version exists: the same bytes again are a success that changes nothing (200,
    ``unchanged``); anything else is 409. Only hashed, never written to disk."""
    digest = hashlib.sha256()
    ns, name, ver = existing.namespace, existing.name, existing.version
    size = await _receive(request, reg.config.max_upload, digest.update, lambda: None,
                          (ns, name, ver))
    if size != existing.size or digest.hexdigest() != existing.sha256:
        raise _version_exists(ns, name, ver)
    return JSONResponse({**_version_doc(request, existing), "unchanged": True})


async def _publish_new(request: Request, reg: _Registry, ns: str, name: str, ver: str,
                       who: str) -> Response:
    try:
        upload = reg.storage.new_upload()
    except StorageFull as exc:
        raise _no_room(ns, name, ver, exc) from exc
    try:
        await _receive(request, reg.config.max_upload, upload.write, upload.discard,
                       (ns, name, ver))
        try:
            upload.finish()
            rec, unchanged = await anyio.to_thread.run_sync(
                _verify_and_store, reg, upload, ns, name, ver, who)
        except StorageFull as exc:
            raise _no_room(ns, name, ver, exc) from exc
    finally:
        upload.discard()  # a no-op once committed (the file was renamed to its blob)
    return JSONResponse({**_version_doc(request, rec), "unchanged": unchanged},
                        status_code=200 if unchanged else 201)


async def _drain(request: Request, declared: int | None) -> None:
    """Read and drop what the client still sends (at most ``_DRAIN_LIMIT`` bytes), so an
    HTTP/1.1 client that writes its whole body before reading gets the error response."""
    if declared is not None and declared > _DRAIN_LIMIT:
        return
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > _DRAIN_LIMIT:
                return
    except (ClientDisconnect, APIError):  # gone, or too slow (408): answer anyway
        return


def _variant_members(scan: BundleScan) -> list[tuple[str, set[str]]]:
    """Each slim variant's triple and the members it keeps: one per native triple (its own
    and the portable artifacts), and a portable-only one when the pack has both kinds."""
    m = scan.manifest
    present = set(scan.present)
    files = {f.path for f in m.files}
    natives = [t for t in m.triples() if t != PORTABLE_TRIPLE]
    out = [(t, {a.path for a in m.artifacts if a.triple in (PORTABLE_TRIPLE, t)} | files)
           for t in natives]
    if natives and PORTABLE_TRIPLE in m.triples():
        out.append((PORTABLE_TRIPLE, {a.path for a in m.artifacts if a.portable} | files))
    return [(t, keep & present) for t, keep in out]


def _write_blob(storage: Storage, chunks: Iterable[bytes]) -> BlobUpload:
    part = storage.new_upload()
    try:
        for chunk in chunks:
            part.write(chunk)
        part.finish()
    except BaseException:
        part.discard()
        raise
    return part


def _verify_and_store(reg: _Registry, upload: BlobUpload, ns: str, name: str, ver: str,
                      who: str) -> tuple[VersionRecord, bool]:
    """Verify the uploaded pack, write its variants, commit every blob, then the index row
    (worker thread). Returns the row and whether it was there already, with these bytes
    (a racing publish of the identical file won)."""
    scan, signer = _verify(reg, upload.path, ns, name, ver)
    _refuse_published_elsewhere(reg, scan, ns)
    m = scan.manifest
    parts: list[tuple[str, BlobUpload]] = []
    try:
        with reg.builds:
            for triple, keep in _variant_members(scan):
                parts.append((triple, _write_blob(
                    reg.storage, stream_bundle(upload.path, scan, keep))))
        variants = tuple(VariantRecord(t, reg.storage.commit_blob(p), p.size)
                         for t, p in parts)
    finally:
        for _, p in parts:
            p.discard()  # a no-op for those committed
    size = upload.size
    sha = reg.storage.commit_blob(upload)
    rec = VersionRecord(
        namespace=ns, name=name, version=ver, sha256=sha, size=size,
        manifest=scan.manifest_bytes, signature=scan.signature_bytes or b"",
        key_id=signer, abi=m.abi, description=m.description,
        templates=tuple(t.id for t in m.templates), triples=m.triples(),
        published_at=time.time(), published_by=who, variants=variants,
    )
    with reg.publish_lock:
        _refuse_published_elsewhere(reg, scan, ns)
        try:
            reg.storage.add_version(rec)
        except VersionConflict as exc:
            raise _version_conflict(ns, name, ver, exc.existing) from exc
        except StorageConflict as exc:
            won = reg.storage.get_version(ns, name, ver)
            if won is not None and (won.sha256, won.size) == (sha, size):
                return won, True
            raise _version_exists(ns, name, ver) from exc
    return rec, False


def _version_conflict(ns: str, name: str, ver: str, existing: str) -> APIError:
    return APIError(409, "version_conflict",
                    f"{ns}/{name} {existing} is already published and {ver} has the same "
                    "version precedence (build metadata does not count), so a range could "
                    "not tell them apart; publish a higher version", existing=existing)


def _refuse_same_precedence(reg: _Registry, ns: str, name: str, ver: str) -> None:
    """Fail fast, before the upload, on ``1.0.10+rebuild`` next to ``1.0.10`` (storage
    checks again in the transaction that commits the row)."""
    mine = precedence(ver)
    for r in reg.storage.list_versions(ns, name):
        if r.version != ver and precedence(r.version) == mine:
            raise _version_conflict(ns, name, ver, r.version)


def _refuse_published_elsewhere(reg: _Registry, bundle: BundleScan, ns: str) -> None:
    """A manifest named without a namespace fits any namespace whose keys include its
    signer's; public keys are public, so refuse the same signed manifest in a second one."""
    m = bundle.manifest
    if "/" in m.name:
        return  # its name fixes its namespace: _verify already checked it
    for other in reg.storage.find_versions(m.name, m.version):
        if other.namespace != ns and other.manifest == bundle.manifest_bytes:
            raise APIError(409, "published_elsewhere",
                           f"this signed manifest of {m.name} {m.version} is already "
                           f"published as {other.full_name}; a pack named without a "
                           "namespace is published in one namespace only (name it "
                           f"'{ns}/{m.name}' to publish it here)",
                           namespace=other.namespace)


def _verify(reg: _Registry, path: Path, ns: str, name: str, ver: str
            ) -> tuple[BundleScan, str]:
    """The checked pack (streamed: its members are hashed, not kept) and the registered key
    that signed it; APIError if not."""
    label = f"{ns}/{name} {ver}"
    try:
        bundle = scan_bundle(path)
    except PackIntegrityError as exc:
        raise APIError(422, "integrity_mismatch", f"{label}: {exc}", file=exc.file,
                       expected=exc.expected, actual=exc.actual) from exc
    except PackFormatError as exc:
        raise APIError(422, "invalid_pack", f"{label}: not a valid .rflpack: "
                                            f"{str(exc).replace('<bytes>: ', '')}") from exc
    m = bundle.manifest
    # "acme/tools" publishes only as acme/tools; "tools" (no namespace) as any ns/tools.
    if m.name != f"{ns}/{name}" and m.name != name:
        raise APIError(400, "name_mismatch", f"the pack's manifest names {m.name!r}, but it "
                                             f"is being published as {ns}/{name!s}")
    if m.version != ver:
        raise APIError(400, "version_mismatch", f"the pack's manifest says version "
                                                f"{m.version}, but it is being published as "
                                                f"{ver}")
    if bundle.is_stripped():
        raise APIError(422, "stripped_pack", f"{label} is stripped (it carries only "
                                             f"{', '.join(bundle.present_triples())}); publish "
                                             "the full pack, the registry makes the slim ones")
    try:
        check_abi_compatible(m.abi_version, ABI_VERSION, what=f"pack {label}")
    except ABIVersionError as exc:
        raise APIError(422, "abi_incompatible", str(exc)) from exc
    keys = {}
    for k in reg.storage.list_keys(ns):
        public = load_public_key(k.pem)
        keys[key_id_of(public)] = public
    try:
        signer = verify_manifest(bundle.manifest_bytes, bundle.signatures, keys, pack=label)
    except UntrustedKeyError as exc:
        raise APIError(422, "unregistered_key",
                       f"{label} is signed by key {', '.join(s.key_id for s in bundle.signatures)}"
                       f", which is not registered for namespace {ns!r} (registered: "
                       f"{', '.join(sorted(keys)) or 'none'}); an admin adds it with "
                       f"'reflow-registry key add --namespace {ns} KEY.pub'",
                       key_id=exc.key_id) from exc
    except PackSignatureError as exc:
        code = "bad_signature" if bundle.signatures else "unsigned"
        raise APIError(422, code, str(exc), key_id=exc.key_id) from exc
    return bundle, signer


async def set_yank(request: Request) -> Response:
    ns, name, ver = _names(request, version=True)
    _require(request, "publish", ns)
    reg = _reg(request)
    _version_or_404(reg, ns, name, ver)
    if request.method == "DELETE":
        reg.storage.set_yanked(ns, name, ver, False)
    else:
        reason = str((await _json_body(request)).get("reason", ""))[:1000]
        reg.storage.set_yanked(ns, name, ver, True, reason)
    return JSONResponse(_version_doc(request, _version_or_404(reg, ns, name, ver)))


# -- namespaces, keys, tokens ------------------------------------------------------------------


async def create_namespace(request: Request) -> Response:
    _require(request, "admin")
    doc = await _json_body(request)
    name, owner = str(doc.get("name", "")), str(doc.get("owner", ""))
    try:
        rec = _reg(request).auth.create_namespace(name, owner)
    except ValueError as exc:
        code = "namespace_exists" if "already exists" in str(exc) else "invalid_name"
        raise APIError(409 if code == "namespace_exists" else 400, code, str(exc)) from exc
    return JSONResponse({"name": rec.name, "owner": rec.owner,
                         "created_at": _iso(rec.created_at)}, status_code=201)


async def namespace_info(request: Request) -> Response:
    ns, _, _ = _names(request)
    _require(request, "read", ns)
    reg = _reg(request)
    rec = reg.storage.get_namespace(ns)
    if rec is None:
        raise APIError(404, "namespace_not_found", f"no namespace {ns!r}")
    keys = [{"key_id": k.key_id, "added_at": _iso(k.added_at), "pem": k.pem.decode("ascii")}
            for k in reg.storage.list_keys(ns)]
    return JSONResponse({"name": rec.name, "owner": rec.owner,
                         "created_at": _iso(rec.created_at), "keys": keys})


async def add_key(request: Request) -> Response:
    ns, _, _ = _names(request)
    _require(request, "admin", ns)
    reg = _reg(request)
    if reg.storage.get_namespace(ns) is None:
        raise APIError(404, "namespace_not_found", f"no namespace {ns!r}")
    body = await request.body()
    if len(body) > 16 << 10:
        raise APIError(413, "too_large", "a public key is at most 16 KiB")
    try:
        public = load_public_key(body)
    except PackSignatureError as exc:
        raise APIError(400, "invalid_key", str(exc)) from exc
    kid = key_id_of(public)
    reg.storage.add_key(ns, kid, public_key_pem(public))
    return JSONResponse({"namespace": ns, "key_id": kid}, status_code=201)


async def remove_key(request: Request) -> Response:
    ns, _, _ = _names(request)
    _require(request, "admin", ns)
    kid = request.path_params["key_id"]
    if not _reg(request).storage.remove_key(ns, kid):
        raise APIError(404, "key_not_found", f"no key {kid!r} in namespace {ns!r}")
    return Response(status_code=204)


async def create_token(request: Request) -> Response:
    """A new token, made by (and recorded as a child of) the caller's admin token: it
    expires no later than the caller's, and is revoked with it (``_auth``)."""
    doc = await _json_body(request)
    ns = str(doc.get("namespace", ""))
    reg = _reg(request)
    parent = reg.auth.require(request.headers.get("authorization"), "admin", ns)
    ttl = doc.get("ttl_seconds")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float))):
        raise APIError(400, "bad_request", "ttl_seconds must be a number of seconds or null")
    try:
        rec, token = reg.auth.create_token(
            ns, str(doc.get("scope", "")), ttl=float(ttl) if ttl is not None else None,
            label=str(doc.get("label", ""))[:200], parent=parent)
    except (TypeError, ValueError, OverflowError) as exc:
        raise APIError(400, "bad_request", str(exc)) from exc
    return JSONResponse({"token": token, "token_id": rec.token_id, "namespace": rec.namespace,
                         "scope": rec.scope, "expires_at": _iso(rec.expires_at)
                         if rec.expires_at else None}, status_code=201)


# -- the app -----------------------------------------------------------------------------------

_Endpoint = Callable[[Request], Awaitable[Any]]
_P = "/api/v1/packs/{ns}/{name}"
ROUTES: list[tuple[str, _Endpoint, list[str]]] = [
    ("/api/v1/health", health, ["GET"]),
    ("/openapi.json", openapi, ["GET"]),
    ("/api/v1/token", whoami, ["GET"]),
    ("/api/v1/search", search, ["GET"]),
    (_P, pack_versions, ["GET"]),
    (_P + "/{version}", version_metadata, ["GET"]),
    (_P + "/{version}", publish, ["PUT"]),
    (_P + "/{version}/download", download, ["GET", "HEAD"]),
    (_P + "/{version}/yank", set_yank, ["POST", "DELETE"]),
    ("/api/v1/namespaces", create_namespace, ["POST"]),
    ("/api/v1/namespaces/{ns}", namespace_info, ["GET"]),
    ("/api/v1/namespaces/{ns}/keys", add_key, ["POST"]),
    ("/api/v1/namespaces/{ns}/keys/{key_id}", remove_key, ["DELETE"]),
    ("/api/v1/tokens", create_token, ["POST"]),
]


def create_app(storage: Storage, config: RegistryConfig | None = None, *,
               auth: Authenticator | None = None) -> Starlette:
    """The registry as an ASGI app over ``storage``."""
    config = config or RegistryConfig()
    app = Starlette(
        routes=[Route(path, endpoint, methods=methods) for path, endpoint, methods in ROUTES],
        middleware=[Middleware(_BodyDeadline, timeout=config.body_timeout,
                               min_rate=config.min_body_rate)],
        exception_handlers={
            APIError: _api_error,
            AuthDenied: _auth_denied,
            HTTPException: _http_exception,
            Exception: _internal,
        },
    )
    app.state.registry = _Registry(
        storage, auth or Authenticator(storage, anonymous_read=config.anonymous_read), config)
    return app
