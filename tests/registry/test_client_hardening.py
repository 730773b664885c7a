"""The registry client against a hostile registry (issue #8, rows 13 and 18): a raw HTTP
server on 127.0.0.1 that drips a byte a second, never answers, streams a 200 MiB version
list, answers 429 with ``Retry-After: 120``, puts terminal escapes in its errors, ... Each
row: the scenario, the error class, a fragment of its message, and a generous bound on the
time it took (memory: measured with psutil on a child process)."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from click.testing import CliRunner
from regtest import Registry, SyncASGITransport, make_pack

from reflow._errors import (
    RegistryAuthError,
    RegistryError,
    RegistryHTTPError,
    RegistryNotFoundError,
    RegistryUnavailableError,
)
from reflow._loader._trust import TrustStore
from reflow.abi._manifest import PORTABLE_TRIPLE
from reflow.registry import RegistryClient
from reflow.registry._semver import RegistrySpecError
from reflow.tools._registry_cli import main as pack_cli

V = "/api/v1/packs/acme/tools"
SEARCH = "/api/v1/search"

# -- a hostile HTTP/1.1 server ------------------------------------------------------------------

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter, dict[str, str]], Awaitable[None]]


async def _discard_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> None:
    n = int(headers.get("content-length", "0") or 0)
    while n > 0:
        got = await reader.read(min(n, 1 << 16))
        if not got:
            return
        n -= len(got)


def response(
    status: int,
    body: bytes = b"",
    headers: tuple[tuple[str, str], ...] = (),
    *,
    length: bool = True,
) -> bytes:
    head = [f"HTTP/1.1 {status} Whatever", "Connection: close", *(f"{k}: {v}" for k, v in headers)]
    if length:
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def answer(status: int, body: bytes | Any = b"", *headers: tuple[str, str]) -> Behaviour:
    """A whole answer at once (a dict or list body is sent as JSON)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    hdrs = headers if isinstance(body, bytes) else (("Content-Type", "application/json"), *headers)

    async def go(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, h: dict[str, str]
    ) -> None:
        await _discard_body(reader, h)
        writer.write(response(status, raw, hdrs))
        await writer.drain()

    return go


def drip(raw: bytes, *, every: float = 0.5, skip: int = 0) -> Behaviour:
    """``raw`` sent one byte per ``every`` seconds after the first ``skip`` bytes at once."""

    async def go(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, h: dict[str, str]
    ) -> None:
        await _discard_body(reader, h)
        writer.write(raw[:skip])
        for i in range(skip, len(raw)):
            await writer.drain()
            await asyncio.sleep(every)
            writer.write(raw[i : i + 1])
        await writer.drain()

    return go


def silent(read_body: bool = True) -> Behaviour:
    """Takes the request (or not even its body) and never answers."""

    async def go(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, h: dict[str, str]
    ) -> None:
        if read_body:
            await _discard_body(reader, h)
        await asyncio.sleep(3600)

    return go


def endless_versions(total: int, *, announce: bool) -> Behaviour:
    """A version list of ``total`` bytes, generated as it is sent (chunked, or with a
    Content-Length when ``announce``)."""
    item = b'{"version": "1.0.0", "yanked": false},'

    async def go(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, h: dict[str, str]
    ) -> None:
        await _discard_body(reader, h)
        extra = (
            (("Content-Length", str(total)),) if announce else (("Transfer-Encoding", "chunked"),)
        )
        writer.write(
            response(200, b"", (("Content-Type", "application/json"), *extra), length=False)
        )
        block = item * ((64 << 10) // len(item))
        sent = 0
        first = b'{"versions": ['
        while sent < total:
            data = (first + block) if sent == 0 else block
            writer.write(data if announce else b"%x\r\n%s\r\n" % (len(data), data))
            sent += len(data)
            await writer.drain()
        if not announce:
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    return go


@dataclass
class Hostile:
    """A raw HTTP server on 127.0.0.1: each request's path picks a :data:`Behaviour` in
    ``routes`` (else ``default``); one request per connection."""

    routes: dict[str, Behaviour] = field(default_factory=dict)
    default: Behaviour = field(
        default_factory=lambda: answer(
            404, {"error": {"code": "not_found", "message": "nothing here"}}
        )
    )
    hits: list[tuple[str, str]] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Hostile:
        self._loop = asyncio.new_event_loop()
        sock = socket.socket()
        # a small, fixed receive buffer (no autotuning): an upload it never reads stalls
        # after a few MiB on any kernel
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, sock=sock))
        self.port = self._server.sockets[0].getsockname()[1]
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        async def shutdown() -> None:
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def refuse(self) -> None:
        """Stop listening: connections are refused from now on."""

        async def close() -> None:
            self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            first, *lines = head.split("\r\n")
            method, target, _ = first.split(" ", 2)
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (ln.partition(":") for ln in lines if ln)
            }
            path = target.split("?", 1)[0]
            self.hits.append((method, path))
            await self.routes.get(path, self.default)(reader, writer, headers)
        except (
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            asyncio.CancelledError,
        ):
            pass  # the client went away, or the test is over
        finally:
            writer.close()


# -- fixtures -----------------------------------------------------------------------------------


@dataclass
class Canned:
    """Real answers of the real registry app for acme/tools 1.0.0 (portable only), to be
    served (or withheld) by a hostile server."""

    versions: dict[str, Any]
    meta: dict[str, Any]
    pack: bytes
    search: dict[str, Any]

    def routes(self) -> dict[str, Behaviour]:
        return {
            f"{V}": answer(200, self.versions),
            f"{V}/1.0.0": answer(200, self.meta),
            f"{V}/1.0.0/download": answer(200, self.pack),
            SEARCH: answer(200, self.search),
        }


@pytest.fixture(autouse=True)
def _no_env_token(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("REFLOW_REGISTRY_TOKEN", raising=False)
    yield


@pytest.fixture
def canned(registry: Registry) -> Canned:
    pack = make_pack("acme/tools", "1.0.0", registry.key, triples=(PORTABLE_TRIPLE,))
    with httpx.Client(
        transport=SyncASGITransport(registry.app),
        base_url="http://r",
        headers={"Authorization": f"Bearer {registry.publish}"},
    ) as c:
        assert c.put(f"{V}/1.0.0", content=pack).status_code == 201
        return Canned(
            c.get(V).json(),
            c.get(f"{V}/1.0.0").json(),
            pack,
            c.get(SEARCH, params={"q": "tools"}).json(),
        )


@pytest.fixture
def trust(tmp_path: Path, registry: Registry) -> TrustStore:
    store = TrustStore(tmp_path / "trust")
    store.add(registry.key.public_key())
    return store


class Notes(list[str]):
    def __call__(self, line: str) -> None:
        self.append(line)


def client(
    url: str, tmp_path: Path, trust: TrustStore | None = None, **kw: Any
) -> tuple[RegistryClient, Notes]:
    notes = Notes()
    opts: dict[str, Any] = {
        "retries": 1,
        "backoff": 0.05,
        "min_rate": 1024.0,
        "rate_window": 0.5,
        "deadline": 8.0,
        **kw,
    }
    c = RegistryClient(
        url,
        cache_dir=tmp_path / "cache",
        trust=trust or TrustStore(tmp_path / "no-trust"),
        notify=notes,
        **opts,
    )
    return c, notes


def _call(c: RegistryClient, op: str, pack: Path | None = None) -> Any:
    if op == "search":
        return c.search("tools")
    if op == "versions":
        return c.versions("acme/tools")
    if op == "install":
        return c.install("acme/tools@^1", triple=PORTABLE_TRIPLE)
    if op == "publish":
        assert pack is not None
        return c.publish(pack)
    raise AssertionError(op)


# -- 1. time: deadline, minimum rate, Retry-After -------------------------------------------------

_JSON_OK = response(200, b'{"results": []}', (("Content-Type", "application/json"),))


@dataclass(frozen=True)
class TimeRow:
    id: str
    op: str
    route: str
    behaviour: Callable[[Canned], Behaviour]
    error: type[RegistryError]
    fragment: str
    options: tuple[tuple[str, Any], ...] = ()
    max_s: float = 15.0


TIME_ROWS = [
    TimeRow(
        "body dripping 2 bytes/s",
        "search",
        SEARCH,
        lambda c: drip(_JSON_OK, skip=len(_JSON_OK) - 14),
        RegistryUnavailableError,
        "below the minimum of 1024 bytes/s",
    ),
    TimeRow(
        "status line and headers dripping",
        "search",
        SEARCH,
        lambda c: drip(_JSON_OK),
        RegistryUnavailableError,
        "below the minimum",
    ),
    TimeRow(
        "never answers",
        "search",
        SEARCH,
        lambda c: silent(),
        RegistryUnavailableError,
        "deadline",
        (("deadline", 2.0), ("timeout", 60.0)),
    ),
    TimeRow(
        "download dripping",
        "install",
        f"{V}/1.0.0/download",
        lambda c: drip(response(200, c.pack), skip=200),
        RegistryUnavailableError,
        "below the minimum",
    ),
    TimeRow(
        "upload never read",
        "publish",
        f"{V}/1.0.0",
        lambda c: silent(read_body=False),
        RegistryUnavailableError,
        "accepted",
    ),
    TimeRow(
        "429 Retry-After: 120",
        "search",
        SEARCH,
        lambda c: answer(
            429, {"error": {"code": "rate_limited", "message": "slow down"}}, ("Retry-After", "120")
        ),
        RegistryHTTPError,
        "asks to retry after 120 s",
        max_s=3.0,
    ),
    TimeRow(
        "503 Retry-After as a far date",
        "versions",
        V,
        lambda c: answer(503, b"busy", ("Retry-After", "Fri, 31 Dec 2100 23:59:59 GMT")),
        RegistryHTTPError,
        "longer than this client waits",
        max_s=3.0,
    ),
    TimeRow(
        "Retry-After past the deadline",
        "versions",
        V,
        lambda c: answer(503, b"", ("Retry-After", "5")),
        RegistryUnavailableError,
        "would pass the 3 s deadline",
        (("deadline", 3.0),),
        max_s=3.0,
    ),
]


@pytest.mark.parametrize("row", TIME_ROWS, ids=[r.id for r in TIME_ROWS])
def test_hostile_timing_is_bounded(
    row: TimeRow, canned: Canned, tmp_path: Path, trust: TrustStore, registry: Registry
) -> None:
    with Hostile(routes={**canned.routes(), row.route: row.behaviour(canned)}) as srv:
        c, _ = client(srv.url, tmp_path, trust, token=registry.publish, **dict(row.options))
        big = None
        if row.op == "publish":
            big = tmp_path / "big.rflpack"  # more than the socket buffers take unread
            big.write_bytes(
                make_pack("acme/tools", "1.0.0", registry.key, artifact_size=8 << 20, noise=True)
            )
        start = time.monotonic()
        with c, pytest.raises(row.error) as info:
            _call(c, row.op, big)
        elapsed = time.monotonic() - start
    assert row.fragment in str(info.value)
    assert elapsed < row.max_s, (elapsed, str(info.value))
    assert len(str(info.value)) < 1000 and "\n" not in str(info.value)


@pytest.mark.slow
def test_default_settings_stop_a_dripping_registry(tmp_path: Path) -> None:
    """With the defaults (1024 bytes/s over 10 s) a 1 byte/s answer stops in about 10 s."""
    with (
        Hostile(routes={SEARCH: drip(_JSON_OK)}) as srv,
        RegistryClient(srv.url, cache_dir=tmp_path / "cache", retries=0, notify=None) as c,
    ):
        start = time.monotonic()
        with pytest.raises(RegistryUnavailableError, match="below the minimum"):
            c.search("x")
        assert time.monotonic() - start < 25


def test_retry_waits_are_announced(canned: Canned, tmp_path: Path) -> None:
    busy = answer(503, {"error": {"code": "busy", "message": "try later"}})
    flaky = iter([busy, busy])

    async def first_busy(
        r: asyncio.StreamReader, w: asyncio.StreamWriter, h: dict[str, str]
    ) -> None:
        await next(flaky, answer(200, canned.search))(r, w, h)

    with Hostile(routes={SEARCH: first_busy}) as srv:
        c, notes = client(srv.url, tmp_path, retries=3)
        with c:
            assert [h["full_name"] for h in c.search("tools")] == ["acme/tools"]
    assert len(notes) == 2 and all("the registry answered 503" in n for n in notes)
    assert "retrying in" in notes[0] and "attempt 2 of 4" in notes[0]


# -- 2. memory and size: the 200 MiB version list -------------------------------------------------

_CHILD = textwrap.dedent("""
    import sys, psutil
    from reflow.registry import RegistryClient
    from reflow._errors import ReflowError
    client = RegistryClient(sys.argv[1], cache_dir=sys.argv[2], retries=0, notify=None)
    print(psutil.Process().memory_info().rss, flush=True)
    try:
        client.versions("acme/tools")
        print("no error")
    except ReflowError as exc:
        print(type(exc).__name__, getattr(exc, "code", ""))
        print(str(exc))
""")


@pytest.mark.parametrize("announce", [False, True], ids=["chunked", "content-length"])
def test_200_mib_version_list_is_refused_in_bounded_memory(tmp_path: Path, announce: bool) -> None:
    total = 200 << 20
    with Hostile(routes={V: endless_versions(total, announce=announce)}) as srv:
        start = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, srv.url, str(tmp_path / "c")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        peak = 0
        child = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                peak = max(peak, child.memory_info().rss)
            except psutil.Error:
                break
            time.sleep(0.005)
        out, err = proc.communicate(timeout=60)
        elapsed = time.monotonic() - start
    lines = out.splitlines()
    assert len(lines) == 3, (out, err)
    baseline = int(lines[0])
    assert lines[1] == "RegistryHTTPError too_large"
    assert "max_metadata" in lines[2] and len(lines[2]) < 400
    print(f"peak RSS {peak / 2**20:.1f} MiB, baseline {baseline / 2**20:.1f} MiB, {elapsed:.2f} s")
    assert peak - baseline < 48 << 20, f"peak {peak >> 20} MiB, baseline {baseline >> 20} MiB"
    assert elapsed < 30


def test_cli_error_line_for_the_endless_version_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REFLOW_REGISTRY_TOKEN", raising=False)
    with Hostile(routes={V: endless_versions(200 << 20, announce=False)}) as srv:
        r = CliRunner().invoke(
            pack_cli,
            [
                "install",
                "acme/tools@^1",
                "--registry",
                srv.url,
                "--cache-dir",
                str(tmp_path / "c"),
                "--trust-dir",
                str(tmp_path / "t"),
            ],
        )
    assert r.exit_code == 1 and r.stderr.startswith("error: ")
    assert r.stderr.count("\n") == 1 and len(r.stderr) < 400 and "max_metadata" in r.stderr


_DEEP = b"[" * 200_000 + b"]" * 200_000


@dataclass(frozen=True)
class BodyRow:
    id: str
    behaviour: Behaviour
    error: type[RegistryError]
    fragment: str
    code: str = ""


_ESC = "\x1b[2J\x1b]0;owned\x07\u202eevil\r\nX-Injected: 1"
BODY_ROWS = [
    BodyRow(
        "nested 200000 deep",
        answer(200, _DEEP),
        RegistryHTTPError,
        "nested too deeply",
        "bad_response",
    ),
    BodyRow(
        "not JSON", answer(200, b"<html>" * 1000), RegistryHTTPError, "not JSON", "bad_response"
    ),
    BodyRow(
        "versions of the wrong shape",
        answer(200, {"versions": [1, 2, 3]}),
        RegistryHTTPError,
        "not a version list",
        "bad_response",
    ),
    BodyRow(
        "versions not a list",
        answer(200, {"versions": {"1.0.0": True}}),
        RegistryHTTPError,
        "not a version list",
        "bad_response",
    ),
    BodyRow(
        "gzip although identity was asked",
        answer(200, gzip.compress(b'{"versions": []}'), ("Content-Encoding", "gzip")),
        RegistryHTTPError,
        "'gzip'-encoded",
        "bad_response",
    ),
    BodyRow(
        "escapes in the error message",
        answer(500, {"error": {"code": "internal", "message": _ESC + "A" * 1_000_000}}),
        RegistryHTTPError,
        "more characters",
        "internal",
    ),
    BodyRow(
        "escapes in the error code",
        answer(400, {"error": {"code": _ESC, "message": "bad"}}),
        RegistryHTTPError,
        "http_400",
        "http_400",
    ),
    BodyRow(
        "8 MB error page",
        answer(502, b"\x1b[31m" + b"B" * (8 << 20)),
        RegistryHTTPError,
        "502 http_502",
        "http_502",
    ),
    BodyRow(
        "100000 versions, none matching",
        answer(
            200, {"versions": [{"version": f"0.{i}.0", "yanked": False} for i in range(100_000)]}
        ),
        RegistryNotFoundError,
        "and 99980 older",
        "no_matching_version",
    ),
]


@pytest.mark.parametrize("row", BODY_ROWS, ids=[r.id for r in BODY_ROWS])
def test_hostile_answers_are_clear_errors(row: BodyRow, tmp_path: Path) -> None:
    with Hostile(routes={V: row.behaviour}) as srv:
        c, _ = client(srv.url, tmp_path, retries=0)
        start = time.monotonic()
        with c, pytest.raises(row.error) as info:
            c.resolve("acme/tools@^1")
        elapsed = time.monotonic() - start
    text = str(info.value)
    assert row.fragment in text and (not row.code or info.value.code == row.code)  # type: ignore[attr-defined]
    assert len(text) < 1200 and not any(ch in text for ch in "\x1b\x07\r\n\u202e"), text
    assert elapsed < 10


# -- 3. the cache answers when the registry cannot -----------------------------------------------


@dataclass(frozen=True)
class FallbackRow:
    id: str
    behaviour: Behaviour | None  # None: the server is gone (connection refused)
    note: str


FALLBACK_ROWS = [
    FallbackRow("503", answer(503, b"down"), "registry unavailable"),
    FallbackRow(
        "429 Retry-After: 120", answer(429, b"", ("Retry-After", "120")), "registry unavailable"
    ),
    FallbackRow("dripping 2 bytes/s", drip(_JSON_OK), "registry unreachable"),
    FallbackRow("connection refused", None, "registry unreachable"),
]


def _switch(srv: Hostile, paths: tuple[str, ...], behaviour: Behaviour | None) -> None:
    if behaviour is None:
        srv.refuse()
    for p in paths:
        srv.routes[p] = behaviour or answer(500)


@pytest.mark.parametrize("row", FALLBACK_ROWS, ids=[r.id for r in FALLBACK_ROWS])
def test_search_falls_back_to_the_cached_index(
    row: FallbackRow, canned: Canned, tmp_path: Path
) -> None:
    with Hostile(routes=canned.routes()) as srv:
        c, notes = client(srv.url, tmp_path)
        with c:
            fresh = c.search("tools")
            for f in (c.cache / "_index").iterdir():  # as if it were fetched 3 hours ago
                os.utime(f, (time.time() - 3 * 3600, time.time() - 3 * 3600))
            _switch(srv, (SEARCH,), row.behaviour)
            start = time.monotonic()
            assert c.search("tools") == fresh
            elapsed = time.monotonic() - start
    assert notes and notes[-1].startswith(row.note), notes
    assert notes[-1].endswith("using cached index from 3 h ago")
    assert elapsed < 6


@pytest.mark.parametrize("row", FALLBACK_ROWS, ids=[r.id for r in FALLBACK_ROWS])
def test_install_falls_back_to_the_cached_pack(
    row: FallbackRow, canned: Canned, tmp_path: Path, trust: TrustStore
) -> None:
    with Hostile(routes=canned.routes()) as srv:
        c, notes = client(srv.url, tmp_path, trust)
        with c:
            assert not c.install("acme/tools@^1", triple=PORTABLE_TRIPLE).from_cache
            _switch(srv, (V, f"{V}/1.0.0"), row.behaviour)
            start = time.monotonic()
            got = c.install("acme/tools@^1", triple=PORTABLE_TRIPLE)
            elapsed = time.monotonic() - start
            assert got.from_cache and got.version == "1.0.0"
    assert notes[-1].startswith(row.note)
    assert re.search(r"; using cached acme/tools 1\.0\.0 \(full\) from \d+ s ago$", notes[-1]), (
        notes
    )
    assert elapsed < 6


def test_nothing_cached_is_still_an_error(canned: Canned, tmp_path: Path) -> None:
    with Hostile(routes={SEARCH: answer(503, b"down"), V: answer(503, b"down")}) as srv:
        c, notes = client(srv.url, tmp_path, retries=0)
        with c:
            with pytest.raises(RegistryHTTPError) as info:
                c.search("tools")
            assert info.value.status == 503
            with pytest.raises(
                RegistryUnavailableError,
                match=r"registry unavailable, and no cached version of "
                r"acme/tools matches \^1.*cached: none",
            ):
                c.install("acme/tools@^1")
    assert not notes


# -- 4. tokens: never in clear text to a remote host; 401/403 say what to do ---------------------

TOKEN_URLS = [
    ("http://registry.example.com", "rfl_x", False, "https://"),
    ("http://10.1.2.3:8700", "rfl_x", False, "--insecure"),
    ("http://0.0.0.0:8700", "rfl_x", False, "plain http"),
    ("http://127.0.0.1.example.com", "rfl_x", False, "plain http"),
    ("http://127.0.0.1:8700", "rfl_x", False, None),
    ("http://127.8.9.10:8700", "rfl_x", False, None),
    ("http://localhost:8700", "rfl_x", False, None),
    ("http://[::1]:8700", "rfl_x", False, None),
    ("https://registry.example.com", "rfl_x", False, None),
    ("http://registry.example.com", None, False, None),
    ("http://registry.example.com", "rfl_x", True, None),
]


@pytest.mark.parametrize(("url", "token", "insecure", "fragment"), TOKEN_URLS)
def test_token_over_plain_http(
    url: str,
    token: str | None,
    insecure: bool,
    fragment: str | None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.delenv("REFLOW_REGISTRY_TOKEN", raising=False)
    if fragment is None:
        RegistryClient(url, token=token, insecure=insecure, cache_dir=tmp_path).close()
        return
    with pytest.raises(RegistrySpecError, match="refusing to send the registry token") as info:
        RegistryClient(url, token=token, insecure=insecure, cache_dir=tmp_path)
    assert fragment in str(info.value) and "--insecure" in str(info.value)
    monkeypatch.setenv("REFLOW_REGISTRY_TOKEN", "rfl_from_env")  # the env token too
    with pytest.raises(RegistrySpecError, match="https://"):
        RegistryClient(url, cache_dir=tmp_path)


def test_cli_insecure_option(
    canned: Canned, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0.0.0.0 reaches this host but is not loopback by name: the token is refused, unless
    ``--insecure``; and the hostile server then sees it."""
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "c"))
    seen: list[str] = []

    async def record(r: asyncio.StreamReader, w: asyncio.StreamWriter, h: dict[str, str]) -> None:
        seen.append(h.get("authorization", ""))
        await answer(200, canned.search)(r, w, h)

    with Hostile(routes={SEARCH: record}) as srv:
        url = f"http://0.0.0.0:{srv.port}"
        r = CliRunner().invoke(
            pack_cli, ["search", "tools", "--registry", url, "--token", "rfl_secret"]
        )
        assert r.exit_code == 1 and "--insecure" in r.stderr and r.stderr.count("\n") == 1
        assert seen == []
        r = CliRunner().invoke(
            pack_cli, ["search", "tools", "--registry", url, "--token", "rfl_secret", "--insecure"]
        )
        assert r.exit_code == 0 and "acme/tools" in r.stdout
        assert seen == ["Bearer rfl_secret"]


@pytest.fixture
def local_pack(tmp_path: Path, registry: Registry) -> Path:
    p = tmp_path / "p.rflpack"
    p.write_bytes(make_pack("acme/tools", "2.0.0", registry.key))
    return p


AUTH_ROWS = [
    (
        "publish without a token",
        None,
        "publish",
        401,
        [
            "this needs a token with scope 'publish' for namespace 'acme'",
            "--token",
            "$REFLOW_REGISTRY_TOKEN",
        ],
    ),
    (
        "publish with a read token",
        "read",
        "publish",
        403,
        ["has scope 'read'", "needs a token with scope 'publish'", "--token"],
    ),
    (
        "publish with an unknown token",
        "bogus",
        "publish",
        401,
        ["refused the token (the token is not valid)", "--token"],
    ),
    (
        "publish with a malformed token",
        "rfl_nope",
        "publish",
        401,
        ["refused the token", "--token"],
    ),
    ("whoami without a token", None, "whoami", 401, ["this needs a valid token", "--token"]),
    ("yank with a read token", "read", "yank", 403, ["scope 'publish'", "--token"]),
]


@pytest.mark.parametrize(
    ("id_", "token", "op", "status", "fragments"), AUTH_ROWS, ids=[r[0] for r in AUTH_ROWS]
)
def test_auth_errors_say_what_to_do(
    id_: str,
    token: str | None,
    op: str,
    status: int,
    fragments: list[str],
    registry: Registry,
    tmp_path: Path,
    local_pack: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("REFLOW_REGISTRY_TOKEN", raising=False)
    tokens = {
        "read": registry.read,
        "bogus": "rfl_0123456789abcdef_" + "A" * 43,
        "rfl_nope": "rfl_nope",
    }
    with (
        RegistryClient(
            "http://127.0.0.1:1",
            token=tokens.get(token or ""),
            transport=SyncASGITransport(registry.app),
            cache_dir=tmp_path / "c",
            notify=None,
        ) as c,
        pytest.raises(RegistryAuthError) as info,
    ):
        if op == "publish":
            c.publish(local_pack)
        elif op == "whoami":
            c.whoami()
        else:
            c.yank("acme/tools@2.0.0")
    text = str(info.value)
    assert info.value.status == status
    assert all(f in text for f in fragments), text
    assert "Authorization" not in text and "header" not in text


def test_metadata_fields_from_the_registry_are_quoted_clean(
    canned: Canned, tmp_path: Path, trust: TrustStore
) -> None:
    meta = dict(canned.meta, name="\x1b[31m" + "n" * 5000)
    with Hostile(routes={**canned.routes(), f"{V}/1.0.0": answer(200, meta)}) as srv:
        c, _ = client(srv.url, tmp_path, trust, retries=0)
        with c, pytest.raises(RegistryError) as info:
            c.install("acme/tools@1.0.0", triple=PORTABLE_TRIPLE)
    assert "mixed-up" in str(info.value) and "\x1b" not in str(info.value)
    assert len(str(info.value)) < 600


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        ("deadline", 0, "above 0"),
        ("deadline", float("inf"), "finite"),
        ("timeout", -1, "above 0"),
        ("rate_window", float("nan"), "finite"),
        ("min_rate", -5, "at least 0"),
        ("max_retry_after", "10", "number"),
        ("backoff", True, "number"),
        ("retries", -1, "whole number"),
        ("retries", 1.5, "whole number"),
        ("max_metadata", True, "whole number"),
    ],
)
def test_bad_client_settings(option: str, value: object, fragment: str, tmp_path: Path) -> None:
    with pytest.raises(RegistrySpecError, match=rf"RegistryClient\({option}=\.\.\.\)") as info:
        RegistryClient("http://127.0.0.1:1", cache_dir=tmp_path, **{option: value})  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_max_metadata_is_configurable(canned: Canned, tmp_path: Path) -> None:
    with Hostile(routes=canned.routes()) as srv:
        small, _ = client(srv.url, tmp_path, max_metadata=64)
        with small, pytest.raises(RegistryHTTPError, match="64-byte limit") as info:
            small.versions("acme/tools")
        assert info.value.code == "too_large"
        roomy, _ = client(srv.url, tmp_path, max_metadata=1 << 16)
        with roomy:
            assert [v["version"] for v in roomy.versions("acme/tools")] == ["1.0.0"]
