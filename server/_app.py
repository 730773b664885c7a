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
    #: OpenTelemetry: an OTLP/HTTP endpoint traces go to (``None``: the ``OTEL_*`` variables
    #: decide; see ``reflow.server._tracing``), or a ``TracerProvider`` to use instead.
    otlp: str | None = None
    tracer_provider: Any = None


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

    def _load_named_pack(self, name: str) -> Any:
        from reflow import load_pack

        if self.config.registry is None:
            raise UnprocessableError(
                f"cannot resolve pack {name!r}: this server has no registry (--registry)"
            )
        options = {"token": self.config.registry_token} if self.config.registry_token else {}
        return load_pack(
            name, trust=self._trust(), registry=self.config.registry, registry_options=options
        )

    async def load_pack_route(self, request: Request) -> Response:
        from reflow import load_pack

        raw = await read_body(request, self.limits.max_pack_bytes, self.limits.body_timeout)
        ctype = request.headers.get("content-type", "").split(";")[0].strip()
        try:
            if ctype == "application/json":
                body = _json_body(raw)
                if not isinstance(body, dict) or not isinstance(body.get("name"), str):
                    raise UnprocessableError(
                        'expected {"name": "namespace/pack@range"}', path="$.name"
                    )
                pack = await run_in_threadpool(self._load_named_pack, body["name"])
            else:
                if not raw:
                    raise UnprocessableError("the upload is empty; send a .rflpack", path="$")
                pack = await run_in_threadpool(lambda: load_pack(raw, trust=self._trust()))
        except RequestError as exc:
            if exc.path is None:
                exc.path = "$.name"
            raise
        except ReflowError as exc:
            raise UnprocessableError(
                str(exc),
                path="$" if ctype != "application/json" else "$.name",
                type_name=type(exc).__name__,
            ) from exc
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
    return app
