"""API-service pack benchmarks (issue 11): one operation template of a pack generated from a
shared spec (``petstore/petstore.json``'s ``show_pet_by_id``, ``GET /pets/{petId}``) against
the local spec server serving that pack's own table, vs a bare ``httpx.AsyncClient`` loop
making the same requests in the same run; memory per in-flight request; and ``load_pack`` of
a Kubernetes-sized (1,123 operations) hand-written table, and warm ``load_pack`` of the pack
generated in the run from the Kubernetes description itself, in the same process (after
``unload_pack``) and in a fresh process (the cache filled; one-time imports reported apart).

Run: ``python tests/bench/bench_httpapi.py`` (``--smoke``: tiny sizes, only to show it runs;
``--specs DIR``: the shared specs, default ``../shared/openapi``; a built-in description of
the same shape stands in when they are absent). Everything runs in this process on 127.0.0.1
(the server too, so memory figures include the server's share for both the engine and the
baseline). Targets: template throughput >= 0.5x the bare loop's; ``load_pack`` warm <= 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from _ratios import print_ratios

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))
from allops import pack_table
from svctest import Packs, op, param, table

from reflow import Message, Network
from reflow._core._catalog import template_actor
from reflow._loader._packs import load_pack, unload_pack
from reflow._loader._trust import TrustStore
from reflow._services import HttpApiGrants
from reflow.abi._signing import generate_key
from reflow.testing import spec_server
from reflow.tools._openapi_pack import build_openapi_pack

ROOT = Path(__file__).resolve().parents[2]
PACK = "acme/petstore-json"
OPERATION = "show_pet_by_id"
#: Stands in for petstore/petstore.json when the shared specs are not next to the checkout.
BUILTIN = {
    "openapi": "3.0.0",
    "info": {"title": "Pets", "version": "1.0.0"},
    "servers": [{"url": "http://petstore.swagger.io/v1"}],
    "paths": {
        "/pets/{petId}": {
            "get": {
                "operationId": "showPetById",
                "parameters": [
                    {"name": "petId", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {
                        "description": "a pet",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["id", "name"],
                                    "properties": {
                                        "id": {"type": "integer"},
                                        "name": {"type": "string"},
                                        "tag": {"type": "string"},
                                    },
                                }
                            }
                        },
                    }
                },
            }
        }
    },
}


def generated_pack(specs: Path, out: Path, store: TrustStore) -> Path:
    """The petstore pack, generated and signed as ``reflow-pack openapi`` does."""
    spec = specs / "petstore" / "petstore.json"
    if not spec.is_file():
        print(f"{spec} not found: using a built-in description", file=sys.stderr)
        spec = out / "petstore.json"
        spec.parent.mkdir(parents=True, exist_ok=True)
        spec.write_text(json.dumps(BUILTIN))
    key = generate_key()
    store.add(key.public_key(), names=("acme/*",))
    return build_openapi_pack(spec, name=PACK, out_dir=out, key=key).path


def graph_run(nodes: int, per_node: int) -> float:
    net = Network()
    net.register_actor("t", template_actor(f"{PACK}/{OPERATION}"))
    for i in range(nodes):
        net.add_node(f"n{i}", "t", {"pet_id": str(i + 1), "_http": {"base_url": URL[0]}})
        net.collect(f"n{i}", "response")
        for _ in range(per_node):
            net.add_initial(f"n{i}", "trigger", Message.flow())
    t0 = time.perf_counter()
    summary = net.run(timeout=600)
    elapsed = time.perf_counter() - t0
    net.shutdown()
    assert not summary.failures, summary.failures[:3]
    return elapsed


URL = [""]  # the spec server's URL, once it runs


def bare_run(url: str, nodes: int, per_node: int) -> float:
    async def main() -> float:
        # Keep-alive bounded as the engine's pools are: httpx.Limits(max_connections=None)
        # also lifts max_keepalive_connections, and httpcore 1.0's pool then rescans every
        # connection for each idle one on every request event, so 1,000 answers took 25-30 s
        # to hand back. And not httpx's default 5 s timeout: the server holds each request
        # until the --inflight'th arrives (seconds on a busy machine). Together those were
        # the ReadTimeout of the default run.
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
        async with httpx.AsyncClient(limits=limits, timeout=120) as client:

            async def one(i: int) -> None:
                for _ in range(per_node):
                    r = await client.get(f"{url}/pets/{i + 1}")
                    r.json()

            t0 = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(nodes)))
            return time.perf_counter() - t0

    return asyncio.run(main())


def peak_rss(fn: Any) -> int:
    proc = psutil.Process()
    peak = [proc.memory_info().rss]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    before = proc.memory_info().rss
    fn()
    stop.set()
    th.join()
    return max(1, peak[0] - before)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--inflight", type=int, default=1000)
    ap.add_argument("--specs", type=Path, default=ROOT.parent / "shared" / "openapi")
    args = ap.parse_args()
    n = 40 if args.smoke else args.requests
    inflight = 20 if args.smoke else args.inflight
    tmp = Path(tempfile.mkdtemp(prefix="bench-httpapi-"))
    os.environ.setdefault("REFLOW_CACHE_DIR", str(tmp / "cache"))
    store = TrustStore(tmp / "trust")
    packs = Packs(tmp, store)
    rows: list[tuple[str, float]] = []
    generated = generated_pack(args.specs, tmp / "dist", store)
    with spec_server(pack_table(generated), pack=PACK) as srv:
        URL[0] = srv.url
        load_pack(generated, trust=store, grants=HttpApiGrants(base_urls=(srv.url,)))
        print(f"{PACK}/{OPERATION} (generated from the spec) against its spec server {srv.url}")
        bare_run(srv.url, 4, 5)
        graph_run(4, 5)  # warm both
        seq_bare = bare_run(srv.url, 1, n // 4)
        seq_node = graph_run(1, n // 4)
        conc_bare = bare_run(srv.url, 50, max(1, n // 50))
        conc_node = graph_run(50, max(1, n // 50))
        print(
            f"one node, sequential: {n // 4 / seq_node:8.0f} req/s; bare loop "
            f"{n // 4 / seq_bare:8.0f} req/s"
        )
        print(
            f"50 nodes:             {n / conc_node:8.0f} req/s; bare gather(50) "
            f"{n / conc_bare:8.0f} req/s"
        )
        rows.append(("template sequential / bare httpx loop (req/s)", seq_bare / seq_node))
        rows.append(("50 nodes / bare httpx gather of 50 (req/s)", conc_bare / conc_node))
        srv.hold_until(inflight)
        mem_node = peak_rss(lambda: graph_run(inflight, 1))
        srv.hold_until(inflight)
        srv._released = None
        mem_bare = peak_rss(lambda: bare_run(srv.url, inflight, 1))
        print(
            f"memory per in-flight request: template {mem_node / inflight / 1024:.1f} KiB, "
            f"bare httpx {mem_bare / inflight / 1024:.1f} KiB (incl. the in-process server)"
        )
        rows.append(("memory per in-flight request / bare httpx", mem_node / mem_bare))
    ops = {
        f"op_{i}": op(
            "GET",
            f"/apis/v{i}/{{name}}",
            [
                param("name", "path", {"type": "string"}),
                param("watch", "query", {"type": "boolean"}),
                param("limit", "query", {"type": "integer"}),
            ],
            description="x" * 200,
        )
        for i in range(1123)
    }
    big = table(
        ops,
        schemas={
            f"S{i}": {"type": "object", "properties": {"a": {"type": "string"}}} for i in range(500)
        },
    )
    path = packs.build(big, ["api.example.com"], name="acme/k8s")
    raw = path.read_bytes()
    load_pack(path, trust=packs.store)
    unload_pack("acme/k8s")
    reps = 3 if args.smoke else 10
    t0 = time.perf_counter()
    for _ in range(reps):
        load_pack(path, trust=packs.store)
        unload_pack("acme/k8s")
    warm = (time.perf_counter() - t0) / reps
    t0 = time.perf_counter()
    for _ in range(reps):
        hashlib.sha256(path.read_bytes()).digest()
    base = (time.perf_counter() - t0) / reps
    print(
        f"load_pack warm, 1,123 operations ({len(json.dumps(big)) >> 10} KiB table, "
        f"{len(raw) >> 10} KiB pack): {warm * 1000:.1f} ms"
    )
    rows.append(("load_pack warm 1,123 ops / read+sha256 of the pack", warm / base))
    rows += generated_load_rows(args, tmp, store, generated)
    print_ratios(rows)


#: A child process: the imports, then one warm ``load_pack`` (the cache filled by the parent).
#: Prints the load's milliseconds and those of the one-time imports before it.
_FRESH = """
import sys, time
t0 = time.perf_counter()
import reflow._services, reflow._sandbox._wasm_cache
from reflow._loader._packs import load_pack
from reflow._loader._plugins import plugin_manager
from reflow._loader._trust import TrustStore
plugin_manager()
t1 = time.perf_counter()
load_pack(sys.argv[1], trust=TrustStore(sys.argv[2]))
t2 = time.perf_counter()
print((t2 - t1) * 1000, (t1 - t0) * 1000)
"""


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def generated_load_rows(
    args: Any, tmp: Path, store: TrustStore, fallback: Path
) -> list[tuple[str, float]]:
    """``load_pack`` warm of a pack ``reflow-pack openapi`` generated in this run from the
    Kubernetes description (1,123 operations; ``--smoke``: the petstore pack above): in this
    process after ``unload_pack``, and in a fresh process with the cache filled."""
    spec = args.specs / "kubernetes" / "swagger.json.unprocessed"
    if args.smoke or not spec.is_file():
        if not args.smoke:
            print(f"{spec} not found: the petstore pack stands in", file=sys.stderr)
        path, name = fallback, PACK
    else:
        key = generate_key()
        store.add(key.public_key(), names=("acme/*",))
        t0 = time.perf_counter()
        path = build_openapi_pack(spec, name="acme/k8s", out_dir=tmp / "k8s", key=key).path
        name = "acme/k8s"
        print(f"generated {path.name} from {spec.name} in {time.perf_counter() - t0:.1f} s")
    unload_pack(name)
    load_pack(path, trust=store)  # fills the cache (and this process's memo)
    unload_pack(name)
    reps = 3 if args.smoke else 15
    inproc = []
    for _ in range(reps):
        t0 = time.perf_counter()
        load_pack(path, trust=store)
        inproc.append(time.perf_counter() - t0)
        unload_pack(name)
    base = []
    for _ in range(reps):
        t0 = time.perf_counter()
        hashlib.sha256(path.read_bytes()).digest()
        base.append(time.perf_counter() - t0)
    fresh, imports = [], []
    for _ in range(1 if args.smoke else 7):
        out = subprocess.run(
            [sys.executable, "-c", _FRESH, str(path), str(store.path)],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout.split()
        fresh.append(float(out[0]) / 1000)
        imports.append(float(out[1]) / 1000)
    warm, cold_proc, b = _median(inproc), _median(fresh), _median(base)
    print(
        f"load_pack warm, {path.name} ({path.stat().st_size >> 10} KiB): in this process "
        f"{warm * 1000:.1f} ms, in a fresh process {cold_proc * 1000:.1f} ms (after "
        f"{_median(imports) * 1000:.0f} ms of one-time imports); read+sha256 {b * 1000:.2f} ms "
        f"(medians of {reps}, {len(fresh)})"
    )
    return [
        ("load_pack warm generated pack, same process / read+sha256", warm / b),
        ("load_pack warm generated pack, fresh process / read+sha256", cold_proc / b),
    ]


if __name__ == "__main__":
    main()
