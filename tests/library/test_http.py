"""reflow.library._http: tpl_http_request against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from reflow import Message
from reflow.library._http import HttpRequest
from reflow.testing import TickResult, run_tick


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def reply(
        self,
        status: int,
        body: bytes,
        ctype: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if url.path == "/echo":
            info = {
                "method": self.command,
                "query": parse_qs(url.query),
                "body": body.decode(),
                "ctype": self.headers.get("Content-Type"),
                "token": self.headers.get("X-Token"),
            }
            self.reply(200, json.dumps(info).encode())
        elif url.path == "/text":
            self.reply(200, "héllo".encode(), "text/plain; charset=utf-8")
        elif url.path.startswith("/status/"):
            code = int(url.path.rsplit("/", 1)[1])
            self.reply(code, b"nope", "text/plain")
        elif url.path == "/slow":
            time.sleep(0.5)
            self.reply(200, b"late", "text/plain")
        elif url.path == "/big":
            self.reply(200, b"x" * 5000, "text/plain")
        elif url.path == "/redirect":
            self.reply(302, b"", "text/plain", {"Location": "/text"})
        else:
            self.reply(404, b"no route", "text/plain")

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_any


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that timed out on purpose has gone away: writing to it fails, as expected
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def response(result: TickResult) -> dict[str, Any]:
    result.raise_for_failures()
    (msg,) = result.outputs["response"]
    return msg["data"]  # type: ignore[no-any-return]


def test_get_a_url_string(server: str) -> None:
    r = run_tick(HttpRequest(), {"in": Message.string(f"{server}/text")})
    resp = response(r)
    assert resp["status"] == 200 and resp["body"] == "héllo" and resp["json"] is None
    assert resp["headers"]["content-type"].startswith("text/plain")
    assert r.values("body") == ["héllo".encode()]


def test_request_object_overrides_config(server: str) -> None:
    req = {
        "url": "/echo",
        "method": "post",
        "json": {"a": [1, 2]},
        "query": {"q": "x y"},
        "headers": {"X-Token": "t1"},
    }
    r = run_tick(
        HttpRequest(), {"in": Message.object(req)}, {"url": server + "/", "query": {"page": 2}}
    )
    echoed = response(r)["json"]
    assert echoed["method"] == "POST"
    assert json.loads(echoed["body"]) == {"a": [1, 2]}
    assert echoed["ctype"] == "application/json"
    assert echoed["query"] == {"q": ["x y"], "page": ["2"]}
    assert echoed["token"] == "t1"


def test_flow_trigger_uses_config_only(server: str) -> None:
    r = run_tick(
        HttpRequest(),
        {"in": Message.flow()},
        {"url": f"{server}/echo", "method": "PUT", "headers": {"X-Token": "cfg"}},
    )
    assert response(r)["json"]["token"] == "cfg"
    r = run_tick(
        HttpRequest(),
        {"in": Message.object({"body": "raw"})},
        {"url": f"{server}/echo", "method": "POST"},
    )
    assert response(r)["json"]["body"] == "raw"


def test_redirects_are_followed(server: str) -> None:
    resp = response(run_tick(HttpRequest(), {"in": Message.string(f"{server}/redirect")}))
    assert resp["status"] == 200 and resp["url"].endswith("/text")
    resp = response(
        run_tick(
            HttpRequest(),
            {"in": Message.string(f"{server}/redirect")},
            {"follow_redirects": False, "fail_on_status": False},
        )
    )
    assert resp["status"] == 302


def test_error_status_can_be_received(server: str) -> None:
    resp = response(
        run_tick(
            HttpRequest(), {"in": Message.string(f"{server}/status/503")}, {"fail_on_status": False}
        )
    )
    assert resp["status"] == 503 and resp["body"] == "nope"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("inputs", "config", "fragment"),
    [
        (
            {"in": Message.string("/status/404")},
            None,
            "GET {server}/status/404 answered 404 Not Found: nope",
        ),
        (
            {"in": Message.string("/slow")},
            {"timeout_ms": 100},
            "GET {server}/slow timed out after 100 ms (config 'timeout_ms')",
        ),
        (
            {"in": Message.string("/big")},
            {"max_bytes": 1000},
            "response is larger than config 'max_bytes' (1000 bytes)",
        ),
        ({"in": Message.flow()}, {"url": ""}, "no URL: set config 'url'"),
        ({"in": Message.integer(1)}, None, "in-port 'in': expected a URL String"),
        ({"in": Message.object({"uri": "/x"})}, None, "in-port 'in': unknown request field(s) uri"),
        (
            {"in": Message.object({"headers": {"a": [1]}})},
            None,
            "in-port 'in': field 'headers' must be an object of string values",
        ),
        ({"in": Message.string("/x")}, {"method": "BREW"}, "request method 'BREW' is not one"),
        (
            {"in": Message.string("ftp://127.0.0.1/x")},
            {"url": ""},
            "must be absolute http:// or https://",
        ),
        ({"in": Message.string("/x")}, {"timeout_ms": 0}, "config 'timeout_ms' must be > 0"),
        ({"in": Message.string("/x")}, {"headers": "x"}, "config 'headers' must be an object"),
    ],
)
def test_failures_name_the_request(
    server: str, inputs: dict[str, Any], config: dict[str, Any] | None, fragment: str
) -> None:
    cfg = {"url": server + "/", **(config or {})}
    r = run_tick(HttpRequest(), inputs, cfg)
    assert not r.ok
    assert fragment.format(server=server) in r.failures[0].error


def test_connection_refused_is_a_failed_tick() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/x"
    r = run_tick(HttpRequest(), {"in": Message.string(url)}, {"timeout_ms": 2000})
    assert not r.ok
    assert f"GET {url}: connection failed" in r.failures[0].error
