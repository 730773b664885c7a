"""OpenTelemetry traces of executions and of plain network runs, received by a real OTLP/HTTP
receiver on 127.0.0.1.

No OpenTelemetry Collector binary installs from PyPI or Debian here, so the receiver is the
most faithful stand-in available: a Starlette app on uvicorn that accepts ``POST /v1/traces``
exactly as a collector's OTLP/HTTP receiver does and decodes the protobuf
``ExportTraceServiceRequest`` with ``opentelemetry-proto`` (the schema the collector itself is
generated from). It can also answer slowly, or not be there at all.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from exectest import TOKEN, RunningServer, counter_graph, failing_graph, wait_done
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from reflow import Actor, Network
from reflow import Message as M
from reflow.server import ServerConfig, ServerConfigError, ServerLimits
from reflow.tracing import (
    TraceConfigError,
    close_provider,
    otlp_tracer_provider,
    redact,
    trace_network,
)

# -- the receiver --------------------------------------------------------------------------


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent: str
    attrs: dict[str, Any]
    status: int  # 0 unset, 1 ok, 2 error
    message: str
    start: int
    end: int
    service: str


@dataclass
class Receiver:
    """An OTLP/HTTP traces receiver; ``delay``: seconds it waits before each answer."""

    delay: float = 0.0
    spans: list[Span] = field(default_factory=list)
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def traces(self, request: Request) -> Response:
        body = await request.body()
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        got = []
        for rs in req.resource_spans:
            res = {a.key: _value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    got.append(
                        Span(
                            s.name,
                            s.trace_id.hex(),
                            s.span_id.hex(),
                            s.parent_span_id.hex(),
                            {a.key: _value(a.value) for a in s.attributes},
                            s.status.code,
                            s.status.message,
                            s.start_time_unix_nano,
                            s.end_time_unix_nano,
                            str(res.get("service.name")),
                        )
                    )
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            self.requests += 1
            self.spans.extend(got)
        return Response(
            ExportTraceServiceResponse().SerializeToString(),
            media_type="application/x-protobuf",
        )

    def of_trace(self, trace_id: str, timeout: float = 20.0, least: int = 1) -> list[Span]:
        """The spans of one trace, waiting until ``least`` have arrived."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                found = [s for s in self.spans if s.trace_id == trace_id]
            if len(found) >= least or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def receiver(delay: float = 0.0) -> Iterator[tuple[Receiver, str]]:
    rec = Receiver(delay=delay)
    app = Starlette(routes=[Route("/v1/traces", rec.traces, methods=["POST"])])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "the OTLP receiver did not start"
        time.sleep(0.02)
    try:
        yield rec, f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


@contextmanager
def traced_server(otlp: str, **limits: Any) -> Iterator[RunningServer]:
    srv = RunningServer(ServerConfig(token=TOKEN, limits=ServerLimits(**limits), otlp=otlp))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[Receiver, RunningServer]]:
    with receiver() as (rec, url), traced_server(url) as srv:
        yield rec, srv


def run(srv: RunningServer, graph: dict[str, Any], **extra: Any) -> dict[str, Any]:
    with srv.client() as c:
        r = c.post("/api/v1/executions", json={"graph": graph, **extra})
        assert r.status_code == 201, r.text
        return wait_done(c, r.json()["id"])


def by_name(spans: list[Span]) -> dict[str, Span]:
    return {s.name: s for s in spans}


# -- what an execution's trace holds ----------------------------------------------------------


def test_an_execution_is_one_trace_a_span_per_node(live: tuple[Receiver, RunningServer]) -> None:
    rec, srv = live
    done = run(srv, counter_graph(10))
    assert done["state"] == "completed"
    tid = done["trace_id"]
    assert isinstance(tid, str) and len(tid) == 32
    spans = by_name(rec.of_trace(tid, least=4))
    assert set(spans) == {"reflow.execution", "node gen", "node split", "node count"}
    root = spans["reflow.execution"]
    assert root.parent == "" and root.service == "reflow-server"
    assert root.attrs["reflow.execution.id"] == done["id"]
    assert root.attrs["reflow.state"] == "completed" and root.status == 0
    for node in ("gen", "split", "count"):
        span = spans[f"node {node}"]
        assert span.parent == root.span_id  # a child of the execution's span
        assert span.attrs["reflow.node.id"] == node
        assert span.attrs["reflow.node.ticks"] == done["summary"]["node_ticks"][node]
        assert span.attrs["reflow.node.failures"] == 0
        assert root.start <= span.start <= span.end <= root.end
    assert spans["node gen"].attrs["reflow.node.template"] == "tpl_generator"
    assert spans["node split"].attrs["reflow.node.ticks"] == 1
    assert spans["node count"].attrs["reflow.node.ticks"] == 10
    assert spans["node split"].attrs["reflow.node.bytes_out"] == 10 * 8  # ten integers
    assert spans["node count"].attrs["reflow.node.bytes_out"] == 0  # its out-port is unwired


def test_ticks_mode_adds_a_span_per_tick_under_its_node(
    live: tuple[Receiver, RunningServer],
) -> None:
    rec, srv = live
    done = run(srv, counter_graph(5), trace="ticks")
    total = done["summary"]["ticks"]
    spans = rec.of_trace(done["trace_id"], least=4 + total)
    nodes = {s.span_id: s for s in spans if s.name.startswith("node ")}
    ticks = [s for s in spans if s.name.startswith("tick ")]
    assert len(ticks) == total
    for t in ticks:
        parent = nodes[t.parent]
        assert parent.name == "node " + t.name.removeprefix("tick ")
        assert parent.start <= t.start <= t.end <= parent.end


def test_a_failing_node_sets_error_status_with_its_error(
    live: tuple[Receiver, RunningServer],
) -> None:
    rec, srv = live
    done = run(srv, failing_graph())
    assert done["state"] == "failed"
    spans = by_name(rec.of_trace(done["trace_id"], least=2))
    div = spans["node div"]
    assert div.status == 2 and div.attrs["reflow.node.failures"] == 1
    assert "zero" in div.message.lower(), div.message
    root = spans["reflow.execution"]
    assert root.status == 2 and root.message and root.attrs["reflow.failures"] == 1


def test_each_execution_has_its_own_trace_and_off_sends_none(
    live: tuple[Receiver, RunningServer],
) -> None:
    rec, srv = live
    a, b = run(srv, counter_graph(3)), run(srv, counter_graph(3))
    assert a["trace_id"] != b["trace_id"]
    for done in (a, b):
        spans = rec.of_trace(done["trace_id"], least=4)
        assert len({s.trace_id for s in spans}) == 1
        assert [s.attrs.get("reflow.execution.id") for s in spans if not s.parent] == [done["id"]]
    before = len(rec.spans)
    off = run(srv, counter_graph(3), trace="off")
    assert off["trace_id"] is None
    time.sleep(1.0)  # the exporter's schedule is 0.5 s: anything sent would be here by now
    assert all(s.attrs.get("reflow.execution.id") != off["id"] for s in rec.spans[before:])


def test_an_untraced_server_has_no_trace_ids_and_no_opentelemetry() -> None:
    code = (
        "import os, sys\n"
        "for k in list(os.environ):\n"
        "    k.startswith('OTEL_') and os.environ.pop(k)\n"
        "from reflow.server import create_app\n"
        "app = create_app()\n"
        "print(app.state.tracing, any(m.startswith('opentelemetry') for m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["None", "False"], out.stderr


# -- a receiver that is down or slow --------------------------------------------------------------


@pytest.mark.slow
def test_a_receiver_that_is_down_never_stalls_or_fails_the_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="reflow.tracing")
    dead = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    with traced_server(dead) as srv:
        t0 = time.perf_counter()
        done = run(srv, counter_graph(6000), trace="ticks")
        took = time.perf_counter() - t0
        assert done["state"] == "completed", done
        assert took < 20, f"the run took {took:.1f} s with the receiver down"
        with srv.client() as c:  # and the server still answers at once
            assert c.get("/api/v1/templates").status_code == 200
        # ~6000 tick spans into a 2048-span queue nobody drains: dropped, said once
        drops = [r for r in caplog.records if "are being dropped" in r.getMessage()]
        assert len(drops) == 1
    # the server stopped within its bounded flush even though every export fails


@pytest.mark.slow
def test_a_slow_receiver_drops_spans_logs_once_and_never_stalls(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "64")
    caplog.set_level(logging.WARNING, logger="reflow.tracing")
    with receiver(delay=3.0) as (_rec, url), traced_server(url) as srv:
        t0 = time.perf_counter()
        done = run(srv, counter_graph(3000), trace="ticks")  # ~6000 spans into a 64-span queue
        took = time.perf_counter() - t0
        assert done["state"] == "completed"
        assert took < 20, f"the run took {took:.1f} s with a slow receiver"
        drops = [r for r in caplog.records if "dropped" in r.getMessage()]
        assert len(drops) == 1, [r.getMessage() for r in drops]
        assert "later drops are counted" in drops[0].getMessage()


# -- reflow.tracing without the server ------------------------------------------------------------


class Numbers(Actor):
    component = "tr_numbers"
    inports: list[str] = []
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        for i in range(int(ctx.config.get("n", 3))):
            ctx.send({"out": M.integer(i)})
        ctx.done()


class Leaky(Actor):
    """Fails on 2 with an error that carries credentials."""

    component = "tr_leaky"
    inports = ["in"]
    outports = ["out"]

    def run(self, ctx: Any) -> None:
        v = ctx.inputs["in"]["data"]
        if v == 2:
            secret = os.environ["REFLOW_SECRET_ACME_KEY"]
            raise RuntimeError(
                f"GET https://bob:hunter2pass@api.example/x?api_key={secret} failed: "
                "Authorization: Bearer abcdefgh12345678"
            )
        ctx.done({"out": M.integer(v)})


def _net(n: int) -> Network:
    net = Network()
    net.register_actor("numbers", Numbers())
    net.register_actor("leaky", Leaky())
    net.add_node("src", "numbers", {"n": n})
    net.add_node("leak", "leaky")
    net.add_connection("src", "out", "leak", "in")
    return net


def test_trace_network_traces_any_run_and_redacts_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REFLOW_SECRET_ACME_KEY", "s3cr3t-value-xyz")
    with receiver() as (rec, url):
        provider = otlp_tracer_provider(url, service_name="tracing-test")
        net = _net(5)
        with trace_network(net, provider=provider, mode="ticks", name="my.run") as trace:
            net.run(timeout=30)
        net.shutdown()
        assert close_provider(provider, timeout=10)
        spans = rec.of_trace(str(trace.trace_id), least=1 + 2 + 6)
    names = sorted(s.name for s in spans)
    assert names.count("tick leak") == 5 and names.count("tick src") == 1
    assert {s.service for s in spans} == {"tracing-test"}
    root = next(s for s in spans if s.name == "my.run")
    leak = next(s for s in spans if s.name == "node leak")
    assert leak.parent == root.span_id and leak.status == 2
    failed = [s for s in spans if s.name == "tick leak" and s.status == 2]
    assert len(failed) == 1
    for text in (leak.message, failed[0].message, root.message):
        assert "failed" in text
        for secret in ("s3cr3t-value-xyz", "hunter2pass", "abcdefgh12345678"):
            assert secret not in text, text
    assert root.status == 2 and root.attrs["reflow.failures"] == 1


@pytest.mark.parametrize(
    ("text", "gone", "kept"),
    [
        ("Authorization: Bearer abc.def-123456789", "abc.def-123456789", "Bearer"),
        ("https://u:p4ssw0rd@host/x", "p4ssw0rd", "host/x"),
        ("?api_key=XYZ987654&page=2", "XYZ987654", "page=2"),
        ('{"client_secret": "zzz-top"}', "zzz-top", "client_secret"),
        ("password=hunter2", "hunter2", "password"),
        ("division by zero", "", "division by zero"),
    ],
)
def test_redact(text: str, gone: str, kept: str) -> None:
    out = redact(text)
    assert kept in out
    if gone:
        assert gone not in out and "[redacted]" in out


def test_redact_is_bounded() -> None:
    t0 = time.perf_counter()
    out = redact("token=" + "a" * 5_000_000)
    assert len(out) <= 1000 and time.perf_counter() - t0 < 2


# -- bad configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "fragment"),
    [
        (lambda: otlp_tracer_provider("ftp://collector:4318"), TraceConfigError, "http://host"),
        (lambda: otlp_tracer_provider("not a url"), TraceConfigError, "OTLP endpoint"),
        (lambda: otlp_tracer_provider("http://h:99999"), TraceConfigError, "not a URL"),
        (lambda: otlp_tracer_provider(""), TraceConfigError, "expected an http(s) URL"),
        (lambda: otlp_tracer_provider(max_queue_size=0), TraceConfigError, "max_queue_size"),
        (
            lambda: trace_network(Network(), mode="spans"),
            TraceConfigError,
            "'off', 'nodes', 'ticks'",
        ),
        (lambda: trace_network(Network(), mode="off"), TraceConfigError, "traces nothing"),
        (
            lambda: RunningServer(ServerConfig(otlp="udp://x:1")),
            ServerConfigError,
            "OTLP endpoint 'udp://x:1'",
        ),
    ],
)
def test_bad_tracing_configuration(call: Any, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error, match=None) as info:
        call()
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "http/protobuf"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "OTLP endpoint"),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "lots"}, "OTEL_BSP_MAX_QUEUE_SIZE"),
    ],
)
def test_bad_tracing_environment(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], fragment: str
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(TraceConfigError) as info:
        otlp_tracer_provider()
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("extra", "path", "fragment"),
    [
        ({"trace": "spans"}, "$.trace", "'off', 'nodes', 'ticks'"),
        ({"trace": 1}, "$.trace", "trace must be"),
        ({"await_watcher": -1}, "$.await_watcher", "from 0 to 60"),
        ({"await_watcher": 1e9}, "$.await_watcher", "from 0 to 60"),
        ({"await_watcher": True}, "$.await_watcher", "await_watcher"),
    ],
)
def test_bad_trace_requests(
    live: tuple[Receiver, RunningServer], extra: dict[str, Any], path: str, fragment: str
) -> None:
    _, srv = live
    with srv.client() as c:
        r = c.post("/api/v1/executions", json={"graph": counter_graph(1), **extra})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["path"] == path and fragment in r.json()["error"]["message"]


def test_cli_refuses_a_bad_otlp_url() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "reflow.server._cli", "--token", TOKEN, "--otlp", "ftp://x:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and "OTLP endpoint 'ftp://x:1'" in out.stderr


def test_the_cli_exports_traces_to_the_otlp_url() -> None:
    with receiver() as (rec, url):
        port = _free_port()
        argv = [sys.executable, "-m", "reflow.server._cli", "--port", str(port)]
        proc = subprocess.Popen(
            [*argv, "--token", TOKEN, "--otlp", url],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(base + "/openapi.json", timeout=1)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "reflow-server did not start"
                    time.sleep(0.1)
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
                eid = c.post("/api/v1/executions", json={"graph": counter_graph(2)}).json()["id"]
                done = wait_done(c, eid)
            assert len(rec.of_trace(done["trace_id"], least=4)) == 4
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=30)
        assert "exporting a trace per execution" in err


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        (
            "from reflow.tracing import otlp_tracer_provider\notlp_tracer_provider()",
            "TraceConfigError: tracing needs OpenTelemetry: pip install 'reflow[otel]'",
        ),
        (
            "from reflow.server._cli import main\n"
            "main(['--token', 'x' * 20, '--otlp', 'http://127.0.0.1:4318'])",
            "error: tracing needs OpenTelemetry",
        ),
    ],
)
def test_without_the_otel_extra_tracing_says_what_to_install(code: str, fragment: str) -> None:
    hide = "import sys\nsys.modules['opentelemetry'] = None\n"  # as if it were not installed
    out = subprocess.run(
        [sys.executable, "-c", hide + code], capture_output=True, text=True, timeout=60
    )
    assert out.returncode != 0
    assert fragment in out.stderr, out.stderr


_BOUNDED = """
import gc, os, sys, time, psutil
sys.path.insert(0, {here!r})
from test_tracing import _net
from reflow.tracing import close_provider, otlp_tracer_provider, trace_network

os.environ["REFLOW_SECRET_ACME_KEY"] = "unused-here"
proc = psutil.Process()
def run(n):
    provider = otlp_tracer_provider({dead!r})
    net = _net(n)
    t0 = time.perf_counter()
    with trace_network(net, provider=provider, mode="ticks"):
        net.run(timeout=120)
    net.shutdown()
    took = time.perf_counter() - t0
    close_provider(provider, timeout=2)
    gc.collect()
    return took
run(2_000)  # warm: imports, first spans
base = proc.memory_info().rss
took = run({n})
print(took, (proc.memory_info().rss - base) / 2**20)
"""


@pytest.mark.slow
def test_ticks_mode_memory_stays_bounded_with_a_dead_receiver() -> None:
    """100 000 tick spans nobody receives: the queue holds 2048 at most, so the traced run's
    process grows by a few MiB, not by the spans (each ~2 KiB), and it ends in bounded time."""
    here = str(Path(__file__).resolve().parent)
    code = _BOUNDED.format(here=here, dead=f"http://127.0.0.1:{_free_port()}", n=100_000)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    took, grew = map(float, out.stdout.split()[-2:])
    assert took < 120 and grew < 64, (took, grew)
