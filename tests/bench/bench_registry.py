"""Registry benchmarks: download throughput of a 20 MB pack against static file servers
serving the same bytes in the same run, and publish latency.

Run: ``python tests/bench/bench_registry.py`` (``--size-mb 5 --repeat 3`` for a quicker run;
``--smoke``: a 1 MB pack, one download each, only to show it all still works).

Baselines, measured in the same run on 127.0.0.1: uvicorn + Starlette ``StaticFiles`` (the
same server stack without the registry's auth, index lookup and headers) and
``python -m http.server``. Every server runs in its own process; the client streams each
download with httpx and discards it. Target (issue 5): registry throughput >= 50% of the
static server's.

Also: an ``install`` of a pack that is cached and up to date, with the registry's signed
metadata (TUF, a pinned root) against the same install without it (unsigned version list):
the round trips each costs (target, issue 12: <= 3 for the metadata refresh) and the median
time, as a ratio.

``--load``: instead, 100 downloaders (each installs three versions of a 200 KB pack) and 10
publishers (three 50 KB packs each) at once against one server; prints the errors (failed
requests and client retries: target 0) and p50/p99 latency of installs and publishes.
``--backend pg-s3`` runs the server on a PostgreSQL index and S3 blobs (a PostgreSQL cluster
and s3rver started for the run, as in the tests; ``local``: SQLite + blob files).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _ratios import print_ratios

from reflow._loader._trust import TrustStore
from reflow.abi._bundle import artifact_entry, build_bundle
from reflow.abi._manifest import PORTABLE_TRIPLE, PackManifest, TemplateSpec
from reflow.abi._signing import generate_key, key_id, public_key_pem, sign_manifest
from reflow.registry._auth import Authenticator
from reflow.registry._client import RegistryClient
from reflow.registry._storage import Storage
from reflow.registry._storage_open import open_storage
from reflow.registry._storage_sqlite import LocalStorage
from reflow.registry._tuf_repo import ONLINE_DIR, TufRepository

_STATIC = (
    "import sys, uvicorn\n"
    "from starlette.applications import Starlette\n"
    "from starlette.routing import Mount\n"
    "from starlette.staticfiles import StaticFiles\n"
    "app = Starlette(routes=[Mount('/', StaticFiles(directory=sys.argv[1]))])\n"
    "uvicorn.run(app, host='127.0.0.1', port=int(sys.argv[2]), log_level='warning',"
    " access_log=False)\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pack(name: str, version: str, key: object, size: int) -> bytes:
    data = os.urandom(size)  # incompressible: the pack is as big as its artifact
    art = artifact_entry("m", PORTABLE_TRIPLE, "wasm", "artifacts/m.wasm", data)
    m = PackManifest(
        name=name,
        version=version,
        abi="1.0",
        artifacts=(art,),
        templates=(TemplateSpec(id=f"{name}/t", entry="m"),),
    )
    mbytes = m.to_toml()
    return build_bundle(mbytes, {art.path: data}, [sign_manifest(mbytes, key)])  # type: ignore[arg-type]


def start(args: list[str], url: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{args[:3]} did not start")


def throughput(url: str, size: int, repeat: int, headers: dict[str, str] | None = None) -> float:
    """Median MB/s of ``repeat`` full downloads (after one warm-up)."""
    rates = []
    with httpx.Client(timeout=60, headers=headers) as c:
        for i in range(repeat + 1):
            t0 = time.perf_counter()
            got = 0
            with c.stream("GET", url) as r:
                r.raise_for_status()
                for chunk in r.iter_raw():
                    got += len(chunk)
            dt = time.perf_counter() - t0
            assert got == size, (got, size)
            if i:
                rates.append(size / dt / 1e6)
    return statistics.median(rates)


def cached_installs(
    reg: str, token: str, root: Path, key: object, pack_path: Path, root_json: bytes, repeat: int
) -> tuple[dict[str, int], dict[str, list[float]]]:
    """Publish ``pack_path`` with signed metadata, install it once, then time installs of
    the cached pack with a pinned root and without one; count each one's requests."""
    trust = TrustStore(root / "trust")
    trust.add(key.public_key())  # type: ignore[attr-defined]
    with RegistryClient(reg, token=token, cache_dir=root / "pub", notify=None) as pub:
        pub.pin_root(root_json)
        pub.publish(pack_path, key=key)
    trips: dict[str, int] = {}
    times: dict[str, list[float]] = {}
    for label, cache in (("signed", root / "signed-cache"), ("unsigned", root / "plain-cache")):
        with RegistryClient(reg, cache_dir=cache, trust=trust, notify=None) as c:
            if label == "signed":
                c.pin_root(root_json)
            c.install("bench/signed@*")
            seen: list[str] = []
            c.http.event_hooks["request"].append(lambda r, seen=seen: seen.append(r.url.path))
            times[label] = []
            for _ in range(repeat * 4):
                seen.clear()
                t0 = time.perf_counter()
                got = c.install("bench/signed@*")
                times[label].append((time.perf_counter() - t0) * 1000)
                assert got.from_cache
            trips[label] = len(seen)
    return trips, times


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def load(backend: str, downloaders: int, publishers: int) -> int:
    """The 100-downloader + 10-publisher load on ``backend``; prints errors and p50/p99."""
    from concurrent.futures import ThreadPoolExecutor

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "registry"))
    import backends  # the tests' PostgreSQL and s3rver fixtures, as plain functions

    with tempfile.TemporaryDirectory(prefix="reflow-bench-load-") as tmp:
        root = Path(tmp)
        stops = []
        env: dict[str, str] = {}
        try:
            index = blobs = None
            if backend == "pg-s3":
                os.environ.update(backends.S3_ENV)
                pg = backends.start_postgres()
                stops.append(pg.stop)
                s3 = backends.start_s3()
                stops.append(s3.stop)
                index, blobs = pg.new_database(), s3.new_prefix()
                env = {"REFLOW_REGISTRY_INDEX": index, "REFLOW_REGISTRY_BLOBS": blobs}
            key = generate_key()
            storage: Storage = open_storage(root / "data", index, blobs)
            with storage:
                auth = Authenticator(storage)
                auth.create_namespace("acme", "acme")
                storage.add_key("acme", key_id(key), public_key_pem(key))
                _, token = auth.create_token("acme", "publish")
            port = free_port()
            reg = f"http://127.0.0.1:{port}"
            cmd = [
                sys.executable,
                "-m",
                "reflow.registry._cli",
                "serve",
                "--data",
                str(root / "data"),
                "--port",
                str(port),
                "--log-level",
                "warning",
            ]
            os.environ.update(env)
            proc = start(cmd, f"{reg}/api/v1/health")
            stops.insert(0, lambda: (proc.terminate(), proc.wait(10)))
            versions = ["0.1.0", "0.2.0", "0.3.0"]
            with httpx.Client(base_url=reg, timeout=60) as c:
                for v in versions:
                    c.put(
                        f"/api/v1/packs/acme/load/{v}",
                        content=pack("acme/load", v, key, 200_000),
                        headers={"Authorization": f"Bearer {token}"},
                    ).raise_for_status()
            trust = TrustStore(root / "trust")
            trust.add(key.public_key())
            bodies = {
                (p, i): pack(f"acme/pub{p}", f"1.{p}.{i}", key, 50_000)
                for p in range(publishers)
                for i in range(3)
            }
            retries: list[float] = []
            errors: list[str] = []
            installs: list[float] = []
            publishes: list[float] = []

            def downloader(n: int) -> None:
                with RegistryClient(
                    reg,
                    trust=trust,
                    cache_dir=root / f"c{n}",
                    sleep=retries.append,
                    timeout=60,
                    notify=None,
                ) as client:
                    for v in versions:
                        t0 = time.perf_counter()
                        try:
                            client.install(f"acme/load@{v}")
                        except Exception as exc:  # counted, not hidden
                            errors.append(f"install: {exc}")
                            continue
                        installs.append((time.perf_counter() - t0) * 1000)

            def publisher(p: int) -> None:
                with RegistryClient(
                    reg,
                    token=token,
                    trust=trust,
                    cache_dir=root / f"p{p}",
                    sleep=retries.append,
                    timeout=60,
                    notify=None,
                ) as client:
                    for i in range(3):
                        path = root / f"pub{p}-{i}.rflpack"
                        path.write_bytes(bodies[(p, i)])
                        t0 = time.perf_counter()
                        try:
                            client.publish(path)
                        except Exception as exc:
                            errors.append(f"publish: {exc}")
                            continue
                        publishes.append((time.perf_counter() - t0) * 1000)

            t0 = time.monotonic()
            with ThreadPoolExecutor(max_workers=downloaders + publishers) as pool:
                futures = [pool.submit(downloader, n) for n in range(downloaders)]
                futures += [pool.submit(publisher, p) for p in range(publishers)]
                for f in futures:
                    f.result(timeout=600)
            wall = time.monotonic() - t0
        finally:
            for stop in stops:
                stop()
    print(
        f"load on backend {backend}: {downloaders} downloaders x 3 installs + "
        f"{publishers} publishers x 3 publishes, {wall:.1f} s"
    )
    print(f"  errors {len(errors)}, client retries {len(retries)}  (target 0)")
    for label, values in (("install", installs), ("publish", publishes)):
        if values:
            print(
                f"  {label:<8} n={len(values):4d}  p50 {_pct(values, 0.5):8.1f} ms  "
                f"p99 {_pct(values, 0.99):8.1f} ms"
            )
    for e in errors[:5]:
        print("  error:", e[:300])
    return 1 if errors or retries else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mb", type=float, default=20)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="a 1 MB pack, one download each: checks it runs, measures nothing",
    )
    ap.add_argument(
        "--load",
        action="store_true",
        help="100 downloaders + 10 publishers at once: errors and p50/p99 latency",
    )
    ap.add_argument(
        "--backend",
        choices=("local", "pg-s3"),
        default="local",
        help="storage for --load: SQLite + files, or PostgreSQL + S3 (s3rver)",
    )
    ap.add_argument("--downloaders", type=int, default=100, help="for --load")
    ap.add_argument("--publishers", type=int, default=10, help="for --load")
    opts = ap.parse_args(argv)
    if opts.load:
        return load(opts.backend, opts.downloaders, opts.publishers)
    if opts.smoke:
        opts.size_mb, opts.repeat = 1, 1
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="reflow-bench-registry-") as tmp:
        root = Path(tmp)
        key = generate_key()
        with LocalStorage(root / "data") as storage:
            auth = Authenticator(storage)
            auth.create_namespace("bench", "bench")
            storage.add_key("bench", key_id(key), public_key_pem(key))
            _, token = auth.create_token("bench", "publish")
            root_json = TufRepository(storage, root / "data" / ONLINE_DIR).init(root / "keys")
        big = pack("bench/big", "1.0.0", key, int(opts.size_mb * (1 << 20)))
        static_dir = root / "static"
        static_dir.mkdir()
        (static_dir / "big.rflpack").write_bytes(big)
        try:
            port = free_port()
            reg = f"http://127.0.0.1:{port}"
            procs.append(
                start(
                    [
                        sys.executable,
                        "-m",
                        "reflow.registry._cli",
                        "serve",
                        "--data",
                        str(root / "data"),
                        "--port",
                        str(port),
                        "--max-upload",
                        "1G",
                        "--log-level",
                        "warning",
                    ],
                    f"{reg}/api/v1/health",
                )
            )
            sport = free_port()
            procs.append(
                start(
                    [sys.executable, "-c", _STATIC, str(static_dir), str(sport)],
                    f"http://127.0.0.1:{sport}/big.rflpack",
                )
            )
            hport = free_port()
            procs.append(
                start(
                    [
                        sys.executable,
                        "-m",
                        "http.server",
                        str(hport),
                        "--bind",
                        "127.0.0.1",
                        "--directory",
                        str(static_dir),
                    ],
                    f"http://127.0.0.1:{hport}/",
                )
            )
            auth_header = {"Authorization": f"Bearer {token}"}

            with httpx.Client(base_url=reg, headers=auth_header, timeout=120) as c:
                t0 = time.perf_counter()
                r = c.put("/api/v1/packs/bench/big/1.0.0", content=big)
                big_ms = (time.perf_counter() - t0) * 1000
                r.raise_for_status()
                small = []
                for i in range(opts.repeat * 4):
                    body = pack("bench/small", f"1.0.{i}", key, 20_000)
                    t0 = time.perf_counter()
                    c.put(f"/api/v1/packs/bench/small/1.0.{i}", content=body).raise_for_status()
                    small.append((time.perf_counter() - t0) * 1000)

            signed_small = root / "signed.rflpack"
            signed_small.write_bytes(pack("bench/signed", "1.0.0", key, 20_000))
            trips, times = cached_installs(
                reg, token, root, key, signed_small, root_json, opts.repeat
            )
            size = len(big)
            mb = size / (1 << 20)
            rate_reg = throughput(f"{reg}/api/v1/packs/bench/big/1.0.0/download", size, opts.repeat)
            rate_static = throughput(f"http://127.0.0.1:{sport}/big.rflpack", size, opts.repeat)
            rate_http = throughput(f"http://127.0.0.1:{hport}/big.rflpack", size, opts.repeat)
        finally:
            for p in procs:
                p.terminate()
                p.wait(10)
    print(f"download of a {mb:.1f} MB pack over 127.0.0.1 (median of {opts.repeat}):")
    print(f"  registry                    {rate_reg:8.0f} MB/s")
    print(
        f"  uvicorn + StaticFiles       {rate_static:8.0f} MB/s   "
        f"ratio registry/static = {rate_reg / rate_static:.2f}  (target >= 0.50)"
    )
    print(
        f"  python -m http.server       {rate_http:8.0f} MB/s   "
        f"ratio registry/http.server = {rate_reg / rate_http:.2f}"
    )
    print("publish latency (verify, slim variants, fsync, index commit):")
    print(f"  {mb:.1f} MB pack             {big_ms:8.1f} ms")
    print(f"  20 KB pack (median of {len(small)})  {statistics.median(small):8.1f} ms")
    print("install of a cached, up-to-date pack (median of", f"{opts.repeat * 4}):")
    for label in ("signed", "unsigned"):
        print(
            f"  {label + ' metadata':<24} {trips[label]:3d} round trips  "
            f"{statistics.median(times[label]):8.1f} ms"
        )
    print(f"  signed: round trips for the metadata refresh = {trips['signed']} (target <= 3)")
    signed_ratio = statistics.median(times["signed"]) / statistics.median(times["unsigned"])
    print(f"  ratio signed / unsigned (time) = {signed_ratio:.2f}")
    print_ratios(
        [
            ("registry download / uvicorn StaticFiles", rate_reg / rate_static),
            ("registry download / python -m http.server", rate_reg / rate_http),
        ]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
