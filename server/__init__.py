"""The execution server: graphs as executions over REST, their events over WebSocket and a
live view in the browser. Run it with ``reflow-server``; embed it with :func:`create_app`."""

from __future__ import annotations

from ._app import ServerConfig, create_app
from ._errors import (
    AuthError,
    BadGatewayError,
    BadRequestError,
    NotFoundError,
    PayloadTooLargeError,
    RequestError,
    ServerBusyError,
    ServerConfigError,
    ServerError,
    UnprocessableError,
)
from ._limits import ServerLimits
from ._openapi import openapi_document

__all__ = [
    "AuthError",
    "BadGatewayError",
    "BadRequestError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RequestError",
    "ServerBusyError",
    "ServerConfig",
    "ServerConfigError",
    "ServerError",
    "ServerLimits",
    "UnprocessableError",
    "create_app",
    "openapi_document",
]
