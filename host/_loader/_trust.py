"""The trust store: the publisher keys whose signed packs this user accepts.

A directory of public keys, one PEM file per key named ``<key id>.pub``. Its location is the
``path`` argument, else ``$REFLOW_TRUST_DIR``, else ``~/.config/reflow/trust``. The store is
read on each query (it is a handful of small files), so a key added or removed by the CLI is
seen at once by a running process.

A key may be trusted only for some pack names: ``<key id>.names`` next to its ``.pub`` holds
fnmatch-style patterns (``acme/*``), one per line, over the *signed* manifest name; the
pattern ``*`` (what ``reflow-pack trust add --any-name`` writes) is a deliberate "every name".
A ``.names`` file with no valid pattern trusts the key for no name at all (fail closed). A
pattern is at most 256 characters, and only the first 64 KiB of a ``.names`` file are read
(whole lines only: a cut pattern could widen the trust).

A key without a ``.names`` file (added before pack names could be bound, or by
``add(key)`` with no ``names``) is still trusted for every name, but it is an unscoped entry:
the first time it vouches for a pack in a process, :meth:`TrustStore.verify` logs one warning
(one per key per process, whichever path asked: ``load_pack``, ``inspect_pack``,
``reflow-pack verify``, the registry client).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .._errors import PackSignatureError, UntrustedKeyError
from ..abi._signing import Signature, key_id, load_public_key, public_key_pem, verify_manifest

__all__ = ["ANY_NAME", "TrustStore", "TrustedKey", "default_trust_dir", "validate_name_pattern"]

log = logging.getLogger("reflow.trust")

_SUFFIX = ".pub"
_NAMES = ".names"
_PATTERN = re.compile(r"[a-z0-9._/*-]+")
_MAX_PATTERN = 256  # characters: longer than any pack name needs
_MAX_NAMES_FILE = 64 << 10  # bytes of a .names file read; the rest is ignored (fail closed)
#: The pattern of a key trusted for every pack name on purpose (``--any-name``).
ANY_NAME = "*"

# Unscoped keys already warned about in this process (key ids), whichever store asked.
_warned_unscoped: set[str] = set()
_warned_lock = threading.Lock()


def _warn_unscoped(kid: str, pack: str) -> None:
    with _warned_lock:
        if kid in _warned_unscoped:
            return
        _warned_unscoped.add(kid)
    log.warning(
        "trusted key %s (which signed %s) was added without pack names, so it may sign packs "
        "of ANY name; bind it to its publisher's packs: "
        "'reflow-pack trust add KEY.pub --for \"NAMESPACE/*\"' (or --any-name to keep this "
        "on purpose)",
        kid,
        pack or "a pack",
    )


def validate_name_pattern(pattern: str) -> str:
    """A pack-name pattern (``acme/*``): only ``a-z 0-9 . _ / * -``, at most 256 characters;
    return it stripped. Raises ``ValueError`` naming the pattern otherwise."""
    p = pattern.strip()
    if len(p) > _MAX_PATTERN:
        raise ValueError(
            f"invalid pack-name pattern {pattern[:40]!r}...: over {_MAX_PATTERN} characters"
        )
    if not _PATTERN.fullmatch(p):
        raise ValueError(
            f"invalid pack-name pattern {pattern!r}: use only lowercase letters, "
            "digits and . _ / * - (for example 'acme/*')"
        )
    return p


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
    #: Pack-name patterns this key is trusted for (``("*",)``: every name, on purpose);
    #: ``None``: an unscoped entry (no ``.names`` file), also trusted for every name.
    names: tuple[str, ...] | None = None

    @property
    def any_name(self) -> bool:
        """Whether this key may sign packs of every name (on purpose or unscoped)."""
        return self.names is None or ANY_NAME in self.names


class TrustStore:
    """Publisher keys this user trusts. ``path``: the directory (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_trust_dir()

    def __repr__(self) -> str:
        return f"TrustStore({str(self.path)!r})"

    def add(
        self,
        key: str | os.PathLike[str] | bytes | Ed25519PublicKey,
        names: Iterable[str] | None = None,
        *,
        any_name: bool = False,
    ) -> str:
        """Trust a public key (a PEM file, PEM bytes or a key object); return its key id.
        Adding a key twice is harmless.

        ``names``: pack-name patterns (``("acme/*",)``) the key is trusted for; they are added
        to the key's existing patterns. ``any_name=True`` replaces the key's patterns with
        ``*``: trusted for every pack name, on purpose. With neither, the key's patterns are
        left as they are, so a new key is an unscoped entry (trusted for every name, with one
        warning per process when it is used)."""
        patterns = [
            validate_name_pattern(n) for n in ([names] if isinstance(names, str) else names or ())
        ]
        public = key if isinstance(key, Ed25519PublicKey) else load_public_key(key)
        kid = key_id(public)
        self.path.mkdir(parents=True, exist_ok=True)
        if any_name:
            _write(self.path / f"{kid}{_NAMES}", f"{ANY_NAME}\n".encode())
        elif patterns:
            old = _read_names(self.path / f"{kid}{_NAMES}") or ()
            merged = list(dict.fromkeys([*old, *patterns]))
            _write(self.path / f"{kid}{_NAMES}", "".join(f"{p}\n" for p in merged).encode())
        _write(self.path / f"{kid}{_SUFFIX}", public_key_pem(public))
        return kid

    def remove(self, key: str) -> str:
        """Stop trusting a key, named by its id or an unambiguous id prefix (>= 4 digits)."""
        found = self._resolve(key)
        found.path.unlink()
        found.path.with_suffix(_NAMES).unlink(missing_ok=True)
        return found.key_id

    def _resolve(self, key: str) -> TrustedKey:
        key = key.strip().lower()
        matches = [k for k in self if k.key_id.startswith(key)] if len(key) >= 4 else []
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise UntrustedKeyError(
                f"key {key!r} is not in the trust store {self.path}", key_id=key
            )
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
            yield TrustedKey(key_id(public), p, public, _read_names(p.with_suffix(_NAMES)))

    def keys(self) -> dict[str, Ed25519PublicKey]:
        """key id -> public key, for every trusted key."""
        return {k.key_id: k.public_key for k in self}

    def names(self) -> dict[str, tuple[str, ...]]:
        """key id -> pack-name patterns, for every trusted key limited to some names (a key
        trusted for every name is absent)."""
        return {k.key_id: k.names for k in self if k.names is not None}

    def verify(
        self, manifest_bytes: bytes, signatures: Iterable[Signature], *, pack: str = ""
    ) -> str:
        """``verify_manifest`` against this store (one read of it): the key and, for a key
        limited to some pack names, the manifest's name. Returns the signer's key id. An
        unscoped signer (no ``.names`` file) is warned about once per key per process."""
        entries = self.list()
        signer = verify_manifest(
            manifest_bytes,
            signatures,
            {k.key_id: k.public_key for k in entries},
            pack=pack,
            names={k.key_id: k.names for k in entries if k.names is not None},
        )
        if any(k.key_id == signer and k.names is None for k in entries):
            _warn_unscoped(signer, pack)
        return signer

    def list(self) -> list[TrustedKey]:
        return list(self)

    def __contains__(self, kid: object) -> bool:
        return isinstance(kid, str) and kid in self.keys()

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _write(target: Path, data: bytes) -> None:
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)


def _read_names(path: Path) -> tuple[str, ...] | None:
    """The patterns in a ``.names`` file; ``None`` when there is none. Blank lines and
    ``#`` comments are skipped, invalid patterns ignored (which can only narrow the trust)."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(_MAX_NAMES_FILE + 1)
        if len(raw) > _MAX_NAMES_FILE:  # whole lines only: a cut "acme*x" would be "acme*"
            raw = raw[: raw.rfind(b"\n", 0, _MAX_NAMES_FILE) + 1]
        text = raw.decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError:
        return ()  # there, but unreadable: trust the key for no name (fail closed)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            out.append(validate_name_pattern(line))
        except ValueError:
            continue
    return tuple(dict.fromkeys(out))
