"""reflow.registry._client against the app in-process (httpx.ASGITransport behind a sync
adapter), with transports that fail on purpose: retries, Retry-After, resume, offline, and
errors that keep HTTP, size, hash and signature failures apart."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from regtest import NATIVE, OTHER, Registry, SyncASGITransport, make_pack

from reflow._errors import (
    RegistryAuthError,
    RegistryError,
    RegistryHTTPError,
    RegistryIntegrityError,
    RegistryNotFoundError,
    RegistrySignatureError,
    RegistryUnavailableError,
)
from reflow._loader._trust import TrustStore
from reflow.abi._bundle import read_bundle
from reflow.abi._manifest import PORTABLE_TRIPLE
from reflow.abi._signing import generate_key
from reflow.registry import RegistryClient

Fault = Callable[[httpx.Request, int], httpx.Response | Exception | None]


class FaultyTransport(httpx.BaseTransport):
    """The app in-process, with ``fault(request, n)`` (n counts requests) able to answer
    instead, raise, or let the request through (None)."""

    def __init__(self, app: object, fault: Fault | None = None) -> None:
        self.inner = SyncASGITransport(app)
        self.fault = fault
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.fault is not None:
            out = self.fault(request, len(self.requests))
            if isinstance(out, Exception):
                raise out
            if out is not None:
                return out
        return self.inner.handle_request(request)

    def downloads(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.endswith("/download")]


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def trust(tmp_path: Path, registry: Registry) -> TrustStore:
    store = TrustStore(tmp_path / "trust")
    store.add(registry.key.public_key())
    return store


def make_client(
    reg: Registry,
    tmp_path: Path,
    trust: TrustStore,
    *,
    token: str | None = None,
    fault: Fault | None = None,
    **kw: object,
) -> tuple[RegistryClient, FaultyTransport, Sleeps]:
    transport = FaultyTransport(reg.app, fault)
    sleeps = Sleeps()
    client = RegistryClient(
        "http://registry.test",
        token=token or reg.publish,
        transport=transport,
        trust=trust,
        cache_dir=tmp_path / "cache",
        sleep=sleeps,
        insecure=True,
        **kw,
    )  # type: ignore[arg-type]
    return client, transport, sleeps


@pytest.fixture
def packs(tmp_path: Path, registry: Registry) -> dict[str, Path]:
    out = {}
    for v in ["0.1.0", "0.1.5", "0.2.0", "1.0.0"]:
        p = tmp_path / f"tools-{v}.rflpack"
        p.write_bytes(
            make_pack("acme/tools", v, registry.key, triples=(PORTABLE_TRIPLE, NATIVE, OTHER))
        )
        out[v] = p
    return out


@pytest.fixture
def client(
    registry: Registry, tmp_path: Path, trust: TrustStore, packs: dict[str, Path]
) -> Iterator[RegistryClient]:
    c, _, _ = make_client(registry, tmp_path, trust)
    for p in packs.values():
        c.publish(p)
    yield c
    c.close()


def test_publish_search_install(client: RegistryClient, packs: dict[str, Path]) -> None:
    assert [h["version"] for h in client.search("tools")] == ["1.0.0"]
    got = client.install("acme/tools@^0.1", triple=NATIVE)
    assert (got.version, got.variant, got.from_cache) == ("0.1.5", NATIVE, False)
    b = read_bundle(got.path)
    assert b.present_triples() == (PORTABLE_TRIPLE, NATIVE)
    assert got.sha256 == hashlib.sha256(got.path.read_bytes()).hexdigest()
    assert not list(got.path.parent.glob("*.part"))


def test_second_install_comes_from_cache(
    registry: Registry, tmp_path: Path, trust: TrustStore, client: RegistryClient
) -> None:
    client.install("acme/tools@0.2.0", triple=NATIVE)
    c, transport, _ = make_client(registry, tmp_path, trust)
    again = c.install("acme/tools@0.2.0", triple=NATIVE)
    assert again.from_cache and transport.downloads() == []


def test_unknown_triple_gets_portable_variant(client: RegistryClient) -> None:
    got = client.install("acme/tools@1.0.0", triple="riscv64gc-unknown-linux-gnu")
    assert got.variant == PORTABLE_TRIPLE


def test_offline_from_cache(
    registry: Registry, tmp_path: Path, trust: TrustStore, client: RegistryClient
) -> None:
    client.install("acme/tools@^0.1", triple=NATIVE)
    off, transport, _ = make_client(registry, tmp_path, trust, offline=True)
    assert off.install("acme/tools@^0.1", triple=NATIVE).version == "0.1.5"
    assert transport.requests == []
    with pytest.raises(RegistryUnavailableError, match="no cached version"):
        off.install("acme/tools@^1", triple=NATIVE)


def test_unreachable_falls_back_to_cache(
    registry: Registry, tmp_path: Path, trust: TrustStore, client: RegistryClient
) -> None:
    client.install("acme/tools@0.2.0", triple=NATIVE)
    down, _, sleeps = make_client(
        registry, tmp_path, trust, fault=lambda r, n: httpx.ConnectError("refused")
    )
    got = down.install("acme/tools@~0.2", triple=NATIVE)
    assert got.from_cache and got.version == "0.2.0"
    assert len(sleeps) == 4  # retried with backoff before giving up
    assert sleeps == sorted(sleeps) or max(sleeps) <= 30
    with pytest.raises(RegistryUnavailableError, match="unreachable") as info:
        down.install("acme/tools@^1", triple=NATIVE)
    assert isinstance(info.value.__cause__, RegistryUnavailableError)


def test_retry_after_is_honoured(
    registry: Registry, tmp_path: Path, trust: TrustStore, client: RegistryClient
) -> None:
    def fault(r: httpx.Request, n: int) -> httpx.Response | None:
        if n == 1:
            return httpx.Response(503, headers={"Retry-After": "3"})
        if n == 2:
            return httpx.Response(429, headers={"Retry-After": "1.5"})
        return None

    c, _, sleeps = make_client(registry, tmp_path, trust, fault=fault)
    assert c.search("tools")
    assert sleeps == [3.0, 1.5]


def test_5xx_after_all_retries_is_an_http_error(
    registry: Registry, tmp_path: Path, trust: TrustStore
) -> None:
    c, transport, sleeps = make_client(
        registry, tmp_path, trust, retries=2, fault=lambda r, n: httpx.Response(500)
    )
    with pytest.raises(RegistryHTTPError) as info:
        c.search("x")
    assert (info.value.status, info.value.code) == (500, "http_500")
    assert len(transport.requests) == 3 and len(sleeps) == 2


def test_resume_after_dropped_connection(
    registry: Registry, tmp_path: Path, trust: TrustStore, client: RegistryClient
) -> None:
    class Cut(httpx.SyncByteStream):
        def __init__(self, data: bytes) -> None:
            self.data = data

        def __iter__(self) -> Iterator[bytes]:
            yield self.data[:300]
            raise httpx.ReadError("connection reset")

    inner = SyncASGITransport(registry.app)

    def fault(r: httpx.Request, n: int) -> httpx.Response | None:
        if r.url.path.endswith("/download") and "range" not in r.headers:
            full = inner.handle_request(r)
            return httpx.Response(200, headers=full.headers, stream=Cut(full.content))
        return None

    progress: list[tuple[int, int | None]] = []
    c, transport, _ = make_client(registry, tmp_path, trust, fault=fault)
    got = c.install(
        "acme/tools@1.0.0", triple=NATIVE, progress=lambda d, t: progress.append((d, t))
    )
    dl = transport.downloads()
    assert len(dl) == 2 and dl[1].headers["range"] == "bytes=300-"
    assert dl[1].headers["if-range"] == f'"{got.sha256}"'
    assert progress[-1] == (got.path.stat().st_size, got.path.stat().st_size)
    read_bundle(got.path)


def _mangle(registry: Registry, how: str) -> Fault:
    inner = SyncASGITransport(registry.app)

    def fault(r: httpx.Request, n: int) -> httpx.Response | None:
        if not r.url.path.endswith("/download"):
            return None
        resp = inner.handle_request(r)
        body = resp.content
        if how == "truncate":
            body = body[:-10]
        elif how == "flip":
            body = body[:50] + bytes([body[50] ^ 0xFF]) + body[51:]
        elif how == "404":
            return httpx.Response(404, json={"error": {"code": "blob_missing", "message": "x"}})
        elif how == "html404":
            return httpx.Response(404, text="<html>not here</html>")
        headers = {k: v for k, v in resp.headers.items() if k != "content-length"}
        return httpx.Response(200, headers=headers, content=body)

    return fault


@pytest.mark.parametrize(
    ("how", "error", "attr"),
    [
        ("truncate", RegistryIntegrityError, ("what", "size")),
        ("flip", RegistryIntegrityError, ("what", "sha256")),
        ("404", RegistryNotFoundError, ("code", "blob_missing")),
        ("html404", RegistryNotFoundError, ("code", "http_404")),
    ],
)
def test_download_failures_are_distinct(
    registry: Registry,
    tmp_path: Path,
    trust: TrustStore,
    client: RegistryClient,
    how: str,
    error: type,
    attr: tuple[str, str],
) -> None:
    c, _, _ = make_client(registry, tmp_path, trust, fault=_mangle(registry, how))
    with pytest.raises(error) as info:
        c.install("acme/tools@1.0.0", triple=NATIVE)
    assert getattr(info.value, attr[0]) == attr[1]
    if how.endswith("404"):
        assert not isinstance(info.value, RegistryIntegrityError)
    cached = list((tmp_path / "cache").rglob("*.rflpack*"))
    assert cached == []  # nothing unverified is left in the cache


def test_untrusted_publisher_is_refused_before_download(
    registry: Registry, tmp_path: Path, client: RegistryClient
) -> None:
    c, transport, _ = make_client(registry, tmp_path, TrustStore(tmp_path / "empty"))
    with pytest.raises(RegistrySignatureError, match="not in the trust store") as info:
        c.install("acme/tools@1.0.0")
    assert info.value.key_id and transport.downloads() == []


def test_mixed_up_metadata_is_refused(
    registry: Registry, tmp_path: Path, trust: TrustStore, client: RegistryClient
) -> None:
    inner = SyncASGITransport(registry.app)

    def fault(r: httpx.Request, n: int) -> httpx.Response | None:
        if r.url.path == "/api/v1/packs/acme/tools/1.0.0":
            # a registry serving 0.1.0's (validly signed) manifest as 1.0.0: a rollback
            old = inner.handle_request(httpx.Request("GET", str(r.url).replace("1.0.0", "0.1.0")))
            doc = old.json()
            doc["version"] = "1.0.0"
            return httpx.Response(200, json=doc)
        return None

    c, _, _ = make_client(registry, tmp_path, trust, fault=fault)
    with pytest.raises(RegistrySignatureError, match="mixed-up"):
        c.install("acme/tools@1.0.0", triple=NATIVE)


def test_yank_then_ranges_skip_it(client: RegistryClient) -> None:
    client.yank("acme/tools@0.1.5", reason="bad build")
    assert client.install("acme/tools@^0.1", triple=NATIVE).version == "0.1.0"
    assert client.install("acme/tools@0.1.5", triple=NATIVE).version == "0.1.5"
    client.unyank("acme/tools@0.1.5")
    assert client.resolve("acme/tools@^0.1") == "0.1.5"
    with pytest.raises(ValueError, match="exact version"):
        client.yank("acme/tools@^0.1")


def test_no_matching_version(client: RegistryClient) -> None:
    with pytest.raises(RegistryNotFoundError, match=r"published: 0\.1\.0, 0\.1\.5") as info:
        client.install("acme/tools@^5")
    assert info.value.code == "no_matching_version"


def test_publish_is_idempotent_but_versions_immutable(
    client: RegistryClient, packs: dict[str, Path], registry: Registry, tmp_path: Path
) -> None:
    assert client.publish(packs["0.2.0"])["version"] == "0.2.0"
    other = tmp_path / "other.rflpack"
    other.write_bytes(make_pack("acme/tools", "0.2.0", registry.key, artifact_size=999))
    with pytest.raises(RegistryHTTPError) as info:
        client.publish(other)
    assert (info.value.status, info.value.code) == (409, "version_exists")


def test_auth_errors(
    registry: Registry, tmp_path: Path, trust: TrustStore, packs: dict[str, Path]
) -> None:
    c, _, _ = make_client(registry, tmp_path, trust, token=registry.read)
    with pytest.raises(RegistryAuthError) as info:
        c.publish(packs["0.1.0"])
    assert (info.value.status, info.value.code) == (403, "forbidden")


def test_publish_progress_and_foreign_signer(
    registry: Registry, tmp_path: Path, trust: TrustStore
) -> None:
    c, _, _ = make_client(registry, tmp_path, trust)
    p = tmp_path / "x.rflpack"
    p.write_bytes(make_pack("acme/x", "1.0.0", generate_key()))
    seen: list[tuple[int, int | None]] = []
    with pytest.raises(RegistryHTTPError, match="not registered") as info:
        c.publish(p, progress=lambda d, t: seen.append((d, t)))
    assert info.value.code == "unregistered_key"
    assert seen[-1] == (p.stat().st_size, p.stat().st_size)


def test_closed_client_raises(registry: Registry, tmp_path: Path, trust: TrustStore) -> None:
    c, _, _ = make_client(registry, tmp_path, trust)
    c.close()
    c.close()
    with pytest.raises(RegistryError, match="closed"):
        c.search()


def test_resolver_plugin_supplies_load_pack(
    registry: Registry, tmp_path: Path, trust: TrustStore, client: RegistryClient
) -> None:
    """reflow_resolve_pack: a registry name resolves to a verified file; names without a
    namespace and unknown packs are None (load_pack then says PackNotFoundError)."""
    from reflow.registry import RegistryResolver

    transport = FaultyTransport(registry.app)
    resolver = RegistryResolver(
        "http://registry.test", transport=transport, trust=trust, cache_dir=tmp_path / "cache2"
    )
    path = resolver.reflow_resolve_pack(name="acme/tools", version="^0.1")
    assert path is not None and read_bundle(path).manifest.version == "0.1.5"
    assert resolver.reflow_resolve_pack(name="tools", version=None) is None
    assert resolver.reflow_resolve_pack(name="acme/nothing", version=None) is None
    bad = RegistryResolver(
        "http://registry.test",
        transport=transport,
        trust=TrustStore(tmp_path / "empty"),
        cache_dir=tmp_path / "c3",
    )
    with pytest.raises(RegistrySignatureError):
        bad.reflow_resolve_pack(name="acme/tools", version="1.0.0")


def test_key_not_bound_to_the_pack_name_is_refused(
    registry: Registry, tmp_path: Path, client: RegistryClient
) -> None:
    """poc3: Alice's key is trusted (for alice/*); a registry serves an ``acme/tools`` that
    Alice signed. Trusting a key for some names only refuses it, before any download."""
    import base64

    from reflow.abi._signing import key_id, sign_manifest, signatures_to_toml

    alice = generate_key()
    evil = make_pack("acme/tools", "9.0.0", alice)
    mbytes = read_bundle_bytes(evil, tmp_path)
    meta = {
        "namespace": "acme",
        "name": "tools",
        "version": "9.0.0",
        "manifest_b64": base64.b64encode(mbytes).decode(),
        "signature_b64": base64.b64encode(
            signatures_to_toml([sign_manifest(mbytes, alice)])
        ).decode(),
        "variants": {"full": {"sha256": hashlib.sha256(evil).hexdigest(), "size": len(evil)}},
    }

    def fault(r: httpx.Request, n: int) -> httpx.Response | None:
        if r.url.path.endswith("/9.0.0/download"):
            return httpx.Response(200, content=evil)
        if r.url.path == "/api/v1/packs/acme/tools/9.0.0":
            return httpx.Response(200, json=meta)
        if r.url.path == "/api/v1/packs/acme/tools":
            return httpx.Response(
                200,
                json={
                    "versions": [
                        {"version": "1.0.0", "yanked": False},
                        {"version": "9.0.0", "yanked": False},
                    ]
                },
            )
        return None

    unbound = TrustStore(tmp_path / "unbound")  # the old flat store: the attack works
    unbound.add(registry.key.public_key())
    unbound.add(alice.public_key())
    c, _, _ = make_client(registry, tmp_path / "a", unbound, fault=fault)
    assert c.install("acme/tools@9.0.0").signer == key_id(alice)
    c.close()

    bound = TrustStore(tmp_path / "bound")
    bound.add(registry.key.public_key(), names=("acme/*",))
    bound.add(alice.public_key(), names=("alice/*",))
    c, transport, _ = make_client(registry, tmp_path / "b", bound, fault=fault)
    with pytest.raises(RegistrySignatureError, match=r"'alice/\*'") as info:
        c.install("acme/tools@9.0.0")
    assert info.value.key_id == key_id(alice) and "'acme/tools'" in str(info.value)
    assert transport.downloads() == []
    assert c.install("acme/tools@1.0.0").signer == key_id(registry.key)  # the real acme
    c.close()
    # the copy cached while the key was unbound is re-checked against the bound store
    c, _, _ = make_client(registry, tmp_path / "a", bound, offline=True)
    with pytest.raises(RegistrySignatureError, match=r"trusted only for 'alice/\*'"):
        c.install("acme/tools@9.0.0")
    c.close()


def read_bundle_bytes(pack: bytes, tmp_path: Path) -> bytes:
    p = tmp_path / "tmp.rflpack"
    p.write_bytes(pack)
    return read_bundle(p).manifest_bytes
