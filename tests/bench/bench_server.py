"""Execution server benchmark: 50 concurrent executions with 20 WebSocket clients watching, and
the cost of bridging events to a watcher against the same graph run with none.

Run: ``python tests/bench/bench_server.py`` (``--smoke``: tiny sizes, only to show it works).

The server runs as ``reflow-server`` in its own process on 127.0.0.1; its RSS is sampled with
psutil. Each execution runs the same graph (a generator, a splitter and a counter: ``--packets``
packets). Watched executions ask for ``await_watcher`` (the run starts once its watcher is
attached, so it sees every event) and the watchers read ``?batch=`` frames. Reported: errors (a
refused request, a watcher that saw events out of order or lost some), events lost, events/s
delivered to the watchers, the server's peak RSS. The server exports traces to an OTLP/HTTP
receiver in this process; executions say ``trace: off`` except the traced rows. Ratios: an
execution's run time (its summary's ``elapsed``) with one watcher reading every event over its
run time without one (target issue 13: <= 1.5x); the same graph traced per node and per tick
over untraced; 50 concurrent executions' wall time over 50 times one execution's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
import psutil
import uvicorn
import websockets
from _ratios import print_ratios
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from reflow.server import ServerLimits

TOKEN = "bench-token-0123456789abcdef"
BATCH = [500]  # events per WebSocket frame (?batch=; --batch)
LOSSES: list[int] = []  # what the watchers were told they lost
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def graph(packets: int) -> dict[str, Any]:
    return {
        "processes": {
            "gen": {"component": "tpl_generator", "metadata": {"config": {"end": packets}}},
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


class Receiver:
    """A minimal OTLP/HTTP traces endpoint on 127.0.0.1 (counts what it gets; the tests'
    receiver in tests/server/test_tracing.py decodes and checks the spans)."""

    def __init__(self) -> None:
        self.spans = 0
        self.requests = 0
        app = Starlette(routes=[Route("/v1/traces", self.traces, methods=["POST"])])
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])), daemon=True
        )

    async def traces(self, request: Request) -> Response:
        req = ExportTraceServiceRequest()
        req.ParseFromString(await request.body())
        self.requests += 1
        self.spans += sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
        return Response(b"", media_type="application/x-protobuf")

    def start(self) -> Receiver:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert time.monotonic() < deadline, "the OTLP receiver did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def create(client: httpx.AsyncClient, packets: int, **extra: Any) -> str | None:
    r = await client.post("/api/v1/executions", json={"graph": graph(packets), **extra})
    return str(r.json()["id"]) if r.status_code == 201 else None


async def wait(client: httpx.AsyncClient, eid: str) -> dict[str, Any]:
    while True:
        body = (await client.get(f"/api/v1/executions/{eid}")).json()
        if body["state"] in ("completed", "failed", "cancelled"):
            return dict(body)
        await asyncio.sleep(0.02)


async def watch(ws_url: str, eid: str, connected: asyncio.Event | None = None) -> tuple[int, bool]:
    """Events received, and whether they were complete and in order."""
    url = f"{ws_url}/api/v1/executions/{eid}/events?access_token={TOKEN}&batch={BATCH[0]}"
    n, ok, last = 0, True, 0
    async with websockets.connect(url, max_queue=None) as ws:
        if connected is not None:
            connected.set()
        async for frame in ws:
            got = json.loads(frame)
            for ev in got if isinstance(got, list) else [got]:
                n += 1
                if ev["_type"] == "EventsDropped" or ev.get("timestamp", last) < last:
                    LOSSES.append(ev.get("count", 0))
                    ok = False
                last = ev.get("timestamp", last)
                if ev["_type"] in ("Completed", "Failed", "Cancelled"):
                    ok = ok and ev["state"] == "completed" and ev["events"] == n - 1
    return n, ok


async def one_run(url: str, ws_url: str, packets: int, watched: bool, trace: str = "off") -> float:
    async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=60) as c:
        extra: dict[str, Any] = {"trace": trace}
        if watched:
            extra["await_watcher"] = 10
        eid = await create(c, packets, **extra)
        assert eid is not None
        if watched:
            await watch(ws_url, eid)
        body = await wait(c, eid)
        return float(body["summary"]["elapsed"])


async def concurrent(
    url: str, ws_url: str, packets: int, executions: int, watchers: int
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=120) as c:
        t0 = time.perf_counter()
        # each watched execution gets its watcher before the next one is created, so the
        # watchers keep up from the start (a late one gets the kept history, then a gap)
        tasks, ids = [], []
        for _ in range(watchers):
            eid = await create(c, packets, await_watcher=10, trace="off")
            ids.append(eid)
            if eid is not None:
                connected = asyncio.Event()
                tasks.append(asyncio.ensure_future(watch(ws_url, eid, connected)))
                await connected.wait()
        ids += await asyncio.gather(
            *(create(c, packets, trace="off") for _ in range(executions - watchers))
        )
        errors = sum(1 for i in ids if i is None)
        good = [i for i in ids if i is not None]
        seen = await asyncio.gather(*tasks)
        bodies = await asyncio.gather(*(wait(c, eid) for eid in good))
        wall = time.perf_counter() - t0
    errors += sum(1 for _, ok in seen if not ok)
    errors += sum(1 for b in bodies if b["state"] != "completed")
    return {"errors": errors, "events": sum(n for n, _ in seen), "wall": wall}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--packets", type=int, default=20_000)
    ap.add_argument("--executions", type=int, default=50)
    ap.add_argument("--watchers", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--client-queue", type=int, default=ServerLimits.client_queue)
    ap.add_argument("--batch", type=int, default=BATCH[0], help="events per WebSocket frame")
    ap.add_argument("--smoke", action="store_true")
    opts = ap.parse_args(argv)
    if opts.smoke:
        opts.packets, opts.executions, opts.watchers, opts.repeat = 200, 5, 2, 1
    BATCH[0] = opts.batch
    otlp = Receiver().start()
    port = free_port()
    url, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reflow.server._cli",
            "--port",
            str(port),
            "--token",
            TOKEN,
            "--max-running",
            str(opts.executions),
            "--max-queued",
            "100",
            "--client-queue",
            str(opts.client_queue),
            "--otlp",
            otlp.url,
        ],
        stderr=subprocess.DEVNULL,
        env={**os.environ},
    )
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        p = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], p.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.05)

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/openapi.json", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        threading.Thread(target=sample, daemon=True).start()
        asyncio.run(one_run(url, ws_url, opts.packets, True))  # warm up the catalog
        asyncio.run(one_run(url, ws_url, opts.packets, False, "ticks"))  # ... and the tracer
        bare, bridged, nodes, ticks = [], [], [], []
        for _ in range(opts.repeat):
            bare.append(asyncio.run(one_run(url, ws_url, opts.packets, False)))
            bridged.append(asyncio.run(one_run(url, ws_url, opts.packets, True)))
            nodes.append(asyncio.run(one_run(url, ws_url, opts.packets, False, "nodes")))
            ticks.append(asyncio.run(one_run(url, ws_url, opts.packets, False, "ticks")))
        single = statistics.median(bare)
        result = asyncio.run(concurrent(url, ws_url, opts.packets, opts.executions, opts.watchers))
    finally:
        stop.set()
        proc.terminate()
        proc.wait(20)
        otlp.stop()
    print(f"graph: {opts.packets} packets; {opts.executions} executions, {opts.watchers} watchers")
    print(f"  one execution, no watcher:    {single * 1000:8.1f} ms (median of {opts.repeat})")
    print(f"  one execution, one watcher:   {statistics.median(bridged) * 1000:8.1f} ms")
    print(f"  one execution, traced nodes:  {statistics.median(nodes) * 1000:8.1f} ms")
    print(f"  one execution, traced ticks:  {statistics.median(ticks) * 1000:8.1f} ms")
    print(f"  OTLP receiver: {otlp.spans} spans in {otlp.requests} requests")
    print(
        f"  {opts.executions} concurrent: wall {result['wall']:.2f} s, errors {result['errors']}, "
        f"{result['events'] / result['wall']:,.0f} events/s delivered to the watchers"
    )
    print(
        f"  events lost by the watchers: {sum(LOSSES)} in {len(LOSSES)} gaps "
        f"(client queue {opts.client_queue} events)"
    )
    print(f"  server peak RSS: {peak[0] / 2**20:.0f} MiB")
    print_ratios(
        [
            ("run time with one watcher / without (bridging)", statistics.median(bridged) / single),
            ("run time traced per node / untraced", statistics.median(nodes) / single),
            ("run time traced per tick / untraced", statistics.median(ticks) / single),
            (
                "concurrent wall / (executions x one execution)",
                result["wall"] / (opts.executions * single),
            ),
        ]
    )
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
