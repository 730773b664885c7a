"""The execution server's errors: each one an HTTP answer with a JSON body.

They join the one tree of :mod:`reflow._errors` under :class:`ServerError`::

    ReflowError
    └── ServerError              the execution server refused something
        ├── ServerConfigError    options the server cannot start with (.option)
        └── RequestError         one request refused; ``status`` and ``path`` say how and where
            ├── BadRequestError      400: a query or body the API does not accept
            ├── AuthError            401: no bearer token, or the wrong one
            ├── NotFoundError        404: no such execution or template
            ├── PayloadTooLargeError 413: a body past the server's byte limit (.limit)
            ├── UnprocessableError   422: a graph, pack or template reference that cannot run
            ├── ServerBusyError      429: the server runs (and queues) all it is allowed to
            └── BadGatewayError      502: a registry the request named could not be reached

The body of every error answer is ``{"error": {"type", "message", "path"}}``: ``type`` is the
class name of the error behind it (a graph's ``GraphFormatError`` keeps its own name),
``path`` a JSON path into the request (``$.graph.processes.x.component``) or ``null``.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from reflow import ReflowError

__all__ = [
    "AuthError",
    "BadGatewayError",
    "BadRequestError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RequestError",
    "ServerBusyError",
    "ServerConfigError",
    "ServerError",
    "UnprocessableError",
    "error_response",
]


class ServerError(ReflowError):
    """Anything the execution server refused."""


class ServerConfigError(ServerError):
    """The server cannot start with these options; ``option`` names the one at fault."""

    def __init__(self, message: str, *, option: str = "") -> None:
        super().__init__(message)
        self.option = option


class RequestError(ServerError):
    """One request refused. ``type_name`` defaults to the class name."""

    status = 400

    def __init__(self, message: str, *, path: str | None = None, type_name: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.type_name = type_name or type(self).__name__

    def body(self) -> dict[str, Any]:
        return {"error": {"type": self.type_name, "message": str(self), "path": self.path}}


class BadRequestError(RequestError):
    status = 400


class AuthError(RequestError):
    status = 401


class NotFoundError(RequestError):
    status = 404


class PayloadTooLargeError(RequestError):
    status = 413

    def __init__(self, message: str, *, limit: int, path: str | None = None) -> None:
        super().__init__(message, path=path)
        self.limit = limit


class UnprocessableError(RequestError):
    status = 422


class ServerBusyError(RequestError):
    status = 429


class BadGatewayError(RequestError):
    status = 502


def error_response(err: RequestError) -> JSONResponse:
    """The JSON answer for ``err``."""
    return JSONResponse(err.body(), status_code=err.status)
