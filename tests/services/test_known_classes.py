"""Issue #11: the classes of failure once listed in ``KNOWN`` (test_all_operations.py), each
as hand-written schemas, tables and descriptions — not the shared specs — so a new spec with
the same shape is met too: instances the generator must meet, answers with no content, the
spec server's parsing of exploded form objects, allOf-typed multipart parts and empty bodies,
pages under ``oneOf``, and an OAuth2 ``tokenUrl`` on the spec's own host."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from reflow._services import HttpApiGrants, load_table
from reflow._services._auth import token_url
from reflow._services._instances import instance_for
from reflow.testing import spec_server
from reflow.tools._openapi_load import load_spec
from reflow.tools._openapi_table import build_table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from svctest import Packs, op, param, run_node, table

S = {"type": "string"}
NULL_DEFAULT_ONEOF = {"default": None, "oneOf": [S, {"type": "array", "items": S, "minItems": 1}]}
# (id, schema, shared schemas, an extra check of the value)
INSTANCES: list[tuple[str, Any, dict[str, Any], Any]] = [
    (
        "null-default-in-oneOf",
        {"type": "object", "properties": {"stop": NULL_DEFAULT_ONEOF}},
        {},
        None,
    ),
    (
        "null-default-on-object",
        {"type": "object", "properties": {"n": {"default": None, "type": "object"}}},
        {},
        None,
    ),
    (
        "empty-default-under-pattern",
        {"type": "string", "default": "", "pattern": "^[a-z]+@[a-z]+\\.[a-z]{2,}$"},
        {},
        None,
    ),
    (
        "allOf-property-narrowed-by-a-ref",
        {
            "allOf": [
                {"$ref": "#/schemas/Task"},
                {"properties": {"kind": {"type": ["string", "null"]}}},
            ]
        },
        {
            "Task": {
                "type": "object",
                "properties": {"kind": {"enum": ["a", "b"], "type": "string"}},
            }
        },
        None,
    ),
    (
        "allOf-enums-intersected",
        {"allOf": [{"enum": ["x", "y", "z"]}, {"enum": ["z", "y"]}]},
        {},
        lambda v: v == "y",
    ),
    (
        "contradicting-allOf-in-an-optional-property",
        {
            "type": "object",
            "required": ["id"],
            "properties": {
                "id": S,
                "kind": {"allOf": [{"enum": ["soft"]}, {"enum": ["hard"]}]},
            },
        },
        {},
        lambda v: "kind" not in v,
    ),
    (
        "unsatisfiable-items-of-an-optional-array",
        {
            "type": "object",
            "properties": {
                "rows": {
                    "type": "array",
                    "items": {
                        "allOf": [
                            {"properties": {"t": {"type": "integer"}}},
                            {"properties": {"t": {"type": "string"}}, "required": ["t"]},
                        ]
                    },
                }
            },
        },
        {},
        None,
    ),
    (
        "not-two-keys-together",
        {
            "type": "object",
            "properties": {
                "mask": {
                    "type": "object",
                    "properties": {"file_id": S, "image_url": S},
                    "not": {"required": ["file_id", "image_url"]},
                }
            },
        },
        {},
        None,
    ),
    (
        "minProperties-from-additionalProperties",
        {
            "type": "object",
            "required": ["config"],
            "properties": {
                "config": {
                    "type": "object",
                    "minProperties": 2,
                    "additionalProperties": {"type": "integer", "minimum": 3},
                }
            },
        },
        {},
        lambda v: len(v["config"]) == 2,
    ),
    (
        "minProperties-from-propertyNames-enum",
        {"type": "object", "minProperties": 1, "propertyNames": {"enum": ["0", "1"]}},
        {},
        lambda v: set(v) <= {"0", "1"} and v,
    ),
    (
        "uniqueItems-minItems-with-a-pattern",
        {
            "type": "array",
            "minItems": 3,
            "uniqueItems": True,
            "items": {"$ref": "#/schemas/Snowflake"},
        },
        {"Snowflake": {"type": "string", "pattern": "^(0|[1-9][0-9]*)$"}},
        lambda v: len(v) == 3,
    ),
    (
        "uniqueItems-of-enum-and-integers",
        {
            "type": "object",
            "required": ["e", "n"],
            "properties": {
                "e": {
                    "type": "array",
                    "minItems": 2,
                    "uniqueItems": True,
                    "items": {"enum": [1, 2]},
                },
                "n": {
                    "type": "array",
                    "minItems": 4,
                    "uniqueItems": True,
                    "items": {"type": "integer"},
                },
            },
        },
        {},
        None,
    ),
    (
        "enum-value-of-the-wrong-type-skipped",
        {"type": "integer", "enum": ["1", 2]},
        {},
        lambda v: v == 2,
    ),
]


@pytest.mark.parametrize(
    ("schema", "schemas", "check"), [r[1:] for r in INSTANCES], ids=[r[0] for r in INSTANCES]
)
def test_instances_meet_their_schema(schema: Any, schemas: dict[str, Any], check: Any) -> None:
    t0 = time.perf_counter()
    value = instance_for(schema, schemas)
    assert time.perf_counter() - t0 < 2
    errors = list(Draft202012Validator({**schema, "schemas": schemas}).iter_errors(value))
    assert not errors, (value, errors[0].message)
    assert check is None or check(value), value
    assert instance_for(schema, schemas) == value  # deterministic


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#/schemas/Loop"},  # refers to itself
        {"allOf": [{"$ref": "#/schemas/Loop"}, {"not": {}}]},  # nothing is valid
        {"type": "array", "minItems": 50, "uniqueItems": True, "items": {"enum": [1]}},
        {"type": "string", "pattern": "(" * 300 + ")" * 300},
    ],
    ids=["self-ref", "nothing-valid", "unique-impossible", "deep-pattern"],
)
def test_unmeetable_schemas_end_in_bounded_time(schema: Any) -> None:
    schemas = {"Loop": {"type": "object", "properties": {"next": {"$ref": "#/schemas/Loop"}}}}
    t0 = time.perf_counter()
    instance_for(schema, schemas)  # a best effort; never an exception or a hang
    assert time.perf_counter() - t0 < 5


@pytest.mark.parametrize("status", ["204", "205", "304"])
def test_no_content_statuses_lose_their_schema(tmp_path: Path, status: str) -> None:
    obj = {"content": {"application/json": {"schema": {"type": "object"}}}}
    doc = {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "servers": [{"url": "https://api.example.com"}],
        "paths": {"/x": {"delete": {"responses": {status: {"description": "", **obj}}}}},
    }
    (tmp_path / "api.json").write_text(json.dumps(doc))
    gen = build_table(load_spec(tmp_path / "api.json"), name="acme/t")
    (entry,) = gen.table["operations"].values()
    assert entry["responses"][status]["content"] == {}
    assert any(f"a {status} answer has no content" in n for n in gen.report)


def _oauth_table(token: str) -> dict[str, Any]:
    return table(
        {"me": op("GET", "/users/@me")},
        servers=[{"url": "https://api.example.com/api/v10"}],
        schemes={"o": {"type": "oauth2", "flows": {"clientCredentials": {"tokenUrl": token}}}},
        security=[{"o": []}],
    )


@pytest.mark.parametrize(
    ("token", "base", "expected"),
    [
        # on the spec's host: follows the granted base URL, path kept
        ("https://api.example.com/api/oauth2/token", "http://127.0.0.1:9/x/me",
         "http://127.0.0.1:9/api/oauth2/token"),
        # relative: on the request's server
        ("/oauth2/token", "http://127.0.0.1:9/x/me", "http://127.0.0.1:9/oauth2/token"),
        # on another host: stays where the spec says (and must be a granted host)
        ("https://auth.example.org/token", "http://127.0.0.1:9/x/me",
         "https://auth.example.org/token"),
        # the request goes to the spec's own server: nothing moves
        ("https://api.example.com/api/oauth2/token", "https://api.example.com/api/v10/users/@me",
         "https://api.example.com/api/oauth2/token"),
    ],
)  # fmt: skip
def test_token_url(token: str, base: str, expected: str) -> None:
    t = load_table(json.dumps(_oauth_table(token)), pack="acme/svc", hosts=("*",))
    assert token_url(t, t.operation("me"), token, base) == expected


def test_absolute_token_url_reaches_a_granted_spec_server(
    packs: Packs, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = _oauth_table("https://api.example.com/api/oauth2/token")
    monkeypatch.setenv("REFLOW_SECRET_ACME_SVC_O", "cid:csecret")
    with spec_server(t, secrets={"o": "cid:csecret"}, pack="acme/svc") as srv:
        packs.load(
            t, srv.url, grants=HttpApiGrants(base_urls=(srv.url,)), hosts=["api.example.com"]
        )
        out, failures = run_node("acme/svc/me", {"_http": {"base_url": srv.url}})
        assert not failures, failures
        assert out["response"][0]["data"]["status"] == 200
        assert len(srv._tokens) == 1  # issued by this server's /api/oauth2/token


FILTER = {
    "oneOf": [
        {"properties": {"user_id": S}, "required": ["user_id"], "additionalProperties": False},
        {"properties": {"email": S}, "required": ["email"], "additionalProperties": False},
    ]
}


@pytest.mark.parametrize(
    ("explode", "value", "query"),
    [(True, {"email": "a@b.c"}, "email=a%40b.c"), (False, {"user_id": "7"}, "filter=user_id,7")],
)
def test_form_object_query_parameters_reach_the_spec_server(
    packs: Packs, explode: bool, value: dict[str, str], query: str
) -> None:
    p = param("filter", "query", FILTER, required=True, style="form", explode=explode)
    t = table({"events": op("GET", "/events", [p])})
    with spec_server(t) as srv:
        packs.load({**t, "servers": [{"url": srv.url}]}, srv.url)
        out, failures = run_node("acme/svc/events", {"filter": value})
        assert not failures, failures
        assert out["response"][0]["data"]["status"] == 200, out
        assert srv.log[-1]["query"].replace("%2C", ",") == query


def test_multipart_json_part_typed_by_allof_and_an_empty_upload(packs: Packs) -> None:
    session = {"allOf": [{"$ref": "#/schemas/Session"}]}
    form = {"type": "object", "required": ["sdp"], "properties": {"sdp": S, "session": session}}
    ops = {
        "call": op(
            "POST",
            "/calls",
            body={
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": form,
                        "encoding": {"session": {"contentType": "application/json"}},
                    }
                },
                "fields": [
                    {"key": "sdp", "property": "sdp", "required": True},
                    {"key": "session", "property": "session", "required": False},
                ],
            },
        ),
        "upload": op(
            "PUT",
            "/upload",
            body={
                "required": True,
                "content": {"application/octet-stream": {"schema": {"type": "string"}}},
                "fields": [],
            },
        ),
    }
    schemas = {"Session": {"type": "object", "properties": {"model": S}, "required": ["model"]}}
    t = table(ops, schemas=schemas)
    with spec_server(t) as srv:
        packs.load({**t, "servers": [{"url": srv.url}]}, srv.url)
        out, failures = run_node("acme/svc/call", {"sdp": "v=0", "session": {"model": "m"}})
        assert not failures and out["response"][0]["data"]["status"] == 200, (out, failures)
        out, failures = run_node("acme/svc/upload", {"body": b""})
        assert not failures and out["response"][0]["data"]["status"] == 200, (out, failures)
        # the same request without its declared media type is still refused
        r = httpx.put(srv.url + "/upload", content=b"")
        assert r.status_code == 400 and "body" in r.text
