"""A local server implementing any operation table: real HTTP on 127.0.0.1, for tests.

``reflow.testing.spec_server(table)`` starts a Starlette app under uvicorn on an ephemeral
port and yields a :class:`SpecServer` (``.url``). Every operation of the table is routed. A
request is parsed per its parameters' styles and its body's media type, validated with the
same validators the engine uses, and its credentials are checked against the operation's
security; a request that breaks the spec gets a 400 (401 for auth) with the reason as JSON
``{"error": ...}``. Otherwise the answer is synthesized from the first 2xx response's schema
(:mod:`._instances`), valid against it.

Scripted behaviours for tests: ``fail_next(n, status, retry_after)``, ``expire_tokens()``,
``sse_events`` (the number of events an event-stream response sends), ``answers`` (a body
per operation instead of a synthesized one), ``hold_until(n)``
(requests wait until ``n`` have arrived), ``pages`` (pages a paginated list has). A
``POST /oauth/token`` endpoint (and the path of every client-credentials ``tokenUrl`` of the
table) issues client-credentials tokens. Paginated answers come from :mod:`._spec_pages`.
``.requests`` counts what arrived per operation; ``.log`` keeps the last requests (method,
path, query, headers, body).
"""

from __future__ import annotations

import asyncio
import base64
import email.policy
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ._instances import _merge, _parts, _resolve, instance_for
from ._spec_pages import page_answer
from ._table import ApiTable, Operation, Parameter, load_table
from ._validate import operation_validator

__all__ = ["SpecServer", "spec_server"]


@dataclass
class SpecServer:
    """The running server and its scripted behaviours."""

    table: ApiTable
    secrets: dict[str, str]
    url: str = ""
    requests: dict[str, int] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)
    sse_events: int = 3
    #: The response media type to answer with when the operation offers it (else the first).
    prefer_media: str | None = None
    pages: int = 3
    #: An answer per operation suffix, once its request validated: a JSON body, or a
    #: callable taking the request's keys and returning a body or a Starlette Response.
    answers: dict[str, Any] = field(default_factory=dict)
    _fail: list[tuple[int, str | None]] = field(default_factory=list)
    _tokens: set[str] = field(default_factory=set)
    _hold: int = 0
    _arrived: int = 0
    _released: asyncio.Event | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    def fail_next(self, n: int, status: int = 429, retry_after: str | None = None) -> None:
        with self._lock:
            self._fail.extend([(status, retry_after)] * n)

    def expire_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def hold_until(self, n: int) -> None:
        self._hold, self._arrived = n, 0


def _coerce(schema: Any, text: str, schemas: dict[str, Any]) -> Any:
    if not isinstance(schema, dict):
        return text
    if isinstance(schema.get("$ref"), str):
        schema = schemas.get(schema["$ref"].rsplit("/", 1)[-1], {})
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    for k in kinds:
        try:
            if k == "integer":
                return int(text)
            if k == "number":
                return float(text)
        except ValueError:
            continue
        if k == "boolean" and text in ("true", "false"):
            return text == "true"
    return text


def _parse_param(p: Parameter, raw: list[str], pairs: list[tuple[str, str]], schemas: Any) -> Any:
    schema = p.schema if isinstance(p.schema, dict) else {}
    kind = schema.get("type")
    if p.style == "deepObject":
        out: dict[str, Any] = {}
        for k, v in pairs:
            m = re.fullmatch(re.escape(p.name) + r"((\[[^\]]*\])+)", k)
            if m:
                keys = re.findall(r"\[([^\]]*)\]", m.group(1))
                cur = out
                for key in keys[:-1]:
                    cur = cur.setdefault(key, {})
                cur[keys[-1]] = v
        props = schema.get("properties") or {}
        return {
            k: _coerce(props.get(k), v, schemas) if isinstance(v, str) else v
            for k, v in out.items()
        }
    if p.style == "form" and not p.explode and raw and _object_names(schema, schemas) is not None:
        parts = raw[-1].split(",")  # name=k1,v1,k2,v2
        return _coerce_body(schema, dict(zip(parts[::2], parts[1::2], strict=False)), schemas)
    if kind == "array":
        sep = {"spaceDelimited": " ", "pipeDelimited": "|"}.get(p.style, ",")
        items = raw if p.explode and p.location == "query" else raw[0].split(sep) if raw else []
        return [_coerce(schema.get("items"), i, schemas) for i in items]
    return _coerce(schema, raw[-1], schemas) if raw else None


def _object_names(schema: Any, schemas: dict[str, Any], depth: int = 0) -> set[str] | None:
    """The property names an object schema names (through refs, ``allOf``, ``oneOf`` and
    ``anyOf``), or None when the schema does not describe an object."""
    schema = _resolve(schema, schemas)
    if not isinstance(schema, dict) or depth > 8:
        return None
    names: set[str] | None = None
    if schema.get("type") == "object" or isinstance(schema.get("properties"), dict):
        names = set(schema.get("properties") or {})
    for key in ("allOf", "oneOf", "anyOf"):
        for sub in schema.get(key) or []:
            more = _object_names(sub, schemas, depth + 1)
            if more is not None:
                names = (names or set()) | more
    return names


def _form_nested(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        m = re.fullmatch(r"([^\[]+)((\[[^\]]*\])*)", k)
        if not m:
            continue
        keys = [m.group(1), *re.findall(r"\[([^\]]*)\]", m.group(2))]
        cur: Any = out
        for i, key in enumerate(keys):
            last = i == len(keys) - 1
            if last:
                if key in cur:
                    prev = cur[key]
                    cur[key] = [*prev, v] if isinstance(prev, list) else [prev, v]
                else:
                    cur[key] = v
            else:
                cur = cur.setdefault(key, {})
    return _listify(out)


def _listify(value: Any) -> Any:
    if isinstance(value, dict):
        value = {k: _listify(v) for k, v in value.items()}
        if value and all(k.isdigit() for k in value):
            return [value[k] for k in sorted(value, key=int)]
    return value


def _coerce_body(schema: Any, value: Any, schemas: dict[str, Any]) -> Any:
    """Form and multipart values are text: give them back the types their schema says (a
    lone repeated field is still an array; a JSON part of an object is an object)."""
    schema = _resolve(schema, schemas)
    if not isinstance(schema, dict):
        return value
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            kinds = [_resolve(b, schemas) for b in branches]
            for b in kinds:  # the first branch whose type fits the value's shape
                t = b.get("type") if isinstance(b, dict) else None
                shape = (
                    "object"
                    if isinstance(value, dict)
                    else "array"
                    if isinstance(value, list)
                    else None
                )
                if shape is not None and t == shape:
                    return _coerce_body(b, value, schemas)
            for b in kinds:
                t = b.get("type") if isinstance(b, dict) else None
                if isinstance(value, str) and t in ("integer", "number", "boolean"):
                    got = _coerce(b, value, schemas)
                    if not isinstance(got, str):
                        return got
            if isinstance(value, str) and any(
                isinstance(b, dict) and b.get("type") == "array" for b in kinds
            ):
                return _coerce_body(
                    next(b for b in kinds if b.get("type") == "array"), value, schemas
                )
    if isinstance(schema.get("allOf"), list):
        schema = _merge(_parts(schema, schemas))
    kind = schema.get("type")
    if kind is None and (isinstance(value, str) and value[:1] == "{") and "properties" in schema:
        kind = "object"
    if isinstance(value, str) and kind in ("object", "array") and value[:1] in ("{", "["):
        with suppress(ValueError):
            value = json.loads(value)
    if kind == "array" and not isinstance(value, list):
        value = [value]
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        return {k: _coerce_body(props.get(k), v, schemas) for k, v in value.items()}
    if isinstance(value, list):
        return [_coerce_body(schema.get("items"), v, schemas) for v in value]
    if isinstance(value, str):
        return _coerce(schema, value, schemas)
    return value


def _matcher(op: Operation) -> re.Pattern[str]:
    parts = re.split(r"(\{[^{}]*\})", op.path)
    rx = "".join(
        f"(?P<p{i}>[^/]+)" if part.startswith("{") else re.escape(part)
        for i, part in enumerate(parts)
    )
    return re.compile(rx + r"/?\Z")


async def _form_pairs(request: Request) -> dict[str, str]:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        return dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
    if media == "multipart/form-data":
        parts = _multipart(request.headers.get("content-type", ""), await request.body())
        return {k: v for k, v in parts.items() if isinstance(v, str)}
    return {}


def _multipart(ctype: str, body: bytes) -> dict[str, Any]:
    """The parts of a ``multipart/form-data`` body (stdlib ``email`` parser): text parts as
    str, file parts (with a filename) as bytes."""
    msg = BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + ctype.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not msg.is_multipart():
        raise ValueError("no multipart parts")
    out: dict[str, Any] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        is_file = part.get_filename() is not None
        out[name] = data if is_file else data.decode("utf-8", "replace")
    return out


def _carried(
    server: SpecServer, op: Operation, name: str, request: Request, form: dict[str, str]
) -> bool:
    """Every credential carrier of scheme ``name`` holds the scheme's secret."""
    expected = server.secrets.get(name)
    scheme = server.table.security_schemes.get(name, {})
    cc = (
        (scheme.get("flows") or {}).get("clientCredentials")
        if scheme.get("type") == "oauth2"
        else None
    )
    for where, carrier, sname in op.credentials:
        if sname != name:
            continue
        src: Any = {
            "header": request.headers,
            "query": request.query_params,
            "cookie": request.cookies,
            "body": form,
        }[where]
        got = src.get(carrier)
        if not got:
            return False
        if cc is not None:
            if got not in server._tokens:
                return False
        elif expected is not None and got != expected:
            return False
    return True


async def _check_auth(server: SpecServer, op: Operation, request: Request) -> str | None:
    table = server.table
    security = table.security if op.security is None else op.security
    if not security:
        return None
    reasons = []
    form = await _form_pairs(request) if any(c[0] == "body" for c in op.credentials) else {}
    for alternative in security:
        missing = [
            n
            for n in alternative
            if not _has(server, n, request) or not _carried(server, op, n, request, form)
        ]
        if not missing:
            return None
        reasons.append(", ".join(missing))
    return f"missing or wrong credentials for {' or '.join(reasons)}"


def _has(server: SpecServer, name: str, request: Request) -> bool:
    scheme = server.table.security_schemes.get(name, {})
    expected = server.secrets.get(name)
    kind = scheme.get("type")
    got: str | None = None
    auth = request.headers.get("authorization", "")
    if kind == "apiKey":
        where = scheme.get("in")
        key = str(scheme.get("name"))
        src = {"header": request.headers, "query": request.query_params, "cookie": request.cookies}
        got = src.get(str(where), {}).get(key)
    elif kind == "http" and str(scheme.get("scheme")).lower() == "basic":
        if auth.startswith("Basic "):
            try:
                got = base64.b64decode(auth[6:]).decode()
            except ValueError:
                got = None
    elif kind == "oauth2":
        token = auth[7:] if auth.startswith("Bearer ") else None
        cc = (scheme.get("flows") or {}).get("clientCredentials")
        if cc is not None:
            return token is not None and token in server._tokens
        got = token
    else:
        got = auth[7:] if auth.startswith("Bearer ") else None
    if not got:
        return False
    return expected is None or got == expected


async def _answer(
    server: SpecServer, op: Operation, request: Request, path: dict[str, str]
) -> Response:
    table = server.table
    with server._lock:
        server.requests[op.suffix] = server.requests.get(op.suffix, 0) + 1
    if server._hold:
        server._arrived += 1
        assert server._released is not None
        if server._arrived >= server._hold:
            server._released.set()
        await server._released.wait()
    with server._lock:
        failure = server._fail.pop(0) if server._fail else None
    if failure is not None:
        headers = {"Retry-After": failure[1]} if failure[1] is not None else {}
        return JSONResponse({"error": "scripted failure"}, failure[0], headers=headers)
    reason = await _check_auth(server, op, request)
    if reason is not None:
        return JSONResponse({"error": reason}, 401)
    pairs = parse_qsl(request.url.query, keep_blank_values=True)
    values: dict[str, Any] = {}
    for p in op.parameters:
        if p.location == "path":
            raw = [unquote(path[p.name])]
        elif p.location == "query":
            raw = [v for k, v in pairs if k == p.name]
        elif p.location == "header":
            h = request.headers.get(p.name)
            raw = [h] if h is not None else []
        else:
            c = request.cookies.get(p.name)
            raw = [c] if c is not None else []
        if raw or (p.style == "deepObject" and any(k.startswith(p.name + "[") for k, _ in pairs)):
            values[p.key] = _parse_param(p, raw, pairs, table.schemas)
        elif p.location == "query" and p.style == "form" and p.explode:
            # an exploded form object: its properties are the query's own names
            names = _object_names(p.schema, table.schemas)
            found = {k: v for k, v in pairs if names and k in names}
            if found:
                values[p.key] = _coerce_body(p.schema, found, table.schemas)
    body_raw = await request.body()
    server.log.append(
        {
            "op": op.suffix,
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "headers": dict(request.headers),
            "body": body_raw,
        }
    )
    del server.log[:-50]
    # an empty body is still a body when its media type is declared (a zero-byte upload)
    if op.body is not None and (body_raw or request.headers.get("content-type")):
        media = request.headers.get("content-type", "").split(";")[0].strip()
        schema = op.body.content[op.body.media_type].get("schema")
        try:
            if media == "application/json" or media.endswith("+json"):
                values["body"] = json.loads(body_raw)
            elif media == "application/x-www-form-urlencoded":
                nested = _form_nested(parse_qsl(body_raw.decode(), keep_blank_values=True))
                values["body"] = _coerce_body(schema, nested, table.schemas)
            elif media == "multipart/form-data":
                ctype = request.headers.get("content-type", "")
                out = _multipart(ctype, body_raw)
                values["body"] = _coerce_body(schema, out, table.schemas)
            else:
                values["body"] = body_raw
        except (ValueError, UnicodeError) as exc:
            return JSONResponse({"error": f"body is not {media}: {exc}"}, 400)
    carried = {c[1] for c in op.credentials if c[0] == "body"}
    if carried and isinstance(values.get("body"), dict):
        values["body"] = {k: v for k, v in values["body"].items() if k not in carried}
    errors = list(operation_validator(table, op).iter_errors(values))
    if errors:
        e = errors[0]
        where = "/".join(str(x) for x in e.absolute_path) or "request"
        return JSONResponse({"error": f"{where}: {e.message}"}, 400)
    if op.suffix in server.answers:  # a body, or a callable(values) -> body or Response
        made = server.answers[op.suffix]
        made = made(values) if callable(made) else made
        return made if isinstance(made, Response) else JSONResponse(made)
    return _synthesize(server, op, request, pairs)


def _synthesize(
    server: SpecServer, op: Operation, request: Request, pairs: list[tuple[str, str]]
) -> Response:
    status = next((s for s in sorted(op.responses) if s.startswith("2")), "200")
    code = 200 if "X" in status else int(status)
    resp = op.responses.get(status) or {}
    content = resp.get("content") or {}
    media = next(iter(content), "application/json")
    if server.prefer_media in content:
        media = server.prefer_media
    schema = (content.get(media) or {}).get("schema", {})
    if media == "text/event-stream":
        n = server.sse_events

        async def events() -> Any:
            for i in range(n):
                yield f"data: {json.dumps({'n': i})}\n\n".encode()
                await asyncio.sleep(0)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), code, media_type="text/event-stream")
    value = instance_for(schema, server.table.schemas)
    headers: dict[str, str] = {}
    pag = op.pagination
    if pag is not None:
        value, headers = page_answer(
            server.table.schemas, server.pages, pag, pairs, value, request, schema
        )
    if code == 204:
        return Response(status_code=204)
    if media.startswith("text/"):
        return Response(str(value), code, media_type=media)
    if not (media == "application/json" or media.endswith("+json")):
        return Response(b"\x00\x01binary", code, media_type=media)
    return JSONResponse(value, code, headers=headers, media_type=media)


async def _token(server: SpecServer, request: Request) -> Response:
    form = dict(parse_qsl((await request.body()).decode()))
    if form.get("grant_type") != "client_credentials":
        return JSONResponse({"error": "unsupported_grant_type"}, 400)
    auth = request.headers.get("authorization", "")
    try:
        cred = base64.b64decode(auth[6:]).decode() if auth.startswith("Basic ") else ""
    except ValueError:
        cred = ""
    expected = [
        v
        for n, v in server.secrets.items()
        if server.table.security_schemes.get(n, {}).get("type") == "oauth2"
    ]
    if not cred or (expected and cred not in expected):
        return JSONResponse({"error": "invalid_client"}, 401)
    token = f"tok-{len(server._tokens)}-{time.monotonic_ns()}"
    with server._lock:
        server._tokens.add(token)
    return JSONResponse({"access_token": token, "token_type": "bearer", "expires_in": 3600})


def _app(server: SpecServer) -> Starlette:
    ops = [server.table.operation(s) for s in server.table.suffixes]
    # A literal segment beats a template (``/user/login`` before ``/user/{username}``).
    ops.sort(key=lambda op: [(part.startswith("{"), part) for part in op.path.split("/")])
    routes = [(op, _matcher(op)) for op in ops]
    # Relative token URLs, and the path of absolute ones (the engine sends those to a
    # granted base URL, this server, when they are on the spec's own hosts).
    token_paths = {
        urlsplit(str(cc["tokenUrl"])).path
        for sch in server.table.security_schemes.values()
        if isinstance(cc := (sch.get("flows") or {}).get("clientCredentials"), dict)
        and isinstance(cc.get("tokenUrl"), str)
    } - {""}

    async def dispatch(request: Request) -> Response:
        if server._hold and server._released is None:
            server._released = asyncio.Event()
        path = request.url.path
        if request.method == "POST" and (path == "/oauth/token" or path in token_paths):
            return await _token(server, request)
        for op, rx in routes:
            m = rx.match(path)
            if m is None:
                continue
            if op.method != request.method:
                continue
            names = re.findall(r"\{([^{}]*)\}", op.path)
            found = {n: m.group(f"p{2 * i + 1}") for i, n in enumerate(names)}
            return await _answer(server, op, request, found)
        return JSONResponse({"error": f"no operation {request.method} {path}"}, 404)

    methods = ["GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE"]
    return Starlette(routes=[Route("/{rest:path}", dispatch, methods=methods)])


@contextmanager
def spec_server(
    table: dict[str, Any] | bytes | str,
    *,
    secrets: dict[str, str] | None = None,
    pack: str = "spec/server",
) -> Iterator[SpecServer]:
    """Serve ``table`` on 127.0.0.1 (an ephemeral port) until the block ends."""
    text = json.dumps(table) if isinstance(table, dict) else table
    checked = load_table(text, pack=pack, hosts=("*",))
    server = SpecServer(checked, dict(secrets or {}))
    config = uvicorn.Config(
        _app(server),
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="off",
        backlog=4096,
        limit_concurrency=None,
        timeout_keep_alive=30,
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, name="reflow-spec-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the spec server did not start")
        time.sleep(0.01)
    port = uv.servers[0].sockets[0].getsockname()[1]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        uv.should_exit = True
        thread.join(10)
