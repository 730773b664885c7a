"""Helpers for the registry tests: signed packs with small fake artifacts, a prepared
registry (storage, namespaces, keys, tokens) in-process, and a real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from reflow.abi._bundle import artifact_entry, build_bundle, file_entry
from reflow.abi._manifest import PORTABLE_TRIPLE, PackManifest, TemplateSpec
from reflow.abi._signing import generate_key, public_key_pem, sign_manifest
from reflow.registry._app import RegistryConfig, create_app
from reflow.registry._auth import Authenticator
from reflow.registry._storage import Storage
from reflow.registry._storage_sqlite import LocalStorage

NATIVE = "x86_64-unknown-linux-gnu"
OTHER = "aarch64-apple-darwin"


def make_pack(
    name: str = "acme/tools",
    version: str = "0.1.0",
    key: Ed25519PrivateKey | None = None,
    *,
    triples: tuple[str, ...] = (PORTABLE_TRIPLE,),
    artifact_size: int = 2000,
    abi: str = "1.0",
    signed: bool = True,
    noise: bool = False,
) -> bytes:
    """A valid pack whose artifacts are fake bytes (the registry never runs them);
    ``noise``: incompressible artifacts, so the pack is as big as ``artifact_size`` says."""
    contents: dict[str, bytes] = {}
    artifacts = []
    for i, triple in enumerate(triples):
        kind = "wasm" if triple == PORTABLE_TRIPLE else "native"
        path = f"artifacts/{triple}/tools.{'wasm' if kind == 'wasm' else 'so'}"
        seed = f"{name}{version}{triple}".encode()
        data = (seed * (artifact_size // len(seed) + 1))[: artifact_size - 1] + bytes([i])
        if noise:
            data = os.urandom(artifact_size)
        contents[path] = data
        artifacts.append(artifact_entry("tools", triple, kind, path, data))
    readme = f"# {name}\n".encode()
    contents["README.md"] = readme
    manifest = PackManifest(
        name=name,
        version=version,
        abi=abi,
        description=f"{name} test pack with image tools",
        license="MIT",
        readme="README.md",
        templates=(
            TemplateSpec(id=f"{name}/double", entry="tools", inports=("in",), outports=("out",)),
        ),
        artifacts=tuple(sorted(artifacts, key=lambda a: (a.entry, a.triple))),
        files=(file_entry("README.md", readme),),
    )
    mbytes = manifest.to_toml()
    sigs = [sign_manifest(mbytes, key)] if signed and key is not None else []
    return build_bundle(mbytes, contents, sigs)


@dataclass
class Registry:
    """An in-process registry: storage, auth, the app and tokens for namespace ``acme``."""

    storage: Storage
    auth: Authenticator
    app: Any
    key: Ed25519PrivateKey
    admin: str
    publish: str
    read: str
    root: Path

    def aclient(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://registry.test",
            headers=headers,
        )


def setup_registry(
    root: Path,
    *,
    max_upload: int = 8 << 20,
    anonymous_read: bool = True,
    storage: Storage | None = None,
) -> Registry:
    """A prepared registry on ``storage`` (default: the embedded one under ``root``)."""
    storage = storage if storage is not None else LocalStorage(root)
    auth = Authenticator(storage, anonymous_read=anonymous_read)
    auth.create_namespace("acme", "acme team")
    auth.create_namespace("other", "other team")
    key = generate_key()
    from reflow.abi._signing import key_id

    storage.add_key("acme", key_id(key), public_key_pem(key))
    _, admin = auth.create_token("*", "admin", label="admin")
    _, pub = auth.create_token("acme", "publish", label="ci")
    _, read = auth.create_token("acme", "read", label="reader")
    app = create_app(
        storage, RegistryConfig(max_upload=max_upload, anonymous_read=anonymous_read), auth=auth
    )
    return Registry(storage, auth, app, key, admin, pub, read, root)


# -- a real server -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """``reflow-registry serve`` in a subprocess on 127.0.0.1."""

    data: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    max_upload: int = 8 << 20
    #: Extra environment (``REFLOW_REGISTRY_INDEX`` / ``REFLOW_REGISTRY_BLOBS``: backends).
    env: dict[str, str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(self.env or {})}
        log = self.data.parent / f"server-{self.port}.log"
        with log.open("ab") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "reflow.registry._cli",
                    "serve",
                    "--data",
                    str(self.data),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--max-upload",
                    str(self.max_upload),
                    "--log-level",
                    "warning",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"registry server exited: {log.read_text()}")
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError("registry server did not start in 15 s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class SyncASGITransport(httpx.BaseTransport):
    """``httpx.ASGITransport`` driven from sync code (one event loop per request), so the
    sync registry client can talk to the app in-process."""

    def __init__(self, app: Any) -> None:
        self._asgi = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def go() -> tuple[int, httpx.Headers, bytes]:
            req = httpx.Request(request.method, request.url, headers=request.headers, content=body)
            resp = await self._asgi.handle_async_request(req)
            return resp.status_code, resp.headers, await resp.aread()

        status, headers, content = asyncio.run(go())
        return httpx.Response(status, headers=headers, content=content, request=request)


# -- the failure table: each row an HTTP status and an error code ------------------------------


@dataclass(frozen=True)
class Row:
    id: str
    method: str
    path: str
    token: str | None  # "admin" | "publish" | "read" | "bad" | None
    body: str | None  # a kind for body_for()
    status: int
    code: str
    #: bytes values go on the wire as they are (latin-1 text such as "²" in a header)
    headers: tuple[tuple[str, str | bytes], ...] = ()


#: The table's uploads are checked against this limit (the server is started with it).
TABLE_MAX_UPLOAD = 2 << 20
_V = "/api/v1/packs/acme/tools"
_DL = f"{_V}/0.1.0/download"

FAILURE_TABLE = [
    Row("wrong token", "PUT", f"{_V}/0.2.0", "bad", "good:0.2.0", 401, "unauthorized"),
    Row("no token", "PUT", f"{_V}/0.2.0", None, "good:0.2.0", 401, "unauthorized"),
    Row("read token cannot publish", "PUT", f"{_V}/0.2.0", "read", "good:0.2.0", 403, "forbidden"),
    Row(
        "wrong namespace",
        "PUT",
        "/api/v1/packs/other/tools/0.1.0",
        "publish",
        "other-ns",
        403,
        "forbidden",
    ),
    Row(
        "unknown namespace",
        "PUT",
        "/api/v1/packs/nope/tools/0.1.0",
        "admin",
        "nope-ns",
        404,
        "namespace_not_found",
    ),
    Row(
        "unregistered key", "PUT", f"{_V}/0.2.0", "publish", "foreign-key", 422, "unregistered_key"
    ),
    Row("unsigned pack", "PUT", f"{_V}/0.2.0", "publish", "unsigned", 422, "unsigned"),
    Row(
        "tampered member",
        "PUT",
        f"{_V}/0.2.0",
        "publish",
        "tampered-member",
        422,
        "integrity_mismatch",
    ),
    Row(
        "tampered manifest",
        "PUT",
        f"{_V}/0.2.0",
        "publish",
        "tampered-manifest",
        422,
        "bad_signature",
    ),
    Row("truncated upload", "PUT", f"{_V}/0.2.0", "publish", "truncated", 422, "invalid_pack"),
    Row("oversized upload", "PUT", f"{_V}/0.2.0", "publish", "oversize", 413, "too_large"),
    Row("duplicate version", "PUT", f"{_V}/0.1.0", "publish", "good:0.1.0", 409, "version_exists"),
    Row("garbage body", "PUT", f"{_V}/0.2.0", "publish", "garbage", 422, "invalid_pack"),
    Row("empty body", "PUT", f"{_V}/0.2.0", "publish", "empty", 400, "empty_body"),
    Row(
        "name mismatch",
        "PUT",
        "/api/v1/packs/acme/other/0.2.0",
        "publish",
        "good:0.2.0",
        400,
        "name_mismatch",
    ),
    Row("version mismatch", "PUT", f"{_V}/0.3.0", "publish", "good:0.2.0", 400, "version_mismatch"),
    Row("ABI major mismatch", "PUT", f"{_V}/0.2.0", "publish", "abi2", 422, "abi_incompatible"),
    Row("stripped pack", "PUT", f"{_V}/0.2.0", "publish", "stripped", 422, "stripped_pack"),
    Row(
        "traversal: %2e%2e namespace",
        "PUT",
        "/api/v1/packs/%2e%2e/tools/0.2.0",
        "admin",
        "good:0.2.0",
        400,
        "invalid_name",
    ),
    Row(
        "traversal: dot name",
        "GET",
        "/api/v1/packs/acme/..tools/0.1.0",
        None,
        None,
        400,
        "invalid_name",
    ),
    Row(
        "traversal: encoded slashes",
        "GET",
        "/api/v1/packs/acme/..%2f..%2fetc/0.1.0/download",
        None,
        None,
        404,
        "not_found",
    ),
    Row("traversal: version", "GET", f"{_V}/..%2e/download", None, None, 400, "invalid_version"),
    Row("uppercase namespace", "GET", "/api/v1/packs/ACME/tools", None, None, 400, "invalid_name"),
    Row(
        "range: not a number", "GET", _DL, None, None, 416, "bad_range", (("Range", "bytes=abc-"),)
    ),
    Row(
        "range: ends before start",
        "GET",
        _DL,
        None,
        None,
        416,
        "bad_range",
        (("Range", "bytes=50-10"),),
    ),
    Row("range: multiple", "GET", _DL, None, None, 416, "bad_range", (("Range", "bytes=0-1,4-5"),)),
    Row(
        "range: past the end",
        "GET",
        _DL,
        None,
        None,
        416,
        "bad_range",
        (("Range", "bytes=99999999-"),),
    ),
    Row("range: other unit", "GET", _DL, None, None, 416, "bad_range", (("Range", "items=0-5"),)),
    Row("range: empty suffix", "GET", _DL, None, None, 416, "bad_range", (("Range", "bytes=-0"),)),
    # str.isdigit() takes these and int() does not: was an unhandled ValueError (500)
    Row(
        "range: superscript digit start",
        "GET",
        _DL,
        None,
        None,
        416,
        "bad_range",
        (("Range", "bytes=\u00b2-".encode("latin-1")),),
    ),
    Row(
        "range: superscript digit end",
        "GET",
        _DL,
        None,
        None,
        416,
        "bad_range",
        (("Range", "bytes=0-\u00b9".encode("latin-1")),),
    ),
    Row(
        "range: 5000 digits",
        "GET",
        _DL,
        None,
        None,
        416,
        "bad_range",
        (("Range", "bytes=" + "9" * 5000 + "-"),),
    ),
    Row(
        "version: same precedence as a published one",
        "PUT",
        f"{_V}/0.1.0+rebuild",
        "publish",
        "good:0.1.0+rebuild",
        409,
        "version_conflict",
    ),
    Row("version: non-ASCII digit", "GET", f"{_V}/0.1.1%D9%A0", None, None, 400, "invalid_version"),
    Row("token: infinite ttl", "POST", "/api/v1/tokens", "admin", "token-inf", 400, "bad_request"),
    Row(
        "token: ttl not a number",
        "POST",
        "/api/v1/tokens",
        "admin",
        "token-str",
        400,
        "bad_request",
    ),
    Row("unknown version", "GET", f"{_V}/9.9.9", None, None, 404, "version_not_found"),
    Row("unknown pack", "GET", "/api/v1/packs/acme/nothing", None, None, 404, "pack_not_found"),
    Row("bad JSON", "POST", "/api/v1/namespaces", "admin", "json-bad", 400, "bad_json"),
    Row(
        "namespace exists",
        "POST",
        "/api/v1/namespaces",
        "admin",
        "ns-exists",
        409,
        "namespace_exists",
    ),
    Row(
        "publish token cannot create namespaces",
        "POST",
        "/api/v1/namespaces",
        "publish",
        "ns-new",
        403,
        "forbidden",
    ),
    Row("bad search limit", "GET", "/api/v1/search?limit=1000", None, None, 400, "bad_request"),
]


def published_pack(key: Ed25519PrivateKey) -> bytes:
    """What the table expects to be published first: acme/tools 0.1.0 with three triples."""
    return make_pack("acme/tools", "0.1.0", key, triples=(PORTABLE_TRIPLE, NATIVE, OTHER))


def body_for(kind: str | None, key: Ed25519PrivateKey) -> bytes:
    from reflow.abi._bundle import read_bundle, strip_bundle, write_bundle
    from reflow.abi._manifest import parse_manifest

    if kind is None or kind == "empty":
        return b""
    if kind.startswith("good:"):
        return make_pack("acme/tools", kind[5:], key)
    good = make_pack("acme/tools", "0.2.0", key)
    if kind == "tampered-member":
        b = read_bundle(good)
        contents = dict(b.contents)
        path = next(p for p in contents if p.startswith("artifacts/"))
        contents[path] = bytes([contents[path][0] ^ 1]) + contents[path][1:]
        return write_bundle(b.manifest_bytes, contents, b.signature_bytes)
    if kind == "tampered-manifest":
        b = read_bundle(good)
        evil = parse_manifest(b.manifest_bytes).with_(description="evil").to_toml()
        return write_bundle(evil, b.contents, b.signature_bytes)
    simple: dict[str, Any] = {
        "other-ns": lambda: make_pack("other/tools", "0.1.0", key),
        "nope-ns": lambda: make_pack("nope/tools", "0.1.0", key),
        "foreign-key": lambda: make_pack("acme/tools", "0.2.0", generate_key()),
        "unsigned": lambda: make_pack("acme/tools", "0.2.0", key, signed=False),
        "truncated": lambda: good[: len(good) // 2],
        "oversize": lambda: b"x" * (TABLE_MAX_UPLOAD + (1 << 20)),
        "garbage": lambda: b"this is not a pack\n" * 100,
        "abi2": lambda: make_pack("acme/tools", "0.2.0", key, abi="2.0"),
        "stripped": lambda: strip_bundle(
            make_pack("acme/tools", "0.2.0", key, triples=(PORTABLE_TRIPLE, NATIVE, OTHER)), NATIVE
        ),
        "json-bad": lambda: b"{",
        "ns-exists": lambda: b'{"name": "acme", "owner": "x"}',
        "ns-new": lambda: b'{"name": "fresh", "owner": "x"}',
        # Python's json reads Infinity; a token "expiring" at inf would never expire
        "token-inf": lambda: b'{"namespace": "acme", "scope": "read", "ttl_seconds": Infinity}',
        "token-str": lambda: b'{"namespace": "acme", "scope": "read", "ttl_seconds": "60"}',
    }
    return simple[kind]()  # type: ignore[no-any-return]


def token_for(reg: Registry, which: str | None) -> dict[str, str]:
    if which is None:
        return {}
    token = {
        "admin": reg.admin,
        "publish": reg.publish,
        "read": reg.read,
        "bad": "rfl_0123456789abcdef_" + "A" * 43,
    }[which]
    return {"Authorization": f"Bearer {token}"}
