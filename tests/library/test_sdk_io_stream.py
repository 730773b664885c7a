"""The offbit-reflow catalog's stream and io/http templates: streams through real graphs,
files on disk (bounded, errors naming the path), HTTP against a real uvicorn server on
127.0.0.1, webhook request/response shaping."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import reflow
from reflow import Message as M
from reflow import Stream
from reflow.library import builtin_templates
from reflow.testing import run_tick

TEMPLATES = builtin_templates()


def _out(r: Any) -> dict[str, list[Any]]:
    assert r.ok, r.failures
    return {port: [m.get("data") for m in msgs] for port, msgs in r.outputs.items()}


# -- streams ------------------------------------------------------------------------------------


def _chain(
    config: dict[str, dict[str, Any]], data: bytes, tail: str = "tpl_stream_to_bytes"
) -> tuple[Any, dict[str, Any]]:
    """bytes_to_stream -> <nodes in config order> -> stream_to_bytes; returns the run summary
    and the collected out-ports."""
    net = reflow.Network()
    nodes = [
        ("src", "tpl_bytes_to_stream", config.pop("src", {"chunkSize": 1000})),
        *[(tid, tid, cfg) for tid, cfg in config.items()],
        ("sink", tail, {}),
    ]
    for node, tid, cfg in nodes:
        net.register_actor(tid, TEMPLATES[tid])
        net.add_node(node, tid, cfg)
    for (a, ta, _), (b, _, _) in itertools.pairwise(nodes):
        net.add_connection(a, "stream_a" if ta == "tpl_stream_tee" else "stream", b, "stream")
    got = {"bytes": net.collect("sink", "output"), "meta": net.collect("sink", "metadata")}
    if "tpl_stream_stats" in config:
        got["stats"] = net.collect("tpl_stream_stats", "stats")
    net.add_initial("src", "input", M.bytes(data))
    summary = net.run(timeout=30)
    net.shutdown()
    return summary, got


DATA = bytes(range(256)) * 64  # 16 KiB


@pytest.mark.parametrize(
    "middle",
    [
        {},
        {"tpl_stream_buffer": {"bufferBytes": 4096}},
        {"tpl_stream_stats": {}},
        {"tpl_stream_throttle": {"delayMs": 0}},
        {"tpl_stream_tee": {"bufferSize": 1}},
        {
            "tpl_stream_buffer": {"bufferBytes": 1},
            "tpl_stream_stats": {},
            "tpl_stream_throttle": {"bytesPerSecond": 10_000_000},
        },
    ],
    ids=lambda m: "+".join(m) or "direct",
)
def test_stream_chain_keeps_every_byte(middle: dict[str, Any]) -> None:
    summary, got = _chain(dict(middle), DATA)
    assert not summary.failures, summary.failures
    assert got["bytes"].values() == [DATA]
    assert got["meta"].values() == [{"contentType": None, "size": len(DATA), "streamMetadata": {}}]
    if "stats" in got:
        stats = got["stats"].values()[0]
        assert stats["totalBytes"] == len(DATA) and stats["dataFrames"] == 17
        assert stats["sizeHint"] == len(DATA) and stats["avgFrameBytes"] == len(DATA) // 17


def test_stream_buffer_regroups_frames() -> None:
    src = Stream.create(0)
    for part in (b"ab", b"cde", b"f", b"ghij"):
        src.send_bytes(part)
    src.end()
    net = reflow.Network()
    for tid in ("tpl_stream_buffer",):
        net.register_actor(tid, TEMPLATES[tid])
    net.add_node("buf", "tpl_stream_buffer", {"bufferBytes": 4})
    out = net.collect("buf", "stream")
    net.add_initial("buf", "stream", src.into_message())
    net.run(timeout=10).raise_for_failures()
    reader = out.messages[0].take_stream()
    frames = []
    while (frame := reader.recv(1000))["kind"] == "data":
        frames.append(frame["data"])
    net.shutdown()
    assert frames == [b"abcde", b"fghij"] and frame["kind"] == "end"


def test_stream_tee_gives_both_readers_everything() -> None:
    net = reflow.Network()
    for tid in ("tpl_bytes_to_stream", "tpl_stream_tee", "tpl_stream_to_bytes"):
        net.register_actor(tid, TEMPLATES[tid])
    net.add_node("src", "tpl_bytes_to_stream", {"chunkSize": 100})
    net.add_node("tee", "tpl_stream_tee", {"bufferSize": 2})
    net.add_node("a", "tpl_stream_to_bytes")
    net.add_node("b", "tpl_stream_to_bytes")
    net.add_connection("src", "stream", "tee", "stream")
    net.add_connection("tee", "stream_a", "a", "stream")
    net.add_connection("tee", "stream_b", "b", "stream")
    a, b = net.collect("a", "output"), net.collect("b", "output")
    net.add_initial("src", "input", M.bytes(DATA))
    net.run(timeout=30).raise_for_failures()
    net.shutdown()
    assert a.values() == [DATA] and b.values() == [DATA]


def test_stream_throttle_slows_down() -> None:
    start = time.monotonic()
    summary, got = _chain(
        {"src": {"chunkSize": 4096}, "tpl_stream_throttle": {"delayMs": 50}}, DATA
    )
    assert not summary.failures and got["bytes"].values() == [DATA]
    assert time.monotonic() - start >= 0.15  # four frames, 50 ms after each


def test_a_failing_stream_fails_the_tick_and_reaches_downstream() -> None:
    src = Stream.create(0)
    src.send_bytes(b"part")
    src.error("disk on fire")
    r = run_tick(TEMPLATES["tpl_stream_to_bytes"], {"stream": src.into_message()})
    assert not r.ok and "stream" in r.failures[0].error and "disk on fire" in r.failures[0].error
    assert [m["type"] for m in r.outputs["error"]] == ["Error"]
    src2 = Stream.create(0)
    src2.error("boom")
    r = run_tick(TEMPLATES["tpl_stream_stats"], {"stream": src2.into_message()})
    assert not r.ok and "boom" in r.failures[0].error
    frame = r.outputs["stream"][0].take_stream().recv(1000)
    assert frame["kind"] == "error" and "boom" in frame["error"]


@pytest.mark.parametrize(
    ("tid", "config", "inputs", "fragment"),
    [
        ("tpl_bytes_to_stream", None, {"input": M.integer(1)}, "in-port 'input': expected Bytes"),
        (
            "tpl_bytes_to_stream",
            {"chunkSize": 0},
            {"input": M.bytes(b"x")},
            "config 'chunkSize' must be >= 1",
        ),
        (
            "tpl_bytes_to_stream",
            {"contentType": 5},
            {"input": M.bytes(b"x")},
            "config 'contentType' must be a string",
        ),
        (
            "tpl_stream_to_bytes",
            None,
            {"stream": M.bytes(b"x")},
            "in-port 'stream': expected a Stream (StreamHandle), got Bytes",
        ),
        ("tpl_stream_buffer", None, {"stream": M.string("x")}, "in-port 'stream': expected a "),
        (
            "tpl_stream_buffer",
            {"bufferBytes": -1},
            {"stream": M.string("x")},
            "config 'bufferBytes' must be >= 1",
        ),
        ("tpl_stream_stats", None, {"stream": M.flow()}, "in-port 'stream': expected a Stream"),
        ("tpl_stream_tee", {"bufferSize": 0}, {"stream": M.flow()}, "config 'bufferSize'"),
        (
            "tpl_stream_throttle",
            {"delayMs": 10**9},
            {"stream": M.flow()},
            "config 'delayMs' must be <= 60000",
        ),
        (
            "tpl_stream_throttle",
            {"bytesPerSecond": 0},
            {"stream": M.flow()},
            "config 'bytesPerSecond' must be >= 1",
        ),
    ],
)
def test_bad_stream_input(tid: str, config: Any, inputs: dict[str, Any], fragment: str) -> None:
    r = run_tick(TEMPLATES[tid], inputs, config)
    assert not r.ok and fragment in r.failures[0].error, r.failures


def test_stream_to_bytes_refuses_a_stream_past_max_bytes() -> None:
    src = Stream.create(0)
    for _ in range(10):
        src.send_bytes(b"x" * 1000)
    src.end()
    r = run_tick(
        TEMPLATES["tpl_stream_to_bytes"], {"stream": src.into_message()}, {"maxBytes": 4096}
    )
    assert not r.ok and "longer than config 'maxBytes' (4096 bytes)" in r.failures[0].error


def test_a_silent_stream_times_out() -> None:
    src = Stream.create(0)
    start = time.monotonic()
    r = run_tick(
        TEMPLATES["tpl_stream_to_bytes"], {"stream": src.into_message()}, {"timeoutMs": 200}
    )
    assert not r.ok and "sent nothing for 200 ms" in r.failures[0].error
    assert time.monotonic() - start < 5
    src.close()


# -- files --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "mime"),
    [("a.png", "image/png"), ("b.JSON", "application/json"), ("c.bin", "application/octet-stream")],
)
def test_file_save_then_load(tmp_path: Path, name: str, mime: str) -> None:
    path = str(tmp_path / "sub" / "dir" / name)
    r = run_tick(TEMPLATES["tpl_file_save"], {"input": M.bytes(b"\x00\x01data")}, {"path": path})
    assert _out(r) == {"path": [path], "metadata": [{"path": path, "size": 6, "written": True}]}
    r = run_tick(TEMPLATES["tpl_file_load"], {"trigger": M.flow()}, {"path": path})
    assert _out(r) == {
        "output": [b"\x00\x01data"],
        "metadata": [{"path": path, "size": 6, "mimeType": mime}],
    }


@pytest.mark.parametrize(
    ("message", "written"),
    [
        (M.string("héllo"), "héllo".encode()),
        (M.object({"a": [1]}), json.dumps({"a": [1]}, indent=2).encode()),
        (M.integer(3), b"3"),
    ],
)
def test_file_save_encodes_by_kind(tmp_path: Path, message: Any, written: bytes) -> None:
    path = tmp_path / "out.txt"
    assert run_tick(TEMPLATES["tpl_file_save"], {"input": message}, {"path": str(path)}).ok
    assert path.read_bytes() == written


def _file_cases(tmp: Path) -> list[tuple[str, dict[str, Any], dict[str, Any], str]]:
    big = tmp / "big.bin"
    big.write_bytes(b"x" * 5000)
    (tmp / "folder").mkdir()
    blocker = tmp / "blocker"
    blocker.write_text("a file where a folder should be")
    return [
        ("tpl_file_load", {}, {"trigger": M.flow()}, "config 'path' is required"),
        ("tpl_file_load", {"path": 5}, {"trigger": M.flow()}, "config 'path' must be a file"),
        (
            "tpl_file_load",
            {"path": str(tmp / "missing.txt")},
            {"trigger": M.flow()},
            f"cannot open {str(tmp / 'missing.txt')!r} (config 'path'): No such file",
        ),
        (
            "tpl_file_load",
            {"path": str(tmp / "folder")},
            {"trigger": M.flow()},
            f"config 'path' {str(tmp / 'folder')!r} is not a regular file",
        ),
        (
            "tpl_file_load",
            {"path": "/dev/zero"},
            {"trigger": M.flow()},
            "'/dev/zero' is not a regular file",
        ),
        (
            "tpl_file_load",
            {"path": str(big), "maxBytes": 4096},
            {"trigger": M.flow()},
            f"file {str(big)!r} is 5000 bytes, larger than config 'maxBytes' (4096)",
        ),
        (
            "tpl_file_load",
            {"path": "a\x00b"},
            {"trigger": M.flow()},
            "config 'path' must be a file path",
        ),
        ("tpl_file_save", {}, {"input": M.bytes(b"x")}, "config 'path' is required"),
        (
            "tpl_file_save",
            {"path": str(tmp / "folder")},
            {"input": M.bytes(b"x")},
            "is a folder, not a file",
        ),
        (
            "tpl_file_save",
            {"path": str(blocker / "x.txt")},
            {"input": M.bytes(b"x")},
            f"cannot write {str(blocker / 'x.txt')!r} (config 'path')",
        ),
        (
            "tpl_file_save",
            {"path": str(tmp / "new" / "x.txt"), "createDirs": False},
            {"input": M.bytes(b"x")},
            "No such file or directory",
        ),
        (
            "tpl_file_save",
            {"path": str(tmp / "x"), "createDirs": "yes"},
            {"input": M.bytes(b"x")},
            "config 'createDirs' must be true or false",
        ),
    ]


def test_bad_file_access_names_the_path(tmp_path: Path) -> None:
    for tid, config, inputs, fragment in _file_cases(tmp_path):
        start = time.monotonic()
        r = run_tick(TEMPLATES[tid], inputs, config)
        assert time.monotonic() - start < 5
        assert not r.ok, (tid, config)
        assert fragment in r.failures[0].error, (fragment, r.failures[0].error)
        if "createDirs" not in fragment:  # bad input, not bad config: also on 'error'
            assert [m["type"] for m in r.outputs.get("error", [])] == ["Error"], (tid, config)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_file_load_does_not_hang_on_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    start = time.monotonic()
    r = run_tick(TEMPLATES["tpl_file_load"], {"trigger": M.flow()}, {"path": str(fifo)})
    assert not r.ok and "is not a regular file" in r.failures[0].error
    assert time.monotonic() - start < 5


# -- webhook request / response -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, {"body": [{}], "method": ["POST"], "url": ["/webhook"]}),
        (
            {
                "body": {"a": 1},
                "headers": {"x": "1"},
                "query": {"q": "v"},
                "params": {"p": 1},
                "method": "GET",
                "path": "/hook",
            },
            {
                "body": [{"a": 1}],
                "headers": [{"x": "1"}],
                "params": [{"q": "v"}],
                "method": ["GET"],
                "url": ["/hook"],
            },
        ),
        (
            {"params": {"p": 1}, "body": "text"},
            {"body": ["text"], "params": [{"p": 1}], "method": ["POST"], "url": ["/webhook"]},
        ),
    ],
)
def test_server_request_sends_its_config(config: dict[str, Any], expected: dict[str, Any]) -> None:
    assert _out(run_tick(TEMPLATES["tpl_server_request"], {}, config)) == expected


@pytest.mark.parametrize(
    ("config", "inputs", "expected"),
    [
        (
            None,
            {"body": M.object({"ok": True})},
            {"statusCode": 200, "contentType": "application/json", "body": {"ok": True}},
        ),
        (
            {"statusCode": 201, "contentType": "text/plain"},
            {"body": M.string("hi")},
            {"statusCode": 201, "contentType": "text/plain", "body": "hi"},
        ),
        (
            None,
            {"status": M.integer(404)},
            {"statusCode": 404, "contentType": "application/json", "body": {}},
        ),
        (
            None,
            {"body": M.array([1])},
            {"statusCode": 200, "contentType": "application/json", "body": None},
        ),
        (
            None,
            {"headers": M.object({"X-A": "1"})},
            {
                "statusCode": 200,
                "contentType": "application/json",
                "body": {},
                "headers": {"X-A": "1"},
            },
        ),
    ],
)
def test_server_response_shapes_the_reply(
    config: Any, inputs: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert _out(run_tick(TEMPLATES["tpl_server_response"], inputs, config)) == {
        "response": [expected]
    }


@pytest.mark.parametrize(
    ("tid", "config", "inputs", "fragment"),
    [
        ("tpl_server_request", {"headers": [1]}, {}, "config 'headers' must be an object"),
        ("tpl_server_request", {"method": 5}, {}, "config 'method' must be a string"),
        (
            "tpl_server_response",
            {"statusCode": 99},
            {"body": M.flow()},
            "config 'statusCode' must be >= 100",
        ),
        (
            "tpl_server_response",
            None,
            {"status": M.string("200")},
            "in-port 'status': expected an Integer HTTP status",
        ),
        (
            "tpl_server_response",
            None,
            {"headers": M.object({"a": 1})},
            "in-port 'headers': expected an Object of header strings",
        ),
    ],
)
def test_bad_webhook_config(tid: str, config: Any, inputs: dict[str, Any], fragment: str) -> None:
    r = run_tick(TEMPLATES[tid], inputs, config)
    assert not r.ok and fragment in r.failures[0].error


# -- HTTP against uvicorn ------------------------------------------------------------------


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        event = await receive()
        body += event.get("body", b"")
        if not event.get("more_body"):
            break
    path = scope["path"]
    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    if path == "/slow":
        await asyncio.sleep(1.0)
    if path == "/text":
        status, ctype, out = 200, b"text/plain", b"plain words"
    elif path == "/big":
        status, ctype, out = 200, b"text/plain", b"x" * 50_000
    elif path == "/missing":
        status, ctype, out = 404, b"application/json", b'{"error": "no"}'
    else:
        status, ctype = 200, b"application/json"
        out = json.dumps(
            {
                "method": scope["method"],
                "body": body.decode(),
                "ctype": headers.get("content-type"),
                "token": headers.get("x-token"),
                "who": headers.get("x-who"),
            }
        ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", ctype), (b"x-served", b"yes")],
        }
    )
    await send({"type": "http.response.body", "body": out})


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    uvicorn = pytest.importorskip("uvicorn")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(_app, log_level="error", lifespan="off")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(5)
    sock.close()


def test_http_request_zeal_ports(server: str) -> None:
    r = run_tick(
        TEMPLATES["tpl_http_request"],
        {"data_in": M.object({"n": 1})},
        {"url": f"{server}/echo", "method": "post", "headers": {"X-Token": "t"}},
    )
    (resp,) = _out(r)["response_out"]
    assert resp["status"] == 200 and resp["method"] == "POST"
    assert resp["url"] == f"{server}/echo" and resp["headers"]["x-served"] == "yes"
    assert json.loads(resp["body"]["body"]) == {"n": 1}
    assert resp["body"]["ctype"] == "application/json" and resp["body"]["token"] == "t"


def test_http_request_headers_in_and_text_and_status(server: str) -> None:
    r = run_tick(
        TEMPLATES["tpl_http_request"],
        {"headers_in": M.object({"X-Who": "me"})},
        {"url": f"{server}/echo"},
    )
    (resp,) = _out(r)["response_out"]
    assert resp["body"]["who"] == "me" and resp["body"]["method"] == "GET"
    r = run_tick(
        TEMPLATES["tpl_http_request"],
        {"data_in": M.flow()},
        {"url": f"{server}/text", "body": {"b": 2}},
    )
    assert _out(r)["response_out"][0]["body"] == "plain words"
    r = run_tick(TEMPLATES["tpl_http_request"], {"data_in": M.flow()}, {"url": f"{server}/missing"})
    assert _out(r)["response_out"][0]["status"] == 404


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({}, "config 'url' is required"),
        ({"url": "ftp://x/y"}, "must be absolute http:// or https://"),
        ({"url": "{server}/echo", "method": "BREW"}, "config 'method': 'BREW' is not one of"),
        ({"url": "{server}/slow", "timeout": 200}, "timed out after 200 ms (config 'timeout')"),
        ({"url": "{server}/big", "max_bytes": 1000}, "larger than config 'max_bytes' (1000"),
        ({"url": "http://127.0.0.1:9/nothing"}, "HTTP request failed"),
        ({"url": "{server}/echo", "headers": {"a": [1]}}, "config 'headers' must be an object"),
    ],
)
def test_http_request_failures_fail_the_tick(
    server: str, config: dict[str, Any], fragment: str
) -> None:
    config = {k: v.format(server=server) if isinstance(v, str) else v for k, v in config.items()}
    start = time.monotonic()
    r = run_tick(TEMPLATES["tpl_http_request"], {"data_in": M.flow()}, config)
    assert time.monotonic() - start < 10
    assert not r.ok and fragment in r.failures[0].error, r.failures
    if (
        "url" in config
        and "method" not in config
        and "headers" not in config
        and ("ftp" not in config["url"])
    ):
        assert [m["type"] for m in r.outputs["error_out"]] == ["Error"]


def test_http_request_legacy_port_still_works(server: str) -> None:
    r = run_tick(TEMPLATES["tpl_http_request"], {"in": M.string(f"{server}/text")})
    assert _out(r)["response"][0]["body"] == "plain words"
