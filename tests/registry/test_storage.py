"""reflow.registry._storage: the SQLite index and the content-addressed blob store."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from reflow.registry._storage import (
    LocalStorage,
    StorageConflict,
    TokenRecord,
    VariantRecord,
    VersionRecord,
)


def version(
    storage: LocalStorage,
    ver: str,
    name: str = "tools",
    yanked: bool = False,
    description: str = "image tools",
) -> VersionRecord:
    sha = storage.put_blob(f"{name}{ver}".encode())
    slim = storage.put_blob(f"{name}{ver}slim".encode())
    return VersionRecord(
        namespace="acme",
        name=name,
        version=ver,
        sha256=sha,
        size=len(f"{name}{ver}"),
        manifest=b"m",
        signature=b"s",
        key_id="0" * 16,
        abi="1.0",
        description=description,
        templates=(f"acme/{name}/double",),
        triples=("wasm32-unknown-unknown",),
        published_at=time.time(),
        published_by="t",
        yanked=yanked,
        variants=(VariantRecord("x86_64-unknown-linux-gnu", slim, 8),),
    )


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    s = LocalStorage(tmp_path / "data")
    s.create_namespace("acme", "team")
    return s


def test_blob_is_content_addressed_and_durable(storage: LocalStorage) -> None:
    sha = storage.put_blob(b"hello")
    assert sha == hashlib.sha256(b"hello").hexdigest()
    assert storage.blob_path(sha).read_bytes() == b"hello"
    assert storage.put_blob(b"hello") == sha  # same content, same blob
    assert list(storage.tmp.iterdir()) == []


def test_upload_discard_leaves_nothing(storage: LocalStorage) -> None:
    up = storage.new_upload()
    up.write(b"partial")
    up.discard()
    assert list(storage.tmp.iterdir()) == [] and list(storage.iter_blob_files()) == []


def test_blob_address_rejects_non_digests(storage: LocalStorage) -> None:
    with pytest.raises(ValueError):
        storage.blob_path("../../etc/passwd")


def test_version_round_trip_and_conflict(storage: LocalStorage) -> None:
    rec = version(storage, "0.1.0")
    storage.add_version(rec)
    got = storage.get_version("acme", "tools", "0.1.0")
    assert got == rec
    with pytest.raises(StorageConflict):
        storage.add_version(version(storage, "0.1.0"))


def test_row_needs_committed_blobs(storage: LocalStorage) -> None:
    rec = version(storage, "0.1.0")
    storage.blob_path(rec.sha256).unlink()
    with pytest.raises(ValueError, match="not committed"):
        storage.add_version(rec)
    assert storage.get_version("acme", "tools", "0.1.0") is None


def test_versions_sorted_by_semver(storage: LocalStorage) -> None:
    for v in ["0.10.0", "0.2.0", "1.0.0-rc.1", "1.0.0"]:
        storage.add_version(version(storage, v))
    assert [r.version for r in storage.list_versions("acme", "tools")] == [
        "0.2.0",
        "0.10.0",
        "1.0.0-rc.1",
        "1.0.0",
    ]


def test_yank_and_search(storage: LocalStorage) -> None:
    storage.add_version(version(storage, "0.1.0"))
    storage.add_version(version(storage, "0.2.0"))
    storage.add_version(version(storage, "0.3.0-rc.1"))
    storage.add_version(version(storage, "1.0.0", name="audio", description="sound"))
    assert [(r.name, r.version) for r in storage.search("image", 10, 0)] == [("tools", "0.2.0")]
    assert storage.set_yanked("acme", "tools", "0.2.0", True, "bad build")
    assert storage.get_version("acme", "tools", "0.2.0").yank_reason == "bad build"
    assert [r.version for r in storage.search("tools", 10, 0)] == ["0.1.0"]
    assert [r.name for r in storage.search("", 10, 0)] == ["audio", "tools"]
    assert [r.name for r in storage.search("", 1, 1)] == ["tools"]
    assert storage.search("100%_", 10, 0) == []  # LIKE wildcards are escaped


def test_garbage_collection_removes_orphans_only(storage: LocalStorage) -> None:
    rec = version(storage, "0.1.0")
    storage.add_version(rec)
    orphan = storage.put_blob(b"orphan")
    up = storage.new_upload()
    up.write(b"half")
    up.finish()
    assert storage.collect_garbage() == (1, 1)
    assert not storage.has_blob(orphan)
    assert storage.has_blob(rec.sha256) and storage.has_blob(rec.variants[0].sha256)


def test_tokens_namespaces_keys(storage: LocalStorage) -> None:
    with pytest.raises(StorageConflict):
        storage.create_namespace("acme", "someone")
    rec = TokenRecord("ab" * 8, "0" * 64, "acme", "read", "x", time.time(), None)
    storage.add_token(rec)
    assert storage.get_token(rec.token_id) == rec
    assert storage.revoke_token(rec.token_id)
    assert storage.get_token(rec.token_id).revoked
    storage.add_key("acme", "k" * 16, b"pem")
    assert [k.key_id for k in storage.list_keys("acme")] == ["k" * 16]
    assert storage.remove_key("acme", "k" * 16) and not storage.remove_key("acme", "k" * 16)


def test_close_is_idempotent_and_use_after_close_raises(tmp_path: Path) -> None:
    s = LocalStorage(tmp_path / "d")
    s.close()
    s.close()
    with pytest.raises(RuntimeError, match="closed"):
        s.list_namespaces()
