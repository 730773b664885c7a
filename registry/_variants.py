"""Which slim variants a published pack has, and their bytes' digests.

The server builds the variants at publish time; a publisher's client computes the same
digests from its own file (the variants are deterministic), so what it signs as TUF targets
is what it built, not what the registry reports. Importable without the server's
dependencies."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..abi._bundle import BundleScan, scan_bundle, stream_bundle
from ..abi._manifest import PORTABLE_TRIPLE

__all__ = ["FULL", "variant_digests", "variant_members"]

#: The variant name of the whole pack.
FULL = "full"


def variant_members(scan: BundleScan) -> list[tuple[str, set[str]]]:
    """Each slim variant's triple and the members it keeps: one per native triple (its own
    and the portable artifacts), and a portable-only one when the pack has both kinds."""
    m = scan.manifest
    present = set(scan.present)
    files = {f.path for f in m.files}
    natives = [t for t in m.triples() if t != PORTABLE_TRIPLE]
    out = [
        (t, {a.path for a in m.artifacts if a.triple in (PORTABLE_TRIPLE, t)} | files)
        for t in natives
    ]
    if natives and PORTABLE_TRIPLE in m.triples():
        out.append((PORTABLE_TRIPLE, {a.path for a in m.artifacts if a.portable} | files))
    return [(t, keep & present) for t, keep in out]


def variant_digests(path: Path) -> dict[str, tuple[str, int]]:
    """``{variant: (sha256, size)}`` for the full pack at ``path`` and each slim variant the
    registry builds from it (streamed: memory does not grow with the pack)."""
    out: dict[str, tuple[str, int]] = {}
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    out[FULL] = (digest.hexdigest(), size)
    scan = scan_bundle(path)
    for triple, keep in variant_members(scan):
        d, n = hashlib.sha256(), 0
        for chunk in stream_bundle(path, scan, keep):
            d.update(chunk)
            n += len(chunk)
        out[triple] = (d.hexdigest(), n)
    return out
