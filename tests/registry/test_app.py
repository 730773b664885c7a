"""reflow.registry._app in-process through httpx.ASGITransport: the JSON API, downloads
(variants, ETag, Range), yank, namespaces/keys/tokens, and the failure table."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from regtest import (
    FAILURE_TABLE,
    NATIVE,
    OTHER,
    TABLE_MAX_UPLOAD,
    Registry,
    Row,
    SyncASGITransport,
    body_for,
    make_pack,
    published_pack,
    setup_registry,
    token_for,
)

from reflow.abi._bundle import read_bundle
from reflow.abi._manifest import PORTABLE_TRIPLE
from reflow.abi._signing import generate_key, key_id, public_key_pem, verify_manifest
from reflow.registry._app import ROUTES

V = "/api/v1/packs/acme/tools"


def client(reg: Registry, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(
        transport=SyncASGITransport(reg.app), base_url="http://registry.test", headers=headers
    )


def publish(
    reg: Registry, data: bytes, version: str = "0.1.0", name: str = "tools"
) -> httpx.Response:
    with client(reg, reg.publish) as c:
        return c.put(f"/api/v1/packs/acme/{name}/{version}", content=data)


@pytest.fixture
def published(registry: Registry) -> tuple[Registry, bytes]:
    data = published_pack(registry.key)
    r = publish(registry, data)
    assert r.status_code == 201, r.text
    return registry, data


def test_publish_returns_signed_metadata(published: tuple[Registry, bytes]) -> None:
    reg, data = published
    with client(reg) as c:
        doc = c.get(f"{V}/0.1.0").json()
    assert doc["sha256"] == hashlib.sha256(data).hexdigest() and doc["size"] == len(data)
    assert doc["key_id"] == key_id(reg.key)
    assert set(doc["variants"]) == {"full", PORTABLE_TRIPLE, NATIVE, OTHER}
    import base64

    manifest = base64.b64decode(doc["manifest_b64"])
    b = read_bundle(data, head_only=True)
    assert manifest == b.manifest_bytes
    assert verify_manifest(manifest, b.signatures, {key_id(reg.key): reg.key.public_key()})


def test_versions_and_search(published: tuple[Registry, bytes]) -> None:
    reg, _ = published
    assert publish(reg, make_pack("acme/tools", "0.2.0", reg.key), "0.2.0").status_code == 201
    with client(reg) as c:
        versions = c.get(V).json()["versions"]
        assert [v["version"] for v in versions] == ["0.1.0", "0.2.0"]
        hits = c.get("/api/v1/search", params={"q": "image"}).json()["results"]
        assert [(h["full_name"], h["version"]) for h in hits] == [("acme/tools", "0.2.0")]
        assert c.get("/api/v1/search", params={"q": "zebra"}).json()["results"] == []


@pytest.mark.parametrize("triple", [NATIVE, OTHER, PORTABLE_TRIPLE, "riscv64gc-unknown-linux-gnu"])
def test_slim_variant_verifies_without_resigning(
    published: tuple[Registry, bytes], triple: str
) -> None:
    reg, data = published
    with client(reg) as c:
        r = c.get(f"{V}/0.1.0/download", params={"triple": triple})
    assert r.status_code == 200
    want = triple if triple in (NATIVE, OTHER) else PORTABLE_TRIPLE
    assert r.headers["x-reflow-variant"] == want
    assert r.headers["etag"] == f'"{hashlib.sha256(r.content).hexdigest()}"'
    b = read_bundle(r.content)
    assert b.present_triples() == (
        (PORTABLE_TRIPLE, want) if want != PORTABLE_TRIPLE else (PORTABLE_TRIPLE,)
    )
    assert len(r.content) < len(data)
    verify_manifest(b.manifest_bytes, b.signatures, {key_id(reg.key): reg.key.public_key()})


def test_no_variant_for_native_only_pack(registry: Registry) -> None:
    data = make_pack("acme/nat", "1.0.0", registry.key, triples=(NATIVE,))
    assert publish(registry, data, "1.0.0", "nat").status_code == 201
    with client(registry) as c:
        r = c.get("/api/v1/packs/acme/nat/1.0.0/download", params={"triple": OTHER})
    assert (r.status_code, r.json()["error"]["code"]) == (404, "no_variant")
    assert r.json()["error"]["available"] == [NATIVE]


def test_etag_range_head(published: tuple[Registry, bytes]) -> None:
    reg, data = published
    url = f"{V}/0.1.0/download"
    with client(reg) as c:
        full = c.get(url)
        etag = full.headers["etag"]
        assert full.content == data and full.headers["accept-ranges"] == "bytes"
        assert c.get(url, headers={"If-None-Match": etag}).status_code == 304
        part = c.get(url, headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == data[10:20]
        assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
        tail = c.get(url, headers={"Range": "bytes=-7"})
        assert tail.content == data[-7:]
        rest = c.get(url, headers={"Range": "bytes=100-", "If-Range": etag})
        assert rest.status_code == 206 and rest.content == data[100:]
        stale = c.get(url, headers={"Range": "bytes=100-", "If-Range": '"other"'})
        assert stale.status_code == 200 and stale.content == data
        head = c.head(url)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(data))
        bad = c.get(url, headers={"Range": "bytes=zz"})
        assert bad.headers["content-range"] == f"bytes */{len(data)}"


def test_yank_and_unyank(published: tuple[Registry, bytes]) -> None:
    reg, _ = published
    with client(reg, reg.publish) as c:
        r = c.post(f"{V}/0.1.0/yank", json={"reason": "bad build"})
        assert r.json()["yanked"] and r.json()["yank_reason"] == "bad build"
        assert c.get(V).json()["versions"][0]["yanked"]
        assert c.get("/api/v1/search", params={"q": "tools"}).json()["results"] == []
        # a yanked version stays downloadable (pinned installs still work)
        assert c.get(f"{V}/0.1.0/download").status_code == 200
        r = c.delete(f"{V}/0.1.0/yank")
        assert not r.json()["yanked"] and r.json()["yank_reason"] == ""
    with client(reg, reg.read) as c:
        assert c.post(f"{V}/0.1.0/yank", json={}).status_code == 403


def test_namespace_key_and_token_api(registry: Registry) -> None:
    key = generate_key()
    with client(registry, registry.admin) as c:
        assert (
            c.post("/api/v1/namespaces", json={"name": "beta", "owner": "b team"}).status_code
            == 201
        )
        r = c.post("/api/v1/namespaces/beta/keys", content=public_key_pem(key))
        assert r.status_code == 201 and r.json()["key_id"] == key_id(key)
        assert (
            c.post("/api/v1/namespaces/beta/keys", content=b"junk").json()["error"]["code"]
            == "invalid_key"
        )
        r = c.post(
            "/api/v1/tokens", json={"namespace": "beta", "scope": "publish", "ttl_seconds": 600}
        )
        token = r.json()["token"]
        assert r.status_code == 201 and r.json()["expires_at"]
        info = c.get("/api/v1/namespaces/beta").json()
        assert info["owner"] == "b team" and [k["key_id"] for k in info["keys"]] == [key_id(key)]
    with client(registry, token) as c:
        r = c.put("/api/v1/packs/beta/tools/1.0.0", content=make_pack("beta/tools", "1.0.0", key))
        assert r.status_code == 201, r.text
    with client(registry, registry.admin) as c:
        assert c.delete(f"/api/v1/namespaces/beta/keys/{key_id(key)}").status_code == 204
        assert c.delete(f"/api/v1/namespaces/beta/keys/{key_id(key)}").status_code == 404
    with client(registry, token) as c:
        r = c.put("/api/v1/packs/beta/tools/1.0.1", content=make_pack("beta/tools", "1.0.1", key))
        assert r.json()["error"]["code"] == "unregistered_key"


def test_openapi_lists_every_route(registry: Registry) -> None:
    with client(registry) as c:
        doc = c.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path, _, methods in ROUTES:
        if path == "/openapi.json":
            continue
        for m in methods:
            if m != "HEAD":
                assert m.lower() in doc["paths"][path], (path, m)


def test_private_registry_needs_read_token(tmp_path: Path) -> None:
    reg = setup_registry(tmp_path / "d", anonymous_read=False)
    with client(reg) as c:
        r = c.get("/api/v1/search")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    with client(reg, reg.read) as c:
        assert c.get("/api/v1/search").status_code == 200
    reg.storage.close()


def test_failed_publish_leaves_nothing(registry: Registry) -> None:
    before = set(registry.storage.list_blobs())
    r = publish(registry, body_for("tampered-member", registry.key), "0.2.0")
    assert r.status_code == 422
    assert set(registry.storage.list_blobs()) == before
    assert list(registry.storage.spool.iterdir()) == []


@pytest.mark.parametrize("row", FAILURE_TABLE, ids=[r.id for r in FAILURE_TABLE])
def test_failure_table(tmp_path: Path, row: Row) -> None:
    reg = setup_registry(tmp_path / "d", max_upload=TABLE_MAX_UPLOAD)
    assert publish(reg, published_pack(reg.key)).status_code == 201
    with client(reg) as c:
        r = c.request(
            row.method,
            row.path,
            content=body_for(row.body, reg.key),
            headers={**token_for(reg, row.token), **dict(row.headers)},
        )
    assert (r.status_code, r.json()["error"]["code"]) == (row.status, row.code), r.text
    assert r.json()["error"]["message"]
    reg.storage.close()
