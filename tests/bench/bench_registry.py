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
from reflow.registry._storage import LocalStorage
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mb", type=float, default=20)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="a 1 MB pack, one download each: checks it runs, measures nothing",
    )
    opts = ap.parse_args(argv)
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
