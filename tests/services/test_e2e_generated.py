"""Issue #11, test 5: graphs of generated templates (real shared specs, signed packs) against
spec servers of the same tables on 127.0.0.1."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reflow import Message, Network
from reflow._core._actor import Actor, ActorContext
from reflow._core._catalog import template_actor
from reflow._loader._packs import load_pack, unload_pack
from reflow._loader._trust import TrustStore
from reflow._services import HttpApiGrants
from reflow._services._auth import env_name
from reflow._services._spec_server import spec_server
from reflow.abi._signing import generate_key
from reflow.tools._openapi_pack import build_openapi_pack

sys.path.insert(0, str(Path(__file__).parent))
from allops import pack_table

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "openapi"
pytestmark = pytest.mark.skipif(
    not (SHARED / "SOURCES.md").is_file(), reason=f"{SHARED} (the shared specs) not found"
)
SECRET = "xoxb-SEKRIT-91e3-never-in-a-message"
SPECS = {
    "github": ("github/api.github.com.json", ["bearer"]),
    "slack": ("slack/slack_web_openapi_v2.json", []),
    "stripe": ("stripe/spec3.yaml", []),
    "twilio": ("twilio/twilio_api_v2010.json", []),
    "openai": ("openai/openapi.yaml", []),
    "paypal": ("paypal/checkout_orders_v2.json", []),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], TrustStore]:
    tmp = tmp_path_factory.mktemp("e2e")
    key = generate_key()
    store = TrustStore(tmp / "trust")
    store.add(key.public_key())
    paths = {
        name: build_openapi_pack(
            SHARED / rel, name=f"acme/{name}", out_dir=tmp / "dist", key=key, auth=auth
        ).path
        for name, (rel, auth) in SPECS.items()
    }
    return paths, store


class Service:
    def __init__(self, server: Any, name: str) -> None:
        self.server, self.name = server, name

    def http(self, **extra: Any) -> dict[str, Any]:
        return {"_http": {"base_url": self.server.url, **extra}}


@pytest.fixture
def serve(
    built: tuple[dict[str, Path], TrustStore], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Any]:
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))
    paths, store = built
    stack: list[Any] = []

    def start(name: str, secrets: dict[str, str]) -> Service:
        table = pack_table(paths[name])
        for scheme, value in secrets.items():
            monkeypatch.setenv(env_name(f"acme/{name}", scheme), value)
        cm = spec_server(table, secrets=secrets, pack=f"acme/{name}")
        server = cm.__enter__()
        stack.append(cm)
        load_pack(paths[name], trust=store, grants=HttpApiGrants(base_urls=(server.url,)))
        return Service(server, name)

    yield start
    for cm in reversed(stack):
        cm.__exit__(None, None, None)
    for name in SPECS:
        unload_pack(f"acme/{name}") if _loaded(f"acme/{name}") else None


def _loaded(name: str) -> bool:
    from reflow._loader._packs import list_packs

    return any(p.name == name for p in list_packs())


def run(
    nodes: dict[str, tuple[str, dict[str, Any]]],
    edges: list[tuple[str, str, str, str]],
    collect: list[tuple[str, str]],
    initial: list[tuple[str, str, Any]],
) -> tuple[dict[tuple[str, str], list[Any]], list[Any], list[str]]:
    net = Network()
    events = net.events()
    for node, (component, config) in nodes.items():
        if component not in net._actors if hasattr(net, "_actors") else True:
            net.register_actor(component, template_actor(component))
        net.add_node(node, component, config)
    for a, ap, b, bp in edges:
        net.add_connection(a, ap, b, bp)
    colls = {c: net.collect(*c) for c in collect}
    for node, port, msg in initial:
        net.add_initial(node, port, msg)
    try:
        summary = net.run(timeout=60)
    finally:
        net.shutdown()
    return (
        {k: list(c.messages) for k, c in colls.items()},
        list(summary.failures),
        [repr(e) for e in events],
    )


class OpenOnly(Actor):
    """The filter: keeps issues whose state is open, and turns each into a Slack text."""

    component = "test/open_only"
    inports = ["in"]
    outports = ["out"]

    def run(self, ctx: ActorContext) -> None:
        issues = ctx.inputs["in"]["data"]["body"]
        for issue in issues:
            if issue.get("state") != "closed":
                ctx.send({"out": Message.object({"text": f"#{issue['number']} {issue['title']}"})})
        ctx.done()


def test_github_issues_filter_slack_post_with_token_carrier(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gh = serve("github", {"bearer": "ghp-other-secret"})
    slack = serve("slack", {"slackAuth": SECRET})
    net = Network()
    events = net.events()
    net.register_actor("gh", template_actor("acme/github/issues_list_for_repo"))
    net.register_actor("filter", OpenOnly())
    net.register_actor("post", template_actor("acme/slack/chat_post_message"))
    net.add_node("gh", "gh", {"owner": "octocat", "repo": "hello", **gh.http()})
    net.add_node("filter", "filter")
    net.add_node("post", "post", {"channel": "C123", **slack.http()})
    net.add_connection("gh", "response", "filter", "in")
    net.add_connection("filter", "out", "post", "request")
    out = net.collect("post", "response")
    net.add_initial("gh", "trigger", Message.flow())
    try:
        summary = net.run(timeout=60)
    finally:
        net.shutdown()
    assert not summary.failures, summary.failures
    assert out.messages and all(m["data"]["status"] == 200 for m in out.messages)
    posted = [e for e in slack.server.log if e["op"] == "chat_post_message"]
    assert posted and all(e["headers"].get("token") == SECRET for e in posted)
    assert all(b"channel=C123" in e["body"] for e in posted)
    # the carrier is no graph key: no port, no config key, and the secret is nowhere else
    spec = template_actor("acme/slack/chat_post_message")
    assert "token" not in spec.inports
    blob = "\n".join([*map(repr, out.messages), *map(repr, events), caplog.text])
    assert SECRET not in blob


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"token": "mine"}, "unknown key 'token'"),
        ({"request": None, "body": {"token": "mine"}}, ""),
    ],
)
def test_slack_token_is_not_a_graph_key(serve: Any, config: dict[str, Any], fragment: str) -> None:
    slack = serve("slack", {"slackAuth": SECRET})
    config = {k: v for k, v in config.items() if k != "request"}
    nodes = {"p": ("acme/slack/chat_post_message", {"channel": "C1", **config, **slack.http()})}
    _, failures, _ = run(nodes, [], [("p", "response")], [("p", "trigger", Message.flow())])
    if fragment:
        assert failures and fragment in str(failures[0])
    else:  # a token given inside 'body' is replaced by nothing: the host's secret is sent
        assert not failures, failures
        sent = slack.server.log[-1]
        assert sent["headers"]["token"] == SECRET


def test_stripe_create_customer_form_deep_object_basic_auth(serve: Any) -> None:
    stripe = serve("stripe", {"basicAuth": "sk_test_123:", "bearerAuth": "sk_test_123"})
    config = {
        "email": "a@example.com",
        "metadata": {"plan": "pro"},
        "address": {"city": "Oslo", "line1": "Main 1"},
        **stripe.http(),
    }
    nodes = {"c": ("acme/stripe/post_customers", config)}
    got, failures, _ = run(nodes, [], [("c", "response")], [("c", "trigger", Message.flow())])
    assert not failures, failures
    assert got[("c", "response")][0]["data"]["status"] == 200
    sent = stripe.server.log[-1]
    assert sent["headers"]["authorization"].startswith("Basic ")
    body = sent["body"].decode()
    assert "metadata[plan]=pro" in body and "address[city]=Oslo" in body


def test_twilio_path_level_servers_and_basic_auth(serve: Any) -> None:
    twilio = serve("twilio", {"accountSid_authToken": "AC1:tok"})
    sid = "AC" + "0" * 32
    config = {"account_sid": sid, "to": "+4799999999", "body": {"From": "+1", "Body": "hi"}}
    nodes = {"m": ("acme/twilio/create_message", {**config, **twilio.http()})}
    got, failures, _ = run(nodes, [], [("m", "response")], [("m", "trigger", Message.flow())])
    assert not failures, failures
    assert got[("m", "response")][0]["data"]["status"] == 201
    assert twilio.server.log[-1]["path"] == f"/2010-04-01/Accounts/{sid}/Messages.json"
    # without the grant, the path-level server (api.twilio.com) is used, never the default
    op = template_actor("acme/twilio/create_message").operation()
    assert op.servers and op.servers[0].url == "https://api.twilio.com"


def test_openai_chat_completion_sse_as_a_stream(serve: Any) -> None:
    openai = serve("openai", {"ApiKeyAuth": "sk-1"})
    openai.server.prefer_media = "text/event-stream"
    openai.server.sse_events = 4
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    nodes = {"c": ("acme/openai/create_chat_completion", {"body": body, **openai.http()})}
    net = Network()
    net.register_actor("c", template_actor("acme/openai/create_chat_completion"))
    net.add_node("c", "c", nodes["c"][1])
    frames: list[bytes] = []

    class Reader(Actor):
        component = "test/reader"
        inports = ["in"]
        outports: list[str] = []

        async def run(self, ctx: ActorContext) -> None:  # type: ignore[override]
            reader = ctx.inputs["in"].take_stream()
            while True:
                frame = await reader.arecv(5000)
                if frame["kind"] == "begin":
                    continue
                if frame["kind"] != "data":
                    break
                frames.append(frame["data"])
            ctx.done()

    net.register_actor("r", Reader())
    net.add_node("r", "r")
    net.add_connection("c", "response", "r", "in")
    net.add_initial("c", "trigger", Message.flow())
    try:
        summary = net.run(timeout=60)
    finally:
        net.shutdown()
    assert not summary.failures, summary.failures
    text = b"".join(frames)
    assert text.count(b"data: ") == 5 and text.endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize(
    ("service", "suffix", "secrets", "body"),
    [
        ("openai", "create_file", {"ApiKeyAuth": "sk-1"}, {"purpose": "batch"}),
        (
            "stripe",
            "post_files",
            {"basicAuth": "sk:", "bearerAuth": "sk"},
            {"purpose": "dispute_evidence"},
        ),
    ],
)
def test_multipart_upload(
    serve: Any, service: str, suffix: str, secrets: dict[str, str], body: dict[str, Any]
) -> None:
    svc = serve(service, secrets)
    config = {"body": {**body, "file": b"line one\nline two\n"}, **svc.http()}
    nodes = {"u": (f"acme/{service}/{suffix}", config)}
    got, failures, _ = run(nodes, [], [("u", "response")], [("u", "trigger", Message.flow())])
    assert not failures, failures
    assert got[("u", "response")][0]["data"]["status"] == 200
    sent = svc.server.log[-1]
    assert sent["headers"]["content-type"].startswith("multipart/form-data; boundary=")
    assert b"line one\nline two\n" in sent["body"]


def test_429_with_retry_after_then_success(serve: Any) -> None:
    gh = serve("github", {"bearer": "ghp-1"})
    gh.server.fail_next(1, 429, "1")
    config = {"owner": "o", "repo": "r", **gh.http(retries=2)}
    nodes = {"g": ("acme/github/issues_list_for_repo", config)}
    got, failures, _ = run(nodes, [], [("g", "response")], [("g", "trigger", Message.flow())])
    assert not failures, failures
    assert got[("g", "response")][0]["data"]["status"] == 200
    assert gh.server.requests["issues_list_for_repo"] == 2


def test_expired_oauth2_client_credentials_token_is_refreshed(serve: Any) -> None:
    # PayPal's tokenUrl is relative (/v1/oauth2/token): it is fetched from the granted base URL
    paypal = serve("paypal", {"Oauth2": "client-1:secret-1"})
    config = {"id": "ORDER1", **paypal.http()}
    nodes = {"g": ("acme/paypal/orders_get", config)}
    got, failures, _ = run(nodes, [], [("g", "response")], [("g", "trigger", Message.flow())])
    assert not failures, failures
    paypal.server.expire_tokens()
    got, failures, _ = run(nodes, [], [("g", "response")], [("g", "trigger", Message.flow())])
    assert not failures, failures
    assert got[("g", "response")][0]["data"]["status"] == 200
    assert len(paypal.server._tokens) == 1  # a new token, fetched from the relative tokenUrl


def test_expired_static_token_is_a_clear_error(serve: Any) -> None:
    gh = serve("github", {"bearer": "ghp-right"})
    gh.server.secrets["bearer"] = "ghp-rotated"  # the server no longer takes the old token
    config = {"owner": "o", "repo": "r", **gh.http()}
    nodes = {"g": ("acme/github/issues_list_for_repo", config)}
    _, failures, _ = run(nodes, [], [("g", "response")], [("g", "trigger", Message.flow())])
    assert failures and "401" in str(failures[0]) and "ghp-right" not in str(failures[0])
