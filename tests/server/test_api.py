"""reflow.server over REST on a real uvicorn on 127.0.0.1: executions created, read, paged and
cancelled; templates; packs uploaded and verified; limits; and a table of bad requests, each
answered with its status, error type and JSON path, within a bounded time."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from exectest import (
    TOKEN,
    RunningServer,
    check_schema,
    counter_graph,
    failing_graph,
    running,
    slow_graph,
    wait_done,
)

from reflow import list_packs, unload_pack
from reflow.abi._signing import load_private_key, write_keypair
from reflow.tools._pack_build import build_pack

PACKS = Path(__file__).resolve().parents[2] / "packs"
LIMITS = {
    "max_nodes": 50,
    "max_edges": 80,
    "max_body_bytes": 64 << 10,
    "max_pack_bytes": 256 << 10,
    "max_run_seconds": 30.0,
}


@pytest.fixture(scope="module")
def srv() -> Iterator[RunningServer]:
    with running(**LIMITS) as s:
        yield s


@pytest.fixture
def client(srv: RunningServer) -> Iterator[httpx.Client]:
    with srv.client() as c:
        yield c


def post(client: httpx.Client, body: Any) -> httpx.Response:
    return client.post("/api/v1/executions", json=body)


# -- round trips ---------------------------------------------------------------------------------


def test_run_a_graph_and_read_its_summary(client: httpx.Client) -> None:
    r = post(client, {"graph": counter_graph(5)})
    assert r.status_code == 201, r.text
    check_schema(r.json(), "Execution")
    assert r.headers["location"] == f"/api/v1/executions/{r.json()['id']}"
    body = wait_done(client, r.json()["id"])
    check_schema(body, "Execution")
    assert body["state"] == "completed" and body["reason"] is None
    summary = body["summary"]
    assert summary["ok"] and summary["node_ticks"] == {"gen": 1, "split": 1, "count": 5}
    assert body["counts"]["edges"] == {"gen.output>split.in": 1, "split.out>count.in": 5}


def test_initial_packets_from_the_request(client: httpx.Client) -> None:
    graph = {"processes": {"p": {"component": "tpl_passthrough"}}}
    initial = [{"node": "p", "port": "input", "data": i} for i in range(3)]
    initial.append({"node": "p", "port": "input", "data": {"type": "String", "data": "x"}})
    body = wait_done(client, post(client, {"graph": graph, "initial": initial}).json()["id"])
    assert body["state"] == "completed"
    assert body["summary"]["node_ticks"] == {"p": 4}


def test_a_failing_tick_fails_the_execution(client: httpx.Client) -> None:
    body = wait_done(client, post(client, {"graph": failing_graph()}).json()["id"])
    check_schema(body, "Execution")
    assert body["state"] == "failed"
    assert "division by zero" in body["reason"]
    assert body["summary"]["failures"][0]["node"] == "div"
    assert body["counts"]["nodes"]["div"]["failures"] == 1


def test_cancel_stops_the_run_within_bounded_time(client: httpx.Client) -> None:
    eid = post(client, {"graph": slow_graph()}).json()["id"]
    time.sleep(0.3)
    assert client.get(f"/api/v1/executions/{eid}").json()["state"] == "running"
    t0 = time.perf_counter()
    r = client.delete(f"/api/v1/executions/{eid}")
    took = time.perf_counter() - t0
    assert r.status_code == 200
    check_schema(r.json(), "Execution")
    assert r.json()["state"] == "cancelled" and "DELETE" in r.json()["reason"]
    assert took < 3, f"cancel took {took:.2f} s"
    assert r.json()["summary"]["node_ticks"]["count"] >= 1
    # cancelling again, or a finished one, is harmless
    assert client.delete(f"/api/v1/executions/{eid}").json()["state"] == "cancelled"


def test_run_time_limit_cancels_with_a_reason(client: httpx.Client) -> None:
    t0 = time.perf_counter()
    eid = post(client, {"graph": slow_graph(), "timeout": 0.3}).json()["id"]
    body = wait_done(client, eid, timeout=10)
    assert time.perf_counter() - t0 < 5
    assert body["state"] == "cancelled"
    assert "run time limit of 0.3 s" in body["reason"]


def test_paging_walks_every_execution_once(client: httpx.Client) -> None:
    made = {post(client, {"graph": counter_graph(1)}).json()["id"] for _ in range(7)}
    seen: list[str] = []
    cursor = None
    for _ in range(100):
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/executions", params=params)
        assert page.status_code == 200
        check_schema(page.json(), "ExecutionPage")
        assert len(page.json()["items"]) <= 3
        seen += [e["id"] for e in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert made <= set(seen) and len(seen) == len(set(seen))


def test_templates_and_one_template(client: httpx.Client) -> None:
    r = client.get("/api/v1/templates")
    check_schema(r.json(), "TemplateList")
    ids = [t["id"] for t in r.json()["templates"]]
    assert "tpl_math_divide" in ids and ids == sorted(ids)
    one = client.get("/api/v1/templates/tpl_math_divide")
    check_schema(one.json(), "Template")
    assert one.json()["inports"] == ["a", "b"]
    assert one.json()["inport_types"] == {"a": "Float", "b": "Float"}


def test_openapi_is_served_and_covers_every_route(srv: RunningServer) -> None:
    doc = httpx.get(f"{srv.url}/openapi.json").json()  # no token needed
    assert doc["openapi"].startswith("3.1")
    routes = {
        r.path.replace("{id:path}", "{id}")
        for r in srv.app.routes
        if getattr(r, "path", "").startswith("/api/")
    }
    assert routes == set(doc["paths"])
    import jsonschema

    for name, schema in doc["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema), name


# -- packs -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path]:
    root = tmp_path_factory.mktemp("serverpacks")
    priv, pub, _ = write_keypair(root / "keys" / "publisher")
    pack = build_pack(PACKS / "math-wasm", out_dir=root / "dist", key=load_private_key(priv))
    return pack.read_bytes(), pub


@pytest.mark.slow
def test_upload_a_signed_pack_then_run_its_template(
    signed: tuple[bytes, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reflow import TrustStore

    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))
    data, pub = signed
    TrustStore(tmp_path / "trust").add(pub)
    untrusted = tmp_path / "empty-trust"
    from reflow.server import ServerConfig, ServerLimits

    try:
        refuse = RunningServer(ServerConfig(token=TOKEN, trust=str(untrusted))).start()
        try:
            with refuse.client() as c:
                r = c.post("/api/v1/packs", content=data)
            assert r.status_code == 422
            assert r.json()["error"]["type"] == "UntrustedKeyError"
        finally:
            refuse.stop()
        cfg = ServerConfig(token=TOKEN, trust=str(tmp_path / "trust"), limits=ServerLimits())
        ok = RunningServer(cfg).start()
        try:
            with ok.client() as c:
                r = c.post(
                    "/api/v1/packs",
                    content=data,
                    headers={"content-type": "application/octet-stream"},
                )
                assert r.status_code == 201, r.text
                check_schema(r.json(), "Pack")
                assert r.json()["name"] == "reflow/math"
                tid = r.json()["templates"][0]
                one = c.get(f"/api/v1/templates/{tid}")
                assert one.status_code == 200
                check_schema(one.json(), "Template")
                assert one.json()["owner"] == "reflow/math"
        finally:
            ok.stop()
    finally:
        for p in list_packs():
            unload_pack(p.name)


# -- limits ------------------------------------------------------------------------------------


def test_concurrent_executions_are_queued_then_refused() -> None:
    with running(max_running=1, max_queued=1) as s, s.client() as c:
        first = post(c, {"graph": slow_graph()}).json()["id"]
        second = post(c, {"graph": slow_graph()}).json()["id"]
        time.sleep(0.2)
        assert c.get(f"/api/v1/executions/{second}").json()["state"] == "queued"
        third = post(c, {"graph": counter_graph()})
        assert third.status_code == 429
        check_schema(third.json(), "Error")
        assert third.json()["error"]["type"] == "ServerBusyError"
        c.delete(f"/api/v1/executions/{second}")
        assert c.get(f"/api/v1/executions/{second}").json()["state"] == "cancelled"
        c.delete(f"/api/v1/executions/{first}")
        assert wait_done(c, post(c, {"graph": counter_graph()}).json()["id"])["state"] == (
            "completed"
        )


# -- bad input ---------------------------------------------------------------------------------

Request = Callable[[httpx.Client], httpx.Response]


def _graph(graph: Any, **extra: Any) -> Request:
    return lambda c: post(c, {"graph": graph, **extra})


def _raw(content: bytes, headers: dict[str, str] | None = None) -> Request:
    return lambda c: c.post(
        "/api/v1/executions",
        content=content,
        headers={"content-type": "application/json", **(headers or {})},
    )


def _declared(length: int) -> Request:
    """A request head that promises ``length`` bytes, then sends two (httpx refuses to)."""

    def call(c: httpx.Client) -> httpx.Response:
        port = httpx.URL(str(c.base_url)).port
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /api/v1/executions HTTP/1.1\r\nHost: x\r\n"
                + f"Authorization: Bearer {TOKEN}\r\nContent-Length: {length}\r\n\r\n{{}}".encode()
            )
            data = b""
            while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return httpx.Response(int(head.split()[1]), content=body)

    return call


def _chunks(total: int) -> Request:
    def gen() -> Iterator[bytes]:
        for _ in range(total // 65536):
            yield b" " * 65536

    return lambda c: c.post("/api/v1/executions", content=gen())


def _token(value: str | None, scheme: str = "Bearer") -> Request:
    headers = {"Authorization": f"{scheme} {value}"} if value is not None else {}

    def call(c: httpx.Client) -> httpx.Response:
        c.headers.pop("Authorization", None)
        return c.get("/api/v1/executions", headers=headers)

    return call


PASS = {"component": "tpl_passthrough"}
CONN = {"src": {"process": "a", "port": "output"}, "tgt": {"process": "b", "port": "input"}}

BAD: list[tuple[str, Request, int, str, str | None]] = [
    ("not JSON", _raw(b"{nope"), 400, "BadRequestError", "$"),
    ("nested a million deep", _raw(b"[" * 60000), 400, "BadRequestError", "$"),
    ("invalid UTF-8", _raw(b'{"graph": "\xff\xfe"}'), 400, "BadRequestError", "$"),
    ("body is an array", lambda c: post(c, []), 422, "UnprocessableError", "$"),
    ("no graph", lambda c: post(c, {}), 422, "UnprocessableError", "$"),
    (
        "unknown key",
        lambda c: post(c, {"graph": {}, "grpah": 1}),
        422,
        "UnprocessableError",
        "$.grpah",
    ),
    ("processes is an array", _graph({"processes": []}), 422, "GraphFormatError", "$.processes"),
    (
        "component missing",
        _graph({"processes": {"x": {}}}),
        422,
        "GraphFormatError",
        "$.processes.x.component",
    ),
    (
        "unknown template",
        _graph({"processes": {"x": {"component": "tpl_nope"}}}),
        422,
        "UnknownComponentError",
        "$.processes.x.component",
    ),
    (
        "unknown template, odd id",
        _graph({"processes": {"a b": {"component": "nope"}}}),
        422,
        "UnknownComponentError",
        '$.processes["a b"].component',
    ),
    (
        "unknown out-port",
        _graph(
            {
                "processes": {"a": PASS, "b": PASS},
                "connections": [{**CONN, "src": {"process": "a", "port": "nope"}}],
            }
        ),
        422,
        "UnknownPortError",
        "$.connections[0].src.port",
    ),
    (
        "unknown in-port",
        _graph(
            {
                "processes": {"a": PASS, "b": PASS},
                "connections": [{**CONN, "tgt": {"process": "b", "port": "nope"}}],
            }
        ),
        422,
        "UnknownPortError",
        "$.connections[0].tgt.port",
    ),
    (
        "unknown node",
        _graph({"processes": {"a": PASS}, "connections": [CONN]}),
        422,
        "GraphFormatError",
        "$.connections[0].tgt.process",
    ),
    (
        "config not an object",
        _graph({"processes": {"a": {**PASS, "metadata": {"config": 3}}}}),
        422,
        "GraphFormatError",
        "$.processes.a.metadata.config",
    ),
    (
        "initial to a missing node",
        _graph({"processes": {"a": PASS}}, initial=[{"node": "zz", "port": "input", "data": 1}]),
        422,
        "UnknownNodeError",
        "$.initial[0].node",
    ),
    (
        "initial to a missing port",
        _graph({"processes": {"a": PASS}}, initial=[{"node": "a", "port": "zz", "data": 1}]),
        422,
        "UnknownPortError",
        "$.initial[0].port",
    ),
    (
        "initial not an array",
        _graph({"processes": {}}, initial={}),
        422,
        "UnprocessableError",
        "$.initial",
    ),
    (
        "initial item not an object",
        _graph({"processes": {}}, initial=[3]),
        422,
        "UnprocessableError",
        "$.initial[0]",
    ),
    (
        "negative timeout",
        _graph({"processes": {}}, timeout=-1),
        422,
        "UnprocessableError",
        "$.timeout",
    ),
    (
        "timeout over the limit",
        _graph({"processes": {}}, timeout=10_000),
        422,
        "UnprocessableError",
        "$.timeout",
    ),
    (
        "too many nodes",
        _graph({"processes": {f"n{i}": PASS for i in range(51)}}),
        422,
        "GraphTooLarge",
        "$.processes",
    ),
    (
        "too many edges",
        _graph({"processes": {"a": PASS, "b": PASS}, "connections": [CONN] * 81}),
        422,
        "GraphTooLarge",
        "$.connections",
    ),
    (
        "packs not an array",
        _graph({"processes": {}}, packs="x"),
        422,
        "UnprocessableError",
        "$.packs",
    ),
    (
        "pack by name, no registry",
        _graph({"processes": {}}, packs=["acme/x@1"]),
        422,
        "UnprocessableError",
        "$.packs[0]",
    ),
    ("declared body over the limit", _declared(10 << 20), 413, "PayloadTooLargeError", None),
    ("streamed body over the limit", _chunks(8 << 20), 413, "PayloadTooLargeError", None),
    ("no token", _token(None), 401, "AuthError", "$.headers.authorization"),
    ("wrong token", _token("x" * 26), 401, "AuthError", "$.headers.authorization"),
    ("token as Basic", _token(TOKEN, "Basic"), 401, "AuthError", "$.headers.authorization"),
    (
        "unknown execution",
        lambda c: c.get("/api/v1/executions/nope"),
        404,
        "NotFoundError",
        "$.path.id",
    ),
    (
        "cancel unknown execution",
        lambda c: c.delete("/api/v1/executions/nope"),
        404,
        "NotFoundError",
        "$.path.id",
    ),
    (
        "limit 0",
        lambda c: c.get("/api/v1/executions?limit=0"),
        400,
        "BadRequestError",
        "$.query.limit",
    ),
    (
        "limit not a number",
        lambda c: c.get("/api/v1/executions?limit=ten"),
        400,
        "BadRequestError",
        "$.query.limit",
    ),
    (
        "unknown cursor",
        lambda c: c.get("/api/v1/executions?cursor=zz"),
        400,
        "BadRequestError",
        "$.query.cursor",
    ),
    (
        "unknown template id",
        lambda c: c.get("/api/v1/templates/tpl_nope"),
        404,
        "NotFoundError",
        "$.path.id",
    ),
    (
        "pack upload: garbage",
        lambda c: c.post("/api/v1/packs", content=b"\x28\xb5\x2f\xfdjunk"),
        422,
        "PackFormatError",
        "$",
    ),
    (
        "pack upload: empty",
        lambda c: c.post("/api/v1/packs", content=b""),
        422,
        "UnprocessableError",
        "$",
    ),
    (
        "pack upload: over the limit",
        lambda c: c.post("/api/v1/packs", content=b"x" * (300 << 10)),
        413,
        "PayloadTooLargeError",
        None,
    ),
    (
        "pack by name: bad JSON",
        lambda c: c.post("/api/v1/packs", json={"nom": 1}),
        422,
        "UnprocessableError",
        "$.name",
    ),
    (
        "pack by name: no registry",
        lambda c: c.post("/api/v1/packs", json={"name": "a/b@1"}),
        422,
        "UnprocessableError",
        "$.name",
    ),
    ("wrong method", lambda c: c.put("/api/v1/executions"), 405, "BadRequestError", None),
]


@pytest.mark.parametrize(
    ("request_", "status", "type_", "path"),
    [pytest.param(*row[1:], id=row[0]) for row in BAD],
)
def test_bad_requests(
    client: httpx.Client, request_: Request, status: int, type_: str, path: str | None
) -> None:
    t0 = time.perf_counter()
    r = request_(client)
    took = time.perf_counter() - t0
    assert r.status_code == status, r.text
    body = r.json()
    check_schema(body, "Error")
    assert body["error"]["type"] == type_, body
    assert body["error"]["path"] == path, body
    assert body["error"]["message"] and "Traceback" not in body["error"]["message"]
    assert took < 10, f"answered in {took:.1f} s"


def test_the_server_still_works_after_the_table(client: httpx.Client) -> None:
    assert (
        wait_done(client, post(client, {"graph": counter_graph()}).json()["id"])["state"]
        == "completed"
    )
    assert json.loads(client.get("/api/v1/executions?limit=1").text)["items"]
