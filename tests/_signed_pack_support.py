"""What the pack-loading tests share (a plain module they import): the first-party math pack
built and signed with a fresh publisher key, a trust store holding that key, and the
environment a test loads packs in (its own cache, trust and config dirs; every pack it loaded
unloaded afterwards)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reflow._loader._packs import list_packs, unload_pack
from reflow._loader._trust import TrustStore
from reflow.abi._signing import load_private_key, write_keypair
from reflow.tools._pack_build import build_pack

__all__ = ["PACKS", "isolated_pack_env", "signed_math_pack", "trusting"]

#: the first-party pack sources
PACKS = Path(__file__).resolve().parent.parent / "packs"


def signed_math_pack(root: Path) -> tuple[Path, Path]:
    """``packs/math-wasm`` built under ``root/dist`` and signed with a new key pair made
    under ``root/keys``: the ``.rflpack`` and the public key."""
    priv, pub, _ = write_keypair(root / "keys" / "publisher")
    return build_pack(PACKS / "math-wasm", out_dir=root / "dist", key=load_private_key(priv)), pub


def trusting(pub: Path) -> TrustStore:
    """A trust store (this test's trust dir) holding the publisher key ``pub``."""
    store = TrustStore()
    store.add(pub)
    return store


def isolated_pack_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, config: bool = False
) -> Iterator[None]:
    """Cache and trust dirs (and the config dir, with ``config``) under ``tmp_path`` while
    the test runs; the packs it loaded are unloaded after. Yield from it in a fixture."""
    monkeypatch.setenv("REFLOW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("REFLOW_TRUST_DIR", str(tmp_path / "trust"))
    if config:
        monkeypatch.setenv("REFLOW_CONFIG_DIR", str(tmp_path / "config"))
    yield
    for p in list_packs():
        unload_pack(p.name)
