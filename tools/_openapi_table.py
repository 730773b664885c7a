"""Normalize a loaded description into the operation table of abi/HTTP_API.md.

One function, :func:`build_table`, for OpenAPI 3.0, 3.1 and Swagger 2.0 alike: servers
(Swagger ``schemes`` + ``host`` + ``basePath``; path- and operation-level servers) and
security schemes (Swagger 2.0 flows renamed) through :mod:`._openapi_security`; parameters
(Swagger ``collectionFormat`` mapped to styles), bodies (Swagger ``body`` and ``formData``),
responses (no content for 204, 205 and 304), pagination inference and
template id suffixes. Nothing here knows any particular service: a new description needs no
code change. What could not be used is listed in :attr:`OperationTable.report`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .._errors import OpenApiError
from .._jsonread import segment
from ._openapi_ids import RESERVED_KEYS, assign_suffixes, param_keys, snake
from ._openapi_load import SpecTree, dumps_json
from ._openapi_paging import infer_pagination
from ._openapi_schema import SchemaConverter, clip
from ._openapi_security import (
    ServersAndSecurity,
    credential_carriers,
    one_line,
    parse_auth,
    server_hosts,
)

__all__ = ["FORMAT", "OperationTable", "build_table", "parse_auth"]

#: The expanded form :attr:`OperationTable.table` holds; :meth:`~OperationTable.to_bytes`
#: writes format 2 (``host/_services/_table_shared.py``).
FORMAT = "reflow-http-api/1"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_IN = ("path", "query", "header", "cookie")
_IGNORED_HEADERS = frozenset({"accept", "content-type", "authorization"})
_V2_SCHEMA_KEYS = (
    "type",
    "format",
    "items",
    "enum",
    "default",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "multipleOf",
)
_COLLECTION = {
    "csv": (None, False),
    "ssv": ("spaceDelimited", False),
    "tsv": ("tabDelimited", False),
    "pipes": ("pipeDelimited", False),
    "multi": ("form", True),
}
MAX_PORTS = 1024
#: Statuses whose answers carry no content (RFC 9110 15.3.5, 15.3.6, 15.4.5).
NO_CONTENT = frozenset({"204", "205", "304"})


@dataclass
class OperationTable:
    """A generated table, the hosts of its servers and what the generator left out."""

    table: dict[str, Any]
    hosts: list[str]
    report: list[str] = field(default_factory=list)
    #: suffix -> (inports, outports, one-line description), in description order
    ports: dict[str, tuple[list[str], list[str], str]] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """The table as the pack carries it: format 2, repeated entries shared."""
        from .._services._table_shared import share_table

        try:
            return dumps_json(share_table(self.table))
        except (TypeError, ValueError) as exc:  # pragma: no cover - the loader keeps JSON
            raise OpenApiError(f"the table is not JSON: {exc}") from exc


class _Builder(ServersAndSecurity):
    def __init__(self, spec: SpecTree, name: str, auth: Sequence[str]) -> None:
        self.spec = spec
        self.root: dict[str, Any] = spec.root
        self.base = spec.root_uri
        self.name = name
        self.auth = auth
        self.report = spec.report
        self.conv = SchemaConverter(spec, self.report)
        self.file = spec.shown(self.base)
        oa, sw = self.root.get("openapi"), self.root.get("swagger")
        if isinstance(oa, str) and oa.startswith(("3.0", "3.1")):
            self.v2 = False
            self.source_format = f"openapi-{oa}"
        elif sw in ("2.0", 2.0):
            self.v2 = True
            self.source_format = "swagger-2.0"
        else:
            got = oa if oa is not None else sw
            raise OpenApiError(
                f"not OpenAPI 3.0/3.1 or Swagger 2.0 (openapi/swagger is {str(got)[:40]!r})",
                file=self.file,
                path="$",
            )

    def fail(self, what: str, where: str, base: str | None = None) -> OpenApiError:
        return OpenApiError(what, file=self.spec.shown(base or self.base), path=where)

    def note(self, line: str) -> None:
        if len(self.report) < 2000:
            self.report.append(line)

    def mapping(self, value: Any, where: str, base: str | None = None) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(f"expected a mapping, got {type(value).__name__}", where, base)
        return value

    # -- parameters and bodies ------------------------------------------------------------

    def v2_schema(self, p: dict[str, Any], base: str, where: str, describe: bool = True) -> Any:
        raw = {k: p[k] for k in _V2_SCHEMA_KEYS if k in p}
        if describe and isinstance(p.get("description"), str):
            raw["description"] = p["description"]
        return self.conv.convert(raw, base, where)

    def parameter(self, p: dict[str, Any], base: str, where: str) -> dict[str, Any] | None:
        name, loc = p.get("name"), p.get("in")
        if not isinstance(name, str) or loc not in _IN:
            self.note(f"{where}: parameter without a name or with in={str(loc)[:20]!r}; dropped")
            return None
        if loc == "header" and name.lower() in _IGNORED_HEADERS:
            return None
        out: dict[str, Any] = {"name": name, "in": loc}
        out["required"] = True if loc == "path" else p.get("required") is True
        style = "form" if loc in ("query", "cookie") else "simple"
        if self.v2:
            out["schema"] = self.v2_schema(p, base, where, describe=False)
            explode = style == "form"
            if p.get("type") == "array":
                cf = p.get("collectionFormat", "csv")
                mapped, explode = _COLLECTION.get(cf, (None, False))
                style = mapped or style
        else:
            schema = p.get("schema")
            if schema is None and isinstance(p.get("content"), dict) and p["content"]:
                media = next(iter(p["content"].values()))
                schema = media.get("schema") if isinstance(media, dict) else None
            out["schema"] = self.conv.convert(schema if schema is not None else {}, base, where)
            if isinstance(p.get("style"), str):
                style = p["style"]
            explode = p["explode"] if isinstance(p.get("explode"), bool) else style == "form"
        out["style"] = style
        out["explode"] = explode
        out["allow_reserved"] = p.get("allowReserved") is True
        out["description"] = clip(p.get("description") or "")
        out["deprecated"] = p.get("deprecated") is True
        return out

    def merged_params(
        self, lists: list[tuple[Any, str, str]]
    ) -> tuple[list[tuple[dict[str, Any], str, str]], list[dict[str, Any]]]:
        """Path-level then operation-level parameters, deref'd; the later replaces an earlier
        one of the same name and location. Swagger body/formData come back separately."""
        found: dict[tuple[str, str], tuple[dict[str, Any], str, str]] = {}
        v2_body: list[dict[str, Any]] = []
        for value, base, where in lists:
            if value is None:
                continue
            if not isinstance(value, list):
                raise self.fail("parameters must be a list", where, base)
            for i, raw in enumerate(value):
                at = f"{where}[{i}]"
                p, pbase = self.spec.deref(raw, base, at)
                if not isinstance(p, dict):
                    raise self.fail("a parameter must be a mapping", at, base)
                if self.v2 and p.get("in") in ("body", "formData"):
                    v2_body.append({"p": p, "base": pbase, "where": at})
                    continue
                found[(str(p.get("name")), str(p.get("in")))] = (p, pbase, at)
        return list(found.values()), v2_body

    def media(self, content: Any, base: str, where: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for mt, m in self.mapping(content, where, base).items():
            at = f"{where}{segment(mt)}"
            m = m if isinstance(m, dict) else {}
            entry: dict[str, Any] = {"schema": self.conv.convert(m.get("schema", {}), base, at)}
            enc = {}
            for prop, e in (m.get("encoding") or {}).items():
                if isinstance(e, dict):
                    enc[str(prop)] = {
                        k: e[k]
                        for k in ("contentType", "style", "explode", "allowReserved")
                        if isinstance(e.get(k), str | bool)
                    }
            if enc:
                entry["encoding"] = enc
            out[str(mt)] = entry
        return out

    def body_v3(self, raw: Any, base: str, where: str) -> dict[str, Any] | None:
        if raw is None:
            return None
        b, bbase = self.spec.deref(raw, base, where)
        if not isinstance(b, dict):
            raise self.fail("a requestBody must be a mapping", where, base)
        return {
            "required": b.get("required") is True,
            "description": clip(b.get("description") or ""),
            "content": self.media(b.get("content"), bbase, f"{where}.content"),
        }

    def body_v2(self, items: list[dict[str, Any]], consumes: list[str]) -> dict[str, Any] | None:
        body = [x for x in items if x["p"].get("in") == "body"]
        form = [x for x in items if x["p"].get("in") == "formData"]
        if body:
            x = body[-1]
            schema = self.conv.convert(x["p"].get("schema", {}), x["base"], x["where"])
            types = consumes or ["application/json"]
            return {
                "required": x["p"].get("required") is True,
                "description": clip(x["p"].get("description") or ""),
                "content": {mt: {"schema": schema} for mt in types},
            }
        if not form:
            return None
        props: dict[str, Any] = {}
        required: list[str] = []
        has_file = False
        for x in form:
            p = x["p"]
            if not isinstance(p.get("name"), str):
                continue
            has_file = has_file or p.get("type") == "file"
            props[p["name"]] = self.v2_schema(p, x["base"], x["where"])
            if p.get("required") is True:
                required.append(p["name"])
        multipart = has_file or (
            "multipart/form-data" in consumes
            and "application/x-www-form-urlencoded" not in consumes
        )
        mt = "multipart/form-data" if multipart else "application/x-www-form-urlencoded"
        form_schema: dict[str, Any] = {"type": "object", "properties": props}
        if required:
            form_schema["required"] = required
        return {
            "required": bool(required),
            "description": "",
            "content": {mt: {"schema": form_schema}},
        }

    def fields(self, body: dict[str, Any] | None, taken: set[str]) -> None:
        if not body or not body["content"]:
            return
        schema = next(iter(body["content"].values()))["schema"]
        props, required = self.properties(schema)
        out = []
        used = set(taken) | RESERVED_KEYS
        for prop in props:
            key = snake(prop)
            if not key or not key[0].isalpha() or len(key) > 64 or key in used:
                continue
            used.add(key)
            out.append({"key": key, "property": prop, "required": prop in required})
        body["fields"] = out

    def properties(self, schema: Any, depth: int = 0) -> tuple[list[str], set[str]]:
        """Top-level property names of a converted schema (through refs and allOf)."""
        schema = self.resolve_local(schema)
        if not isinstance(schema, dict) or depth > 8:
            return [], set()
        names = list(schema.get("properties") or {})
        req = set(schema.get("required") or [])
        for sub in schema.get("allOf") or []:
            n, r = self.properties(sub, depth + 1)
            names += [x for x in n if x not in names]
            req |= r
        return names, req

    def resolve_local(self, schema: Any) -> Any:
        for _ in range(self.spec.limits.max_ref_chain):
            if not (isinstance(schema, dict) and "$ref" in schema):
                break
            self.conv.drain()
            schema = self.conv.schemas.get(schema["$ref"].rpartition("/")[2])
        return schema

    # -- responses and operations ---------------------------------------------------------

    def responses(self, raw: Any, base: str, where: str, produces: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for code, r in self.mapping(raw, where, base).items():
            at = f"{where}{segment(str(code))}"
            r, rbase = self.spec.deref(r, base, at)
            if not isinstance(r, dict):
                continue
            resp: dict[str, Any] = {"description": clip(r.get("description") or "", 1024)}
            if self.v2:
                schema = r.get("schema")
                resp["content"] = (
                    {
                        mt: {"schema": self.conv.convert(schema, rbase, f"{at}.schema")}
                        for mt in produces or ["application/json"]
                    }
                    if schema is not None
                    else {}
                )
            else:
                resp["content"] = self.media(r.get("content"), rbase, f"{at}.content")
            if str(code) in NO_CONTENT and resp["content"]:
                self.note(f"{at}: a {code} answer has no content (RFC 9110); its schema dropped")
                resp["content"] = {}
            headers = {}
            for hname, h in self.mapping(r.get("headers"), f"{at}.headers", rbase).items():
                hat = f"{at}.headers{segment(hname)}"
                h, hbase = self.spec.deref(h, rbase, hat)
                if isinstance(h, dict):
                    s = self.v2_schema(h, hbase, hat) if self.v2 else h.get("schema", {})
                    if not self.v2:
                        s = self.conv.convert(s, hbase, hat)
                    headers[str(hname)] = {"schema": s}
            if headers:
                resp["headers"] = headers
            out[str(code)] = resp
        return out

    def operation(
        self, path: str, method: str, op: dict[str, Any], obase: str, item: dict[str, Any]
    ) -> dict[str, Any]:
        where = f"$.paths{segment(path)}.{method}"
        ibase = item["base"]
        params, v2_body = self.merged_params(
            [
                (item["node"].get("parameters"), ibase, f"$.paths{segment(path)}.parameters"),
                (op.get("parameters"), obase, f"{where}.parameters"),
            ]
        )
        plist = [x for p, b, w in params if (x := self.parameter(p, b, w)) is not None]
        declared = {p["name"] for p in plist if p["in"] == "path"}
        for name in dict.fromkeys(re.findall(r"\{([^{}]*)\}", path)):
            if name not in declared:  # a template the description forgot to declare
                self.note(f"{where}: path template {{{name}}} is not declared; taken as a string")
                plist.append(
                    {
                        "name": name,
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                        "style": "simple",
                        "explode": False,
                        "allow_reserved": False,
                        "description": "",
                        "deprecated": False,
                    }
                )
        for p, k in zip(plist, param_keys((p["name"], p["in"]) for p in plist), strict=True):
            p["key"] = k
        if self.v2:
            consumes = op.get("consumes") or self.root.get("consumes") or []
            body = self.body_v2(v2_body, [c for c in consumes if isinstance(c, str)])
            produces = op.get("produces") or self.root.get("produces") or []
            produces = [c for c in produces if isinstance(c, str)]
        else:
            body = self.body_v3(op.get("requestBody"), obase, f"{where}.requestBody")
            produces = []
        self.fields(body, {p["key"] for p in plist})
        servers = None
        if not self.v2:
            raw = op.get("servers") or item["node"].get("servers")
            servers = self.servers(raw, f"{where}.servers") if raw else None
            # Declared but none usable (DigitalOcean's presigned ``https://``): [] — the
            # operation then needs a granted base_url, not the service's default server.
        tags = op.get("tags")
        result: dict[str, Any] = {
            "operation_id": op["operationId"] if isinstance(op.get("operationId"), str) else None,
            "method": method.upper(),
            "path": path,
            "summary": clip(op.get("summary") or "", 1024),
            "description": clip(op.get("description") or ""),
            "tags": [str(t) for t in tags] if isinstance(tags, list) else [],
            "deprecated": op.get("deprecated") is True,
            "servers": servers,
            "security": self.requirements(op.get("security"), f"{where}.security"),
            "parameters": plist,
            "body": body,
            "responses": self.responses(op.get("responses"), obase, f"{where}.responses", produces),
        }
        result["pagination"] = infer_pagination(result, self.resolve_local)
        return result

    def build(self) -> OperationTable:
        info = self.mapping(self.root.get("info"), "$.info")
        servers = (
            self.v2_servers() if self.v2 else self.servers(self.root.get("servers"), "$.servers")
        )
        schemes = self.security_schemes()
        security = self.requirements(self.root.get("security"), "$.security") or []
        if self.auth and not schemes:
            for text in self.auth:
                sname, scheme = parse_auth(text)
                schemes[sname] = scheme
            security = [{n: []} for n in schemes]
        elif self.auth:
            self.note("--auth ignored: the description declares its own security schemes")
        found: list[tuple[str, str, dict[str, Any], str, dict[str, Any]]] = []
        for path, raw in self.mapping(self.root.get("paths"), "$.paths").items():
            at = f"$.paths{segment(path)}"
            if path.startswith("x-"):
                continue
            if not path.startswith("/"):
                self.note(f"{at}: a path must start with '/'; dropped")
                continue
            node, ibase = self.spec.deref(raw, self.base, at)
            node = self.mapping(node, at, ibase)
            item = {"node": node, "base": ibase}
            for method in METHODS:
                if method in node:
                    op, obase = self.spec.deref(node[method], ibase, f"{at}.{method}")
                    found.append(
                        (path, method, self.mapping(op, f"{at}.{method}", obase), obase, item)
                    )
        limit = 127 - len(self.name)
        suffixes = assign_suffixes([(p, m, o.get("operationId")) for p, m, o, _, _ in found], limit)
        ops: dict[str, Any] = {}
        ports: dict[str, tuple[list[str], list[str], str]] = {}
        for suffix, (path, method, op, obase, item) in zip(suffixes, found, strict=True):
            entry = self.operation(path, method, op, obase, item)
            credential_carriers(entry, schemes, security)
            ops[suffix] = entry
            keys = [p["key"] for p in entry["parameters"]]
            inports = ["trigger", "request", *keys, *(["body"] if entry["body"] else [])]
            if len(inports) > MAX_PORTS:
                self.note(f"{suffix}: {len(inports)} in-ports; only {MAX_PORTS} get a port")
                inports = inports[:MAX_PORTS]
            outports = ["response", "error", *(["item"] if entry["pagination"] else [])]
            line = one_line(entry["summary"] or entry["description"] or f"{method} {path}")
            ports[suffix] = (inports, outports, line)
        self.conv.drain()
        hosts = sorted(
            {
                h
                for s in [*servers, *(x for o in ops.values() for x in o["servers"] or [])]
                for h in server_hosts(s)
            }
        )
        table = {
            "format": FORMAT,
            "service": {
                "name": self.name,
                "title": one_line(str(info.get("title") or self.name), 200),
                "version": str(info.get("version") or ""),
                "source_format": self.source_format,
                "spec_sha256": self.spec.sha256(),
            },
            "servers": servers,
            "security_schemes": schemes,
            "security": security,
            "schemas": self.conv.schemas,
            "operations": ops,
        }
        return OperationTable(table=table, hosts=hosts, report=self.report, ports=ports)


def build_table(spec: SpecTree, *, name: str, auth: Sequence[str] = ()) -> OperationTable:
    """The operation table of ``spec`` for the pack ``name`` (abi/HTTP_API.md)."""
    try:
        return _Builder(spec, name, auth).build()
    except RecursionError as exc:  # pragma: no cover - depth is bounded by the loader
        raise OpenApiError("the description nests too deeply", file=str(spec.root_file)) from exc
