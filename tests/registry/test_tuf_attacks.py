"""The attack list of The Update Framework, each driven by a malicious proxy (or server) on
127.0.0.1 in front of a real registry served by uvicorn: each must end in its own
``RegistryError`` subclass with a message that says what happened, in bounded time."""

from __future__ import annotations

import json
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

from reflow._errors import (
    RegistryError,
    RegistryIntegrityError,
    RegistryNotFoundError,
    RegistryUnavailableError,
)
from reflow._loader._trust import TrustStore
from reflow.abi._signing import generate_key
from reflow.registry._tuf_errors import (
    FreezeError,
    MetadataError,
    RollbackError,
    TargetMismatchError,
)
from reflow.registry._tuf_repo import TufPolicy

VERSIONS = ("0.1.0", "0.2.0", "0.3.0")


@dataclass
class World:
    signed: SignedRegistry
    upstream: Uvicorn
    proxy: Proxy
    proxy_url: str
    trust: TrustStore
    packs: dict[str, bytes]
    #: signed metadata as it was right after 0.1.0 was published: {role: bytes}
    early: dict[str, bytes]


def _publish(w: SignedRegistry, url: str, tmp: Path, versions: tuple[str, ...]) -> dict[str, bytes]:
    out = {}
    with client(url, tmp / "publisher", w.root, token=w.reg.publish) as pub:
        for v in versions:
            data = make_pack("acme/tools", v, w.reg.key)
            path = tmp / f"tools-{v}.rflpack"
            path.write_bytes(data)
            pub.publish(path, key=w.reg.key)
            out[v] = data
    return out


def _snapshot_state(w: SignedRegistry) -> dict[str, bytes]:
    state = {}
    for role in ("timestamp", "snapshot", "targets", "acme"):
        got = w.reg.storage.get_metadata(role)
        if got is not None:
            state[role] = got[1]
            state[f"{role}@version"] = str(got[0]).encode()
    return state


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("tuf-world")
    w = signed_registry(tmp, TufPolicy(timestamp=3))
    with Uvicorn(w.app) as up:
        packs = _publish(w, up.url, tmp, VERSIONS[:1])
        early = _snapshot_state(w)
        packs |= _publish(w, up.url, tmp, VERSIONS[1:])
        proxy = Proxy(up.url)
        with Uvicorn(proxy) as front:
            trust = TrustStore(tmp / "trust")
            trust.add(w.reg.key.public_key())
            yield World(w, up, proxy, front.url, trust, packs, early)
    w.reg.storage.close()


@pytest.fixture
def w(world: World) -> Iterator[World]:
    world.proxy.rules.clear()
    world.proxy.hits.clear()
    yield world
    world.proxy.rules.clear()


def _client(w: World, tmp: Path, **kw: Any) -> Any:
    return client(w.proxy_url, tmp, w.signed.root, trust=w.trust, **kw)


def _install(w: World, tmp: Path, spec: str = "acme/tools@*", **kw: Any) -> Any:
    with _client(w, tmp, **kw) as c:
        return c.install(spec)


def _meta_of(w: World, version: str) -> dict[str, Any]:
    import httpx

    return dict(httpx.get(f"{w.upstream.url}/api/v1/packs/acme/tools/{version}").json())


# -- the honest path -------------------------------------------------------------------------


def test_the_proxy_passing_everything_installs_the_newest(w: World, tmp_path: Path) -> None:
    got = _install(w, tmp_path)
    assert got.version == "0.3.0"


# -- arbitrary installation, wrong software --------------------------------------------------


def test_arbitrary_installation_bytes_replaced(w: World, tmp_path: Path) -> None:
    evil = make_pack("acme/tools", "0.3.0", generate_key())
    w.proxy.rules.append(lambda p, s, h, b: (200, evil) if p.endswith("/download") else None)
    with pytest.raises(RegistryIntegrityError, match="download") as info:
        _install(w, tmp_path)
    assert info.value.what in ("size", "sha256")


def test_arbitrary_installation_metadata_and_bytes_replaced(w: World, tmp_path: Path) -> None:
    """The proxy makes the JSON API agree with its pack: the signed target still does not."""
    evil = make_pack("acme/tools", "0.3.0", w.signed.reg.key, artifact_size=3000)
    w.proxy.rules.append(json_api_agrees_with(evil))
    with pytest.raises(TargetMismatchError, match="did not sign") as info:
        _install(w, tmp_path)
    assert info.value.path.startswith("acme/tools/0.3.0/")


def test_wrong_software_another_version_served(w: World, tmp_path: Path) -> None:
    old = json.dumps(_meta_of(w, "0.1.0")).encode()
    w.proxy.rules.append(
        lambda p, s, h, b: (200, old) if p == "/api/v1/packs/acme/tools/0.3.0" else None
    )
    with pytest.raises(TargetMismatchError, match="not for the signed target"):
        _install(w, tmp_path)


# -- rollback, mix-and-match -----------------------------------------------------------------


def test_rollback_client_that_saw_030_is_served_the_old_state(w: World, tmp_path: Path) -> None:
    assert _install(w, tmp_path).version == "0.3.0"
    old_ts = w.early["timestamp"]
    w.proxy.rules.append(lambda p, s, h, b: (200, old_ts) if p == "/tuf/timestamp.json" else None)
    with pytest.raises(RollbackError, match="older than what this client has already verified"):
        _install(w, tmp_path)


def test_rollback_old_namespace_metadata_at_the_new_name(w: World, tmp_path: Path) -> None:
    old_ns = w.early["acme"]
    w.proxy.rules.append(lambda p, s, h, b: (200, old_ns) if p.endswith(".acme.json") else None)
    with pytest.raises(RollbackError, match="acme"):
        _install(w, tmp_path)


def test_mix_and_match_old_snapshot_with_the_current_timestamp(w: World, tmp_path: Path) -> None:
    old_snap = w.early["snapshot"]
    w.proxy.rules.append(
        lambda p, s, h, b: (200, old_snap) if p.endswith(".snapshot.json") else None
    )
    with pytest.raises(MetadataError, match="mix-and-match"):
        _install(w, tmp_path)


def test_hidden_yank_and_version_list_from_the_json_api_are_ignored(
    w: World, tmp_path: Path
) -> None:
    """The unsigned JSON API may list what it likes: versions come from signed targets."""
    fake = json.dumps({"versions": [{"version": "0.1.0", "yanked": False}]}).encode()
    w.proxy.rules.append(
        lambda p, s, h, b: (200, fake) if p == "/api/v1/packs/acme/tools" else None
    )
    assert _install(w, tmp_path).version == "0.3.0"


# -- indefinite freeze -----------------------------------------------------------------------


def test_indefinite_freeze_expired_timestamp(w: World, tmp_path: Path) -> None:
    frozen = w.signed.repo.storage.get_metadata("timestamp")
    assert frozen is not None
    w.proxy.rules.append(
        lambda p, s, h, b: (200, frozen[1]) if p == "/tuf/timestamp.json" else None
    )
    time.sleep(3.5)  # the registry signs timestamps for 3 s here
    with pytest.raises(FreezeError, match=r"expired \d+ s ago .*frozen.*--offline") as info:
        _install(w, tmp_path)
    assert info.value.stale_for > 0


def test_offline_install_says_how_old_the_metadata_is(w: World, tmp_path: Path) -> None:
    assert _install(w, tmp_path).version == "0.3.0"
    lines: list[str] = []
    got = client(w.proxy_url, tmp_path, None, trust=w.trust, offline=True)
    got._notify = lines.append
    with got:
        installed = got.install("acme/tools@*")
    assert installed.from_cache and installed.version == "0.3.0"
    assert any("last verified" in line and "ago" in line for line in lines), lines


# -- endless data, slow retrieval ------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "fragment"),
    [
        ("/tuf/timestamp.json", "timestamp"),
        (".snapshot.json", "snapshot"),
        (".targets.json", "targets"),
        (".acme.json", "acme"),
        ("/tuf/2.root.json", "root"),
    ],
)
def test_endless_data(w: World, tmp_path: Path, target: str, fragment: str) -> None:
    w.proxy.rules.append(lambda p, s, h, b: flood(200 << 20) if p.endswith(target) else None)
    start = time.monotonic()
    with pytest.raises(MetadataError, match=f"{fragment}.*endless data"):
        _install(w, tmp_path)
    assert time.monotonic() - start < 20


@pytest.mark.parametrize(
    ("target", "body", "error", "fragment"),
    [
        ("/tuf/2.root.json", "root-v1", RollbackError, "root"),
        ("/tuf/timestamp.json", b"{not json", MetadataError, "not valid signed metadata"),
        ("/tuf/timestamp.json", b"[" * 15000 + b"]" * 15000, MetadataError, "timestamp"),
        (".snapshot.json", b'{"signed": {}, "signatures": []}', MetadataError, "snapshot"),
        (".acme.json", b"\x00\xff" * 100, MetadataError, "acme"),
    ],
)
def test_malformed_and_replayed_metadata(
    w: World, tmp_path: Path, target: str, body: Any, error: type, fragment: str
) -> None:
    data = w.signed.root if body == "root-v1" else body
    w.proxy.rules.append(lambda p, s, h, b: (200, data) if p.endswith(target) else None)
    with pytest.raises(error, match=fragment):
        _install(w, tmp_path)


def test_slow_retrieval(w: World, tmp_path: Path) -> None:
    w.proxy.rules.append(lambda p, s, h, b: drip() if p == "/tuf/timestamp.json" else None)
    start = time.monotonic()
    with pytest.raises(RegistryUnavailableError, match=r"in time|slow|below the minimum|deadline"):
        _install(w, tmp_path, min_rate=1000, rate_window=1, deadline=10)
    assert time.monotonic() - start < 15


# -- malicious mirror ------------------------------------------------------------------------


def test_malicious_mirror_with_its_own_keys(w: World, tmp_path: Path) -> None:
    mirror = signed_registry(tmp_path / "mirror")
    with Uvicorn(mirror.app) as m:
        _publish(mirror, m.url, tmp_path / "m", ("9.9.9",))
        with (
            client(m.url, tmp_path / "c", w.signed.root, trust=w.trust) as c,
            pytest.raises(MetadataError, match="not signed by the keys of the root this client"),
        ):
            c.install("acme/tools@*")
    mirror.reg.storage.close()


def test_no_pinned_root_for_signed_calls_is_a_clear_error(w: World, tmp_path: Path) -> None:
    from reflow.registry._tuf_errors import UntrustedRegistryError

    with (
        client(w.proxy_url, tmp_path, None) as c,
        pytest.raises(UntrustedRegistryError, match="registry add"),
    ):
        c.tuf.refresh()


def test_unrelated_errors_stay_registry_errors(w: World, tmp_path: Path) -> None:
    with pytest.raises(RegistryNotFoundError):
        _install(w, tmp_path, "acme/nothing@*")
    with pytest.raises(RegistryError):
        _install(w, tmp_path, "acme/tools@^9")
