"""reflow._trust: the directory of trusted publisher keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from reflow._errors import PackSignatureError, UntrustedKeyError
from reflow._trust import TrustStore, default_trust_dir
from reflow.abi._signing import generate_key, key_id, write_keypair


def test_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFLOW_TRUST_DIR", str(tmp_path / "env"))
    assert default_trust_dir() == tmp_path / "env"
    assert TrustStore().path == tmp_path / "env"
    assert TrustStore(tmp_path / "arg").path == tmp_path / "arg"
    monkeypatch.delenv("REFLOW_TRUST_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_trust_dir() == tmp_path / ".config" / "reflow" / "trust"


def test_add_list_remove(tmp_path: Path) -> None:
    store = TrustStore(tmp_path / "trust")
    assert store.list() == [] and len(store) == 0
    _, pub, kid = write_keypair(tmp_path / "me")
    assert store.add(pub) == kid
    assert store.add(pub) == kid  # idempotent
    other = generate_key()
    oid = store.add(other.public_key())
    assert {k.key_id for k in store} == {kid, oid}
    assert kid in store and "0" * 16 not in store
    assert set(store.keys()) == {kid, oid}
    (store.path / "stray.pub").write_text("not a key")
    assert len(store) == 2
    assert store.remove(kid[:6]) == kid
    assert kid not in store
    with pytest.raises(UntrustedKeyError, match="not in the trust store"):
        store.remove(kid)
    with pytest.raises(UntrustedKeyError):
        store.remove("ab")  # too short to be a prefix


def test_add_rejects_non_keys(tmp_path: Path) -> None:
    (tmp_path / "x.pub").write_text("nope")
    with pytest.raises(PackSignatureError):
        TrustStore(tmp_path / "t").add(tmp_path / "x.pub")
    assert key_id(generate_key())  # sanity
