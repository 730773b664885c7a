"""Regressions for the security review (/tmp/review): the client never writes a download past
its published size nor trusts an oversized one or a misplaced 206; an expiring admin token
cannot mint a longer-lived one, and revoking a token revokes what it created; a version
cannot be published under a second spelling of the same precedence. (Malformed ``Range``
headers, non-ASCII versions and bad ``ttl_seconds`` are rows of the failure table, run
in-process and against a real server.)"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from regtest import NATIVE, Registry, SyncASGITransport, make_pack
from test_client import make_client
from test_storage import version

from reflow._errors import RegistryHTTPError, RegistryIntegrityError
from reflow._loader._trust import TrustStore
from reflow.abi._bundle import BundleLimits, read_bundle
from reflow.abi._manifest import PORTABLE_TRIPLE
from reflow.registry._auth import AuthDenied, Authenticator
from reflow.registry._semver import Version, VersionRange, pick_version, precedence
from reflow.registry._storage import VersionConflict
from reflow.registry._storage_sqlite import LocalStorage

V = "/api/v1/packs/acme/tools"


@pytest.fixture
def trust(tmp_path: Path, registry: Registry) -> TrustStore:
    store = TrustStore(tmp_path / "trust")
    store.add(registry.key.public_key())
    return store


@pytest.fixture
def published(registry: Registry) -> Registry:
    with httpx.Client(
        transport=SyncASGITransport(registry.app),
        base_url="http://r",
        headers={"Authorization": f"Bearer {registry.publish}"},
    ) as c:
        data = make_pack("acme/tools", "1.0.0", registry.key, triples=(PORTABLE_TRIPLE, NATIVE))
        assert c.put(f"{V}/1.0.0", content=data).status_code == 201
    return registry


def _part_files(tmp_path: Path) -> list[Path]:
    return list((tmp_path / "cache").rglob("*.rflpack*"))


# -- 1. the client's download ------------------------------------------------------------------


def test_endless_download_stops_at_the_published_size(
    published: Registry, tmp_path: Path, trust: TrustStore
) -> None:
    sent: list[int] = []

    class Endless(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            for _ in range(64):  # an attacker never stops; 64 MiB is enough to tell
                sent.append(1 << 20)
                yield b"A" * (1 << 20)

    def fault(r: httpx.Request, n: int) -> httpx.Response | None:
        if r.url.path.endswith("/download"):
            return httpx.Response(200, stream=Endless())
        return None

    written: list[int] = []
    c, _, _ = make_client(published, tmp_path, trust, fault=fault, retries=0)
    with pytest.raises(RegistryIntegrityError) as info:
        c.install(
            "acme/tools@1.0.0", triple=NATIVE, progress=lambda done, total: written.append(done)
        )
    assert info.value.what == "size"
    size = int(info.value.expected)
    assert len(sent) == 1 and all(w <= size for w in written)
    assert _part_files(tmp_path) == []  # nothing past the size, not even a .part


def test_body_one_byte_too_long_is_refused(
    published: Registry, tmp_path: Path, trust: TrustStore
) -> None:
    inner = SyncASGITransport(published.app)

    def fault(r: httpx.Request, n: int) -> httpx.Response | None:
        if r.url.path.endswith("/download"):
            full = inner.handle_request(r)
            return httpx.Response(200, content=full.content + b"x")
        return None

    c, _, _ = make_client(published, tmp_path, trust, fault=fault, retries=0)
    with pytest.raises(RegistryIntegrityError, match="longer than") as info:
        c.install("acme/tools@1.0.0", triple=NATIVE)
    assert info.value.what == "size" and _part_files(tmp_path) == []


@pytest.mark.parametrize("size", [BundleLimits().max_total + 1, 1 << 62, -1, "12", True])
def test_oversized_or_bogus_metadata_size_is_refused_before_download(
    published: Registry, tmp_path: Path, trust: TrustStore, size: object
) -> None:
    inner = SyncASGITransport(published.app)

    def fault(r: httpx.Request, n: int) -> httpx.Response | None:
        if r.url.path == f"{V}/1.0.0":  # the unsigned part of the metadata, rewritten
            doc = inner.handle_request(r).json()
            for v in doc["variants"].values():
                v["size"] = size
            return httpx.Response(200, json=doc)
        return None

    c, transport, _ = make_client(published, tmp_path, trust, fault=fault)
    with pytest.raises(RegistryIntegrityError) as info:
        c.install("acme/tools@1.0.0", triple=NATIVE)
    assert info.value.what == "size" and transport.downloads() == []
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        assert "over this client's limit" in str(info.value)


def test_max_download_is_configurable(
    published: Registry, tmp_path: Path, trust: TrustStore
) -> None:
    c, transport, _ = make_client(published, tmp_path, trust, max_download=100)
    with pytest.raises(RegistryIntegrityError, match="limit of 100"):
        c.install("acme/tools@1.0.0", triple=NATIVE)
    assert transport.downloads() == []
    c2, _, _ = make_client(published, tmp_path, trust, max_download=1 << 20)
    read_bundle(c2.install("acme/tools@1.0.0", triple=NATIVE).path)


@pytest.mark.parametrize(
    "content_range",
    ["bytes 0-{last}/{size}", "bytes 7-{last}/{size}", "bytes 300-{last}/{other}", None],
)
def test_misplaced_206_restarts_from_zero(
    published: Registry, tmp_path: Path, trust: TrustStore, content_range: str | None
) -> None:
    """The resume asks for bytes=300-; a 206 for any other place (or none) is not appended."""
    inner = SyncASGITransport(published.app)

    class Cut(httpx.SyncByteStream):
        def __init__(self, data: bytes) -> None:
            self.data = data

        def __iter__(self) -> Iterator[bytes]:
            yield self.data[:300]
            raise httpx.ReadError("connection reset")

    def fault(r: httpx.Request, n: int) -> httpx.Response | None:
        if not r.url.path.endswith("/download"):
            return None
        full = inner.handle_request(httpx.Request("GET", r.url))
        data = full.content
        if n == 3:  # the first download: cut after 300 bytes
            return httpx.Response(200, headers={"etag": full.headers["etag"]}, stream=Cut(data))
        if "range" in r.headers:  # the resume: a 206 that is not the rest of the file
            headers = {}
            if content_range is not None:
                headers["content-range"] = content_range.format(
                    last=len(data) - 1, size=len(data), other=len(data) + 5
                )
            start = (
                0
                if content_range is None
                else int(headers["content-range"].split()[1].split("-")[0])
            )
            return httpx.Response(206, headers=headers, content=data[start:])
        return None

    c, transport, _ = make_client(published, tmp_path, trust, fault=fault)
    got = c.install("acme/tools@1.0.0", triple=NATIVE)
    read_bundle(got.path)
    dl = transport.downloads()
    assert [r.headers.get("range") for r in dl] == [None, "bytes=300-", None]


# -- 3. tokens ---------------------------------------------------------------------------------


def _mint(reg: Registry, token: str, **body: object) -> httpx.Response:
    with httpx.Client(
        transport=SyncASGITransport(reg.app),
        base_url="http://r",
        headers={"Authorization": f"Bearer {token}"},
    ) as c:
        return c.post("/api/v1/tokens", json={"namespace": "acme", "scope": "admin", **body})


def _whoami(reg: Registry, token: str) -> int:
    with httpx.Client(
        transport=SyncASGITransport(reg.app),
        base_url="http://r",
        headers={"Authorization": f"Bearer {token}"},
    ) as c:
        return c.get("/api/v1/token").status_code


@pytest.mark.parametrize("ttl", [None, 3600, 59, 60])
def test_expiring_token_cannot_mint_a_longer_lived_one(registry: Registry, ttl: int | None) -> None:
    now = [1_000_000.0]
    registry.auth.clock = lambda: now[0]
    parent, short_lived = registry.auth.create_token("acme", "admin", ttl=60)
    r = _mint(registry, short_lived, ttl_seconds=ttl)
    assert r.status_code == 201, r.text
    child = registry.storage.get_token(r.json()["token_id"])
    assert child is not None and child.parent_id == parent.token_id
    assert child.expires_at == (now[0] + ttl if ttl is not None and ttl < 60 else parent.expires_at)
    assert r.json()["expires_at"] is not None
    now[0] += 61
    assert _whoami(registry, r.json()["token"]) == 401


def test_non_expiring_admin_still_mints_non_expiring_tokens(registry: Registry) -> None:
    r = _mint(registry, registry.admin)
    assert r.status_code == 201 and r.json()["expires_at"] is None


def test_revoking_a_token_revokes_what_it_created(registry: Registry) -> None:
    _, root = registry.auth.create_token("acme", "admin", label="root")
    child = _mint(registry, root).json()
    grandchild = _mint(registry, child["token"]).json()
    sibling = _mint(registry, registry.admin).json()  # made by another token: unaffected
    assert all(_whoami(registry, t["token"]) == 200 for t in (child, grandchild, sibling))
    assert registry.storage.revoke_token(registry.auth.authenticate(f"Bearer {root}").token_id)  # type: ignore[union-attr]
    assert _whoami(registry, child["token"]) == 401
    assert _whoami(registry, grandchild["token"]) == 401
    assert _whoami(registry, sibling["token"]) == 200
    revoked = {t.token_id for t in registry.storage.list_tokens() if t.revoked}
    assert {child["token_id"], grandchild["token_id"]} <= revoked
    assert sibling["token_id"] not in revoked


def test_token_made_while_its_parent_was_revoked_is_refused(registry: Registry) -> None:
    """The race: the child row lands after the cascade ran. authenticate() walks ancestors."""
    parent, secret = registry.auth.create_token("acme", "admin")
    child = _mint(registry, secret).json()
    registry.storage.db.execute(
        "UPDATE tokens SET revoked = 1 WHERE token_id = ?", (parent.token_id,)
    )  # the parent only, no cascade
    with pytest.raises(AuthDenied, match="created by token"):
        registry.auth.authenticate(f"Bearer {child['token']}")


def test_old_index_gains_parent_column(tmp_path: Path) -> None:
    """An index.sqlite3 from before parent_id: opened, migrated once, old tokens still work."""
    root = tmp_path / "old"
    root.mkdir()
    db = sqlite3.connect(root / "index.sqlite3")
    db.executescript("""
        CREATE TABLE namespaces (name TEXT PRIMARY KEY, owner TEXT NOT NULL,
                                 created_at REAL NOT NULL);
        CREATE TABLE tokens (
            token_id TEXT PRIMARY KEY, secret_sha256 TEXT NOT NULL, namespace TEXT NOT NULL,
            scope TEXT NOT NULL, label TEXT NOT NULL, created_at REAL NOT NULL,
            expires_at REAL, revoked INTEGER NOT NULL DEFAULT 0);
    """)
    secret = "S" * 43
    db.execute(
        "INSERT INTO tokens VALUES (?, ?, '*', 'admin', 'old', ?, NULL, 0)",
        ("0123456789abcdef", hashlib.sha256(secret.encode()).hexdigest(), time.time()),
    )
    db.commit()
    db.close()
    for _ in range(2):  # idempotent
        with LocalStorage(root) as storage:
            old = storage.get_token("0123456789abcdef")
            assert old is not None and old.parent_id is None and not old.revoked
            assert storage.revoke_token("nope") is False
    with LocalStorage(root) as storage:
        auth = Authenticator(storage)
        rec = auth.authenticate(f"Bearer rfl_0123456789abcdef_{secret}")
        assert rec is not None
        child, _ = auth.create_token("*", "read", parent=rec)
        assert storage.revoke_token(rec.token_id)
        got = storage.get_token(child.token_id)
        assert got is not None and got.revoked


@pytest.mark.parametrize("ttl", [float("inf"), float("nan"), 0, -5, 1e300])
def test_bad_ttls_are_refused(registry: Registry, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl"):
        registry.auth.create_token("acme", "read", ttl=ttl)


# -- 4. versions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["1.0.1\u0660", "\u0661.0.0", "1.\u0662.0", "1.0.0-\u0661", "1.0.\U0001d7ce"]
)
def test_non_ascii_digits_are_not_versions(text: str) -> None:
    assert not Version.is_valid(text)
    with pytest.raises(ValueError):
        VersionRange.parse(text)
    with pytest.raises(ValueError):
        VersionRange.parse(f"^{text}")


@pytest.mark.parametrize("order", [0, 1])
def test_exact_pin_matches_the_exact_text(order: int) -> None:
    versions = ["1.0.10", "1.0.10+rebuild"]
    if order:
        versions.reverse()
    assert pick_version(VersionRange.parse("1.0.10"), versions) == "1.0.10"
    assert pick_version(VersionRange.parse("=1.0.10+rebuild"), versions) == "1.0.10+rebuild"
    assert pick_version(VersionRange.parse("1.0.10+other"), versions) is None


def test_precedence_helper() -> None:
    assert precedence("1.0.10") == precedence("1.0.10+rebuild") == precedence("1.0.1\u0660")
    assert precedence("1.0.10") != precedence("1.0.10-rc.1")
    assert precedence("not a version") is None


def test_storage_refuses_same_precedence(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "data")
    storage.create_namespace("acme", "team")
    storage.add_version(version(storage, "1.0.10"))
    with pytest.raises(VersionConflict) as info:
        storage.add_version(version(storage, "1.0.10+rebuild"))
    assert info.value.existing == "1.0.10"
    storage.add_version(version(storage, "1.0.10-rc.1"))  # a pre-release is another version
    storage.add_version(version(storage, "1.0.11+build.5"))
    assert [r.version for r in storage.list_versions("acme", "tools")] == [
        "1.0.10-rc.1",
        "1.0.10",
        "1.0.11+build.5",
    ]
    storage.close()


def test_legacy_non_ascii_row_still_lists_and_still_conflicts(tmp_path: Path) -> None:
    """A row an older registry accepted ("1.0.1" + U+0660) neither crashes listing/search nor lets
    its ASCII twin in."""
    storage = LocalStorage(tmp_path / "data")
    storage.create_namespace("acme", "team")
    legacy = version(storage, "1.0.1\u0660")
    storage.db.execute(
        "INSERT INTO versions (namespace, name, version, sha256, size, "
        "manifest, signature, key_id, abi, description, templates, triples, "
        "published_at, published_by) VALUES ('acme', 'tools', ?, ?, 1, x'', "
        "x'', 'k', '1.0', 'image tools', '[]', '[]', 0, 't')",
        (legacy.version, legacy.sha256),
    )
    storage.add_version(version(storage, "0.9.0"))
    assert [r.version for r in storage.list_versions("acme", "tools")] == ["0.9.0", "1.0.1\u0660"]
    assert [r.version for r in storage.search("image", 10, 0)] == ["0.9.0"]
    with pytest.raises(VersionConflict):
        storage.add_version(version(storage, "1.0.10"))
    storage.close()


def test_publish_conflict_over_the_api_and_client(
    published: Registry, tmp_path: Path, trust: TrustStore
) -> None:
    c, _, _ = make_client(published, tmp_path, trust)
    p = tmp_path / "rebuild.rflpack"
    p.write_bytes(make_pack("acme/tools", "1.0.0+rebuild", published.key))
    with pytest.raises(RegistryHTTPError) as info:
        c.publish(p)
    assert (info.value.status, info.value.code) == (409, "version_conflict")
    assert "1.0.0" in str(info.value)
    assert [v["version"] for v in c.versions("acme/tools")] == ["1.0.0"]


# -- 2. header numbers (Range rows are in the failure table) -----------------------------------


@pytest.mark.parametrize("declared", ["\u00b2".encode("latin-1"), b"9" * 5000, b"12x"])
def test_content_length_must_be_ascii_digits(registry: Registry, declared: bytes) -> None:
    """ "²".isdigit() is True and int("²") raises; 5000 digits pass isdigit() and int()
    refuses them too: both were unhandled ValueErrors (500)."""

    async def go() -> httpx.Response:
        req = httpx.Request(
            "PUT",
            f"http://r{V}/0.2.0",
            content=b"abc",
            headers=[
                (b"authorization", f"Bearer {registry.publish}".encode()),
                (b"content-length", declared),
            ],
        )
        resp = await httpx.ASGITransport(app=registry.app).handle_async_request(req)
        await resp.aread()
        return resp

    r = asyncio.run(go())
    assert (r.status_code, r.json()["error"]["code"]) == (400, "bad_request")
