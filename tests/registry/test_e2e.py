"""The real server (``reflow-registry serve`` under uvicorn, on 127.0.0.1) end to end:
publish -> search -> install -> load -> run in a graph; the failure table over HTTP; a server
killed mid-upload; and a bounded load test."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from regtest import (
    FAILURE_TABLE,
    TABLE_MAX_UPLOAD,
    Registry,
    Row,
    Server,
    body_for,
    free_port,
    make_pack,
    published_pack,
    setup_registry,
    token_for,
)

from reflow import Message, Network, template_actor
from reflow._errors import RegistryUnavailableError
from reflow._loader._packs import list_packs, load_pack, unload_pack
from reflow._loader._plugins import register_plugin, unregister_plugin
from reflow._loader._trust import TrustStore
from reflow.abi._manifest import host_triples
from reflow.abi._signing import public_key_pem
from reflow.registry import RegistryClient, RegistryResolver, load_from_registry
from reflow.tools._pack_build import build_pack

PACKS = Path(__file__).resolve().parents[2] / "packs"


@dataclass
class Live:
    reg: Registry
    server: Server
    trust: TrustStore


def start_registry(root: Path, max_upload: int = TABLE_MAX_UPLOAD) -> tuple[Registry, Server]:
    reg = setup_registry(root / "data", max_upload=max_upload)
    reg.auth.create_namespace("reflow", "reflow developers")
    from reflow.abi._signing import key_id

    reg.storage.add_key("reflow", key_id(reg.key), public_key_pem(reg.key))
    _, reg.publish_reflow = reg.auth.create_token("reflow", "publish")  # type: ignore[attr-defined]
    reg.storage.close()
    server = Server(root / "data", free_port(), max_upload=max_upload).start()
    return reg, server


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("e2e")
    reg, server = start_registry(root)
    try:
        trust = TrustStore(root / "trust")
        trust.add(reg.key.public_key())
        with httpx.Client(base_url=server.url) as c:
            r = c.put(
                "/api/v1/packs/acme/tools/0.1.0",
                content=published_pack(reg.key),
                headers={"Authorization": f"Bearer {reg.publish}"},
            )
            assert r.status_code == 201, r.text
        yield Live(reg, server, trust)
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("REFLOW_TRUST_DIR", str(tmp_path / "trust-unused"))
    yield
    for p in list_packs():
        unload_pack(p.name)


def run_one(template: str, port: str, msg: Message) -> list[Message]:
    net = Network()
    net.register_actor("t", template_actor(template))
    net.add_node("n", "t", {})
    coll = net.collect("n", "out")
    net.add_initial("n", port, msg)
    net.run(timeout=20)
    net.shutdown()
    return list(coll.messages)


def test_publish_search_install_load_run(tmp_path: Path) -> None:
    reg, server = start_registry(tmp_path)
    try:
        token = reg.publish_reflow  # type: ignore[attr-defined]
        trust = TrustStore(tmp_path / "trust")
        trust.add(reg.key.public_key())
        dist = tmp_path / "dist"
        bytes_pack = build_pack(PACKS / "bytes-native", out_dir=dist, key=reg.key)
        math_pack = build_pack(PACKS / "math-wasm", out_dir=dist, key=reg.key)
        opts = {"cache_dir": tmp_path / "rc", "retries": 1, "backoff": 0.01}
        with RegistryClient(
            server.url, token=token, trust=trust, cache_dir=tmp_path / "rc"
        ) as client:
            doc = client.publish(bytes_pack)
            assert len(doc["variants"]) == 7  # full + 5 native triples + portable
            client.publish(math_pack)
            assert "reflow/bytes" in [h["full_name"] for h in client.search("bytes")]
            installed = client.install("reflow/bytes@^0.1")
            assert installed.variant == (host_triples() or ("wasm32-unknown-unknown",))[0]
        pack = load_from_registry("reflow/bytes@^0.1", server.url, trust=trust, client_options=opts)
        assert pack.artifacts["bytes"].kind == ("native" if host_triples() else "wasm")
        assert run_one("reflow/bytes/length", "in", Message.string("hello")) == [Message.integer(5)]
        load_from_registry("reflow/math@~0.1", server.url, trust=trust, client_options=opts)
        assert run_one("reflow/math/add", "in", Message.integer(41)) == [Message.integer(42)]
        # load_pack(..., registry=URL) downloads, verifies and loads in one call
        unload_pack("reflow/math")
        loaded = load_pack(
            "reflow/math@^0.1", registry=server.url, trust=trust, registry_options=opts
        )
        assert loaded.version == "0.1.0"
        assert run_one("reflow/math/add", "in", Message.integer(2)) == [Message.integer(3)]
    finally:
        server.stop()
    # ... and a second call in a process that has not loaded it works from the cache
    unload_pack("reflow/math")
    assert (
        load_pack(
            "reflow/math@^0.1", registry=server.url, trust=trust, registry_options=opts
        ).version
        == "0.1.0"
    )
    # The registry is gone: the second call works from the cache, verified again.
    unload_pack("reflow/bytes")
    pack = load_from_registry("reflow/bytes@^0.1", server.url, trust=trust, client_options=opts)
    assert run_one("reflow/bytes/length", "in", Message.string("héllo")) == [Message.integer(6)]
    with pytest.raises(RegistryUnavailableError, match="no cached version"):
        load_from_registry("reflow/bytes@^2", server.url, trust=trust, client_options=opts)
    # load_pack("ns/name@range") itself, through the reflow_resolve_pack hook
    unload_pack("reflow/math")
    resolver = RegistryResolver(server.url, trust=trust, **opts)
    register_plugin(resolver)
    try:
        assert load_pack("reflow/math@~0.1", trust=trust).version == "0.1.0"
        assert run_one("reflow/math/add", "in", Message.integer(1)) == [Message.integer(2)]
    finally:
        unregister_plugin(resolver)


@pytest.mark.parametrize("row", FAILURE_TABLE, ids=[r.id for r in FAILURE_TABLE])
def test_failure_table_over_http(live: Live, row: Row) -> None:
    with httpx.Client(base_url=live.server.url, timeout=30) as c:
        r = c.request(
            row.method,
            row.path,
            content=body_for(row.body, live.reg.key),
            headers={**token_for(live.reg, row.token), **dict(row.headers)},
        )
    assert (r.status_code, r.json()["error"]["code"]) == (row.status, row.code), r.text


def test_kill_mid_upload_leaves_no_partial_version(tmp_path: Path) -> None:
    reg, server = start_registry(tmp_path, max_upload=64 << 20)
    data = make_pack("acme/big", "1.0.0", reg.key, artifact_size=4 << 20, noise=True)
    sent = threading.Event()
    outcome: list[object] = []

    def slow_body() -> Iterator[bytes]:
        for i in range(0, len(data), 64 << 10):
            yield data[i : i + (64 << 10)]
            if i >= len(data) // 2:
                sent.set()
                time.sleep(0.2)  # stall half way: the server is killed now

    def upload() -> None:
        try:
            r = httpx.put(
                f"{server.url}/api/v1/packs/acme/big/1.0.0",
                content=slow_body(),
                headers={
                    "Authorization": f"Bearer {reg.publish}",
                    "Content-Length": str(len(data)),
                },
                timeout=30,
            )
            outcome.append(r.status_code)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    t = threading.Thread(target=upload)
    t.start()
    try:
        assert sent.wait(20)
        tmp = tmp_path / "data" / "tmp"
        deadline = time.monotonic() + 5
        while not any(p.stat().st_size for p in tmp.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert any(p.stat().st_size for p in tmp.iterdir()), "the upload never reached disk"
        server.kill()
        t.join(30)
        assert outcome and isinstance(outcome[0], httpx.HTTPError), outcome
        server.start()  # same data dir, same port
        with httpx.Client(base_url=server.url) as c:
            r = c.get("/api/v1/packs/acme/big/1.0.0")
            assert (r.status_code, r.json()["error"]["code"]) == (404, "pack_not_found")
            blobs = list((tmp_path / "data" / "blobs").rglob("*"))
            assert [b for b in blobs if b.is_file()] == []
            assert list(tmp.iterdir()) == []
            r = c.put(
                "/api/v1/packs/acme/big/1.0.0",
                content=data,
                headers={"Authorization": f"Bearer {reg.publish}"},
            )
            assert r.status_code == 201, r.text
            dl = c.get("/api/v1/packs/acme/big/1.0.0/download")
            assert hashlib.sha256(dl.content).hexdigest() == r.json()["sha256"]
    finally:
        server.stop()
        t.join(5)


def test_load_100_downloaders_10_publishers(live: Live, tmp_path: Path) -> None:
    versions = [f"0.{i}.0" for i in range(1, 4)]
    with httpx.Client(base_url=live.server.url) as c:
        for v in versions:
            r = c.put(
                f"/api/v1/packs/acme/load/{v}",
                content=make_pack("acme/load", v, live.reg.key, artifact_size=200_000),
                headers={"Authorization": f"Bearer {live.reg.publish}"},
            )
            assert r.status_code == 201, r.text
    trust = live.trust
    sleeps: list[float] = []
    bodies = {
        f"1.{p}.{i}": make_pack(f"acme/pub{p}", f"1.{p}.{i}", live.reg.key, artifact_size=50_000)
        for p in range(10)
        for i in range(3)
    }

    def downloader(n: int) -> int:
        with RegistryClient(
            live.server.url,
            trust=trust,
            cache_dir=tmp_path / f"c{n}",
            sleep=sleeps.append,
            timeout=30,
        ) as client:
            done = 0
            for v in versions:
                got = client.install(f"acme/load@{v}")
                assert not got.from_cache
                assert hashlib.sha256(got.path.read_bytes()).hexdigest() == got.sha256
                done += 1
            return done

    def publisher(p: int) -> int:
        with RegistryClient(
            live.server.url,
            token=live.reg.publish,
            trust=trust,
            cache_dir=tmp_path / f"p{p}",
            sleep=sleeps.append,
        ) as client:
            for i in range(3):
                path = tmp_path / f"pub{p}-{i}.rflpack"
                path.write_bytes(bodies[f"1.{p}.{i}"])
                assert client.publish(path)["version"] == f"1.{p}.{i}"
            return 3

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=110) as pool:
        downs = [pool.submit(downloader, n) for n in range(100)]
        pubs = [pool.submit(publisher, p) for p in range(10)]
        results = [f.result(timeout=60) for f in downs + pubs]
    elapsed = time.monotonic() - start
    assert sum(results[:100]) == 300 and sum(results[100:]) == 30
    assert sleeps == []  # no retry was needed: zero errors, not errors papered over
    assert elapsed < 30


def test_chunked_oversized_upload_is_413(live: Live) -> None:
    """No Content-Length: the limit is enforced while streaming, and the client still gets
    a JSON 413 rather than a reset connection."""

    def chunks() -> Iterator[bytes]:
        for _ in range((TABLE_MAX_UPLOAD >> 16) + 16):
            yield b"x" * (64 << 10)

    r = httpx.put(
        f"{live.server.url}/api/v1/packs/acme/tools/0.9.0",
        content=chunks(),
        headers={"Authorization": f"Bearer {live.reg.publish}"},
        timeout=30,
    )
    assert (r.status_code, r.json()["error"]["code"]) == (413, "too_large")
    assert r.json()["error"]["limit"] == TABLE_MAX_UPLOAD


def test_racing_publishes_of_one_version(live: Live) -> None:
    """Ten clients publish the same new version at once: exactly one wins, the rest get 409,
    and what is served is the winner's file."""
    bodies = [
        make_pack("acme/race", "1.0.0", live.reg.key, artifact_size=3000 + i) for i in range(10)
    ]

    def put(body: bytes) -> int:
        r = httpx.put(
            f"{live.server.url}/api/v1/packs/acme/race/1.0.0",
            content=body,
            headers={"Authorization": f"Bearer {live.reg.publish}"},
            timeout=30,
        )
        return r.status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(put, bodies))
    assert sorted(statuses) == [201] + [409] * 9
    winner = bodies[statuses.index(201)]
    r = httpx.get(f"{live.server.url}/api/v1/packs/acme/race/1.0.0/download")
    assert r.content == winner


def test_abandoned_download_leaves_server_healthy(live: Live) -> None:
    body = make_pack("acme/abandon", "1.0.0", live.reg.key, artifact_size=1 << 20, noise=True)
    with httpx.Client(base_url=live.server.url, timeout=30) as c:
        assert (
            c.put(
                "/api/v1/packs/acme/abandon/1.0.0",
                content=body,
                headers={"Authorization": f"Bearer {live.reg.publish}"},
            ).status_code
            == 201
        )
        for _ in range(5):
            with c.stream("GET", "/api/v1/packs/acme/abandon/1.0.0/download") as r:
                next(r.iter_raw(16 << 10))  # read a little, then hang up
        assert c.get("/api/v1/health").status_code == 200
        assert c.get("/api/v1/packs/acme/abandon/1.0.0/download").content == body
