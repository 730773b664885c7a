"""Where an operation table may send requests, and how it signs in.

Its servers (every URL a server's variables allow is checked: http or https, and its host one
the pack requested in its ``http`` capability or the user granted), its security schemes
(apiKey, http basic/bearer, oauth2 client credentials whose token URL is checked the same
way, openIdConnect) and the security requirements that name them.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from ._table_reader import HEADER_NAME, MAX_DESCRIPTION, MAX_URL, TEMPLATE_VAR, TableReader
from ._table_shared import _kind

__all__ = ["Server", "check_scheme", "check_security", "host_allowed", "read_servers"]

MAX_SERVER_COMBINATIONS = 256
_DNS_OR_IP = re.compile(r"[A-Za-z0-9._:\[\]-]{1,253}")


def host_allowed(url: httpx.URL, hosts: Iterable[str]) -> bool:
    """Whether ``url``'s host (or ``host:port``) is one of ``hosts`` (``"*"``: any)."""
    host = (url.host or "").lower()
    if not host:
        return False
    netloc = f"{host}:{url.port}" if url.port is not None else host
    for h in hosts:
        h = h.lower()
        if h in ("*", host, netloc):
            return True
    return False


@dataclass(frozen=True)
class Server:
    url: str
    variables: dict[str, dict[str, Any]]
    description: str = ""

    def expand(self, values: Mapping[str, Any] | None = None) -> str:
        """The URL with its variables filled in (``values`` override the defaults)."""
        values = values or {}

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            var = self.variables.get(name, {})
            return str(values.get(name, var.get("default", "")))

        return TEMPLATE_VAR.sub(sub, self.url)


def read_servers(
    r: TableReader, value: Any, where: str, allowed: tuple[str, ...]
) -> tuple[Server, ...]:
    if not isinstance(value, list):
        raise r.fail(where, f"expected an array of servers, got {_kind(value)}")
    out = []
    for i, raw in enumerate(value):
        w = f"{where}[{i}]"
        raw = r.obj(raw, w)
        url = r.get(raw, "url", str, w, max_len=MAX_URL)
        variables = r.get(raw, "variables", dict, w, {})
        for name, var in variables.items():
            vw = f"{w}.variables.{name}"
            var = r.obj(var, vw)
            r.get(var, "default", str, vw)
            if "enum" in var and var["enum"] is not None:
                r.strings(var["enum"], f"{vw}.enum")
        for name in TEMPLATE_VAR.findall(url):
            if name not in variables:
                raise r.fail(f"{w}.url", f"names variable {{{name}}} that 'variables' lacks")
        server = Server(url, variables, str(raw.get("description") or "")[:MAX_DESCRIPTION])
        _check_server_hosts(r, server, f"{w}.url", allowed)
        out.append(server)
    return tuple(out)


def _check_server_hosts(
    r: TableReader, server: Server, where: str, allowed: tuple[str, ...]
) -> None:
    names = list(server.variables)
    choices = [
        list(server.variables[n].get("enum") or [server.variables[n]["default"]]) for n in names
    ]
    count = 1
    for c in choices:
        count *= max(1, len(c))
        if count > MAX_SERVER_COMBINATIONS:
            raise r.fail(where, f"server variables allow more than {MAX_SERVER_COMBINATIONS} URLs")
    for combo in itertools.product(*choices):
        url = server.expand(dict(zip(names, combo, strict=True)))
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            raise r.fail(where, f"{url[:120]!r} is not a URL: {exc}") from None
        if not parsed.is_absolute_url:
            if url.startswith("/") or not url:
                continue  # relative: only usable with a granted base_url
            raise r.fail(where, f"{url[:120]!r} is neither absolute nor a path")
        if parsed.scheme not in ("http", "https"):
            raise r.fail(where, f"{url[:120]!r}: the scheme must be http or https")
        if not _DNS_OR_IP.fullmatch(parsed.host or ""):
            continue  # a placeholder ({your-agent-url}): usable only through a granted base_url
        if not host_allowed(parsed, allowed):
            raise r.fail(
                where,
                f"host {parsed.host!r} of {url[:120]!r} is not in the pack's http capability "
                f"({', '.join(allowed) or 'none requested'})",
            )


def check_scheme(r: TableReader, value: Any, where: str, allowed: tuple[str, ...]) -> None:
    scheme = r.obj(value, where)
    kind = r.get(scheme, "type", str, where)
    if kind == "apiKey":
        loc = r.get(scheme, "in", str, where)
        if loc not in ("header", "query", "cookie"):
            raise r.fail(f"{where}.in", f"{loc[:40]!r} is not header, query or cookie")
        name = r.get(scheme, "name", str, where, max_len=200)
        if loc == "header" and not HEADER_NAME.fullmatch(name):
            raise r.fail(f"{where}.name", f"{name[:60]!r} is not a header name")
    elif kind == "http":
        sch = r.get(scheme, "scheme", str, where).lower()
        if sch not in ("basic", "bearer"):
            raise r.fail(f"{where}.scheme", f"{sch[:40]!r} is not basic or bearer")
    elif kind == "oauth2":
        flows = r.get(scheme, "flows", dict, where)
        cc = flows.get("clientCredentials")
        if cc is not None:
            cw = f"{where}.flows.clientCredentials"
            cc = r.obj(cc, cw)
            token_url = r.get(cc, "tokenUrl", str, cw, max_len=MAX_URL)
            try:
                parsed = httpx.URL(token_url)
            except (httpx.InvalidURL, ValueError) as exc:
                raise r.fail(f"{cw}.tokenUrl", f"is not a URL: {exc}") from None
            if parsed.is_absolute_url and not host_allowed(parsed, allowed):
                raise r.fail(
                    f"{cw}.tokenUrl",
                    f"host {parsed.host!r} is not in the pack's http capability "
                    f"({', '.join(allowed) or 'none requested'})",
                )
    elif kind != "openIdConnect":
        raise r.fail(f"{where}.type", f"{kind[:40]!r} is not apiKey, http, oauth2 or openIdConnect")


def check_security(r: TableReader, value: Any, where: str, schemes: Mapping[str, Any]) -> Any:
    if not isinstance(value, list):
        raise r.fail(where, f"expected an array of requirements, got {_kind(value)}")
    for i, req in enumerate(value):
        req = r.obj(req, f"{where}[{i}]")
        for name, scopes in req.items():
            if name not in schemes:
                raise r.fail(f"{where}[{i}]", f"names scheme {name[:60]!r} that is not defined")
            r.strings(scopes, f"{where}[{i}].{name}")
    return value
