"""Turning one tick's keys into the bytes of one HTTP request, checked before it is sent.

:func:`prepare` merges config ← remembered ← this tick's packets, refuses unknown keys,
validates every key against the operation's schemas (:mod:`._validate`), picks the base URL
(the operation's or the service's first server, or a ``_http.base_url`` the user granted) and
serializes parameters per OpenAPI 3 ``style``/``explode`` and the body per media type. The
result carries no credential: :mod:`._auth` adds those in the transport, after every place a
URL or a header could have been logged.

Wire forms (``{"R": 1, "G": 2}`` / ``[3, 4]`` for a parameter ``c``):

=============  =========  ======================  ======================
style          explode    array                   object
=============  =========  ======================  ======================
simple         false      ``3,4``                 ``R,1,G,2``
simple         true       ``3,4``                 ``R=1,G=2``
label          false      ``.3,4``                ``.R,1,G,2``
label          true       ``.3.4``                ``.R=1.G=2``
matrix         false      ``;c=3,4``              ``;c=R,1,G,2``
matrix         true       ``;c=3;c=4``            ``;R=1;G=2``
form           false      ``c=3,4``               ``c=R,1,G,2``
form           true       ``c=3&c=4``             ``R=1&G=2``
spaceDelim.    false      ``c=3%204``             ``c=R%201%20G%202``
pipeDelim.     false      ``c=3|4``               ``c=R|1|G|2``
deepObject     true       ``c[0]=3&c[1]=4``       ``c[R]=1&c[G]=2`` (nested: ``c[a][b]=``)
=============  =========  ======================  ======================
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from .._errors import HttpApiError
from ._table import ApiTable, Operation, Parameter, host_allowed
from ._validate import validate_keys

__all__ = [
    "HTTP_SETTINGS",
    "PreparedRequest",
    "choose_base_url",
    "encode_form",
    "encode_multipart",
    "merge_keys",
    "prepare",
    "serialize_cookie",
    "serialize_header",
    "serialize_path",
    "serialize_query",
]

#: The keys of ``_http`` (abi/HTTP_API.md).
HTTP_SETTINGS = frozenset(
    {"base_url", "timeout_s", "retries", "paginate", "max_pages", "server_variables"}
)
_UNRESERVED = "-._~"
_RESERVED = ":/?#[]@!$&'()*+,;="


@dataclass
class PreparedRequest:
    """One request, ready for httpx; never holds a credential."""

    method: str
    url: str
    query: list[tuple[str, str]] = field(default_factory=list)  # already encoded
    headers: dict[str, str] = field(default_factory=dict)
    cookies: list[tuple[str, str]] = field(default_factory=list)
    content: bytes | None = None
    security: list[dict[str, list[str]]] = field(default_factory=list)

    def full_url(self) -> str:
        if not self.query:
            return self.url
        qs = "&".join(f"{k}={v}" if v is not None else k for k, v in self.query)
        return f"{self.url}?{qs}"


def _fail(op: Operation, message: str, key: str = "") -> HttpApiError:
    return HttpApiError(f"{op.template_id}: {message}", operation=op.template_id, key=key)


def _enc(value: str, reserved: bool = False) -> str:
    return quote(value, safe=_UNRESERVED + (_RESERVED if reserved else ""))


def _prim(value: Any) -> str:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def _pairs(value: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(str(k), _prim(v)) for k, v in value.items()]


def serialize_path(p: Parameter, value: Any) -> str:
    """The text that replaces ``{name}`` in the path (percent-encoded)."""
    e = _enc
    name = e(p.name)
    if isinstance(value, list):
        items = [e(_prim(v)) for v in value]
        if p.style == "label":
            return "." + ("." if p.explode else ",").join(items)
        if p.style == "matrix":
            if p.explode:
                return "".join(f";{name}={i}" for i in items)
            return f";{name}=" + ",".join(items)
        return ",".join(items)
    if isinstance(value, dict):
        pairs = [(e(k), e(v)) for k, v in _pairs(value)]
        if p.explode:
            joined = [f"{k}={v}" for k, v in pairs]
            if p.style == "label":
                return "." + ".".join(joined)
            if p.style == "matrix":
                return "".join(f";{j}" for j in joined)
            return ",".join(joined)
        flat = ",".join(f"{k},{v}" for k, v in pairs)
        if p.style == "label":
            return "." + flat
        if p.style == "matrix":
            return f";{name}={flat}"
        return flat
    text = e(_prim(value))
    if p.style == "label":
        return "." + text
    if p.style == "matrix":
        return f";{name}={text}"
    return text


def _deep(prefix: str, value: Any, out: list[tuple[str, str]], reserved: bool) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _deep(f"{prefix}[{k}]", v, out, reserved)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _deep(f"{prefix}[{i}]", v, out, reserved)
    else:
        out.append(
            (
                _enc(prefix, True).replace("%5B", "[").replace("%5D", "]"),
                _enc(_prim(value), reserved),
            )
        )


def serialize_query(p: Parameter, value: Any) -> list[tuple[str, str]]:
    """``(name, value)`` pairs, both percent-encoded, for one query parameter."""
    r = p.allow_reserved
    name = _enc(p.name)
    if p.style == "deepObject":
        out: list[tuple[str, str]] = []
        _deep(p.name, value, out, r)
        return out
    sep = {"spaceDelimited": "%20", "pipeDelimited": "|"}.get(p.style, ",")
    if isinstance(value, list):
        items = [_enc(_prim(v), r) for v in value]
        if p.explode:
            return [(name, i) for i in items]
        return [(name, sep.join(items))]
    if isinstance(value, dict):
        pairs = [(_enc(k), _enc(v, r)) for k, v in _pairs(value)]
        if p.explode and p.style == "form":
            return pairs
        return [(name, sep.join(f"{k}{sep}{v}" for k, v in pairs))]
    return [(name, _enc(_prim(value), r))]


def _no_controls(op: Operation, key: str, text: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise _fail(
            op,
            f"key {key!r}: a header or cookie value cannot hold control characters "
            "(rule 'header-value')",
            key,
        )
    return text


def serialize_header(p: Parameter, value: Any) -> str:
    """A header's value (simple style, not percent-encoded)."""
    if isinstance(value, list):
        return ",".join(_prim(v) for v in value)
    if isinstance(value, dict):
        if p.explode:
            return ",".join(f"{k}={v}" for k, v in _pairs(value))
        return ",".join(f"{k},{v}" for k, v in _pairs(value))
    return _prim(value)


def serialize_cookie(p: Parameter, value: Any) -> list[tuple[str, str]]:
    if isinstance(value, list):
        if p.explode:
            return [(p.name, _enc(_prim(v))) for v in value]
        return [(p.name, ",".join(_enc(_prim(v)) for v in value))]
    if isinstance(value, dict):
        if p.explode:
            return [(k, _enc(v)) for k, v in _pairs(value)]
        return [(p.name, ",".join(f"{_enc(k)},{_enc(v)}" for k, v in _pairs(value)))]
    return [(p.name, _enc(_prim(value)))]


def encode_form(body: Mapping[str, Any], encoding: Mapping[str, Any] | None = None) -> bytes:
    """``application/x-www-form-urlencoded``: nested objects and arrays in Stripe's bracket
    form (``metadata[plan]=pro``, ``items[0][price]=p1``); an array of primitives repeats its
    name unless the property's encoding says ``explode: false`` (then ``a,b``)."""
    encoding = encoding or {}
    out: list[tuple[str, str]] = []
    for k, v in body.items():
        enc: dict[str, Any] = e if isinstance(e := encoding.get(k), dict) else {}
        name = _enc(str(k))
        if isinstance(v, dict) or (
            isinstance(v, list) and any(isinstance(i, (dict, list)) for i in v)
        ):
            _deep(str(k), v, out, False)
        elif isinstance(v, list):
            if enc.get("explode", True) and enc.get("style", "form") == "form":
                out.extend((name, _enc(_prim(i))) for i in v)
            else:
                out.append((name, ",".join(_enc(_prim(i)) for i in v)))
        else:
            out.append((name, _enc(_prim(v))))
    return "&".join(f"{k}={v}" for k, v in out).encode()


def encode_multipart(
    parts: Sequence[tuple[str, str | None, str | None, bytes]],
) -> tuple[bytes, str]:
    """``multipart/form-data`` from ``(name, filename, content type, bytes)`` parts."""
    boundary = "reflow-" + secrets.token_hex(12)
    out = bytearray()
    for name, filename, ctype, data in parts:
        out += f"--{boundary}\r\n".encode()
        disp = f'form-data; name="{_quote_header(name)}"'
        if filename is not None:
            disp += f'; filename="{_quote_header(filename)}"'
        out += f"Content-Disposition: {disp}\r\n".encode()
        if ctype:
            out += f"Content-Type: {ctype}\r\n".encode()
        out += b"\r\n" + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def _quote_header(text: str) -> str:
    return "".join(
        "%22" if c == '"' else "%0D" if c == "\r" else "%0A" if c == "\n" else c for c in text
    )


def merge_keys(
    op: Operation, layers: Sequence[Mapping[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Merge config ← remembered ← packets (later wins); split off ``_http``. Unknown keys
    are refused, naming the key and the keys the operation takes."""
    known = set(op.keys) | set(op.field_keys())
    if op.body is not None:
        known.add("body")
    values: dict[str, Any] = {}
    http: dict[str, Any] = {}
    for layer in layers:
        for k, v in layer.items():
            if k == "_http":
                if not isinstance(v, dict):
                    raise _fail(op, "'_http' must be an object of engine settings", "_http")
                http.update(v)
            elif k in known:
                values[k] = v
            else:
                shown = ", ".join(sorted(known)) or "none"
                raise _fail(op, f"unknown key {k!r}; this operation takes: {shown}", k)
    bad = sorted(set(http) - HTTP_SETTINGS)
    if bad:
        raise _fail(
            op,
            f"unknown '_http' setting {bad[0]!r}; known: {', '.join(sorted(HTTP_SETTINGS))}",
            "_http",
        )
    return values, http


def _granted_base(url: str, granted: Sequence[str]) -> bool:
    norm = url.rstrip("/")
    return any(norm == g.rstrip("/") for g in granted)


def choose_base_url(
    table: ApiTable, op: Operation, http: Mapping[str, Any], granted: Sequence[str]
) -> str:
    """The base URL for this request; refuses a host outside the grant."""
    base = http.get("base_url")
    if base is not None:
        if not isinstance(base, str):
            raise _fail(op, "'_http.base_url' must be a string", "_http")
        if not _granted_base(base, granted):
            raise _fail(
                op,
                f"'_http.base_url' {base[:200]!r} was not granted: pass it to load_pack("
                "grants=HttpApiGrants(base_urls=[...]))",
                "_http",
            )
        url = base
    else:
        servers = op.servers if op.servers is not None else table.servers
        if not servers:
            raise _fail(
                op,
                "the table names no usable server for this operation: set '_http.base_url' "
                "(granted at load)",
                "_http",
            )
        server = servers[0]
        chosen = http.get("server_variables") or {}
        if not isinstance(chosen, dict):
            raise _fail(op, "'_http.server_variables' must be an object", "_http")
        for name, value in chosen.items():
            var = server.variables.get(name)
            if var is None:
                raise _fail(
                    op,
                    f"server variable {name!r} is not one of {sorted(server.variables)}",
                    "_http",
                )
            enum = var.get("enum")
            if not isinstance(value, str) or (enum and value not in enum):
                raise _fail(op, f"server variable {name!r} must be one of {enum}", "_http")
        url = server.expand(chosen)
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise _fail(op, f"base URL {url[:200]!r} is not a URL: {exc}", "_http") from None
    if not parsed.is_absolute_url:
        raise _fail(
            op, f"server {url[:200]!r} is relative: set '_http.base_url' (granted at load)", "_http"
        )
    granted_hosts = [h for g in granted for h in [_netloc(g)] if h]
    if parsed.scheme not in ("http", "https") or not host_allowed(
        parsed, [*table.hosts, *granted_hosts]
    ):
        raise _fail(op, f"host {parsed.host!r} is not granted to this pack", "_http")
    return url.rstrip("/")


def _netloc(url: str) -> str:
    try:
        u = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        return ""
    if not u.host:
        return ""
    return f"{u.host}:{u.port}" if u.port is not None else u.host


def prepare(
    table: ApiTable,
    op: Operation,
    layers: Sequence[Mapping[str, Any]],
    *,
    granted: Sequence[str] = (),
) -> tuple[PreparedRequest, dict[str, Any]]:
    """Build the request for one tick; returns it and the ``_http`` settings."""
    values, http = merge_keys(op, layers)
    for p in op.parameters:
        has_default = isinstance(p.schema, dict) and "default" in p.schema
        if p.required and p.key not in values and has_default:
            values[p.key] = p.schema["default"]
    body: Any = values.get("body")
    fields = op.field_keys()
    if op.body is not None and fields:
        given = {fields[k]: values.pop(k) for k in list(values) if k in fields}
        if given:
            if body is None:
                body = {}
            if not isinstance(body, dict):
                raise _fail(op, "key 'body' must be an object when body fields are given", "body")
            body = {**body, **given}
    if body is not None:
        values["body"] = body
    validate_keys(table, op, values)
    base = choose_base_url(table, op, http, granted)
    path = op.path
    req = PreparedRequest(op.method, "", security=_security(table, op))
    for p in op.parameters:
        if p.key not in values:
            continue
        value = values[p.key]
        if p.location == "path":
            path = path.replace("{" + p.name + "}", serialize_path(p, value))
        elif p.location == "query":
            req.query.extend(serialize_query(p, value))
        elif p.location == "header":
            req.headers[p.name] = _no_controls(op, p.key, serialize_header(p, value))
        else:
            for k, v in serialize_cookie(p, value):
                req.cookies.append((k, _no_controls(op, p.key, v)))
    req.url = base + path
    if op.body is not None and body is not None:
        _encode_body(op, body, req)
    return req, http


def _security(table: ApiTable, op: Operation) -> list[dict[str, list[str]]]:
    return table.security if op.security is None else op.security


def _encode_body(op: Operation, body: Any, req: PreparedRequest) -> None:
    assert op.body is not None
    media = op.body.media_type
    entry = op.body.content[media]
    base = media.split(";")[0].strip().lower()
    if (
        base == "application/json"
        or base.endswith("+json")
        or (base.endswith("/*") and not isinstance(body, (bytes, str)))
    ):
        # A wildcard (``*/*``: Kubernetes) takes any media type: structured values go as JSON.
        if base.endswith("/*"):
            media = "application/json"
        req.content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        req.headers["Content-Type"] = media
    elif base == "application/x-www-form-urlencoded":
        if not isinstance(body, dict):
            raise _fail(op, "key 'body' must be an object for a form body (rule 'type')", "body")
        req.content = encode_form(body, entry.get("encoding"))
        req.headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif base == "multipart/form-data":
        if not isinstance(body, dict):
            raise _fail(
                op, "key 'body' must be an object for a multipart body (rule 'type')", "body"
            )
        encoding = entry.get("encoding") or {}
        parts: list[tuple[str, str | None, str | None, bytes]] = []
        for k, v in body.items():
            enc: dict[str, Any] = e if isinstance(e := encoding.get(k), dict) else {}
            if isinstance(v, bytes):
                ctype = str(enc.get("contentType") or "application/octet-stream")
                parts.append((str(k), str(k), ctype, v))
            elif isinstance(v, (dict, list)):
                parts.append((str(k), None, "application/json", json.dumps(v).encode()))
            else:
                parts.append((str(k), None, None, _prim(v).encode()))
        req.content, req.headers["Content-Type"] = encode_multipart(parts)
    elif isinstance(body, bytes):
        req.content = body
        req.headers["Content-Type"] = media
    elif isinstance(body, str):
        req.content = body.encode()
        req.headers["Content-Type"] = media
    else:
        req.content = json.dumps(body).encode()
        req.headers["Content-Type"] = media
