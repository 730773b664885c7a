"""A publisher's side of the signed metadata: the namespace's next targets metadata, signed
with the publisher's ed25519 key on the publisher's machine.

The registry only checks and stores it (``PUT /api/v1/namespaces/{ns}/metadata``), so what a
namespace offers — versions, variant hashes and lengths, yank state — is what its
publishers signed, not what the registry operator says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import CryptoSigner, SSlibKey
from tuf.api.metadata import Metadata, TargetFile, Targets

__all__ = ["DEFAULT_EXPIRY", "next_namespace_metadata", "target_file"]

#: How long a namespace's targets metadata stays valid (the next publish or yank re-signs).
DEFAULT_EXPIRY = 365 * 86400


def target_file(path: str, sha256: str, size: int, yanked: bool, reason: str) -> TargetFile:
    return TargetFile(
        size,
        {"sha256": sha256},
        path,
        unrecognized_fields={"custom": {"yanked": yanked, "yank_reason": reason}},
    )


def next_namespace_metadata(
    current: Targets | None,
    changes: dict[str, TargetFile],
    key: Ed25519PrivateKey,
    *,
    expiry: float = DEFAULT_EXPIRY,
) -> bytes:
    """The namespace's targets metadata after ``current`` (None: its first) with
    ``changes`` (path -> target) applied, version one higher, signed with ``key``."""
    targets: dict[str, Any] = dict(current.targets) if current is not None else {}
    targets.update(changes)
    md = Metadata(
        Targets(
            version=(current.version + 1) if current is not None else 1,
            expires=datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=int(expiry)),
            targets=targets,
        )
    )
    md.sign(CryptoSigner(key, SSlibKey.from_crypto(key.public_key())))
    return md.to_bytes()
