"""More cases of each TUF attack class than ``test_tuf_attacks`` names: every role and the
pack bytes rolled back, frozen, flooded, dripped or swapped, behind a malicious proxy on
127.0.0.1 in front of a real registry on uvicorn. Each ends in its own ``RegistryError``
subclass, with a message naming what was refused, in bounded time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from regtest import make_pack
from tuftest import (
    Proxy,
    SignedRegistry,
    Uvicorn,
    client,
    drip,
    flood,
    json_api_agrees_with,
    signed_registry,
)

from reflow._errors import RegistryError, RegistryIntegrityError, RegistryUnavailableError
from reflow._loader._trust import TrustStore
from reflow.abi._signing import generate_key
from reflow.registry._tuf_errors import FreezeError, MetadataError, TargetMismatchError
from reflow.registry._tuf_repo import TufPolicy

ROLES = ("timestamp", "snapshot", "targets", "acme")


@dataclass
class World:
    signed: SignedRegistry
    proxy: Proxy
    url: str
    trust: TrustStore
    #: signed metadata right after 0.1.0 was published, and now: {role: bytes}
    early: dict[str, bytes]
    now: dict[str, bytes]


def _state(w: SignedRegistry) -> dict[str, bytes]:
    out = {}
    for role in ROLES:
        got = w.reg.storage.get_metadata(role)
        if got is not None:
            out[role] = got[1]
    return out


def _publish(w: SignedRegistry, url: str, tmp: Path, versions: tuple[str, ...]) -> None:
    with client(url, tmp / "publisher", w.root, token=w.reg.publish) as pub:
        for v in versions:
            path = tmp / f"tools-{v}.rflpack"
            path.write_bytes(make_pack("acme/tools", v, w.reg.key))
            pub.publish(path, key=w.reg.key)


def _world(tmp: Path, policy: TufPolicy) -> Iterator[World]:
    w = signed_registry(tmp, policy)
    with Uvicorn(w.app) as up:
        _publish(w, up.url, tmp, ("0.1.0",))
        early = _state(w)
        _publish(w, up.url, tmp, ("0.2.0", "0.3.0"))
        proxy = Proxy(up.url)
        with Uvicorn(proxy) as front:
            trust = TrustStore(tmp / "trust")
            trust.add(w.reg.key.public_key())
            yield World(w, proxy, front.url, trust, early, _state(w))
    w.reg.storage.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield from _world(tmp_path_factory.mktemp("tuf-more"), TufPolicy())


@pytest.fixture
def w(world: World) -> Iterator[World]:
    world.proxy.rules.clear()
    yield world
    world.proxy.rules.clear()


def _install(w: World, tmp: Path, spec: str = "acme/tools@*", **kw: Any) -> Any:
    with client(w.url, tmp, w.signed.root, trust=w.trust, **kw) as c:
        return c.install(spec)


def _serve(path_end: str, body: Any) -> Any:
    return lambda p, s, h, b: (200, body) if p.endswith(path_end) else None


def _role_path(role: str) -> str:
    return "/tuf/timestamp.json" if role == "timestamp" else f".{role}.json"


# -- rollback: a client that verified the newest state is served an older one ---------------


@pytest.mark.parametrize(
    "roles",
    [
        ("timestamp", "snapshot"),
        ("timestamp", "snapshot", "acme"),
        ("timestamp", "snapshot", "targets", "acme"),
    ],
    ids=lambda r: "+".join(r),
)
def test_rollback_to_a_consistent_older_state(w: World, tmp_path: Path, roles: tuple) -> None:
    """The proxy serves a whole, self-consistent state from before 0.2.0: each file is
    genuinely signed, only older than what the client already holds."""
    assert _install(w, tmp_path).version == "0.3.0"
    for role in roles:
        w.proxy.rules.append(_serve(_role_path(role), w.early[role]))
    start = time.monotonic()
    with pytest.raises(MetadataError, match=r"older than what this client|mix-and-match") as info:
        _install(w, tmp_path)
    assert info.value.role in roles
    assert time.monotonic() - start < 20


@pytest.mark.parametrize("role", ["snapshot", "acme"])
def test_rollback_of_one_role_under_the_current_timestamp(
    w: World, tmp_path: Path, role: str
) -> None:
    """Old bytes at the current file name: their version is not the one the newer role
    lists (mix-and-match), and the client never falls back to the old state."""
    w.proxy.rules.append(_serve(_role_path(role), w.early[role]))
    with pytest.raises(MetadataError, match=role):
        _install(w, tmp_path)


def test_a_fresh_client_is_served_the_newest_state_only_when_current(
    w: World, tmp_path: Path
) -> None:
    """A client with no history cannot tell a rollback to a still-valid old state from the
    truth; it installs what that state signs (0.1.0), never an unsigned newer version, and
    the next honest refresh brings it forward."""
    for role in ("timestamp", "snapshot", "acme"):
        w.proxy.rules.append(_serve(_role_path(role), w.early[role]))
    assert _install(w, tmp_path).version == "0.1.0"
    w.proxy.rules.clear()
    assert _install(w, tmp_path).version == "0.3.0"


# -- arbitrary installation and wrong software: the pack bytes ------------------------------


def _download(body: bytes) -> Any:
    return lambda p, s, h, b: (200, body) if p.endswith("/download") else None


@pytest.mark.parametrize(
    ("case", "error", "fragment"),
    [
        ("truncated", RegistryIntegrityError, "download"),
        ("extra bytes appended", RegistryIntegrityError, "download"),
        ("another pack, same size, trusted key", RegistryIntegrityError, "sha256"),
        ("the older signed version's bytes", RegistryIntegrityError, "download"),
        ("empty", RegistryIntegrityError, "download"),
    ],
)
def test_pack_bytes_swapped(
    w: World, tmp_path: Path, case: str, error: type, fragment: str
) -> None:
    real = make_pack("acme/tools", "0.3.0", w.signed.reg.key)
    bodies = {
        "truncated": real[: len(real) // 2],
        "extra bytes appended": real + b"\0" * 64,
        "another pack, same size, trusted key": _same_size(real, w),
        "the older signed version's bytes": make_pack("acme/tools", "0.1.0", w.signed.reg.key),
        "empty": b"",
    }
    w.proxy.rules.append(_download(bodies[case]))
    with pytest.raises(error, match=fragment):
        _install(w, tmp_path)
    # nothing unverified was left where the cache would use it
    assert not list(tmp_path.rglob("*.rflpack"))


def _same_size(real: bytes, w: World) -> bytes:
    other = make_pack("acme/tools", "0.3.0", generate_key())
    if len(other) != len(real):  # pad or cut to the real size: only the hash can tell
        other = (other + b"\0" * len(real))[: len(real)]
    return other


def test_json_api_agreeing_with_a_pack_for_another_name(w: World, tmp_path: Path) -> None:
    """The proxy serves a trusted-key pack of another name, with the JSON API rewritten to
    match it: the signed target for acme/tools still refuses it."""
    evil = make_pack("acme/other", "0.3.0", w.signed.reg.key)
    w.proxy.rules.append(json_api_agrees_with(evil))
    with pytest.raises(TargetMismatchError, match="did not sign"):
        _install(w, tmp_path)


# -- endless data and slow retrieval on the pack download ----------------------------------


def test_endless_pack_download_stops_at_the_signed_length(w: World, tmp_path: Path) -> None:
    zeros = b"\0" * (64 << 10)
    w.proxy.rules.append(
        lambda p, s, h, b: flood(250 << 20, zeros) if p.endswith("/download") else None
    )
    start = time.monotonic()
    with pytest.raises(RegistryError, match=r"download|size|bytes") as info:
        _install(w, tmp_path)
    assert isinstance(info.value, (RegistryIntegrityError, RegistryUnavailableError))
    assert time.monotonic() - start < 30


@pytest.mark.parametrize("target", ["/download", ".snapshot.json", ".acme.json"])
def test_slow_retrieval_of_each_file(w: World, tmp_path: Path, target: str) -> None:
    w.proxy.rules.append(lambda p, s, h, b: drip(b"\0") if p.endswith(target) else None)
    start = time.monotonic()
    with pytest.raises(RegistryUnavailableError, match=r"in time|slow|below the minimum|deadline"):
        _install(w, tmp_path, min_rate=1000, rate_window=1, deadline=10)
    assert time.monotonic() - start < 15


# -- indefinite freeze of roles other than the timestamp -----------------------------------


@pytest.fixture(scope="module")
def short_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A registry whose snapshot is valid for 3 s and timestamp for an hour: freezing both
    leaves a valid timestamp over an expired snapshot."""
    yield from _world(tmp_path_factory.mktemp("tuf-snap"), TufPolicy(snapshot=3, timestamp=3600))


def test_indefinite_freeze_expired_snapshot(short_snapshot: World, tmp_path: Path) -> None:
    w = short_snapshot
    frozen = {role: w.signed.repo.storage.get_metadata(role) for role in ("timestamp", "snapshot")}
    for role, got in frozen.items():
        assert got is not None
        w.proxy.rules.append(_serve(_role_path(role), got[1]))
    time.sleep(3.5)
    with pytest.raises(FreezeError, match=r"snapshot.*expired \d+ s ago") as info:
        _install(w, tmp_path)
    assert info.value.stale_for > 0
    w.proxy.rules.clear()


# -- offline: every answer says how old the verified metadata is ---------------------------


def test_offline_without_any_verified_metadata_says_so(w: World, tmp_path: Path) -> None:
    with pytest.raises(MetadataError, match=r"'acme'.*without the network.*once online"):
        _install(w, tmp_path / "never-online", offline=True)


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        ("snapshot.json", "snapshot"),
        ("targets.json", "targets.*unreadable"),
        ("acme.json", "acme"),
        ("timestamp.json", "cached yet"),
    ],
)
def test_offline_with_a_damaged_cache_names_the_role(
    w: World, tmp_path: Path, damage: str, fragment: str
) -> None:
    assert _install(w, tmp_path).version == "0.3.0"
    found = [p for p in tmp_path.rglob(damage) if p.parent.name != "publisher"]
    assert found, damage
    for p in found:
        if damage == "timestamp.json":
            p.unlink()
        elif damage == "targets.json":  # unchanged since 0.1.0: garbage instead
            p.write_bytes(b"{not json")
        else:
            p.write_bytes(w.early[damage.removesuffix(".json")])  # valid, but not the listed one
    with pytest.raises(MetadataError, match=fragment):
        _install(w, tmp_path, offline=True)


def test_offline_with_a_range_nothing_cached_meets(w: World, tmp_path: Path) -> None:
    assert _install(w, tmp_path, "acme/tools@0.2.0").version == "0.2.0"
    with pytest.raises(RegistryUnavailableError, match=r"offline.*\^0\.3.*cached: 0\.2\.0"):
        _install(w, tmp_path, "acme/tools@^0.3", offline=True)


def test_registry_down_falls_back_to_verified_cache_and_says_how_old(
    w: World, tmp_path: Path
) -> None:
    assert _install(w, tmp_path).version == "0.3.0"
    w.proxy.rules.append(lambda p, s, h, b: (503, b"down"))
    lines: list[str] = []
    with client(w.url, tmp_path, w.signed.root, trust=w.trust) as c:
        c._notify = lines.append
        got = c.install("acme/tools@*")
    assert got.version == "0.3.0" and got.from_cache
    assert any("ago" in line for line in lines), lines
