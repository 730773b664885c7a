"""Signed metadata over its life: bootstrap, root rotation, publisher key rotation and
revocation reaching clients, what the registry refuses to store, and the round trips an
up-to-date install costs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from regtest import make_pack
from tuf.api.metadata import Metadata, TargetFile, Targets
from tuftest import Proxy, SignedRegistry, Uvicorn, client, signed_registry

from reflow._errors import RegistryHTTPError, RegistryNotFoundError
from reflow._loader._trust import TrustStore
from reflow.abi._signing import generate_key, key_id, public_key_pem
from reflow.registry._semver import RegistrySpecError
from reflow.registry._tuf_errors import KeyRevokedError, MetadataError
from reflow.registry._tuf_publish import next_namespace_metadata
from reflow.registry._tuf_repo import load_signer


def _pub(s: SignedRegistry, url: str, tmp: Path, version: str, key: Any = None) -> Path:
    key = key or s.reg.key
    path = tmp / f"tools-{version}.rflpack"
    path.write_bytes(make_pack("acme/tools", version, key))
    with client(url, tmp / "publisher", s.root, token=s.reg.publish) as c:
        c.publish(path, key=key)
    return path


def _trust(tmp: Path, *keys: Any) -> TrustStore:
    store = TrustStore(tmp / "trust")
    for k in keys:
        store.add(k.public_key())
    return store


def test_root_rotation_reaches_a_client_on_its_next_refresh(tmp_path: Path) -> None:
    s = signed_registry(tmp_path)
    with Uvicorn(s.app) as up:
        _pub(s, up.url, tmp_path, "0.1.0")
        trust = _trust(tmp_path, s.reg.key)
        with client(up.url, tmp_path / "c", s.root, trust=trust) as c:
            assert c.install("acme/tools@*").version == "0.1.0"
            from reflow.registry._tuf_repo import new_key

            new = new_key(tmp_path / "new-root.pem")
            old = load_signer(s.keys / "root.pem")
            s.repo.rotate_root([old], [new])
            _pub(s, up.url, tmp_path, "0.2.0")
            assert c.install("acme/tools@*").version == "0.2.0"
        pinned = Metadata.from_bytes(
            (tmp_path / "c" / "cache").glob("*/_tuf/root.json").__next__().read_bytes()
        )
        assert pinned.signed.version == 2
        assert new.public_key.keyid in pinned.signed.roles["root"].keyids
    s.reg.storage.close()


def test_root_rotation_needs_the_old_root_key(tmp_path: Path) -> None:
    from reflow.registry._tuf_repo import RepositoryRefusal, new_key

    s = signed_registry(tmp_path)
    with pytest.raises(RepositoryRefusal, match="current root keys"):
        s.repo.rotate_root([new_key(tmp_path / "x.pem")], [new_key(tmp_path / "y.pem")])
    s.reg.storage.close()


def test_publisher_key_rotation_and_revocation(tmp_path: Path) -> None:
    """acme rotates to a new key and removes the old one: the old key's new namespace
    metadata is refused by the registry and, forged past it, by clients."""
    s = signed_registry(tmp_path)
    old_key, new_key_ = s.reg.key, generate_key()
    with Uvicorn(s.app) as up:
        _pub(s, up.url, tmp_path, "0.1.0")
        trust = _trust(tmp_path, old_key, new_key_)
        s.reg.storage.add_key("acme", key_id(new_key_), public_key_pem(new_key_))
        s.reg.storage.remove_key("acme", key_id(old_key))
        s.repo.delegate(load_signer(s.keys / "targets.pem"))
        # a compromised old key cannot publish any more
        path = tmp_path / "evil.rflpack"
        path.write_bytes(make_pack("acme/tools", "6.6.6", old_key))
        with (
            client(up.url, tmp_path / "evil", s.root, token=s.reg.publish) as c,
            pytest.raises(RegistryHTTPError, match=r"unregistered|not registered"),
        ):
            c.publish(path, key=old_key)
        # clients refuse the namespace until its (new) publisher re-signs it
        with (
            client(up.url, tmp_path / "c", s.root, trust=trust) as c,
            pytest.raises(KeyRevokedError, match=r"acme.*not signed by the publisher keys"),
        ):
            c.install("acme/tools@*")
        # the namespace's publisher re-signs with the new key: clients follow
        lines: list[str] = []
        path = tmp_path / "good.rflpack"
        path.write_bytes(make_pack("acme/tools", "0.2.0", new_key_))
        with client(up.url, tmp_path / "pub2", s.root, token=s.reg.publish) as c:
            c._notify = lines.append
            c.publish(path, key=new_key_)
        assert any("re-signing its 1 targets" in line for line in lines), lines
        with client(up.url, tmp_path / "c1", s.root, trust=trust) as c:
            assert c.install("acme/tools@*").version == "0.2.0"
            assert c.install("acme/tools@0.1.0").version == "0.1.0"
        # the registry itself (online keys) forging acme's metadata with the old key
        current = s.repo.load("acme")
        assert current is not None
        forged = next_namespace_metadata(current.signed, {}, old_key)
        s.repo._bump({"acme": (current.signed.version + 1, forged)})
        with (
            client(up.url, tmp_path / "c2", s.root, trust=trust) as c,
            pytest.raises(KeyRevokedError, match="acme"),
        ):
            c.install("acme/tools@*")
    s.reg.storage.close()


def test_operator_cannot_forge_a_namespace(tmp_path: Path) -> None:
    """The server's own online key signing acme's targets is not acme's publisher."""
    s = signed_registry(tmp_path)
    with Uvicorn(s.app) as up:
        _pub(s, up.url, tmp_path, "0.1.0")
        current = s.repo.load("acme")
        assert current is not None
        md = Metadata(
            Targets(version=current.signed.version + 1, targets=dict(current.signed.targets))
        )
        md.sign(s.repo._signer("snapshot"))
        s.repo._bump({"acme": (md.signed.version, md.to_bytes())})
        with (
            client(up.url, tmp_path / "c", s.root, trust=_trust(tmp_path, s.reg.key)) as c,
            pytest.raises(KeyRevokedError, match="forging"),
        ):
            c.install("acme/tools@*")
    s.reg.storage.close()


def _ns_doc(s: SignedRegistry, version: int, targets: dict[str, TargetFile], key: Any) -> bytes:
    md = Metadata(
        Targets(
            version=version,
            expires=datetime.now(UTC).replace(microsecond=0) + timedelta(days=1),
            targets=targets,
        )
    )
    from securesystemslib.signer import CryptoSigner, SSlibKey

    md.sign(CryptoSigner(key, SSlibKey.from_crypto(key.public_key())))
    return md.to_bytes()


def _meta(up: Uvicorn, version: str) -> dict[str, Any]:
    return dict(httpx.get(f"{up.url}/api/v1/packs/acme/tools/{version}").json())


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("extraneous target in another namespace", 422, "bad_target"),
        ("unpublished version", 422, "bad_target"),
        ("wrong hash", 422, "target_mismatch"),
        ("signed by a foreign key", 422, "bad_metadata_signature"),
        ("stale version number", 409, "metadata_version"),
        ("not metadata", 400, "bad_metadata"),
        ("deeply nested garbage", 400, "bad_metadata"),
        ("removes a published target", 409, "target_changed"),
        ("bad yank field", 422, "bad_target"),
    ],
)
def test_registry_refuses_bad_namespace_metadata(
    tmp_path: Path, case: str, status: int, code: str
) -> None:
    s = signed_registry(tmp_path)
    with Uvicorn(s.app) as up:
        _pub(s, up.url, tmp_path, "0.1.0")
        unsigned = httpx.put(  # published, not yet in the signed metadata
            f"{up.url}/api/v1/packs/acme/tools/0.2.0",
            content=make_pack("acme/tools", "0.2.0", s.reg.key),
            headers={"Authorization": f"Bearer {s.reg.publish}"},
        )
        assert unsigned.status_code == 201
        full = _meta(up, "0.2.0")["variants"]["full"]
        new_path = "acme/tools/0.2.0/full.rflpack"
        good = TargetFile(full["size"], {"sha256": full["sha256"]}, new_path)
        good.unrecognized_fields = {"custom": {"yanked": False, "yank_reason": ""}}
        current = s.repo.load("acme")
        assert current is not None
        v = current.signed.version + 1
        key = s.reg.key
        bodies: dict[str, bytes] = {
            "extraneous target in another namespace": _ns_doc(
                s, v, {**current.signed.targets, "other/tools/0.1.0/full.rflpack": good}, key
            ),
            "unpublished version": _ns_doc(
                s, v, {**current.signed.targets, "acme/tools/9.0.0/full.rflpack": good}, key
            ),
            "wrong hash": _ns_doc(
                s,
                v,
                {
                    **current.signed.targets,
                    new_path: TargetFile(full["size"], {"sha256": "0" * 64}, new_path),
                },
                key,
            ),
            "signed by a foreign key": _ns_doc(s, v, dict(current.signed.targets), generate_key()),
            "stale version number": _ns_doc(s, v - 1, dict(current.signed.targets), key),
            "not metadata": b"this is not json",
            "deeply nested garbage": b"[" * 100000 + b"]" * 100000,
            "removes a published target": _ns_doc(s, v, {}, key),
            "bad yank field": _ns_doc(
                s,
                v,
                {
                    **current.signed.targets,
                    new_path: TargetFile(
                        full["size"],
                        {"sha256": full["sha256"]},
                        new_path,
                        {"custom": {"yanked": "yes"}},
                    ),
                },
                key,
            ),
        }
        resp = httpx.put(
            f"{up.url}/api/v1/namespaces/acme/metadata",
            content=bodies[case],
            headers={"Authorization": f"Bearer {s.reg.publish}"},
        )
        assert (resp.status_code, resp.json()["error"]["code"]) == (status, code), resp.text
    s.reg.storage.close()


def test_extraneous_targets_are_not_used_for_another_namespace(tmp_path: Path) -> None:
    """acme's publisher (or a thief of its key) lists other/tools in acme's metadata, past
    the registry: clients look other/* up only in other's delegation."""
    s = signed_registry(tmp_path)
    with Uvicorn(s.app) as up:
        _pub(s, up.url, tmp_path, "0.1.0")
        current = s.repo.load("acme")
        assert current is not None
        full = _meta(up, "0.1.0")["variants"]["full"]
        extra = TargetFile(
            full["size"], {"sha256": full["sha256"]}, "other/tools/9.9.9/full.rflpack"
        )
        doc = _ns_doc(
            s, current.signed.version + 1, {**current.signed.targets, extra.path: extra}, s.reg.key
        )
        s.repo._bump({"acme": (current.signed.version + 1, doc)})
        with client(up.url, tmp_path / "c", s.root, trust=_trust(tmp_path, s.reg.key)) as c:
            assert c.versions("other/tools") == []
            with pytest.raises(RegistryNotFoundError):
                c.install("other/tools@*")
    s.reg.storage.close()


def test_publish_to_a_pinned_registry_needs_the_publisher_key(tmp_path: Path) -> None:
    s = signed_registry(tmp_path)
    path = tmp_path / "p.rflpack"
    path.write_bytes(make_pack("acme/tools", "0.1.0", s.reg.key))
    with Uvicorn(s.app) as up, client(up.url, tmp_path, s.root, token=s.reg.publish) as c:
        with pytest.raises(RegistrySpecError, match="--key"):
            c.publish(path)
        assert c.versions("acme/tools") == []  # nothing signed: not visible
    s.reg.storage.close()


@pytest.mark.parametrize(
    ("root", "fragment"),
    [
        (b"not json", "not usable root metadata"),
        (b"{}", "not usable root metadata"),
        ("targets", "not root"),
        ("unsigned", "not usable root metadata"),
    ],
)
def test_pinning_a_bad_root_is_refused(tmp_path: Path, root: Any, fragment: str) -> None:
    s = signed_registry(tmp_path)
    data = root
    if root == "targets":
        got = s.reg.storage.get_metadata("targets")
        assert got is not None
        data = got[1]
    elif root == "unsigned":
        md = Metadata.from_bytes(s.root)
        md.signatures.clear()
        data = md.to_bytes()
    with (
        client("http://127.0.0.1:9", tmp_path, None) as c,
        pytest.raises(MetadataError, match=fragment),
    ):
        c.pin_root(data)
    s.reg.storage.close()


def test_cli_registry_add_then_install_counts_round_trips(tmp_path: Path) -> None:
    """``reflow-pack registry add`` pins the root; an install of a cached-up-to-date pack
    then costs at most 3 round trips for its metadata (counted by a proxy)."""
    from reflow.tools._registry_cli import main as pack_cli

    s = signed_registry(tmp_path)
    (tmp_path / "root.json").write_bytes(s.root)
    with Uvicorn(s.app) as up:
        _pub(s, up.url, tmp_path, "0.1.0")
        proxy = Proxy(up.url)
        with Uvicorn(proxy) as front:
            cache = tmp_path / "cache"
            run = CliRunner().invoke(
                pack_cli,
                [
                    "registry",
                    "add",
                    front.url,
                    "--root",
                    str(tmp_path / "root.json"),
                    "--cache-dir",
                    str(cache),
                ],
            )
            assert run.exit_code == 0, run.output
            assert "root version 1" in run.output
            trust = _trust(tmp_path, s.reg.key)
            with client(front.url, tmp_path, None, trust=trust) as c:
                assert c.install("acme/tools@*").from_cache is False
                proxy.hits.clear()
                got = c.install("acme/tools@*")
            assert got.from_cache
            print(f"round trips for a cached-up-to-date install: {len(proxy.hits)} {proxy.hits}")
            assert len(proxy.hits) <= 3, proxy.hits
            # again with the pack refreshed on the registry side: new timestamp and snapshot
            _pub(s, up.url, tmp_path, "0.2.0")
            proxy.hits.clear()
            with client(front.url, tmp_path, None, trust=trust) as c:
                assert c.install("acme/tools@*").version == "0.2.0"
    s.reg.storage.close()


def test_cli_tuf_init_delegate_rotate(tmp_path: Path) -> None:
    from reflow.registry._cli import main as registry_cli

    data, keys = tmp_path / "data", tmp_path / "keys"
    runner = CliRunner()
    assert runner.invoke(registry_cli, ["init", "--data", str(data)]).exit_code == 0
    pub = tmp_path / "acme.pub"
    pub.write_bytes(public_key_pem(generate_key()))
    run = runner.invoke(
        registry_cli, ["key", "add", "--data", str(data), "--namespace", "acme", str(pub)]
    )
    assert run.exit_code == 0, run.output
    run = runner.invoke(registry_cli, ["tuf", "init", "--data", str(data), "--keys", str(keys)])
    assert run.exit_code == 0, run.output
    assert (keys / "root.json").is_file() and (keys / "root.pem").is_file()
    root = json.loads((keys / "root.json").read_bytes())
    assert root["signed"]["consistent_snapshot"] is True
    run = runner.invoke(registry_cli, ["tuf", "init", "--data", str(data), "--keys", str(keys)])
    assert run.exit_code == 1 and "already has signed metadata" in run.output
    run = runner.invoke(registry_cli, ["tuf", "delegate", "--data", str(data), "--keys", str(keys)])
    assert run.exit_code == 0 and "version 2" in run.output, run.output
    run = runner.invoke(
        registry_cli,
        [
            "tuf",
            "rotate-root",
            "--data",
            str(data),
            "--keys",
            str(keys),
            "--new-keys",
            str(tmp_path / "k2"),
        ],
    )
    assert run.exit_code == 0, run.output
    new_root = Metadata.from_bytes((tmp_path / "k2" / "root.json").read_bytes())
    assert new_root.signed.version == 2 and len(new_root.signatures) == 2
    run = runner.invoke(
        registry_cli, ["tuf", "delegate", "--data", str(data), "--keys", str(tmp_path / "k2")]
    )
    assert run.exit_code == 1 and "error:" in run.output
