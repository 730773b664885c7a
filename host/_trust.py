"""The trust store: the publisher keys whose signed packs this user accepts.

A directory of public keys, one PEM file per key named ``<key id>.pub``. Its location is the
``path`` argument, else ``$REFLOW_TRUST_DIR``, else ``~/.config/reflow/trust``. The store is
read on each query (it is a handful of small files), so a key added or removed by the CLI is
seen at once by a running process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ._errors import PackSignatureError, UntrustedKeyError
from .abi._signing import key_id, load_public_key, public_key_pem

__all__ = ["TrustStore", "TrustedKey", "default_trust_dir"]

_SUFFIX = ".pub"


def default_trust_dir() -> Path:
    env = os.environ.get("REFLOW_TRUST_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".config" / "reflow" / "trust"


@dataclass(frozen=True)
class TrustedKey:
    key_id: str
    path: Path
    public_key: Ed25519PublicKey


class TrustStore:
    """Publisher keys this user trusts. ``path``: the directory (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_trust_dir()

    def __repr__(self) -> str:
        return f"TrustStore({str(self.path)!r})"

    def add(self, key: str | os.PathLike[str] | bytes | Ed25519PublicKey) -> str:
        """Trust a public key (a PEM file, PEM bytes or a key object); return its key id.
        Adding a key twice is harmless."""
        public = key if isinstance(key, Ed25519PublicKey) else load_public_key(key)
        kid = key_id(public)
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.path / f"{kid}{_SUFFIX}"
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(public_key_pem(public))
        os.replace(tmp, target)
        return kid

    def remove(self, key: str) -> str:
        """Stop trusting a key, named by its id or an unambiguous id prefix (>= 4 digits)."""
        found = self._resolve(key)
        found.path.unlink()
        return found.key_id

    def _resolve(self, key: str) -> TrustedKey:
        key = key.strip().lower()
        matches = [k for k in self if k.key_id.startswith(key)] if len(key) >= 4 else []
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise UntrustedKeyError(f"key {key!r} is not in the trust store {self.path}",
                                    key_id=key)
        raise PackSignatureError(
            f"key prefix {key!r} matches {len(matches)} keys in {self.path}: "
            f"{', '.join(k.key_id for k in matches)}",
            key_id=key,
        )

    def __iter__(self) -> Iterator[TrustedKey]:
        if not self.path.is_dir():
            return
        for p in sorted(self.path.glob(f"*{_SUFFIX}")):
            try:
                public = load_public_key(p)
            except PackSignatureError:
                continue  # a stray file is not a key; `trust list` shows only real keys
            yield TrustedKey(key_id(public), p, public)

    def keys(self) -> dict[str, Ed25519PublicKey]:
        """key id -> public key, for every trusted key."""
        return {k.key_id: k.public_key for k in self}

    def list(self) -> list[TrustedKey]:
        return list(self)

    def __contains__(self, kid: object) -> bool:
        return isinstance(kid, str) and kid in self.keys()

    def __len__(self) -> int:
        return sum(1 for _ in self)
