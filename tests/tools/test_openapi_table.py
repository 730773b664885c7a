"""The operation table (abi/HTTP_API.md) generated from descriptions: one row per hazard
class of ``../shared/openapi/SOURCES.md`` (the spec and the operation that shows it), small
hand-written specs for each normalization rule, and template id stability."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reflow.abi._manifest_rules import TEMPLATE_ID_RE
from reflow.tools._openapi_ids import assign_suffixes, param_keys, snake, suffix_from_path
from reflow.tools._openapi_load import load_spec
from reflow.tools._openapi_table import OperationTable, build_table

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "openapi"
needs_shared = pytest.mark.skipif(
    not (SHARED / "SOURCES.md").is_file(), reason=f"{SHARED} (the shared OpenAPI specs) not found"
)


@functools.cache
def _gen(rel: str, auth: tuple[str, ...] = ()) -> OperationTable:
    return build_table(load_spec(SHARED / rel), name="acme/t", auth=auth)


def _op(t: dict[str, Any], suffix: str) -> dict[str, Any]:
    op: dict[str, Any] = t["operations"][suffix]
    return op


def _schema(t: dict[str, Any], s: Any) -> Any:
    while isinstance(s, dict) and "$ref" in s:
        s = t["schemas"][s["$ref"].rpartition("/")[2]]
    return s


def _ok_json(t: dict[str, Any], suffix: str, code: str = "200") -> Any:
    return _schema(t, _op(t, suffix)["responses"][code]["content"]["application/json"]["schema"])


def _walk(x: Any) -> Any:
    if isinstance(x, dict):
        yield x
        for v in x.values():
            yield from _walk(v)
    elif isinstance(x, list):
        for v in x:
            yield from _walk(v)


def _refs_are_local(t: dict[str, Any]) -> bool:
    return all(
        d["$ref"].startswith("#/schemas/") and d["$ref"][10:] in t["schemas"]
        for d in _walk(t)
        if isinstance(d.get("$ref"), str)
    )


Check = Callable[[dict[str, Any], OperationTable], Any]

# (hazard, spec file, operation suffix shown in the id, check(table, generated))
HAZARDS: list[tuple[str, str, str, Check]] = [
    (
        "op-level server with a variable, */* body",
        "github/api.github.com.json",
        "repos_upload_release_asset",
        lambda t, g: (
            _op(t, "repos_upload_release_asset")["servers"][0]["variables"]["origin"]["default"]
            == "https://uploads.github.com"
            and list(_op(t, "repos_upload_release_asset")["body"]["content"]) == ["*/*"]
            and "uploads.github.com" in g.hosts
        ),
    ),
    (
        "nullable -> type list; $ref keys in SCIM examples never resolved",
        "github/api.github.com.json",
        "scim_provision_and_invite_user",
        lambda t, g: (
            t["schemas"]["issue"]["properties"]["closed_at"]["type"] == ["string", "null"]
            and g.report == []
            and _refs_are_local(t)
        ),
    ),
    (
        "odd media types kept",
        "github/api.github.com.json",
        "markdown_render_raw",
        lambda t, g: (
            "text/x-markdown" in _op(t, "markdown_render_raw")["body"]["content"]
            and "text/html" in _op(t, "markdown_render_raw")["responses"]["200"]["content"]
        ),
    ),
    (
        "Link pagination (page/per_page)",
        "github/api.github.com.json",
        "issues_list_for_repo",
        lambda t, g: _op(t, "issues_list_for_repo")["pagination"] == {"style": "link"},
    ),
    (
        "form body with deepObject encodings; basic + bearer",
        "stripe/spec3.yaml",
        "post_customers",
        lambda t, g: (
            _op(t, "post_customers")["body"]["content"]["application/x-www-form-urlencoded"][
                "encoding"
            ]["address"]
            == {"style": "deepObject", "explode": True}
            and {f["key"] for f in _op(t, "post_customers")["body"]["fields"]} >= {"email", "name"}
            and set(t["security_schemes"]) == {"basicAuth", "bearerAuth"}
        ),
    ),
    (
        "multipart upload on an op-level server",
        "stripe/spec3.yaml",
        "post_files",
        lambda t, g: (
            list(_op(t, "post_files")["body"]["content"]) == ["multipart/form-data"]
            and _op(t, "post_files")["servers"] == [{"url": "https://files.stripe.com/"}]
        ),
    ),
    (
        "starting_after + has_more cursor pagination; anyOf kept",
        "stripe/spec3.yaml",
        "get_customers",
        lambda t, g: (
            _op(t, "get_customers")["pagination"]
            == {
                "style": "cursor",
                "param": "starting_after",
                "next": "/data/-1/id",
                "has_more": "/has_more",
                "items": "/data",
            }
            and any("anyOf" in d for d in _walk(t["schemas"]))
        ),
    ),
    (
        "Swagger formData -> urlencoded body with fields; OAuth2 accessCode",
        "slack/slack_web_openapi_v2.json",
        "chat_post_message",
        lambda t, g: (
            list(_op(t, "chat_post_message")["body"]["content"])
            == ["application/x-www-form-urlencoded"]
            and {"key": "channel", "property": "channel", "required": True}
            in _op(t, "chat_post_message")["body"]["fields"]
            and "authorizationCode" in t["security_schemes"]["slackAuth"]["flows"]
            and _op(t, "chat_post_message")["security"]
            == [{"slackAuth": ["chat:write:user", "chat:write:bot"]}]
        ),
    ),
    (
        "non-standard type arrays kept; cursor token pagination",
        "slack/slack_web_openapi_v2.json",
        "conversations_list",
        lambda t, g: (
            t["schemas"]["objs_team"]["properties"]["description"]["type"] == ["null", "string"]
            and _op(t, "conversations_list")["pagination"]
            == {
                "style": "token",
                "param": "cursor",
                "next": "/response_metadata/next_cursor",
                "items": "/channels",
            }
        ),
    ),
    (
        "path-level servers; paths ending in .json; form bodies",
        "twilio/twilio_api_v2010.json",
        "list_account",
        lambda t, g: (
            _op(t, "list_account")["path"] == "/2010-04-01/Accounts.json"
            and _op(t, "list_account")["servers"] == [{"url": "https://api.twilio.com"}]
            and sum(1 for o in t["operations"].values() if o["servers"]) == 197
            and "application/x-www-form-urlencoded" in _op(t, "create_account")["body"]["content"]
        ),
    ),
    (
        "duplicated operationId: the (path, method) sorting first keeps the plain id",
        "sendgrid/oai.yaml",
        "post_design",
        lambda t, g: (
            _op(t, "post_design")["path"] == "/designs"
            and _op(t, "post_design_post_designs_by_id")["path"] == "/designs/{id}"
            and t["servers"] == [{"url": "http://api.sendgrid.com/v3"}]
            and t["service"]["version"] == ""
        ),
    ),
    (
        "3.1 SSE responses, multipart uploads, deepObject query param",
        "openai/openapi.yaml",
        "create_chat_completion",
        lambda t, g: (
            "text/event-stream" in _op(t, "create_chat_completion")["responses"]["200"]["content"]
            and sum(
                1
                for o in t["operations"].values()
                if o["body"] and "multipart/form-data" in o["body"]["content"]
            )
            == 18
            and [
                p["style"]
                for p in _op(t, "list_paginated_fine_tuning_jobs")["parameters"]
                if p["key"] == "metadata"
            ]
            == ["deepObject"]
        ),
    ),
    (
        "multi-file tree, path-item methods by $ref, op-level server with a variable, SSE",
        "digitalocean/specification/DigitalOcean-public.v2.yaml",
        "agent_inference_create_chat_completion",
        lambda t, g: (
            len(t["operations"]) == 659
            and _op(t, "agent_inference_create_chat_completion")["servers"][0]["url"]
            == "https://{agent_url}"
            and "text/event-stream"
            in _op(t, "inference_create_chat_completion")["responses"]["200"]["content"]
            # the presigned upload's server ("https://") is dropped: it needs a granted base_url
            and len(g.report) == 1
            and "'https://' is neither absolute nor a path; dropped" in g.report[0]
            and _op(t, "inference_upload_batch_file")["servers"] == []
            and _refs_are_local(t)
        ),
    ),
    (
        "3.1 type arrays, multipart, OAuth2 flows + Bot apiKey",
        "discord/openapi.json",
        "upload_application_attachment",
        lambda t, g: (
            "multipart/form-data" in _op(t, "upload_application_attachment")["body"]["content"]
            and t["security_schemes"]["BotToken"]
            == {"type": "apiKey", "in": "header", "name": "Authorization"}
            and "clientCredentials" in t["security_schemes"]["OAuth2"]["flows"]
        ),
    ),
    (
        "unquoted integer response codes are strings",
        "asana/asana_oas.yaml",
        "get_access_requests",
        lambda t, g: list(_op(t, "get_access_requests")["responses"])[:2] == ["200", "400"],
    ),
    (
        "Notion-Version header parameter gets a key",
        "notion/notion-openapi.json",
        "get_user",
        lambda t, g: (
            {"name": "Notion-Version", "key": "notion_version", "in": "header"}.items()
            <= next(p for p in _op(t, "get_user")["parameters"] if p["in"] == "header").items()
        ),
    ),
    (
        "no servers, BearerToken apiKey, many media types, continue-token pagination, {path}",
        "kubernetes/swagger.json.unprocessed",
        "list_core_v1_namespaced_pod",
        lambda t, g: (
            t["servers"] == []
            and t["security_schemes"]["BearerToken"]["in"] == "header"
            and "application/json;stream=watch"
            in _op(t, "list_core_v1_namespaced_pod")["responses"]["200"]["content"]
            and _op(t, "list_core_v1_namespaced_pod")["pagination"]["param"] == "continue"
            and [
                p["key"]
                for p in _op(t, "connect_core_v1_get_namespaced_pod_proxy_with_path")["parameters"]
            ]
            == ["name", "namespace", "path", "path_query"]
            and len(t["operations"]) == 1123
        ),
    ),
    (
        "remote refs never fetched; every $ref local",
        "square/api.json",
        "list_payments",
        lambda t, g: _refs_are_local(t) and "squarecdn" not in json.dumps(t["schemas"]),
    ),
    (
        "OAuth2 clientCredentials; sandbox + live servers",
        "paypal/checkout_orders_v2.json",
        "orders_create",
        lambda t, g: (
            "clientCredentials" in t["security_schemes"]["Oauth2"]["flows"]
            and g.hosts == ["api-m.paypal.com", "api-m.sandbox.paypal.com"]
        ),
    ),
    (
        "4 operations without operationId get method + path ids; regional servers",
        "intercom/api.intercom.io.yaml",
        "get_export_reporting_data_by_job_identifier",
        lambda t, g: (
            sorted(k for k, o in t["operations"].items() if o["operation_id"] is None)
            == [
                "get_download_reporting_data_by_job_identifier",
                "get_export_reporting_data_by_job_identifier",
                "get_export_reporting_data_get_datasets",
                "post_export_reporting_data_enqueue",
            ]
            and len(t["servers"]) == 3
        ),
    ),
    (
        "minimal Swagger 2.0: schemes + host + basePath",
        "petstore/petstore.json",
        "list_pets",
        lambda t, g: (
            t["servers"] == [{"url": "http://petstore.swagger.io/v1"}]
            and _op(t, "list_pets")["parameters"][0]["style"] == "form"
        ),
    ),
    (
        "allOf composition, no security",
        "petstore/petstore-expanded.yaml",
        "find_pets",
        lambda t, g: "allOf" in t["schemas"]["Pet"] and t["security"] == [],
    ),
    (
        "xml + json + form bodies, octet-stream upload, implicit OAuth2 + api_key",
        "petstore/openapi.yaml",
        "upload_file",
        lambda t, g: (
            list(_op(t, "add_pet")["body"]["content"])
            == ["application/json", "application/xml", "application/x-www-form-urlencoded"]
            and list(_op(t, "upload_file")["body"]["content"]) == ["application/octet-stream"]
            and "implicit" in t["security_schemes"]["petstore_auth"]["flows"]
            and "xml" not in json.dumps(t["schemas"]["Pet"])
        ),
    ),
    (
        "server URL with a {scheme} variable; form body",
        "uspto/uspto.yaml",
        "perform_search",
        lambda t, g: (
            t["servers"][0]["variables"]["scheme"]["enum"] == ["https", "http"]
            and g.hosts == ["developer.uspto.gov"]
            and list(_op(t, "perform_search")["body"]["content"])
            == ["application/x-www-form-urlencoded"]
        ),
    ),
]


@needs_shared
@pytest.mark.slow
@pytest.mark.parametrize(
    ("hazard", "spec", "suffix", "check"), HAZARDS, ids=[h[0] for h in HAZARDS]
)
def test_hazard(hazard: str, spec: str, suffix: str, check: Check) -> None:
    gen = _gen(spec)
    assert suffix in gen.table["operations"]
    assert check(gen.table, gen), hazard


@needs_shared
@pytest.mark.slow
def test_github_gets_auth_from_the_command_line() -> None:
    t = _gen("github/api.github.com.json", ("bearer",)).table
    assert t["security_schemes"] == {"bearer": {"type": "http", "scheme": "bearer"}}
    assert t["security"] == [{"bearer": []}]
    assert _gen("github/api.github.com.json").table["security_schemes"] == {}


# -- small hand-written specs, one rule each ---------------------------------------------------


def _write(tmp: Path, doc: dict[str, Any]) -> Path:
    path = tmp / "api.json"
    path.write_text(json.dumps(doc))
    return path


def _swagger(paths: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"swagger": "2.0", "info": {"title": "t", "version": "1"}, "paths": paths, **extra}


def _v3(paths: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": paths, **extra}


def _table(tmp: Path, doc: dict[str, Any], auth: tuple[str, ...] = ()) -> dict[str, Any]:
    table: dict[str, Any] = build_table(load_spec(_write(tmp, doc)), name="acme/t", auth=auth).table
    return table


OK = {"200": {"description": "ok"}}


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("csv", ("form", False)),
        ("ssv", ("spaceDelimited", False)),
        ("tsv", ("tabDelimited", False)),
        ("pipes", ("pipeDelimited", False)),
        ("multi", ("form", True)),
    ],
)
def test_swagger_collection_format_maps_to_style(
    tmp_path: Path, fmt: str, expected: tuple[str, bool]
) -> None:
    p = {
        "name": "ids",
        "in": "query",
        "type": "array",
        "items": {"type": "integer"},
        "collectionFormat": fmt,
    }
    t = _table(tmp_path, _swagger({"/x": {"get": {"parameters": [p], "responses": OK}}}))
    out = t["operations"]["get_x"]["parameters"][0]
    assert (out["style"], out["explode"]) == expected
    assert out["schema"] == {"type": "array", "items": {"type": "integer"}}


def test_swagger_formdata_file_becomes_multipart(tmp_path: Path) -> None:
    params = [
        {"name": "file", "in": "formData", "type": "file", "required": True},
        {"name": "title", "in": "formData", "type": "string"},
    ]
    t = _table(tmp_path, _swagger({"/up": {"post": {"parameters": params, "responses": OK}}}))
    body = t["operations"]["post_up"]["body"]
    schema = body["content"]["multipart/form-data"]["schema"]
    assert schema["properties"]["file"] == {"type": "string", "format": "binary"}
    assert schema["required"] == ["file"] and body["required"] is True
    assert [f["key"] for f in body["fields"]] == ["file", "title"]


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string", "nullable": True}, {"type": ["string", "null"]}),
        ({"type": ["integer", "null"]}, {"type": ["integer", "null"]}),
        (
            {"type": "string", "enum": ["a"], "nullable": True},
            {"type": ["string", "null"], "enum": ["a", None]},
        ),
        (
            {"allOf": [{"type": "string"}], "nullable": True},
            {"anyOf": [{"type": "null"}, {"allOf": [{"type": "string"}]}]},
        ),
        ({"type": "file"}, {"type": "string", "format": "binary"}),
        ({"maximum": 5, "exclusiveMaximum": True}, {"exclusiveMaximum": 5}),
        ({"minimum": 1, "exclusiveMinimum": False}, {"minimum": 1}),
        ({"items": [{"type": "string"}]}, {"prefixItems": [{"type": "string"}]}),
        (
            {
                "type": "object",
                "example": {"a": 1},
                "xml": {"name": "x"},
                "x-go": 1,
                "discriminator": {"propertyName": "k"},
                "externalDocs": {},
            },
            {"type": "object"},
        ),
        (
            {"type": "object", "properties": {"$ref": {"type": "string"}}},
            {"type": "object", "properties": {"$ref": {"type": "string"}}},
        ),
        ({"required": True, "type": "string"}, {"type": "string"}),
        ({"type": "date"}, {}),
        ({"minLength": -1, "pattern": 5}, {}),
    ],
)
def test_schema_conversion(tmp_path: Path, schema: Any, expected: Any) -> None:
    ok = {"200": {"description": "ok", "content": {"application/json": {"schema": schema}}}}
    t = _table(tmp_path, _v3({"/x": {"get": {"responses": ok}}}))
    assert (
        t["operations"]["get_x"]["responses"]["200"]["content"]["application/json"]["schema"]
        == expected
    )


def test_servers_variables_and_hosts(tmp_path: Path) -> None:
    servers = [
        {
            "url": "https://{region}.api.test/{v}",
            "variables": {
                "region": {"default": "eu", "enum": ["eu", "us"]},
                "v": {"default": "v1"},
            },
        },
        {"url": "/relative"},
    ]
    item = {"servers": [{"url": "https://upload.api.test"}], "get": {"responses": OK}}
    gen = build_table(
        load_spec(_write(tmp_path, _v3({"/x": item}, servers=servers))), name="acme/t"
    )
    assert gen.hosts == ["eu.api.test", "upload.api.test", "us.api.test"]
    assert gen.table["servers"][1] == {"url": "/relative"}
    assert gen.table["operations"]["get_x"]["servers"] == [{"url": "https://upload.api.test"}]


@pytest.mark.parametrize(
    ("auth", "schemes"),
    [
        (("bearer",), {"bearer": {"type": "http", "scheme": "bearer"}}),
        (("basic",), {"basic": {"type": "http", "scheme": "basic"}}),
        (("apikey:header:X-Key",), {"apikey": {"type": "apiKey", "in": "header", "name": "X-Key"}}),
        (
            ("apikey:query:api_key",),
            {"apikey": {"type": "apiKey", "in": "query", "name": "api_key"}},
        ),
    ],
)
def test_auth_from_the_command_line(tmp_path: Path, auth: tuple[str, ...], schemes: Any) -> None:
    t = _table(tmp_path, _v3({"/x": {"get": {"responses": OK}}}), auth=auth)
    assert t["security_schemes"] == schemes
    assert t["security"] == [{next(iter(schemes)): []}]


def test_parameter_keys_and_body_fields(tmp_path: Path) -> None:
    params = [
        {"name": "body", "in": "query", "schema": {"type": "string"}},
        {"name": "X-Request-Id", "in": "header", "schema": {"type": "string"}},
        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
        {"name": "id", "in": "query", "schema": {"type": "string"}},
        {"name": "page[size]", "in": "query", "schema": {"type": "integer"}},
        {"name": "Accept", "in": "header", "schema": {"type": "string"}},
    ]
    body = {
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["channel"],
                    "properties": {
                        "channel": {"type": "string"},
                        "id": {"type": "string"},
                        "trigger": {},
                    },
                }
            }
        }
    }
    t = _table(
        tmp_path,
        _v3({"/x/{id}": {"post": {"parameters": params, "requestBody": body, "responses": OK}}}),
    )
    op = t["operations"]["post_x_by_id"]
    assert [p["key"] for p in op["parameters"]] == [
        "body_param",
        "x_request_id",
        "id",
        "id_query",
        "page_size",
    ]
    assert op["body"]["fields"] == [{"key": "channel", "property": "channel", "required": True}]


# -- template ids ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation_id", "method", "path", "expected"),
    [
        ("issues/list-for-repo", "get", "/x", "issues_list_for_repo"),
        ("getHTTPInfo", "get", "/x", "get_http_info"),
        ("GetV1Users", "get", "/x", "get_v1_users"),
        ("3dSecure.create", "post", "/x", "op_3d_secure_create"),
        ("../../etc/passwd", "get", "/x", "etc_passwd"),
        ("🙂🙂", "get", "/me/{id}", "get_me_by_id"),
        (None, "get", "/me/{id}", "get_me_by_id"),
        (None, "delete", "/", "delete"),
        ("a\x00b\nc", "get", "/x", "a_b_c"),
    ],
)
def test_suffix_rules(operation_id: str | None, method: str, path: str, expected: str) -> None:
    assert assign_suffixes([(path, method, operation_id)], 100) == [expected]


def test_duplicates_and_long_ids_are_deterministic() -> None:
    ops = [
        ("/b", "post", "same"),
        ("/a", "get", "same"),
        ("/c", "get", "x" * 300),
        ("/a", "post", "same"),
    ]
    got = assign_suffixes(ops, 60)
    assert got[1] == "same"  # (/a, get) sorts first
    assert got[3] == "same_post_a" and got[0] == "same_post_b"
    assert len(got[2]) == 60 and got[2][-8:].isalnum() and got[2][-9] == "_"
    assert got == assign_suffixes(list(ops), 60)
    assert all(TEMPLATE_ID_RE.fullmatch(f"acme/t/{s}") for s in got)


def test_param_key_rules() -> None:
    keys = param_keys(
        [
            ("trigger", "query"),
            ("_http", "query"),
            ("9lives", "query"),
            ("", "query"),
            ("a", "query"),
            ("a", "header"),
            ("a", "header"),
        ]
    )
    assert keys == ["trigger_param", "http", "p_9lives", "param", "a", "a_header", "a_header_2"]
    assert snake("Intercom-Version") == "intercom_version"
    assert suffix_from_path("GET", "/v1/{org-id}/things.json") == "get_v1_by_org_id_things_json"


def _spec_with(ops: dict[str, Any]) -> dict[str, Any]:
    return _v3({p: {m: {"operationId": oid, "responses": OK}} for (p, m), oid in ops.items()})


def test_ids_are_stable(tmp_path: Path) -> None:
    base = {
        ("/a", "get"): "listA",
        ("/b", "get"): "getB",
        ("/b", "post"): "getB",
        ("/c", "put"): None,
    }
    gen1 = build_table(load_spec(_write(tmp_path, _spec_with(base))), name="acme/t")
    gen2 = build_table(load_spec(_write(tmp_path, _spec_with(base))), name="acme/t")
    assert gen1.to_bytes() == gen2.to_bytes()
    more = {**base, ("/d", "get"): "newOne", ("/e", "patch"): None}
    gen3 = build_table(load_spec(_write(tmp_path, _spec_with(more))), name="acme/t")
    old = {(o["path"], o["method"]): k for k, o in gen1.table["operations"].items()}
    new = {(o["path"], o["method"]): k for k, o in gen3.table["operations"].items()}
    assert all(new[key] == suffix for key, suffix in old.items())
    assert set(new.values()) - set(old.values()) == {"new_one", "patch_e"}


@needs_shared
@pytest.mark.slow
def test_shared_spec_ids_are_stable_across_regeneration() -> None:
    a = build_table(load_spec(SHARED / "sendgrid/oai.yaml"), name="acme/sendgrid").to_bytes()
    b = build_table(load_spec(SHARED / "sendgrid/oai.yaml"), name="acme/sendgrid").to_bytes()
    assert a == b
