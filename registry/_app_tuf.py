"""The registry app's signed-metadata endpoints (TUF, see :mod:`._tuf_repo`).

``GET /tuf/timestamp.json`` and ``GET /tuf/{version}.{role}.json`` serve the metadata;
``GET /tuf/targets/{ns}/{name}/{version}/{sha256}.{variant}.rflpack`` serves a target by its
hash-prefixed name (what ``tuf.ngclient`` asks for with consistent snapshots);
``PUT /api/v1/namespaces/{ns}/metadata`` takes a namespace's new targets metadata, signed
by its publisher's client, and bumps snapshot and timestamp.
"""

from __future__ import annotations

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._app_read import _BlobResponse
from ._app_state import APIError, names_of, registry_of, require
from ._tuf_repo import MAX_NAMESPACE_METADATA, RepositoryRefusal, TufRepository

__all__ = ["namespace_metadata", "tuf_file", "tuf_target"]


def _repo(request: Request) -> TufRepository:
    repo = registry_of(request).tuf
    if repo is None or not repo.enabled:
        raise APIError(
            404,
            "tuf_not_enabled",
            "this registry keeps no signed metadata ('reflow-registry tuf init' makes it)",
        )
    assert isinstance(repo, TufRepository)
    return repo


async def tuf_file(request: Request) -> Response:
    repo = _repo(request)
    name = request.path_params["file"]
    try:
        data = await anyio.to_thread.run_sync(repo.file, name)
    except RepositoryRefusal as exc:
        raise APIError(exc.status, exc.code, str(exc)) from exc
    if data is None:
        raise APIError(404, "not_found", f"no signed metadata {name[:100]!r}")
    cache = "no-cache" if name == "timestamp.json" else "public, max-age=31536000, immutable"
    return Response(data, media_type="application/json", headers={"Cache-Control": cache})


async def tuf_target(request: Request) -> _BlobResponse:
    ns, name, version = names_of(request, version=True)
    _repo(request)
    reg = registry_of(request)
    sha, _, rest = request.path_params["file"].partition(".")
    variant = rest.removesuffix(".rflpack")
    rec = reg.storage.get_version(ns, name, version)
    found: dict[str, tuple[str, int]] = {}
    if rec is not None:
        found = {"full": (rec.sha256, rec.size)} | {
            v.triple: (v.sha256, v.size) for v in rec.variants
        }
    got = found.get(variant)
    if got is None or got[0] != sha or not rest.endswith(".rflpack"):
        raise APIError(404, "not_found", "no such target")
    headers = {"Content-Type": "application/vnd.reflow.rflpack", "Accept-Ranges": "none"}
    return _BlobResponse(reg.storage, sha, 0, got[1], 200, headers)


async def namespace_metadata(request: Request) -> Response:
    ns, _, _ = names_of(request)
    require(request, "publish", ns)
    repo = _repo(request)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_NAMESPACE_METADATA:
            raise APIError(
                413, "too_large", f"namespace metadata is limited to {MAX_NAMESPACE_METADATA} bytes"
            )
    try:
        version = await anyio.to_thread.run_sync(repo.accept_namespace, ns, bytes(body))
    except RepositoryRefusal as exc:
        raise APIError(exc.status, exc.code, str(exc)) from exc
    return JSONResponse({"namespace": ns, "version": version}, status_code=201)
