"""The server's limits against a real ``reflow-registry serve`` on 127.0.0.1 (issue #8, rows
12, 14, 15): slow and greedy clients on raw sockets (408 / 503 / closed within the timeouts,
descriptors and temp files bounded), a full disk (507, nothing partial), and re-publishing
the identical pack (200 ``unchanged``)."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from regtest import NATIVE, Registry, make_pack, setup_registry
from servertest import LimitedServer, raw, read_answer, status_of

from reflow.abi._manifest import PORTABLE_TRIPLE
from reflow.registry._app import RegistryConfig
from reflow.registry._cli import main as registry_cli
from reflow.registry._serve import ServerLimits

TIMEOUT = 1.0  # head and body timeouts of the test server, seconds
#: Generous: the machine is shared. "Bounded" means well before a client would give up.
SLACK = 4.0
MAX_CONNECTIONS = 48
MAX_UPLOADS = 3
BACKLOG = 16
OPTIONS = (
    "--header-timeout",
    str(TIMEOUT),
    "--body-timeout",
    str(TIMEOUT),
    "--min-body-rate",
    "64K",
    "--keep-alive",
    str(TIMEOUT),
    "--max-connections",
    str(MAX_CONNECTIONS),
    "--max-uploads",
    str(MAX_UPLOADS),
    "--backlog",
    str(BACKLOG),
    "--max-upload",
    "64M",
)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    reg = setup_registry(tmp_path_factory.mktemp("limits") / "data")
    reg.storage.close()
    return reg


@pytest.fixture(scope="module")
def server(prepared: Registry) -> Iterator[LimitedServer]:
    with LimitedServer(prepared.root, OPTIONS) as srv:
        yield srv


def _put_head(reg: Registry, version: str, length: int, path: str = "acme/tools") -> bytes:
    return (
        f"PUT /api/v1/packs/{path}/{version} HTTP/1.1\r\nHost: registry\r\n"
        f"Authorization: Bearer {reg.publish}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def _drip(s: socket.socket, piece: bytes, every: float, times: int = 200) -> threading.Thread:
    def go() -> None:
        with contextlib.suppress(OSError):
            for _ in range(times):
                s.send(piece)
                time.sleep(every)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


# -- slow clients, one at a time: each row a way to be slow --------------------------------


def _silent(reg: Registry) -> tuple[bytes, bytes, float]:
    return b"", b"", 0.0


def _dripping_head(reg: Registry) -> tuple[bytes, bytes, float]:
    return b"GET /api/v1/health HTTP/1.1\r\nHost: r", b"x", 0.1


def _stalled_head(reg: Registry) -> tuple[bytes, bytes, float]:
    return b"GET /api/v1/health HTTP/1.1\r\nHost: r\r\n", b"", 0.0


def _dripping_upload(reg: Registry) -> tuple[bytes, bytes, float]:
    return _put_head(reg, "7.0.0", 10 << 20) + b"\x28\xb5\x2f\xfd", b"y" * 64, 0.05


def _stalled_upload(reg: Registry) -> tuple[bytes, bytes, float]:
    return _put_head(reg, "7.0.1", 10 << 20) + b"\x28\xb5\x2f\xfd" * 1000, b"", 0.0


def _dripping_json(reg: Registry) -> tuple[bytes, bytes, float]:
    return (
        (
            f"POST /api/v1/tokens HTTP/1.1\r\nHost: r\r\nAuthorization: Bearer {reg.admin}"
            "\r\nContent-Length: 5000\r\n\r\n{"
        ).encode(),
        b" ",
        0.05,
    )


def _dripping_chunked_upload(reg: Registry) -> tuple[bytes, bytes, float]:
    return (
        (
            f"PUT /api/v1/packs/acme/tools/7.0.2 HTTP/1.1\r\nHost: r\r\nAuthorization: "
            f"Bearer {reg.publish}\r\nTransfer-Encoding: chunked\r\n\r\n"
        ).encode(),
        b"1\r\nz\r\n",
        0.05,
    )


def _idle_after_answer(reg: Registry) -> tuple[bytes, bytes, float]:
    return b"GET /api/v1/health HTTP/1.1\r\nHost: r\r\n\r\n", b"", 0.0


@pytest.mark.parametrize(
    ("client", "status", "code"),
    [
        (_silent, None, None),  # nothing sent: closed without a word
        (_dripping_head, 408, b"request_timeout"),
        (_stalled_head, 408, b"request_timeout"),
        (_dripping_upload, 408, b"request_timeout"),
        (_stalled_upload, 408, b"request_timeout"),
        (_dripping_chunked_upload, 408, b"request_timeout"),
        (_dripping_json, 408, b"request_timeout"),
        (_idle_after_answer, 200, None),  # answered, then closed once idle for keep-alive
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else None,
)
def test_slow_client_is_answered_and_closed_within_the_timeout(
    server: LimitedServer,
    prepared: Registry,
    client: Callable[[Registry], tuple[bytes, bytes, float]],
    status: int | None,
    code: bytes | None,
) -> None:
    first, piece, every = client(prepared)
    start = time.monotonic()
    s = raw(server, first, timeout=TIMEOUT + SLACK + 5)
    if piece:
        _drip(s, piece, every)
    with s:
        answer = read_answer(s)
    took = time.monotonic() - start
    assert status_of(answer) == status, answer[:300]
    if code is not None:
        assert code in answer
        assert b"onnection: close" in answer
    assert took < TIMEOUT + SLACK, f"closed after {took:.1f} s"
    assert took > TIMEOUT * 0.8, f"closed after {took:.1f} s, before the timeout"
    deadline = time.monotonic() + SLACK
    while server.temp_files() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.temp_files() == 0


def test_a_fast_upload_is_not_cut_by_the_timeouts(
    server: LimitedServer, prepared: Registry
) -> None:
    """An upload that takes several times the timeouts but keeps up the minimum rate."""
    body = make_pack("acme/steady", "1.0.0", prepared.key, artifact_size=600_000, noise=True)

    def steady() -> Iterator[bytes]:
        for i in range(0, len(body), 64 << 10):
            time.sleep(0.25)  # 256 KiB/s: above the 64 KiB/s minimum, for ~2.5 s
            yield body[i : i + (64 << 10)]

    r = httpx.put(
        f"{server.url}/api/v1/packs/acme/steady/1.0.0",
        content=steady(),
        headers={"Authorization": f"Bearer {prepared.publish}", "Content-Length": str(len(body))},
        timeout=30,
    )
    assert r.status_code == 201, r.text


def test_over_the_upload_cap_is_503_with_retry_after(tmp_path: Path) -> None:
    # Its own server: the held uploads must not time out while the test runs.
    reg = setup_registry(tmp_path / "data")
    reg.storage.close()
    opts = ("--body-timeout", "60", "--min-body-rate", "0", "--max-uploads", str(MAX_UPLOADS))
    with LimitedServer(reg.root, opts) as srv:
        _upload_cap(srv, reg)


def _upload_cap(server: LimitedServer, prepared: Registry) -> None:
    holders = [
        raw(server, _put_head(prepared, f"8.0.{i}", 10 << 20) + b"\x28\xb5\x2f\xfd")
        for i in range(MAX_UPLOADS)
    ]
    try:
        deadline = time.monotonic() + SLACK
        while server.temp_files() < MAX_UPLOADS and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.temp_files() == MAX_UPLOADS
        r = httpx.put(
            f"{server.url}/api/v1/packs/acme/tools/8.1.0",
            content=b"x" * 1000,
            headers={"Authorization": f"Bearer {prepared.publish}"},
            timeout=10,
        )
        assert (r.status_code, r.json()["error"]["code"]) == (503, "too_many_uploads")
        assert int(r.headers["retry-after"]) >= 1
        assert server.temp_files() == MAX_UPLOADS
    finally:
        for s in holders:
            s.close()  # gone mid-upload: each temp file goes with it
    deadline = time.monotonic() + SLACK
    while server.temp_files() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.temp_files() == 0
    body = make_pack("acme/tools", "8.2.0", prepared.key)
    r = httpx.put(
        f"{server.url}/api/v1/packs/acme/tools/8.2.0",
        content=body,
        headers={"Authorization": f"Bearer {prepared.publish}"},
        timeout=30,
    )
    assert r.status_code == 201, r.text  # the slots are free again


def test_over_the_connection_cap_is_503_and_closed(tmp_path: Path) -> None:
    # Its own server: the held connections must not time out while the test runs.
    reg = setup_registry(tmp_path / "data")
    reg.storage.close()
    with LimitedServer(reg.root, ("--header-timeout", "60", "--max-connections", "8")) as srv:
        _connection_cap(srv, 8)


def _connection_cap(server: LimitedServer, cap: int) -> None:
    held = [raw(server) for _ in range(cap)]
    try:
        deadline = time.monotonic() + SLACK
        while (
            len(server.process.net_connections("tcp")) < cap + 1 and time.monotonic() < deadline
        ):  # the listener and the held ones
            time.sleep(0.02)
        with raw(server) as extra:
            answer = read_answer(extra)
        assert status_of(answer) == 503 and b"too_many_connections" in answer
        assert b"Retry-After: 1" in answer
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + SLACK
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/api/v1/health", timeout=2).status_code == 200:
                break
        time.sleep(0.1)
    else:
        pytest.fail("the server did not serve again once the connections closed")


@pytest.mark.slow
def test_a_crowd_of_slow_clients_keeps_descriptors_and_temp_files_bounded(
    server: LimitedServer, prepared: Registry
) -> None:
    """400 dripping uploads and 200 unfinished heads at once (the issue's load): the server's
    descriptors stay under its connection cap, temp files under its upload cap, every
    client is answered or closed within the timeouts, and the server still publishes."""
    base_fds = server.fds()
    peak_fds = peak_temps = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak_fds, peak_temps
        while not stop.is_set():
            with contextlib.suppress(OSError):
                peak_fds = max(peak_fds, server.fds())
                peak_temps = max(peak_temps, server.temp_files())
            time.sleep(0.01)

    def slow(i: int) -> tuple[int | None, float]:
        start = time.monotonic()
        try:
            if i % 3 == 2:
                s = raw(server, b"PUT /api/v1/packs/acme/tools/9.0.0 HTTP/1.1\r\nHost", 20)
                piece = b"o"
            else:
                s = raw(server, _put_head(prepared, f"9.1.{i}", 10 << 20) + b"\x28", 20)
                piece = b"y" * 16
        except OSError:
            return None, time.monotonic() - start  # refused at the door is bounded too
        with s:
            _drip(s, piece, 0.1)
            answer = read_answer(s)
        return status_of(answer), time.monotonic() - start

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with ThreadPoolExecutor(max_workers=600) as pool:
            results = list(pool.map(slow, range(600)))
    finally:
        stop.set()
        watcher.join(5)
    statuses = [s for s, _ in results]
    assert max(t for _, t in results) < TIMEOUT + 3 * SLACK
    assert set(statuses) <= {408, 503, None}, sorted(set(map(str, statuses)))
    # 408: too slow; 503: over the upload or the connection cap; None: closed
    assert statuses.count(408) >= MAX_UPLOADS and statuses.count(503) >= 1
    print(
        f"600 slow clients: fds {base_fds} -> peak {peak_fds}, peak temp files "
        f"{peak_temps}, {statuses.count(408)} x 408, {statuses.count(503)} x 503, "
        f"slowest {max(t for _, t in results):.1f} s"
    )
    # asyncio accepts up to BACKLOG per loop turn (a few turns pass before the ones over the
    # cap are refused and closed); the temp files are descriptors too. Not the 600 clients.
    bound = base_fds + MAX_CONNECTIONS + 4 * BACKLOG + MAX_UPLOADS
    assert peak_fds <= bound, (base_fds, peak_fds, bound)
    assert peak_temps <= MAX_UPLOADS
    deadline = time.monotonic() + SLACK
    while server.fds() > base_fds + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.fds() <= base_fds + 2
    assert server.temp_files() == 0
    body = make_pack("acme/after", "1.0.0", prepared.key)
    r = httpx.put(
        f"{server.url}/api/v1/packs/acme/after/1.0.0",
        content=body,
        headers={"Authorization": f"Bearer {prepared.publish}"},
        timeout=30,
    )
    assert r.status_code == 201, r.text


# -- the options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--header-timeout", "0"], "--header-timeout"),
        (["--header-timeout", "soon"], "--header-timeout"),
        (["--keep-alive", "-1"], "--keep-alive"),
        (["--body-timeout", "-3"], "not a number of seconds"),
        (["--body-timeout", "nan"], "not a number of seconds"),
        (["--body-timeout", "inf"], "not a number of seconds"),
        (["--min-body-rate", "fast"], "not a size"),
        (["--min-body-rate", "inf"], "not a size"),
        (["--max-connections", "0"], "--max-connections"),
        (["--max-uploads", "0"], "--max-uploads"),
        (["--max-builds", "-2"], "--max-builds"),
        (["--backlog", "0"], "--backlog"),
        (["--max-upload", "1e999"], "not a size"),
    ],
)
def test_bad_serve_options_are_usage_errors(tmp_path: Path, args: list[str], fragment: str) -> None:
    r = CliRunner().invoke(registry_cli, ["serve", "--data", str(tmp_path / "d"), *args])
    assert r.exit_code == 2, (r.output, r.exception)
    assert fragment in r.output
    assert not (tmp_path / "d").exists()  # refused before anything was opened


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: RegistryConfig(max_uploads=0), "max_uploads"),
        (lambda: RegistryConfig(max_builds=True), "max_builds"),
        (lambda: RegistryConfig(body_timeout=-1.0), "body_timeout"),
        (lambda: RegistryConfig(min_body_rate=0), "min_body_rate"),
        (lambda: ServerLimits(header_timeout=0), "header_timeout"),
        (lambda: ServerLimits(max_connections=-5), "max_connections"),
    ],
)
def test_bad_limits_in_code_are_value_errors(make: Callable[[], object], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        make()


# -- a full disk (row 14) ------------------------------------------------------------------


@contextlib.contextmanager
def _small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir(parents=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode(errors='replace').strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _big(reg: Registry, name: str, size: int) -> bytes:
    return make_pack(
        f"acme/{name}",
        "1.0.0",
        reg.key,
        triples=(PORTABLE_TRIPLE, NATIVE),
        artifact_size=size,
        noise=True,
    )


@contextlib.contextmanager
def _full_disk(kind: str, tmp_path: Path) -> Iterator[tuple[Registry, LimitedServer]]:
    opts = ("--max-upload", "64M")
    if kind == "rlimit":  # a 4 MiB file size limit on the server process: EFBIG
        reg = setup_registry(tmp_path / "data")
        reg.storage.close()
        with LimitedServer(reg.root, opts, fsize=4 << 20) as srv:
            yield reg, srv
        return
    with _small_tmpfs(tmp_path / "fs", "6m") as fs:  # a real 6 MiB file system: ENOSPC
        reg = setup_registry(fs / "data")
        reg.storage.close()
        with LimitedServer(reg.root, opts) as srv:
            yield reg, srv


@pytest.mark.parametrize(
    ("kind", "artifact"),
    [
        ("rlimit", 5 << 20),  # the upload itself passes the file size limit
        ("tmpfs", 8 << 20),  # the upload does not fit the disk
        ("tmpfs", 1900 << 10),  # the upload fits; its slim variants do not
    ],
    ids=["rlimit-upload", "tmpfs-upload", "tmpfs-variants"],
)
def test_disk_full_is_507_and_leaves_nothing(tmp_path: Path, kind: str, artifact: int) -> None:
    with _full_disk(kind, tmp_path) as (reg, srv):
        body = _big(reg, "huge", artifact)
        auth = {"Authorization": f"Bearer {reg.publish}"}
        for attempt in range(2):  # a second try fails the same way: nothing was left over
            r = httpx.put(
                f"{srv.url}/api/v1/packs/acme/huge/1.0.0", content=body, headers=auth, timeout=60
            )
            assert (r.status_code, r.json()["error"]["code"]) == (507, "insufficient_storage"), (
                attempt,
                r.text,
            )
            assert "no room" in r.json()["error"]["message"]
            assert srv.temp_files() == 0
            assert [p for p in (reg.root / "blobs").rglob("*") if p.is_file()] == []
            r = httpx.get(f"{srv.url}/api/v1/packs/acme/huge/1.0.0")
            assert r.status_code == 404
        small = make_pack("acme/small", "1.0.0", reg.key)
        r = httpx.put(
            f"{srv.url}/api/v1/packs/acme/small/1.0.0", content=small, headers=auth, timeout=30
        )
        assert r.status_code == 201, r.text
        assert httpx.get(f"{srv.url}/api/v1/packs/acme/small/1.0.0/download").content == small


# -- re-publishing the identical pack (row 15) ---------------------------------------------


@pytest.mark.parametrize(
    ("second", "status", "code"),
    [
        ("identical", 200, None),
        ("identical, chunked", 200, None),
        ("other bytes, same size", 409, "version_exists"),
        ("other bytes, other size", 409, "version_exists"),
        ("other bytes, other size, chunked", 409, "version_exists"),
    ],
)
def test_republishing(
    server: LimitedServer, prepared: Registry, second: str, status: int, code: str | None
) -> None:
    version = f"2.0.{hashlib.sha256(second.encode()).digest()[0]}"
    first = make_pack("acme/again", version, prepared.key, artifact_size=5000)
    auth = {"Authorization": f"Bearer {prepared.publish}"}
    url = f"{server.url}/api/v1/packs/acme/again/{version}"
    r = httpx.put(url, content=first, headers=auth, timeout=30)
    assert (r.status_code, r.json()["unchanged"]) == (201, False), r.text
    published = r.json()
    if second.startswith("identical"):
        body = first
    elif "same size" in second:
        body = make_pack("acme/again", version, prepared.key, artifact_size=5000, noise=True)
        assert len(body) != len(first) or body != first
    else:
        body = make_pack("acme/again", version, prepared.key, artifact_size=7000)
    content: bytes | Iterator[bytes] = body
    if "chunked" in second:
        content = iter([body[:100], body[100:]])
    r = httpx.put(url, content=content, headers=auth, timeout=30)
    assert r.status_code == status, r.text
    if code is None:
        doc = r.json()
        assert doc["unchanged"] is True
        assert {k: v for k, v in doc.items() if k != "unchanged"} == {
            k: v for k, v in published.items() if k != "unchanged"
        }
    else:
        assert r.json()["error"]["code"] == code
    assert httpx.get(f"{url}/download").content == first
    assert server.temp_files() == 0


def test_racing_identical_publishes_all_succeed_once(
    server: LimitedServer, prepared: Registry
) -> None:
    body = make_pack("acme/twins", "1.0.0", prepared.key, artifact_size=300_000, noise=True)

    def put(_: int) -> tuple[int, bool]:
        for _attempt in range(20):
            r = httpx.put(
                f"{server.url}/api/v1/packs/acme/twins/1.0.0",
                content=body,
                headers={"Authorization": f"Bearer {prepared.publish}"},
                timeout=30,
            )
            if r.status_code != 503:  # over the upload cap: retry as the client would
                return r.status_code, r.json()["unchanged"]
            time.sleep(0.05)
        raise AssertionError("never got an upload slot")

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(put, range(6)))
    assert sorted(results) == [(200, True)] * 5 + [(201, False)]
    assert httpx.get(f"{server.url}/api/v1/packs/acme/twins/1.0.0/download").content == body


def test_reflow_pack_publish_says_already_published(
    server: LimitedServer, prepared: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reflow.tools._registry_cli import main as pack_cli

    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))
    pack = tmp_path / "p.rflpack"
    pack.write_bytes(make_pack("acme/cli-again", "1.0.0", prepared.key))
    args = ["publish", str(pack), "--registry", server.url, "--token", prepared.publish]
    runner = CliRunner()
    first = runner.invoke(pack_cli, args)
    assert first.exit_code == 0, (first.output, first.exception)
    assert first.stdout.startswith("published acme/cli-again 1.0.0")
    again = runner.invoke(pack_cli, args)
    assert again.exit_code == 0, (again.output, again.exception)
    assert again.stdout.startswith("already published, unchanged: acme/cli-again 1.0.0")
    pack.write_bytes(make_pack("acme/cli-again", "1.0.0", prepared.key, artifact_size=999))
    other = runner.invoke(pack_cli, args)
    assert other.exit_code == 1 and "409" in other.stderr and "version_exists" in other.stderr
