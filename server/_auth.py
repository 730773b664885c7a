"""Bearer-token auth for the execution server, and where its token comes from.

Every ``/api/`` route needs ``Authorization: Bearer <token>``; a browser's WebSocket cannot
set headers, so the events socket also takes ``?access_token=``. The page at ``/``, its static
files and ``/openapi.json`` hold no data and are open. Tokens are compared in constant time.
Auth can be switched off only for a server bound to a loopback address.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from ._errors import AuthError, ServerConfigError, error_response

__all__ = ["TOKEN_ENV", "BearerAuth", "check_bind", "is_loopback", "resolve_token"]

#: The environment variable a token may come from.
TOKEN_ENV = "REFLOW_SERVER_TOKEN"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only accepts connections from this
    machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, no_auth: bool) -> None:
    """Refuse ``--no-auth`` on an address other machines can reach."""
    if no_auth and not is_loopback(host):
        raise ServerConfigError(
            f"--no-auth is allowed only on a loopback address (127.0.0.1, ::1, localhost), "
            f"not {host!r}: give a token with --token, --token-file or ${TOKEN_ENV}",
            option="--no-auth",
        )


def resolve_token(token: str | None, token_file: str | None) -> tuple[str, bool]:
    """The server's token: ``--token``, else the first line of ``--token-file``, else
    ``$REFLOW_SERVER_TOKEN``, else a new random one. Returns it and whether it was made here
    (then the caller shows it to the user)."""
    if token is not None and token_file is not None:
        raise ServerConfigError("give --token or --token-file, not both", option="--token")
    if token_file is not None:
        try:
            text = Path(token_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ServerConfigError(
                f"cannot read the token file {token_file}: {exc}", option="--token-file"
            ) from exc
        token = text.strip().splitlines()[0].strip() if text.strip() else ""
        if not token:
            raise ServerConfigError(f"token file {token_file} is empty", option="--token-file")
    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
    if token is None:
        return secrets.token_urlsafe(24), True
    if len(token) < 16 or not token.isprintable() or " " in token:
        raise ServerConfigError(
            "the server token must be at least 16 printable characters without spaces",
            option="--token",
        )
    return token, False


class BearerAuth:
    """ASGI middleware: ``/api/`` requests and sockets without the token are answered 401
    (an HTTP request) or closed with code 4401 before they are accepted (a socket)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self._token = token.encode() if token is not None else None

    def _allowed(self, scope: Scope) -> bool:
        if self._token is None or not scope["path"].startswith("/api/"):
            return True
        given = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, rest = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    given = rest.strip()
                break
        if not given and scope["type"] == "websocket":
            from urllib.parse import parse_qs

            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = (query.get("access_token") or [""])[0].encode("latin-1")
        return hmac.compare_digest(given, self._token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4401, "reason": "bad token"})
            return
        err = AuthError(
            "missing or wrong bearer token (send 'Authorization: Bearer <token>')",
            path="$.headers.authorization",
        )
        response = error_response(err)
        response.headers["WWW-Authenticate"] = "Bearer"
        await response(scope, receive, send)
