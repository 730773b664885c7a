"""reflow._loader._trust: the directory of trusted publisher keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from reflow._errors import PackSignatureError, UntrustedKeyError
from reflow._loader._trust import TrustStore, default_trust_dir
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


# -- keys limited to pack names (`trust add --for`) -------------------------------------------


def test_names_are_stored_merged_and_removed(tmp_path: Path) -> None:
    store = TrustStore(tmp_path / "trust")
    key = generate_key().public_key()
    kid = store.add(key)
    assert store.list()[0].names is None and store.names() == {}  # any name (old behaviour)
    assert store.add(key, names=("acme/*",)) == kid
    assert (store.path / f"{kid}.names").read_text() == "acme/*\n"
    store.add(key, names=["acme/*", "acme-labs/tools"])  # added to, never duplicated
    store.add(key)  # re-adding without names keeps the patterns
    assert store.names() == {kid: ("acme/*", "acme-labs/tools")}
    store.remove(kid)
    assert not list(store.path.iterdir())


@pytest.mark.parametrize("bad", ["", "ACME/*", "acme/[ab]", "acme/?", "acme tools", "a\nb"])
def test_names_are_validated(tmp_path: Path, bad: str) -> None:
    store = TrustStore(tmp_path / "trust")
    with pytest.raises(ValueError, match="invalid pack-name pattern"):
        store.add(generate_key().public_key(), names=(bad,))
    assert store.list() == []  # nothing half-added


def test_a_names_file_without_valid_patterns_trusts_no_name(tmp_path: Path) -> None:
    store = TrustStore(tmp_path / "trust")
    kid = store.add(generate_key().public_key())
    (store.path / f"{kid}.names").write_text("# hand-edited\n\nACME/[x]\n")
    assert store.names() == {kid: ()}  # fail closed, not "any name"
