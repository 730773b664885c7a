"""Credentials for API-service packs: where they come from and where they are put.

A table never says where a secret comes from (abi/HTTP_API.md, "Credentials"): for each scheme
the engine asks ``reflow_secret`` plugins, then the environment variable
``REFLOW_SECRET_<PACK>_<SCHEME>`` — both derived from the pack's name and the scheme's name, so
a pack cannot name a variable of its own choosing.

The secret is put on the request **inside the transport** (:class:`CredentialTransport`), on a
copy that only the connection sees: the request object that httpx logs, that a response points
back to and that an error message could name stays free of it. :class:`Credential` holds a
secret behind a ``repr`` that hides it. OAuth2 client-credentials tokens are fetched from the
table's ``tokenUrl``, cached per pack and scheme until they expire, and fetched again after a
401.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from .._errors import HttpApiError
from ._table import ApiTable, Operation

__all__ = [
    "AUTH_EXTENSION",
    "AuthPlan",
    "Credential",
    "CredentialTransport",
    "TokenCache",
    "env_name",
    "lookup_secret",
    "plan_auth",
    "set_secret_hook",
]

AUTH_EXTENSION = "reflow.auth"


def env_name(pack: str, scheme: str) -> str:
    """``REFLOW_SECRET_<PACK>_<SCHEME>``: upper case, every run of other characters -> ``_``."""
    part = lambda s: re.sub(r"[^A-Z0-9]+", "_", s.upper()).strip("_")  # noqa: E731
    return f"REFLOW_SECRET_{part(pack)}_{part(scheme)}"


#: Asks the ``reflow_secret`` plugins (set by the engine plugin, which holds the plugin
#: manager: this package never imports the loader above it).
SecretHook = Callable[[str, str], "str | None"]
_hook: list[SecretHook] = []


def set_secret_hook(hook: SecretHook | None) -> None:
    _hook[:] = [hook] if hook is not None else []


def lookup_secret(pack: str, scheme: str) -> str | None:
    """The secret for ``scheme`` of ``pack``: plugins first, then the environment."""
    for hook in _hook:
        value = hook(pack, scheme)
        if isinstance(value, str) and value:
            return value
    value = os.environ.get(env_name(pack, scheme))
    return value or None


class Credential:
    """A secret; its ``repr`` and ``str`` never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<Credential hidden>"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("a Credential cannot be pickled")


@dataclass
class _Token:
    value: Credential
    expires: float


@dataclass
class TokenCache:
    """OAuth2 access tokens by (pack, scheme); one fetch at a time per key."""

    tokens: dict[tuple[str, str], _Token] = field(default_factory=dict)
    locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)

    def forget(self, pack: str, scheme: str) -> None:
        self.tokens.pop((pack, scheme), None)


@dataclass
class AuthPlan:
    """What to add to one request: ``(scheme dict, credential)`` pairs. Its repr hides them."""

    parts: list[tuple[str, dict[str, Any], Credential]] = field(default_factory=list)
    oauth: list[str] = field(default_factory=list)  # scheme names using OAuth2 tokens

    def __repr__(self) -> str:
        return f"<AuthPlan schemes={[name for name, _, _ in self.parts]}>"


def _fail(op: Operation, message: str) -> HttpApiError:
    return HttpApiError(f"{op.template_id}: {message}", operation=op.template_id, key="_auth")


async def plan_auth(
    table: ApiTable,
    op: Operation,
    security: list[dict[str, list[str]]],
    client: httpx.AsyncClient,
    tokens: TokenCache,
    base: str = "",
) -> AuthPlan:
    """The first security alternative whose every secret is available; no requirement (or
    an empty alternative) needs none. None available: HttpApiError naming what to set."""
    if not security:
        return AuthPlan()
    wanted: list[str] = []
    for alternative in security:
        if not alternative:
            return AuthPlan()
        plan = AuthPlan()
        for name in alternative:
            scheme = table.security_schemes.get(name, {})
            secret = lookup_secret(table.pack, name)
            if secret is None:
                wanted.append(name)
                break
            if scheme.get("type") == "oauth2":
                cred = await _token(table, op, name, scheme, secret, client, tokens, base)
                plan.parts.append((name, {"type": "http", "scheme": "bearer"}, cred))
                plan.oauth.append(name)
            else:
                cred = Credential(secret)
                plan.parts.append((name, scheme, cred))
            for where, carrier, sname in op.credentials:
                if sname == name:
                    plan.parts.append(
                        (name, {"type": "carrier", "in": where, "name": carrier}, cred)
                    )
        else:
            return plan
    names = ", ".join(f"{n} ({env_name(table.pack, n)})" for n in dict.fromkeys(wanted))
    raise _fail(
        op,
        f"no credential for security scheme {names}: set the environment variable or give it "
        "through a reflow_secret plugin",
    )


def token_url(table: ApiTable, op: Operation, url: str, base: str) -> str:
    """Where to fetch the token for a request to ``base``. A relative tokenUrl (PayPal's
    ``/v1/oauth2/token``) is on the request's own server: the table's, or the base URL the
    user granted. An absolute one on a host of the spec's own servers (Discord's
    ``https://discord.com/api/oauth2/token``) follows the request to a granted base URL
    (a proxy, a self-hosted install, a local spec server): same path, the base's origin."""
    if not base:
        return url
    try:
        target, here = httpx.URL(url), httpx.URL(base)
    except (httpx.InvalidURL, ValueError, TypeError):
        return url
    if not target.is_absolute_url:
        return str(here.join(url))
    spec_hosts = set()
    for server in (*table.servers, *(op.servers or ())):
        with contextlib.suppress(httpx.InvalidURL, ValueError, TypeError):
            spec_hosts.add(httpx.URL(server.expand()).host)
    if target.host in spec_hosts and here.host not in spec_hosts:
        return str(target.copy_with(scheme=here.scheme, host=here.host, port=here.port))
    return url


async def _token(
    table: ApiTable,
    op: Operation,
    name: str,
    scheme: Mapping[str, Any],
    secret: str,
    client: httpx.AsyncClient,
    tokens: TokenCache,
    base: str = "",
) -> Credential:
    flows = scheme.get("flows") or {}
    cc = flows.get("clientCredentials")
    if not isinstance(cc, dict):
        # Other flows need a user in the loop: the secret given is the access token itself.
        return Credential(secret)
    key = (table.pack, name)
    lock = tokens.locks.setdefault(key, asyncio.Lock())
    async with lock:
        have = tokens.tokens.get(key)
        if have is not None and have.expires > time.monotonic():
            return have.value
        client_id, sep, client_secret = secret.partition(":")
        if not sep:
            raise _fail(
                op, f"the secret for OAuth2 scheme {name!r} must be 'client_id:client_secret'"
            )
        url = token_url(table, op, str(cc["tokenUrl"]), base)
        basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        data = {"grant_type": "client_credentials"}
        scopes = sorted(cc.get("scopes") or {})
        if scopes:
            data["scope"] = " ".join(scopes)
        try:
            request = client.build_request("POST", url, data=data)
            request.extensions[AUTH_EXTENSION] = AuthPlan(
                [(name, {"type": "http", "scheme": "basic-raw"}, Credential(basic))]
            )
            resp = await client.send(request)
        except httpx.HTTPError as exc:
            # ``from None``: the exception holds the credentialed request.
            raise _fail(
                op, f"fetching an OAuth2 token for {name!r} failed: {type(exc).__name__}"
            ) from None
        if resp.status_code != 200:
            raise HttpApiError(
                f"{op.template_id}: the token endpoint for {name!r} answered {resp.status_code}",
                operation=op.template_id,
                key="_auth",
                status=resp.status_code,
            )
        try:
            doc = resp.json()
            access = doc["access_token"]
            expires_in = float(doc.get("expires_in") or 3600)
        except (ValueError, KeyError, TypeError):
            raise _fail(op, f"the token endpoint for {name!r} gave no access_token") from None
        if not isinstance(access, str) or not access:
            raise _fail(op, f"the token endpoint for {name!r} gave no access_token")
        token = _Token(Credential(access), time.monotonic() + max(0.0, expires_in - 5))
        tokens.tokens[key] = token
        return token.value


def apply_plan(request: httpx.Request, plan: AuthPlan) -> httpx.Request:
    """A copy of ``request`` with the plan's credentials; the original is left as it was."""
    url = request.url
    headers = request.headers.copy()
    cookies: list[str] = []
    content: bytes | None = None
    for _name, scheme, cred in plan.parts:
        secret = cred.reveal()
        kind = scheme.get("type")
        if kind == "carrier" and scheme.get("in") == "body":
            if content is None:
                content = request.content
            content = _add_form_field(headers, content, str(scheme["name"]), secret)
            continue
        if kind == "carrier":
            kind, scheme = "apiKey", {**scheme, "type": "apiKey"}
        if kind == "apiKey":
            where = scheme.get("in")
            if where == "header":
                headers[str(scheme["name"])] = secret
            elif where == "query":
                url = url.copy_add_param(str(scheme["name"]), secret)
            else:
                cookies.append(f"{scheme['name']}={secret}")
        elif kind == "http":
            sch = str(scheme.get("scheme", "")).lower()
            if sch == "basic":
                raw = secret.encode()
                headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
            elif sch == "basic-raw":
                headers["Authorization"] = "Basic " + secret
            else:
                headers["Authorization"] = "Bearer " + secret
    if cookies:
        prior = headers.get("Cookie")
        headers["Cookie"] = "; ".join([*([prior] if prior else []), *cookies])
    if content is not None:
        headers["Content-Length"] = str(len(content))
        return httpx.Request(
            request.method, url, headers=headers, content=content, extensions=request.extensions
        )
    return httpx.Request(
        request.method, url, headers=headers, stream=request.stream, extensions=request.extensions
    )


def _add_form_field(headers: httpx.Headers, content: bytes, name: str, secret: str) -> bytes:
    """``content`` with one more form field (urlencoded or multipart; a request without a
    form body gets a urlencoded one)."""
    ctype = headers.get("content-type", "")
    base = ctype.split(";")[0].strip().lower()
    if base == "multipart/form-data" and "boundary=" in ctype:
        boundary = ctype.split("boundary=", 1)[1].split(";")[0].strip().strip('"').encode()
        end = b"--" + boundary + b"--"
        part = (
            b"--"
            + boundary
            + b'\r\nContent-Disposition: form-data; name="'
            + name.replace('"', "%22").encode()
            + b'"\r\n\r\n'
            + secret.encode()
            + b"\r\n"
        )
        at = content.rfind(end)
        return content[:at] + part + content[at:] if at >= 0 else content
    pair = f"{quote(name, safe='-._~')}={quote(secret, safe='-._~')}".encode()
    if base != "application/x-www-form-urlencoded":
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return pair
    return content + b"&" + pair if content else pair


class CredentialTransport(httpx.AsyncBaseTransport):
    """Puts a request's :class:`AuthPlan` (its ``reflow.auth`` extension) on a copy of it,
    just before the connection sends it."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        plan = request.extensions.get(AUTH_EXTENSION)
        if isinstance(plan, AuthPlan) and plan.parts:
            request = apply_plan(request, plan)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()
