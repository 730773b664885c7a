"""README "Trust: signed metadata": a registry that takes up signed metadata after a version
was yanked keeps that yank when the publisher first signs the version (the walk's
publish --key after tuf init un-yanked it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from regtest import make_pack
from tuftest import Uvicorn, client, signed_registry

from reflow._errors import RegistryNotFoundError
from reflow._loader._trust import TrustStore


@pytest.mark.parametrize("reason", ["bad build", ""])
def test_first_signing_keeps_an_earlier_yank(tmp_path: Path, reason: str) -> None:
    s = signed_registry(tmp_path)
    path = tmp_path / "tools-0.1.0.rflpack"
    path.write_bytes(make_pack("acme/tools", "0.1.0", s.reg.key))
    good = tmp_path / "tools-0.2.0.rflpack"
    good.write_bytes(make_pack("acme/tools", "0.2.0", s.reg.key))
    with Uvicorn(s.app) as up:
        with client(up.url, tmp_path / "old", None, token=s.reg.publish) as c:
            c.publish(path)  # a client that never pinned the root: unsigned, as before TUF
        s.reg.storage.set_yanked("acme", "tools", "0.1.0", True, reason)
        with client(up.url, tmp_path / "pub", s.root, token=s.reg.publish) as c:
            c.publish(path, key=s.reg.key)  # unchanged bytes; now signed
            c.publish(good, key=s.reg.key)
        trust = TrustStore(tmp_path / "trust")
        trust.add(s.reg.key.public_key(), names=["acme/*"])
        with client(up.url, tmp_path / "user", s.root, trust=trust) as c:
            assert c.versions("acme/tools") == [
                {"version": "0.1.0", "yanked": True},
                {"version": "0.2.0", "yanked": False},
            ]
            with pytest.raises(RegistryNotFoundError, match="yanked versions need an exact pin"):
                c.install("acme/tools@~0.1", triple="wasm32-unknown-unknown")
            assert c.install("acme/tools@0.1.0", triple="wasm32-unknown-unknown").version == "0.1.0"
    s.reg.storage.close()


@pytest.mark.parametrize("spec", ["acme/tools@^0.1", "acme/tools@0.1.0", "acme/tools@*"])
def test_unsigned_version_says_the_publisher_must_sign_it(tmp_path: Path, spec: str) -> None:
    s = signed_registry(tmp_path)
    path = tmp_path / "tools-0.1.0.rflpack"
    path.write_bytes(make_pack("acme/tools", "0.1.0", s.reg.key))
    with Uvicorn(s.app) as up:
        with client(up.url, tmp_path / "old", None, token=s.reg.publish) as c:
            c.publish(path)  # in the index, but in no signed metadata
        with (
            client(up.url, tmp_path / "user", s.root) as c,
            pytest.raises(RegistryNotFoundError) as info,
        ):
            c.install(spec, triple="wasm32-unknown-unknown")
    message = str(info.value)
    assert "published: none" in message
    assert "reflow-pack publish --key KEY" in message
    assert "yanked versions" not in message
    s.reg.storage.close()
