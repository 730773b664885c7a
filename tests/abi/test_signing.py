"""reflow.abi._signing: ed25519 keys, key ids, and signatures over manifest bytes."""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

from reflow._errors import PackFormatError, PackSignatureError, UntrustedKeyError
from reflow.abi._signing import (
    DOMAIN,
    Signature,
    generate_key,
    key_id,
    load_private_key,
    load_public_key,
    parse_signatures,
    sign_manifest,
    signatures_to_toml,
    verify_manifest,
    write_keypair,
)


def test_key_id_is_sha256_prefix_of_raw_public_key() -> None:
    key = generate_key()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert key_id(key) == key_id(key.public_key()) == hashlib.sha256(raw).hexdigest()[:16]


def test_keypair_files(tmp_path: Path) -> None:
    priv, pub, kid = write_keypair(tmp_path / "keys" / "me")
    assert pub.name == "me.pub"
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert key_id(load_private_key(priv)) == kid == key_id(load_public_key(pub))
    assert key_id(load_public_key(priv)) == kid  # a private key file yields its public half
    with pytest.raises(PackSignatureError, match="already exists"):
        write_keypair(priv)


def test_sign_and_verify() -> None:
    key, other = generate_key(), generate_key()
    msg = b'name = "x"\n'
    sig = sign_manifest(msg, key)
    key.public_key().verify(sig.signature, DOMAIN + msg)
    trusted = {key_id(key): key.public_key()}
    assert verify_manifest(msg, [sig], trusted) == key_id(key)
    assert verify_manifest(msg, [sign_manifest(msg, other), sig], trusted) == key_id(key)
    round_tripped = parse_signatures(signatures_to_toml([sig]))
    assert round_tripped == [sig]


def test_verify_failures() -> None:
    key, other = generate_key(), generate_key()
    msg = b"m"
    sig = sign_manifest(msg, key)
    trusted = {key_id(key): key.public_key()}
    with pytest.raises(PackSignatureError, match="is not signed"):
        verify_manifest(msg, [], trusted, pack="p")
    with pytest.raises(PackSignatureError, match=f"trusted key {key_id(key)} does not match") as e:
        verify_manifest(b"M", [sig], trusted)
    assert e.value.key_id == key_id(key)
    with pytest.raises(UntrustedKeyError, match=f"signed by key {key_id(other)}") as u:
        verify_manifest(msg, [sign_manifest(msg, other)], trusted)
    assert u.value.key_id == key_id(other)
    # a signature over the bare bytes (no domain prefix) is not accepted
    bare = Signature(key_id(key), key.sign(msg))
    with pytest.raises(PackSignatureError, match="does not match"):
        verify_manifest(msg, [bare], trusted)


def _sig_doc(**kw: str) -> bytes:
    fields = {
        "algorithm": "ed25519",
        "key_id": "0" * 16,
        "signature": base64.b64encode(b"x" * 64).decode(),
    }
    fields.update(kw)
    body = "".join(f'{k} = "{v}"\n' for k, v in fields.items())
    return f"[[signatures]]\n{body}".encode()


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"\xff", "not valid TOML"),
        (b"", "needs 1..16"),
        (_sig_doc(algorithm="rsa"), "not supported"),
        (_sig_doc(key_id="XYZ"), "16 lowercase hex"),
        (_sig_doc(signature="!!"), "not base64"),
        (_sig_doc(signature=base64.b64encode(b"x").decode()), "must be 64 bytes"),
    ],
)
def test_bad_signature_member(data: bytes, fragment: str) -> None:
    with pytest.raises(PackFormatError, match=fragment):
        parse_signatures(data)


def test_bad_key_files(tmp_path: Path) -> None:
    (tmp_path / "junk").write_text("hello")
    with pytest.raises(PackSignatureError, match="not a PEM Ed25519 key"):
        load_public_key(tmp_path / "junk")
    with pytest.raises(PackSignatureError, match="cannot read"):
        load_private_key(tmp_path / "missing")
    ec = generate_private_key(SECP256R1())
    pem = ec.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "ec").write_bytes(pem)
    with pytest.raises(PackSignatureError, match="not an Ed25519 key"):
        load_private_key(tmp_path / "ec")
