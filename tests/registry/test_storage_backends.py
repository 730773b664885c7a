"""Storage on existing engines: a real PostgreSQL index and blobs on a real S3 server
(``backends.py``). Two registry processes sharing one database and one bucket serve
consistently; racing publishers of one version (or of one precedence) through either
process: exactly one wins; bad ``--index`` / ``--blobs`` locations are refused with a
clear error, in bounded time."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from backends import BUCKET, Postgres, S3Server
from regtest import Registry, Server, free_port, make_pack, setup_registry
from test_storage import version

from reflow._loader._trust import TrustStore
from reflow.registry import RegistryClient
from reflow.registry._storage import (
    Storage,
    StorageConfigError,
    StorageConflict,
    VersionConflict,
)
from reflow.registry._storage_open import open_storage
from reflow.registry._tuf_repo import ONLINE_DIR, TufRepository

# -- the storage layer: racing writers on two connections of their own -------------------------


@pytest.mark.parametrize(
    ("versions", "wins", "loser"),
    [
        (["1.0.0"] * 8, 1, StorageConflict),  # the same version: the primary key decides
        ([f"1.0.0+b{i}" for i in range(8)], 1, VersionConflict),  # one precedence: the lock
        ([f"1.0.{i}" for i in range(8)], 8, None),  # distinct versions all commit
    ],
    ids=["same-version", "same-precedence", "distinct"],
)
def test_racing_add_version_on_separate_storages(
    tmp_path: Path,
    storage_factory: Callable[[Path], Storage],
    backend: str,
    versions: list[str],
    wins: int,
    loser: type[Exception] | None,
) -> None:
    """Each writer has its own Storage (as two processes would): exactly ``wins`` commit."""
    first = storage_factory(tmp_path / "d0")
    first.create_namespace("acme", "team")
    stores = [first] + [storage_factory(tmp_path / f"d{i}") for i in range(1, len(versions))]
    if backend == "local":  # one SQLite file shared by every writer, as processes would
        stores = [first] + [open_storage(tmp_path / "d0") for _ in versions[1:]]
    records = [version(s, v) for s, v in zip(stores, versions, strict=True)]
    gate = threading.Barrier(len(stores))

    def add(i: int) -> Exception | None:
        gate.wait(10)
        try:
            stores[i].add_version(records[i])
        except StorageConflict as exc:
            return exc
        return None

    with ThreadPoolExecutor(len(stores)) as pool:
        outcomes = list(pool.map(add, range(len(stores))))
    assert sum(o is None for o in outcomes) == wins
    if loser is not None:
        assert all(type(o) is loser for o in outcomes if o is not None), outcomes
    listed = [r.version for r in first.list_versions("acme", "tools")]
    assert len(listed) == wins
    for s in stores:
        s.close()


# -- two registry processes on one PostgreSQL and one bucket -----------------------------------


@dataclass
class Shared:
    reg: Registry
    a: Server
    b: Server
    trust: TrustStore
    root_json: bytes


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory, pg_server: Postgres, s3_server: S3Server
) -> Iterator[Shared]:
    root = tmp_path_factory.mktemp("shared")
    index, blobs = pg_server.new_database(), s3_server.new_prefix()
    reg = setup_registry(root / "a", storage=open_storage(root / "a", index, blobs))
    # Signed metadata in the shared index; each server gets a copy of the online keys.
    root_json = TufRepository(reg.storage, root / "a" / ONLINE_DIR).init(root / "keys")
    shutil.copytree(root / "a" / ONLINE_DIR, root / "b" / ONLINE_DIR)
    reg.storage.close()
    env = {"REFLOW_REGISTRY_INDEX": index, "REFLOW_REGISTRY_BLOBS": blobs}
    a = Server(root / "a", free_port(), env=env).start()
    try:
        b = Server(root / "b", free_port(), env=env).start()
    except BaseException:
        a.stop()
        raise
    trust = TrustStore(root / "trust")
    trust.add(reg.key.public_key())
    try:
        yield Shared(reg, a, b, trust, root_json)
    finally:
        a.stop()
        b.stop()


def _put(url: str, token: str, name: str, ver: str, body: bytes) -> httpx.Response:
    return httpx.put(
        f"{url}/api/v1/packs/acme/{name}/{ver}",
        content=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )


@pytest.mark.slow
def test_publish_on_one_install_from_the_other(shared: Shared, tmp_path: Path) -> None:
    body = make_pack("acme/shared", "0.1.0", shared.reg.key, artifact_size=300_000, noise=True)
    r = _put(shared.a.url, shared.reg.publish, "shared", "0.1.0", body)
    assert r.status_code == 201, r.text
    with RegistryClient(shared.b.url, trust=shared.trust, cache_dir=tmp_path / "c") as client:
        got = client.install("acme/shared@^0.1")
        assert hashlib.sha256(got.path.read_bytes()).hexdigest() == got.sha256
        assert "acme/shared" in [h["full_name"] for h in client.search("shared")]
    full = httpx.get(f"{shared.b.url}/api/v1/packs/acme/shared/0.1.0/download", timeout=30)
    assert full.content == body
    part = httpx.get(  # a range, served from the bucket by the other process
        f"{shared.b.url}/api/v1/packs/acme/shared/0.1.0/download",
        headers={"Range": "bytes=1000-1999"},
        timeout=30,
    )
    assert (part.status_code, part.content) == (206, body[1000:2000])
    # a yank through B is what A serves
    y = httpx.post(
        f"{shared.b.url}/api/v1/packs/acme/shared/0.1.0/yank",
        json={"reason": "bad build"},
        headers={"Authorization": f"Bearer {shared.reg.publish}"},
        timeout=30,
    )
    assert y.status_code == 200, y.text
    doc = httpx.get(f"{shared.a.url}/api/v1/packs/acme/shared/0.1.0", timeout=30).json()
    assert doc["yanked"] is True


@pytest.mark.slow
def test_signed_metadata_is_shared_by_both_processes(shared: Shared, tmp_path: Path) -> None:
    """Publish with signed metadata through A, install through B with the pinned root:
    B serves the snapshot and timestamp A's publish made (one index), signed with the same
    online keys."""
    path = tmp_path / "signed.rflpack"
    path.write_bytes(make_pack("acme/signed", "0.4.0", shared.reg.key))
    with RegistryClient(
        shared.a.url, token=shared.reg.publish, trust=shared.trust, cache_dir=tmp_path / "p"
    ) as pub:
        pub.pin_root(shared.root_json)
        pub.publish(path, key=shared.reg.key)
    stamps = [
        httpx.get(f"{s.url}/tuf/timestamp.json", timeout=30).json() for s in (shared.a, shared.b)
    ]
    assert stamps[0]["signed"]["version"] == stamps[1]["signed"]["version"]
    with RegistryClient(shared.b.url, trust=shared.trust, cache_dir=tmp_path / "c") as client:
        client.pin_root(shared.root_json)
        got = client.install("acme/signed@^0.4")
        assert got.version == "0.4.0"
        assert hashlib.sha256(got.path.read_bytes()).hexdigest() == got.sha256


@pytest.mark.slow
@pytest.mark.parametrize(
    ("versions", "code"),
    [
        (["2.0.0"] * 8, "version_exists"),
        ([f"2.0.0+b{i}" for i in range(8)], "version_conflict"),
    ],
    ids=["same-version", "same-precedence"],
)
def test_racing_publishes_through_both_processes(
    shared: Shared, versions: list[str], code: str
) -> None:
    """Eight publishers, alternately through A and B: exactly one 201, seven 409 with the
    code for the case, and both processes serve the winner's bytes."""
    name = f"race{len(code)}"
    bodies = [
        make_pack(f"acme/{name}", v, shared.reg.key, artifact_size=4000 + i)
        for i, v in enumerate(versions)
    ]
    gate = threading.Barrier(len(bodies))

    def put(i: int) -> httpx.Response:
        gate.wait(10)
        url = (shared.a if i % 2 else shared.b).url
        return _put(url, shared.reg.publish, name, versions[i], bodies[i])

    with ThreadPoolExecutor(len(bodies)) as pool:
        results = list(pool.map(put, range(len(bodies))))
    statuses = [r.status_code for r in results]
    assert sorted(statuses) == [201] + [409] * (len(bodies) - 1), [r.text for r in results]
    assert {r.json()["error"]["code"] for r in results if r.status_code == 409} == {code}
    won = statuses.index(201)
    for server in (shared.a, shared.b):
        got = httpx.get(
            f"{server.url}/api/v1/packs/acme/{name}/{versions[won]}/download", timeout=30
        )
        assert got.content == bodies[won]


# -- bad locations: a clear error naming the location, in bounded time -------------------------


def _rows(pg: Postgres, s3: S3Server) -> list[tuple[dict[str, str], str]]:
    dead = free_port()
    ep = s3.endpoint
    return [
        ({"index": f"postgresql://reflow:hunter2@127.0.0.1:{pg.port}/postgres"}, "PGPASSWORD"),
        ({"index": "mysql://127.0.0.1/db"}, "expected postgresql://"),
        ({"index": "postgresql://127.0.0.1:99999999/db"}, "malformed"),
        ({"index": f"postgresql://reflow@127.0.0.1:{dead}/db"}, "cannot reach the PostgreSQL"),
        ({"index": pg.url("no_such_db")}, "cannot reach the PostgreSQL"),
        ({"blobs": f"s3://key:secret@{BUCKET}/p?endpoint={ep}"}, "AWS_ACCESS_KEY_ID"),
        ({"blobs": f"s3://{BUCKET}/p?endpoint={ep}&acl=public"}, "unknown option(s) acl"),
        ({"blobs": f"s3://{BUCKET}/p?endpoint=ftp://x"}, "expected http(s)://"),
        ({"blobs": f"gs://{BUCKET}/p"}, "expected s3://bucket"),
        ({"blobs": f"s3://{BUCKET}/a/../b?endpoint={ep}"}, "no empty, '.' or '..' parts"),
        ({"blobs": f"s3://{BUCKET}/a//b?endpoint={ep}"}, "no empty, '.' or '..' parts"),
        ({"blobs": f"s3://{BUCKET}/a%00b?endpoint={ep}"}, "must be /-separated names"),
        ({"blobs": f"s3://Bad_Bucket/p?endpoint={ep}"}, "is not a bucket name"),
        ({"blobs": f"s3://MyBucket/p?endpoint={ep}"}, "'MyBucket' is not a bucket name"),
        ({"blobs": f"s3://no-such-bucket/p?endpoint={ep}"}, "reach bucket 'no-such-bucket'"),
        ({"blobs": f"s3://{BUCKET}/p?endpoint=http://127.0.0.1:{dead}"}, "reach bucket"),
    ]


_ROW_IDS = [
    "pg-password-in-url",
    "pg-wrong-scheme",
    "pg-bad-port",
    "pg-nothing-listens",
    "pg-no-such-database",
    "s3-credentials-in-url",
    "s3-unknown-option",
    "s3-bad-endpoint",
    "s3-wrong-scheme",
    "s3-prefix-dotdot",
    "s3-prefix-empty-part",
    "s3-prefix-odd-character",
    "s3-bad-bucket-name",
    "s3-uppercase-bucket",
    "s3-no-such-bucket",
    "s3-nothing-listens",
]


@pytest.mark.parametrize("row", range(len(_ROW_IDS)), ids=_ROW_IDS)
def test_bad_locations_are_refused(
    tmp_path: Path, pg_server: Postgres, s3_server: S3Server, row: int
) -> None:
    where, fragment = _rows(pg_server, s3_server)[row]
    start = time.monotonic()
    with pytest.raises(StorageConfigError) as info:
        open_storage(tmp_path / "d", where.get("index"), where.get("blobs"))
    assert fragment in str(info.value)
    assert "hunter2" not in str(info.value) and "secret" not in str(info.value)
    assert time.monotonic() - start < 60  # bounded: connect timeouts, limited retries


@pytest.mark.slow
def test_serve_refuses_a_bad_location_with_one_line(tmp_path: Path, pg_server: Postgres) -> None:
    url = f"postgresql://reflow:hunter2@127.0.0.1:{pg_server.port}/postgres"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "reflow.registry._cli",
            "serve",
            "--data",
            str(tmp_path / "d"),
            "--index",
            url,
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: index URL") and "PGPASSWORD" in proc.stderr
    assert "hunter2" not in proc.stderr and "Traceback" not in proc.stderr


# -- text an index cannot keep: the same answer on every backend --------------------------------

_NUL_ROWS = [
    # (method, path, JSON body as raw bytes, status, code, message fragment)
    (
        "POST",
        "/api/v1/packs/acme/tools/0.1.0/yank",
        b'{"reason": "a\\u0000b"}',
        400,
        "bad_json",
        "NUL character",
    ),
    (
        "POST",
        "/api/v1/packs/acme/tools/0.1.0/yank",
        b'{"reason": "\\ud800"}',
        400,
        "bad_json",
        "unpaired surrogate",
    ),
    (
        "POST",
        "/api/v1/namespaces",
        b'{"name": "zed", "owner": "x\\u0000"}',
        400,
        "bad_json",
        "field 'owner'",
    ),
    (
        "POST",
        "/api/v1/tokens",
        b'{"namespace": "acme", "scope": "read", "label": "\\udfff"}',
        400,
        "bad_json",
        "field 'label'",
    ),
    ("POST", "/api/v1/tokens", b'{"\\u0000": 1}', 400, "bad_json", "a field name"),
    ("POST", "/api/v1/namespaces", b"[" * 60_000, 400, "bad_json", "nested too deeply"),
]


@pytest.mark.parametrize("row", _NUL_ROWS, ids=[f"{i}" for i in range(len(_NUL_ROWS))])
def test_unstorable_text_is_refused(
    registry: Registry, row: tuple[str, str, bytes, int, str, str]
) -> None:
    method, path, body, status, code, fragment = row
    client = httpx.Client(
        transport=_sync(registry),
        base_url="http://registry.test",
        headers={"Authorization": f"Bearer {registry.admin}"},
    )
    with client as c:
        assert (
            c.put(
                "/api/v1/packs/acme/tools/0.1.0",
                content=make_pack("acme/tools", "0.1.0", registry.key),
                headers={"Authorization": f"Bearer {registry.publish}"},
            ).status_code
            == 201
        )
        r = c.request(method, path, content=body, headers={"Content-Type": "application/json"})
    assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
    assert fragment in r.json()["error"]["message"]


@pytest.mark.parametrize("query", ["\x00", "a\x00b", "%00"])
def test_lookups_of_unstorable_text_find_nothing(registry: Registry, query: str) -> None:
    s = registry.storage
    assert s.get_token(query) is None and s.get_namespace(query) is None
    assert s.search(query, 10, 0) == [] and s.list_versions("acme", query) == []
    with httpx.Client(transport=_sync(registry), base_url="http://registry.test") as c:
        r = c.get("/api/v1/search", params={"q": query})
    assert r.status_code == 200 and r.json()["results"] == [], r.text


def _sync(registry: Registry) -> httpx.BaseTransport:
    from regtest import SyncASGITransport

    return SyncASGITransport(registry.app)


# -- a backend that goes away: 503 storage_unavailable, bounded, then it recovers -------------


def test_index_connections_cut_are_503_then_recover(
    tmp_path: Path, pg_server: Postgres, s3_server: S3Server
) -> None:
    import psycopg

    index = pg_server.new_database()
    data = tmp_path / "d"
    reg = setup_registry(data, storage=open_storage(data, index, s3_server.new_prefix()))
    with httpx.Client(transport=_sync(reg), base_url="http://registry.test") as c:
        assert c.get("/api/v1/packs/acme/tools").status_code == 404  # a pooled connection
        with psycopg.connect(pg_server.url(), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (index.rsplit("/", 1)[1],),
            )
        start = time.monotonic()
        r = c.get("/api/v1/packs/acme/tools")
        assert time.monotonic() - start < 30
        assert (r.status_code, r.json()["error"]["code"]) == (503, "storage_unavailable"), r.text
        assert "PostgreSQL index" in r.json()["error"]["message"]
        assert r.headers["retry-after"] == "5"
        assert c.get("/api/v1/packs/acme/tools").status_code == 404  # a fresh connection
    reg.storage.close()


@pytest.mark.slow
def test_blob_store_gone_is_503(tmp_path: Path, pg_server: Postgres, s3_server: S3Server) -> None:
    from backends import start_s3

    own = start_s3()  # a server of its own, to stop
    try:
        data = tmp_path / "d"
        reg = setup_registry(
            data, storage=open_storage(data, pg_server.new_database(), own.new_prefix())
        )
        with httpx.Client(transport=_sync(reg), base_url="http://registry.test") as c:
            put = c.put(
                "/api/v1/packs/acme/tools/0.1.0",
                content=make_pack("acme/tools", "0.1.0", reg.key),
                headers={"Authorization": f"Bearer {reg.publish}"},
            )
            assert put.status_code == 201, put.text
            own.stop()
            start = time.monotonic()
            r = c.get("/api/v1/packs/acme/tools/0.1.0/download")
            assert time.monotonic() - start < 60  # a few retries, never a hang
            assert (r.status_code, r.json()["error"]["code"]) == (503, "storage_unavailable")
            assert "S3 blob store" in r.json()["error"]["message"]
            r = c.put(
                "/api/v1/packs/acme/tools/0.2.0",
                content=make_pack("acme/tools", "0.2.0", reg.key),
                headers={"Authorization": f"Bearer {reg.publish}"},
            )
            assert (r.status_code, r.json()["error"]["code"]) == (503, "storage_unavailable")
            assert list(reg.storage.spool.iterdir()) == []  # the spooled upload was removed
        assert reg.storage.get_version("acme", "tools", "0.2.0") is None
    finally:
        own.stop()


# -- big blobs: multipart upload, ranged streaming reads, bounded memory -----------------------

_BIG_CHILD = r"""
import hashlib, json, os, sys, psutil
from pathlib import Path
from reflow.registry._storage_open import open_storage
data, index, blobs, size = sys.argv[1], sys.argv[2] or None, sys.argv[3] or None, int(sys.argv[4])
proc = psutil.Process()
s = open_storage(Path(data), index, blobs)
base = proc.memory_info().rss
up, digest, chunk = s.new_upload(), hashlib.sha256(), os.urandom(1 << 20)
for i in range(size >> 20):
    piece = chunk[:-1] + bytes([i % 256])
    up.write(piece)
    digest.update(piece)
sha = s.commit_blob(up)
peak_up = proc.memory_info().rss - base
back = hashlib.sha256()
for c in s.read_blob(sha, 0, size):
    back.update(c)
edge = b"".join(s.read_blob(sha, (8 << 20) - 3, (8 << 20) + 3))
peak = max(peak_up, proc.memory_info().rss - base)
print(json.dumps({"ok": sha == digest.hexdigest() == back.hexdigest(), "edge": edge.hex(),
                  "peak": peak, "blobs": s.list_blobs() == [sha]}))
s.close()
"""


@pytest.mark.slow
def test_big_blob_multipart_round_trip_in_bounded_memory(
    tmp_path: Path, backend_urls: tuple[str | None, str | None]
) -> None:
    """40 MiB through the store (S3: a multipart upload of 8 MiB parts) and back, in a child
    process: the bytes and a range across a part boundary are intact, and the RSS growth
    stays well under the blob's size."""
    import json

    size = 40 << 20
    index, blobs = backend_urls
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _BIG_CHILD,
            str(tmp_path / "d"),
            index or "",
            blobs or "",
            str(size),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"peak RSS growth for a {size >> 20} MiB blob: {got['peak'] >> 20} MiB")
    assert got["ok"] and got["blobs"]
    edge = bytes.fromhex(got["edge"])  # the 8th MiB ends with byte 7 (S3: part 1 ends there)
    assert len(edge) == 6 and edge[2] == 7
    assert got["peak"] < size // 2, got  # streamed: never the whole blob in memory


@pytest.mark.slow
def test_admin_commands_use_the_backends_from_the_environment(
    tmp_path: Path, pg_server: Postgres, s3_server: S3Server
) -> None:
    import json
    import os

    env = {
        **os.environ,
        "REFLOW_REGISTRY_INDEX": pg_server.new_database(),
        "REFLOW_REGISTRY_BLOBS": s3_server.new_prefix(),
        "REFLOW_REGISTRY_DATA": str(tmp_path / "d"),
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "reflow.registry._cli", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )

    made = cli("namespace", "create", "acme", "--owner", "team", "--json")
    assert made.returncode == 0, made.stderr
    tok = cli("token", "create", "--namespace", "acme", "--scope", "read", "--json")
    assert tok.returncode == 0, tok.stderr
    listed = json.loads(cli("namespace", "list", "--json").stdout)
    assert [n["name"] for n in listed] == ["acme"], listed
    # the rows are in PostgreSQL, not in an SQLite file under --data
    assert not (tmp_path / "d" / "index.sqlite3").exists()
