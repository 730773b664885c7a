"""Ed25519 signatures over a pack's manifest (PACK_FORMAT.md §5).

A signature covers the exact ``manifest.toml`` bytes, prefixed with a domain-separation
string, and the manifest hashes every artifact — so one signature vouches for the whole pack,
and a stripped pack (fewer artifacts, same manifest) still verifies. Signatures are stored in
their own bundle member, ``signature.toml``.

Keys: the private key is a PKCS#8 PEM file (mode 0600), the public key the matching
SubjectPublicKeyInfo PEM next to it (``<name>.pub``). A key's id is the first 16 hex digits of
the sha256 of its raw 32-byte public key. Errors from ``cryptography`` are translated here.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import tomli_w
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .._errors import PackFormatError, PackSignatureError, UntrustedKeyError
from ._bounded import load_toml
from ._manifest import MANIFEST_NAME, SIGNATURE_NAME, parse_manifest

__all__ = [
    "DOMAIN",
    "Signature",
    "generate_key",
    "key_id",
    "load_private_key",
    "load_public_key",
    "name_allowed",
    "parse_signatures",
    "public_key_pem",
    "sign_manifest",
    "signatures_to_toml",
    "verify_manifest",
    "write_keypair",
]

#: Prefix of every signed message, so a pack signature can never be replayed as anything else.
DOMAIN = b"reflow-pack-manifest-v1\x00"
ALGORITHM = "ed25519"
_MAX_SIGNATURES = 16
#: Largest signature.toml read (PACK_FORMAT.md §2).
MAX_SIGNATURE = 64 << 10


@dataclass(frozen=True)
class Signature:
    """One signature: who (``key_id``) signed, with what, and the 64 signature bytes."""

    key_id: str
    signature: bytes
    algorithm: str = ALGORITHM


def generate_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """16 hex digits: the start of sha256(raw public key). Stable across file formats."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return hashlib.sha256(_raw(public)).hexdigest()[:16]


def public_key_pem(key: Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write_keypair(
    path: str | os.PathLike[str], key: Ed25519PrivateKey | None = None, *, overwrite: bool = False
) -> tuple[Path, Path, str]:
    """Write ``path`` (private, 0600) and ``path.pub``; return both paths and the key id."""
    key = key or generate_key()
    priv = Path(path).expanduser()
    pub = priv.with_name(priv.name + ".pub")
    if not overwrite:
        for p in (priv, pub):
            if p.exists():
                raise PackSignatureError(f"{p} already exists; refusing to overwrite a key")
    priv.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(priv, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    pub.write_bytes(public_key_pem(key))
    return priv, pub, key_id(key)


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    p = Path(path).expanduser()
    try:
        key = serialization.load_pem_private_key(p.read_bytes(), password=None)
    except OSError as exc:
        raise PackSignatureError(f"cannot read private key {p}: {exc.strerror}") from exc
    except (ValueError, TypeError) as exc:
        raise PackSignatureError(f"{p} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise PackSignatureError(f"{p} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def load_public_key(data: bytes | str | os.PathLike[str]) -> Ed25519PublicKey:
    """A public key from PEM bytes or a file (a private key file yields its public half)."""
    where = "public key"
    if not isinstance(data, bytes):
        p = Path(data).expanduser()
        where = str(p)
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise PackSignatureError(f"cannot read public key {p}: {exc.strerror}") from exc
    key: object
    try:
        if b"PRIVATE KEY" in data:
            priv = serialization.load_pem_private_key(data, password=None)
            key = priv.public_key() if isinstance(priv, Ed25519PrivateKey) else priv
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise PackSignatureError(f"{where} is not a PEM Ed25519 key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise PackSignatureError(f"{where} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def sign_manifest(manifest_bytes: bytes, key: Ed25519PrivateKey) -> Signature:
    return Signature(key_id=key_id(key), signature=key.sign(DOMAIN + manifest_bytes))


def signatures_to_toml(signatures: Iterable[Signature]) -> bytes:
    """``signature.toml``: ``[[signatures]]`` tables sorted by key id (deterministic)."""
    sigs = sorted({s.key_id: s for s in signatures}.values(), key=lambda s: s.key_id)
    doc = {
        "signatures": [
            {
                "algorithm": s.algorithm,
                "key_id": s.key_id,
                "signature": base64.b64encode(s.signature).decode("ascii"),
            }
            for s in sigs
        ]
    }
    return tomli_w.dumps(doc).encode("utf-8")


def parse_signatures(data: bytes, *, max_size: int = MAX_SIGNATURE) -> list[Signature]:
    """The signatures in ``signature.toml`` (size- and depth-checked before parsing)."""

    def bad(what: str, field: str = "signatures") -> PackFormatError:
        return PackFormatError(
            f"{SIGNATURE_NAME}: field {field}: {what}", member=SIGNATURE_NAME, field=field
        )

    doc = load_toml(data, SIGNATURE_NAME, max_size=max_size)
    extra = sorted(set(doc) - {"signatures"})
    if extra:
        raise bad("unknown key (allowed: signatures)", extra[0][:60])
    items = doc.get("signatures")
    if not isinstance(items, list) or not items or len(items) > _MAX_SIGNATURES:
        raise bad(f"needs 1..{_MAX_SIGNATURES} [[signatures]] tables")
    out = []
    for i, s in enumerate(items):
        if not isinstance(s, dict) or set(s) != {"algorithm", "key_id", "signature"}:
            raise bad("needs exactly algorithm, key_id and signature", f"signatures[{i}]")
        if s["algorithm"] != ALGORITHM:
            raise bad(
                f"{str(s['algorithm'])[:40]!r} is not supported (only {ALGORITHM})",
                f"signatures[{i}].algorithm",
            )
        kid, sig = s["key_id"], s["signature"]
        if (
            not isinstance(kid, str)
            or len(kid) != 16
            or not all(c in "0123456789abcdef" for c in kid)
        ):
            raise bad("must be 16 lowercase hex digits", f"signatures[{i}].key_id")
        try:
            raw = base64.b64decode(sig, validate=True) if isinstance(sig, str) else b""
        except ValueError as exc:
            raise bad("is not base64", f"signatures[{i}].signature") from exc
        if len(raw) != 64:
            raise bad(f"must be 64 bytes, got {len(raw)}", f"signatures[{i}].signature")
        out.append(Signature(key_id=kid, signature=raw))
    return out


def name_allowed(name: str, patterns: Sequence[str] | None) -> bool:
    """Whether a key limited to ``patterns`` (``None``: no limit) may sign pack ``name``.
    fnmatch-style, case-sensitive; ``*`` also matches ``/``."""
    return patterns is None or any(fnmatch.fnmatchcase(name, p) for p in patterns)


def verify_manifest(
    manifest_bytes: bytes,
    signatures: Iterable[Signature],
    trusted: Mapping[str, Ed25519PublicKey],
    *,
    pack: str = "",
    names: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """Return the key id of a trusted key whose signature verifies.

    ``names``: key id -> the pack-name patterns that key is trusted for (a key absent from it
    is trusted for every name). A signature counts only when the manifest's own (signed) name
    matches one of its key's patterns.

    Raises PackSignatureError when there is no signature or a trusted key's signature does
    not verify (tampered manifest), UntrustedKeyError when no signer is trusted (for this
    pack name).
    """
    sigs = list(signatures)
    if not sigs:
        raise PackSignatureError(f"{pack or 'the pack'} is not signed", pack=pack)
    message = DOMAIN + manifest_bytes
    bad: list[str] = []
    out_of_scope: list[str] = []
    signed_name: str | None = None
    for sig in sigs:
        public = trusted.get(sig.key_id)
        if public is None:
            continue
        try:
            public.verify(sig.signature, message)
        except InvalidSignature:
            bad.append(sig.key_id)
            continue
        patterns = names.get(sig.key_id) if names is not None else None
        if patterns is not None:
            if signed_name is None:
                signed_name = parse_manifest(manifest_bytes).name
            if not name_allowed(signed_name, patterns):
                out_of_scope.append(sig.key_id)
                continue
        return sig.key_id
    if bad:
        raise PackSignatureError(
            f"{pack or 'the pack'}: the signature by trusted key {bad[0]} does not match "
            f"{SIGNATURE_NAME} over {MANIFEST_NAME}: the manifest or signature was altered",
            pack=pack,
            key_id=bad[0],
        )
    if out_of_scope and names is not None:
        kid = out_of_scope[0]
        allowed = ", ".join(repr(p) for p in names[kid]) or "no pack names"
        raise UntrustedKeyError(
            f"{pack or 'the pack'} is named {signed_name!r} and signed by trusted key {kid}, "
            f"but that key is trusted only for {allowed}: refusing it (another publisher's "
            f"key signing this name can be an attack); only if you know this key's owner "
            f"publishes {signed_name!r}, run 'reflow-pack trust add KEY.pub --for "
            f"{signed_name}'",
            pack=pack,
            key_id=kid,
        )
    ids = ", ".join(s.key_id for s in sigs)
    raise UntrustedKeyError(
        f"{pack or 'the pack'} is signed by key {ids}, which is not in the trust store; if you "
        f"trust the publisher, add their public key with 'reflow-pack trust add KEY.pub'",
        pack=pack,
        key_id=sigs[0].key_id,
    )
