"""reflow.registry._storage: the index and the content-addressed blob store, on every backend
(``backend``: SQLite + blob files, PostgreSQL + S3; see conftest.py)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reflow.registry._storage import (
    Storage,
    StorageConflict,
    TokenRecord,
    VariantRecord,
    VersionRecord,
)
from reflow.registry._storage_sqlite import LocalStorage


def version(
    storage: Storage,
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
def storage(tmp_path: Path, storage_factory: Callable[[Path], Storage]) -> Storage:
    s = storage_factory(tmp_path / "data")
    s.create_namespace("acme", "team")
    if not isinstance(s, LocalStorage):  # S3: no grace period for the GC test
        s.blob_store.gc_grace = 0.0  # type: ignore[attr-defined]
    return s


def drop_blob(storage: Storage, sha: str) -> None:
    if isinstance(storage, LocalStorage):
        storage.blob_path(sha).unlink()
    else:
        storage.blob_store.delete_blob(sha)  # type: ignore[attr-defined]


def test_blob_is_content_addressed_and_durable(storage: Storage) -> None:
    sha = storage.put_blob(b"hello")
    assert sha == hashlib.sha256(b"hello").hexdigest()
    assert b"".join(storage.read_blob(sha, 0, 5)) == b"hello"
    assert b"".join(storage.read_blob(sha, 1, 4)) == b"ell"  # a range
    assert storage.put_blob(b"hello") == sha  # same content, same blob
    assert storage.list_blobs() == [sha]
    assert list(storage.spool.iterdir()) == []


def test_upload_discard_leaves_nothing(storage: Storage) -> None:
    up = storage.new_upload()
    up.write(b"partial")
    up.discard()
    assert list(storage.spool.iterdir()) == [] and storage.list_blobs() == []


def test_blob_address_rejects_non_digests(storage: Storage) -> None:
    for bad in ("../../etc/passwd", "A" * 64, "0" * 63):
        with pytest.raises(ValueError, match="not a sha256"):
            storage.has_blob(bad)
        with pytest.raises(ValueError, match="not a sha256"):
            list(storage.read_blob(bad, 0, 1))


def test_version_round_trip_and_conflict(storage: Storage) -> None:
    rec = version(storage, "0.1.0")
    storage.add_version(rec)
    got = storage.get_version("acme", "tools", "0.1.0")
    assert got == rec
    with pytest.raises(StorageConflict):
        storage.add_version(version(storage, "0.1.0"))


def test_row_needs_committed_blobs(storage: Storage) -> None:
    rec = version(storage, "0.1.0")
    drop_blob(storage, rec.sha256)
    with pytest.raises(ValueError, match="not committed"):
        storage.add_version(rec)
    assert storage.get_version("acme", "tools", "0.1.0") is None


def test_versions_sorted_by_semver(storage: Storage) -> None:
    for v in ["0.10.0", "0.2.0", "1.0.0-rc.1", "1.0.0"]:
        storage.add_version(version(storage, v))
    assert [r.version for r in storage.list_versions("acme", "tools")] == [
        "0.2.0",
        "0.10.0",
        "1.0.0-rc.1",
        "1.0.0",
    ]


def test_yank_and_search(storage: Storage) -> None:
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


def test_garbage_collection_removes_orphans_only(storage: Storage) -> None:
    rec = version(storage, "0.1.0")
    storage.add_version(rec)
    orphan = storage.put_blob(b"orphan")
    up = storage.new_upload()
    up.write(b"half")
    up.finish()
    assert storage.collect_garbage() == (1, 1)
    assert not storage.has_blob(orphan)
    assert storage.has_blob(rec.sha256) and storage.has_blob(rec.variants[0].sha256)


def test_tokens_namespaces_keys(storage: Storage) -> None:
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
