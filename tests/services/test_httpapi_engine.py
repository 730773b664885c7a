"""The http-api engine end to end: signed packs of hand-written tables, real uvicorn on
127.0.0.1 (reflow.testing.spec_server), real httpx, real graphs."""

from __future__ import annotations

import time
from typing import Any

import pytest
from svctest import HttpApiGrants, Packs, op, param, run_node, table

from reflow import Message
from reflow.library import describe_template
from reflow.testing import spec_server

PET = {
    "type": "object",
    "required": ["id", "name"],
    "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
}


def petstore() -> dict[str, Any]:
    return table(
        {
            "show_pet_by_id": op(
                "GET",
                "/pets/{petId}",
                [
                    param(
                        "petId",
                        "path",
                        {"type": "integer", "minimum": 1},
                        key="pet_id",
                        description="The id of the pet",
                    ),
                    param(
                        "fields",
                        "query",
                        {"type": "array", "items": {"type": "string"}},
                        style="form",
                        explode=False,
                    ),
                    param(
                        "status",
                        "query",
                        {"type": "string", "enum": ["available", "sold"], "default": "available"},
                    ),
                ],
                responses={
                    "200": {"content": {"application/json": {"schema": {"$ref": "#/schemas/Pet"}}}}
                },
                summary="Info for a specific pet",
            ),
        },
        schemas={"Pet": PET},
    )


def with_server(t: dict[str, Any], url: str) -> dict[str, Any]:
    t = dict(t)
    t["servers"] = [{"url": url}]
    return t


def test_petstore_get_with_path_and_query(packs: Packs) -> None:
    t = petstore()
    with spec_server(t) as srv:
        packs.load(with_server(t, srv.url), srv.url)
        out, failures = run_node(
            "acme/svc/show_pet_by_id", {"pet_id": 7, "fields": ["a", "b"], "status": "sold"}
        )
        assert not failures, failures
        resp = out["response"][0]["data"]
        assert resp["status"] == 200 and resp["body"] == {"id": 0, "name": "string"}
        assert srv.log[-1]["path"] == "/pets/7" and srv.log[-1]["query"] == "fields=a,b&status=sold"


def test_describe_shows_parameters(packs: Packs) -> None:
    t = petstore()
    packs.load(t, "https://api.example.com")
    d = describe_template("acme/svc/show_pet_by_id")
    assert d["config"]["pet_id"] == {
        "type": "integer",
        "in": "path",
        "name": "petId",
        "required": True,
        "description": "The id of the pet",
    }
    assert d["config"]["status"]["enum"] == ["available", "sold"]
    assert d["config"]["status"]["default"] == "available"
    assert d["doc"] == "Info for a specific pet" and d["method"] == "GET"


@pytest.mark.parametrize(
    ("config", "key", "fragment"),
    [
        ({"pet_id": 0}, "pet_id", "breaks rule 'minimum'"),
        ({"pet_id": "x"}, "pet_id", "breaks rule 'type'"),
        ({}, "pet_id", "key 'pet_id' is required"),
        ({"pet_id": 1, "status": "gone"}, "status", "breaks rule 'enum'"),
        ({"pet_id": 1, "fields": [1]}, "fields", "key 'fields'[0] breaks rule 'type'"),
        ({"pet_id": 1, "nope": 1}, "nope", "unknown key 'nope'"),
        ({"pet_id": 1, "_http": {"bogus": 1}}, "_http", "unknown '_http' setting 'bogus'"),
        ({"pet_id": 1, "_http": {"base_url": "http://evil.example"}}, "_http", "was not granted"),
    ],
)
def test_validation_fails_before_sending(
    packs: Packs, config: dict[str, Any], key: str, fragment: str
) -> None:
    t = petstore()
    with spec_server(t) as srv:
        packs.load(with_server(t, srv.url), srv.url)
        _out, failures = run_node("acme/svc/show_pet_by_id", config)
        assert failures and fragment in str(failures[0]), failures
        assert srv.total == 0


def slack() -> dict[str, Any]:
    body = {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["channel"],
                    "properties": {
                        "channel": {"type": "string"},
                        "text": {"type": "string"},
                        "unfurl_links": {"type": "boolean"},
                    },
                }
            }
        },
        "fields": [
            {"key": "channel", "property": "channel", "required": True},
            {"key": "text", "property": "text"},
        ],
    }
    return table(
        {
            "chat_post_message": op(
                "POST", "/chat.postMessage", body=body, security=[{"slackAuth": []}]
            )
        },
        schemes={"slackAuth": {"type": "apiKey", "in": "header", "name": "token"}},
    )


def test_slack_form_with_token_auth_and_request_port(
    packs: Packs, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = slack()
    monkeypatch.setenv("REFLOW_SECRET_ACME_SVC_SLACKAUTH", "xoxb-1")
    with spec_server(t, secrets={"slackAuth": "xoxb-1"}) as srv:
        packs.load(with_server(t, srv.url), srv.url)
        out, failures = run_node(
            "acme/svc/chat_post_message",
            {"channel": "C1"},
            initial={"request": Message.object({"text": "hi there"})},
        )
        assert not failures, failures
        assert out["response"][0]["data"]["status"] == 200
        assert srv.log[-1]["body"] == b"channel=C1&text=hi%20there"
        monkeypatch.setenv("REFLOW_SECRET_ACME_SVC_SLACKAUTH", "wrong")
        out, failures = run_node("acme/svc/chat_post_message", {"channel": "C1"})
        assert out["error"][0]["data"]["status"] == 401


def stripe() -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            "email": {"type": "string"},
            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
            "balance": {"type": "integer"},
        },
    }
    body = {
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": schema,
                "encoding": {"metadata": {"style": "deepObject", "explode": True}},
            }
        },
        "fields": [{"key": "email", "property": "email"}],
    }
    return table(
        {
            "post_customers": op(
                "POST",
                "/v1/customers",
                [param("expand", "query", {"type": "object"}, style="deepObject", explode=True)],
                body=body,
            )
        },
        schemes={"basicAuth": {"type": "http", "scheme": "basic"}},
        security=[{"basicAuth": []}],
    )


def test_stripe_form_deep_object_basic_auth(packs: Packs, monkeypatch: pytest.MonkeyPatch) -> None:
    t = stripe()
    monkeypatch.setenv("REFLOW_SECRET_ACME_SVC_BASICAUTH", "sk_test:")
    with spec_server(t, secrets={"basicAuth": "sk_test:"}) as srv:
        packs.load(with_server(t, srv.url), srv.url)
        out, failures = run_node(
            "acme/svc/post_customers",
            {
                "email": "a@b.c",
                "body": {"metadata": {"plan": "pro"}, "balance": 5},
                "expand": {"x": "y"},
            },
        )
        assert not failures, failures
        assert out["response"][0]["data"]["status"] == 200
        assert srv.log[-1]["body"] == b"metadata[plan]=pro&balance=5&email=a%40b.c"
        assert srv.log[-1]["query"] == "expand[x]=y"


def test_twilio_path_level_servers_and_grants(packs: Packs) -> None:
    t = table(
        {
            "list_calls": op(
                "GET", "/2010-04-01/Calls.json", servers=[{"url": "https://api.twilio.com"}]
            )
        },
        servers=[{"url": "https://other.example.com"}],
    )
    with spec_server(t) as srv:
        pack = packs.load(
            t,
            srv.url,
            grants=HttpApiGrants(base_urls=(srv.url,)),
            hosts=["api.twilio.com", "other.example.com"],
        )
        assert pack.templates
        # the path-level server is used unless a granted base_url is named
        _out, failures = run_node("acme/svc/list_calls", {"_http": {"base_url": srv.url}})
        assert not failures, failures
        assert srv.log[-1]["path"] == "/2010-04-01/Calls.json"


def test_sse_response_is_a_stream(packs: Packs) -> None:
    t = table(
        {
            "create_chat_completion": op(
                "POST",
                "/chat/completions",
                body={"content": {"application/json": {"schema": {"type": "object"}}}},
                responses={
                    "200": {"content": {"text/event-stream": {"schema": {"type": "string"}}}}
                },
            )
        }
    )
    with spec_server(t) as srv:
        srv.sse_events = 5
        packs.load(with_server(t, srv.url), srv.url)
        out, failures = run_node("acme/svc/create_chat_completion", {"body": {"stream": True}})
        assert not failures, failures
        reader = out["response"][0].take_stream()
        frames = []
        while True:
            f = reader.recv(5000)
            frames.append(f)
            if f["kind"] not in ("begin", "data"):
                break
        assert frames[0]["kind"] == "begin" and frames[0]["metadata"]["status"] == 200
        data = b"".join(f["data"] for f in frames if f["kind"] == "data")
        assert data.count(b"data: ") == 6 and frames[-1]["kind"] == "end"


def test_multipart_upload_with_bytes(packs: Packs) -> None:
    schema = {
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": {"type": "string", "format": "binary"},
            "purpose": {"type": "string"},
        },
    }
    t = table(
        {
            "create_file": op(
                "POST",
                "/files",
                body={
                    "required": True,
                    "content": {"multipart/form-data": {"schema": schema}},
                    "fields": [
                        {"key": "file", "property": "file", "required": True},
                        {"key": "purpose", "property": "purpose"},
                    ],
                },
            )
        }
    )
    with spec_server(t) as srv:
        packs.load(with_server(t, srv.url), srv.url)
        _out, failures = run_node(
            "acme/svc/create_file",
            {"purpose": "fine-tune"},
            initial={"file": Message.bytes(b"\x00abc")},
        )
        assert not failures, failures
        body = srv.log[-1]["body"]
        assert b'name="file"; filename="file"' in body and b"\x00abc" in body
        assert b'name="purpose"' in body


@pytest.mark.parametrize("retry_after", ["1", "date"])
def test_429_retry_after_is_honoured(packs: Packs, retry_after: str) -> None:
    import email.utils

    t = petstore()
    with spec_server(t) as srv:
        packs.load(with_server(t, srv.url), srv.url)
        value = (
            email.utils.formatdate(time.time() + 2, usegmt=True)
            if retry_after == "date"
            else retry_after
        )
        srv.fail_next(1, 429, value)
        t0 = time.monotonic()
        _out, failures = run_node("acme/svc/show_pet_by_id", {"pet_id": 3})
        waited = time.monotonic() - t0
        assert not failures, failures
        assert srv.requests["show_pet_by_id"] == 2
        assert waited >= 0.9  # it waited what the server asked (an HTTP date has 1 s grain)


def test_5xx_retries_then_error_port(packs: Packs) -> None:
    t = petstore()
    with spec_server(t) as srv:
        packs.load(with_server(t, srv.url), srv.url)
        srv.fail_next(5, 503)
        out, failures = run_node("acme/svc/show_pet_by_id", {"pet_id": 3, "_http": {"retries": 2}})
        assert out["error"][0]["data"]["status"] == 503 and srv.total == 3
        srv.fail_next(5, 503)
        out, failures = run_node(
            "acme/svc/show_pet_by_id", {"pet_id": 3, "_http": {"retries": 0}}, wire_error=False
        )
        assert "answered 503" in str(failures[0])


def test_rate_limit_per_service(packs: Packs) -> None:
    t = petstore()
    with spec_server(t) as srv:
        packs.load(
            with_server(t, srv.url), srv.url, grants=HttpApiGrants(rate_limit=10, rate_burst=1)
        )
        t0 = time.monotonic()
        _out, _failures = run_node(
            "acme/svc/show_pet_by_id", {"pet_id": 3}, initial={"trigger": Message.flow()}
        )
        for _ in range(4):
            _out2, _f2 = run_node("acme/svc/show_pet_by_id", {"pet_id": 3})
        assert time.monotonic() - t0 >= 0.35 and srv.total == 5


@pytest.mark.parametrize("style", ["link", "cursor", "token", "page"])
def test_pagination_pages_and_items(packs: Packs, style: str) -> None:
    pag: dict[str, Any] = {"style": style}
    if style == "cursor":
        pag.update(param="starting_after", next="/next", has_more="/has_more", items="/data")
    elif style == "token":
        pag.update(param="cursor", next="/meta/next_cursor", items="/members")
    elif style == "page":
        pag.update(param="page", items="")
    params = [param(pag.get("param", "page"), "query", {"type": "string"})]
    t = table({"list_items": op("GET", "/items", params, pagination=pag)})
    with spec_server(t) as srv:
        srv.pages = 3
        packs.load(with_server(t, srv.url), srv.url, item=True)
        out, failures = run_node(
            "acme/svc/list_items",
            {"_http": {"paginate": "items"}},
            ports=("response", "error", "item"),
        )
        assert not failures, failures
        pages = [m["data"]["page"] for m in out["item"]]
        assert pages == [1, 1, 2, 2, 3, 3]
        out, failures = run_node(
            "acme/svc/list_items",
            {"_http": {"paginate": "pages", "max_pages": 2}},
            ports=("response", "error", "item"),
        )
        assert len(out["response"]) == 2


def test_oauth2_client_credentials_and_expired_token(
    packs: Packs, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = petstore()
    with spec_server(t) as srv:
        t2 = with_server(t, srv.url)
        t2["security_schemes"] = {
            "oauth": {
                "type": "oauth2",
                "flows": {
                    "clientCredentials": {"tokenUrl": srv.url + "/oauth/token", "scopes": {}}
                },
            }
        }
        t2["security"] = [{"oauth": []}]
        srv.table = __import__("reflow._services", fromlist=["load_table"]).load_table(
            __import__("json").dumps(t2), pack="spec", hosts=("*",)
        )
        srv.secrets = {"oauth": "cid:csecret"}
        monkeypatch.setenv("REFLOW_SECRET_ACME_SVC_OAUTH", "cid:csecret")
        packs.load(t2, srv.url)
        out, failures = run_node("acme/svc/show_pet_by_id", {"pet_id": 2})
        assert not failures, failures
        srv.expire_tokens()
        out, failures = run_node("acme/svc/show_pet_by_id", {"pet_id": 2})
        assert not failures, failures
        assert out["response"][0]["data"]["status"] == 200


def test_missing_credential_names_the_variable(packs: Packs) -> None:
    t = slack()
    with spec_server(t) as srv:
        packs.load(with_server(t, srv.url), srv.url)
        _out, failures = run_node("acme/svc/chat_post_message", {"channel": "C"})
        assert "REFLOW_SECRET_ACME_SVC_SLACKAUTH" in str(failures[0]) and srv.total == 0
