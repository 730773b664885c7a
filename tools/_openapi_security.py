"""Servers and security of a loaded description, normalized for the operation table
(abi/HTTP_API.md): server URLs and variables (Swagger 2.0 ``schemes`` + ``host`` +
``basePath``), the hosts they can name, security schemes (Swagger 2.0 flows renamed to
OpenAPI 3's), requirements, ``--auth`` for a description that declares none, and the
credential carriers taken out of an operation's keys. Used by :mod:`._openapi_table`.
"""

from __future__ import annotations

import re
from itertools import product
from typing import Any
from urllib.parse import urlsplit

from .._errors import OpenApiError
from .._jsonread import segment
from ._openapi_load import SpecTree
from ._openapi_schema import clip

__all__ = [
    "MAX_SERVER_COMBOS",
    "TOKEN_CARRIERS",
    "ServersAndSecurity",
    "credential_carriers",
    "one_line",
    "parse_auth",
    "server_hosts",
]

_V2_FLOWS = {
    "implicit": "implicit",
    "password": "password",
    "application": "clientCredentials",
    "accessCode": "authorizationCode",
}
_V3_FLOWS = ("implicit", "password", "clientCredentials", "authorizationCode")
MAX_SERVER_COMBOS = 64
_HOST = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


def one_line(text: str, limit: int = 160) -> str:
    return clip(" ".join(text.split()), limit)


def parse_auth(text: str) -> tuple[str, dict[str, Any]]:
    """``--auth`` value -> (scheme name, Scheme): ``bearer``, ``basic``,
    ``apikey:<header|query|cookie>:<name>``."""
    kind, _, rest = text.partition(":")
    kind = kind.lower()
    if kind in ("bearer", "basic") and not rest:
        return kind, {"type": "http", "scheme": kind}
    if kind == "apikey":
        where, _, name = rest.partition(":")
        if where in ("header", "query", "cookie") and name and len(name) <= 256:
            return "apikey", {"type": "apiKey", "in": where, "name": name}
    raise OpenApiError(
        f"--auth {text[:80]!r}: expected 'bearer', 'basic' or 'apikey:<header|query|cookie>:<name>'"
    )


class ServersAndSecurity:
    """The server and security half of the table builder (a mixin of its ``_Builder``)."""

    spec: SpecTree
    root: dict[str, Any]
    base: str
    v2: bool

    def note(self, line: str) -> None:  # pragma: no cover - the builder's own
        raise NotImplementedError

    def fail(self, what: str, where: str, base: str | None = None) -> OpenApiError:
        raise NotImplementedError  # pragma: no cover - the builder's own

    def mapping(self, value: Any, where: str, base: str | None = None) -> dict[str, Any]:
        raise NotImplementedError  # pragma: no cover - the builder's own

    # -- servers and security -------------------------------------------------------------

    def servers(self, value: Any, where: str) -> list[dict[str, Any]]:
        out = []
        for i, s in enumerate(value if isinstance(value, list) else []):
            if not (isinstance(s, dict) and isinstance(s.get("url"), str)):
                self.note(f"{where}[{i}]: a server needs a url; dropped")
                continue
            server: dict[str, Any] = {"url": s["url"]}
            variables = {}
            for vname, v in (s.get("variables") or {}).items():
                if not isinstance(v, dict) or "default" not in v:
                    self.note(f"{where}[{i}].variables.{vname}: no default; dropped")
                    continue
                var: dict[str, Any] = {"default": str(v["default"])}
                if isinstance(v.get("enum"), list) and v["enum"]:
                    var["enum"] = [str(e) for e in v["enum"]]
                if isinstance(v.get("description"), str):
                    var["description"] = one_line(v["description"], 400)
                variables[str(vname)] = var
            if variables:
                server["variables"] = variables
            if isinstance(s.get("description"), str):
                server["description"] = one_line(s["description"], 400)
            problem = _unusable_server(server)
            if problem is not None:
                self.note(f"{where}[{i}]: {problem}; dropped")
                continue
            out.append(server)
        return out

    def v2_servers(self) -> list[dict[str, Any]]:
        host, base = self.root.get("host"), self.root.get("basePath", "")
        base = base if isinstance(base, str) else ""
        if not isinstance(host, str) or not host:
            return [{"url": base}] if base and base != "/" else []
        schemes = [s for s in self.root.get("schemes") or [] if s in ("https", "http")]
        scheme = "https" if "https" in schemes or not schemes else schemes[0]
        return [{"url": f"{scheme}://{host}{base.rstrip('/')}"}]

    def scheme(self, raw: Any, where: str) -> dict[str, Any] | None:
        if not isinstance(raw, dict):
            return None
        t = raw.get("type")
        if t == "apiKey" and raw.get("in") in ("header", "query", "cookie"):
            if isinstance(raw.get("name"), str):
                return {"type": "apiKey", "in": raw["in"], "name": raw["name"]}
        elif t == "basic" and self.v2:
            return {"type": "http", "scheme": "basic"}
        elif t == "http" and isinstance(raw.get("scheme"), str):
            return {"type": "http", "scheme": raw["scheme"].lower()}
        elif t == "oauth2":
            flows: dict[str, Any] = {}
            if self.v2:
                name = _V2_FLOWS.get(raw.get("flow", ""))
                if name:
                    flows[name] = self.flow(raw)
            else:
                for name, flow in self.mapping(raw.get("flows"), f"{where}.flows").items():
                    if name in _V3_FLOWS and isinstance(flow, dict):
                        flows[name] = self.flow(flow)
            if flows:
                return {"type": "oauth2", "flows": flows}
        elif t == "openIdConnect" and isinstance(raw.get("openIdConnectUrl"), str):
            return {"type": "openIdConnect", "url": raw["openIdConnectUrl"]}
        self.note(f"{where}: security scheme of type {str(t)[:40]!r} not supported; dropped")
        return None

    @staticmethod
    def flow(raw: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            k: raw[k]
            for k in ("authorizationUrl", "tokenUrl", "refreshUrl")
            if isinstance(raw.get(k), str)
        }
        scopes = raw.get("scopes")
        out["scopes"] = (
            {str(k): one_line(str(v), 200) for k, v in scopes.items()}
            if isinstance(scopes, dict)
            else {}
        )
        return out

    def security_schemes(self) -> dict[str, Any]:
        if self.v2:
            raw, where = self.root.get("securityDefinitions"), "$.securityDefinitions"
        else:
            comps = self.mapping(self.root.get("components"), "$.components")
            raw, where = comps.get("securitySchemes"), "$.components.securitySchemes"
        out = {}
        for name, value in self.mapping(raw, where).items():
            value, _ = self.spec.deref(value, self.base, f"{where}{segment(name)}")
            s = self.scheme(value, f"{where}{segment(name)}")
            if s is not None:
                out[str(name)] = s
        return out

    def requirements(self, value: Any, where: str) -> list[dict[str, list[str]]] | None:
        if value is None:
            return None
        if not isinstance(value, list):
            raise self.fail("security must be a list of requirements", where)
        out = []
        for i, req in enumerate(value):
            if not isinstance(req, dict):
                raise self.fail("a security requirement must be a mapping", f"{where}[{i}]")
            out.append(
                {str(k): [str(s) for s in v] if isinstance(v, list) else [] for k, v in req.items()}
            )
        return out


#: Names that carry a bearer-type credential (OAuth2, OpenID Connect, HTTP bearer) when a
#: parameter or form field is called so: RFC 6750's ``access_token`` and the short ``token``.
TOKEN_CARRIERS = frozenset({"token", "access_token"})
_BEARER_LIKE = ("oauth2", "openIdConnect")


def _carrier_scheme(name: str, where: str, names: list[str], schemes: dict[str, Any]) -> str | None:
    low = name.lower()
    for sname in names:
        scheme = schemes.get(sname) or {}
        kind = scheme.get("type")
        if kind == "apiKey":
            if str(scheme.get("name", "")).lower() == low and scheme.get("in") == where:
                return sname
        elif low in TOKEN_CARRIERS and (
            kind in _BEARER_LIKE
            or (kind == "http" and str(scheme.get("scheme", "")).lower() == "bearer")
        ):
            return sname
    return None


def credential_carriers(
    entry: dict[str, Any], schemes: dict[str, Any], default: list[dict[str, list[str]]]
) -> None:
    """Take credential-carrying parameters and form fields out of the graph's keys
    (abi/HTTP_API.md, "Credential carriers"): the host fills them from the secret."""
    security = default if entry["security"] is None else entry["security"]
    names = list(dict.fromkeys(n for req in security for n in req))
    if not names:
        return
    carriers: list[dict[str, str]] = []
    kept = []
    for p in entry["parameters"]:
        sname = _carrier_scheme(p["name"], p["in"], names, schemes)
        if sname is None or p["in"] == "path":
            kept.append(p)
        else:
            carriers.append({"in": p["in"], "name": p["name"], "scheme": sname})
    entry["parameters"] = kept
    body = entry.get("body")
    if body:
        media = next(iter(body["content"]))
        base = media.split(";")[0].strip().lower()
        if base in ("application/x-www-form-urlencoded", "multipart/form-data"):
            schema = body["content"][media].get("schema")
            props = schema.get("properties") if isinstance(schema, dict) else None
            for prop in list(props or {}):
                sname = _carrier_scheme(prop, "body", names, schemes)
                if sname is None:
                    continue
                carriers.append({"in": "body", "name": prop, "scheme": sname})
                assert isinstance(schema, dict)
                schema["properties"] = {k: v for k, v in schema["properties"].items() if k != prop}
                if isinstance(schema.get("required"), list):
                    schema["required"] = [r for r in schema["required"] if r != prop]
                body["fields"] = [f for f in body.get("fields", []) if f["property"] != prop]
    if carriers:
        entry["credentials"] = carriers


def _unusable_server(server: dict[str, Any]) -> str | None:
    """Why the engine would refuse ``server`` (checked by the engine's own reader, so the
    two never disagree), or None."""
    from .._errors import PackFormatError
    from .._services._table_reader import TableReader
    from .._services._table_servers import read_servers

    try:
        read_servers(TableReader("generator"), [server], "server", ("*",))
    except PackFormatError as exc:
        return str(exc).split(": ", 3)[-1]
    return None


def server_hosts(server: dict[str, Any]) -> list[str]:
    """Every host ``server``'s URL can name: each variable's enum values (or its default),
    all combinations up to :data:`MAX_SERVER_COMBOS`, else the defaults only."""
    variables = server.get("variables") or {}
    names = list(variables)
    choices = [variables[n].get("enum") or [variables[n]["default"]] for n in names]
    combos = 1
    for c in choices:
        combos *= len(c)
    if combos > MAX_SERVER_COMBOS:
        choices = [[variables[n]["default"]] for n in names]
    hosts = set()
    for values in product(*choices):
        url = server["url"]
        for n, v in zip(names, values, strict=True):
            url = url.replace("{" + n + "}", v)
        try:
            parts = urlsplit(url if "://" in url else "")
            host = parts.hostname
            port = parts.port
        except ValueError:
            continue
        if host and len(host) <= 253 and _HOST.fullmatch(host):
            hosts.add(f"{host}:{port}" if port else host)
    return sorted(hosts)
