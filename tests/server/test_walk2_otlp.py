"""README walk, second pass: OTLP export with the collector down says so once.

The OpenTelemetry exporter logs a "Transient error ... retrying" line on every retry and a
"Failed to export" line per batch; a user who turns tracing on with the collector down got a
screenful. Now one warning of ours names the endpoint. Each case runs a traced network of
many spans in a child process with logging left as a user has it (Python's last-resort
handler prints warnings to stderr), against a closed port on 127.0.0.1 or a real OTLP/HTTP
receiver (Starlette on uvicorn).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http")

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

CHILD = r"""
import sys, time
from reflow import Actor, Message, Network
from reflow.tracing import close_provider, otlp_tracer_provider, trace_network

class Numbers(Actor):
    component = "numbers"
    inports = []
    outports = ["out"]
    def run(self, ctx):
        for i in range(int(ctx.config["n"])):
            ctx.send({"out": Message.integer(i)})
        ctx.done()

provider = otlp_tracer_provider(sys.argv[1])
t0 = time.perf_counter()
for _ in range(int(sys.argv[3])):
    net = Network()
    net.register_actor("numbers", Numbers())
    net.add_node("src", "numbers", {"n": int(sys.argv[2])})
    net.add_node("p", "tpl_passthrough")
    net.add_connection("src", "out", "p", "input")
    with trace_network(net, provider=provider, mode="ticks", name="walk2"):
        net.run(timeout=60)
ran = time.perf_counter() - t0
time.sleep(float(sys.argv[4]))  # the exporter's thread keeps retrying meanwhile
close_provider(provider)
print(f"RAN {ran:.3f}", flush=True)
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _child(url: str, spans: int, runs: int, linger: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, "-c", CHILD, url, str(spans), str(runs), str(linger)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@contextmanager
def _receiver() -> Iterator[tuple[list[int], str]]:
    bodies: list[int] = []

    async def traces(request: Request) -> Response:
        bodies.append(len(await request.body()))
        return Response(b"", media_type="application/x-protobuf")

    app = Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "the OTLP receiver did not start"
        time.sleep(0.02)
    try:
        yield bodies, f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("spans", "runs", "linger"),
    [
        (3000, 1, 8.0),  # one big run: the queue overflows, exports keep failing for 8 s
        (50, 20, 8.0),  # many small runs on one provider
    ],
)
def test_a_closed_collector_port_is_one_warning_naming_it(
    spans: int, runs: int, linger: float
) -> None:
    port = _closed_port()
    proc = _child(f"http://127.0.0.1:{port}", spans, runs, linger)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    naming = [ln for ln in lines if str(port) in ln]
    assert len(naming) == 1, lines
    assert "OTLP collector" in naming[0] and "Connection refused" in naming[0]
    assert not [ln for ln in lines if "Transient error" in ln or "Failed to export" in ln]
    assert len(lines) <= 3, lines  # that, and at most the drop notice and its count
    ran = float(proc.stdout.split("RAN ")[1])
    assert ran < 20, f"the traced runs took {ran:.1f} s with the collector down"


def test_a_live_collector_gets_the_spans_and_nothing_is_logged() -> None:
    with _receiver() as (bodies, url):
        proc = _child(url, 200, 2, 0.0)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert bodies and sum(bodies) > 1000, bodies
    assert "OTLP collector" not in proc.stderr
    assert "Transient error" not in proc.stderr
