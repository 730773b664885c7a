"""The OpenAPI 3.1 description served at ``GET /openapi.json`` (kept in step with API.md)."""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]

_ERROR = {"$ref": "#/components/responses/Error"}
_NS = {
    "name": "ns",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$"},
}
_NAME = {**_NS, "name": "name"}
_VERSION = {
    "name": "version",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "description": "semantic version"},
}
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


def _op(
    summary: str,
    *,
    params: list[dict[str, Any]] | None = None,
    ok: str = "200",
    ok_desc: str = "OK",
    errors: tuple[str, ...] = ("400", "401", "403", "404"),
    security: bool = False,
    body: dict[str, Any] | None = None,
    content: str = "application/json",
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": params or [],
        "responses": {ok: {"description": ok_desc, "content": {content: {}}}},
    }
    for e in errors:
        op["responses"][e] = _ERROR
    if security:
        op["security"] = _BEARER
    if body is not None:
        op["requestBody"] = body
    return op


def openapi_document(max_upload: int) -> dict[str, Any]:
    pkg = [_NS, _NAME]
    ver = [_NS, _NAME, _VERSION]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "reflow pack registry",
            "version": "1",
            "description": "Publish, search and download signed .rflpack packs. "
            "See registry/API.md.",
        },
        "paths": {
            "/api/v1/health": {"get": _op("liveness and the server's ABI", errors=())},
            "/api/v1/token": {
                "get": _op(
                    "the caller's token: token_id, namespace ('*': all), scope, label, expires_at",
                    security=True,
                    errors=("401",),
                )
            },
            "/api/v1/search": {
                "get": _op(
                    "search packs (untrusted hints)",
                    params=[
                        {"name": "q", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 100},
                        },
                        {
                            "name": "offset",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0},
                        },
                    ],
                )
            },
            "/api/v1/packs/{ns}/{name}": {"get": _op("list a pack's versions", params=pkg)},
            "/api/v1/namespaces/{ns}/metadata": {
                "put": _op(
                    "store the namespace's next TUF targets metadata, signed by its "
                    "publisher key (body: the signed JSON); bumps snapshot and timestamp",
                    params=[_NS],
                    ok="201",
                    ok_desc="stored",
                    security=True,
                    errors=("400", "401", "403", "404", "409", "413", "422"),
                    body={"required": True, "content": {"application/json": {}}},
                )
            },
            "/tuf/{file}": {
                "get": _op(
                    "signed TUF metadata: timestamp.json, {version}.{role}.json",
                    params=[{**_NS, "name": "file"}],
                    errors=("404",),
                )
            },
            "/tuf/targets/{ns}/{name}/{version}/{file}": {
                "get": _op(
                    "a TUF target by its hash-prefixed name ({sha256}.{variant}.rflpack)",
                    params=[*ver, {**_NS, "name": "file"}],
                    content="application/vnd.reflow.rflpack",
                    errors=("404",),
                )
            },
            "/api/v1/packs/{ns}/{name}/{version}": {
                "get": _op(
                    "version metadata: the signed manifest and signature, variants", params=ver
                ),
                "put": _op(
                    f"publish (body: the full .rflpack, at most {max_upload} bytes, "
                    "whose manifest names '{ns}/{name}' or just '{name}'; the "
                    "identical bytes again: 200 with unchanged=true)",
                    params=ver,
                    ok="201",
                    ok_desc="published",
                    security=True,
                    errors=("400", "401", "403", "404", "408", "409", "413", "422", "503", "507"),
                    body={"required": True, "content": {"application/vnd.reflow.rflpack": {}}},
                ),
            },
            "/api/v1/packs/{ns}/{name}/{version}/download": {
                "get": _op(
                    "download the full pack or the slim variant for a triple",
                    params=[
                        *ver,
                        {"name": "triple", "in": "query", "schema": {"type": "string"}},
                        {"name": "Range", "in": "header", "schema": {"type": "string"}},
                        {"name": "If-None-Match", "in": "header", "schema": {"type": "string"}},
                    ],
                    content="application/vnd.reflow.rflpack",
                    errors=("304", "400", "401", "403", "404", "416"),
                ),
            },
            "/api/v1/packs/{ns}/{name}/{version}/yank": {
                "post": _op('yank a version (body: {"reason": ...})', params=ver, security=True),
                "delete": _op("unyank a version", params=ver, security=True),
            },
            "/api/v1/namespaces": {
                "post": _op(
                    "create a namespace ({name, owner}; admin)",
                    ok="201",
                    security=True,
                    errors=("400", "401", "403", "409"),
                )
            },
            "/api/v1/namespaces/{ns}": {
                "get": _op("a namespace, its owner and keys", params=[_NS])
            },
            "/api/v1/namespaces/{ns}/keys": {
                "post": _op(
                    "register a publisher's Ed25519 public key (PEM body; admin)",
                    params=[_NS],
                    ok="201",
                    security=True,
                )
            },
            "/api/v1/namespaces/{ns}/keys/{key_id}": {
                "delete": _op(
                    "remove a key (admin)",
                    params=[
                        _NS,
                        {
                            "name": "key_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                    ],
                    ok="204",
                    security=True,
                )
            },
            "/api/v1/tokens": {
                "post": _op(
                    "create a token ({namespace, scope, ttl_seconds, label}; admin); it expires "
                    "no later than the caller's token and is revoked with it",
                    ok="201",
                    security=True,
                )
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Error": {
                    "description": "an error",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["error"],
                                "properties": {
                                    "error": {
                                        "type": "object",
                                        "required": ["code", "message"],
                                        "properties": {
                                            "code": {"type": "string"},
                                            "message": {"type": "string"},
                                        },
                                    }
                                },
                            }
                        }
                    },
                }
            },
        },
    }
