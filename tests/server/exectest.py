"""Helpers for the execution server tests: the real app on uvicorn on 127.0.0.1 (an ephemeral
port, in a thread of the test process), graphs to run, and the API's own schemas."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import jsonschema
import uvicorn

from reflow.server import ServerConfig, ServerLimits, create_app, openapi_document
from reflow.server._limits import ws_protocol

TOKEN = "test-token-0123456789abcdef"


class RunningServer:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.app = create_app(config)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, log_level="warning", ws=ws_protocol(), lifespan="on")
        )
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def client(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def start(self) -> RunningServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start in 15 s"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self.sock.close()


@contextmanager
def running(token: str | None = TOKEN, **limits: Any) -> Iterator[RunningServer]:
    srv = RunningServer(ServerConfig(token=token, limits=ServerLimits(**limits))).start()
    try:
        yield srv
    finally:
        srv.stop()


def counter_graph(count: int = 10) -> dict[str, Any]:
    """generate ``count`` numbers, split them into packets, count them."""
    return {
        "processes": {
            "gen": {"component": "tpl_generator", "metadata": {"config": {"end": count}}},
            "split": {"component": "tpl_flow_split"},
            "count": {"component": "tpl_flow_counter"},
        },
        "connections": [
            {"data": True, "tgt": {"process": "gen", "port": "trigger"}},
            {
                "src": {"process": "gen", "port": "output"},
                "tgt": {"process": "split", "port": "in"},
            },
            {"src": {"process": "split", "port": "out"}, "tgt": {"process": "count", "port": "in"}},
        ],
    }


def failing_graph() -> dict[str, Any]:
    """1 / 0: the divide node fails its tick."""
    return {
        "processes": {"div": {"component": "tpl_math_divide"}},
        "connections": [
            {"data": 1, "tgt": {"process": "div", "port": "a"}},
            {"data": 0, "tgt": {"process": "div", "port": "b"}},
        ],
    }


def slow_graph() -> dict[str, Any]:
    """A timer that ticks every 20 ms for hours: not idle before it is stopped."""
    return {
        "processes": {
            "tick": {
                "component": "tpl_timer_interval",
                "metadata": {"config": {"interval_ms": 20, "count": 1_000_000}},
            },
            "count": {"component": "tpl_flow_counter"},
        },
        "connections": [
            {"src": {"process": "tick", "port": "tick"}, "tgt": {"process": "count", "port": "in"}},
        ],
    }


_DOC = openapi_document()


def check_schema(value: Any, name: str) -> None:
    """Validate ``value`` against the API's own ``components.schemas[name]``."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": _DOC["components"]}
    jsonschema.Draft202012Validator(schema).validate(value)


def wait_done(client: httpx.Client, eid: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/api/v1/executions/{eid}").json()
        if body["state"] in ("completed", "failed", "cancelled"):
            return dict(body)
        assert time.monotonic() < deadline, f"execution still {body['state']} after {timeout} s"
        time.sleep(0.02)
