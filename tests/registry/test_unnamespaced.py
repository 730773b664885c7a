"""Packs named without a namespace (``reflow-pack new my-pack`` makes ``name = "my-pack"``):
the README's command sequence through the real command lines against a real server,
``load_pack("acme/my-pack@^0.1", registry=...)``, and the rules behind them — the server
accepts ``my-pack`` at ``/packs/{ns}/my-pack/...``, the namespace comes from ``--namespace``
or the token (``GET /api/v1/token``), a ``*`` token needs ``--namespace``, the same signed
manifest is not published in a second namespace, and the client accepts the short name."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result
from regtest import Registry, Server, SyncASGITransport, free_port, make_pack, setup_registry

from reflow import Message, Network, template_actor
from reflow._errors import RegistryAuthError, RegistrySignatureError
from reflow._loader._packs import list_packs, load_pack, unload_pack
from reflow._loader._trust import TrustStore
from reflow.abi._manifest import PORTABLE_TRIPLE, host_triples
from reflow.abi._signing import generate_key, key_id, load_private_key, public_key_pem
from reflow.registry import RegistryClient
from reflow.registry._cli import main as registry_cli
from reflow.registry._semver import RegistrySpecError, parse_spec
from reflow.tools._cli import main as reflow_pack


def ok(r: Result) -> str:
    assert r.exit_code == 0, (r.output, r.stderr, r.exception)
    return r.stdout


def one_line_error(r: Result, fragment: str, status: int = 1) -> None:
    assert r.exit_code == status, (r.output, r.exception)
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.output and fragment in r.stderr, r.stderr


# -- a pack made the way the README says: reflow-pack new / keygen / build ---------------------


@dataclass
class Built:
    pack: Path  # dist/my-pack-0.1.0.rflpack, manifest name "my-pack"
    key: Path  # the private key; the public one is key.pub
    root: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("newpack")
    runner = CliRunner()
    ok(runner.invoke(reflow_pack, ["new", str(root / "my-pack"), "--lang", "c"]))
    key = root / "keys" / "me"
    ok(runner.invoke(reflow_pack, ["keygen", "--out", str(key)]))
    triples = [PORTABLE_TRIPLE, *host_triples()[:1]]
    ok(
        runner.invoke(
            reflow_pack,
            [
                "build",
                str(root / "my-pack"),
                "--sign",
                str(key),
                "--out",
                str(root / "dist"),
                *[a for t in triples for a in ("--triple", t)],
            ],
        )
    )
    pack = root / "dist" / "my-pack-0.1.0.rflpack"
    from reflow.abi._bundle import read_bundle

    assert read_bundle(pack).manifest.name == "my-pack"
    return Built(pack, key, root)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A registry data dir, download cache and trust store of this test's own."""
    monkeypatch.setenv("REFLOW_REGISTRY_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("REFLOW_TRUST_DIR", str(tmp_path / "trust"))
    monkeypatch.delenv("REFLOW_REGISTRY_TOKEN", raising=False)
    monkeypatch.delenv("REFLOW_REGISTRY", raising=False)
    assert CliRunner().invoke(registry_cli, ["init"]).exit_code == 0  # admin needs a registry
    yield tmp_path
    for p in list_packs():
        unload_pack(p.name)


def run_one(template: str, port: str, msg: Message) -> list[Message]:
    net = Network()
    net.register_actor("t", template_actor(template))
    net.add_node("n", "t", {})
    coll = net.collect("n", "out")
    net.add_initial("n", port, msg)
    net.run(timeout=20)
    net.shutdown()
    return list(coll.messages)


def test_readme_sequence_with_a_pack_from_reflow_pack_new(built: Built, env: Path) -> None:
    """The issue's exact sequence, each step the real command line, the server uvicorn."""
    runner = CliRunner()
    token = ok(
        runner.invoke(
            registry_cli, ["token", "create", "--namespace", "acme", "--scope", "publish"]
        )
    ).strip()
    ok(runner.invoke(registry_cli, ["key", "add", "--namespace", "acme", f"{built.key}.pub"]))
    server = Server(env / "data", free_port()).start()
    try:
        reg = ["--registry", server.url]
        out = ok(runner.invoke(reflow_pack, ["publish", str(built.pack), *reg, "--token", token]))
        assert out.startswith("published acme/my-pack 0.1.0 ")
        # a retried upload of the identical file is fine
        assert "acme/my-pack 0.1.0" in ok(
            runner.invoke(reflow_pack, ["publish", str(built.pack), *reg, "--token", token])
        )
        doc = json.loads(
            ok(
                runner.invoke(
                    reflow_pack, ["publish", str(built.pack), *reg, "--token", token, "--json"]
                )
            )
        )
        assert doc["full_name"] == "acme/my-pack" and doc["unchanged"] is True
        assert "acme/my-pack" in ok(runner.invoke(reflow_pack, ["search", "my-pack", *reg]))
        ok(runner.invoke(reflow_pack, ["trust", "add", f"{built.key}.pub", "--for", "my-pack"]))
        doc = json.loads(
            ok(runner.invoke(reflow_pack, ["install", "acme/my-pack@^0.1", *reg, "--json"]))
        )
        assert doc["name"] == "acme/my-pack" and doc["version"] == "0.1.0"
        assert Path(doc["path"]).is_file() and doc["templates"] is None
        out = ok(runner.invoke(reflow_pack, ["install", "acme/my-pack@^0.1", *reg, "--load"]))
        assert out.startswith("installed acme/my-pack 0.1.0 ")
        assert "loaded templates: my-pack/add" in out
        # the un-namespaced spec is a one-line usage error naming the fix
        r = runner.invoke(reflow_pack, ["install", "my-pack@^0.1", *reg])
        one_line_error(r, "acme/my-pack@^0.1", status=2)
        # ... and so is --namespace disagreeing with the token (the server says 403)
        r = runner.invoke(
            reflow_pack,
            ["publish", str(built.pack), *reg, "--token", token, "--namespace", "other"],
        )
        one_line_error(r, "403 forbidden")
    finally:
        server.stop()


def test_star_token_needs_namespace(built: Built, env: Path) -> None:
    runner = CliRunner()
    star = ok(
        runner.invoke(registry_cli, ["token", "create", "--namespace", "*", "--scope", "publish"])
    ).strip()
    ok(runner.invoke(registry_cli, ["key", "add", "--namespace", "acme", f"{built.key}.pub"]))
    server = Server(env / "data", free_port()).start()
    try:
        reg = ["--registry", server.url, "--token", star]
        r = runner.invoke(reflow_pack, ["publish", str(built.pack), *reg])
        one_line_error(r, "every namespace ('*'): pass --namespace")
        # no traceback with the plain registry group either
        from reflow.tools._registry_cli import main as registry_verbs

        r = runner.invoke(registry_verbs, ["publish", str(built.pack), *reg])
        one_line_error(r, "pass --namespace")
        out = ok(
            runner.invoke(reflow_pack, ["publish", str(built.pack), *reg, "--namespace", "acme"])
        )
        assert out.startswith("published acme/my-pack 0.1.0 ")
        # no token, no namespace: says what to pass instead of failing later
        r = runner.invoke(reflow_pack, ["publish", str(built.pack), "--registry", server.url])
        one_line_error(r, "pass --namespace")
    finally:
        server.stop()


def test_load_pack_from_registry_with_unnamespaced_manifest(built: Built, env: Path) -> None:
    reg = setup_registry(env / "data")
    key = load_private_key(built.key)
    reg.storage.add_key("acme", key_id(key), public_key_pem(key))
    reg.storage.close()
    trust = TrustStore(env / "trust")
    trust.add(key.public_key())
    server = Server(env / "data", free_port()).start()
    opts = {"cache_dir": env / "rc", "retries": 1, "backoff": 0.01}
    try:
        with RegistryClient(server.url, token=reg.publish, trust=trust) as client:
            assert client.publish(built.pack)["full_name"] == "acme/my-pack"
        loaded = load_pack(
            "acme/my-pack@^0.1", registry=server.url, trust=trust, registry_options=opts
        )
        assert (loaded.name, loaded.version) == ("my-pack", "0.1.0")
        assert run_one("my-pack/add", "in", Message.integer(41)) == [Message.integer(42)]
    finally:
        server.stop()
    # the registry is gone: the second call in a fresh state works from the cache
    unload_pack("my-pack")
    loaded = load_pack("acme/my-pack@^0.1", registry=server.url, trust=trust, registry_options=opts)
    assert loaded.version == "0.1.0"
    assert run_one("my-pack/add", "in", Message.integer(1)) == [Message.integer(2)]


# -- the rules, in-process ---------------------------------------------------------------------


def _put(reg: Registry, path: str, body: bytes, token: str) -> httpx.Response:
    with httpx.Client(transport=SyncASGITransport(reg.app), base_url="http://registry.test") as c:
        return c.put(path, content=body, headers={"Authorization": f"Bearer {token}"})


def test_server_rules_for_unnamespaced_names(registry: Registry) -> None:
    reg = registry
    _, other_pub = reg.auth.create_token("other", "publish")
    body = make_pack("my-pack", "0.1.0", reg.key)
    # the name part must match exactly
    r = _put(reg, "/api/v1/packs/acme/my-pack2/0.1.0", body, reg.publish)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "name_mismatch")
    r = _put(reg, "/api/v1/packs/acme/my-pack/0.1.0", body, reg.publish)
    assert r.status_code == 201, r.text
    doc = r.json()
    assert (doc["namespace"], doc["name"], doc["full_name"]) == ("acme", "my-pack", "acme/my-pack")
    # anyone who registers the author's (public) key elsewhere cannot re-publish it there
    reg.storage.add_key("other", key_id(reg.key), public_key_pem(reg.key))
    r = _put(reg, "/api/v1/packs/other/my-pack/0.1.0", body, other_pub)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "published_elsewhere")
    assert r.json()["error"]["namespace"] == "acme"
    assert reg.storage.get_version("other", "my-pack", "0.1.0") is None
    # another signed manifest with the same short name is another pack: allowed
    other_key = generate_key()
    reg.storage.add_key("other", key_id(other_key), public_key_pem(other_key))
    r = _put(
        reg,
        "/api/v1/packs/other/my-pack/0.1.0",
        make_pack("my-pack", "0.1.0", other_key, artifact_size=999),
        other_pub,
    )
    assert r.status_code == 201, r.text
    # a namespaced manifest still publishes only under its own namespace
    r = _put(
        reg, "/api/v1/packs/other/tools/0.1.0", make_pack("acme/tools", "0.1.0", reg.key), reg.admin
    )
    assert (r.status_code, r.json()["error"]["code"]) == (400, "name_mismatch")


def test_whoami(registry: Registry) -> None:
    with httpx.Client(
        transport=SyncASGITransport(registry.app), base_url="http://registry.test"
    ) as c:
        r = c.get("/api/v1/token", headers={"Authorization": f"Bearer {registry.publish}"})
        assert r.status_code == 200
        assert {k: r.json()[k] for k in ("namespace", "scope", "label")} == {
            "namespace": "acme",
            "scope": "publish",
            "label": "ci",
        }
        assert r.json()["token_id"] == registry.publish.split("_")[1]
        assert "secret" not in r.text and registry.publish not in r.text
        r = c.get("/api/v1/token", headers={"Authorization": f"Bearer {registry.admin}"})
        assert (r.json()["namespace"], r.json()["scope"]) == ("*", "admin")
        r = c.get("/api/v1/token")
        assert (r.status_code, r.json()["error"]["code"]) == (401, "unauthorized")
        r = c.get("/api/v1/token", headers={"Authorization": "Bearer rfl_nope"})
        assert (r.status_code, r.json()["error"]["code"]) == (401, "unauthorized")


def _client(reg: Registry, tmp_path: Path, token: str | None, **kw: object) -> RegistryClient:
    return RegistryClient(
        "http://registry.test",
        token=token,
        insecure=True,
        transport=SyncASGITransport(reg.app),
        cache_dir=tmp_path / "cache",
        **kw,
    )  # type: ignore[arg-type]


def test_client_publish_target(registry: Registry, tmp_path: Path) -> None:
    with _client(registry, tmp_path, registry.publish) as c:
        assert c.publish_target("my-pack") == ("acme", "my-pack")  # the token's namespace
        assert c.publish_target("my-pack", "other") == ("other", "my-pack")
        assert c.publish_target("acme/tools") == ("acme", "tools")
        assert c.publish_target("acme/tools", "acme") == ("acme", "tools")
        with pytest.raises(RegistrySpecError, match="drop --namespace"):
            c.publish_target("acme/tools", "other")
        with pytest.raises(RegistrySpecError, match="not a valid namespace"):
            c.publish_target("my-pack", "Bad!")
    with _client(registry, tmp_path, registry.admin) as c:
        with pytest.raises(RegistrySpecError, match=r"every namespace \('\*'\)"):
            c.publish_target("my-pack")
        assert c.publish_target("my-pack", "acme") == ("acme", "my-pack")
    with (
        _client(registry, tmp_path, None) as c,
        pytest.raises(RegistrySpecError, match="--namespace"),
    ):
        c.publish_target("my-pack")
    with (
        _client(registry, tmp_path, "rfl_0123456789abcdef_" + "A" * 43) as c,
        pytest.raises(RegistryAuthError),
    ):
        c.publish_target("my-pack")


def test_client_accepts_only_the_short_name_or_the_full_name(
    registry: Registry, tmp_path: Path
) -> None:
    trust = TrustStore(tmp_path / "trust")
    trust.add(registry.key.public_key())
    for name, version in (("my-pack", "0.1.0"), ("other-pack", "0.1.0")):
        p = tmp_path / f"{name}.rflpack"
        p.write_bytes(make_pack(name, version, registry.key))
        with _client(registry, tmp_path, registry.publish, trust=trust) as c:
            c.publish(p)
    with _client(registry, tmp_path, None, trust=trust) as c:
        got = c.install("acme/my-pack@^0.1")
        assert (got.name, got.version) == ("acme/my-pack", "0.1.0")

    # a registry serving other-pack's (validly signed) manifest as my-pack is refused
    inner = SyncASGITransport(registry.app)

    class Swap(httpx.BaseTransport):
        def __init__(self, rename: bool) -> None:
            self.rename = rename

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path == "/api/v1/packs/acme/my-pack/0.1.0":
                doc = inner.handle_request(
                    httpx.Request("GET", str(request.url).replace("my-pack", "other-pack"))
                ).json()
                if self.rename:
                    doc["name"] = "my-pack"  # claims to be what was asked for
                return httpx.Response(200, json=doc)
            return inner.handle_request(request)

    for rename in (True, False):
        with (
            RegistryClient(
                "http://registry.test",
                transport=Swap(rename),
                trust=trust,
                cache_dir=tmp_path / f"c-{rename}",
            ) as c,
            pytest.raises(RegistrySignatureError, match="mixed-up"),
        ):
            c.install("acme/my-pack@0.1.0")


def test_spec_errors_are_reflow_errors() -> None:
    for bad in ("my-pack", "acme/My-Pack", "acme/x@^banana", "Acme/x"):
        with pytest.raises(RegistrySpecError) as info:
            parse_spec(bad)
        assert isinstance(info.value, ValueError)  # what callers used to catch
    with pytest.raises(RegistrySpecError, match="not a registry URL"):
        RegistryClient("localhost:8700")
