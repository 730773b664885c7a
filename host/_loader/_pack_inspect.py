"""What a pack is and would load as, found without running any of its code.

:func:`choose_artifacts` picks, per entry, the artifact this host loads (the host triple's
native library when the pack is verified, else the portable WebAssembly; ``load_pack`` uses
it too); :func:`inspect_pack` reads a pack completely, checks it, and reports signature and
ABI problems instead of raising them, so a pack from an unknown publisher can be looked at.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import (
    ABIVersionError,
    PackSignatureError,
    PlatformError,
)
from ..abi._bundle import BundleLimits, read_bundle
from ..abi._manifest import (
    MANIFEST_NAME,
    PORTABLE_TRIPLE,
    SIGNATURE_NAME,
    Artifact,
    PackManifest,
    host_triples,
)
from ..abi._version import ABI_VERSION, check_abi_compatible
from ._trust import TrustStore

__all__ = [
    "PackInspection",
    "choose_artifacts",
    "inspect_pack",
]


def choose_artifacts(
    manifest: PackManifest,
    present: set[str],
    verified: bool,
    prefer: str,
    triples: tuple[str, ...],
    source: str,
) -> dict[str, Artifact]:
    """entry -> the artifact to load for it."""
    chosen: dict[str, Artifact] = {}
    for entry in sorted({t.entry for t in manifest.templates}):
        kinds = {t.engine for t in manifest.templates if t.entry == entry} - {"auto"}
        arts = [a for a in manifest.artifacts if a.entry == entry and a.path in present]
        if kinds:
            arts = [a for a in arts if a.kind in kinds]
        native = [a for t in triples for a in arts if a.triple == t]
        if not verified:
            native = [a for a in native if a.kind != "native"]
        portable = [a for a in arts if a.portable]
        order = native + portable if prefer == "native" else portable + native
        if order:
            chosen[entry] = order[0]
            continue
        listed = sorted({a.triple for a in manifest.artifacts if a.entry == entry})
        here = sorted(
            {a.triple for a in manifest.artifacts if a.entry == entry and a.path in present}
        )
        stripped = (
            f" ({source} carries only: {', '.join(here) or 'none'})" if here != listed else ""
        )
        why = "" if verified else " (native artifacts need a verified signature)"
        raise PlatformError(
            f"pack {manifest.name!r} {manifest.version} has no artifact this host can run for "
            f"entry {entry!r}: wanted {', '.join(triples) or 'no native triple'} or "
            f"{PORTABLE_TRIPLE}{why}; available triples: {', '.join(listed)}{stripped}",
            pack=manifest.name,
            wanted=(*triples, PORTABLE_TRIPLE),
            available=tuple(listed),
        )
    return chosen


@dataclass
class PackInspection:
    """What ``inspect_pack`` found. No pack code was run to find it."""

    path: str
    size: int
    manifest: PackManifest
    digest: str
    members: dict[str, int]
    present_triples: tuple[str, ...]
    stripped: bool
    signatures: list[str]
    signature_status: str
    signer: str | None
    abi_ok: bool
    abi_message: str
    loads_as: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "path": self.path,
            "size": self.size,
            "name": m.name,
            "version": m.version,
            "abi": m.abi,
            "abi_compatible": self.abi_ok,
            "abi_message": self.abi_message,
            "description": m.description,
            "license": m.license,
            "authors": list(m.authors),
            "capabilities": {k: list(v) for k, v in m.capabilities.items()},
            "manifest_sha256": self.digest,
            "signatures": self.signatures,
            "signature_status": self.signature_status,
            "signer": self.signer,
            "stripped": self.stripped,
            "triples": list(m.triples()),
            "present_triples": list(self.present_triples),
            "loads_as": self.loads_as,
            "templates": [t.to_dict() for t in m.templates],
            "artifacts": [{**a.to_dict(), "present": a.path in self.members} for a in m.artifacts],
            "members": self.members,
        }


def inspect_pack(
    path: str | os.PathLike[str],
    *,
    trust: TrustStore | str | os.PathLike[str] | None = None,
    limits: BundleLimits | None = None,
) -> PackInspection:
    """Read a pack completely and check it — container, manifest, every member's hash, the
    signature against the trust store, the ABI — without running any of its code.

    Container and integrity problems raise; signature and ABI problems are reported in
    ``signature_status`` / ``abi_message``, so a pack from an unknown publisher can be looked
    at before deciding to trust it.
    """
    store = trust if isinstance(trust, TrustStore) else TrustStore(trust)
    p = Path(path)
    b = read_bundle(p, limits=limits)
    m = b.manifest
    signer = None
    try:
        signer = store.verify(b.manifest_bytes, b.signatures, pack=f"pack {m.name!r}")
        status = f"valid, trusted key {signer}"
    except PackSignatureError as exc:
        status = str(exc)
    try:
        check_abi_compatible(m.abi_version, ABI_VERSION, what=f"pack {m.name!r} {m.version}")
        abi_ok, abi_msg = True, f"pack ABI {m.abi}, host ABI {ABI_VERSION[0]}.{ABI_VERSION[1]}"
    except ABIVersionError as exc:
        abi_ok, abi_msg = False, str(exc)
    try:
        chosen = choose_artifacts(
            m, set(b.contents), signer is not None, "native", host_triples(), b.source
        )
        loads_as = {e: f"{a.kind} ({a.triple})" for e, a in chosen.items()}
    except PlatformError as exc:
        loads_as = {"error": str(exc)}
    members = {MANIFEST_NAME: len(b.manifest_bytes)}
    if b.signature_bytes is not None:
        members[SIGNATURE_NAME] = len(b.signature_bytes)
    members.update({k: len(v) for k, v in sorted(b.contents.items())})
    return PackInspection(
        path=str(p),
        size=b.compressed_size,
        manifest=m,
        digest=hashlib.sha256(b.manifest_bytes).hexdigest(),
        members=members,
        present_triples=b.present_triples(),
        stripped=b.is_stripped(),
        signatures=[s.key_id for s in b.signatures],
        signature_status=status,
        signer=signer,
        abi_ok=abi_ok,
        abi_message=abi_msg,
        loads_as=loads_as,
    )
