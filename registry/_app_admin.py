"""The registry app's admin endpoints: namespaces, their publisher keys, and tokens."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .._errors import (
    PackSignatureError,
)
from ..abi._signing import key_id as key_id_of
from ..abi._signing import load_public_key, public_key_pem
from ._app_state import (
    APIError,
    iso_time,
    json_body,
    names_of,
    registry_of,
    require,
)


async def create_namespace(request: Request) -> Response:
    require(request, "admin")
    doc = await json_body(request)
    name, owner = str(doc.get("name", "")), str(doc.get("owner", ""))
    try:
        rec = registry_of(request).auth.create_namespace(name, owner)
    except ValueError as exc:
        code = "namespace_exists" if "already exists" in str(exc) else "invalid_name"
        raise APIError(409 if code == "namespace_exists" else 400, code, str(exc)) from exc
    return JSONResponse(
        {"name": rec.name, "owner": rec.owner, "created_at": iso_time(rec.created_at)},
        status_code=201,
    )


async def namespace_info(request: Request) -> Response:
    ns, _, _ = names_of(request)
    require(request, "read", ns)
    reg = registry_of(request)
    rec = reg.storage.get_namespace(ns)
    if rec is None:
        raise APIError(404, "namespace_not_found", f"no namespace {ns!r}")
    keys = [
        {"key_id": k.key_id, "added_at": iso_time(k.added_at), "pem": k.pem.decode("ascii")}
        for k in reg.storage.list_keys(ns)
    ]
    return JSONResponse(
        {"name": rec.name, "owner": rec.owner, "created_at": iso_time(rec.created_at), "keys": keys}
    )


async def add_key(request: Request) -> Response:
    ns, _, _ = names_of(request)
    require(request, "admin", ns)
    reg = registry_of(request)
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
    ns, _, _ = names_of(request)
    require(request, "admin", ns)
    kid = request.path_params["key_id"]
    if not registry_of(request).storage.remove_key(ns, kid):
        raise APIError(404, "key_not_found", f"no key {kid!r} in namespace {ns!r}")
    return Response(status_code=204)


async def create_token(request: Request) -> Response:
    """A new token, made by (and recorded as a child of) the caller's admin token: it
    expires no later than the caller's, and is revoked with it (``_auth``)."""
    doc = await json_body(request)
    ns = str(doc.get("namespace", ""))
    reg = registry_of(request)
    parent = reg.auth.require(request.headers.get("authorization"), "admin", ns)
    ttl = doc.get("ttl_seconds")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float))):
        raise APIError(400, "bad_request", "ttl_seconds must be a number of seconds or null")
    try:
        rec, token = reg.auth.create_token(
            ns,
            str(doc.get("scope", "")),
            ttl=float(ttl) if ttl is not None else None,
            label=str(doc.get("label", ""))[:200],
            parent=parent,
        )
    except (TypeError, ValueError, OverflowError) as exc:
        raise APIError(400, "bad_request", str(exc)) from exc
    return JSONResponse(
        {
            "token": token,
            "token_id": rec.token_id,
            "namespace": rec.namespace,
            "scope": rec.scope,
            "expires_at": iso_time(rec.expires_at) if rec.expires_at else None,
        },
        status_code=201,
    )
