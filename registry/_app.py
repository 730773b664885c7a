"""The registry's HTTP API: a Starlette app of plain async endpoint functions.

``create_app(storage)`` returns the ASGI app; ``registry/API.md`` documents every route and
``GET /openapi.json`` describes them. Every error is JSON, ``{"error": {"code": ...,
"message": ...}}``, with a stable ``code`` a client can branch on.

Publishing streams the body into a temp blob (counting bytes against the upload limit: 413
``too_large``), then, in a worker thread, verifies the pack exactly as ``load_pack`` would —
container and member hashes, manifest name and version against the URL, ABI version, the
signature against the namespace's registered keys — builds the slim per-triple variants,
commits every blob (fsync, rename) and only then commits the index row.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .._errors import (
    ABIVersionError,
    PackFormatError,
    PackIntegrityError,
    PackSignatureError,
    UntrustedKeyError,
)
from ..abi._bundle import Bundle, read_bundle, strip_bundle, write_bundle
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
    """Server settings. ``max_upload``: largest accepted pack in bytes."""

    max_upload: int = 256 << 20
    anonymous_read: bool = True


@dataclass
class _Registry:
    storage: Storage
    auth: Authenticator
    config: RegistryConfig
    #: Held from the "not published elsewhere" check to the index commit (publishes run in
    #: worker threads), so two namespaces cannot both take the same un-namespaced manifest.
    publish_lock: threading.Lock = field(default_factory=threading.Lock)


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
    if reg.storage.get_version(ns, name, ver) is not None:
        raise APIError(409, "version_exists",
                       f"{ns}/{name} {ver} is already published; versions are immutable, "
                       "publish a new version")
    _refuse_same_precedence(reg, ns, name, ver)
    limit = reg.config.max_upload
    declared = request.headers.get("content-length")
    if declared is not None:
        if _CONTENT_LENGTH.fullmatch(declared.strip()) is None:
            raise APIError(400, "bad_request", "Content-Length is not a number")
        declared = declared.strip()
        if int(declared) > limit:
            await _drain(request, int(declared))
            raise APIError(413, "too_large",
                           f"the pack is {declared} bytes; this registry accepts at most "
                           f"{limit}", limit=limit)
    upload = reg.storage.new_upload()
    try:
        try:
            async for chunk in request.stream():
                upload.write(chunk)
                if upload.size > limit:
                    upload.discard()
                    await _drain(request, None)
                    raise APIError(413, "too_large",
                                   f"the upload is over this registry's limit of {limit} "
                                   "bytes", limit=limit)
        except ClientDisconnect as exc:
            raise APIError(400, "incomplete_upload", "the client went away mid-upload") from exc
        if upload.size == 0:
            raise APIError(400, "empty_body", "the body must be the .rflpack file")
        upload.finish()
        rec = await anyio.to_thread.run_sync(_verify_and_store, reg, upload, ns, name, ver,
                                             who)
    except BaseException:
        upload.discard()
        raise
    return JSONResponse(_version_doc(request, rec), status_code=201)


async def _drain(request: Request, declared: int | None) -> None:
    if declared is not None and declared > _DRAIN_LIMIT:
        return
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > _DRAIN_LIMIT:
                return
    except ClientDisconnect:
        return


def _verify_and_store(reg: _Registry, upload: BlobUpload, ns: str, name: str, ver: str,
                      who: str) -> VersionRecord:
    """Verify the uploaded pack, commit its blobs, then its index row (worker thread)."""
    bundle, signer = _verify(reg, upload.path, ns, name, ver)
    _refuse_published_elsewhere(reg, bundle, ns)
    m = bundle.manifest
    variants = []
    natives = [t for t in m.triples() if t != PORTABLE_TRIPLE]
    for triple in natives:
        data = strip_bundle(upload.path, triple)
        variants.append(VariantRecord(triple, reg.storage.put_blob(data), len(data)))
    if natives and PORTABLE_TRIPLE in m.triples():
        keep = {a.path for a in m.artifacts if a.portable} | {f.path for f in m.files}
        data = write_bundle(bundle.manifest_bytes,
                            {p: d for p, d in bundle.contents.items() if p in keep},
                            bundle.signature_bytes)
        variants.append(VariantRecord(PORTABLE_TRIPLE, reg.storage.put_blob(data), len(data)))
    size = upload.size
    sha = reg.storage.commit_blob(upload)
    rec = VersionRecord(
        namespace=ns, name=name, version=ver, sha256=sha, size=size,
        manifest=bundle.manifest_bytes, signature=bundle.signature_bytes or b"",
        key_id=signer, abi=m.abi, description=m.description,
        templates=tuple(t.id for t in m.templates), triples=m.triples(),
        published_at=time.time(), published_by=who, variants=tuple(variants),
    )
    with reg.publish_lock:
        _refuse_published_elsewhere(reg, bundle, ns)
        try:
            reg.storage.add_version(rec)
        except VersionConflict as exc:
            raise _version_conflict(ns, name, ver, exc.existing) from exc
        except StorageConflict as exc:
            raise APIError(409, "version_exists", str(exc)) from exc
    return rec


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


def _refuse_published_elsewhere(reg: _Registry, bundle: Bundle, ns: str) -> None:
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


def _verify(reg: _Registry, path: Path, ns: str, name: str, ver: str) -> tuple[Bundle, str]:
    """The parsed, checked pack and the registered key that signed it; APIError if not."""
    label = f"{ns}/{name} {ver}"
    try:
        bundle = read_bundle(path)
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
