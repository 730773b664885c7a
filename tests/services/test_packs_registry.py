"""Issue #11, Deliver 5: the API-service packs of every shared spec build signed with one
command, publish with one command to a real ``reflow-registry serve`` on 127.0.0.1, and
install from it like any pack; each installed pack loads and answers one operation from its
spec server. Then the bad rows: a wrong key, a wrong namespace, an unsigned pack, a pack over
the registry's upload limit, an unknown pack, a key the installing machine does not trust."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from reflow._loader._trust import TrustStore
from reflow.abi._signing import generate_key, public_key_pem
from reflow.tools._cli import main as pack_cli
from reflow.tools._openapi_pack import find_specs

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "registry"))
from allops import fire_all, pack_table
from regtest import Server, free_port, setup_registry

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "openapi"
pytestmark = pytest.mark.skipif(
    not (SHARED / "SOURCES.md").is_file(), reason=f"{SHARED} (the shared specs) not found"
)
NAMES = [n for n, _ in find_specs(SHARED)] if (SHARED / "SOURCES.md").is_file() else []
#: The operation each installed pack is asked to run (the first of its table otherwise).
CALL = {"github": "issues_list_for_repo", "slack": "chat_post_message", "stripe": "get_balance"}
#: The bad rows use packs of a small spec.
SMALL = next((n for n in NAMES if n.startswith("petstore")), "petstore")
BOUND_S = 60  # every bad row ends, with its error, well within this


def _write_key(key: Ed25519PrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.with_suffix(".pub").write_bytes(public_key_pem(key))
    return path


def _cli(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(pack_cli, [str(a) for a in args], catch_exceptions=False)


@dataclass
class World:
    """A real registry server with namespaces acme and other, our key registered for
    acme, publish and read tokens for acme, and a trust store trusting our key for acme/*."""

    tmp: Path
    server: Server
    publish_token: str
    read_token: str
    key: Path  # registered for namespace acme
    stranger: Path  # a valid key the registry does not know
    trust: Path
    runner: CliRunner
    built: int = 0

    @property
    def reg(self) -> list[str]:
        return ["--registry", self.server.url]

    def small(self, namespace: str = "acme", key: Path | None = None, sign: bool = True) -> Path:
        """A freshly built pack of the small spec, signed with ``key`` (default: ours)."""
        spec, name = dict(find_specs(SHARED)), SMALL
        self.built += 1  # a version of its own: published versions are immutable
        out = self.tmp / f"small-{self.built}"
        args = ["openapi", spec[name], "--name", f"{namespace}/{name}", "--out", out]
        args += ["--version", f"0.0.{self.built}"]
        r = _cli(self.runner, *args, *(["--sign", key or self.key] if sign else []), "--json")
        assert r.exit_code == 0, r.output
        return Path(json.loads(r.stdout)["path"])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("packreg")
    reg = setup_registry(tmp / "srv")
    publish_token, read_token = reg.publish, reg.read
    reg.storage.close()
    key = _write_key(reg.key, tmp / "acme.key")
    stranger = _write_key(generate_key(), tmp / "stranger.key")
    server = Server(tmp / "srv", free_port()).start()
    runner = CliRunner()
    trust = tmp / "trust"
    pub = key.with_suffix(".pub")
    r = _cli(runner, "trust", "add", pub, "--for", "acme/*", "--trust-dir", trust)
    assert r.exit_code == 0, r.output
    world = World(tmp, server, publish_token, read_token, key, stranger, trust, runner)
    r = _cli(runner, "publish", world.small(), *world.reg, "--token", publish_token)
    assert r.exit_code == 0, r.output
    yield world
    server.stop()


@dataclass
class Published:
    dist: Path
    build_s: float
    publish_s: float


@pytest.fixture(scope="module")
def published(world: World) -> Published:
    """Every shared spec's pack, built signed with one command and published with one."""
    dist = world.tmp / "dist"
    t0 = time.perf_counter()
    r = _cli(
        world.runner,
        "openapi",
        "--all",
        SHARED,
        "--namespace",
        "acme",
        "--out",
        dist,
        "--sign",
        world.key,
    )
    build_s = time.perf_counter() - t0
    assert r.exit_code == 0, r.output
    t0 = time.perf_counter()
    packs = sorted(dist.glob("*.rflpack"))
    r = _cli(world.runner, "publish", *packs, *world.reg, "--token", world.publish_token)
    publish_s = time.perf_counter() - t0
    assert r.exit_code == 0, r.output
    assert r.stdout.count("published acme/") == len(NAMES) == len(packs), r.output
    return Published(dist, build_s, publish_s)


@pytest.mark.slow
def test_every_pack_installs_from_the_registry_loads_and_answers(
    world: World, published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(world.tmp / "cache"))
    store = TrustStore(world.trust)
    timings = []
    for name in NAMES:
        t0 = time.perf_counter()
        r = _cli(
            world.runner,
            "install",
            f"acme/{name}",
            *world.reg,
            "--trust-dir",
            world.trust,
            "--cache-dir",
            world.tmp / "regcache",
            "--json",
        )
        assert r.exit_code == 0, f"{name}: {r.output}"
        got = json.loads(r.stdout)
        assert got["name"] == f"acme/{name}" and got["signer"], got
        installed = Path(got["path"])
        suffix = CALL.get(name) or next(iter(pack_table(installed)["operations"]))
        outcome = fire_all(installed, store, suffixes=[suffix], timeout=60)
        assert outcome.passed == [suffix], f"{name}/{suffix}: {outcome.failed}"
        timings.append(time.perf_counter() - t0)
    # published once, unchanged the second time: publishing every pack again is safe
    r = _cli(
        world.runner,
        "publish",
        *sorted(published.dist.glob("*.rflpack")),
        *world.reg,
        "--token",
        world.publish_token,
    )
    assert r.exit_code == 0 and r.stdout.count("already published, unchanged") == len(NAMES)
    print(
        f"\n{len(NAMES)} packs: build + sign {published.build_s:.1f} s, publish "
        f"{published.publish_s:.1f} s, install + load + one call {sum(timings):.1f} s"
    )


def _over_limit(world: World) -> tuple[list[str], Path]:
    """A second registry whose upload limit is below the small pack's size."""
    pack = world.small()
    reg = setup_registry(world.tmp / "tiny")
    token = reg.publish
    _write_key(reg.key, world.tmp / "tiny.key")
    reg.storage.close()
    limit = pack.stat().st_size // 2
    server = Server(world.tmp / "tiny", free_port(), max_upload=limit).start()
    TINY.append(server)
    signed = world.small(key=world.tmp / "tiny.key")
    return ["publish", str(signed), "--registry", server.url, "--token", token], signed


TINY: list[Server] = []


@pytest.fixture(scope="module", autouse=True)
def _stop_tiny() -> Iterator[None]:
    yield
    for s in TINY:
        s.stop()


# (row id, the command (made from the world), the error's class, fragments of its message)
BAD = [
    (
        "wrong-key",
        lambda w: ["publish", w.small(key=w.stranger), *w.reg, "--token", w.publish_token],
        "RegistryHTTPError",
        ["not registered for namespace 'acme'"],
    ),
    (
        "unsigned",
        lambda w: ["publish", w.small(sign=False), *w.reg, "--token", w.publish_token],
        "RegistryHTTPError",
        ["unsigned"],
    ),
    (
        "wrong-namespace-token",
        lambda w: ["publish", w.small(namespace="other"), *w.reg, "--token", w.publish_token],
        "RegistryAuthError",
        ["403", "namespace 'other'"],
    ),
    (
        "namespace-disagrees-with-name",
        lambda w: [
            "publish",
            w.small(),
            *w.reg,
            "--token",
            w.publish_token,
            "--namespace",
            "other",
        ],
        "RegistrySpecError",
        ["published in namespace 'acme', not 'other'"],
    ),
    (
        "read-token-cannot-publish",
        lambda w: ["publish", w.small(), *w.reg, "--token", w.read_token],
        "RegistryAuthError",
        ["403", "scope 'publish'"],
    ),
    (
        "over-the-upload-limit",
        lambda w: _over_limit(w)[0],
        "RegistryHTTPError",
        ["413", "too_large"],
    ),
    (
        "unknown-pack",
        lambda w: [
            "install",
            "acme/no-such-api",
            *w.reg,
            "--trust-dir",
            w.trust,
            "--cache-dir",
            w.tmp / "c-unknown",
        ],
        "RegistryNotFoundError",
        ["acme/no-such-api"],
    ),
    (
        "untrusted-signer",
        lambda w: [
            "install",
            f"acme/{SMALL}",
            *w.reg,
            "--trust-dir",
            w.tmp / "empty-trust",
            "--cache-dir",
            w.tmp / "c-untrusted",
        ],
        "RegistrySignatureError",
        ["not in the trust store", "trust add"],
    ),
]


@pytest.mark.parametrize(
    ("make", "kind", "fragments"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_publish_and_install_rows(
    world: World, make: object, kind: str, fragments: list[str]
) -> None:
    args = [str(a) for a in make(world)]  # type: ignore[operator]
    t0 = time.perf_counter()
    r = world.runner.invoke(pack_cli, [*args, "--json"], catch_exceptions=False)
    took = time.perf_counter() - t0
    assert r.exit_code == 1, r.output
    err = json.loads(r.stdout)["error"]
    assert err["type"] == kind, err
    text = err["message"].lower()
    for frag in fragments:
        assert frag.lower() in text, err
    assert "Traceback" not in r.output
    assert took < BOUND_S


def test_several_packs_one_failing_publish_the_rest_and_exit_1(world: World) -> None:
    good, bad = world.small(), world.small(key=world.stranger)
    r = _cli(world.runner, "publish", good, bad, *world.reg, "--token", world.publish_token)
    assert r.exit_code == 1
    assert "acme/petstore" in r.stdout  # the good one: published, or unchanged from before
    assert f"error: {bad}:" in r.stderr and "not registered" in r.stderr
    assert "1 of 2 packs not published" in r.stderr
    r = _cli(
        world.runner, "publish", good, bad, *world.reg, "--token", world.publish_token, "--json"
    )
    rows = json.loads(r.stdout)
    assert r.exit_code == 1 and [("error" in row) for row in rows] == [False, True]
