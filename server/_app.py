"""The execution server's ASGI app: routes, JSON errors, the static live view.

Routes (all under ``/api/v1`` need the bearer token unless auth is off)::

    POST   /api/v1/executions              run a graph          201 execution
    GET    /api/v1/executions?limit&cursor list, newest first   200 page
    GET    /api/v1/executions/{id}         state and summary    200 execution
    DELETE /api/v1/executions/{id}         cancel               200 execution
    WS     /api/v1/executions/{id}/events  its events as JSON
    GET    /api/v1/templates               template ids         200
    GET    /api/v1/templates/{id}          ports, types, config 200
    POST   /api/v1/packs                   load a pack          201
    GET    /openapi.json                   this API, described
    GET    /                               the live view

Every refusal is a :class:`~._errors.RequestError` answered as ``{"error": {...}}``; anything
else that escapes a handler is answered 500 with the same shape (and logged), never with a
traceback.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from reflow import ReflowError, template_list
from reflow._core._catalog import lookup_template, template_owner
from reflow._jsonread import loads as bounded_loads

from ._auth import BearerAuth
from ._errors import (
    BadGatewayError,
    BadRequestError,
    NotFoundError,
    PayloadTooLargeError,
    RequestError,
    UnprocessableError,
    error_response,
)
from ._events_ws import events_endpoint
from ._executions import ExecutionRegistry
from ._limits import ServerLimits, read_body
from ._openapi import openapi_document
from ._tracing import server_tracing

__all__ = ["ServerConfig", "create_app", "error_response"]

log = logging.getLogger("reflow.server")
STATIC = Path(__file__).resolve().parent / "static"


@dataclass
class ServerConfig:
    """How one server runs. ``token``: the bearer token (``None``: no auth — the CLI allows
    that only on loopback). ``trust``: the trust store directory uploaded and named packs are
    verified against (``None``: the default store). ``registry``: the pack registry URL packs
    named by ``POST /api/v1/packs`` or an execution's ``packs`` come from."""

    token: str | None = None
    limits: ServerLimits = field(default_factory=ServerLimits)
    trust: str | None = None
    registry: str | None = None
    registry_token: str | None = None
    #: where the registry client caches packs it fetched (``None``: its default cache)
    registry_cache: str | None = None
    #: OpenTelemetry: an OTLP/HTTP endpoint traces go to (``None``: the ``OTEL_*`` variables
    #: decide; see ``reflow.server._tracing``), or a ``TracerProvider`` to use instead.
    otlp: str | None = None
    tracer_provider: Any = None


#: How the server's registry client behaves: no progress lines on stderr, few retries, and a
#: deadline, so a registry that is down or stalls costs a request seconds, not minutes.
_REGISTRY_OPTIONS: dict[str, Any] = {
    "notify": None,
    "retries": 1,
    "backoff": 0.1,
    "timeout": 10.0,
    "deadline": 30.0,
}
_REF_KEYS = {"name", "pack", "registry"}


def _pack_reference(body: Any) -> tuple[str, str | None, str]:
    """``(pack spec, registry URL or None, the body key that named the pack)`` from
    ``{"name": spec}`` or ``{"registry": URL, "pack": spec}``."""
    expected = 'expected {"registry": "http://host:port", "pack": "namespace/name@range"}'
    if not isinstance(body, dict):
        raise UnprocessableError(f"{expected}; got a JSON {type(body).__name__}", path="$")
    key = "pack" if "pack" in body or "registry" in body else "name"
    if "pack" not in body and "name" not in body:
        raise UnprocessableError(f"{expected}; no 'pack' in the request", path=f"$.{key}")
    unknown = sorted(set(body) - _REF_KEYS)
    if unknown:
        raise UnprocessableError(f"unknown key {unknown[0]!r}; {expected}", path="$")
    if "pack" in body and "name" in body:
        raise UnprocessableError("give the pack as 'pack' or 'name', not both", path="$.name")
    name = body.get(key)
    if not isinstance(name, str) or not name.strip():
        raise UnprocessableError(f"{expected}; {key!r} must name a pack", path=f"$.{key}")
    if "/" not in name or len(name) > 300:
        raise UnprocessableError(
            f"pack {name[:300]!r} is not a registry name: expected namespace/name[@range]",
            path=f"$.{key}",
        )
    registry = body.get("registry")
    if registry is not None and (not isinstance(registry, str) or not registry.strip()):
        raise UnprocessableError(f"{expected}; 'registry' must be a URL", path="$.registry")
    if isinstance(registry, str) and len(registry) > 2000:
        raise UnprocessableError("'registry' is over 2000 characters", path="$.registry")
    return name, registry, key


def _registry_error(exc: ReflowError, name: str, registry: str | None, key: str) -> RequestError:
    """The answer for a pack the registry could not give: the pack, the registry, the cause."""
    from reflow import (
        RegistryAuthError,
        RegistryNotFoundError,
        RegistryUnavailableError,
    )

    where = f"pack {name!r} from {registry}" if registry else f"pack {name!r}"
    text = f"{where}: {exc}"
    kind = type(exc).__name__
    if isinstance(exc, RegistryNotFoundError) or type(exc).__name__ == "PackNotFoundError":
        return NotFoundError(text, path=f"$.{key}", type_name=kind)
    if isinstance(exc, RegistryUnavailableError):
        return BadGatewayError(text, path="$.registry", type_name=kind)
    if isinstance(exc, RegistryAuthError):
        return BadGatewayError(text, path="$.registry", type_name=kind)
    if kind == "RegistrySpecError":
        path = "$.registry" if "registry URL" in str(exc) else f"$.{key}"
        return UnprocessableError(text, path=path, type_name=kind)
    return UnprocessableError(text, path=f"$.{key}", type_name=kind)


def _json_body(raw: bytes) -> Any:
    try:
        return bounded_loads(raw, what="request body")
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, JSONDepthError
        raise BadRequestError(f"the request body is not valid JSON: {exc}", path="$") from None


class _Handlers:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.limits = config.limits
        self.tracing = server_tracing(config.otlp, config.tracer_provider)
        self.executions = ExecutionRegistry(self.limits, self._load_named_pack, self.tracing)

    # ------------------------------------------------------------------ packs
    def _trust(self) -> Any:
        from reflow import TrustStore

        return TrustStore(self.config.trust)

    def _load_named_pack(self, name: str, registry: str | None = None) -> Any:
        """Fetch ``name`` (``namespace/pack@range``) from ``registry`` (default: the server's
        ``--registry``) through the registry client — verified, cached, bounded in time —
        and load it, verified again against the server's trust store."""
        from reflow import load_pack

        url = registry or self.config.registry
        if url is None:
            raise UnprocessableError(
                f"cannot resolve pack {name!r}: this server has no registry (--registry)"
            )
        options: dict[str, Any] = dict(_REGISTRY_OPTIONS)
        if self.config.registry_token and url == self.config.registry:
            options["token"] = self.config.registry_token
        if self.config.registry_cache:
            options["cache_dir"] = self.config.registry_cache
        trust = options["trust"] = self._trust()
        # The registry resolves the range every time (load_pack alone would answer a pack
        # of that name loaded already, whatever the range), and the client verifies the
        # download against this server's trust store before load_pack verifies it again.
        from reflow.registry._client import install_pack

        return load_pack(install_pack(name, url, **options).path, trust=trust)

    async def load_pack_route(self, request: Request) -> Response:
        from reflow import load_pack

        raw = await read_body(request, self.limits.max_pack_bytes, self.limits.body_timeout)
        ctype = request.headers.get("content-type", "").split(";")[0].strip()
        if ctype == "application/json":
            name, registry, key = _pack_reference(_json_body(raw))
            try:
                pack = await run_in_threadpool(self._load_named_pack, name, registry)
            except RequestError as exc:
                if exc.path is None:
                    exc.path = f"$.{key}"
                raise
            except ReflowError as exc:
                raise _registry_error(exc, name, registry or self.config.registry, key) from exc
        else:
            if not raw:
                raise UnprocessableError("the upload is empty; send a .rflpack", path="$")
            try:
                pack = await run_in_threadpool(lambda: load_pack(raw, trust=self._trust()))
            except ReflowError as exc:
                raise UnprocessableError(str(exc), path="$", type_name=type(exc).__name__) from exc
        return JSONResponse(
            {
                "name": pack.name,
                "version": pack.version,
                "signer": pack.signer,
                "templates": sorted(pack.templates),
            },
            status_code=201,
        )

    # ------------------------------------------------------------------ templates
    async def templates(self, request: Request) -> Response:
        ids = await run_in_threadpool(template_list)
        return JSONResponse({"templates": [{"id": t, "owner": template_owner(t)} for t in ids]})

    async def template(self, request: Request) -> Response:
        tid = request.path_params["id"]
        return JSONResponse(await run_in_threadpool(describe, tid))

    # ------------------------------------------------------------------ executions
    async def create(self, request: Request) -> Response:
        raw = await read_body(request, self.limits.max_body_bytes, self.limits.body_timeout)
        body = _json_body(raw)
        execution = await run_in_threadpool(self.executions.create, body)
        return JSONResponse(
            execution.to_json(),
            status_code=201,
            headers={"Location": f"/api/v1/executions/{execution.id}"},
        )

    async def list(self, request: Request) -> Response:
        q = request.query_params
        raw_limit = q.get("limit", "20")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 100:
            raise BadRequestError(
                f"limit must be an integer from 1 to 100, got {raw_limit!r}", path="$.query.limit"
            )
        items, cursor = self.executions.page(int(raw_limit), q.get("cursor"))
        return JSONResponse({"items": [e.to_json() for e in items], "next_cursor": cursor})

    async def get(self, request: Request) -> Response:
        return JSONResponse(self.executions.get(request.path_params["id"]).to_json())

    async def cancel(self, request: Request) -> Response:
        execution = self.executions.get(request.path_params["id"])
        execution.cancel("cancelled by a DELETE request")
        if execution.thread is not None:
            await run_in_threadpool(execution.thread.join, 10.0)
        return JSONResponse(execution.to_json())

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document())


def describe(tid: str) -> dict[str, Any]:
    """A template's ports, port types, config and doc: the library's own description for a
    built-in, the actor's declarations for the rest."""
    from reflow.library import describe_template

    actor = lookup_template(tid)
    if actor is None:
        raise NotFoundError(
            f"no template {tid!r} (GET /api/v1/templates lists them)", path="$.path.id"
        )
    try:
        out = dict(describe_template(tid))
    except KeyError:
        out = {
            "component": tid,
            "inports": list(actor.inports),
            "outports": list(actor.outports),
            "inport_types": {},
            "outport_types": {},
            "await_all_inports": bool(getattr(actor, "await_all_inports", False)),
            "config": {},
            "doc": (type(actor).__doc__ or "").strip(),
        }
    out["id"] = tid
    out["owner"] = template_owner(tid)
    return out


async def _request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kinds = {404: NotFoundError, 405: BadRequestError, 413: PayloadTooLargeError}
    cls = kinds.get(exc.status_code, BadRequestError)
    if cls is PayloadTooLargeError:
        return error_response(PayloadTooLargeError(str(exc.detail), limit=0))
    err = cls(f"{request.method} {request.url.path}: {exc.detail}")
    err.status = exc.status_code
    return error_response(err)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error answering %s %s", request.method, request.url.path)
    err = RequestError(f"internal error: {type(exc).__name__}", type_name="InternalError")
    err.status = 500
    return error_response(err)


def create_app(config: ServerConfig | None = None) -> Starlette:
    """The execution server as an ASGI app (``app.state.executions`` is its registry)."""
    config = config or ServerConfig()
    h = _Handlers(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await run_in_threadpool(h.executions.close)
            if h.tracing is not None:
                await run_in_threadpool(h.tracing.close)

    routes = [
        Route("/api/v1/executions", h.create, methods=["POST"]),
        Route("/api/v1/executions", h.list, methods=["GET"]),
        Route("/api/v1/executions/{id}", h.get, methods=["GET"]),
        Route("/api/v1/executions/{id}", h.cancel, methods=["DELETE"]),
        WebSocketRoute("/api/v1/executions/{id}/events", events_endpoint),
        Route("/api/v1/templates", h.templates, methods=["GET"]),
        Route("/api/v1/templates/{id:path}", h.template, methods=["GET"]),
        Route("/api/v1/packs", h.load_pack_route, methods=["POST"]),
        Route("/openapi.json", h.openapi, methods=["GET"]),
        Mount("/", StaticFiles(directory=STATIC, html=True), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(BearerAuth, token=config.token)],
        exception_handlers={
            RequestError: _request_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
        lifespan=lifespan,
    )
    app.state.executions = h.executions
    app.state.config = config
    app.state.tracing = h.tracing
    return app
