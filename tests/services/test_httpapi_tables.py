"""Hostile operation tables: each is refused at load (or at the operation's first use) with a
PackFormatError / HttpApiError naming the field, in bounded time — never a traceback from
below. Tables are written by hand (JSON text and bytes), not only through the helpers."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from svctest import op, param, table

from reflow._errors import HttpApiError, PackFormatError, ReflowError
from reflow._services import load_table
from reflow._services._request import prepare

HOSTS = ("api.example.com",)


def good() -> dict[str, Any]:
    return table({"get_x": op("GET", "/x/{id}", [param("id", "path", {"type": "string"})])})


def edit(path: str, value: Any) -> bytes:
    t = good()
    cur: Any = t
    parts = path.split(".")
    for part in parts[:-1]:
        cur = cur[int(part)] if isinstance(cur, list) else cur[part]
    last = parts[-1]
    if isinstance(cur, list):
        cur[int(last)] = value
    else:
        cur[last] = value
    return json.dumps(t).encode()


LOAD_ROWS = [
    (b"\xff\xfe{", "not UTF-8 JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "nests too deep"),
    (b'{"format": "reflow-http-api/1"', "not UTF-8 JSON"),
    (b"[]", "$: expected an object"),
    (
        edit("format", "reflow-http-api/3"),
        "format: 'reflow-http-api/3' is not a known table format",
    ),
    (edit("format", 7), "format: expected a string, got an integer"),
    (edit("servers", [{"url": "https://evil.example.com"}]), "host 'evil.example.com'"),
    (edit("servers", [{"url": "ftp://api.example.com"}]), "the scheme must be http or https"),
    (edit("servers", [{"url": "https://{h}/v1", "variables": {}}]), "names variable {h}"),
    (
        edit(
            "servers",
            [
                {
                    "url": "https://{h}/",
                    "variables": {
                        "h": {
                            "default": "api.example.com",
                            "enum": ["api.example.com", "evil.example.com"],
                        }
                    },
                }
            ],
        ),
        "host 'evil.example.com'",
    ),
    (
        edit(
            "servers",
            [
                {
                    "url": "https://{a}{b}{c}/",
                    "variables": {
                        k: {"default": "x", "enum": [str(i) for i in range(10)]} for k in "abc"
                    },
                }
            ],
        ),
        "allow more than 256 URLs",
    ),
    (edit("operations.get_x.method", "get"), "operations.get_x.method: 'get' is not one of"),
    (edit("operations.get_x.method", "BREW"), "'BREW' is not one of"),
    (edit("operations.get_x.path", "x/{id}"), "must start with '/'"),
    (edit("operations", {"Bad-Id": op("GET", "/")}), "suffix must match"),
    (edit("operations", []), "operations: expected an object, got an array"),
    (edit("security_schemes", {"k": {"type": "magic"}}), "'magic' is not apiKey"),
    (
        edit("security_schemes", {"k": {"type": "apiKey", "in": "body", "name": "x"}}),
        "'body' is not header, query or cookie",
    ),
    (
        edit("security_schemes", {"k": {"type": "apiKey", "in": "header", "name": "a\r\nb"}}),
        "is not a header name",
    ),
    (
        edit(
            "security_schemes",
            {
                "k": {
                    "type": "oauth2",
                    "flows": {"clientCredentials": {"tokenUrl": "https://evil.example.com/token"}},
                }
            },
        ),
        "tokenUrl: host 'evil.example.com'",
    ),
    (edit("security", [{"nope": []}]), "names scheme 'nope' that is not defined"),
]


@pytest.mark.parametrize(("text", "fragment"), LOAD_ROWS)
def test_bad_tables_refused_at_load(text: bytes, fragment: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(PackFormatError) as info:
        load_table(text, pack="acme/svc", hosts=HOSTS)
    assert fragment in str(info.value)
    assert time.monotonic() - t0 < 2


OP_ROWS = [
    (op("GET", "/x/{id}"), "template {id} has no path parameter"),
    (op("GET", "/x", [param("id", "path", {})]), "path parameter 'id' is not in the path"),
    (op("GET", "/x/{id}/{id}", [param("id", "path", {})]), "names a path parameter twice"),
    (op("GET", "/x/{id", [param("id", "query", {})]), "unbalanced"),
    (op("GET", "/x", [param("a", "query", {}, style="matrix")]), "'matrix' is not a query style"),
    (op("GET", "/x", [param("a", "body", {})]), "'body' is not path, query, header or cookie"),
    (op("GET", "/x", [param("a", "query", {}, key="Trigger")]), "is not an identifier"),
    (op("GET", "/x", [param("a", "query", {}, key="request")]), "'request' is reserved"),
    (
        op("GET", "/x", [param("a", "query", {}), param("b", "query", {}, key="a")]),
        "'a' is used twice",
    ),
    (op("GET", "/x/{id}", [param("id", "path", {}, required=False)]), "must be required"),
    (op("GET", "/x", [param("a", "query", 5)]), "expected a JSON Schema"),
    (op("GET", "/x", [param("a\nb", "header", {}, key="ab")]), "is not a header name"),
    (op("GET", "/x", responses={"299x": {}}), "is not a status"),
    (op("GET", "/x", pagination={"style": "magic"}), "'magic' is not link, cursor"),
    (op("GET", "/x", pagination={"style": "cursor", "param": "c"}), "pagination.next: is required"),
    (op("POST", "/x", body={"content": {}}), "names no media type"),
    (op("POST", "/x", body={"content": {"not a media type": {}}}), "is not a media type"),
    (op("GET", "/x", servers=[{"url": "https://evil.example.com"}]), "host 'evil.example.com'"),
    (op("GET", "/x", description=7), "description: expected a string"),
]


@pytest.mark.parametrize(("operation", "fragment"), OP_ROWS)
def test_bad_operations_refused_at_first_use(operation: dict[str, Any], fragment: str) -> None:
    t = load_table(json.dumps(table({"op": operation})), pack="acme/svc", hosts=HOSTS)
    with pytest.raises(PackFormatError) as info:
        t.operation("op")
    assert fragment in str(info.value) and "operations.op" in str(info.value)


SCHEMA_ROWS = [
    ({"type": "nonsense"}, {"a": 1}, "is not a JSON Schema"),
    ({"$ref": "#/schemas/missing"}, {"a": 1}, "cannot validate"),
    ({"$ref": "#/schemas/loop"}, {"a": 1}, "recurse"),
    ({"type": "string", "pattern": "(("}, {"a": "x"}, "is not a JSON Schema"),
    ({"$ref": "https://example.com/remote.json"}, {"a": 1}, "cannot validate"),
]


@pytest.mark.parametrize(("schema", "values", "fragment"), SCHEMA_ROWS)
def test_hostile_schemas_fail_the_request_not_the_host(
    schema: Any, values: dict[str, Any], fragment: str
) -> None:
    t = table(
        {"op": op("GET", "/x", [param("a", "query", schema)])},
        schemas={"loop": {"$ref": "#/schemas/loop"}},
    )
    tbl = load_table(json.dumps(t), pack="acme/svc", hosts=HOSTS)
    t0 = time.monotonic()
    with pytest.raises(HttpApiError) as info:
        prepare(tbl, tbl.operation("op"), [values])
    assert fragment in str(info.value), str(info.value)
    assert time.monotonic() - t0 < 5
    assert isinstance(info.value, ReflowError)


def test_a_large_table_loads_lazily_and_fast() -> None:
    ops = {
        f"op_{i}": op("GET", f"/things/{i}/{{id}}", [param("id", "path", {"type": "string"})])
        for i in range(1123)
    }
    text = json.dumps(table(ops)).encode()
    load_table(text, pack="acme/svc", hosts=HOSTS)
    t0 = time.perf_counter()
    tbl = load_table(text, pack="acme/svc", hosts=HOSTS)
    elapsed = time.perf_counter() - t0
    assert not tbl._ops  # nothing compiled at load
    assert elapsed < 2  # bounded; bench_httpapi reports the real number
