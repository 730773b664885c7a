"""Reading an operation table (``abi/HTTP_API.md``): untrusted JSON in, checked records out.

A table comes from a signed pack, and a signed pack can still be hostile, so everything here
is bounded: the text's size and nesting depth are checked before it is parsed, every field is
checked for its type and shape, every server's host must be one the pack requested in its
``http`` capability (or one the user granted), and every path template must name exactly the
operation's path parameters. Each problem raises :class:`~reflow.PackFormatError` naming the
field (``operations.list_pets.parameters[2].style``) and what was expected.

Loading is cheap and lazy: :func:`load_table` checks the service, the servers, the security
schemes, the shared sections' references (:mod:`._table_shared`) and, for each operation,
only its method and path; an :class:`Operation` is built, fully checked, the first time a
template asks for it (:meth:`ApiTable.operation`), the shared schemas (format 2: their JSON
text) are decoded the first time they are asked for (:attr:`ApiTable.schemas`), and an
operation's JSON Schema validator is built the first time a request is validated. So loading
the Kubernetes table (1,123 operations) costs little more than parsing its 1.9 MB, and a pack
pays only for the operations its graphs use. Formats ``reflow-http-api/2`` (generated) and
``/1`` (no shared sections) are read by the same checks; what format 2 adds is
:mod:`._table_shared`'s. The servers and security schemes are checked in
:mod:`._table_servers`, with the typed field access of :mod:`._table_reader`; ``Server`` and
``host_allowed`` stay importable from here, as part of what a table is.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .._errors import PackFormatError
from .._jsonread import JSONDepthError, check_depth
from ._table_reader import (
    HEADER_NAME,
    MAX_DESCRIPTION,
    MAX_URL,
    TEMPLATE_VAR,
    TableReader,
    table_error,
)
from ._table_servers import Server, check_scheme, check_security, host_allowed, read_servers
from ._table_shared import FORMAT_2, FORMATS, SharedSections, _kind, check_shared, resolve_operation

__all__ = [
    "FORMAT",
    "MAX_TABLE_BYTES",
    "ApiTable",
    "BodySpec",
    "Operation",
    "Parameter",
    "Server",
    "host_allowed",
    "load_table",
]

#: The format generated tables have; ``reflow-http-api/1`` (no shared sections) is still read.
FORMAT = FORMAT_2
#: Largest table text accepted (the Kubernetes table is a few MiB).
MAX_TABLE_BYTES = 64 << 20
#: Deepest nesting of the table's JSON (schemas included).
MAX_TABLE_DEPTH = 64

METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE"})
STYLES = {
    "path": frozenset({"simple", "label", "matrix"}),
    "query": frozenset({"form", "spaceDelimited", "pipeDelimited", "deepObject"}),
    "header": frozenset({"simple"}),
    "cookie": frozenset({"form"}),
}
DEFAULT_STYLE = {"path": "simple", "query": "form", "header": "simple", "cookie": "form"}
RESERVED_KEYS = frozenset({"trigger", "request", "body", "_http"})
KEY_RE = re.compile(r"[a-z][a-z0-9_]*\Z")
_MEDIA = re.compile(r"[A-Za-z0-9!#$&^_.+*-]+/[A-Za-z0-9!#$&^_.+*-]+(;.*)?\Z")
PAGINATION = {
    "link": (),
    "cursor": ("param", "next"),
    "token": ("param", "next"),
    "page": ("param",),
}


@dataclass(frozen=True)
class Parameter:
    name: str
    location: str
    key: str
    required: bool
    schema: Any
    style: str
    explode: bool
    allow_reserved: bool = False
    description: str = ""
    deprecated: bool = False


@dataclass(frozen=True)
class BodySpec:
    required: bool
    description: str
    content: dict[str, dict[str, Any]]
    fields: tuple[tuple[str, str, bool], ...]  # (key, property, required)

    @property
    def media_type(self) -> str:
        """The media type requests are sent as: JSON first, then forms, then the first."""
        order = ("application/json", "application/x-www-form-urlencoded", "multipart/form-data")
        for m in order:
            if m in self.content:
                return m
        for m in self.content:
            if m.split(";")[0].strip().endswith("+json"):
                return m
        return next(iter(self.content))


@dataclass
class Operation:
    """One operation of a table, fully checked. ``validator`` is built on first use."""

    suffix: str
    template_id: str
    operation_id: str | None
    method: str
    path: str
    summary: str
    description: str
    servers: tuple[Server, ...] | None
    security: list[dict[str, list[str]]] | None
    parameters: tuple[Parameter, ...]
    body: BodySpec | None
    responses: dict[str, Any]
    pagination: dict[str, Any] | None
    deprecated: bool = False
    #: Credential carriers: ``(in, name, scheme)`` the host fills with the scheme's secret.
    credentials: tuple[tuple[str, str, str], ...] = ()
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _validator: Any = field(default=None, repr=False)

    @property
    def keys(self) -> dict[str, Parameter]:
        return {p.key: p for p in self.parameters}

    def field_keys(self) -> dict[str, str]:
        """Body field key -> body property, for fields not shadowed by a parameter key."""
        if self.body is None:
            return {}
        params = {p.key for p in self.parameters}
        return {k: prop for k, prop, _ in self.body.fields if k not in params}


@dataclass
class ApiTable:
    """A checked table. ``operation(suffix)`` builds and caches one operation on demand."""

    pack: str
    service: dict[str, Any]
    servers: tuple[Server, ...]
    security_schemes: dict[str, dict[str, Any]]
    security: list[dict[str, list[str]]]
    hosts: tuple[str, ...]
    _raw: dict[str, Any] = field(repr=False)
    #: the shared schemas: an object, or (format 2) its JSON text, decoded at first use
    _schemas: dict[str, Any] | str = field(default_factory=dict, repr=False)
    _schemas_error: str | None = field(default=None, repr=False)
    _shared: SharedSections = field(default_factory=SharedSections, repr=False)
    _ops: dict[str, Operation] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def suffixes(self) -> list[str]:
        return list(self._raw)

    @property
    def schemas(self) -> dict[str, Any]:
        """The shared schemas (``#/schemas/<key>``), decoded and checked the first time they
        are asked for (validating a request, describing a template); a bad text fails that
        use with a :class:`~reflow.PackFormatError` naming ``schemas``."""
        value = self._schemas
        if isinstance(value, dict):
            return value
        with self._lock:
            if isinstance(self._schemas, str):
                if self._schemas_error is None:
                    try:
                        self._schemas = _decode_schemas(self._schemas, self.pack)
                        return self._schemas
                    except PackFormatError as exc:
                        self._schemas_error = exc.args[0]  # decoded once, refused every time
                raise PackFormatError(self._schemas_error, pack=self.pack, field="schemas")
            return self._schemas

    def operation(self, suffix: str) -> Operation:
        op = self._ops.get(suffix)
        if op is not None:
            return op
        with self._lock:
            op = self._ops.get(suffix)
            if op is None:
                if suffix not in self._raw:
                    raise table_error(
                        f"operations.{suffix}", "no such operation in the table", self.pack
                    )
                raw = resolve_operation(self._raw[suffix], self._shared)
                op = _operation(self, suffix, raw)
                self._ops[suffix] = op
            return op


def load_table(
    data: bytes | str, *, pack: str, hosts: Iterable[str] = (), granted: Iterable[str] = ()
) -> ApiTable:
    """Check and read a table. ``hosts``: the pack's requested ``http`` capability; every
    absolute server URL (and OAuth2 token URL) must be on one of them or on ``granted``
    (hosts of base URLs the user granted)."""
    size = len(data)
    if size > MAX_TABLE_BYTES:
        raise table_error("$", f"is {size} bytes, more than the limit of {MAX_TABLE_BYTES}", pack)
    # The C parser's own recursion guard bounds depth at load; each operation's depth is
    # checked against MAX_TABLE_DEPTH when it is first used (so loading walks nothing twice).
    try:
        doc = json.loads(data)
    except RecursionError:
        raise table_error("$", "nests too deep to parse", pack) from None
    except (ValueError, UnicodeError) as exc:
        raise table_error("$", f"is not UTF-8 JSON: {str(exc)[:200]}", pack) from None
    r = TableReader(pack)
    doc = r.obj(doc, "$")
    fmt = r.get(doc, "format", str, "$")
    if fmt not in FORMATS:
        known = " or ".join(repr(f) for f in FORMATS)
        raise r.fail("format", f"{fmt[:80]!r} is not a known table format; expected {known}")
    allowed = tuple(hosts) + tuple(granted)
    service = r.obj(r.get(doc, "service", dict, "$"), "service")
    r.get(service, "name", str, "service", max_len=200)
    servers = read_servers(r, doc.get("servers", []), "servers", allowed)
    schemes = r.get(doc, "security_schemes", dict, "$", {})
    for name, scheme in schemes.items():
        check_scheme(r, scheme, f"security_schemes.{name}", allowed)
    security = check_security(r, doc.get("security", []), "security", schemes)
    schemas = r.get(doc, "schemas", (dict, str) if fmt == FORMAT_2 else dict, "$", {})
    ops = r.get(doc, "operations", dict, "$")
    for suffix, raw in ops.items():
        where = f"operations.{suffix}"
        if not KEY_RE.fullmatch(suffix) or len(suffix) > 200:
            raise r.fail(where, "an operation suffix must match [a-z][a-z0-9_]* (200 at most)")
        raw = r.obj(raw, where)
        method = r.get(raw, "method", str, where)
        if method not in METHODS:
            raise r.fail(
                f"{where}.method", f"{method[:40]!r} is not one of {', '.join(sorted(METHODS))}"
            )
        path = r.get(raw, "path", str, where, max_len=MAX_URL)
        if not path.startswith("/"):
            raise r.fail(f"{where}.path", f"{path[:80]!r} must start with '/'")
    shared = check_shared(doc, fmt, ops, r.fail)
    return ApiTable(
        pack=pack,
        service=service,
        servers=servers,
        security_schemes=schemes,
        security=security,
        hosts=allowed,
        _raw=ops,
        _schemas=schemas,
        _shared=shared,
    )


def _decode_schemas(text: str, pack: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except RecursionError:
        raise table_error("schemas", "nests too deep to parse", pack) from None
    except ValueError as exc:
        raise table_error(
            "schemas", f"is not the JSON text of an object: {str(exc)[:200]}", pack
        ) from None
    if not isinstance(value, dict):
        raise table_error("schemas", f"is the JSON text of {_kind(value)}, not of an object", pack)
    try:
        check_depth(value, limit=MAX_TABLE_DEPTH, what="the shared schemas")
    except JSONDepthError as exc:
        raise table_error("schemas", f"nests too deep: {exc}", pack) from None
    return value


def _operation(table: ApiTable, suffix: str, raw: dict[str, Any]) -> Operation:
    r = TableReader(table.pack)
    w = f"operations.{suffix}"
    try:
        check_depth(raw, limit=MAX_TABLE_DEPTH, what=f"operation {suffix}")
    except JSONDepthError as exc:
        raise r.fail(w, f"nests too deep: {exc}") from None
    path = raw["path"]
    params = []
    seen_keys: set[str] = set()
    seen_names: set[tuple[str, str]] = set()
    plist = r.get(raw, "parameters", list, w, [])
    for i, p in enumerate(plist):
        pw = f"{w}.parameters[{i}]"
        p = r.obj(p, pw)
        name = r.get(p, "name", str, pw, max_len=200)
        loc = r.get(p, "in", str, pw)
        if loc not in STYLES:
            raise r.fail(f"{pw}.in", f"{loc[:40]!r} is not path, query, header or cookie")
        key = r.get(p, "key", str, pw)
        if not KEY_RE.fullmatch(key) or len(key) > 100:
            raise r.fail(f"{pw}.key", f"{key[:60]!r} is not an identifier [a-z][a-z0-9_]*")
        if key in RESERVED_KEYS:
            raise r.fail(f"{pw}.key", f"{key!r} is reserved (trigger, request, body, _http)")
        if key in seen_keys:
            raise r.fail(f"{pw}.key", f"{key!r} is used twice in this operation")
        if (loc, name) in seen_names:
            raise r.fail(f"{pw}.name", f"{loc} parameter {name!r} is declared twice")
        if loc == "header" and not HEADER_NAME.fullmatch(name):
            raise r.fail(f"{pw}.name", f"{name[:60]!r} is not a header name")
        seen_keys.add(key)
        seen_names.add((loc, name))
        style = r.get(p, "style", str, pw, DEFAULT_STYLE[loc])
        if style not in STYLES[loc]:
            raise r.fail(
                f"{pw}.style",
                f"{style[:40]!r} is not a {loc} style ({', '.join(sorted(STYLES[loc]))})",
            )
        explode = r.get(p, "explode", bool, pw, style == "form")
        required = r.get(p, "required", bool, pw, False)
        if loc == "path" and not required:
            raise r.fail(f"{pw}.required", "a path parameter must be required")
        schema = p.get("schema", {})
        if not isinstance(schema, (dict, bool)):
            raise r.fail(f"{pw}.schema", f"expected a JSON Schema, got {_kind(schema)}")
        params.append(
            Parameter(
                name=name,
                location=loc,
                key=key,
                required=required,
                schema=schema,
                style=style,
                explode=explode,
                allow_reserved=r.get(p, "allow_reserved", bool, pw, False),
                description=r.get(p, "description", str, pw, "")[:MAX_DESCRIPTION],
                deprecated=r.get(p, "deprecated", bool, pw, False),
            )
        )
    in_path = TEMPLATE_VAR.findall(path)
    declared = {p.name for p in params if p.location == "path"}
    for name in in_path:
        if name not in declared:
            raise r.fail(f"{w}.path", f"template {{{name}}} has no path parameter of that name")
    if len(set(in_path)) != len(in_path):
        raise r.fail(f"{w}.path", "names a path parameter twice")
    for name in declared - set(in_path):
        raise r.fail(f"{w}.parameters", f"path parameter {name!r} is not in the path {path!r}")
    if "{" in TEMPLATE_VAR.sub("", path) or "}" in TEMPLATE_VAR.sub("", path):
        raise r.fail(f"{w}.path", "has an unbalanced '{' or '}'")
    body = _body(r, raw.get("body"), f"{w}.body")
    servers = raw.get("servers")
    servers_t = None if servers is None else read_servers(r, servers, f"{w}.servers", table.hosts)
    security = raw.get("security")
    if security is not None:
        security = check_security(r, security, f"{w}.security", table.security_schemes)
    responses = r.get(raw, "responses", dict, w, {})
    for status, resp in responses.items():
        if not re.fullmatch(r"[1-5](\d\d|XX)|default", status):
            raise r.fail(f"{w}.responses", f"{status[:20]!r} is not a status, NXX or default")
        r.obj(resp, f"{w}.responses.{status}")
    pagination = raw.get("pagination")
    if pagination is not None:
        pagination = r.obj(pagination, f"{w}.pagination")
        style = r.get(pagination, "style", str, f"{w}.pagination")
        if style not in PAGINATION:
            raise r.fail(
                f"{w}.pagination.style", f"{style[:40]!r} is not link, cursor, token or page"
            )
        for k in PAGINATION[style]:
            r.get(pagination, k, str, f"{w}.pagination")
        for k in ("next", "has_more", "items"):
            v = pagination.get(k)
            if v is not None and (not isinstance(v, str) or (v and not v.startswith("/"))):
                raise r.fail(f"{w}.pagination.{k}", "expected a JSON pointer ('' or '/...')")
    credentials = []
    for i, c in enumerate(r.get(raw, "credentials", list, w, [])):
        cw = f"{w}.credentials[{i}]"
        c = r.obj(c, cw)
        loc = r.get(c, "in", str, cw)
        if loc not in ("header", "query", "cookie", "body"):
            raise r.fail(f"{cw}.in", f"{loc[:40]!r} is not header, query, cookie or body")
        cname = r.get(c, "name", str, cw, max_len=200)
        if loc == "header" and not HEADER_NAME.fullmatch(cname):
            raise r.fail(f"{cw}.name", f"{cname[:60]!r} is not a header name")
        if any(p.location == loc and p.name == cname for p in params):
            raise r.fail(f"{cw}.name", f"{loc} {cname!r} is also a parameter the graph sets")
        sname = r.get(c, "scheme", str, cw, max_len=200)
        if sname not in table.security_schemes:
            raise r.fail(f"{cw}.scheme", f"names scheme {sname[:60]!r} that is not defined")
        credentials.append((loc, cname, sname))
    op_id = raw.get("operation_id")
    if op_id is not None and not isinstance(op_id, str):
        raise r.fail(f"{w}.operation_id", f"expected a string or null, got {_kind(op_id)}")
    return Operation(
        suffix=suffix,
        template_id=f"{table.pack}/{suffix}",
        operation_id=op_id,
        method=raw["method"],
        path=path,
        summary=r.get(raw, "summary", str, w, "")[:MAX_DESCRIPTION],
        description=r.get(raw, "description", str, w, "")[:MAX_DESCRIPTION],
        servers=servers_t,
        security=security,
        parameters=tuple(params),
        body=body,
        responses=responses,
        pagination=pagination,
        deprecated=r.get(raw, "deprecated", bool, w, False),
        credentials=tuple(credentials),
    )


def _body(r: TableReader, value: Any, where: str) -> BodySpec | None:
    if value is None:
        return None
    raw = r.obj(value, where)
    content = r.get(raw, "content", dict, where)
    if not content:
        raise r.fail(f"{where}.content", "names no media type")
    for media, entry in content.items():
        if not _MEDIA.fullmatch(media) or len(media) > 200:
            raise r.fail(f"{where}.content", f"{media[:60]!r} is not a media type")
        entry = r.obj(entry, f"{where}.content.{media}")
        schema = entry.get("schema", {})
        if not isinstance(schema, (dict, bool)):
            raise r.fail(f"{where}.content.{media}.schema", "expected a JSON Schema")
        r.get(entry, "encoding", dict, f"{where}.content.{media}", {})
    fields = []
    keys: set[str] = set()
    for i, f in enumerate(r.get(raw, "fields", list, where, [])):
        fw = f"{where}.fields[{i}]"
        f = r.obj(f, fw)
        key = r.get(f, "key", str, fw)
        if not KEY_RE.fullmatch(key) or key in RESERVED_KEYS or key in keys:
            raise r.fail(f"{fw}.key", f"{key[:60]!r} is not a unique, unreserved identifier")
        keys.add(key)
        fields.append((key, r.get(f, "property", str, fw), r.get(f, "required", bool, fw, False)))
    return BodySpec(
        required=r.get(raw, "required", bool, where, False),
        description=r.get(raw, "description", str, where, "")[:MAX_DESCRIPTION],
        content=content,
        fields=tuple(fields),
    )
